"""The forwarding peer: rsyslog consuming siemgate records with its own Kafka input (imkafka)
and forwarding them as syslog over TCP. What a siemgate forwarder is compared with.

    Tansu (in memory) <-> Kafka relay (a process) <-> rsyslogd: imkafka -> ruleset -> omfwd
        --TCP, RFC 6587 octet counting--> receiver (asyncio, in this process)

The relay (siemgate_standins.kafka_relay) is what lets Debian's librdkafka 2.0.2 talk to
Tansu; Tansu advertises the relay's address, so every client, the prefill's aiokafka
included, goes through it. Its CPU is reported on its own.

Two rsyslog configurations, each reading every record from a fresh consumer group:

- `siemgate`, the comparable one, shaped like siemgate's own RFC 5424 output
  (siemgate/forwarders/formats/syslog.py): `mmjsonparse` parses the record; PRI = facility
  local0 (16) x 8 + the syslog severity of docs/DESIGN.md's table (high 2, medium 4, low 5,
  unknown 6); TIMESTAMP = the event's own (else `received_at`), HOSTNAME = this machine,
  APP-NAME `siemgate`, MSGID = the event type; one structured-data element
  `[siemgate@32473 id=.. kind=.. integration=.. severity=..]` plus `rule`, `rule_id`,
  `source_ip` when the event has them, values escaped as RFC 5424 requires (`\\`, `"`, `]`,
  with RainerScript `replace()`); MSG = the event as JSON. Differences left: rsyslog
  re-serializes the event (libfastjson, with spaces) where siemgate sends it compact with a
  BOM, takes the timestamp as the event wrote it, and reads the simulator's field names only.
- `passthrough`, a reference: no parsing, a fixed RFC 5424 header, MSG = the record as read.

Both use the stock rsyslog queues, except that the main queue waits instead of discarding
when it is full (`queue.timeoutEnqueue`): imkafka reads far faster than the ruleset can run.

`--rsyslog-workers N` gives the main queue N worker threads (rsyslog's default is one,
which is what the `siemgate` configuration is limited by); rsyslog then opens one omfwd
connection per worker, and the order of events across them is lost.

The receiver counts octet-counted frames and keeps each connection's raw stream in memory
(~1.1 KB per record); it costs about 1 us of CPU per frame, so it does not cap the peer (a
receiving rsyslog would take a core of its own on a 2-core machine). After each run the
streams are checked: every prefilled record's id arrived, none other did, and in `siemgate`
mode each frame's PRI matches the record's severity.

Timing: from the first frame received to the last expected one, i.e. rsyslog draining a
pre-filled topic at its own pace. rsyslog's start and librdkafka's consumer-group join
(~20 s against Tansu) come before and are reported as `startup_seconds`. CPU: rsyslogd's
from /proc over the same window; the relay's, Tansu's and the receiver's too.

    .venv/bin/python bench/forward_peer.py                    # 300,000 records, both modes
    .venv/bin/python bench/forward_peer.py --events 50000 --modes siemgate

Needs `apt-get install -y rsyslog rsyslog-kafka`. Results: a table on stdout,
bench/results/forward-peer-<timestamp>.json and forward-peer-latest.json. Not run in CI.

For bench/forward.py: `prefill()` / `prefill_async()` fill a topic, `measure_rsyslog()` /
`measure_rsyslog_async()` measure one configuration against it, `Receiver` is the counting
syslog receiver, `check_received()` the arrival check; all are usable on their own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = Path(__file__).resolve().parent
for _path in (str(ROOT), str(BENCH_DIR)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from aiokafka import AIOKafkaProducer  # noqa: E402
from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # noqa: E402
from aiokafka.errors import KafkaTimeoutError, TopicAlreadyExistsError  # noqa: E402
from ingest import display, log, machine_busy, proc_cpu_seconds, tail, version_of  # noqa: E402
from ingest import stop as stop_process  # noqa: E402

from siemgate.forwarders.sinks.relp import FrameDecoder, RelpProtocolError, encode_frame  # noqa: E402
from siemgate.record import Record, Severity, canonical_severity, make_record  # noqa: E402
from siemgate.simulate import DEFAULT_MIX, make_events  # noqa: E402
from siemgate_standins.kafka_relay import RelayedTansu, start_tansu_behind_relay  # noqa: E402

Mode = Literal["siemgate", "passthrough"]
MODES: Final[tuple[Mode, ...]] = ("siemgate", "passthrough")
RSYSLOGD: Final = "rsyslogd"
RSYSLOG_MODULES: Final = Path("/usr/lib/x86_64-linux-gnu/rsyslog")
# RFC 5424 severity per record severity (docs/DESIGN.md); facility local0, siemgate's default.
FACILITY: Final = 16
SYSLOG_SEVERITY: Final[Mapping[str, int]] = {"high": 2, "medium": 4, "low": 5, "unknown": 6}
SD_ID: Final = "siemgate@32473"
PEER: Final = "203.0.113.7"
PERFORMANCE_NOTES: Final = {"passthrough": 199_000, "siemgate": 66_000}


# ------------------------------------------------------------------------------------------
# Prefill


@dataclass
class Prefilled:
    """What `prefill` put on the topic. `severities` maps every record id to its severity."""

    bootstrap: str
    topic: str
    count: int
    partitions: int
    value_bytes: int
    seconds: float
    severities: dict[str, Severity] = field(repr=False)

    @property
    def events_per_second(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0

    def summary(self) -> dict[str, Any]:
        by_severity = Counter(self.severities.values())
        return {
            "topic": self.topic,
            "records": self.count,
            "partitions": self.partitions,
            "value_bytes": self.value_bytes,
            "mean_value_bytes": round(self.value_bytes / self.count, 1) if self.count else 0,
            "by_severity": dict(sorted(by_severity.items())),
            "seconds": round(self.seconds, 3),
            "events_per_second": round(self.events_per_second),
        }


async def _send_batch(producer: AIOKafkaProducer, batch: Any, topic: str, partition: int) -> asyncio.Future[Any]:
    # aiokafka keeps one unsent batch per partition and times out waiting for it to drain
    # under load: try again (the caller's deadline is the real one).
    while True:
        try:
            return await producer.send_batch(batch, topic, partition=partition)  # type: ignore[no-any-return]
        except KafkaTimeoutError:
            continue


def iter_records(
    n: int,
    *,
    seed: int = 1,
    mix: Mapping[str, float] | str | None = None,
    chunk: int = 5000,
    batch_events: int = 500,
) -> Iterator[tuple[Record, Severity]]:
    """The `n` records `prefill_async` produces, with their severities, in order.

    Events come from `siemgate.simulate.make_events` (realistic, ~800 bytes; severity mix
    `mix`, default high 1 : medium 3 : low 6), generated `chunk` at a time to bound memory;
    each becomes a record with `siemgate.record.make_record` (kind event, integration
    `bench`, a webhook batch id per `batch_events` events). Ids and events depend on `seed`
    only (the batch ids and `received_at` are fresh each time)."""
    batch_id = ""
    done = 0
    while done < n:
        events = make_events(min(chunk, n - done), mix or DEFAULT_MIX, seed + done)
        received_at = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
        for event in events:
            index = done
            done += 1
            if index % batch_events == 0:
                batch_id = uuid.uuid4().hex
            severity = canonical_severity(event.get("severity"))
            record = make_record(
                prefix="bench", event=event, kind="event", integration="bench", severity=severity,
                event_id=event["id"], received_at=received_at, batch=batch_id, seq=index % batch_events,
                peer=PEER,
            )
            yield record, severity


async def prefill_async(
    bootstrap: str,
    topic: str,
    n: int,
    *,
    partitions: int = 1,
    seed: int = 1,
    mix: Mapping[str, float] | str | None = None,
    chunk: int = 5000,
    batch_events: int = 500,
) -> Prefilled:
    """Create `topic` (if missing) and produce `n` records of the record contract to it.

    The records are `iter_records(n, seed=seed, mix=mix, ...)`'s. They go to the given
    topic, not to the severity topics the record names, round-robin over the partitions,
    with aiokafka `create_batch`/`send_batch` (1 MB batches, acks=1). Returns once all are
    acked.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        if topic not in set(await admin.list_topics()):
            response = await admin.create_topics([NewTopic(topic, partitions, 1)])
            for name, code, message in response.topic_errors:
                if code not in (0, TopicAlreadyExistsError.errno):
                    raise RuntimeError(f"cannot create topic {name}: {message or code}")
    finally:
        await admin.close()

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks=1, linger_ms=0, max_batch_size=1_000_000,
        max_request_size=1_048_576, enable_idempotence=False, request_timeout_ms=60_000,
    )
    await producer.start()
    severities: dict[str, Severity] = {}
    value_bytes = 0
    started = time.perf_counter()
    try:
        in_flight: deque[asyncio.Future[Any]] = deque()
        builders: dict[int, Any] = {}
        records = iter_records(n, seed=seed, mix=mix, chunk=chunk, batch_events=batch_events)
        for index, (record, severity) in enumerate(records):
            if index % chunk == 0:
                await asyncio.sleep(0)  # let the producer's tasks run between chunks
            severities[record.key.decode()] = severity
            value_bytes += len(record.value)
            partition = index % partitions
            builder = builders.get(partition)
            if builder is None:
                builder = builders[partition] = producer.create_batch()
            if builder.append(key=record.key, value=record.value, timestamp=None, headers=record.headers) is None:
                in_flight.append(await _send_batch(producer, builder, topic, partition))
                builder = builders[partition] = producer.create_batch()
                builder.append(key=record.key, value=record.value, timestamp=None, headers=record.headers)
            while len(in_flight) > 8:
                await in_flight.popleft()
        for partition, builder in builders.items():
            if builder.record_count():
                builder.close()
                in_flight.append(await _send_batch(producer, builder, topic, partition))
        while in_flight:
            await in_flight.popleft()
    finally:
        await producer.stop()
    return Prefilled(bootstrap, topic, n, partitions, value_bytes, time.perf_counter() - started, severities)


