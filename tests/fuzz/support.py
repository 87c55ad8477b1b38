"""The bad-input suite's harness: a real `siemgate run` process over loopback, what it must
answer (docs/openapi.yaml), and the checks made after every test (`LiveIngest.guard`).

Memory bound. The ingest is configured with `max_body_bytes` = 1 MiB. A request holds at most
the body as sent and inflated (2 MiB), its events split and encoded as records (about 3 times
the inflated body) and the quarantine's copy: under 8 MiB. The forwarder (same process) holds
what it reads of the same records, normalized: the same order again. Requests here are
sequential (the trickle tests add one idle connection). Before the first test the process is
warmed up until its RSS stops growing (full-size bodies and records: SQLite's page caches and
the allocator's arenas reach their size; about +50 MiB over a fresh process). From there,
whatever a test sends, the peak RSS during the test (VmHWM, reset at its start) may exceed
the RSS at its start by at most `PEAK_GROWTH_BOUND` = 64 MiB: the working set above, with
room for allocator slack; a server that held a 64 MiB header, or a million headers, goes
over it. The RSS after the test may exceed it by at most `RSS_GROWTH_BOUND` = 48 MiB: what
stays is allocator slack (measured: under 20 MiB), not data. The leak tests (test_large_distinct_bodies_...) send two
rounds of 48 MiB and allow the second round 24 MiB: a per-request leak of the bodies adds 48.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import yaml
from hypothesis import settings
from jsonschema import Draft202012Validator
from prometheus_client.parser import text_string_to_metric_families
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from siemgate_standins.broker import free_port

ROOT = Path(__file__).resolve().parents[2]
OPENAPI = ROOT / "docs" / "openapi.yaml"

KEY = "fuzz-key-0123456789abcdef"
NEXT_KEY = "fuzz-next-9876543210fedcba"
AUTH = {"X-Api-Key": KEY}
MIB = 1024 * 1024
MAX_BODY = MIB
MAX_EVENTS = 1000
BODY_TIMEOUT = 1.0
BATCH_KEYS = ("events", "alerts", "data", "items")

# docs/SPEC.md, "HTTP": every answer the webhook may give. 503 only when the bus cannot take writes,
# which it always can here, so these tests allow everything else.
SPEC_CODES = frozenset({200, 400, 401, 403, 408, 413, 415, 503})
ALLOWED_CODES = SPEC_CODES - {503}

PEAK_GROWTH_BOUND = 64 * MIB
RSS_GROWTH_BOUND = 48 * MIB

FUZZ_PROFILE = "siemgate-fuzz"


def fuzz_settings(examples: int) -> settings:
    """The profile chosen by SIEMGATE_FUZZ_PROFILE (conftest.py), with this test's example count
    (20 times more under the long profile)."""
    name = os.environ.get("SIEMGATE_FUZZ_PROFILE", FUZZ_PROFILE)
    factor = 20 if name.endswith("-long") else 1
    return settings(settings.get_profile(name), max_examples=examples * factor)


# ------------------------------------------------------------------------------------------
# What a batch body should give


def expected_events(value: object) -> int | None:
    """The number of events the ingest takes from this JSON value, None if it is no batch."""
    if isinstance(value, list):
        return len(value)
    if isinstance(value, dict):
        for key in BATCH_KEYS:
            inner = value.get(key)
            if isinstance(inner, list):
                return len(inner)
        return 1
    return None


def strict_json(body: bytes) -> tuple[bool, object]:
    """(True, value) when `body` is a JSON batch as the ingest takes it: RFC 8259 JSON in UTF-8
    (no NaN/Infinity), a leading BOM ignored, lone surrogates allowed (issue 17: escaped, or
    raw CESU-8 bytes inside a string, which the ingest writes as their escape), or in UTF-16/32
    as Python's json tells them (`json.detect_encoding`: a BOM, or the NUL bytes of RFC 4627 3);
    or NDJSON: two or more lines, each one JSON object (a list of them). Raw control characters
    inside strings are read, as Python's json reads them with strict=False."""

    def refuse(name: str) -> object:
        raise ValueError(name)

    def read(text: str) -> object:
        # Numbers only count as present (Python refuses integers of more than 4,300 digits).
        # A raw surrogate outside a string, or after a backslash, is not JSON for Python either.
        # strict=False: a raw control character inside a string is read (the ingest escapes it).
        return json.loads(text, parse_constant=refuse, parse_int=lambda _: 0, parse_float=lambda _: 0.0, strict=False)

    try:
        encoding = json.detect_encoding(body)
        text = body.decode("utf-8" if encoding == "utf-8-sig" else encoding, "surrogatepass").removeprefix("\ufeff")
    except ValueError:
        return False, None
    try:
        return True, read(text)
    except (ValueError, RecursionError):
        pass
    lines = [line.strip(" \t\r") for line in text.split("\n") if line.strip(" \t\r")]
    try:
        objects = [read(line) for line in lines]
    except (ValueError, RecursionError):
        return False, None
    if len(objects) < 2 or not all(isinstance(value, dict) for value in objects):
        return False, None
    return True, objects


