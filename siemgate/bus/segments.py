"""Segment files: where the embedded log keeps its records' bytes.

The embedded log's SQLite file is its index (which records are where, the cursors); the
records themselves are appended to segment files beside it, `<bus.path>-segments/<seq>.seg`,
and fsync'd there. Each byte is written once (a SQLite WAL writes it twice: to the WAL, then
to the database at a checkpoint, whose flush the next append's fsync then waits behind), and
retention gives space back by deleting a whole file. SQLite's own guidance is the same for
blobs this size ("Internal Versus External BLOBs": above ~100 KB, files are faster); an
append of 500 events is ~0.5 MB. What it changed, measured: docs/PERFORMANCE.md, "Spool and
embedded modes".

A segment is a run of frames, one per append and topic:

    magic "SGF1" | topic length u16 | record count u32 | first offset u64 | data length u32
    | crc32 of the data u32 | topic (utf-8) | data

The frames make a segment readable without its index: after a power cut that lost the
index's last (unsynced) transactions, `scan` finds the frames that were fsync'd after them,
and a torn frame (never acknowledged) fails its checksum and is cut off.
"""

from __future__ import annotations

import contextlib
import os
import struct
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

from siemgate.private_files import open_private, private_dir

MAGIC = b"SGF1"
_HEADER = struct.Struct("<4sHIQII")
# A new segment is started once the current one would pass this size (one append's frames
# always go to one segment). Retention frees space a segment at a time.
SEGMENT_BYTES = 64 * 1024 * 1024
SUFFIX = ".seg"
# Pieces one pwritev takes (IOV_MAX on Linux is 1024); more are joined and written at once.
_MAX_PIECES = 1024


class Frame(NamedTuple):
    topic: str
    first_pos: int
    records: int
    offset: int  # of the frame in its segment
    length: int  # of the whole frame


def directory_for(index_path: Path) -> Path:
    """The segment directory beside the index: `siemgate.db` -> `siemgate.db-segments`."""
    return index_path.with_name(index_path.name + "-segments")


def file_name(seq: int) -> str:
    return f"{seq:012d}{SUFFIX}"


def encode_frame(topic: str, first_pos: int, count: int, data: bytes) -> bytes:
    return frame_head(topic, first_pos, count, data) + data


def frame_head(topic: str, first_pos: int, count: int, data: bytes) -> bytes:
    """A frame's bytes before its data (the frame is this, then `data` as it is)."""
    name = topic.encode()
    return _HEADER.pack(MAGIC, len(name), count, first_pos, len(data), zlib.crc32(data)) + name


def frame_data(frame: bytes) -> bytes:
    """The data of an encoded frame (as read back by its index entry's offset and length)."""
    magic, name_length, _, _, data_length, _ = _HEADER.unpack_from(frame)
    if magic != MAGIC:
        raise ValueError("not a segment frame: the index and the segment disagree")
    start = _HEADER.size + name_length
    return frame[start:start + data_length]


def scan(path: Path, start: int) -> Iterator[Frame]:
    """The whole, checksummed frames of a segment from byte `start` on, up to the first that
    is not one (a torn write, or the end)."""
    with open(path, "rb") as file:
        file.seek(start)
        offset = start
        while True:
            header = file.read(_HEADER.size)
            if len(header) < _HEADER.size:
                return
            magic, name_length, count, first_pos, data_length, crc = _HEADER.unpack(header)
            if magic != MAGIC:
                return
            name = file.read(name_length)
            data = file.read(data_length)
            if len(name) < name_length or len(data) < data_length or zlib.crc32(data) != crc:
                return
            try:
                topic = name.decode()
            except UnicodeDecodeError:
                return
            length = _HEADER.size + name_length + data_length
            yield Frame(topic, first_pos, count, offset, length)
            offset += length


def fsync_directory(directory: Path) -> None:
    """Make a file's creation or removal durable (its directory entry)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SegmentWriter:
    """The write side of the segment files, used by one thread (the log's writer)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._open: dict[int, int] = {}  # seq -> fd

    def create(self, seq: int) -> None:
        private_dir(self.directory)
        fd = open_private(self.directory / file_name(seq), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        self._open[seq] = fd
        fsync_directory(self.directory)

    def write(self, seq: int, offset: int, data: bytes | Sequence[bytes]) -> None:
        """Write `data` (bytes, or pieces written back to back without joining them first) at
        `offset` (the end the index knows) and fsync before returning."""
        fd = self._fd(seq)
        if os.fstat(fd).st_size > offset:
            # Bytes past the index's end: an append that died before its index commit (never
            # acknowledged). They go, so that no stale frame follows this one.
            os.ftruncate(fd, offset)
        if isinstance(data, bytes):
            pieces: Sequence[bytes] = (data,)
        else:
            pieces = data
        size = sum(len(piece) for piece in pieces)
        if len(pieces) == 1 or not hasattr(os, "pwritev") or len(pieces) > _MAX_PIECES:
            whole = pieces[0] if len(pieces) == 1 else b"".join(pieces)
            written = os.pwrite(fd, whole, offset)
        else:
            whole = b""
            written = os.pwritev(fd, pieces, offset)
        if written < size:  # a short write (a signal; a full disk raises instead): the rest, joined
            rest = memoryview(whole or b"".join(pieces))
            while written < size:
                written += os.pwrite(fd, rest[written:], offset + written)
        os.fdatasync(fd)

    def truncate(self, seq: int, size: int) -> None:
        fd = self._fd(seq)
        os.ftruncate(fd, size)
        os.fdatasync(fd)

    def remove(self, seqs: list[int]) -> None:
        for seq in seqs:
            fd = self._open.pop(seq, None)
            if fd is not None:
                os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.directory / file_name(seq))
        if seqs:
            fsync_directory(self.directory)

    def close_others(self, keep: set[int]) -> None:
        """Close the descriptors of segments another handle may have removed."""
        for seq in [s for s in self._open if s not in keep]:
            os.close(self._open.pop(seq))

    def close(self) -> None:
        for fd in self._open.values():
            os.close(fd)
        self._open.clear()

    def _fd(self, seq: int) -> int:
        fd = self._open.get(seq)
        if fd is None:
            # A segment started by another handle on the log (another process, or a restart).
            fd = self._open[seq] = open_private(self.directory / file_name(seq), os.O_WRONLY | os.O_CREAT)
        return fd


class SegmentReader:
    """Reads frames by their index entries; one per read call (files may come and go)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._open: dict[int, int] = {}

    def read(self, seq: int, offset: int, length: int) -> bytes | None:
        """A frame's data; None if its segment is gone (retention removed it meanwhile)."""
        fd = self._open.get(seq)
        if fd is None:
            try:
                fd = self._open[seq] = os.open(self.directory / file_name(seq), os.O_RDONLY)
            except FileNotFoundError:
                return None
        frame = os.pread(fd, length, offset)
        if len(frame) < length:
            raise ValueError(f"segment {file_name(seq)} is shorter than its index says: the log is damaged")
        return frame_data(frame)

    def close(self) -> None:
        for fd in self._open.values():
            os.close(fd)
        self._open.clear()

    def __enter__(self) -> SegmentReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
