"""Pure parts of the ingest: body decoding limits and client address resolution."""

from __future__ import annotations

import gzip
import ipaddress
import tracemalloc
import zlib
from collections.abc import AsyncIterator

import pytest

from siemgate.errors import BadGzip, BodyTooLarge, UnsupportedEncoding
from siemgate.ingest.body import content_coding, read_body
from siemgate.ingest.peer import allowed, client_address

pytestmark = pytest.mark.anyio

NETS = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8")]


async def chunked(data: bytes, size: int = 65536) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def bomb(megabytes: int) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = b"\0" * (1 << 20)
    return b"".join(compressor.compress(block) for _ in range(megabytes)) + compressor.flush()


async def test_gzip_bomb_is_refused_without_inflating_it() -> None:
    payload = bomb(50)
    tracemalloc.start()
    try:
        with pytest.raises(BodyTooLarge):
            await read_body(chunked(payload), coding="gzip", limit=1 << 20, timeout=10, content_length=None)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, f"peak {peak} bytes while refusing a 50 MB bomb"


async def test_gzip_round_trip_and_limits() -> None:
    data = b'[{"a": 1}]' * 1000
    body = await read_body(chunked(gzip.compress(data), 100), coding="gzip", limit=len(data), timeout=5,
                           content_length=None)
    assert body == data
    with pytest.raises(BodyTooLarge):
        await read_body(chunked(gzip.compress(data)), coding="gzip", limit=len(data) - 1, timeout=5,
                        content_length=None)
    with pytest.raises(BodyTooLarge):
        await read_body(chunked(b"x" * 2000), coding="identity", limit=1999, timeout=5, content_length=None)
    with pytest.raises(BodyTooLarge):
        await read_body(chunked(b""), coding="identity", limit=10, timeout=5, content_length=11)


async def test_broken_gzip_keeps_the_raw_body() -> None:
    truncated = gzip.compress(b"[1, 2, 3]" * 100)[:-5]
    with pytest.raises(BadGzip) as caught:
        await read_body(chunked(truncated, 7), coding="gzip", limit=1 << 20, timeout=5, content_length=None)
    assert caught.value.raw == truncated
    trailing_garbage = gzip.compress(b"[]") + b"garbage!!"
    with pytest.raises(BadGzip):
        await read_body(chunked(trailing_garbage), coding="gzip", limit=1 << 20, timeout=5, content_length=None)


@pytest.mark.parametrize("size", [1, 7, 65536])
@pytest.mark.parametrize("data", [b'[{"id": "pad"}]', b'[{"id": "%d"}]' * 40_000], ids=["small", "off-the-loop"])
async def test_gzip_padded_with_nul_bytes_is_read(size: int, data: bytes) -> None:
    """NUL bytes after the last gzip member (a writer's block padding) are no member and hide no
    event: gzip(1) and Python's gzip module ignore them, so the ingest does too, however they are
    split into chunks, on the event loop or in the thread (bodies inflating past 256 KiB)."""
    for padding in (b"\0", b"\0" * 1000):
        body = gzip.compress(data) + padding
        assert await read_body(chunked(body, size), coding="gzip", limit=1 << 22, timeout=10,
                               content_length=None) == data
        two = gzip.compress(data[:5]) + gzip.compress(data[5:]) + padding
        assert await read_body(chunked(two, size), coding="gzip", limit=1 << 22, timeout=10,
                               content_length=None) == data


@pytest.mark.parametrize(("tail", "reason"), [
    (b"garbage!!", "bytes that are not gzip follow the end of the gzip data (trailing garbage)"),
    (b"\r\n", "bytes that are not gzip follow the end of the gzip data (trailing garbage)"),
    (b"\0\0garbage", "bytes that are not gzip follow the NUL padding after the gzip data (trailing garbage)"),
])
async def test_bytes_after_the_gzip_data_are_named(tail: bytes, reason: str) -> None:
    """Anything else after the gzip data is refused (it may be a damaged member holding events),
    named for what it is, not zlib's "incorrect header check"."""
    data = gzip.compress(b'[{"id": "t"}]')
    body = data + tail
    for size in (1, 65536):
        with pytest.raises(BadGzip) as caught:
            await read_body(chunked(body, size), coding="gzip", limit=1 << 20, timeout=5, content_length=None)
        assert str(caught.value) == f"the body is not valid gzip: {reason}"
        assert body.startswith(caught.value.raw) and len(caught.value.raw) > len(data)  # what was read, kept


@pytest.mark.parametrize(("header", "coding"), [
    (None, "identity"), ("", "identity"), ("Identity", "identity"), ("gzip", "gzip"), (" x-gzip ", "gzip"),
    # One list of the codings applied, over every line; identity changes nothing (RFC 9110 8.4).
    ([], "identity"), (["identity", "gzip"], "gzip"), ("identity, gzip", "gzip"), ("gzip, identity", "gzip"),
    (["gzip", ""], "gzip"), (",", "identity"), (["", "identity"], "identity"),
])
def test_content_coding(header: str | list[str] | None, coding: str) -> None:
    assert content_coding(header) == coding


