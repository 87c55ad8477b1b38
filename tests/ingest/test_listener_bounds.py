"""The webhook port's connection bounds (siemgate.listeners, `listen:`), against the real ingest
over loopback with raw TCP clients: heads that trickle in, bodies that trickle in after an
early answer, idle keep-alive connections, the connection cap before any request is read, and
request heads over the bound."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gzip
import ipaddress
import json
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import httpx
import pytest

from siemgate.record import Record
from tests.support import KEY, RunningIngest, make_config, metric_value, running_ingest, wait_until

pytestmark = pytest.mark.anyio

HEAD_TIMEOUT = 0.5
IDLE_TIMEOUT = 0.5
BODY_TIMEOUT = 0.5  # limits.body_timeout_seconds; the protocol's backstop is 1 s more
MAX_CONNECTIONS = 4


class MemoryPublisher:
    """Takes every batch at once (the bounds are what is tested, not the bus)."""

    def __init__(self) -> None:
        self.records: list[Record] = []

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def publish(self, records: Sequence[Record]) -> None:
        self.records.extend(records)

    async def ready(self) -> bool:
        return True


@pytest.fixture
async def ingest(tmp_path: Path) -> AsyncIterator[RunningIngest]:
    extra = f"""
limits: {{body_timeout_seconds: {BODY_TIMEOUT}}}
"""
    config = make_config(tmp_path, None, extra=extra)
    config = dataclasses.replace(config, listen=dataclasses.replace(
        config.listen, head_timeout_seconds=HEAD_TIMEOUT, idle_timeout_seconds=IDLE_TIMEOUT,
        max_connections=MAX_CONNECTIONS))
    async with running_ingest(config, wait_ready=False, publisher=MemoryPublisher()) as running:
        yield running


def port_of(ingest: RunningIngest) -> int:
    return int(ingest.url.rsplit(":", 1)[1])


async def connect(ingest: RunningIngest) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port_of(ingest))


async def read_until_closed(reader: asyncio.StreamReader, timeout: float) -> bytes:
    """Everything the server sends until it closes the connection; fails after `timeout`."""
    data = b""
    async with asyncio.timeout(timeout):
        while chunk := await reader.read(65536):
            data += chunk
    return data


async def refusals(ingest: RunningIngest, reason: str) -> float:
    async with httpx.AsyncClient() as client:
        text = (await client.get(ingest.url + "/metrics")).text
    return metric_value(text, f'siemgate_listener_refusals_total{{listener="webhook",reason="{reason}"}}')


async def trickle(writer: asyncio.StreamWriter, data: bytes, pace: float) -> None:
    """Send `data` one byte per `pace` seconds (the slow client's pace, not synchronisation)."""
    with contextlib.suppress(ConnectionError):
        for byte in data:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(pace)


def head(key: str = KEY, length: int = 2) -> bytes:
    return (f"POST /webhook/appsec HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Api-Key: {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n").encode()


async def test_a_trickling_head_is_answered_408_and_closed(ingest: RunningIngest) -> None:
    before = await refusals(ingest, "head_timeout")
    reader, writer = await connect(ingest)
    started = time.monotonic()
    # The whole head would take 30 s at this pace; the bound is HEAD_TIMEOUT from its first byte.
    sending = asyncio.create_task(trickle(writer, head() + b"[]", 0.1))
    try:
        answer = await read_until_closed(reader, 10)
    finally:
        sending.cancel()
        writer.close()
    elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert HEAD_TIMEOUT - 0.05 <= elapsed < HEAD_TIMEOUT + 3, elapsed
    assert await refusals(ingest, "head_timeout") == before + 1


async def test_a_connection_that_never_speaks_is_closed(ingest: RunningIngest) -> None:
    reader, writer = await connect(ingest)
    try:
        assert await read_until_closed(reader, 10) == b""
    finally:
        writer.close()


async def test_the_head_timeout_starts_again_with_each_request(ingest: RunningIngest) -> None:
    """A keep-alive connection: requests sent promptly, with pauses (shorter than the idle
    timeout) between them that add up to more than the head timeout, are all answered."""
    reader, writer = await connect(ingest)
    try:
        for _ in range(4):
            writer.write(head() + b"[]")
            await writer.drain()
            line = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert line.startswith(b"HTTP/1.1 200 "), line
            length = int(line.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            await asyncio.sleep(IDLE_TIMEOUT / 2)  # the sender's pause between batches, shortened
    finally:
        writer.close()


async def test_a_body_trickling_after_an_early_answer_is_cut_off(ingest: RunningIngest) -> None:
    """A wrong key is answered 401 at once; the body still trickling in after it is read and
    dropped only until the body timeout (plus its 1 s backstop margin), then the connection is
    closed."""
    before = await refusals(ingest, "body_timeout")
    reader, writer = await connect(ingest)
    writer.write(head("wrong-key", length=1000))
    await writer.drain()
    started = time.monotonic()
    sending = asyncio.create_task(trickle(writer, b"x" * 1000, 0.1))  # 100 s at this pace
    try:
        answer = await read_until_closed(reader, 10)
    finally:
        sending.cancel()
        writer.close()
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:200]
    assert time.monotonic() - started < BODY_TIMEOUT + 1 + 3
    assert await refusals(ingest, "body_timeout") == before + 1


async def test_an_authenticated_trickling_body_is_answered_408(ingest: RunningIngest) -> None:
    reader, writer = await connect(ingest)
    writer.write(head(length=1000))
    await writer.drain()
    sending = asyncio.create_task(trickle(writer, b"[" + b" " * 998 + b"]", 0.1))
    try:
        answer = await read_until_closed(reader, 10)
    finally:
        sending.cancel()
        writer.close()
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b"did not arrive within" in answer  # the app's answer (limits.body_timeout_seconds), not the backstop's


async def test_an_idle_keep_alive_connection_is_closed(ingest: RunningIngest) -> None:
    reader, writer = await connect(ingest)
    try:
        writer.write(head() + b"[]")
        await writer.drain()
        answered = time.monotonic()
        answer = await read_until_closed(reader, 10)
        assert answer.startswith(b"HTTP/1.1 200 ")
        assert time.monotonic() - answered < IDLE_TIMEOUT + 3
    finally:
        writer.close()


async def test_connections_over_the_cap_are_refused_at_accept(ingest: RunningIngest) -> None:
    """MAX_CONNECTIONS silent connections are open (none has sent a byte, so none is
    authenticated); the next is answered 503 and closed at once, without being read, and
    counted. Once one closes, a new connection is served again."""
    before = await refusals(ingest, "max_connections")
    stats = ingest.server.config.http_protocol_class.stats  # type: ignore[attr-defined]
    held = [await connect(ingest) for _ in range(MAX_CONNECTIONS)]
    try:
        await wait_until(lambda: stats.open == MAX_CONNECTIONS, "the held connections to be accepted", 10)
        reader, writer = await connect(ingest)
        started = time.monotonic()
        try:
            writer.write(head() + b"[]")
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            answer = await read_until_closed(reader, 5)
        except ConnectionResetError:
            answer = b""
        finally:
            writer.close()
        assert answer == b"" or answer.startswith(b"HTTP/1.1 503 "), answer[:200]
        assert time.monotonic() - started < HEAD_TIMEOUT, "refused at once, not by the head timeout"
        assert stats.refused["max_connections"] >= 1
    finally:
        for _, held_writer in held:
            held_writer.close()
    await wait_until(lambda: stats.open == 0, "the held connections to close", 10)
    async with httpx.AsyncClient() as client:
        response = await client.post(ingest.webhook(), content=b"[]", headers={"X-Api-Key": KEY})
    assert response.status_code == 200
    assert await refusals(ingest, "max_connections") == before + 1


@pytest.mark.parametrize("shape", ["one long header line", "many header lines", "a long request line"])
async def test_a_head_over_the_bound_is_refused_before_it_ends(ingest: RunningIngest, shape: str) -> None:
    """400 (the webhook's SPEC code) once the head passes 64 KiB, while the client is still
    sending: 8 MiB more are never read."""
    reader, writer = await connect(ingest)
    if shape == "one long header line":
        start = b"POST /webhook/appsec HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: "
        filler = b"a" * 65536
    elif shape == "many header lines":
        start = b"POST /webhook/appsec HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        filler = b"".join(b"X-H%05d: v\r\n" % i for i in range(5000))[:65536]
    else:
        start = b"POST /webhook/appsec?"
        filler = b"a" * 65536
    sent = 0
    try:
        writer.write(start)
        with contextlib.suppress(ConnectionError):
            for _ in range(128):
                writer.write(filler)
                await writer.drain()
                sent += len(filler)
        answer = await read_until_closed(reader, 10)
    except ConnectionResetError:
        answer = b""
    finally:
        writer.close()
    assert sent < 8 * 1024 * 1024, "the whole head was read"
    if answer:  # else the server's close reset the connection before the answer was read
        assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
        assert b"Request head too large" in answer


# --- X-Forwarded-For over several header lines ----------------------------------------------------


@pytest.fixture
async def fenced(tmp_path: Path) -> AsyncIterator[RunningIngest]:
    """Behind a trusted proxy (loopback), one integration that takes 198.51.100.0/24 only."""
    integrations = f"""
  - name: appsec
    auth: {{header: X-Api-Key, values: ["{KEY}"]}}
    allowed_cidrs: [198.51.100.0/24]
"""
    config = make_config(tmp_path, None, integrations=integrations)
    config = dataclasses.replace(config, listen=dataclasses.replace(
        config.listen, trusted_proxies=(ipaddress.ip_network("127.0.0.0/8"),)))
    async with running_ingest(config, wait_ready=False, publisher=MemoryPublisher()) as running:
        yield running


async def send_with_xff(ingest: RunningIngest, lines: list[str]) -> bytes:
    reader, writer = await connect(ingest)
    try:
        xff = "".join(f"X-Forwarded-For: {line}\r\n" for line in lines)
        writer.write(f"POST /webhook/appsec HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Api-Key: {KEY}\r\n{xff}"
                     "Content-Length: 2\r\nConnection: close\r\n\r\n[]".encode())
        return await read_until_closed(reader, 10)
    finally:
        writer.close()


@pytest.mark.parametrize(
    ("lines", "status"),
    [
        # HAProxy's `option forwardfor` appends its own line: the client's forged one comes first.
        (["198.51.100.7", "203.0.113.9"], 403),
        (["203.0.113.9", "198.51.100.7"], 200),
        (["198.51.100.7, 10.0.0.1", "203.0.113.9"], 403),
        (["198.51.100.7"], 200),
        (["203.0.113.9, 198.51.100.7"], 200),
    ],
)
async def test_every_forwarded_for_line_counts_walked_from_the_right(
        fenced: RunningIngest, lines: list[str], status: int) -> None:
    answer = await send_with_xff(fenced, lines)
    assert answer.startswith(b"HTTP/1.1 %d " % status), answer[:200]


async def test_an_upgrade_request_is_answered_and_the_connection_closed(ingest: RunningIngest) -> None:
    """No websockets: an Upgrade is answered as a plain request, and what follows it is not
    read as HTTP: the connection is closed after the answer."""
    reader, writer = await connect(ingest)
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
                     + b"\x81\x85garbage-after-the-upgrade")
        await writer.drain()
        answer = await read_until_closed(reader, 5)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    assert answer.count(b"HTTP/1.1") == 1


