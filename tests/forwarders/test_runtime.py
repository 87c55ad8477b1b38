"""The forwarder runtime on both buses (a real Kafka-protocol broker, and the embedded SQLite
log): delivery, filters, retries, dead letters, priority, the service.

Each test takes `backend`, parametrized over "kafka" and "embedded": a Config for that bus,
and the ways to produce records, to run a forwarder on that bus and to read dead letters
back. The module-level helpers (`config_for`, `record_for`, `produce`, `forwarding`, `until`)
are imported by other test modules; `produce` and `forwarding` dispatch on `config.bus.type`.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client import generate_latest

from siemgate.bus.base import Bus, Publisher
from siemgate.bus.embedded import EmbeddedBus, EmbeddedLog
from siemgate.bus.kafka import ensure_topics
from siemgate.bus.kafka_bus import KafkaBus
from siemgate.config import Config, parse_config
from siemgate.errors import RetryableSinkError, SinkAuthError
from siemgate.foreground import Foreground
from siemgate.forwarders.deadletter import dlq_topic
from siemgate.forwarders.dlq_cli import list_dead_letters, replay_dead_letters
from siemgate.forwarders.metrics import ForwardMetrics
from siemgate.forwarders.normalize import NormalizedEvent, Normalizer
from siemgate.forwarders.runtime import SinkForwarder, group_id
from siemgate.forwarders.service import ForwardService
from siemgate.forwarders.sinks.base import RetrySettings, SendResult, Sink, SinkSettings
from siemgate.record import Record, Severity, all_topics, canonical_severity, make_record
from siemgate_standins.broker import Broker

pytestmark = pytest.mark.anyio

_FORWARD_AND_SINKS = """
forward: {{drain_timeout_seconds: 5, lag_interval_seconds: 0.2, fetch_max_wait_ms: 20,
          listen: {{host: 127.0.0.1, port: 0}}}}
sinks:
  - {{name: archive, type: file, path: {tmp_path}/out/events.ndjson, batch: {{max_events: 100}}}}
"""


def config_for(broker: Broker, tmp_path: Path, extra: str = "") -> Config:
    """A Kafka config on `broker`, with topics of a prefix of its own."""
    prefix = f"f{uuid.uuid4().hex[:10]}"
    return parse_config(
        f"""
state_dir: {tmp_path}/state
bus:
  type: kafka
  kafka:
    bootstrap_servers: "{broker.bootstrap_servers}"
    topic_prefix: {prefix}
    idempotence: {str(broker.idempotence).lower()}
    topics: {{partitions: 2}}
{_FORWARD_AND_SINKS.format(tmp_path=tmp_path)}
{extra}
""",
        {},
    )


def embedded_config_for(tmp_path: Path, extra: str = "") -> Config:
    """An embedded-bus config: the log is <tmp_path>/bus.db, the topic prefix `siemgate`."""
    return parse_config(
        f"""
