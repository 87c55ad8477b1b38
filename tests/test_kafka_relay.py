"""siemgate_standins.kafka_relay: Debian's librdkafka (kcat, rsyslog imkafka) against Tansu.

The framing and the one rewrite are checked against a fake upstream (byte for byte); kcat
and aiokafka are checked against a real Tansu behind the relay. Under CI=true a missing kcat
or Tansu fails; elsewhere those tests skip with the reason.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from siemgate.record import decode, make_record
from siemgate_standins.broker import BrokerUnavailable
from siemgate_standins.kafka_relay import (
    KafkaRelay,
    RelayedTansu,
    RelayProcess,
    start_relay_thread,
    start_tansu_behind_relay,
    strip_api_versions_tags,
)

# Tansu 0.6.0's ApiVersions v3 response to correlation id 7, as captured on the wire (without
# the size prefix): 36 api keys, throttle 0, then 4 response-level tagged fields.
TANSU_API_VERSIONS_V3 = bytes.fromhex(
    "000000070000250032000000000000080000000900002a000000020000200000000400001a0000000400001400000006"
    "00000c000000040000150000000200001c000000040000030000000c00000b000000090000000000000b00003c000000"
    "0100001100000001000019000000040000450000000000002c0000000100004b00000000000024000000020000130000"
    "0007000016000000050000470000000000000f00000005000002000000090000100000000500001d0000000300000100"
    "00001100003300000000000009000000090000120000000400002e000000000000180000000500000d0000000500000e"
    "0000000500000a0000000600001e000000030000000000040001010108ffffffffffffffff020101030100"
)
TAGS = bytes.fromhex("040001010108ffffffffffffffff020101030100")
TIMEOUT = 60


def with_correlation_id(frame: bytes, correlation_id: int) -> bytes:
    return correlation_id.to_bytes(4, "big", signed=True) + frame[4:]


# ------------------------------------------------------------------------------------------
# The rewrite itself


def test_strip_empties_only_the_response_level_tagged_fields() -> None:
    stripped = strip_api_versions_tags(TANSU_API_VERSIONS_V3, 3)
    assert stripped is not None
    assert TANSU_API_VERSIONS_V3.endswith(TAGS)
    assert stripped == TANSU_API_VERSIONS_V3[: -len(TAGS)] + b"\x00"
    # v4 has the same shape.
    assert strip_api_versions_tags(TANSU_API_VERSIONS_V3, 4) == stripped


@pytest.mark.parametrize(
    ("frame", "version"),
    [
        pytest.param(TANSU_API_VERSIONS_V3, 2, id="v2-is-not-flexible"),
        pytest.param(TANSU_API_VERSIONS_V3[: -len(TAGS)] + b"\x00", 3, id="no-tagged-fields"),
        pytest.param(TANSU_API_VERSIONS_V3[:-1], 3, id="truncated"),
        pytest.param(TANSU_API_VERSIONS_V3 + b"\x00", 3, id="trailing-bytes"),
        # The v0-shaped answer a broker gives to an unsupported version: error 35, int32 count.
        pytest.param(bytes.fromhex("00000007" "0023" "00000001" "0012" "0000" "0004"), 3, id="error-in-v0-shape"),
        pytest.param(b"\x00\x00\x00\x07", 3, id="short"),
    ],
)
def test_strip_leaves_what_it_does_not_understand(frame: bytes, version: int) -> None:
    assert strip_api_versions_tags(frame, version) is None


# ------------------------------------------------------------------------------------------
# The relay against a fake upstream: framing, correlation, pass-through


def request(api_key: int, api_version: int, correlation_id: int, body: bytes = b"") -> bytes:
    client_id = b"test"
    frame = (
        api_key.to_bytes(2, "big")
        + api_version.to_bytes(2, "big")
        + correlation_id.to_bytes(4, "big")
        + len(client_id).to_bytes(2, "big")
        + client_id
        + body
    )
    return len(frame).to_bytes(4, "big") + frame


class FakeUpstream:
    """Answers each request frame with `answer(api_key, api_version, correlation_id)` and
    keeps every request frame it received, byte for byte."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.server: asyncio.Server | None = None
        # Sent before any answer on each connection: a response to no request.
        self.unsolicited = b""

    @staticmethod
    def answer(api_key: int, api_version: int, correlation_id: int) -> bytes:
        if api_key == 18:
            if api_version >= 3:
                return with_correlation_id(TANSU_API_VERSIONS_V3, correlation_id)
            return correlation_id.to_bytes(4, "big") + bytes.fromhex("0000" "00000001" "0012" "0000" "0004")
        if api_key == 1:  # "Fetch": a large body, not a multiple of the relay's chunk size
            return correlation_id.to_bytes(4, "big") + os.urandom(3 * 1024 * 1024 + 17)
        # Anything else: an ApiVersions-looking body with tags, which must NOT be rewritten.
        return with_correlation_id(TANSU_API_VERSIONS_V3, correlation_id)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if self.unsolicited:
                writer.write(len(self.unsolicited).to_bytes(4, "big") + self.unsolicited)
            while True:
                try:
                    prefix = await reader.readexactly(4)
                except asyncio.IncompleteReadError:
                    return
                frame = await reader.readexactly(int.from_bytes(prefix, "big"))
                self.received += prefix + frame
                api_key, api_version = int.from_bytes(frame[0:2], "big"), int.from_bytes(frame[2:4], "big")
                correlation_id = int.from_bytes(frame[4:8], "big")
                if api_key == 0:  # as a produce with acks=0: no answer
                    continue
                answer = self.answer(api_key, api_version, correlation_id)
                writer.write(len(answer).to_bytes(4, "big") + answer)
                await writer.drain()
        finally:
            writer.close()

    async def __aenter__(self) -> FakeUpstream:
        self.server = await asyncio.start_server(self.serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    @property
    def address(self) -> tuple[str, int]:
        assert self.server is not None
        return "127.0.0.1", int(self.server.sockets[0].getsockname()[1])


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    size = int.from_bytes(await reader.readexactly(4), "big")
    return await reader.readexactly(size)


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream() as fake:
        yield fake


@pytest.mark.anyio
async def test_relay_rewrites_only_api_versions_v3_and_passes_the_rest_byte_for_byte(upstream: FakeUpstream) -> None:
    requests = [
        request(18, 3, 101, b"\x05kcat\x061.7.1\x00"),  # ApiVersions v3: rewritten
        request(3, 12, 102, os.urandom(300)),  # Metadata: same bytes in the answer, untouched
        request(18, 0, 103),  # ApiVersions v0: nothing to rewrite
        request(1, 11, 104, os.urandom(2 * 1024 * 1024 + 3)),  # a large request and a large answer
        request(0, 9, 105, b"\x00"),  # acks=0 produce: no answer at all
        request(18, 3, 106, b"\x05kcat\x061.7.1\x00"),  # a second ApiVersions on the same connection
    ]
    async with KafkaRelay(upstream.address) as relay:
        reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
        try:
            # Pipelined: every request is written before any answer is read.
            writer.write(b"".join(requests))
            await writer.drain()
            answers = [await asyncio.wait_for(read_frame(reader), TIMEOUT) for _ in range(5)]
        finally:
            writer.close()
            await writer.wait_closed()
        assert relay.api_versions_rewritten == 2
    assert bytes(upstream.received) == b"".join(requests)
    stripped = strip_api_versions_tags(TANSU_API_VERSIONS_V3, 3)
    assert stripped is not None
    assert answers[0] == with_correlation_id(stripped, 101)
    assert answers[1] == FakeUpstream.answer(3, 12, 102)
    assert answers[2] == FakeUpstream.answer(18, 0, 103)
    assert answers[3][:4] == (104).to_bytes(4, "big") and len(answers[3]) == 4 + 3 * 1024 * 1024 + 17
    assert answers[4] == with_correlation_id(stripped, 106)


@pytest.mark.anyio
async def test_a_response_to_no_request_passes_unchanged(upstream: FakeUpstream) -> None:
    # Correlation id 7 was never requested on this connection: not an ApiVersions answer.
    upstream.unsolicited = TANSU_API_VERSIONS_V3
    async with KafkaRelay(upstream.address) as relay:
        reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
        try:
            assert await asyncio.wait_for(read_frame(reader), TIMEOUT) == TANSU_API_VERSIONS_V3
            writer.write(request(18, 3, 7))
            await writer.drain()
            answer = await asyncio.wait_for(read_frame(reader), TIMEOUT)
        finally:
            writer.close()
            await writer.wait_closed()
    assert answer == strip_api_versions_tags(TANSU_API_VERSIONS_V3, 3)


@pytest.mark.anyio
async def test_unreachable_upstream_closes_the_client_and_stop_closes_connections() -> None:
    dead_port = upstream_port_nobody_listens_on()
    async with KafkaRelay(("127.0.0.1", dead_port)) as relay:
        reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
        assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""
        writer.close()
        await writer.wait_closed()
    async with FakeUpstream() as fake, KafkaRelay(fake.address) as relay:
        reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
        writer.write(request(3, 12, 1))
        await read_frame(reader)
        await relay.stop()
        assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""
        writer.close()
        await writer.wait_closed()


def upstream_port_nobody_listens_on() -> int:
    from siemgate_standins.broker import free_port

    return free_port()


@pytest.mark.anyio
@pytest.mark.parametrize("runner", ["thread", "process"])
async def test_sync_runners_relay_and_stop(upstream: FakeUpstream, runner: str) -> None:
    handle = start_relay_thread(upstream.address) if runner == "thread" else RelayProcess(upstream.address).start()
    try:
        assert handle.bootstrap_servers == f"127.0.0.1:{handle.port}"
        reader, writer = await asyncio.open_connection("127.0.0.1", handle.port)
        writer.write(request(18, 3, 42))
        answer = await asyncio.wait_for(read_frame(reader), TIMEOUT)
        writer.close()
        await writer.wait_closed()
        assert answer == with_correlation_id(strip_api_versions_tags(TANSU_API_VERSIONS_V3, 3) or b"", 42)
    finally:
        await asyncio.to_thread(handle.stop)
        await asyncio.to_thread(handle.stop)  # idempotent
    if isinstance(handle, RelayProcess):
        assert handle.process is not None and handle.process.returncode is not None
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", handle.port)


# ------------------------------------------------------------------------------------------
# kcat and aiokafka against Tansu


def require(condition: bool, reason: str) -> None:
    if condition:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (needed under CI=true)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def kcat() -> str:
    path = shutil.which("kcat")
    require(path is not None, "kcat is not installed: apt-get install -y kcat")
    assert path is not None
    return path


@pytest.fixture(scope="module")
def relayed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayedTansu]:
    log = tmp_path_factory.mktemp("relayed-tansu") / "tansu.log"
    try:
        started = start_tansu_behind_relay(str(log))
    except BrokerUnavailable as exc:
        require(False, f"no Tansu broker: {exc}")
        raise
    try:
        yield started
    finally:
        started.stop()


