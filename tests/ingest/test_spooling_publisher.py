"""SpoolingPublisher's logic against a scripted stand-in for Kafka: the switch between direct
and spooling modes under concurrent senders, the handover, records Kafka refuses for their
size. (The same publisher against a real broker: test_spool_ingest.py.)"""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from siemgate.bus.kafka import KafkaPublisher
from siemgate.bus.spooling import SpoolingPublisher
from siemgate.config import KafkaConfig, SpoolConfig, TopicsConfig
from siemgate.errors import BusUnavailable, RecordTooLarge
from siemgate.record import Record, make_record
from tests.support import first_occurrences, wait_until

pytestmark = pytest.mark.anyio


class ScriptedKafka(KafkaPublisher):
    """Takes records while `up`; `ack_seconds` delays every acknowledgement; keys in
    `too_large` are refused for their size."""

    def __init__(self) -> None:
        super().__init__(KafkaConfig(bootstrap_servers="127.0.0.1:1", topics=TopicsConfig(create=False)))
        self.up = True
        self.ack_seconds = 0.0
        self.too_large: set[bytes] = set()
        self.received: list[bytes] = []

    @property
    def connected(self) -> bool:
        return self.up

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def wait_connected(self, timeout: float) -> bool:
        return self.up

    async def ready(self) -> bool:
        return self.up

    async def publish(self, records: Sequence[Record]) -> None:
        if not self.up:
            raise BusUnavailable("not connected to Kafka yet")
        await asyncio.sleep(self.ack_seconds)  # a real producer always waits for the broker
        if any(r.key in self.too_large for r in records):
            raise RecordTooLarge("an event is larger than Kafka accepts")
        self.received.extend(r.key for r in records)


def batch(name: str, n: int = 5) -> list[Record]:
    return [make_record(prefix="p", event={"n": i}, kind="event", integration="appsec", severity="high",
                        event_id=f"{name}-{i}", received_at="2026-11-28T21:00:00Z", batch=name, seq=i,
                        peer="127.0.0.1") for i in range(n)]


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[tuple[SpoolingPublisher, ScriptedKafka]]:
    kafka = ScriptedKafka()
    spool = SpoolConfig(path=str(tmp_path / "spool"), ack_deadline_seconds=0.05)
    publisher = SpoolingPublisher(kafka._config, spool, kafka=kafka)
    await publisher.start()
    try:
        yield publisher, kafka
    finally:
        await publisher.stop()


async def drained(publisher: SpoolingPublisher) -> None:
    await wait_until(lambda: not publisher.spooling and publisher.spool.events == 0, "the spool to drain", 30)


async def test_direct_while_kafka_takes_writes(setup: tuple[SpoolingPublisher, ScriptedKafka]) -> None:
    publisher, kafka = setup
    await publisher.publish(batch("a"))
    assert kafka.received == [r.key for r in batch("a")]
    assert not publisher.spooling and publisher.spool_stats().batches_spooled == 0


async def test_a_late_ack_spools_within_the_deadline(setup: tuple[SpoolingPublisher, ScriptedKafka]) -> None:
    publisher, kafka = setup
    kafka.ack_seconds = 5.0
    async with asyncio.timeout(2.0):
        await publisher.publish(batch("late"))
    assert publisher.spooling and publisher.spool.events == 5
    kafka.ack_seconds = 0.0
    await drained(publisher)
    assert first_occurrences(kafka.received) == [r.key for r in batch("late")]


async def test_concurrent_senders_through_flapping_kafka_lose_nothing_and_keep_their_order(
    setup: tuple[SpoolingPublisher, ScriptedKafka]
) -> None:
    publisher, kafka = setup
    acked: dict[int, list[bytes]] = {n: [] for n in range(10)}
    done = asyncio.Event()

    async def sender(n: int) -> None:
        b = 0
        while not done.is_set():
            records = batch(f"s{n}-b{b}", 3)
            await publisher.publish(records)
            acked[n].extend(r.key for r in records)
            b += 1

    async def flap() -> None:
        rng = random.Random(7)
        for _ in range(60):
            kafka.up = rng.random() < 0.6
            kafka.ack_seconds = rng.choice((0.0, 0.0, 0.01, 0.2))
            await asyncio.sleep(rng.uniform(0.005, 0.05))  # the workload's rhythm, not synchronisation
        kafka.up, kafka.ack_seconds = True, 0.0
        done.set()

    await asyncio.gather(flap(), *(sender(n) for n in range(10)))
    await drained(publisher)
    assert publisher.spool_stats().batches_spooled > 0
    received = first_occurrences(kafka.received)
    for n, keys in acked.items():
        mine = set(keys)
        assert [k for k in received if k in mine] == keys, f"sender {n}"


