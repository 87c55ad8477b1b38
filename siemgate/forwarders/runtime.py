"""The forwarder runtime: one consumer group per sink, at-least-once delivery.

It runs on either bus (Kafka or the embedded log) through the bus interface
(`siemgate.bus.base`) and knows nothing about any one sink.

The promise: an offset is committed only after the sink confirmed every event before it
(or the event went to the dead-letter topic, or the sink's `min_severity` filtered it).
A crash or SIGKILL loses nothing: what was not committed is read again, so a restart
delivers at most `batch.in_flight + 1` batches twice (those being delivered, and the one
whose commit was under way).

How a batch goes:

1. High-tier partitions (`high`, `control`, and `unknown` when routed as high) are read
   first; while they have records or lag, the other partitions are paused, so a flood of
   low events never delays a high one by more than the batch in flight.
2. Records below `min_severity` are counted as filtered; the rest are normalized (a record
   that is not a siemgate record is dead-lettered).
3. The sink gets the batch. Retryable failures and auth refusals are retried with
   exponential backoff, full jitter and a delay cap (tenacity), without a time limit (never
   sooner than a `retry_after` the sink reports, e.g. an HTTP Retry-After); while
   waiting, every partition is paused and the consumer keeps polling so that it stays in
   its group. Per-event refusals are dead-lettered; per-event "try again" is resent alone.
4. Offsets are committed, in order. On SIGTERM the batches in flight may finish within the
   drain timeout; otherwise they are left uncommitted, for the next owner of the partitions.

Up to `batch.in_flight` batches (default 2) are delivered at once: while the sink waits for
an answer (an HTTP round trip, HEC's indexer acknowledgement), the next batch is fetched,
normalized and sent. Each batch is committed only once it and every batch before it are
confirmed.

In `siemgate run` the forwarders share the ingest's event loop: before a fetch, after it,
every 100 records normalized and before a send they take a turn (`siemgate.foreground`),
which waits while webhook requests are being answered (20 ms at most).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from tenacity import AsyncRetrying, RetryCallState, RetryError, retry_if_exception_type, wait_random_exponential

from siemgate.bus.base import Bus, Consumer, Message, Partition, Publisher
from siemgate.config import Config
from siemgate.errors import BusError, CommitRefused, RetryableSinkError, SiemgateError, SinkAuthError, SinkRefusedError
from siemgate.foreground import Foreground, yield_loop
from siemgate.forwarders.deadletter import DeadLetter, DeadLetterWriter, reason_label
from siemgate.forwarders.metrics import ForwardMetrics
from siemgate.forwarders.normalize import NormalizedEvent, Normalizer, passes
from siemgate.forwarders.sinks.base import MAX_RETRY_AFTER, Sink, SinkSettings
from siemgate.forwarders.watchdog import AUTH_PAUSE, BACKOFF, COMMIT, DEAD_LETTER, FETCH, SEND, Progress
from siemgate.record import SEVERITIES, Severity, canonical_severity

log = logging.getLogger("siemgate.forward")

# Records normalized between two yields to the event loop (~2 ms of work).
_YIELD_EVERY = 100


@dataclass(slots=True)
class _Batch:
    """A batch being delivered, and the offsets to commit once it (and every batch before it) is."""

    delivery: asyncio.Task[set[Partition]]
    offsets: dict[Partition, int]
    events: int
    # Records fetched for it (filtered ones included): in flight for the watchdog until committed.
    records: int


@dataclass(slots=True)
class _Pending:
    tp: Partition
    event: NormalizedEvent
    attempts: int = 0
    # time.monotonic() before which the sink asked not to be sent this event again (Retry-After).
    not_before: float = 0.0


def _honouring_retry_after(backoff: wait_random_exponential) -> Callable[[RetryCallState], float]:
    """The backoff's delay, or longer when the failure carries a `retry_after` (an HTTP
    Retry-After: the destination said when to come back), capped at MAX_RETRY_AFTER."""

    def wait(state: RetryCallState) -> float:
        delay = backoff(state)
        error = state.outcome.exception() if state.outcome else None
        after = getattr(error, "retry_after", None)
        if isinstance(after, int | float) and after > 0:
            delay = max(delay, min(float(after), MAX_RETRY_AFTER))
        return delay

    return wait


class _ItemsToRetry(SiemgateError):
    """Some events of the batch were refused for now (e.g. a bulk item answered 429).
    Never raised out of this module (siemgate.errors draws it)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class _Abandoned(SiemgateError):
    """Shutting down: the batch in flight is left uncommitted, for redelivery. Never raised
    out of this module (siemgate.errors draws it)."""


