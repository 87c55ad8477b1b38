"""`siemgate forward` as a real process: SIGKILL loses nothing, SIGTERM commits, two
processes share a sink's partitions."""

from __future__ import annotations

import asyncio
import collections
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from siemgate.config import parse_config
from siemgate_standins.broker import Broker, free_port
from tests.forwarders.test_runtime import produce, record_for, until
from tests.support import AppendedLines

pytestmark = pytest.mark.anyio

BATCH = 200
IN_FLIGHT = 2  # the default batch.in_flight


def write_config(
    tmp_path: Path, broker: Broker, prefix: str, out: Path, port: int | None = None, sink: str | None = None
) -> Path:
    path = tmp_path / f"forward-{uuid.uuid4().hex[:6]}.yaml"
    port = port or free_port()
    path.write_text(f"""
log_level: info
bus:
  type: kafka
  kafka:
    bootstrap_servers: "{broker.bootstrap_servers}"
    topic_prefix: {prefix}
    idempotence: {str(broker.idempotence).lower()}
    topics: {{partitions: 2}}
forward: {{drain_timeout_seconds: 10, listen: {{host: 127.0.0.1, port: {port}}}}}
sinks:
  - {sink or f"{{name: archive, type: file, path: {out}, fsync: never, batch: {{max_events: {BATCH}}}}}"}
""")
    return path


def start(config: Path, log: Path) -> subprocess.Popen[bytes]:
    handle = open(log, "ab")  # noqa: SIM115 - handed to the child
    try:
        return subprocess.Popen([sys.executable, "-m", "siemgate", "forward", "-c", str(config)],
                                stdout=handle, stderr=handle)
    finally:
        handle.close()


_OUTPUTS: dict[Path, AppendedLines[str]] = {}


def ids_in(*paths: Path) -> list[str]:
    """Ids of the complete lines: a forwarder may be writing the last one right now. (Each
    line is parsed once, however often a test polls: see AppendedLines.)"""
    ids = []
    for path in paths:
        if path not in _OUTPUTS:
            _OUTPUTS[path] = AppendedLines(path, lambda line: str(orjson.loads(line)["id"]))
        ids.extend(_OUTPUTS[path].read())
    return ids


def setup(broker: Broker, tmp_path: Path) -> tuple[str, object]:
    prefix = f"p{uuid.uuid4().hex[:10]}"
    config = parse_config(f"""
bus: {{type: kafka, kafka: {{bootstrap_servers: "{broker.bootstrap_servers}", topic_prefix: {prefix},
       idempotence: false, topics: {{partitions: 2}}}}}}
""", {})
    return prefix, config


