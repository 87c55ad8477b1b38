"""siemgate.foreground: in `siemgate run` the ingest's requests go first, forwarding never stops."""

from __future__ import annotations

import asyncio

import pytest

from siemgate.foreground import Foreground

pytestmark = pytest.mark.anyio


async def spin(turns: int = 20) -> None:
    for _ in range(turns):
        await asyncio.sleep(0)


async def test_a_turn_is_immediate_while_no_request_is_served() -> None:
    foreground = Foreground(max_defer_seconds=3600)
    turn = asyncio.create_task(foreground.background_turn())
    await spin()
    assert turn.done()


async def test_a_turn_waits_for_the_requests_being_served() -> None:
    foreground = Foreground(max_defer_seconds=3600)
    with foreground.serving():
        with foreground.serving():
            turn = asyncio.create_task(foreground.background_turn())
            await spin()
            assert not turn.done()
        assert foreground.serving_count == 1
        await spin()
        assert not turn.done()  # one request is still being answered
    await asyncio.wait_for(turn, 5)
    assert foreground.serving_count == 0


async def test_requests_that_never_stop_delay_a_turn_by_at_most_max_defer() -> None:
    foreground = Foreground(max_defer_seconds=0.01)
    with foreground.serving():
        for _ in range(3):  # each turn ends on its own: forwarding slows down, it never stops
            await asyncio.wait_for(foreground.background_turn(), 5)
        assert foreground.serving_count == 1


async def test_a_request_that_fails_still_ends_its_turn() -> None:
    foreground = Foreground(max_defer_seconds=3600)
    with pytest.raises(RuntimeError), foreground.serving():
        raise RuntimeError("the handler failed")
    assert foreground.serving_count == 0
    turn = asyncio.create_task(foreground.background_turn())
    await spin()
    assert turn.done()
