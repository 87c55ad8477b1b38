"""The ingest's Prometheus metrics (SPEC.md, "Metrics"), on a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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
