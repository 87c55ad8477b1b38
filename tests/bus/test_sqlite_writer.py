"""The SQLite writer engine under the spool and the embedded log, on its own: group commit,
a failed transaction failing only its own waiters, close draining the queue, checkpoint
pacing yielding to waiting writes, and the PRAGMAs each store asks for."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from siemgate.bus.sqlite_writer import CheckpointPacing, Pragmas, SQLiteWriter
from siemgate.errors import BusError, StoreError
from tests.support import wait_until

pytestmark = pytest.mark.anyio

PRAGMAS = Pragmas(page_size=4096, synchronous="FULL", journal_size_limit=1 << 20)


class RowsError(StoreError):
    """The test store's own error type."""


class Rows:
    """A minimal store on the engine: each submitted item is a list of strings, one row each;
    an item containing "boom" makes its transaction fail."""

    def __init__(self, path: Path, *, pacing: CheckpointPacing | None = None,
                 pragmas: Pragmas = PRAGMAS) -> None:
        self.committed: list[list[list[str]]] = []
        self.failed: list[list[list[str]]] = []
        self.engine: SQLiteWriter[list[str], int] = SQLiteWriter(
            path, name="the test store", setting="test.path", pragmas=pragmas,
            pacing=pacing or CheckpointPacing(), error=RowsError, write=self._write,
            committed=lambda items, _: self.committed.append(items),
            failed=lambda items, _: self.failed.append(items),
        )

    async def open(self) -> None:
        await self.engine.open(lambda db: db.execute("CREATE TABLE IF NOT EXISTS rows (v TEXT NOT NULL)"))

    @staticmethod
    def _write(db: sqlite3.Connection, items: list[list[str]]) -> int:
        rows = [(value,) for item in items for value in item]
        db.executemany("INSERT INTO rows (v) VALUES (?)", rows)
        if any("boom" in item for item in items):
            raise sqlite3.OperationalError("boom")  # after the inserts: the rollback must undo them
        return len(rows)

    async def rows(self) -> list[str]:
        return [v for (v,) in await self.engine.call(
            lambda: self.engine.connection.execute("SELECT v FROM rows ORDER BY rowid").fetchall())]


async def blocked(store: Rows) -> tuple[threading.Event, asyncio.Future[bool]]:
    """The writer thread held busy until the returned event is set."""
    gate = threading.Event()
    blocker = asyncio.ensure_future(store.engine.call(gate.wait))
    return gate, blocker


async def test_concurrent_submitters_share_one_transaction(tmp_path: Path) -> None:
    store = Rows(tmp_path / "t.db")
    await store.open()
    gate, blocker = await blocked(store)
    waiters = [store.engine.submit([f"item{n}"]) for n in range(20)]
    await wait_until(lambda: store.engine.writing and store.engine.queued == 0, "the writer to take the queue")
    gate.set()
    await asyncio.gather(blocker, *waiters)
    assert store.engine.commits == 1
    assert store.committed == [[[f"item{n}"] for n in range(20)]]
    assert await store.rows() == [f"item{n}" for n in range(20)]
    await store.engine.close()


async def test_items_arriving_during_a_transaction_go_together_into_the_next(tmp_path: Path) -> None:
    store = Rows(tmp_path / "t.db")
    await store.open()
    gate, blocker = await blocked(store)
    first = store.engine.submit(["first"])
    await wait_until(lambda: store.engine.writing and store.engine.queued == 0, "the writer to take the first")
    later = [store.engine.submit([f"later{n}"]) for n in range(8)]
    assert store.engine.queued == 8
    gate.set()
    await asyncio.gather(blocker, first, *later)
    assert store.engine.commits == 2
    assert [len(group) for group in store.committed] == [1, 8]
    await store.engine.close()


async def test_a_failing_transaction_fails_only_its_own_waiters_with_the_stores_error(tmp_path: Path) -> None:
    store = Rows(tmp_path / "t.db")
    await store.open()
    await store.engine.submit(["before"])
    gate, blocker = await blocked(store)
    doomed = [store.engine.submit(["a"]), store.engine.submit(["boom"]), store.engine.submit(["b"])]
    await wait_until(lambda: store.engine.writing and store.engine.queued == 0, "the writer to take the group")
    after = [store.engine.submit(["after0"]), store.engine.submit(["after1"])]  # the next transaction
    gate.set()
    await blocker
    outcomes = await asyncio.gather(*doomed, return_exceptions=True)
    for outcome in outcomes:
        assert isinstance(outcome, RowsError) and isinstance(outcome, BusError)
        assert "cannot write the test store" in str(outcome) and "boom" in str(outcome)
        assert isinstance(outcome.__cause__, sqlite3.OperationalError)
    assert len({id(o) for o in outcomes}) == 3  # each waiter its own exception object
    await asyncio.gather(*after)  # not failed by their predecessor
    assert store.failed == [[["a"], ["boom"], ["b"]]]
    assert await store.rows() == ["before", "after0", "after1"]  # the failed group rolled back whole
    assert store.engine.failed_at is None  # the last write succeeded
    await store.engine.close()


