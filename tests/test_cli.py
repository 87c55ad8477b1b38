"""The `siemgate` command as users run it: a real process, its exit codes and its output."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson
import pytest

from siemgate_standins.broker import Broker, free_port

SIEMGATE = [sys.executable, "-m", "siemgate"]


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SIEMGATE, *args], capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
    )


def write_config(tmp_path: Path, bootstrap: str, *, idempotence: bool = False, port: int = 0) -> Path:
    path = tmp_path / "siemgate.yaml"
    path.write_text(f"""
listen: {{host: 127.0.0.1, port: {port}}}
state_dir: {tmp_path}/state
quarantine: {{path: {tmp_path}/quarantine}}
integrations:
  - name: appsec
    auth: {{header: X-Api-Key, values: ["${{CLI_TEST_KEY}}"]}}
bus:
  type: kafka
  kafka:
    bootstrap_servers: "{bootstrap}"
    topic_prefix: cli{os.getpid()}{port}
    idempotence: {str(idempotence).lower()}
    topics: {{partitions: 1}}
sinks:
  - {{name: archive, type: file, path: {tmp_path}/out.ndjson}}
""")
    return path


def test_help_and_version() -> None:
    result = run("--help")
    assert result.returncode == 0
    for command in ("ingest", "check", "simulate", "confirmations", "confirm"):
        assert command in result.stdout
    assert run("--version").stdout.startswith("siemgate ")


def test_bad_config_exits_2_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("listen: {port: nope}\n")
    for command in ("check", "ingest", "confirmations"):
        result = run(command, "-c", str(path))
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert lines == [f"siemgate: {path}: listen.port: must be an integer, not 'nope'"]


def test_check_reaches_kafka(kafka_broker: Broker, tmp_path: Path) -> None:
    config = write_config(tmp_path, kafka_broker.bootstrap_servers, idempotence=kafka_broker.idempotence)
    result = run("check", "-c", str(config), env={"CLI_TEST_KEY": "cli-secret-key"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok    kafka " in result.stdout
    assert "integration appsec" in result.stdout
    assert re.search(r"^ok\s+sink archive\s+file: .* is writable$", result.stdout, re.M)
    assert "cli-secret-key" not in result.stdout + result.stderr
    assert "all checks passed" in result.stdout


def test_check_fails_for_an_unwritable_file_sink(kafka_broker: Broker, tmp_path: Path) -> None:
    config = write_config(tmp_path, kafka_broker.bootstrap_servers, idempotence=kafka_broker.idempotence)
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a directory should be")
    config.write_text(config.read_text().replace(f"{tmp_path}/out.ndjson", f"{blocker}/out.ndjson"))
    result = run("check", "-c", str(config), env={"CLI_TEST_KEY": "cli-secret-key"})
    assert result.returncode == 1
    assert re.search(r"^FAIL\s+sink archive\s+file: .* is not writable", result.stdout, re.M)


def test_check_fails_when_kafka_is_unreachable(tmp_path: Path) -> None:
    config = write_config(tmp_path, f"127.0.0.1:{free_port()}")
    result = run("check", "-c", str(config), "--timeout", "3", env={"CLI_TEST_KEY": "cli-secret-key"})
    assert result.returncode == 1
    assert "FAIL  kafka" in result.stdout
    assert "FAILED: 1 check(s)" in result.stdout


def test_ingest_process_serves_logs_json_and_stops_on_sigterm(kafka_broker: Broker, tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, kafka_broker.bootstrap_servers, idempotence=kafka_broker.idempotence, port=port)
    process = subprocess.Popen(
        [*SIEMGATE, "ingest", "-c", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "CLI_TEST_KEY": "cli-secret-key"},
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        with httpx.Client() as client:
            while True:
                try:
                    if client.get(url + "/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert process.poll() is None, process.stderr.read() if process.stderr else ""
                assert time.monotonic() < deadline, "the ingest did not become ready"
                time.sleep(0.1)
            response = client.post(url + "/webhook/appsec", content=orjson.dumps([{"id": "1", "severity": "high"}]),
                                   headers={"X-Api-Key": "cli-secret-key"})
            assert response.json() == {"accepted": 1}
            assert client.post(url + "/webhook/appsec", content=b"[]",
                               headers={"X-Api-Key": "wrong"}).status_code == 401
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0
    lines = [json.loads(line) for line in stderr.decode().splitlines() if line.strip()]
    assert all({"time", "level", "logger", "message"} <= line.keys() for line in lines)
    messages = [line["message"] for line in lines]
    assert "ingest started" in messages
    assert "ingest stopped" in messages
    assert any("401" in m for m in messages)
    assert "cli-secret-key" not in stderr.decode()


@pytest.mark.parametrize("command", ["ingest"])
def test_embedded_bus_is_refused_by_ingest_for_now(tmp_path: Path, command: str) -> None:
    path = tmp_path / "embedded.yaml"
    path.write_text("integrations: [{name: a, auth: {header: X-K, values: [v]}}]\n")
    result = run(command, "-c", str(path))
    assert result.returncode == 2
    assert "bus.type" in result.stderr


@pytest.mark.parametrize(("kind", "args", "path", "expected"), [
    ("elasticsearch", [], "/", "tagline"),
    ("splunk-hec", ["--token", "0d6f2b5e-7a39-4c51-9b1e-2f8c1d3a4b5c"], "/services/collector/health", "HEC is healthy"),
    ("sentinel", ["--client", "c:secret", "--dcr", "dcr-01"], "/tenant-x/v2.0/.well-known/openid-configuration",
     "/tenant-x/oauth2/v2.0/token"),
])
def test_standin_command_serves_until_sigterm(kind: str, args: list[str], path: str, expected: str,
                                              processes: list[subprocess.Popen[bytes]]) -> None:
    process = subprocess.Popen([sys.executable, "-m", "siemgate", "standin", kind, "--port", "0", *args],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    processes.append(process)
    assert process.stdout is not None
    url = process.stdout.readline().decode().strip()
    assert url.startswith("http://127.0.0.1:")
    assert expected in httpx.get(url + path).text
    process.send_signal(signal.SIGTERM)
    assert process.wait(15) == 0
    process.stdout.close()
    assert process.stderr is not None
    process.stderr.close()


# The real command with the stand-ins' distribution made unimportable, as in the image.
WITHOUT_STANDINS = ("import sys; sys.modules['siemgate_standins'] = None; "
                    "from siemgate.cli import main; sys.exit(main(sys.argv[1:]))")


@pytest.mark.parametrize("kind", ["splunk-hec", "elasticsearch", "sentinel"])
def test_standin_command_says_what_to_install_when_the_standins_are_not(kind: str) -> None:
    result = subprocess.run([sys.executable, "-c", WITHOUT_STANDINS, "standin", kind, "--port", "0"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert "stand-ins are not installed" in result.stderr and "pip install -e ./standins" in result.stderr
    other = subprocess.run([sys.executable, "-c", WITHOUT_STANDINS, "simulate", "--help"], capture_output=True,
                           text=True, timeout=60)
    assert other.returncode == 0 and "--events" in other.stdout, other.stderr


def test_the_product_imports_the_standins_only_to_run_one() -> None:
    """The stand-ins are a distribution of their own (standins/): siemgate imports them only in
    `siemgate standin`, never where the image's commands would need them."""
    import ast

    package = Path(__file__).resolve().parent.parent / "siemgate"
    assert not (package / "testing").exists()
    found = []
    for path in sorted(package.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        functions = [node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)]
        for node in ast.walk(tree):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(name.split(".")[0] == "siemgate_standins" for name in names):
                inside = [f.name for f in functions if f.lineno <= node.lineno <= (f.end_lineno or f.lineno)]
                found.append((path.relative_to(package).as_posix(), inside))
    assert found == [("cli.py", ["cmd_standin"])]


