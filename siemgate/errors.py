"""The exception types siemgate raises, each with a message that tells the operator what to do.

    SiemgateError
    ├── ConfigError          the config file is wrong: which key, and what to write instead
    └── BusError
        ├── BusUnavailable   the bus did not acknowledge: the batch is not durable
        ├── RecordTooLarge   one event is larger than the bus accepts
        └── CommitRefused    a consumer's offsets were not committed (the group moved on)
"""

from __future__ import annotations


class SiemgateError(Exception):
    """Base of every error siemgate raises on purpose."""


class ConfigError(SiemgateError):
    """A config value is missing, unknown or invalid. `path` is the key path, e.g. `sinks[0].url`."""

    def __init__(self, path: str, reason: str, *, source: str | None = None) -> None:
        self.path = path
        self.reason = reason
        self.source = source
        super().__init__(str(self))

    def with_source(self, source: str) -> ConfigError:
        return ConfigError(self.path, self.reason, source=source)

    def __str__(self) -> str:
        where = f"{self.source}: " if self.source else ""
        return f"{where}{self.path}: {self.reason}" if self.path else f"{where}{self.reason}"


class BusError(SiemgateError):
    """A failure of the event bus (Kafka or the embedded log)."""


class BusUnavailable(BusError):
    """The bus did not acknowledge the records in time: nothing may be reported as durable."""


class RecordTooLarge(BusError):
    """One event is larger than the bus accepts (Kafka's message.max.bytes / max_request_bytes)."""


class CommitRefused(BusError):
    """The bus refused a consumer's commit (its group was rebalanced): the records are read
    again by their new owner, so they are delivered twice, never lost."""