def prefill(bootstrap: str, topic: str, n: int, **options: Any) -> Prefilled:
    """`prefill_async` for sync callers (runs its own event loop)."""
    return asyncio.run(prefill_async(bootstrap, topic, n, **options))


# ------------------------------------------------------------------------------------------
# rsyslog's configuration


# RainerScript: RFC 5424 PARAM-VALUE escaping of `\`, `"` and `]`.
def _sd_escaped(expression: str) -> str:
    return rf'replace(replace(replace({expression}, "\\", "\\\\"), "\"", "\\\""), "]", "\\]")'


_SIEMGATE_RULESET = """
template(name="siemgate_rfc5424" type="list") {
    constant(value="<") property(name="$.pri") constant(value=">1 ")
    property(name="$.ts") constant(value=" ")
    property(name="$myhostname") constant(value=" siemgate - ")
    property(name="$.msgid") constant(value=" ")
    property(name="$.sd") constant(value=" ")
    property(name="$!event")
}

ruleset(name="forward") {
    action(type="mmjsonparse" cookie="")
    if $parsesuccess != "OK" then {
        stop
    }
    if $!severity == "high" then {
        set $.pri = "@PRI_HIGH@";
    } else if $!severity == "medium" then {
        set $.pri = "@PRI_MEDIUM@";
    } else if $!severity == "low" then {
        set $.pri = "@PRI_LOW@";
    } else {
        set $.pri = "@PRI_UNKNOWN@";
    }
    if $!event!timestamp != "" then {
        set $.ts = $!event!timestamp;
    } else {
        set $.ts = $!received_at;
    }
    if $!event!type != "" then {
        set $.msgid = $!event!type;
    } else {
        set $.msgid = "-";
    }
    set $.sd = "[@SD_ID@ id=\\"" & @ESC_ID@ & "\\" kind=\\"" & $!kind & "\\" integration=\\"" & @ESC_INTEGRATION@
               & "\\" severity=\\"" & $!severity & "\\"";
    if $!event!ruleName != "" then {
        set $.sd = $.sd & " rule=\\"" & @ESC_RULE@ & "\\"";
    }
    if $!event!ruleId != "" then {
        set $.sd = $.sd & " rule_id=\\"" & @ESC_RULE_ID@ & "\\"";
    }
    if $!event!source!ip != "" then {
        set $.sd = $.sd & " source_ip=\\"" & @ESC_SOURCE_IP@ & "\\"";
    }
    set $.sd = $.sd & "]";
    action(type="omfwd" target="127.0.0.1" port="@PORT@" protocol="tcp" TCP_Framing="octet-counted"
           template="siemgate_rfc5424")
}
"""

