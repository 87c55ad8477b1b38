"""The whole pipeline as real processes, a steady stream of senders, and the conservation check.

    senders (this process) ──HTTP──▶ `siemgate ingest` (its spool) ──▶ Kafka ──▶ `siemgate forward`
        ──▶ file (NDJSON) │ rsyslogd (TCP or RELP, RFC 5424, min_severity medium) │ HEC stand-in (indexer acks)
            │ Elasticsearch stand-in (data stream) │ Sentinel stand-in (Entra ID + Logs Ingestion API, the DCR
            declared by deploy/azure/sentinel.json; the sink sends OCSF rows, `event_format: ocsf`)

`Pipeline` starts and stops all of it; a fault test injects its fault, clears it, and calls
`Pipeline.conclude`, which stops the senders, waits until every buffer is empty (the spool,
the forwarders' lag, the consumer groups' committed offsets) and every event answered 200 has
reached every sink it is routed to, sends one fresh batch, checks that it goes through, and
returns the accounting (`FaultResult`): acked, delivered, lost, duplicates, recovery time.

What the senders do, like the vendor's: each one posts a batch, waits for the answer, posts
the next (paced to a steady rate). Every event of a batch answered 200 is owed; a batch
answered anything else, or not answered at all (the ingest died), is not owed: the vendor
never resends it. Whatever of an unanswered batch still reached a sink is counted as
"unacked delivered", never as invented.

A siemgate process that dies on its own is a failure (`FaultResult.problems`); the harness
restarts it, as a supervisor would, so that the accounting still says whether anything acked
was lost beyond the crash. Waits are bounded: a recovery that makes no progress for
STALL_SECONDS, or a drain with every buffer empty and events still missing, gives up.

Loopback only; every process is stopped at the end (and is in the `processes` fixture list).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import json
import os
import random
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from siemgate_standins.broker import free_port
from siemgate_standins.elasticsearch import ElasticsearchStandIn
from siemgate_standins.sentinel import (
    DEFAULT_TENANT,
    AppRegistration,
    DataCollectionRule,
    SentinelStandIn,
    stream_declarations,
)
from siemgate_standins.splunk_hec import HecToken, SplunkHecStandIn
from siemgate_standins.tcp_proxy import TcpProxy
from tests.forwarders.rsyslog import Rsyslog
from tests.support import PrivateTansu, siemgate_command, wait_until

KEY = "faults-key-0123456789"
HEC_TOKEN = "6b0e8f7a-3c2d-4e1f-9a8b-7c6d5e4f3a2b"
ES_TARGET = "logs-siemgate.alerts-default"
AZURE_CLIENT = "5a1e0b7d-0000-4000-8000-00000000fa17"
AZURE_SECRET = "faults-azure-secret-0123"
AZURE_DCR = "dcr-fa17fa17fa17fa17fa17fa17fa17fa17"
AZURE_STREAM = "Custom-SiemgateOcsf"
AZURE_TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "azure" / "sentinel.json"
SEVERITIES = ("high", "medium", "low", "unknown")

# The steady stream: SENDERS sequential senders, each posting BATCH_EVENTS events every
# BATCH_INTERVAL seconds at most (less often when answers are slower): ~300 events/s.
SENDERS = 3
BATCH_EVENTS = 10
BATCH_INTERVAL = 0.1
# Sinks: small batches and a short retry cap, so that recovery is measured in seconds.
SINK_BATCH = 200
RETRY_CAP_SECONDS = 2.0
# Bounds (never reached when things work; they keep a broken run from hanging).
START_TIMEOUT = 60.0
RECOVERY_TIMEOUT = 60.0
DRAIN_TIMEOUT = 60.0
FRESH_TIMEOUT = 60.0
# A TCP syslog receiver stopped mid-stream loses what it had not read: at most the batches in
# flight (batch.in_flight + 1 = 3 of 500 events).
IN_TRANSIT_MAX = 1500
# A recovery whose missing events do not change for this long has stalled (they are lost);
# a drain whose buffers are all empty while events are missing this long is over.
STALL_SECONDS = 20.0
EMPTY_BUT_MISSING_SECONDS = 5.0
# Duplicates beyond this many per owed delivery are "absurd" (a redelivery loop), not at-least-once.
ABSURD_DUPLICATION = 1.0


def routed(sink: str, severity: str) -> bool:
    """Whether an event of `severity` is routed to `sink` (the config below: syslog takes
    medium and up; unknown severity is routed as high, the default)."""
    return not (sink == "syslog" and severity == "low")


async def poll(condition: Callable[[], bool | Awaitable[bool]], what: str, timeout: float,
               interval: float = 0.25) -> None:
    """`tests.support.wait_until`, polling less often: the conditions here read sink files."""
    await wait_until(condition, what, timeout, interval)


# ------------------------------------------------------------------------------------------
# A size-limited directory (the spool's disk, the file sink's disk)


class SmallDisk:
    """A tmpfs of `size_bytes` mounted on `path` (needs root: every machine of this project,
    CI included, runs as root). `fill()` takes all its free space with a ballast file, so that
    the next writes fail with ENOSPC; `free()` deletes the ballast."""

    def __init__(self, path: Path, size_bytes: int) -> None:
        self.path = path
        self.size_bytes = size_bytes
        self.ballast = path / ".ballast"
        self.mounted = False

    @staticmethod
    def unavailable_reason() -> str | None:
        if os.geteuid() != 0:
            return "mounting a size-limited tmpfs needs root (os.geteuid() != 0)"
        return None

    def mount(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.size_bytes},mode=0755", "tmpfs", str(self.path)],
                       check=True, capture_output=True)
        self.mounted = True

    def available(self) -> int:
        stats = os.statvfs(self.path)
        return stats.f_bavail * stats.f_frsize

    def fill(self, leave_bytes: int = 0) -> None:
        """Allocate every free byte but `leave_bytes` to the ballast (grown, if it exists). Others
        may be writing meanwhile: an allocation they made too large is measured and tried again;
        with `leave_bytes` 0 the last bytes are written until the disk refuses them."""
        with open(self.ballast, "ab") as ballast:
            fd = ballast.fileno()
            for _ in range(50):
                extra = self.available() - leave_bytes
                if extra <= 0:
                    break
                try:
                    os.posix_fallocate(fd, ballast.seek(0, os.SEEK_END), extra)
                    break
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
            if leave_bytes == 0:
                with contextlib.suppress(OSError):
                    while True:
                        os.write(fd, bytes(4096))

    def free(self) -> None:
        self.ballast.unlink(missing_ok=True)

    def unmount(self) -> None:
        if self.mounted:
            result = subprocess.run(["umount", str(self.path)], capture_output=True)
            if result.returncode != 0:  # still in use (a process not yet reaped): detach it
                subprocess.run(["umount", "-l", str(self.path)], capture_output=True)
            self.mounted = False


# ------------------------------------------------------------------------------------------
# Kafka: the session broker, or a private Tansu behind a proxy the test controls


@dataclass
class KafkaTarget:
    bootstrap_servers: str
    idempotence: bool


class ProxiedTansu:
    """A Tansu of one test behind a `TcpProxy`: Tansu advertises the proxy's address, so every
    client (ingest, forwarders, the test's own) goes through the proxy, and `proxy.cut()` is a
    broker unreachable for everyone. Tansu keeps its data in memory: `kill` + `start` gives an
    EMPTY broker on the same address."""

    def __init__(self, make: Callable[..., PrivateTansu]) -> None:
        self._make = make
        self.tansu_port = stable_port()
        self.proxy = TcpProxy(("127.0.0.1", self.tansu_port), port=stable_port())
        self.tansu: PrivateTansu | None = None

    async def start(self) -> None:
        await self.proxy.start()
        self.tansu = self._make(port=self.tansu_port, advertised=self.proxy.address)
        await self.tansu.start()

    @property
    def target(self) -> KafkaTarget:
        return KafkaTarget(self.proxy.address, idempotence=False)

    @property
    def pid(self) -> int:
        assert self.tansu is not None and self.tansu.process is not None
        return self.tansu.process.pid

    async def stop(self) -> None:
        if self.tansu is not None:
            await self.tansu.kill()
        await self.proxy.stop()


_HANDED_OUT: set[int] = set()


def stable_port() -> int:
    """A free loopback TCP port below the kernel's ephemeral range, so that no outgoing
    connection and no `port=0` listener can take it while the process meant to listen on it
    starts, or restarts on it after a fault (free_port's ports come from the ephemeral range:
    the suite saw one taken in the second between the pick and the bind)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as ports:
            low = int(ports.read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 0
    if low < 12_000:
        return free_port()
    for _ in range(200):
        port = random.randrange(10_000, low)
        if port in _HANDED_OUT:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock, contextlib.suppress(OSError):
            sock.bind(("127.0.0.1", port))
            _HANDED_OUT.add(port)
            return port
    return free_port()


def event_topics(prefix: str) -> list[str]:
    return [*(f"{prefix}.events.{s}" for s in SEVERITIES), f"{prefix}.control"]


async def committed_backlog(kafka: KafkaTarget, prefix: str, groups: Iterable[str]) -> dict[str, int]:
    """Per consumer group: records on the event topics past the group's committed offsets
    (Kafka's consumer lag; read with a consumer that joins no group)."""
    probe = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap_servers, group_id=None, enable_auto_commit=False,
                             request_timeout_ms=5000)
    await probe.start()
    try:
        await probe.topics()
        partitions = [TopicPartition(topic, p) for topic in event_topics(prefix)
                      for p in sorted(probe.partitions_for_topic(topic) or ())]
        ends = await probe.end_offsets(partitions) if partitions else {}
    finally:
        await probe.stop()
    backlog: dict[str, int] = {}
    for group in groups:
        reader = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap_servers, group_id=group,
                                  enable_auto_commit=False, request_timeout_ms=5000)
        await reader.start()
        try:
            total = 0
            for tp, end in ends.items():
                committed = await reader.committed(tp)
                total += max(0, end - (committed if committed is not None and committed >= 0 else 0))
            backlog[group] = total
        finally:
            await reader.stop()
    return backlog


