"""`siemgate run` as a real process on the embedded bus: every acked event reaches the sink,
through SIGKILL and restarts; cursors survive restarts; a sink that is down holds the log
without losing or blocking ingest."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson
import pytest

from siemgate_standins.broker import Broker, free_port
from tests.forwarders.test_forward_process import ids_in
from tests.forwarders.test_runtime import until
from tests.support import wait_until

pytestmark = pytest.mark.anyio

KEY = "run-key-0123456789"
BATCH = 250


def write_config(tmp_path: Path, port: int, sink: str | None = None, *, max_bytes: int | None = None) -> Path:
    path = tmp_path / "run.yaml"
    cap = "" if max_bytes is None else f", max_bytes: {max_bytes}"
    out = tmp_path / "out" / "events.ndjson"
    path.write_text(f"""
log_level: info
listen: {{host: 127.0.0.1, port: {port}}}
integrations:
  - name: demo
    auth: {{header: X-Api-Key, values: ["{KEY}"]}}
bus: {{type: embedded, path: {tmp_path}/data/siemgate.db{cap}}}
state_dir: {tmp_path}/state
quarantine: {{path: {tmp_path}/quarantine}}
forward: {{drain_timeout_seconds: 10}}
sinks:
  - {sink or f"{{name: archive, type: file, path: {out}, fsync: never, batch: {{max_events: 200}}}}"}
