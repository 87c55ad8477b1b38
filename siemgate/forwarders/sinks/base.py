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

The errors are siemgate.errors'; the runtime handles them as its tree says.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from siemgate.errors import RetryableSinkError, SinkAuthError, SinkError, SinkRefusedError
from siemgate.forwarders.normalize import NormalizedEvent
from siemgate.forwarders.watchdog import Progress
from siemgate.sink_settings import BatchSettings, RetrySettings, SinkSettings, TlsSettings

# The longest Retry-After the runtime honours (a destination asking for more is asked again then).
MAX_RETRY_AFTER = 600.0

# Covariant: a Sink[FileSinkSettings] is a Sink[SinkSettings] (the runtime's view).
SettingsT = TypeVar("SettingsT", bound=SinkSettings, covariant=True)


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
    # Set by the forwarder (siemgate.forwarders.watchdog): a send that waits a long time in
    # steps (HEC's indexer acks) says what it waits on and reports the answers it gets.
    watch: Progress | None = None

    def __init__(self, settings: SettingsT) -> None:
        self._settings = settings

    @property
    def settings(self) -> SettingsT:
        return self._settings

    def waiting(self, what: str) -> contextlib.AbstractContextManager[None]:
        return self.watch.waiting(what) if self.watch is not None else contextlib.nullcontext()

    def answered(self) -> None:
        """A step of a send was made (a request answered, or failed): progress for the watchdog."""
        if self.watch is not None:
            self.watch.progressed()

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