state_dir: {tmp_path}/state
bus:
  type: embedded
  path: {tmp_path}/bus.db
{_FORWARD_AND_SINKS.format(tmp_path=tmp_path)}
{extra}
""",
        {},
    )


def record_for(prefix: str, i: int, severity: Severity = "high", kind: str = "event") -> tuple[str, bytes, bytes]:
    record = make_record(
        prefix=prefix, event={"id": f"e-{i}", "severity": severity, "n": i, "type": "sql_injection",
                              "source_ip": "203.0.113.7", "url": "https://shop.example/login"},
        kind=kind, integration="appsec", severity=severity, event_id=f"e-{i}",  # type: ignore[arg-type]
        received_at="2026-11-28T21:00:00.000000Z", batch="b", seq=i, peer="127.0.0.1",
    )
    return record.topic, record.key, record.value


async def produce(config: Config, records: Sequence[tuple[str, bytes, bytes]]) -> None:
    """Put `record_for` records on the configured bus, durably, with their `severity` header.

    Kafka: a plain producer, records spread over the partitions by key. Embedded: through the
    bus's publisher, on an `EmbeddedLog` of its own on the same file (as another process would);
    a forwarder's consumer on another instance sees them at its next poll."""
    if config.bus.type == "embedded":
        await publish(config, [_as_record(topic, key, value) for topic, key, value in records])
        return
    assert config.bus.kafka is not None
    await ensure_topics(config.bus.kafka)
    producer = AIOKafkaProducer(bootstrap_servers=list(config.bus.kafka.servers), acks="all",
                                enable_idempotence=False, linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(topic, value=value, key=key, headers=[("severity", _sev(value))])
                   for topic, key, value in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def publish(config: Config, records: Sequence[Record]) -> None:
    """Publish `records` through the configured bus's Publisher (any value, even garbage)."""
    async with bus_for(config) as bus:
        publisher = bus.publisher()
        await publisher.start()
        try:
            await until_ready(publisher)
            await publisher.publish(records)
        finally:
            await publisher.stop()


def _as_record(topic: str, key: bytes, value: bytes) -> Record:
    letter = orjson.loads(value)
    return Record(topic, key, value, [("severity", _sev(value))], canonical_severity(letter["severity"]),
                  letter["kind"])


def _sev(value: bytes) -> bytes:
    return str(orjson.loads(value)["severity"]).encode()


@contextlib.asynccontextmanager
async def bus_for(config: Config, retention_groups: Sequence[str] = ()) -> AsyncIterator[Bus]:
    """The configured bus. Embedded: an `EmbeddedLog` of its own on `bus.path`, deleting what
    every one of `retention_groups` has passed (as `siemgate run` does for its sinks)."""
    if config.bus.type == "embedded":
        log = EmbeddedLog(config.bus.path, prefix=config.bus.topic_prefix, retention_groups=retention_groups)
        await log.open()
        try:
            yield EmbeddedBus(log)
        finally:
            await log.close()
        return
    assert config.bus.kafka is not None
    yield KafkaBus(config.bus.kafka)  # nothing to release: its publishers and consumers stop themselves


class MemorySink(Sink):
    """A sink the test scripts: fails, refuses credentials, rejects or delays items on cue."""

    def __init__(self, settings: SinkSettings) -> None:
        super().__init__(settings)
        self.received: list[NormalizedEvent] = []
        self.calls = 0
        self.fail_next = 0
        self.auth_fail_next = 0
        self.reject_ids: set[str] = set()
        self.retry_once_ids: set[str] = set()
        self.arrived = asyncio.Event()

    async def send(self, events: Sequence[NormalizedEvent]) -> SendResult:
        self.calls += 1
        if self.auth_fail_next:
            self.auth_fail_next -= 1
            raise SinkAuthError("401 from the sink")
        if self.fail_next:
            self.fail_next -= 1
            raise RetryableSinkError("connection refused")
        reason = "mapping error: field n is not a date"
        rejected = [(i, reason) for i, e in enumerate(events) if e.id in self.reject_ids]
        retry = [i for i, e in enumerate(events) if e.id in self.retry_once_ids]
        self.retry_once_ids -= {events[i].id for i in retry}
        skip = {i for i, _ in rejected} | set(retry)
        self.received.extend(e for i, e in enumerate(events) if i not in skip)
        self.arrived.set()
        return SendResult(retry=retry, rejected=rejected)


def settings(name: str = "mem", min_severity: Severity = "low", max_events: int = 100) -> SinkSettings:
    from siemgate.forwarders.sinks.base import BatchSettings

    return SinkSettings(name=name, min_severity=min_severity, batch=BatchSettings(max_events=max_events),
                        retry=RetrySettings(initial_seconds=0.05, max_seconds=0.2))


@contextlib.asynccontextmanager
async def forwarding(config: Config, sink: Sink, metrics: ForwardMetrics | None = None,
                     foreground: Foreground | None = None, drain_seconds: float = 5) -> AsyncIterator[SinkForwarder]:
    """A SinkForwarder for `sink` running on the configured bus (embedded: on a log of its own
    that deletes what the sink's group has passed), stopped (draining for up to `drain_seconds`)
    and closed on exit. `foreground`: as in `siemgate run`, the loop is shared with an ingest
    whose requests go first."""
    async with bus_for(config, [group_id(config, sink.name)]) as bus:
        await bus.ensure_topics([dlq_topic(config.bus.topic_prefix, sink.name)])
        publisher = bus.publisher()
        await publisher.start()
        try:
            await until_ready(publisher)
            forwarder = SinkForwarder(config=config, bus=bus, settings=sink.settings, sink=sink,
                                      publisher=publisher, metrics=metrics or ForwardMetrics(),
                                      normalizer=Normalizer(config.normalize), foreground=foreground)
            await forwarder.start()
            task = asyncio.create_task(forwarder.run())
            try:
                yield forwarder
            finally:
                forwarder.stop(drain_seconds)
                await asyncio.wait_for(task, 30)
                await forwarder.close()
        finally:
            await publisher.stop()


async def until(condition: object, timeout: float = 60) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.05)