_PASSTHROUGH_RULESET = """
template(name="passthrough_rfc5424" type="string"
         string="<%pri%>1 %timegenerated:::date-rfc3339% %$myhostname% siemgate - - - %msg%")

ruleset(name="forward") {
    action(type="omfwd" target="127.0.0.1" port="@PORT@" protocol="tcp" TCP_Framing="octet-counted"
           template="passthrough_rfc5424")
}
"""


_OMFWD = """action(type="omfwd" target="127.0.0.1" port="@PORT@" protocol="tcp" TCP_Framing="octet-counted"
           template="siemgate_rfc5424")"""
# omrelp: RELP to the same receiver (RelpReceiver), its window librelp's default (128).
_OMRELP = """action(type="omrelp" target="127.0.0.1" port="@PORT@" template="siemgate_rfc5424")"""


def rsyslog_config(
    mode: Mode, *, bootstrap: str, topic: str, group: str, port: int, work: Path, workers: int | None = None,
    transport: str = "tcp",
) -> str:
    """The whole rsyslog.conf of one run (no system inputs; only loopback). `workers`: the
    main queue's worker threads (None: rsyslog's default). `transport` "relp": the siemgate
    mode's action is omrelp instead of omfwd."""
    threads = f' queue.workerThreads="{workers}"' if workers else ""
    head = f"""
global(workDirectory="{work}" maxMessageSize="64k")
# imkafka reads far faster than the ruleset runs: wait when the main queue is full, never discard.
main_queue(queue.timeoutEnqueue="600000"{threads})
module(load="imkafka")
module(load="mmjsonparse")
input(type="imkafka" topic="{topic}" broker=["{bootstrap}"] consumergroup="{group}" ruleset="forward")
"""
    if mode == "passthrough":
        return head + _PASSTHROUGH_RULESET.replace("@PORT@", str(port))
    replacements = {
        "@SD_ID@": SD_ID,
        "@PORT@": str(port),
        "@ESC_ID@": _sd_escaped("$!id"),
        "@ESC_INTEGRATION@": _sd_escaped("$!integration"),
        "@ESC_RULE@": _sd_escaped("$!event!ruleName"),
        "@ESC_RULE_ID@": _sd_escaped("$!event!ruleId"),
        "@ESC_SOURCE_IP@": _sd_escaped("$!event!source!ip"),
        **{f"@PRI_{name.upper()}@": str(pri_of(name)) for name in SYSLOG_SEVERITY},
    }
    text = _SIEMGATE_RULESET
    if transport == "relp":
        assert _OMFWD in text
        text = 'module(load="omrelp")\n' + text.replace(_OMFWD, _OMRELP)
    for placeholder, value in replacements.items():
        text = text.replace(placeholder, value)
    return head + text


