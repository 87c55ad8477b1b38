"""`siemgate forward`: every configured sink's forwarder in one process, plus the
forwarders' /healthz, /readyz and /metrics on `forward.listen`. (`siemgate run` runs the same
service beside the ingest, on the embedded bus.) The processes are built by siemgate.serve,
which passes the bus (siemgate.bus.open).

Lifecycle: connect to the bus (retrying until it answers), make sure the topics and the
dead-letter topics exist, start each forwarder, run until asked to stop, then give each
forwarder `forward.drain_timeout_seconds` to confirm its batch in flight and commit.

Meanwhile the progress watchdog (siemgate.forwarders.watchdog) judges every forwarder every
few seconds; `health()` lists the stalled ones and /healthz fails while there are any.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
from collections.abc import Iterator, Sequence

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from siemgate.bus.base import Bus, Publisher
from siemgate.config import Config, SinkConfig
from siemgate.errors import BusError, ConfigError, ForwarderFailed, ReloadFailed
from siemgate.foreground import Foreground
from siemgate.forwarders.deadletter import dlq_topic
from siemgate.forwarders.metrics import ForwardMetrics
from siemgate.forwarders.normalize import Normalizer
from siemgate.forwarders.runtime import SinkForwarder
from siemgate.forwarders.sinks.registry import create_sink
from siemgate.forwarders.watchdog import Watchdog
from siemgate.gc_tuning import tune_gc
from siemgate.listeners import ConnectionLimits, ListenerCollector, ListenerStats, bounded_protocol

log = logging.getLogger("siemgate.forward")

# Stopping takes at most `forward.drain_timeout_seconds` + STOP_SLACK_SECONDS for the batches in
# flight and their commits, then CLOSE_SECONDS for the bus clients: within the + 5 s of the
# grace period the chart gives a forwarder even while Kafka cannot answer (a rollout during an
# outage). What was delivered and not committed then is delivered again (at least once).
STOP_SLACK_SECONDS = 2.0
CLOSE_SECONDS = 2.0


def selected_sinks(config: Config, names: Sequence[str]) -> list[SinkConfig]:
    sinks = [s for s in config.sinks if not names or s.name in names]
    unknown = set(names) - {s.name for s in config.sinks}
    if unknown:
        known = ", ".join(s.name for s in config.sinks) or "none"
        raise ConfigError("sinks", f"no sink named {', '.join(sorted(unknown))} (configured: {known})")
    if not sinks:
        raise ConfigError("sinks", "no sink to forward to: configure at least one")
    return sinks


async def wait_ready(publisher: Publisher, stop: asyncio.Event) -> bool:
    """Wait until the bus accepts writes (dead letters need it); False if asked to stop first."""
    delay = 0.25
    while not stop.is_set():
        if await publisher.ready():
            return True
        if delay >= 1.0:
            log.warning("the bus is not reachable; forwarders wait for it")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay * random.uniform(0.5, 1.0))
        delay = min(delay * 2, 15.0)
    return False


class ForwardService:
    def __init__(self, config: Config, sink_names: Sequence[str] = (), *, bus: Bus,
                 foreground: Foreground | None = None) -> None:
        self.config = config
        self.foreground = foreground
        self.sink_names = tuple(sink_names)
        self.sinks = selected_sinks(config, sink_names)
        self.bus = bus
        self.metrics = ForwardMetrics()
        self.normalizer = Normalizer(config.normalize)
        self.forwarders: dict[str, SinkForwarder] = {}
        self.stop_requested = asyncio.Event()
        self.ready = False
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._changed = asyncio.Event()
        self._publisher: Publisher | None = None
        self._reloading = asyncio.Lock()
        self.watchdog = Watchdog(lambda sink, value: self.metrics.stalled.labels(sink).set(value))

    def health(self) -> list[dict[str, object]]:
        """The stalled forwarders (empty: healthy), for /healthz."""
        return [stall.describe() for name, stall in self.watchdog.stalls.items() if name in self.forwarders]

    def request_stop(self) -> None:
        self.stop_requested.set()

    async def run(self) -> None:
        publisher = self._publisher = self.bus.publisher()
        await publisher.start()
        try:
            if not await wait_ready(publisher, self.stop_requested):
                return
            await self._ensure_dlq_topics(self.sinks)
            for sink_config in self.sinks:
                await self._start_forwarder(sink_config)
            self.ready = True
            watching = asyncio.create_task(self._watch(), name="forward-watchdog")
            try:
                await self._supervise()
            finally:
                watching.cancel()
                await asyncio.gather(watching, return_exceptions=True)
        finally:
            self.ready = False
            await self._close(publisher)

    async def _close(self, publisher: Publisher) -> None:
        """Close every forwarder (their consumers at once) and the publisher, the bus clients
        within CLOSE_SECONDS: a broker that cannot answer (partitioned away) would hold them
        for its request timeouts (a consumer's group leave, a producer's flush), past the grace
        period. Nothing owed is lost by that: a forwarder commits only what is delivered, and
        its dead letters before committing them."""
        forwarders = list(self.forwarders.values())
        try:
            async with asyncio.timeout(CLOSE_SECONDS):
                await asyncio.gather(*(f.close_bus() for f in forwarders))
                await publisher.stop()
        except TimeoutError:
            log.warning(f"the bus did not answer while closing (Kafka away?) within {CLOSE_SECONDS:g} s: closed "
                        "without it; Kafka drops this process's group members after their session timeout")
        for forwarder in forwarders:
            await forwarder.close()

    async def _watch(self) -> None:
        """Judge the forwarders' progress every few seconds (a tenth of the stall timeout, at
        most 5 s). While the bus cannot be reached at all, no forwarder is to blame."""
        assert self._publisher is not None
        while True:
            timeout = self.config.forward.stall_timeout_seconds
            await asyncio.sleep(min(5.0, max(0.2, timeout / 10)))
            progress = {name: forwarder.progress for name, forwarder in self.forwarders.items()}
            try:
                try:
                    reachable = await asyncio.wait_for(self._publisher.ready(), 5.0)
                except TimeoutError:
                    reachable = False
                if reachable:
                    self.watchdog.check(progress, timeout)
                else:
                    self.watchdog.excuse(progress)
            except Exception:  # a watchdog that dies quietly is worse than none
                log.exception("the forwarders' watchdog failed to judge them; trying again")

    async def _ensure_dlq_topics(self, sinks: Sequence[SinkConfig]) -> None:
        prefix = self.config.bus.topic_prefix
        try:
            await self.bus.ensure_topics([dlq_topic(prefix, s.name) for s in sinks])
        except BusError as exc:
            log.error("cannot create topics; continuing with what exists", extra={"error": str(exc)})

    async def _start_forwarder(self, sink_config: SinkConfig) -> None:
        assert self._publisher is not None
        forwarder = SinkForwarder(
            config=self.config, bus=self.bus, settings=sink_config.settings,
            sink=create_sink(sink_config.settings), publisher=self._publisher, metrics=self.metrics,
            normalizer=self.normalizer, foreground=self.foreground,
        )
        await forwarder.start()
        self.forwarders[forwarder.name] = forwarder
        self._tasks[forwarder.name] = asyncio.create_task(forwarder.run(), name=f"forward-{forwarder.name}")
        self._changed.set()

    async def _supervise(self) -> None:
        """Until asked to stop or a forwarder fails; then drain every forwarder."""
        stopper = asyncio.create_task(self.stop_requested.wait())
        failed: list[asyncio.Task[None]] = []
        try:
            while not self.stop_requested.is_set():
                self._changed.clear()
                changed = asyncio.create_task(self._changed.wait())
                await asyncio.wait([*self._tasks.values(), stopper, changed], return_when=asyncio.FIRST_COMPLETED)
                changed.cancel()
                failed = [t for t in self._tasks.values() if t.done() and (t.cancelled() or t.exception())]
                if failed:
                    for task in failed:
                        log.error("a forwarder failed; stopping the others (their batches are committed)",
                                  exc_info=None if task.cancelled() else task.exception())
                    break
            async with self._reloading:
                await self._stop(list(self.forwarders))
        finally:
            stopper.cancel()
        if failed:
            first = failed[0]
            cause = None if first.cancelled() else first.exception()
            raise ForwarderFailed(f"{len(failed)} forwarder(s) failed; see the log") from cause

    async def _stop(self, names: Sequence[str]) -> None:
        """Stop these forwarders: each confirms its batch in flight and commits within the drain timeout."""
        drain = self.config.forward.drain_timeout_seconds
        tasks = [self._tasks.pop(name) for name in names if name in self._tasks]
        for name in names:
            self.forwarders[name].stop(drain)
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=drain + STOP_SLACK_SECONDS)
            if late:
                log.warning(f"{len(late)} forwarder(s) did not finish within the drain timeout "
                            f"({drain:g} s + {STOP_SLACK_SECONDS:g} s): stopped; what they delivered and did not "
                            "commit is delivered again after the restart",
                            extra={"sinks": [t.get_name().removeprefix("forward-") for t in late]})
            for task in late:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def apply_config(self, config: Config) -> None:
        """Hot reload: sinks whose settings changed get their new sink in place (same consumer
        group: no rebalance), added sinks start, removed sinks drain and stop."""
        async with self._reloading:
            if not self.ready or self.stop_requested.is_set():
                raise ReloadFailed("the forwarders are not running yet (or stopping); the next change applies")
            wanted = {s.name: s for s in config.sinks if not self.sink_names or s.name in self.sink_names}
            normalizer = self.normalizer if config.normalize == self.config.normalize else Normalizer(config.normalize)
            current = {s.name: s for s in self.sinks}
            gone = [name for name, s in current.items() if name not in wanted or wanted[name].type != s.type]
            await self._stop(gone)
            for name in gone:
                await self.forwarders.pop(name).close()
                with contextlib.suppress(KeyError):
                    self.metrics.stalled.remove(name)
            self.config, self.normalizer = config, normalizer
            added = [s for name, s in wanted.items() if name not in self.forwarders]
            if added:
                await self._ensure_dlq_topics(added)
            for name, forwarder in self.forwarders.items():
                settings = wanted[name].settings
                if settings != forwarder.settings or normalizer is not forwarder.normalizer:
                    forwarder.replace(settings, create_sink(settings), normalizer)
            for sink_config in added:
                await self._start_forwarder(sink_config)
            self.sinks = list(wanted.values())
            if gone or added:
                log.info("sinks changed", extra={"stopped": gone, "started": [s.name for s in added]})
            self._changed.set()

    def app(self) -> Starlette:
        async def healthz(request: Request) -> Response:
            stalled = self.health()
            if stalled:
                return JSONResponse({"status": "stalled", "stalled": stalled}, status_code=503)
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


async def run_with_endpoints(config: Config, service: ForwardService, listeners: ListenerCollector | None = None
                             ) -> None:
    """`siemgate forward`'s main: the forwarders until SIGTERM/SIGINT, and their endpoints (on
    the bounded protocol, siemgate.listeners; counted by `listeners` when given)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, service.request_stop)
    listen = config.forward.listen
    stats = ListenerStats("forward")
    if listeners is not None:
        listeners.add(stats)
    server = _EndpointServer(uvicorn.Config(service.app(), host=listen.host, port=listen.port, log_config=None,
                                            access_log=False, lifespan="off", ws="none",
                                            http=bounded_protocol(ConnectionLimits(max_connections=64), stats)))
    http = asyncio.create_task(server.serve())
    tune_gc()  # measured: full collections were ~15% of a forwarder's CPU
    try:
        await service.run()
    finally:
        server.should_exit = True
        await http