async def until_ready(publisher: Publisher, timeout: float = 30) -> None:
    """Until the publisher accepts writes (Kafka's connects in the background)."""
    async with asyncio.timeout(timeout):
        while not await publisher.ready():
            await asyncio.sleep(0.05)


@dataclass
class Backend:
    """One bus under test: its config and the test's ways in and out of it."""

    name: str
    config: Config

    @property
    def prefix(self) -> str:
        return self.config.bus.topic_prefix

    async def produce(self, records: Sequence[tuple[str, bytes, bytes]]) -> None:
        await produce(self.config, records)

    async def publish(self, records: Sequence[Record]) -> None:
        await publish(self.config, records)

    def forwarding(self, sink: Sink, metrics: ForwardMetrics | None = None, foreground: Foreground | None = None
                   ) -> AbstractAsyncContextManager[SinkForwarder]:
        return forwarding(self.config, sink, metrics, foreground)

    def bus(self, retention_groups: Sequence[str] = ()) -> AbstractAsyncContextManager[Bus]:
        return bus_for(self.config, retention_groups)

    async def dead_letters(self, sink: str, count: int, timeout: float = 20) -> list[dict[str, Any]]:
        """At least `count` dead letters of `sink`, read from the beginning by a group-less consumer."""
        letters: list[dict[str, Any]] = []
        async with self.bus() as bus:
            consumer = bus.consumer(group=None, max_records=500, fetch_max_wait_ms=100)
            await consumer.start()
            consumer.subscribe([dlq_topic(self.prefix, sink)])
            try:
                async with asyncio.timeout(timeout):
                    while len(letters) < count:
                        for part in (await consumer.getmany(timeout_ms=200)).values():
                            letters.extend(orjson.loads(r.value or b"null") for r in part)
            finally:
                await consumer.stop()
        return letters

    async def retained_topics(self) -> dict[str, int]:
        """Embedded: the event and control topics that still hold records (their first offsets)."""
        async with self.bus() as bus:
            assert isinstance(bus, EmbeddedBus)
            return await bus.log.first_offsets(all_topics(self.prefix))