async def dead_lettered(kafka: KafkaTarget, prefix: str, sinks: Iterable[str]) -> dict[str, set[str]]:
    """Per sink, the event ids on its dead-letter topic `<prefix>.dlq.<sink>` (the key of a dead
    letter is the event's id), read from the beginning to the end offsets of now."""
    probe = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap_servers, group_id=None, enable_auto_commit=False,
                             request_timeout_ms=5000)
    await probe.start()
    found: dict[str, set[str]] = {sink: set() for sink in sinks}
    try:
        await probe.topics()
        partitions = {TopicPartition(f"{prefix}.dlq.{sink}", p): sink for sink in found
                      for p in sorted(probe.partitions_for_topic(f"{prefix}.dlq.{sink}") or ())}
        if not partitions:
            return found
        ends = await probe.end_offsets(list(partitions))
        wanted = {tp: end for tp, end in ends.items() if end > 0}
        if not wanted:
            return found
        probe.assign(list(wanted))
        await probe.seek_to_beginning(*wanted)
        deadline = time.monotonic() + 30

        async def behind() -> bool:
            for tp, end in wanted.items():
                if await probe.position(tp) < end:
                    return True
            return False

        while await behind():
            if time.monotonic() > deadline:
                raise Stuck(f"dead-letter topics not read to their end within 30 s: {wanted}")
            batches = await probe.getmany(timeout_ms=500)
            for tp, records in batches.items():
                for record in records:
                    if record.key is not None:
                        found[partitions[tp]].add(record.key.decode("utf-8", "replace"))
    finally:
        await probe.stop()
    return found


