"""The admin listener in the real commands: `siemgate ingest` shows its integrations and spool,
`siemgate forward` its sinks, each on its own port, never on the webhook port; a port in use or
shared with the webhooks stops the start with a one-line reason."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from siemgate_standins.broker import Broker, free_port
from tests.admin.support import TOKEN
from tests.support import wait_until

pytestmark = pytest.mark.anyio

KEY = "process-webhook-key-0123"
ENV = {**os.environ, "SIEMGATE_ADMIN_TOKEN": TOKEN}
BEARER = {"Authorization": f"Bearer {TOKEN}"}


def start(command: str, config: Path, log: Path, processes: list[subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    with open(log, "ab") as handle:
        process = subprocess.Popen([sys.executable, "-m", "siemgate", command, "-c", str(config)],
                                   stdout=handle, stderr=handle, env=ENV)
    processes.append(process)
    return process


def kafka_section(broker: Broker, prefix: str) -> str:
    return f"""bus:
  type: kafka
  kafka: {{bootstrap_servers: "{broker.bootstrap_servers}", topic_prefix: {prefix},
          idempotence: {str(broker.idempotence).lower()}, topics: {{partitions: 2}}}}"""


async def status_of(client: httpx.AsyncClient, url: str, process: subprocess.Popen[bytes], log: Path
                    ) -> dict[str, Any] | None:
    assert process.poll() is None, log.read_text()
    try:
        response = await client.get(url + "/api/status", headers=BEARER)
    except httpx.HTTPError:
        return None
    return dict(response.json()) if response.status_code == 200 else None


async def test_ingest_and_forward_each_show_their_own_parts(
    kafka_broker: Broker, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    prefix = f"a{uuid.uuid4().hex[:10]}"
    port, ingest_admin, forward_admin = free_port(), free_port(), free_port()
    ingest_config = tmp_path / "ingest.yaml"
    ingest_config.write_text(f"""
listen: {{host: 127.0.0.1, port: {port}}}
admin: {{host: 127.0.0.1, port: {ingest_admin}, token: "${{SIEMGATE_ADMIN_TOKEN}}"}}
state_dir: {tmp_path}/state
quarantine: {{path: {tmp_path}/quarantine}}
integrations:
  - name: appsec-prod
    auth: {{header: X-Api-Key, values: ["{KEY}"]}}
{kafka_section(kafka_broker, prefix)}
  spool: {{path: {tmp_path}/spool}}
""")
    out = tmp_path / "out.ndjson"
    forward_config = tmp_path / "forward.yaml"
    forward_config.write_text(f"""
admin: {{host: 127.0.0.1, port: {forward_admin}, token: "${{SIEMGATE_ADMIN_TOKEN}}"}}
forward: {{listen: {{host: 127.0.0.1, port: {free_port()}}}, lag_interval_seconds: 1}}
{kafka_section(kafka_broker, prefix)}
sinks:
  - {{name: archive, type: file, path: {out}, fsync: never}}
""")
    ingest = start("ingest", ingest_config, tmp_path / "ingest.log", processes)
    forward = start("forward", forward_config, tmp_path / "forward.log", processes)
    ingest_url, forward_url = f"http://127.0.0.1:{ingest_admin}", f"http://127.0.0.1:{forward_admin}"
    async with httpx.AsyncClient(timeout=10) as client:
        async def ingest_ready() -> bool:
            assert ingest.poll() is None, (tmp_path / "ingest.log").read_text()
            try:
                return (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200
            except httpx.HTTPError:
                return False

        await wait_until(ingest_ready, "siemgate ingest to be ready", timeout=60)
        webhook = f"http://127.0.0.1:{port}/webhook/appsec-prod"
        events = [{"id": f"e{i}", "severity": "high"} for i in range(40)]
        headers = {"X-Api-Key": KEY}
        assert (await client.post(webhook, content=orjson.dumps(events), headers=headers)).status_code == 200
        link = "https://vendor.example/confirm?token=abc"
        assert (await client.post(webhook, content=orjson.dumps({"confirmationLink": link}),
                                  headers=headers)).status_code == 200

        seen: dict[str, Any] = {}

        async def ingest_shows_its_integration() -> bool:
            status = await status_of(client, ingest_url, ingest, tmp_path / "ingest.log")
            if status is None:
                return False
            seen["ingest"] = status
            (integration,) = status["integrations"]
            return bool(integration["state"] == "pending" and integration["events_last_hour"] == 41)

        async def forward_shows_its_sink() -> bool:
            status = await status_of(client, forward_url, forward, tmp_path / "forward.log")
            if status is None:
                return False
            seen["forward"] = status
            (sink,) = status["sinks"]
            return bool(sink["state"] == "up" and sink["delivered"] >= 41)

        await wait_until(ingest_shows_its_integration, "the ingest's status page to show its integration")
        await wait_until(forward_shows_its_sink, "the forwarder's status page to show its sink")
        assert seen["ingest"]["process"] == "ingest" and seen["ingest"]["sinks"] is None
        assert seen["ingest"]["integrations"][0]["link"] == link
        spool = seen["ingest"]["spool"]
        assert spool["kind"] == "spool" and spool["path"] == f"{tmp_path}/spool" and spool["active"] is False
        assert seen["forward"]["process"] == "forward"
        assert seen["forward"]["integrations"] is None and seen["forward"]["spool"] is None
        # Each listener serves its own: no status on the webhook port, no webhook on the admin port.
        assert (await client.get(f"http://127.0.0.1:{port}/api/status", headers=BEARER)).status_code == 404
        assert (await client.get(f"http://127.0.0.1:{port}/", headers=BEARER)).status_code in (404, 405)
        refused = await client.post(f"{ingest_url}/webhook/appsec-prod", content=orjson.dumps(events),
                                    headers=headers)
        assert refused.status_code == 404
        assert (await client.get(f"{forward_url}/api/status")).status_code == 401
    for process in (ingest, forward):
        process.send_signal(signal.SIGTERM)
    assert ingest.wait(30) == 0 and forward.wait(30) == 0


def run_config(tmp_path: Path, port: int, admin_port: int) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(f"""
listen: {{host: 127.0.0.1, port: {port}}}
admin: {{host: 127.0.0.1, port: {admin_port}, token: "${{SIEMGATE_ADMIN_TOKEN}}"}}
integrations:
  - name: demo
    auth: {{header: X-Api-Key, values: ["{KEY}"]}}
bus: {{type: embedded, path: {tmp_path}/siemgate.db}}
state_dir: {tmp_path}/state
quarantine: {{path: {tmp_path}/quarantine}}
sinks:
  - {{name: archive, type: file, path: {tmp_path}/out.ndjson}}
""")
    return path


def test_an_admin_port_in_use_stops_the_start(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        admin_port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "siemgate", "run", "-c",
                                 str(run_config(tmp_path, free_port(), admin_port))],
                                capture_output=True, env=ENV, timeout=60)
    assert result.returncode == 1
    last = result.stderr.decode().strip().splitlines()[-1]
    assert last.startswith(f"siemgate: cannot listen on admin.host 127.0.0.1 admin.port {admin_port}")
    assert TOKEN not in result.stderr.decode()


def test_the_admin_listener_never_shares_the_webhook_port(tmp_path: Path) -> None:
    port = free_port()
    result = subprocess.run([sys.executable, "-m", "siemgate", "run", "-c", str(run_config(tmp_path, port, port))],
                            capture_output=True, env=ENV, timeout=60)
    assert result.returncode == 2
    assert f"admin.port: {port} is the webhook port" in result.stderr.decode()
