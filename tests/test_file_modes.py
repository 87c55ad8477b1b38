"""Everything that holds events or state is created 0600, its directories 0700, whatever the
umask (issue 17): a real `siemgate run` (embedded log, file sink, quarantine, confirmation
state) and a real `siemgate ingest` whose Kafka is away (the spool), their data directory
walked after they stop."""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson
import pytest

from siemgate.private_files import open_private, private_dir, private_file
from siemgate_standins.broker import free_port
from tests.support import wait_until

pytestmark = pytest.mark.anyio

KEY = "modes-key-0123456789"


def modes_under(root: Path) -> dict[str, int]:
    """Every directory and file under `root` (itself included), with its permission bits."""
    found = {".": stat.S_IMODE(root.stat().st_mode)}
    for directory, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = Path(directory) / name
            found[str(path.relative_to(root))] = stat.S_IMODE(path.lstat().st_mode)
    return found


def assert_private(root: Path) -> None:
    modes = modes_under(root)
    wrong = {name: oct(mode) for name, mode in modes.items()
             if mode != (0o700 if (root / name).is_dir() else 0o600)}
    assert not wrong, f"not 0600/0700 under {root}: {wrong}"


def with_umask(umask: int) -> Callable[[], None]:
    def set_umask() -> None:
        os.umask(umask)
    return set_umask


async def start(argv: list[str], port: int, log: Path, umask: int,
                processes: list[subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    with open(log, "ab") as handle:
        process = subprocess.Popen([sys.executable, "-m", "siemgate", *argv], stdout=handle, stderr=handle,
                                   preexec_fn=with_umask(umask))
    processes.append(process)
    async with httpx.AsyncClient() as client:
        async def ready() -> bool:
            assert process.poll() is None, log.read_text()
            with contextlib.suppress(httpx.HTTPError):
                return (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200
            return False

        await wait_until(ready, "the process to be ready", timeout=30)
    return process


async def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    await wait_until(lambda: process.poll() is not None, "the process to exit", timeout=30)
    assert process.returncode == 0


async def post_everything(port: int) -> None:
    """Events, a confirmation message (state) and a body that is not JSON (quarantine)."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers={"X-Api-Key": KEY},
                                 timeout=30) as client:
        events = [{"id": f"ev-{i}", "severity": "high", "type": "xss"} for i in range(50)]
        assert (await client.post("/webhook/demo", content=orjson.dumps(events))).status_code == 200
        confirmation = {"confirmationLink": "https://vendor.example/confirm?token=abc"}
        assert (await client.post("/webhook/demo", content=orjson.dumps(confirmation))).status_code == 200
        refused = await client.post("/webhook/demo", content=b"[{not json")
        assert refused.status_code == 400 and refused.json()["quarantined"]


@pytest.mark.parametrize("umask", [0o022, 0o000], ids=["umask-022", "umask-000"])
async def test_a_run_creates_its_data_private(tmp_path: Path, umask: int,
                                              processes: list[subprocess.Popen[bytes]]) -> None:
    data = tmp_path / "data"
    out = data / "out" / "events.ndjson"
    port = free_port()
    config = tmp_path / "run.yaml"
    config.write_text(f"""
listen: {{host: 127.0.0.1, port: {port}}}
integrations:
  - name: demo
    auth: {{header: X-Api-Key, values: ["{KEY}"]}}
bus: {{type: embedded, path: {data}/bus/siemgate.db}}
state_dir: {data}/state
quarantine: {{path: {data}/quarantine}}
sinks:
  - {{name: archive, type: file, path: {out}, fsync: never, batch: {{max_events: 10, max_wait_seconds: 0.05}}}}
""")
    process = await start(["run", "-c", str(config)], port, tmp_path / "run.log", umask, processes)
    await post_everything(port)
    await wait_until(lambda: out.exists() and out.read_bytes().count(b"\n") >= 50, "the events in the file sink")
    await stop(process)
    kinds = {Path(name).parts[0] for name in modes_under(data) if name != "."}
    assert kinds == {"bus", "state", "quarantine", "out"}
    assert any(name.endswith(".body") for name in os.listdir(data / "quarantine"))
    assert (data / "state" / "confirmations.json").exists()
    assert_private(data)


async def test_the_spool_is_private(tmp_path: Path, processes: list[subprocess.Popen[bytes]]) -> None:
    data = tmp_path / "data"
    port = free_port()
    config = tmp_path / "ingest.yaml"
    config.write_text(f"""
listen: {{host: 127.0.0.1, port: {port}}}
integrations:
  - name: demo
    auth: {{header: X-Api-Key, values: ["{KEY}"]}}
state_dir: {data}/state
quarantine: {{path: {data}/quarantine}}
bus:
  type: kafka
  kafka: {{bootstrap_servers: "127.0.0.1:1", idempotence: false, produce_timeout_seconds: 2}}
  spool: {{path: {data}/spool, ack_deadline_seconds: 0.5, drain_timeout_seconds: 1}}
""")
    process = await start(["ingest", "-c", str(config)], port, tmp_path / "ingest.log", 0o022, processes)
    await post_everything(port)
    await stop(process)
    assert any(name.endswith(".db") or "spool" in name for name in os.listdir(data / "spool"))
    assert_private(data)


def test_helpers_force_the_mode_on_creation_only(tmp_path: Path) -> None:
    previous = os.umask(0o277)  # would give 0400 files and 0400 directories
    try:
        nested = private_dir(tmp_path / "a" / "b")
        created = private_file(nested / "f")
        os.close(open_private(nested / "g", os.O_WRONLY | os.O_CREAT))
    finally:
        os.umask(previous)
    assert_private(tmp_path / "a")
    # What exists is the operator's: left as it is.
    os.chmod(created, 0o640)
    private_file(created)
    os.close(open_private(created, os.O_WRONLY | os.O_CREAT))
    assert stat.S_IMODE(created.stat().st_mode) == 0o640
