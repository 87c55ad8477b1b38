"""The forwarders' Prometheus metrics (docs/SPEC.md, "Metrics"), on a registry of their own.

`ForwardMetrics.read()` gives the current values per sink to the status page (siemgate.admin).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from siemgate.record import SEVERITIES

_REQUEST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass(slots=True)
class SinkReading:
    """One sink's metrics as they stand (counters since the process started)."""

    # None: not measured yet (the forwarder has not started).
    up: bool | None = None
    delivered: int = 0
    duplicate: int = 0
    dead_lettered: int = 0
    filtered: int = 0
    # Events on the bus not yet read, per severity, as last measured (every lag_interval_seconds).
    lag: dict[str, int] = field(default_factory=dict)


class ForwardMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.events = Counter(
            "siemgate_forward_events", "Events by sink and outcome (delivered, duplicate, dead_lettered, filtered).",
            ["sink", "outcome"], registry=self.registry,
        )
        self.lag = Gauge(
            "siemgate_forward_lag_events", "Events on the bus not yet read by the sink's forwarder.",
            ["sink", "severity"], registry=self.registry,
        )
        self.request_seconds = Histogram(
            "siemgate_sink_request_seconds", "Time a sink took to confirm one batch.",
            ["sink"], buckets=_REQUEST_BUCKETS, registry=self.registry,
        )
        self.up = Gauge(
            "siemgate_sink_up", "1 while the sink accepts events, 0 while it fails or refuses credentials.",
            ["sink"], registry=self.registry,
        )
        self.dlq = Counter(
            "siemgate_dlq_events", "Events dead-lettered, by sink and reason.",
            ["sink", "reason"], registry=self.registry,
        )
        self.stalled = Gauge(
            "siemgate_stalled", "1 while the sink's forwarder has events to read and makes no progress "
            "(forward.stall_timeout_seconds): the process's /healthz fails.",
            ["sink"], registry=self.registry,
        )
        self.invalid_timestamps = Counter(
            "siemgate_forward_invalid_timestamps", "Events whose own time was no real instant (2025-02-30 ...): "
            "sent with the receive time, the vendor's text as timestamp_invalid.",
            ["sink"], registry=self.registry,
        )
        self.retries = Counter(
            "siemgate_sink_retries", "Batches sent again after a retryable failure or an auth refusal.",
            ["sink", "reason"], registry=self.registry,
        )

    def clear_lag(self, sink: str) -> None:
        """No partitions (or no forwarder) any more: no lag to export, rather than the last one."""
        for severity in SEVERITIES:
            with contextlib.suppress(KeyError):
                self.lag.remove(sink, severity)

    def read(self) -> dict[str, SinkReading]:
        """Every sink's current values, read from the registry (one pass, no side effect)."""
        readings: dict[str, SinkReading] = {}

        def reading(labels: dict[str, str]) -> SinkReading:
            sink = labels["sink"]
            found = readings.get(sink)
            if found is None:
                found = readings[sink] = SinkReading()
            return found

        for family in self.registry.collect():
            for sample in family.samples:
                if sample.name == "siemgate_forward_events_total":
                    outcome = sample.labels["outcome"]
                    if outcome in ("delivered", "duplicate", "dead_lettered", "filtered"):
                        setattr(reading(sample.labels), outcome, int(sample.value))
                elif sample.name == "siemgate_forward_lag_events":
                    reading(sample.labels).lag[sample.labels["severity"]] = int(sample.value)
                elif sample.name == "siemgate_sink_up":
                    reading(sample.labels).up = sample.value >= 1
        return readings
