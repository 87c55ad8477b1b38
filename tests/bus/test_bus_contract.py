"""The bus contract: one suite, run against both backends (Kafka and the embedded log).

What the ingest and the forwarders rely on: a published record is read back intact and in
order; a group resumes after its commit and re-reads what it did not commit; groups are
independent; fetches wait for records and wake when they arrive; pause, resume and seek
work; offsets, end offsets and positions agree.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from siemgate.bus.base import Bus, Consumer, Message, Partition, Publisher
from siemgate.bus.embedded import EmbeddedBus, EmbeddedLog
from siemgate.bus.kafka import KafkaPublisher
from siemgate.bus.kafka_bus import KafkaBus
from siemgate.config import KafkaConfig
from siemgate.errors import BusUnavailable, CommitRefused
from siemgate.record import Record, make_record
from siemgate_standins.broker import Broker

pytestmark = pytest.mark.anyio

WAIT_MS = 100


@dataclass
class Backend:
    name: str
    bus: Bus
    prefix: str
    publisher: Publisher

    @property
    def high(self) -> Partition:
        return Partition(f"{self.prefix}.events.high", 0)

    @property
    def low(self) -> Partition:
        return Partition(f"{self.prefix}.events.low", 0)

    def consumer(self, group: str | None = "g1", max_records: int = 1000) -> Consumer:
        return self.bus.consumer(group=group, max_records=max_records, fetch_max_wait_ms=WAIT_MS)


@pytest.fixture(params=["embedded", "kafka"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    prefix = f"c{uuid.uuid4().hex[:10]}"
    if request.param == "embedded":
        log = EmbeddedLog(tmp_path / "bus.db", prefix=prefix, retention_groups=["g1"])
        await log.open()
        publisher = EmbeddedBus(log).publisher()
        await publisher.start()
        try:
            yield Backend("embedded", EmbeddedBus(log), prefix, publisher)
        finally:
            await publisher.stop()
            await log.close()
        return
    broker: Broker = request.getfixturevalue("kafka_broker")
    # One partition per topic: the contract's order is per partition.
    config = KafkaConfig(bootstrap_servers=broker.bootstrap_servers, topic_prefix=prefix,
                         idempotence=broker.idempotence, topics=_one_partition())
    bus = KafkaBus(config)
    await bus.ensure_topics()
    kafka_publisher = KafkaPublisher(config)
    await kafka_publisher.start()
    assert await kafka_publisher.wait_connected(30)
    try:
        yield Backend("kafka", bus, prefix, kafka_publisher)
    finally:
        await kafka_publisher.stop()


def _one_partition() -> object:
    from siemgate.config import TopicsConfig

    return TopicsConfig(partitions=1)


def records(prefix: str, severity: str, start: int, count: int) -> list[Record]:
    return [
        make_record(prefix=prefix, event={"id": f"{severity}-{i}", "n": i, "severity": severity}, kind="event",
                    integration="appsec", severity=severity, event_id=f"{severity}-{i}",  # type: ignore[arg-type]
                    received_at="2026-11-29T00:00:00.000000Z", batch="b", seq=i, peer="192.0.2.1")
        for i in range(start, start + count)
    ]


@contextlib.asynccontextmanager
async def consuming(backend: Backend, topics: Sequence[str], group: str | None = "g1",
                    max_records: int = 1000) -> AsyncIterator[Consumer]:
    consumer = backend.consumer(group, max_records)
    await consumer.start()
    consumer.subscribe(list(topics))
    try:
        yield consumer
    finally:
        await consumer.stop()


async def read(consumer: Consumer, count: int, timeout: float = 60) -> list[Message]:
    """Fetch until `count` records arrived (the first fetch of a Kafka group waits for its join)."""
    got: list[Message] = []
    async with asyncio.timeout(timeout):
        while len(got) < count:
            fetched = await consumer.getmany(timeout_ms=500)
            got.extend(m for messages in fetched.values() for m in messages)
    return got


async def assigned(consumer: Consumer, timeout: float = 60) -> set[Partition]:
    async with asyncio.timeout(timeout):
        while not consumer.assignment():
            await consumer.getmany(timeout_ms=200)
    return consumer.assignment()


def ids(messages: Sequence[Message]) -> list[str]:
    return [m.key.decode() for m in messages if m.key is not None]


async def test_published_records_read_back_intact_and_in_order(backend: Backend) -> None:
    sent = records(backend.prefix, "high", 0, 300)
    await backend.publisher.publish(sent[:100])
    await backend.publisher.publish(sent[100:])
    async with consuming(backend, [backend.high.topic]) as consumer:
        got = await read(consumer, 300)
    assert len(got) == 300
    assert [m.value for m in got] == [r.value for r in sent]
    assert ids(got) == [r.key.decode() for r in sent]
    assert [tuple(h) for h in got[0].headers] == [("kind", b"event"), ("severity", b"high"),
                                                  ("integration", b"appsec")]
    offsets = [m.offset for m in got]
    assert offsets == sorted(offsets) and len(set(offsets)) == 300


async def test_a_group_resumes_after_its_commit_and_rereads_what_it_did_not_commit(backend: Backend) -> None:
    await backend.publisher.publish(records(backend.prefix, "high", 0, 50))
    async with consuming(backend, [backend.high.topic], max_records=20) as consumer:
        first = await read(consumer, 20)
        await consumer.commit({backend.high: first[19].offset + 1})
        await read(consumer, 30)  # read, never committed: a crash here
    await backend.publisher.publish(records(backend.prefix, "high", 50, 5))
    async with consuming(backend, [backend.high.topic]) as again:
        rest = await read(again, 35)
    assert ids(rest) == [f"high-{i}" for i in range(20, 55)]


async def test_groups_are_independent(backend: Backend) -> None:
    await backend.publisher.publish(records(backend.prefix, "low", 0, 10))
    async with consuming(backend, [backend.low.topic], group="g1") as one:
        got = await read(one, 10)
        await one.commit({backend.low: got[-1].offset + 1})
    async with consuming(backend, [backend.low.topic], group="g2") as two:
        assert ids(await read(two, 10)) == [f"low-{i}" for i in range(10)]


async def test_a_fetch_wakes_when_records_arrive(backend: Backend) -> None:
    async with consuming(backend, [backend.high.topic]) as consumer:
        await assigned(consumer)
        fetch = asyncio.create_task(consumer.getmany(timeout_ms=30_000))
        await asyncio.sleep(0)  # the fetch is waiting
        await backend.publisher.publish(records(backend.prefix, "high", 0, 3))
        async with asyncio.timeout(30):
            fetched = await fetch
        got = [m for messages in fetched.values() for m in messages]
        got += await read(consumer, 3 - len(got)) if len(got) < 3 else []
    assert ids(got) == ["high-0", "high-1", "high-2"]


async def test_an_empty_fetch_returns_after_its_timeout(backend: Backend) -> None:
    async with consuming(backend, [backend.high.topic]) as consumer:
        await assigned(consumer)
        assert await consumer.getmany(timeout_ms=200) == {}


async def test_pause_resume_and_fetching_chosen_partitions(backend: Backend) -> None:
    async with consuming(backend, [backend.high.topic, backend.low.topic]) as consumer:
        assert await assigned(consumer) == {backend.high, backend.low}
        consumer.pause(backend.low)
        await backend.publisher.publish(records(backend.prefix, "high", 0, 5) + records(backend.prefix, "low", 0, 5))
        only_high = await read(consumer, 5)
        assert {m.key.decode()[:4] for m in only_high if m.key} == {"high"}
        assert await consumer.getmany(timeout_ms=300) == {}
        consumer.resume(backend.low)
        chosen = await _fetch_from(consumer, backend.low, 5)
        assert ids(chosen) == [f"low-{i}" for i in range(5)]


async def _fetch_from(consumer: Consumer, partition: Partition, count: int) -> list[Message]:
    got: list[Message] = []
    async with asyncio.timeout(30):
        while len(got) < count:
            fetched: Mapping[Partition, Sequence[Message]] = await consumer.getmany(partition, timeout_ms=500)
            assert set(fetched) <= {partition}
            got.extend(fetched.get(partition, ()))
    return got


async def test_seek_reads_again(backend: Backend) -> None:
    await backend.publisher.publish(records(backend.prefix, "high", 0, 10))
    async with consuming(backend, [backend.high.topic]) as consumer:
        got = await read(consumer, 10)
        consumer.seek(backend.high, got[4].offset)
        assert ids(await read(consumer, 6)) == [f"high-{i}" for i in range(4, 10)]


async def test_offsets_end_offsets_and_positions_agree(backend: Backend) -> None:
    await backend.publisher.publish(records(backend.prefix, "high", 0, 7))
    async with consuming(backend, [backend.high.topic]) as consumer:
        got = await read(consumer, 7)
        position = await consumer.position(backend.high)
        assert position == got[-1].offset + 1
        ends = await consumer.end_offsets([backend.high])
        # Tansu may report an end offset lower than what is consumable (seen with Tansu).
        assert 0 < ends[backend.high] <= position
        highwater = consumer.highwater(backend.high)
        assert highwater is not None and 0 < highwater <= position
        # A partition this consumer does not own (revoked by a rebalance meanwhile): unknown,
        # not an error (a forwarder asks for it right after an await).
        assert consumer.highwater(backend.low) is None


async def test_a_consumer_without_a_group_reads_everything_and_cannot_commit(backend: Backend) -> None:
    await backend.publisher.publish(records(backend.prefix, "low", 0, 4))
    async with consuming(backend, [backend.low.topic], group=None) as consumer:
        got = await read(consumer, 4)
        with pytest.raises(CommitRefused):
            await consumer.commit({backend.low: got[-1].offset + 1})


async def test_a_stopped_publisher_refuses_to_publish(backend: Backend) -> None:
    publisher = backend.bus.publisher()
    await publisher.start()
    async with asyncio.timeout(30):
        while not await publisher.ready():
            await asyncio.sleep(0.05)
    await publisher.publish(records(backend.prefix, "medium", 0, 1))
    await publisher.stop()
    with pytest.raises(BusUnavailable):
        await publisher.publish(records(backend.prefix, "medium", 1, 1))
