"""Events as Elastic Common Schema (ECS) alert documents.

    {"@timestamp": "2026-11-28T21:00:00.123Z",
     "event": {"kind": "alert", "category": ["intrusion_detection"], "type": ["denied"],
               "severity": 73, "risk_score": 73.0, "id": "...", "created": "<received_at>",
               "ingested": "<now>", "action": "blocked", "module": "siemgate",
               "original": "<the vendor's event as JSON>"},
     "message": "...", "rule": {"name": "...", "id": "..."},
     "source": {"ip": "203.0.113.9"}, "destination": {"address": "shop-frontend"},
     "url": {"original": "https://shop.example/login?q=1", "scheme": "https", "domain": "shop.example",
             "path": "/login", "query": "q=1"},
     "http": {"request": {"method": "POST"}},
     "observer": {"vendor": "...", "product": "...", "type": "waf"},
     "labels": {"integration": "appsec-prod", "severity": "high"},
     "ecs": {"version": "8.11.0"},
     "siemgate": {"event": {...the vendor's event, untouched...}}}

`event.kind` is `alert` for the vendor's events (ECS: a detection made outside the Elastic
Stack) and `event` for the vendor's test messages. `@timestamp` is the receive time when
the event's own time is missing or no real instant (then `labels.timestamp_invalid` is the
vendor's text). `event.severity` / `event.risk_score`
follow DESIGN's table by the normalized `level` (critical 99, high 73, medium 47, low 21, the
Elastic rule presets); an event of
unknown severity carries neither, rather than an invented number. `source.ip` is set only
for a valid IP address (anything else goes to `source.address`), so a bad value cannot make
Elasticsearch refuse the document. The vendor's object goes under a namespaced field
(`original_field`, mapped `flattened` by `siemgate es-setup`, so its keys cannot collide with
ECS or explode the mapping).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, Final

from siemgate.forwarders.formats.urls import split_url
from siemgate.forwarders.normalize import NormalizedEvent
from siemgate.record import dumps

ECS_VERSION: Final = "8.11.0"
RISK_SCORE: Final[Mapping[str, int]] = {"critical": 99, "high": 73, "medium": 47, "low": 21}
_DENIED: Final = frozenset({"block", "blocked", "deny", "denied", "drop", "dropped", "reject", "rejected",
                            "prevent", "prevented", "quarantine", "quarantined"})
_ALLOWED: Final = frozenset({"allow", "allowed", "pass", "passed", "permit", "permitted", "log", "logged",
                             "monitor", "monitored", "detect", "detected", "alert", "alerted"})


# Shared, never mutated: a document is serialized right after it is built.
_DENIED_TYPE: Final = ("denied",)
_ALLOWED_TYPE: Final = ("allowed",)
_INFO_TYPE: Final = ("info",)
_CATEGORY: Final = ("intrusion_detection",)
_ECS: Final = {"version": ECS_VERSION}


def event_type(action: str | None) -> tuple[str, ...]:
    verdict = (action or "").strip().lower()
    if verdict in _DENIED:
        return _DENIED_TYPE
    if verdict in _ALLOWED:
        return _ALLOWED_TYPE
    return _INFO_TYPE


@lru_cache(maxsize=4096)
def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


@lru_cache(maxsize=4096)
def url_fields(url: str) -> dict[str, Any]:
    """ECS `url.*` of a URL (cached: the same URLs come again; the mapping is shared, not to
    be changed)."""
    fields: dict[str, Any] = {"original": url}
    parts = split_url(url)
    if parts is None:
        return fields
    if parts.scheme:
        fields["scheme"] = parts.scheme
    if parts.hostname:
        fields["domain"] = parts.hostname
    if parts.port is not None:
        fields["port"] = parts.port
    if parts.path:
        fields["path"] = parts.path
    if parts.query:
        fields["query"] = parts.query
    if parts.scheme and parts.netloc:
        fields["full"] = url
    return fields


def put_path(doc: dict[str, Any], path: tuple[str, ...], value: object) -> None:
    """doc[a][b][c] = value, creating the objects on the way."""
    node = doc
    for key in path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    node[path[-1]] = value


def ecs_document(event: NormalizedEvent, *, ingested: str,
                 original_field: tuple[str, ...] | None = ("siemgate", "event"), event_original: bool = True,
                 observer: Mapping[str, str] | None = None) -> dict[str, Any]:
    ecs_event: dict[str, Any] = {
        "kind": "alert" if event.kind == "event" else "event",
        "category": _CATEGORY,
        "type": event_type(event.action),
        "id": event.id,
        "created": event.received_at,
        "ingested": ingested,
        "module": "siemgate",
    }
    risk = RISK_SCORE.get(event.level)
    if risk is not None:
        ecs_event["severity"] = risk
        ecs_event["risk_score"] = float(risk)
    if event.action is not None:
        ecs_event["action"] = event.action
    if event_original:
        ecs_event["original"] = dumps(event.event).decode()
    doc: dict[str, Any] = {"@timestamp": event.timestamp, "event": ecs_event}
    if event.message is not None:
        doc["message"] = event.message
    if event.rule is not None or event.rule_id is not None:
        doc["rule"] = {k: v for k, v in (("name", event.rule), ("id", event.rule_id)) if v is not None}
    if event.source_ip is not None:
        doc["source"] = {"ip": event.source_ip} if _is_ip(event.source_ip) else {"address": event.source_ip}
    if event.asset is not None:
        doc["destination"] = {"address": event.asset}
    if event.url is not None:
        doc["url"] = url_fields(event.url)
    if event.method is not None:
        doc["http"] = {"request": {"method": event.method.upper()}}
    if observer:
        doc["observer"] = observer
    labels = {"integration": event.integration, "severity": event.level}
    if event.kind != "event":
        labels["kind"] = event.kind
    if event.timestamp_invalid is not None:
        labels["timestamp_invalid"] = event.timestamp_invalid
    doc["labels"] = labels
    doc["ecs"] = _ECS
    if original_field:
        put_path(doc, original_field, event.event)
    return doc


def _keyword(ignore_above: int = 1024) -> dict[str, Any]:
    return {"type": "keyword", "ignore_above": ignore_above}


def mappings(original_field: tuple[str, ...] | None) -> dict[str, Any]:
    """The index template's mappings for `ecs_document`'s fields."""
    properties: dict[str, Any] = {
        "@timestamp": {"type": "date"},
        "message": {"type": "text"},
        "event": {"properties": {
            "kind": _keyword(), "category": _keyword(), "type": _keyword(), "id": _keyword(),
            "created": {"type": "date"}, "ingested": {"type": "date"}, "module": _keyword(), "action": _keyword(),
            "severity": {"type": "long"}, "risk_score": {"type": "float"},
            "original": {"type": "keyword", "index": False, "doc_values": False},
        }},
        "rule": {"properties": {"name": _keyword(), "id": _keyword()}},
        "source": {"properties": {"ip": {"type": "ip"}, "address": _keyword()}},
        "destination": {"properties": {"address": _keyword()}},
        "url": {"properties": {
            "original": {"type": "wildcard"}, "full": {"type": "wildcard"}, "scheme": _keyword(),
            "domain": _keyword(), "port": {"type": "long"}, "path": {"type": "wildcard"}, "query": _keyword(),
        }},
        "http": {"properties": {"request": {"properties": {"method": _keyword()}}}},
        "observer": {"properties": {"vendor": _keyword(), "product": _keyword(), "type": _keyword(),
                                    "name": _keyword()}},
        "labels": {"properties": {"integration": _keyword(), "severity": _keyword(), "kind": _keyword(),
                                   "timestamp_invalid": _keyword()}},
        "ecs": {"properties": {"version": _keyword()}},
    }
    if original_field:
        node = properties
        for key in original_field[:-1]:
            node = node.setdefault(key, {"properties": {}})["properties"]
        node[original_field[-1]] = {"type": "flattened", "depth_limit": 20, "ignore_above": 8191}
    return {"dynamic": False, "properties": properties}
