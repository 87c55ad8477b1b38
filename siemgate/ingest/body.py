"""Reading a request body safely: a hard cap, gzip with the inflated size capped too, a
deadline for the whole body (uvicorn has no body timeout, so a trickling client could hold
a connection for ever), and the process's memory budget (siemgate.ingest.budget): the body's
share is taken before it is read (from Content-Length) or as it grows (chunked; inflated), and
while it waits for it the body is not read and its deadline does not run.

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
from collections.abc import AsyncIterator, Sequence

from siemgate.config import BODY_BYTE_COST
from siemgate.errors import BadGzip, BodyTimeout, BodyTooLarge, UnsupportedEncoding
from siemgate.ingest.budget import Claim

# Off the loop, gunzip in steps of this much output, each paid for from the budget before the next.
INFLATE_STEP = 1024 * 1024


def _codings(lines: Sequence[str | None], skip: tuple[str, ...]) -> list[str]:
    return [c for c in (item.strip().lower() for line in lines if line for item in line.split(",")) if c not in skip]


def content_coding(header: str | Sequence[str] | None, *, transfer: Sequence[str] = ()) -> str:
    """`identity` or `gzip`; anything else raises UnsupportedEncoding.

    `header`: the Content-Encoding value, or every line of it: one list of the codings applied,
    in order (RFC 9110 8.4, 5.3), where `identity` (and an empty item) changes nothing.
    `transfer`: the Transfer-Encoding lines; the HTTP server undoes `chunked` only, so a
    transfer coding before it (`gzip, chunked`) is applied after the content codings."""
    lines = [header] if header is None or isinstance(header, str) else header
    codings = _codings(lines, ("", "identity"))
    transfer_codings = _codings(transfer, ("", "identity", "chunked"))
    codings += transfer_codings
    if not codings:
        return "identity"
    if len(codings) == 1 and codings[0] in ("gzip", "x-gzip"):
        return "gzip"
    headers = "Content-Encoding + Transfer-Encoding" if transfer_codings else "Content-Encoding"
    named = f"{headers} {', '.join(codings)!r}"
    if len(codings) > 1 and all(c in ("gzip", "x-gzip") for c in codings):
        raise UnsupportedEncoding(f"{named}: gzip applied {len(codings)} times is not "
                                  "supported (gzip the body once, or not at all)")
    raise UnsupportedEncoding(f"{named} is not supported (use gzip or none)")


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
        # The inflated pieces, joined once by `finish` (a bytearray would be copied once more).
        self._pieces: list[bytes] = []
        self.size = 0  # bytes inflated so far
        self.deferred = False
        self._rest: list[bytes] = []
        # After a member's end only NUL bytes came (a writer's padding, which gzip(1) and
        # Python's gzip module ignore): nothing but more of them may follow.
        self._padding = False
        self._members = 0  # members inflated to their end

    def feed(self, data: bytes) -> None:
        if self.deferred:
            self._rest.append(data)
        else:
            self._inflate(data, self._inline)

    def feed_rest(self, step: int | None = None) -> None:
        """Inflate what `feed` deferred, up to the cap, or only `step` more bytes of output (then
        the rest stays deferred) (call it in a thread)."""
        rest, self._rest = b"".join(self._rest), []
        self.deferred = False
        stop_at = self._limit + 1 if step is None else min(self._limit + 1, self.size + step)
        self._inflate(rest, stop_at)

    def _inflate(self, data: bytes, stop_at: int) -> None:
        if self._padding:
            self._pad(data)
            return
        while True:
            room = stop_at - self.size
            if room <= 0:
                # The inline share is used up: the rest (and any output zlib still holds) later.
                self.deferred = True
                self._rest.append(bytes(data))
                return
            if data and not self._in_member:
                if self._members and data[0] != 0x1F:  # after a member, no other member's first byte
                    if data[0] == 0:  # padding (no member starts with a NUL byte)
                        self._padding = True
                        self._pad(data)
                        return
                    # Say so, not zlib's "incorrect header check".
                    raise zlib.error("bytes that are not gzip follow the end of the gzip data (trailing garbage)")
                self._in_member = True
            out = self._decoder.decompress(data, room)
            self._pieces.append(out)
            self.size += len(out)
            if self.size > self._limit:
                raise BodyTooLarge(f"the body inflates to more than {self._limit} bytes")
            if self._decoder.eof:
                # Concatenated gzip members are one valid gzip stream (RFC 1952 2.2).
                data = self._decoder.unused_data
                self._decoder = zlib.decompressobj(wbits=31)
                self._in_member = False
                self._members += 1
                if not data:
                    return
                continue
            data = self._decoder.unconsumed_tail
            if not data and len(out) < room:
                return  # every byte given is inflated, and nothing is held back
            # The output hit `room`: zlib may hold more, even with no input left.

    @staticmethod
    def _pad(data: bytes) -> None:
        if data.count(0) != len(data):
            raise zlib.error("bytes that are not gzip follow the NUL padding after the gzip data (trailing garbage)")

    def finish(self) -> bytes:
        if self._in_member:
            raise zlib.error("the gzip stream is truncated")
        return self._pieces[0] if len(self._pieces) == 1 else b"".join(self._pieces)


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
    # The chunks as they came, joined once at the end (a bytearray grown chunk by chunk and
    # then copied into bytes is one more copy of the body: ~1 ms for 4 MB on a slow core).
    raw: list[bytes] = []
    size = 0
    inflater = _Inflater(limit, INLINE_INFLATE_BYTES) if coding == "gzip" else None
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
                if size + len(chunk) > limit:
                    raise BodyTooLarge(f"the body is over the limit of {limit} bytes")
                if claim is not None and not known:
                    await take(len(chunk) if inflater is not None else BODY_BYTE_COST * len(chunk))
                raw.append(chunk)
                size += len(chunk)
                if inflater is None:
                    continue
                before = inflater.size
                try:
                    inflater.feed(chunk)  # on the loop: at most INLINE_INFLATE_BYTES of output per body
                except zlib.error as exc:
                    raise BadGzip(f"the body is not valid gzip: {exc}", b"".join(raw)) from None
                if claim is not None:
                    await take(BODY_BYTE_COST * (inflater.size - before))
    except TimeoutError:
        raise BodyTimeout(f"the body did not arrive within {timeout:g} s") from None
    if inflater is None:
        if claim is not None:
            claim.settle()
        return raw[0] if len(raw) == 1 else b"".join(raw)
    try:
        while inflater.deferred:
            # Large: off the event loop (zlib releases the GIL while it inflates), in steps
            # paid for from the budget (without a claim: all at once).
            before = inflater.size
            await asyncio.to_thread(inflater.feed_rest, INFLATE_STEP if claim is not None else None)
            if claim is not None:
                await claim.take(BODY_BYTE_COST * (inflater.size - before))
        if claim is not None:
            claim.settle()
        return inflater.finish()
    except zlib.error as exc:
        raise BadGzip(f"the body is not valid gzip: {exc}", b"".join(raw)) from None