def test_check_reaches_the_http_sinks(tmp_path: Path, processes: list[subprocess.Popen[bytes]]) -> None:
    token = "0d6f2b5e-7a39-4c51-9b1e-2f8c1d3a4b5c"
    urls = {}
    for kind, args in (("elasticsearch", ["--api-key", "id:key"]), ("splunk-hec", ["--token", token])):
        process = subprocess.Popen([sys.executable, "-m", "siemgate", "standin", kind, "--port", "0", *args],
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        processes.append(process)
        assert process.stdout is not None
        urls[kind] = process.stdout.readline().decode().strip()
    config = tmp_path / "check.yaml"
    config.write_text(f"""
bus: {{type: embedded, path: {tmp_path}/log.db}}
sinks:
  - {{name: es, type: elasticsearch, url: "{urls['elasticsearch']}", api_key: "id:key"}}
  - {{name: es-bad, type: elasticsearch, url: "{urls['elasticsearch']}", api_key: "id:wrong"}}
  - {{name: hec, type: splunk_hec, url: "{urls['splunk-hec']}", token: "{token}"}}
""")
    result = subprocess.run([sys.executable, "-m", "siemgate", "check", "-c", str(config)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = {line.split()[2]: line for line in result.stdout.splitlines() if line.split()[1:2] == ["sink"]}
    assert "ok" in lines["es"] and "Elasticsearch 8.15.0" in lines["es"]
    assert "FAIL" in lines["es-bad"] and "401" in lines["es-bad"]
    assert "ok" in lines["hec"] and "code 17" in lines["hec"]
    assert "wrong" not in result.stdout
    for process in processes:
        process.terminate()
        process.wait(15)
        assert process.stdout is not None
        process.stdout.close()


def test_output_piped_to_a_reader_that_stops_is_no_traceback(tmp_path: Path) -> None:
    """`siemgate confirmations -c FILE | head -1`: the reader closes the pipe early; siemgate stops
    quietly (exit 141, as a tool SIGPIPE stopped), never a BrokenPipeError traceback."""
    integrations = "".join(f"  - {{name: i{n}, auth: {{header: X-K, values: [key-{n}-0123]}}}}\n" for n in range(2000))
    path = tmp_path / "siemgate.yaml"
    path.write_text(f"state_dir: {tmp_path}/state\nintegrations:\n{integrations}")
    with subprocess.Popen([*SIEMGATE, "confirmations", "-c", str(path)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE) as process:
        assert process.stdout is not None and process.stderr is not None
        assert process.stdout.readline().startswith(b"INTEGRATION")  # more than a pipe's buffer follows
        process.stdout.close()
        stderr = process.stderr.read().decode()
        assert process.wait(timeout=60) == 141
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr and "Exception ignored" not in stderr, stderr


@pytest.mark.parametrize("timeout", ["-1", "0", "nan", "inf", "soon"])
def test_a_timeout_that_is_no_positive_number_is_a_usage_error(tmp_path: Path, timeout: str) -> None:
    path = tmp_path / "siemgate.yaml"
    path.write_text("integrations: []\n")
    for command in (["check"], ["spool", "drain"]):
        result = run(*command, "-c", str(path), "--timeout", timeout)
        assert result.returncode == 2, result
        assert result.stderr.startswith("usage: siemgate ") and "argument --timeout: " in result.stderr
        assert "Traceback" not in result.stderr


def test_one_shot_commands_print_no_raw_library_log_lines(tmp_path: Path) -> None:
    """`check` and `dlq list` against an unreachable Kafka: what is wrong is in their own output,
    never aiokafka's raw `Unable connect to ...` (Python's last-resort handler, unredacted,
    interleaved with the table)."""
    config = write_config(tmp_path, f"127.0.0.1:{free_port()}")
    env = {"CLI_TEST_KEY": "cli-secret-key"}
    check = run("check", "-c", str(config), "--timeout", "3", env=env)
    assert check.returncode == 1 and "FAIL  kafka" in check.stdout
    dlq = run("dlq", "-c", str(config), "list", "--sink", "archive", env=env)
    assert dlq.returncode == 1 and "cannot reach Kafka" in dlq.stdout + dlq.stderr
    for result in (check, dlq):
        assert "Unable connect" not in result.stdout + result.stderr, result
        for line in result.stderr.splitlines():  # anything logged is siemgate's JSON line
            assert line.startswith("{") or line.startswith("cannot reach the bus"), line
