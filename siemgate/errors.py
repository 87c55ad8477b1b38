"""Every exception siemgate raises, in one module; each message tells the operator what to do.

    SiemgateError
    ├── ConfigError                 the config file is wrong: which key, and what to write instead
    ├── ReloadFailed                a part of the process could not apply a valid new config
    ├── BusError                    the event bus (Kafka, the embedded log, the ingest's spool) failed
    │   ├── BusUnavailable          the bus did not acknowledge: the batch is not durable
    │   ├── RecordTooLarge          one event is larger than the bus accepts
    │   ├── CommitRefused           a consumer's offsets were not committed (the group moved on)
    │   └── StoreError              a SQLite store (bus/sqlite_writer.py) cannot take or give records
    │       ├── SpoolError          the ingest's spool cannot take or give records
    │       │   └── SpoolFull       the records would take the spool past bus.spool.max_bytes
    │       └── LogUnavailable      the embedded log could not write or read (also a BusUnavailable)
    │           └── LogFull         the append would take the log past bus.max_bytes
    ├── RequestError                the ingest refuses a webhook request; `status` is its answer
    │   ├── BodyError               the body cannot be read
    │   │   ├── BodyTooLarge        413: over limits.max_body_bytes (also once gunzipped)
    │   │   ├── UnsupportedEncoding 415: a Content-Encoding other than identity or gzip
    │   │   ├── BodyTimeout         408: not complete within limits.body_timeout_seconds
    │   │   └── BadGzip             400: declared gzip but not gzip (the raw body is quarantined)
    │   └── BatchError              the body is not a batch of events (also a ValueError)
    │       ├── NotJson             400: not JSON, or not UTF-8
    │       ├── InvalidBatch        400: JSON, but not a batch of events
    │       └── TooManyEvents       413: more events than limits.max_events_per_batch
    ├── ConfirmationError           confirming an integration failed
    │   ├── ConfirmationRefused     the confirmation link was not requested, or not successfully
    │   └── ConfirmationStateError  the confirmation state file cannot be read or written
    ├── SinkError                   a sink could not deliver
    │   ├── RetryableSinkError      the batch may succeed later (connection, timeout, 429, 5xx)
    │   │   ├── SinkBusy            the destination answered that it cannot take more now
    │   │   └── RelpProtocolError   a RELP peer broke the protocol: the connection is dropped
    │   ├── ServerRefused           a RELP server answered `open` without what a session needs
    │   └── SinkAuthError           the sink refused our credentials: an operator must act
    │       └── SinkRefusedError    refused for another reason an operator must fix
    ├── SetupError                  `siemgate es-setup`: Elasticsearch refused part of the setup
    ├── ForwarderFailed             a forwarder stopped on an unexpected error (a bug): exit non-zero
    ├── AdminListenError            the admin listener cannot listen on admin.host:admin.port
    ├── MetricsListenError          the metrics listener cannot listen on metrics.host:metrics.port
    └── (signals that never leave the module that raises and catches them)
        ├── _ItemsToRetry           siemgate/forwarders/runtime.py: some events refused for now
        ├── _Abandoned              siemgate/forwarders/runtime.py: shutting down, batch left uncommitted
        ├── _Halted                 siemgate/bus/spooling.py: the shutdown drain stopped after a spool write
        ├── _BadForm                siemgate/admin/app.py: a status-page form too large or with too many fields
        └── _Refused                siemgate/listeners.py: a request the bounded protocol answers itself

tests/test_errors.py checks this drawing against the code: every exception class under
siemgate/ is drawn here, under its parent, and derives from SiemgateError.
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


class ReloadFailed(SiemgateError):
    """A part of the process could not apply a valid config."""


# -- the bus ----------------------------------------------------------------------------------


class BusError(SiemgateError):
    """A failure of the event bus (Kafka, the embedded log, or the ingest's spool)."""


class BusUnavailable(BusError):
    """The bus did not acknowledge the records in time: nothing may be reported as durable."""


class RecordTooLarge(BusError):
    """One event is larger than the bus accepts (Kafka's message.max.bytes / max_request_bytes)."""


class CommitRefused(BusError):
    """The bus refused a consumer's commit (its group was rebalanced): the records are read
    again by their new owner, so they are delivered twice, never lost."""


class StoreError(BusError):
    """A SQLite store cannot take or give records: unwritable, damaged, disk full, in use or closed."""


class SpoolError(StoreError):
    """The spool cannot take or give records: unwritable, corrupted, disk full, in use or closed."""


class SpoolFull(SpoolError):
    """The records would take the spool past `bus.spool.max_bytes`."""


class LogUnavailable(StoreError, BusUnavailable):
    """The embedded log could not write or read: the records are not durable."""


class LogFull(LogUnavailable):
    """The append would take the log past `bus.max_bytes`."""


# -- the ingest's requests --------------------------------------------------------------------


class RequestError(SiemgateError):
    """A webhook request the ingest refuses; `status` is the HTTP answer."""

    status = 400


class BodyError(RequestError):
    """The body cannot be taken; `status` is the answer."""


class BodyTooLarge(BodyError):
    status = 413


class UnsupportedEncoding(BodyError):
    status = 415


class BodyTimeout(BodyError):
    status = 408


class BadGzip(BodyError):
    """Declared gzip but not valid gzip: answered 400, the raw body is quarantined."""

    status = 400

    def __init__(self, message: str, raw: bytes) -> None:
        super().__init__(message)
        self.raw = raw


class BatchError(RequestError, ValueError):
    """The body is not a batch of events the ingest can take (quarantined)."""


class NotJson(BatchError):
    """The body is not JSON (or not UTF-8)."""


class InvalidBatch(BatchError):
    """The body is JSON but not a batch of events."""


class TooManyEvents(BatchError):
    """More events than `limits.max_events_per_batch`."""

    status = 413


# -- confirming an integration ----------------------------------------------------------------


class ConfirmationError(SiemgateError):
    """Confirming an integration failed."""


class ConfirmationRefused(ConfirmationError):
    """The confirmation link was not requested, or not successfully: `reason` says why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class ConfirmationStateError(ConfirmationError):
    """The confirmation state file cannot be read or written; the message names the file."""


# -- the sinks --------------------------------------------------------------------------------


class SinkError(SiemgateError):
    """A sink could not deliver."""


class RetryableSinkError(SinkError):
    """The whole batch may succeed later: connection refused or reset, timeout, 429, 5xx, busy.

    `retry_after`: the destination said when to come back (an HTTP `Retry-After`, in seconds):
    the runtime waits at least that long (capped at `sinks.base.MAX_RETRY_AFTER`) before the
    next attempt."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class SinkBusy(RetryableSinkError):
    """The destination answered that it cannot take more now (HTTP 429/5xx, an unreadable
    answer); what is left of the batch is retried later."""


class RelpProtocolError(RetryableSinkError):
    """A RELP peer broke the protocol: the connection is dropped (and the batch sent again)."""


class ServerRefused(SinkError):
    """A RELP server answered `open` without what a session needs (the syslog sink turns it
    into a SinkRefusedError that says what to fix)."""


class SinkAuthError(SinkError):
    """The sink refused our credentials (401/403, bad token, TLS client cert refused).

    Retrying cannot help until an operator fixes it; the events are kept, never dropped."""


class SinkRefusedError(SinkAuthError):
    """The sink refuses every event for a reason only an operator can fix, other than
    credentials: an index the token may not write, indexer acknowledgement off on a token
    the config says has it. Handled like SinkAuthError: the sink pauses, alerts, retries."""


class SetupError(SiemgateError):
    """Elasticsearch refused part of the setup (`siemgate es-setup`)."""


# -- processes --------------------------------------------------------------------------------


class ForwarderFailed(SiemgateError):
    """A forwarder stopped on an unexpected error (a bug): the process exits non-zero."""


class AdminListenError(SiemgateError):
    """The admin listener cannot listen on admin.host:admin.port."""


class MetricsListenError(SiemgateError):
    """The metrics listener (`metrics:`) cannot listen on metrics.host:metrics.port."""
