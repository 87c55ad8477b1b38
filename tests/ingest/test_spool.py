"""The spool file on its own: order, deleting only what was acknowledged, size accounting,
group commit, checkpoints, reopening, and clear errors for a path it cannot use."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from siemgate.bus.spool import FILE_NAME, Spool, record_sizes
from siemgate.config import parse_config
from siemgate.errors import ConfigError, SpoolError, SpoolFull
from siemgate.record import Record, Severity, make_record
from tests.support import wait_until

pytestmark = pytest.mark.anyio


def records(n: int, *, batch: str = "b", severity: Severity = "high", pad: int = 0) -> list[Record]:
    return [
        make_record(prefix="p", event={"id": f"{batch}-{i}", "pad": "x" * pad}, kind="event", integration="appsec",
                    severity=severity, event_id=f"{batch}-{i}", received_at="2026-11-28T21:00:00Z",
                    batch=batch, seq=i, peer="127.0.0.1")
        for i in range(n)
    ]


async def opened(path: Path, max_bytes: int = 1 << 30, **kwargs: int) -> Spool:
    spool = Spool(path, max_bytes, **kwargs)
    await spool.open()
    return spool


async def test_records_come_back_whole_and_in_arrival_order(tmp_path: Path) -> None:
    spool = await opened(tmp_path / "spool")
    first, second = records(3, batch="a"), records(2, batch="b", severity="low")
    await spool.append(first)
    await spool.append(second)
    read = await spool.read(100, 1 << 20)
    await spool.close()
    assert [record for _, record in read] == first + second
    ids = [row_id for row_id, _ in read]
    assert ids == sorted(ids)
    assert read[0][1].headers == [("kind", b"event"), ("severity", b"high"), ("integration", b"appsec")]
    assert (tmp_path / "spool" / FILE_NAME).exists()


async def test_read_respects_the_record_and_byte_limits(tmp_path: Path) -> None:
    spool = await opened(tmp_path)
    batch = records(10, pad=1000)
    await spool.append(batch)
    assert len(await spool.read(4, 1 << 20)) == 4
    size = record_sizes(batch)[0]
    assert len(await spool.read(100, 3 * size)) == 3
    assert len(await spool.read(100, 1)) == 1  # a record larger than the limit still comes alone
    await spool.close()


async def test_delete_through_removes_only_the_acknowledged_rows(tmp_path: Path) -> None:
    spool = await opened(tmp_path)
    await spool.append(records(5, batch="a"))
    chunk = await spool.read(3, 1 << 20)
    await spool.append(records(2, batch="late"))  # arrives while the chunk is "on its way to Kafka"
    await spool.delete_through(chunk[-1][0])
    rest = await spool.read(100, 1 << 20)
    assert [r.key for _, r in rest] == [b"a-3", b"a-4", b"late-0", b"late-1"]
    assert spool.events == 4
    await spool.close()


async def test_size_accounting_survives_reopening(tmp_path: Path) -> None:
    spool = await opened(tmp_path)
    a, b = records(7, batch="a", pad=100), records(3, batch="b", pad=5000)
    await spool.append(a)
    await spool.append(b)
    expected = sum(len(r.key) + len(r.value) + sum(len(n) + len(v) for n, v in r.headers) for r in a + b)
    assert (spool.events, spool.bytes) == (10, expected)
    chunk = await spool.read(7, 1 << 20)
    await spool.delete_through(chunk[-1][0])
    assert (spool.events, spool.bytes) == (3, sum(record_sizes(b)))
    await spool.close()
    assert not spool.is_open

    again = await opened(tmp_path)
    assert (again.events, again.bytes) == (3, sum(record_sizes(b)))
    assert [r for _, r in await again.read(100, 1 << 20)] == b
    await again.append(records(1, batch="c"))
    assert again.events == 4
    await again.close()


async def test_full_spool_refuses_and_keeps_what_it_has(tmp_path: Path) -> None:
    batch = records(5, pad=200)
    size = sum(record_sizes(batch))
    spool = await opened(tmp_path, max_bytes=2 * size + size // 2)
    await spool.append(batch)
    await spool.append(records(5, batch="second", pad=200))
    assert spool.accepts_writes
    with pytest.raises(SpoolFull, match="spool is full"):
        await spool.append(records(5, batch="third", pad=200))
    assert not spool.accepts_writes
    assert spool.events == 10
    chunk = await spool.read(5, 1 << 20)
    await spool.delete_through(chunk[-1][0])
    assert spool.accepts_writes  # space was freed
    await spool.append(records(5, batch="third", pad=200))
    assert [r.key for _, r in await spool.read(100, 1 << 20)][-1] == b"third-4"
    await spool.close()


async def test_a_batch_larger_than_the_spool_is_refused_without_marking_it_full(tmp_path: Path) -> None:
    spool = await opened(tmp_path, max_bytes=2048)
    with pytest.raises(SpoolFull, match="larger than the whole spool"):
        await spool.append(records(5, pad=1000))
    assert spool.accepts_writes and spool.events == 0
    await spool.close()


async def test_concurrent_appends_share_transactions(tmp_path: Path) -> None:
    spool = await opened(tmp_path)
    batches = [records(20, batch=f"b{n}") for n in range(50)]
    await asyncio.gather(*(spool.append(batch) for batch in batches))
    assert spool.events == 1000
    assert spool.commits < 50 / 2, f"{spool.commits} transactions for 50 concurrent appends"
    # Each batch's records stay together and in order.
    keys = [r.key.decode() for _, r in await spool.read(2000, 1 << 30)]
    for batch in batches:
        start = keys.index(batch[0].key.decode())
        assert keys[start:start + 20] == [r.key.decode() for r in batch]
    await spool.close()


async def test_appends_arriving_during_a_transaction_are_written_together_in_the_next(tmp_path: Path) -> None:
    spool = await opened(tmp_path)
    gate = threading.Event()
    blocker = asyncio.ensure_future(spool.engine.call(gate.wait))  # the SQLite thread is busy
    first = asyncio.ensure_future(spool.append(records(5, batch="first")))
    await wait_until(lambda: spool.writing and not spool.engine.queued, "the writer to take the first append")
    later = [asyncio.ensure_future(spool.append(records(5, batch=f"later{n}"))) for n in range(10)]
    await wait_until(lambda: spool.engine.queued == 10, "the later appends to queue")
    gate.set()
    await asyncio.gather(blocker, first, *later)
    assert spool.commits == 2  # the first, then the ten later ones in one transaction
    assert spool.events == 55
    await spool.close()


async def test_sqlite_runs_on_one_thread_off_the_event_loop(tmp_path: Path) -> None:
    spool = await opened(tmp_path)
    await spool.append(records(1))
    threads = set()
    for _ in range(3):
        threads.add(await spool.engine.call(threading.get_ident))
    assert len(threads) == 1
    assert threading.get_ident() not in threads
    await spool.close()


async def test_wal_is_checkpointed_between_transactions_and_truncated_at_close(tmp_path: Path) -> None:
    spool = await opened(tmp_path, checkpoint_bytes=64 * 1024)
    for n in range(20):
        await spool.append(records(10, batch=f"b{n}", pad=2000))
    assert spool.checkpoints >= 3

    def pragma(name: str) -> object:
        return spool.engine.connection.execute(f"PRAGMA {name}").fetchone()[0]

    autocheckpoint = await spool.engine.call(pragma, "wal_autocheckpoint")
    synchronous = await spool.engine.call(pragma, "synchronous")
    assert (autocheckpoint, synchronous) == (0, 2)  # off; FULL
    await spool.close()
    wal = tmp_path / (FILE_NAME + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0


async def test_a_second_process_cannot_open_the_same_spool(tmp_path: Path) -> None:
    spool = await opened(tmp_path)
    other = Spool(tmp_path, 1 << 30)
    with pytest.raises(SpoolError, match="in use by another siemgate process"):
        await other.open()
    await spool.close()
    await other.open()  # released at close
    await other.close()


async def test_damaged_file_is_a_clear_error_and_left_in_place(tmp_path: Path) -> None:
    (tmp_path / FILE_NAME).write_bytes(b"this is not SQLite " * 100)
    with pytest.raises(SpoolError, match="damaged.*move the file aside") as caught:
        await Spool(tmp_path, 1 << 30).open()
    assert str(tmp_path / FILE_NAME) in str(caught.value)
    assert (tmp_path / FILE_NAME).read_bytes().startswith(b"this is not SQLite")


async def test_unusable_path_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(SpoolError, match="cannot use the spool directory .*bus.spool.path"):
        await Spool(blocker / "spool", 1 << 30).open()


async def test_write_error_fails_the_append_and_keeps_earlier_records(tmp_path: Path) -> None:
    spool = await opened(tmp_path)
    await spool.append(records(3, batch="kept"))
    # Simulate a full disk: SQLite may not grow the file any further.
    await spool.engine.call(lambda: spool.engine.connection.execute("PRAGMA max_page_count = 1").fetchone())
    with pytest.raises(SpoolError, match="disk is full"):
        await spool.append(records(50, batch="lost", pad=4000))
    assert not spool.accepts_writes
    assert spool.events == 3
    assert [r.key for _, r in await spool.read(100, 1 << 20)] == [b"kept-0", b"kept-1", b"kept-2"]
    await spool.close()


async def test_closed_spool_refuses(tmp_path: Path) -> None:
    spool = await opened(tmp_path)
    await spool.close()
    with pytest.raises(SpoolError, match="closed"):
        await spool.append(records(1))
    assert not spool.accepts_writes


async def test_the_file_is_plain_sqlite_for_an_operator(tmp_path: Path) -> None:
    spool = await opened(tmp_path)
    await spool.append(records(2))
    await spool.close()
    with sqlite3.connect(tmp_path / FILE_NAME) as db:
        assert db.execute("SELECT COUNT(*) FROM records").fetchone() == (2,)


@pytest.mark.parametrize(
    ("spool", "error"),
    [
        ("{ack_deadline_seconds: 0}", "bus.spool.ack_deadline_seconds: must be more than 0"),
        ("{max_bytes: 10}", "bus.spool.max_bytes: must be at least 1024"),
        ("{ack_deadline: 2}", "ack_deadline"),
    ],
)
def test_spool_config_is_checked(spool: str, error: str) -> None:
    text = f"bus: {{type: kafka, kafka: {{bootstrap_servers: 'k:9092'}}, spool: {spool}}}"
    with pytest.raises(ConfigError, match=error):
        parse_config(text, {})


def test_spool_config_defaults() -> None:
    config = parse_config("bus: {type: kafka, kafka: {bootstrap_servers: 'k:9092'}}", {})
    assert (config.bus.spool.path, config.bus.spool.max_bytes, config.bus.spool.ack_deadline_seconds) == (
        "./data/spool", 10 * 1024**3, 2.0)
