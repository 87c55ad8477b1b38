"""The memory budget (limits.memory_budget_bytes): the budget's rules on their own, then a real
ingest over loopback whose requests over the budget wait, unread, and are all answered 200."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import httpx
import orjson
import pytest

from siemgate.config import BODY_BYTE_COST
from siemgate.errors import ConfigError
from siemgate.ingest.budget import Claim, MemoryBudget
from siemgate.listeners import BoundedHttpProtocol
from siemgate.record import Record
from tests.support import KEY, RunningIngest, event, make_config, metric_value, running_ingest, wait_until

pytestmark = pytest.mark.anyio

MiB = 1024 * 1024


# --- the budget's rules ------------------------------------------------------------------------

async def _task_taking(claim: Claim, n: int) -> asyncio.Task[None]:
    return asyncio.create_task(claim.take(n))


async def test_new_requests_wait_in_arrival_order() -> None:
    budget = MemoryBudget(100)
    with budget.claim(60) as a, budget.claim(50) as b, budget.claim(10) as c:
        await a.take(60)
        b_waits = await _task_taking(b, 50)
        await wait_until(lambda: budget.waiting == 1, "b to wait", timeout=10)
        c_waits = await _task_taking(c, 10)  # 10 would fit, but b came first
        await wait_until(lambda: budget.waiting == 2, "c to wait behind b", timeout=10)
        assert budget.in_use == 60
        a.release()
        await b_waits
        await c_waits
        assert (budget.in_use, budget.waiting, budget.peak) == (60, 0, 60)
    assert budget.in_use == 0


async def test_growing_requests_never_deadlock() -> None:
    """Two requests that grow (chunked or gzip bodies): handing B 5 more bytes would leave
    neither able to finish (A needs 10, B 15, 5 free); B waits, A finishes, then B gets them."""
    budget = MemoryBudget(100)
    with budget.claim(60) as a, budget.claim(60) as b:
        await a.take(50)
        await b.take(40)
        b_grows = await _task_taking(b, 5)
        await wait_until(lambda: budget.waiting == 1, "B to wait: granting it is unsafe", timeout=10)
        assert budget.in_use == 90
        await a.take(10)  # at once: A can finish
        a.release()
        await b_grows
        await b.take(15)
        assert b.held == 60 and budget.in_use == 60
    assert budget.in_use == 0 and budget.peak <= 100


async def test_a_settled_claim_frees_what_it_might_have_taken() -> None:
    budget = MemoryBudget(100)
    with budget.claim(90) as a, budget.claim(80) as b:
        await a.take(30)
        b_waits = await _task_taking(b, 40)  # 40 fit, but then A could need 60 more and B 40, with 30 free
        await wait_until(lambda: budget.waiting == 1, "B to wait", timeout=10)
        a.settle()  # A's body is read: it stays at 30
        await b_waits
        assert budget.in_use == 70


async def test_a_cancelled_waiter_lets_those_behind_it_in() -> None:
    budget = MemoryBudget(100)
    with budget.claim(90) as a, budget.claim(50) as b, budget.claim(10) as c:
        await a.take(90)
        b_waits = await _task_taking(b, 50)
        c_waits = await _task_taking(c, 10)
        await wait_until(lambda: budget.waiting == 2, "b and c to wait", timeout=10)
        b_waits.cancel()
        await c_waits  # 10 fit once b is no longer ahead of it
        with pytest.raises(asyncio.CancelledError):
            await b_waits
        assert (budget.in_use, budget.waiting, b.held) == (100, 0, 0)


async def test_a_reload_may_raise_the_budget_not_lower_it() -> None:
    budget = MemoryBudget(100)
    with budget.claim(100) as a, budget.claim(50) as b:
        await a.take(100)
        b_waits = await _task_taking(b, 50)
        await wait_until(lambda: budget.waiting == 1, "b to wait", timeout=10)
        assert not budget.raise_limit(80)  # would strand A: kept until a restart
        assert budget.limit == 100
        assert budget.raise_limit(150)
        await b_waits  # the larger budget lets the waiter in at once
        assert (budget.in_use, budget.limit) == (150, 150)


def test_the_budget_holds_one_body_of_the_maximum_size() -> None:
    config = make_config(Path("/tmp"), None, extra="limits: {max_body_bytes: 1048576}")
    assert config.limits.memory_budget_bytes == 256 * MiB  # the default
    big = make_config(Path("/tmp"), None, extra="limits: {max_body_bytes: 67108864}")
    assert big.limits.memory_budget_bytes == (BODY_BYTE_COST + 1) * 64 * MiB
    with pytest.raises(ConfigError, match="memory_budget_bytes.*less than one body of max_body_bytes"):
        make_config(Path("/tmp"), None, extra="limits: {max_body_bytes: 1048576, memory_budget_bytes: 4194304}")


# --- a real ingest -------------------------------------------------------------------------------

class GatedPublisher:
    """Keeps every batch it is given (the test counts them), once `gate` is open: until then a
    request holds its share of the budget, as one waiting for Kafka's acknowledgement does."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.published: list[Record] = []

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def publish(self, records: Sequence[Record]) -> None:
        await self.gate.wait()
        self.published.extend(records)

    async def ready(self) -> bool:
        return True


