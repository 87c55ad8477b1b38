"""The progress watchdog, process level: `siemgate forward` (and `siemgate run`) with a syslog
receiver frozen on purpose (it accepts the connection and never reads, so the kernel buffers
fill and the forwarder's write blocks). Its /healthz turns 503 naming the sink and what it
waits on; the test plays Kubernetes' liveness probe (SIGKILL and a new process after 3 failed
probes), then fixes the receiver, and every event is delivered."""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from siemgate.config import parse_config
from siemgate.record import make_record
from siemgate_standins.broker import Broker, free_port
from tests.forwarders.test_forward_process import start
from tests.forwarders.test_runtime import produce
from tests.support import wait_until
from tests.test_run import start as start_run

pytestmark = pytest.mark.anyio

EVENTS = 6_000
PAD = "x" * 2_000  # ~2.3 KB a message: ~14 MB in all, far more than loopback's socket buffers
STALL_TIMEOUT = 3
FAILURE_THRESHOLD = 3  # the chart's liveness probe: failureThreshold
RESTARTS = 2  # killed by the "probe" this many times while the receiver is frozen
_ID = re.compile(rb'\bid="(e-\d+)"')
RUN_KEY = "run-key-0123456789"


class Receiver:
    """A TCP syslog receiver (LF framing) that, while frozen, accepts and never reads."""

    def __init__(self) -> None:
        self.fixed = asyncio.Event()
        self.received: list[str] = []
        self.connections = 0
        self._handlers: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Small receive buffers (inherited by accepted sockets): the sender's write blocks soon.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self._server = await asyncio.start_server(self._serve, sock=sock)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self.fixed.wait()
            while line := await reader.readline():
                found = _ID.search(line)
                if found:
                    self.received.append(found.group(1).decode())
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            self._handlers.discard(task)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._handlers):
                task.cancel()
            await asyncio.gather(*self._handlers, return_exceptions=True)
            await self._server.wait_closed()


FORWARD_AND_SINK = """
forward:
  drain_timeout_seconds: 2
  lag_interval_seconds: 0.5
  stall_timeout_seconds: {stall_timeout}
  listen: {{host: 127.0.0.1, port: {port}}}
sinks:
  - name: soc
    type: syslog
    address: tcp://127.0.0.1:{syslog_port}
    framing: lf
    write_timeout_seconds: 3600   # longer than the stall timeout: a blocked write is a stall
    batch: {{max_events: 200}}
    retry: {{initial_seconds: 0.1, max_seconds: 1}}
"""


def write_config(tmp_path: Path, broker: Broker, prefix: str, syslog_port: int, port: int) -> Path:
    path = tmp_path / "forward.yaml"
    path.write_text(f"""
log_level: info
bus:
  type: kafka
  kafka:
    bootstrap_servers: "{broker.bootstrap_servers}"
    topic_prefix: {prefix}
    idempotence: {str(broker.idempotence).lower()}
    topics: {{partitions: 2}}
""" + FORWARD_AND_SINK.format(stall_timeout=STALL_TIMEOUT, port=port, syslog_port=syslog_port))
    return path


def write_run_config(tmp_path: Path, syslog_port: int, port: int, forward_port: int) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(f"""
log_level: info
listen: {{host: 127.0.0.1, port: {port}}}
integrations:
  - name: demo
    auth: {{header: X-Api-Key, values: ["{RUN_KEY}"]}}
bus: {{type: embedded, path: {tmp_path}/data/siemgate.db}}
state_dir: {tmp_path}/state
quarantine: {{path: {tmp_path}/quarantine}}
""" + FORWARD_AND_SINK.format(stall_timeout=STALL_TIMEOUT, port=forward_port, syslog_port=syslog_port))
    return path


async def probe(client: httpx.AsyncClient) -> httpx.Response | None:
    try:
        return await client.get("/healthz", timeout=1.0)
    except httpx.HTTPError:
        return None  # not listening yet, or not answering: a failed probe too


async def until_probe_fails(client: httpx.AsyncClient, process: subprocess.Popen[bytes]) -> dict[str, Any]:
    """Kubernetes' liveness probe: every 0.5 s; FAILURE_THRESHOLD failures in a row and the
    kubelet restarts the container. Returns the last 503's body."""
    failures = 0
    stalled: dict[str, Any] | None = None
    started = time.monotonic()
    while failures < FAILURE_THRESHOLD:
        assert process.poll() is None, f"the process exited ({process.returncode})"
        assert time.monotonic() - started < 120, "the watchdog never failed /healthz"
        answer = await probe(client)
        if answer is not None and answer.status_code == 503:
            failures += 1
            stalled = answer.json()
        elif answer is not None:
            failures = 0
        await asyncio.sleep(0.5)
    assert stalled is not None and stalled["status"] == "stalled"
    [reason] = stalled["stalled"]
    assert reason["sink"] == "soc" and reason["waiting_on"] == "send", reason
    assert reason["pending_events"] > 0, reason
    return stalled


