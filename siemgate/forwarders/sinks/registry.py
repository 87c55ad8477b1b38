"""Sink types by name: the only place that lists them.

Each entry names the module, its settings type and its sink class; modules are imported
only when a config uses them.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from siemgate.config_loader import build
from siemgate.forwarders.sinks.base import Sink, SinkSettings

# type -> (module, settings class, sink class)
SINK_TYPES: Mapping[str, tuple[str, str, str]] = {
    "splunk_hec": ("siemgate.forwarders.sinks.splunk_hec", "SplunkHecSinkSettings", "SplunkHecSink"),
    "elasticsearch": ("siemgate.forwarders.sinks.elasticsearch", "ElasticsearchSinkSettings", "ElasticsearchSink"),
    "syslog": ("siemgate.forwarders.sinks.syslog", "SyslogSinkSettings", "SyslogSink"),
    "file": ("siemgate.forwarders.sinks.file", "FileSinkSettings", "FileSink"),
}


def _load(kind: str) -> tuple[type[SinkSettings], type[Sink]]:
    module_name, settings_name, sink_name = SINK_TYPES[kind]
    module = importlib.import_module(module_name)
    return getattr(module, settings_name), getattr(module, sink_name)


def build_settings(kind: str, options: Mapping[str, Any], environ: Mapping[str, str], path: str) -> SinkSettings:
    """Validate a sink's config entry (raises ConfigError naming the key path)."""
    settings_type, _ = _load(kind)
    return build(settings_type, dict(options), environ, path)


def create_sink(settings: SinkSettings) -> Sink:
    _, sink_type = _load(settings.type)
    return sink_type(settings)