def group_id(config: Config, sink: str) -> str:
    return f"{config.forward.group_prefix or config.bus.topic_prefix}-{sink}"


class _Rebalance:
    def __init__(self, forwarder: SinkForwarder) -> None:
        self._forwarder = forwarder

    async def on_partitions_revoked(self, revoked: Iterable[Partition]) -> None:
        # Offsets are committed after every batch: only the batches in flight can be open, and
        # their events of these partitions are left to the new owner (delivered twice, at
        # most). A commit under way finishes first, so the new owner starts after it.
        self._forwarder.revoked.update(revoked)
        await self._forwarder.wait_committed()

    async def on_partitions_assigned(self, assigned: Iterable[Partition]) -> None:
        assigned = set(assigned)
        self._forwarder.revoked.difference_update(assigned)
        if not assigned:
            self._forwarder.forget_lag()
        if self._forwarder.waiting:
            self._forwarder.consumer.pause(*assigned)


class SinkForwarder:
    """Consumes the bus for one sink and delivers to it at least once."""

    def __init__(
        self,
        *,
        config: Config,
        bus: Bus,
        settings: SinkSettings,
        sink: Sink[SinkSettings],
        publisher: Publisher,
        metrics: ForwardMetrics,
        normalizer: Normalizer,
        foreground: Foreground | None = None,
    ) -> None:
        self.config = config
        # Between slices of work: wait for the ingest's requests when sharing its loop.
        self._turn = foreground.background_turn if foreground is not None else yield_loop
        self.settings = settings
        self.sink = sink
        self.metrics = metrics
        # What the watchdog judges (siemgate.forwarders.watchdog); the sink reports into it too.
        self.progress = Progress(settings.name)
        sink.watch = self.progress
        # The last send failed on an auth refusal: the backoff is a pause on purpose.
        self._auth_refused = False
        self.normalizer = normalizer
        prefix = config.bus.topic_prefix
        self.dead_letters = DeadLetterWriter(publisher, prefix, settings.name)
        self.severity_of_topic: dict[str, Severity] = {f"{prefix}.events.{s}": s for s in SEVERITIES}
        self.control_topic = f"{prefix}.control"
        self.high_tier = self._high_tier(normalizer)
        self.consumer: Consumer = bus.consumer(
            group=group_id(config, settings.name),
            max_records=settings.batch.max_events,
            fetch_max_wait_ms=config.forward.fetch_max_wait_ms,
        )
        self.revoked: set[Partition] = set()
        self._waits = 0
        self._delivering = 0
        self._retired: list[Sink[SinkSettings]] = []
        # Only one task polls the consumer at a time (the fetch loop, or a delivery's backoff).
        self._polling = asyncio.Lock()
        self._normal_paused = False
        self._next_offset: dict[Partition, int] = {}
        self._stopping = asyncio.Event()
        self._drain_deadline: float | None = None
        self._consumer_closed = False
        self._lag_task: asyncio.Task[None] | None = None
        self._committing: asyncio.Task[None] | None = None
        self._replacement: tuple[SinkSettings, Sink[SinkSettings], Normalizer] | None = None
        self._replaced = asyncio.Event()
        self._invalid_timestamps = metrics.invalid_timestamps.labels(settings.name)
        self._events = {o: metrics.events.labels(settings.name, o)
                        for o in ("delivered", "duplicate", "dead_lettered", "filtered")}

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def waiting(self) -> bool:
        """Whether a delivery is backing off (every partition is paused meanwhile)."""
        return self._waits > 0

    def _high_tier(self, normalizer: Normalizer) -> frozenset[str]:
        prefix = self.config.bus.topic_prefix
        high_tier = {f"{prefix}.events.high", self.control_topic}
        if normalizer.routing_severity("unknown") == "high":
            high_tier.add(f"{prefix}.events.unknown")
        return frozenset(high_tier)

    def replace(self, settings: SinkSettings, sink: Sink[SinkSettings], normalizer: Normalizer) -> None:
        """Hot reload: use this sink (new token, URL, batching, filter...) from the next send
        on, in the same consumer group; a backoff in progress ends at once. The old sink is
        closed once the new one started."""
        if settings.name != self.name:
            raise ValueError(f"a forwarder keeps its sink's name ({self.name}), not {settings.name}")
        self._replacement = (settings, sink, normalizer)
        self._replaced.set()

    async def _apply_replacement(self) -> None:
        if self._replacement is None:
            return
        settings, sink, normalizer = self._replacement
        self._replacement = None
        self._replaced.clear()
        sink.watch = self.progress
        await sink.start()
        # Deliveries in flight may still be using the old sink: it is closed once none is.
        self._retired.append(self.sink)
        self.settings, self.sink, self.normalizer = settings, sink, normalizer
        self.high_tier = self._high_tier(normalizer)
        await self._close_retired()
        log.info("sink settings applied", extra={"sink": self.name})

    async def _close_retired(self) -> None:
        if self._delivering:
            return
        retired, self._retired = self._retired, []
        for sink in retired:
            await sink.close()

    async def start(self) -> None:
        await self.sink.start()
        await self.consumer.start()
        self.consumer.subscribe([*self.severity_of_topic, self.control_topic], listener=_Rebalance(self))
        self.metrics.up.labels(self.name).set(1)
        self._lag_task = asyncio.create_task(self._measure_lag(), name=f"lag-{self.name}")
        log.info("forwarder started", extra={"sink": self.name, "group": group_id(self.config, self.name)})

    def stop(self, drain_timeout: float) -> None:
        """Ask `run` to finish: the batch in flight may take `drain_timeout` seconds."""
        self._drain_deadline = time.monotonic() + drain_timeout
        self._stopping.set()

    async def close_bus(self) -> None:
        """Stop measuring the lag and close the consumer (which may wait on the broker: the
        caller bounds it). Idempotent; `close` calls it too."""
        if self._lag_task is not None:
            self._lag_task.cancel()
            await asyncio.gather(self._lag_task, return_exceptions=True)
            self._lag_task = None
        if not self._consumer_closed:
            self._consumer_closed = True
            await self.consumer.stop()

    async def close(self) -> None:
        await self.close_bus()
        self.forget_lag()
        for sink in (*self._retired, self.sink):
            await sink.close()
        self._retired = []
        log.info("forwarder stopped", extra={"sink": self.name})

    async def run(self) -> None:
        in_flight: collections.deque[_Batch] = collections.deque()
        left = False  # a batch was left uncommitted: nothing after it may commit
        try:
            while not self._stopping.is_set():
                await self._apply_replacement()
                while in_flight and (in_flight[0].delivery.done()
                                     or len(in_flight) >= max(1, self.settings.batch.in_flight)):
                    if not await self._settle(in_flight):
                        left = True
                        return
                await self._turn()
                fetched = await self._fetch()
                if not fetched:
                    continue
                records = sum(len(part) for part in fetched.values())
                self.progress.add_in_flight(records)
                # A reload that came while the fetch waited applies to what it brought: its
                # normalization (severity schemes, fields) and filter, not the old ones.
                await self._apply_replacement()
                await self._turn()
                pending, offsets = await self._prepare(fetched)
                in_flight.append(_Batch(asyncio.create_task(self._deliver(pending)), offsets, len(pending), records))
        finally:
            # Stopping: the batches in flight finish within the drain timeout, or are left.
            while in_flight and not left:
                left = not await self._settle(in_flight)
            for batch in in_flight:
                batch.delivery.cancel()
                self.progress.add_in_flight(-batch.records)
            await asyncio.gather(*(b.delivery for b in in_flight), return_exceptions=True)
            await self.wait_committed()

    async def _settle(self, in_flight: collections.deque[_Batch]) -> bool:
        """Wait for the oldest batch's delivery and start its commit (commits stay in order:
        each waits for the one before). False if it was left uncommitted (shutting down)."""
        batch = in_flight.popleft()
        if self._drain_deadline is not None and not batch.delivery.done():
            # Stopping: a send still waiting (an ack that does not come) is bounded by the drain timeout.
            await asyncio.wait([batch.delivery], timeout=max(0.0, self._drain_deadline - time.monotonic()))
            if not batch.delivery.done():
                batch.delivery.cancel()
                with contextlib.suppress(asyncio.CancelledError, _Abandoned):
                    await batch.delivery
                log.warning("drain timeout: the batches in flight are left for redelivery",
                            extra={"sink": self.name, "events": batch.events + sum(b.events for b in in_flight)})
                self.progress.add_in_flight(-batch.records)
                return False
        try:
            abandoned = await batch.delivery
        except _Abandoned:
            log.warning("drain timeout: the batches in flight are left for redelivery",
                        extra={"sink": self.name, "events": batch.events + sum(b.events for b in in_flight)})
            self.progress.add_in_flight(-batch.records)
            return False
        await self.wait_committed()
        # A partition whose events were left to another owner is committed neither here nor
        # by the batches after it, even if it came back to us: its events are read again from
        # the last commit.
        for tp in abandoned:
            batch.offsets.pop(tp, None)
            for later in in_flight:
                later.offsets.pop(tp, None)
        self._committing = asyncio.create_task(self._commit_batch(batch))
        return True

    async def _commit_batch(self, batch: _Batch) -> None:
        try:
            await self._commit(batch.offsets)
        finally:
            self.progress.add_in_flight(-batch.records)

    async def wait_committed(self) -> None:
        """Wait for the commit in flight, if any."""
        if self._committing is not None:
            await self._committing
            self._committing = None

    async def _fetch(self) -> dict[Partition, Sequence[Message]]:
        async with self._polling:
            return await self._fetch_unlocked()

    async def _fetch_unlocked(self) -> dict[Partition, Sequence[Message]]:
        consumer = self.consumer
        assigned = consumer.assignment()
        high = [tp for tp in assigned if tp.topic in self.high_tier]
        max_records = self.settings.batch.max_events
        fetched: Mapping[Partition, Sequence[Message]] = {}
        if high:
            with self.progress.waiting(FETCH):
                fetched = await consumer.getmany(*high, timeout_ms=0, max_records=max_records)
        high_busy = any(fetched.values()) or any(self._lag(tp) > 0 for tp in high)
        normal = [tp for tp in assigned if tp.topic not in self.high_tier]
        if high_busy and not self._normal_paused and normal:
            consumer.pause(*normal)
            self._normal_paused = True
        elif not high_busy and self._normal_paused:
            consumer.resume(*normal)
            self._normal_paused = False
        if not any(fetched.values()):
            wait_ms = int(self.settings.batch.max_wait_seconds * 1000)
            with self.progress.waiting(FETCH):
                fetched = await consumer.getmany(timeout_ms=wait_ms, max_records=max_records)
        found = {tp: records for tp, records in fetched.items() if records}
        if found:
            self.progress.progressed()
        return found

    def _lag(self, tp: Partition) -> int:
        highwater = self.consumer.highwater(tp)
        position = self._next_offset.get(tp)
        if highwater is None or position is None:
            return 0
        return max(0, int(highwater) - position)

    async def _prepare(
        self, fetched: dict[Partition, Sequence[Message]]
    ) -> tuple[list[_Pending], dict[Partition, int]]:
        pending: list[_Pending] = []
        malformed: list[DeadLetter] = []
        offsets: dict[Partition, int] = {}
        filtered = invalid_times = 0
        minimum = self.settings.min_severity
        # Nothing can be below `low` (unknown is routed as low at the least): skip the check.
        filtering = minimum != "low"
        # Looked up once per batch, not per record.
        normalize, fields, keep = self.normalizer.normalize, self.sink.normalized_fields, pending.append
        until_yield = _YIELD_EVERY
        for tp, records in fetched.items():
            topic_severity = self.severity_of_topic.get(tp.topic)
            check = filtering and tp.topic != self.control_topic
            for record in records:
                until_yield -= 1
                if not until_yield:
                    # Let the loop breathe: in `siemgate run` the ingest shares it, and its
                    # sender waits for each answer (siemgate.foreground).
                    until_yield = _YIELD_EVERY
                    await self._turn()
                if check:
                    severity = _header_severity(record.headers) or topic_severity
                    if severity is not None and not passes(severity, minimum, self.normalizer):
                        filtered += 1
                        continue
                try:
                    event = normalize(record.value or b"", fields)
                except ValueError as exc:
                    stand_in = _unreadable(record.value, tp, record.offset)
                    malformed.append(DeadLetter(stand_in, f"malformed record: {exc}", 0))
                    continue
                except Exception as exc:  # a normalizer bug on one record: isolate it
                    # Raised out of here, it stopped the forwarder, which then read the same
                    # record again at each restart: one event would hold the sink up for good.
                    log.error("normalizing a record failed: dead-lettered", exc_info=exc,
                              extra={"sink": self.name, "topic": tp.topic, "offset": record.offset})
                    stand_in = _unreadable(record.value, tp, record.offset)
                    malformed.append(DeadLetter(stand_in, f"normalize_failure: {type(exc).__name__}: {exc}", 0))
                    continue
                if event.timestamp_invalid is not None:
                    invalid_times += 1
                keep(_Pending(tp, event))
            offsets[tp] = records[-1].offset + 1
            self._next_offset[tp] = records[-1].offset + 1
        if filtered:
            self._events["filtered"].inc(filtered)
        if invalid_times:
            self._invalid_timestamps.inc(invalid_times)
        if malformed:
            await self._dead_letter(malformed)
        return pending, offsets

    async def _deliver(self, pending: list[_Pending]) -> set[Partition]:
        """Deliver the batch; returns the partitions whose events were abandoned because the
        partition was revoked meanwhile."""
        abandoned: set[Partition] = set()
        if not pending:
            return abandoned
        settings = self.settings.retry
        retrying = AsyncRetrying(
            retry=retry_if_exception_type((RetryableSinkError, SinkAuthError, _ItemsToRetry)),
            wait=_honouring_retry_after(
                wait_random_exponential(multiplier=settings.initial_seconds, max=settings.max_seconds)),
            sleep=self._wait,
            before_sleep=self._log_retry,
            stop=self._stop_condition,
            reraise=True,
        )
        remaining = pending
        self._delivering += 1
        try:
            async for attempt in retrying:
                with attempt:
                    if self.revoked:  # a rebalance took partitions: their events are the new owner's
                        abandoned.update(p.tp for p in remaining if p.tp in self.revoked)
                        remaining = [p for p in remaining if p.tp not in self.revoked]
                    remaining = await self._attempt(remaining)
                    if remaining:
                        after = max(p.not_before for p in remaining) - time.monotonic()
                        raise _ItemsToRetry(f"{len(remaining)} event(s) refused for now",
                                            after if after > 0 else None)
        except (RetryableSinkError, SinkAuthError, _ItemsToRetry, RetryError):
            raise _Abandoned from None
        finally:
            self._delivering -= 1
            if self._retired:
                await self._close_retired()
        return abandoned

    async def _isolate(self, pending: list[_Pending], error: Exception) -> list[_Pending]:
        """The sink failed unexpectedly: halve the batch until the events it fails on are alone,
        deliver the others, and dead-letter those (a poison event must not stop the pipeline;
        `siemgate dlq replay` sends them again once fixed)."""
        if len(pending) == 1:
            log.error("the sink failed on one event: dead-lettered", exc_info=error,
                      extra={"sink": self.name, "id": pending[0].event.id})
            reason = f"sink_failure: {type(error).__name__}: {error}"
            await self._dead_letter([DeadLetter(pending[0].event, reason, pending[0].attempts)])
            return []
        half = len(pending) // 2
        return [*await self._attempt(pending[:half]), *await self._attempt(pending[half:])]

    def _stop_condition(self, state: RetryCallState) -> bool:
        return self._drain_deadline is not None and time.monotonic() >= self._drain_deadline

    async def _attempt(self, pending: list[_Pending]) -> list[_Pending]:
        """One send. Returns the events the sink asked to receive again."""
        if not pending:
            return pending
        await self._apply_replacement()
        await self._turn()
        for item in pending:
            item.attempts += 1
        started = time.perf_counter()
        # An attempt made is progress, whatever its outcome; one that never ends is not.
        self.progress.progressed()
        try:
            with self.progress.waiting(SEND):
                result = await self.sink.send([p.event for p in pending])
        except SinkAuthError:
            self.progress.progressed()
            self._auth_refused = True
            self.metrics.up.labels(self.name).set(0)
            self.metrics.retries.labels(self.name, "auth").inc()
            raise
        except RetryableSinkError:
            self.progress.progressed()
            self._auth_refused = False
            self.metrics.up.labels(self.name).set(0)
            self.metrics.retries.labels(self.name, "retryable").inc()
            raise
        except Exception as exc:  # noqa: BLE001 - a sink's bug or an event it cannot take: isolate it
            self.progress.progressed()
            return await self._isolate(pending, exc)
        self.progress.progressed()
        self._auth_refused = False
        self.metrics.request_seconds.labels(self.name).observe(time.perf_counter() - started)
        self.metrics.up.labels(self.name).set(1)
        retry = set(result.retry)
        rejected = dict(result.rejected)
        duplicates = len(result.duplicates)
        delivered = len(pending) - len(retry) - len(rejected) - duplicates
        self._events["delivered"].inc(delivered)
        if duplicates:
            self._events["duplicate"].inc(duplicates)
        if rejected:
            await self._dead_letter(
                [DeadLetter(pending[i].event, reason, pending[i].attempts) for i, reason in rejected.items()]
            )
        left = [pending[i] for i in sorted(retry)]
        if left and result.retry_after:
            not_before = time.monotonic() + result.retry_after
            for item in left:
                item.not_before = not_before
        if left:
            self.metrics.retries.labels(self.name, "items").inc()
        return left

    async def _dead_letter(self, letters: Sequence[DeadLetter]) -> None:
        """Dead letters must reach the bus before their offsets are committed: retried forever."""
        while True:
            try:
                with self.progress.waiting(DEAD_LETTER):
                    await self.dead_letters.write(letters)
                self.progress.progressed()
                break
            except BusError as exc:
                log.error("cannot write dead letters; retrying", extra={"sink": self.name, "error": str(exc)})
                await self._wait(1.0, BACKOFF)
        for letter in letters:
            self.metrics.dlq.labels(self.name, reason_label(letter.reason)).inc()
        self._events["dead_lettered"].inc(len(letters))
        log.warning("dead-lettered events", extra={"sink": self.name, "count": len(letters),
                                                   "topic": self.dead_letters.topic,
                                                   "reason": letters[0].reason})

    async def _wait(self, seconds: float, what: str | None = None) -> None:
        """Back off without leaving the consumer group: pause everything, keep polling (the
        deliveries in flight share one pause: partitions resume when none waits any more).
        `what`: the watchdog's name for the wait; by default, after a send's failure, a pause
        on purpose if the sink refused our credentials."""
        if self._drain_deadline is not None:
            seconds = min(seconds, max(0.0, self._drain_deadline - time.monotonic()))
        consumer = self.consumer
        consumer.pause(*consumer.assignment())
        self._waits += 1
        deadline = time.monotonic() + seconds
        try:
            with self.progress.waiting(what or (AUTH_PAUSE if self._auth_refused else BACKOFF)):
                while (left := deadline - time.monotonic()) > 0 and not self._replaced.is_set():
                    async with self._polling:
                        stray = await consumer.getmany(timeout_ms=int(min(left, 0.5) * 1000) or 1)
                    # Partitions assigned mid-wait may have answered before being paused: read
                    # them again later.
                    for tp, records in stray.items():
                        if records:
                            consumer.seek(tp, records[0].offset)
        finally:
            self._waits -= 1
            if not self._waits:
                assigned = consumer.assignment()
                keep_paused = ({tp for tp in assigned if tp.topic not in self.high_tier} if self._normal_paused
                               else set())
                consumer.resume(*(assigned - keep_paused))

    def _log_retry(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        delay = state.next_action.sleep if state.next_action else 0.0
        extra = {"sink": self.name, "attempt": state.attempt_number, "retry_in_seconds": round(delay, 2),
                 "error": str(error)}
        if isinstance(error, SinkRefusedError):
            log.error(f"sink {self.name} refuses our events until its configuration is fixed: events are kept "
                      "and retried", extra=extra)
        elif isinstance(error, SinkAuthError):
            log.error(f"sink {self.name} refused our credentials: events are kept and retried; "
                      "fix the sink's token/certificate", extra=extra)
        elif isinstance(error, _ItemsToRetry):
            log.info("sink refused some events for now; sending them again", extra=extra)
        else:
            log.warning(f"sink {self.name} is unavailable; retrying", extra=extra)

    async def _commit(self, offsets: dict[Partition, int]) -> None:
        owned = {tp: offset for tp, offset in offsets.items() if tp not in self.revoked}
        if not owned:
            return
        self.progress.expect(COMMIT)  # owed until one completes (see siemgate.watchdog, "Owed outcomes")
        try:
            with self.progress.waiting(COMMIT):
                await self.consumer.commit(owned)
            self.progress.progressed()
            self.progress.fulfilled(COMMIT)
        except CommitRefused as exc:
            # The group moved on, or Kafka did not answer in time: these events are read again
            # (by the new owner, or after a restart): duplicates, never loss.
            if "metadata task" in str(exc):
                # No commit will ever complete on this consumer (finding 4): the watchdog fails
                # /healthz once the commit is owed longer than forward.stall_timeout_seconds.
                log.error(f"offset commits of sink {self.name} cannot complete any more ({exc}); the process must "
                          "be restarted (the watchdog fails /healthz for it). Events are read again: duplicates, "
                          "never loss", extra={"sink": self.name, "error": str(exc)})
                return
            log.warning("offset commit failed: the events since the last commit will be delivered again",
                        extra={"sink": self.name, "error": str(exc)})

    async def _measure_lag(self) -> None:
        interval = self.config.forward.lag_interval_seconds
        while True:
            await asyncio.sleep(interval)
            assigned = self.consumer.assignment()
            if not assigned:
                self.forget_lag()
                continue
            try:
                ends = await self.consumer.end_offsets(list(assigned))
            except BusError:
                continue  # the last measurement stands (the watchdog learns of the bus apart)
            totals = dict.fromkeys(SEVERITIES, 0)
            for tp, end in ends.items():
                severity = self.severity_of_topic.get(tp.topic)
                if severity is None:
                    continue
                with contextlib.suppress(BusError):
                    position = await self.consumer.position(tp)
                    totals[severity] += max(0, end - position)
            for severity, lag in totals.items():
                self.metrics.lag.labels(self.name, severity).set(lag)
            self.progress.set_lag(sum(totals.values()))

    def forget_lag(self) -> None:
        """No partitions: the lag is unknown here (another member of the group has them), so
        neither exported nor judged by the watchdog."""
        self.progress.set_lag(None)
        self.metrics.clear_lag(self.name)


def _header_severity(headers: Sequence[tuple[str, bytes]]) -> Severity | None:
    for key, value in headers:
        if key == "severity":
            return canonical_severity(value.decode(errors="replace"))
    return None


def _unreadable(value: bytes | None, tp: Partition, offset: int) -> NormalizedEvent:
    """A stand-in normalized event for a record that could not be read, to dead-letter it."""
    raw = value or b"null"
    return NormalizedEvent(
        id=f"{tp.topic}-{tp.partition}-{offset}", kind="event", integration="", severity="unknown",
        received_at="", batch="", seq=0, peer="", timestamp="", source_ip=None, url=None, method=None,
        rule=None, rule_id=None, action=None, asset=None, event_type=None, message=None, event=None,
        record=raw if _is_json(raw) else b'"' + raw.hex().encode() + b'"',
    )


def _is_json(raw: bytes) -> bool:
    import orjson

    try:
        orjson.loads(raw)
    except orjson.JSONDecodeError:
        return False
    return True
