"""The file sink: NDJSON of the normalized view, fsync policy, rotation."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest

from siemgate.errors import RetryableSinkError
from siemgate.forwarders.normalize import NormalizedEvent, Normalizer
from siemgate.forwarders.sinks.file import FileSink, FileSinkSettings
from siemgate.record import make_record

pytestmark = pytest.mark.anyio


def events(n: int, start: int = 0) -> list[NormalizedEvent]:
    normalizer = Normalizer()
    return [
        normalizer.normalize(make_record(
            prefix="p", event={"id": f"e-{i}", "pad": "x" * 200, "source_ip": "192.0.2.9"}, kind="event",
            integration="appsec", severity="medium", event_id=f"e-{i}", received_at="2026-11-28T21:00:00.000000Z",
            batch="b", seq=i, peer="127.0.0.1").value)
        for i in range(start, start + n)
    ]


async def test_writes_the_normalized_view(tmp_path: Path) -> None:
    sink = FileSink(FileSinkSettings(name="archive", path=str(tmp_path / "out" / "events.ndjson")))
    result = await sink.send(events(3))
    await sink.close()
    await sink.close()  # idempotent
    assert not result.retry and not result.rejected
    lines = [orjson.loads(line) for line in (tmp_path / "out" / "events.ndjson").read_bytes().splitlines()]
    assert [line["id"] for line in lines] == ["e-0", "e-1", "e-2"]
    assert lines[0]["severity"] == "medium" and lines[0]["source_ip"] == "192.0.2.9"
    assert lines[0]["event"] == {"id": "e-0", "pad": "x" * 200, "source_ip": "192.0.2.9"}
    assert lines[0]["timestamp"] == "2026-11-28T21:00:00.000000Z"


async def test_rotation_keeps_the_configured_number_of_files(tmp_path: Path) -> None:
    path = tmp_path / "events.ndjson"
    sink = FileSink(FileSinkSettings(name="archive", path=str(path), rotate_bytes=2048, keep=2, fsync="never"))
    for batch in range(6):
        await sink.send(events(4, start=batch * 4))
    await sink.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["events.ndjson", "events.ndjson.1", "events.ndjson.2"] or files == [
        "events.ndjson.1", "events.ndjson.2"]
    newest = (tmp_path / "events.ndjson.1").read_bytes().splitlines()
    older = (tmp_path / "events.ndjson.2").read_bytes().splitlines()
    number = lambda line: int(orjson.loads(line)["id"].split("-")[1])  # noqa: E731
    assert number(older[-1]) < number(newest[0])
    # The last batches are kept, the oldest went.
    kept = [orjson.loads(line)["id"] for name in files for line in (tmp_path / name).read_bytes().splitlines()]
    assert "e-23" in kept and "e-0" not in kept


async def test_an_unwritable_path_is_retryable(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a directory should be")
    sink = FileSink(FileSinkSettings(name="archive", path=str(blocker / "events.ndjson")))
    with pytest.raises(RetryableSinkError, match="cannot write"):
        await sink.send(events(1))
    with pytest.raises(RetryableSinkError, match="not writable"):
        await sink.healthcheck()
    blocker.unlink()
    assert (await sink.send(events(1))).rejected == ()
    assert "is writable" in await sink.healthcheck()
    await sink.close()


async def test_a_full_disk_is_retryable_and_leaves_no_half_line(tmp_path: Path) -> None:
    """ENOSPC mid-batch: RetryableSinkError, the file cut back to the last whole batch, and
    the retry (once space is back) appends whole lines."""
    from tests.faults.harness import SmallDisk

    reason = SmallDisk.unavailable_reason()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    disk = SmallDisk(tmp_path / "disk", 1024 * 1024)
    disk.mount()
    try:
        path = disk.path / "events.ndjson"
        sink = FileSink(FileSinkSettings(name="archive", path=str(path)))
        await sink.send(events(5))
        disk.fill(leave_bytes=700)  # room for part of the next batch only
        with pytest.raises(RetryableSinkError, match="No space left"):
            await sink.send(events(10, start=5))
        lines = path.read_bytes().splitlines(keepends=True)
        assert [orjson.loads(line)["id"] for line in lines] == [f"e-{i}" for i in range(5)]
        assert lines[-1].endswith(b"\n")
        disk.free()
        await sink.send(events(10, start=5))
        await sink.close()
        ids = [orjson.loads(line)["id"] for line in path.read_bytes().splitlines()]
        assert ids == [f"e-{i}" for i in range(15)]
    finally:
        disk.unmount()


@pytest.mark.parametrize("torn", [b'{"id":"e-torn","pad":"xx', b"x" * 200_000], ids=["short", "longer-than-a-read"])
@pytest.mark.parametrize("whole_lines", [0, 2])
async def test_a_line_torn_by_a_crash_is_cut_before_the_next_batch(
        tmp_path: Path, torn: bytes, whole_lines: int) -> None:
    """A crash in the middle of a batch's write leaves its last line without a line break. The
    batch was never reported delivered and comes again: the sink, opening the file, cuts it
    back to its last whole line, so the next batch does not continue the torn line."""
    path = tmp_path / "events.ndjson"
    before = FileSink(FileSinkSettings(name="archive", path=str(path)))
    await before.send(events(whole_lines))
    await before.close()
    with open(path, "ab") as handle:
        handle.write(torn)
    after = FileSink(FileSinkSettings(name="archive", path=str(path)))
    await after.send(events(3, start=whole_lines))
    await after.close()
    data = path.read_bytes()
    assert data.endswith(b"\n") and torn not in data
    assert [orjson.loads(line)["id"] for line in data.splitlines()] == [f"e-{i}" for i in range(whole_lines + 3)]


async def test_a_file_ending_in_a_whole_line_is_left_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "events.ndjson"
    path.write_bytes(b'{"written":"by a reader\'s test"}\n')
    sink = FileSink(FileSinkSettings(name="archive", path=str(path)))
    await sink.send(events(1))
    await sink.close()
    assert path.read_bytes().splitlines()[0] == b'{"written":"by a reader\'s test"}'
    assert len(path.read_bytes().splitlines()) == 2
