"""The README's quick start, run as written: `make run`, then the simulate command against it,
then the events in the file sink. (Only the port and the data directory are changed, through
the environment variables deploy/examples/local.yaml reads.)"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx
import orjson
import pytest

from siemgate_standins.broker import free_port

ROOT = Path(__file__).resolve().parent.parent


def quick_start_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Quick start"):readme.index("### With Kafka")]
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", section, re.S):
        joined = block.replace("\\\n", " ")
        commands += [line.split("  #")[0].strip() for line in joined.splitlines() if line.strip()]
    return commands


def test_the_readme_quick_start_works(tmp_path: Path) -> None:
    if shutil.which("make") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("make is needed under CI=true")
        pytest.skip("make is not installed")
    commands = quick_start_commands()
    assert commands[0].startswith("make run")
    simulate = next(c for c in commands if " simulate " in c)
    tail = next(c for c in commands if c.startswith("tail "))
    port = free_port()
    env = {**os.environ, "SIEMGATE_PORT": str(port), "SIEMGATE_DATA_DIR": str(tmp_path / "data")}
    log = open(tmp_path / "make-run.log", "wb")  # noqa: SIM115 - closed below
    server = subprocess.Popen(commands[0], shell=True, cwd=ROOT, env=env, stdout=log, stderr=log,
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 180  # a fresh machine creates the venv first
        while True:
            assert server.poll() is None, (tmp_path / "make-run.log").read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "make run did not become ready"
            time.sleep(0.2)
        result = subprocess.run(simulate.replace("127.0.0.1:8080", f"127.0.0.1:{port}"), shell=True, cwd=ROOT,
                                env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "nothing lost" in result.stdout
        events = tmp_path / "data" / "out" / "events.ndjson"
        deadline = time.monotonic() + 60
        while not events.exists() or events.read_bytes().count(b"\n") < 5002:  # + confirmation and test
            assert time.monotonic() < deadline, "the events did not reach the file sink"
            time.sleep(0.1)
        last = subprocess.run(tail.replace("data/", f"{tmp_path}/data/"), shell=True, cwd=ROOT,
                              capture_output=True, timeout=10)
        assert orjson.loads(last.stdout)["integration"] == "demo"
    finally:
        os.killpg(server.pid, signal.SIGINT)  # Ctrl-C in the terminal: make and siemgate get it
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()
    output = (tmp_path / "make-run.log").read_text()
    assert '"forwarder stopped"' in output and '"ingest stopped"' in output, output  # (make dies of the signal)
    assert "Traceback" not in output, output
