"""The composition root: builds every long-running process from its config.

    serve_run      `siemgate run`: the ingest and every sink's forwarder in one process
    serve_ingest   `siemgate ingest`: the HTTP ingest, in front of Kafka (with its spool)
    serve_forward  `siemgate forward`: the forwarders and their /healthz, /readyz, /metrics

This is the only module that wires the layers together (docs/ARCHITECTURE.md): the bus comes
from `open_bus` (siemgate.bus.open), the ingest app from siemgate.ingest, the forward
service from siemgate.forwarders, the status page from siemgate.admin (`_admin`: the one
place its listener is started, handed the live ingest context and forward service as its
status sources and the ingest's link requester for its Confirm button), and hot reload from
siemgate.reload. `siemgate.cli` is the command-line front that calls these.

`siemgate run`: on the embedded bus (the default) this is the whole pipeline on one machine:
the ingest answers 200 once a batch is fsync'd to the log, the forwarders read the log, one
cursor per sink, and records are deleted once every sink has passed them. With
`bus.type: kafka` it runs the same two halves against Kafka (what `siemgate ingest` and
`siemgate forward` run as separate Deployments). One HTTP listener (`listen`): the webhooks,
/healthz, /readyz and /metrics, the latter with the forwarders' metrics too; with `metrics:`
configured, /metrics moves to a listener of its own (`_metrics_listener`, `siemgate ingest`
too), and the webhook port answers it 404. Shutdown on
SIGTERM/SIGINT: the ingest stops taking requests and answers those in flight, then each
forwarder finishes its batch within `forward.drain_timeout_seconds` and commits, then the
log is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence

from starlette.applications import Starlette
from starlette.routing import BaseRoute

from siemgate.admin.server import AdminListener, running_admin
from siemgate.admin.sources import ForwardSource, IngestSource, LinkResult
from siemgate.admin.status import Process, StatusSources
from siemgate.bus.embedded import EmbeddedLog
from siemgate.bus.open import open_bus
from siemgate.config import Config, ConfirmationConfig
from siemgate.errors import ConfirmationRefused, MetricsListenError
from siemgate.foreground import Foreground
from siemgate.forwarders.runtime import group_id
from siemgate.forwarders.service import ForwardService, run_with_endpoints, selected_sinks
from siemgate.gc_tuning import tune_gc
from siemgate.ingest.app import create_app
from siemgate.ingest.confirmation_fetch import request_link
from siemgate.ingest.server import ingest_server
from siemgate.listeners import (
    ConnectionLimits,
    ListenerCollector,
    ListenerStats,
    SideServer,
    bind_listener,
    side_config,
)
from siemgate.metrics import Exposed
from siemgate.reload import ConfigReloader, reloading

log = logging.getLogger("siemgate.run")


async def request_confirmation_link(url: str, confirmation: ConfirmationConfig) -> LinkResult:
    """The status page's Confirm button: the ingest's SSRF-guarded request, operator-approved."""
    try:
        result = await request_link(url, confirmation, operator_approved=True)
    except ConfirmationRefused as exc:
        return LinkResult(refused=exc.reason)
    return LinkResult(status=result.status)


def status_sources(process: Process, *, ingest: IngestSource | None = None,
                   forward: ForwardSource | None = None) -> StatusSources:
    """What the status page of this process reads, and what its Confirm button requests with."""
    return StatusSources(process, ingest=ingest, forward=forward, confirm_link=request_confirmation_link)


def _admin(config: Config, process: Process, listeners: ListenerCollector, *, ingest: IngestSource | None = None,
           forward: ForwardSource | None = None) -> contextlib.AbstractAsyncContextManager[AdminListener | None]:
    """The status page while the block runs, when `admin` is configured (bound before the rest
    starts): the one place the admin listener is started. Its connections are counted by
    `listeners` (on the process's /metrics)."""
    return running_admin(config.admin, status_sources(process, ingest=ingest, forward=forward), listeners)


# -- /metrics on a listener of its own (`metrics:`)


@contextlib.asynccontextmanager
async def _metrics_listener(config: Config, app: Starlette) -> AsyncIterator[None]:
    """The ingest app's /metrics on `metrics.host:metrics.port` while the block runs (bound
    before the rest starts: a port in use stops the start with one line); nothing without
    `metrics:` (the app serves /metrics on the webhook port then). It outlives the ingest's
    shutdown drain, which runs inside the block."""
    if config.metrics is None:
        yield
        return
    sock = bind_listener(config.metrics.host, config.metrics.port, key="metrics", error=MetricsListenError, backlog=64)
    route: BaseRoute = app.state.metrics_route
    stats = ListenerStats("metrics")
    app.state.context.metrics.listeners.add(stats)
    server = SideServer(side_config(Starlette(routes=[route]), ConnectionLimits(max_connections=64), stats, 5))
    serving = asyncio.create_task(server.serve(sockets=[sock]), name="metrics-server")
    host, port = sock.getsockname()[:2]
    log.info(f"/metrics on http://{host}:{port}/metrics", extra={"metrics_port": port})
    try:
        yield
    finally:
        server.should_exit = True
        await asyncio.gather(serving, return_exceptions=True)
        sock.close()


# -- siemgate run


class _Retention:
    """Hot reload on the embedded bus: retention follows the configured sinks."""

    def __init__(self, embedded: EmbeddedLog) -> None:
        self._log = embedded

    async def apply_config(self, config: Config) -> None:
        self._log.retention_groups = tuple(group_id(config, s.name) for s in config.sinks)


async def serve_run(config: Config, reloader: ConfigReloader | None = None) -> None:
    """Run until SIGTERM/SIGINT; raises ForwarderFailed if a forwarder died of a bug."""
    selected_sinks(config, ())  # a config without a usable sink fails before anything starts
    groups = [group_id(config, s.name) for s in config.sinks]
    async with open_bus(config, role="run", retention_groups=groups) as opened:
        assert opened.ingest_publisher is not None  # role "run" always has one
        if opened.log is not None and reloader is not None:
            reloader.add(_Retention(opened.log))
        # One loop for both halves: the ingest's requests go first (siemgate.foreground).
        foreground = Foreground()
        service = ForwardService(config, bus=opened.bus, foreground=foreground)
        app = create_app(config, opened.ingest_publisher, foreground=foreground, health=service.health)
        async with _admin(config, "run", app.state.context.metrics.listeners, ingest=app.state.context,
                          forward=service), \
                _metrics_listener(config, app):
            registry = app.state.context.metrics.registry
            stalled = app.state.context.metrics.stalled
            if stalled is not None:  # the spool drainer's siemgate_stalled: one family with the forwarders'
                stalled.also.append(service.metrics.stalled.collect)
                registry.register(Exposed(service.metrics.registry, skip=frozenset({"siemgate_stalled"})))
            else:
                registry.register(Exposed(service.metrics.registry))
            async with reloading(reloader, registry, app.state.webhooks, service):
                await _serve_both(config, app, service)


async def _serve_both(config: Config, app: Starlette, service: ForwardService) -> None:
    server = ingest_server(config, app)
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


# -- siemgate ingest


async def serve_ingest(config: Config, reloader: ConfigReloader | None = None) -> None:
    """Serve the ingest until SIGTERM/SIGINT (Kafka only), and its status page when `admin` is configured."""
    async with open_bus(config, role="ingest") as opened:
        assert opened.ingest_publisher is not None  # role "ingest" always has one
        app = create_app(config, opened.ingest_publisher)
        async with _admin(config, "ingest", app.state.context.metrics.listeners, ingest=app.state.context), \
                _metrics_listener(config, app):
            server = ingest_server(config, app)
            async with reloading(reloader, app.state.context.metrics.registry, app.state.webhooks):
                tune_gc()
                await server.serve()


# -- siemgate forward


async def serve_forward(config: Config, sink_names: Sequence[str] = (), reloader: ConfigReloader | None = None
                        ) -> None:
    """Run the forwarders and their HTTP endpoints until SIGTERM/SIGINT; reload on SIGHUP or a
    changed config file when given a reloader. The status page too, when `admin` is configured."""
    selected_sinks(config, sink_names)  # an unknown sink name is reported before the bus
    async with open_bus(config, role="forward") as opened:
        service = ForwardService(config, sink_names, bus=opened.bus)
        listeners = ListenerCollector()
        service.metrics.registry.register(listeners)
        async with _admin(config, "forward", listeners, forward=service), \
                reloading(reloader, service.metrics.registry, service):
            await run_with_endpoints(config, service, listeners)
