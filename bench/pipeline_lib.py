"""What bench/pipeline.py and bench/soak.py share: the processes of a whole pipeline (Tansu, a
private rsyslogd, the recording HEC and Elasticsearch stand-ins, siemgate), the benchmark
senders (bench/pipeline_sender.py), the sinks' readers that tell when each event arrived, the
ledger that checks every acked event reached every sink, /proc accounting, the sinks' own
ceilings, and the charts.

Arrival times, per sink:
- file: the sink's NDJSON file is tailed every 10 ms; a line's arrival is the first poll that
  saw it complete (the file holds no write time; resolution 10 ms plus the poll's own delay);
- syslog: rsyslogd writes what it receives with its receive time (`timegenerated`, us);
- splunk_hec / elasticsearch: the stand-ins record when they indexed each event
  (bench/pipeline_standins.py, `/_bench/arrivals`).
The send time is the event's own `bench_sent_at` as each sink shows it.
"""

from __future__ import annotations

import bisect
import contextlib
import http.client
import json
import math
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
for _path in (str(ROOT), str(BENCH_DIR)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from ingest import machine_busy, machine_info, proc_cpu_seconds, summarize_collapsed  # noqa: E402

from siemgate_standins.broker import free_port, start_tansu  # noqa: E402

HEADER_NAME = "X-Api-Key"
HEADER_VALUE = "bench-key"
WEBHOOK_PATH = "/webhook/bench"
HEC_TOKEN = "bench-hec-token"
DATA_STREAM = "logs-siemgate.alerts-default"
SINKS = ("file", "syslog", "splunk-hec", "elasticsearch")  # the sinks' names in siemgate's config
SEVERITIES = {"h": "high", "m": "medium", "l": "low", "u": "unknown"}
RSYSLOGD = "/usr/sbin/rsyslogd"
TAIL_SECONDS = 0.01
SAMPLE_SECONDS = 0.25
PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99.9", 99.9))


def log(message: str) -> None:
    print(f"[pipeline {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def percentile(sorted_values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile of sorted values (None when empty)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def distribution_ms(values_seconds: Iterable[float]) -> dict[str, Any]:
    values = sorted(values_seconds)
    out: dict[str, Any] = {"count": len(values)}
    for name, p in PERCENTILES:
        v = percentile(values, p)
        out[name] = None if v is None else round(v * 1000, 3)
    out["max"] = round(values[-1] * 1000, 3) if values else None
    out["mean"] = round(sum(values) / len(values) * 1000, 3) if values else None
    return out


# ------------------------------------------------------------------------------------------
# /proc


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (kB) of a live process; {} once it is gone."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    out[line[:5]] = int(line.split()[1])
    except OSError:
        return {}
    return out


def cpu_or_none(pid: int) -> float | None:
    try:
        return proc_cpu_seconds(pid)
    except (OSError, ValueError, IndexError):
        return None


# ------------------------------------------------------------------------------------------
# Processes


@dataclass
class Proc:
    name: str  # e.g. "siemgate run", "tansu", "rsyslogd"
    role: str  # siemgate | broker | sink | sender | ceiling
    process: subprocess.Popen[bytes]
    log_path: Path | None = None
    url: str | None = None
    last_status: dict[str, int] = field(default_factory=dict)
    last_cpu: float | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def tail(self, lines: int = 25) -> str:
        if self.log_path is None:
            return ""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class Processes:
    """Every process a run started, stopped (SIGTERM, then SIGKILL) in reverse order by `stop_all`,
    also on errors and Ctrl-C."""

    def __init__(self) -> None:
        self.procs: list[Proc] = []
        self.lock = threading.Lock()

    def add(self, proc: Proc) -> Proc:
        with self.lock:
            self.procs.append(proc)
        return proc

    def start(self, name: str, role: str, command: list[str], log_path: Path, *, cwd: Path | None = None,
              env: dict[str, str] | None = None, stdout_pipe: bool = False) -> Proc:
        with open(log_path, "ab") as out:
            process = subprocess.Popen(
                command, stdout=subprocess.PIPE if stdout_pipe else out, stderr=out, stdin=subprocess.DEVNULL,
                cwd=cwd or ROOT, env=env, start_new_session=True,
            )
        return self.add(Proc(name, role, process, log_path))

    def live(self, roles: Iterable[str] | None = None) -> list[Proc]:
        wanted = set(roles) if roles is not None else None
        with self.lock:
            return [p for p in self.procs if p.alive() and (wanted is None or p.role in wanted)]

    def stop(self, proc: Proc, grace: float = 30.0) -> int | None:
        """SIGTERM, wait `grace` s, then SIGKILL. Records its last VmHWM/CPU first."""
        if proc.alive():
            proc.last_status = proc_status(proc.pid) or proc.last_status
            proc.last_cpu = cpu_or_none(proc.pid)
            with contextlib.suppress(ProcessLookupError):
                proc.process.send_signal(signal.SIGTERM)
            try:
                proc.process.wait(grace)
            except subprocess.TimeoutExpired:
                log(f"{proc.name} (pid {proc.pid}) did not stop within {grace:g} s of SIGTERM: killing it")
                with contextlib.suppress(ProcessLookupError):
                    proc.process.kill()
                proc.process.wait()
        if proc.process.stdout is not None:
            proc.process.stdout.close()
        with self.lock:
            if proc in self.procs:
                self.procs.remove(proc)
        return proc.process.returncode

    def stop_all(self) -> None:
        with self.lock:
            procs = list(reversed(self.procs))
        for proc in procs:
            try:
                self.stop(proc, grace=35.0)  # siemgate forward: drain_timeout_seconds (20 s) + margin
            except Exception as exc:  # keep stopping the others
                log(f"stopping {proc.name}: {exc}")


def read_url_line(proc: Proc, timeout: float) -> str:
    """The first stdout line of a stand-in (its URL)."""
    stdout = proc.process.stdout
    assert stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise RuntimeError(f"{proc.name} printed no URL within {timeout:g} s:\n{proc.tail()}")
    line = stdout.readline().decode().strip()
    if not line.startswith("http"):
        raise RuntimeError(f"{proc.name} did not start ({line!r}):\n{proc.tail()}")
    return line


def wait_http_ok(proc: Proc, url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited with {proc.process.returncode}:\n{proc.tail()}")
        try:
            status, _ = http_get(url, timeout=2)
            if status == 200:
                return
            last = f"HTTP {status}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.1)
    raise RuntimeError(f"{proc.name} not ready after {timeout:g} s ({url}: {last}):\n{proc.tail()}")


def http_get(url: str, timeout: float = 30.0) -> tuple[int, bytes]:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=timeout)
    try:
        connection.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""))
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def tcp_listening(port: int) -> bool:
    with contextlib.suppress(FileNotFoundError), open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            columns = line.split()
            if columns[3] == "0A" and int(columns[1].rsplit(":", 1)[1], 16) == port:
                return True
    return False


