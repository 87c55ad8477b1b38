"""A wrong-key flood (issue 17: one WARNING per request, 0.86 MB/s of log from one
connection) is a bounded number of log lines: a real `siemgate run`, 1,000 requests with a
wrong key over one connection, its stderr counted."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import orjson
import pytest

from siemgate_standins.broker import free_port
from tests.test_file_modes import start, stop

pytestmark = pytest.mark.anyio

KEY = "flood-key-0123456789"
REQUESTS = 1000


async def test_1000_wrong_key_requests_write_two_lines(tmp_path: Path,
                                                       processes: list[subprocess.Popen[bytes]]) -> None:
    port = free_port()
    config = tmp_path / "run.yaml"
    config.write_text(f"""
listen: {{host: 127.0.0.1, port: {port}}}
integrations:
  - name: demo
    auth: {{header: X-Api-Key, values: ["{KEY}"]}}
bus: {{type: embedded, path: {tmp_path}/data/siemgate.db}}
state_dir: {tmp_path}/state
quarantine: {{path: {tmp_path}/quarantine}}
sinks:
  - {{name: archive, type: file, path: {tmp_path}/out/events.ndjson}}
""")
    log = tmp_path / "run.log"
    process = await start(["run", "-c", str(config)], port, log, 0o077, processes)
    body = orjson.dumps([{"id": "e-1", "severity": "high"}])
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        for i in range(REQUESTS):
            # A different wrong key each time: what an attacker guessing keys sends.
            response = await client.post("/webhook/demo", content=body, headers={"X-Api-Key": f"guess-{i}"})
            assert response.status_code == 401
        # The real sender is still served.
        assert (await client.post("/webhook/demo", content=body, headers={"X-Api-Key": KEY})).status_code == 200
    await stop(process)
    lines = [orjson.loads(line) for line in log.read_bytes().splitlines() if line.startswith(b"{")]
    about_401 = [line for line in lines if "(401)" in line["message"]]
    # The first line, then (at exit, within the minute) one summary counting the rest.
    assert len(about_401) == 2, about_401
    assert about_401[0]["level"] == "warning" and about_401[0]["integration"] == "demo"
    assert about_401[1]["repeated"] == REQUESTS - 1
    assert about_401[1]["message"].startswith(f"{REQUESTS - 1} more like this in the last")
    assert len(lines) < 30, [line["message"] for line in lines]
    # No key, right or wrong, in the log.
    assert "guess-" not in log.read_text() and KEY not in log.read_text()
