"""The HTTP sinks of bench/forward.py (issue 5): one `siemgate forward` process draining the
pre-filled topic into a protocol stand-in, next to the stand-in's own ceiling and, for
Elasticsearch, next to rsyslog's imkafka -> omelasticsearch.

    Tansu <- relay <- siemgate forward --HTTP, gzip--> stand-in (its own process)
    bench/http_ceiling.py (pre-built gzip'd requests) --> a fresh stand-in (its ceiling)
    Tansu <- relay <- rsyslogd imkafka -> omelasticsearch --HTTP--> a fresh Elasticsearch stand-in

Cases (`CASES`): `splunk_hec` (gzip), `splunk_hec_ack` (gzip, `ack: true`), `elasticsearch`
(gzip, `create` into the data stream `logs-siemgate.alerts-default`, which the stand-in's
built-in `logs-*-*` template creates), `sentinel` (gzip, the ASIM rows of the stream
`Custom-SiemgateAlerts`) and `sentinel_ocsf` (gzip, `event_format: ocsf`, the stream
`Custom-SiemgateOcsf`): the Logs Ingestion API with an Entra ID token, the DCR declared by
deploy/azure/sentinel.json (every row checked against its stream's columns, as Azure does).
Each measurement gets a fresh stand-in process that keeps no event bodies: the Elasticsearch
one runs as `siemgate standin elasticsearch --no-keep-sources` (it keeps each document's
`_id`), the HEC one as bench/hec_standin.py `--no-keep-events`, the Sentinel one as
bench/sentinel_standin.py `--no-keep-rows` (the stock stand-ins plus a list of the indexed ids
and a cheap progress endpoint).

Timing: the stand-in is polled every 20 ms (HEC `/_bench/progress`, Elasticsearch
`/_standin/state`: both cheap); the window runs from the first poll that sees documents to
the one that sees all of them, and the rate counts the documents indexed inside it. CPU of
the forwarder (or rsyslogd), the stand-in, the relay and Tansu: from /proc at the same two
polls. Checks after each run, outside the timing: HEC, every prefilled id among the indexed
ids (and no other; duplicates counted) and the stand-in's `indexed_total`; Sentinel, the same
with the rows' `EventId` / `metadata_uid`, and no value nulled for its declared type; Elasticsearch,
the data stream's document count (`/_standin/state` and `GET /<ds>/_count`) and a `_count`
with an `ids` query of every prefilled id (equal counts: the set of `_id`s is complete),
plus the item statuses (409: duplicates).

The ceiling: the same events, normalized and encoded by the sink's own code
(`Sink.encode`, `chunks_by_size`, `gzip_bytes`) in batches of the forwarder's
`batch.max_events`, written to a file before the timing; bench/http_ceiling.py (its own
process) POSTs them one request in flight on a keep-alive connection.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlencode, urlsplit

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
for _path in (str(ROOT), str(BENCH_DIR)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from forward_peer import RSYSLOG_MODULES, RSYSLOGD, Prefilled, iter_records  # noqa: E402
from ingest import log, machine_busy, proc_cpu_seconds, tail  # noqa: E402
from ingest import stop as stop_process  # noqa: E402

TOKEN: Final = "bench-hec-token"
AZURE_TENANT: Final = "be0c0b7e-0000-4000-8000-0000000000aa"
AZURE_CLIENT: Final = "be0c0b7e-0000-4000-8000-0000000000be"
AZURE_SECRET: Final = "bench-azure-secret"
AZURE_DCR: Final = "dcr-be0cbe0cbe0cbe0cbe0cbe0cbe0cbe0c"
AZURE_TEMPLATE: Final = ROOT / "deploy" / "azure" / "sentinel.json"
DATA_STREAM: Final = "logs-siemgate.alerts-default"
POLL_SECONDS: Final = 0.02
TARGET_EVENTS_PER_SECOND: Final = 30_000
BODY_HEADER: Final = ">II"
# Set by bench/forward.py when it is interrupted: the measurement in progress stops (and its processes).
STOP = threading.Event()


@dataclass(frozen=True)
class Case:
    name: str
    kind: str  # the sink type
    label: str
    ack: bool = False
    event_format: str | None = None  # sentinel: asim (None) or ocsf


CASES: Final[dict[str, tuple[Case, ...]]] = {
    "splunk_hec": (Case("splunk_hec", "splunk_hec", "splunk_hec (gzip)"),
                   Case("splunk_hec_ack", "splunk_hec", "splunk_hec (gzip, ack: true)", ack=True)),
    "elasticsearch": (Case("elasticsearch", "elasticsearch", "elasticsearch (gzip, data stream)"),),
    "sentinel": (Case("sentinel", "sentinel", "sentinel (gzip, ASIM rows)"),),
    "sentinel_ocsf": (Case("sentinel_ocsf", "sentinel", "sentinel (gzip, OCSF rows)", event_format="ocsf"),),
}


# ------------------------------------------------------------------------------------------
# Stand-ins


class StandIn:
    """A stand-in process and a keep-alive client to it."""

    def __init__(self, kind: str, process: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
        self.kind = kind
        self.process = process
        self.url = url
        self.log_path = log_path
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", int(parts.port or 80)
        self._connection: http.client.HTTPConnection | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: Mapping[str, str] | None = None) -> tuple[int, bytes]:
        for attempt in (1, 2):
            if self._connection is None:
                self._connection = http.client.HTTPConnection(self.host, self.port, timeout=120)
            try:
                self._connection.request(method, path, body=body, headers=dict(headers or {}))
                response = self._connection.getresponse()
                return response.status, response.read()
            except (OSError, http.client.HTTPException):
                self._connection.close()
                self._connection = None
                if attempt == 2 or self.process.poll() is not None:
                    raise
        raise AssertionError("unreachable")

    def json(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        status, answer = self.request(method, path, data, {"Content-Type": "application/json"} if data else None)
        if status != 200:
            raise RuntimeError(f"{self.kind} stand-in: {method} {path}: HTTP {status}: {answer[:300]!r}")
        return json.loads(answer)

    def indexed(self) -> int:
        """Events (HEC) or documents in the data stream (Elasticsearch) so far."""
        if self.kind in ("splunk_hec", "sentinel"):
            return int(self.json("GET", "/_bench/progress")["indexed"])
        return int(self.json("GET", "/_standin/state")["targets"].get(DATA_STREAM, 0))

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


@contextlib.contextmanager
def standin_process(kind: str, work: Path, *, ack: bool = False, startup: float = 30.0) -> Iterator[StandIn]:
    """A fresh stand-in in its own process (see the module docstring), stopped on exit."""
    if kind == "splunk_hec":
        command = [sys.executable, str(BENCH_DIR / "hec_standin.py"), "--port", "0",
                   "--token", TOKEN + (":ack" if ack else ""), "--no-keep-events"]
    elif kind == "sentinel":
        command = [sys.executable, str(BENCH_DIR / "sentinel_standin.py"), "--port", "0",
                   "--tenant", AZURE_TENANT, "--client", f"{AZURE_CLIENT}:{AZURE_SECRET}", "--dcr", AZURE_DCR,
                   "--dcr-template", str(AZURE_TEMPLATE), "--no-keep-rows"]
    else:
        command = [sys.executable, "-m", "siemgate", "standin", "elasticsearch", "--port", "0", "--no-keep-sources"]
    log_path = work / f"standin-{kind}-{uuid.uuid4().hex[:6]}.log"
    with open(log_path, "wb") as err:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, cwd=ROOT)
    standin: StandIn | None = None
    try:
        assert process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            if not selector.select(startup):
                raise RuntimeError(f"the {kind} stand-in printed no URL within {startup:g} s:\n{tail(log_path)}")
        url = process.stdout.readline().decode().strip()
        if not url.startswith("http"):
            raise RuntimeError(f"the {kind} stand-in did not start:\n{tail(log_path)}")
        standin = StandIn(kind, process, url, log_path)
        yield standin
    finally:
        if standin is not None:
            standin.close()
        stop_process(process, f"{kind} stand-in", 30)
        if process.stdout is not None:
            process.stdout.close()


# ------------------------------------------------------------------------------------------
# Configuration and pre-built requests


def sink_yaml(case: Case, url: str, batch: int, name: str) -> str:
    if case.kind == "splunk_hec":
        return f"""
  - name: {name}
    type: splunk_hec
    url: {url}
    token: {TOKEN}
    gzip: true
    ack: {str(case.ack).lower()}
    batch: {{max_events: {batch}}}
