"""The embedded bus: the record contract on one machine's disk, for `siemgate run`.

The log keeps Kafka's shape, so that the forwarders run unchanged: topics (the same names as
on Kafka), each one partition with contiguous offsets; one cursor per consumer group and
topic (a sink's committed offset); records deleted once every sink's group has passed them.

Two parts, as in Kafka's own log: the records' bytes in append-only segment files
(`siemgate.bus.segments`, `<bus.path>-segments/`), and an index in the SQLite file at
`bus.path` (which offsets are where, each topic's next offset, the cursors).

Durability: an append writes its records to the current segment and fsyncs it, then
commits their index entries (WAL, not fsync'd on their own: the segment is the record of
truth, and opening the log indexes any fsync'd frame the index lost to a power cut).
`append` returns after the fsync. Every write goes through the SQLite writer engine the
log shares with the ingest's spool (`siemgate.bus.sqlite_writer`): one writer thread;
appends that arrive while one is being written share the next one (group commit: one fsync
for several batches). Reads run on threads of their own. Retention deletes passed index entries and
then every segment file left without one.

Size: with `max_bytes` (`bus.max_bytes`), an append that would take the log's bytes on disk
(segments, index and its WAL) past it is refused with `LogFull`, a `BusUnavailable`: the
ingest answers 503 and logs DATA LOSS RISK, only while the log is full; retention frees space
as the sinks pass their records. Segment bytes are counted exactly as they are written and
removed; the index's file and WAL are measured after each append and checkpoint.

Several processes may open the same log (e.g. `siemgate dlq` while `siemgate run` works):
SQLite's write lock serializes their appends, and next offsets and segment ends are kept in
the index, not in memory. A consumer learns of records appended by this process at once, of
other processes' at its next poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import struct
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple, TypeVar

import orjson

from siemgate.bus import segments
from siemgate.bus.base import Consumer, Partition, Publisher, RebalanceListener
from siemgate.bus.sqlite_writer import CheckpointPacing, Pragmas, SQLiteWriter, StorageStats
from siemgate.errors import BusError, BusUnavailable, CommitRefused, LogFull, LogUnavailable, StoreError
from siemgate.private_files import private_file
from siemgate.record import Record, all_topics

log = logging.getLogger("siemgate.bus.embedded")

T = TypeVar("T")

# The index. A chunk is one frame: an append's records of one topic, back to back (`_pack`).
# Segments belong to a stream: siemgate's event and control topics share "events" (deleted
# by retention), other topics (dead letters, kept) go to "kept", so that they never hold an
# events segment on disk. AUTOINCREMENT: a segment number is never used twice.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS chunks (
    topic TEXT NOT NULL,
    first_pos INTEGER NOT NULL,
    last_pos INTEGER NOT NULL,
    segment INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    length INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS chunks_topic_last ON chunks (topic, last_pos);
CREATE INDEX IF NOT EXISTS chunks_segment ON chunks (segment);
CREATE TABLE IF NOT EXISTS segments (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, stream TEXT NOT NULL, size INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS topics (name TEXT PRIMARY KEY, next_pos INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cursors (
    grp TEXT NOT NULL, topic TEXT NOT NULL, pos INTEGER NOT NULL, PRIMARY KEY (grp, topic)
) WITHOUT ROWID;
"""
_INSERT_CHUNK = "INSERT INTO chunks (topic, first_pos, last_pos, segment, offset, length) VALUES (?, ?, ?, ?, ?, ?)"
_SET_END = ("INSERT INTO topics (name, next_pos) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET next_pos = excluded.next_pos")
# PRAGMA user_version of the index: 2 = records in segment files. Files of version 1 (the
# records in the index's chunks table) are moved to segments when first opened.
_FORMAT = 2
_EVENTS, _KEPT = "events", "kept"
# Index entries retention deletes per transaction.
_RETENTION_CHUNKS = 1000
_FRAME = struct.Struct("<III")  # key length, value length, headers length
# Index pages handed back to the file system per transaction, only while no append came for
# _IDLE_SECONDS (under load, freed pages are reused by the next appends instead).
_VACUUM_PAGES = 500
_IDLE_SECONDS = 2.0
_MAINTENANCE_SECONDS = 1.0
# The index is checkpointed at most this often, on the writer thread when no append waits:
# its WAL holds only index entries (a few pages per append), so each is short, and no
# append's fsync runs beside it.
_CHECKPOINT_SECONDS = 0.2
# ... and at the latest this often, between appends that never stop.
_CHECKPOINT_LATEST_SECONDS = 2.0
# SQLite's default. 1 KiB was meant (index rows are ~50 bytes; each append rewrites a few
# pages in the WAL, which checkpoints then copy), but the PRAGMA came after auto_vacuum and
# never applied: every figure in docs/PERFORMANCE.md was measured with 4 KiB pages. The engine
# now applies the page size; 1 KiB stays to be measured on a quiet machine before it is used.
_PAGE_BYTES = 4096
# The WAL restarts from its beginning after a checkpoint that copied all of it; one that
# reads kept from finishing leaves it growing. Past this size, this process's reads are held
# while a RESTART checkpoint on the writer resets it.
_WAL_RESET_BYTES = 16 * 1024 * 1024
_BUSY_TIMEOUT_MS = 30_000
# The index's own commits are not fsync'd (synchronous=NORMAL): the segment files are, and
# are the record of truth (opening the log re-indexes fsync'd frames the index lost).
# Opening and retention's segment removals are (`transaction(durable=True)`). Incremental
# vacuum lets retention give pages back. Several processes may write (`siemgate dlq`): a long
# busy timeout.
_PRAGMAS = Pragmas(page_size=_PAGE_BYTES, synchronous="NORMAL", journal_size_limit=_WAL_RESET_BYTES,
                   busy_timeout_ms=_BUSY_TIMEOUT_MS, incremental_vacuum=True)
