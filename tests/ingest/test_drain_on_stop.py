"""SpoolingPublisher.stop drains the spool before exit (issue 15, item 1), against the scripted
Kafka of test_spooling_publisher.py: every outcome, the timeout, a second signal, and a stop
that never cuts a spool write in half. (With real processes and Tansu: test_drain_process.py.)"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import httpx
import pytest

from siemgate.bus.spool import Spool
from siemgate.bus.spooling import SpoolingPublisher
from siemgate.config import SpoolConfig
from siemgate.ingest.app import create_app
from tests.ingest.test_spooling_publisher import ScriptedKafka, batch
from tests.support import make_config

pytestmark = pytest.mark.anyio


def publisher_for(tmp_path: Path, kafka: ScriptedKafka, drain_timeout: float = 30.0) -> SpoolingPublisher:
    spool = SpoolConfig(path=str(tmp_path / "spool"), ack_deadline_seconds=0.05, drain_timeout_seconds=drain_timeout)
    return SpoolingPublisher(kafka._config, spool, kafka=kafka)


async def spooled(publisher: SpoolingPublisher, kafka: ScriptedKafka, batches: int, size: int = 50) -> list[bytes]:
    """Kafka down: `batches` batches go to the spool. Returns their keys in order."""
    kafka.up = False
    keys: list[bytes] = []
    for n in range(batches):
        records = batch(f"b{n}", size)
        await publisher.publish(records)
        keys.extend(r.key for r in records)
    assert publisher.spool.events == len(keys)
    return keys


async def spool_file_events(tmp_path: Path) -> int:
    spool = Spool(tmp_path / "spool", 1 << 30)
    await spool.open()
    try:
        return spool.events
    finally:
        await spool.close()


async def test_stop_with_an_empty_spool_is_counted_empty(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    kafka = ScriptedKafka()
    publisher = publisher_for(tmp_path, kafka)
    await publisher.start()
    await publisher.publish(batch("direct"))
    caplog.set_level(logging.INFO, "siemgate.bus.spooling")
    started = time.monotonic()
    await publisher.stop()
    assert time.monotonic() - started < 2
    assert publisher.last_drain is not None and publisher.last_drain.outcome == "empty"
    assert publisher.shutdown_drains() == {"empty": 1, "drained": 0, "timeout": 0, "unreachable": 0}
    assert "nothing to send before exit" in caplog.text


async def test_stop_drains_what_the_spool_holds_once_kafka_is_back(tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    kafka = ScriptedKafka()
    publisher = publisher_for(tmp_path, kafka)
    await publisher.start()
    keys = await spooled(publisher, kafka, 30)
    publisher.begin_stopping()  # SIGTERM while Kafka is away; it comes back a moment later

    async def heal() -> None:
        await asyncio.sleep(0.5)
        kafka.up = True

    caplog.set_level(logging.INFO, "siemgate.bus.spooling")
    healing = asyncio.create_task(heal())
    await publisher.stop()
    await healing
    report = publisher.last_drain
    assert report is not None
    assert (report.outcome, report.held, report.left, report.drained) == ("drained", 1500, 0, 1500)
    assert list(dict.fromkeys(kafka.received)) == keys  # everything, in the order it was acked
    assert publisher.shutdown_drains()["drained"] == 1
    assert publisher.spool_stats().events == 0
    assert await spool_file_events(tmp_path) == 0
    assert "1500 events sent to Kafka before exit" in caplog.text


async def test_kafka_still_away_ends_the_drain_at_the_timeout_and_keeps_the_events(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    kafka = ScriptedKafka()
    publisher = publisher_for(tmp_path, kafka, drain_timeout=1.5)
    await publisher.start()
    keys = await spooled(publisher, kafka, 4)
    caplog.set_level(logging.INFO, "siemgate.bus.spooling")
    started = time.monotonic()
    await publisher.stop()
    took = time.monotonic() - started
    assert 1.4 < took < 4, took
    report = publisher.last_drain
    assert report is not None
    assert (report.outcome, report.held, report.left, report.ended_by) == ("unreachable", 200, 200, "timeout")
    assert publisher.shutdown_drains()["unreachable"] == 1
    assert await spool_file_events(tmp_path) == 200  # on disk, for the next start
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    message = errors[0].getMessage()
    assert "200 acknowledged events still in the spool" in message and "siemgate spool drain" in message
    assert "KEEP ITS VOLUME" in message

    # The next start on the same spool sends them.
    kafka.up = True
    kafka.received.clear()
    again = publisher_for(tmp_path, kafka)
    await again.start()
    await again.stop()
    assert again.last_drain is not None and again.last_drain.outcome in ("drained", "empty")
    assert list(dict.fromkeys(kafka.received)) == keys


async def test_a_slow_kafka_ends_the_drain_at_the_timeout_between_two_deletes(tmp_path: Path) -> None:
    """Kafka takes writes but slowly: the timeout ends the drain as `timeout`; the count left is
    the file's (the stop never cancels a delete half-way)."""
    kafka = ScriptedKafka()
    publisher = publisher_for(tmp_path, kafka, drain_timeout=1.0)
    await publisher.start()
    await spooled(publisher, kafka, 200, size=50)  # 10,000 events: five chunks
    kafka.up = True
    kafka.ack_seconds = 0.6
    await publisher.stop()
    report = publisher.last_drain
    assert report is not None
    assert report.outcome == "timeout" and report.ended_by == "timeout"
    assert 0 < report.left < 10_000
    assert await spool_file_events(tmp_path) == report.left
    assert publisher.spool_stats().events == report.left
    assert len(set(kafka.received)) + report.left >= 10_000  # all sent or still held (at least once)