"""
    if case.kind == "sentinel":
        return f"""
  - name: {name}
    type: sentinel
    endpoint: {url}
    authority_host: {url}
    dcr_immutable_id: {AZURE_DCR}
    tenant_id: "{AZURE_TENANT}"
    client_id: {AZURE_CLIENT}
    client_secret: {AZURE_SECRET}
    event_format: {case.event_format or "asim"}
    gzip: true
    batch: {{max_events: {batch}}}
"""
    return f"""
  - name: {name}
    type: elasticsearch
    url: {url}
    data_stream: {DATA_STREAM}
    gzip: true
    batch: {{max_events: {batch}}}
"""


def config_text(bootstrap: str, prefix: str, sinks: str) -> str:
    """A `siemgate forward` config: the Kafka bus of bench/forward.py, these sinks."""
    return f"""
log_level: warning
bus:
  type: kafka
  kafka: {{bootstrap_servers: "{bootstrap}", topic_prefix: {prefix}, idempotence: false,
          topics: {{partitions: 1}}}}
# Tansu holds a fetch for its whole max wait even when records are there (Kafka does not).
forward: {{listen: {{host: 127.0.0.1, port: 0}}, fetch_max_wait_ms: 20}}
sinks:{sinks}"""


def build_requests(case: Case, n: int, seed: int, batch: int) -> tuple[list[tuple[bytes, int]], dict[str, Any]]:
    """The gzip'd request bodies the forwarder would send for the prefilled records: each
    batch of `batch` events normalized and encoded by the sink's own code, cut by its
    `batch.max_bytes`, gzip'd at its level. Returns (bodies with their event counts, facts)."""
    from siemgate.config import parse_config
    from siemgate.forwarders.normalize import Normalizer
    from siemgate.forwarders.sinks.http import chunks_by_size, gzip_bytes
    from siemgate.forwarders.sinks.registry import create_sink

    config = parse_config(config_text("127.0.0.1:9092", "bench", sink_yaml(case, "http://127.0.0.1:1", batch, "c")),
                          {})
    settings = config.sinks[0].settings
    sink: Any = create_sink(settings)
    normalizer = Normalizer(config.normalize)
    fields = sink.normalized_fields
    ingested = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    bodies: list[tuple[bytes, int]] = []
    raw_bytes = 0
    started = time.process_time()

    def flush(values: list[bytes]) -> None:
        nonlocal raw_bytes
        events = [normalizer.normalize(v, fields) for v in values]
        lines = [sink.encode(e, ingested) if case.kind == "elasticsearch" else sink.encode(e) for e in events]
        if case.kind == "sentinel":  # as SentinelSink.send: a JSON array per call, `,` counted
            for chunk in chunks_by_size([len(line) + 1 for line in lines], settings.batch.max_bytes - 1):
                body = b"[" + b",".join(lines[i] for i in chunk) + b"]"
                raw_bytes += len(body)
                bodies.append((gzip_bytes(body), len(chunk)))
            return
        for chunk in chunks_by_size([len(line) for line in lines], settings.batch.max_bytes):
            body = b"".join(lines[i] for i in chunk)
            raw_bytes += len(body)
            bodies.append((gzip_bytes(body), len(chunk)))

    values: list[bytes] = []
    for record, _severity in iter_records(n, seed=seed):
        values.append(record.value)
        if len(values) == batch:
            flush(values)
            values = []
    if values:
        flush(values)
    return bodies, {"requests": len(bodies), "raw_bytes": raw_bytes, "gzip_bytes": sum(len(b) for b, _ in bodies),
                    "build_cpu_seconds": round(time.process_time() - started, 2)}


