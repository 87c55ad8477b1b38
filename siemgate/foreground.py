"""Who goes first when the ingest and the forwarders share one event loop (`siemgate run`).

The sender waits for each answer before it sends its next batch, so every millisecond a
webhook request spends waiting for the loop is a millisecond of the sender's throughput. The
forwarders' work can wait: what they have not sent yet is already fsync'd in the log. So in
one process the ingest goes first: it marks each request it is answering (`serving`), and
the forwarders, between slices of their work, take a turn (`background_turn`) that returns
at once while no request is being answered and otherwise waits until none is, or until
`max_defer` has passed, so that a constant stream of requests slows forwarding down but
cannot stop it. A forwarder that falls behind this way catches up once the requests pause:
the log holds what it has not sent.

Separate processes (`siemgate ingest`, `siemgate forward`) leave this to the OS scheduler
and use no `Foreground`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

# At most this long a forwarder's slice waits for the ingest's requests (measured here: a
# 500-event batch is ~5 ms of the ingest's CPU, a forwarder's slice of 100 records ~1.5 ms).
DEFAULT_MAX_DEFER_SECONDS = 0.02


class Foreground:
    def __init__(self, max_defer_seconds: float = DEFAULT_MAX_DEFER_SECONDS) -> None:
        self.max_defer_seconds = max_defer_seconds
        self._serving = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def serving_count(self) -> int:
        return self._serving

    @contextlib.contextmanager
    def serving(self) -> Iterator[None]:
        """Around the answer to one request a client is waiting for."""
        self._serving += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._serving -= 1
            if not self._serving:
                self._idle.set()

    async def background_turn(self) -> None:
        """Yield the loop; while requests are being answered, wait for them (bounded)."""
        if not self._serving:
            await asyncio.sleep(0)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), self.max_defer_seconds)


async def yield_loop() -> None:
    """The turn of a forwarder in a process of its own: just let the loop run others."""
    await asyncio.sleep(0)