# ------------------------------------------------------------------------------------------
# The sinks' processes


@dataclass
class SinkSet:
    """The four sinks of one pipeline: where siemgate sends and where the benchmark reads."""

    file_path: Path
    syslog_port: int
    rsyslog_received: Path
    hec_url: str
    es_url: str
    procs: dict[str, Proc]  # rsyslogd, hec, elasticsearch


def rsyslog_config(directory: Path, port: int, received: Path) -> str:
    """TCP only, loopback; every message written as `<timegenerated> <msg>` (rsyslog's receive
    time in microseconds; the message as received, control characters kept)."""
    return f"""
global(workDirectory="{directory}/work" maxMessageSize="256k"
       parser.escapeControlCharactersOnReceive="off")
module(load="imtcp" maxSessions="200")
input(type="imtcp" address="127.0.0.1" port="{port}" ruleset="capture")
template(name="received" type="string" string="%timegenerated:::date-rfc3339% %msg%\\n")
ruleset(name="capture") {{
  action(type="omfile" file="{received}" template="received")
}}
"""


def start_rsyslog(processes: Processes, work: Path, name: str = "rsyslogd") -> tuple[Proc, int, Path]:
    if not os.access(RSYSLOGD, os.X_OK):
        raise RuntimeError("rsyslogd is not installed (apt-get install -y rsyslog)")
    directory = work / name
    (directory / "work").mkdir(parents=True, exist_ok=True)
    port = free_port()
    received = directory / "received.log"
    config = directory / "rsyslog.conf"
    config.write_text(rsyslog_config(directory, port, received))
    check = subprocess.run([RSYSLOGD, "-N1", "-f", str(config)], capture_output=True, text=True, check=False)
    if check.returncode != 0:
        raise RuntimeError(f"rsyslogd refuses the config: {check.stdout}{check.stderr}")
    proc = processes.start(name, "sink", [RSYSLOGD, "-n", "-f", str(config), "-i", str(directory / "rsyslogd.pid")],
                           directory / "rsyslogd.log")
    deadline = time.monotonic() + 15
    while not tcp_listening(port):
        if not proc.alive():
            raise RuntimeError(f"rsyslogd exited at startup:\n{proc.tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"rsyslogd did not listen within 15 s:\n{proc.tail()}")
        time.sleep(0.02)
    return proc, port, received


def start_standin(processes: Processes, work: Path, kind: str, *, ack: bool = True) -> Proc:
    """The recording stand-in (bench/pipeline_standins.py) in its own process."""
    if kind == "splunk_hec":
        command = [sys.executable, str(BENCH_DIR / "pipeline_standins.py"), "splunk-hec", "--port", "0",
                   "--token", HEC_TOKEN + (":ack" if ack else ""), "--no-keep-events"]
        name = "hec stand-in"
    else:
        command = [sys.executable, str(BENCH_DIR / "pipeline_standins.py"), "elasticsearch", "--port", "0",
                   "--no-keep-sources"]
        name = "elasticsearch stand-in"
    proc = processes.start(name, "sink", command, work / f"standin-{kind}-{time.monotonic_ns()}.log", stdout_pipe=True)
    proc.url = read_url_line(proc, 30)
    return proc


def start_sinks(processes: Processes, work: Path, *, hec_ack: bool) -> SinkSet:
    rsyslog, port, received = start_rsyslog(processes, work)
    hec = start_standin(processes, work, "splunk_hec", ack=hec_ack)
    es = start_standin(processes, work, "elasticsearch")
    assert hec.url and es.url
    out = work / "out"
    out.mkdir(exist_ok=True)
    return SinkSet(out / f"events-{time.monotonic_ns()}.ndjson", port, received, hec.url, es.url,
                   {"rsyslogd": rsyslog, "splunk_hec": hec, "elasticsearch": es})


def sinks_config(sinks: SinkSet, *, hec_ack: bool) -> list[dict[str, Any]]:
    """All four sinks, each with siemgate's defaults except what the benchmark needs."""
    return [
        # No rotation during a run: the benchmark tails one file.
        {"name": "file", "type": "file", "path": str(sinks.file_path), "rotate_bytes": 1 << 40},
        {"name": "syslog", "type": "syslog", "address": f"tcp://127.0.0.1:{sinks.syslog_port}", "format": "rfc5424"},
        {"name": "splunk-hec", "type": "splunk_hec", "url": sinks.hec_url, "token": HEC_TOKEN, "ack": hec_ack},
        {"name": "elasticsearch", "type": "elasticsearch", "url": sinks.es_url},
    ]


# ------------------------------------------------------------------------------------------
# siemgate


def siemgate_command() -> list[str]:
    script = Path(sys.executable).parent / "siemgate"
    return [str(script)] if script.exists() else [sys.executable, "-m", "siemgate"]


def write_siemgate_config(work: Path, name: str, mode: str, port: int, sinks: SinkSet, *, hec_ack: bool,
                          bootstrap: str | None = None) -> Path:
    data = work / f"data-{name}"
    config: dict[str, Any] = {
        "listen": {"host": "127.0.0.1", "port": port},
        "state_dir": str(data / "state"),
        "quarantine": {"path": str(data / "quarantine")},
        "log_level": "warning",
        "integrations": [{"name": "bench", "path": WEBHOOK_PATH, "auth": {"header": HEADER_NAME,
                                                                         "values": [HEADER_VALUE]}}],
        "sinks": sinks_config(sinks, hec_ack=hec_ack),
    }
    if mode == "embedded":
        config["bus"] = {"type": "embedded", "path": str(data / "siemgate.db")}
        config["forward"] = {"listen": {"host": "127.0.0.1", "port": free_port()}}
    else:
        assert bootstrap is not None
        config["bus"] = {"type": "kafka", "spool": {"path": str(data / "spool")},
                         "kafka": {"bootstrap_servers": bootstrap, "idempotence": False}}
        # Tansu holds a fetch for its whole max wait even when records are there (Kafka answers at
        # once): as bench/forward.py, 20 ms instead of the 100 ms default.
        config["forward"] = {"listen": {"host": "127.0.0.1", "port": 0}, "fetch_max_wait_ms": 20}
    path = work / f"siemgate-{name}.yaml"
    path.write_text(json.dumps(config, indent=2))  # JSON is YAML
    return path


@dataclass
class Pipeline:
    """One running pipeline: `url` takes webhooks; `procs` are siemgate's and the broker's."""

    mode: str
    url: str
    base_url: str
    sinks: SinkSet
    siemgate: list[Proc]
    broker: Proc | None
    config_path: Path


def start_pipeline(processes: Processes, work: Path, mode: str, *, hec_ack: bool,
                   kafka_forwarders: str = "per-sink") -> Pipeline:
    """Sinks, (Kafka mode) a Tansu broker, and siemgate: `siemgate run` (embedded) or
    `siemgate ingest` + `siemgate forward` (Kafka: one process per sink, or one for all)."""
    sinks = start_sinks(processes, work, hec_ack=hec_ack)
    port = free_port()
    broker_proc = None
    bootstrap = None
    if mode == "kafka":
        broker = start_tansu(log_path=str(work / "tansu.log"))
        assert broker.process is not None
        broker_proc = processes.add(Proc("tansu", "broker", broker.process, work / "tansu.log"))
        bootstrap = broker.bootstrap_servers
    config_path = write_siemgate_config(work, mode, mode, port, sinks, hec_ack=hec_ack, bootstrap=bootstrap)
    base = f"http://127.0.0.1:{port}"
    procs: list[Proc] = []
    env = dict(os.environ)
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    if mode == "embedded":
        procs.append(processes.start("siemgate run", "siemgate", [*siemgate_command(), "run", "-c", str(config_path)],
                                     work / "siemgate-run.log", cwd=work, env=env))
    else:
        procs.append(processes.start("siemgate ingest", "siemgate",
                                     [*siemgate_command(), "ingest", "-c", str(config_path)],
                                     work / "siemgate-ingest.log", cwd=work, env=env))
    wait_http_ok(procs[0], base + "/readyz", 90)
    if mode == "kafka":
        groups = [[s] for s in SINKS] if kafka_forwarders == "per-sink" else [list(SINKS)]
        for group in groups:
            label = "siemgate forward" + (f" --sink {group[0]}" if len(group) == 1 else "")
            command = [*siemgate_command(), "forward", "-c", str(config_path)]
            for sink in group:
                command += ["--sink", sink]
            procs.append(processes.start(label, "siemgate", command,
                                         work / f"siemgate-forward-{'-'.join(group)}.log", cwd=work, env=env))
    return Pipeline(mode, base + WEBHOOK_PATH, base, sinks, procs, broker_proc, config_path)


# ------------------------------------------------------------------------------------------
# Senders


@dataclass
class SenderRun:
    tag: str
    proc: Proc
    log_path: Path
    started_at: float
    summary: dict[str, Any] | None = None
    batches: list[dict[str, Any]] = field(default_factory=list)

    def finish(self, processes: Processes, timeout: float) -> dict[str, Any]:
        try:
            out, _ = self.proc.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            processes.stop(self.proc)
            raise RuntimeError(f"sender {self.tag} did not finish within {timeout:g} s") from None
        processes.stop(self.proc)
        if self.proc.process.returncode != 0:
            raise RuntimeError(f"sender {self.tag} failed ({self.proc.process.returncode}):\n{self.proc.tail()}")
        self.summary = json.loads(out.decode().strip().splitlines()[-1])
        self.batches = read_batches(self.log_path)
        return self.summary


def read_batches(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def start_sender(processes: Processes, work: Path, url: str, tag: str, *, senders: int = 1,
                 events: int | None = None, duration: float | None = None, stop_file: Path | None = None,
                 batch: int = 500, mix: str = "high=1,medium=3,low=6", rate: float = 0.0, interval: float = 0.0,
                 seed: int = 1) -> SenderRun:
    log_path = work / f"sender-{tag}.jsonl"
    command = [sys.executable, str(BENCH_DIR / "pipeline_sender.py"), "--url", url,
               "--header", f"{HEADER_NAME}: {HEADER_VALUE}", "--tag", tag, "--senders", str(senders),
               "--batch", str(batch), "--mix", mix, "--log", str(log_path), "--seed", str(seed)]
    if events is not None:
        command += ["--events", str(events)]
    if duration is not None:
        command += ["--duration", str(duration)]
    if stop_file is not None:
        command += ["--stop-file", str(stop_file)]
    if rate:
        command += ["--rate", str(rate)]
    if interval:
        command += ["--interval", str(interval)]
    started = time.time()
    proc = processes.start(f"sender {tag}", "sender", command, work / f"sender-{tag}.log", stdout_pipe=True)
    return SenderRun(tag, proc, log_path, started)


def ack_report(run: SenderRun) -> dict[str, Any]:
    """What the sender saw: acked events, non-200s, errors, ack latency percentiles, rate."""
    summary = run.summary or {}
    latencies = [b["lat"] for b in run.batches if b["st"] == 200]
    elapsed = summary.get("elapsed_seconds") or 0.0
    return {
        "senders_batches": summary.get("batches"),
        "acked_events": summary.get("acked_events"),
        "non_200": {k: v for k, v in (summary.get("statuses") or {}).items() if k != "200"},
        "connection_errors": summary.get("errors"),
        "elapsed_seconds": elapsed,
        "acked_events_per_second": round(summary.get("acked_events", 0) / elapsed, 1) if elapsed else None,
        "ack_latency_ms": distribution_ms(latencies),
        "sender_cpu_seconds": summary.get("cpu_seconds"),
    }


# ------------------------------------------------------------------------------------------
# Reading the sinks


_ID = re.compile(rb'"id":"(pl\.[^"]+)"')
_SENT = re.compile(rb'"bench_sent_at":([0-9.eE+-]+)')


class FileTail:
    """A growing file, read by offsets: `poll()` (the monitor thread, every 10 ms) notes when
    each complete line became visible; the parser reads complete lines later."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.mark_times: list[float] = []
        self.mark_offsets: list[int] = []  # end offset of the last complete line at that time
        self._size = 0
        self._handle: Any = None
        self._read_to = 0
        self.lines = 0

    def poll(self, now: float) -> None:
        if self._handle is None:
            try:
                self._handle = open(self.path, "rb")  # noqa: SIM115 - kept open across polls
            except FileNotFoundError:
                return
        data = self._handle.read()
        if not data:
            return
        start = self._read_to
        self._read_to += len(data)
        newlines = data.count(b"\n")
        if newlines:
            self.lines += newlines
            end = start + data.rfind(b"\n") + 1
            self.mark_times.append(now)
            self.mark_offsets.append(end)

    def arrival(self, line_end: int) -> float | None:
        index = bisect.bisect_left(self.mark_offsets, line_end)
        return self.mark_times[index] if index < len(self.mark_times) else None

    def complete_offset(self) -> int:
        return self.mark_offsets[-1] if self.mark_offsets else 0

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


class SinkReader:
    """Yields the arrivals not yet read, in arrival order."""

    name: str

    def read_new(self) -> list[tuple[str, float | None, float]]:
        raise NotImplementedError

    def count(self) -> int:
        raise NotImplementedError


class FileSinkReader(SinkReader):
    def __init__(self, tail: FileTail) -> None:
        self.name = "file"
        self.tail = tail
        self._parsed = 0
        self._handle: Any = None

    def count(self) -> int:
        return self.tail.lines

    def read_new(self) -> list[tuple[str, float | None, float]]:
        end = self.tail.complete_offset()
        if end <= self._parsed:
            return []
        if self._handle is None:
            self._handle = open(self.tail.path, "rb")  # noqa: SIM115
        self._handle.seek(self._parsed)
        data = self._handle.read(end - self._parsed)
        out = []
        position = self._parsed
        for line in data.split(b"\n")[:-1]:
            position += len(line) + 1
            arrived = self.tail.arrival(position)
            match = _ID.search(line)
            sent = _SENT.search(line)
            if match is None or arrived is None:
                continue
            out.append((match.group(1).decode(), float(sent.group(1)) if sent else None, arrived))
        self._parsed = end
        return out


class RsyslogReader(SinkReader):
    """rsyslogd's output (`<timegenerated> <msg>` lines): the receive time is rsyslog's own."""

    def __init__(self, path: Path) -> None:
        self.name = "syslog"
        self.path = path
        self._parsed = 0
        self._handle: Any = None
        self.lines = 0

    def count(self) -> int:
        return self.lines

    def read_new(self) -> list[tuple[str, float | None, float]]:
        if self._handle is None:
            try:
                self._handle = open(self.path, "rb")  # noqa: SIM115
            except FileNotFoundError:
                return []
        self._handle.seek(self._parsed)
        data = self._handle.read()
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            return []
        self._parsed += cut
        out = []
        for line in data[:cut].split(b"\n")[:-1]:
            self.lines += 1
            stamp, _, _msg = line.partition(b" ")
            match = _ID.search(line)
            sent = _SENT.search(line)
            if match is None:
                continue
            try:
                arrived = datetime.fromisoformat(stamp.decode()).timestamp()
            except ValueError:
                continue
            out.append((match.group(1).decode(), float(sent.group(1)) if sent else None, arrived))
        return out


class StandinReader(SinkReader):
    """A recording stand-in's `/_bench/arrivals`, read from where the last read stopped."""

    def __init__(self, name: str, url: str) -> None:
        self.name = name
        self.url = url
        self._cursor = 0
        parts = urlsplit(url)
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 80
        self._connection: http.client.HTTPConnection | None = None
        self.duplicates = 0

    def _get(self, path: str) -> Any:
        for attempt in (1, 2):
            if self._connection is None:
                self._connection = http.client.HTTPConnection(self._host, self._port, timeout=120)
            try:
                self._connection.request("GET", path)
                response = self._connection.getresponse()
                body = response.read()
                if response.status != 200:
                    raise RuntimeError(f"{self.name}: GET {path}: HTTP {response.status}")
                return json.loads(body)
            except (OSError, http.client.HTTPException):
                self._connection.close()
                self._connection = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def count(self) -> int:
        progress = self._get("/_bench/progress")
        self.duplicates = int(progress.get("duplicates") or 0)
        return int(progress["count"])

    def read_new(self) -> list[tuple[str, float | None, float]]:
        answer = self._get("/_bench/arrivals?" + urlencode({"from": self._cursor, "forget": 1}))
        arrivals = answer["arrivals"]
        self._cursor += len(arrivals)
        return [(str(a[0]), a[1], float(a[2])) for a in arrivals if a[0] is not None]

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


# ------------------------------------------------------------------------------------------
# The ledger: what arrived where, against what was acked


def parse_id(ident: str) -> tuple[str, int, str] | None:
    """`pl.<tag>.<sender>.<batch>.<index>.<sev>` -> (tag, key, severity letter); key packs
    (sender, batch, index) into one int."""
    parts = ident.split(".")
    if len(parts) != 6 or parts[0] != "pl":
        return None
    try:
        sender, batch, index = int(parts[2]), int(parts[3]), int(parts[4])
    except ValueError:
        return None
    return parts[1], (sender << 44) | (batch << 16) | index, parts[5]


def batch_of(key: int) -> tuple[int, int]:
    return key >> 44, (key >> 16) & ((1 << 28) - 1)


class Ledger:
    """Per tag and sink, the first arrival of each event; duplicates and foreign ids counted."""

    def __init__(self, sinks: Sequence[str]) -> None:
        self.sinks = list(sinks)
        self.arrived: dict[str, dict[str, dict[int, float]]] = defaultdict(lambda: {s: {} for s in self.sinks})
        self.sent: dict[str, dict[int, float]] = defaultdict(dict)
        self.severity: dict[str, dict[int, str]] = defaultdict(dict)
        self.duplicates: dict[str, Counter[str]] = defaultdict(Counter)
        self.foreign: Counter[str] = Counter()
        self.no_sent_at: Counter[str] = Counter()

    def add(self, sink: str, arrivals: Iterable[tuple[str, float | None, float]]) -> None:
        for ident, sent, arrived in arrivals:
            parsed = parse_id(ident)
            if parsed is None:
                self.foreign[sink] += 1
                continue
            tag, key, letter = parsed
            seen = self.arrived[tag][sink]
            if key in seen:
                self.duplicates[tag][sink] += 1
                continue
            seen[key] = arrived
            if sent is None:
                self.no_sent_at[sink] += 1
            elif key not in self.sent[tag]:
                self.sent[tag][key] = sent
                self.severity[tag][key] = letter

    def check(self, tag: str, batches: Sequence[dict[str, Any]]) -> dict[str, dict[str, int]]:
        """Per sink: events expected (acked), missing, duplicates, unexpected (arrived from a
        batch that was not answered 200)."""
        expected = {(b["s"], b["b"]): b["n"] for b in batches if b["st"] == 200}
        total = sum(expected.values())
        out = {}
        for sink in self.sinks:
            per_batch: Counter[tuple[int, int]] = Counter(batch_of(k) for k in self.arrived[tag][sink])
            missing = sum(max(0, n - per_batch.get(b, 0)) for b, n in expected.items())
            unexpected = sum(c for b, c in per_batch.items() if b not in expected)
            out[sink] = {"expected": total, "arrived": total - missing, "missing": missing,
                         "duplicates": self.duplicates[tag][sink], "unexpected": unexpected}
        return out

    def complete(self, tag: str, expected_events: int) -> bool:
        return all(len(self.arrived[tag][s]) >= expected_events for s in self.sinks)

    def latencies(self, tag: str, sink: str | None) -> dict[str, list[float]]:
        """End-to-end latency (seconds) per severity name (and "all"); sink None: per event the
        last of its arrivals over every sink (only events every sink has)."""
        out: dict[str, list[float]] = defaultdict(list)
        sent = self.sent[tag]
        severity = self.severity[tag]
        if sink is not None:
            for key, arrived in self.arrived[tag][sink].items():
                s = sent.get(key)
                if s is not None:
                    latency = arrived - s
                    out[SEVERITIES.get(severity[key], "unknown")].append(latency)
                    out["all"].append(latency)
            return out
        maps = [self.arrived[tag][s] for s in self.sinks]
        for key, s in sent.items():
            last = 0.0
            for m in maps:
                a = m.get(key)
                if a is None:
                    break
                last = max(last, a)
            else:
                out[SEVERITIES.get(severity[key], "unknown")].append(last - s)
                out["all"].append(last - s)
        return out

    def last_arrival(self, tag: str, sink: str | None = None) -> float | None:
        sinks = [sink] if sink else self.sinks
        values = [max(self.arrived[tag][s].values()) for s in sinks if self.arrived[tag][s]]
        return max(values) if values else None

    def first_arrival(self, tag: str, sink: str) -> float | None:
        values = self.arrived[tag][sink]
        return min(values.values()) if values else None

    def drop(self, tag: str) -> None:
        for table in (self.arrived, self.sent, self.severity, self.duplicates):
            table.pop(tag, None)


# ------------------------------------------------------------------------------------------
# The monitor: file tails, and RSS/CPU samples of every process


class Monitor(threading.Thread):
    def __init__(self, processes: Processes, tails: Sequence[FileTail], sample_seconds: float = SAMPLE_SECONDS) -> None:
        super().__init__(daemon=True, name="monitor")
        self.processes = processes
        self.sample_seconds = sample_seconds
        self.tails = list(tails)
        self.samples: list[tuple[float, dict[str, tuple[int, float | None]]]] = []
        self.busy: list[tuple[float, float, float]] = []
        self._halt = threading.Event()
        self.error: BaseException | None = None

    def add_tail(self, tail: FileTail) -> None:
        self.tails.append(tail)

    def run(self) -> None:
        next_sample = 0.0
        try:
            while not self._halt.is_set():
                now = time.time()
                for tail in self.tails:
                    tail.poll(now)
                if now >= next_sample:
                    next_sample = now + self.sample_seconds
                    self.sample(now)
                self._halt.wait(TAIL_SECONDS)
        except BaseException as exc:  # reported by the main thread
            self.error = exc

    def sample(self, now: float) -> None:
        sample = {}
        for proc in self.processes.live():
            status = proc_status(proc.pid)
            if status:
                proc.last_status = status
                cpu = cpu_or_none(proc.pid)
                proc.last_cpu = cpu if cpu is not None else proc.last_cpu
                sample[f"{proc.name}#{proc.pid}"] = (status.get("VmRSS", 0), cpu)
        self.samples.append((now, sample))
        busy, total = machine_busy()
        self.busy.append((now, busy, total))

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive():
            self.join(5)


def cpu_snapshot(processes: Processes) -> dict[str, float]:
    out = {}
    for proc in processes.live():
        cpu = cpu_or_none(proc.pid)
        if cpu is not None:
            out[f"{proc.name}#{proc.pid}"] = cpu
    return out


def peak_rss_between(samples: Sequence[tuple[float, dict[str, tuple[int, float | None]]]], start: float,
                     end: float) -> dict[str, float]:
    """The highest VmRSS sampled per process in [start, end], MB."""
    out: dict[str, float] = {}
    for t, sample in samples:
        if start <= t <= end:
            for name, (rss, _) in sample.items():
                out[name] = max(out.get(name, 0.0), rss / 1024)
    return {k: round(v, 1) for k, v in out.items()}


def hwm_snapshot(processes: Processes) -> dict[str, float]:
    """VmHWM (peak RSS since the process started), MB."""
    out = {}
    for proc in processes.live():
        status = proc_status(proc.pid)
        if status.get("VmHWM"):
            out[f"{proc.name}#{proc.pid}"] = round(status["VmHWM"] / 1024, 1)
    return out


def display_name(name: str) -> str:
    return name.split("#", 1)[0]


# ------------------------------------------------------------------------------------------
# Delivery: wait until every sink has every acked event of some tags


@dataclass
class Readers:
    readers: list[SinkReader]
    ledger: Ledger

    def update(self) -> None:
        for reader in self.readers:
            self.ledger.add(reader.name, reader.read_new())

    def counts(self) -> dict[str, int]:
        return {reader.name: reader.count() for reader in self.readers}

    def close(self) -> None:
        for reader in self.readers:
            if isinstance(reader, StandinReader):
                reader.close()


def wait_delivered(readers: Readers, expected: dict[str, int], timeout: float, check_alive: Any = None,
                   interval: float = 0.5) -> tuple[bool, float]:
    """Until every sink has `expected[tag]` distinct events of each tag (or `timeout`). Returns
    (complete, seconds waited)."""
    started = time.monotonic()
    last_report = started
    while True:
        readers.update()
        if all(readers.ledger.complete(tag, n) for tag, n in expected.items()):
            return True, time.monotonic() - started
        now = time.monotonic()
        if check_alive is not None:
            check_alive()
        if now - started > timeout:
            return False, now - started
        if now - last_report > 15:
            last_report = now
            have = {tag: {s: len(readers.ledger.arrived[tag][s]) for s in readers.ledger.sinks} for tag in expected}
            log(f"  waiting for the sinks: {have} of {expected}")
        time.sleep(interval)


# ------------------------------------------------------------------------------------------
# The sinks' own ceilings: what each sink takes in from a minimal client, with the payloads
# siemgate's own sink code builds


def bench_events(n: int, seed: int = 7) -> list[Any]:
    """n NormalizedEvents of the benchmark's shape (ids `pl.ceiling...`, `bench_sent_at`)."""
    from siemgate.forwarders.normalize import Normalizer
    from siemgate.record import canonical_severity, make_record
    from siemgate.simulate import make_events

    normalizer = Normalizer()
    now = time.time()
    received = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    out = []
    for i, event in enumerate(make_events(n, "high=1,medium=3,low=6", seed)):
        letter = str(event.get("severity", "u"))[0]
        event["id"] = f"pl.ceiling.0.{i // 500}.{i % 500}.{letter}"
        event["bench_sent_at"] = now
        record = make_record(prefix="siemgate", event=event, kind="event", integration="bench",
                             severity=canonical_severity(event.get("severity")), event_id=event["id"],
                             received_at=received, batch=f"b{i // 500}", seq=i % 500, peer="127.0.0.1")
        out.append(normalizer.normalize(record.value))
    return out


def _sink_objects(sinks: SinkSet, hec_ack: bool) -> dict[str, Any]:
    from siemgate.config import parse_config
    from siemgate.forwarders.sinks.registry import create_sink

    text = json.dumps({"integrations": [{"name": "bench", "auth": {"header": HEADER_NAME, "values": ["x"]}}],
                       "bus": {"type": "embedded", "path": "/nonexistent/bench.db"},
                       "sinks": sinks_config(sinks, hec_ack=hec_ack)})
    config = parse_config(text, {})
    return {s.name: create_sink(s.settings) for s in config.sinks}


def measure_sink_ceilings(processes: Processes, work: Path, n: int, *, hec_ack: bool,
                          batch: int = 500) -> dict[str, Any]:
    """Fresh sinks; each takes `n` events, pre-encoded by siemgate's own sink code in batches of
    `batch`, from a minimal client with one request in flight: events / (first send to last
    arrival), arrival as the pipeline measures it."""
    from siemgate.forwarders.sinks.file import to_json_line
    from siemgate.forwarders.sinks.http import chunks_by_size, gzip_bytes
    from siemgate.forwarders.sinks.syslog import build_encoder, octet_counted_stream

    directory = work / "ceilings"
    directory.mkdir(exist_ok=True)
    sinks = start_sinks(processes, directory, hec_ack=hec_ack)
    try:
        objects = _sink_objects(sinks, hec_ack)
        log(f"sink ceilings: encoding {n:,} events with siemgate's sink code")
        events = bench_events(n)
        batches = [events[i:i + batch] for i in range(0, n, batch)]
        results: dict[str, Any] = {}

        # file: the sink's line format, written and fsync'd per batch (as `fsync: batch`)
        lines = [b"".join(to_json_line(e) for e in chunk) for chunk in batches]
        started = time.time()
        with open(sinks.file_path, "ab") as f:
            for data in lines:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        elapsed = time.time() - started
        results["file"] = {"events": n, "seconds": round(elapsed, 3), "events_per_second": round(n / elapsed, 1),
                           "how": "the sink's NDJSON lines written and fsync'd per batch by one thread"}

        # syslog: RFC 5424, octet counting, one TCP connection, as the sink frames it
        encode = build_encoder(objects["syslog"].settings, "rfc5424")
        streams = [octet_counted_stream([encode(e) for e in chunk]) for chunk in batches]
        reader = RsyslogReader(sinks.rsyslog_received)
        ledger = Ledger(["syslog"])
        started = time.time()
        with socket.create_connection(("127.0.0.1", sinks.syslog_port)) as sock:
            for data in streams:
                sock.sendall(data)
            ok, _ = _wait_count(reader, ledger, "ceiling", n, 120)
        last = ledger.last_arrival("ceiling", "syslog")
        results["syslog"] = _ceiling_row(n, started, last, ok, "rsyslogd imtcp -> omfile, one TCP connection")

        # splunk_hec and elasticsearch: the sinks' own bodies, gzip'd, one request in flight
        hec = objects["splunk-hec"]
        hec_bodies = []
        for chunk in batches:
            payloads = [hec.encode(e) for e in chunk]
            for part in chunks_by_size([len(p) for p in payloads], hec.settings.batch.max_bytes):
                hec_bodies.append(gzip_bytes(b"".join(payloads[i] for i in part)))
        ingested = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        es = objects["elasticsearch"]
        es_bodies = []
        for chunk in batches:
            payloads = [es.encode(e, ingested) for e in chunk]
            for part in chunks_by_size([len(p) for p in payloads], es.settings.batch.max_bytes):
                es_bodies.append(gzip_bytes(b"".join(payloads[i] for i in part)))
        channel = "7b2f9a4e-1c3d-4e5f-8a9b-0c1d2e3f4a5b"
        hec_headers = {"Authorization": f"Splunk {HEC_TOKEN}", "X-Splunk-Request-Channel": channel,
                       "Content-Type": "application/json", "Content-Encoding": "gzip"}
        from siemgate.forwarders.sinks.elasticsearch import FILTER_PATH

        es_headers = {"Content-Type": "application/x-ndjson", "Accept": "application/json", "Content-Encoding": "gzip"}
        for name, url, path, bodies, headers in (
            ("splunk-hec", sinks.hec_url, "/services/collector/event", hec_bodies, hec_headers),
            ("elasticsearch", sinks.es_url, f"/{DATA_STREAM}/_bulk?" + urlencode({"filter_path": FILTER_PATH}),
             es_bodies, es_headers),
        ):
            reader_http = StandinReader(name, url)
            ledger = Ledger([name])
            started = time.time()
            ack_ids = _blast(url, path, bodies, headers)
            if name == "splunk-hec" and hec_ack:
                _poll_hec_acks(url, channel, ack_ids)
            ok, _ = _wait_count(reader_http, ledger, "ceiling", n, 120)
            reader_http.close()
            last = ledger.last_arrival("ceiling", name)
            results[name] = _ceiling_row(n, started, last, ok, f"pre-built gzip'd requests ({len(bodies)}), "
                                                              "http.client, one request in flight")
        return results
    finally:
        for proc in sinks.procs.values():
            processes.stop(proc)


def _ceiling_row(n: int, started: float, last: float | None, ok: bool, how: str) -> dict[str, Any]:
    if last is None or not ok:
        return {"events": n, "complete": False, "how": how}
    elapsed = last - started
    return {"events": n, "seconds": round(elapsed, 3), "events_per_second": round(n / elapsed, 1) if elapsed else None,
            "complete": True, "how": how}


def _wait_count(reader: SinkReader, ledger: Ledger, tag: str, n: int, timeout: float) -> tuple[bool, float]:
    return wait_delivered(Readers([reader], ledger), {tag: n}, timeout, interval=0.05)


def _blast(url: str, path: str, bodies: Sequence[bytes], headers: dict[str, str]) -> list[int]:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=120)
    ack_ids = []
    try:
        for body in bodies:
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
            answer = response.read()
            if response.status != 200:
                raise RuntimeError(f"ceiling: POST {path}: HTTP {response.status}: {answer[:300]!r}")
            if b'"ackId"' in answer:
                ack_ids.append(int(json.loads(answer)["ackId"]))
            elif b'"errors":true' in answer:
                raise RuntimeError(f"ceiling: POST {path}: item errors: {answer[:300]!r}")
    finally:
        connection.close()
    return ack_ids


def _poll_hec_acks(url: str, channel: str, ack_ids: list[int], timeout: float = 60) -> None:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=60)
    waiting = set(ack_ids)
    deadline = time.monotonic() + timeout
    try:
        while waiting and time.monotonic() < deadline:
            connection.request("POST", "/services/collector/ack?" + urlencode({"channel": channel}),
                               body=json.dumps({"acks": sorted(waiting)}).encode(),
                               headers={"Authorization": f"Splunk {HEC_TOKEN}", "Content-Type": "application/json"})
            response = connection.getresponse()
            answer = json.loads(response.read())
            waiting -= {int(k) for k, v in (answer.get("acks") or {}).items() if v is True}
            if waiting:
                time.sleep(0.01)
    finally:
        connection.close()


