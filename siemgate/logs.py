"""Logging: one JSON object per line on stderr, secrets scrubbed, floods summarized.

Libraries (httpx, httpcore, uvicorn's access log ...) log at WARNING and above unless
`log_level: debug`; aiokafka not at all below CRITICAL (it logs every reconnect attempt at
ERROR: siemgate says it once, with advice). A WARNING or ERROR repeated word for word (a 401
flood, a sink that keeps failing) is written once per minute: the first one, then one line
"N more like this in the last 60 s" with the first line logged after the minute (or at exit).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Final, TextIO

import orjson

from siemgate.secrets import RedactingFilter, scrub

_STANDARD: Final = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "taskName", "color_message"}  # uvicorn's copy with terminal colours
)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info and record.exc_info[1] is not None:
            entry["error"] = scrub(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["error"] = record.exc_text
        # Scrub the whole line: a secret may sit in an `extra` field as well as the message.
        return scrub(orjson.dumps(entry, default=str).decode())


# Libraries quiet below WARNING unless log_level is debug (httpx logs every request at INFO).
LIBRARY_LOGGERS: Final = ("httpx", "httpcore", "uvicorn", "uvicorn.error", "uvicorn.access", "asyncio",
                          "tenacity", "hpack", "multipart")

# Identical WARNING/ERROR lines: one per this many seconds, then a count.
SUMMARY_SECONDS: Final = 60.0


class SummarizingHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes a WARNING or ERROR that repeats word for word (same logger, level and message)
    once per `window` seconds; the first line logged after the window (or the handler's
    close, at exit) comes with one line counting those left out. Lower levels pass untouched."""

    def __init__(self, stream: TextIO | None = None, *, window: float = SUMMARY_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(stream)
        self.window = window
        self._clock = clock
        # (logger, level, message) -> (window start, how many were left out since)
        self._seen: dict[tuple[str, int, str], tuple[float, int]] = {}

    def handle(self, record: logging.LogRecord) -> bool:
        # Threads log too (asyncio.to_thread): the handler's lock (reentrant) guards the counts.
        with self.lock:  # type: ignore[union-attr]
            now = self._clock()
            if self._seen:
                self._summarize(now)
            if record.levelno < logging.WARNING:
                return super().handle(record)
            key = (record.name, record.levelno, record.getMessage())
            seen = self._seen.get(key)
            if seen is not None:
                self._seen[key] = (seen[0], seen[1] + 1)
                return False
            self._seen[key] = (now, 0)
            return super().handle(record)

    def close(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._summarize(self._clock(), everything=True)
        super().close()

    def _summarize(self, now: float, *, everything: bool = False) -> None:
        for key, (start, left_out) in list(self._seen.items()):
            if now - start < self.window and not everything:
                continue
            del self._seen[key]
            if left_out:
                name, level, message = key
                summary = logging.LogRecord(name, level, __file__, 0, "%d more like this in the last %.0f s: %s",
                                            (left_out, now - start, message), None)
                summary.repeated = left_out
                super().handle(summary)


def configure(level: str = "info") -> None:
    handler = SummarizingHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    set_level(level)


def set_level(level: str) -> None:
    """siemgate's level; libraries at WARNING (aiokafka CRITICAL) unless it is debug. Hot reload
    calls this too."""
    logging.getLogger().setLevel(level.upper())
    debug = level == "debug"
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if debug else logging.WARNING)
    # aiokafka logs every reconnect attempt at ERROR: siemgate says it once, with advice.
    logging.getLogger("aiokafka").setLevel(logging.DEBUG if debug else logging.CRITICAL)
