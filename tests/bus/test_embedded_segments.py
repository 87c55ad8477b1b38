"""The embedded log's segment files: records survive a lost index, torn writes are cut off,
old files are upgraded, and retention gives space back a whole segment at a time."""

from __future__ import annotations

import contextlib
import logging
import shutil
import sqlite3
from pathlib import Path

import pytest

from siemgate.bus import segments
from siemgate.bus.embedded import EmbeddedLog, _pack, disk_usage
from siemgate.errors import BusUnavailable
from siemgate.record import Record
from tests.bus import embedded_support as support
from tests.bus.embedded_support import PREFIX, opened

pytestmark = pytest.mark.anyio

HIGH, LOW = f"{PREFIX}.events.high", f"{PREFIX}.events.low"
DLQ = f"{PREFIX}.dlq.archive"


def records(severity: str, start: int, count: int, size: int = 200) -> list[Record]:
    return support.records(severity, start, count, size)


async def read_all(log: EmbeddedLog, topic: str, start: int = 0) -> list[str]:
    """The keys of every record of `topic` from offset `start`, in order."""
    keys: list[str] = []
    while True:
        found = (await log.read([(topic, start)], 64)).get(topic, [])
        if not found:
            return keys
        keys += [m.key.decode() for m in found]
        first = found[0].offset
        assert [m.offset for m in found] == list(range(first, first + len(found)))  # contiguous
        start = found[-1].offset + 1


def segment_files(path: Path) -> list[Path]:
    directory = segments.directory_for(path)
    return sorted(directory.glob("*.seg")) if directory.exists() else []


async def test_records_live_in_segment_files_beside_the_index(tmp_path: Path) -> None:
    path = tmp_path / "bus.db"
    async with opened(path) as log:
        await log.append(records("high", 0, 50, size=1000))
    files = segment_files(path)
    assert len(files) == 1
    assert files[0].stat().st_size > 50 * 1000
    assert path.stat().st_size < 64 * 1024  # the index holds where records are, not their bytes
    assert disk_usage(path) >= files[0].stat().st_size + path.stat().st_size


async def test_appends_the_index_lost_to_a_power_cut_are_indexed_again(tmp_path: Path) -> None:
    """The index's commits are not fsync'd, the segments are: after a power cut the index may
    miss acknowledged appends whose frames are on disk. Opening the log finds them."""
    path = tmp_path / "bus.db"
    async with opened(path) as log:
        await log.append(records("high", 0, 10))
        await log.commit("g", {HIGH: 4})
    shutil.copy(path, tmp_path / "index-before")  # closed: the index is whole in this one file
    async with opened(path) as log:
        await log.append(records("high", 10, 10) + records("low", 0, 5))
        await log.append(records("high", 20, 5))
    shutil.copy(tmp_path / "index-before", path)  # the index as the power cut left it

    async with opened(path) as log:
        assert log.ends == {HIGH: 25, LOW: 5}
        assert await read_all(log, HIGH) == [f"high-{i}" for i in range(25)]
        assert await read_all(log, LOW) == [f"low-{i}" for i in range(5)]
        assert await log.cursors("g") == {HIGH: 4}
        await log.append(records("high", 25, 1))  # and offsets go on from there
        assert log.ends[HIGH] == 26
    async with opened(path) as log:
        assert await read_all(log, HIGH, 20) == [f"high-{i}" for i in range(20, 26)]