""")
    return path


async def start(
    config: Path, port: int, log: Path, processes: list[subprocess.Popen[bytes]]
) -> subprocess.Popen[bytes]:
    with open(log, "ab") as handle:
        process = subprocess.Popen([sys.executable, "-m", "siemgate", "run", "-c", str(config)],
                                   stdout=handle, stderr=handle)
    processes.append(process)
    async with httpx.AsyncClient() as client:
        async def ready() -> bool:
            assert process.poll() is None, log.read_text()
            with contextlib.suppress(httpx.HTTPError):
                return (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200
            return False

        async with asyncio.timeout(30):
            while not await ready():
                await asyncio.sleep(0.05)
    return process


def batch(start: int, count: int = BATCH) -> bytes:
    severities = ("high", "medium", "low", "critical", "bogus")
    return orjson.dumps([{"id": f"ev-{i}", "severity": severities[i % 5], "type": "sql_injection",
                          "url": "https://shop.example/login"} for i in range(start, start + count)])


@contextlib.asynccontextmanager
async def sender(port: int) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers={"X-Api-Key": KEY},
                                 timeout=15) as client:
        yield client


async def post(client: httpx.AsyncClient, start: int) -> int:
    response = await client.post("/webhook/demo", content=batch(start), headers={"Content-Type": "application/json"})
    return response.status_code


async def test_sigkill_mid_stream_then_restart_delivers_every_acked_event(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    port = free_port()
    out = tmp_path / "out" / "events.ndjson"
    # Small fsync'd batches: the sink falls behind the sender, so the log holds a backlog.
    config = write_config(tmp_path, port, f"{{name: archive, type: file, path: {out}, fsync: batch, "
                                          "batch: {max_events: 10}}")
    first = await start(config, port, tmp_path / "first.log", processes)
    acked: set[str] = set()
    sent: set[str] = set()  # acked, plus the batch in flight when the process died
    next_id = 0

    async def stream() -> None:
        nonlocal next_id
        async with sender(port) as client:
            while True:
                sent.update(f"ev-{i}" for i in range(next_id, next_id + BATCH))
                try:
                    status = await post(client, next_id)
                except httpx.HTTPError:
                    return  # the process died mid-request: that batch was not acked
                assert status == 200
                acked.update(f"ev-{i}" for i in range(next_id, next_id + BATCH))
                next_id += BATCH

    streaming = asyncio.create_task(stream())
    await until(lambda: len(acked) >= 20_000 and len(ids_in(out)) >= 500, timeout=120)
    first.send_signal(signal.SIGKILL)
    first.wait()
    await asyncio.wait_for(streaming, 30)
    assert len(set(ids_in(out))) < len(acked), "the sink had not fallen behind: the test proves nothing"

    await start(config, port, tmp_path / "second.log", processes)
    async with sender(port) as client:  # and a fresh batch after the restart goes through
        assert await post(client, 10_000_000) == 200
    fresh = {f"ev-{i}" for i in range(10_000_000, 10_000_000 + BATCH)}
    acked |= fresh
    sent |= fresh
    await until(lambda: acked <= set(ids_in(out)), timeout=120)
    delivered = ids_in(out)
    assert acked <= set(delivered) <= sent  # nothing lost, nothing invented
    # Redelivered: at most what was read but not committed when the process died.
    assert len(delivered) - len(set(delivered)) <= 2 * 10 * 5


async def test_cursors_survive_a_restart_and_retention_empties_the_log(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    port = free_port()
    config = write_config(tmp_path, port)
    out = tmp_path / "out" / "events.ndjson"
    process = await start(config, port, tmp_path / "first.log", processes)
    async with sender(port) as client:
        for n in range(8):
            assert await post(client, n * BATCH) == 200
    await until(lambda: len(ids_in(out)) >= 8 * BATCH)
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0

    database = tmp_path / "data" / "siemgate.db"
    with contextlib.closing(sqlite3.connect(database)) as db:
        # Every sink passed every record: retention deleted them (on close at the latest).
        assert db.execute("SELECT coalesce(sum(last_pos - first_pos + 1), 0) FROM chunks").fetchone()[0] == 0
        cursors = dict(db.execute("SELECT topic, pos FROM cursors").fetchall())
    assert sum(cursors.values()) == 8 * BATCH

    await start(config, port, tmp_path / "second.log", processes)
    async with sender(port) as client:
        assert await post(client, 100_000) == 200
    await until(lambda: len(ids_in(out)) >= 9 * BATCH)
    await asyncio.sleep(0.5)  # room for a wrongly re-read record to show up
    assert len(ids_in(out)) == 9 * BATCH  # nothing read twice: the cursors held


async def test_a_sink_that_is_down_holds_the_log_without_blocking_ingest(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    port, syslog_port = free_port(), free_port()
    sink = (f"{{name: soc, type: syslog, address: 'tcp://127.0.0.1:{syslog_port}', format: rfc5424, "
            "retry: {initial_seconds: 0.1, max_seconds: 0.5}}")
    config = write_config(tmp_path, port, sink)
    await start(config, port, tmp_path / "run.log", processes)
    async with sender(port) as client:
        for n in range(20):
            assert await post(client, n * BATCH) == 200  # the sink is down: ingest goes on
    database = tmp_path / "data" / "siemgate.db"
    with contextlib.closing(sqlite3.connect(database)) as db:
        assert db.execute("SELECT coalesce(sum(last_pos - first_pos + 1), 0) FROM chunks").fetchone()[0] == 20 * BATCH

    received: list[bytes] = []

    connections: list[asyncio.StreamWriter] = []

    async def receive(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                length = int((await reader.readuntil(b" "))[:-1])
                received.append(await reader.readexactly(length))

    server = await asyncio.start_server(receive, "127.0.0.1", syslog_port)
    try:
        await until(lambda: len({_event_id(m) for m in received}) >= 20 * BATCH, timeout=60)
    finally:
        server.close()
        for writer in connections:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        await server.wait_closed()
    assert {_event_id(m) for m in received} == {f"ev-{i}" for i in range(20 * BATCH)}


def _gauge(metrics: str, name: str, labels: str) -> float:
    found = re.search(rf"^{name}{{{labels}}} (\S+)$", metrics, re.MULTILINE)
    assert found is not None, f"{name}{{{labels}}} is not in /metrics"
    return float(found.group(1))


async def test_a_full_log_answers_503_until_retention_frees_space(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    port, syslog_port = free_port(), free_port()
    cap = 2 * 1024 * 1024
    sink = (f"{{name: soc, type: syslog, address: 'tcp://127.0.0.1:{syslog_port}', format: rfc5424, "
            "retry: {initial_seconds: 0.1, max_seconds: 0.5}}")
    config = write_config(tmp_path, port, sink, max_bytes=cap)
    run_log = tmp_path / "run.log"
    await start(config, port, run_log, processes)
    acked: set[str] = set()
    async with sender(port) as client:
        # The sink is down: the log fills up to bus.max_bytes, then the honest 503.
        n = 0
        while (status := await post(client, n * BATCH)) == 200:
            acked |= {f"ev-{i}" for i in range(n * BATCH, (n + 1) * BATCH)}
            n += 1
            assert n < 200, "the log never filled up"
        assert status == 503
        assert n >= 5
        metrics = (await client.get("/metrics")).text
    store = 'store="log"'
    assert _gauge(metrics, "siemgate_storage_limit_bytes", store) == cap
    full = _gauge(metrics, "siemgate_storage_bytes", store)
    assert cap * 0.8 < full <= cap
    per_batch = full / n  # a batch's bytes on disk, about
    data = os.statvfs(tmp_path / "data")
    free = _gauge(metrics, "siemgate_storage_free_bytes", store)
    assert abs(free - data.f_bavail * data.f_frsize) < 1 << 30  # the volume's free space, a few seconds old
    assert _gauge(metrics, "siemgate_storage_refusals_total", store) == 1
    assert "DATA LOSS RISK: the embedded bus is full" in run_log.read_text()

    received: list[bytes] = []
    connections: list[asyncio.StreamWriter] = []

    async def receive(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                length = int((await reader.readuntil(b" "))[:-1])
                received.append(await reader.readexactly(length))

    server = await asyncio.start_server(receive, "127.0.0.1", syslog_port)  # the sink comes back
    try:
        await until(lambda: {_event_id(m) for m in received} >= acked, timeout=60)
        async with sender(port) as client:
            # The sink passed every record: retention removes their segments (one by one, as the
            # cursor's commits land: polled, not read at the first batch taken, which can come
            # as soon as one segment is gone), and the log takes batches again.
            async def freed() -> bool:
                return _gauge((await client.get("/metrics")).text, "siemgate_storage_bytes", store) < cap / 2

            await wait_until(freed, "retention to free the passed records' segments", timeout=30)
            await wait_until(lambda: _accepted(client, 1_000_000), "the log to take a batch again", timeout=30)
            metrics = (await client.get("/metrics")).text
        assert _gauge(metrics, "siemgate_storage_bytes", store) < cap / 2 + 2 * per_batch  # the freed log + the batch
        assert _gauge(metrics, "siemgate_storage_refusals_total", store) >= 1
        fresh = {f"ev-{i}" for i in range(1_000_000, 1_000_000 + BATCH)}
        await until(lambda: {_event_id(m) for m in received} >= fresh, timeout=60)
    finally:
        server.close()
        for writer in connections:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        await server.wait_closed()
    assert {_event_id(m) for m in received} == acked | fresh


async def _accepted(client: httpx.AsyncClient, start: int) -> bool:
    status = await post(client, start)
    assert status in (200, 503)
    return status == 200


def _event_id(message: bytes) -> str:
    return str(orjson.loads(message[message.index(b"{"):])["id"])


@pytest.mark.parametrize("args", [["ingest"], ["forward"]])
def test_the_split_commands_point_to_run_on_the_embedded_bus(tmp_path: Path, args: list[str]) -> None:
    config = write_config(tmp_path, free_port())
    result = subprocess.run([sys.executable, "-m", "siemgate", *args, "-c", str(config)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "siemgate run" in result.stderr


def test_an_unusable_bus_path_stops_the_start_with_its_reason(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("a file where the bus directory should be")
    config = write_config(tmp_path, free_port())
    result = subprocess.run([sys.executable, "-m", "siemgate", "run", "-c", str(config)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "bus.path" in result.stderr


async def test_run_on_kafka_runs_the_ingest_and_the_forwarders_together(
    kafka_broker: Broker, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    port = free_port()
    out = tmp_path / "out" / "events.ndjson"
    config = tmp_path / "run-kafka.yaml"
    config.write_text(f"""
