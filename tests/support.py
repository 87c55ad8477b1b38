"""Helpers for tests that run the real ingest over loopback against a real broker."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import httpx
import orjson
import uvicorn
from aiokafka import AIOKafkaConsumer, ConsumerRecord

from siemgate.bus.base import Publisher
from siemgate.bus.kafka import KafkaPublisher
from siemgate.bus.spooling import SpoolingPublisher
from siemgate.config import Config, parse_config
from siemgate.ingest.server import Server, uvicorn_config
from siemgate.record import all_topics
from siemgate_standins.broker import Broker, free_port, tansu_binary, wait_for_port

T = TypeVar("T")

KEY = "test-key-0123456789"
NEXT_KEY = "next-key-9876543210"


def make_config(
    tmp_path: Path,
    broker: Broker | None,
    *,
    bootstrap: str | None = None,
    integrations: str | None = None,
    extra: str = "",
    prefix: str | None = None,
    produce_timeout: float = 5.0,
    partitions: int = 2,
    spool: Mapping[str, object] | None = None,
) -> Config:
    """A config for one test: its own topic prefix, so tests never see each other's records.

    The spool (used by `siemgate ingest`'s SpoolingPublisher) lives under `tmp_path/spool`;
    `spool` adds or overrides its keys."""
    prefix = prefix or f"t{uuid.uuid4().hex[:10]}"
    spool_yaml = json.dumps({"path": str(tmp_path / "spool"), **(spool or {})})
    servers = bootstrap or (broker.bootstrap_servers if broker else "127.0.0.1:1")
    idempotence = "true" if broker and broker.idempotence else "false"
    integrations = integrations or f"""
  - name: appsec
    auth: {{header: X-Api-Key, values: ["{KEY}", "{NEXT_KEY}", ""]}}
"""
    # `extra` may set listen, state_dir or quarantine itself: then its line stands instead of
    # this one (a key written twice is refused).
    overridden = {line.split(":", 1)[0] for line in extra.splitlines() if line[:1].isalpha()}
    defaults = "\n".join(line for line in (
        "listen: {host: 127.0.0.1, port: 0}", f"state_dir: {tmp_path}/state",
        f"quarantine: {{path: {tmp_path}/quarantine}}") if line.split(":", 1)[0] not in overridden)
    text = f"""
{defaults}
integrations:
{integrations}
bus:
  type: kafka
  kafka:
    bootstrap_servers: "{servers}"
    topic_prefix: {prefix}
    idempotence: {idempotence}
    produce_timeout_seconds: {produce_timeout}
    topics: {{partitions: {partitions}}}
  spool: {spool_yaml}
{extra}
"""
    return parse_config(text, {})


@dataclass
class RunningIngest:
    url: str
    config: Config
    server: uvicorn.Server
    publisher: Publisher

    def webhook(self, integration: str = "appsec") -> str:
        return self.url + self.config.integration(integration).path

    @property
    def prefix(self) -> str:
        assert self.config.bus.kafka is not None
        return self.config.bus.kafka.topic_prefix


@contextlib.asynccontextmanager
async def running_ingest(
    config: Config, *, wait_ready: bool = True, publisher: Publisher | None = None
) -> AsyncIterator[RunningIngest]:
    """Serve the ingest on a free loopback port (real uvicorn, real HTTP); stop it on exit."""
    assert config.bus.kafka is not None
    publisher = publisher or KafkaPublisher(config.bus.kafka)
    port = free_port()
    uv = uvicorn_config(config, publisher)
    uv.port = port
    uv.loop = "asyncio"
    uv.timeout_graceful_shutdown = 5
    server = Server(uv)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(15):
            while not server.started:
                if task.done():
                    task.result()
                    raise RuntimeError("the ingest stopped during startup")
                await asyncio.sleep(0.01)
            if wait_ready and isinstance(publisher, KafkaPublisher | SpoolingPublisher):
                assert await publisher.wait_connected(15), "the ingest did not connect to Kafka"
        yield RunningIngest(f"http://127.0.0.1:{port}", config, server, publisher)
    finally:
        server.should_exit = True
        await task


async def consume(
    broker: Broker, prefix: str, count: int, *, timeout: float = 20.0, topics: list[str] | None = None
) -> list[ConsumerRecord[bytes, bytes]]:
    """Read `count` records from the prefix's topics (no consumer group: no join delay).

    Then keeps reading briefly to catch any extra (duplicated) record."""
    consumer = AIOKafkaConsumer(
        *(topics or all_topics(prefix)),
        bootstrap_servers=broker.bootstrap_servers,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        async with asyncio.timeout(timeout):
            while len(records) < count:
                batch = await consumer.getmany(timeout_ms=200)
                for part in batch.values():
                    records.extend(part)
        extra = await consumer.getmany(timeout_ms=300)
        for part in extra.values():
            records.extend(part)
    except TimeoutError:
        raise AssertionError(f"only {len(records)} of {count} records arrived within {timeout} s") from None
    finally:
        await consumer.stop()
    return records


def headers_of(record: ConsumerRecord[bytes, bytes]) -> Mapping[str, bytes]:
    return dict(record.headers)


def event(i: int = 0, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": f"evt-{uuid.uuid4().hex[:12]}-{i}",
        "severity": "high",
        "type": "sql_injection",
        "timestamp": "2026-11-28T21:00:00Z",
        "source_ip": "203.0.113.7",
        "url": "https://shop.example.com/login",
        "method": "POST",
    }
    base.update(fields)
    return base


# ------------------------------------------------------------------------------------------
# The spool: an ingest with SpoolingPublisher, a broker the test kills and restarts


def spooling_publisher(config: Config) -> SpoolingPublisher:
    assert config.bus.kafka is not None
    return SpoolingPublisher(config.bus.kafka, config.bus.spool)


def spooling_ingest(
    config: Config, *, wait_ready: bool = False
) -> contextlib.AbstractAsyncContextManager[RunningIngest]:
    """`running_ingest` with the publisher `siemgate ingest` uses on Kafka (Kafka + local spool)."""
    return running_ingest(config, wait_ready=wait_ready, publisher=spooling_publisher(config))


class PrivateTansu:
    """A Tansu broker of one test, on a fixed loopback port, that the test can kill and start again
    on the same port (in memory: a restarted Tansu is empty, its topics gone).

    `advertised`: the address Tansu gives its clients in Metadata (a proxy in front of it)."""

    def __init__(self, log_path: Path, *, port: int | None = None, advertised: str | None = None) -> None:
        self.port = port or free_port()
        self.advertised = advertised or f"127.0.0.1:{self.port}"
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def broker(self) -> Broker:
        """This broker, addressed directly (not through a proxy)."""
        return Broker(f"127.0.0.1:{self.port}", embedded=True)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    async def start(self) -> None:
        await asyncio.to_thread(self._start)

    def _start(self) -> None:
        assert not self.running
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [tansu_binary(), "broker", "--listener-url", f"tcp://127.0.0.1:{self.port}",
                 "--advertised-listener-url", f"tcp://{self.advertised}"],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL,
            )
        self.starts += 1
        try:
            wait_for_port("127.0.0.1", self.port, 15)
        except Exception:
            self.stop()
            raise

    async def kill(self) -> None:
        await asyncio.to_thread(self.stop)

    def stop(self) -> None:
        """SIGKILL (Tansu holds nothing on disk to flush) and reap."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(10)


async def wait_until(condition: Callable[[], bool | Awaitable[bool]], what: str, timeout: float = 60.0,
                     interval: float = 0.05) -> None:
    """Poll `condition` until it holds; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(interval)


async def consume_keys(
    broker: Broker, topics: Iterable[str], expected: Iterable[str], *, timeout: float = 60.0
) -> dict[str, list[str]]:
    """Read `topics` from the beginning (no group) until every key of `expected` arrived.

    Returns each topic's keys in offset order (partition by partition), duplicates included."""
    topics = list(topics)
    missing = set(expected)
    consumer = AIOKafkaConsumer(
        *topics, bootstrap_servers=broker.bootstrap_servers, group_id=None,
        auto_offset_reset="earliest", enable_auto_commit=False, metadata_max_age_ms=1000,
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        async with asyncio.timeout(timeout):
            while missing:
                for part in (await consumer.getmany(timeout_ms=200)).values():
                    records.extend(part)
                    missing.difference_update(r.key.decode() for r in part if r.key is not None)
        for part in (await consumer.getmany(timeout_ms=300)).values():
            records.extend(part)
    except TimeoutError:
        raise AssertionError(f"{len(missing)} expected records did not arrive within {timeout:g} s") from None
    finally:
        await consumer.stop()
    by_topic: dict[str, list[str]] = defaultdict(list)
    for record in sorted(records, key=lambda r: (r.topic, r.partition, r.offset)):
        assert record.key is not None
        by_topic[record.topic].append(record.key.decode())
    return by_topic


def first_occurrences(keys: Iterable[str]) -> list[str]:
    """The keys in the order of their first occurrence (at least once: duplicates are allowed)."""
    return list(dict.fromkeys(keys))


SEVERITY_CYCLE = ("high", "medium", "low", "unknown")


@dataclass
class Sender:
    """Behaves like the vendor: sequential batches; remembers what was acked, per severity, in order."""

    url: str
    acked: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    codes: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    batches: int = 0

    @property
    def acked_ids(self) -> list[str]:
        return [ident for ids in self.acked.values() for ident in ids]

    async def send(self, client: httpx.AsyncClient, size: int = 20, **fields: Any) -> int:
        """One batch of `size` events, severities cycling; returns the status code."""
        n = self.batches
        self.batches += 1
        batch = [event(i, batch=n, severity=SEVERITY_CYCLE[(n + i) % 4], **fields) for i in range(size)]
        started = time.monotonic()
        response = await client.post(self.url, content=orjson.dumps(batch), headers={"X-Api-Key": KEY})
        self.seconds.append(time.monotonic() - started)
        self.codes.append(response.status_code)
        if response.status_code == 200:
            for e in batch:
                self.acked[e["severity"]].append(e["id"])
        return response.status_code

    def assert_all_delivered(self, by_topic: Mapping[str, list[str]], prefix: str) -> None:
        """Every acked event is on its topic (in whatever order)."""
        for severity, ids in self.acked.items():
            missing = set(ids) - set(by_topic.get(f"{prefix}.events.{severity}", []))
            assert not missing, f"{severity}: {len(missing)} of {len(ids)} acked events missing"

    def assert_in_order(self, by_topic: Mapping[str, list[str]], prefix: str, *,
                        only: set[str] | None = None) -> None:
        """Every acked event (or every one of `only`) is on its topic, first occurrences in ack order."""
        for severity, ids in self.acked.items():
            wanted = [i for i in ids if only is None or i in only]
            wanted_set = set(wanted)
            got = [k for k in first_occurrences(by_topic.get(f"{prefix}.events.{severity}", [])) if k in wanted_set]
            assert got == wanted, f"{severity}: {len(got)} of {len(wanted)} events, or out of order"


def metric_value(text: str, name: str) -> float:
    """The value of an unlabelled metric in Prometheus text."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no metric {name}")


def siemgate_command() -> list[str]:
    """The `siemgate` console script of this interpreter's environment."""
    script = Path(sys.executable).parent / "siemgate"
    return [str(script)] if script.exists() else [sys.executable, "-m", "siemgate"]


class AppendedLines(Generic[T]):
    """The complete lines of a file that another process appends to (a sink's output, rsyslog's
    capture), each parsed once: a read takes only what was appended since the last one. Tests
    poll such files every 50 ms while they grow to tens of thousands of lines; reading and
    parsing all of it at each poll took most of a CPU from the processes under test. Starts
    over when the file is replaced or shrinks; a line that does not parse raises at every read."""

    def __init__(self, path: Path, parse: Callable[[bytes], T]) -> None:
        self.path = path
        self.parse = parse
        self._inode: int | None = None
        self._offset = 0
        self._items: list[T] = []

    def read(self) -> list[T]:
        try:
            with open(self.path, "rb") as handle:
                stat = os.fstat(handle.fileno())
                if stat.st_ino != self._inode or stat.st_size < self._offset:
                    self._inode, self._offset, self._items = stat.st_ino, 0, []
                handle.seek(self._offset)
                data = handle.read()
        except FileNotFoundError:
            self._inode, self._offset, self._items = None, 0, []
            return []
        complete = data[: data.rfind(b"\n") + 1]
        parsed = [self.parse(line) for line in complete.splitlines() if line.strip()]
        self._items.extend(parsed)
        self._offset += len(complete)
        return list(self._items)