# ------------------------------------------------------------------------------------------
# The API description


@cache
def openapi() -> dict[str, Any]:
    with open(OPENAPI) as handle:
        document: dict[str, Any] = yaml.safe_load(handle)
    return document


@cache
def _registry() -> Registry[Any]:
    registry: Registry[Any] = Registry().with_resource(
        "urn:siemgate:openapi", Resource.from_contents(openapi(), DRAFT202012))
    return registry


def documented_response(path: str, method: str, status: int) -> dict[str, Any]:
    responses = openapi()["paths"][path][method]["responses"]
    assert str(status) in responses, f"{method.upper()} {path} answered {status}, which docs/openapi.yaml does not list"
    response: dict[str, Any] = responses[str(status)]
    return response


def check_documented(path: str, method: str, status: int, headers: Mapping[str, str], body: bytes) -> None:
    """The answer is one docs/openapi.yaml describes: status, media type and body schema."""
    response = documented_response(path, method, status)
    content = response.get("content")
    if not content:
        assert body == b"", f"{status} must have an empty body, got {body[:200]!r}"
        return
    media = headers.get("content-type", "").split(";")[0].strip().lower()
    assert media in content, f"{status} came as {media!r}; documented: {sorted(content)}"
    schema = content[media].get("schema", {})
    if media == "application/json":
        instance = json.loads(body)
        if "$ref" in schema:
            schema = {"$ref": "urn:siemgate:openapi" + schema["$ref"]}
        errors = sorted(Draft202012Validator(schema, registry=_registry()).iter_errors(instance), key=str)
        assert not errors, f"{status} body {instance!r} does not match its documented schema: {errors[0].message}"


WEBHOOK = "/webhook/{integration}"


def check_webhook_answer(response: httpx.Response) -> None:
    assert response.status_code in ALLOWED_CODES, (
        f"answered {response.status_code} {response.content[:300]!r}: not one of the SPEC codes {sorted(ALLOWED_CODES)}"
    )
    check_documented(WEBHOOK, "post", response.status_code, response.headers, response.content)


# ------------------------------------------------------------------------------------------
# The process


@dataclass
class Tally:
    """What a test's requests were answered: every 200's `accepted`, every status."""

    accepted: int = 0
    oks: int = 0
    codes: dict[int, int] = field(default_factory=dict)
    # What the process logged as errors since the test began (to explain a 5xx).
    errors: Callable[[], list[str]] = list

    def record(self, response: httpx.Response, expected: int | None = None) -> None:
        """Checks the answer against the SPEC and docs/openapi.yaml and counts it; with
        `expected` (the number of events the body holds), a 200 must have taken exactly that."""
        try:
            check_webhook_answer(response)
        except AssertionError as exc:
            if response.status_code >= 500:
                raise AssertionError(f"{exc}; the process logged:\n" + "\n".join(self.errors()[-3:])) from None
            raise
        self.count(response.status_code, response.json()["accepted"] if response.status_code == 200 else 0)
        if response.status_code == 200 and expected is not None:
            assert response.json() == {"accepted": expected}, f"sent {expected} events, answered {response.text}"

    def count(self, status: int, accepted: int = 0) -> None:
        self.codes[status] = self.codes.get(status, 0) + 1
        if status == 200:
            self.oks += 1
            self.accepted += accepted


@dataclass
class Snapshot:
    rss: int
    metrics: dict[tuple[str, frozenset[tuple[str, str]]], float]
    log_offset: int


class LiveIngest:
    """`siemgate run` on the embedded bus with a file sink, on a free loopback port.

    Integrations: `fuzz` (the hypothesis tests), `schema` (schemathesis), `fenced`
    (allowed_cidrs that exclude loopback: 403)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.generation = 0
        self.log_path = root / "siemgate.log"
        self.sink_path = root / "out" / "events.ndjson"
        self.deaths: list[str] = []
        # A test failed with it and left it unwell (dead, memory over the bound, events not
        # delivered): the next test gets a new process.
        self.tainted = False
        self.guard_offset = 0

    def webhook(self, integration: str = "fuzz") -> str:
        return f"{self.url}/webhook/{integration}"

    def _write_config(self) -> Path:
        self.generation += 1
        data = self.root / f"data-{self.generation}"
        self.sink_path = self.root / f"out-{self.generation}" / "events.ndjson"
        path = self.root / "run.yaml"
        path.write_text(f"""
