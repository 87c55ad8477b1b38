"""The ingest's local spool: where a batch goes when Kafka does not take it in time.

One SQLite file, `<bus.spool.path>/spool.db`, in WAL mode with `synchronous=FULL`: an
append returns only once its records are fsync'd, so the 200 that follows is a promise that
survives a crash. One row per record, in arrival order (the rowid: rows are only ever deleted
from the oldest end, so a new row's id is larger than every row still there); the drainer
(`siemgate.bus.spooling`) reads the oldest rows, puts them on Kafka and deletes only the
rows Kafka acknowledged. Pages of 16 KiB: a 500-event batch commits ~20% faster than with 4 KiB.

The writer is the SQLite writer engine it shares with the embedded log
(`siemgate.bus.sqlite_writer`): every SQLite call runs on one dedicated thread, never on the
event loop; appends that arrive while a transaction is being written wait in a queue and are
written together in the next transaction, one fsync for all of them (group commit).

Checkpoints: SQLite's automatic checkpoint runs inside the commit that crosses its
threshold (500-row transactions: 1.5 ms median, p99 ~17 ms, the spikes being checkpoints).
It is off here; the writer runs a PASSIVE checkpoint between transactions once the WAL has
grown past `checkpoint_bytes` and no append is waiting (or, past eight times that, even
while appends wait, so that the WAL stays bounded): paced by bytes, since every byte
spooled goes through the WAL. The direct path to Kafka never touches the spool, so this
matters only while spooling.

Size: `max_bytes` bounds the logical bytes held (key + value + header names and values of
every record); the count is read from the file at open and kept up to date in memory.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, cast

import msgspec

from siemgate.bus.sqlite_writer import CheckpointPacing, Pragmas, SQLiteWriter, StorageStats
from siemgate.errors import SpoolError, SpoolFull, StoreError
from siemgate.private_files import open_private, private_dir
from siemgate.record import Kind, Record, Severity

log = logging.getLogger("siemgate.bus.spool")

FILE_NAME: Final = "spool.db"
LOCK_NAME: Final = "spool.lock"
FORMAT_VERSION: Final = 1
# Estimated WAL growth after which the writer checkpoints, between transactions. Small and
# frequent: a PASSIVE checkpoint of ~1 MiB takes a few ms, and SQLite releases the GIL while
# it runs, so it overlaps the event loop reading and parsing the next batch. Measured with
# bench/ingest.py (spool mode, 500-event batches, a busy 2-core machine), p99 over the Kafka
# mode's for 1 / 8 senders: 1 MiB 1.1-1.2x / 1.5-1.6x; 2 MiB 1.4x / 1.7x; 4 MiB 1.6x / 1.7x;
# 16 MiB up to 4.7x with 8 senders.
CHECKPOINT_BYTES: Final = 1024 * 1024
PAGE_SIZE: Final = 16 * 1024
# After a checkpoint, SQLite truncates the WAL file to this size.
JOURNAL_SIZE_LIMIT: Final = 16 * 1024 * 1024
# The spool file is the only copy of a spooled event: every commit is fsync'd before the 200.
PRAGMAS: Final = Pragmas(page_size=PAGE_SIZE, synchronous="FULL", journal_size_limit=JOURNAL_SIZE_LIMIT)
# What a row costs in the WAL beyond its logical bytes (page headers, index entries), roughly.
ROW_OVERHEAD: Final = 64
# After a failed write the spool is reported as not accepting writes for this long.
WRITE_FAILURE_SECONDS: Final = 5.0

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS records (
    id INTEGER PRIMARY KEY,
    topic TEXT NOT NULL,
    key BLOB NOT NULL,
    value BLOB NOT NULL,
    headers BLOB NOT NULL,
    severity TEXT NOT NULL,
    kind TEXT NOT NULL,
    size INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS set_aside (
    id INTEGER PRIMARY KEY,
    spooled_id INTEGER NOT NULL,
    topic TEXT NOT NULL,
    key BLOB NOT NULL,
    value BLOB NOT NULL,
    headers BLOB NOT NULL,
    severity TEXT NOT NULL,
    kind TEXT NOT NULL,
    size INTEGER NOT NULL,
    reason TEXT NOT NULL,
    set_aside_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
"""
_INSERT: Final = "INSERT INTO records (topic, key, value, headers, severity, kind, size) VALUES (?, ?, ?, ?, ?, ?, ?)"
_SELECT: Final = "SELECT id, topic, key, value, headers, severity, kind, size FROM records ORDER BY id LIMIT ?"
_SET_ASIDE: Final = (
    "INSERT INTO set_aside (spooled_id, topic, key, value, headers, severity, kind, size, reason) "
    "SELECT id, topic, key, value, headers, severity, kind, size, ? FROM records WHERE id = ?"
)

Headers = list[tuple[str, bytes]]
# A record read back from the spool, with its row id (what `delete_through` takes).
Spooled = tuple[int, Record]

_headers_decoder = msgspec.msgpack.Decoder(list[tuple[str, bytes]])
_headers_encoder = msgspec.msgpack.Encoder()