def write_bodies(path: Path, bodies: list[tuple[bytes, int]]) -> None:
    import struct

    header = struct.Struct(BODY_HEADER)
    with open(path, "wb") as f:
        for body, events in bodies:
            f.write(header.pack(len(body), events))
            f.write(body)


def ceiling_request(case: Case, standin: StandIn) -> tuple[str, list[str]]:
    """The path and headers the sink sends (bench/http_ceiling.py adds Content-Encoding)."""
    if case.kind == "sentinel":
        from siemgate.forwarders.sinks.sentinel import API_VERSION, STREAMS

        status, answer = standin.request(
            "POST", f"/{AZURE_TENANT}/oauth2/v2.0/token",
            urlencode({"grant_type": "client_credentials", "client_id": AZURE_CLIENT, "client_secret": AZURE_SECRET,
                       "scope": "https://monitor.azure.com/.default"}).encode(),
            {"Content-Type": "application/x-www-form-urlencoded"})
        if status != 200:
            raise RuntimeError(f"sentinel stand-in: no token: HTTP {status}: {answer[:300]!r}")
        token = json.loads(answer)["access_token"]
        stream = STREAMS[case.event_format or "asim"]
        return (f"/dataCollectionRules/{AZURE_DCR}/streams/{stream}?" + urlencode({"api-version": API_VERSION}),
                ["Content-Type: application/json", "Accept: application/json", f"Authorization: Bearer {token}",
                 "User-Agent: http_ceiling"])
    if case.kind == "splunk_hec":
        return "/services/collector/event", [f"Authorization: Splunk {TOKEN}", "Content-Type: application/json",
                                             "User-Agent: http_ceiling"]
    from siemgate.forwarders.sinks.elasticsearch import FILTER_PATH

    return (f"/{DATA_STREAM}/_bulk?" + urlencode({"filter_path": FILTER_PATH}),
            ["Content-Type: application/x-ndjson", "Accept: application/json", "User-Agent: http_ceiling"])


# ------------------------------------------------------------------------------------------
# Measuring


