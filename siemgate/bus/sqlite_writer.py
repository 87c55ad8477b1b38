"""The SQLite writer engine under both of siemgate's durable stores.

The ingest's spool (`siemgate.bus.spool`) and the embedded log's index
(`siemgate.bus.embedded`) make the same promise: `append` returns only once what it wrote
survives a crash. Both keep it the same way, here, so that a durability fix is made once:

- **One writer thread** owns the connection (a single-worker executor); no SQLite call runs
  on the event loop. `call` runs other work (reads, deletes, maintenance) on that thread,
  between write transactions.
- **Group commit.** `submit` queues an item; a writer task takes everything queued, writes
  it in one transaction (`BEGIN IMMEDIATE` ... `COMMIT`, one fsync), and resolves every
  waiter. Items queued while a transaction is written go together into the next one.
  A failed transaction fails only its own waiters, each with the store's error type.
- **One PRAGMA set** (`Pragmas`): WAL, automatic checkpoints off, the journal size limit, the
  page size, the synchronous level and the busy timeout, each chosen by the store.
- **Checkpoint pacing** (`CheckpointPacing`): a PASSIVE checkpoint runs on the writer thread
  between transactions once one is due and no write is waiting, or, once overdue, even while
  writes wait (so that the WAL stays bounded). SQLite's automatic checkpoint would run inside
  the commit that crosses its threshold, in some append's latency.
- **Lifecycle.** `open` (connect, PRAGMAs, the store's own setup), `drain` (refuse new items,
  finish the queued ones), `close` (drain, TRUNCATE checkpoint, close the connection).
  Nothing queued is dropped by a close.
- **One error type**, `StoreError`, whose message says what to do (`explain`); each store
  raises a subclass of it (`SpoolError`, the embedded bus's `LogUnavailable`).
- **Storage figures**: the free space of the file system holding the store and the size of
  its SQLite file and WAL, measured off the event loop every `STORAGE_SECONDS` (the
  `siemgate_storage_*` metrics, `StorageStats`); the size on the writer thread, after each
  checkpoint (and write transaction if asked), so that it is never read beside a change.

The two stores differ on purpose in their policies, which they pass explicitly (see their
modules for why): the spool commits with `synchronous=FULL` (the SQLite file is the record
of truth) and checkpoints by WAL growth; the embedded log's index commits with
`synchronous=NORMAL` (its segment files are fsync'd and are the record of truth; the index
is rebuilt from them) and checkpoints by time. docs/PERFORMANCE.md, "Spool and embedded
modes", has what each policy was measured against.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import sqlite3
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Generic, Literal, Protocol, TypeVar, runtime_checkable

from siemgate.errors import StoreError
from siemgate.private_files import private_file

T = TypeVar("T")
W = TypeVar("W")  # what one `submit` queues
R = TypeVar("R")  # what one group's write returns


# How often the free space and the file's size are measured (a statvfs and two stats).
STORAGE_SECONDS: Final = 5.0


@dataclass(frozen=True)
class StorageStats:
    """A durable store's size against its cap (the `siemgate_storage_*` metrics)."""

    store: Literal["log", "spool"]
    # What the cap counts: the embedded log's bytes on disk (segments, index, WAL); the
    # spool's logical bytes (keys, values, headers held).
    bytes: int
    limit_bytes: int  # 0: no cap
    # Free space of the file system holding it; None until first measured.
    free_bytes: int | None
    # Batches refused because the store was full (answered 503).
    refused_full: int = 0


@runtime_checkable
class StorageReporter(Protocol):
    """A publisher whose acknowledged batches wait in a local store (the embedded log, the spool)."""

    def storage_stats(self) -> StorageStats: ...


