"""The ingest's Prometheus metrics (docs/SPEC.md, "Metrics"), on a registry of its own.

The spool's metrics are read from the publisher when Prometheus scrapes (`watch_spool`):
the publisher keeps plain counters and knows nothing of Prometheus.

`ActivityTracker` keeps what the status page (siemgate.admin) shows per integration and
Prometheus counters cannot answer without a time series: the last batch's time, and the
events and rejections of the last hour (60 per-minute buckets per integration: bounded).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from siemgate.bus.spool import SpoolStats
from siemgate.bus.sqlite_writer import StorageStats
from siemgate.listeners import ListenerCollector, ListenerStats

# Ack latency of a 500-event batch is a few milliseconds; 503s after the produce timeout take seconds.
_ACK_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class IngestMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.stalled: StalledCollector | None = None  # see watch_stalls
        self.requests = Counter(
            "siemgate_ingest_requests", "Webhook requests by integration and answer.",
            ["integration", "code"], registry=self.registry,
        )
        self.events = Counter(
            "siemgate_ingest_events", "Events accepted (durable) by integration and severity.",
            ["integration", "severity"], registry=self.registry,
        )
        self.ack_seconds = Histogram(
            "siemgate_ingest_ack_seconds", "Time from a request's arrival to its answer.",
            buckets=_ACK_BUCKETS, registry=self.registry,
        )
        self.body_bytes_in_flight = Gauge(
            "siemgate_ingest_body_bytes_in_flight",
            "Memory budget taken by request bodies in flight and their parsed forms (estimated, bytes).",
            registry=self.registry,
        )
        self.body_budget_bytes = Gauge(
            "siemgate_ingest_body_budget_bytes", "The memory budget of bodies in flight (limits.memory_budget_bytes).",
            registry=self.registry,
        )
        self.body_budget_waiters = Gauge(
            "siemgate_ingest_body_budget_waiters",
            "Requests waiting, unread, for their body's share of the memory budget.", registry=self.registry,
        )
        self.quarantined = Counter(
            "siemgate_ingest_quarantined_bodies", "Bodies answered 400/413 and kept in quarantine.",
            ["integration"], registry=self.registry,
        )
        self.lone_surrogates = Counter(
            "siemgate_ingest_lone_surrogate_events",
            "Events accepted holding a lone surrogate escape (kept as sent; read as U+FFFD).",
            ["integration"], registry=self.registry,
        )
        self.links_refused = Counter(
            "siemgate_confirmation_links_refused",
            "Confirmation links neither recorded nor requested, by reason: too_long (more than "
            "8,192 characters), superseded (another link of the same batch was recorded).",
            ["integration", "reason"], registry=self.registry,
        )
        self.integration_state = Gauge(
            "siemgate_integration_state", "1 for the integration's confirmation state.",
            ["integration", "state"], registry=self.registry,
        )
        self.activity = ActivityTracker()
        # The webhook port's connections (its protocol counts them: siemgate.listeners).
        self.webhook_listener = ListenerStats("webhook")
        self.listeners = ListenerCollector([self.webhook_listener])  # + the process's side listeners
        self.registry.register(self.listeners)

    def set_integration_state(self, integration: str, state: str | None) -> None:
        for candidate in ("pending", "confirmed"):
            self.integration_state.labels(integration, candidate).set(1 if candidate == state else 0)

    def watch_budget(self, in_use: Callable[[], float], limit: Callable[[], float],
                     waiting: Callable[[], float]) -> None:
        """Export the memory budget's use (`siemgate_ingest_body_*`; siemgate.ingest.budget)."""
        self.body_bytes_in_flight.set_function(in_use)
        self.body_budget_bytes.set_function(limit)
        self.body_budget_waiters.set_function(waiting)

    def watch_spool(self, stats: Callable[[], SpoolStats]) -> None:
        """Export the `siemgate_spool_*` metrics of a publisher with a spool."""
        self.registry.register(_SpoolCollector(stats))

    def watch_shutdown_drains(self, outcomes: Callable[[], Mapping[str, int]]) -> None:
        """Export `siemgate_shutdown_drain_total{outcome}` of a publisher that drains before exit."""
        self.registry.register(_DrainCollector(outcomes))

    def watch_stalls(self, stalled: Callable[[], Mapping[str, int]]) -> StalledCollector:
        """Export `siemgate_stalled{component}` of a publisher with a worker the watchdog judges
        (the spool drainer). The collector returned takes more samples of the same family
        (`siemgate run`: the forwarders' `siemgate_stalled{sink}`, see `StalledCollector.also`)."""
        collector = self.stalled = StalledCollector(stalled)
        self.registry.register(collector)
        return collector

    def watch_storage(self, stats: Callable[[], StorageStats]) -> None:
        """Export the `siemgate_storage_*` gauges of a publisher with a local store (the
        embedded log, or the spool)."""
        self.registry.register(_StorageCollector(stats))