async def test_no_switch_back_to_direct_while_an_append_is_being_written(
    setup: tuple[SpoolingPublisher, ScriptedKafka]
) -> None:
    publisher, kafka = setup
    kafka.up = False
    gate = threading.Event()
    blocker = asyncio.ensure_future(publisher.spool.engine.call(gate.wait))  # the SQLite thread is busy
    spooled = asyncio.ensure_future(publisher.publish(batch("in-flight")))
    await wait_until(lambda: publisher.spooling and publisher.spool.writing, "the append to be under way")
    kafka.up = True
    # The spool is empty, but a batch already answered "spooling" is being written: switching
    # now would let the sender's next batch overtake it.
    assert publisher.spool.events == 0
    assert not publisher._switch_to_direct()
    assert publisher.spooling
    gate.set()
    await asyncio.gather(blocker, spooled)
    await drained(publisher)
    await publisher.publish(batch("next"))
    assert kafka.received == [r.key for r in batch("in-flight") + batch("next")]


async def test_handover_lets_a_fast_sequential_sender_return_to_direct_mode(
    setup: tuple[SpoolingPublisher, ScriptedKafka]
) -> None:
    publisher, kafka = setup
    kafka.up = False
    for b in range(5):
        await publisher.publish(batch(f"down{b}"))
    assert publisher.spooling
    kafka.up = True
    sent = 0
    while publisher.spooling:  # no pause between batches: without the handover this never ends
        await publisher.publish(batch(f"up{sent}"))
        sent += 1
        assert sent < 10_000
    await publisher.publish(batch("direct"))
    assert kafka.received[-5:] == [r.key for r in batch("direct")]


async def test_a_record_kafka_refuses_for_its_size_is_set_aside_and_the_rest_delivered(
    setup: tuple[SpoolingPublisher, ScriptedKafka]
) -> None:
    publisher, kafka = setup
    kafka.up = False
    await publisher.publish(batch("a"))
    await publisher.publish(batch("b"))
    kafka.too_large = {b"a-2"}
    kafka.up = True
    await drained(publisher)
    assert kafka.received == [r.key for r in batch("a") + batch("b") if r.key != b"a-2"]
    assert publisher.spool_stats().set_aside_events == 1
    rows = await publisher.spool.engine.call(
        lambda: publisher.spool.engine.connection.execute("SELECT key, reason FROM set_aside").fetchall()
    )
    assert rows == [(b"a-2", "an event is larger than Kafka accepts")]


async def test_a_full_spool_falls_back_to_kafka_before_refusing(tmp_path: Path) -> None:
    kafka = ScriptedKafka()
    spool = SpoolConfig(path=str(tmp_path / "spool"), max_bytes=2048, ack_deadline_seconds=0.05)
    publisher = SpoolingPublisher(kafka._config, spool, kafka=kafka)
    await publisher.start()
    try:
        kafka.up = False
        await publisher.publish(batch("a", 6))
        with pytest.raises(BusUnavailable, match="DATA LOSS RISK.*spool is full"):
            await publisher.publish(batch("b", 5))
        assert publisher.spool_stats().refused_full == 1
        assert not await publisher.ready()
        kafka.up = True
        assert await publisher.ready()
        await publisher.publish(batch("c", 5))  # the spool may still be full: Kafka takes it
        await drained(publisher)
        assert set(kafka.received) == {r.key for r in batch("a", 6) + batch("c", 5)}
    finally:
        await publisher.stop()


async def test_empty_batch_needs_nothing(setup: tuple[SpoolingPublisher, ScriptedKafka]) -> None:
    publisher, kafka = setup
    kafka.up = False
    await publisher.publish([])
    assert not publisher.spooling
