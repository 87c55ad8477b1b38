"""The ingest's memory budget: the bytes request bodies in flight (and their parsed forms) may
take in one process (`limits.memory_budget_bytes`).

Each request takes its share before it reads its body (from Content-Length) or as the body
grows (chunked, or as it inflates), and gives it all back once answered. A request whose share
does not fit waits: its body is not read, so uvicorn stops reading its socket once 64 KiB are
buffered (flow control) and the client's sends block. Nothing is refused for want of memory.

A request that already holds bytes and needs more (a growing body) could wait for others that
wait for it. The budget never lets that happen: each request declares the most it can take
(`claim(most)`), and bytes are only handed out when every holder could still be given the
rest of its claim in some order (the banker's algorithm, for one resource). Growing requests
are served before new ones; new ones in arrival order.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Iterator

from siemgate.config import BODY_BYTE_COST


def body_claim(coding: str, content_length: int | None, limit: int) -> int:
    """The most of the memory budget a body can take: BODY_BYTE_COST per byte of the body as
    read (identity) or inflated (gzip, plus 1 per byte as sent)."""
    sent = limit if content_length is None else min(content_length, limit)
    return BODY_BYTE_COST * sent if coding == "identity" else sent + BODY_BYTE_COST * limit


class Claim:
    """One request's share of the budget: `held` bytes now, never more than `most`."""

    __slots__ = ("_budget", "held", "most")

    def __init__(self, budget: MemoryBudget, most: int) -> None:
        self._budget = budget
        self.most = most
        self.held = 0

    async def take(self, n: int) -> None:
        """Hold `n` more bytes, waiting until they fit."""
        await self._budget._take(self, n)

    def try_take(self, n: int) -> bool:
        """Hold `n` more bytes if they fit now, without waiting; False (nothing held) if not."""
        return self._budget._try(self, n)

    def settle(self) -> None:
        """It will take no more (its body is read): what it might have taken is free for others."""
        self._budget._settle(self)

    def release(self) -> None:
        """Give everything back (idempotent)."""
        self._budget._release(self)


class MemoryBudget:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_use = 0
        self.peak = 0  # the most ever held at once (a test hook; the gauge shows `in_use`)
        self._holders: set[Claim] = set()
        self._waiters: deque[tuple[Claim, int, asyncio.Future[None]]] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    @contextlib.contextmanager
    def claim(self, most: int) -> Iterator[Claim]:
        """A share that may grow to `most` bytes, given back on exit."""
        if most > self.limit:
            raise ValueError(f"a claim of {most} bytes can never fit a budget of {self.limit}")
        claim = Claim(self, most)
        try:
            yield claim
        finally:
            claim.release()

    def raise_limit(self, limit: int) -> bool:
        """Take a larger limit (a reloaded config); False, unchanged, if it is smaller (a smaller
        budget could strand requests that hold bytes: it takes a restart)."""
        if limit < self.limit:
            return False
        self.limit = limit
        self._wake()
        return True

    def _try(self, claim: Claim, n: int) -> bool:
        if n <= 0:
            return True
        if claim.held + n > claim.most:
            raise ValueError(f"{claim.held} + {n} bytes is over the claim of {claim.most}")
        # New requests queue behind any waiter; growing ones only need the bytes to be safe.
        if (claim.held > 0 or not self._waiters) and self._grantable(claim, n):
            self._grant(claim, n)
            return True
        return False

    async def _take(self, claim: Claim, n: int) -> None:
        if self._try(claim, n):
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (claim, n, future)
        self._waiters.append(entry)
        try:
            await future
        except BaseException:
            if future.done() and not future.cancelled():
                raise  # granted already: the bytes are the claim's, given back with it
            with contextlib.suppress(ValueError):
                self._waiters.remove(entry)
            self._wake()  # it may have held up new requests behind it
            raise

    def _settle(self, claim: Claim) -> None:
        if claim.most != claim.held:
            claim.most = claim.held
            self._wake()

    def _release(self, claim: Claim) -> None:
        if claim.held:
            self.in_use -= claim.held
            claim.held = 0
            self._holders.discard(claim)
            self._wake()

    def _grant(self, claim: Claim, n: int) -> None:
        claim.held += n
        self.in_use += n
        self.peak = max(self.peak, self.in_use)
        self._holders.add(claim)

    def _grantable(self, claim: Claim, n: int) -> bool:
        """`n` more bytes for `claim` fit, and every holder could still get the rest of its claim."""
        available = self.limit - self.in_use - n
        if available < 0:
            return False
        holders = self._holders | {claim}
        shares = sorted((c.most - c.held - (n if c is claim else 0), c.held + (n if c is claim else 0))
                        for c in holders)
        for need, held in shares:
            if need > available:
                return False
            available += held
        return True

    def _wake(self) -> None:
        progress = True
        while progress and self._waiters:
            progress = False
            for entry in list(self._waiters):  # growing requests first, in any order
                claim, n, future = entry
                if claim.held > 0 and not future.done() and self._grantable(claim, n):
                    self._hand_over(entry)
                    progress = True
            for entry in list(self._waiters):  # then the first new request, in arrival order
                claim, n, future = entry
                if claim.held > 0 or future.done():
                    continue
                if self._grantable(claim, n):
                    self._hand_over(entry)
                    progress = True
                break

    def _hand_over(self, entry: tuple[Claim, int, asyncio.Future[None]]) -> None:
        claim, n, future = entry
        self._waiters.remove(entry)
        self._grant(claim, n)
        future.set_result(None)