async def test_close_writes_everything_queued_then_refuses(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    store = Rows(path)
    await store.open()
    gate, blocker = await blocked(store)
    waiters = [store.engine.submit([f"q{n}"]) for n in range(10)]
    closing = asyncio.ensure_future(store.engine.close())
    await wait_until(lambda: not store.engine.is_open, "close to begin")
    with pytest.raises(RowsError, match="closed"):
        store.engine.submit(["too late"])
    gate.set()
    await asyncio.gather(blocker, closing, *waiters)  # every queued item was written, none failed
    with sqlite3.connect(path) as db:
        assert [v for (v,) in db.execute("SELECT v FROM rows")] == [f"q{n}" for n in range(10)]
    wal = path.with_name(path.name + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0  # checkpointed whole (TRUNCATE) at close


async def test_checkpoints_wait_while_a_write_waits(tmp_path: Path) -> None:
    # Always due, never overdue: a checkpoint runs only when nothing is queued.
    store = Rows(tmp_path / "t.db", pacing=CheckpointPacing(due_bytes=1))
    await store.open()
    gate, blocker = await blocked(store)
    first = store.engine.submit(["first"])
    await wait_until(lambda: store.engine.writing and store.engine.queued == 0, "the writer to take the first")
    store.engine.grew(100)
    second = store.engine.submit(["second"])  # waits while the first is written
    gate.set()
    await asyncio.gather(blocker, first, second)
    await store.engine.wait_writes()
    assert store.engine.commits == 2
    assert store.engine.checkpoints == 1  # after the second only: not between the two


async def test_an_overdue_checkpoint_runs_even_while_writes_wait(tmp_path: Path) -> None:
    store = Rows(tmp_path / "t.db", pacing=CheckpointPacing(due_bytes=1, overdue_bytes=50))
    await store.open()
    gate, blocker = await blocked(store)
    first = store.engine.submit(["first"])
    await wait_until(lambda: store.engine.writing and store.engine.queued == 0, "the writer to take the first")
    store.engine.grew(100)
    second = store.engine.submit(["second"])
    gate.set()
    await asyncio.gather(blocker, first, second)
    await store.engine.wait_writes()
    assert store.engine.checkpoints == 1  # between the two: overdue; none after (nothing grew since)
    await store.engine.close()


async def test_checkpoints_paced_by_time(tmp_path: Path) -> None:
    store = Rows(tmp_path / "t.db", pacing=CheckpointPacing(due_seconds=3600))
    await store.open()
    for n in range(5):
        await store.engine.submit([f"r{n}"])
    await store.engine.wait_writes()
    assert store.engine.checkpoints == 0  # not due yet
    store.engine.pacing = CheckpointPacing(due_seconds=0)
    await store.engine.submit(["now"])
    await store.engine.wait_writes()
    assert store.engine.checkpoints == 1
    await store.engine.close()


async def test_pragmas_are_the_stores(tmp_path: Path) -> None:
    store = Rows(tmp_path / "t.db", pragmas=Pragmas(page_size=1024, synchronous="NORMAL", journal_size_limit=4096,
                                                     busy_timeout_ms=1234, incremental_vacuum=True))
    await store.open()

    def read() -> tuple[object, ...]:
        db = store.engine.connection
        return tuple(db.execute(f"PRAGMA {name}").fetchone()[0] for name in (
            "page_size", "synchronous", "journal_size_limit", "busy_timeout", "auto_vacuum", "journal_mode",
            "wal_autocheckpoint"))

    assert await store.engine.call(read) == (1024, 1, 4096, 1234, 2, "wal", 0)

    def synchronous_inside_durable() -> tuple[int, int]:
        with store.engine.transaction("test", durable=True) as db:
            inside = db.execute("PRAGMA synchronous").fetchone()[0]
        return inside, store.engine.connection.execute("PRAGMA synchronous").fetchone()[0]

    assert await store.engine.call(synchronous_inside_durable) == (2, 1)  # FULL for that commit only
    await store.engine.close()


async def test_an_unusable_path_is_the_stores_error_saying_what_to_fix(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    store = Rows(tmp_path / "file" / "t.db")
    with pytest.raises(RowsError, match="cannot open the test store .*Check test.path"):
        await store.open()
    assert not store.engine.is_open
    with pytest.raises(RowsError, match="closed"):
        store.engine.submit(["x"])