@dataclass
class Window:
    """From the first poll that saw documents to the one that saw all of them."""

    expected: int
    first_at: float | None = None
    complete_at: float | None = None
    count_first: int = 0
    count_last: int = 0
    last_change_at: float | None = None
    cpu_first: dict[str, float] = field(default_factory=dict)
    cpu_complete: dict[str, float] = field(default_factory=dict)
    busy_first: tuple[float, float] = (0.0, 0.0)
    busy_complete: tuple[float, float] = (0.0, 0.0)

    def summary(self, main: str) -> dict[str, Any]:
        complete = self.complete_at is not None
        end = self.complete_at if complete else self.last_change_at
        elapsed = (end - self.first_at) if end is not None and self.first_at is not None else 0.0
        counted = (self.count_last if not complete else self.expected) - self.count_first
        cpu = {name: round(self.cpu_complete[name] - self.cpu_first[name], 3)
               for name in self.cpu_complete if name in self.cpu_first}
        busy0, total0 = self.busy_first
        busy1, total1 = self.busy_complete
        main_cpu = cpu.get(main, 0.0)
        return {
            "events_per_second": round(counted / elapsed, 1) if elapsed > 0 else 0.0,
            "events_in_window": counted,
            "elapsed_seconds": round(elapsed, 3),
            "cpu_seconds": cpu,
            "cpu_us_per_event": round(main_cpu / counted * 1e6, 1) if counted > 0 else None,
            "cores": {name: round(value / elapsed, 2) for name, value in cpu.items()} if elapsed > 0 else {},
            "machine_busy_fraction": round((busy1 - busy0) / (total1 - total0), 3) if total1 > total0 else None,
            "complete": complete,
            "indexed_at_end_of_window": self.count_last,
        }


def _cpu(pids: Mapping[str, int]) -> dict[str, float]:
    cpu = {}
    for name, pid in pids.items():
        with contextlib.suppress(OSError):
            cpu[name] = proc_cpu_seconds(pid)
    return cpu


def watch(standin: StandIn, expected: int, pids: Mapping[str, int], timeout: float,
          process: subprocess.Popen[bytes], name: str, on_first: Callable[[], None] | None = None) -> Window:
    """Poll the stand-in until `expected` events are indexed, `timeout` passes or `process`
    dies. `on_first` is called once the first events arrived (after the window opened)."""
    window = Window(expected)
    deadline = time.monotonic() + timeout
    while True:
        count = standin.indexed()
        now = time.perf_counter()
        if count != window.count_last:
            window.last_change_at = now
        window.count_last = count
        if count > 0 and window.first_at is None:
            window.first_at, window.count_first = now, count
            window.cpu_first, window.busy_first = _cpu(pids), machine_busy()
            if on_first is not None:
                on_first()
        if count >= expected:
            window.complete_at = now
            window.cpu_complete, window.busy_complete = _cpu(pids), machine_busy()
            return window
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode} after {count:,} of {expected:,} events")
        if STOP.is_set():
            raise RuntimeError(f"{name}: interrupted")
        if time.monotonic() > deadline:
            log(f"{name}: timeout after {timeout:g} s with {count:,} of {expected:,} events")
            window.cpu_complete, window.busy_complete = _cpu(pids), machine_busy()
            return window
        time.sleep(POLL_SECONDS)


