"""Logging: one JSON object per line on stderr, secrets scrubbed."""

from __future__ import annotations

import logging
import sys
import time
from typing import Final

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


def configure(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiokafka logs every reconnect attempt at ERROR: siemgate says it once, with advice.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL if level != "debug" else logging.DEBUG)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
