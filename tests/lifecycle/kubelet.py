"""The kubelet, played with real processes: pods of siemgate with a data volume each, a sender
behind a Service, and the conservation accounting of every scenario.

- `Pod`: one `siemgate ingest|run` process with its config and its data volume (a directory:
  the spool, or the embedded log). `delete(grace)` does what the kubelet does to a pod being
  deleted: SIGTERM, wait up to the grace period, SIGKILL, then remove the volume (emptyDir)
  or keep it (a PersistentVolumeClaim). With a `size_limit` (an emptyDir's `sizeLimit`) the
  player watches the volume's bytes on disk while the pod runs (`volume_bytes`, every 0.1 s)
  and evicts it as the kubelet does when the usage exceeds the limit: SIGKILL, and the
  emptyDir deleted (`Pod.eviction` says when and at how many bytes; `Pod.peak_bytes` is the
  most it saw).
- `Service`: the ready endpoints a sender posts to, round-robin; a pod being deleted leaves
  them first (as the endpoints controller removes a terminating pod).
- `Sender`: behaves like the vendor: sequential batches, never resends; what was answered
  200 is owed, anything else (or no answer) is not. `history` keeps every answer in order.
- `Conservation`: acked (200s the sender counted), on Kafka (read back from the topics),
  delivered (a forwarder to a file sink, ids read back), lost (acked, and neither on Kafka
  nor in a kept spool), stranded (acked, not on Kafka, in a kept spool), printed as one line
  `conservation <scenario>: acked=N kafka=N delivered=N lost=N stranded=N`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from siemgate.bus.spool import FILE_NAME, Spool
from siemgate.record import all_topics
from tests.faults.harness import stable_port
from tests.support import siemgate_command, wait_until

KEY = "lifecycle-key-0123456789"
SEVERITIES = ("high", "medium", "low", "unknown")


# ------------------------------------------------------------------------------------------
# Configs


def kafka_config(*, bootstrap: str, prefix: str, port: int, volume: Path, out: Path, forward_port: int,
                 state: Path, drain_timeout: float = 60.0, stall_timeout: float = 600.0) -> dict[str, Any]:
    """An ingest (and forwarder) config on Kafka: the spool on the pod's volume."""
    return {
        "log_level": "info",
        "listen": {"host": "127.0.0.1", "port": port},
        "state_dir": str(state / "state"),
        "quarantine": {"path": str(state / "quarantine")},
        "integrations": [{"name": "appsec", "auth": {"header": "X-Api-Key", "values": [KEY]}}],
        "bus": {
            "type": "kafka",
            "kafka": {"bootstrap_servers": bootstrap, "topic_prefix": prefix, "idempotence": False,
                      "produce_timeout_seconds": 3, "topics": {"partitions": 2}},
            "spool": {"path": str(volume / "spool"), "ack_deadline_seconds": 1,
                      "drain_timeout_seconds": drain_timeout, "stall_timeout_seconds": stall_timeout},
        },
        "forward": {"drain_timeout_seconds": 10, "lag_interval_seconds": 0.5,
                    "listen": {"host": "127.0.0.1", "port": forward_port}},
        "sinks": [{"name": "archive", "type": "file", "path": str(out),
                   "batch": {"max_events": 500}, "retry": {"initial_seconds": 0.2, "max_seconds": 2}}],
    }


def embedded_config(*, port: int, volume: Path, out: Path, state: Path) -> dict[str, Any]:
    """`siemgate run` on the embedded bus: the log on the pod's volume, a file sink."""
    return {
        "log_level": "info",
        "listen": {"host": "127.0.0.1", "port": port},
        "state_dir": str(volume / "state"),
        "quarantine": {"path": str(state / "quarantine")},
        "integrations": [{"name": "appsec", "auth": {"header": "X-Api-Key", "values": [KEY]}}],
        "bus": {"type": "embedded", "path": str(volume / "siemgate.db")},
        "forward": {"drain_timeout_seconds": 10},
        "sinks": [{"name": "archive", "type": "file", "path": str(out),
                   "batch": {"max_events": 500}, "retry": {"initial_seconds": 0.2, "max_seconds": 2}}],
    }


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