listen: {{host: 127.0.0.1, port: {port}}}
integrations:
  - name: demo
    auth: {{header: X-Api-Key, values: ["{KEY}"]}}
bus:
  type: kafka
  kafka: {{bootstrap_servers: "{kafka_broker.bootstrap_servers}", topic_prefix: r{uuid.uuid4().hex[:10]},
          idempotence: {str(kafka_broker.idempotence).lower()}, topics: {{partitions: 1}}}}
  spool: {{path: {tmp_path}/spool}}
state_dir: {tmp_path}/state
quarantine: {{path: {tmp_path}/quarantine}}
forward: {{fetch_max_wait_ms: 20}}
sinks:
  - {{name: archive, type: file, path: {out}}}
""")
    await start(config, port, tmp_path / "run.log", processes)
    async with sender(port) as client:
        for n in range(4):
            assert await post(client, n * BATCH) == 200
        metrics = (await client.get("/metrics")).text
    assert "siemgate_forward_events_total" in metrics and "siemgate_ingest_events_total" in metrics
    # One siemgate_stalled family: the spool drainer's series and the forwarders' side by side.
    assert metrics.count("# TYPE siemgate_stalled gauge") == 1, metrics
    assert 'siemgate_stalled{component="spool_drainer"} 0.0' in metrics
    await until(lambda: set(ids_in(out)) >= {f"ev-{i}" for i in range(4 * BATCH)}, timeout=90)


# --- /metrics on a listener of its own (`metrics:`) --------------------------------------------


def _with_metrics_listener(config: Path, port: int) -> None:
    config.write_text(config.read_text() + f"metrics: {{host: 127.0.0.1, port: {port}}}\n")


async def _scrape(port: int) -> str:
    async with httpx.AsyncClient() as client:
        answer = await client.get(f"http://127.0.0.1:{port}/metrics")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    return answer.text


async def test_metrics_move_to_their_own_port_and_leave_the_webhook_port(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    port, metrics_port = free_port(), free_port()
    config = write_config(tmp_path, port)
    _with_metrics_listener(config, metrics_port)
    log = tmp_path / "run.log"
    process = await start(config, port, log, processes)
    async with sender(port) as client:
        assert await post(client, 0) == 200
        # The webhook port no longer answers /metrics ...
        assert (await client.get("/metrics")).status_code == 404
    # ... the metrics port does, with the ingest's and the forwarders' series ...
    metrics = await _scrape(metrics_port)
    assert _gauge(metrics, "siemgate_ingest_events_total", 'integration="demo",severity="high"') > 0
    assert "siemgate_sink_up{sink=\"archive\"}" in metrics and "siemgate_config_reload_total" in metrics
    # ... and nothing else: no webhook, no probe there (a scraper cannot post events).
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{metrics_port}", headers={"X-Api-Key": KEY}) as other:
        posted = await other.post("/webhook/demo", content=batch(10_000), headers={"Content-Type": "application/json"})
        assert posted.status_code in (404, 405)
        for path in ("/healthz", "/readyz", "/"):
            assert (await other.get(path)).status_code == 404
    await until(lambda: len(ids_in(tmp_path / "out" / "events.ndjson")) >= BATCH, timeout=60)
    assert f"/metrics on http://127.0.0.1:{metrics_port}/metrics" in log.read_text()
    process.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(process.wait, 60) == 0
    with pytest.raises(httpx.ConnectError):
        await _scrape(metrics_port)


def test_a_metrics_port_in_use_stops_the_start_with_its_reason(tmp_path: Path) -> None:
    import socket

    port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        in_use = taken.getsockname()[1]
        config = write_config(tmp_path, port)
        _with_metrics_listener(config, in_use)
        result = subprocess.run([sys.executable, "-m", "siemgate", "run", "-c", str(config)],
                                capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert f"cannot listen on metrics.host 127.0.0.1 metrics.port {in_use}" in result.stderr


def test_the_metrics_port_must_differ_from_the_webhook_port(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, port)
    _with_metrics_listener(config, port)
    result = subprocess.run([sys.executable, "-m", "siemgate", "run", "-c", str(config)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert "metrics.port" in result.stderr and "webhook port" in result.stderr


async def test_ingest_on_kafka_serves_its_metrics_on_their_own_port(
    kafka_broker: Broker, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    port, metrics_port = free_port(), free_port()
    config = tmp_path / "ingest.yaml"
    config.write_text(f"""