# ------------------------------------------------------------------------------------------
# The senders


@dataclass
class SenderStats:
    acked: dict[str, str] = field(default_factory=dict)  # event id -> severity, in ack order
    acked_batches: list[tuple[float, list[str]]] = field(default_factory=list)  # (answered at, ids)
    sent: set[str] = field(default_factory=set)
    unanswered: set[str] = field(default_factory=set)  # no answer: not owed
    refused: set[str] = field(default_factory=set)  # answered but not 200: not owed
    codes: collections.Counter[str] = field(default_factory=collections.Counter)
    first_200_after: dict[float, float] = field(default_factory=dict)


class Senders:
    """SENDERS sequential senders posting to `url` until stopped; `pause`/`resume` hold them
    between batches."""

    def __init__(self, url: str, *, tag: str, senders: int = SENDERS, batch: int = BATCH_EVENTS,
                 interval: float = BATCH_INTERVAL) -> None:
        self.url = url
        self.tag = tag
        self.count = senders
        self.batch = batch
        self.interval = interval
        self.stats = SenderStats()
        self._gate = asyncio.Event()
        self._gate.set()
        self._stopping = asyncio.Event()
        self._busy = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._numbers: collections.Counter[str] = collections.Counter()
        self._watch_after: list[float] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run(n), name=f"sender-{n}") for n in range(self.count)]

    async def stop(self) -> None:
        self._stopping.set()
        self._gate.set()
        await asyncio.gather(*self._tasks)

    async def pause(self) -> None:
        """Hold every sender before its next batch; return once none has a batch in flight."""
        self._gate.clear()
        await poll(lambda: self._busy == 0, "the senders' batches in flight", timeout=60, interval=0.02)

    def resume(self) -> None:
        self._gate.set()

    def watch_first_200_after(self, moment: float) -> None:
        """Record when the first batch sent after `moment` is answered 200."""
        self._watch_after.append(moment)

    def batch_of(self, sender: int | str) -> list[dict[str, Any]]:
        key = str(sender)
        number = self._numbers[key]
        self._numbers[key] += 1
        return [{"id": f"{self.tag}-{sender}-{number}-{i}", "severity": SEVERITIES[(number + i) % 4],
                 "type": "sql_injection", "timestamp": "2026-11-28T21:00:00Z", "source_ip": "203.0.113.7",
                 "url": "https://shop.example.com/login", "method": "POST", "rule": "942100"}
                for i in range(self.batch)]

    async def post(self, client: httpx.AsyncClient, batch: list[dict[str, Any]]) -> int | None:
        """Post one batch; account for it. Returns the status, None when there was no answer."""
        ids = [e["id"] for e in batch]
        stats = self.stats
        stats.sent.update(ids)
        sent_at = time.monotonic()
        try:
            response = await client.post(self.url, content=orjson.dumps(batch),
                                         headers={"X-Api-Key": KEY, "Content-Type": "application/json"})
        except httpx.TransportError as exc:
            stats.unanswered.update(ids)
            stats.codes[type(exc).__name__] += 1
            return None
        stats.codes[str(response.status_code)] += 1
        if response.status_code != 200:
            stats.refused.update(ids)
            return response.status_code
        answered_at = time.monotonic()
        for e in batch:
            stats.acked[e["id"]] = e["severity"]
        stats.acked_batches.append((answered_at, ids))
        for moment in self._watch_after:
            if sent_at >= moment and moment not in stats.first_200_after:
                stats.first_200_after[moment] = answered_at
        return 200

    async def _run(self, n: int) -> None:
        loop = asyncio.get_running_loop()
        async with httpx.AsyncClient(timeout=30) as client:
            next_at = loop.time()
            while True:
                await self._gate.wait()
                if self._stopping.is_set():
                    return
                if not self._gate.is_set():  # woken, then paused before it ran: wait again
                    continue
                self._busy += 1
                try:
                    await self.post(client, self.batch_of(n))
                finally:
                    self._busy -= 1
                next_at += self.interval
                delay = next_at - loop.time()
                if delay <= 0:
                    next_at = loop.time()
                    continue
                with contextlib.suppress(TimeoutError):  # pacing: the stop request cuts it short
                    await asyncio.wait_for(self._stopping.wait(), delay)

    def acked_before(self, moment: float) -> list[str]:
        return [i for at, ids in self.stats.acked_batches if at <= moment for i in ids]


# ------------------------------------------------------------------------------------------
# What each sink received (read incrementally: the runs are tens of thousands of events)


