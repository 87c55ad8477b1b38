"""The ingest benchmark: siemgate's ack latency and throughput against a bare-HTTP ceiling.

In one run, the ceiling and up to three siemgate modes are each measured under two loads:

- the *ceiling* (bench/ceiling.py: a bare Starlette endpoint that reads the body and answers
  200, on the same uvicorn settings as siemgate);
- *kafka*: `siemgate ingest` producing to Kafka with acks=all (a Tansu broker is started
  unless KAFKA_BOOTSTRAP_SERVERS is set);
- *spool*: `siemgate ingest` whose Kafka is unreachable (bootstrap_servers is a free loopback
  port where nothing listens), so every batch is answered from its local SQLite spool
  (fsync'd); the spool grows during the run (`bus.spool.max_bytes` is set to most of the
  free disk), and the output says how many batches and bytes it took and that none went to
  Kafka;
- *embedded*: `siemgate run` on the embedded SQLite bus with a file sink, so the forwarder
  runs in the same process as the ingest; the output says whether the sink kept up (events
  written vs acked at the end of each run, from the same /metrics) and how long its backlog
  took to drain after the load stopped (before the next scenario starts);
- loads: (a) one sequential sender of 500-event batches (~400 KB), (b) 8 concurrent
  sequential senders.

Each mode runs in a fresh process with fresh data directories, one process for both loads.
`--modes` picks a subset (default all three), `--only` the ceiling or siemgate alone.

The load comes from `wrk` with bench/wrk_post.lua (one prebuilt body, posted again and again:
a wrk connection is one sequential sender). wrk costs a small fraction of a core; the Python
simulator (`siemgate simulate`), used when wrk is missing, costs ~0.75 core and may itself be
the bottleneck on a 2-core machine: the output says which load generator was used.

    .venv/bin/python bench/ingest.py                  # 20 s per scenario, every mode
    .venv/bin/python bench/ingest.py --modes kafka,embedded --duration 10
    .venv/bin/python bench/ingest.py --profile --profile-mode embedded --profile-load sequential

Results: a table on stdout (per mode and load: p50/p99, events/s, the ratios to the ceiling,
and for spool and embedded the ratio of their p99 to the Kafka mode's), then what the spool
and the sink did, bench/results/ingest-<timestamp>.json and ingest-latest.json.
With --profile, an extra run of one mode (`--profile-mode`, default kafka; under
`--profile-load`, default the 8 senders; not in the table: the sampler perturbs it) is
profiled with py-spy (or pyinstrument), written to bench/results/, and its top functions
are printed. Targets (2-core machine): Kafka mode (a) p50 <= 5 ms and p99 <= 10 ms per
500-event batch, (b) >= 100,000 events/s from one ingest process; spool and embedded mode
p99 within 2x the Kafka mode's p99 under the same load. Not run in CI.

Two other runs (docs/PERFORMANCE.md, "Every payload shape over HTTP, and memory"):

    .venv/bin/python bench/ingest.py --shapes       # every payload shape (and gzip'd), beside the ceiling
    .venv/bin/python bench/ingest.py --memory       # peak RSS, 32 concurrent maximum-size bodies

--shapes posts bench/parse_shapes.py's ingest_shapes (the simulator's events, json.dumps-escaped
attack samples, camelCase vendor events, 500 tiny events, 500 events of ~8 KB), each also
gzip'd, under both loads, first to the ceiling then to siemgate (first of --modes, default
kafka); checks issue 17's targets per shape; writes ingest-shapes-<timestamp>.json.
--memory runs siemgate (default embedded) with the chart's max_body_bytes and memory budget
(helm/siemgate/values.yaml), posts 32 bodies of that size at once and compares the peak RSS
with the chart's memory limit; writes ingest-memory-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import importlib.metadata
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from siemgate.simulate import make_batch_body, make_events  # noqa: E402
from siemgate_standins.broker import Broker, free_port, start_tansu  # noqa: E402

BENCH_DIR = Path(__file__).resolve().parent
LUA_SCRIPT = BENCH_DIR / "wrk_post.lua"
HEADER_NAME = "X-Api-Key"
HEADER_VALUE = "bench-key"
PATH = "/webhook/bench"
EVENTS_PER_BATCH = 500
CLK_TCK = os.sysconf("SC_CLK_TCK")
# --ingest-command: how to run `siemgate` (e.g. another checkout's venv, or a patched build).
INGEST_COMMAND: list[str] = []
# The siemgate modes, in the order they run.
MODES = ("kafka", "spool", "embedded")
MODE_LABELS = {
    "kafka": "`siemgate ingest`, Kafka acks=all",
    "spool": "`siemgate ingest`, Kafka unreachable: the local spool answers",
    "embedded": "`siemgate run`, embedded bus + file sink in the same process",
}
# Spool and embedded mode: p99 at most this many times the Kafka mode's p99 under the same load.
P99_VS_KAFKA_MAX = 2.0
TARGETS: dict[str, Any] = {
    "sequential": {"p50_ms": 5.0, "p99_ms": 10.0},
    "concurrent-8": {"events_per_second": 100_000},
    "spool_and_embedded_p99_vs_kafka_p99": {"max_ratio": P99_VS_KAFKA_MAX},
}
# Spool mode: bus.spool.max_bytes is this share of the work directory's free disk.
SPOOL_DISK_SHARE = 0.8
# Embedded mode: the file sink's name, and its batch size (siemgate's default), for "kept up".
SINK_NAME = "archive"
SINK_BATCH_EVENTS = 500


@dataclass(frozen=True)
class Scenario:
    name: str
    connections: int
    label: str


@dataclass(frozen=True)
class BusEndpoint:
    """What a mode's siemgate talks to: a Kafka address (None on the embedded bus)."""

    mode: str
    bootstrap_servers: str | None = None
    idempotence: bool = False
    broker_pid: int | None = None  # a broker the bench started (its CPU is reported)