async def test_a_torn_write_at_the_end_of_a_segment_is_cut_off(tmp_path: Path) -> None:
    path = tmp_path / "bus.db"
    async with opened(path) as log:
        await log.append(records("high", 0, 10))
    (segment,) = segment_files(path)
    whole = segment.stat().st_size
    torn = segments.encode_frame(HIGH, 10, 5, _pack(records("high", 10, 5), {}))
    with open(segment, "ab") as file:
        file.write(torn[: len(torn) // 2])  # the power went mid-write: never acknowledged

    async with opened(path) as log:
        assert log.ends == {HIGH: 10}
        assert segment.stat().st_size == whole
        await log.append(records("high", 10, 3))
        assert await read_all(log, HIGH) == [f"high-{i}" for i in range(13)]


async def test_a_frame_with_a_bad_checksum_is_not_indexed(tmp_path: Path) -> None:
    path = tmp_path / "bus.db"
    async with opened(path) as log:
        await log.append(records("high", 0, 10))
    shutil.copy(path, tmp_path / "index-before")
    async with opened(path) as log:
        await log.append(records("high", 10, 10))
    shutil.copy(tmp_path / "index-before", path)
    (segment,) = segment_files(path)
    data = bytearray(segment.read_bytes())
    data[-1] ^= 0xFF  # the last frame's data no longer matches its checksum
    segment.write_bytes(bytes(data))

    async with opened(path) as log:
        assert log.ends == {HIGH: 10}
        assert await read_all(log, HIGH) == [f"high-{i}" for i in range(10)]


async def test_bytes_left_by_an_append_that_died_before_its_commit_are_overwritten(tmp_path: Path) -> None:
    """Another process on the log wrote its frames and died before committing their index
    entries (so never acknowledged them): the next append replaces them."""
    path = tmp_path / "bus.db"
    async with opened(path) as log:
        await log.append(records("high", 0, 5))
        (segment,) = segment_files(path)
        stale = segments.encode_frame(HIGH, 5, 100, _pack(records("stale", 0, 100), {}))
        with open(segment, "ab") as file:
            file.write(stale)
        await log.append(records("high", 5, 2))
        assert await read_all(log, HIGH) == [f"high-{i}" for i in range(7)]
    async with opened(path) as log:  # and nothing of them is found again on reopening
        assert log.ends == {HIGH: 7}
        assert await read_all(log, HIGH) == [f"high-{i}" for i in range(7)]


async def test_segments_roll_and_retention_removes_whole_passed_ones(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(segments, "SEGMENT_BYTES", 20_000)
    path = tmp_path / "bus.db"
    async with opened(path) as log:
        for n in range(20):
            await log.append(records("high", n * 20, 20))  # ~6 KB per append: three per segment
        files = segment_files(path)
        assert len(files) >= 6
        assert await read_all(log, HIGH) == [f"high-{i}" for i in range(400)]

        await log.commit("g", {HIGH: 200})
        assert await log.apply_retention() == 200
        left = segment_files(path)
        assert len(left) < len(files)
        assert set(left) <= set(files)
        assert await read_all(log, HIGH, 200) == [f"high-{i}" for i in range(200, 400)]
        assert await log.first_offsets([HIGH]) == {HIGH: 200}

        await log.commit("g", {HIGH: 400})
        await log.apply_retention()
        assert segment_files(path) == []  # every record passed: no file left
        await log.append(records("high", 400, 1))
        assert await read_all(log, HIGH, 400) == ["high-400"]
        new = segment_files(path)
        assert len(new) == 1 and new[0] not in files  # a segment number is never used twice


async def test_dead_letters_are_kept_in_segments_of_their_own(tmp_path: Path) -> None:
    path = tmp_path / "bus.db"
    async with opened(path) as log:
        await log.append(records("high", 0, 10) + [r._replace(topic=DLQ) for r in records("high", 100, 3)])
        assert len(segment_files(path)) == 2  # the events' segment and the kept one
        await log.commit("g", {HIGH: 10, DLQ: 3})
        await log.apply_retention()
        assert len(segment_files(path)) == 1
        assert await read_all(log, DLQ) == [f"high-{i}" for i in range(100, 103)]


async def test_a_missing_segment_file_is_reported_and_the_rest_still_served(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(segments, "SEGMENT_BYTES", 5_000)
    path = tmp_path / "bus.db"
    async with opened(path) as log:
        for n in range(4):
            await log.append(records("high", n * 10, 10))
    files = segment_files(path)
    assert len(files) == 4
    files[0].unlink()  # someone deleted a file by hand

    with caplog.at_level(logging.ERROR, logger="siemgate.bus.embedded"):
        async with opened(path) as log:
            assert await read_all(log, HIGH) == [f"high-{i}" for i in range(10, 40)]
            assert log.ends == {HIGH: 40}
    assert any("missing" in r.getMessage() for r in caplog.records)


async def test_a_log_in_the_first_format_is_moved_to_segments_keeping_offsets_and_cursors(tmp_path: Path) -> None:
    """siemgate before segment files kept the records in the index's chunks table."""
    path = tmp_path / "bus.db"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.executescript("""
            PRAGMA journal_mode=WAL;
            CREATE TABLE chunks (topic TEXT NOT NULL, first_pos INTEGER NOT NULL, last_pos INTEGER NOT NULL,
                                 data BLOB NOT NULL);
            CREATE UNIQUE INDEX chunks_topic_last ON chunks (topic, last_pos);
            CREATE TABLE topics (name TEXT PRIMARY KEY, next_pos INTEGER NOT NULL) WITHOUT ROWID;
            CREATE TABLE cursors (grp TEXT NOT NULL, topic TEXT NOT NULL, pos INTEGER NOT NULL,
                                  PRIMARY KEY (grp, topic)) WITHOUT ROWID;
        """)
        # Retention had already deleted offsets 0-99 of high.
        for first in (100, 150):
            db.execute("INSERT INTO chunks VALUES (?, ?, ?, ?)",
                       (HIGH, first, first + 49, _pack(records("high", first, 50), {})))
        db.execute("INSERT INTO chunks VALUES (?, ?, ?, ?)", (LOW, 0, 9, _pack(records("low", 0, 10), {})))
        db.executemany("INSERT INTO topics VALUES (?, ?)", [(HIGH, 200), (LOW, 10)])
        db.execute("INSERT INTO cursors VALUES ('g', ?, 120)", (HIGH,))
        db.commit()

    async with opened(path) as log:
        assert log.ends == {HIGH: 200, LOW: 10}
        assert await log.cursors("g") == {HIGH: 120}
        assert await log.first_offsets([HIGH, LOW]) == {HIGH: 100, LOW: 0}
        assert await read_all(log, HIGH, 100) == [f"high-{i}" for i in range(100, 200)]
        assert await read_all(log, LOW) == [f"low-{i}" for i in range(10)]
        await log.append(records("high", 200, 1))
        assert log.ends[HIGH] == 201
    assert segment_files(path)
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 2
        assert "data" not in {row[1] for row in db.execute("PRAGMA table_info(chunks)")}
        assert db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'chunks_v1'").fetchone()[0] == 0


async def test_a_log_written_by_a_newer_version_is_refused_with_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "bus.db"
    async with opened(path):
        pass
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA user_version=3")
    log = EmbeddedLog(path, prefix=PREFIX)
    with pytest.raises(BusUnavailable, match="newer siemgate"):
        await log.open()
    assert not log.is_open


async def test_an_append_of_several_topics_writes_exactly_their_encoded_frames(tmp_path: Path) -> None:
    """The frames go to the segment as heads and data pieces (no joined copy): the file holds
    byte for byte `encode_frame` of each, in order, and `scan` finds them all."""
    path = tmp_path / "bus.db"
    high, low = records("high", 0, 30, size=700), records("low", 0, 20, size=300)
    async with opened(path) as log:
        await log.append([*high, *low])
        await log.append(records("high", 30, 5))
    [file] = segment_files(path)
    expected = (segments.encode_frame(HIGH, 0, 30, _pack(high, {})) + segments.encode_frame(LOW, 0, 20, _pack(low, {}))
                + segments.encode_frame(HIGH, 30, 5, _pack(records("high", 30, 5), {})))
    assert file.read_bytes() == expected
    assert [(f.topic, f.first_pos, f.records) for f in segments.scan(file, 0)] == [(HIGH, 0, 30), (LOW, 0, 20),
                                                                                  (HIGH, 30, 5)]
    async with opened(path) as log:
        assert await read_all(log, HIGH) == [r.key.decode() for r in [*high, *records("high", 30, 5)]]
        assert await read_all(log, LOW) == [r.key.decode() for r in low]


@pytest.mark.parametrize("pieces", [1, 3, 1500])  # one buffer; a few (pwritev); past IOV_MAX (joined)
def test_the_segment_writer_writes_pieces_back_to_back_at_the_offset(tmp_path: Path, pieces: int) -> None:
    writer = segments.SegmentWriter(tmp_path / "segments")
    try:
        writer.create(1)
        writer.write(1, 0, b"head")
        parts = [bytes([65 + i % 26]) * (1 + i % 5) for i in range(pieces)]
        writer.write(1, 4, parts if pieces > 1 else parts[0])
        writer.write(1, 4, parts)  # over the same bytes again (an append whose commit died)
    finally:
        writer.close()
    assert (tmp_path / "segments" / segments.file_name(1)).read_bytes() == b"head" + b"".join(parts)