async def test_sigkill_loses_nothing_and_duplicates_stay_within_a_batch(
    kafka_broker: Broker, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    prefix, config = setup(kafka_broker, tmp_path)
    total = 30_000
    await produce(config, [record_for(prefix, i, ("high", "medium", "low")[i % 3]) for i in range(total)])  # type: ignore[arg-type]
    out = tmp_path / "events.ndjson"
    cfg = write_config(tmp_path, kafka_broker, prefix, out)
    first = start(cfg, tmp_path / "first.log")
    processes.append(first)
    await until(lambda: len(ids_in(out)) >= 3_000, timeout=90)
    first.send_signal(signal.SIGKILL)
    first.wait()
    killed_at = len(ids_in(out))
    assert killed_at < total, "the forwarder finished before it could be killed mid-stream"
    second = start(cfg, tmp_path / "second.log")
    processes.append(second)
    await until(lambda: len(set(ids_in(out))) >= total, timeout=120)
    second.send_signal(signal.SIGTERM)
    assert second.wait(30) == 0
    counts = collections.Counter(ids_in(out))
    assert set(counts) == {f"e-{i}" for i in range(total)}
    duplicates = sum(n - 1 for n in counts.values())
    # Written but not yet committed when killed: the batches in flight and the one committing.
    assert duplicates <= (IN_FLIGHT + 1) * BATCH, duplicates


async def test_sigterm_commits_what_was_delivered(
    kafka_broker: Broker, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    prefix, config = setup(kafka_broker, tmp_path)
    total = 20_000
    await produce(config, [record_for(prefix, i, "medium") for i in range(total)])  # type: ignore[arg-type]
    out = tmp_path / "events.ndjson"
    port = free_port()
    cfg = write_config(tmp_path, kafka_broker, prefix, out, port)
    first = start(cfg, tmp_path / "first.log")
    processes.append(first)
    await until(lambda: len(ids_in(out)) >= 2_000, timeout=90)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/readyz")).status_code == 200
        metrics = (await client.get("/metrics")).text
    assert 'siemgate_forward_events_total{outcome="delivered",sink="archive"}' in metrics
    assert 'siemgate_sink_up{sink="archive"} 1.0' in metrics
    first.send_signal(signal.SIGTERM)
    assert first.wait(30) == 0
    log = (tmp_path / "first.log").read_text()
    assert "forwarder stopped" in log
    second = start(cfg, tmp_path / "second.log")
    processes.append(second)
    await until(lambda: len(set(ids_in(out))) >= total, timeout=120)
    second.send_signal(signal.SIGTERM)
    assert second.wait(30) == 0
    counts = collections.Counter(ids_in(out))
    assert set(counts) == {f"e-{i}" for i in range(total)}
    assert sum(n - 1 for n in counts.values()) == 0, "a graceful stop committed everything it delivered"


async def test_two_processes_share_the_partitions_and_deliver_everything_once(
    kafka_broker: Broker, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    prefix, config = setup(kafka_broker, tmp_path)
    outs = [tmp_path / "a.ndjson", tmp_path / "b.ndjson"]
    await produce(config, [record_for(prefix, 0)])  # creates the topics
    for index, out in enumerate(outs):
        process = start(write_config(tmp_path, kafka_broker, prefix, out), tmp_path / f"{index}.log")
        processes.append(process)
    await until(lambda: len(ids_in(*outs)) >= 1, timeout=60)
    await until_group_members(kafka_broker, f"{prefix}-archive", 2)
    total = 10_000
    await produce(config, [record_for(prefix, i, ("high", "medium", "low")[i % 3]) for i in range(1, total)])  # type: ignore[arg-type]
    await until(lambda: len(set(ids_in(*outs))) >= total, timeout=120)
    for process in processes:
        process.send_signal(signal.SIGTERM)
    assert [p.wait(30) for p in processes] == [0, 0]
    counts = collections.Counter(ids_in(*outs))
    assert set(counts) == {f"e-{i}" for i in range(total)}
    assert all(ids_in(out) for out in outs), "each process got partitions"
    assert sum(n - 1 for n in counts.values()) == 0


async def until_group_members(broker: Broker, group: str, members: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
    await admin.start()
    try:
        async with asyncio.timeout(90):
            while True:
                described = await admin.describe_consumer_groups([group])
                groups = getattr(described[0], "groups", None) or []
                if groups and len(groups[0][-1]) == members and groups[0][2] == "Stable":
                    return
                await asyncio.sleep(0.2)
    finally:
        await admin.close()



async def test_sigkill_with_rsyslog_as_the_sink_loses_nothing(
    kafka_broker: Broker, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    from tests.forwarders.rsyslog import running_rsyslog

    prefix, config = setup(kafka_broker, tmp_path)
    total = 20_000
    await produce(config, [record_for(prefix, i, ("high", "medium", "low")[i % 3]) for i in range(total)])  # type: ignore[arg-type]
    with running_rsyslog(tmp_path / "rsyslog") as rsyslog:
        sink = (f"{{name: soc, type: syslog, address: 'tcp://127.0.0.1:{rsyslog.tcp_port}', "
                f"batch: {{max_events: {BATCH}}}}}")
        cfg = write_config(tmp_path, kafka_broker, prefix, tmp_path / "unused", sink=sink)

        def received() -> list[str]:
            return [orjson.loads(str(m["msg"]).lstrip("\ufeff"))["id"] for m in rsyslog.messages()]

        first = start(cfg, tmp_path / "first.log")
        processes.append(first)
        await until(lambda: len(rsyslog.messages()) >= 2_000, timeout=90)
        first.send_signal(signal.SIGKILL)
        first.wait()
        assert len(rsyslog.messages()) < total, "the forwarder finished before it could be killed"
        second = start(cfg, tmp_path / "second.log")
        processes.append(second)
        await until(lambda: len(set(received())) >= total, timeout=120)
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0
        counts = collections.Counter(received())
    assert set(counts) == {f"e-{i}" for i in range(total)}
    assert sum(n - 1 for n in counts.values()) <= (IN_FLIGHT + 1) * BATCH