# ------------------------------------------------------------------------------------------
# Volumes


# How often the player measures a pod's volume against its size limit (the kubelet's own
# housekeeping is slower, every 10 s or so by default: this is stricter).
VOLUME_CHECK_SECONDS = 0.1


def volume_bytes(path: Path) -> int:
    """Bytes on disk under `path`, as `du` counts them (allocated blocks, not apparent sizes;
    a hard-linked file once; symlinks not followed): what the kubelet measures an emptyDir by."""
    seen: set[tuple[int, int]] = set()
    total = 0

    def walk(directory: str) -> None:
        nonlocal total
        try:
            entries = list(os.scandir(directory))
        except (FileNotFoundError, NotADirectoryError):
            return
        for entry in entries:
            try:
                stat = entry.stat(follow_symlinks=False)
            except FileNotFoundError:  # removed meanwhile (a segment, a WAL)
                continue
            if (stat.st_dev, stat.st_ino) in seen:
                continue
            seen.add((stat.st_dev, stat.st_ino))
            total += stat.st_blocks * 512
            if entry.is_dir(follow_symlinks=False):
                walk(entry.path)

    with contextlib.suppress(FileNotFoundError):
        total += os.stat(path).st_blocks * 512
    walk(str(path))
    return total


# ------------------------------------------------------------------------------------------
# Pods


@dataclass
class Deletion:
    exit_code: int
    seconds: float
    killed: bool  # the grace period ran out: SIGKILL


@dataclass(frozen=True)
class Eviction:
    """The player evicted the pod: its volume exceeded its size limit."""

    bytes: int  # the usage that exceeded the limit
    limit: int
    after_seconds: float  # since the pod started


class Pod:
    """One siemgate process (`command`: ingest, run or forward) with a data volume."""

    def __init__(self, name: str, command: str, config: Path, volume: Path, port: int, logs: Path,
                 processes: list[subprocess.Popen[bytes]], *, size_limit: int | None = None) -> None:
        self.name = name
        self.command = command
        self.config = config
        self.volume = volume
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = logs / f"{name}.log"
        self._processes = processes
        self.process: subprocess.Popen[bytes] | None = None
        self.size_limit = size_limit  # the emptyDir's sizeLimit; None: not watched
        self.peak_bytes = 0
        self.eviction: Eviction | None = None
        self._watcher: asyncio.Task[None] | None = None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    async def start(self, *, ready_timeout: float = 60.0) -> None:
        self.volume.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen([*siemgate_command(), self.command, "-c", str(self.config)],
                                            stdout=out, stderr=out, stdin=subprocess.DEVNULL)
        self._processes.append(self.process)
        if self.size_limit is not None:
            self._watcher = asyncio.create_task(self._watch_volume(self.size_limit, time.monotonic()),
                                                name=f"volume-{self.name}")
        async with httpx.AsyncClient(timeout=5) as client:
            async def ready() -> bool:
                assert self.alive(), f"{self.name} exited ({self.process and self.process.returncode}): {self.tail()}"
                try:
                    return (await client.get(self.url + "/readyz")).status_code == 200
                except httpx.TransportError:
                    return False

            await wait_until(ready, f"{self.name} to be ready", ready_timeout, interval=0.1)

    async def _watch_volume(self, limit: int, started: float) -> None:
        """While the pod runs: measure its volume; past `limit`, evict (SIGKILL, emptyDir deleted)."""
        assert self.process is not None
        while self.process.poll() is None:
            used = await asyncio.to_thread(volume_bytes, self.volume)
            self.peak_bytes = max(self.peak_bytes, used)
            if used > limit:
                self.process.send_signal(signal.SIGKILL)
                await asyncio.to_thread(self.process.wait, 30)
                shutil.rmtree(self.volume, ignore_errors=True)
                self.eviction = Eviction(used, limit, round(time.monotonic() - started, 2))
                return
            await asyncio.sleep(VOLUME_CHECK_SECONDS)

    async def evicted(self, timeout: float) -> Eviction:
        """Wait for the eviction (the pod must be watched)."""
        assert self._watcher is not None, f"{self.name} has no size limit"
        await wait_until(lambda: self.eviction is not None, f"{self.name} to be evicted", timeout, interval=0.1)
        assert self.eviction is not None
        return self.eviction

    async def delete(self, grace: float, *, keep_volume: bool) -> Deletion:
        """SIGTERM, up to `grace` seconds, SIGKILL; then the volume goes (emptyDir) or stays (claim).
        A watched volume stays watched (and the pod evictable) until the process is gone."""
        assert self.process is not None
        started = time.monotonic()
        killed = False
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.process.wait, grace)
            except subprocess.TimeoutExpired:
                self.process.send_signal(signal.SIGKILL)
                await asyncio.to_thread(self.process.wait, 30)
                killed = True
        if self._watcher is not None:
            watcher, self._watcher = self._watcher, None
            await watcher
        if not keep_volume:
            shutil.rmtree(self.volume, ignore_errors=True)
        return Deletion(self.process.returncode, round(time.monotonic() - started, 2), killed)

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def log_entries(self) -> list[dict[str, Any]]:
        entries = []
        for line in self.log.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if isinstance(entry, dict):
                    entries.append(entry)
        return entries

    def drain_report(self) -> dict[str, Any] | None:
        """The drain-before-exit report this pod logged (None: none)."""
        found = [e for e in self.log_entries() if "outcome" in e and "events_left" in e]
        return found[-1] if found else None


