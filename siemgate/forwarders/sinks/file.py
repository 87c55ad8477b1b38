"""The file sink: NDJSON of the normalized view, one line per event, with size-based rotation.

`event_format: normalized` (default) writes siemgate's normalized view with the vendor's
event under `event`; `event_format: ocsf` writes OCSF records (`formats/ocsf.py`, shaped
by `ocsf:`), e.g. for a data lake that reads OCSF.

Delivered means written and, with `fsync: batch` (the default), fsync'd before `send`
returns. Rotation renames `events.ndjson` to `events.ndjson.1` (older files shift up to
`keep`), so a reader can tail the current file. All file work runs in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, ClassVar, Final, Literal

import orjson

from siemgate.errors import ConfigError, RetryableSinkError
from siemgate.forwarders.formats.ocsf import OcsfSettings, ocsf_event
from siemgate.forwarders.normalize import NormalizedEvent
from siemgate.forwarders.sinks.base import SendResult, Sink, SinkSettings
from siemgate.private_files import open_private, private_dir
from siemgate.record import dumps

# Where this sink connects, for the Helm chart's NetworkPolicy (`make helm-schema` reads it):
# nowhere, it writes a local file.
DESTINATION_KEY: Final[str | None] = None
DEFAULT_PORTS: Final[dict[str, int]] = {}


@dataclass(frozen=True, kw_only=True)
class FileSinkSettings(SinkSettings):
    type: ClassVar[str] = "file"
    path: str
    # batch: fsync after every batch (delivered = on disk); never: leave it to the OS.
    fsync: Literal["batch", "never"] = "batch"
    rotate_bytes: int = 100 * 1024 * 1024
    keep: int = 10
    # normalized: siemgate's normalized view per line; ocsf: an OCSF record per line.
    event_format: Literal["normalized", "ocsf"] = "normalized"
    ocsf: OcsfSettings = field(default_factory=OcsfSettings)

    def __post_init__(self) -> None:
        if self.rotate_bytes < 1024:
            raise ConfigError("rotate_bytes", "must be at least 1024")
        if self.keep < 1:
            raise ConfigError("keep", "must be at least 1")


def to_json_line(event: NormalizedEvent) -> bytes:
    return dumps(
        {
            "id": event.id,
            "kind": event.kind,
            "integration": event.integration,
            "severity": event.severity,
            "level": event.level,
            "vendor_severity": event.vendor_severity,
            "timestamp": event.timestamp,
            "timestamp_invalid": event.timestamp_invalid,
            "received_at": event.received_at,
            "source_ip": event.source_ip,
            "url": event.url,
            "method": event.method,
            "rule": event.rule,
            "rule_id": event.rule_id,
            "action": event.action,
            "asset": event.asset,
            "event_type": event.event_type,
            "message": event.message,
            # As the ingest received it (exact numbers, however large), not encoded again.
            "event": orjson.Fragment(event.event_bytes()),
        },
    ) + b"\n"


def to_ocsf_line(event: NormalizedEvent, settings: OcsfSettings) -> bytes:
    """The OCSF record, with the vendor's event under `unmapped` as the ingest received it."""
    return dumps(ocsf_event(event, settings, vendor_event=orjson.Fragment(event.event_bytes()))) + b"\n"


# How far back `_cut_torn_line` reads at a time.
_TAIL_CHUNK = 64 * 1024


def _cut_torn_line(fd: int) -> None:
    """A file whose last line has no line break ends in part of a batch whose write a crash
    (the machine's, or a SIGKILL between two writes) cut short: that batch was never reported
    delivered, so it comes again whole. Cut the file back to just after its last line break
    (to empty if it has none), so that the next batch does not continue the torn line and
    every line stays one whole JSON document. A reader tailing the file has read up to that
    line break at most (tailers wait for one), so it sees no truncation."""
    end = os.lseek(fd, 0, os.SEEK_END)
    if end == 0 or os.pread(fd, 1, end - 1) == b"\n":
        return
    position = end
    while position > 0:
        start = max(0, position - _TAIL_CHUNK)
        at = os.pread(fd, position - start, start).rfind(b"\n")
        if at != -1:
            os.ftruncate(fd, start + at + 1)
            os.fsync(fd)
            return
        position = start
    os.ftruncate(fd, 0)
    os.fsync(fd)


class FileSink(Sink[FileSinkSettings]):
    def __init__(self, settings: FileSinkSettings) -> None:
        super().__init__(settings)
        self._path = Path(settings.path)
        self._handle: IO[bytes] | None = None
        self._size = 0
        # The batches in flight are written one after the other, in the order they came.
        self._lock = asyncio.Lock()

    async def send(self, events: Sequence[NormalizedEvent]) -> SendResult:
        if self.settings.event_format == "ocsf":
            ocsf = self.settings.ocsf
            data = b"".join(to_ocsf_line(e, ocsf) for e in events)
        else:
            data = b"".join(to_json_line(e) for e in events)
        async with self._lock:
            try:
                await asyncio.to_thread(self._write, data)
            except OSError as exc:
                raise RetryableSinkError(f"cannot write {self._path}: {exc.strerror or exc}") from exc
        return SendResult()

    def _open(self) -> IO[bytes]:
        if self._handle is None:
            private_dir(self._path.parent)
            # Unbuffered: a batch goes straight to the file, and a failed one leaves nothing
            # behind in a buffer that closing would try to write again. Created 0600: it holds events.
            fd = open_private(self._path, os.O_RDWR | os.O_APPEND | os.O_CREAT)
            try:
                _cut_torn_line(fd)
            except OSError:
                os.close(fd)
                raise
            self._handle = open(fd, "ab", buffering=0)  # noqa: SIM115 - kept open across batches
            self._size = self._handle.tell()
        return self._handle

    def _write(self, data: bytes) -> None:
        handle = self._open()
        start = self._size
        try:
            view = memoryview(data)
            while view:
                written = handle.write(view)
                view = view[written or 0:]
            if self.settings.fsync == "batch":
                os.fsync(handle.fileno())
        except OSError:
            # A disk that filled up mid-batch leaves part of it: cut the file back to the last
            # whole batch, so that the retry does not follow half a line.
            self._discard_handle()
            with contextlib.suppress(OSError):
                os.truncate(self._path, start)
            raise
        self._size += len(data)
        if self._size >= self.settings.rotate_bytes:
            self._rotate()

    def _rotate(self) -> None:
        self._close_handle()
        keep = self.settings.keep
        oldest = self._path.with_name(f"{self._path.name}.{keep}")
        oldest.unlink(missing_ok=True)
        for index in range(keep - 1, 0, -1):
            older = self._path.with_name(f"{self._path.name}.{index}")
            if older.exists():
                older.rename(self._path.with_name(f"{self._path.name}.{index + 1}"))
        self._path.rename(self._path.with_name(f"{self._path.name}.1"))
        directory = os.open(self._path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def _close_handle(self) -> None:
        if self._handle is not None:
            handle, self._handle = self._handle, None
            handle.close()

    def _discard_handle(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            with contextlib.suppress(OSError):
                handle.close()

    async def healthcheck(self) -> str:
        def probe() -> str:
            private_dir(self._path.parent)
            os.close(open_private(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT))
            return f"{self._path} is writable"

        try:
            return await asyncio.to_thread(probe)
        except OSError as exc:
            raise RetryableSinkError(f"{self._path} is not writable: {exc.strerror or exc}") from exc

    async def close(self) -> None:
        await asyncio.to_thread(self._close_handle)