@dataclass(frozen=True)
class Pragmas:
    """How a store's connection is set up (WAL and manual checkpoints always)."""

    # For a new file; an existing one keeps its own.
    page_size: int
    # FULL: every commit is fsync'd. NORMAL: commits are not (in WAL mode they survive a
    # process crash, not a power cut); a `transaction(durable=True)` still is.
    synchronous: Literal["FULL", "NORMAL"]
    # After a checkpoint that reset the WAL, SQLite truncates its file to this size.
    journal_size_limit: int
    # How long a write waits for another process's write lock.
    busy_timeout_ms: int = 5000
    # Lets a store give freed pages back to the file system (`PRAGMA incremental_vacuum`);
    # must be set before the file's first table.
    incremental_vacuum: bool = False


@dataclass(frozen=True)
class CheckpointPacing:
    """When the writer runs a PASSIVE checkpoint between transactions.

    Due once the WAL grew by `due_bytes` (as the store reports with `grew`) or `due_seconds`
    passed since the last one; it then waits for the write queue to be empty, unless it is
    overdue (`overdue_bytes` / `overdue_seconds`). None: that measure is not used.
    """

    due_bytes: int | None = None
    overdue_bytes: int | None = None
    due_seconds: float | None = None
    overdue_seconds: float | None = None

    def state(self, grown: int, elapsed: float) -> tuple[bool, bool]:
        """(due, overdue) after `grown` bytes and `elapsed` seconds since the last checkpoint."""
        due = ((self.due_bytes is not None and grown >= self.due_bytes)
               or (self.due_seconds is not None and elapsed >= self.due_seconds))
        overdue = ((self.overdue_bytes is not None and grown >= self.overdue_bytes)
                   or (self.overdue_seconds is not None and elapsed >= self.overdue_seconds))
        return due, overdue


@dataclass(slots=True)
class _Queued(Generic[W]):
    item: W
    done: asyncio.Future[None] = field(repr=False)