def check_rsyslog() -> str | None:
    """None when rsyslogd with imkafka and mmjsonparse is installed, else what is missing."""
    if shutil.which(RSYSLOGD) is None:
        return "rsyslogd is not installed (apt-get install -y rsyslog rsyslog-kafka)"
    for module in ("imkafka.so", "mmjsonparse.so"):
        if not (RSYSLOG_MODULES / module).exists():
            return f"rsyslog's {module} is missing (apt-get install -y rsyslog-kafka)"
    return None


def rsyslog_version() -> str | None:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run([RSYSLOGD, "-v"], capture_output=True, text=True, timeout=10).stdout
        return out.splitlines()[0].replace("compiled with:", "").strip() if out else None
    return None


# ------------------------------------------------------------------------------------------
# The receiver


@dataclass
class Reception:
    """Shared by the receiver's connections: each connection's raw stream (kept in memory:
    writing 340 MB to a file cost this machine ~0.9 s of CPU per 300,000 frames, inside the
    timing), and times and CPU snapshots at the first frame and at the `expected`-th one."""

    expected: int
    pids: dict[str, int]
    streams: list[list[bytes]] = field(default_factory=list, repr=False)
    frames: int = 0
    bytes: int = 0
    framing_errors: int = 0
    connections: int = 0
    first_at: float | None = None
    last_at: float | None = None
    complete_at: float | None = None
    cpu_first: dict[str, float] = field(default_factory=dict)
    cpu_complete: dict[str, float] = field(default_factory=dict)
    busy_first: tuple[float, float] = (0.0, 0.0)
    busy_complete: tuple[float, float] = (0.0, 0.0)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def snapshot(self) -> dict[str, float]:
        cpu = {"receiver": time.process_time()}
        for name, pid in self.pids.items():
            with contextlib.suppress(OSError):
                cpu[name] = proc_cpu_seconds(pid)
        return cpu

    def counted(self, frames: int) -> None:
        if self.first_at is None:
            self.first_at = time.perf_counter()
            self.cpu_first = self.snapshot()
            self.busy_first = machine_busy()
        self.frames += frames
        self.last_at = time.perf_counter()
        if self.complete_at is None and self.frames >= self.expected:
            self.finish()

    def finish(self) -> None:
        """The end of the measured window: the `expected`-th frame, or giving up."""
        if self.complete_at is None and not self.cpu_complete:
            if self.frames >= self.expected:
                self.complete_at = self.last_at
            self.cpu_complete = self.snapshot()
            self.busy_complete = machine_busy()
        self.done.set()


