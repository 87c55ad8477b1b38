"""The sink contract: what every sink implements, and nothing more.

A sink receives batches of normalized events and says, per event, whether it is delivered,
worth retrying, or permanently refused. It never sleeps or retries itself: the forwarder
runtime owns backoff, dead letters, pausing and offsets. Adding a sink means one module
with a config type (a `SinkSettings` subclass) and a `Sink` subclass, registered in
`siemgate.forwarders.sinks.registry`.

    Sink.send(events) -> SendResult         every event delivered unless listed otherwise
      raises RetryableSinkError             nothing (more) was confirmed: retry the batch later
      raises SinkAuthError                  credentials refused: pause the sink, alert, retry
      raises SinkRefusedError               (a SinkAuthError) refused for another reason an operator must fix
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from siemgate.errors import ConfigError, SiemgateError
from siemgate.forwarders.normalize import NormalizedEvent
from siemgate.forwarders.watchdog import Progress

Severity = Literal["high", "medium", "low", "unknown"]


class SinkError(SiemgateError):
    """A sink could not deliver."""


class RetryableSinkError(SinkError):
    """The whole batch may succeed later: connection refused or reset, timeout, 429, 5xx, busy."""


class SinkAuthError(SinkError):
    """The sink refused our credentials (401/403, bad token, TLS client cert refused).

    Retrying cannot help until an operator fixes it; the events are kept, never dropped."""


class SinkRefusedError(SinkAuthError):
    """The sink refuses every event for a reason only an operator can fix, other than
    credentials: an index the token may not write, indexer acknowledgement off on a token
    the config says has it. Handled like SinkAuthError: the sink pauses, alerts, retries."""


@dataclass(frozen=True, kw_only=True)
class BatchSettings:
    """How a forwarder groups events for one `send`. Up to `in_flight` batches are delivered
    at once while the previous one's offsets commit, so a crash delivers at most
    `(in_flight + 1) * max_events` twice."""

    max_events: int = 500
    # How long a poll waits for records when there are none.
    max_wait_seconds: float = 0.2
    # Batches delivered at once (each `send` waits for its own confirmation).
    in_flight: int = 2

    def __post_init__(self) -> None:
        if not 1 <= self.in_flight <= 32:
            raise ConfigError("in_flight", "must be between 1 and 32")
        if self.max_events < 1:
            raise ConfigError("max_events", "must be at least 1")


@dataclass(frozen=True, kw_only=True)
class RetrySettings:
    """Backoff for retryable failures: exponential with full jitter, capped; never gives up."""

    initial_seconds: float = 0.2
    max_seconds: float = 30.0


@dataclass(frozen=True, kw_only=True)
class TlsSettings:
    verify: bool = True
    ca_file: str | None = None
    cert: str | None = None
    key: str | None = None


@dataclass(frozen=True, kw_only=True)
class SinkSettings:
    """What every sink's config has. A sink's own config type subclasses this."""

    type: ClassVar[str]
    name: str
    min_severity: Severity = "low"
    batch: BatchSettings = field(default_factory=BatchSettings)
    retry: RetrySettings = field(default_factory=RetrySettings)


@dataclass(frozen=True, slots=True)
class SendResult:
    """The outcome of one `send`, by index into the batch. Indexes in neither list are delivered."""

    # Temporarily refused items (e.g. an Elasticsearch bulk item answered 429): sent again.
    retry: Sequence[int] = ()
    # Permanently refused items with the reason: they go to the dead-letter topic.
    rejected: Sequence[tuple[int, str]] = ()
    # Items the sink saw were already there (e.g. a 409 on create): delivered, counted apart.
    duplicates: Sequence[int] = ()


class Sink(abc.ABC):
    """One destination. Lifecycle: `start`, any number of `send`, `close` (idempotent)."""

    # The normalized fields (NormalizedEvent attributes from normalize.DEFAULT_FIELDS) this
    # sink's output uses; the forwarder looks up only these. None: all of them.
    normalized_fields: frozenset[str] | None = None
    # Set by the forwarder (siemgate.forwarders.watchdog): a send that waits a long time in
    # steps (HEC's indexer acks) says what it waits on and reports the answers it gets.
    watch: Progress | None = None

    def __init__(self, settings: SinkSettings) -> None:
        self.settings = settings

    def waiting(self, what: str) -> contextlib.AbstractContextManager[None]:
        return self.watch.waiting(what) if self.watch is not None else contextlib.nullcontext()

    def answered(self) -> None:
        """A step of a send was made (a request answered, or failed): progress for the watchdog."""
        if self.watch is not None:
            self.watch.progressed()

    @property
    def name(self) -> str:
        return self.settings.name

    async def start(self) -> None:  # noqa: B027 - optional hook
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

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Flush and release; idempotent."""