# Paced by time, not by bytes (unlike the spool's): the index's WAL grows by a few pages per
# append whatever the batch's size (docs/PERFORMANCE.md, "Cheaper index upkeep").
_PACING = CheckpointPacing(due_seconds=_CHECKPOINT_SECONDS, overdue_seconds=_CHECKPOINT_LATEST_SECONDS)


# At most what one append transaction adds to the index's WAL (measured after each commit):
# the pages it rewrites (the chunks table and its two indexes, the segments and topics
# tables, pointer-map pages), each a WAL frame (page + 24-byte header).
_INDEX_BYTES_PER_COMMIT = 8 * (_PAGE_BYTES + 24)
# What a record costs in a segment beyond its key, value and header names and values: its
# frame's lengths, the headers' JSON punctuation, the frame header (shared by a batch).
_RECORD_OVERHEAD = 48


class _Append(NamedTuple):
    records: Sequence[Record]
    size: int  # estimated bytes in a segment (reserved against max_bytes until committed)


def _estimate(records: Sequence[Record]) -> int:
    """About the bytes `records` add to the log: their values, the first record's key and
    headers for each, and one transaction's index pages (on the event loop, for every append:
    it must stay cheap; the bytes really written are counted at the commit)."""
    if not records:
        return 0
    first = records[0]
    per_record = len(first.key) + sum(len(n) + len(v) for n, v in first.headers) + _RECORD_OVERHEAD
    return sum(len(record.value) for record in records) + per_record * len(records) + _INDEX_BYTES_PER_COMMIT


def disk_usage(path: Path) -> int:
    """Bytes on disk of the embedded log at `path`: its segments and its index (with the WAL)."""
    size = 0
    for suffix in ("", "-wal"):
        with contextlib.suppress(OSError):
            size += path.with_name(path.name + suffix).stat().st_size
    with contextlib.suppress(OSError):
        for entry in os.scandir(segments.directory_for(path)):
            with contextlib.suppress(OSError):
                size += entry.stat().st_size
    return size


class EmbeddedMessage(NamedTuple):
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]  # shared by the records of a chunk with the same headers


def _pack(records: Sequence[Record], encoded: dict[int, bytes]) -> bytes:
    """Records back to back: a frame of three lengths, then key, value and headers."""
    parts: list[bytes] = []
    frame = _FRAME.pack
    for record in records:
        headers = encoded.get(id(record.headers))
        if headers is None:
            headers = encoded[id(record.headers)] = _encode_headers(record.headers)
        key = record.key
        parts += (frame(len(key), len(record.value), len(headers)), key, record.value, headers)
    return b"".join(parts)


def _unpack(topic: str, first_pos: int, data: bytes, start: int, limit: int) -> list[EmbeddedMessage]:
    """The records of a chunk from offset `start` on, at most `limit` of them."""
    out: list[EmbeddedMessage] = []
    unpack = _FRAME.unpack_from
    size = _FRAME.size
    offset, pos, end = 0, first_pos, len(data)
    decoded: dict[bytes, tuple[tuple[str, bytes], ...]] = {}
    while offset < end and len(out) < limit:
        key_length, value_length, headers_length = unpack(data, offset)
        offset += size
        key_end = offset + key_length
        value_end = key_end + value_length
        headers_end = value_end + headers_length
        if pos >= start:
            raw_headers = data[value_end:headers_end]
            headers = decoded.get(raw_headers)
            if headers is None:
                headers = decoded[raw_headers] = _decode_headers(raw_headers)
            out.append(EmbeddedMessage(topic, 0, pos, data[offset:key_end], data[key_end:value_end], headers))
        offset = headers_end
        pos += 1
    return out


def _encode_headers(headers: Sequence[tuple[str, bytes]]) -> bytes:
    # latin-1 maps every byte to one code point: any header value survives the round trip.
    return orjson.dumps([[k, v.decode("latin-1")] for k, v in headers])