class Receiver(asyncio.Protocol):
    """One TCP connection of syslog with RFC 6587 octet counting: counts frames and keeps
    the raw bytes in one of `reception.streams` (checked after the run, outside the timing).
    rsyslog opens one connection per action worker, and again after a reconnect."""

    def __init__(self, reception: Reception) -> None:
        self.reception = reception
        self.buffer = bytearray()
        self.chunks: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.reception.connections += 1
        self.reception.streams.append(self.chunks)

    def data_received(self, data: bytes) -> None:
        reception = self.reception
        self.chunks.append(data)
        reception.bytes += len(data)
        buffer = self.buffer
        buffer += data
        size = len(buffer)
        position = frames = 0
        while position < size:
            space = buffer.find(b" ", position, position + 11)
            if space < 0:
                if size - position > 10:
                    reception.framing_errors += 1
                    position = size
                break
            try:
                length = int(buffer[position:space])
            except ValueError:
                reception.framing_errors += 1
                position = size
                break
            end = space + 1 + length
            if end > size:
                break
            frames += 1
            position = end
        del buffer[:position]
        if frames:
            reception.counted(frames)


class RelpReceiver(Receiver):
    """The receiving side of RELP (siemgate's `relp://` sink, rsyslog's omrelp), minimal (what
    imrelp does before its queue): answers `open` with its offers, each `syslog` command
    `rsp 200 OK` once parsed, `close` with 200. Each message goes into the connection's stream
    octet-counted, so that the TCP check reads it."""

    OPEN_ANSWER = b"200 OK\nrelp_version=0\nrelp_software=bench,0,-\ncommands=syslog"

    def __init__(self, reception: Reception) -> None:
        super().__init__(reception)
        self.decoder = FrameDecoder(max_data=1 << 20)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        try:
            frames = self.decoder.feed(data)
        except RelpProtocolError:
            self.reception.framing_errors += 1
            self.transport.abort()
            return
        messages, answers = [], []
        for frame in frames:
            if frame.command == "syslog":
                messages.append(b"%d %b" % (len(frame.data), frame.data))
                answers.append(encode_frame(frame.txnr, "rsp", b"200 OK"))
            elif frame.command == "open":
                answers.append(encode_frame(frame.txnr, "rsp", self.OPEN_ANSWER))
            elif frame.command == "close":
                answers.append(encode_frame(frame.txnr, "rsp", b"200 OK"))
        if messages:
            super().data_received(b"".join(messages))
        if answers:
            self.transport.write(b"".join(answers))


_PRI = re.compile(rb"<(\d{1,3})>1 ")
_RECORD_ID = re.compile(rb'\{"v":1,"id":"((?:[^"\\]|\\.)*)"')
_SD_ID = re.compile(rb"\[" + re.escape(SD_ID.encode()) + rb' id="((?:[^"\\]|\\.)*)"')


