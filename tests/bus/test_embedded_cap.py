"""bus.max_bytes: the embedded log refuses an append that would take it past its cap (a
BusUnavailable: the ingest's 503), only while it is full, and takes appends again once
retention has freed space; its storage figures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from siemgate.bus import segments
from siemgate.bus.embedded import _INDEX_BYTES_PER_COMMIT, _RECORD_OVERHEAD, EmbeddedLog, _estimate, disk_usage
from siemgate.config import parse_config
from siemgate.errors import BusUnavailable, ConfigError, LogFull
from tests.bus.embedded_support import PREFIX, records

pytestmark = pytest.mark.anyio

HIGH = f"{PREFIX}.events.high"
CAP = 2 * 1024 * 1024


async def test_full_log_refuses_until_retention_frees_space(tmp_path: Path) -> None:
    """The promise: an append is refused (LogFull) exactly when the log's bytes on disk
    (segments, index and WAL, as last counted) plus the batch's estimated size (`_estimate`,
    an upper bound of what it writes) would pass `bus.max_bytes`; so the log never holds more
    than the cap, and after `measure_storage` its figure is what is on disk. Where below the
    cap it refuses depends on the WAL's size, which depends on when the paced checkpoints ran:
    the test checks the refusal against the batch's estimate, not against a fixed margin."""
    path = tmp_path / "bus.db"
    log = EmbeddedLog(path, prefix=PREFIX, retention_groups=("g",), max_bytes=CAP)
    await log.open()
    try:
        appended = 0
        with pytest.raises(LogFull, match="DATA LOSS RISK.*bus.max_bytes") as caught:
            for _ in range(100):  # ~118 KB of segments and a few index pages per append: full after ~15
                batch = records("high", appended, 100)
                room = CAP - log.storage_stats().bytes  # nothing is queued: what the cap is checked against
                await log.append(batch)
                assert _estimate(batch) <= room  # accepted: it fit
                appended += 100
        assert _estimate(batch) > room  # refused: it would have passed the cap
        assert isinstance(caught.value, BusUnavailable)  # what the ingest answers 503 for
        assert 10 < appended // 100 < 100
        assert log.refused_full == 1
        await log.measure_storage()
        stats = log.storage_stats()
        assert stats.store == "log" and stats.limit_bytes == CAP
        assert stats.bytes <= CAP  # no append took it past the cap
        assert stats.bytes == disk_usage(path)  # segments, index and WAL, as on disk
        free = os.statvfs(tmp_path)
        assert stats.free_bytes is not None and abs(stats.free_bytes - free.f_bavail * free.f_frsize) < 256 << 20
        # Segments are at most an eighth of the cap: retention can free space a segment at a time.
        sizes = [entry.stat().st_size for entry in segments.directory_for(path).iterdir()]
        assert len(sizes) >= 6 and max(sizes) <= CAP // 8 + 100_000
        # The estimate is an upper bound of an append's bytes (so the cap holds), and not much
        # more (so the log is not refused long before it is full): one append's segment bytes,
        # at most one transaction's index pages and 100 records' overhead more.
        per_append = sum(sizes) / (appended // 100)
        assert per_append < _estimate(batch) < per_append + _INDEX_BYTES_PER_COMMIT + 100 * _RECORD_OVERHEAD
        with pytest.raises(LogFull):  # still full: nothing was freed
            await log.append(records("high", appended, 100))
        assert log.refused_full == 2

        full = stats.bytes
        await log.commit("g", {HIGH: appended // 2})  # a sink passed half of it
        await log.apply_retention()
        await log.measure_storage()
        assert log.storage_stats().bytes < full - CAP // 4  # the segments it emptied are gone
        assert log.storage_stats().bytes == disk_usage(path)
        await log.append(records("high", appended, 100))  # accepted again
        assert log.ends[HIGH] == appended + 100
        assert log.refused_full == 2
    finally:
        await log.close()


async def test_a_batch_larger_than_the_cap_is_refused_and_the_log_takes_smaller_ones(tmp_path: Path) -> None:
    log = EmbeddedLog(tmp_path / "bus.db", prefix=PREFIX, max_bytes=1024 * 1024)
    await log.open()
    try:
        with pytest.raises(LogFull):
            await log.append(records("high", 0, 1200))  # ~1.1 MB
        await log.append(records("high", 0, 10))
        assert log.ends[HIGH] == 10
    finally:
        await log.close()


async def test_the_count_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "bus.db"
    log = EmbeddedLog(path, prefix=PREFIX, max_bytes=CAP)
    await log.open()
    for n in range(5):
        await log.append(records("high", n * 100, 100))
    await log.close()
    log = EmbeddedLog(path, prefix=PREFIX, max_bytes=CAP)
    await log.open()
    try:
        await log.measure_storage()
        assert log.storage_stats().bytes == disk_usage(path) > 5 * 90_000
    finally:
        await log.close()


def test_bus_max_bytes_is_checked_and_defaults_to_10_gib() -> None:
    assert parse_config("bus: {type: embedded}", {}).bus.max_bytes == 10 * 1024**3
    assert parse_config("bus: {type: embedded, max_bytes: 5368709120}", {}).bus.max_bytes == 5 * 1024**3
    with pytest.raises(ConfigError, match=r"bus\.max_bytes: must be at least 1048576"):
        parse_config("bus: {type: embedded, max_bytes: 1000}", {})