def measure_ingest_ceiling(processes: Processes, work: Path, *, duration: float, senders: int) -> dict[str, Any]:
    """bench/ceiling.py (a bare Starlette endpoint on siemgate's uvicorn settings) under the same
    senders: the ack latency of one sequential sender, and the events/s of `senders`."""
    port = free_port()
    proc = processes.start("ceiling endpoint", "ceiling",
                           [sys.executable, str(BENCH_DIR / "ceiling.py"), "--host", "127.0.0.1", "--port", str(port)],
                           work / "ceiling.log")
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http_ok(proc, base + "/readyz", 30)
        url = base + "/webhook/bench"
        cpu0 = cpu_or_none(proc.pid) or 0.0
        seq = start_sender(processes, work, url, "ceilseq", duration=duration)
        seq.finish(processes, duration + 120)
        cpu1 = cpu_or_none(proc.pid) or 0.0
        conc = start_sender(processes, work, url, "ceilconc", senders=senders, duration=max(2.0, duration / 2))
        conc.finish(processes, duration + 120)
        sequential = ack_report(seq)
        sequential["endpoint_cpu_seconds"] = round(cpu1 - cpu0, 3)
        return {"endpoint": "bench/ceiling.py (Starlette, uvicorn: siemgate's settings)",
                "sequential": sequential, f"concurrent_{senders}": ack_report(conc)}
    finally:
        processes.stop(proc)