def iter_frames(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The octet-counted frames of one received stream, given in pieces (a truncated last
    frame is dropped; after a framing error, the rest comes as one frame).
    `iter_frames(open(path, "rb"))` reads a file of one, line by line."""
    buffer = b""
    for data in chunks:
        buffer += data
        position = 0
        while True:
            space = buffer.find(b" ", position, position + 11)
            if space < 0:
                break
            length = buffer[position:space]
            if not length.isdigit():
                yield buffer[position:]
                return
            end = space + 1 + int(length)
            if end > len(buffer):
                break
            yield buffer[space + 1 : end]
            position = end
        buffer = buffer[position:]


def pri_of(severity: str) -> int:
    """The PRI the `siemgate` configuration gives a record of this severity."""
    return FACILITY * 8 + SYSLOG_SEVERITY[severity]


def check_received(streams: Iterable[Iterable[bytes]], prefilled: Prefilled, mode: Mode) -> dict[str, Any]:
    """Every prefilled id arrived, no other did; in `siemgate` mode the PRI matches the
    record's severity. Duplicates are counted (at-least-once allows them). `streams`: each
    connection's bytes, in pieces."""
    expected = prefilled.severities
    seen: Counter[str] = Counter()
    unparsed = wrong_pri = 0
    id_pattern = _SD_ID if mode == "siemgate" else _RECORD_ID
    for frame in (frame for chunks in streams for frame in iter_frames(chunks)):
        pri = _PRI.match(frame)
        found = id_pattern.search(frame)
        if pri is None or found is None:
            unparsed += 1
            continue
        record_id = found.group(1).decode().replace('\\"', '"').replace("\\]", "]").replace("\\\\", "\\")
        seen[record_id] += 1
        severity = expected.get(record_id)
        if mode == "siemgate" and severity is not None and int(pri.group(1)) != pri_of(severity):
            wrong_pri += 1
    missing = sum(1 for record_id in expected if record_id not in seen)
    unexpected = sum(1 for record_id in seen if record_id not in expected)
    duplicates = sum(count - 1 for count in seen.values())
    return {
        "frames": sum(seen.values()) + unparsed,
        "unique_ids": len(seen),
        "missing": missing,
        "unexpected": unexpected,
        "duplicates": duplicates,
        "unparsed_frames": unparsed,
        "wrong_pri": wrong_pri,
        "all_arrived": missing == 0 and unexpected == 0 and unparsed == 0 and wrong_pri == 0,
    }


# ------------------------------------------------------------------------------------------
# One measured run


@dataclass
class PeerResult:
    """One rsyslog run. `events_per_second` and `elapsed_seconds` cover the first to the
    last expected frame; CPU figures cover the same window."""

    mode: Mode
    workers: int | None
    records: int
    events_per_second: float
    elapsed_seconds: float
    rsyslog_cpu_seconds: float
    startup_seconds: float
    complete: bool
    check: dict[str, Any]
    cpu_seconds: dict[str, float]
    machine_busy_fraction: float
    received_bytes: int
    connections: int
    framing_errors: int
    rsyslog_exit: int | None
    config: str = field(repr=False)

    @property
    def ok(self) -> bool:
        return self.complete and bool(self.check.get("all_arrived"))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        elapsed = self.elapsed_seconds
        data["rsyslog_cores"] = round(self.rsyslog_cpu_seconds / elapsed, 3) if elapsed else None
        return data


async def measure_rsyslog_async(
    prefilled: Prefilled,
    *,
    mode: Mode = "siemgate",
    bootstrap: str | None = None,
    work: Path | None = None,
    timeout: float = 300.0,
    extra_pids: Mapping[str, int] | None = None,
    settle: float = 1.0,
    keep_stream: Path | None = None,
    workers: int | None = None,
    transport: str = "tcp",
) -> PeerResult:
    """Start rsyslogd (`mode`'s configuration, a fresh consumer group) against the
    prefilled topic, forward to a counting receiver until every record arrived or
    `timeout` seconds passed, stop rsyslogd, check what arrived.

    `bootstrap` defaults to the prefill's and must be reachable by librdkafka (against
    Tansu: the relay's address). `work` holds the run's config and log (default: a
    temporary directory, removed). `extra_pids` ({"relay": pid, "tansu": pid}) get their
    CPU reported over the same window. `workers`: rsyslog's main-queue worker threads
    (default: rsyslog's own, one). `settle` seconds after the last expected frame catch
    duplicates. `keep_stream` receives the raw stream after the run (`name.1.ext` ... for
    further connections). Raises RuntimeError when rsyslogd rejects its configuration or
    dies."""
    error = check_rsyslog()
    if error:
        raise RuntimeError(error)
    with contextlib.ExitStack() as stack:
        if work is None:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="siemgate-peer-")))
        run_dir = work / f"rsyslog-{mode}-{uuid.uuid4().hex[:6]}"
        run_dir.mkdir(parents=True)
        reception = Reception(expected=prefilled.count, pids=dict(extra_pids or {}))
        loop = asyncio.get_running_loop()
        protocol = RelpReceiver if transport == "relp" else Receiver
        server = await loop.create_server(lambda: protocol(reception), "127.0.0.1", 0)
        try:
            config = rsyslog_config(
                mode, bootstrap=bootstrap or prefilled.bootstrap, topic=prefilled.topic,
                group=f"peer-{mode}-{uuid.uuid4().hex[:8]}", port=int(server.sockets[0].getsockname()[1]),
                work=run_dir, workers=workers, transport=transport,
            )
            started, exit_code = await _run_rsyslogd(config, run_dir, reception, mode, timeout, settle)
        finally:
            server.close()
            await server.wait_closed()
    if keep_stream is not None:
        for index, chunks in enumerate(reception.streams):
            with open(keep_stream.with_suffix(f".{index}{keep_stream.suffix}") if index else keep_stream, "wb") as f:
                f.writelines(chunks)
    check = check_received(reception.streams, prefilled, mode)
    reception.streams.clear()
    first, last = reception.first_at, reception.complete_at or reception.last_at
    elapsed = last - first if first is not None and last is not None else 0.0
    counted = prefilled.count if reception.complete_at is not None else reception.frames
    cpu = {name: round(reception.cpu_complete[name] - reception.cpu_first[name], 3)
           for name in reception.cpu_complete if name in reception.cpu_first}
    busy0, total0 = reception.busy_first
    busy1, total1 = reception.busy_complete
    return PeerResult(
        mode=mode,
        workers=workers,
        records=prefilled.count,
        events_per_second=round(counted / elapsed, 1) if elapsed else 0.0,
        elapsed_seconds=round(elapsed, 3),
        rsyslog_cpu_seconds=cpu.get("rsyslogd", 0.0),
        startup_seconds=round(first - started, 3) if first is not None else float("nan"),
        complete=reception.complete_at is not None,
        check=check,
        cpu_seconds=cpu,
        machine_busy_fraction=round((busy1 - busy0) / (total1 - total0), 3) if total1 > total0 else 0.0,
        received_bytes=reception.bytes,
        connections=reception.connections,
        framing_errors=reception.framing_errors,
        rsyslog_exit=exit_code,
        config=config,
    )


