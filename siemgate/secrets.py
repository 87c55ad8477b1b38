"""Secret values that never print: a repr, a log line or an error message shows `***`.

Every secret the config holds is registered with `redact`, so a log record that happens to
contain one (a URL with a password, an exception from a client library) is scrubbed too.
"""

from __future__ import annotations

import logging
import threading
from typing import Final

MASK: Final = "***"


class Secret:
    """A string that is only revealed on purpose (`reveal()`)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return f"Secret({MASK!r})"

    def __str__(self) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a Secret cannot be pickled")


class _Registry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: tuple[str, ...] = ()

    def add(self, value: str) -> None:
        # Very short values would redact ordinary words; they are weak secrets anyway.
        if len(value) < 4:
            return
        with self._lock:
            if value not in self._values:
                # Longest first, so that a secret containing another is masked whole.
                self._values = tuple(sorted({*self._values, value}, key=len, reverse=True))

    def scrub(self, text: str) -> str:
        for value in self._values:
            if value in text:
                text = text.replace(value, MASK)
        return text


_registry = _Registry()


def register(secret: Secret) -> None:
    """Remember a secret's value so that `scrub` and the log filter mask it."""
    _registry.add(secret.reveal())


def scrub(text: str) -> str:
    """Mask every registered secret value in `text`."""
    return _registry.scrub(text)


class RedactingFilter(logging.Filter):
    """Masks registered secrets in a record's message and exception text."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = scrub(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            text = scrub(f"{type(exc).__name__}: {exc}")
            if text != f"{type(exc).__name__}: {exc}":
                # Drop the traceback objects: they would print the raw message again.
                record.exc_info = None
                record.exc_text = text
        return True