# ------------------------------------------------------------------------------------------
# The Service and the sender


class Service:
    """The ready endpoints of the ingest, round-robin."""

    def __init__(self) -> None:
        self.endpoints: list[str] = []
        self._turn = itertools.count()

    def add(self, pod: Pod) -> None:
        self.endpoints.append(pod.url)

    def remove(self, pod: Pod) -> None:
        with contextlib.suppress(ValueError):
            self.endpoints.remove(pod.url)

    def pick(self) -> str | None:
        if not self.endpoints:
            return None
        return self.endpoints[next(self._turn) % len(self.endpoints)]


@dataclass
class Sender:
    """Sequential batches of `batch` events to the Service; never resends."""

    service: Service
    tag: str
    batch: int = 100
    acked: list[str] = field(default_factory=list)
    refused: dict[str, int] = field(default_factory=dict)  # status or error -> batches (not owed)
    batches: int = 0
    history: list[int | str] = field(default_factory=list)  # every answer (status, or error name), in order
    _task: asyncio.Task[None] | None = None
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def post(self, client: httpx.AsyncClient) -> int | None:
        url = self.service.pick()
        if url is None:
            self.refused["no endpoint"] = self.refused.get("no endpoint", 0) + 1
            return None
        n = self.batches
        self.batches += 1
        events = [{"id": f"{self.tag}-{n}-{i}", "severity": SEVERITIES[(n + i) % 4], "type": "sql_injection",
                   "timestamp": "2026-12-07T12:00:00Z", "source_ip": "203.0.113.7"} for i in range(self.batch)]
        try:
            response = await client.post(url + "/webhook/appsec", content=orjson.dumps(events),
                                         headers={"X-Api-Key": KEY, "Content-Type": "application/json"})
        except httpx.TransportError as exc:
            name = type(exc).__name__
            self.refused[name] = self.refused.get(name, 0) + 1
            self.history.append(name)
            return None
        self.history.append(response.status_code)
        if response.status_code != 200:
            self.refused[str(response.status_code)] = self.refused.get(str(response.status_code), 0) + 1
            return response.status_code
        self.acked.extend(e["id"] for e in events)
        return 200

    async def send(self, batches: int) -> None:
        """`batches` batches, one after the other; each must be answered 200."""
        async with httpx.AsyncClient(timeout=30) as client:
            for _ in range(batches):
                status = await self.post(client)
                assert status == 200, f"batch answered {status} ({self.refused})"

    def start(self, interval: float = 0.05) -> None:
        """Keep sending in the background (a batch, a pause of `interval`, the next) until `stop`."""
        self._stop.clear()

        async def run() -> None:
            async with httpx.AsyncClient(timeout=30) as client:
                while not self._stop.is_set():
                    await self.post(client)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), interval)

        self._task = asyncio.create_task(run(), name=f"sender-{self.tag}")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
            self._task = None

    @property
    def non_200(self) -> int:
        return sum(count for reason, count in self.refused.items() if reason.isdigit() and reason.startswith("5"))