@dataclass(frozen=True)
class SpoolStats:
    """What the spool holds and what went through it (the ingest's `siemgate_spool_*` metrics)."""

    events: int = 0
    bytes: int = 0
    # True while batches are written to the spool instead of Kafka.
    active: bool = False
    batches_spooled: int = 0
    # Batches the spool could not take: full, or a write error (disk full, I/O error).
    refused_full: int = 0
    refused_error: int = 0
    drained_events: int = 0
    # Records Kafka refused as too large while draining: kept in the `set_aside` table.
    set_aside_events: int = 0


def record_sizes(records: Sequence[Record]) -> list[int]:
    """The logical size of each record: key, value, header names and values."""
    headers_sizes: dict[int, int] = {}  # a batch's records of one kind and severity share their headers
    sizes = []
    for record in records:
        headers_size = headers_sizes.get(id(record.headers))
        if headers_size is None:
            headers_size = headers_sizes[id(record.headers)] = sum(len(n) + len(v) for n, v in record.headers)
        sizes.append(len(record.key) + len(record.value) + headers_size)
    return sizes


@dataclass(slots=True)
class _Append:
    records: Sequence[Record]
    sizes: list[int]
    size: int


class Spool:
    """The spool file. `open`, then `append` / `read` / `delete_through`, then `close`."""

    def __init__(self, directory: str | os.PathLike[str], max_bytes: int, *,
                 checkpoint_bytes: int = CHECKPOINT_BYTES) -> None:
        self.directory = Path(directory)
        self.path = self.directory / FILE_NAME
        self.max_bytes = max_bytes
        self.checkpoint_bytes = checkpoint_bytes
        self.engine: SQLiteWriter[_Append, None] = SQLiteWriter(
            self.path, name="the spool", setting="bus.spool.path", pragmas=PRAGMAS,
            pacing=CheckpointPacing(due_bytes=checkpoint_bytes, overdue_bytes=8 * checkpoint_bytes),
            error=SpoolError, write=self._insert, committed=self._committed, failed=self._failed,
            logger=log, thread_name="siemgate-spool",
        )
        # Used on the engine's thread only.
        self._lock_fd: int | None = None
        # Kept on the event loop's thread.
        self._events = 0
        self._bytes = 0
        self._reserved = 0  # bytes of appends queued or being written
        self._full = False  # an append was refused for size since the last delete

    # ------------------------------------------------------------------ state (event loop)

    @property
    def events(self) -> int:
        return self._events

    @property
    def bytes(self) -> int:
        return self._bytes

    @property
    def is_open(self) -> bool:
        return self.engine.is_open

    @property
    def writing(self) -> bool:
        """An append is queued or being written."""
        return self.engine.writing

    @property
    def commits(self) -> int:
        """Append transactions (group commit makes this smaller than the appends)."""
        return self.engine.commits

    @property
    def checkpoints(self) -> int:
        return self.engine.checkpoints

    def storage_stats(self) -> StorageStats:
        """Logical bytes held against `max_bytes`, and the free space of its file system."""
        return StorageStats(store="spool", bytes=self._bytes, limit_bytes=self.max_bytes,
                            free_bytes=self.engine.free_bytes)

    @property
    def accepts_writes(self) -> bool:
        """Open, not full, and no write failed in the last few seconds."""
        if not self.is_open or self._full or self._bytes >= self.max_bytes:
            return False
        failed = self.engine.failed_at
        return failed is None or asyncio.get_running_loop().time() - failed > WRITE_FAILURE_SECONDS

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        """Open (or create) the spool file. Raises SpoolError, saying what to fix."""
        if self.engine.is_open:
            return
        self._events, self._bytes = await self.engine.open(self._setup, before=self._lock, after_close=self._unlock)
        log.info("spool open", extra={"path": str(self.path), "events": self._events, "bytes": self._bytes,
                                      "max_bytes": self.max_bytes})

    async def close(self) -> None:
        """Finish the appends under way, checkpoint, close the file."""
        await self.engine.close()

    # ------------------------------------------------------------------ appends (group commit)

    async def append(self, records: Sequence[Record]) -> None:
        """Return once every record is fsync'd. Raises SpoolFull or SpoolError.

        Everything up to the queueing happens before the first `await`: a caller that saw the
        spool in use and calls `append` cannot be overtaken by a check of `writing`."""
        if not self.is_open:
            raise SpoolError(f"the spool {self.path} is closed")
        sizes = record_sizes(records)
        size = sum(sizes)
        if self._bytes + self._reserved + size > self.max_bytes:
            raise self._refuse_full(size)
        done = self.engine.submit(_Append(records, sizes, size))
        self._reserved += size
        await done

    def _refuse_full(self, size: int) -> SpoolFull:
        if size > self.max_bytes:
            return SpoolFull(f"a batch of {size} bytes is larger than the whole spool "
                             f"(bus.spool.max_bytes {self.max_bytes})")
        self._full = True
        return SpoolFull(f"the spool is full ({self._bytes + self._reserved} of bus.spool.max_bytes "
                         f"{self.max_bytes} bytes in use): it empties as Kafka takes its records back")

    def _committed(self, appends: list[_Append], _: None) -> None:
        size = sum(append.size for append in appends)
        count = sum(len(append.records) for append in appends)
        self._reserved -= size
        self._events += count
        self._bytes += size
        self.engine.grew(size + ROW_OVERHEAD * count)

    def _failed(self, appends: list[_Append], _: StoreError) -> None:
        self._reserved -= sum(append.size for append in appends)

    # ------------------------------------------------------------------ draining

    async def read(self, max_records: int, max_bytes: int) -> list[Spooled]:
        """The oldest records, in arrival order: at most `max_records`, and no more than
        `max_bytes` unless the first record alone is larger."""
        if not self.is_open:
            raise SpoolError(f"the spool {self.path} is closed")
        return await self.engine.call(self._select, max_records, max_bytes)

    async def delete_through(self, last_id: int) -> None:
        """Delete every record up to row `last_id` (Kafka acknowledged them)."""
        if not self.is_open:
            raise SpoolError(f"the spool {self.path} is closed")
        count, size = await self.engine.call(self._delete, last_id)
        self._forget(count, size)
        await self.engine.maybe_checkpoint()

    async def set_aside(self, row_id: int, reason: str) -> None:
        """Move one record Kafka refuses for good to the `set_aside` table (kept, not lost)."""
        if not self.is_open:
            raise SpoolError(f"the spool {self.path} is closed")
        count, size = await self.engine.call(self._move_aside, row_id, reason)
        self._forget(count, size)

    def _forget(self, count: int, size: int) -> None:
        self._events -= count
        self._bytes -= size
        self.engine.grew(ROW_OVERHEAD * count)
        if count:
            self._full = False

    async def wait_writes(self) -> None:
        """Until the appends queued now are written (or failed)."""
        await self.engine.wait_writes()

    # ------------------------------------------------------------------ the engine's thread

    def _lock(self) -> None:
        """One process per spool: two ingests sharing a file would count its size wrong."""
        try:
            private_dir(self.directory)
            fd = open_private(self.directory / LOCK_NAME, os.O_RDWR | os.O_CREAT)
        except OSError as exc:
            raise SpoolError(
                f"cannot use the spool directory {self.directory}: {exc.strerror or exc}. "
                "Fix bus.spool.path (a directory siemgate can write) or its permissions"
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            raise SpoolError(
                f"the spool {self.directory} is in use by another siemgate process: give each ingest "
                "replica its own bus.spool.path"
            ) from exc
        self._lock_fd = fd

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    def _setup(self, db: sqlite3.Connection) -> tuple[int, int]:
        (version,) = db.execute("PRAGMA user_version").fetchone()
        if version > FORMAT_VERSION:
            raise SpoolError(f"{self.path} was written by a newer siemgate (format {version}); "
                             "run that version until the spool is drained")
        db.executescript(_SCHEMA)
        db.execute(f"PRAGMA user_version={FORMAT_VERSION}")
        count, size = db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM records").fetchone()
        return int(count), int(size)

    def _insert(self, db: sqlite3.Connection, appends: list[_Append]) -> None:
        """In the engine's transaction: one group of appends."""
        encoded: dict[int, bytes] = {}
        rows = []
        for append in appends:
            for record, size in zip(append.records, append.sizes, strict=True):
                headers = encoded.get(id(record.headers))
                if headers is None:
                    headers = encoded[id(record.headers)] = _headers_encoder.encode(record.headers)
                rows.append((record.topic, record.key, record.value, headers, record.severity, record.kind, size))
        db.executemany(_INSERT, rows)

    def _select(self, max_records: int, max_bytes: int) -> list[Spooled]:
        db = self.engine.connection
        decoded: dict[bytes, Headers] = {}
        out: list[Spooled] = []
        total = 0
        try:
            for row_id, topic, key, value, blob, severity, kind, size in db.execute(_SELECT, (max_records,)):
                if out and total + size > max_bytes:
                    break
                headers = decoded.get(blob)
                if headers is None:
                    headers = decoded[blob] = _headers_decoder.decode(blob)
                record = Record(topic, key, value, headers, cast(Severity, severity), cast(Kind, kind))
                out.append((row_id, record))
                total += size
        except (sqlite3.Error, msgspec.DecodeError) as exc:
            raise SpoolError(self.engine.explain(exc, "read")) from exc
        return out

    def _delete(self, last_id: int) -> tuple[int, int]:
        with self.engine.transaction("delete from") as db:
            count, size = db.execute(
                "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM records WHERE id <= ?", (last_id,)
            ).fetchone()
            db.execute("DELETE FROM records WHERE id <= ?", (last_id,))
        return int(count), int(size)

    def _move_aside(self, row_id: int, reason: str) -> tuple[int, int]:
        with self.engine.transaction("write") as db:
            row = db.execute("SELECT size FROM records WHERE id = ?", (row_id,)).fetchone()
            if row is None:
                return 0, 0
            db.execute(_SET_ASIDE, (reason, row_id))
            db.execute("DELETE FROM records WHERE id = ?", (row_id,))
        return 1, int(row[0])