@dataclass
class Target:
    name: str
    base_url: str
    pid: int
    log: Path
    process: subprocess.Popen[bytes]
    # siemgate's data directory (spool, embedded log, sink output) and config; None for the ceiling.
    data: Path | None = None
    config: dict[str, Any] | None = None

    @property
    def url(self) -> str:
        return self.base_url + PATH


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------
# Machine and process accounting


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a live process, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state): utime is field 14, stime field 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    total = sum(values[:8])
    return total - idle, total


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def version_of(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_info(load: str) -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kb = None
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    commit = dirty = None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
        # Read-only: whether siemgate/ differs from the commit (measured code not committed yet).
        status = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "siemgate"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout
        dirty = bool(status.strip())
    wrk_version = None
    if shutil.which("wrk"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=5)
            wrk_version = (out.stdout + out.stderr).split("\n")[0].strip()
    return {
        "nproc": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "memory_gib": round(mem_kb / 1024**2, 1) if mem_kb else None,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "aiokafka": version_of("aiokafka"),
        "uvicorn": version_of("uvicorn"),
        "starlette": version_of("starlette"),
        "orjson": version_of("orjson"),
        "uvloop": version_of("uvloop"),
        "httptools": version_of("httptools"),
        "sqlite": sqlite3.sqlite_version,
        "siemgate_commit": commit,
        "siemgate_uncommitted_changes": dirty,
        "load_generator": load,
        "wrk": wrk_version,
        "loadavg_at_start": os.getloadavg(),
    }


def work_dir_info(work: Path) -> dict[str, Any]:
    """Where the spool and the embedded log live: their fsyncs cost what this file system costs."""
    resolved = str(work.resolve())
    mount, fstype, device = "/", "unknown", "unknown"
    with contextlib.suppress(OSError), open("/proc/mounts") as f:
        for line in f:
            parts = line.split()
            if len(parts) < 3:
                continue
            point = parts[1]
            inside = resolved == point or resolved.startswith(point.rstrip("/") + "/")
            if inside and len(point) >= len(mount):
                mount, fstype, device = point, parts[2], parts[0]
    return {
        "path": resolved,
        "mount": mount,
        "filesystem": fstype,
        "device": device,
        "free_gib": round(shutil.disk_usage(work).free / 1024**3, 1),
    }


# ------------------------------------------------------------------------------------------
# Processes


def wait_ready(target_name: str, url: str, process: subprocess.Popen[bytes], log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{target_name} exited with {process.returncode} before it was ready:\n{tail(log_path)}")
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:
                if answer.status == 200:
                    return
                last = str(answer.status)
        except urllib.error.HTTPError as exc:
            last = str(exc.code)
        except (urllib.error.URLError, OSError) as exc:
            last = str(exc)
        time.sleep(0.1)
    raise RuntimeError(f"{target_name} not ready after {timeout:g} s ({url}: {last}):\n{tail(log_path)}")


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def stop(process: subprocess.Popen[Any], name: str, grace: float = 30) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        log(f"{name} did not stop within {grace:g} s of SIGTERM: killing it")
        process.kill()
        process.wait()


@contextlib.contextmanager
def ceiling_server(work: Path) -> Iterator[Target]:
    port = free_port()
    log_path = work / "ceiling.log"
    with open(log_path, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, str(BENCH_DIR / "ceiling.py"), "--host", "127.0.0.1", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=ROOT,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready("the ceiling server", base + "/readyz", process, log_path, 30)
        yield Target("ceiling", base, process.pid, log_path, process)
    finally:
        stop(process, "the ceiling server")


@contextlib.contextmanager
def kafka_broker(work: Path) -> Iterator[Broker]:
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        log(f"using the Kafka broker at {external} (KAFKA_BOOTSTRAP_SERVERS)")
        yield Broker(external, embedded=False)
        return
    broker = start_tansu(log_path=str(work / "tansu.log"))
    log(f"started Tansu at {broker.bootstrap_servers} (pid {broker.process.pid if broker.process else '?'})")
    try:
        yield broker
    finally:
        broker.stop()


def unreachable_kafka() -> str:
    """A loopback host:port where nothing listens (checked): Kafka as an outage looks to the ingest."""
    for _ in range(20):
        port = free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(1)
            try:
                sock.connect(("127.0.0.1", port))
            except ConnectionRefusedError:
                return f"127.0.0.1:{port}"
            except OSError:
                continue
    raise RuntimeError("found no free loopback port to stand for an unreachable Kafka")


@contextlib.contextmanager
def mode_bus(work: Path, mode: str) -> Iterator[BusEndpoint]:
    """The bus a mode's siemgate uses: a broker (kafka), a dead address (spool), or its own file."""
    if mode == "kafka":
        with kafka_broker(work) as broker:
            pid = broker.process.pid if broker.process else None
            yield BusEndpoint(mode, broker.bootstrap_servers, broker.idempotence, pid)
    elif mode == "spool":
        address = unreachable_kafka()
        log(f"spool mode: bootstrap_servers {address}, where nothing listens")
        yield BusEndpoint(mode, address)
    else:
        yield BusEndpoint(mode)


def spool_max_bytes(work: Path) -> int:
    return max(1024, int(shutil.disk_usage(work).free * SPOOL_DISK_SHARE))


def write_siemgate_config(work: Path, bus: BusEndpoint, port: int, data: Path,
                          limits: dict[str, int] | None = None) -> tuple[Path, dict[str, Any]]:
    config: dict[str, Any] = {
        "listen": {"host": "127.0.0.1", "port": port},
        "state_dir": str(data / "state"),
        "quarantine": {"path": str(data / "quarantine")},
        "log_level": "warning",
        "integrations": [
            {"name": "bench", "path": PATH, "auth": {"header": HEADER_NAME, "values": [HEADER_VALUE]}},
        ],
    }
    if limits:
        config["limits"] = limits
    if bus.mode == "embedded":
        config["bus"] = {"type": "embedded", "path": str(data / "siemgate.db")}
        # As deploy/examples/local.yaml: one file sink with its defaults (fsync per batch, rotation).
        config["sinks"] = [{"name": SINK_NAME, "type": "file", "path": str(data / "out" / "events.ndjson")}]
        # `siemgate run` serves the forwarders' metrics on `listen`; loopback should that change.
        config["forward"] = {"listen": {"host": "127.0.0.1", "port": free_port()}}
    else:
        assert bus.bootstrap_servers is not None
        spool: dict[str, Any] = {"path": str(data / "spool")}
        if bus.mode == "spool":
            spool["max_bytes"] = spool_max_bytes(work)
            spool["drain_timeout_seconds"] = 0  # Kafka never comes: no drain before exit
            log(f"spool mode: bus.spool.max_bytes {spool['max_bytes']:,} ({SPOOL_DISK_SHARE:.0%} of the free disk)")
        config["bus"] = {
            "type": "kafka",
            "spool": spool,
            "kafka": {"bootstrap_servers": bus.bootstrap_servers, "idempotence": bus.idempotence},
        }
    path = work / f"siemgate-{bus.mode}-{port}.yaml"
    # JSON is YAML.
    path.write_text(json.dumps(config, indent=2))
    return path, config


def siemgate_command() -> list[str]:
    if INGEST_COMMAND:
        return list(INGEST_COMMAND)
    script = Path(sys.executable).parent / "siemgate"
    return [str(script)] if script.exists() else [sys.executable, "-m", "siemgate"]


@contextlib.contextmanager
def siemgate_server(work: Path, bus: BusEndpoint, wrapper: list[str] | None = None,
                    limits: dict[str, int] | None = None) -> Iterator[Target]:
    """siemgate in `bus.mode` on a free loopback port, with a fresh data directory (removed after
    it stopped): `siemgate ingest -c CONFIG`, or `siemgate run -c CONFIG` in embedded mode.
    `wrapper` runs it under a profiler."""
    port = free_port()
    data = work / f"{bus.mode}-{port}"
    config_path, config = write_siemgate_config(work, bus, port, data, limits)
    log_path = work / f"siemgate-{bus.mode}-{port}.log"
    subcommand = "run" if bus.mode == "embedded" else "ingest"
    name = f"siemgate {subcommand} ({bus.mode} mode)"
    command = [*(wrapper or []), *siemgate_command(), subcommand, "-c", str(config_path)]
    with open(log_path, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=work)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(name, base + "/readyz", process, log_path, 90)
        yield Target(bus.mode, base, process.pid, log_path, process, data, config)
    finally:
        stop(process, name)
        if process.returncode not in (0, -signal.SIGTERM):
            log(f"{name} exited with {process.returncode}; its log ends with:\n{tail(log_path)}")
        shutil.rmtree(data, ignore_errors=True)  # the spool or log can be gigabytes


# ------------------------------------------------------------------------------------------
# siemgate's own metrics

_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
Samples = list[tuple[str, dict[str, str], float]]


def scrape(base_url: str) -> Samples | None:
    """Every sample of /metrics (None when unavailable)."""
    try:
        with urllib.request.urlopen(base_url + "/metrics", timeout=5) as answer:
            text = answer.read().decode()
    except (urllib.error.URLError, OSError):
        return None
    samples: Samples = []
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match and not line.startswith("#"):
            labels = dict(_LABEL.findall(match["labels"] or ""))
            with contextlib.suppress(ValueError):
                samples.append((match["name"], labels, float(match["value"])))
    return samples


def metric_total(samples: Samples | None, name: str, **labels: str) -> float | None:
    """Sum of a metric's samples whose labels include `labels` (None when it is not exported)."""
    if samples is None:
        return None
    values = [v for n, ls, v in samples if n == name and all(ls.get(k) == x for k, x in labels.items())]
    return sum(values) if values else None


def snapshot(target: Target) -> dict[str, float | None]:
    """The counters the benchmark reads from siemgate's /metrics (the ingest's, the spool's and, under
    `siemgate run`, the forwarders')."""
    samples = scrape(target.base_url)
    return {
        "ingest_events": metric_total(samples, "siemgate_ingest_events_total"),
        "spool_batches": metric_total(samples, "siemgate_spool_batches_total"),
        "spool_events": metric_total(samples, "siemgate_spool_events"),
        "spool_bytes": metric_total(samples, "siemgate_spool_bytes"),
        "spool_drained": metric_total(samples, "siemgate_spool_drained_events_total"),
        "spool_refused": metric_total(samples, "siemgate_spool_refusals_total"),
        "sink_delivered": metric_total(samples, "siemgate_forward_events_total", sink=SINK_NAME, outcome="delivered"),
        # delivered + duplicate + dead_lettered + filtered: every event the sink's forwarder is done with.
        "sink_done": metric_total(samples, "siemgate_forward_events_total", sink=SINK_NAME),
    }


def disk_bytes(directory: Path | None, pattern: str) -> int | None:
    """Bytes on disk of the files under `directory` matching `pattern` (with SQLite's -wal, -shm)."""
    if directory is None or not directory.exists():
        return None
    total = 0
    for path in directory.rglob(pattern):
        with contextlib.suppress(OSError):
            total += path.stat().st_size
    return total


def _sum(*parts: int | None) -> int | None:
    return None if any(p is None for p in parts) else sum(p for p in parts if p is not None)


def _delta(after: float | None, before: float | None) -> float | None:
    return None if after is None or before is None else after - before


# ------------------------------------------------------------------------------------------
# Load


def run_wrk(url: str, body: Path, connections: int, duration: float, threads: int,
            encoding: str | None = None) -> dict[str, Any]:
    env = dict(os.environ, BENCH_BODY=str(body), BENCH_HEADER_NAME=HEADER_NAME, BENCH_HEADER_VALUE=HEADER_VALUE,
               BENCH_CONTENT_ENCODING=encoding or "")
    command = [
        "wrk",
        f"-t{min(threads, connections)}",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        "--timeout",
        "30s",
        "-s",
        str(LUA_SCRIPT),
        url,
    ]
    before = children_cpu_seconds()
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=duration + 120)
    cpu = children_cpu_seconds() - before
    line = next((x for x in done.stdout.splitlines() if x.startswith("BENCH_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    data = json.loads(line.removeprefix("BENCH_JSON "))
    statuses = {int(k): v for k, v in data["statuses"].items()}
    errors = data["errors"]
    latency = data["latency_us"]
    return {
        "requests": data["requests"],
        "ok": statuses.get(200, 0),
        "statuses": statuses,
        "errors": errors["connect"] + errors["read"] + errors["write"] + errors["timeout"],
        "errors_by_kind": {k: v for k, v in errors.items() if k != "status" and v},
        "seconds": data["duration_us"] / 1e6,
        "latency_ms": {k: latency[k] / 1000 for k in ("p50", "p90", "p99", "p99.9", "max", "mean")},
        "load_cpu_seconds": cpu,
    }


def run_python_load(url: str, connections: int, duration: float) -> dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        "siemgate.simulate",
        "--url",
        url,
        "--header",
        f"{HEADER_NAME}: {HEADER_VALUE}",
        "--duration",
        str(duration),
        "--concurrency",
        str(connections),
        "--batch",
        str(EVENTS_PER_BATCH),
        "--seed",
        "1",
        "--json",
    ]
    before = children_cpu_seconds()
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=duration + 120)
    cpu = children_cpu_seconds() - before
    try:
        data = json.loads(done.stdout)
    except json.JSONDecodeError:
        raise RuntimeError(f"siemgate simulate failed ({done.returncode}):\n{done.stdout}\n{done.stderr}") from None
    statuses = {int(k): v for k, v in data["rejected_by_status"].items()}
    statuses[200] = data["batches_acked"]
    return {
        "requests": data["batches_sent"],
        "ok": data["batches_acked"],
        "statuses": statuses,
        "errors": data["connection_errors"],
        "errors_by_kind": data["errors_by_kind"],
        "seconds": data["elapsed_seconds"],
        "latency_ms": data["ack_latency_ms"],
        "load_cpu_seconds": cpu,
    }


def measure(
    target: Target,
    scenario: Scenario,
    args: argparse.Namespace,
    body: Path,
    body_bytes: int,
    extra_pids: dict[str, int],
    encoding: str | None = None,
) -> dict[str, Any]:
    run_load(target, scenario, args, body, args.warmup, encoding)
    before = snapshot(target)
    cpu_before = proc_cpu_seconds(target.pid)
    others_before = {name: proc_cpu_seconds(pid) for name, pid in extra_pids.items()}
    busy_before, total_before = machine_busy()
    result = run_load(target, scenario, args, body, args.duration, encoding)
    busy_after, total_after = machine_busy()
    cpu = proc_cpu_seconds(target.pid) - cpu_before
    others = {name: proc_cpu_seconds(pid) - others_before[name] for name, pid in extra_pids.items()}
    if target.process.poll() is not None:
        raise RuntimeError(f"{target.name} exited with {target.process.returncode} during the run:\n{tail(target.log)}")
    after = snapshot(target)

    seconds = result["seconds"]
    events = result["ok"] * EVENTS_PER_BATCH
    result.update(
        {
            "scenario": scenario.name,
            "target": target.name,
            "connections": scenario.connections,
            "events": events,
            "requests_per_second": result["requests"] / seconds,
            "events_per_second": events / seconds,
            "megabytes_per_second": result["requests"] * body_bytes / seconds / 1e6,
            "non_200": sum(v for k, v in result["statuses"].items() if k != 200),
            "target_cpu_seconds": cpu,
            "target_cpu_cores": cpu / seconds,
            "cpu_seconds_per_10k_events": cpu / events * 10_000 if events else None,
            "load_cpu_cores": result.pop("load_cpu_seconds") / seconds,
            "other_cpu_cores": {name: value / seconds for name, value in others.items()},
            "machine_cpu_busy": (busy_after - busy_before) / max(1, total_after - total_before),
        }
    )
    counted = _delta(after["ingest_events"], before["ingest_events"])
    if counted is not None:
        # Counted by siemgate's own metric; may exceed `events` by the batches wrk abandons
        # in flight at the end of the run.
        result["events_counted_by_siemgate"] = int(counted)
    if target.name in ("kafka", "spool"):
        result["spool"] = spool_report(target, before, after)
    if target.name == "embedded":
        result["sink"] = sink_report(target, before, after, seconds, scenario)
        # The next scenario starts with the sink caught up (its drain time is reported).
        result["sink"]["drain_seconds"] = wait_for_sink(target, args.sink_drain_timeout)
    return result


def spool_report(target: Target, before: dict[str, float | None], after: dict[str, float | None]) -> dict[str, Any]:
    """What the spool did during the measured run: in Kafka mode it should take nothing, in spool mode
    every batch (and none of it can reach Kafka)."""

    def count(value: float | None) -> int | None:
        return None if value is None else int(value)

    return {
        "batches_spooled": count(_delta(after["spool_batches"], before["spool_batches"])),
        "bytes_spooled": count(_delta(after["spool_bytes"], before["spool_bytes"])),
        "events_in_spool": count(after["spool_events"]),
        "bytes_in_spool": count(after["spool_bytes"]),
        "file_bytes": disk_bytes(target.data, "spool.db*"),
        "events_drained_to_kafka": count(after["spool_drained"]),
        "batches_refused": count(after["spool_refused"]),
        "max_bytes": ((target.config or {}).get("bus", {}).get("spool") or {}).get("max_bytes"),
    }


def sink_report(
    target: Target,
    before: dict[str, float | None],
    after: dict[str, float | None],
    seconds: float,
    scenario: Scenario,
) -> dict[str, Any]:
    """Whether the file sink kept up with the ingest, from the counters of the same process."""

    def backlog(state: dict[str, float | None]) -> int | None:
        acked, done = state["ingest_events"], state["sink_done"]
        return None if acked is None or done is None else int(acked - done)

    written = _delta(after["sink_delivered"], before["sink_delivered"])
    backlog_start, backlog_end = backlog(before), backlog(after)
    # Kept up: at the end, the sink is within the batches in flight (its own and the senders') of the ingest.
    slack = 2 * SINK_BATCH_EVENTS + scenario.connections * EVENTS_PER_BATCH
    return {
        "events_acked_total": None if after["ingest_events"] is None else int(after["ingest_events"]),
        "events_written_total": None if after["sink_delivered"] is None else int(after["sink_delivered"]),
        "events_done_total": None if after["sink_done"] is None else int(after["sink_done"]),
        "written_per_second": None if written is None else written / seconds,
        "backlog_at_start": backlog_start,
        "backlog_at_end": backlog_end,
        "kept_up": None if backlog_end is None else backlog_end <= slack,
        # The embedded log (segment files, and the SQLite index with its WAL and shared memory):
        # records are deleted once the sink passed them.
        "log_file_bytes": _sum(disk_bytes(target.data, "*.seg"), disk_bytes(target.data, "siemgate.db*")),
        "log_segment_bytes": disk_bytes(target.data, "*.seg"),
        "log_wal_bytes": disk_bytes(target.data, "siemgate.db-wal"),
    }


def wait_for_sink(target: Target, timeout: float) -> float | None:
    """Seconds until the sink has every acked event (None: not within `timeout`)."""
    started = time.monotonic()
    while True:
        state = snapshot(target)
        acked, done = state["ingest_events"], state["sink_done"]
        if acked is not None and done is not None and done >= acked:
            return time.monotonic() - started
        if target.process.poll() is not None:
            raise RuntimeError(f"siemgate exited with {target.process.returncode}:\n{tail(target.log)}")
        if time.monotonic() - started > timeout:
            log(f"the sink did not catch up within {timeout:g} s (acked {acked}, done {done})")
            return None
        time.sleep(0.2)


# ------------------------------------------------------------------------------------------
# Profiling


def profile_mode(
    work: Path, bus: BusEndpoint, args: argparse.Namespace, body: Path, stamp: str, results_dir: Path,
    encoding: str | None = None,
) -> dict[str, Any]:
    """Profile a fresh siemgate of `bus.mode` under `--profile-load` (its own run, after the measured ones)."""
    if args.profile_load == "sequential":
        scenario = Scenario("sequential", 1, "one sequential sender")
    else:
        scenario = Scenario(f"concurrent-{args.concurrency}", args.concurrency, f"{args.concurrency} senders")
    pyspy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if args.profiler == "pyinstrument":
        pyspy = None
    elif args.profiler == "py-spy" and not pyspy:
        raise RuntimeError("--profiler py-spy: py-spy is not installed (pip install py-spy)")
    duration = args.duration
    about = {"mode": bus.mode, "scenario": scenario.name}
    if pyspy:
        out = results_dir / f"ingest-profile-{stamp}.collapsed.txt"
        with siemgate_server(work, bus) as target:
            log(
                f"profiling siemgate ({bus.mode} mode, pid {target.pid}) with py-spy under {scenario.label}, "
                f"{duration:g} s"
            )
            run_load(target, scenario, args, body, args.warmup, encoding)
            sampler = subprocess.Popen(
                [
                    pyspy,
                    "record",
                    "--pid",
                    str(target.pid),
                    "--duration",
                    str(max(1, round(duration))),
                    "--rate",
                    str(args.profile_rate),
                    "--format",
                    "raw",
                    "--nolineno",
                    "--output",
                    str(out),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            try:
                result = run_load(target, scenario, args, body, duration, encoding)
                _, err = sampler.communicate(timeout=duration + 60)
            finally:
                stop(sampler, "py-spy")
            if sampler.returncode != 0 or not out.exists():
                raise RuntimeError(f"py-spy failed ({sampler.returncode}): {err.decode(errors='replace')}")
        if result.get("seconds"):
            result["events_per_second"] = result["ok"] * EVENTS_PER_BATCH / result["seconds"]
        summary = summarize_collapsed(out)
        summary.update({"tool": "py-spy", "file": display(out), "load": result, **about})
        return summary
    log("py-spy is not installed (pip install py-spy): profiling with pyinstrument instead")
    out = results_dir / f"ingest-profile-{stamp}.pyinstrument.txt"
    wrapper = [sys.executable, "-m", "pyinstrument", "-r", "text", "--show-all", "-o", str(out)]
    with siemgate_server(work, bus, wrapper=wrapper) as target:
        run_load(target, scenario, args, body, args.warmup)
        result = run_load(target, scenario, args, body, duration)
    return {"tool": "pyinstrument", "file": display(out), "load": result, **about}


def run_load(
    target: Target, scenario: Scenario, args: argparse.Namespace, body: Path, duration: float,
    encoding: str | None = None,
) -> dict[str, Any]:
    if duration <= 0:
        return {}
    if args.load == "wrk":
        return run_wrk(target.url, body, scenario.connections, duration, args.wrk_threads, encoding)
    if encoding is not None:
        raise RuntimeError("posting a gzip'd body takes wrk (apt-get install wrk)")
    return run_python_load(target.url, scenario.connections, duration)


_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*)\)$")


def _area(file: str) -> str:
    """A coarse owner for a source file: siemgate's module, a third-party package, or a stdlib module.

    py-spy names files relative to their sys.path entry (`aiokafka/codec.py`, `asyncio/runners.py`)."""
    path = file.replace("\\", "/")
    if "site-packages/" in path:
        path = path.split("site-packages/", 1)[1]
    if path.startswith("siemgate/") or "/siemgate/" in path:
        module = path.split("siemgate/", 1)[1].removesuffix(".py").replace("/", ".")
        return f"siemgate.{module}" if module not in ("", "__init__") else "siemgate"
    if path.startswith("<"):
        return "generated code (dataclass __init__ ...)"
    top = path.lstrip("/").split("/", 1)[0].removesuffix(".py")
    return f"stdlib:{top}" if top in sys.stdlib_module_names else top


def summarize_collapsed(path: Path, top: int = 25) -> dict[str, Any]:
    """Self and inclusive sample counts per function, and self samples per package/module."""
    self_counts: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    area_inclusive: dict[str, int] = defaultdict(int)
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        names = []
        for frame in frames:
            match = _FRAME.match(frame)
            if match:
                names.append((f"{match['func']} ({_short(match['file'])})", _area(match["file"])))
            else:
                names.append((frame, frame))
        # Thread/process frames (py-spy puts them first) are not functions.
        names = [n for n in names if not n[0].startswith(("process ", "thread "))]
        if not names:
            continue
        self_counts[names[-1][0]] += count
        areas[names[-1][1]] += count
        for name in {n[0] for n in names}:
            inclusive[name] += count
        for area in {n[1] for n in names}:
            area_inclusive[area] += count

    def pct(n: int) -> float:
        return round(100.0 * n / total, 1) if total else 0.0

    return {
        "samples": total,
        "top_self": [{"function": f, "samples": n, "percent": pct(n)} for f, n in self_counts.most_common(top)],
        # Inclusive time of siemgate's own functions (the entry point and CLI frames hold everything).
        "top_inclusive": [
            {"function": f, "samples": n, "percent": pct(n)}
            for f, n in inclusive.most_common()
            if "(siemgate/" in f and "(siemgate/cli.py)" not in f and "(siemgate/__main__.py)" not in f
        ][:top],
        "self_by_area": [{"area": a, "samples": n, "percent": pct(n)} for a, n in areas.most_common(top)],
        "inclusive_by_area": [
            {"area": a, "samples": n, "percent": pct(n)}
            for a, n in sorted(area_inclusive.items(), key=lambda kv: -kv[1])[:top]
        ],
    }


def display(path: Path) -> str:
    """A path relative to the checkout when it is inside it."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def _short(file: str) -> str:
    for marker in ("site-packages/", "/work/main/"):
        if marker in file:
            return file.split(marker, 1)[1]
    return file.rsplit("/lib/", 1)[-1]


# ------------------------------------------------------------------------------------------
# Report


def _fmt(value: float | None, spec: str, width: int, suffix: str = "") -> str:
    return f"{'-':>{width}}" if value is None else f"{format(value, spec) + suffix:>{width}}"


def format_table(results: dict[str, dict[str, dict[str, Any]]], scenarios: list[Scenario]) -> str:
    header = (
        f"{'scenario':<14} {'target':<9} {'req/s':>8} {'events/s':>10} {'MB/s':>7} {'p50 ms':>7} {'p90 ms':>7} "
        f"{'p99 ms':>7} {'p99.9':>7} {'max ms':>7} {'non200':>6} {'errors':>6} {'cores':>5} {'CPU-s/10k':>9} "
        f"{'load':>5} {'kafka':>5} {'busy':>5}"
    )
    lines = [header, "-" * len(header)]
    for scenario in scenarios:
        for name in ("ceiling", *MODES):
            row = results.get(name, {}).get(scenario.name)
            if row is None:
                continue
            lat = row["latency_ms"]
            broker = row["other_cpu_cores"].get("broker")
            lines.append(
                f"{scenario.name:<14} {name:<9} {row['requests_per_second']:>8,.0f} {row['events_per_second']:>10,.0f} "
                f"{row['megabytes_per_second']:>7,.0f} {lat['p50']:>7.2f} {lat['p90']:>7.2f} {lat['p99']:>7.2f} "
                f"{lat['p99.9']:>7.2f} {lat['max']:>7.1f} {row['non_200']:>6} {row['errors']:>6} "
                f"{row['target_cpu_cores']:>5.2f} {_fmt(row['cpu_seconds_per_10k_events'], '.3f', 9)} "
                f"{row['load_cpu_cores']:>5.2f} {_fmt(broker, '.2f', 5)} {row['machine_cpu_busy']:>5.0%}"
            )
    lines.append(
        "cores: CPU of the target process (in cores; in embedded mode the forwarder's too); CPU-s/10k: its "
        "CPU-seconds per 10,000 events acked; load: the load generator's; kafka: the broker's; busy: the whole "
        "machine's"
    )
    return "\n".join(lines)


def format_ratios(
    results: dict[str, dict[str, dict[str, Any]]],
    scenarios: list[Scenario],
    ceiling_ratios: dict[str, dict[str, dict[str, float] | None]],
    kafka_ratios: dict[str, dict[str, dict[str, Any]]],
) -> str:
    header = (
        f"{'scenario':<14} {'mode':<9} {'p50 ms':>7} {'p99 ms':>7} {'events/s':>10} {'ev/s÷ceil':>9} "
        f"{'p50÷ceil':>8} {'p99÷ceil':>8} {'p99÷kafka':>9}  p99 <= {P99_VS_KAFKA_MAX:g}x kafka"
    )
    lines = [header, "-" * len(header)]
    for scenario in scenarios:
        for mode in MODES:
            row = results.get(mode, {}).get(scenario.name)
            if row is None:
                continue
            vs_ceiling = ceiling_ratios.get(scenario.name, {}).get(mode) or {}
            vs_kafka = kafka_ratios.get(scenario.name, {}).get(mode)
            verdict = "-" if vs_kafka is None else ("met" if vs_kafka["met"] else "NOT MET")
            lat = row["latency_ms"]
            lines.append(
                f"{scenario.name:<14} {mode:<9} {lat['p50']:>7.2f} {lat['p99']:>7.2f} "
                f"{row['events_per_second']:>10,.0f} "
                f"{_fmt(vs_ceiling.get('events_per_second'), '.1%', 9)} {_fmt(vs_ceiling.get('p50'), '.1f', 8, 'x')} "
                f"{_fmt(vs_ceiling.get('p99'), '.1f', 8, 'x')} "
                f"{_fmt(None if vs_kafka is None else vs_kafka['ratio'], '.2f', 9, 'x')}  {verdict}"
            )
    lines.append("÷ceil: siemgate's figure over the ceiling's under the same load; ÷kafka: over the Kafka mode's")
    return "\n".join(lines)


def format_details(results: dict[str, dict[str, dict[str, Any]]], scenarios: list[Scenario]) -> str:
    """What the spool (kafka and spool mode) and the file sink (embedded mode) did in each run."""
    lines = []
    for mode in MODES:
        for scenario in scenarios:
            row = results.get(mode, {}).get(scenario.name)
            if row is None:
                continue
            prefix = f"{scenario.name:<14} {mode:<9} "
            spool, sink = row.get("spool"), row.get("sink")
            if spool and mode == "kafka":
                spooled = spool["batches_spooled"]
                lines.append(
                    f"{prefix}batches spooled during the run: {_count(spooled)}"
                    + {
                        0: " (Kafka acknowledged every batch within the ack deadline)",
                        None: " (no spool metrics on /metrics)",
                    }.get(spooled, " (Kafka missed the ack deadline: these figures include answers from the spool)")
                )
            elif spool:
                lines.append(
                    f"{prefix}answered by the spool: {_count(spool['batches_spooled'])} batches spooled for "
                    f"{row['ok']:,} acked; {_count(spool['events_drained_to_kafka'])} events drained to Kafka, "
                    f"{_count(spool['batches_refused'])} batches refused; {_count(spool['bytes_spooled'])} bytes "
                    f"spooled during the run; the spool now holds {_count(spool['events_in_spool'])} events, "
                    f"{_count(spool['bytes_in_spool'])} bytes ({_count(spool['file_bytes'])} bytes of files) of "
                    f"max_bytes {_count(spool['max_bytes'])}"
                )
            elif sink:
                kept = {True: "kept up", False: "did NOT keep up", None: "unknown"}[sink["kept_up"]]
                drain = sink["drain_seconds"]
                lines.append(
                    f"{prefix}file sink {kept}: {_count(sink['events_written_total'])} of "
                    f"{_count(sink['events_acked_total'])} acked events written at the end of the run (backlog "
                    f"{_count(sink['backlog_at_end'])}, {_count(sink['backlog_at_start'])} at its start); "
                    f"{_count(sink['written_per_second'])} events/s written during it; backlog "
                    + ("not drained" if drain is None else f"drained {drain:.1f} s after the load stopped")
                    + f"; embedded log files {_count(sink['log_file_bytes'])} bytes, of which segments "
                    f"{_count(sink.get('log_segment_bytes'))}, index WAL {_count(sink['log_wal_bytes'])}"
                )
    return "\n".join(lines)


def _count(value: float | None) -> str:
    return "?" if value is None else f"{value:,.0f}"


def ratios(ceiling: dict[str, Any] | None, siemgate: dict[str, Any] | None) -> dict[str, float] | None:
    if not ceiling or not siemgate or not ceiling["events_per_second"]:
        return None
    out = {"events_per_second": siemgate["events_per_second"] / ceiling["events_per_second"]}
    for key in ("p50", "p90", "p99", "p99.9"):
        base = ceiling["latency_ms"][key]
        if base:
            out[key] = siemgate["latency_ms"][key] / base
    return out


def p99_vs_kafka(kafka: dict[str, Any] | None, row: dict[str, Any] | None) -> dict[str, Any] | None:
    if not kafka or not row or not kafka["latency_ms"]["p99"]:
        return None
    ratio = row["latency_ms"]["p99"] / kafka["latency_ms"]["p99"]
    return {"ratio": ratio, "max_ratio": P99_VS_KAFKA_MAX, "met": ratio <= P99_VS_KAFKA_MAX}


def check_targets(
    results: dict[str, dict[str, dict[str, Any]]], kafka_ratios: dict[str, dict[str, dict[str, Any]]]
) -> dict[str, Any]:
    checks: dict[str, Any] = {}
    seq = results.get("kafka", {}).get("sequential")
    if seq:
        p50, p99 = seq["latency_ms"]["p50"], seq["latency_ms"]["p99"]
        checks["sequential_p50_le_5ms"] = {"value": p50, "unit": "ms", "met": p50 <= TARGETS["sequential"]["p50_ms"]}
        checks["sequential_p99_le_10ms"] = {"value": p99, "unit": "ms", "met": p99 <= TARGETS["sequential"]["p99_ms"]}
    conc = results.get("kafka", {}).get("concurrent-8")
    if conc:
        eps = conc["events_per_second"]
        checks["concurrent8_ge_100k_events_per_s"] = {
            "value": eps,
            "unit": "events/s",
            "met": eps >= TARGETS["concurrent-8"]["events_per_second"],
        }
    for scenario, by_mode in kafka_ratios.items():
        for mode, vs in by_mode.items():
            checks[f"{mode}_{scenario}_p99_le_{P99_VS_KAFKA_MAX:g}x_kafka"] = {
                "value": vs["ratio"],
                "unit": "x",
                "met": vs["met"],
            }
    rows = [row for mode in MODES for row in results.get(mode, {}).values()]
    lost = sum(row["non_200"] + row["errors"] for row in rows)
    checks["no_non_200_answers"] = {"value": lost, "unit": "", "met": lost == 0}
    # Not a target but the premise of spool mode: the spool took every batch and none reached Kafka.
    spooled = [row["spool"] for row in results.get("spool", {}).values()]
    if spooled:
        ok = sum(row["ok"] for row in results["spool"].values())
        checks["spool_mode_answered_by_the_spool"] = {
            "value": sum(s["batches_spooled"] or 0 for s in spooled),
            "unit": "batches",
            "met": all(
                (s["batches_spooled"] or 0) >= row["ok"] and s["events_drained_to_kafka"] == 0
                for s, row in zip(spooled, results["spool"].values(), strict=True)
            )
            and ok > 0,
        }
    return checks


def format_profile(profile: dict[str, Any], top: int = 15) -> str:
    about = f"{profile.get('mode', 'kafka')} mode, {profile.get('scenario', '')}"
    if "top_self" not in profile:
        return f"profile ({profile['tool']}, {about}): {profile['file']}"
    lines = [
        f"profile ({profile['tool']}, {about}, {profile['samples']} samples): {profile['file']}",
        "  self time by area:",
    ]
    lines += [f"    {r['percent']:5.1f}%  {r['area']}" for r in profile["self_by_area"][:top]]
    lines.append("  top functions by self time:")
    lines += [f"    {r['percent']:5.1f}%  {r['function']}" for r in profile["top_self"][:top]]
    lines.append("  siemgate functions by inclusive time:")
    lines += [f"    {r['percent']:5.1f}%  {r['function']}" for r in profile["top_inclusive"][:top]]
    return "\n".join(lines)


def format_check(name: str, check: dict[str, Any]) -> str:
    value, unit = check["value"], check.get("unit", "")
    shown = f"{value:,.2f}{unit}" if unit == "x" else f"{value:,.2f} {unit}".rstrip()
    return f"  target {name:<40} {'MET' if check['met'] else 'NOT MET':<8} ({shown})"


# ------------------------------------------------------------------------------------------
# Payload shapes (--shapes): the same loads on every shape of body a sender posts


# Bodies (decoded) up to this size take the small-batch targets; larger ones the large-body targets.
LARGE_BODY_BYTES = 1_500_000
SHAPE_TARGETS: dict[str, Any] = {
    "up_to_1mb": {"sequential_p99_ms": 10.0, "concurrent_events_per_second": 100_000},
    "large": {"sequential_p99_ms": 40.0, "concurrent_body_megabytes_per_second": 100.0},
}
SHAPE_NAMES = ("simulator", "escaped", "camelcase", "tiny", "large")


@dataclass(frozen=True)
class Shape:
    name: str  # e.g. "escaped" or "escaped+gzip"
    body: bytes  # as sent
    decoded_bytes: int
    encoding: str | None

    @property
    def large(self) -> bool:
        return self.decoded_bytes > LARGE_BODY_BYTES


def payload_shapes(seed: int, names: list[str]) -> list[Shape]:
    """bench/parse_shapes.py's ingest shapes, each also gzip'd (level 6, what senders' libraries default to)."""
    sys.path.insert(0, str(BENCH_DIR))
    from parse_shapes import ingest_shapes

    shapes = []
    for name, body in ingest_shapes(seed).items():
        if name in names:
            shapes.append(Shape(name, body, len(body), None))
            shapes.append(Shape(f"{name}+gzip", gzip.compress(body, 6), len(body), "gzip"))
    return shapes


def shape_checks(shape: Shape, rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The issue 17 targets for one shape, from siemgate's rows (sequential, concurrent)."""
    seq, conc = rows.get("sequential"), next((r for k, r in rows.items() if k.startswith("concurrent")), None)
    checks: dict[str, Any] = {}
    targets = SHAPE_TARGETS["large" if shape.large else "up_to_1mb"]
    if seq:
        p99 = seq["latency_ms"]["p99"]
        checks["sequential_p99"] = {"value": p99, "unit": "ms", "limit": targets["sequential_p99_ms"],
                                    "met": p99 <= targets["sequential_p99_ms"]}
    if conc:
        if shape.large:
            mbps = conc["requests_per_second"] * shape.decoded_bytes / 1e6
            limit = targets["concurrent_body_megabytes_per_second"]
            checks["concurrent_body_mb_per_s"] = {"value": mbps, "unit": "MB/s", "limit": limit, "met": mbps >= limit}
        else:
            eps = conc["events_per_second"]
            limit = targets["concurrent_events_per_second"]
            checks["concurrent_events_per_s"] = {"value": eps, "unit": "events/s", "limit": limit, "met": eps >= limit}
    lost = sum(r["non_200"] + r["errors"] for r in rows.values())
    checks["no_non_200_answers"] = {"value": lost, "unit": "", "met": lost == 0}
    return checks


def format_shapes(shapes: list[Shape], results: dict[str, dict[str, dict[str, Any]]],
                  scenarios: list[Scenario], mode: str) -> str:
    seq, conc = scenarios[0].name, scenarios[1].name
    header = (f"{'shape':<16} {'KB sent':>8} {'KB body':>8} | {'ceil p50':>8} {'ceil p99':>8} {'p50 ms':>7} "
              f"{'p99 ms':>7} | {'ceil ev/s':>10} {'events/s':>10} {'÷ceil':>6} {'MB/s':>6} {'body MB/s':>9} | targets")
    lines = [f"siemgate: {MODE_LABELS[mode]}; {seq}: one sequential sender; {conc}: {scenarios[1].label}",
             header, "-" * len(header)]
    for shape in shapes:
        by_target = results.get(shape.name, {})
        ceiling, ours = by_target.get("ceiling", {}), by_target.get(mode, {})

        def lat(rows: dict[str, Any], key: str) -> float | None:
            row = rows.get(seq)
            return None if row is None else float(row["latency_ms"][key])

        c_conc, o_conc = ceiling.get(conc), ours.get(conc)
        c_eps = None if c_conc is None else c_conc["events_per_second"]
        o_eps = None if o_conc is None else o_conc["events_per_second"]
        sent_mbps = None if o_conc is None else o_conc["megabytes_per_second"]
        body_mbps = None if o_conc is None else o_conc["requests_per_second"] * shape.decoded_bytes / 1e6
        checks = shape_checks(shape, ours) if ours else {}
        verdict = ", ".join(f"{name} {'met' if c['met'] else 'NOT MET'}" for name, c in checks.items()
                            if name != "no_non_200_answers")
        if checks and not checks["no_non_200_answers"]["met"]:
            verdict += f", {checks['no_non_200_answers']['value']:.0f} non-200/errors"
        lines.append(
            f"{shape.name:<16} {len(shape.body) / 1024:>8,.0f} {shape.decoded_bytes / 1024:>8,.0f} | "
            f"{_fmt(lat(ceiling, 'p50'), '.2f', 8)} {_fmt(lat(ceiling, 'p99'), '.2f', 8)} "
            f"{_fmt(lat(ours, 'p50'), '.2f', 7)} {_fmt(lat(ours, 'p99'), '.2f', 7)} | "
            f"{_fmt(c_eps, ',.0f', 10)} {_fmt(o_eps, ',.0f', 10)} "
            f"{_fmt(None if not c_eps or o_eps is None else o_eps / c_eps, '.0%', 6)} "
            f"{_fmt(sent_mbps, ',.0f', 6)} {_fmt(body_mbps, ',.0f', 9)} | {verdict or '-'}"
        )
    lines.append(f"targets: body <= {LARGE_BODY_BYTES / 1e6:g} MB: sequential p99 <= 10 ms, {conc} >= 100,000 "
                 "events/s; larger: sequential p99 <= 40 ms, >= 100 MB/s of body (decoded). MB/s: as sent "
                 "(gzip'd for +gzip); the ceiling reads the body as sent and does not gunzip it")
    return "\n".join(lines)


def run_shapes(args: argparse.Namespace, stamp: str, results_dir: Path, machine: dict[str, Any]) -> int:
    if args.load != "wrk":
        raise SystemExit("--shapes posts prebuilt bodies (some gzip'd): it takes wrk (apt-get install wrk)")
    mode = args.modes[0]
    scenarios = [
        Scenario("sequential", 1, "one sequential sender"),
        Scenario(f"concurrent-{args.concurrency}", args.concurrency, f"{args.concurrency} concurrent senders"),
    ]
    shapes = payload_shapes(args.seed, args.shape)
    results: dict[str, dict[str, dict[str, Any]]] = {}
    profile: dict[str, Any] | None = None
    with tempfile.TemporaryDirectory(prefix="siemgate-bench-") as tmp, keep_logs(Path(tmp), args.keep_logs):
        work = Path(tmp)
        machine["work_dir"] = work_dir_info(work)
        paths = {}
        for shape in shapes:
            paths[shape.name] = work / f"{shape.name}.body"
            paths[shape.name].write_bytes(shape.body)
            log(f"shape {shape.name}: {len(shape.body):,} bytes sent, {shape.decoded_bytes:,} decoded, "
                f"{EVENTS_PER_BATCH} events")
        def measure_all(name: str, target: Target, extra: dict[str, int]) -> None:
            for shape in shapes:
                for scenario in scenarios:
                    log(f"{name}, {shape.name}, {scenario.label} ...")
                    results.setdefault(shape.name, {}).setdefault(name, {})[scenario.name] = measure(
                        target, scenario, args, paths[shape.name], len(shape.body), extra, shape.encoding)

        if args.only in (None, "ceiling"):
            with ceiling_server(work) as target:
                measure_all("ceiling", target, {})
        if args.only in (None, "siemgate"):
            with mode_bus(work, mode) as bus:
                with siemgate_server(work, bus) as target:
                    measure_all(mode, target, {"broker": bus.broker_pid} if bus.broker_pid else {})
                if args.profile_shape:
                    (shape,) = [s for s in shapes if s.name == args.profile_shape]
                    log(f"profiling shape {shape.name}")
                    profile = profile_mode(work, bus, args, paths[shape.name], stamp, results_dir, shape.encoding)
                    profile["shape"] = shape.name
    checks = {s.name: shape_checks(s, results[s.name][mode]) for s in shapes if mode in results.get(s.name, {})}
    document = {
        "benchmark": "ingest-shapes",
        "timestamp": stamp,
        "command": " ".join([Path(sys.executable).name, "bench/ingest.py", *sys.argv[1:]]),
        "machine": machine,
        "settings": {
            "duration_seconds": args.duration, "warmup_seconds": args.warmup, "load": args.load,
            "wrk_threads": args.wrk_threads, "events_per_batch": EVENTS_PER_BATCH, "mode": MODE_LABELS[mode],
            "shapes": {s.name: {"bytes_sent": len(s.body), "bytes_decoded": s.decoded_bytes,
                                "content_encoding": s.encoding} for s in shapes},
            "kafka": os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or "tansu (in memory, single node)",
            "ingest_command": " ".join(siemgate_command()),
        },
        "targets": SHAPE_TARGETS,
        # results[shape][target][scenario]: target is "ceiling" or the mode.
        "results": results,
        "checks": checks,
        "profile": profile,
    }
    text = json.dumps(document, indent=2, default=str)
    (results_dir / f"ingest-shapes-{stamp}.json").write_text(text + "\n")
    (results_dir / "ingest-shapes-latest.json").write_text(text + "\n")
    print()
    print(f"siemgate ingest benchmark, payload shapes, {stamp}: {machine['nproc']} CPUs ({machine['cpu_model']}), "
          f"Python {machine['python']}, load: wrk; {args.duration:g} s per load after {args.warmup:g} s warm-up; "
          f"{EVENTS_PER_BATCH} events per batch; latency is per batch")
    print(format_shapes(shapes, results, scenarios, mode))
    if profile:
        print()
        print(format_profile(profile))
    log(f"results written to {display(results_dir / f'ingest-shapes-{stamp}.json')} and ingest-shapes-latest.json")
    return 0


# ------------------------------------------------------------------------------------------
# Memory (--memory): peak RSS with concurrent maximum-size bodies, against the chart's limit


CHART_VALUES = ROOT / "helm" / "siemgate" / "values.yaml"
_QUANTITY_UNITS = {"": 1, "k": 1000, "M": 1000**2, "G": 1000**3, "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3}


def quantity(text: str | int) -> int:
    match = re.fullmatch(r"([0-9.]+)([kMG]i?|Ki)?", str(text))
    if not match:
        raise ValueError(f"not a quantity of bytes: {text!r}")
    return int(float(match[1]) * _QUANTITY_UNITS[match[2] or ""])


def chart_memory() -> dict[str, int]:
    """The chart's defaults that bound the ingest's memory: its container's limit, the budget derived
    from it (ingest.memoryBudgetPercent) and config.limits.max_body_bytes."""
    import yaml

    values = yaml.safe_load(CHART_VALUES.read_text())
    limit = quantity(values["ingest"]["resources"]["limits"]["memory"])
    return {"memory_limit_bytes": limit,
            "memory_budget_bytes": limit * int(values["ingest"]["memoryBudgetPercent"]) // 100,
            "max_body_bytes": int(values["config"]["limits"]["max_body_bytes"])}


def max_size_body(max_body: int, event_bytes: int = 8000) -> bytes:
    """Events of ~8 KB (json.dumps attack samples) up to `max_body` bytes."""
    sys.path.insert(0, str(BENCH_DIR))
    import random

    from parse_shapes import _long_attack

    rng = random.Random(7)
    parts: list[bytes] = []
    size = 2
    while True:
        part = json.dumps(_long_attack(rng, len(parts), event_bytes)).encode()
        if size + len(part) + 1 > max_body:
            break
        parts.append(part)
        size += len(part) + 1
    return b"[" + b",".join(parts) + b"]"


def rss_bytes(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (the peak since the process started), in bytes."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1]) * 1024
    return out


def post_once(url: str, body: bytes, timeout: float) -> int:
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json", HEADER_NAME: HEADER_VALUE})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            answer.read()
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError) as exc:
        log(f"a sender failed: {exc}")
        return -1


def run_memory(args: argparse.Namespace, stamp: str, results_dir: Path, machine: dict[str, Any]) -> int:
    import threading

    chart = chart_memory()
    max_body = args.memory_max_body or chart["max_body_bytes"]
    budget = args.memory_budget or chart["memory_budget_bytes"]
    mode = args.modes[0]
    body = max_size_body(max_body)
    limits = {"max_body_bytes": max_body, "memory_budget_bytes": budget}
    log(f"memory: {args.memory_senders} concurrent bodies of {len(body):,} bytes (max_body_bytes {max_body:,}), "
        f"memory_budget_bytes {budget:,}; the chart's memory limit {chart['memory_limit_bytes']:,}; mode {mode}")
    statuses: list[int] = []
    samples: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="siemgate-bench-") as tmp, keep_logs(Path(tmp), args.keep_logs):
        work = Path(tmp)
        with mode_bus(work, mode) as bus, siemgate_server(work, bus, limits=limits) as target:
            # One batch first, so that what a served batch leaves (imports, caches, the bus's
            # buffers) is in the baseline.
            assert post_once(target.url, max_size_body(64 * 1024), 60) == 200
            baseline = rss_bytes(target.pid)["VmRSS"]
            lock = threading.Lock()

            def send() -> None:
                status = post_once(target.url, body, args.memory_timeout)
                with lock:
                    statuses.append(status)

            senders = [threading.Thread(target=send) for _ in range(args.memory_senders)]
            started = time.monotonic()
            for sender in senders:
                sender.start()
            while any(s.is_alive() for s in senders):
                state = scrape(target.base_url)
                samples.append({
                    "seconds": time.monotonic() - started,
                    "rss": rss_bytes(target.pid)["VmRSS"],
                    "in_flight": metric_total(state, "siemgate_ingest_body_bytes_in_flight") or 0,
                    "waiters": metric_total(state, "siemgate_ingest_body_budget_waiters") or 0,
                })
                time.sleep(0.05)
            for sender in senders:
                sender.join()
            elapsed = time.monotonic() - started
            peak = rss_bytes(target.pid)["VmHWM"]
    ok = statuses.count(200)
    report = {
        "senders": args.memory_senders, "body_bytes": len(body), "max_body_bytes": max_body,
        "memory_budget_bytes": budget, "chart_memory_limit_bytes": chart["memory_limit_bytes"],
        "baseline_rss_bytes": baseline, "peak_rss_bytes": peak, "answered_200": ok,
        "statuses": dict(Counter(statuses)), "seconds": elapsed,
        "max_in_flight_bytes": max((s["in_flight"] for s in samples), default=0),
        "max_waiters": max((s["waiters"] for s in samples), default=0),
        "peak_vs_limit": peak / chart["memory_limit_bytes"],
        "met": peak < chart["memory_limit_bytes"] and ok == args.memory_senders,
    }
    document = {"benchmark": "ingest-memory", "timestamp": stamp,
                "command": " ".join([Path(sys.executable).name, "bench/ingest.py", *sys.argv[1:]]),
                "machine": machine, "mode": MODE_LABELS[mode], "result": report, "samples": samples}
    text = json.dumps(document, indent=2, default=str)
    (results_dir / f"ingest-memory-{stamp}.json").write_text(text + "\n")
    (results_dir / "ingest-memory-latest.json").write_text(text + "\n")
    mib = 1024 * 1024
    print()
    print(f"siemgate ingest memory, {stamp}: {MODE_LABELS[mode]}")
    print(f"  {args.memory_senders} concurrent bodies of {len(body) / mib:.1f} MiB: {ok} answered 200 "
          f"({dict(Counter(statuses))}) in {elapsed:.1f} s")
    print(f"  RSS: {baseline / mib:.0f} MiB before, peak {peak / mib:.0f} MiB; the chart's limit "
          f"{chart['memory_limit_bytes'] / mib:.0f} MiB ({report['peak_vs_limit']:.0%} of it); memory budget "
          f"{budget / mib:.0f} MiB, at most {report['max_in_flight_bytes'] / mib:.0f} MiB taken, up to "
          f"{report['max_waiters']:.0f} requests waiting")
    verdict = "MET" if report["met"] else "NOT MET"
    print(f"  target: peak RSS under the chart's limit, every body answered 200: {verdict}")
    log(f"results written to {display(results_dir / f'ingest-memory-{stamp}.json')} and ingest-memory-latest.json")
    return 0


# ------------------------------------------------------------------------------------------


def parse_modes(text: str) -> list[str]:
    modes = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        raise argparse.ArgumentTypeError(f"modes are a comma-separated subset of {','.join(MODES)}")
    return [m for m in MODES if m in modes]  # in the order they run


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=20.0, help="seconds measured per scenario (default 20)")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of warm-up load per scenario (default 3)")
    parser.add_argument(
        "--load",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="load generator: wrk (default when installed) or the Python simulator",
    )
    parser.add_argument("--wrk-threads", type=int, default=1, help="wrk threads (default 1)")
    parser.add_argument("--concurrency", type=int, default=8, help="senders of the concurrent scenario (default 8)")
    parser.add_argument(
        "--modes",
        type=parse_modes,
        default=None,
        metavar="M[,M...]",
        help="siemgate modes to measure: kafka (`siemgate ingest` on Kafka), spool (`siemgate ingest`, Kafka "
        "unreachable), embedded (`siemgate run`, embedded bus + file sink); default all three (--shapes: "
        "kafka, --memory: embedded; both take the first mode given)",
    )
    parser.add_argument("--shapes", action="store_true",
                        help="instead: every payload shape (bench/parse_shapes.py's ingest_shapes, each also "
                        "gzip'd), one sequential sender and --concurrency senders each, beside the ceiling")
    parser.add_argument("--shape", type=lambda text: [n.strip() for n in text.split(",") if n.strip()],
                        default=list(SHAPE_NAMES), metavar="S[,S...]",
                        help=f"--shapes: a subset of {','.join(SHAPE_NAMES)}")
    parser.add_argument("--profile-shape", metavar="SHAPE",
                        help="--shapes: also profile siemgate with py-spy on this shape (e.g. escaped, or "
                        "escaped+gzip), under --profile-load")
    parser.add_argument("--memory", action="store_true",
                        help="instead: the ingest's peak RSS with --memory-senders concurrent maximum-size bodies, "
                        "against the chart's memory limit (helm/siemgate/values.yaml)")
    parser.add_argument("--memory-senders", type=int, default=32, help="--memory: concurrent bodies (default 32)")
    parser.add_argument("--memory-max-body", type=int, metavar="BYTES",
                        help="--memory: limits.max_body_bytes and the body size (default: the chart's)")
    parser.add_argument("--memory-budget", type=int, metavar="BYTES",
                        help="--memory: limits.memory_budget_bytes (default: what the chart derives from its limit)")
    parser.add_argument("--memory-timeout", type=float, default=300.0,
                        help="--memory: seconds each sender waits for its answer (default 300)")
    parser.add_argument("--only", choices=("ceiling", "siemgate"), help="measure the ceiling, or siemgate, only")
    parser.add_argument(
        "--sink-drain-timeout",
        type=float,
        default=300.0,
        metavar="S",
        help="embedded mode: how long to wait, after each load, for the file sink to catch up (default 300)",
    )
    parser.add_argument("--profile", action="store_true", help="also profile siemgate (see --profile-mode/-load)")
    parser.add_argument(
        "--profile-mode", choices=MODES, default="kafka", help="the mode --profile profiles (default kafka)"
    )
    parser.add_argument(
        "--profile-load",
        choices=("sequential", "concurrent"),
        default="concurrent",
        help="the load under which --profile samples (default concurrent: --concurrency senders)",
    )
    parser.add_argument(
        "--profiler",
        choices=("auto", "py-spy", "pyinstrument"),
        default="auto",
        help="py-spy (attaches to the running siemgate; default when installed) or pyinstrument (runs a second "
        "siemgate under it)",
    )
    parser.add_argument("--profile-rate", type=int, default=250, help="py-spy samples per second (default 250)")
    parser.add_argument(
        "--ingest-command",
        metavar="CMD",
        help="the command that runs siemgate, split on spaces (default: this venv's siemgate); "
        "'ingest -c CONFIG' (or, in embedded mode, 'run -c CONFIG') is appended",
    )
    parser.add_argument("--keep-logs", type=Path, metavar="DIR", help="copy the servers' logs into DIR at the end")
    parser.add_argument("--results-dir", type=Path, default=BENCH_DIR / "results")
    parser.add_argument("--seed", type=int, default=1, help="seed of the batch body's contents")
    args = parser.parse_args(argv)
    if args.shapes and args.memory:
        parser.error("--shapes and --memory are separate runs")
    unknown = [n for n in args.shape if n not in SHAPE_NAMES]
    if unknown:
        parser.error(f"--shape: unknown {','.join(unknown)} (shapes: {','.join(SHAPE_NAMES)})")
    if args.profile_shape and (not args.shapes or args.profile_shape.removesuffix("+gzip") not in args.shape):
        parser.error("--profile-shape: give --shapes and one of the shapes measured (NAME or NAME+gzip)")
    if args.modes is None:
        args.modes = ["kafka"] if args.shapes else ["embedded"] if args.memory else list(MODES)
    if args.profile and (args.only == "ceiling" or args.profile_mode not in args.modes):
        parser.error(f"--profile: --profile-mode {args.profile_mode} is not among the modes measured")
    if args.ingest_command:
        INGEST_COMMAND[:] = args.ingest_command.split()
    if args.load == "auto":
        args.load = "wrk" if shutil.which("wrk") else "python"
        if args.load == "python":
            log(
                "wrk is not installed (apt-get install wrk): falling back to the Python simulator as load, "
                "which costs ~0.75 core itself and may be the bottleneck"
            )
    elif args.load == "wrk" and not shutil.which("wrk"):
        parser.error("--load wrk: wrk is not installed (apt-get install wrk)")
    return args


@contextlib.contextmanager
def keep_logs(work: Path, destination: Path | None) -> Iterator[None]:
    try:
        yield
    finally:
        if destination is not None:
            destination.mkdir(parents=True, exist_ok=True)
            for path in work.glob("*.log"):
                shutil.copy(path, destination / path.name)
            log(f"logs copied to {destination}")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so that every process started is stopped.
    signal.signal(signal.SIGTERM, _interrupt)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    results_dir: Path = args.results_dir
    results_dir.mkdir(parents=True, exist_ok=True)
    if args.shapes:
        return run_shapes(args, stamp, results_dir, machine_info(args.load))
    if args.memory:
        return run_memory(args, stamp, results_dir, machine_info(args.load))
    scenarios = [
        Scenario("sequential", 1, "one sequential sender"),
        Scenario(f"concurrent-{args.concurrency}", args.concurrency, f"{args.concurrency} concurrent senders"),
    ]
    modes: list[str] = args.modes if args.only in (None, "siemgate") else []
    machine = machine_info(args.load)
    results: dict[str, dict[str, dict[str, Any]]] = {}
    profile: dict[str, Any] | None = None
    with tempfile.TemporaryDirectory(prefix="siemgate-bench-") as tmp, keep_logs(Path(tmp), args.keep_logs):
        work = Path(tmp)
        machine["work_dir"] = work_dir_info(work)
        body = work / "body.json"
        body.write_bytes(make_batch_body(make_events(EVENTS_PER_BATCH, "high=1,medium=3,low=6", args.seed)))
        body_bytes = body.stat().st_size
        log(
            f"body: {EVENTS_PER_BATCH} events, {body_bytes:,} bytes; load: {args.load}; "
            f"{args.duration:g} s per scenario after {args.warmup:g} s warm-up; modes: {', '.join(modes) or 'none'}"
        )
        if args.only in (None, "ceiling"):
            with ceiling_server(work) as target:
                for scenario in scenarios:
                    log(f"ceiling, {scenario.label} ...")
                    results.setdefault("ceiling", {})[scenario.name] = measure(
                        target, scenario, args, body, body_bytes, {}
                    )
        for mode in modes:
            with mode_bus(work, mode) as bus:
                extra = {"broker": bus.broker_pid} if bus.broker_pid else {}
                with siemgate_server(work, bus) as target:
                    for scenario in scenarios:
                        log(f"siemgate, {mode} mode, {scenario.label} ...")
                        results.setdefault(mode, {})[scenario.name] = measure(
                            target, scenario, args, body, body_bytes, extra
                        )
                if args.profile and mode == args.profile_mode:
                    profile = profile_mode(work, bus, args, body, stamp, results_dir)

    ceiling_ratios = {
        s.name: {mode: ratios(results.get("ceiling", {}).get(s.name), results[mode].get(s.name)) for mode in modes}
        for s in scenarios
    }
    kafka_ratios: dict[str, dict[str, dict[str, Any]]] = {}
    for s in scenarios:
        for mode in ("spool", "embedded"):
            vs = p99_vs_kafka(results.get("kafka", {}).get(s.name), results.get(mode, {}).get(s.name))
            if vs is not None:
                kafka_ratios.setdefault(s.name, {})[mode] = vs
    checks = check_targets(results, kafka_ratios)
    document = {
        "benchmark": "ingest",
        "timestamp": stamp,
        "command": " ".join([Path(sys.executable).name, "bench/ingest.py", *(argv or sys.argv[1:])]),
        "machine": machine,
        "settings": {
            "duration_seconds": args.duration,
            "warmup_seconds": args.warmup,
            "load": args.load,
            "wrk_threads": args.wrk_threads,
            "events_per_batch": EVENTS_PER_BATCH,
            "body_bytes": body_bytes,
            "modes": {mode: MODE_LABELS[mode] for mode in modes},
            "kafka": os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or "tansu (in memory, single node)",
            "ingest_command": " ".join(siemgate_command()),
        },
        "targets": TARGETS,
        # results[target][scenario]: target is "ceiling" or a mode.
        "results": results,
        # ratios[scenario][mode]: the mode's figures over the ceiling's.
        "ratios": ceiling_ratios,
        # p99_vs_kafka[scenario][mode]: spool and embedded mode's p99 over the Kafka mode's.
        "p99_vs_kafka": kafka_ratios,
        "checks": checks,
        "profile": profile,
    }
    text = json.dumps(document, indent=2, default=str)
    (results_dir / f"ingest-{stamp}.json").write_text(text + "\n")
    (results_dir / "ingest-latest.json").write_text(text + "\n")

    print()
    print(
        f"siemgate ingest benchmark, {stamp}: {machine['nproc']} CPUs ({machine['cpu_model']}), "
        f"Python {machine['python']}, aiokafka {machine['aiokafka']}, SQLite {machine['sqlite']}, load: {args.load}"
        + ("" if args.load == "wrk" else " (Python simulator: it may be the bottleneck)")
    )
    print(
        f"body {body_bytes:,} bytes = {EVENTS_PER_BATCH} events; {args.duration:g} s per scenario; latency is per batch"
    )
    for mode in modes:
        print(f"  {mode:<9} {MODE_LABELS[mode]}")
    print()
    print(format_table(results, scenarios))
    if modes:
        print()
        print(format_ratios(results, scenarios, ceiling_ratios, kafka_ratios))
    details = format_details(results, scenarios)
    if details:
        print()
        print(details)
    print()
    for name, check in checks.items():
        print(format_check(name, check))
    if profile:
        print()
        print(format_profile(profile))
    log(f"results written to {display(results_dir / f'ingest-{stamp}.json')} and ingest-latest.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
