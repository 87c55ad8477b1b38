"""Metrics of one registry exposed through another's /metrics (the forwarders' and the
config reloader's beside the ingest's, in one scrape)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector


class Exposed(Collector):
    """`registry`'s metrics, but those named in `skip` (exposed by the other registry already,
    merged into its family: a name appears once on a /metrics page)."""

    def __init__(self, registry: CollectorRegistry, skip: frozenset[str] = frozenset()) -> None:
        self._registry = registry
        self._skip = skip

    def collect(self) -> Iterator[Metric]:
        for metric in self._registry.collect():
            if metric.name not in self._skip:
                yield metric