class StalledCollector:
    """`siemgate_stalled`: the ingest's components, plus the samples of `also` (one family per
    name on a /metrics page: `siemgate run` puts the forwarders' gauge in here)."""

    def __init__(self, stalled: Callable[[], Mapping[str, int]]) -> None:
        self._stalled = stalled
        self.also: list[Callable[[], Iterable[Metric]]] = []

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "siemgate_stalled", "1 while a worker has events to move and makes no progress (a sink's forwarder: "
            "forward.stall_timeout_seconds; the ingest's spool drainer: bus.spool.stall_timeout_seconds): "
            "the process's /healthz fails.", labels=["component"])
        for component, value in self._stalled().items():
            family.add_metric([component], value)
        for source in self.also:
            for metric in source():
                family.samples.extend(sample for sample in metric.samples if sample.name == "siemgate_stalled")
        yield family


class _DrainCollector:
    def __init__(self, outcomes: Callable[[], Mapping[str, int]]) -> None:
        self._outcomes = outcomes

    def collect(self) -> Iterator[Metric]:
        drains = CounterMetricFamily(
            "siemgate_shutdown_drain",
            "Drains of the spool before exit, by outcome: empty, drained, timeout (events left in the spool), "
            "unreachable (Kafka away: events left in the spool).",
            labels=["outcome"],
        )
        for outcome, count in self._outcomes().items():
            drains.add_metric([outcome], count)
        yield drains


