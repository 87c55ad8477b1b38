"""The status snapshot: what this process knows, for the page and `GET /api/status`.

`siemgate run` knows everything; `siemgate ingest` its integrations and its spool;
`siemgate forward` its sinks. Each part is read from the live objects (the ingest's context,
the forward service), so a hot reload shows at once. Nothing here changes them.

- Integrations: the confirmation state (from `state_dir`, re-read each time: `siemgate
  confirm` may have run in another process), and the last hour's activity (the ingest's
  `ActivityTracker`).
- Sinks: up/down, the delivery rate over the last minute (`RateMeter`, from the forwarders'
  counters), the lag per severity, the dead-lettered count since the process started.
- The spool (`siemgate ingest` / `run` on Kafka): events and bytes held, against its
  maximum; on the embedded bus, the log's bytes on disk against `bus.max_bytes`. Both with the
  free space of their file system and the batches refused because the store was full, from
  the storage stats the bus exposes (`StorageReporter`, the `siemgate_storage_*` metrics).
"""

from __future__ import annotations

import collections
import hashlib
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from siemgate import __version__
from siemgate.admin.sources import ForwardSource, IngestSource, LinkRequester
from siemgate.bus.base import SpoolReporter
from siemgate.bus.embedded import disk_usage
from siemgate.bus.sqlite_writer import StorageReporter
from siemgate.config import Config
from siemgate.errors import SiemgateError
from siemgate.record import SEVERITIES

Process = Literal["run", "ingest", "forward"]
IntegrationState = Literal["pending", "confirmed", "no_link"]
SinkState = Literal["up", "down", "starting"]

RATE_WINDOW_SECONDS = 60.0


def link_id(url: str) -> str:
    """A short digest of a confirmation link: the Confirm form names the link the operator saw,
    so that a newer link arriving meanwhile is never requested unseen."""
    return hashlib.sha256(url.encode("utf-8")).hexdigest()[:24]


def iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class IntegrationStatus:
    name: str
    path: str
    confirmation_mode: str
    state: IntegrationState
    link: str | None
    link_id: str | None
    link_received_at: str | None
    confirmed_at: str | None
    confirmed_via: str | None
    last_error: str | None
    last_batch_at: str | None
    last_batch_age_seconds: float | None
    batches_last_hour: int
    events_last_hour: int
    rejections_last_hour: int
    # Status code -> requests, over the last hour (401: a wrong key, 400: a bad body ...).
    rejections_by_code: dict[str, int]


@dataclass(frozen=True, slots=True)
class SinkStatus:
    name: str
    type: str
    state: SinkState
    # Events the sink confirmed per second, over the last minute; None until two samples exist.
    rate_per_second: float | None
    lag: dict[str, int]
    lag_total: int
    dead_lettered: int
    delivered: int
    filtered: int


@dataclass(frozen=True, slots=True)
class SpoolStatus:
    kind: Literal["spool", "embedded_log"]
    path: str
    # The spool: logical bytes and events held; the embedded log: its bytes on disk (segments,
    # index, WAL; events unknown).
    bytes: int
    events: int | None
    # The cap (bus.spool.max_bytes, bus.max_bytes); None: none known.
    max_bytes: int | None
    # True while batches go to the spool instead of Kafka.
    active: bool | None
    # Free space of the file system holding it; None: not measured yet (or not known).
    free_bytes: int | None = None
    # Batches answered 503 because the store was full, since the process started.
    refused_full: int = 0


@dataclass(frozen=True, slots=True)
class Status:
    generated_at: str
    version: str
    process: Process
    hostname: str
    # None: this process has no ingest (`siemgate forward`).
    integrations: list[IntegrationStatus] | None
    # None: this process has no forwarders (`siemgate ingest`).
    sinks: list[SinkStatus] | None
    spool: SpoolStatus | None
    state_error: str | None = None


@dataclass(frozen=True, slots=True)
class _Sample:
    at: float
    totals: dict[str, int]