def run_kcat(kcat: str, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([kcat, *args], input=input, capture_output=True, text=True, timeout=TIMEOUT)


def new_topic() -> str:
    return f"relay-{uuid.uuid4().hex[:10]}"


@pytest.mark.kafka
def test_kcat_fails_directly_against_tansu(kcat: str, relayed: RelayedTansu) -> None:
    done = run_kcat(kcat, "-b", relayed.tansu_address, "-L", "-m", "3")
    assert done.returncode != 0
    assert "Read underflow" in done.stderr
    assert "ApiVersion" in done.stderr


@pytest.mark.kafka
def test_kcat_metadata_through_the_relay_advertises_the_relay(kcat: str, relayed: RelayedTansu) -> None:
    before = relayed.relay.api_versions_rewritten  # type: ignore[union-attr]
    done = run_kcat(kcat, "-b", relayed.bootstrap_servers, "-L", "-m", "10")
    assert done.returncode == 0, done.stderr
    assert f"at {relayed.bootstrap_servers}" in done.stdout
    assert relayed.relay.api_versions_rewritten > before  # type: ignore[union-attr]


@pytest.mark.kafka
def test_kcat_produces_and_consumes_through_the_relay(kcat: str, relayed: RelayedTansu) -> None:
    topic = new_topic()
    lines = [f"line {i} {uuid.uuid4().hex}" for i in range(200)]
    produced = run_kcat(kcat, "-b", relayed.bootstrap_servers, "-P", "-t", topic, "-p", "0",
                        input="\n".join(lines) + "\n")
    assert produced.returncode == 0, produced.stderr
    consumed = run_kcat(kcat, "-b", relayed.bootstrap_servers, "-C", "-t", topic, "-p", "0",
                        "-o", "beginning", "-e", "-q")
    assert consumed.returncode == 0, consumed.stderr
    assert consumed.stdout.splitlines() == lines


@pytest.mark.kafka
@pytest.mark.anyio
async def test_aiokafka_and_kcat_interoperate_through_the_relay(kcat: str, relayed: RelayedTansu) -> None:
    topic = new_topic()
    records = [
        make_record(prefix="t", event={"id": f"e{i}", "severity": "high", "n": i}, kind="event",
                    integration="relay", severity="high", event_id=f"e{i}",
                    received_at="2026-11-28T21:00:00.000000Z", batch="b", seq=i, peer="127.0.0.1")
        for i in range(50)
    ]
    producer = AIOKafkaProducer(bootstrap_servers=relayed.bootstrap_servers)
    await producer.start()
    try:
        for record in records:
            await producer.send(topic, record.value, key=record.key, headers=record.headers, partition=0)
        await producer.flush()
    finally:
        await producer.stop()

    # aiokafka -> kcat: keys, headers and values arrive intact.
    consumed = await asyncio.to_thread(
        run_kcat, kcat, "-b", relayed.bootstrap_servers, "-C", "-t", topic, "-p", "0", "-o", "beginning",
        "-e", "-q", "-f", "%k\t%h\t%s\n",
    )
    assert consumed.returncode == 0, consumed.stderr
    rows = [line.split("\t") for line in consumed.stdout.splitlines()]
    assert [row[0] for row in rows] == [r.key.decode() for r in records]
    assert rows[0][1] == "kind=event,severity=high,integration=relay"
    assert [decode(row[2].encode())["seq"] for row in rows] == list(range(50))

    # kcat -> aiokafka.
    produced = await asyncio.to_thread(
        run_kcat, kcat, "-b", relayed.bootstrap_servers, "-P", "-t", topic, "-p", "0", "-K", "\t",
        input="".join(f"k{i}\tfrom kcat {i}\n" for i in range(10)),
    )
    assert produced.returncode == 0, produced.stderr
    consumer = AIOKafkaConsumer(bootstrap_servers=relayed.bootstrap_servers, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    received: list[Any] = []
    try:
        consumer.assign([TopicPartition(topic, 0)])
        async with asyncio.timeout(TIMEOUT):
            while len(received) < 60:
                batch = await consumer.getmany(timeout_ms=200)
                for part in batch.values():
                    received.extend(part)
    finally:
        await consumer.stop()
    assert [r.value for r in received[:50]] == [r.value for r in records]
    assert [(r.key, r.value) for r in received[50:]] == [(f"k{i}".encode(), f"from kcat {i}".encode())
                                                         for i in range(10)]


@pytest.mark.kafka
@pytest.mark.anyio
async def test_aiokafka_consumer_group_works_through_the_relay(relayed: RelayedTansu) -> None:
    # A group needs FindCoordinator's address too: Tansu advertises the relay's.
    topic = new_topic()
    producer = AIOKafkaProducer(bootstrap_servers=relayed.bootstrap_servers)
    await producer.start()
    try:
        for i in range(20):
            await producer.send(topic, b"value %d" % i, partition=0)
        await producer.flush()
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=relayed.bootstrap_servers, group_id=f"g-{topic}",
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    values: list[bytes] = []
    try:
        async with asyncio.timeout(TIMEOUT):
            while len(values) < 20:
                batch = await consumer.getmany(timeout_ms=500)
                values.extend(r.value for part in batch.values() for r in part)
            await consumer.commit()
    finally:
        await consumer.stop()
    assert values == [b"value %d" % i for i in range(20)]


@pytest.mark.kafka
def test_relayed_tansu_stops_both(kcat: str, tmp_path: Path) -> None:
    try:
        started = start_tansu_behind_relay(str(tmp_path / "tansu.log"), relay="process")
    except BrokerUnavailable as exc:
        require(False, f"no Tansu broker: {exc}")
        raise
    try:
        done = run_kcat(kcat, "-b", started.bootstrap_servers, "-L", "-m", "10")
        assert done.returncode == 0, done.stderr
    finally:
        started.stop()
    assert started.broker.process is not None and started.broker.process.returncode is not None
    assert isinstance(started.relay, RelayProcess)
    assert started.relay.process is not None and started.relay.process.returncode is not None
