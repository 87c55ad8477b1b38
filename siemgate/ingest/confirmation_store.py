"""Durable confirmation state per integration: the last link received and whether it was requested.

The vendor sends the confirmation link once and never again, so the link must survive a
restart until someone requests it. State lives in `<state_dir>/confirmations.json`:

    {"version": 1, "integrations": {"appsec-prod": {
        "state": "pending", "url": "https://...", "received_at": "2026-11-28T21:00:00Z",
        "confirmed_at": null, "confirmed_via": null, "last_error": null, "last_attempt_at": null}}}

The file is small and written rarely (once per confirmation message or attempt). Every write
is a read-modify-write of the file under an advisory lock (`confirmations.json.lock`), because
two processes share it: the running ingest records links, while `siemgate confirm` marks them
confirmed. Each write goes to a temporary file that is fsync'd and renamed over the old one, so
a crash leaves either the old or the new state, never a torn file. The file is created 0600:
a confirmation link is a capability that activates the integration.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, Literal

from siemgate.errors import ConfirmationStateError
from siemgate.private_files import open_private, private_dir

FILE_NAME: Final = "confirmations.json"
_VERSION: Final = 1

State = Literal["pending", "confirmed"]
Via = Literal["auto", "cli", "admin"]


@dataclass(frozen=True, slots=True)
class PendingConfirmation:
    """A confirmation link that was received and not (successfully) requested yet."""

    integration: str
    url: str
    received_at: str
    last_error: str | None


@dataclass(frozen=True, slots=True)
class ConfirmationEntry:
    """Everything recorded about one integration's confirmation."""

    integration: str
    state: State
    url: str
    received_at: str
    confirmed_at: str | None = None
    confirmed_via: Via | None = None
    last_error: str | None = None
    last_attempt_at: str | None = None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


Mutation = Callable[[dict[str, ConfirmationEntry]], bool]


