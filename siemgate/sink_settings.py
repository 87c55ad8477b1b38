"""What every sink's config entry has, and which settings type validates each sink type.

Layer: core (beside `siemgate.config`, which types `SinkConfig.settings` with `SinkSettings`).

A sink is one module of the forwarders layer holding its settings dataclass (a
`SinkSettings` subclass) and its `Sink` class. The config, a leaf, must still validate a
sink entry with that type's own settings class. It does so without importing upward:
`SINK_TYPES` below is a plugin table of *dotted names*, resolved with `importlib` when a
config names the type (`settings_type`), and by `siemgate.forwarders.sinks.registry` for the
sink class (`create_sink`). No module of the core imports a sink module by name, so the
import graph (tests/test_layers.py) keeps every arrow pointing down; adding a sink is one
module plus one line here.

(Rejected: `load_config` taking the sink types from the composition root. Every caller of
`load_config`, the tests' included, would then have to pass the table, and a config parsed
without it could not validate its sinks.)
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from siemgate.config_loader import build
from siemgate.errors import ConfigError
from siemgate.record import Severity


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


# type -> (module, settings class, sink class): the only place that lists the sink types.
SINK_TYPES: Mapping[str, tuple[str, str, str]] = {
    "splunk_hec": ("siemgate.forwarders.sinks.splunk_hec", "SplunkHecSinkSettings", "SplunkHecSink"),
    "elasticsearch": ("siemgate.forwarders.sinks.elasticsearch", "ElasticsearchSinkSettings", "ElasticsearchSink"),
    "syslog": ("siemgate.forwarders.sinks.syslog", "SyslogSinkSettings", "SyslogSink"),
    "file": ("siemgate.forwarders.sinks.file", "FileSinkSettings", "FileSink"),
    "sentinel": ("siemgate.forwarders.sinks.sentinel", "SentinelSinkSettings", "SentinelSink"),
}


def plugin(kind: str, index: int) -> Any:
    """The class named at `index` (1: settings, 2: sink) of sink type `kind`, imported on first use."""
    module_name = SINK_TYPES[kind][0]
    return getattr(importlib.import_module(module_name), SINK_TYPES[kind][index])


def settings_type(kind: str) -> type[SinkSettings]:
    """The settings dataclass of sink type `kind` (a key of SINK_TYPES)."""
    found = plugin(kind, 1)
    if not (isinstance(found, type) and issubclass(found, SinkSettings) and found.type == kind):
        raise TypeError(f"{SINK_TYPES[kind]} does not name a SinkSettings subclass of type {kind!r}")
    return found


def build_settings(kind: str, options: Mapping[str, Any], environ: Mapping[str, str], path: str) -> SinkSettings:
    """Validate a sink's config entry (raises ConfigError naming the key path)."""
    return build(settings_type(kind), dict(options), environ, path)
