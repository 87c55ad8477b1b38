"""The ingest benchmark: siemgate's ack latency and throughput against a bare-HTTP ceiling.

In one run, each of two targets is measured under two loads:

- targets: the *ceiling* (bench/ceiling.py: a bare Starlette endpoint that reads the body and
  answers 200, on the same uvicorn settings as siemgate), then *siemgate* (`siemgate ingest`,
  producing to Kafka with acks=all; a Tansu broker is started unless KAFKA_BOOTSTRAP_SERVERS
  is set);
- loads: (a) one sequential sender of 500-event batches (~400 KB), (b) 8 concurrent
  sequential senders.

The load comes from `wrk` with bench/wrk_post.lua (one prebuilt body, posted again and again:
a wrk connection is one sequential sender). wrk costs a small fraction of a core; the Python
simulator (`siemgate simulate`), used when wrk is missing, costs ~0.75 core and may itself be
the bottleneck on a 2-core machine: the output says which load generator was used.

    .venv/bin/python bench/ingest.py                  # 20 s per scenario
    .venv/bin/python bench/ingest.py --duration 10 --profile

Results: a table on stdout, bench/results/ingest-<timestamp>.json and ingest-latest.json.
With --profile, an extra 8-sender run (not in the table: the sampler perturbs it) is
profiled with py-spy (or pyinstrument), written to bench/results/, and its top functions
are printed. Targets (2-core machine): (a) p50 <= 5 ms and p99 <= 10 ms per 500-event batch,
(b) >= 100,000 events/s from one ingest process. Not run in CI.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import platform
import re
import resource
import shutil
import signal
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
from math import nan
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from siemgate.simulate import make_batch_body, make_events  # noqa: E402
from siemgate.testing.broker import Broker, free_port, start_tansu  # noqa: E402

BENCH_DIR = Path(__file__).resolve().parent
LUA_SCRIPT = BENCH_DIR / "wrk_post.lua"
HEADER_NAME = "X-Api-Key"
HEADER_VALUE = "bench-key"
PATH = "/webhook/bench"
EVENTS_PER_BATCH = 500
CLK_TCK = os.sysconf("SC_CLK_TCK")
# --ingest-command: how to run `siemgate` (e.g. another checkout's venv, or a patched build).
INGEST_COMMAND: list[str] = []
TARGETS = {"sequential": {"p50_ms": 5.0, "p99_ms": 10.0}, "concurrent-8": {"events_per_second": 100_000}}


@dataclass(frozen=True)
class Scenario:
    name: str
    connections: int
    label: str


@dataclass
class Target:
    name: str
    base_url: str
    pid: int
    log: Path
    process: subprocess.Popen[bytes]

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
        "siemgate_commit": commit,
        "siemgate_uncommitted_changes": dirty,
        "load_generator": load,
        "wrk": wrk_version,
        "loadavg_at_start": os.getloadavg(),
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


def write_ingest_config(work: Path, broker: Broker, port: int) -> Path:
    config = {
        "listen": {"host": "127.0.0.1", "port": port},
        "state_dir": str(work / "state"),
        "quarantine": {"path": str(work / "quarantine")},
        "log_level": "warning",
        "integrations": [
            {"name": "bench", "path": PATH, "auth": {"header": HEADER_NAME, "values": [HEADER_VALUE]}},
        ],
        "bus": {
            "type": "kafka",
            "spool": {"path": str(work / "spool")},
            "kafka": {"bootstrap_servers": broker.bootstrap_servers, "idempotence": broker.idempotence},
        },
    }
    path = work / f"siemgate-{port}.yaml"
    # JSON is YAML.
    path.write_text(json.dumps(config, indent=2))
    return path


def siemgate_command() -> list[str]:
    if INGEST_COMMAND:
        return list(INGEST_COMMAND)
    script = Path(sys.executable).parent / "siemgate"
    return [str(script)] if script.exists() else [sys.executable, "-m", "siemgate"]


@contextlib.contextmanager
def siemgate_ingest(work: Path, broker: Broker, wrapper: list[str] | None = None) -> Iterator[Target]:
    """`siemgate ingest -c CONFIG` on a free loopback port; `wrapper` runs it under a profiler."""
    port = free_port()
    config = write_ingest_config(work, broker, port)
    log_path = work / f"siemgate-{port}.log"
    command = [*(wrapper or []), *siemgate_command(), "ingest", "-c", str(config)]
    with open(log_path, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=work)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready("siemgate ingest", base + "/readyz", process, log_path, 90)
        yield Target("siemgate", base, process.pid, log_path, process)
    finally:
        stop(process, "siemgate ingest")
        if process.returncode not in (0, -signal.SIGTERM):
            log(f"siemgate ingest exited with {process.returncode}; its log ends with:\n{tail(log_path)}")


def metric_sum(base_url: str, name: str) -> float | None:
    """Sum of every sample of a Prometheus counter (None when unavailable)."""
    try:
        with urllib.request.urlopen(base_url + "/metrics", timeout=5) as answer:
            text = answer.read().decode()
    except (urllib.error.URLError, OSError):
        return None
    total, found = 0.0, False
    pattern = re.compile(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? ([0-9.eE+-]+)$")
    for line in text.splitlines():
        match = pattern.match(line)
        if match:
            total += float(match.group(1))
            found = True
    return total if found else None


# ------------------------------------------------------------------------------------------
# Load


def run_wrk(url: str, body: Path, connections: int, duration: float, threads: int) -> dict[str, Any]:
    env = dict(os.environ, BENCH_BODY=str(body), BENCH_HEADER_NAME=HEADER_NAME, BENCH_HEADER_VALUE=HEADER_VALUE)
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
) -> dict[str, Any]:
    run_load(target, scenario, args, body, args.warmup)
    counted_before = metric_sum(target.base_url, "siemgate_ingest_events_total")
    cpu_before = proc_cpu_seconds(target.pid)
    others_before = {name: proc_cpu_seconds(pid) for name, pid in extra_pids.items()}
    busy_before, total_before = machine_busy()
    result = run_load(target, scenario, args, body, args.duration)
    busy_after, total_after = machine_busy()
    cpu = proc_cpu_seconds(target.pid) - cpu_before
    others = {name: proc_cpu_seconds(pid) - others_before[name] for name, pid in extra_pids.items()}
    counted_after = metric_sum(target.base_url, "siemgate_ingest_events_total")

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
    if counted_before is not None and counted_after is not None:
        # Counted by siemgate's own metric; may exceed `events` by the batches wrk abandons
        # in flight at the end of the run.
        result["events_counted_by_siemgate"] = int(counted_after - counted_before)
    return result


# ------------------------------------------------------------------------------------------
# Profiling


def profile_ingest(
    work: Path, broker: Broker, args: argparse.Namespace, body: Path, stamp: str, results_dir: Path
) -> dict[str, Any]:
    scenario = Scenario("concurrent-8", 8, "8 senders")
    pyspy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if args.profiler == "pyinstrument":
        pyspy = None
    elif args.profiler == "py-spy" and not pyspy:
        raise RuntimeError("--profiler py-spy: py-spy is not installed (pip install py-spy)")
    duration = args.duration
    if pyspy:
        out = results_dir / f"ingest-profile-{stamp}.collapsed.txt"
        with siemgate_ingest(work, broker) as target:
            log(f"profiling siemgate ingest (pid {target.pid}) with py-spy under {scenario.label}, {duration:g} s")
            run_load(target, scenario, args, body, args.warmup)
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
                result = run_load(target, scenario, args, body, duration)
                _, err = sampler.communicate(timeout=duration + 60)
            finally:
                stop(sampler, "py-spy")
            if sampler.returncode != 0 or not out.exists():
                raise RuntimeError(f"py-spy failed ({sampler.returncode}): {err.decode(errors='replace')}")
        if result.get("seconds"):
            result["events_per_second"] = result["ok"] * EVENTS_PER_BATCH / result["seconds"]
        summary = summarize_collapsed(out)
        summary.update({"tool": "py-spy", "file": display(out), "load": result})
        return summary
    log("py-spy is not installed (pip install py-spy): profiling with pyinstrument instead")
    out = results_dir / f"ingest-profile-{stamp}.pyinstrument.txt"
    wrapper = [sys.executable, "-m", "pyinstrument", "-r", "text", "--show-all", "-o", str(out)]
    with siemgate_ingest(work, broker, wrapper=wrapper) as target:
        run_load(target, scenario, args, body, args.warmup)
        result = run_load(target, scenario, args, body, duration)
    return {"tool": "pyinstrument", "file": display(out), "load": result}


def run_load(
    target: Target, scenario: Scenario, args: argparse.Namespace, body: Path, duration: float
) -> dict[str, Any]:
    if duration <= 0:
        return {}
    if args.load == "wrk":
        return run_wrk(target.url, body, scenario.connections, duration, args.wrk_threads)
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


def format_table(results: dict[str, dict[str, dict[str, Any]]], scenarios: list[Scenario]) -> str:
    header = (
        f"{'scenario':<14} {'target':<9} {'req/s':>8} {'events/s':>10} {'MB/s':>7} {'p50 ms':>7} {'p90 ms':>7} "
        f"{'p99 ms':>7} {'p99.9':>7} {'max ms':>7} {'non200':>6} {'errors':>6} {'cores':>5} {'CPU-s/10k':>9} "
        f"{'load':>5} {'kafka':>5} {'busy':>5}"
    )
    lines = [header, "-" * len(header)]
    for scenario in scenarios:
        rows = {name: results.get(name, {}).get(scenario.name) for name in ("ceiling", "siemgate")}
        for name, row in rows.items():
            if row is None:
                continue
            lat = row["latency_ms"]
            per10k = row["cpu_seconds_per_10k_events"]
            broker = row["other_cpu_cores"].get("broker")
            lines.append(
                f"{scenario.name:<14} {name:<9} {row['requests_per_second']:>8,.0f} {row['events_per_second']:>10,.0f} "
                f"{row['megabytes_per_second']:>7,.0f} {lat['p50']:>7.2f} {lat['p90']:>7.2f} {lat['p99']:>7.2f} "
                f"{lat['p99.9']:>7.2f} {lat['max']:>7.1f} {row['non_200']:>6} {row['errors']:>6} "
                f"{row['target_cpu_cores']:>5.2f} {'-' if per10k is None else format(per10k, '9.3f'):>9} "
                f"{row['load_cpu_cores']:>5.2f} {'-' if broker is None else format(broker, '5.2f'):>5} "
                f"{row['machine_cpu_busy']:>5.0%}"
            )
        ratio = ratios(rows["ceiling"], rows["siemgate"])
        if ratio:
            lines.append(
                f"{scenario.name:<14} {'ratio':<9} {'':>8} {ratio['events_per_second']:>10.1%} {'':>7} "
                f"{ratio.get('p50', nan):>6.1f}x {ratio.get('p90', nan):>6.1f}x {ratio.get('p99', nan):>6.1f}x"
                "   (siemgate/ceiling)"
            )
    lines.append(
        "cores: CPU of the target process (in cores); CPU-s/10k: its CPU-seconds per 10,000 events acked; "
        "load: the load generator's; kafka: the broker's; busy: the whole machine's"
    )
    return "\n".join(lines)


def ratios(ceiling: dict[str, Any] | None, siemgate: dict[str, Any] | None) -> dict[str, float] | None:
    if not ceiling or not siemgate or not ceiling["events_per_second"]:
        return None
    out = {"events_per_second": siemgate["events_per_second"] / ceiling["events_per_second"]}
    for key in ("p50", "p90", "p99", "p99.9"):
        base = ceiling["latency_ms"][key]
        if base:
            out[key] = siemgate["latency_ms"][key] / base
    return out


def check_targets(results: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    checks: dict[str, Any] = {}
    seq = results.get("siemgate", {}).get("sequential")
    if seq:
        p50, p99 = seq["latency_ms"]["p50"], seq["latency_ms"]["p99"]
        checks["sequential_p50_le_5ms"] = {"value_ms": p50, "met": p50 <= TARGETS["sequential"]["p50_ms"]}
        checks["sequential_p99_le_10ms"] = {"value_ms": p99, "met": p99 <= TARGETS["sequential"]["p99_ms"]}
    conc = results.get("siemgate", {}).get("concurrent-8")
    if conc:
        eps = conc["events_per_second"]
        checks["concurrent8_ge_100k_events_per_s"] = {
            "value": eps,
            "met": eps >= TARGETS["concurrent-8"]["events_per_second"],
        }
    lost = sum(row["non_200"] + row["errors"] for row in results.get("siemgate", {}).values())
    checks["no_non_200_answers"] = {"value": lost, "met": lost == 0}
    return checks


def format_profile(profile: dict[str, Any], top: int = 15) -> str:
    if "top_self" not in profile:
        return f"profile ({profile['tool']}): {profile['file']}"
    lines = [f"profile ({profile['tool']}, {profile['samples']} samples): {profile['file']}", "  self time by area:"]
    lines += [f"    {r['percent']:5.1f}%  {r['area']}" for r in profile["self_by_area"][:top]]
    lines.append("  top functions by self time:")
    lines += [f"    {r['percent']:5.1f}%  {r['function']}" for r in profile["top_self"][:top]]
    lines.append("  siemgate functions by inclusive time:")
    lines += [f"    {r['percent']:5.1f}%  {r['function']}" for r in profile["top_inclusive"][:top]]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------


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
    parser.add_argument("--only", choices=("ceiling", "siemgate"), help="measure one target only")
    parser.add_argument("--profile", action="store_true", help="also profile siemgate under the concurrent load")
    parser.add_argument(
        "--profiler",
        choices=("auto", "py-spy", "pyinstrument"),
        default="auto",
        help="py-spy (attaches to the running ingest; default when installed) or pyinstrument (runs a second ingest "
        "under it)",
    )
    parser.add_argument("--profile-rate", type=int, default=250, help="py-spy samples per second (default 250)")
    parser.add_argument(
        "--ingest-command",
        metavar="CMD",
        help="the command that runs siemgate, split on spaces (default: this venv's siemgate); "
        "'ingest -c CONFIG' is appended",
    )
    parser.add_argument("--keep-logs", type=Path, metavar="DIR", help="copy the servers' logs into DIR at the end")
    parser.add_argument("--results-dir", type=Path, default=BENCH_DIR / "results")
    parser.add_argument("--seed", type=int, default=1, help="seed of the batch body's contents")
    args = parser.parse_args(argv)
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
    scenarios = [
        Scenario("sequential", 1, "one sequential sender"),
        Scenario(f"concurrent-{args.concurrency}", args.concurrency, f"{args.concurrency} concurrent senders"),
    ]
    machine = machine_info(args.load)
    results: dict[str, dict[str, dict[str, Any]]] = {}
    profile: dict[str, Any] | None = None
    with tempfile.TemporaryDirectory(prefix="siemgate-bench-") as tmp, keep_logs(Path(tmp), args.keep_logs):
        work = Path(tmp)
        body = work / "body.json"
        body.write_bytes(make_batch_body(make_events(EVENTS_PER_BATCH, "high=1,medium=3,low=6", args.seed)))
        body_bytes = body.stat().st_size
        log(
            f"body: {EVENTS_PER_BATCH} events, {body_bytes:,} bytes; load: {args.load}; "
            f"{args.duration:g} s per scenario after {args.warmup:g} s warm-up"
        )
        if args.only in (None, "ceiling"):
            with ceiling_server(work) as target:
                for scenario in scenarios:
                    log(f"ceiling, {scenario.label} ...")
                    results.setdefault("ceiling", {})[scenario.name] = measure(
                        target, scenario, args, body, body_bytes, {}
                    )
        if args.only in (None, "siemgate"):
            with kafka_broker(work) as broker:
                extra = {"broker": broker.process.pid} if broker.process else {}
                with siemgate_ingest(work, broker) as target:
                    for scenario in scenarios:
                        log(f"siemgate, {scenario.label} ...")
                        results.setdefault("siemgate", {})[scenario.name] = measure(
                            target, scenario, args, body, body_bytes, extra
                        )
                if args.profile:
                    profile = profile_ingest(work, broker, args, body, stamp, results_dir)

    checks = check_targets(results)
    ratio_rows = {
        s.name: ratios(results.get("ceiling", {}).get(s.name), results.get("siemgate", {}).get(s.name))
        for s in scenarios
    }
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
            "kafka": os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or "tansu (in memory, single node)",
            "ingest_command": " ".join(siemgate_command()),
        },
        "targets": TARGETS,
        "results": results,
        "ratios": ratio_rows,
        "checks": checks,
        "profile": profile,
    }
    text = json.dumps(document, indent=2, default=str)
    (results_dir / f"ingest-{stamp}.json").write_text(text + "\n")
    (results_dir / "ingest-latest.json").write_text(text + "\n")

    print()
    print(
        f"siemgate ingest benchmark, {stamp}: {machine['nproc']} CPUs ({machine['cpu_model']}), "
        f"Python {machine['python']}, aiokafka {machine['aiokafka']}, load: {args.load}"
        + ("" if args.load == "wrk" else " (Python simulator: it may be the bottleneck)")
    )
    print(
        f"body {body_bytes:,} bytes = {EVENTS_PER_BATCH} events; {args.duration:g} s per scenario; latency is per batch"
    )
    print()
    print(format_table(results, scenarios))
    print()
    for name, check in checks.items():
        value = check.get("value_ms", check.get("value"))
        print(f"  target {name:<36} {'MET' if check['met'] else 'NOT MET':<8} ({value:,.2f})")
    if profile:
        print()
        print(format_profile(profile))
    log(f"results written to {display(results_dir / f'ingest-{stamp}.json')} and ingest-latest.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