@pytest.mark.parametrize(
    ("framing", "reason"),
    [
        (b"Content-Length: 7\r\nContent-Length: 7\r\n\r\n[1,2,3]", b"Duplicate Content-Length"),
        (b"Content-Length: +7\r\n\r\n[1,2,3]", b"Invalid character in Content-Length"),
        (b"X-Folded: a\r\n  b\r\nContent-Length: 7\r\n\r\n[1,2,3]", b"Unexpected whitespace after header value"),
        (b"Transfer-Encoding: chunked\r\n\r\nzz\r\n[1,2,3]\r\n0\r\n\r\n", b"Invalid character in chunk size"),
        (b"Content-Length: 7\r\nTransfer-Encoding: chunked\r\n\r\n7\r\n[1,2,3]\r\n0\r\n\r\n",
         b"Transfer-Encoding can't be present with Content-Length"),
    ],
)
async def test_a_request_the_http_parser_refuses_is_400_naming_why(ingest: RunningIngest, framing: bytes,
                                                                   reason: bytes) -> None:
    """Framing HTTP forbids (RFC 9112: duplicate or signed Content-Length, obsolete line folding,
    a bad chunk size, Content-Length beside chunked): 400 naming the parser's reason, so the
    sender's operator learns what to fix; nothing reaches the app."""
    reader, writer = await connect(ingest)
    try:
        writer.write(b"POST /webhook/appsec HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Api-Key: " + KEY.encode() + b"\r\n"
                     + framing)
        await writer.drain()
        answer = await read_until_closed(reader, 5)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert answer.endswith(b"Invalid HTTP request received: " + reason + b"."), answer[-200:]
    publisher = ingest.publisher
    assert isinstance(publisher, MemoryPublisher) and publisher.records == []



