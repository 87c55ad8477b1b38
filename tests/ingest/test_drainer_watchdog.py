"""The spool drainer's progress watchdog, in process against the scripted Kafka: events in the
spool and no chunk acknowledged for bus.spool.stall_timeout_seconds is a stall (whether Kafka
fails every attempt or a produce never returns); no events is never one; the stall clears
as soon as Kafka acknowledges a chunk. (With a real broker behind a real partition and a
real process: tests/lifecycle/test_drainer_watchdog_process.py.)"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from siemgate.bus.spooling import BACKOFF, DRAINER, PRODUCE, SpoolingPublisher
from siemgate.config import SpoolConfig
from siemgate.watchdog import Progress
from tests.ingest.test_spooling_publisher import ScriptedKafka, batch
from tests.support import wait_until

pytestmark = pytest.mark.anyio

TIMEOUT = 0.6


# What the watchdog's fresh Kafka client finds: None (Kafka answers it: the drainer's own client
# is the one stuck) or why it cannot reach Kafka either. Tests set PROBE[0].
PROBE: list[str | None] = [None]


async def probe() -> str | None:
    PROBES.append(PROBE[0])
    return PROBE[0]


PROBES: list[str | None] = []


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[tuple[SpoolingPublisher, ScriptedKafka]]:
    PROBE[0] = None
    PROBES.clear()
    kafka = ScriptedKafka()
    spool = SpoolConfig(path=str(tmp_path / "spool"), ack_deadline_seconds=0.05, stall_timeout_seconds=TIMEOUT,
                        drain_timeout_seconds=0.5)
    publisher = SpoolingPublisher(kafka._config, spool, kafka=kafka, probe=probe)
    await publisher.start()
    try:
        yield publisher, kafka
    finally:
        await publisher.stop()


def errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == logging.ERROR and "drainer is stalled" in r.getMessage()]


async def test_kafka_failing_every_attempt_stalls_the_drainer_and_an_ack_clears_it(
        setup: tuple[SpoolingPublisher, ScriptedKafka], caplog: pytest.LogCaptureFixture) -> None:
    publisher, kafka = setup
    kafka.up = False
    with caplog.at_level(logging.INFO, logger="siemgate.bus.spooling"):
        await publisher.publish(batch("a", 7))
        assert publisher.spool.events == 7
        await wait_until(lambda: bool(publisher.stalls()), "the drainer to be reported stalled", 15)
        [stall] = publisher.stalls()
        assert stall["component"] == DRAINER and stall["pending_events"] == 7
        assert stall["waiting_on"] in (BACKOFF, PRODUCE)
        assert stall["kafka_problem"] == "not connected to Kafka yet"
        assert publisher.stalled() == {DRAINER: 1}
        [error] = errors(caplog)
        message = error.getMessage()
        assert "7 events in the spool" in message and "not connected to Kafka yet" in message, message
        assert "bus.spool.stall_timeout_seconds" in message
        await publisher.check_progress()
        await publisher.check_progress()  # still stalled: logged once
        assert len(errors(caplog)) == 1
        kafka.up = True
        await wait_until(lambda: not publisher.stalls() and publisher.spool.events == 0,
                         "the stall to clear once Kafka acknowledges", 30)
        assert publisher.stalled() == {DRAINER: 0}
        assert len(errors(caplog)) == 1
        assert any("spool drainer resumed" in r.getMessage() for r in caplog.records)
    assert kafka.received == [r.key for r in batch("a", 7)]


async def test_kafka_away_for_a_fresh_client_too_is_no_stall(
        setup: tuple[SpoolingPublisher, ScriptedKafka], caplog: pytest.LogCaptureFixture) -> None:
    """Every attempt fails and a fresh client cannot reach Kafka either: restarting the ingest
    cannot bring Kafka back (and would refuse webhooks while every replica restarts), so the
    drainer is excused and a WARNING says why; once a fresh client reaches Kafka while the
    drainer's attempts still fail, the stall stands."""
    publisher, kafka = setup
    PROBE[0] = "cannot reach kafka:9092: timed out"
    kafka.up = False
    with caplog.at_level(logging.INFO, logger="siemgate.bus.spooling"):
        await publisher.publish(batch("c", 4))
        await wait_until(lambda: len(PROBES) >= 3, "the watchdog to probe Kafka three times", 15)
        assert not publisher.stalls() and publisher.stalled() == {DRAINER: 0} and not errors(caplog)
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "fresh client" in r.getMessage()]
        assert warnings and warnings[0].probe == "cannot reach kafka:9092: timed out"  # type: ignore[attr-defined]
        PROBE[0] = None  # Kafka answers others now; this drainer's attempts keep failing
        await wait_until(lambda: bool(publisher.stalls()), "the drainer to be reported stalled", 15)
        assert len(errors(caplog)) == 1


async def test_a_produce_that_never_returns_is_a_stall_naming_the_produce(
        setup: tuple[SpoolingPublisher, ScriptedKafka]) -> None:
    publisher, kafka = setup
    kafka.ack_seconds = 3600.0  # Kafka takes the request and never answers (a half-open connection)
    await publisher.publish(batch("b", 3))  # not acked within the deadline: spooled
    assert publisher.spooling
    await wait_until(lambda: bool(publisher.stalls()), "the frozen drainer to be reported stalled", 15)
    [stall] = publisher.stalls()
    assert stall["waiting_on"] == PRODUCE and stall["pending_events"] == 3, stall


async def test_no_events_in_the_spool_is_never_a_stall(setup: tuple[SpoolingPublisher, ScriptedKafka]) -> None:
    publisher, kafka = setup
    clock = [0.0]
    publisher.progress = Progress(DRAINER, clock=lambda: clock[0], subject="component")
    await publisher.publish(batch("c", 2))  # direct
    kafka.up = False  # Kafka away, but nothing is spooled
    for _ in range(3):
        clock[0] += TIMEOUT * 10
        await publisher.check_progress()
        assert not publisher.stalls() and publisher.stalled() == {DRAINER: 0}
    # Work appears: the clock starts then, not at the last progress long before.
    await publisher.publish(batch("d", 2))
    assert publisher.spool.events == 2
    await publisher.check_progress()
    assert not publisher.stalls()
    clock[0] += TIMEOUT * 1.5
    await publisher.check_progress()
    assert publisher.stalls() and publisher.stalls()[0]["pending_events"] == 2


async def test_a_slow_kafka_that_acknowledges_is_not_a_stall(
        setup: tuple[SpoolingPublisher, ScriptedKafka]) -> None:
    publisher, kafka = setup
    kafka.ack_seconds = 0.1  # later than the ack deadline: every batch is spooled, then drained
    for n in range(int(TIMEOUT * 4 / 0.1)):
        await publisher.publish(batch(f"s{n}", 2))
        assert not publisher.stalls(), publisher.stalls()
    await wait_until(lambda: publisher.spool.events == 0, "the spool to drain", 30)
    assert not publisher.stalls()
