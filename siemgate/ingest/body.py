"""Reading a request body safely: a hard cap, gzip with the inflated size capped too, and a
deadline for the whole body (uvicorn has no body timeout, so a trickling client could hold
a connection for ever).
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncIterator

from siemgate.errors import BadGzip, BodyTimeout, BodyTooLarge, UnsupportedEncoding


def content_coding(header: str | None) -> str:
    """`identity` or `gzip`; anything else raises UnsupportedEncoding."""
    value = (header or "").strip().lower()
    if value in ("", "identity"):
        return "identity"
    if value in ("gzip", "x-gzip"):
        return "gzip"
    raise UnsupportedEncoding(f"Content-Encoding {value!r} is not supported (use gzip or none)")


class _Inflater:
    """Incremental gunzip that stops as soon as the output would pass `limit`."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._decoder = zlib.decompressobj(wbits=31)
        self._in_member = False
        self.output = bytearray()

    def feed(self, data: bytes) -> None:
        while data:
            self._in_member = True
            room = self._limit - len(self.output) + 1
            self.output += self._decoder.decompress(data, room)
            if len(self.output) > self._limit:
                raise BodyTooLarge(f"the body inflates to more than {self._limit} bytes")
            if self._decoder.eof:
                # Concatenated gzip members are one valid gzip stream (RFC 1952 2.2).
                data = self._decoder.unused_data
                self._decoder = zlib.decompressobj(wbits=31)
                self._in_member = False
            else:
                data = self._decoder.unconsumed_tail

    def finish(self) -> bytes:
        if self._in_member:
            raise zlib.error("the gzip stream is truncated")
        return bytes(self.output)


async def read_body(
    chunks: AsyncIterator[bytes],
    *,
    coding: str,
    limit: int,
    timeout: float,
    content_length: int | None,
) -> bytes:
    """Read the whole body, decoded. Never holds more than `limit` bytes of either form."""
    if content_length is not None and content_length > limit:
        raise BodyTooLarge(f"Content-Length {content_length} is over the limit of {limit} bytes")
    raw = bytearray()
    inflater = _Inflater(limit) if coding == "gzip" else None
    try:
        async with asyncio.timeout(timeout):
            async for chunk in chunks:
                if not chunk:
                    continue
                raw += chunk
                if len(raw) > limit:
                    raise BodyTooLarge(f"the body is over the limit of {limit} bytes")
                if inflater is not None:
                    try:
                        inflater.feed(chunk)
                    except zlib.error as exc:
                        raise BadGzip(f"the body is not valid gzip: {exc}", bytes(raw)) from None
    except TimeoutError:
        raise BodyTimeout(f"the body did not arrive within {timeout:g} s") from None
    if inflater is None:
        return bytes(raw)
    try:
        return inflater.finish()
    except zlib.error as exc:
        raise BadGzip(f"the body is not valid gzip: {exc}", bytes(raw)) from None
