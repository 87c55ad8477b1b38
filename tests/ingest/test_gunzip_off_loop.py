"""gunzip off the event loop (issue 17): a large gzip'd body is inflated in a thread, so the
loop answers /healthz while it inflates; small bodies inline; the inflated-size cap holds.

The proof is an ordering, not a timing: the inflation of the large body is held (a gate in
zlib's decompressor) until the test has had /healthz answered by the same server. Were the
inflation on the loop, the loop itself would wait at the gate and /healthz could not be
answered: the gate gives up after 10 s and the body fails."""

from __future__ import annotations

import asyncio
import gzip
import threading
import zlib
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from siemgate.ingest import body as body_module
from siemgate.ingest.body import INLINE_INFLATE_BYTES, read_body
from siemgate_standins.broker import Broker
from tests.support import KEY, make_config, running_ingest, wait_until

pytestmark = pytest.mark.anyio


class Gate:
    """Records which threads inflate how much; holds the first call past `hold_after` bytes of
    output until `release` is set (10 s at most)."""

    def __init__(self, hold_after: int) -> None:
        self.hold_after = hold_after
        self.release = threading.Event()
        self.holding = threading.Event()
        self.threads: dict[int, int] = {}
        self._real = zlib.decompressobj
        self._total = 0

    def decompressobj(self, *args: Any, **kwargs: Any) -> Any:
        gate = self
        real = self._real(*args, **kwargs)

        class Gated:
            def decompress(self, data: bytes, max_length: int = 0) -> bytes:
                out = real.decompress(data, max_length)
                ident = threading.get_ident()
                gate.threads[ident] = gate.threads.get(ident, 0) + len(out)
                gate._total += len(out)
                if gate._total > gate.hold_after and not gate.holding.is_set():
                    gate.holding.set()
                    if not gate.release.wait(10):
                        raise zlib.error("held for 10 s: the test could not release it")
                return out

            def __getattr__(self, name: str) -> Any:
                return getattr(real, name)

        return Gated()


def large_batch() -> bytes:
    # ~4 MB of JSON (500 events of ~8 KB), ~100:1 compressible.
    return orjson.dumps([{"id": f"big-{i}", "severity": "high", "sample": "A" * 8000} for i in range(500)])


async def test_healthz_is_answered_while_a_large_gzip_body_inflates(
    kafka_broker: Broker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = Gate(hold_after=2 * INLINE_INFLATE_BYTES)
    monkeypatch.setattr(body_module.zlib, "decompressobj", gate.decompressobj)
    loop_thread = threading.get_ident()
    async with running_ingest(make_config(tmp_path, kafka_broker)) as ingest, httpx.AsyncClient(timeout=30) as client:
        posting = asyncio.create_task(client.post(
            ingest.webhook(), content=gzip.compress(large_batch()),
            headers={"X-Api-Key": KEY, "Content-Encoding": "gzip"}))
        await wait_until(gate.holding.is_set, "the inflation to reach the gate", timeout=15)
        # The body is being inflated (held at the gate): the same server answers meanwhile.
        health = await client.get(ingest.url + "/healthz")
        assert health.status_code == 200
        assert not posting.done()
        gate.release.set()
        response = await posting
    assert response.status_code == 200, response.text
    assert response.json() == {"accepted": 500}
    # The loop inflated at most its inline share; a worker thread did the rest.
    assert gate.threads.get(loop_thread, 0) <= INLINE_INFLATE_BYTES
    assert sum(n for t, n in gate.threads.items() if t != loop_thread) >= len(large_batch()) - INLINE_INFLATE_BYTES


async def chunks_of(data: bytes, size: int) -> Any:
    for at in range(0, len(data), size):
        yield data[at:at + size]


async def test_a_small_body_is_inflated_inline(monkeypatch: pytest.MonkeyPatch) -> None:
    to_thread = []
    real = asyncio.to_thread

    async def counting(*args: Any, **kwargs: Any) -> Any:
        to_thread.append(args[0])
        return await real(*args, **kwargs)

    monkeypatch.setattr(body_module.asyncio, "to_thread", counting)
    small = orjson.dumps([{"id": f"s-{i}", "severity": "low"} for i in range(500)])
    assert len(small) < INLINE_INFLATE_BYTES
    got = await read_body(chunks_of(gzip.compress(small), 1000), coding="gzip", limit=1 << 20, timeout=5,
                          content_length=None)
    assert got == small and to_thread == []
    large = large_batch()
    got = await read_body(chunks_of(gzip.compress(large), 65536), coding="gzip", limit=8 << 20, timeout=5,
                          content_length=None)
    assert got == large and len(to_thread) == 1


@pytest.mark.parametrize("limit", [(4 << 20) - 1, 1 << 20, INLINE_INFLATE_BYTES + 1])
async def test_the_inflated_size_cap_holds_in_the_thread(limit: int) -> None:
    from siemgate.errors import BodyTooLarge

    bomb = gzip.compress(b"\0" * (4 << 20))  # 4 MiB from ~4 KB
    with pytest.raises(BodyTooLarge, match="inflates to more than"):
        await read_body(chunks_of(bomb, 65536), coding="gzip", limit=limit, timeout=5, content_length=None)