class SQLiteWriter(Generic[W, R]):
    """The writer of one SQLite store. `open`, then `submit` / `call`, then `close`.

    `write(connection, items)` runs on the writer thread inside the group's transaction;
    `committed(items, result)` and `failed(items, error)` run on the event loop right after
    it, before any waiter resumes (so that a store's counters never lag its file).
    `name` and `setting` make the errors' messages: "cannot write the spool /x/spool.db
    (...): the disk is full. Free space on bus.spool.path's file system".
    """

    def __init__(
        self,
        path: Path,
        *,
        name: str,
        setting: str,
        pragmas: Pragmas,
        pacing: CheckpointPacing,
        error: type[StoreError],
        write: Callable[[sqlite3.Connection, list[W]], R],
        committed: Callable[[list[W], R], None] | None = None,
        failed: Callable[[list[W], StoreError], None] | None = None,
        logger: logging.Logger | None = None,
        thread_name: str = "siemgate-sqlite-writer",
        measure_writes: bool = False,
    ) -> None:
        self.path = path
        self.name = name
        self.setting = setting
        self.pragmas = pragmas
        self.pacing = pacing
        self.error = error
        self._write = write
        self._committed = committed
        self._failed = failed
        self._log = logger or logging.getLogger("siemgate.bus.sqlite_writer")
        self._thread_name = thread_name
        self._measure_writes = measure_writes
        self._executor: ThreadPoolExecutor | None = None
        self._closing = False
        self._after_close: Callable[[], None] | None = None
        # Used on the writer thread only.
        self._connection: sqlite3.Connection | None = None
        # Kept on the event loop's thread.
        self._queue: list[_Queued[W]] = []
        self._writer: asyncio.Task[None] | None = None
        self._grown = 0
        self._checkpointed_at = 0.0
        self._watch: asyncio.Task[None] | None = None
        self.free_bytes: int | None = None  # of the file system holding the store, every STORAGE_SECONDS
        # The SQLite file and its WAL, measured at each checkpoint, every STORAGE_SECONDS, and
        # after each write transaction if `measure_writes`.
        self.file_bytes = 0
        self.failed_at: float | None = None  # loop time of the last failed write; None after a success
        self.wal_bytes = 0  # the WAL file's size after the last checkpoint
        self.commits = 0  # write transactions (group commit makes this smaller than the submits)
        self.checkpoints = 0

    # ------------------------------------------------------------------ state (event loop)

    @property
    def is_open(self) -> bool:
        return self._executor is not None and not self._closing

    @property
    def writing(self) -> bool:
        """An item is queued or being written (or the checkpoint after it runs)."""
        return self._writer is not None

    @property
    def queued(self) -> int:
        """Items waiting for the next transaction (not the one being written)."""
        return len(self._queue)

    @property
    def connection(self) -> sqlite3.Connection:
        """The writer's connection: use it on the writer thread only (in `call`)."""
        if self._connection is None:
            raise self.error(f"{self.name} {self.path} is closed")
        return self._connection

    # ------------------------------------------------------------------ lifecycle

    async def open(self, setup: Callable[[sqlite3.Connection], T], *,
                   before: Callable[[], None] | None = None, after_close: Callable[[], None] | None = None) -> T:
        """Connect, set the PRAGMAs, run `setup(connection)` on the writer thread, return what
        it returns. `before` runs on the thread before connecting (e.g. a lock), `after_close`
        after the connection is closed, also when opening fails. Raises the store's error."""
        if self._executor is not None:
            raise self.error(f"{self.name} {self.path} is already open")
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self._thread_name)
        self._executor = executor
        self._closing = False
        self._after_close = after_close

        def connect_and_setup() -> T:
            try:
                if before is not None:
                    before()
                self._connection = self._connect()
                return setup(self._connection)
            except BaseException as exc:
                self._close_connection()
                if isinstance(exc, (sqlite3.Error, OSError, ValueError)):
                    raise self.error(self.explain(exc, "open")) from exc
                raise

        try:
            result = await self.call(connect_and_setup)
        except BaseException:
            self._executor = None
            executor.shutdown(wait=False)
            raise
        self._checkpointed_at = asyncio.get_running_loop().time()
        with contextlib.suppress(OSError):  # measured again in a few seconds
            await self.measure_storage()
        self._watch = asyncio.create_task(self._watch_storage(), name=f"{self._thread_name}-storage")
        return result

    async def drain(self) -> None:
        """Refuse new items; return once every queued item is written (or failed)."""
        self._closing = True
        while self._writer is not None:
            await asyncio.wait({self._writer})

    async def close(self) -> None:
        """Drain, checkpoint the whole WAL into the file (TRUNCATE), close the connection."""
        executor = self._executor
        if executor is None:
            return
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)
        await self.drain()
        try:
            await asyncio.get_running_loop().run_in_executor(executor, self._truncate_and_close)
        finally:
            self._executor = None
            executor.shutdown(wait=False)

    # ------------------------------------------------------------------ group commit

    def submit(self, item: W) -> asyncio.Future[None]:
        """Queue `item` for the next transaction; the future resolves once it is committed
        (or fails with the store's error). Queues before returning: nothing can overtake it."""
        if not self.is_open:
            raise self.error(f"{self.name} {self.path} is closed")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append(_Queued(item, done))
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_queued(), name=f"{self._thread_name}-task")
        return done

    async def wait_writes(self) -> None:
        """Until the items queued now are written (or failed)."""
        writer = self._writer
        if writer is not None:
            await asyncio.wait({writer})

    async def _write_queued(self) -> None:
        group: list[_Queued[W]] = []
        try:
            while self._queue:
                group, self._queue = self._queue, []
                await self._commit(group)
                group = []
                await self.maybe_checkpoint()
        finally:
            self._writer = None
            # Only if something unexpected escaped: no waiter may wait forever.
            stranded, self._queue = group + self._queue, []
            if stranded:
                self._fail(stranded, self.error(f"the writer of {self.name} {self.path} stopped"))

    async def _commit(self, group: list[_Queued[W]]) -> None:
        items = [queued.item for queued in group]
        try:
            result, measured = await self.call(self._write_group, items)
        except StoreError as exc:
            self.failed_at = asyncio.get_running_loop().time()
            self._fail(group, exc)
            return
        self.failed_at = None
        self.commits += 1
        if measured is not None:
            self.file_bytes = measured
        if self._committed is not None:
            self._committed(items, result)
        for queued in group:
            if not queued.done.done():
                queued.done.set_result(None)

    def _write_group(self, items: list[W]) -> tuple[R, int | None]:
        with self.transaction("write") as connection:
            result = self._write(connection, items)
        # Two stats, a few µs beside the commit's fsync.
        return result, file_bytes(self.path) if self._measure_writes else None

    def _fail(self, group: list[_Queued[W]], exc: StoreError) -> None:
        if self._failed is not None:
            self._failed([queued.item for queued in group], exc)
        for queued in group:
            if not queued.done.done():
                # One exception object per waiter: raised in several tasks, one would collect
                # every task's traceback.
                own = self.error(str(exc))
                own.__cause__ = exc.__cause__
                queued.done.set_exception(own)

    # ------------------------------------------------------------------ checkpoints

    def grew(self, nbytes: int) -> None:
        """The WAL grew by about `nbytes` (for `CheckpointPacing.due_bytes`)."""
        self._grown += nbytes

    async def maybe_checkpoint(self) -> None:
        """A PASSIVE checkpoint if one is due and no write waits, or one is overdue."""
        now = asyncio.get_running_loop().time()
        due, overdue = self.pacing.state(self._grown, now - self._checkpointed_at)
        if not due or (self._queue and not overdue):
            return  # writes are waiting: they go first
        self._grown = 0
        self._checkpointed_at = now
        try:
            await self.checkpoint("PASSIVE")
        except StoreError as exc:
            self._log.warning(f"checkpoint failed: {exc}; retried after later writes", extra={"path": str(self.path)})
        else:
            self.checkpoints += 1

    async def checkpoint(self, mode: Literal["PASSIVE", "RESTART", "TRUNCATE"]) -> None:
        """A checkpoint now, on the writer thread; then `wal_bytes` and `file_bytes` are measured."""
        self.wal_bytes, self.file_bytes = await self.call(self._checkpoint, mode)

    def _checkpoint(self, mode: str) -> tuple[int, int]:
        try:
            self.connection.execute(f"PRAGMA wal_checkpoint({mode})").fetchall()
        except sqlite3.Error as exc:
            raise self.error(self.explain(exc, "checkpoint")) from exc
        wal = 0
        with contextlib.suppress(FileNotFoundError):
            wal = self.path.with_name(self.path.name + "-wal").stat().st_size
        return wal, file_bytes(self.path)

    # ------------------------------------------------------------------ storage

    async def measure_storage(self) -> None:
        """Measure the free space (on a thread of the default executor, not behind the writes)
        and the file's size (on the writer thread, between its transactions and checkpoints:
        measured beside one, the size could be read half-way through it, or read before it
        and stored after its own measure, leaving `file_bytes` short of the disk)."""
        stat = await asyncio.to_thread(os.statvfs, self.path.parent)
        self.free_bytes = stat.f_bavail * stat.f_frsize
        self.file_bytes = await self.call(file_bytes, self.path)

    async def _watch_storage(self) -> None:
        while True:
            await asyncio.sleep(STORAGE_SECONDS)
            try:
                await self.measure_storage()
            except OSError as exc:
                self._log.warning(f"cannot measure the free space of {self.setting}: {exc}",
                                  extra={"path": str(self.path)})

    # ------------------------------------------------------------------ the writer thread

    async def call(self, function: Callable[..., T], *args: object) -> T:
        """Run `function(*args)` on the writer thread (between write transactions)."""
        executor = self._executor
        if executor is None:
            raise self.error(f"{self.name} {self.path} is closed")
        return await asyncio.get_running_loop().run_in_executor(executor, function, *args)

    @contextlib.contextmanager
    def transaction(self, action: str, *, durable: bool = False) -> Iterator[sqlite3.Connection]:
        """`BEGIN IMMEDIATE` ... `COMMIT` on the writer thread; rolled back if the body raises.
        SQLite and OS errors become the store's error, saying what to do. `durable`: fsync'd
        even when the store's commits are not (`synchronous=NORMAL`)."""
        connection = self.connection
        switch = durable and self.pragmas.synchronous != "FULL"
        try:
            if switch:
                connection.execute("PRAGMA synchronous=FULL")
            try:
                connection.execute("BEGIN IMMEDIATE")
                try:
                    yield connection
                    connection.execute("COMMIT")
                except BaseException:
                    if connection.in_transaction:
                        with contextlib.suppress(sqlite3.Error):
                            connection.execute("ROLLBACK")
                    raise
            finally:
                if switch:
                    connection.execute(f"PRAGMA synchronous={self.pragmas.synchronous}")
        except (sqlite3.Error, OSError) as exc:
            raise self.error(self.explain(exc, action)) from exc

    def _connect(self) -> sqlite3.Connection:
        pragmas = self.pragmas
        # 0600 (SQLite gives its -wal and -shm files the database file's mode).
        private_file(self.path)
        connection = sqlite3.connect(self.path, isolation_level=None, timeout=pragmas.busy_timeout_ms / 1000)
        try:
            connection.execute(f"PRAGMA busy_timeout={pragmas.busy_timeout_ms}")
            # page_size first: after auto_vacuum, SQLite keeps its default page size (4 KiB) for
            # a new file (measured: `PRAGMA auto_vacuum` then `PRAGMA page_size=1024` -> 4096).
            connection.execute(f"PRAGMA page_size={pragmas.page_size}")
            if pragmas.incremental_vacuum:
                connection.execute("PRAGMA auto_vacuum=INCREMENTAL")
            (mode,) = connection.execute("PRAGMA journal_mode=WAL").fetchone()
            if str(mode).lower() != "wal":
                raise self.error(f"{self.path}: SQLite refused WAL mode (journal_mode {mode}); "
                                 f"put {self.setting} on a local file system")
            connection.execute(f"PRAGMA synchronous={pragmas.synchronous}")
            connection.execute("PRAGMA wal_autocheckpoint=0")  # checkpoints are paced by the writer
            connection.execute(f"PRAGMA journal_size_limit={pragmas.journal_size_limit}")
        except BaseException:
            connection.close()
            raise
        return connection

    def _truncate_and_close(self) -> None:
        try:
            if self._connection is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            self._close_connection()

    def _close_connection(self) -> None:
        connection, self._connection = self._connection, None
        try:
            if connection is not None:
                with contextlib.suppress(sqlite3.Error):
                    connection.close()
        finally:
            after, self._after_close = self._after_close, None
            if after is not None:
                after()

    # ------------------------------------------------------------------ errors

    def explain(self, exc: BaseException, action: str) -> str:
        """The error, and what the operator should do about it."""
        name = getattr(exc, "sqlite_errorname", "")
        code = exc.errno if isinstance(exc, OSError) else None
        where = f"cannot {action} {self.name} {self.path} ({exc})"
        if name == "SQLITE_FULL" or code in (errno.ENOSPC, errno.EDQUOT):
            return f"{where}: the disk is full. Free space on {self.setting}'s file system"
        if name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_AUTH")) or code in (
                errno.EACCES, errno.EPERM, errno.EROFS):
            return f"{where}: fix the permissions of {self.setting} ({self.path.parent})"
        if name.startswith(("SQLITE_NOTADB", "SQLITE_CORRUPT")) or isinstance(exc, ValueError):  # undecodable
            return (f"{where}: the file is damaged. It may hold acknowledged events: stop siemgate, move the "
                    f"file aside (keep it), start again, and recover its rows with `sqlite3 FILE .recover`")
        if name.startswith("SQLITE_IOERR") or code == errno.EIO:
            return f"{where}: the disk reported an I/O error. Check the volume behind {self.setting}"
        return f"{where}. Check {self.setting}: its directory must be writable and on a local disk"


def file_bytes(path: Path) -> int:
    """Bytes of a SQLite file and its WAL (0 for what does not exist)."""
    size = 0
    for suffix in ("", "-wal"):
        with contextlib.suppress(OSError):
            size += os.stat(path.with_name(path.name + suffix)).st_size
    return size
