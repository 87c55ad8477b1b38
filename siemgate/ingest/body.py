"""Reading a request body safely: a hard cap, gzip with the inflated size capped too, and a
deadline for the whole body (uvicorn has no body timeout, so a trickling client could hold
a connection for ever).

gunzip stays off the event loop for large bodies: the first `INLINE_INFLATE_BYTES` of output
are inflated on the loop as the chunks arrive (a typical gzip'd batch, well under a
millisecond of work), the rest, once the body is complete, in a thread (`asyncio.to_thread`):
a body that inflates to tens of MB (or a gzip bomb up to the cap) costs the loop nothing, so
/healthz and the other requests are answered meanwhile. The inflated-size cap holds either
way: inflation stops as soon as the output would pass it.
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


# Output inflated on the event loop per body, at most; the rest is inflated in a thread.
INLINE_INFLATE_BYTES = 256 * 1024


class _Inflater:
    """Incremental gunzip that stops as soon as the output would pass `limit`.

    `feed` inflates on the caller's thread until the output reaches `inline` bytes; from then
    on it only keeps the input (`deferred`) for `feed_rest`, which the caller runs in a thread."""

    def __init__(self, limit: int, inline: int | None = None) -> None:
        self._limit = limit
        self._inline = limit + 1 if inline is None else min(inline, limit + 1)
        self._decoder = zlib.decompressobj(wbits=31)
        self._in_member = False
        self.output = bytearray()
        self.deferred = False
        self._rest: list[bytes] = []

    def feed(self, data: bytes) -> None:
        if self.deferred:
            self._rest.append(data)
        else:
            self._inflate(data, self._inline)

    def feed_rest(self) -> None:
        """Inflate what `feed` deferred, up to the cap (call it in a thread)."""
        rest, self._rest = b"".join(self._rest), []
        self.deferred = False
        self._inflate(rest, self._limit + 1)

    def _inflate(self, data: bytes, stop_at: int) -> None:
        while True:
            room = stop_at - len(self.output)
            if room <= 0:
                # The inline share is used up: the rest (and any output zlib still holds) later.
                self.deferred = True
                self._rest.append(bytes(data))
                return
            if data:
                self._in_member = True
            out = self._decoder.decompress(data, room)
            self.output += out
            if len(self.output) > self._limit:
                raise BodyTooLarge(f"the body inflates to more than {self._limit} bytes")
            if self._decoder.eof:
                # Concatenated gzip members are one valid gzip stream (RFC 1952 2.2).
                data = self._decoder.unused_data
                self._decoder = zlib.decompressobj(wbits=31)
                self._in_member = False
                if not data:
                    return
                continue
            data = self._decoder.unconsumed_tail
            if not data and len(out) < room:
                return  # every byte given is inflated, and nothing is held back
            # The output hit `room`: zlib may hold more, even with no input left.

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
    inflater = _Inflater(limit, INLINE_INFLATE_BYTES) if coding == "gzip" else None
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
        if inflater.deferred:
            # Large: off the event loop (zlib releases the GIL while it inflates).
            await asyncio.to_thread(inflater.feed_rest)
        return inflater.finish()
    except zlib.error as exc:
        raise BadGzip(f"the body is not valid gzip: {exc}", bytes(raw)) from None