class ConfirmationStore:
    """Confirmation state of every integration, cached in memory and persisted to one JSON file.

    Reads (`state`, `pending`, `entries`) answer from memory: call `load()` (or `load_sync()`)
    first, and again to see changes made by another process. Writes are async, serialised
    by an asyncio.Lock within the process and a file lock across processes, and run in a
    thread so that the event loop never waits on the disk.
    """

    def __init__(self, state_dir: str) -> None:
        self._dir = Path(state_dir)
        self._path = self._dir / FILE_NAME
        self._lock_path = self._dir / (FILE_NAME + ".lock")
        self._entries: dict[str, ConfirmationEntry] = {}
        self._write_lock = asyncio.Lock()

    @property
    def path(self) -> Path:
        return self._path

    async def load(self) -> None:
        """(Re)read the file; a missing file is an empty state."""
        await asyncio.to_thread(self.load_sync)

    def load_sync(self) -> None:
        """The same as `load`, for synchronous callers such as a CLI command."""
        self._entries = _read(self._path)

    def state(self, integration: str) -> State | None:
        entry = self._entries.get(integration)
        return entry.state if entry else None

    def entry(self, integration: str) -> ConfirmationEntry | None:
        return self._entries.get(integration)

    def entries(self) -> list[ConfirmationEntry]:
        return [self._entries[name] for name in sorted(self._entries)]

    def pending(self) -> list[PendingConfirmation]:
        return [
            PendingConfirmation(e.integration, e.url, e.received_at, e.last_error)
            for e in self.entries()
            if e.state == "pending"
        ]

    async def record_link(self, integration: str, url: str, received_at: str) -> bool:
        """Remember a confirmation link. True if it is new; the same link again changes nothing.

        A new link makes the integration pending even if it was confirmed: the vendor only
        sends one when the integration is (re)added, and it stays pending until requested."""

        def mutate(entries: dict[str, ConfirmationEntry]) -> bool:
            current = entries.get(integration)
            if current is not None and current.url == url:
                return False
            entries[integration] = ConfirmationEntry(
                integration=integration, state="pending", url=url, received_at=received_at
            )
            return True

        return await self._write(mutate)

    async def mark_confirmed(self, integration: str, url: str, via: Via) -> bool:
        """Record that `url` was requested successfully. False (and nothing changes) when
        the integration's current link is another one: a newer link still needs requesting."""
        at = _now()

        def mutate(entries: dict[str, ConfirmationEntry]) -> bool:
            current = entries.get(integration)
            if current is None or current.url != url:
                return False
            entries[integration] = dataclasses.replace(
                current, state="confirmed", confirmed_at=at, confirmed_via=via, last_error=None, last_attempt_at=at
            )
            return True

        return await self._write(mutate)

    async def record_failure(self, integration: str, url: str, reason: str) -> bool:
        """Record why requesting `url` failed. False when `url` is no longer the current link."""
        at = _now()

        def mutate(entries: dict[str, ConfirmationEntry]) -> bool:
            current = entries.get(integration)
            if current is None or current.url != url:
                return False
            entries[integration] = dataclasses.replace(current, last_error=reason, last_attempt_at=at)
            return True

        return await self._write(mutate)

    async def _write(self, mutate: Mutation) -> bool:
        async with self._write_lock:
            changed, entries = await asyncio.to_thread(self._write_sync, mutate)
            self._entries = entries
            return changed

    def _write_sync(self, mutate: Mutation) -> tuple[bool, dict[str, ConfirmationEntry]]:
        try:
            private_dir(self._dir)
        except OSError as exc:
            raise ConfirmationStateError(f"{self._dir}: cannot create the state directory: {exc}") from None
        with self._file_lock():
            # Re-read under the lock: another process may have written since our last load.
            entries = _read(self._path)
            changed = mutate(entries)
            if changed:
                _write_atomically(self._path, _encode(entries))
            return changed, entries

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        try:
            fd = open_private(self._lock_path, os.O_RDWR | os.O_CREAT)
        except OSError as exc:
            raise ConfirmationStateError(f"{self._lock_path}: cannot open the lock file: {exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            # Closing the descriptor releases the lock.
            os.close(fd)


def _read(path: Path) -> dict[str, ConfirmationEntry]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfirmationStateError(f"{path}: cannot read: {exc}") from None
    try:
        return _decode(json.loads(text))
    except (ValueError, TypeError, KeyError) as exc:
        raise ConfirmationStateError(
            f"{path}: not a valid confirmation state file ({exc}); move it aside to start afresh"
        ) from None


def _decode(data: object) -> dict[str, ConfirmationEntry]:
    if not isinstance(data, dict) or data.get("version") != _VERSION:
        raise ValueError(f"expected an object with version {_VERSION}")
    integrations = data.get("integrations")
    if not isinstance(integrations, dict):
        raise ValueError("'integrations' must be an object")
    entries: dict[str, ConfirmationEntry] = {}
    for name, raw in integrations.items():
        if not isinstance(raw, dict):
            raise ValueError(f"integration {name!r} must be an object")
        if raw.get("state") not in ("pending", "confirmed"):
            raise ValueError(f"integration {name!r} has an invalid state {raw.get('state')!r}")
        if raw.get("confirmed_via") not in (None, "auto", "cli", "admin"):
            raise ValueError(f"integration {name!r} has an invalid confirmed_via")
        for key in ("url", "received_at"):
            if not isinstance(raw.get(key), str):
                raise ValueError(f"integration {name!r} needs a string {key!r}")
        for key in ("confirmed_at", "last_error", "last_attempt_at"):
            if raw.get(key) is not None and not isinstance(raw.get(key), str):
                raise ValueError(f"integration {name!r}: {key!r} must be a string or null")
        entries[name] = ConfirmationEntry(
            integration=name,
            state=raw["state"],
            url=raw["url"],
            received_at=raw["received_at"],
            confirmed_at=raw.get("confirmed_at"),
            confirmed_via=raw.get("confirmed_via"),
            last_error=raw.get("last_error"),
            last_attempt_at=raw.get("last_attempt_at"),
        )
    return entries


def _encode(entries: dict[str, ConfirmationEntry]) -> bytes:
    document = {
        "version": _VERSION,
        "integrations": {
            name: {
                "state": e.state,
                "url": e.url,
                "received_at": e.received_at,
                "confirmed_at": e.confirmed_at,
                "confirmed_via": e.confirmed_via,
                "last_error": e.last_error,
                "last_attempt_at": e.last_attempt_at,
            }
            for name, e in sorted(entries.items())
        },
    }
    return (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def _write_atomically(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that a crash at any point leaves the old or the new content."""
    try:
        # mkstemp creates the file 0600, in the same directory so that the rename is atomic.
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise ConfirmationStateError(f"{path}: cannot write: {exc}") from None
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        if isinstance(exc, OSError):
            raise ConfirmationStateError(f"{path}: cannot write: {exc}") from None
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    # The rename is only durable once the directory entry is; not every platform allows it.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)
