"""Bodies that are not a JSON batch are answered 400 and kept here, so that nothing the
sender posted is lost: an operator can fix and replay them. Bounded: the oldest go first.

Each body is `<time>-<integration>-<id>.body` with a `.json` beside it (why, from whom, when).
Written only after authentication succeeded, so strangers cannot fill the disk.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import uuid
from pathlib import Path

import orjson

log = logging.getLogger("siemgate.ingest.quarantine")


class Quarantine:
    def __init__(self, path: str, max_bytes: int) -> None:
        self._dir = Path(path)
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        self._used: int | None = None

    async def save(self, *, integration: str, body: bytes, reason: str, peer: str, status: int) -> str | None:
        """Keep `body`; returns its id, or None when it could not be kept (logged)."""
        return await asyncio.to_thread(self._save, integration, body, reason, peer, status)

    def _save(self, integration: str, body: bytes, reason: str, peer: str, status: int) -> str | None:
        if len(body) > self._max_bytes:
            log.error(
                "body too large to quarantine; it is lost",
                extra={"integration": integration, "bytes": len(body), "max_bytes": self._max_bytes},
            )
            return None
        ident = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{integration}-{uuid.uuid4().hex[:12]}"
        meta = orjson.dumps(
            {"integration": integration, "reason": reason, "peer": peer, "status": status,
             "bytes": len(body), "received_at": time.time()}
        )
        with self._lock:
            try:
                self._dir.mkdir(parents=True, exist_ok=True)
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


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