async def _run_rsyslogd(
    config: str, run_dir: Path, reception: Reception, mode: Mode, timeout: float, settle: float
) -> tuple[float, int | None]:
    """Validate and run rsyslogd until `reception` is complete or `timeout`; always stop it.
    Returns (start time, rsyslogd's exit code)."""
    config_path = run_dir / "rsyslog.conf"
    config_path.write_text(config)
    checked = await asyncio.to_thread(
        subprocess.run, [RSYSLOGD, "-N1", "-f", str(config_path)], capture_output=True, text=True, timeout=60
    )
    if checked.returncode != 0:
        raise RuntimeError(f"rsyslogd rejects the {mode} configuration:\n{checked.stdout}{checked.stderr}")
    log_path = run_dir / "rsyslogd.log"
    started = time.perf_counter()
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            [RSYSLOGD, "-n", "-f", str(config_path), "-i", str(run_dir / "rsyslogd.pid")],
            stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
    reception.pids["rsyslogd"] = process.pid
    try:
        deadline = started + timeout
        while not reception.done.is_set():
            if process.poll() is not None:
                raise RuntimeError(f"rsyslogd exited with {process.returncode}:\n{tail(log_path)}")
            left = deadline - time.perf_counter()
            if left <= 0:
                log(f"{mode}: timeout after {timeout:g} s with {reception.frames:,} of {reception.expected:,} frames")
                reception.finish()
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(reception.done.wait(), min(left, 0.5))
        await asyncio.sleep(settle)
    finally:
        await asyncio.to_thread(stop_process, process, "rsyslogd", 30)
    return started, process.returncode


def measure_rsyslog(prefilled: Prefilled, **options: Any) -> PeerResult:
    """`measure_rsyslog_async` for sync callers (runs its own event loop)."""
    return asyncio.run(measure_rsyslog_async(prefilled, **options))


# ------------------------------------------------------------------------------------------
# Command line


@contextlib.contextmanager
def broker_for_librdkafka(work: Path, bootstrap: str | None) -> Iterator[tuple[str, dict[str, int]]]:
    """(bootstrap, pids to account): `bootstrap` as given (a real Kafka needs no relay), or
    Tansu behind a relay process, both stopped on exit."""
    if bootstrap:
        log(f"using the Kafka broker at {bootstrap}")
        yield bootstrap, {}
        return
    relayed: RelayedTansu = start_tansu_behind_relay(
        str(work / "tansu.log"), relay="process", relay_log_path=str(work / "relay.log")
    )
    try:
        pids = {"relay": relayed.relay.pid}  # type: ignore[union-attr]
        if relayed.broker.process is not None:
            pids["tansu"] = relayed.broker.process.pid
        log(f"started Tansu at {relayed.tansu_address} behind a relay at {relayed.bootstrap_servers}")
        yield relayed.bootstrap_servers, pids
    finally:
        relayed.stop()


