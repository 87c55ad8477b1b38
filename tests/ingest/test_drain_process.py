"""`siemgate ingest` as a process on SIGTERM (issue 15, item 1): it answers the requests that
still reach it durably, drains its spool to Kafka before it exits, and when Kafka stays away,
exits after `bus.spool.drain_timeout_seconds` with the events kept in the spool, which a
restart or `siemgate spool drain` delivers. Real processes, a Tansu broker of each test."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson
import pytest

from siemgate.bus.spool import Spool
from siemgate.record import all_topics
from siemgate_standins.broker import free_port
from tests.ingest.conftest import TansuFactory
from tests.ingest.test_spool_process import IngestProcess, ingest_processes
from tests.support import KEY, PrivateTansu, Sender, consume_keys, metric_value, siemgate_command, wait_until

pytestmark = pytest.mark.anyio
__all__ = ["ingest_processes"]  # the fixture


def write_config(tmp_path: Path, tansu: PrivateTansu, port: int, *, drain_timeout: float,
                 name: str = "siemgate.json") -> Path:
    config = {
        "log_level": "info",
        "listen": {"host": "127.0.0.1", "port": port},
        "state_dir": str(tmp_path / "state"),
        "quarantine": {"path": str(tmp_path / "quarantine")},
        "integrations": [{"name": "appsec", "auth": {"header": "X-Api-Key", "values": [KEY]}}],
        "bus": {
            "type": "kafka",
            "kafka": {"bootstrap_servers": tansu.broker.bootstrap_servers, "topic_prefix": "drain",
                      "idempotence": False, "produce_timeout_seconds": 3, "topics": {"partitions": 1}},
            "spool": {"path": str(tmp_path / "spool"), "ack_deadline_seconds": 1,
                      "drain_timeout_seconds": drain_timeout},
        },
    }
    path = tmp_path / name
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def log_entries(path: Path) -> list[dict[str, object]]:
    entries = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


def drain_outcome(path: Path) -> dict[str, object]:
    """The log entry that reports the drain before exit."""
    found = [e for e in log_entries(path) if "outcome" in e and "events_left" in e]
    assert len(found) == 1, f"one drain report expected in {path}: {found}"
    return found[0]


async def spool_events(tmp_path: Path) -> int:
    spool = Spool(tmp_path / "spool", 1 << 30)
    await spool.open()
    try:
        return spool.events
    finally:
        await spool.close()


async def wait_exit(ingest: IngestProcess, timeout: float) -> int:
    return await asyncio.to_thread(ingest.process.wait, timeout)


async def test_sigterm_with_an_empty_spool_exits_at_once(
    private_tansu: TansuFactory, ingest_processes: Callable[[Path, int], IngestProcess], tmp_path: Path
) -> None:
    tansu = private_tansu()
    await tansu.start()
    port = free_port()
    config = write_config(tmp_path, tansu, port, drain_timeout=60)
    async with httpx.AsyncClient(timeout=30) as client:
        ingest = ingest_processes(config, port)
        await ingest.ready(client)
        sender = Sender(ingest.url + "/webhook/appsec")
        for _ in range(5):
            assert await sender.send(client) == 200
        assert await ingest.metric(client, "siemgate_spool_events") == 0
        started = time.monotonic()
        ingest.process.send_signal(signal.SIGTERM)
        assert await wait_exit(ingest, 30) == 0
    assert time.monotonic() - started < 10
    report = drain_outcome(tmp_path / "ingest-0.log")
    assert (report["outcome"], report["events_left"], report["level"]) == ("empty", 0, "info")
    by_topic = await consume_keys(tansu.broker, all_topics("drain"), sender.acked_ids)
    sender.assert_all_delivered(by_topic, "drain")


async def test_sigterm_drains_the_spool_once_kafka_comes_back(
    private_tansu: TansuFactory, ingest_processes: Callable[[Path, int], IngestProcess], tmp_path: Path
) -> None:
    """Kafka away, 30 batches spooled, SIGTERM; Kafka comes back during the drain: every acked
    event reaches Kafka before the process exits 0, in the order it was acked."""
    tansu = private_tansu()  # down
    port = free_port()
    config = write_config(tmp_path, tansu, port, drain_timeout=90)
    async with httpx.AsyncClient(timeout=30) as client:
        ingest = ingest_processes(config, port)
        await ingest.ready(client)
        sender = Sender(ingest.url + "/webhook/appsec")
        for _ in range(30):
            assert await sender.send(client, size=100) == 200
        assert await ingest.metric(client, "siemgate_spool_events") == 3000
        ingest.process.send_signal(signal.SIGTERM)
        await wait_until(lambda: "sending the spool to Kafka before exit" in (tmp_path / "ingest-0.log").read_text(),
                         "the drain before exit to begin", timeout=30)
        await asyncio.sleep(1.5)  # the drain is failing meanwhile: Kafka is still away (not a sync point)
        assert ingest.process.poll() is None, "exited before Kafka came back"
        await tansu.start()
        assert await wait_exit(ingest, 60) == 0
    report = drain_outcome(tmp_path / "ingest-0.log")
    assert (report["outcome"], report["events_drained"], report["events_left"]) == ("drained", 3000, 0)
    assert await spool_events(tmp_path) == 0
    by_topic = await consume_keys(tansu.broker, all_topics("drain"), sender.acked_ids)
    sender.assert_in_order(by_topic, "drain")


async def test_kafka_away_at_sigterm_keeps_the_events_for_spool_drain(
    private_tansu: TansuFactory, ingest_processes: Callable[[Path, int], IngestProcess], tmp_path: Path
) -> None:
    """Kafka stays away: the ingest answers the batch in flight with 200 (spooled), exits 0 after
    the drain timeout with the events in the spool and an ERROR saying what to do;
    `siemgate spool drain` then delivers them (exit 1 while Kafka is still away, 0 after)."""
    tansu = private_tansu()  # down
    port = free_port()
    config = write_config(tmp_path, tansu, port, drain_timeout=3)
    async with httpx.AsyncClient(timeout=30) as client:
        ingest = ingest_processes(config, port)
        await ingest.ready(client)
        sender = Sender(ingest.url + "/webhook/appsec")
        for _ in range(10):
            assert await sender.send(client, size=50) == 200

        # A batch in flight when SIGTERM arrives: its head is sent, the body follows the signal.
        body = orjson.dumps([{"id": f"late-{i}", "severity": "high"} for i in range(20)])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /webhook/appsec HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                     b"X-Api-Key: " + KEY.encode() + b"\r\nContent-Length: " + str(len(body)).encode()
                     + b"\r\n\r\n" + body[:10])
        await writer.drain()
        await asyncio.sleep(0.3)  # let the server read the head (not a sync point: the answer is checked)
        started = time.monotonic()
        ingest.process.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.3)
        writer.write(body[10:])
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 30)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
        assert await wait_exit(ingest, 60) == 0
    took = time.monotonic() - started
    assert 2.5 < took < 20, took
    report = drain_outcome(tmp_path / "ingest-0.log")
    assert (report["outcome"], report["events_left"], report["level"]) == ("unreachable", 520, "error")
    assert "siemgate spool drain" in str(report["message"])
    assert await spool_events(tmp_path) == 520

    # Kafka still away: `spool drain` gives up with what is left, exit 1.
    drain = [*siemgate_command(), "spool", "drain", "-c", str(config), "--timeout", "2"]
    result = await asyncio.to_thread(subprocess.run, drain, capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode == 1, result
    assert "520 events left in" in result.stdout.decode()

    await tansu.start()
    result = await asyncio.to_thread(subprocess.run, [*drain[:-2], "--timeout", "60"], capture_output=True,
                                     timeout=120, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result
    assert "the spool is empty: 520 events sent to Kafka" in result.stdout.decode()
    assert await spool_events(tmp_path) == 0
    late = [f"late-{i}" for i in range(20)]
    by_topic = await consume_keys(tansu.broker, all_topics("drain"), [*sender.acked_ids, *late])
    sender.assert_in_order(by_topic, "drain")


async def test_kafka_away_at_sigterm_then_a_restart_delivers_the_spool(
    private_tansu: TansuFactory, ingest_processes: Callable[[Path, int], IngestProcess], tmp_path: Path
) -> None:
    """The other way to pick the spool up: the next start on the same volume. A second SIGTERM
    ends the drain at once."""
    tansu = private_tansu()
    port = free_port()
    config = write_config(tmp_path, tansu, port, drain_timeout=120)
    async with httpx.AsyncClient(timeout=30) as client:
        first = ingest_processes(config, port)
        await first.ready(client)
        sender = Sender(first.url + "/webhook/appsec")
        for _ in range(8):
            assert await sender.send(client) == 200
        first.process.send_signal(signal.SIGTERM)
        await wait_until(lambda: "sending the spool to Kafka before exit" in (tmp_path / "ingest-0.log").read_text(),
                         "the drain before exit to begin", timeout=30)
        started = time.monotonic()
        first.process.send_signal(signal.SIGTERM)  # a second signal: end the drain now
        assert await wait_exit(first, 30) == 0
        assert time.monotonic() - started < 5
        report = drain_outcome(tmp_path / "ingest-0.log")
        assert (report["outcome"], report["events_left"]) == ("unreachable", 160)

        await tansu.start()
        second = ingest_processes(config, port)
        await second.ready(client)

        async def empty() -> bool:
            return await second.metric(client, "siemgate_spool_events") == 0

        await wait_until(empty, "the restarted ingest to drain its spool", timeout=60, interval=0.2)
        assert metric_value((await client.get(second.url + "/metrics")).text, "siemgate_spool_active") == 0
        second.process.send_signal(signal.SIGTERM)
        assert await wait_exit(second, 30) == 0
    by_topic = await consume_keys(tansu.broker, all_topics("drain"), sender.acked_ids)
    sender.assert_in_order(by_topic, "drain")


async def test_run_on_kafka_drains_its_spool_on_sigterm(private_tansu: TansuFactory, tmp_path: Path) -> None:
    """`siemgate run` on Kafka stops its ingest half the same way: the spool goes to Kafka before exit."""
    tansu = private_tansu()  # down
    port = free_port()
    config_path = write_config(tmp_path, tansu, port, drain_timeout=90)
    config = json.loads(config_path.read_text())
    config["forward"] = {"listen": {"host": "127.0.0.1", "port": 0}}
    config["sinks"] = [{"name": "archive", "type": "file", "path": str(tmp_path / "out" / "events.ndjson")}]
    config_path.write_text(json.dumps(config))
    log = tmp_path / "run.log"
    with open(log, "ab") as out:
        process = subprocess.Popen([*siemgate_command(), "run", "-c", str(config_path)], stdout=out, stderr=out,
                                   stdin=subprocess.DEVNULL)
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            async def ready() -> bool:
                assert process.poll() is None, f"siemgate run exited: {log.read_text()[-2000:]}"
                try:
                    return (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200
                except httpx.TransportError:
                    return False

            await wait_until(ready, "siemgate run to be ready", timeout=60)
            sender = Sender(f"http://127.0.0.1:{port}/webhook/appsec")
            for _ in range(10):
                assert await sender.send(client, size=50) == 200
        process.send_signal(signal.SIGTERM)
        await wait_until(lambda: "sending the spool to Kafka before exit" in log.read_text(),
                         "the drain before exit to begin", timeout=30)
        await tansu.start()
        assert await asyncio.to_thread(process.wait, 90) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    report = drain_outcome(log)
    assert (report["outcome"], report["events_drained"], report["events_left"]) == ("drained", 500, 0)
    by_topic = await consume_keys(tansu.broker, all_topics("drain"), sender.acked_ids)
    sender.assert_in_order(by_topic, "drain")
