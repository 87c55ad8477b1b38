"""Sink types by name: `create_sink` builds the sink a config entry's settings belong to.

The table of types is the core's `siemgate.sink_settings.SINK_TYPES` (dotted names, so that
the config can validate an entry with its type's settings class without importing the
forwarders layer); each sink module is imported only when a config uses it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from siemgate.forwarders.sinks.base import Sink
from siemgate.sink_settings import SINK_TYPES, SinkSettings, build_settings, plugin, settings_type


def sink_type(kind: str) -> type[Sink[Any]]:
    """The `Sink` class of sink type `kind`."""
    found = plugin(kind, 2)
    if not (isinstance(found, type) and issubclass(found, Sink)):
        raise TypeError(f"{SINK_TYPES[kind]} does not name a Sink subclass")
    return found


def create_sink(settings: SinkSettings) -> Sink[SinkSettings]:
    """The sink of these settings (an instance of their type's settings class, as `load_config` builds)."""
    expected = settings_type(settings.type)
    if not isinstance(settings, expected):
        raise TypeError(f"a {settings.type} sink needs {expected.__name__}, not {type(settings).__name__}")
    sink: Sink[SinkSettings] = sink_type(settings.type)(settings)
    return sink


__all__: Sequence[str] = ("SINK_TYPES", "build_settings", "create_sink", "sink_type")