class Received:
    """Ids a sink received, with their count (a count above 1 is a duplicate delivery)."""

    name: str

    def __init__(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()
        self.bad_lines: list[bytes] = []

    def refresh(self) -> None:
        raise NotImplementedError

    @property
    def duplicates(self) -> int:
        return sum(n - 1 for n in self.counts.values())


class LinesReceived(Received):
    """An NDJSON file appended to by someone else: complete lines only."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self._offset = 0

    def refresh(self) -> None:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self._offset)
                data = handle.read()
        except FileNotFoundError:
            return
        complete = data[: data.rfind(b"\n") + 1]
        self._offset += len(complete)
        for line in complete.splitlines():
            if not line.strip():
                continue
            try:
                self.counts[self.event_id(line)] += 1
            except (ValueError, KeyError, TypeError):
                self.bad_lines.append(line)

    def event_id(self, line: bytes) -> str:
        return str(orjson.loads(line)["id"])


class FileReceived(LinesReceived):
    name = "file"


class SyslogReceived(LinesReceived):
    """rsyslogd's capture file: one JSON object per message, the RFC 5424 MSG being the BOM and
    the event's JSON."""

    name = "syslog"

    def event_id(self, line: bytes) -> str:
        message = str(orjson.loads(line)["msg"]).lstrip("\ufeff")
        return str(orjson.loads(message)["id"])


class HecReceived(Received):
    name = "splunk-hec"

    def __init__(self, hec: SplunkHecStandIn) -> None:
        super().__init__()
        self.hec = hec
        self._seen = 0

    def refresh(self) -> None:
        events = self.hec.events()
        for envelope in events[self._seen:]:
            self.counts[str(envelope["event"]["id"])] += 1
        self._seen = len(events)


class EsReceived(Received):
    """Documents of the data stream: `create` with `_id` = the event's id, so a redelivery is a
    409 (counted as the duplicates), never a second document."""

    name = "elasticsearch"

    def __init__(self, es: ElasticsearchStandIn) -> None:
        super().__init__()
        self.es = es
        self._count = 0

    def refresh(self) -> None:
        count = self.es.counts().get(ES_TARGET, 0)
        if count != self._count:
            self.counts = collections.Counter(self.es.documents(ES_TARGET))
            self._count = count

    @property
    def duplicates(self) -> int:
        return self.es.item_statuses.get(409, 0)


class SentinelReceived(Received):
    """Rows of the OCSF stream, by `metadata_uid` (Sentinel does not deduplicate: a redelivery is
    a second row, counted as a duplicate)."""

    name = "sentinel"

    def __init__(self, azure: SentinelStandIn) -> None:
        super().__init__()
        self.azure = azure
        self._seen = 0

    def refresh(self) -> None:
        rows = self.azure.rows()
        for row in rows[self._seen:]:
            uid = row.get("metadata_uid")
            if row.get("_stream") == AZURE_STREAM and isinstance(uid, str):
                self.counts[uid] += 1
            else:
                self.bad_lines.append(orjson.dumps(row)[:300])
        self._seen = len(rows)


# ------------------------------------------------------------------------------------------
# Accounting


@dataclass
class SinkAccount:
    """One sink's conservation line: owed (acked, routed to it) = delivered + dead_lettered + lost."""

    sink: str
    owed: int
    delivered: int
    lost: int
    duplicates: int
    unacked_delivered: int
    invented: int
    bad_lines: int
    lost_sample: list[str]
    in_transit: int = 0
    dead_lettered: int = 0


@dataclass
class FaultResult:
    fault: str
    acked: int
    owed: int
    delivered: int
    lost: int
    duplicates: int
    # One per fault episode: (what, seconds; None: not within the bound).
    recovery: list[tuple[str, float | None]]
    sinks: list[SinkAccount]
    codes: dict[str, int]
    seconds: float
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def recovery_text(self) -> str:
        parts = [("not recovered" if seconds is None else f"{seconds:.1f} s") + (f" ({what})" if what else "")
                 for what, seconds in self.recovery]
        return "; ".join(parts) or "-"

    @property
    def verdict(self) -> str:
        if not self.problems:
            return "pass"
        first = self.problems[0].splitlines()[0]
        return "FAIL: " + (first if len(first) <= 160 else first[:157] + "...")

    def row(self) -> str:
        recovery = self.recovery_text
        return (f"{self.fault:<58} acked {self.acked:>6}  delivered {self.delivered:>6}/{self.owed:<6} "
                f"lost {self.lost:>4}  duplicates {self.duplicates:>5}  recovery {recovery}")

    def as_json(self) -> dict[str, Any]:
        return json.loads(json.dumps(self, default=lambda o: o.__dict__))  # type: ignore[no-any-return]


# ------------------------------------------------------------------------------------------
# The processes


class Process:
    """A siemgate command as a child process, its output in `log`."""

    def __init__(self, args: list[str], log: Path, processes: list[subprocess.Popen[bytes]]) -> None:
        self.args = args
        self.log = log
        with open(log, "ab") as out:
            self.process = subprocess.Popen([*siemgate_command(), *args], stdout=out, stderr=out,
                                            stdin=subprocess.DEVNULL)
        processes.append(self.process)

    def alive(self) -> bool:
        return self.process.poll() is None

    def signal(self, sig: signal.Signals) -> None:
        if self.alive():
            self.process.send_signal(sig)

    async def kill(self) -> None:
        self.signal(signal.SIGKILL)
        await asyncio.to_thread(self.process.wait, 30)

    async def terminate(self, timeout: float = 30) -> int:
        self.signal(signal.SIGTERM)
        try:
            return await asyncio.to_thread(self.process.wait, timeout)
        except subprocess.TimeoutExpired:
            await self.kill()
            return -signal.SIGKILL

    def tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


async def metrics_text(client: httpx.AsyncClient, url: str) -> str | None:
    try:
        response = await client.get(url + "/metrics", timeout=5)
    except httpx.TransportError:
        return None
    return response.text if response.status_code == 200 else None


def metric_sum(text: str, name: str) -> float:
    """The sum of every sample of `name` (all label sets) in Prometheus text."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


# ------------------------------------------------------------------------------------------
# The pipeline

SINKS = ("file", "syslog", "splunk-hec", "elasticsearch", "sentinel")
# A process that dies on its own is restarted (as a supervisor would) at most this often.
MAX_RESTARTS = 3


class Stuck(AssertionError):
    """Waiting longer cannot help: a process keeps dying, or nothing is left to deliver."""


@dataclass
class ForwarderSlot:
    """One `siemgate forward` process: the sinks it runs, its endpoints' port, its config."""

    name: str
    sinks: tuple[str, ...]
    port: int
    config: Path
    process: Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class Pipeline:
    """Ingest, forwarder process(es), rsyslogd, the HEC, Elasticsearch and Sentinel stand-ins and
    the senders, for one fault test. `forwarders`: which sinks each `siemgate forward` process runs
    (default: one process, every sink)."""

    def __init__(self, tmp_path: Path, processes: list[subprocess.Popen[bytes]], kafka: KafkaTarget, *,
                 fault: str, spool_dir: Path | None = None, file_dir: Path | None = None,
                 spool_max_bytes: int | None = None, forwarders: Iterable[Iterable[str]] = (SINKS,),
                 syslog: str = "tcp") -> None:
        self.tmp_path = tmp_path
        self.processes = processes
        self.kafka = kafka
        self.fault = fault
        self.prefix = f"f{uuid.uuid4().hex[:8]}"
        self.logs = tmp_path / "logs"
        self.logs.mkdir(exist_ok=True)
        self.spool_dir = spool_dir or tmp_path / "spool"
        self.spool_max_bytes = spool_max_bytes
        self.out = (file_dir or tmp_path / "out") / "events.ndjson"
        self.ingest_port = stable_port()
        self.ingest_url = f"http://127.0.0.1:{self.ingest_port}"
        self.config = tmp_path / "siemgate.json"
        self.slots: dict[str, ForwarderSlot] = {}
        for sinks in forwarders:
            sinks = tuple(sinks)
            name = "+".join(sinks) if sinks != SINKS else "all"
            self.slots[name] = ForwarderSlot(name, sinks, stable_port(), tmp_path / f"forward-{name}.json")
        # Fixed ports: the sinks are restarted on them in fault (b).
        # syslog: "tcp" (no acknowledgement) or "relp" (imrelp: every message acknowledged).
        assert syslog in ("tcp", "relp"), syslog
        self.syslog = syslog
        self.rsyslog = Rsyslog(tmp_path / "rsyslog", tcp_port=stable_port(), tls_port=stable_port(),
                               mtls_port=stable_port(), relp=syslog == "relp", relp_port=stable_port(),
                               relp_tls_port=stable_port())
        self.hec = SplunkHecStandIn(tokens=[HecToken(HEC_TOKEN, ack=True)], ack_delay_seconds=0.05,
                                    port=stable_port())
        self.es = ElasticsearchStandIn(keep_sources=False, port=stable_port())
        self.azure = SentinelStandIn(
            apps=[AppRegistration(AZURE_CLIENT, secrets=(AZURE_SECRET,))],
            rules=[DataCollectionRule(AZURE_DCR, stream_declarations(json.loads(AZURE_TEMPLATE.read_text())))],
            port=stable_port())
        self.received: list[Received] = []
        self.ingest: Process | None = None
        self.senders = Senders(self.ingest_url + "/webhook/appsec", tag=self.prefix)
        self.client = httpx.AsyncClient(timeout=10)
        self.started = time.monotonic()
        self.notes: list[str] = []
        self.problems: list[str] = []
        # Sinks whose transport has no acknowledgement (TCP syslog), stopped mid-stream by the
        # test: what their receiver had not read yet is lost in transit, as documented
        # (docs/RELIABILITY.md); up to IN_TRANSIT_MAX events, reported apart, not counted as lost.
        self.unacknowledged: set[str] = set()
        self._starts: collections.Counter[str] = collections.Counter()
        self._restarts: collections.Counter[str] = collections.Counter()
        self.recoveries: list[tuple[str, float | None]] = []

    # -- configuration

    def write_config(self) -> None:
        retry = {"initial_seconds": 0.2, "max_seconds": RETRY_CAP_SECONDS}
        batch = {"max_events": SINK_BATCH}
        spool: dict[str, Any] = {"path": str(self.spool_dir), "ack_deadline_seconds": 1}
        if self.spool_max_bytes is not None:
            spool["max_bytes"] = self.spool_max_bytes
        config: dict[str, Any] = {
            "log_level": "info",
            "listen": {"host": "127.0.0.1", "port": self.ingest_port},
            "state_dir": str(self.tmp_path / "state"),
            "quarantine": {"path": str(self.tmp_path / "quarantine")},
            "integrations": [{"name": "appsec", "auth": {"header": "X-Api-Key", "values": [KEY]}}],
            "bus": {
                "type": "kafka",
                "kafka": {"bootstrap_servers": self.kafka.bootstrap_servers, "topic_prefix": self.prefix,
                          "idempotence": self.kafka.idempotence, "produce_timeout_seconds": 4,
                          "topics": {"partitions": 2}},
                "spool": spool,
            },
            "forward": {"drain_timeout_seconds": 10, "lag_interval_seconds": 0.5,
                        "listen": {"host": "127.0.0.1", "port": 0}},
            "sinks": [
                {"name": "file", "type": "file", "path": str(self.out), "batch": batch, "retry": retry},
                {"name": "syslog", "type": "syslog", "address": self.syslog_address,
                 "format": "rfc5424", "min_severity": "medium", "batch": batch, "retry": retry},
                {"name": "splunk-hec", "type": "splunk_hec", "url": self.hec.url, "token": HEC_TOKEN,
                 "ack": True, "ack_poll_seconds": 0.2, "batch": batch, "retry": retry},
                {"name": "elasticsearch", "type": "elasticsearch", "url": self.es.url, "data_stream": ES_TARGET,
                 "batch": batch, "retry": retry},
                {"name": "sentinel", "type": "sentinel", "endpoint": self.azure.url, "authority_host": self.azure.url,
                 "dcr_immutable_id": AZURE_DCR, "tenant_id": DEFAULT_TENANT, "client_id": AZURE_CLIENT,
                 "client_secret": AZURE_SECRET, "event_format": "ocsf", "batch": batch, "retry": retry},
            ],
        }
        self.config.write_text(json.dumps(config, indent=1))  # JSON is YAML
        for slot in self.slots.values():
            config["forward"]["listen"]["port"] = slot.port
            slot.config.write_text(json.dumps(config, indent=1))

    @property
    def syslog_address(self) -> str:
        if self.syslog == "relp":
            return f"relp://127.0.0.1:{self.rsyslog.relp_port}"
        return f"tcp://127.0.0.1:{self.rsyslog.tcp_port}"

    @property
    def groups(self) -> list[str]:
        return [f"{self.prefix}-{name}" for name in SINKS]

    # -- lifecycle

    async def start(self) -> None:
        self.rsyslog.start()
        await self.hec.start()
        await self.es.start()
        await self.azure.start()
        self.received = [FileReceived(self.out), SyslogReceived(self.rsyslog.received), HecReceived(self.hec),
                         EsReceived(self.es), SentinelReceived(self.azure)]
        self.write_config()
        await self.start_ingest()
        for name in self.slots:
            await self.start_forwarder(name)

    async def start_ingest(self) -> None:
        self._starts["ingest"] += 1
        self.ingest = Process(["ingest", "-c", str(self.config)], self.logs / f"ingest-{self._starts['ingest']}.log",
                              self.processes)
        await self.wait_ready(self.ingest, self.ingest_url)

    async def wait_ready(self, process: Process, url: str) -> None:
        async def ready() -> bool:
            if not process.alive():
                raise Stuck(f"siemgate {process.args[0]} exited at start ({process.process.returncode}):\n"
                            f"{process.tail()}")
            try:
                return (await self.client.get(url + "/readyz")).status_code == 200
            except httpx.TransportError:
                return False

        await poll(ready, f"siemgate {process.args[0]} to be ready", START_TIMEOUT, interval=0.05)

    def forwarder(self, name: str | None = None) -> Process:
        slot = self.slots[name] if name is not None else next(iter(self.slots.values()))
        assert slot.process is not None
        return slot.process

    async def start_forwarder(self, name: str | None = None) -> None:
        slot = self.slots[name] if name is not None else next(iter(self.slots.values()))
        self._starts[slot.name] += 1
        args = ["forward", "-c", str(slot.config)]
        for sink in slot.sinks:
            args += ["--sink", sink]
        slot.process = Process(args, self.logs / f"forward-{slot.name}-{self._starts[slot.name]}.log",
                               self.processes)
        await self.wait_ready(slot.process, slot.url)

    async def supervise(self) -> None:
        """A process that died on its own (a crash: the test kills none without restarting it)
        is a problem; it is restarted as a supervisor would, MAX_RESTARTS times at most."""
        managed: list[tuple[str, Process | None]] = [("ingest", self.ingest)]
        managed += [(name, slot.process) for name, slot in self.slots.items()]
        for name, process in managed:
            if process is None or process.alive():
                continue
            self.problems.append(f"siemgate {' '.join(process.args[:1] + process.args[3:])} CRASHED "
                                 f"(exit {process.process.returncode}): {crash_summary(process)} "
                                 f"[log: {process.log}]")
            if self._restarts[name] >= MAX_RESTARTS:
                raise Stuck(f"siemgate {name} keeps crashing")
            self._restarts[name] += 1
            self.notes.append(f"{name} restarted by the test after it crashed (as a supervisor would)")
            if name == "ingest":
                await self.start_ingest()
            else:
                await self.start_forwarder(name)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.senders.stop()
        for process in [slot.process for slot in self.slots.values()] + [self.ingest]:
            if process is not None:
                await process.terminate(timeout=20)
        await self.hec.stop()
        await self.es.stop()
        await self.azure.stop()
        self.rsyslog.stop()
        await self.client.aclose()

    # -- the stream

    async def start_stream(self) -> None:
        """Start the senders; return once events flow end to end (each sink got some)."""
        self.senders.start()

        def flowing() -> bool:
            self.refresh()
            return all(r.counts for r in self.received)

        await poll(flowing, "events to reach every sink", START_TIMEOUT)

    def refresh(self) -> None:
        for received in self.received:
            received.refresh()

    def missing(self, ids: Iterable[str]) -> dict[str, int]:
        """Per sink, how many of `ids` (acked events) it should have and has not (yet)."""
        acked = self.senders.stats.acked
        out = {}
        for received in self.received:
            out[received.name] = sum(1 for i in ids if routed(received.name, acked[i]) and i not in received.counts)
        return out

    async def measure_recovery(self, cleared_at: float, what: str = "", *,
                               timeout: float = RECOVERY_TIMEOUT) -> float | None:
        """Seconds from `cleared_at` (the fault removed) until the senders get 200 again AND every
        event acked before `cleared_at` has reached every sink it is routed to. None: not within
        `timeout` (the drain that follows then says what is missing)."""
        self.senders.watch_first_200_after(cleared_at)
        before = self.senders.acked_before(cleared_at)
        deadline = time.monotonic() + timeout
        last: dict[str, int] = {}
        changed_at = time.monotonic()
        try:
            while time.monotonic() < deadline:
                await self.supervise()
                self.refresh()
                answered = self.senders.stats.first_200_after.get(cleared_at)
                missing = self.missing(before)
                if answered is not None and not any(missing.values()):
                    seconds = max(answered, time.monotonic()) - cleared_at
                    self.recoveries.append((what, seconds))
                    return seconds
                if missing != last:
                    last, changed_at = missing, time.monotonic()
                elif time.monotonic() - changed_at > STALL_SECONDS:
                    self.notes.append(f"recovery ({what or 'backlog'}) stalled: {missing} events acked before the "
                                      f"fault was cleared still missing after {STALL_SECONDS:g} s without progress")
                    break
                await asyncio.sleep(0.25)
            else:
                self.notes.append(f"recovery ({what or 'backlog'}) not within {timeout:g} s: still missing per sink "
                                  f"{last}, first 200 after the fault {'seen' if answered else 'not seen'}")
        except Stuck as exc:
            self.problems.append(str(exc))
        self.recoveries.append((what, None))
        return None

    async def first_200_after(self, moment: float, what: str, timeout: float = RECOVERY_TIMEOUT) -> float | None:
        """Seconds from `moment` until a batch sent after it is answered 200 (recorded as a recovery)."""
        self.senders.watch_first_200_after(moment)
        try:
            await poll(lambda: moment in self.senders.stats.first_200_after, f"a 200 ({what})", timeout)
        except AssertionError:
            self.recoveries.append((what, None))
            return None
        seconds = self.senders.stats.first_200_after[moment] - moment
        self.recoveries.append((what, seconds))
        return seconds

    async def keep_streaming(self, events: int = 1_000) -> None:
        """Until `events` more events are acked: the stream goes on after the fault."""
        target = len(self.senders.stats.acked) + events
        await poll(lambda: len(self.senders.stats.acked) >= target, f"{events} more acked events", 120)

    async def spool_events(self) -> float | None:
        text = await metrics_text(self.client, self.ingest_url)
        return None if text is None else metric_sum(text, "siemgate_spool_events")

    async def forward_lag(self) -> float | None:
        total = 0.0
        for slot in self.slots.values():
            text = await metrics_text(self.client, slot.url)
            if text is None or "siemgate_forward_lag_events" not in text:
                return None
            total += metric_sum(text, "siemgate_forward_lag_events")
        return total

    async def buffers(self) -> dict[str, Any]:
        """The spool, the forwarders' lag (metric) and the groups' committed lag (Kafka)."""
        state: dict[str, Any] = {"spool_events": await self.spool_events(), "forward_lag": await self.forward_lag()}
        try:
            state["committed_backlog"] = await committed_backlog(self.kafka, self.prefix, self.groups)
        except Exception as exc:  # the broker may be unreachable right now: not empty, then
            state["committed_backlog"] = f"unknown: {exc!r}"
        return state

    def owed_missing(self, missing: dict[str, int]) -> dict[str, int]:
        """`missing` less what a sink without acknowledgement may have lost in transit when its
        receiver stopped (up to IN_TRANSIT_MAX; `account` reports it apart, and as lost beyond).
        RELP syslog is acknowledged: it never gets that allowance."""
        assert not (self.syslog == "relp" and "syslog" in self.unacknowledged), "RELP syslog is acknowledged"
        return {sink: 0 if sink in self.unacknowledged and count <= IN_TRANSIT_MAX else count
                for sink, count in missing.items()}

    @staticmethod
    def buffers_empty(state: dict[str, Any]) -> bool:
        backlog = state.get("committed_backlog")
        return (state.get("spool_events") == 0 and state.get("forward_lag") == 0 and isinstance(backlog, dict)
                and not any(backlog.values()))

    async def wait_quiet(self, timeout: float = DRAIN_TIMEOUT) -> dict[str, Any]:
        """Until every acked event is at every sink and every buffer is empty; the last state."""
        last: dict[str, Any] = {}
        empty_since: float | None = None

        async def quiet() -> bool:
            nonlocal last, empty_since
            await self.supervise()
            self.refresh()
            missing = self.missing(self.senders.stats.acked)
            state = await self.buffers()
            if any(missing.values()) and self.buffers_empty(state) and last.get("missing") == missing:
                # Nothing left anywhere to deliver, and still missing: waiting cannot help.
                empty_since = empty_since or time.monotonic()
                if time.monotonic() - empty_since > EMPTY_BUT_MISSING_SECONDS:
                    last = {"missing": missing, **state}
                    if not any(self.owed_missing(missing).values()):
                        return True  # lost in transit only: `account` reports it apart
                    raise Stuck(f"every buffer is empty but events are missing: {last}")
            else:
                empty_since = None
            last = {"missing": missing, **state}
            return not any(missing.values()) and self.buffers_empty(state)

        try:
            await poll(quiet, "the buffers to drain", timeout, interval=0.5)
        except Stuck as exc:
            self.problems.append(str(exc))
        except AssertionError:
            pass
        return last

    async def conclude(self) -> FaultResult:
        """Stop the senders, drain, send a fresh batch, account. Asserts nothing: the test does,
        on `FaultResult.problems`."""
        await self.senders.stop()
        state = await self.wait_quiet()
        if not self.buffers_empty(state) or any(self.owed_missing(state.get("missing", {})).values()):
            self.problems.append(f"after the drain (at most {DRAIN_TIMEOUT:g} s), missing events or non-empty "
                                 f"buffers: {state}")
        # One fresh batch afterwards goes through, to every sink.
        fresh = self.senders.batch_of("fresh")
        async with httpx.AsyncClient(timeout=30) as client:
            status = await self.senders.post(client, fresh)
        if status != 200:
            self.problems.append(f"the fresh batch was answered {status}")
        else:
            fresh_ids = [e["id"] for e in fresh]

            def through() -> bool:
                self.refresh()
                return not any(self.missing(fresh_ids).values())

            try:
                await poll(through, "the fresh batch to reach every sink", FRESH_TIMEOUT)
            except AssertionError as exc:
                self.problems.append(f"{exc}: missing per sink {self.missing(fresh_ids)}")
        with contextlib.suppress(Stuck):
            await self.supervise()
        self.refresh()
        try:
            dead = await dead_lettered(self.kafka, self.prefix, [r.name for r in self.received])
        except Exception as exc:  # unreadable: nothing is counted as dead-lettered, so missing events show as lost
            self.problems.append(f"the dead-letter topics could not be read: {exc!r}")
            dead = {}
        return self.account(dead)

    def account(self, dead: dict[str, set[str]] | None = None) -> FaultResult:
        stats = self.senders.stats
        acked = stats.acked
        sinks = []
        for received in self.received:
            owed = {i for i, severity in acked.items() if routed(received.name, severity)}
            got = set(received.counts)
            dead_letters = ((dead or {}).get(received.name, set()) & owed) - got
            lost = owed - got - dead_letters
            assert len(owed) == len(owed & got) + len(dead_letters) + len(lost)  # the conservation line
            sinks.append(SinkAccount(
                sink=received.name, owed=len(owed), delivered=len(owed & got), lost=len(lost),
                dead_lettered=len(dead_letters),
                duplicates=received.duplicates, unacked_delivered=len((got - owed) & stats.sent),
                invented=len(got - stats.sent), bad_lines=len(received.bad_lines), lost_sample=sorted(lost)[:10],
            ))
        problems = list(self.problems)
        # Rows that do not fit the DCR's declared stream: Azure would null their values.
        misfits = self.azure.log_errors()
        undeclared = sum(c.undeclared for c in self.azure.calls())
        if misfits or undeclared:
            problems.append(f"sentinel: {len(misfits)} values missed their declared column type, e.g. {misfits[:3]}; "
                            f"{undeclared} undeclared columns dropped")
        for account, received in zip(sinks, self.received, strict=True):
            if account.lost:  # every lost id, for the post-mortem
                owed = [i for i, severity in acked.items() if routed(received.name, severity)]
                letters = (dead or {}).get(received.name, set())
                (self.tmp_path / f"lost-{account.sink}.txt").write_text(
                    "\n".join(i for i in owed if i not in received.counts and i not in letters) + "\n")
        for account in sinks:
            if account.lost and not self.owed_missing({account.sink: account.lost})[account.sink]:
                self.notes.append(f"{account.sink}: {account.lost} events in transit when its receiver stopped "
                                  "(TCP syslog has no acknowledgement)")
                account.in_transit, account.lost = account.lost, 0
            if account.lost:
                problems.append(f"{account.sink}: {account.lost} of {account.owed} acked events LOST, "
                                f"e.g. {account.lost_sample} (all: {self.tmp_path}/lost-{account.sink}.txt)")
            if account.invented:
                problems.append(f"{account.sink}: {account.invented} events that were never sent")
            if account.bad_lines:
                bad = next(r for r in self.received if r.name == account.sink).bad_lines[:3]
                problems.append(f"{account.sink}: {account.bad_lines} unreadable lines, e.g. {bad}")
            if account.duplicates > ABSURD_DUPLICATION * max(account.owed, 1):
                problems.append(f"{account.sink}: {account.duplicates} duplicates for {account.owed} events")
        return FaultResult(
            fault=self.fault, acked=len(acked), owed=sum(a.owed for a in sinks),
            delivered=sum(a.delivered for a in sinks), lost=sum(a.lost for a in sinks),
            duplicates=sum(a.duplicates for a in sinks), recovery=list(self.recoveries), sinks=sinks,
            codes=dict(stats.codes), seconds=round(time.monotonic() - self.started, 1), notes=list(self.notes),
            problems=problems,
        )


def crash_summary(process: Process) -> str:
    """The last error a siemgate process logged (its JSON log lines), in one line."""
    try:
        lines = process.log.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "no log"
    for line in reversed(lines):
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("level") in ("error", "critical"):
            error = str(entry.get("error", "")).strip().splitlines()
            return f"{entry.get('message')}: {error[-1] if error else ''}"
    return lines[-1] if lines else "empty log"


@contextlib.asynccontextmanager
async def pipeline(tmp_path: Path, processes: list[subprocess.Popen[bytes]], kafka: KafkaTarget, *, fault: str,
                   **options: Any) -> AsyncIterator[Pipeline]:
    """A started pipeline (rsyslogd: skipped, or failed under CI=true, when unusable)."""
    from tests.forwarders.rsyslog import RsyslogUnavailable, unavailable

    p = Pipeline(tmp_path, processes, kafka, fault=fault, **options)
    try:
        try:
            await p.start()
        except RsyslogUnavailable as exc:
            unavailable(str(exc))
        yield p
    finally:
        await p.close()