def assert_one_stall_error(log: Path) -> None:
    stall_logs = [line for line in log.read_text().splitlines() if '"level":"error"' in line and "is stalled" in line]
    assert len(stall_logs) == 1, stall_logs  # one ERROR per stall, not one per check
    assert '"sink":"soc"' in stall_logs[0] and "waiting on send since" in stall_logs[0]


async def test_a_frozen_sink_fails_healthz_the_probe_restarts_it_and_everything_is_delivered(
    kafka_broker: Broker, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    prefix = f"w{uuid.uuid4().hex[:10]}"
    bus_config = parse_config(f"""
bus: {{type: kafka, kafka: {{bootstrap_servers: "{kafka_broker.bootstrap_servers}", topic_prefix: {prefix},
       idempotence: false, topics: {{partitions: 2}}}}}}
""", {})
    records = []
    for i in range(EVENTS):
        severity = ("high", "medium", "low")[i % 3]
        record = make_record(
            prefix=prefix, event={"id": f"e-{i}", "severity": severity, "n": i, "pad": PAD},
            kind="event", integration="appsec", severity=severity, event_id=f"e-{i}",
            received_at="2026-12-07T12:00:00.000000Z", batch="b", seq=i, peer="127.0.0.1",
        )
        records.append((record.topic, record.key, record.value))
    await produce(bus_config, records)

    receiver = Receiver()
    await receiver.start()
    port = free_port()
    config = write_config(tmp_path, kafka_broker, prefix, receiver.port, port)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            process = start(config, tmp_path / "forward-0.log")
            processes.append(process)
            for restart in range(RESTARTS):
                await until_probe_fails(client, process)
                metrics = (await client.get("/metrics")).text
                assert 'siemgate_stalled{sink="soc"} 1.0' in metrics
                process.send_signal(signal.SIGKILL)  # what the kubelet does
                process.wait(10)
                assert_one_stall_error(tmp_path / f"forward-{restart}.log")
                process = start(config, tmp_path / f"forward-{restart + 1}.log")
                processes.append(process)
            # The third process is blocked on the frozen receiver too, until it is fixed.
            await wait_until(lambda: receiver.connections >= RESTARTS + 1, "the last process connected")
            receiver.fixed.set()  # the SIEM is fixed
            expected = {f"e-{i}" for i in range(EVENTS)}
            await wait_until(lambda: expected <= set(receiver.received), "every event delivered", timeout=120)

            async def healthy() -> bool:
                answer = await probe(client)
                metrics = (await client.get("/metrics")).text
                return (answer is not None and answer.status_code == 200
                        and 'siemgate_stalled{sink="soc"} 0.0' in metrics)

            await wait_until(healthy, "/healthz 200 and siemgate_stalled 0 once delivering", timeout=30)
            process.send_signal(signal.SIGTERM)
            assert process.wait(30) == 0
    finally:
        await receiver.stop()
    assert expected <= set(receiver.received)


async def test_siemgate_run_fails_its_healthz_for_a_stalled_forwarder_and_a_restart_delivers_everything(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    """`siemgate run` (embedded bus): the ingest's /healthz carries the forwarders' watchdog."""
    receiver = Receiver()
    await receiver.start()
    port = free_port()
    config = write_run_config(tmp_path, receiver.port, port, free_port())
    expected: set[str] = set()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            process = await start_run(config, port, tmp_path / "run-0.log", processes)
            for n in range(EVENTS // 500):
                batch = [{"id": f"e-{n * 500 + i}", "severity": ("high", "medium", "low")[i % 3], "pad": PAD}
                         for i in range(500)]
                answer = await client.post("/webhook/demo", content=orjson.dumps(batch),
                                           headers={"X-Api-Key": RUN_KEY}, timeout=30)
                assert answer.status_code == 200, answer.text
                expected.update(e["id"] for e in batch)
            for restart in range(RESTARTS):
                await until_probe_fails(client, process)
                assert 'siemgate_stalled{sink="soc"} 1.0' in (await client.get("/metrics")).text
                process.send_signal(signal.SIGKILL)
                process.wait(10)
                assert_one_stall_error(tmp_path / f"run-{restart}.log")
                process = await start_run(config, port, tmp_path / f"run-{restart + 1}.log", processes)
            await wait_until(lambda: receiver.connections >= RESTARTS + 1, "the last process connected")
            receiver.fixed.set()
            await wait_until(lambda: expected <= set(receiver.received), "every acked event delivered",
                             timeout=120)

            async def healthy() -> bool:
                answer = await probe(client)
                return answer is not None and answer.status_code == 200

            await wait_until(healthy, "/healthz 200 once delivering", timeout=30)
            process.send_signal(signal.SIGTERM)
            assert process.wait(30) == 0
    finally:
        await receiver.stop()
    assert len(expected) == EVENTS and expected <= set(receiver.received)
