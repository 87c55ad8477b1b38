"""What the embedded log's tests share: records of one severity, and a log opened for a test."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from siemgate.bus.embedded import EmbeddedLog
from siemgate.record import Record, make_record

PREFIX = "siemgate"


def records(severity: str, start: int, count: int, size: int = 900) -> list[Record]:
    """`count` event records of `severity` with keys `<severity>-<n>` from n = `start`."""
    return [
        make_record(prefix=PREFIX, event={"id": f"{severity}-{i}", "pad": "x" * size}, kind="event",
                    integration="appsec", severity=severity, event_id=f"{severity}-{i}",  # type: ignore[arg-type]
                    received_at="2026-11-29T00:00:00.000000Z", batch="b", seq=i, peer="192.0.2.1")
        for i in range(start, start + count)
    ]


@contextlib.asynccontextmanager
async def opened(path: Path, groups: tuple[str, ...] = ("g",)) -> AsyncIterator[EmbeddedLog]:
    """The log at `path`, deleting what every one of `groups` has passed; closed on exit."""
    log = EmbeddedLog(path, prefix=PREFIX, retention_groups=groups)
    await log.open()
    try:
        yield log
    finally:
        await log.close()