@pytest.fixture(params=["kafka", "embedded"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """Each test once per bus. "kafka" needs the `kafka_broker` (under CI=true a missing broker
    fails the test, elsewhere it skips); "embedded" is a SQLite file in tmp_path."""
    if request.param == "embedded":
        return Backend("embedded", embedded_config_for(tmp_path))
    broker: Broker = request.getfixturevalue("kafka_broker")
    return Backend("kafka", config_for(broker, tmp_path))


async def test_delivers_everything_then_commits(backend: Backend) -> None:
    prefix = backend.prefix
    await backend.produce([record_for(prefix, i, ("high", "medium", "low", "unknown")[i % 4]) for i in range(400)]
                          + [record_for(prefix, 1000, "low", kind="test")])
    sink = MemorySink(settings())
    async with backend.forwarding(sink):
        await until(lambda: len(sink.received) >= 401)
    assert sorted(e.id for e in sink.received) == sorted([f"e-{i}" for i in range(400)] + ["e-1000"])
    test_event = next(e for e in sink.received if e.id == "e-1000")
    assert test_event.kind == "test"
    first = sink.received[0]
    assert first.source_ip == "203.0.113.7" and first.url == "https://shop.example/login"
    assert first.event_type == "sql_injection"
    if backend.name == "embedded":
        # Retention: every record the sink's group committed past is gone from the log.
        assert await backend.retained_topics() == {}
    # Committed: the same group starts where it stopped and gets nothing again.
    again = MemorySink(settings())
    async with backend.forwarding(again):
        await backend.produce([record_for(prefix, 2000)])
        await until(lambda: len(again.received) >= 1)
        await asyncio.sleep(0.5)  # give any wrongly uncommitted record a chance to show up
    assert [e.id for e in again.received] == ["e-2000"]


async def test_requests_that_never_end_slow_forwarding_down_but_never_stop_it(tmp_path: Path) -> None:
    """In `siemgate run` the forwarders wait while the ingest answers requests, at most
    `max_defer_seconds` a turn: a stream of requests that never pauses cannot starve them."""
    backend = Backend("embedded", embedded_config_for(tmp_path))
    await backend.produce([record_for(backend.prefix, i) for i in range(1000)])
    foreground = Foreground(max_defer_seconds=0.005)
    sink = MemorySink(settings(max_events=100))
    with foreground.serving():  # a request being answered for the whole test
        async with backend.forwarding(sink, foreground=foreground):
            await until(lambda: len(sink.received) >= 1000)
    assert sorted(e.id for e in sink.received) == sorted(f"e-{i}" for i in range(1000))


async def test_min_severity_filters_and_counts(backend: Backend) -> None:
    prefix = backend.prefix
    records = [record_for(prefix, i, s) for i, s in enumerate(["high", "medium", "low", "low", "unknown"])]
    records.append(record_for(prefix, 9, "low", kind="test"))  # control messages always pass
    await backend.produce(records)
    sink = MemorySink(settings(min_severity="medium"))
    metrics = ForwardMetrics()
    async with backend.forwarding(sink, metrics):
        await until(lambda: len(sink.received) >= 4)
        await until(lambda: metrics.events.labels("mem", "filtered")._value.get() >= 2)
    # unknown is routed as high by default: it must not vanish.
    assert sorted(e.id for e in sink.received) == ["e-0", "e-1", "e-4", "e-9"]
    assert metrics.events.labels("mem", "filtered")._value.get() == 2


async def test_events_with_an_impossible_time_are_counted(tmp_path: Path) -> None:
    backend = Backend("embedded", embedded_config_for(tmp_path))
    records = []
    for i, stamp in enumerate(["2025-02-30T10:00:00Z", "2026-11-28T20:59:58Z", "2025-13-45T99:99:99Z"]):
        record = make_record(prefix=backend.prefix, event={"id": f"t-{i}", "timestamp": stamp}, kind="event",
                             integration="appsec", severity="high", event_id=f"t-{i}",
                             received_at="2026-11-28T21:00:00.000000Z", batch="b", seq=i, peer="127.0.0.1")
        records.append((record.topic, record.key, record.value))
    await backend.produce(records)
    sink = MemorySink(settings())
    metrics = ForwardMetrics()
    async with backend.forwarding(sink, metrics):
        await until(lambda: len(sink.received) >= 3)
    assert metrics.invalid_timestamps.labels("mem")._value.get() == 2
    assert sorted((e.id, e.timestamp_invalid) for e in sink.received) == [
        ("t-0", "2025-02-30T10:00:00Z"), ("t-1", None), ("t-2", "2025-13-45T99:99:99Z")]


async def test_retryable_failures_and_auth_refusals_are_retried_until_delivered(backend: Backend) -> None:
    await backend.produce([record_for(backend.prefix, i) for i in range(20)])
    sink = MemorySink(settings())
    sink.fail_next = 3
    sink.auth_fail_next = 2
    metrics = ForwardMetrics()
    started = time.monotonic()
    async with backend.forwarding(sink, metrics):
        await until(lambda: len(sink.received) >= 20)
        up = metrics.up.labels("mem")._value.get()
    assert sorted(e.id for e in sink.received) == sorted(f"e-{i}" for i in range(20))
    assert up == 1
    assert metrics.retries.labels("mem", "auth")._value.get() == 2
    assert metrics.retries.labels("mem", "retryable")._value.get() == 3
    # Backoff, not a spin: 5 failures cost at least a few initial delays and few calls.
    assert sink.calls <= 8
    assert time.monotonic() - started > 0.05


async def test_rejected_items_are_dead_lettered_and_replayed(backend: Backend) -> None:
    await backend.produce([record_for(backend.prefix, i) for i in range(10)])
    sink = MemorySink(settings())
    sink.reject_ids = {"e-3", "e-7"}
    sink.retry_once_ids = {"e-5"}
    metrics = ForwardMetrics()
    async with backend.forwarding(sink, metrics):
        await until(lambda: len(sink.received) >= 8)
        await until(lambda: metrics.events.labels("mem", "dead_lettered")._value.get() >= 2)
    assert sorted(e.id for e in sink.received) == sorted(f"e-{i}" for i in range(10) if i not in (3, 7))
    assert metrics.dlq.labels("mem", "mapping_error")._value.get() == 2
    # The dead letters keep the reason, the attempt count and the original record.
    letters = await backend.dead_letters("mem", 2)
    assert sorted(letter["id"] for letter in letters) == ["e-3", "e-7"]
    assert all(letter["reason"].startswith("mapping error") and letter["attempts"] == 1 for letter in letters)
    assert all(letter["record"]["event"]["id"] == letter["id"] for letter in letters)


async def test_dlq_list_and_replay_commands(backend: Backend, tmp_path: Path) -> None:
    config = backend.config
    await backend.produce([record_for(backend.prefix, i) for i in range(5)])
    sink = MemorySink(settings(name="archive"))
    sink.reject_ids = {"e-1", "e-2"}
    metrics = ForwardMetrics()
    async with backend.forwarding(sink, metrics):
        await until(lambda: metrics.events.labels("archive", "dead_lettered")._value.get() >= 2)
    out = io.StringIO()
    assert await list_dead_letters(config, "archive", out) == 0
    assert "e-1" in out.getvalue() and "e-2" in out.getvalue() and "2 dead letter(s)" in out.getvalue()
    out = io.StringIO()
    assert await replay_dead_letters(config, "archive", out) == 0, out.getvalue()
    assert "2 delivered" in out.getvalue()
    lines = (tmp_path / "out" / "events.ndjson").read_bytes().splitlines()
    assert sorted(orjson.loads(line)["id"] for line in lines) == ["e-1", "e-2"]
    # Replayed once: a second replay finds nothing new.
    out = io.StringIO()
    assert await replay_dead_letters(config, "archive", out) == 0
    assert "0 delivered" in out.getvalue()


async def test_malformed_records_are_dead_lettered(backend: Backend) -> None:
    prefix = backend.prefix
    topic = f"{prefix}.events.high"
    # Not siemgate records: garbage values, through the bus's publisher.
    await backend.publish([Record(topic, b"junk-1", b"not json at all", [], "high", "event"),
                           Record(topic, b"junk-2", b'{"no": "contract"}', [], "high", "event")])
    await backend.produce([record_for(prefix, 1)])
    sink = MemorySink(settings())
    metrics = ForwardMetrics()
    async with backend.forwarding(sink, metrics):
        await until(lambda: len(sink.received) >= 1)
        await until(lambda: metrics.events.labels("mem", "dead_lettered")._value.get() >= 2)
    assert [e.id for e in sink.received] == ["e-1"]
    letters = await backend.dead_letters("mem", 2)
    assert sorted(letter["reason"].split(":")[0] for letter in letters) == ["malformed record"] * 2
    # Kept as they were: the JSON one spliced in, the other as hex.
    assert sorted(orjson.dumps(letter["record"]) for letter in letters) == sorted(
        [orjson.dumps(b"not json at all".hex()), b'{"no":"contract"}'])


async def test_high_events_overtake_a_low_backlog(backend: Backend) -> None:
    prefix = backend.prefix
    await backend.produce([record_for(prefix, i, "low") for i in range(20_000)])
    go = asyncio.Event()

    class GatedSink(MemorySink):
        """Holds the low backlog after 400 events until the high events are on the bus."""

        async def send(self, events: Sequence[NormalizedEvent]) -> SendResult:
            if len(self.received) >= 400:
                await go.wait()
            await asyncio.sleep(0.01)  # a sink of ~20k events/s, not an instant one
            return await super().send(events)

    sink = GatedSink(settings(max_events=200))
    async with backend.forwarding(sink):
        await until(lambda: len(sink.received) >= 400)
        await backend.produce([record_for(prefix, 100_000 + i, "high") for i in range(100)])
        low_when_produced = sum(e.severity == "low" for e in sink.received)
        go.set()
        await until(lambda: sum(e.severity == "high" for e in sink.received) >= 100)
        low_before_last_high = sum(e.severity == "low" for e in sink.received)
    # Only what was already fetched may go first (a few batches), not the ~19,600 queued.
    assert low_when_produced <= 600
    overtaken_by = low_before_last_high - low_when_produced
    assert overtaken_by < 5_000, f"the high events waited behind {overtaken_by} low ones"


async def test_service_runs_sinks_and_exposes_metrics(backend: Backend, tmp_path: Path) -> None:
    config = backend.config
    await backend.produce([record_for(backend.prefix, i) for i in range(50)])
    path = tmp_path / "out" / "events.ndjson"
    async with backend.bus([group_id(config, "archive")]) as bus:
        service = ForwardService(config, bus=bus)
        task = asyncio.create_task(service.run())
        try:
            await until(lambda: path.exists() and len(path.read_bytes().splitlines()) >= 50)
            await until(lambda: service.metrics.events.labels("archive", "delivered")._value.get() >= 50)
            # The lag gauge is measured per sink and severity; drained, it reads 0.
            await until(lambda: 'siemgate_forward_lag_events{severity="high",sink="archive"} 0.0'
                        in generate_latest(service.metrics.registry).decode())
            assert service.metrics.up.labels("archive")._value.get() == 1
        finally:
            service.request_stop()
            await asyncio.wait_for(task, 30)
    lines = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    assert sorted(line["id"] for line in lines) == sorted(f"e-{i}" for i in range(50))
    assert lines[0]["severity"] == "high" and lines[0]["event"]["n"] in range(50)
    assert lines[0]["source_ip"] == "203.0.113.7"


# Kafka only: this is about a consumer group handing partitions to another member and back
# mid-batch. The embedded bus has no group coordinator (one consumer per group, every
# partition always assigned to it): its partitions are never revoked or reassigned.
async def test_events_left_to_a_rebalance_are_not_committed_even_if_the_partition_comes_back(
    kafka_broker: Broker, tmp_path: Path
) -> None:
    config = config_for(kafka_broker, tmp_path)
    prefix = config.bus.topic_prefix
    await produce(config, [record_for(prefix, 999)])  # the topics, before the group joins

    class RebalancedSink(MemorySink):
        forwarder: SinkForwarder | None = None

        async def send(self, events: Sequence[NormalizedEvent]) -> SendResult:
            assert self.forwarder is not None
            if any(e.id.startswith("e-") and e.id != "e-999" for e in events) and not self.fail_next:
                # A rebalance while the sink fails: the partitions are revoked ...
                self.fail_next = -1
                self.forwarder.revoked.update(self.forwarder.consumer.assignment())
                raise RetryableSinkError("connection refused")
            return await super().send(events)

    sink = RebalancedSink(settings())
    async with forwarding(config, sink) as forwarder:
        sink.forwarder = forwarder
        await until(lambda: [e.id for e in sink.received] == ["e-999"])
        committing = forwarder._commit

        async def reassign_then_commit(offsets: dict[Any, int]) -> None:
            forwarder.revoked.clear()  # ... and come back after the batch gave them up
            await committing(offsets)

        forwarder._commit = reassign_then_commit  # type: ignore[method-assign]
        await produce(config, [record_for(prefix, i) for i in range(10)])
        await until(lambda: sink.fail_next == -1)
        await asyncio.sleep(1.5)  # the batch settles; none of it may be committed
    assert [e.id for e in sink.received] == ["e-999"]
    again = MemorySink(settings())
    async with forwarding(config, again):
        await until(lambda: len(again.received) >= 10)
    assert sorted(e.id for e in again.received) == sorted(f"e-{i}" for i in range(10))


@pytest.mark.parametrize("in_flight", [1, 3])
async def test_batches_in_flight_overlap_and_commit_in_order(tmp_path: Path, in_flight: int) -> None:
    """`batch.in_flight` sends run at once (a slow answer does not stall the next batch); every
    event is delivered once and the group's commits end past everything."""
    from siemgate.forwarders.sinks.base import BatchSettings

    backend = Backend("embedded", embedded_config_for(tmp_path))
    await backend.produce([record_for(backend.prefix, i, "low") for i in range(600)])
    gate = asyncio.Event()

    class SlowSink(MemorySink):
        """Each send waits until `in_flight` sends are under way (or a moment when only one may be)."""

        active = 0
        most = 0

        async def send(self, events: Sequence[NormalizedEvent]) -> SendResult:
            SlowSink.active += 1
            SlowSink.most = max(SlowSink.most, SlowSink.active)
            try:
                if SlowSink.active >= in_flight:
                    gate.set()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(gate.wait(), 0.5)
                return await super().send(events)
            finally:
                SlowSink.active -= 1

    sink = SlowSink(SinkSettings(name="mem", batch=BatchSettings(max_events=50, in_flight=in_flight),
                                 retry=RetrySettings(initial_seconds=0.05, max_seconds=0.2)))
    async with backend.forwarding(sink):
        await until(lambda: len(sink.received) >= 600)
    assert SlowSink.most == in_flight
    assert sorted(e.id for e in sink.received) == sorted(f"e-{i}" for i in range(600))
    again = MemorySink(settings())
    async with backend.forwarding(again):
        await backend.produce([record_for(backend.prefix, 9999, "low")])
        await until(lambda: len(again.received) >= 1)
    assert [e.id for e in again.received] == ["e-9999"], "everything before was committed"


async def test_an_event_the_sink_fails_on_unexpectedly_is_isolated_and_dead_lettered(backend: Backend) -> None:
    """A sink bug or an event it cannot take (an exception that is not a SinkError) must not
    stop the forwarder: the batch is halved until the event is alone, the others go through."""
    await backend.produce([record_for(backend.prefix, i) for i in range(40)])

    class Fragile(MemorySink):
        async def send(self, events: Sequence[NormalizedEvent]) -> SendResult:
            if any(e.id == "e-17" for e in events):
                raise TypeError("Recursion limit reached")
            return await super().send(events)

    sink = Fragile(settings())
    metrics = ForwardMetrics()
    async with backend.forwarding(sink, metrics):
        await until(lambda: len(sink.received) >= 39)
        await until(lambda: metrics.dlq.labels("mem", "sink_failure")._value.get() >= 1)
    assert sorted(e.id for e in sink.received) == sorted(f"e-{i}" for i in range(40) if i != 17)
    letters = await backend.dead_letters("mem", 1)
    assert [letter["id"] for letter in letters] == ["e-17"]
    assert letters[0]["reason"] == "sink_failure: TypeError: Recursion limit reached"


async def test_a_record_the_normalizer_fails_on_unexpectedly_is_dead_lettered(
        backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    """An exception out of the normalizer that is not its ValueError for a malformed record (a
    datetime OverflowError once did it: the sink's sweep) must not stop the forwarder: the
    record is dead-lettered with the reason, the others are delivered."""
    await backend.produce([record_for(backend.prefix, i) for i in range(20)])
    normalize = Normalizer.normalize

    def failing(self: Normalizer, value: bytes, fields: frozenset[str] | None = None) -> NormalizedEvent:
        if b'"id":"e-7"' in value:
            raise OverflowError("date value out of range")
        return normalize(self, value, fields)

    monkeypatch.setattr(Normalizer, "normalize", failing)
    sink = MemorySink(settings())
    metrics = ForwardMetrics()
    async with backend.forwarding(sink, metrics):
        await until(lambda: len(sink.received) >= 19)
        await until(lambda: metrics.dlq.labels("mem", "normalize_failure")._value.get() >= 1)
    assert sorted(e.id for e in sink.received) == sorted(f"e-{i}" for i in range(20) if i != 7)
    letters = await backend.dead_letters("mem", 1)
    assert [letter["reason"] for letter in letters] == ["normalize_failure: OverflowError: date value out of range"]
    assert letters[0]["record"]["id"] == "e-7"