def format_table(results: list[PeerResult]) -> str:
    header = (f"{'configuration':<13} {'events/s':>10} {'elapsed s':>10} {'rsyslog CPU s':>14} {'cores':>6} "
              f"{'relay CPU':>10} {'tansu CPU':>10} {'receiver':>9} {'startup s':>10}  all arrived")
    lines = [header, "-" * len(header)]
    for r in results:
        cores = r.rsyslog_cpu_seconds / r.elapsed_seconds if r.elapsed_seconds else 0.0
        name = r.mode if r.workers is None else f"{r.mode} x{r.workers}"
        lines.append(
            f"{name:<13} {r.events_per_second:>10,.0f} {r.elapsed_seconds:>10.2f} {r.rsyslog_cpu_seconds:>14.2f} "
            f"{cores:>6.2f} {r.cpu_seconds.get('relay', float('nan')):>10.2f} "
            f"{r.cpu_seconds.get('tansu', float('nan')):>10.2f} {r.cpu_seconds.get('receiver', 0.0):>9.2f} "
            f"{r.startup_seconds:>10.1f}  {'yes' if r.ok else 'NO'}"
            + ("" if r.ok else f" ({r.check.get('missing')} missing, {r.check.get('duplicates')} dup, "
                                f"{r.check.get('wrong_pri')} wrong PRI, complete={r.complete})")
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--events", type=int, default=300_000, help="records to prefill and forward (default 300000)")
    parser.add_argument("--partitions", type=int, default=1, help="partitions of the topic (default 1)")
    parser.add_argument("--modes", default=",".join(MODES), help="siemgate,passthrough (default: both, in that order)")
    parser.add_argument("--rsyslog-workers", type=int, default=None,
                        help="rsyslog main-queue worker threads (default: rsyslog's own, one)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds allowed per run (default 300)")
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"),
                        help="a broker librdkafka can use as it is (default: Tansu behind a relay)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep-logs", type=Path, metavar="DIR", help="copy configs and logs into DIR at the end")
    parser.add_argument("--results-dir", type=Path, default=BENCH_DIR / "results")
    args = parser.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    for mode in modes:
        if mode not in MODES:
            parser.error(f"--modes: {mode!r} is not one of {', '.join(MODES)}")
    args.modes = modes
    return args


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    missing = check_rsyslog()
    if missing:
        log(missing)
        return 2
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    results: list[PeerResult] = []
    with tempfile.TemporaryDirectory(prefix="siemgate-peer-") as tmp:
        work = Path(tmp)
        try:
            with broker_for_librdkafka(work, args.bootstrap) as (bootstrap, pids):
                topic = f"peer-{uuid.uuid4().hex[:8]}"
                log(f"prefilling {args.events:,} records on {topic} ({args.partitions} partition(s)) ...")
                prefilled = prefill(bootstrap, topic, args.events, partitions=args.partitions, seed=args.seed)
                log(f"prefilled in {prefilled.seconds:.1f} s ({prefilled.events_per_second:,.0f} events/s), "
                    f"{prefilled.value_bytes / prefilled.count:.0f} bytes per record")
                for mode in args.modes:
                    log(f"rsyslog {mode}: imkafka -> omfwd, waiting for the consumer group and {args.events:,} "
                        "frames ...")
                    result = measure_rsyslog(prefilled, mode=mode, work=work, timeout=args.timeout, extra_pids=pids,
                                             workers=args.rsyslog_workers)
                    log(f"rsyslog {mode}: {result.events_per_second:,.0f} events/s "
                        f"({'all arrived' if result.ok else 'INCOMPLETE'})")
                    results.append(result)
        finally:
            if args.keep_logs is not None:
                args.keep_logs.mkdir(parents=True, exist_ok=True)
                for path in work.glob("*.log"):
                    shutil.copy(path, args.keep_logs / path.name)
                for path in [*work.glob("rsyslog-*/*.log"), *work.glob("rsyslog-*/*.conf")]:
                    shutil.copy(path, args.keep_logs / f"{path.parent.name}-{path.name}")
    machine: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "rsyslog": rsyslog_version(),
        "aiokafka": version_of("aiokafka"),
        "broker": args.bootstrap or "tansu (in memory, single node) behind siemgate_standins.kafka_relay",
        "loadavg_at_end": os.getloadavg(),
    }
    document = {
        "benchmark": "forward-peer",
        "timestamp": stamp,
        "command": " ".join(["python", "bench/forward_peer.py", *(argv or sys.argv[1:])]),
        "machine": machine,
        "prefill": prefilled.summary(),
        "performance_notes_events_per_second": PERFORMANCE_NOTES,
        "results": [r.to_dict() for r in results],
    }
    args.results_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(document, indent=2, default=str)
    (args.results_dir / f"forward-peer-{stamp}.json").write_text(text + "\n")
    (args.results_dir / "forward-peer-latest.json").write_text(text + "\n")
    print()
    print(f"rsyslog as the forwarding peer, {stamp}: {args.events:,} records "
          f"(mean {prefilled.value_bytes / prefilled.count:.0f} bytes), {os.cpu_count()} CPUs, "
          f"{machine['rsyslog']}")
    print(format_table(results))
    print(f"(performance notes: passthrough ~{PERFORMANCE_NOTES['passthrough']:,}, "
          f"mmjsonparse+PRI+SD ~{PERFORMANCE_NOTES['siemgate']:,} events/s)")
    log(f"results written to {display(args.results_dir / f'forward-peer-{stamp}.json')} and forward-peer-latest.json")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
