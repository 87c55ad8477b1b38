"""`siemgate ingest` as a process: SIGKILLed with events in its spool and restarted while
Kafka is still down, it loses nothing; a spool it cannot use stops it with the reason."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from siemgate.bus.spool import FILE_NAME
from siemgate.record import all_topics
from siemgate_standins.broker import free_port
from tests.ingest.conftest import TansuFactory
from tests.support import KEY, PrivateTansu, Sender, consume_keys, metric_value, siemgate_command, wait_until

pytestmark = pytest.mark.anyio


def write_config(tmp_path: Path, tansu: PrivateTansu, port: int) -> Path:
    config = {
        "listen": {"host": "127.0.0.1", "port": port},
        "state_dir": str(tmp_path / "state"),
        "quarantine": {"path": str(tmp_path / "quarantine")},
        "integrations": [{"name": "appsec", "auth": {"header": "X-Api-Key", "values": [KEY]}}],
        "bus": {
            "type": "kafka",
            "kafka": {"bootstrap_servers": tansu.broker.bootstrap_servers, "topic_prefix": "proc",
                      "idempotence": False, "produce_timeout_seconds": 4, "topics": {"partitions": 1}},
            "spool": {"path": str(tmp_path / "spool"), "ack_deadline_seconds": 1},
        },
    }
    path = tmp_path / "siemgate.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


class IngestProcess:
    def __init__(self, config: Path, port: int, log: Path) -> None:
        self.url = f"http://127.0.0.1:{port}"
        with open(log, "ab") as out:
            self.process = subprocess.Popen([*siemgate_command(), "ingest", "-c", str(config)],
                                            stdout=out, stderr=out, stdin=subprocess.DEVNULL)

    async def ready(self, client: httpx.AsyncClient) -> None:
        async def answers() -> bool:
            assert self.process.poll() is None, f"siemgate ingest exited with {self.process.returncode}"
            try:
                return (await client.get(self.url + "/readyz")).status_code == 200
            except httpx.TransportError:
                return False

        await wait_until(answers, "siemgate ingest to be ready", timeout=30)

    async def metric(self, client: httpx.AsyncClient, name: str) -> float:
        return metric_value((await client.get(self.url + "/metrics")).text, name)

    async def stop(self, sig: signal.Signals) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return await asyncio.to_thread(self.process.wait, 30)


@pytest.fixture
async def ingest_processes(tmp_path: Path) -> AsyncIterator[Callable[[Path, int], IngestProcess]]:
    started: list[IngestProcess] = []

    def start(config: Path, port: int) -> IngestProcess:
        started.append(IngestProcess(config, port, tmp_path / f"ingest-{len(started)}.log"))
        return started[-1]

    try:
        yield start
    finally:
        for ingest in started:
            await ingest.stop(signal.SIGKILL)


async def test_sigkill_with_a_non_empty_spool_then_restart_with_kafka_down_loses_nothing(
    private_tansu: TansuFactory, ingest_processes: Callable[[Path, int], IngestProcess], tmp_path: Path
) -> None:
    tansu = private_tansu()  # down: nothing listens on its port yet
    port = free_port()
    config = write_config(tmp_path, tansu, port)
    async with httpx.AsyncClient(timeout=30) as client:
        first = ingest_processes(config, port)
        await first.ready(client)  # Kafka is down, the spool takes writes
        sender = Sender(first.url + "/webhook/appsec")
        for _ in range(10):
            assert await sender.send(client) == 200
        assert await first.metric(client, "siemgate_spool_events") == 200
        assert await first.stop(signal.SIGKILL) == -signal.SIGKILL

        second = ingest_processes(config, port)
        await second.ready(client)
        assert await second.metric(client, "siemgate_spool_events") == 200  # counted from the file
        assert await second.metric(client, "siemgate_spool_active") == 1
        for _ in range(5):
            assert await sender.send(client) == 200  # behind the spooled events
        assert await second.metric(client, "siemgate_spool_events") == 300

        await tansu.start()

        async def empty() -> bool:
            return (await second.metric(client, "siemgate_spool_events") == 0
                    and await second.metric(client, "siemgate_spool_active") == 0)

        await wait_until(empty, "the restarted ingest to drain its spool", timeout=90, interval=0.2)
        for _ in range(2):
            assert await sender.send(client) == 200
        by_topic = await consume_keys(tansu.broker, all_topics("proc"), sender.acked_ids)
        sender.assert_in_order(by_topic, "proc")
        assert await second.stop(signal.SIGTERM) == 0


def test_a_damaged_spool_stops_the_ingest_with_the_reason(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / FILE_NAME).write_bytes(b"not a database" * 200)
    port = free_port()
    tansu = PrivateTansu(tmp_path / "unused.log")  # never started: the ingest must stop before Kafka
    config = write_config(tmp_path, tansu, port)
    result = subprocess.run([*siemgate_command(), "ingest", "-c", str(config)], capture_output=True, timeout=60,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 1
    last = result.stderr.decode().strip().splitlines()[-1]
    assert last.startswith("siemgate: cannot open the spool")
    assert "move the file aside" in last
    assert (spool / FILE_NAME).read_bytes().startswith(b"not a database")