listen: {{host: 127.0.0.1, port: {port}}}
metrics: {{host: 127.0.0.1, port: {metrics_port}}}
integrations:
  - name: demo
    auth: {{header: X-Api-Key, values: ["{KEY}"]}}
bus:
  type: kafka
  kafka: {{bootstrap_servers: "{kafka_broker.bootstrap_servers}", topic_prefix: m{uuid.uuid4().hex[:10]},
          idempotence: {str(kafka_broker.idempotence).lower()}, topics: {{partitions: 1}}}}
  spool: {{path: {tmp_path}/spool}}
state_dir: {tmp_path}/state
quarantine: {{path: {tmp_path}/quarantine}}
""")
    log = tmp_path / "ingest.log"
    with open(log, "ab") as handle:
        process = subprocess.Popen([sys.executable, "-m", "siemgate", "ingest", "-c", str(config)],
                                   stdout=handle, stderr=handle)
    processes.append(process)

    async def ready() -> bool:
        assert process.poll() is None, log.read_text()
        async with httpx.AsyncClient() as client:
            with contextlib.suppress(httpx.HTTPError):
                return (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200
        return False

    await wait_until(ready, "the ingest's /readyz", timeout=30)
    async with sender(port) as client:
        assert await post(client, 0) == 200
        assert (await client.get("/metrics")).status_code == 404
    metrics = await _scrape(metrics_port)
    assert _gauge(metrics, "siemgate_ingest_requests_total", 'code="200",integration="demo"') == 1
    assert "siemgate_spool_events" in metrics and "siemgate_forward_" not in metrics
    process.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(process.wait, 60) == 0


async def test_a_second_run_on_the_same_log_is_refused(tmp_path: Path,
                                                       processes: list[subprocess.Popen[bytes]]) -> None:
    """Two `siemgate run` on one embedded log (a second unit, a manual start) would each forward
    every record: every event delivered twice, two writers on one file. The second is refused
    with its reason; `siemgate dlq` (a tool) still opens the log beside the running one."""
    port = free_port()
    config = write_config(tmp_path, port)
    await start(config, port, tmp_path / "first.log", processes)
    second = tmp_path / "second.yaml"
    second.write_text(config.read_text().replace(f"port: {port}", f"port: {free_port()}"))
    result = subprocess.run([sys.executable, "-m", "siemgate", "run", "-c", str(second)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"siemgate: the embedded log {tmp_path}/data/siemgate.db is in use by another `siemgate run`: stop it "
        "first, or give this one its own bus.path (each run forwards every record of its log)")
    tool = subprocess.run([sys.executable, "-m", "siemgate", "dlq", "-c", str(second), "list", "--sink", "archive"],
                          capture_output=True, text=True, timeout=30)
    assert tool.returncode == 0 and "0 dead letter(s) for sink archive" in tool.stdout, tool.stderr
    # Once the first has stopped, however it stopped, the log is free again.
    processes[-1].kill()
    processes[-1].wait(timeout=30)
    await start(second, int(second.read_text().split("port: ")[1].split("}")[0]), tmp_path / "third.log", processes)