# ------------------------------------------------------------------------------------------
# Profiling


def start_profiles(processes: Processes, procs: Sequence[Proc], out_dir: Path, stamp: str, label: str,
                   rate: int = 100) -> list[tuple[Proc, Path, subprocess.Popen[bytes]]]:
    """py-spy on each siemgate process (collapsed stacks, idle left out) until stopped."""
    py_spy = Path(sys.executable).with_name("py-spy")
    out = []
    for proc in procs:
        slug = proc.name.replace("siemgate ", "").replace(" --sink ", "-").replace(" ", "-")
        path = out_dir / f"pipeline-profile-{stamp}-{label}-{slug}.collapsed.txt"
        sampler = subprocess.Popen([str(py_spy), "record", "--format", "raw", "--nolineno", "--rate", str(rate),
                                    "-o", str(path), "-p", str(proc.pid)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        out.append((proc, path, sampler))
    return out


def stop_profiles(samplers: Sequence[tuple[Proc, Path, subprocess.Popen[bytes]]]) -> dict[str, Any]:
    """Stop py-spy and summarize: samples whose innermost frame is an executor thread waiting for
    work are idle and left out; those whose innermost Python frame is the event loop's run (uvloop,
    C code: I/O or waiting in epoll) are counted apart."""
    results = {}
    for proc, path, sampler in samplers:
        if sampler.poll() is None:
            sampler.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        try:
            _, err = sampler.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            sampler.kill()
            _, err = sampler.communicate()
        if not path.exists():
            results[proc.name] = {"error": (err or b"").decode(errors="replace")[-500:]}
            continue
        busy_lines, idle, loop, total = [], 0, 0, 0
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not count_text.isdigit():
                continue
            count = int(count_text)
            total += count
            leaf = stack.rsplit(";", 1)[-1]
            if leaf.startswith("_worker (concurrent/futures/thread.py"):
                idle += count
            elif leaf.startswith("Runner.run (asyncio/runners.py") or leaf.startswith("run (uvloop"):
                loop += count
            else:
                busy_lines.append(line)
        busy = path.with_suffix(".busy.txt")
        busy.write_text("\n".join(busy_lines) + "\n")
        summary = summarize_collapsed(busy, top=15)
        busy.unlink()
        results[proc.name] = {
            "file": str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path),
            "samples": total, "idle_executor_samples": idle, "event_loop_c_samples": loop,
            "python_samples": summary["samples"],
            "top_self": summary["top_self"][:12], "top_inclusive": summary["top_inclusive"][:12],
            "self_by_area": summary["self_by_area"][:10],
        }
    return results


# ------------------------------------------------------------------------------------------
# Charts


def bins(times: Iterable[float], origin: float, width: float) -> dict[int, int]:
    out: Counter[int] = Counter()
    for t in times:
        out[int((t - origin) // width)] += 1
    return out


def binned_percentile(pairs: Iterable[tuple[float, float]], origin: float, width: float,
                      p: float) -> tuple[list[float], list[float]]:
    """(bin start times, p-th percentile of the values per bin) of (time, value) pairs."""
    grouped: dict[int, list[float]] = defaultdict(list)
    for t, v in pairs:
        grouped[int((t - origin) // width)].append(v)
    xs, ys = [], []
    for b in sorted(grouped):
        values = sorted(grouped[b])
        v = percentile(values, p)
        if v is not None:
            xs.append(b * width)
            ys.append(v)
    return xs, ys


def machine_summary() -> dict[str, Any]:
    info = machine_info("bench/pipeline_sender.py")
    info.pop("wrk", None)
    return info


def versions() -> dict[str, Any]:
    out = {}
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out["rsyslogd"] = subprocess.run([RSYSLOGD, "-v"], capture_output=True, text=True,
                                         timeout=5).stdout.splitlines()[0]
    return out


def iter_pairs(ledger: Ledger, tag: str, sink: str) -> Iterator[tuple[float, float, str]]:
    """(arrival time, latency s, severity) of each event of a tag in a sink."""
    sent = ledger.sent[tag]
    severity = ledger.severity[tag]
    for key, arrived in ledger.arrived[tag][sink].items():
        s = sent.get(key)
        if s is not None:
            yield arrived, arrived - s, severity.get(key, "u")

