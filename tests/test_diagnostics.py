"""SIGUSR1's task dump (siemgate.diagnostics): every task with its whole chain of awaits, down
to the future it waits for; delivered by a real signal to the running loop."""

from __future__ import annotations

import asyncio
import io
import os
import signal

import pytest

from siemgate import diagnostics
from tests.support import wait_until

pytestmark = pytest.mark.anyio


async def _inner(lock: asyncio.Lock) -> None:
    async with lock:
        pass


async def _outer(lock: asyncio.Lock) -> None:
    await _inner(lock)


async def test_the_dump_shows_each_tasks_chain_of_awaits_down_to_the_future() -> None:
    lock = asyncio.Lock()
    await lock.acquire()
    task = asyncio.create_task(_outer(lock), name="stuck-on-a-lock")
    await asyncio.sleep(0)  # let it reach the lock
    out = io.StringIO()
    try:
        assert diagnostics.dump_tasks(out) >= 2
    finally:
        lock.release()
        await task
    text = out.getvalue()
    block = text.split("task stuck-on-a-lock:")[1].split("\ntask ")[0].split("--- end")[0]
    lines = block.strip().splitlines()
    assert "in _outer" in lines[0] and "in _inner" in lines[1], block
    assert any("in acquire" in line for line in lines), block  # asyncio.Lock.acquire
    assert lines[-1].startswith("  waiting for <Future pending"), block


async def test_sigusr1_writes_the_dump_to_stderr(capfd: pytest.CaptureFixture[str]) -> None:
    diagnostics.install()
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
        seen = ""

        def dumped() -> bool:
            nonlocal seen
            seen += capfd.readouterr().err
            return "--- end of tasks ---" in seen

        await wait_until(dumped, "the task dump on stderr", 5, interval=0.02)
    finally:
        asyncio.get_running_loop().remove_signal_handler(signal.SIGUSR1)
    assert "asyncio tasks (SIGUSR1)" in seen and "test_sigusr1_writes_the_dump_to_stderr" in seen, seen
