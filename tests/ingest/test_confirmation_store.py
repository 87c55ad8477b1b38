from __future__ import annotations

import asyncio
import json
import os
import stat
from pathlib import Path

import pytest

from siemgate.errors import ConfirmationStateError
from siemgate.ingest.confirmation_store import ConfirmationStore, PendingConfirmation

pytestmark = pytest.mark.anyio

LINK = "https://appsec.vendor.example/confirm?token=one"
NEWER = "https://appsec.vendor.example/confirm?token=two"
AT = "2026-11-28T21:00:00.000000Z"


def reopened(directory: Path) -> ConfirmationStore:
    """A fresh store on the same directory: what the process sees after a restart."""
    store = ConfirmationStore(str(directory))
    store.load_sync()
    return store


async def test_empty_state(tmp_path: Path) -> None:
    store = ConfirmationStore(str(tmp_path / "state"))
    await store.load()
    assert store.state("appsec") is None
    assert store.pending() == []
    assert store.entries() == []


async def test_link_survives_a_restart(tmp_path: Path) -> None:
    store = ConfirmationStore(str(tmp_path / "state"))
    await store.load()
    assert await store.record_link("appsec", LINK, AT) is True
    assert store.state("appsec") == "pending"

    after = ConfirmationStore(str(tmp_path / "state"))
    await after.load()
    assert after.state("appsec") == "pending"
    assert after.pending() == [PendingConfirmation("appsec", LINK, AT, None)]


async def test_same_link_again_is_not_new(tmp_path: Path) -> None:
    store = ConfirmationStore(str(tmp_path))
    assert await store.record_link("appsec", LINK, AT) is True
    assert await store.record_link("appsec", LINK, "2026-11-29T00:00:00Z") is False
    assert store.pending()[0].received_at == AT


async def test_confirm_then_new_link_makes_it_pending_again(tmp_path: Path) -> None:
    store = ConfirmationStore(str(tmp_path))
    await store.record_link("appsec", LINK, AT)
    await store.record_failure("appsec", LINK, "timed out")
    assert store.pending()[0].last_error == "timed out"

    assert await store.mark_confirmed("appsec", LINK, "auto") is True
    assert store.state("appsec") == "confirmed"
    assert store.pending() == []
    entry = reopened(tmp_path).entry("appsec")
    assert entry is not None
    assert (entry.state, entry.confirmed_via, entry.last_error) == ("confirmed", "auto", None)
    assert entry.confirmed_at is not None

    # The same link again (a retried webhook) leaves it confirmed ...
    assert await store.record_link("appsec", LINK, AT) is False
    assert store.state("appsec") == "confirmed"
    # ... a new one (the integration was re-added) needs confirming again.
    assert await store.record_link("appsec", NEWER, "2026-11-30T00:00:00Z") is True
    assert store.state("appsec") == "pending"
    assert reopened(tmp_path).pending() == [PendingConfirmation("appsec", NEWER, "2026-11-30T00:00:00Z", None)]


async def test_stale_link_neither_confirms_nor_fails_a_newer_one(tmp_path: Path) -> None:
    store = ConfirmationStore(str(tmp_path))
    await store.record_link("appsec", LINK, AT)
    await store.record_link("appsec", NEWER, AT)
    assert await store.mark_confirmed("appsec", LINK, "cli") is False
    assert await store.record_failure("appsec", LINK, "HTTP 410") is False
    assert store.pending() == [PendingConfirmation("appsec", NEWER, AT, None)]
    assert await store.mark_confirmed("unknown", LINK, "admin") is False


async def test_integrations_are_independent_and_listed_in_order(tmp_path: Path) -> None:
    store = ConfirmationStore(str(tmp_path))
    await store.record_link("b-int", LINK, AT)
    await store.record_link("a-int", NEWER, AT)
    await store.mark_confirmed("b-int", LINK, "admin")
    assert [(e.integration, e.state) for e in store.entries()] == [("a-int", "pending"), ("b-int", "confirmed")]
    assert [p.integration for p in store.pending()] == ["a-int"]


async def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    store = ConfirmationStore(str(tmp_path))
    names = [f"int-{i}" for i in range(20)]
    results = await asyncio.gather(*(store.record_link(name, f"{LINK}-{name}", AT) for name in names))
    assert all(results)
    assert sorted(e.integration for e in reopened(tmp_path).entries()) == sorted(names)


async def test_another_process_writes_are_not_clobbered(tmp_path: Path) -> None:
    # The ingest and `siemgate confirm` are two processes with two caches of one file.
    ingest = ConfirmationStore(str(tmp_path))
    await ingest.load()
    await ingest.record_link("appsec", LINK, AT)

    cli = reopened(tmp_path)
    assert await cli.mark_confirmed("appsec", LINK, "cli") is True

    # The ingest's cache is stale, but its next write starts from the file.
    await ingest.record_link("other", NEWER, AT)
    assert ingest.state("appsec") == "confirmed"
    assert reopened(tmp_path).state("appsec") == "confirmed"


async def test_file_is_private_versioned_json(tmp_path: Path) -> None:
    store = ConfirmationStore(str(tmp_path))
    await store.record_link("appsec", LINK, AT)
    path = tmp_path / "confirmations.json"
    assert store.path == path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    document = json.loads(path.read_text())
    assert document["version"] == 1
    assert document["integrations"]["appsec"]["url"] == LINK
    assert document["integrations"]["appsec"]["state"] == "pending"


async def test_failed_write_leaves_the_previous_state_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ConfirmationStore(str(tmp_path))
    await store.record_link("appsec", LINK, AT)
    before = (tmp_path / "confirmations.json").read_bytes()

    def failing_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(ConfirmationStateError, match="No space left"):
        await store.mark_confirmed("appsec", LINK, "cli")
    monkeypatch.undo()

    assert (tmp_path / "confirmations.json").read_bytes() == before
    # No temporary file is left behind.
    assert sorted(os.listdir(tmp_path)) == ["confirmations.json", "confirmations.json.lock"]
    assert reopened(tmp_path).state("appsec") == "pending"
    assert store.state("appsec") == "pending"


async def test_write_is_fsynced_before_the_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        calls.append("fsync")
        real_fsync(fd)

    def replace(src: str, dst: str) -> None:
        calls.append("replace")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    await ConfirmationStore(str(tmp_path)).record_link("appsec", LINK, AT)
    # The file's data, the rename, then the directory entry.
    assert calls == ["fsync", "replace", "fsync"]


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "[]",
        '{"version": 2, "integrations": {}}',
        '{"version": 1, "integrations": {"a": {"state": "maybe", "url": "x", "received_at": "y"}}}',
        '{"version": 1, "integrations": {"a": {"state": "pending", "received_at": "y"}}}',
    ],
)
async def test_corrupt_file_is_reported_not_overwritten(tmp_path: Path, content: str) -> None:
    path = tmp_path / "confirmations.json"
    path.write_text(content)
    store = ConfirmationStore(str(tmp_path))
    with pytest.raises(ConfirmationStateError, match="confirmations.json"):
        await store.load()
    with pytest.raises(ConfirmationStateError):
        await store.record_link("appsec", LINK, AT)
    assert path.read_text() == content


def test_sync_read_path(tmp_path: Path) -> None:
    # What a CLI command uses, without an event loop.
    asyncio.run(ConfirmationStore(str(tmp_path)).record_link("appsec", LINK, AT))
    assert reopened(tmp_path).pending() == [PendingConfirmation("appsec", LINK, AT, None)]