async def test_a_second_signal_ends_the_drain_at_once(tmp_path: Path) -> None:
    kafka = ScriptedKafka()
    publisher = publisher_for(tmp_path, kafka, drain_timeout=120)
    await publisher.start()
    await spooled(publisher, kafka, 3)
    publisher.begin_stopping()
    asyncio.get_running_loop().call_later(0.5, publisher.abandon_drain)
    started = time.monotonic()
    await publisher.stop()
    assert time.monotonic() - started < 3
    report = publisher.last_drain
    assert report is not None and report.ended_by == "signal" and report.left == 150
    assert report.outcome == "unreachable"
    assert await spool_file_events(tmp_path) == 150


async def test_no_drain_with_drain_timeout_zero(tmp_path: Path) -> None:
    kafka = ScriptedKafka()
    publisher = publisher_for(tmp_path, kafka, drain_timeout=0)
    await publisher.start()
    await spooled(publisher, kafka, 2)
    kafka.up = True
    # Each acknowledgement takes a second: a chunk the drainer sends as the stop wakes it cannot
    # be taken within the zero drain timeout (with instant acks it was, now and then: a race).
    kafka.ack_seconds = 1.0
    started = time.monotonic()
    await publisher.stop()
    assert time.monotonic() - started < 2
    report = publisher.last_drain
    assert report is not None and report.left > 0 and report.outcome in ("timeout", "unreachable")
    assert await spool_file_events(tmp_path) == report.left


async def test_the_app_is_not_ready_from_the_first_stop_signal_and_counts_the_drain(tmp_path: Path) -> None:
    """The stop signal's hook (what `siemgate ingest` calls on SIGTERM): /readyz 503, while a batch
    still goes to the spool and is answered 200; the drain's outcome is a metric."""
    config = make_config(tmp_path, None, spool={"ack_deadline_seconds": 0.05, "drain_timeout_seconds": 0.5})
    kafka = ScriptedKafka()
    kafka.up = False
    publisher = publisher_for(tmp_path, kafka, drain_timeout=0.5)
    app = create_app(config, publisher)
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        assert (await client.get("/readyz")).status_code == 200  # the spool takes writes
        app.state.context.stop_signal(1)
        ready = await client.get("/readyz")
        assert ready.status_code == 503 and "stopping" in ready.json()["reason"]
        response = await client.post("/webhook/appsec", json=[{"id": "late", "severity": "high"}],
                                     headers={"X-Api-Key": "test-key-0123456789"})
        assert response.status_code == 200
        assert publisher.spool.events == 1
        metrics = (await client.get("/metrics")).text
        assert 'siemgate_shutdown_drain_total{outcome="unreachable"} 0.0' in metrics
    # The lifespan stopped the publisher: the drain ran and was counted.
    assert publisher.shutdown_drains()["unreachable"] == 1
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        text = (await client.get("/metrics")).text
    assert 'siemgate_shutdown_drain_total{outcome="unreachable"} 1.0' in text
    assert "siemgate_spool_events 1.0" in text