async def _metric(ingest: RunningIngest, name: str) -> float:
    async with httpx.AsyncClient() as client:
        text = (await client.get(ingest.url + "/metrics")).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0  # a labelled child not created yet


@pytest.mark.parametrize("framing", ["content-length", "chunked", "gzip"])
async def test_a_client_that_leaves_mid_body_is_counted_499_and_nothing_is_kept(
        ingest: RunningIngest, framing: str) -> None:
    """A client that closes its connection half way through its body: nothing is stored or
    quarantined, the body's memory share is given back, and it is counted as code 499 (nginx's
    "client closed request"), not as a 400 siemgate never sent (a refusal with nothing in the
    quarantine, as the status page and siemgate_ingest_requests_total read it)."""
    body = json.dumps([{"id": f"gone-{i}", "severity": "high"} for i in range(2000)]).encode()
    if framing == "gzip":
        body = gzip.compress(body)
    if framing == "chunked":
        start = (b"POST /webhook/appsec HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Api-Key: " + KEY.encode()
                 + b"\r\nTransfer-Encoding: chunked\r\n\r\n" + b"%x\r\n" % len(body) + body[: len(body) // 2])
    else:
        extra = "Content-Encoding: gzip\r\n" if framing == "gzip" else ""
        start = head(length=len(body)).replace(b"\r\n\r\n", f"\r\n{extra}\r\n".encode()) + body[: len(body) // 2]
    code = 'siemgate_ingest_requests_total{code="%s",integration="appsec"}'
    refused = await _metric(ingest, code % 400)
    reader, writer = await connect(ingest)
    writer.write(start)
    await writer.drain()

    async def reading() -> bool:
        return await _metric(ingest, "siemgate_ingest_body_bytes_in_flight") > 0

    await wait_until(reading, "the request's body being read", timeout=10)
    writer.close()
    await writer.wait_closed()

    async def counted() -> bool:
        return await _metric(ingest, code % 499) == 1

    await wait_until(counted, "the abandoned request counted as 499", timeout=10)
    assert await _metric(ingest, code % 400) == refused
    assert await _metric(ingest, "siemgate_ingest_body_bytes_in_flight") == 0
    publisher = ingest.publisher
    assert isinstance(publisher, MemoryPublisher) and publisher.records == []
    quarantine = Path(ingest.config.quarantine.path)
    assert not quarantine.exists() or not list(quarantine.iterdir())


@pytest.mark.parametrize("requests", [1, 3])
async def test_a_client_that_half_closes_after_its_requests_gets_their_answers(
        ingest: RunningIngest, requests: int) -> None:
    """A client that shuts its sending side after its request(s) (TCP half-close: HTTP/1.0
    clients, `nc -N`, raw senders) got the connection closed without an answer, its batch
    durable all the same: the sender counted a lost batch that was taken. Every request received
    whole is answered, then the connection closes."""
    bodies = [json.dumps([{"id": f"half-{n}-{i}"} for i in range(n + 1)]).encode() for n in range(requests)]
    reader, writer = await connect(ingest)
    try:
        writer.write(b"".join(head(length=len(body)) + body for body in bodies))
        await writer.drain()
        writer.write_eof()
        answer = await read_until_closed(reader, 5)
    finally:
        writer.close()
    assert answer.count(b"HTTP/1.1 200 OK") == requests, answer[:600]
    for n in range(requests):
        assert b'{"accepted":%d}' % (n + 1) in answer
    publisher = ingest.publisher
    assert isinstance(publisher, MemoryPublisher)
    assert len(publisher.records) == requests * (requests + 1) // 2


async def test_a_client_that_half_closes_mid_body_is_closed_and_nothing_kept(ingest: RunningIngest) -> None:
    body = json.dumps([{"id": f"cut-{i}"} for i in range(100)]).encode()
    reader, writer = await connect(ingest)
    try:
        writer.write(head(length=len(body)) + body[:-10])
        await writer.drain()
        writer.write_eof()
        answer = await read_until_closed(reader, 5)
    finally:
        writer.close()
    assert answer == b""
    publisher = ingest.publisher
    assert isinstance(publisher, MemoryPublisher) and publisher.records == []


UPGRADE = b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n"


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
@pytest.mark.parametrize("split", [False, True])
async def test_the_body_of_a_request_asking_for_an_upgrade_is_read(ingest: RunningIngest, framing: str,
                                                                   split: bool) -> None:
    """`curl --http2` on http:// (and other h2c-capable clients) asks for an h2c upgrade on their POST.
    httptools skips the body of such a request, so the app read an empty body: 400, the batch
    lost (quarantined empty). No upgrade is made (the answer is HTTP/1.1), but the body is read
    and the batch taken, whether it comes with the head or after it."""
    body = json.dumps([{"id": f"h2c-{framing}-{split}-{i}", "pad": "x" * 100} for i in range(300)]).encode()
    framed = b"Transfer-Encoding: chunked\r\n" if framing == "chunked" else b"Content-Length: %d\r\n" % len(body)
    head_bytes = (b"POST /webhook/appsec HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Api-Key: " + KEY.encode() + b"\r\n"
                  + UPGRADE + framed + b"\r\n")
    payload = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) if framing == "chunked" else body
    reader, writer = await connect(ingest)
    try:
        if split:  # the head and half the body, the rest once the app reads it (2 reads at least)
            writer.write(head_bytes + payload[: len(payload) // 2])
            await writer.drain()

            async def reading() -> bool:
                return await _metric(ingest, "siemgate_ingest_body_bytes_in_flight") > 0

            await wait_until(reading, "the request's body being read", timeout=10)
            writer.write(payload[len(payload) // 2:])
        else:
            writer.write(head_bytes + payload)
        await writer.drain()
        answer = await read_until_closed(reader, 10)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:300]
    assert answer.endswith(b'{"accepted":300}')
    publisher = ingest.publisher
    assert isinstance(publisher, MemoryPublisher) and len(publisher.records) == 300
