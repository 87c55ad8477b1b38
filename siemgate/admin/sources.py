"""What the admin listener reads and calls, declared here as Protocols.

The admin layer sits above ingest and forwarders but imports neither: the composition root
(siemgate.serve) hands it the live objects, which satisfy these Protocols structurally (the
ingest's `IngestContext`, the forwarders' `ForwardService`), and the function that requests a
confirmation link (the ingest's SSRF-guarded `request_link`, wrapped by the root). Every
member is read-only here: nothing in admin changes them, except through the confirmation
store's own methods.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from siemgate.config import Config, ConfirmationConfig, SinkConfig

ConfirmationState = Literal["pending", "confirmed"]


class ConfirmationView(Protocol):
    """One integration's recorded confirmation link (ingest.confirmation_store.ConfirmationEntry)."""

    @property
    def url(self) -> str: ...
    @property
    def state(self) -> ConfirmationState: ...
    @property
    def received_at(self) -> str: ...
    @property
    def confirmed_at(self) -> str | None: ...
    @property
    def confirmed_via(self) -> str | None: ...
    @property
    def last_error(self) -> str | None: ...


class ConfirmationStates(Protocol):
    """The confirmation state in `state_dir` (ingest.confirmation_store.ConfirmationStore)."""

    async def load(self) -> None: ...
    def entry(self, integration: str) -> ConfirmationView | None: ...
    def state(self, integration: str) -> ConfirmationState | None: ...
    async def record_failure(self, integration: str, url: str, reason: str) -> bool: ...
    async def mark_confirmed(self, integration: str, url: str, via: Literal["admin"]) -> bool: ...


class ActivityView(Protocol):
    """One integration over the last hour (ingest.metrics.ActivitySummary)."""

    @property
    def last_batch_at(self) -> float | None: ...
    @property
    def batches(self) -> int: ...
    @property
    def events(self) -> int: ...
    @property
    def rejections(self) -> int: ...
    @property
    def rejections_by_code(self) -> dict[str, int]: ...


class ActivitySource(Protocol):
    def summary(self, integration: str) -> ActivityView: ...


class IngestMetricsView(Protocol):
    @property
    def activity(self) -> ActivitySource: ...
    def set_integration_state(self, integration: str, state: str | None) -> None: ...


class IngestSource(Protocol):
    """The ingest's live parts (ingest.app.IngestContext)."""

    @property
    def config(self) -> Config: ...
    @property
    def store(self) -> ConfirmationStates: ...
    @property
    def metrics(self) -> IngestMetricsView: ...
    # Read for its spool, when it has one (bus.base.SpoolReporter).
    @property
    def publisher(self) -> object: ...


class SinkReadingView(Protocol):
    """One sink's metrics as they stand (forwarders.metrics.SinkReading)."""

    @property
    def up(self) -> bool | None: ...
    @property
    def delivered(self) -> int: ...
    @property
    def duplicate(self) -> int: ...
    @property
    def dead_lettered(self) -> int: ...
    @property
    def filtered(self) -> int: ...
    @property
    def lag(self) -> Mapping[str, int]: ...


class ForwardMetricsView(Protocol):
    def read(self) -> Mapping[str, SinkReadingView]: ...


class ForwardSource(Protocol):
    """The forwarders' live parts (forwarders.service.ForwardService)."""

    @property
    def config(self) -> Config: ...
    # The sinks this process forwards to, and the names of those whose forwarder runs.
    @property
    def sinks(self) -> Sequence[SinkConfig]: ...
    @property
    def forwarders(self) -> Mapping[str, object]: ...
    @property
    def metrics(self) -> ForwardMetricsView: ...


@dataclass(frozen=True, slots=True)
class LinkResult:
    """What requesting a confirmation link gave: the HTTP status it answered (2xx), or the
    reason it was refused (not https, a private address, a timeout, an error status ...)."""

    status: int | None = None
    refused: str | None = None


class LinkRequester(Protocol):
    """Request a confirmation link an operator approved (the host allow-list lifted; https,
    the private-address rule, redirects, timeout and size cap still apply)."""

    def __call__(self, url: str, confirmation: ConfirmationConfig) -> Awaitable[LinkResult]: ...
