"""The README's quick starts, run as written: `make run`, then the simulate command against it,
then the events in the file sink; and "With Kafka": `make kafka-demo` (the broker), the ingest,
curl, simulate, the forwarder and the file sink. (Only ports and the data directory are
changed, through the environment variables the Makefile and deploy/examples/*.yaml read.)"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson
import pytest

from siemgate_standins.broker import free_port

ROOT = Path(__file__).resolve().parent.parent


def readme_commands(start: str, end: str) -> list[str]:
    """The shell commands of the README's sh blocks between two headings, comments left out."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index(start):readme.index(end)]
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", section, re.S):
        joined = block.replace("\\\n", " ")
        commands += [line.split("  #")[0].strip() for line in joined.splitlines()
                     if line.strip() and not line.lstrip().startswith("#")]
    return commands


def quick_start_commands() -> list[str]:
    return readme_commands("## Quick start", "### With Kafka")


def needs(*programs: str) -> None:
    for program in programs:
        if shutil.which(program) is None:
            if os.environ.get("CI") == "true":
                pytest.fail(f"{program} is needed under CI=true")
            pytest.skip(f"{program} is not installed")


def test_the_readme_quick_start_works(tmp_path: Path) -> None:
    needs("make")
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


def live_members(group: int) -> list[int]:
    """The processes of a process group that have not exited (zombies left out)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError):
            text = stat.read_text()
            state, _ppid, pgrp = text[text.rindex(")") + 2:].split()[:3]
            if int(pgrp) == group and state != "Z":
                pids.append(int(stat.parent.name))
    return pids


def stop_job(shell: subprocess.Popen[bytes], signum: signal.Signals, *, whole_group: bool) -> int | None:
    """Stop a command started through a shell in a session of its own, as its terminal would:
    Ctrl-C signals the whole foreground group (`whole_group`), `kill %N` the job's command, not
    the shell that the test ran it in. Waits until every process of the group has exited; the
    shell's exit code is returned (the command's, unless the shell got the signal too); None when
    the group had to be killed after 30 s."""
    for pid in live_members(shell.pid):
        if whole_group or pid != shell.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)
    deadline = time.monotonic() + 30
    while shell.poll() is None or live_members(shell.pid):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(shell.pid, signal.SIGKILL)
            shell.wait()
            return None
        time.sleep(0.1)
    return shell.returncode


def test_the_readme_kafka_quick_start_works(tmp_path: Path) -> None:
    """The "With Kafka" quick start on a fresh clone: `make kafka-demo` creates the venv, installs the
    stand-ins and starts the broker; each following command is run as written, the `&` ones in the
    background, and stopped as the README says."""
    needs("make", "curl")
    commands = readme_commands("### With Kafka", "## Commands")
    assert len(commands) == 6, commands  # every command below is run: none is left out unseen
    demo, ingest, curl, simulate, forward, tail = commands
    assert demo == "make kafka-demo"
    assert " ingest " in ingest and ingest.endswith("&")
    assert curl.startswith("curl ") and " simulate " in simulate
    assert " forward " in forward and forward.endswith("&") and tail.startswith("tail ")
    broker_port, port, forward_port = free_port(), free_port(), free_port()
    data = tmp_path / "data"
    env = {**os.environ, "KAFKA_DEMO_PORT": str(broker_port), "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{broker_port}",
           "SIEMGATE_PORT": str(port), "SIEMGATE_FORWARD_PORT": str(forward_port), "SIEMGATE_DATA_DIR": str(data)}

    def here(command: str) -> str:
        return command.replace("127.0.0.1:8080", f"127.0.0.1:{port}")

    started: list[tuple[str, subprocess.Popen[bytes], signal.Signals]] = []  # name, its shell, its stop

    def background(name: str, command: str, stop: signal.Signals) -> subprocess.Popen[bytes]:
        with open(tmp_path / f"{name}.log", "wb") as log:
            process = subprocess.Popen(here(command.removesuffix("&").strip()), shell=True, cwd=ROOT, env=env,
                                       stdout=log, stderr=log, start_new_session=True)
        started.append((name, process, stop))
        return process

    def logged(name: str) -> str:
        return (tmp_path / f"{name}.log").read_text(errors="replace")

    def wait_until(what: str, ready: Callable[[], bool], process: subprocess.Popen[bytes], name: str,
                   timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            assert process.poll() is None, f"{name} exited: {logged(name)}"
            assert time.monotonic() < deadline, f"{what} after {timeout:g} s: {logged(name)}"
            time.sleep(0.2)

    def answers(url: str) -> bool:
        try:
            return httpx.get(url).status_code == 200
        except httpx.HTTPError:
            return False

    def listens(port: int) -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return False
        return True

    events = data / "out" / "events.ndjson"
    try:
        broker = background("kafka-demo", demo, signal.SIGINT)  # Ctrl-C in its terminal
        # A fresh clone creates the venv and installs siemgate and the stand-ins first.
        wait_until("no broker", lambda: f"127.0.0.1:{broker_port}" in logged("kafka-demo") and listens(broker_port),
                   broker, "kafka-demo", 300)
        process = background("ingest", ingest, signal.SIGTERM)  # kill %1
        wait_until("the ingest is not ready", lambda: answers(f"http://127.0.0.1:{port}/readyz"), process, "ingest",
                   60)
        result = subprocess.run(here(curl), shell=True, cwd=ROOT, env=env, capture_output=True, timeout=60)
        assert orjson.loads(result.stdout) == {"accepted": 1}, result
        result = subprocess.run(here(simulate), shell=True, cwd=ROOT, env=env, capture_output=True, text=True,
                                timeout=180)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "nothing lost" in result.stdout
        process = background("forward", forward, signal.SIGTERM)  # kill %2
        # curl's event, the 5,000 events, the confirmation and the test message
        wait_until("the events did not reach the file sink",
                   lambda: events.exists() and events.read_bytes().count(b"\n") >= 5003, process, "forward", 120)
        last = subprocess.run(tail.replace("data/", f"{data}/"), shell=True, cwd=ROOT, capture_output=True,
                              timeout=10)
        assert orjson.loads(last.stdout)["integration"] == "appsec-prod"
        assert "e1" in {orjson.loads(line).get("id") for line in events.read_bytes().splitlines()}  # curl's
    finally:
        codes = {name: stop_job(process, signum, whole_group=name == "kafka-demo")
                 for name, process, signum in reversed(started)}  # the forwarder, the ingest, then the broker
    assert codes["kafka-demo"] is not None, logged("kafka-demo")  # make dies of the signal: no exit code to check
    # `kill %1 %2`: each stops gracefully (the shell that ran it returns its exit code)
    assert codes["forward"] == 0 and '"forwarder stopped"' in logged("forward"), logged("forward")
    assert codes["ingest"] == 0 and '"ingest stopped"' in logged("ingest"), logged("ingest")
    for name, _, _ in started:
        assert "Traceback" not in logged(name), logged(name)