@pytest.mark.parametrize(("header", "transfer", "coding"), [
    (None, ["chunked"], "identity"), (None, ["gzip, chunked"], "gzip"), (None, ["gzip", "chunked"], "gzip"),
    ("identity", ["x-gzip, chunked"], "gzip"), (None, ["identity, chunked"], "identity"),
])
def test_transfer_codings_before_chunked_are_codings_of_the_body(header: str | None, transfer: list[str],
                                                                  coding: str) -> None:
    """`Transfer-Encoding: gzip, chunked`: the HTTP server undoes chunked only, so the app got
    gzip bytes it read as JSON (400 "not UTF-8", the batch lost)."""
    assert content_coding(header, transfer=transfer) == coding


@pytest.mark.parametrize(("header", "transfer", "named"), [
    ("gzip", ["gzip, chunked"], "Content-Encoding + Transfer-Encoding 'gzip, gzip': gzip applied 2 times"),
    (None, ["deflate, chunked"], "Content-Encoding + Transfer-Encoding 'deflate' is not supported"),
])
def test_transfer_codings_refused_are_named(header: str | None, transfer: list[str], named: str) -> None:
    with pytest.raises(UnsupportedEncoding) as caught:
        content_coding(header, transfer=transfer)
    assert named in str(caught.value)


@pytest.mark.parametrize(("header", "named"), [
    ("br", "'br' is not supported"), ("deflate", "'deflate' is not supported"), ("zstd", "'zstd' is not supported"),
    ("*", "'*' is not supported"), ("gzip, br", "'gzip, br' is not supported"),
    ("gzip, gzip", "'gzip, gzip': gzip applied 2 times"), (["gzip", "GZIP"], "'gzip, gzip': gzip applied 2 times"),
    (["identity", "br"], "'br' is not supported"),
])
def test_unsupported_coding(header: str | list[str], named: str) -> None:
    """Refused 415, naming the codings as siemgate read them (every line, identity dropped): a
    second Content-Encoding line is no longer ignored (`identity` then `gzip` read the gzip'd
    body as JSON; `gzip` twice inflated it once)."""
    with pytest.raises(UnsupportedEncoding) as caught:
        content_coding(header)
    assert named in str(caught.value)


@pytest.mark.parametrize(
    ("peer", "xff", "trusted", "expected"),
    [
        ("203.0.113.5", None, NETS, "203.0.113.5"),
        ("203.0.113.5", "198.51.100.1", NETS, "203.0.113.5"),  # untrusted peer: header ignored
        ("10.1.1.1", "198.51.100.1", NETS, "198.51.100.1"),
        ("10.1.1.1", "198.51.100.1", [], "10.1.1.1"),  # no trusted proxies configured
        ("10.1.1.1", "1.2.3.4, 198.51.100.1, 10.2.2.2", NETS, "198.51.100.1"),  # walk past trusted hops only
        ("10.1.1.1", "10.3.3.3, 10.2.2.2", NETS, "10.3.3.3"),  # all trusted: the leftmost
        ("10.1.1.1", "garbage, 198.51.100.1", NETS, "198.51.100.1"),
        ("10.1.1.1", "198.51.100.1:4711", NETS, "198.51.100.1"),
        ("10.1.1.1", "[2001:db8::1]:443", NETS, "2001:db8::1"),
        ("::ffff:10.1.1.1", "198.51.100.9", NETS, "198.51.100.9"),  # v4-mapped peer
        ("10.1.1.1", "not-an-ip", NETS, "10.1.1.1"),
        (None, None, NETS, "unknown"),
        # Several lines are one list: the client's forged line first, the proxy's own appended.
        ("10.1.1.1", ["1.2.3.4", "198.51.100.1"], NETS, "198.51.100.1"),
        ("10.1.1.1", ["1.2.3.4, 10.9.9.9", "198.51.100.1, 10.2.2.2"], NETS, "198.51.100.1"),
        ("10.1.1.1", ["10.3.3.3", "10.2.2.2"], NETS, "10.3.3.3"),
        ("10.1.1.1", [], NETS, "10.1.1.1"),
        ("10.1.1.1", ["", "198.51.100.1"], NETS, "198.51.100.1"),
    ],
)
def test_client_address(peer: str | None, xff: str | list[str] | None, trusted: list[ipaddress.IPv4Network],
                        expected: str) -> None:
    assert client_address(peer, xff, trusted) == expected


def test_allowed() -> None:
    assert allowed("1.2.3.4", [])
    assert allowed("10.9.9.9", NETS)
    assert allowed("fd00::1", NETS)
    assert not allowed("11.0.0.1", NETS)
    assert not allowed("unknown", NETS)