def check_standin(standin: StandIn, prefilled: Prefilled) -> dict[str, Any]:
    """Did every prefilled id arrive, once, and nothing else? (see the module docstring)"""
    expected = prefilled.severities
    if standin.kind == "sentinel":
        status, body = standin.request("GET", "/_bench/ids")
        ids = body.decode().split("\n") if status == 200 and body else []
        seen = Counter(ids)
        progress = standin.json("GET", "/_bench/progress")
        missing = sum(1 for i in expected if i not in seen)
        unexpected = sum(1 for i in seen if i not in expected)
        return {
            "method": "every ingested row's EventId / metadata_uid (bench/sentinel_standin.py /_bench/ids) against "
                      "the prefilled ids; values nulled for their declared column type",
            "ingested_total": progress["indexed"],
            "unique_ids": len(seen),
            "missing": missing,
            "unexpected": unexpected,
            "duplicates": sum(count - 1 for count in seen.values()),
            "type_errors": progress["type_errors"],
            "all_arrived": missing == 0 and unexpected == 0 and progress["type_errors"] == 0,
        }
    if standin.kind == "splunk_hec":
        status, body = standin.request("GET", "/_bench/ids")
        ids = body.decode().split("\n") if status == 200 and body else []
        seen = Counter(ids)
        state = standin.json("GET", "/_standin/state?events=false")
        statuses = Counter(str(r["status"]) for r in state["requests"] if r["path"] != "/services/collector/ack")
        missing = sum(1 for i in expected if i not in seen)
        unexpected = sum(1 for i in seen if i not in expected)
        duplicates = sum(count - 1 for count in seen.values())
        return {
            "method": "every indexed event's event.id (bench/hec_standin.py /_bench/ids) against the prefilled ids",
            "indexed_total": state["indexed_total"],
            "ids_recorded": len(ids),
            "unique_ids": len(seen),
            "missing": missing,
            "unexpected": unexpected,
            "duplicates": duplicates,
            "event_request_statuses": dict(statuses),
            "pending_acks": sum(len(v) for v in state["pending_acks"].values()),
            "all_arrived": missing == 0 and unexpected == 0 and state["indexed_total"] >= len(expected),
        }
    state = standin.json("GET", "/_standin/state")
    count = standin.json("GET", f"/{DATA_STREAM}/_count")["count"]
    by_ids = standin.json("POST", f"/{DATA_STREAM}/_count", {"query": {"ids": {"values": list(expected)}}})["count"]
    items = state["item_statuses"]
    return {
        "method": f"GET /{DATA_STREAM}/_count, and _count with an ids query of every prefilled id",
        "data_stream": DATA_STREAM in state["data_streams"],
        "documents": count,
        "documents_with_a_prefilled_id": by_ids,
        "missing": len(expected) - by_ids,
        "unexpected": count - by_ids,
        "item_statuses": items,
        "duplicates": int(items.get("409", 0)),
        "bulk_requests": state["bulk_requests"],
        "all_arrived": by_ids == len(expected) and count == len(expected) and DATA_STREAM in state["data_streams"],
    }


def py_spy() -> str:
    return shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))