class RateMeter:
    """Events per second over the last `window` seconds, from samples of monotonic counters.

    Samples are kept for the window only (and at most one per second): bounded."""

    def __init__(self, window: float = RATE_WINDOW_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self._clock = clock
        self._samples: collections.deque[_Sample] = collections.deque()

    def observe(self, totals: Mapping[str, int]) -> None:
        now = self._clock()
        if self._samples and now - self._samples[-1].at < 1.0:
            return
        self._samples.append(_Sample(now, dict(totals)))
        # Keep one sample at or before the window's start: the rate covers the whole window.
        while len(self._samples) >= 2 and self._samples[1].at <= now - self.window:
            self._samples.popleft()

    def rate(self, name: str, current: int) -> float | None:
        if not self._samples:
            return None
        base = self._samples[0]
        elapsed = self._clock() - base.at
        if elapsed < 1.0:
            return None
        return max(0, current - base.totals.get(name, 0)) / elapsed

    def __len__(self) -> int:
        return len(self._samples)


@dataclass
class StatusSources:
    """The live parts of this process the snapshot reads (siemgate.admin.sources), passed by
    the composition root (siemgate.serve)."""

    process: Process
    ingest: IngestSource | None = None
    forward: ForwardSource | None = None
    meter: RateMeter = field(default_factory=RateMeter)
    clock: Callable[[], float] = time.time
    # What the Confirm button requests a link with (the root passes the ingest's); None: the
    # button answers 404, as in a process without an ingest.
    confirm_link: LinkRequester | None = None

    @property
    def config(self) -> Config:
        if self.ingest is not None:
            return self.ingest.config
        assert self.forward is not None, "a status needs the ingest or the forwarders"
        return self.forward.config

    def sample_rates(self) -> None:
        """Record the sinks' confirmed-event counters (a background task calls this every few seconds)."""
        if self.forward is not None:
            readings = self.forward.metrics.read()
            self.meter.observe({name: r.delivered + r.duplicate for name, r in readings.items()})


async def build_status(sources: StatusSources) -> Status:
    now = sources.clock()
    integrations = None
    state_error = None
    if sources.ingest is not None:
        try:
            # `siemgate confirm` (another process) may have changed a state.
            await sources.ingest.store.load()
        except (OSError, SiemgateError) as exc:
            state_error = f"cannot read the confirmation state: {exc}"
        integrations = _integrations(sources.ingest, now)
    sinks = None
    if sources.forward is not None:
        sources.sample_rates()
        sinks = _sinks(sources.forward, sources.meter)
    return Status(
        generated_at=iso(now) or "", version=__version__, process=sources.process, hostname=socket.gethostname(),
        integrations=integrations, sinks=sinks, spool=_spool(sources), state_error=state_error,
    )


def _integrations(context: IngestSource, now: float) -> list[IntegrationStatus]:
    out = []
    activity = context.metrics.activity
    for integration in context.config.integrations:
        entry = context.store.entry(integration.name)
        seen = activity.summary(integration.name)
        state: IntegrationState = "no_link" if entry is None else entry.state
        out.append(IntegrationStatus(
            name=integration.name, path=integration.path, confirmation_mode=integration.confirmation.mode,
            state=state,
            link=entry.url if entry else None,
            link_id=link_id(entry.url) if entry else None,
            link_received_at=entry.received_at if entry else None,
            confirmed_at=entry.confirmed_at if entry else None,
            confirmed_via=entry.confirmed_via if entry else None,
            last_error=entry.last_error if entry else None,
            last_batch_at=iso(seen.last_batch_at),
            last_batch_age_seconds=None if seen.last_batch_at is None else max(0.0, now - seen.last_batch_at),
            batches_last_hour=seen.batches, events_last_hour=seen.events, rejections_last_hour=seen.rejections,
            rejections_by_code=seen.rejections_by_code,
        ))
    return out


def _sinks(service: ForwardSource, meter: RateMeter) -> list[SinkStatus]:
    readings = service.metrics.read()
    out = []
    for sink in service.sinks:
        reading = readings.get(sink.name)
        running = sink.name in service.forwarders
        state: SinkState = "starting"
        if running and reading is not None and reading.up is not None:
            state = "up" if reading.up else "down"
        lag: dict[str, int] = {s: (reading.lag.get(s, 0) if reading else 0) for s in SEVERITIES}
        confirmed = (reading.delivered + reading.duplicate) if reading else 0
        out.append(SinkStatus(
            name=sink.name, type=sink.type, state=state, rate_per_second=meter.rate(sink.name, confirmed),
            lag=lag, lag_total=sum(lag.values()), dead_lettered=reading.dead_lettered if reading else 0,
            delivered=confirmed, filtered=reading.filtered if reading else 0,
        ))
    return out


def _spool(sources: StatusSources) -> SpoolStatus | None:
    config = sources.config
    ingest = sources.ingest
    publisher = ingest.publisher if ingest is not None else None
    storage = publisher.storage_stats() if isinstance(publisher, StorageReporter) else None
    free = storage.free_bytes if storage is not None else None
    refused = storage.refused_full if storage is not None else 0
    if ingest is not None and isinstance(ingest.publisher, SpoolReporter):
        stats = ingest.publisher.spool_stats()
        cap = storage.limit_bytes if storage is not None and storage.limit_bytes else config.bus.spool.max_bytes
        return SpoolStatus(kind="spool", path=config.bus.spool.path, bytes=stats.bytes, events=stats.events,
                           max_bytes=cap, active=stats.active, free_bytes=free, refused_full=refused)
    if config.bus.type == "embedded" and sources.process == "run":
        if storage is not None and storage.store == "log":
            return SpoolStatus(kind="embedded_log", path=config.bus.path, bytes=storage.bytes, events=None,
                               max_bytes=storage.limit_bytes or None, active=None, free_bytes=free,
                               refused_full=refused)
        # No live log to ask (not open yet): its size on disk, the configured cap.
        return SpoolStatus(kind="embedded_log", path=config.bus.path, bytes=disk_usage(Path(config.bus.path)),
                           events=None, max_bytes=config.bus.max_bytes or None, active=None)
    return None
