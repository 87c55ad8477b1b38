"""What the embedded log adds to the bus contract: durability across reopen, group commit,
retention that gives space back, and safe writes from two handles on one file."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from pathlib import Path

import pytest

from siemgate.bus import segments
from siemgate.bus.base import Partition
from siemgate.bus.embedded import EmbeddedConsumer, EmbeddedLog, disk_usage
from siemgate.errors import BusUnavailable
from tests.bus.embedded_support import PREFIX, opened, records

pytestmark = pytest.mark.anyio


def count(path: Path, sql: str = "SELECT coalesce(sum(last_pos - first_pos + 1), 0) FROM chunks") -> int:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return int(db.execute(sql).fetchone()[0])


async def test_records_and_cursors_survive_closing_and_reopening(tmp_path: Path) -> None:
    path = tmp_path / "bus.db"
    async with opened(path) as log:
        await log.append(records("high", 0, 10))
        await log.commit("g", {f"{PREFIX}.events.high": 4})
    async with opened(path) as log:
        assert log.ends == {f"{PREFIX}.events.high": 10}
        consumer = EmbeddedConsumer(log, group="g", max_records=100, fetch_max_wait_ms=50)
        await consumer.start()
        consumer.subscribe([f"{PREFIX}.events.high"])
        fetched = await consumer.getmany(timeout_ms=1000)
        await consumer.stop()
    messages = fetched[Partition(f"{PREFIX}.events.high", 0)]
    assert [m.offset for m in messages] == list(range(4, 10))
    assert [m.key for m in messages] == [f"high-{i}".encode() for i in range(4, 10)]


async def test_concurrent_appends_are_all_durable_with_contiguous_offsets(tmp_path: Path) -> None:
    path = tmp_path / "bus.db"
    async with opened(path) as log:
        await asyncio.gather(*(log.append(records("low", n * 50, 50)) for n in range(40)))
        assert log.ends == {f"{PREFIX}.events.low": 2000}
    assert count(path) == 2000
    # Every offset once: the chunks tile 0..1999 without gap or overlap.
    assert count(path, "SELECT count(DISTINCT first_pos) FROM chunks") == count(path, "SELECT count(*) FROM chunks")
    assert count(path, "SELECT min(first_pos) FROM chunks") == 0
    assert count(path, "SELECT max(last_pos) FROM chunks") == 1999


async def test_two_handles_on_one_file_never_reuse_an_offset(tmp_path: Path) -> None:
    path = tmp_path / "bus.db"
    async with opened(path) as one, opened(path) as two:
        await asyncio.gather(*(handle.append(records("medium", n * 20, 20))
                               for n in range(20) for handle in (one, two)))
    assert count(path) == 800
    assert count(path, "SELECT max(last_pos) + 1 FROM chunks") == 800
    assert count(path, "SELECT next_pos FROM topics") == 800


async def test_retention_waits_for_every_group_then_gives_the_space_back(tmp_path: Path) -> None:
    path = tmp_path / "bus.db"
    high, low = f"{PREFIX}.events.high", f"{PREFIX}.events.low"
    async with opened(path, groups=("a", "b")) as log:
        for n in range(20):
            await log.append(records("low", n * 500, 500) + records("high", n * 10, 10))
        # (The log's own maintenance may run a pass at any moment too: only the state is asserted.)
        await log.commit("a", {low: 10_000, high: 200})
        await log.apply_retention()
        assert await log.record_count() == 10_200  # group b has not passed anything yet
        await log.commit("b", {low: 6_000})
        await log.apply_retention()
        # b passed 6,000 low events and nothing of high: only those low ones go.
        assert await log.record_count() == 4_000 + 200
        await log.commit("b", {low: 10_000, high: 200})
        await log.apply_retention()
        assert await log.record_count() == 0
        await log.append(records("low", 10_000, 1))  # offsets go on after retention
        assert log.ends[low] == 10_001
    # ~10 MB were written: the segments that held them are gone, the index gave its pages back.
    assert [p.stat().st_size < 1024 * 1024 for p in segments.directory_for(path).glob("*.seg")] == [True]
    assert count(path, "PRAGMA freelist_count") == 0
    assert disk_usage(path) < 2 * 1024 * 1024


async def test_dead_letter_topics_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "bus.db"
    dlq = f"{PREFIX}.dlq.archive"
    async with opened(path, groups=("g",)) as log:
        await log.append([r._replace(topic=dlq) for r in records("high", 0, 3)])
        await log.commit("g", {dlq: 3})
        assert await log.apply_retention() == 0
        assert await log.record_count() == 3


async def test_a_closed_log_refuses_appends(tmp_path: Path) -> None:
    log = EmbeddedLog(tmp_path / "bus.db", prefix=PREFIX)
    with pytest.raises(BusUnavailable):
        await log.append(records("high", 0, 1))
    await log.open()
    await log.close()
    with pytest.raises(BusUnavailable):
        await log.append(records("high", 0, 1))


async def test_an_unusable_path_says_what_to_fix(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    log = EmbeddedLog(tmp_path / "file" / "bus.db", prefix=PREFIX)
    with pytest.raises(BusUnavailable, match="bus.path"):
        await log.open()
    assert not log.is_open


async def test_closing_during_a_retention_pass_still_finishes_it(tmp_path: Path) -> None:
    path = tmp_path / "bus.db"
    log = EmbeddedLog(path, prefix=PREFIX, retention_groups=("g",))
    await log.open()
    for n in range(25):
        await log.append(records("high", n * 10, 10, size=10))
    started, release = threading.Event(), threading.Event()
    retain_step = log._retain_step

    def held_step() -> tuple[int, int]:
        started.set()
        release.wait(30)
        return retain_step()

    log._retain_step = held_step  # type: ignore[method-assign]
    try:
        await log.commit("g", {f"{PREFIX}.events.high": 250})
        async with asyncio.timeout(30):
            while not started.is_set():  # the background pass has begun its first chunk
                await asyncio.sleep(0.01)
            closing = asyncio.create_task(log.close())
            while log._maintenance_task is not None:  # ... and `close` cancelled it there
                await asyncio.sleep(0.01)
    finally:
        release.set()
    await closing
    assert count(path) == 0


async def test_a_busy_topic_does_not_starve_the_others(tmp_path: Path) -> None:
    async with opened(tmp_path / "bus.db") as log:
        await log.append(records("medium", 0, 1000, size=10) + records("low", 0, 10, size=10))
        consumer = EmbeddedConsumer(log, group="g", max_records=100, fetch_max_wait_ms=50)
        await consumer.start()
        consumer.subscribe([f"{PREFIX}.events.medium", f"{PREFIX}.events.low"])
        seen: set[str] = set()
        for _ in range(3):  # 100 records per fetch, 1,000 medium ones queued
            fetched = await consumer.getmany(timeout_ms=100)
            seen.update(tp.topic for tp in fetched)
        await consumer.stop()
    assert f"{PREFIX}.events.low" in seen
