"""The sink contract: what every sink implements, and nothing more.

A sink receives batches of normalized events and says, per event, whether it is delivered,
worth retrying, or permanently refused. It never sleeps or retries itself: the forwarder
runtime owns backoff, dead letters, pausing and offsets. Adding a sink means one module
with a config type (a `SinkSettings` subclass, from the core's `siemgate.sink_settings`) and
a `Sink[ItsSettings]` subclass, named in `siemgate.sink_settings.SINK_TYPES`.

`Sink` is generic over its settings type: a sink's constructor takes its own settings class
and `self.settings` has that type, checked by mypy, with no narrowing at run time (the
registry checks once, in `create_sink`, that a config's settings belong to the sink type).

    Sink.send(events) -> SendResult         every event delivered unless listed otherwise
      raises RetryableSinkError             nothing (more) was confirmed: retry the batch later
      raises SinkAuthError                  credentials refused: pause the sink, alert, retry
      raises SinkRefusedError               (a SinkAuthError) refused for another reason an operator must fix
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from siemgate.errors import SiemgateError
from siemgate.forwarders.normalize import NormalizedEvent
from siemgate.sink_settings import BatchSettings, RetrySettings, SinkSettings, TlsSettings

# The longest Retry-After the runtime honours (a destination asking for more is asked again then).
MAX_RETRY_AFTER = 600.0

# Covariant: a Sink[FileSinkSettings] is a Sink[SinkSettings] (the runtime's view).
SettingsT = TypeVar("SettingsT", bound=SinkSettings, covariant=True)


class SinkError(SiemgateError):
    """A sink could not deliver."""


class RetryableSinkError(SinkError):
    """The whole batch may succeed later: connection refused or reset, timeout, 429, 5xx, busy.

    `retry_after`: the destination said when to come back (an HTTP `Retry-After`, in seconds):
    the runtime waits at least that long (capped at `MAX_RETRY_AFTER`) before the next attempt."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class SinkAuthError(SinkError):
    """The sink refused our credentials (401/403, bad token, TLS client cert refused).

    Retrying cannot help until an operator fixes it; the events are kept, never dropped."""


class SinkRefusedError(SinkAuthError):
    """The sink refuses every event for a reason only an operator can fix, other than
    credentials: an index the token may not write, indexer acknowledgement off on a token
    the config says has it. Handled like SinkAuthError: the sink pauses, alerts, retries."""


@dataclass(frozen=True, slots=True)
class SendResult:
    """The outcome of one `send`, by index into the batch. Indexes in neither list are delivered."""

    # Temporarily refused items (e.g. an Elasticsearch bulk item answered 429): sent again.
    retry: Sequence[int] = ()
    # Permanently refused items with the reason: they go to the dead-letter topic.
    rejected: Sequence[tuple[int, str]] = ()
    # Items the sink saw were already there (e.g. a 409 on create): delivered, counted apart.
    duplicates: Sequence[int] = ()
    # Seconds the destination asked us to wait before sending `retry` again (Retry-After).
    retry_after: float | None = None


class Sink(abc.ABC, Generic[SettingsT]):
    """One destination. Lifecycle: `start`, any number of `send`, `close` (idempotent)."""

    # The normalized fields (NormalizedEvent attributes from config.DEFAULT_FIELDS) this
    # sink's output uses; the forwarder looks up only these. None: all of them.
    normalized_fields: frozenset[str] | None = None

    def __init__(self, settings: SettingsT) -> None:
        self._settings = settings

    @property
    def settings(self) -> SettingsT:
        return self._settings

    @property
    def name(self) -> str:
        return self.settings.name

    async def start(self) -> None:
        """Connect or open. Must not fail because the destination is down: `send` reports that."""

    @abc.abstractmethod
    async def send(self, events: Sequence[NormalizedEvent]) -> SendResult:
        """Deliver a batch. Returns only once what it reports delivered is confirmed
        (bytes written and drained, HTTP answer received, file flushed per policy).

        Raises:
            RetryableSinkError: nothing beyond what a previous call confirmed is delivered.
            SinkAuthError: the destination refused the credentials.
        """

    async def healthcheck(self) -> str:
        """Reach the destination without sending events; return a short description.

        Raises SinkError when it cannot be reached."""
        return "no health check for this sink type"

    async def close(self) -> None:
        """Flush and release; idempotent."""


__all__: Sequence[str] = (
    "MAX_RETRY_AFTER", "BatchSettings", "RetryableSinkError", "RetrySettings", "SendResult", "Sink",
    "SinkAuthError", "SinkError", "SinkRefusedError", "SinkSettings", "TlsSettings",
)
