"""Reading a request body safely: a hard cap, gzip with the inflated size capped too, a
deadline for the whole body (uvicorn has no body timeout, so a trickling client could hold
a connection for ever), and the process's memory budget (siemgate.ingest.budget): the body's
share is taken before it is read (from Content-Length) or as it grows (chunked; inflated), and
while it waits for it the body is not read and its deadline does not run.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncIterator

from siemgate.config import BODY_BYTE_COST
from siemgate.errors import BadGzip, BodyTimeout, BodyTooLarge, UnsupportedEncoding
from siemgate.ingest.budget import Claim

# Gunzip in steps of this much output, each paid for from the budget before the next.
INFLATE_STEP = 256 * 1024


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

    def feed(self, data: bytes, step: int | None = None) -> bytes:
        """Inflate `data`, or only until `step` more bytes are out: returns the input left."""
        start = len(self.output)
        while data and (step is None or len(self.output) - start < step):
            self._in_member = True
            room = self._limit - len(self.output) + 1
            if step is not None:
                room = min(room, step - (len(self.output) - start))
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
        return data

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
    claim: Claim | None = None,
) -> bytes:
    """Read the whole body, decoded. Never holds more than `limit` bytes of either form.

    `claim` (of at least `body_claim(...)`): the body's share of the memory budget, taken before
    its bytes are read (Content-Length) or as they arrive and inflate; the caller gives it back
    once the request is answered. Time spent waiting for it does not count against `timeout`."""
    if content_length is not None and content_length > limit:
        raise BodyTooLarge(f"Content-Length {content_length} is over the limit of {limit} bytes")
    known = content_length is not None
    if claim is not None and content_length is not None:
        await claim.take(BODY_BYTE_COST * content_length if coding == "identity" else content_length)
    raw = bytearray()
    inflater = _Inflater(limit) if coding == "gzip" else None
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout) as deadline:

            async def take(n: int) -> None:  # wait for budget with the deadline stopped
                assert claim is not None
                if claim.try_take(n):
                    return
                when = deadline.when()
                left = None if when is None else when - loop.time()
                deadline.reschedule(None)
                try:
                    await claim.take(n)
                finally:
                    deadline.reschedule(None if left is None else loop.time() + left)

            async for chunk in chunks:
                if not chunk:
                    continue
                if len(raw) + len(chunk) > limit:
                    raise BodyTooLarge(f"the body is over the limit of {limit} bytes")
                if claim is not None and not known:
                    await take(len(chunk) if inflater is not None else BODY_BYTE_COST * len(chunk))
                raw += chunk
                if inflater is None:
                    continue
                rest: bytes = chunk
                while rest:
                    before = len(inflater.output)
                    try:
                        rest = inflater.feed(rest, INFLATE_STEP if claim is not None else None)
                    except zlib.error as exc:
                        raise BadGzip(f"the body is not valid gzip: {exc}", bytes(raw)) from None
                    if claim is not None:
                        await take(BODY_BYTE_COST * (len(inflater.output) - before))
    except TimeoutError:
        raise BodyTimeout(f"the body did not arrive within {timeout:g} s") from None
    if claim is not None:
        claim.settle()
    if inflater is None:
        return bytes(raw)
    try:
        return inflater.finish()
    except zlib.error as exc:
        raise BadGzip(f"the body is not valid gzip: {exc}", bytes(raw)) from None
