"""`siemgate run`: the ingest and every configured sink's forwarder in one process.

On the embedded bus (the default) this is the whole pipeline on one machine: the ingest
answers 200 once a batch is fsync'd to the SQLite log, the forwarders read the log, one
cursor per sink, and records are deleted once every sink has passed them. With
`bus.type: kafka` it runs the same two halves against Kafka (what `siemgate ingest` and
`siemgate forward` run as separate Deployments).

One HTTP listener (`listen`): the webhooks, /healthz, /readyz and /metrics, the latter with
the forwarders' metrics too; and, when `admin` is configured, the status page on its own
listener (siemgate.admin). Shutdown on SIGTERM/SIGINT: the ingest stops taking requests and
answers those in flight, then each forwarder finishes its batch within
`forward.drain_timeout_seconds` and commits, then the log is closed.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.applications import Starlette

from siemgate.admin.server import running_admin
from siemgate.admin.status import StatusSources
from siemgate.bus.base import Bus, Publisher
from siemgate.bus.embedded import EmbeddedLog
from siemgate.config import Config
from siemgate.foreground import Foreground
from siemgate.forwarders.runtime import group_id
from siemgate.forwarders.service import ForwardService, selected_sinks
from siemgate.gc_tuning import tune_gc
from siemgate.ingest.app import create_app
from siemgate.ingest.server import Server, uvicorn_config_for
from siemgate.metrics import Exposed
from siemgate.reload import ConfigReloader, reloading

log = logging.getLogger("siemgate.run")


class _Retention:
    """Hot reload on the embedded bus: retention follows the configured sinks."""

    def __init__(self, embedded: EmbeddedLog) -> None:
        self._log = embedded

    async def apply_config(self, config: Config) -> None:
        self._log.retention_groups = tuple(group_id(config, s.name) for s in config.sinks)


async def serve_all(config: Config, reloader: ConfigReloader | None = None) -> None:
    """Run until SIGTERM/SIGINT; raises ForwarderFailed if a forwarder died of a bug."""
    selected_sinks(config, ())  # a config without a usable sink fails before anything starts
    if config.bus.type == "embedded":
        from siemgate.bus.embedded import EmbeddedBus

        embedded = EmbeddedLog(config.bus.path, prefix=config.bus.topic_prefix,
                               retention_groups=[group_id(config, s.name) for s in config.sinks])
        await embedded.open()
        try:
            embedded_bus = EmbeddedBus(embedded)
            if reloader is not None:
                reloader.add(_Retention(embedded))
            await _serve(config, embedded_bus, embedded_bus.publisher(), reloader)
        finally:
            await embedded.close()
        return
    from siemgate.bus.spooling import opened_spooling_publisher
    from siemgate.forwarders.service import kafka_bus

    bus = kafka_bus(config)  # checks bus.kafka
    assert config.bus.kafka is not None
    async with opened_spooling_publisher(config.bus.kafka, config.bus.spool) as spooling:
        await _serve(config, bus, spooling, reloader)


async def _serve(config: Config, bus: Bus, publisher: Publisher, reloader: ConfigReloader | None) -> None:
    # One loop for both halves: the ingest's requests go first (siemgate.foreground).
    foreground = Foreground()
    service = ForwardService(config, bus=bus, foreground=foreground)
    app = create_app(config, publisher, foreground=foreground, health=service.health)
    async with running_admin(config.admin, StatusSources("run", ingest=app.state.context, forward=service)):
        await _serve_started(config, app, service, reloader)


async def _serve_started(config: Config, app: Starlette, service: ForwardService,
                         reloader: ConfigReloader | None) -> None:
    registry = app.state.context.metrics.registry
    registry.register(Exposed(service.metrics.registry))
    async with reloading(reloader, registry, app.state.webhooks, service):
        await _serve_both(config, app, service)


async def _serve_both(config: Config, app: Starlette, service: ForwardService) -> None:
    server = Server(uvicorn_config_for(config, app))
    forwarding = asyncio.create_task(service.run(), name="forwarders")

    def forwarders_ended(task: asyncio.Task[None]) -> None:
        if not server.should_exit:
            log.error("the forwarders stopped; stopping the ingest")
            server.should_exit = True

    forwarding.add_done_callback(forwarders_ended)
    tune_gc()
    try:
        await server.serve()
    finally:
        forwarding.remove_done_callback(forwarders_ended)
        service.request_stop()
        await forwarding  # raises ForwarderFailed if a forwarder died of a bug
