"""`siemgate forward`: every configured sink's forwarder in one process, plus the
forwarders' /healthz, /readyz and /metrics on `forward.listen`.

Lifecycle: connect to Kafka (retrying until it answers), make sure the topics and the
dead-letter topics exist, start each forwarder, run until SIGTERM/SIGINT, then give each
forwarder `forward.drain_timeout_seconds` to confirm its batch in flight and commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
from collections.abc import Iterator, Sequence

import uvicorn
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from siemgate.bus.kafka import client_options, ensure_topics
from siemgate.config import Config, KafkaConfig, SinkConfig
from siemgate.errors import BusUnavailable, ConfigError, SiemgateError
from siemgate.forwarders.deadletter import dlq_topic
from siemgate.forwarders.metrics import ForwardMetrics
from siemgate.forwarders.normalize import Normalizer
from siemgate.forwarders.runtime import SinkForwarder
from siemgate.forwarders.sinks.registry import create_sink

log = logging.getLogger("siemgate.forward")


class ForwarderFailed(SiemgateError):
    """A forwarder stopped on an unexpected error (a bug): the process exits non-zero."""


def selected_sinks(config: Config, names: Sequence[str]) -> list[SinkConfig]:
    sinks = [s for s in config.sinks if not names or s.name in names]
    unknown = set(names) - {s.name for s in config.sinks}
    if unknown:
        known = ", ".join(s.name for s in config.sinks) or "none"
        raise ConfigError("sinks", f"no sink named {', '.join(sorted(unknown))} (configured: {known})")
    missing = [s for s in sinks if s.settings is None]
    if missing:
        raise ConfigError("sinks", f"sink type {missing[0].type} ({missing[0].name}) is not available in this "
                                   "version; remove it or use --sink to choose the others")
    if not sinks:
        raise ConfigError("sinks", "no sink to forward to: configure at least one")
    return sinks


async def connect_producer(kafka: KafkaConfig, stop: asyncio.Event) -> AIOKafkaProducer | None:
    """The dead-letter producer, once Kafka answers; None if asked to stop first."""
    delay = 0.5
    while not stop.is_set():
        producer = AIOKafkaProducer(**client_options(kafka), acks="all", enable_idempotence=kafka.idempotence,
                                    compression_type=None if kafka.compression == "none" else kafka.compression,
                                    max_request_size=kafka.max_request_bytes)
        try:
            await producer.start()
            return producer
        except (KafkaError, OSError) as exc:
            await producer.stop()
            log.warning("Kafka is not reachable; forwarders wait for it",
                        extra={"bootstrap_servers": list(kafka.servers), "error": str(exc)})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay * random.uniform(0.5, 1.0))
        delay = min(delay * 2, 15.0)
    return None


class ForwardService:
    def __init__(self, config: Config, sink_names: Sequence[str] = ()) -> None:
        if config.bus.type != "kafka" or config.bus.kafka is None:
            raise ConfigError("bus.type", "`siemgate forward` needs bus.type: kafka in this version")
        self.config = config
        self.kafka = config.bus.kafka
        self.sinks = selected_sinks(config, sink_names)
        self.metrics = ForwardMetrics()
        self.normalizer = Normalizer(config.normalize)
        self.forwarders: list[SinkForwarder] = []
        self.stop_requested = asyncio.Event()
        self.ready = False

    def request_stop(self) -> None:
        self.stop_requested.set()

    async def run(self) -> None:
        producer = await connect_producer(self.kafka, self.stop_requested)
        if producer is None:
            return
        try:
            if self.kafka.topics.create:
                try:
                    await ensure_topics(self.kafka, [dlq_topic(self.kafka.topic_prefix, s.name) for s in self.sinks])
                except (KafkaError, BusUnavailable) as exc:
                    log.error("cannot create topics; continuing with what exists", extra={"error": str(exc)})
            for sink_config in self.sinks:
                forwarder = SinkForwarder(
                    config=self.config, kafka=self.kafka, settings=sink_config.settings,
                    sink=create_sink(sink_config.settings), producer=producer, metrics=self.metrics,
                    normalizer=self.normalizer,
                )
                await forwarder.start()
                self.forwarders.append(forwarder)
            self.ready = True
            tasks = [asyncio.create_task(f.run(), name=f"forward-{f.name}") for f in self.forwarders]
            stopper = asyncio.create_task(self.stop_requested.wait())
            await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
            failed = [task for task in tasks if task.done() and task.exception() is not None]
            for task in failed:
                log.error("a forwarder failed; stopping the others (their batches are committed)",
                          exc_info=task.exception())
            drain = self.config.forward.drain_timeout_seconds
            for forwarder in self.forwarders:
                forwarder.stop(drain)
            done, late = await asyncio.wait(tasks, timeout=drain + 5)
            for task in late:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            stopper.cancel()
            if failed:
                raise ForwarderFailed(f"{len(failed)} forwarder(s) failed; see the log") from failed[0].exception()
        finally:
            self.ready = False
            for forwarder in self.forwarders:
                await forwarder.close()
            await producer.stop()

    def app(self) -> Starlette:
        async def healthz(request: Request) -> Response:
            return JSONResponse({"status": "ok"})

        async def readyz(request: Request) -> Response:
            if self.ready:
                return JSONResponse({"status": "ready"})
            return JSONResponse({"status": "not ready"}, status_code=503)

        async def metrics(request: Request) -> Response:
            return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)

        return Starlette(routes=[Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", metrics)])


class _EndpointServer(uvicorn.Server):
    """uvicorn for the endpoints only: the service owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve_forward(config: Config, sink_names: Sequence[str] = ()) -> None:
    """Run the forwarders and their HTTP endpoints until SIGTERM/SIGINT."""
    service = ForwardService(config, sink_names)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, service.request_stop)
    listen = config.forward.listen
    server = _EndpointServer(uvicorn.Config(service.app(), host=listen.host, port=listen.port, log_config=None,
                                            access_log=False, lifespan="off"))
    http = asyncio.create_task(server.serve())
    try:
        await service.run()
    finally:
        server.should_exit = True
        await http