@pytest.fixture
def received(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Body bytes the ingest's HTTP protocol has read from its sockets (all connections): what
    siemgate's bounded protocol (its `on_body`, in place of uvicorn's) hands to the app."""
    total = [0]
    original = BoundedHttpProtocol.on_body

    def counting(self: BoundedHttpProtocol, body: bytes) -> None:
        total[0] += len(body)
        original(self, body)

    monkeypatch.setattr(BoundedHttpProtocol, "on_body", counting)
    yield total


def batch(size: int, n: int = 100) -> bytes:
    pad = "x" * (size // n - 300)
    body = orjson.dumps([event(i, message=pad) for i in range(n)])
    assert size - 30_000 < len(body) <= size, len(body)
    return body


async def metrics(ingest: RunningIngest) -> str:
    async with httpx.AsyncClient() as client:
        return (await client.get(ingest.url + "/metrics")).text


async def gauge(ingest: RunningIngest, name: str) -> float:
    return metric_value(await metrics(ingest), name)


def budget_of(ingest: RunningIngest) -> MemoryBudget:
    budget = ingest.server.config.app.state.context.budget
    assert isinstance(budget, MemoryBudget)
    return budget


async def post(url: str, body: bytes | AsyncIterator[bytes], headers: dict[str, str] | None = None) -> int:
    async with httpx.AsyncClient(timeout=60) as client:
        response = await client.post(url, content=body, headers={"X-Api-Key": KEY, **(headers or {})})
        return response.status_code


async def test_bodies_over_the_budget_wait_unread_and_are_all_answered(
        tmp_path: Path, received: list[int]) -> None:
    config = make_config(tmp_path, None,
                         extra=f"limits: {{max_body_bytes: {2 * MiB}, memory_budget_bytes: {26 * MiB}}}")
    publisher = GatedPublisher()
    body = batch(2 * MiB)
    cost = BODY_BYTE_COST * len(body)
    async with running_ingest(config, publisher=publisher) as ingest:
        first = [asyncio.create_task(post(ingest.webhook(), body)) for _ in range(2)]
        await wait_until(lambda: budget_of(ingest).in_use == 2 * cost,
                         "two bodies to take their share")
        rest = [asyncio.create_task(post(ingest.webhook(), body)) for _ in range(4)]
        await wait_until(lambda: budget_of(ingest).waiting == 4, "four requests to wait for the budget")
        assert await gauge(ingest, "siemgate_ingest_body_budget_waiters") == 4
        assert await gauge(ingest, "siemgate_ingest_body_bytes_in_flight") == 2 * cost
        assert await gauge(ingest, "siemgate_ingest_body_budget_bytes") == 26 * MiB
        # The waiting bodies are not read: the ingest stops reading their sockets after 64 KiB
        # (uvicorn's flow control; plus one read of at most 256 KiB each).
        slack = 64 * 1024 + 256 * 1024
        await wait_until(lambda: received[0] >= 2 * len(body), "the two bodies to be read")
        assert received[0] <= 2 * len(body) + 4 * slack, received[0]
        assert not any(task.done() for task in first + rest)
        publisher.gate.set()
        assert await asyncio.gather(*first, *rest) == [200] * 6
        assert len(publisher.published) == 6 * 100
        assert budget_of(ingest).peak <= 26 * MiB
        await wait_until(lambda: budget_of(ingest).in_use == 0, "every share to be given back")


async def test_a_waiter_whose_client_goes_away_does_not_stall_the_others(tmp_path: Path) -> None:
    config = make_config(tmp_path, None,
                         extra=f"limits: {{max_body_bytes: {2 * MiB}, memory_budget_bytes: {26 * MiB}}}")
    publisher = GatedPublisher()
    body = batch(2 * MiB)
    async with running_ingest(config, publisher=publisher) as ingest:
        holders = [asyncio.create_task(post(ingest.webhook(), body)) for _ in range(2)]
        await wait_until(lambda: budget_of(ingest).in_use == 2 * BODY_BYTE_COST * len(body), "two holders")
        path = config.integration("appsec").path
        reader, writer = await asyncio.open_connection("127.0.0.1", int(ingest.url.rsplit(":", 1)[1]))
        writer.write(f"POST {path} HTTP/1.1\r\nHost: x\r\nX-Api-Key: {KEY}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(body)}\r\n\r\n".encode() + body[:100_000])
        await writer.drain()
        await wait_until(lambda: budget_of(ingest).waiting == 1, "the lone client to wait")
        behind = asyncio.create_task(post(ingest.webhook(), body))
        await wait_until(lambda: budget_of(ingest).waiting == 2, "a request to wait behind it")
        writer.close()  # the waiting client goes away
        await writer.wait_closed()
        publisher.gate.set()
        assert await asyncio.gather(*holders, behind) == [200] * 3
        await wait_until(lambda: budget_of(ingest).in_use == 0 and budget_of(ingest).waiting == 0,
                         "the gone client's request to give its share back")
        assert len(publisher.published) == 3 * 100
        assert await post(ingest.webhook(), body) == 200  # and the budget still serves


async def test_chunked_and_gzip_bodies_take_their_share_as_they_grow(tmp_path: Path) -> None:
    config = make_config(tmp_path, None,
                         extra=f"limits: {{max_body_bytes: {2 * MiB}, memory_budget_bytes: {26 * MiB}}}")
    publisher = GatedPublisher()
    body = batch(2 * MiB)
    packed = gzip.compress(body)

    async def chunks(data: bytes) -> AsyncIterator[bytes]:
        for start in range(0, len(data), 64 * 1024):
            yield data[start:start + 64 * 1024]

    async with running_ingest(config, publisher=publisher) as ingest:
        tasks = [asyncio.create_task(post(ingest.webhook(), chunks(body))),
                 asyncio.create_task(post(ingest.webhook(), chunks(packed), {"Content-Encoding": "gzip"})),
                 asyncio.create_task(post(ingest.webhook(), packed, {"Content-Encoding": "gzip"})),
                 asyncio.create_task(post(ingest.webhook(), chunks(body)))]
        await wait_until(lambda: budget_of(ingest).waiting >= 1, "a body to wait for the budget")
        assert budget_of(ingest).in_use <= 26 * MiB
        publisher.gate.set()
        assert await asyncio.gather(*tasks) == [200] * 4
        assert len(publisher.published) == 4 * 100
        assert budget_of(ingest).peak <= 26 * MiB
        await wait_until(lambda: budget_of(ingest).in_use == 0, "every share to be given back")


async def test_waiting_for_the_budget_does_not_count_against_the_body_timeout(tmp_path: Path) -> None:
    """A chunked body that must wait for its share longer than body_timeout_seconds is still
    answered 200: only the time its bytes take to arrive counts."""
    config = make_config(tmp_path, None, extra=f"limits: {{max_body_bytes: {2 * MiB}, memory_budget_bytes: "
                                               f"{26 * MiB}, body_timeout_seconds: 0.3}}")
    publisher = GatedPublisher()
    body = batch(2 * MiB)

    async def chunks(data: bytes) -> AsyncIterator[bytes]:
        for start in range(0, len(data), 64 * 1024):
            yield data[start:start + 64 * 1024]

    async with running_ingest(config, publisher=publisher) as ingest:
        holders = [asyncio.create_task(post(ingest.webhook(), body)) for _ in range(2)]
        await wait_until(lambda: budget_of(ingest).in_use == 2 * BODY_BYTE_COST * len(body), "two holders")
        grower = asyncio.create_task(post(ingest.webhook(), chunks(body)))
        await wait_until(lambda: budget_of(ingest).waiting == 1, "the chunked body to wait as it grows")
        await asyncio.sleep(1.0)  # the scenario itself: waiting well past body_timeout_seconds
        assert not grower.done()
        publisher.gate.set()
        assert await asyncio.gather(*holders, grower) == [200] * 3
