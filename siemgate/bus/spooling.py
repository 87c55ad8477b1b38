"""The ingest's publisher in Kafka mode: Kafka first, the local spool when Kafka is late or away.

The sender never resends, so a 200 must hold through broker outages, crashes and restarts,
and a 503 is lost data. Two modes:

- direct: a batch goes to Kafka. If Kafka has not acknowledged it within
  `bus.spool.ack_deadline_seconds`, or cannot take it at all (not connected, refused), the
  batch is written to the spool (fsync'd) and answered 200. The ingest is now spooling.
- spooling: while the spool holds records, every new batch is appended behind them, so the
  order of the events within a severity stays what the sender sent. A drainer task replays
  the spool to Kafka in arrival order, a chunk at a time, and deletes only the rows Kafka
  acknowledged (a crash in between sends them again: at least once). When the spool is empty
  and no append is under way, the drainer switches back to direct mode, checking and
  flipping without an `await` in between, so no append can slip behind the switch.
- the handover: a sender that posts its next batch as soon as the last is answered would
  keep one batch in the spool forever. So once Kafka took the previous chunk quickly (within
  half the ack deadline) and one chunk is left, new batches wait (at most the ack deadline)
  while the drainer sends it and switches to direct; they then go to Kafka directly. If that
  takes longer, they are spooled behind it, as before.

A non-empty spool at start (after SIGKILL, a crash or a restart) means spooling mode; the
drainer empties it once Kafka is reachable. On a failed drain it backs off (exponential,
jittered, capped). With `topics.create`, the drainer makes sure the topics exist before its
first chunk after any failure: a broker that came back empty has none (Tansu keeps topics in
memory, and acknowledges records for a topic it does not have while dropping them).

Stopping (SIGTERM): `begin_stopping` (at the signal) makes a failed drain retry within a
second; `stop` (once the last request is answered) lets the drainer go on for up to
`bus.spool.drain_timeout_seconds`, then halts it between two spool writes (never in the
middle of a delete, so the count it reports is the file's) and closes the spool: what is
left stays there, fsync'd, for the next start on this path or `siemgate spool drain`.
`abandon_drain` (a second signal) ends the drain at once. The outcome (empty, drained,
timeout, unreachable) is logged and counted (`siemgate_shutdown_drain_total`).

503 only when both fail: the spool is full or cannot be written AND Kafka does not take the
batch either (a full spool makes a spooling ingest try Kafka directly before refusing; order
within a severity may then differ, which beats losing the batch). Such a refusal raises
BusUnavailable, is counted and logged as data loss risk.

The drainer's progress watchdog (`siemgate.watchdog`, as the forwarders'): while the spool
holds events and no chunk was acknowledged by Kafka for `bus.spool.stall_timeout_seconds`,
the drainer is stalled: `stalls()` lists it (the ingest's /healthz fails, so the liveness
probe restarts the process; the spool is on its volume and is sent at the next start),
`stalled()` gives `siemgate_stalled{component="spool_drainer"}`, and one ERROR log says what
the drainer was waiting on (produce, topic check, backoff after a failure) and the last
problem Kafka reported. Failed attempts are not progress here: a drainer whose producer no
longer gets answers (a half-open connection after a partition, a client whose metadata task
died: finding 4) fails every attempt, and a restart is what clears it. But Kafka itself away
fails every attempt too, and restarting every ingest replica at once cannot bring it back (and
would refuse webhooks while they restart): so before a drainer whose attempts fail is reported
stalled, a fresh Kafka client probes the cluster (`probe_kafka`). Unreachable for a fresh
client too: the drainer is excused (its clock starts again) and a WARNING says so; the spool
alerts (SiemgateSpoolFilling, storage near its cap) speak for the outage. Reachable: the stall
stands.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from aiokafka.errors import KafkaError

from siemgate.bus.kafka import KafkaPublisher, ensure_topics, probe_kafka
from siemgate.bus.spool import Spool, Spooled, SpoolStats
from siemgate.bus.sqlite_writer import StorageStats
from siemgate.config import KafkaConfig, SpoolConfig
from siemgate.errors import BusUnavailable, RecordTooLarge, SiemgateError, SpoolError, SpoolFull
from siemgate.record import Record
from siemgate.watchdog import Progress, Stall, Watchdog, iso

log = logging.getLogger("siemgate.bus.spooling")

# One drain step: this many records (or bytes) per KafkaPublisher.publish.
DRAIN_CHUNK_RECORDS = 2000
DRAIN_CHUNK_BYTES = 4 * 1024 * 1024
# Backoff between failed drain attempts: from the first value, doubling, to the cap; each
# delay drawn between half and all of it.
DRAIN_BACKOFF_SECONDS = (0.2, 10.0)
# While stopping, a failed drain is retried at least this often (the grace period is short).
STOPPING_RETRY_SECONDS = 1.0

# The drainer's name in siemgate_stalled{component} and /healthz.
DRAINER = "spool_drainer"
# How long the watchdog's fresh Kafka client may take to reach the cluster.
PROBE_TIMEOUT_SECONDS: Final = 10.0
# What the drainer can be waiting on (the watchdog's ERROR log and /healthz name it).
PRODUCE = "produce to Kafka"
TOPIC_CHECK = "topic check on Kafka"
BACKOFF = "backoff after a failed drain"
SPOOL_WRITE = "spool write"

DrainOutcome = Literal["empty", "drained", "timeout", "unreachable"]
DRAIN_OUTCOMES: Final[tuple[DrainOutcome, ...]] = ("empty", "drained", "timeout", "unreachable")


@dataclass(frozen=True)
class DrainReport:
    """How the drain before exit ended.

    outcome: empty (nothing was held), drained (everything went to Kafka), timeout (Kafka took
    writes but time ran out, or a second signal ended it), unreachable (Kafka did not take the
    last attempt)."""

    outcome: DrainOutcome
    held: int  # events in the spool at the first stop signal (or at `stop`)
    drained: int  # events sent to Kafka since then (batches answered meanwhile included)
    left: int  # events in the spool at the end (kept in the file)
    seconds: float  # from the first stop signal to the end
    path: str
    ended_by: str = ""  # "", "timeout", "signal"
    kafka_problem: str | None = None


class _Halted(SiemgateError):
    """The drainer was asked to stop and has finished its spool write."""


@contextlib.asynccontextmanager
async def opened_spooling_publisher(kafka_config: KafkaConfig, spool_config: SpoolConfig) -> AsyncIterator[
        SpoolingPublisher]:
    """A SpoolingPublisher whose spool is open before anything is served: a spool that cannot be
    opened (unwritable, damaged, in use) stops the start with its reason (SpoolError), since
    serving without it would turn a Kafka outage into lost batches. Stopped on exit (the app's
    lifespan may have stopped it already; stopping twice is harmless)."""
    publisher = SpoolingPublisher(kafka_config, spool_config)
    await publisher.open()
    try:
        yield publisher
    finally:
        await publisher.stop()


class Backoff:
    """Exponential backoff with jitter and a cap."""

    def __init__(self, initial: float, cap: float) -> None:
        self.initial = initial
        self.cap = cap
        self.failures = 0

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.initial * 2 ** min(self.failures, 30))
        self.failures += 1
        return random.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.failures = 0


class SpoolingPublisher:
    """The `Publisher` of `siemgate ingest` on Kafka: a KafkaPublisher with a local spool."""

    def __init__(self, kafka_config: KafkaConfig, spool_config: SpoolConfig, *,
                 kafka: KafkaPublisher | None = None, spool: Spool | None = None,
                 probe: Callable[[], Awaitable[str | None]] | None = None) -> None:
        self._config = kafka_config
        # Whether a fresh client reaches Kafka (None) or why not: see the module's docstring.
        self._probe = probe or functools.partial(probe_kafka, kafka_config, PROBE_TIMEOUT_SECONDS)
        self._deadline = spool_config.ack_deadline_seconds
        self._kafka = kafka or KafkaPublisher(kafka_config)
        self._spool = spool or Spool(spool_config.path, spool_config.max_bytes)
        self._spooling = False
        self._work = asyncio.Event()  # set while spooling: the drainer has (or will have) work
        self._drainer: asyncio.Task[None] | None = None
        # Set while the drainer sends the last chunk: new batches wait for it (see the handover).
        self._handover: asyncio.Future[None] | None = None
        # Whether the topics are known to exist since Kafka last failed (with topics.create).
        self._topics_checked = not kafka_config.topics.create
        # Whether Kafka acknowledged the last chunk drained well within the ack deadline.
        self._kafka_is_quick = False
        self._batches_spooled = 0
        self._refused_full = 0
        self._refused_error = 0
        self._drained = 0
        self._set_aside = 0
        # Stopping: see the module's docstring.
        self._drain_timeout = spool_config.drain_timeout_seconds
        self._stopping = False
        self._halt = False  # the drainer stops at its next step
        self._mutating = False  # the drainer is deleting or setting aside rows: never cancelled then
        self._wake = asyncio.Event()  # cuts a backoff sleep short
        self._progress = asyncio.Event()  # the drainer sent a chunk, failed, or switched to direct
        self._abandon = asyncio.Event()  # a second signal: end the drain now
        self._kafka_problem: str | None = None  # why the last drain attempt failed (None: it did not)
        self._shutdown_drains: dict[DrainOutcome, int] = dict.fromkeys(DRAIN_OUTCOMES, 0)
        # At the first stop signal: (loop time, events held, events drained so far).
        self._stop_mark: tuple[float, int, int] | None = None
        self.last_drain: DrainReport | None = None
        # The progress watchdog (see the module's docstring).
        self._stall_timeout = spool_config.stall_timeout_seconds
        self.progress = Progress(DRAINER, subject="component")
        self._stalled = 0
        self.watchdog = Watchdog(self._set_stalled, logger=log, stalled_message=self._stalled_message,
                                 resumed_message=lambda _: "the spool drainer resumed: Kafka acknowledged a chunk")
        self._watching: asyncio.Task[None] | None = None

    @property
    def spooling(self) -> bool:
        return self._spooling

    @property
    def spool(self) -> Spool:
        return self._spool

    @property
    def kafka(self) -> KafkaPublisher:
        return self._kafka

    def stalls(self) -> list[dict[str, object]]:
        """The stalled drainer (empty: healthy), for /healthz."""
        return [stall.describe() for stall in self.watchdog.stalls.values()]

    def stalled(self) -> Mapping[str, int]:
        """`siemgate_stalled{component}`: 1 while the drainer is stalled."""
        return {DRAINER: self._stalled}

    def _set_stalled(self, _: str, value: int) -> None:
        self._stalled = value

    def _stalled_message(self, _: str, stall: Stall, timeout: float) -> str:
        return (f"the spool drainer is stalled: {stall.pending} events in the spool {self._spool.path} and no chunk "
                f"acknowledged by Kafka for {timeout:g} s (bus.spool.stall_timeout_seconds), waiting on "
                f"{stall.waiting_on} since {iso(stall.waiting_since)}; last problem: "
                f"{self._kafka_problem or 'none reported'}. /healthz fails so that the process is restarted "
                "(the spool is kept and sent to Kafka at the next start). Check that Kafka is reachable from "
                "this pod")

    async def check_progress(self) -> None:
        """Judge the drainer (called every few seconds while running; by tests directly)."""
        self.progress.set_lag(self._spool.events if self._spool.is_open else 0)
        problem = self._kafka_problem
        self.progress.detail = {"kafka_problem": problem} if problem else {}
        workers = {DRAINER: self.progress}
        if problem is not None and DRAINER not in self.watchdog.stalls and self.progress.stall(self._stall_timeout):
            unreachable = await self._probe()
            if unreachable is not None:
                self.watchdog.excuse(workers)
                log.warning("Kafka is unreachable from this pod for a fresh client too: the spool drainer is not "
                            "reported stalled (a restart cannot bring Kafka back); the spool keeps the batches",
                            extra={"spool_events": self._spool.events, "probe": unreachable,
                                   "kafka_problem": problem})
                return
        self.watchdog.check(workers, self._stall_timeout)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(min(5.0, max(0.2, self._stall_timeout / 10)))
            try:
                await self.check_progress()
            except Exception:  # a watchdog that dies quietly is worse than none
                log.exception("the spool drainer's watchdog failed to judge it; trying again")

    def shutdown_drains(self) -> Mapping[DrainOutcome, int]:
        """Drains before exit, by outcome (`siemgate_shutdown_drain_total`)."""
        return dict(self._shutdown_drains)

    def spool_stats(self) -> SpoolStats:
        return SpoolStats(
            events=self._spool.events, bytes=self._spool.bytes, active=self._spooling,
            batches_spooled=self._batches_spooled, refused_full=self._refused_full,
            refused_error=self._refused_error, drained_events=self._drained, set_aside_events=self._set_aside,
        )

    def storage_stats(self) -> StorageStats:
        """The spool against bus.spool.max_bytes (`siemgate_storage_*{store="spool"}`)."""
        return dataclasses.replace(self._spool.storage_stats(), refused_full=self._refused_full)

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        """Open the spool. Raises SpoolError (a broken or unwritable spool is not a bus outage:
        it is fixed by the operator, and starting without it would turn outages into loss)."""
        await self._spool.open()

    async def start(self) -> None:
        await self.open()
        await self._kafka.start()
        if self._spool.events:
            self._spooling = True
            self._work.set()
            log.warning(
                "the spool holds events from a previous run: they go to Kafka first, and new batches are "
                "spooled behind them until it is empty",
                extra={"events": self._spool.events, "bytes": self._spool.bytes, "path": str(self._spool.path)},
            )
        self._drainer = asyncio.create_task(self._drain_forever(), name="spool-drainer")
        self._watching = asyncio.create_task(self._watch(), name="spool-watchdog")
        if not self._spooling:
            # The first batches after a start go to Kafka directly, not to the spool, if it is there.
            await self._kafka.wait_connected(self._deadline)

    async def wait_connected(self, timeout: float) -> bool:
        return await self._kafka.wait_connected(timeout)

    def begin_stopping(self) -> None:
        """The process was told to stop (SIGTERM): a failed drain is retried within a second
        from now on, so that the drain before exit starts as soon as Kafka is reachable."""
        if self._stop_mark is None:
            self._stop_mark = (asyncio.get_running_loop().time(), self._spool.events, self._drained)
        self._stopping = True
        self._wake.set()

    def abandon_drain(self) -> None:
        """End the drain before exit now (a second SIGTERM/SIGINT): what is left stays in the spool."""
        self.begin_stopping()
        self._abandon.set()

    async def stop(self) -> None:
        """Drain the spool to Kafka for up to `drain_timeout_seconds` (or until `abandon_drain`),
        then close Kafka and the spool. What the spool still holds stays in its file, for the next
        start on this path or `siemgate spool drain`. Call it once no more batches arrive."""
        drained: str | None = None
        watching, self._watching = self._watching, None
        if watching is not None:
            watching.cancel()
            await asyncio.gather(watching, return_exceptions=True)
        if self._drainer is not None:
            if self._spool.is_open:
                drained = await self._drain_before_exit()
            await self._halt_drainer()
        kafka_connected = self._kafka.connected
        await self._kafka.stop()
        await self._spool.close()
        if drained is not None:  # (stop may be called twice: the lifespan, then the command)
            self._report(drained, kafka_connected=kafka_connected)

    async def _drain_before_exit(self) -> str:
        """Let the drainer go on until the spool is empty, for at most the drain timeout from
        now, or until `abandon_drain`. Returns what ended it: "", "timeout" or "signal"."""
        self.begin_stopping()
        loop = asyncio.get_running_loop()
        if not self._spool.events and not self._spooling:
            return ""
        log.info(f"stopping: sending the spool to Kafka before exit (at most bus.spool.drain_timeout_seconds, "
                 f"{self._drain_timeout:g} s; a second SIGTERM/SIGINT ends it, keeping the rest in the spool)",
                 extra={"events": self._spool.events, "path": str(self._spool.path)})
        deadline = loop.time() + self._drain_timeout
        while self._spooling or self._spool.events:
            if self._abandon.is_set():
                return "signal"
            remaining = deadline - loop.time()
            if remaining <= 0 or self._drainer is None or self._drainer.done():
                return "timeout"
            self._progress.clear()
            waits = {asyncio.ensure_future(self._progress.wait()), asyncio.ensure_future(self._abandon.wait())}
            try:
                await asyncio.wait(waits, timeout=min(remaining, 1.0), return_when=asyncio.FIRST_COMPLETED)
            finally:
                for wait in waits:
                    wait.cancel()
        return ""

    async def _halt_drainer(self) -> None:
        """Stop the drainer at once, unless it is writing the spool: then right after that write."""
        drainer, self._drainer = self._drainer, None
        if drainer is None:
            return
        self._halt = True
        if not self._mutating:
            drainer.cancel()
        self._wake.set()
        await asyncio.gather(drainer, return_exceptions=True)

    def _report(self, ended_by: str, *, kafka_connected: bool) -> None:
        assert self._stop_mark is not None  # set by _drain_before_exit
        started, held, drained_before = self._stop_mark
        left = self._spool.events
        drained = self._drained - drained_before
        seconds = round(asyncio.get_running_loop().time() - started, 3)
        outcome: DrainOutcome
        if not held and not drained and not left:
            outcome = "empty"
        elif not left:
            outcome = "drained"
        elif self._kafka_problem is not None or not kafka_connected:
            outcome = "unreachable"
        else:
            outcome = "timeout"
        report = DrainReport(outcome=outcome, held=held, drained=drained, left=left, seconds=seconds,
                             path=str(self._spool.path),
                             ended_by=ended_by or ("timeout" if left else ""),
                             kafka_problem=self._kafka_problem if left else None)
        self.last_drain = report
        self._shutdown_drains[outcome] += 1
        extra = {"outcome": outcome, "events_drained": report.drained, "events_left": left, "seconds": seconds,
                 "path": report.path}
        if outcome == "empty":
            log.info("stopping: the spool is empty, nothing to send before exit", extra=extra)
            return
        if outcome == "drained":
            log.info(f"stopping: the spool is empty, {report.drained} events sent to Kafka before exit", extra=extra)
            return
        why = {"signal": "a second SIGTERM/SIGINT ended the drain",
               "timeout": f"bus.spool.drain_timeout_seconds ({self._drain_timeout:g} s) ran out"}[report.ended_by]
        if outcome == "unreachable":
            why += f"; Kafka did not take the last attempt ({self._kafka_problem or 'not connected'})"
        log.error(
            f"stopped with {left} acknowledged events still in the spool {report.path} ({why}). They are safe "
            "in that file: KEEP ITS VOLUME. They go to Kafka at the next start on this bus.spool.path, or run "
            "`siemgate spool drain -c CONFIG` with the volume mounted (e.g. a one-off Job on the replica's claim)",
            extra={**extra, "kafka_problem": self._kafka_problem},
        )

    async def ready(self) -> bool:
        """Kafka accepts writes, or the spool does."""
        return self._spool.accepts_writes or await self._kafka.ready()

    # ------------------------------------------------------------------ publish

    async def publish(self, records: Sequence[Record]) -> None:
        """Return once every record is on Kafka (acks=all) or fsync'd in the spool.

        Raises:
            RecordTooLarge: Kafka refuses a record for its size (413).
            BusUnavailable: Kafka did not take the batch and the spool could not (503).
        """
        if not records:
            return
        if self._spooling and self._handover is not None:
            await self._await_handover(self._handover)
        if self._spooling:
            await self._publish_behind_spool(records)
            return
        try:
            await self._publish_direct(records)
            return
        except BusUnavailable as exc:
            kafka_problem = str(exc)
        self._start_spooling(kafka_problem)
        try:
            await self._spool.append(records)
        except SpoolError as exc:
            raise self._refused(exc, kafka_problem) from exc
        self._batches_spooled += 1

    async def _await_handover(self, handover: asyncio.Future[None]) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._deadline):
                await asyncio.shield(handover)

    async def _publish_direct(self, records: Sequence[Record]) -> None:
        try:
            async with asyncio.timeout(self._deadline):
                await self._kafka.publish(records)
        except TimeoutError:
            raise BusUnavailable(
                f"Kafka did not acknowledge within bus.spool.ack_deadline_seconds ({self._deadline:g} s)"
            ) from None

    async def _publish_behind_spool(self, records: Sequence[Record]) -> None:
        try:
            await self._spool.append(records)
        except SpoolError as spool_exc:
            # The spool cannot take it: Kafka itself is the last chance before a 503.
            try:
                await self._publish_direct(records)
            except BusUnavailable as exc:
                raise self._refused(spool_exc, str(exc)) from spool_exc
            log.warning(f"the spool refused a batch ({spool_exc}); Kafka took it directly, ahead of the "
                        "spooled events", extra={"events": len(records)})
            return
        self._batches_spooled += 1

    def _start_spooling(self, reason: str) -> None:
        if self._spooling:
            return
        self._spooling = True
        self._work.set()
        self._topics_checked = not self._config.topics.create
        log.warning(f"Kafka did not take a batch ({reason}): batches go to the local spool until Kafka is "
                    "back and the spool is drained", extra={"path": str(self._spool.path)})

    def _refused(self, spool_exc: SpoolError, kafka_problem: str) -> BusUnavailable:
        if isinstance(spool_exc, SpoolFull):
            self._refused_full += 1
        else:
            self._refused_error += 1
        message = (f"DATA LOSS RISK: Kafka did not take the batch ({kafka_problem}) and the local spool "
                   f"could not either ({spool_exc})")
        log.error(f"{message}. Bring Kafka back, or free space / raise bus.spool.max_bytes",
                  extra={"path": str(self._spool.path), "spool_events": self._spool.events,
                         "spool_bytes": self._spool.bytes, "max_bytes": self._spool.max_bytes})
        return BusUnavailable(message)

    # ------------------------------------------------------------------ the drainer

    async def _drain_forever(self) -> None:
        backoff = Backoff(*DRAIN_BACKOFF_SECONDS)
        while not self._halt:
            await self._work.wait()
            if self._switch_to_direct():
                continue
            try:
                if not self._topics_checked:
                    with self.progress.waiting(TOPIC_CHECK):
                        await self._ensure_topics()
                if self._kafka_is_quick and self._spool.events <= DRAIN_CHUNK_RECORDS:
                    await self._hand_over()
                elif not await self._drain_chunk():
                    continue
            except _Halted:
                return
            except (BusUnavailable, SpoolError) as exc:
                self._kafka_is_quick = False
                if isinstance(exc, BusUnavailable):
                    self._topics_checked = not self._config.topics.create
                    self._kafka_problem = str(exc)
                self._progress.set()
                await self._after_failure(exc, backoff)
                continue
            except Exception as exc:  # a dead drainer would hold the spool back, silently
                self._kafka_is_quick = False
                self._topics_checked = not self._config.topics.create
                self._kafka_problem = repr(exc)
                self._progress.set()
                log.exception("unexpected error while draining the spool; retrying (please report it)")
                with self.progress.waiting(BACKOFF):
                    await self._sleep(backoff.next_delay())
                continue
            backoff.reset()

    def _switch_to_direct(self) -> bool:
        """Back to direct mode if the spool is empty and no append is under way. No `await` here:
        an append that saw `spooling` is already queued (`writing`) by the time this runs."""
        if self._spool.events or self._spool.writing:
            return False
        self._spooling = False
        self._work.clear()
        self._progress.set()
        log.info("the spool is empty: batches go to Kafka directly again", extra={"drained_events": self._drained})
        return True

    async def _hand_over(self) -> None:
        """Send the rest of the spool while new batches wait for it, then switch to direct mode."""
        handover = self._handover = asyncio.get_running_loop().create_future()
        try:
            await self._spool.wait_writes()  # appends queued before the gate
            while self._spool.events and self._kafka_is_quick and await self._drain_chunk():
                pass  # more than the last chunk: waiting batches gave up and were spooled meanwhile
            self._switch_to_direct()
        finally:
            self._handover = None
            handover.set_result(None)

    async def _drain_chunk(self) -> bool:
        """Send the oldest chunk to Kafka and delete it. False if there was nothing to send."""
        chunk = await self._spool.read(DRAIN_CHUNK_RECORDS, DRAIN_CHUNK_BYTES)
        if not chunk:
            await self._spool.wait_writes()  # the spool is empty but an append is being written
            return False
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            with self.progress.waiting(PRODUCE):
                await self._kafka.publish([record for _, record in chunk])
        except RecordTooLarge:
            await self._drain_one_by_one(chunk)
            return True
        self._kafka_is_quick = loop.time() - started < self._deadline / 2
        self._kafka_problem = None
        await self._delete_through(chunk[-1][0], len(chunk))
        return True

    async def _delete_through(self, row_id: int, count: int) -> None:
        """Delete what Kafka acknowledged. Not cancelled by a stop (the in-memory count would miss
        it): a stop waits for it, and the drainer ends right after (_Halted)."""
        self.progress.progressed()  # Kafka acknowledged: the drainer moves
        self._mutating = True
        try:
            with self.progress.waiting(SPOOL_WRITE):
                await self._spool.delete_through(row_id)
        finally:
            self._mutating = False
        self._drained += count
        self._progress.set()
        if self._halt:
            raise _Halted

    async def _drain_one_by_one(self, chunk: list[Spooled]) -> None:
        """Kafka refused a record of the chunk for its size: find it, set it aside, send the rest."""
        for row_id, record in chunk:
            try:
                with self.progress.waiting(PRODUCE):
                    await self._kafka.publish([record])
            except RecordTooLarge as exc:
                self.progress.progressed()  # Kafka answered for good: the record leaves the spool
                self._mutating = True
                try:
                    await self._spool.set_aside(row_id, str(exc))
                finally:
                    self._mutating = False
                self._set_aside += 1
                log.error(
                    f"Kafka refuses a spooled event for its size ({exc}); it is kept in the spool's set_aside "
                    f"table of {self._spool.path}. Raise the broker's message.max.bytes and resend it from there",
                    extra={"topic": record.topic, "key": record.key.decode(errors="replace")},
                )
                if self._halt:
                    raise _Halted from None
                continue
            await self._delete_through(row_id, 1)

    async def _after_failure(self, exc: BusUnavailable | SpoolError, backoff: Backoff) -> None:
        delay = backoff.next_delay()
        if self._stopping:
            delay = min(delay, STOPPING_RETRY_SECONDS)
        # The first failure of a series, then one in 30 (minutes apart at the cap), as warnings.
        level = logging.WARNING if backoff.failures % 30 == 1 else logging.DEBUG
        log.log(level, f"could not drain the spool ({exc}); retrying in {delay:.1f} s",
                extra={"spool_events": self._spool.events, "spool_bytes": self._spool.bytes,
                       "attempts": backoff.failures})
        with self.progress.waiting(BACKOFF):
            await self._sleep(delay)

    async def _sleep(self, delay: float) -> None:
        """Sleep `delay` seconds, or less once stopping begins (`begin_stopping` wakes it)."""
        if self._stopping:
            delay = min(delay, STOPPING_RETRY_SECONDS)
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._wake.wait()

    async def _ensure_topics(self) -> None:
        """Create the topics a broker may have lost. Raises BusUnavailable: no drain before this
        succeeded, or the records could go to a broker that drops them."""
        try:
            async with asyncio.timeout(max(30.0, 3 * self._config.produce_timeout_seconds)):
                created = await ensure_topics(self._config)
        except (KafkaError, OSError, TimeoutError) as exc:
            raise BusUnavailable(f"could not check that the Kafka topics exist: {exc!r}") from exc
        self._topics_checked = True
        if created:
            log.warning("created missing Kafka topics before draining the spool (a broker that restarted "
                        "empty loses them)", extra={"topics": created})