def _decode_headers(raw: bytes) -> tuple[tuple[str, bytes], ...]:
    return tuple((k, v.encode("latin-1")) for k, v in orjson.loads(raw))


def _connect(path: Path, *, check_same_thread: bool = True) -> sqlite3.Connection:
    private_file(path)  # a reader may be first to open a new log: 0600 either way
    connection = sqlite3.connect(path, isolation_level=None, timeout=_BUSY_TIMEOUT_MS / 1000,
                                 check_same_thread=check_same_thread)
    connection.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
    return connection


class EmbeddedLog:
    """One SQLite file holding the topics, shared by the ingest and every forwarder.

    `retention_groups`: the consumer groups that must have passed a record of siemgate's
    event and control topics before it is deleted (the configured sinks' groups). Other
    topics (dead letters) are kept. `max_bytes`: the cap on the log's bytes on disk (None:
    none); the segments are then at most an eighth of it, so that retention frees space
    before the whole log has been forwarded.
    """

    def __init__(self, path: str | Path, *, prefix: str, retention_groups: Sequence[str] = (),
                 max_bytes: int | None = None) -> None:
        self.path = Path(path)
        self.segment_dir = segments.directory_for(self.path)
        self.prefix = prefix
        self.retention_groups = tuple(retention_groups)
        self.max_bytes = max_bytes
        self._segment_limit = segments.SEGMENT_BYTES if max_bytes is None else min(
            segments.SEGMENT_BYTES, max_bytes // 8)
        self._retained_topics = tuple(all_topics(prefix))
        self._users = 0
        # Segment bytes: at open, plus what this process appended (event loop), minus what
        # its retention removed (written on the writer thread only).
        self._segment_bytes_at_open = 0
        self._appended_bytes = 0
        self._removed_bytes = 0
        self._reserved = 0  # estimated bytes of appends queued or being written
        self.refused_full = 0
        self._engine: SQLiteWriter[_Append, tuple[dict[str, int], int]] = SQLiteWriter(
            self.path, name="the embedded bus at", setting="bus.path", pragmas=_PRAGMAS, pacing=_PACING,
            error=LogUnavailable, write=self._insert, committed=self._written, failed=self._failed, logger=log,
            thread_name="siemgate-log-writer", measure_writes=True,
        )
        self._readers: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._segments: segments.SegmentWriter | None = None
        self._reader_lock = threading.Lock()
        self._reader_connections: list[sqlite3.Connection] = []
        self._maintenance_task: asyncio.Task[None] | None = None
        self._appended = asyncio.Event()
        self._committed = False
        self._last_append = 0.0
        self._reading = 0
        self._reads_done = asyncio.Event()
        self._reads_held: asyncio.Event | None = None
        self.ends: dict[str, int] = {}

    # lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        """Open (or create) the file. Users share one log: each `open` needs its `close`."""
        self._users += 1
        if self._users > 1:
            return
        self._readers = ThreadPoolExecutor(2, thread_name_prefix="siemgate-log-reader")
        try:
            self.ends, self._segment_bytes_at_open = await self._engine.open(
                self._setup, after_close=self._close_segments)
            self._appended_bytes = self._removed_bytes = self._reserved = 0
        except BaseException:
            self._users = 0
            self._close_readers()
            raise
        self._maintenance_task = asyncio.create_task(self._maintain(), name="embedded-log-maintenance")
        log.info("embedded bus open", extra={"path": str(self.path), "topics": len(self.ends)})

    async def close(self) -> None:
        self._users -= 1
        if self._users > 0:
            return
        self._users = 0
        task, self._maintenance_task = self._maintenance_task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        # Appends already queued are written (and acknowledged); new ones are refused.
        await self._engine.drain()
        # Reads still running (a cancelled checkpoint's too) finish, and their connections
        # close: the last checkpoint must find no other connection on the file.
        await asyncio.to_thread(self._close_readers)
        with contextlib.suppress(sqlite3.Error, BusUnavailable):
            if self._committed and self.retention_groups:
                await self.apply_retention()  # what the last commits released, before the checkpoint
        await self._engine.close()

    @property
    def is_open(self) -> bool:
        return self._users > 0 and self._engine.is_open

    @property
    def disk_bytes(self) -> int:
        """The log's bytes on disk: its segments (counted as written and removed), its index and
        WAL (measured after each append and checkpoint, and every few seconds)."""
        segment_bytes = self._segment_bytes_at_open + self._appended_bytes - self._removed_bytes
        return segment_bytes + self._engine.file_bytes

    async def measure_storage(self) -> None:
        """Measure the index's file and WAL and the free space now (else every few seconds)."""
        await self._engine.measure_storage()

    def storage_stats(self) -> StorageStats:
        return StorageStats(store="log", bytes=self.disk_bytes, limit_bytes=self.max_bytes or 0,
                            free_bytes=self._engine.free_bytes, refused_full=self.refused_full)

    def _close_readers(self) -> None:
        readers, self._readers = self._readers, None
        if readers is not None:
            readers.shutdown(wait=True)
        with self._reader_lock:
            connections, self._reader_connections = self._reader_connections, []
        for connection in connections:
            connection.close()

    # threads ---------------------------------------------------------------------------

    async def _write_call(self, fn: Callable[[], T]) -> T:
        return await self._engine.call(fn)

    async def _read_call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        while self._reads_held is not None:
            await self._reads_held.wait()
        if self._readers is None:
            raise BusUnavailable("the embedded bus is not open")
        self._reading += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._readers, self._with_reader, fn)
        finally:
            self._reading -= 1
            if not self._reading:
                self._reads_done.set()

    def _with_reader(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        connection: sqlite3.Connection | None = getattr(self._local, "reader", None)
        if connection is None:
            # Used by this thread only; closed by `close` once the thread is done.
            connection = self._local.reader = _connect(self.path, check_same_thread=False)
            with self._reader_lock:
                self._reader_connections.append(connection)
        return fn(connection)

    def _setup(self, connection: sqlite3.Connection) -> tuple[dict[str, int], int]:
        """On the writer thread, once connected: the schema, a migration, the recovery."""
        self._segments = segments.SegmentWriter(self.segment_dir)
        # Opening (a migration, a recovery) is fsync'd; the index's own commits are not.
        # Another process may be opening the log too: the transaction serializes them.
        with self._engine.transaction("open", durable=True):
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            if "data" in _columns(connection, "chunks"):
                self._migrate_records_to_segments(connection)
            elif version > _FORMAT:
                raise LogUnavailable(
                    f"the embedded bus at {self.path} was written by a newer siemgate (format {version}); "
                    "run that version, or point bus.path at a new file"
                )
            else:
                _create_schema(connection)
            connection.execute(f"PRAGMA user_version={_FORMAT}")
            self._recover(connection)
        ends = dict(connection.execute("SELECT name, next_pos FROM topics").fetchall())
        return ends, int(connection.execute("SELECT coalesce(sum(size), 0) FROM segments").fetchone()[0])

    def _close_segments(self) -> None:
        if self._segments is not None:
            self._segments.close()
            self._segments = None

    def _stream(self, topic: str) -> str:
        return _EVENTS if topic in self._retained_topics else _KEPT

    def _recover(self, connection: sqlite3.Connection) -> None:
        """Make the index and the segment files agree again (in the open's transaction).

        After a power cut the index may have lost its last commits (not fsync'd) while the
        frames they described were fsync'd: those frames are indexed again. Bytes past the last
        whole frame were never acknowledged and are cut off. Segment files the index does not
        know were being created (kept, indexed) or being removed by retention (removed).
        """
        assert self._segments is not None
        known = dict(connection.execute("SELECT seq, size FROM segments").fetchall())
        newest = max(known, default=0)
        on_disk = set()
        if self.segment_dir.is_dir():
            for entry in self.segment_dir.iterdir():
                if entry.suffix == segments.SUFFIX and entry.stem.isdigit():
                    on_disk.add(int(entry.stem))
        for seq in sorted(on_disk - set(known)):
            if seq < newest:
                self._segments.remove([seq])  # retention had committed its removal
            else:
                first = next(segments.scan(self.segment_dir / segments.file_name(seq), 0), None)
                stream = self._stream(first.topic) if first is not None else _EVENTS
                connection.execute("INSERT INTO segments (seq, stream, size) VALUES (?, ?, 0)", (seq, stream))
                known[seq] = 0
        missing = sorted(set(known) - on_disk)
        if missing:
            lost = connection.execute(
                f"SELECT count(*) FROM chunks WHERE segment IN ({','.join('?' * len(missing))})",  # noqa: S608
                missing,
            ).fetchone()[0]
            if lost:
                log.error("embedded bus: segment files are missing; their records are lost",
                          extra={"path": str(self.segment_dir), "segments": missing, "chunks": lost})
            connection.executemany("DELETE FROM chunks WHERE segment = ?", [(seq,) for seq in missing])
            connection.executemany("DELETE FROM segments WHERE seq = ?", [(seq,) for seq in missing])
        ends = dict(connection.execute("SELECT name, next_pos FROM topics").fetchall())
        for seq, size in sorted(known.items()):
            if seq in missing:
                continue
            path = self.segment_dir / segments.file_name(seq)
            if path.stat().st_size <= size:
                continue
            end = size
            for frame in segments.scan(path, size):
                if frame.first_pos != ends.get(frame.topic, 0):
                    break  # not the continuation of its topic: not an acknowledged append
                last = frame.first_pos + frame.records - 1
                connection.execute(_INSERT_CHUNK, (frame.topic, frame.first_pos, last, seq, frame.offset, frame.length))
                ends[frame.topic] = last + 1
                end = frame.offset + frame.length
            if end > size:
                log.warning("embedded bus: re-indexed records the index had lost (power cut?)",
                            extra={"segment": seq, "bytes": end - size})
            connection.execute("UPDATE segments SET size = ? WHERE seq = ?", (end, seq))
            self._segments.truncate(seq, end)
        connection.executemany(_SET_END, list(ends.items()))

    def _migrate_records_to_segments(self, connection: sqlite3.Connection) -> None:
        """Format 1 kept the records in the index (chunks.data): move them to segments."""
        log.warning("embedded bus: moving records to segment files (format 1 -> 2)", extra={"path": str(self.path)})
        connection.execute("ALTER TABLE chunks RENAME TO chunks_v1")
        connection.execute("DROP INDEX IF EXISTS chunks_topic_last")
        _create_schema(connection)
        rows = connection.execute("SELECT topic, first_pos, last_pos, data FROM chunks_v1 ORDER BY rowid")
        moved = 0
        while batch := rows.fetchmany(64):
            frames = [(topic, first, last - first + 1, data) for topic, first, last, data in batch]
            self._store(connection, frames)
            moved += len(frames)
        connection.execute("DROP TABLE chunks_v1")
        log.warning("embedded bus: records moved; the index shrinks while the log is idle",
                    extra={"chunks": moved})

    # appending -------------------------------------------------------------------------

    async def append(self, records: Sequence[Record]) -> None:
        """Return once the records are fsync'd. Raises BusUnavailable."""
        if not self.is_open:
            raise BusUnavailable("the embedded bus is not open")
        size = 0
        if self.max_bytes is not None:
            size = _estimate(records)
            if self.disk_bytes + self._reserved + size > self.max_bytes:
                raise self._refuse_full(size)
        done = self._engine.submit(_Append(records, size))
        self._reserved += size
        await done

    def _refuse_full(self, size: int) -> LogFull:
        self.refused_full += 1
        held = self.disk_bytes + self._reserved
        message = (f"DATA LOSS RISK: the embedded bus is full ({held} of bus.max_bytes {self.max_bytes} bytes: "
                   f"segments, index and WAL; this batch: ~{size}); it frees space as every sink passes its "
                   "records (siemgate_forward_lag_events): bring the sinks back, or raise bus.max_bytes")
        log.error(message, extra={"path": str(self.path), "bytes": held, "max_bytes": self.max_bytes})
        return LogFull(message)

    def _written(self, appends: list[_Append], result: tuple[dict[str, int], int]) -> None:
        """On the event loop, once a group is committed (before its appenders resume)."""
        ends, written = result
        self.ends.update(ends)
        self._appended_bytes += written
        self._reserved -= sum(append.size for append in appends)
        self._last_append = time.monotonic()
        self._notify()

    def _failed(self, appends: list[_Append], _: StoreError) -> None:
        self._reserved -= sum(append.size for append in appends)

    def _insert(self, connection: sqlite3.Connection, appends: list[_Append]) -> tuple[dict[str, int], int]:
        """In the engine's transaction: one group of appends; returns the new ends and the
        bytes written to segments."""
        by_topic: dict[str, list[Record]] = {}
        for append in appends:
            for record in append.records:
                by_topic.setdefault(record.topic, []).append(record)
        # Next offsets are read inside the transaction: another process may have written.
        ends = dict(connection.execute("SELECT name, next_pos FROM topics").fetchall())
        changed: dict[str, int] = {}
        encoded: dict[int, bytes] = {}
        frames = []
        for topic, records in by_topic.items():
            first = ends.get(topic, 0)
            changed[topic] = first + len(records)
            frames.append((topic, first, len(records), _pack(records, encoded)))
        written = self._store(connection, frames)
        connection.executemany(_SET_END, list(changed.items()))
        return changed, written

    def _store(self, connection: sqlite3.Connection, frames: Sequence[tuple[str, int, int, bytes]]) -> int:
        """Write (topic, first offset, count, data) frames to their streams' current segments,
        fsync'd, and index them (in the caller's transaction). Returns the bytes written."""
        assert self._segments is not None
        by_stream: dict[str, list[tuple[str, int, int, bytes]]] = {}
        for frame in frames:
            by_stream.setdefault(self._stream(frame[0]), []).append(frame)
        rows = []
        written = 0
        for stream, stream_frames in by_stream.items():
            # Each frame's head, then its data as `_pack` made it: written without a copy.
            heads = [segments.frame_head(*frame) for frame in stream_frames]
            lengths = [len(head) + len(frame[3]) for head, frame in zip(heads, stream_frames, strict=True)]
            total = sum(lengths)
            written += total
            current = connection.execute(
                "SELECT seq, size FROM segments WHERE stream = ? ORDER BY seq DESC LIMIT 1", (stream,)
            ).fetchone()
            if current is None or (current[1] and current[1] + total > self._segment_limit):
                seq = connection.execute(
                    "INSERT INTO segments (stream, size) VALUES (?, 0) RETURNING seq", (stream,)
                ).fetchone()[0]
                self._segments.create(seq)
                size = 0
            else:
                seq, size = current
            self._segments.write(seq, size, [piece for head, frame in zip(heads, stream_frames, strict=True)
                                             for piece in (head, frame[3])])
            offset = size
            for (topic, first, count, _), length in zip(stream_frames, lengths, strict=True):
                rows.append((topic, first, first + count - 1, seq, offset, length))
                offset += length
            connection.execute("UPDATE segments SET size = ? WHERE seq = ?", (offset, seq))
        connection.executemany(_INSERT_CHUNK, rows)
        return written

    def _notify(self) -> None:
        event, self._appended = self._appended, asyncio.Event()
        event.set()

    def appended(self) -> asyncio.Event:
        """An event set at the next append by this process."""
        return self._appended

    # reading ---------------------------------------------------------------------------

    async def read(self, wanted: Sequence[tuple[str, int]], max_records: int) -> dict[str, list[EmbeddedMessage]]:
        """Records of each (topic, from offset), in order, at most `max_records` in all."""

        def query(connection: sqlite3.Connection) -> dict[str, list[EmbeddedMessage]]:
            out: dict[str, list[EmbeddedMessage]] = {}
            left = max_records
            with segments.SegmentReader(self.segment_dir) as reader:
                for topic, start in wanted:
                    messages: list[EmbeddedMessage] = []
                    rows = connection.execute(
                        "SELECT first_pos, segment, offset, length FROM chunks "
                        "WHERE topic = ? AND last_pos >= ? ORDER BY last_pos",
                        (topic, start),
                    )
                    for first_pos, seq, offset, length in rows:
                        if left <= 0:
                            break
                        data = reader.read(seq, offset, length)
                        if data is None:
                            continue  # removed by retention since the query began: passed by every sink
                        found = _unpack(topic, first_pos, data, start, left)
                        messages += found
                        left -= len(found)
                    rows.close()
                    if messages:
                        out[topic] = messages
                    if left <= 0:
                        break
            return out

        try:
            return await self._read_call(query)
        except (sqlite3.Error, OSError, ValueError) as exc:
            raise BusUnavailable(f"cannot read the embedded bus at {self.path}: {exc}") from exc

    async def end_offsets(self) -> dict[str, int]:
        try:
            ends = await self._read_call(lambda c: dict(c.execute("SELECT name, next_pos FROM topics").fetchall()))
        except sqlite3.Error as exc:
            raise BusUnavailable(f"cannot read the embedded bus at {self.path}: {exc}") from exc
        self.ends.update(ends)
        return ends

    async def first_offsets(self, topics: Sequence[str]) -> dict[str, int]:
        def query(connection: sqlite3.Connection) -> dict[str, int]:
            out = {}
            for topic in topics:
                row = connection.execute("SELECT min(first_pos) FROM chunks WHERE topic = ?", (topic,)).fetchone()
                if row[0] is not None:
                    out[topic] = int(row[0])
            return out

        return await self._read_call(query)

    async def record_count(self) -> int:
        return int(await self._read_call(
            lambda c: c.execute("SELECT coalesce(sum(last_pos - first_pos + 1), 0) FROM chunks").fetchone()[0]))

    # cursors and retention -------------------------------------------------------------

    async def cursors(self, group: str) -> dict[str, int]:
        return dict(await self._read_call(
            lambda c: c.execute("SELECT topic, pos FROM cursors WHERE grp = ?", (group,)).fetchall()))

    async def commit(self, group: str, offsets: Mapping[str, int]) -> None:
        def write() -> None:
            # Not fsync'd (the index's commits are not): a cursor lost to a power cut only
            # means records delivered again, never lost.
            with self._engine.transaction("commit to") as connection:
                connection.executemany(
                    "INSERT INTO cursors (grp, topic, pos) VALUES (?, ?, ?) "
                    "ON CONFLICT (grp, topic) DO UPDATE SET pos = excluded.pos",
                    [(group, topic, pos) for topic, pos in offsets.items()],
                )

        await self._write_call(write)  # raises LogUnavailable (a BusUnavailable)
        self._committed = True

    async def _maintain(self) -> None:
        """Retention after commits, each step its own short transaction; WAL resets; vacuum."""
        while True:
            await asyncio.sleep(_MAINTENANCE_SECONDS)
            try:
                if self._engine.wal_bytes > _WAL_RESET_BYTES:
                    await self._reset_wal()
                if self._committed and self.retention_groups:
                    self._committed = False
                    try:
                        await self.apply_retention(vacuum=False)
                    except BaseException:
                        # Not done (failed, or cancelled by `close`): the next pass, or the
                        # final one in `close`, takes it up again.
                        self._committed = True
                        raise
                if time.monotonic() - self._last_append >= _IDLE_SECONDS:
                    await self._vacuum_while_idle()
            except (sqlite3.Error, OSError, BusUnavailable) as exc:
                log.warning("embedded bus maintenance failed; retrying", extra={"error": str(exc)})

    async def _reset_wal(self) -> None:
        """TRUNCATE checkpoint with this process's reads held (see _WAL_RESET_BYTES)."""
        held = self._reads_held = asyncio.Event()
        try:
            while self._reading:
                self._reads_done.clear()
                await self._reads_done.wait()
            await self._engine.checkpoint("RESTART")
        finally:
            self._reads_held = None
            held.set()

    async def _vacuum_while_idle(self) -> None:
        while time.monotonic() - self._last_append >= _IDLE_SECONDS and await self._write_call(self._vacuum_step):
            pass

    async def apply_retention(self, *, vacuum: bool = True) -> int:
        """Delete the records every retention group has passed, and the segment files left
        without records; returns how many records. `vacuum`: give the index's freed pages back
        to the file system now (else when no append came for a while)."""
        deleted = 0
        while True:
            chunks, records = await self._write_call(self._retain_step)
            deleted += records
            if chunks < _RETENTION_CHUNKS:
                break
        if deleted and vacuum:
            while await self._write_call(self._vacuum_step):
                pass
        if deleted:
            log.debug("retention", extra={"deleted": deleted})
        return deleted

    def _retain_step(self) -> tuple[int, int]:
        """One retention step: index entries every group passed go; then, if that left segments
        without entries, those go too, in a transaction that is fsync'd (unlike the index's
        other commits), so that no entry can come back pointing into a removed file."""
        assert self._segments is not None
        with self._engine.transaction("apply retention to") as connection:
            chunks, records = self._retain(connection)
            empty = self._empty_segments(connection)
        if empty:
            with self._engine.transaction("apply retention to", durable=True) as connection:
                empty = self._empty_segments(connection)  # another process may have appended since
                removed = sum(connection.execute("SELECT size FROM segments WHERE seq = ?", (seq,)).fetchone()[0]
                              for seq in empty)
                connection.executemany("DELETE FROM segments WHERE seq = ?", [(seq,) for seq in empty])
                remaining = {seq for (seq,) in connection.execute("SELECT seq FROM segments")}
            self._segments.remove(empty)
            self._removed_bytes += removed  # on the writer thread only
            self._segments.close_others(remaining)
        return chunks, records

    @staticmethod
    def _empty_segments(connection: sqlite3.Connection) -> list[int]:
        return [seq for (seq,) in connection.execute(
            "SELECT seq FROM segments s WHERE NOT EXISTS (SELECT 1 FROM chunks c WHERE c.segment = s.seq)")]

    def _retain(self, connection: sqlite3.Connection) -> tuple[int, int]:
        """Delete up to _RETENTION_CHUNKS index entries every group has passed: (chunks, records)."""
        groups = self.retention_groups
        marks = ",".join("?" * len(groups))
        chunks = records = 0
        for topic in self._retained_topics:
            count, low = connection.execute(
                f"SELECT count(*), min(pos) FROM cursors WHERE topic = ? AND grp IN ({marks})",  # noqa: S608 (only ?s)
                (topic, *groups),
            ).fetchone()
            if count < len(groups) or low is None:
                continue  # a sink that never committed on this topic holds all of it
            passed = connection.execute(
                "SELECT rowid, last_pos - first_pos + 1 FROM chunks WHERE topic = ? AND last_pos < ? "
                "ORDER BY last_pos LIMIT ?",
                (topic, low, _RETENTION_CHUNKS - chunks),
            ).fetchall()
            if passed:
                connection.executemany("DELETE FROM chunks WHERE rowid = ?", [(rowid,) for rowid, _ in passed])
                chunks += len(passed)
                records += sum(count for _, count in passed)
            if chunks >= _RETENTION_CHUNKS:
                break
        return chunks, records

    def _vacuum_step(self) -> bool:
        connection = self._engine.connection
        free = connection.execute("PRAGMA freelist_count").fetchone()[0]
        if not free:
            return False
        # executescript steps the pragma to the end; execute() would free a single page.
        connection.executescript(f"PRAGMA incremental_vacuum({_VACUUM_PAGES});")
        return bool(free > _VACUUM_PAGES)


def _create_schema(connection: sqlite3.Connection) -> None:
    # One statement at a time: executescript would commit the open transaction first.
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            connection.execute(statement)


def _columns(connection: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in connection.execute(f"PRAGMA table_info({table})")}


class _LogUser:
    """Opens the shared log on `start` and closes it (once) on `stop`."""

    def __init__(self, log: EmbeddedLog) -> None:
        self._log = log
        self._started = False

    async def start(self) -> None:
        await self._log.open()
        self._started = True

    async def stop(self) -> None:
        if self._started:
            self._started = False
            await self._log.close()


class EmbeddedPublisher(_LogUser):
    """The `Publisher` of the embedded bus: `publish` returns after the fsync."""

    async def publish(self, records: Sequence[Record]) -> None:
        if not self._started:
            raise BusUnavailable("the embedded bus publisher is not started")
        await self._log.append(records)

    async def ready(self) -> bool:
        return self._started and self._log.is_open

    def storage_stats(self) -> StorageStats:
        """The log's size against `bus.max_bytes` (`siemgate_storage_*{store="log"}`)."""
        return self._log.storage_stats()


class EmbeddedConsumer(_LogUser):
    """A consumer group member of the embedded bus: one partition per topic, all assigned to it.

    One consumer per group at a time (the embedded bus has no group coordinator).
    """

    def __init__(self, log: EmbeddedLog, *, group: str | None, max_records: int, fetch_max_wait_ms: int) -> None:
        super().__init__(log)
        self._group = group
        self._max_records = max_records
        self._poll_seconds = max(fetch_max_wait_ms, 50) / 1000
        self._topics: list[str] = []
        self._listener: RebalanceListener | None = None
        self._announced = False
        self._positions: dict[Partition, int] = {}
        self._paused: set[Partition] = set()
        self._turn = 0

    def subscribe(self, topics: Sequence[str], listener: RebalanceListener | None = None) -> None:
        self._topics = list(topics)
        self._listener = listener
        self._announced = False
        self._positions = {}

    def assignment(self) -> set[Partition]:
        return set(self._positions) if self._announced else set()

    async def _assign(self) -> None:
        committed = await self._log.cursors(self._group) if self._group else {}
        first = await self._log.first_offsets(self._topics)
        await self._log.end_offsets()
        self._positions = {Partition(t, 0): max(committed.get(t, 0), first.get(t, 0)) for t in self._topics}
        self._announced = True
        if self._listener is not None:
            await self._listener.on_partitions_assigned(set(self._positions))

    async def getmany(
        self, *partitions: Partition, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[Partition, list[EmbeddedMessage]]:
        if not self._announced:
            await self._assign()
        limit = max_records or self._max_records
        wanted = [tp for tp in (partitions or self._positions) if tp in self._positions and tp not in self._paused]
        if len(wanted) > 1:
            # Start each fetch at the next topic, so that one busy topic cannot starve the others
            # when its records alone fill `limit` (as Kafka spreads a fetch over partitions).
            self._turn = (self._turn + 1) % len(wanted)
            wanted = wanted[self._turn:] + wanted[:self._turn]
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            appended = self._log.appended()
            found = await self._log.read([(tp.topic, self._positions[tp]) for tp in wanted], limit) if wanted else {}
            if found:
                out = {}
                for topic, messages in found.items():
                    tp = Partition(topic, 0)
                    self._positions[tp] = messages[-1].offset + 1
                    out[tp] = messages
                return out
            left = deadline - time.monotonic()
            if left <= 0:
                return {}
            # Woken by this process's appends at once; another process's are seen at the next poll.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(appended.wait(), min(left, self._poll_seconds))
            if not appended.is_set():
                await self._log.end_offsets()

    def pause(self, *partitions: Partition) -> None:
        self._paused.update(partitions)

    def resume(self, *partitions: Partition) -> None:
        self._paused.difference_update(partitions)

    def seek(self, partition: Partition, offset: int) -> None:
        self._positions[partition] = offset

    def highwater(self, partition: Partition) -> int | None:
        return self._log.ends.get(partition.topic, 0) if partition in self._positions else None

    async def commit(self, offsets: Mapping[Partition, int]) -> None:
        if self._group is None:
            raise CommitRefused("a consumer without a group cannot commit")
        await self._log.commit(self._group, {tp.topic: offset for tp, offset in offsets.items()})

    async def end_offsets(self, partitions: Sequence[Partition]) -> dict[Partition, int]:
        ends = await self._log.end_offsets()
        return {tp: ends.get(tp.topic, 0) for tp in partitions}

    async def position(self, partition: Partition) -> int:
        position = self._positions.get(partition)
        if position is None:
            raise BusError(f"{partition.topic} is not assigned to this consumer")
        return position


class EmbeddedBus:
    """The `Bus` over one `EmbeddedLog` (opened and closed by its owner)."""

    def __init__(self, log: EmbeddedLog) -> None:
        self.log = log

    def publisher(self) -> Publisher:
        return EmbeddedPublisher(self.log)

    def consumer(self, *, group: str | None, max_records: int, fetch_max_wait_ms: int) -> Consumer:
        return EmbeddedConsumer(self.log, group=group, max_records=max_records, fetch_max_wait_ms=fetch_max_wait_ms)

    async def ensure_topics(self, extra: Sequence[str] = ()) -> None:
        """Topics exist as soon as a record is written to them."""