class _SpoolCollector:
    def __init__(self, stats: Callable[[], SpoolStats]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        stats = self._stats()
        yield GaugeMetricFamily("siemgate_spool_events", "Events held in the local spool, waiting for Kafka.",
                                value=stats.events)
        yield GaugeMetricFamily("siemgate_spool_bytes",
                                "Logical bytes (keys, values, headers) held in the local spool.", value=stats.bytes)
        yield GaugeMetricFamily("siemgate_spool_active",
                                "1 while batches go to the local spool instead of Kafka.", value=int(stats.active))
        yield CounterMetricFamily("siemgate_spool_batches", "Batches written to the local spool (answered 200).",
                                  value=stats.batches_spooled)
        refusals = CounterMetricFamily(
            "siemgate_spool_refusals",
            "Batches neither Kafka nor the spool took (answered 503: data loss), by the spool's reason.",
            labels=["reason"],
        )
        refusals.add_metric(["full"], stats.refused_full)
        refusals.add_metric(["error"], stats.refused_error)
        yield refusals
        yield CounterMetricFamily("siemgate_spool_drained_events", "Spooled events Kafka acknowledged.",
                                  value=stats.drained_events)
        yield CounterMetricFamily(
            "siemgate_spool_set_aside_events",
            "Spooled events Kafka refused for their size, kept in the spool's set_aside table.",
            value=stats.set_aside_events,
        )


class _StorageCollector:
    def __init__(self, stats: Callable[[], StorageStats]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        stats = self._stats()
        families = (
            GaugeMetricFamily("siemgate_storage_bytes",
                              "Bytes held by the local store, as its cap counts them (log: segments, index and WAL "
                              "on disk; spool: keys, values and headers).", labels=["store"]),
            GaugeMetricFamily("siemgate_storage_limit_bytes",
                              "The local store's cap (bus.max_bytes, bus.spool.max_bytes); 0: none.",
                              labels=["store"]),
            GaugeMetricFamily("siemgate_storage_free_bytes",
                              "Free space of the file system holding the local store (measured every few seconds).",
                              labels=["store"]),
        )
        values = (stats.bytes, stats.limit_bytes, stats.free_bytes)
        for family, value in zip(families, values, strict=True):
            if value is not None:
                family.add_metric([stats.store], value)
            yield family
        refusals = CounterMetricFamily(
            "siemgate_storage_refusals", "Batches answered 503 because the local store was full (data loss risk).",
            labels=["store"])
        refusals.add_metric([stats.store], stats.refused_full)
        yield refusals


WINDOW_MINUTES: Final = 60


@dataclass(slots=True)
class _Minute:
    minute: int = -1  # the epoch minute counted here; another one: the bucket is stale
    batches: int = 0
    events: int = 0
    # Requests not answered 200, by status code (the handful the ingest answers).
    rejections: dict[int, int] = field(default_factory=dict)


@dataclass(slots=True)
class _Ring:
    buckets: list[_Minute] = field(default_factory=lambda: [_Minute() for _ in range(WINDOW_MINUTES)])
    last_batch_at: float | None = None
    last_rejection_at: float | None = None

    def at(self, minute: int) -> _Minute:
        bucket = self.buckets[minute % WINDOW_MINUTES]
        if bucket.minute != minute:
            bucket.minute, bucket.batches, bucket.events = minute, 0, 0
            bucket.rejections.clear()
        return bucket


@dataclass(frozen=True, slots=True)
class ActivitySummary:
    """One integration over the last hour (the current minute and the 59 before it)."""

    last_batch_at: float | None  # epoch seconds of the last batch answered 200
    last_rejection_at: float | None
    batches: int
    events: int
    rejections: int
    rejections_by_code: dict[str, int]


class ActivityTracker:
    """Per integration: batches and events accepted, requests rejected, per minute over the
    last hour, and the last batch's time. Memory: 60 small buckets per configured
    integration (`retain` forgets removed ones). Called from the event loop only."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._rings: dict[str, _Ring] = {}

    def _ring(self, integration: str) -> _Ring:
        ring = self._rings.get(integration)
        if ring is None:
            ring = self._rings[integration] = _Ring()
        return ring

    def accepted(self, integration: str, events: int) -> None:
        """A batch of `events` events was answered 200."""
        now = self._clock()
        ring = self._ring(integration)
        bucket = ring.at(int(now // 60))
        bucket.batches += 1
        bucket.events += events
        ring.last_batch_at = now

    def rejected(self, integration: str, status: int) -> None:
        """A request was answered `status` (not 200)."""
        now = self._clock()
        ring = self._ring(integration)
        rejections = ring.at(int(now // 60)).rejections
        rejections[status] = rejections.get(status, 0) + 1
        ring.last_rejection_at = now

    def summary(self, integration: str) -> ActivitySummary:
        ring = self._rings.get(integration)
        if ring is None:
            return ActivitySummary(None, None, 0, 0, 0, {})
        oldest = int(self._clock() // 60) - WINDOW_MINUTES + 1
        batches = events = 0
        by_code: dict[int, int] = {}
        for bucket in ring.buckets:
            if bucket.minute < oldest:
                continue
            batches += bucket.batches
            events += bucket.events
            for code, count in bucket.rejections.items():
                by_code[code] = by_code.get(code, 0) + count
        return ActivitySummary(
            last_batch_at=ring.last_batch_at, last_rejection_at=ring.last_rejection_at, batches=batches,
            events=events, rejections=sum(by_code.values()),
            rejections_by_code={str(code): by_code[code] for code in sorted(by_code)},
        )

    def retain(self, integrations: Iterable[str]) -> None:
        """Forget the integrations not in `integrations` (removed by a reload)."""
        keep = set(integrations)
        for name in [n for n in self._rings if n not in keep]:
            del self._rings[name]