# ------------------------------------------------------------------------------------------
# Reading back


async def kafka_keys(bootstrap: str, prefix: str) -> set[str]:
    """Every record key on the prefix's topics, read to the end offsets (no consumer group)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest", request_timeout_ms=10_000)
    await consumer.start()
    keys: set[str] = set()
    try:
        await consumer.topics()
        partitions = [TopicPartition(t, p) for t in all_topics(prefix)
                      for p in sorted(consumer.partitions_for_topic(t) or ())]
        if not partitions:
            return keys
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        async def behind() -> bool:
            for tp, end in ends.items():
                if await consumer.position(tp) < end:
                    return True
            return False

        async with asyncio.timeout(60):
            while await behind():
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    keys.update(r.key.decode() for r in records if r.key is not None)
    finally:
        await consumer.stop()
    return keys


async def spool_keys(volume: Path) -> set[str]:
    """The keys held in a (kept) volume's spool; the volume's ingest must be stopped."""
    if not (volume / "spool" / FILE_NAME).exists():
        return set()
    spool = Spool(volume / "spool", 1 << 40)
    await spool.open()
    try:
        return {record.key.decode() for _, record in await spool.read(10_000_000, 1 << 40)}
    finally:
        await spool.close()


def sink_outputs(out: Path) -> list[Path]:
    """The file sink's files, oldest first: those rotated out (`events.ndjson.N`), then `out`."""
    rotated = [p for p in out.parent.glob(out.name + ".*") if p.suffix[1:].isdigit()]
    return [*sorted(rotated, key=lambda p: -int(p.suffix[1:])), out]


def delivered_ids(out: Path) -> set[str]:
    """The ids the file sink wrote (complete lines), in `out` and the files it rotated out."""
    ids = set()
    for path in sink_outputs(out):
        try:
            data = path.read_bytes()
        except FileNotFoundError:  # not written yet, or rotated away meanwhile (read next time)
            continue
        for line in data[: data.rfind(b"\n") + 1].splitlines():
            if line.strip():
                ids.add(str(orjson.loads(line)["id"]))
    return ids


async def wait_delivered(out: Path, wanted: Iterable[str], timeout: float = 60.0) -> set[str]:
    wanted = set(wanted)
    await wait_until(lambda: wanted <= delivered_ids(out), f"{len(wanted)} events at the file sink", timeout,
                     interval=0.25)
    return delivered_ids(out)


# ------------------------------------------------------------------------------------------
# The accounting


@dataclass(frozen=True)
class Conservation:
    scenario: str
    acked: int
    kafka: int | None  # None: the embedded bus (no Kafka)
    delivered: int
    lost: int
    stranded: int
    lost_sample: tuple[str, ...] = ()

    def line(self) -> str:
        kafka = "n/a" if self.kafka is None else str(self.kafka)
        return (f"conservation {self.scenario}: acked={self.acked} kafka={kafka} delivered={self.delivered} "
                f"lost={self.lost} stranded={self.stranded}")


def account(scenario: str, acked: Iterable[str], *, on_kafka: set[str] | None, delivered: set[str],
            kept_spools: Iterable[str] = ()) -> Conservation:
    """Kafka mode (`on_kafka` given): an acked event is safe once on Kafka, stranded while only in
    a kept spool, lost otherwise. Embedded (`on_kafka` None): safe once delivered (the log's
    volume is kept, so the rest would still be in it: stranded)."""
    owed = set(acked)
    if on_kafka is not None:
        safe = owed & on_kafka
        stranded = (owed - safe) & set(kept_spools)
    else:
        safe = owed & delivered
        stranded = set()
    lost = owed - safe - stranded
    return Conservation(scenario, len(owed), None if on_kafka is None else len(safe), len(owed & delivered),
                        len(lost), len(stranded), tuple(sorted(lost)[:5]))


__all__ = ["Conservation", "Eviction", "Pod", "Sender", "Service", "account", "delivered_ids", "embedded_config",
           "kafka_config", "kafka_keys", "sink_outputs", "spool_keys", "stable_port", "volume_bytes", "wait_delivered",
           "write_config"]
