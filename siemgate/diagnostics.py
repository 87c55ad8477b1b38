"""What every asyncio task of a process is waiting on, on demand: `kill -USR1 <pid>`.

A process that makes no progress and says nothing (docs/RELIABILITY.md, finding 4) shows
nothing useful to a thread dump (py-spy, faulthandler): its one thread sits in the event
loop's select. What tells is the chain of awaits of each task, down to the future or the
lock it waits for. `install()` makes SIGUSR1 write that chain for every task to stderr (the
process's log stream), one block per task, without stopping anything.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Iterator
from types import CoroutineType, FrameType, GeneratorType
from typing import Any, TextIO


def _chain(awaitable: Any) -> Iterator[str]:
    """The awaits from `awaitable` down: one line per coroutine (or generator) frame."""
    seen = 0
    while awaitable is not None and seen < 100:
        seen += 1
        frame: FrameType | None = getattr(awaitable, "cr_frame", None) or getattr(awaitable, "gi_frame", None) \
            or getattr(awaitable, "ag_frame", None)
        if frame is not None:
            code = frame.f_code
            yield f"  {code.co_filename}:{frame.f_lineno} in {code.co_name}"
        elif isinstance(awaitable, CoroutineType | GeneratorType):
            yield f"  {getattr(awaitable, '__qualname__', awaitable)!s} (finished)"
        else:
            return  # a future's iterator: the task's own `_fut_waiter` says which future
        awaitable = (getattr(awaitable, "cr_await", None) or getattr(awaitable, "gi_yieldfrom", None)
                     or getattr(awaitable, "ag_await", None))


def dump_tasks(out: TextIO | None = None) -> int:
    """Write every task of the running loop and its chain of awaits; returns the task count."""
    out = out or sys.stderr
    tasks = sorted(asyncio.all_tasks(), key=lambda t: t.get_name())
    lines = [f"--- siemgate: {len(tasks)} asyncio tasks (SIGUSR1) ---"]
    for task in tasks:
        lines.append(f"task {task.get_name()}{' (done)' if task.done() else ''}:")
        lines.extend(_chain(task.get_coro()))
        waiter = getattr(task, "_fut_waiter", None)  # the future the task is blocked on (CPython's Task)
        if waiter is not None:
            lines.append(f"  waiting for {waiter!r}"[:400])
    lines.append("--- end of tasks ---")
    out.write("\n".join(lines) + "\n")
    out.flush()
    return len(tasks)


def install() -> None:
    """SIGUSR1 dumps the tasks (call from inside the running loop; Unix only)."""
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, dump_tasks)
