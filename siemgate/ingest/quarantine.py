"""Bodies that are not a JSON batch are answered 400 and kept here, so that nothing the
sender posted is lost: an operator can fix and replay them (`siemgate quarantine`,
`quarantine_cli.py`). Bounded: the oldest go first.

Each body is `<time>-<integration>-<id>.body` with a `.json` beside it (why, from whom, when,
`authenticated`; `resent` once sent on, with the keys of the records sent, per integration).
Written only after authentication succeeded, so strangers cannot fill the disk, and the
description says so: `siemgate quarantine replay` sends on no body whose description does not.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import orjson

from siemgate.private_files import private_dir, write_private

log = logging.getLogger("siemgate.ingest.quarantine")

# A charset name as a Content-Type may declare it (RFC 2978's characters), kept with a body.
_CHARSET = re.compile(r"[A-Za-z0-9!#$%&'+\-^_`{}~.]{1,40}")


class Quarantine:
    def __init__(self, path: str, max_bytes: int) -> None:
        self._dir = Path(path)
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        self._used: int | None = None

    async def save(self, *, integration: str, body: bytes, reason: str, peer: str, status: int,
                   authenticated: bool, charset: str | None = None) -> str | None:
        """Keep `body`; returns its id, or None when it could not be kept (logged).
        `authenticated`: whether the request passed the integration's auth (only such bodies
        may ever be replayed). `charset`: what the request's Content-Type declared, kept for the
        replay (a body that is not UTF-8 is read in it)."""
        return await asyncio.to_thread(self._save, integration, body, reason, peer, status, authenticated, charset)

    def _save(self, integration: str, body: bytes, reason: str, peer: str, status: int,
              authenticated: bool, charset: str | None = None) -> str | None:
        if len(body) > self._max_bytes:
            log.error(
                "body too large to quarantine; it is lost",
                extra={"integration": integration, "bytes": len(body), "max_bytes": self._max_bytes},
            )
            return None
        ident = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{integration}-{uuid.uuid4().hex[:12]}"
        description: dict[str, object] = {
            "integration": integration, "reason": reason, "peer": peer, "status": status,
            "bytes": len(body), "received_at": time.time(), "authenticated": authenticated}
        if charset and _CHARSET.fullmatch(charset):
            description["charset"] = charset
        meta = orjson.dumps(description)
        with self._lock:
            try:
                private_dir(self._dir)
                if self._used is None:
                    self._used = sum(p.stat().st_size for p in self._dir.iterdir() if p.is_file())
                self._make_room(len(body) + len(meta))
                _write(self._dir / f"{ident}.body", body)
                _write(self._dir / f"{ident}.json", meta)
                self._used += len(body) + len(meta)
            except OSError as exc:
                log.error("cannot quarantine a body; it is lost", extra={"integration": integration,
                                                                          "error": str(exc)})
                return None
        log.warning("quarantined a body that is not a JSON batch",
                    extra={"integration": integration, "id": ident, "reason": reason, "bytes": len(body)})
        return ident

    def _make_room(self, needed: int) -> None:
        assert self._used is not None
        if self._used + needed <= self._max_bytes:
            return
        files = sorted((p for p in self._dir.iterdir() if p.is_file()), key=lambda p: p.name)
        for path in files:
            if self._used + needed <= self._max_bytes:
                break
            size = path.stat().st_size
            path.unlink(missing_ok=True)
            self._used -= size
            log.warning("quarantine full: dropped the oldest body", extra={"file": path.name})


@dataclass(frozen=True, slots=True)
class Kept:
    """One quarantined body's description (its `.json`)."""

    id: str
    integration: str
    reason: str
    peer: str
    status: int
    bytes: int
    received_at: float
    # When and how it was sent on (`siemgate quarantine replay`), or None.
    resent: dict[str, object] | None
    # The request passed the integration's auth (False also when not recorded).
    authenticated: bool = False
    # The keys of the records sent on, per integration (replay is idempotent by event id).
    sent_keys: dict[str, list[str]] | None = None
    # The charset the request's Content-Type declared (None: none, or not recorded).
    charset: str | None = None


def kept_bodies(path: str) -> list[Kept]:
    """Every body kept under `path`, oldest first (a missing directory holds none)."""
    directory = Path(path)
    if not directory.is_dir():
        return []
    found = []
    for meta in sorted(directory.glob("*.json")):
        if meta.with_suffix(".body").is_file():
            kept = _kept(meta)
            if kept is not None:
                found.append(kept)
    return found


def kept_body(path: str, ident: str) -> tuple[Kept, bytes] | None:
    """The description and bytes of body `ident`, or None when there is no such body."""
    if not ident or Path(ident).name != ident or ident.startswith("."):
        return None
    meta = Path(path) / f"{ident}.json"
    try:
        body = (Path(path) / f"{ident}.body").read_bytes()
    except FileNotFoundError:
        return None
    kept = _kept(meta)
    return None if kept is None else (kept, body)


def mark_resent(path: str, ident: str, resent: dict[str, object], integration: str = "",
                keys: list[str] | None = None) -> None:
    """Note in body `ident`'s description that it was sent on, and the keys of the records
    sent for `integration` (added to those of earlier replays)."""
    meta = Path(path) / f"{ident}.json"
    document = orjson.loads(meta.read_bytes())
    document["resent"] = resent
    if keys:
        sent = document.get("sent_keys")
        sent = sent if isinstance(sent, dict) else {}
        earlier = sent.get(integration)
        known: list[object] = earlier if isinstance(earlier, list) else []
        seen = set(known)
        sent[integration] = [*known, *(key for key in keys if key not in seen)]
        document["sent_keys"] = sent
    _write(meta, orjson.dumps(document))


def _kept(meta: Path) -> Kept | None:
    try:
        document = orjson.loads(meta.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    if not isinstance(document, dict):
        return None
    resent = document.get("resent")
    return Kept(id=meta.stem, integration=str(document.get("integration", "")), reason=str(document.get("reason", "")),
                peer=str(document.get("peer", "")), status=int(document.get("status", 0) or 0),
                bytes=int(document.get("bytes", 0) or 0), received_at=float(document.get("received_at", 0) or 0),
                resent=resent if isinstance(resent, dict) else None,
                authenticated=document.get("authenticated") is True,
                sent_keys=_sent_keys(document.get("sent_keys")),
                charset=charset if isinstance(charset := document.get("charset"), str) and _CHARSET.fullmatch(charset)
                else None)


def _sent_keys(value: object) -> dict[str, list[str]] | None:
    if not isinstance(value, dict):
        return None
    return {str(name): [str(key) for key in keys] for name, keys in value.items() if isinstance(keys, list)}


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    write_private(tmp, data)  # 0600: a quarantined body holds events
    os.replace(tmp, path)