log_level: warning
listen: {{host: 127.0.0.1, port: {self.port}}}
limits: {{max_body_bytes: {MAX_BODY}, max_events_per_batch: {MAX_EVENTS}, body_timeout_seconds: {BODY_TIMEOUT}}}
integrations:
  - name: fuzz
    auth: {{header: X-Api-Key, values: ["{KEY}", "{NEXT_KEY}"]}}
  - name: schema
    auth: {{header: X-Api-Key, values: ["{KEY}"]}}
  - name: fenced
    auth: {{header: X-Api-Key, values: ["{KEY}"]}}
    allowed_cidrs: [192.0.2.0/24]
bus: {{type: embedded, path: {data}/siemgate.db}}
state_dir: {data}/state
quarantine: {{path: {data}/quarantine, max_bytes: {64 * MIB}}}
sinks:
  - {{name: archive, type: file, path: {self.sink_path}, fsync: never, rotate_bytes: {1024 * MIB}}}
""")
        return path

    def start(self) -> None:
        config = self._write_config()
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "siemgate", "run", "-c", str(config)],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + 30
        with httpx.Client(timeout=2) as client:
            while True:
                assert self.process.poll() is None, f"siemgate run exited at start:\n{self.log_tail()}"
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(self.url + "/readyz").status_code == 200:
                        break
                assert time.monotonic() < deadline, f"siemgate run not ready within 30 s:\n{self.log_tail()}"
                time.sleep(0.05)  # polling interval, not synchronisation
        self._warm_up()

    def _warm_up(self) -> None:
        """Exercise every path (gzip, quarantine, full-size bodies and records) until the RSS
        stops growing, so that caches filling up to their size (SQLite's page caches, the
        allocator's arenas) are not counted as growth by the first test."""
        with httpx.Client(base_url=self.url, timeout=30, headers=AUTH) as client:
            small: list[tuple[bytes, dict[str, str]]] = [
                (b'[{"id":"warm-1","severity":"high"}]', {}),
                (gzip.compress(b'{"events":[{"id":"warm-2"}]}'), {"Content-Encoding": "gzip"}),
                (b"not json", {}),
                (b"[" + b" " * (MAX_BODY - 2) + b"]", {}),
            ]
            previous, steady = 0, 0
            for round_ in range(8):
                for i in range(16):
                    fill = f"{round_}-{i}-" + "x" * (MAX_BODY - 100)
                    big = [{"id": fill}] if i % 2 else [{"id": f"warm-{round_}-{i}", "message": fill}]
                    for body, headers in [(json.dumps(big).encode(), {}), *small]:
                        assert client.post("/webhook/fuzz", content=body, headers=headers).status_code in (200, 400)
                self.wait_delivered()
                rss = self.rss()
                steady = steady + 1 if rss - previous < 4 * MIB else 0
                if steady == 2:  # two rounds in a row without growth
                    break
                previous = rss

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def ensure_running(self) -> None:
        """A new process (fresh data directory) if an earlier test's input killed this one, or
        failed a test."""
        if self.tainted:
            self.stop()
            self.tainted = False
        if self.alive():
            return
        if self.process is not None:
            self.deaths.append(f"exit {self.process.returncode}")
            self.process = None
        self.start()

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def log_tail(self, lines: int = 30, since: int = 0) -> str:
        with open(self.log_path, "rb") as handle:
            handle.seek(since)
            text = handle.read().decode("utf-8", "replace")
        return "\n".join(line[:2000] for line in text.splitlines()[-lines:])

    def log_errors(self, since: int = 0) -> list[str]:
        """The error lines of the log from `since`, each as its message and, for an exception,
        the traceback's last line."""
        with open(self.log_path, "rb") as handle:
            handle.seek(since)
            lines = handle.read().decode("utf-8", "replace").splitlines()
        errors = []
        for line in lines:
            if '"level":"error"' not in line and '"level":"critical"' not in line:
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                errors.append(line[:1000])
                continue
            trace = str(entry.get("error", "")).strip().splitlines()
            errors.append(f"{entry.get('logger')}: {str(entry.get('message')).strip()}"
                          + (f" [{trace[-1][:300]}]" if trace else ""))
        return errors

    def await_errors(self, since: int, timeout: float = 3.0) -> list[str]:
        """The errors logged since `since`, once there is one (a 500 is answered before the
        server logs its exception), or none after `timeout`."""
        deadline = time.monotonic() + timeout
        while not (errors := self.log_errors(since)) and time.monotonic() < deadline:
            time.sleep(0.02)  # polling interval
        return errors

    def log_lines(self, since: int, text: str) -> list[str]:
        with open(self.log_path, "rb") as handle:
            handle.seek(since)
            return [line[:1000] for line in handle.read().decode("utf-8", "replace").splitlines() if text in line]

    def died(self, error: BaseException) -> AssertionError:
        """What to raise when a request got no answer: the process died (it may take a moment
        to exit: wait for that), or it dropped the connection while staying up."""
        assert self.process is not None
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)
        errors = "\n".join(self.log_errors(self.guard_offset)[-6:])
        if not self.alive():
            return AssertionError(f"siemgate run died (exit {self.process.returncode}): the request got "
                                  f"{type(error).__name__}; the errors it logged:\n{errors}")
        return AssertionError(f"the request got no answer ({type(error).__name__}: {error}) and the process "
                              f"is up; the errors it logged:\n{errors}")

    def client(self) -> httpx.Client:
        """An HTTP client to the ingest; a request that fails says whether the process died."""
        return httpx.Client(base_url=self.url, timeout=60, transport=_Explaining(self))

    # -- memory

    def _status(self, field_name: str) -> int:
        """A `Vm*` line of /proc/<pid>/status, in bytes."""
        with open(f"/proc/{self.pid}/status") as handle:
            for line in handle:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1]) * 1024
        raise AssertionError(f"no {field_name} in /proc/{self.pid}/status")

    def rss(self) -> int:
        return self._status("VmRSS")

    def peak_rss(self) -> int:
        return self._status("VmHWM")

    def reset_peak(self) -> None:
        """Peak RSS (VmHWM) from now on (Linux >= 4.0: clear_refs 5)."""
        with open(f"/proc/{self.pid}/clear_refs", "w") as handle:
            handle.write("5")

    # -- metrics

    def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        with self.client() as client:
            response = client.get("/metrics")
        assert response.status_code == 200
        samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
        return samples

    @staticmethod
    def total(samples: Mapping[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> int:
        wanted = set(labels.items())
        return int(sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls))

    def wait_delivered(self, timeout: float = 60.0) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        """Until the file sink has had every event the ingest took (delivered or dead-lettered)."""
        deadline = time.monotonic() + timeout
        while True:
            samples = self.metrics()
            ingested = self.total(samples, "siemgate_ingest_events_total")
            handled = self.total(samples, "siemgate_forward_events_total", sink="archive")
            if handled >= ingested:
                return samples
            assert time.monotonic() < deadline, (
                f"the sink got {handled} of the {ingested} events the ingest took within {timeout:g} s:\n"
                f"{self.log_tail()}"
            )
            time.sleep(0.05)  # polling interval

    # -- the checks every test ends with

    def snapshot(self) -> Snapshot:
        return Snapshot(rss=self.rss(), metrics=self.metrics(), log_offset=self.log_path.stat().st_size)

    @contextlib.contextmanager
    def guard(self, integration: str = "fuzz") -> Iterator[Tally]:
        """Run a test's requests, then check: the process is up and /healthz answers; its peak
        and final RSS stayed within the bounds; the ingest's metrics took exactly the events its
        200s said; every one of them reached the sink (none dead-lettered); nothing was logged
        as an error (an unhandled exception, a forwarder failure)."""
        self.ensure_running()
        before = self.snapshot()
        self.guard_offset = before.log_offset
        tally = Tally(errors=lambda: self.await_errors(before.log_offset))
        self.reset_peak()
        try:
            yield tally
            self.verify(before, tally, integration)
        except BaseException:
            self.tainted = not self._well(before)
            raise

    def _well(self, before: Snapshot) -> bool:
        """After a failed test: whether the next test may go on with this process."""
        if not self.alive() or self.rss() - before.rss > RSS_GROWTH_BOUND:
            return False
        try:
            self.wait_delivered(timeout=5)
        except AssertionError:
            return False
        return True

    def verify(self, before: Snapshot, tally: Tally, integration: str) -> None:
        # First until the sink has had every event: a record that kills the forwarder (and
        # with it the process) does so then.
        after = self.wait_delivered()
        with self.client() as client:
            health = client.get("/healthz")
        assert health.status_code == 200 and health.json() == {"status": "ok"}
        peak, rss = self.peak_rss(), self.rss()
        assert peak - before.rss <= PEAK_GROWTH_BOUND, (
            f"peak RSS {peak / MIB:.1f} MiB is {(peak - before.rss) / MIB:.1f} MiB over the "
            f"{before.rss / MIB:.1f} MiB at the start (bound {PEAK_GROWTH_BOUND / MIB:.0f} MiB)"
        )
        assert rss - before.rss <= RSS_GROWTH_BOUND, (
            f"RSS grew from {before.rss / MIB:.1f} to {rss / MIB:.1f} MiB (bound {RSS_GROWTH_BOUND / MIB:.0f} MiB)"
        )
        taken = (self.total(after, "siemgate_ingest_events_total", integration=integration)
                 - self.total(before.metrics, "siemgate_ingest_events_total", integration=integration))
        assert taken == tally.accepted, f"the 200s said {tally.accepted} events were taken; the ingest counted {taken}"
        oks = (self.total(after, "siemgate_ingest_requests_total", integration=integration, code="200")
               - self.total(before.metrics, "siemgate_ingest_requests_total", integration=integration, code="200"))
        assert oks == tally.oks, f"{tally.oks} answers were 200; the ingest counted {oks}"
        dead = (self.total(after, "siemgate_forward_events_total", outcome="dead_lettered")
                - self.total(before.metrics, "siemgate_forward_events_total", outcome="dead_lettered"))
        errors = self.log_errors(before.log_offset)
        assert dead == 0, f"{dead} accepted events were dead-lettered, not delivered:\n" + "\n".join(
            self.log_lines(before.log_offset, "dead-lettered"))
        assert not errors, "errors logged:\n" + "\n".join(errors)


class _Explaining(httpx.HTTPTransport):
    def __init__(self, ingest: LiveIngest) -> None:
        super().__init__()
        self._ingest = ingest

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return super().handle_request(request)
        except httpx.TransportError as exc:
            raise self._ingest.died(exc) from exc


# ------------------------------------------------------------------------------------------
# Raw HTTP, for what httpx will not send


@dataclass
class RawAnswer:
    status: int
    headers: dict[str, str]
    body: bytes


def read_answer(sock: socket.socket, deadline: float) -> RawAnswer | None:
    """One HTTP/1.1 response from `sock`; None if the server closed the connection first."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = _recv(sock, deadline)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = _recv(sock, deadline)
        if not chunk:
            break
        body += chunk
    return RawAnswer(status, headers, body[:length])


def _recv(sock: socket.socket, deadline: float) -> bytes:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise AssertionError("no answer before the deadline: the ingest hangs")
    sock.settimeout(remaining)
    try:
        return sock.recv(65536)
    except TimeoutError:
        raise AssertionError("no answer before the deadline: the ingest hangs") from None
    except ConnectionResetError:
        return b""


def answered_within(sock: socket.socket, seconds: float) -> bool:
    """Wait up to `seconds` for the server to answer (or close): the pace of a trickling client."""
    readable, _, _ = select.select([sock], [], [], seconds)
    return bool(readable)


def send_all(sock: socket.socket, parts: Iterable[bytes]) -> bool:
    """Send; False when the server closed the connection before taking everything."""
    try:
        for part in parts:
            sock.sendall(part)
    except (BrokenPipeError, ConnectionResetError):
        return False
    return True


def request_head(path: str, headers: Mapping[str, str | bytes], *, length: int | None = None) -> bytes:
    lines = [f"POST {path} HTTP/1.1".encode(), b"Host: 127.0.0.1"]
    for name, value in headers.items():
        lines.append(name.encode() + b": " + (value if isinstance(value, bytes) else value.encode("latin-1")))
    if length is not None:
        lines.append(b"Content-Length: %d" % length)
    return b"\r\n".join(lines) + b"\r\n\r\n"


# ------------------------------------------------------------------------------------------
# Gzip


def gzip_stream(parts: Iterable[bytes], level: int = 9) -> bytes:
    """gzip of the concatenated parts, without holding them together."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, 31)
    out = [compressor.compress(part) for part in parts]
    out.append(compressor.flush())
    return b"".join(out)


@cache
def gzip_bomb(inflated: int, *, json_prefix: bool) -> bytes:
    """A gzip that inflates to `inflated` bytes: zeros, or the start of a JSON array of one
    event with a long string (valid JSON up to the cut, so only its size is wrong)."""
    head = b'[{"id":"bomb","pad":"' if json_prefix else b""
    fill = b"a" if json_prefix else b"\0"
    block = fill * MIB
    remaining = inflated - len(head)

    def parts() -> Iterator[bytes]:
        nonlocal remaining
        yield head
        while remaining > 0:
            piece = block[: min(remaining, len(block))]
            remaining -= len(piece)
            yield piece

    return gzip_stream(parts())
