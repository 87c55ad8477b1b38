"""The ingest's Prometheus metrics (SPEC.md, "Metrics"), on a registry of its own.

The spool's metrics are read from the publisher when Prometheus scrapes (`watch_spool`):
the publisher keeps plain counters and knows nothing of Prometheus.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol, runtime_checkable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from siemgate.bus.spool import SpoolStats

# Ack latency of a 500-event batch is a few milliseconds; 503s after the produce timeout take seconds.
_ACK_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class IngestMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
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
        self.quarantined = Counter(
            "siemgate_ingest_quarantined_bodies", "Bodies answered 400/413 and kept in quarantine.",
            ["integration"], registry=self.registry,
        )
        self.integration_state = Gauge(
            "siemgate_integration_state", "1 for the integration's confirmation state.",
            ["integration", "state"], registry=self.registry,
        )

    def set_integration_state(self, integration: str, state: str | None) -> None:
        for candidate in ("pending", "confirmed"):
            self.integration_state.labels(integration, candidate).set(1 if candidate == state else 0)

    def watch_spool(self, stats: Callable[[], SpoolStats]) -> None:
        """Export the `siemgate_spool_*` metrics of a publisher with a spool."""
        self.registry.register(_SpoolCollector(stats))


@runtime_checkable
class SpoolReporter(Protocol):
    """A publisher with a local spool (`siemgate.bus.spooling.SpoolingPublisher`)."""

    def spool_stats(self) -> SpoolStats: ...


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