class Profiler:
    """py-spy sampling a process into `profile` (collapsed stacks, idle excluded), from
    `start` (the window's opening: the forwarder's startup and imports stay out) to `stop`."""

    def __init__(self, profile: Path | None, pid: int, work: Path) -> None:
        self.profile = profile
        self.pid = pid
        self.work = work
        self.sampler: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if self.profile is None or self.sampler is not None:
            return
        with open(self.work / f"py-spy-{self.pid}.log", "wb") as log_file:
            self.sampler = subprocess.Popen(
                [py_spy(), "record", "--format", "raw", "--nolineno", "--rate", "250", "-o", str(self.profile),
                 "-p", str(self.pid)],
                stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def stop(self) -> None:
        sampler, self.sampler = self.sampler, None
        if sampler is None:
            return
        sampler.send_signal(signal.SIGINT)  # py-spy writes its samples and exits
        try:
            sampler.wait(30)
        except subprocess.TimeoutExpired:
            sampler.kill()
            sampler.wait()
        log(f"profile written to {self.profile}")


_IDLE_LEAVES: Final = ("_worker (concurrent/futures/thread.py)",)
_ENTRY: Final = ("_run_module_as_main", "_run_code", "<module>", "main (siemgate/cli.py)", "cmd_forward", "_serve (",
                 "_run_async", "run (uvloop/", "Runner.run (", "Thread._bootstrap", "Thread.run (")


def summarize_profile(path: Path, top: int = 20) -> dict[str, Any]:
    """Self and inclusive samples per function of a py-spy `--format raw --nolineno` file.

    Stacks whose leaf is an executor thread waiting for work (`_IDLE_LEAVES`: py-spy does not
    see that wait as idle) are left out. `Runner.run` as a leaf is uvloop's own C code
    (sockets, timers, callbacks). Areas: a file's first path component, or the file itself
    where py-spy shortened it (siemgate's sink modules show as `splunk_hec.py`, `http.py` ...)."""
    self_counts: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    total = idle = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        if frames[-1] in _IDLE_LEAVES:
            idle += count
            continue
        total += count
        leaf = frames[-1]
        self_counts[leaf] += count
        file = leaf.rpartition(" (")[2].rstrip(")")
        areas[file.split("/", 1)[0] if "/" in file else file] += count
        for name in set(frames):
            inclusive[name] += count

    def pct(n: int) -> float:
        return round(100.0 * n / total, 1) if total else 0.0

    return {
        "samples": total,
        "idle_executor_samples_left_out": idle,
        "top_self": [{"function": f, "samples": n, "percent": pct(n)} for f, n in self_counts.most_common(top)],
        "self_by_area": [{"area": a, "samples": n, "percent": pct(n)} for a, n in areas.most_common(top)],
        "top_inclusive": [{"function": f, "samples": n, "percent": pct(n)} for f, n in inclusive.most_common()
                          if not f.startswith(_ENTRY)][:top],
    }


def measure_forwarder(case: Case, prefilled: Prefilled, *, bootstrap: str, prefix: str, work: Path, batch: int,
                      timeout: float, extra_pids: Mapping[str, int], profile: Path | None = None,
                      settle: float = 1.0) -> dict[str, Any]:
    """One `siemgate forward` process with this case's sink, into a fresh stand-in."""
    with standin_process(case.kind, work, ack=case.ack) as standin:
        name = f"{case.name.replace('_', '-')}-{uuid.uuid4().hex[:6]}"  # its own consumer group
        config = work / f"forward-{case.name}.yaml"
        config.write_text(config_text(bootstrap, prefix, sink_yaml(case, standin.url, batch, name)))
        log_path = work / f"forward-{case.name}.log"
        started = time.perf_counter()
        with open(log_path, "wb") as log_file:
            process = subprocess.Popen([sys.executable, "-m", "siemgate", "forward", "-c", str(config)],
                                       stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT)
        pids = {**extra_pids, "siemgate": process.pid, "standin": standin.pid}
        profiler = Profiler(profile, process.pid, work)
        try:
            window = watch(standin, prefilled.count, pids, timeout, process, f"siemgate forward ({case.name})",
                           on_first=profiler.start)
            profiler.stop()
            time.sleep(settle)  # late duplicates, if any
        finally:
            profiler.stop()
            stop_process(process, "siemgate forward", 30)
        check = check_standin(standin, prefilled)
    result = {"target": "siemgate forward", "records": prefilled.count, **window.summary("siemgate"),
              "startup_seconds": round(window.first_at - started, 3) if window.first_at else None,
              "exit_code": process.returncode, "check": check}
    if process.returncode not in (0, -signal.SIGTERM):
        result["log_tail"] = tail(log_path)
    if profile is not None and profile.exists():
        result["profile"] = {"file": str(profile), **summarize_profile(profile)}
    return result


def measure_ceiling(case: Case, bodies_file: Path, events: int, *, work: Path,
                    connections: int = 1) -> dict[str, Any]:
    """bench/http_ceiling.py against a fresh stand-in: its events/s for these requests."""
    with standin_process(case.kind, work, ack=case.ack) as standin:
        path, headers = ceiling_request(case, standin)
        command = [sys.executable, str(BENCH_DIR / "http_ceiling.py"), "--url", standin.url, "--path", path,
                   "--bodies", str(bodies_file), "--kind", case.kind, "--connections", str(connections)]
        for header in headers:
            command += ["--header", header]
        if case.ack:
            command += ["--ack-channel", str(uuid.uuid4())]
        cpu0 = _cpu({"standin": standin.pid})
        finished = subprocess.run(command, capture_output=True, text=True, timeout=3600, cwd=ROOT)
        cpu1 = _cpu({"standin": standin.pid})
        if not finished.stdout.strip():
            raise RuntimeError(f"http_ceiling.py failed ({finished.returncode}): {finished.stderr[-2000:]}")
        client = json.loads(finished.stdout.strip().splitlines()[-1])
        indexed = standin.indexed()
    standin_cpu = round(cpu1.get("standin", 0.0) - cpu0.get("standin", 0.0), 3)
    seconds = client["seconds"]
    return {
        "target": "stand-in ceiling (bench/http_ceiling.py)",
        "events_per_second": client["events_per_second"],
        "elapsed_seconds": seconds,
        "requests": client["requests"],
        "connections": connections,
        "cpu_seconds": {"standin": standin_cpu, "client": client["client_cpu_seconds"]},
        "cores": {"standin": round(standin_cpu / seconds, 2) if seconds else None},
        "standin_cpu_us_per_event": round(standin_cpu / events * 1e6, 1) if events else None,
        "client": client,
        "indexed": indexed,
        "ok": client["bad_answers"] == 0 and not client["acks_missing"] and indexed == events,
    }


# ------------------------------------------------------------------------------------------
# The Elasticsearch peer: rsyslog imkafka -> omelasticsearch


_RISK = {"high": 73, "medium": 47, "low": 21}


def check_rsyslog_es() -> str | None:
    """None when rsyslogd with imkafka, mmjsonparse and omelasticsearch is installed."""
    if shutil.which(RSYSLOGD) is None:
        return "rsyslogd is not installed (apt-get install -y rsyslog rsyslog-kafka rsyslog-elasticsearch)"
    for module, package in (("imkafka.so", "rsyslog-kafka"), ("mmjsonparse.so", "rsyslog"),
                            ("omelasticsearch.so", "rsyslog-elasticsearch")):
        if not (RSYSLOG_MODULES / module).exists():
            return f"rsyslog's {module} is missing (apt-get install -y {package})"
    return None


def rsyslog_es_config(*, bootstrap: str, topic: str, group: str, port: int, run_dir: Path, batch: int,
                      workers: int | None = None) -> str:
    """imkafka -> mmjsonparse -> an ECS alert document per record, built like the sink's
    (siemgate/forwarders/formats/ecs.py: @timestamp, event.*, message, rule.*, source.ip,
    destination.address, url.original, http.request.method, labels.*, ecs.version,
    event.original = the vendor's event as JSON text, siemgate.event = the object) ->
    omelasticsearch, bulk mode, `create` with `_id` = the record id, into the data stream.
    The main queue hands the action `batch` messages at a time (one bulk request each)."""
    threads = f' queue.workerThreads="{workers}"' if workers else ""
    severity = "\n".join(
        f'    {"if" if i == 0 else "} else if"} $!severity == "{name}" then {{\n'
        f"        set $!doc!event!severity = {risk};\n        set $!doc!event!risk_score = {risk};"
        for i, (name, risk) in enumerate(_RISK.items())) + "\n    }"
    optional = "\n".join(
        f'    if {source} != "" then {{\n        set {target} = {source};\n    }}'
        for source, target in (("$!event!action", "$!doc!event!action"),
                               ("$!event!description", "$!doc!message"),
                               ("$!event!ruleName", "$!doc!rule!name"),
                               ("$!event!ruleId", "$!doc!rule!id"),
                               ("$!event!source!ip", "$!doc!source!ip"),
                               ("$!event!asset!host", "$!doc!destination!address"),
                               ("$!event!request!url", "$!doc!url!original"),
                               ("$!event!request!method", "$!doc!http!request!method")))
    return f"""
global(workDirectory="{run_dir}" maxMessageSize="64k")
# imkafka reads far faster than the ruleset runs: wait when the main queue is full, never discard.
main_queue(queue.timeoutEnqueue="600000" queue.dequeueBatchSize="{batch}"{threads})
module(load="imkafka")
module(load="mmjsonparse")
module(load="omelasticsearch")
input(type="imkafka" topic="{topic}" broker=["{bootstrap}"] consumergroup="{group}" ruleset="es")
template(name="ecs_doc" type="string" string="%$!doc%")
template(name="doc_id" type="string" string="%$!id%")
ruleset(name="es") {{
    action(type="mmjsonparse" cookie="")
    if $parsesuccess != "OK" then {{
        stop
    }}
    if $!event!timestamp != "" then {{
        set $!doc!@timestamp = $!event!timestamp;
    }} else {{
        set $!doc!@timestamp = $!received_at;
    }}
    set $!doc!event!kind = "alert";
    set $!doc!event!category = "intrusion_detection";
    set $!doc!event!id = $!id;
    set $!doc!event!created = $!received_at;
    set $!doc!event!module = "siemgate";
{severity}
    set $!doc!event!original = "" & $!event;
{optional}
    set $!doc!labels!integration = $!integration;
    set $!doc!labels!severity = $!severity;
    set $!doc!ecs!version = "8.11.0";
    set $!doc!siemgate!event = $!event;
    action(type="omelasticsearch" server="127.0.0.1" serverport="{port}" searchIndex="{DATA_STREAM}"
           bulkmode="on" writeoperation="create" dynbulkid="on" bulkid="doc_id" template="ecs_doc"
           esVersion.major="8" errorfile="{run_dir}/es-errors.json")
}}
"""


def measure_rsyslog_es(prefilled: Prefilled, *, bootstrap: str, work: Path, batch: int, timeout: float,
                       extra_pids: Mapping[str, int], workers: int | None = None,
                       settle: float = 1.0) -> dict[str, Any]:
    """rsyslogd (a fresh consumer group) from the prefilled topic into a fresh Elasticsearch stand-in."""
    missing = check_rsyslog_es()
    if missing:
        raise RuntimeError(missing)
    run_dir = work / f"rsyslog-es-{uuid.uuid4().hex[:6]}"
    run_dir.mkdir(parents=True)
    with standin_process("elasticsearch", work) as standin:
        config = rsyslog_es_config(bootstrap=bootstrap, topic=prefilled.topic, group=f"peer-es-{uuid.uuid4().hex[:8]}",
                                   port=standin.port, run_dir=run_dir, batch=batch, workers=workers)
        config_path = run_dir / "rsyslog.conf"
        config_path.write_text(config)
        checked = subprocess.run([RSYSLOGD, "-N1", "-f", str(config_path)], capture_output=True, text=True,
                                 timeout=60)
        if checked.returncode != 0:
            raise RuntimeError(f"rsyslogd rejects the omelasticsearch configuration:\n{checked.stdout}{checked.stderr}")
        log_path = run_dir / "rsyslogd.log"
        started = time.perf_counter()
        with open(log_path, "wb") as log_file:
            process = subprocess.Popen([RSYSLOGD, "-n", "-f", str(config_path), "-i", str(run_dir / "rsyslogd.pid")],
                                       stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        pids = {**extra_pids, "rsyslogd": process.pid, "standin": standin.pid}
        try:
            window = watch(standin, prefilled.count, pids, timeout, process, "rsyslogd")
            time.sleep(settle)
        finally:
            stop_process(process, "rsyslogd", 30)
        check = check_standin(standin, prefilled)
    errors = run_dir / "es-errors.json"
    result = {"target": "rsyslog imkafka -> omelasticsearch", "records": prefilled.count,
              **window.summary("rsyslogd"), "workers": workers,
              "startup_seconds": round(window.first_at - started, 3) if window.first_at else None,
              "rsyslog_exit": process.returncode, "check": check,
              "errorfile_bytes": errors.stat().st_size if errors.exists() else 0}
    if not check["all_arrived"]:
        result["log_tail"] = tail(log_path)
    return result


# ------------------------------------------------------------------------------------------
# All cases


def profile_path(profile: Path | None, case: Case) -> Path | None:
    """`--profile FILE` -> FILE with the case's name before its suffixes."""
    if profile is None:
        return None
    name = profile.name
    stem, dot, suffixes = name.partition(".")
    return profile.with_name(f"{stem}-{case.name}{dot}{suffixes}")


def measure_all(kinds: list[str], prefilled: Prefilled, *, bootstrap: str, prefix: str, work: Path, batch: int,
                timeout: float, extra_pids: Mapping[str, int], seed: int, skip_peer: bool, skip_ceiling: bool,
                profile: Path | None, rsyslog_workers: int | None = None,
                progress: Callable[[str], None] = log) -> dict[str, Any]:
    """Every case of these sink kinds: ceiling, forwarder, and (Elasticsearch) the peer."""
    results: dict[str, Any] = {}
    for kind in kinds:
        if STOP.is_set():
            break
        bodies_file: Path | None = None
        facts: dict[str, Any] = {}
        if not skip_ceiling:
            progress(f"{kind}: building the ceiling's requests ({prefilled.count:,} events, batches of {batch})")
            bodies, facts = build_requests(CASES[kind][0], prefilled.count, seed, batch)
            bodies_file = work / f"bodies-{kind}.bin"
            write_bodies(bodies_file, bodies)
            del bodies
        for case in CASES[kind]:
            row: dict[str, Any] = {"label": case.label, "sink": case.kind, "ack": case.ack, "requests_built": facts}
            if bodies_file is not None:
                progress(f"{case.name}: the stand-in's ceiling")
                row["ceiling"] = measure_ceiling(case, bodies_file, prefilled.count, work=work)
                progress(f"{case.name}: ceiling {row['ceiling']['events_per_second']:,.0f} events/s")
            progress(f"{case.name}: siemgate forward")
            row["siemgate"] = measure_forwarder(case, prefilled, bootstrap=bootstrap, prefix=prefix, work=work,
                                                batch=batch, timeout=timeout, extra_pids=extra_pids,
                                                profile=profile_path(profile, case))
            progress(f"{case.name}: siemgate {row['siemgate']['events_per_second']:,.0f} events/s "
                     f"({'all arrived' if row['siemgate']['check']['all_arrived'] else 'INCOMPLETE'})")
            if kind == "elasticsearch" and not skip_peer:
                missing = check_rsyslog_es()
                if missing:
                    progress(f"peer skipped: {missing}")
                else:
                    progress("elasticsearch: the peer, rsyslog imkafka -> omelasticsearch")
                    row["peer"] = measure_rsyslog_es(prefilled, bootstrap=bootstrap, work=work, batch=batch,
                                                     timeout=timeout, extra_pids=extra_pids, workers=rsyslog_workers)
                    progress(f"elasticsearch: peer {row['peer']['events_per_second']:,.0f} events/s")
            row["targets"] = targets(row)
            results[case.name] = row
        if bodies_file is not None:
            with contextlib.suppress(OSError):
                os.unlink(bodies_file)
    return results


def targets(row: dict[str, Any]) -> dict[str, Any]:
    """Issue 5: at least the peer's rate (where there is one), 30,000 events/s per process."""
    rate = row["siemgate"]["events_per_second"] if row["siemgate"]["check"]["all_arrived"] else 0.0
    out: dict[str, Any] = {
        "per_process": {"target": TARGET_EVENTS_PER_SECOND, "measured": rate,
                        "met": rate >= TARGET_EVENTS_PER_SECOND},
    }
    ceiling = row.get("ceiling")
    if ceiling and ceiling["events_per_second"]:
        out["of_ceiling"] = round(rate / ceiling["events_per_second"], 3)
    peer = row.get("peer")
    if peer is not None:
        peer_rate = peer["events_per_second"] if peer["check"]["all_arrived"] else 0.0
        out["peer"] = {"peer": peer_rate, "ratio": round(rate / peer_rate, 2) if peer_rate else None,
                       "met": rate >= peer_rate}
    return out
