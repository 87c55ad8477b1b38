"""Events as Elastic Common Schema (ECS) alert documents.

    {"@timestamp": "2026-11-28T21:00:00.123Z",
     "event": {"kind": "alert", "category": ["intrusion_detection"], "type": ["denied"],
               "severity": 73, "risk_score": 73.0, "id": "...", "created": "<received_at>",
               "ingested": "<now>", "action": "blocked", "module": "siemgate",
               "dataset": "siemgate.alerts", "original": "<the vendor's event as JSON>"},
     "data_stream": {"type": "logs", "dataset": "siemgate.alerts", "namespace": "default"},
     "message": "...", "rule": {"name": "...", "id": "..."},
     "source": {"address": "fe80::1%eth0", "ip": "fe80::1"}, "destination": {"address": "shop-frontend"},
     "url": {"original": "https://shop.example/login?q=1", "scheme": "https", "domain": "shop.example",
             "path": "/login", "query": "q=1"},
     "http": {"request": {"method": "post"}},
     "observer": {"vendor": "...", "product": "...", "type": "waf"},
     "labels": {"integration": "appsec-prod", "severity": "high"},
     "ecs": {"version": "8.11.0"},
     "siemgate": {"event": {...the vendor's event...}}}

`event.kind` is `alert` for the vendor's events (ECS: a detection made outside the Elastic
Stack) and `event` for the vendor's test messages. `@timestamp` is the receive time when
the event's own time is missing or no real instant (then `labels.timestamp_invalid` is the
vendor's text). `event.severity` / `event.risk_score`
follow DESIGN's table by the normalized `level` (critical 99, high 73, medium 47, low 21, the
Elastic rule presets); an event of
unknown severity carries neither, rather than an invented number.

`source.address` is the vendor's text as found (ECS: the raw address, always); `source.ip`
only an address Elasticsearch's `ip` type takes: an IPv6 zone (`fe80::1%eth0`) is stripped,
anything else that is no IP (a host name, `1.2.3.4:443`, `010.0.0.1`) stays in `source.address`
alone, so a bad value cannot make Elasticsearch refuse the document. `http.request.method` keeps
the vendor's case (ECS: "retain its casing from the original event").

`data_stream.type/dataset/namespace` are the parts of the target data stream's name when it
follows Elastic's naming scheme (`logs-<dataset>-<namespace>`), and `event.dataset` its
dataset (else `siemgate.alerts`): what Kibana and the data stream's `constant_keyword`s expect.

The vendor's object goes under a namespaced field (`original_field`, default `siemgate.event`:
the only field outside ECS, mapped `flattened` by `siemgate es-setup`, so its keys cannot collide
with ECS or explode the mapping). A flattened field takes objects nested at most
`FLATTENED_DEPTH_LIMIT` deep, no key holding NUL, and no leaf term (key path, NUL, value)
over 32766 bytes; deeper levels (objects and arrays) are carried as their JSON text, NUL in a
key as U+FFFD, an object with an over-long key path as its JSON text, and an event that is not
an object as `{"value": <event>}`, so no vendor event is refused for its shape. The usual
event (short, shallow) goes as the ingest's bytes; another is re-encoded from its parsed form.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any, Final

from siemgate.forwarders.formats.addresses import ip_text
from siemgate.forwarders.formats.urls import split_url
from siemgate.forwarders.normalize import NormalizedEvent
from siemgate.record import dumps

ECS_VERSION: Final = "8.11.0"
DEFAULT_DATASET: Final = "siemgate.alerts"
# The top-level names of ECS (its field sets and root fields, ECS 9.5): the vendor's event may
# not go under one of them (tests/forwarders/test_ecs_documents.py checks the list against ECS's).
ECS_TOP_LEVEL: Final = frozenset({
    "@timestamp", "agent", "client", "cloud", "container", "data_stream", "destination", "device", "dll", "dns",
    "ecs", "email", "entity", "error", "event", "faas", "file", "gen_ai", "group", "host", "http", "labels", "log",
    "message", "network", "observer", "orchestrator", "organization", "package", "process", "registry", "related",
    "rule", "server", "service", "source", "span", "tags", "threat", "tls", "trace", "transaction", "url", "user",
    "user_agent", "volume", "vulnerability",
})
# The `depth_limit` of the vendor's event's `flattened` mapping (Elasticsearch's default): the
# levels below it are sent as JSON text.
FLATTENED_DEPTH_LIMIT: Final = 20
# A flattened field indexes each leaf as one term `<key path>\0<value>`, at most 32766 bytes
# (Lucene), or Elasticsearch refuses the document ("immense field"). Values longer than
# `ignore_above` characters are not indexed (4 bytes a character at most), and a key path may
# not be longer than FLATTENED_MAX_KEY_BYTES: together they fit.
FLATTENED_IGNORE_ABOVE: Final = 4096
FLATTENED_MAX_KEY_BYTES: Final = 16000
_MAX_TERM_BYTES: Final = 32766
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


def ip_for_es(value: str) -> str | None:
    """`value` as Elasticsearch's `ip` type takes it, or None when it is no IP address: an IPv6
    zone (`%eth0`) is stripped (Elasticsearch refuses it); Python's parser takes zones, ES's not."""
    ip = ip_text(value)
    return None if ip is None else ip.address


def data_stream_parts(name: str) -> tuple[str, str, str] | None:
    """(type, dataset, namespace) of a data stream named by Elastic's scheme
    `<type>-<dataset>-<namespace>` (type logs or metrics, no `-` in the other two), else None."""
    parts = name.split("-")
    if len(parts) != 3 or not all(parts) or parts[0] not in ("logs", "metrics"):
        return None
    return parts[0], parts[1], parts[2]


def _fit(value: object, depth: int, path_bytes: int) -> object:
    if isinstance(value, dict):
        if depth > FLATTENED_DEPTH_LIMIT:
            return dumps(value).decode()
        fitted = {}
        for key, child in value.items():
            key = key.replace("\0", "\ufffd")
            child_bytes = path_bytes + len(key.encode()) + (1 if path_bytes else 0)
            if child_bytes > FLATTENED_MAX_KEY_BYTES:
                return dumps(value).decode()
            fitted[key] = _fit(child, depth + 1, child_bytes)
        return fitted
    if isinstance(value, list):
        if depth > FLATTENED_DEPTH_LIMIT:
            return dumps(value).decode()
        return [_fit(child, depth + 1, path_bytes) for child in value]
    return value


def flattened_fits(raw: bytes) -> bool:
    """Whether the vendor's event, as JSON, certainly fits a `flattened` field as it is: an
    object, fewer brackets than the depth limit (so no deeper nesting), no NUL escape (which a
    key could hold), shorter than a term may be (so no key path and value can be longer).
    Cheap: no parsing."""
    return (raw[:1] == b"{" and len(raw) < _MAX_TERM_BYTES
            and raw.count(b"{") + raw.count(b"[") <= FLATTENED_DEPTH_LIMIT and b"\\u0000" not in raw)


def fit_flattened(event: object) -> object:
    """The vendor's event as a `flattened` field takes it (see the module's doc): an object,
    nested at most FLATTENED_DEPTH_LIMIT deep counting arrays as levels (stricter than
    Elasticsearch, which does not count arrays, and within its parser's nesting limit), keys
    without NUL, key paths at most FLATTENED_MAX_KEY_BYTES long (an object holding a longer
    one is carried as its JSON text)."""
    return _fit(event if isinstance(event, dict) else {"value": event}, 1, 0)


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
                 observer: Mapping[str, str] | None = None, data_stream: tuple[str, str, str] | None = None
                 ) -> dict[str, Any]:
    """The ECS document of `event`; `data_stream`: the target's (type, dataset, namespace), see
    `data_stream_parts`."""
    ecs_event: dict[str, Any] = {
        "kind": "alert" if event.kind == "event" else "event",
        "category": _CATEGORY,
        "type": event_type(event.action),
        "id": event.id,
        "created": event.received_at,
        "ingested": ingested,
        "module": "siemgate",
        "dataset": data_stream[1] if data_stream else DEFAULT_DATASET,
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
    if data_stream is not None:
        doc["data_stream"] = {"type": data_stream[0], "dataset": data_stream[1], "namespace": data_stream[2]}
    if event.message is not None:
        doc["message"] = event.message
    if event.rule is not None or event.rule_id is not None:
        doc["rule"] = {k: v for k, v in (("name", event.rule), ("id", event.rule_id)) if v is not None}
    if event.source_ip:  # an empty text says nothing
        ip = ip_for_es(event.source_ip)
        doc["source"] = {"address": event.source_ip, "ip": ip} if ip is not None else {"address": event.source_ip}
    if event.asset is not None:
        doc["destination"] = {"address": event.asset}
    if event.url is not None:
        doc["url"] = url_fields(event.url)
    if event.method is not None:
        doc["http"] = {"request": {"method": event.method}}
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
        put_path(doc, original_field, fit_flattened(event.event))
    return doc


def _keyword(ignore_above: int = 1024) -> dict[str, Any]:
    return {"type": "keyword", "ignore_above": ignore_above}


def mappings(original_field: tuple[str, ...] | None,
             data_stream: tuple[str, str, str] | None = None) -> dict[str, Any]:
    """The index template's mappings for `ecs_document`'s fields; `data_stream`: the target's
    (type, dataset, namespace): `data_stream.*` mapped `constant_keyword` with these values."""
    properties: dict[str, Any] = {
        "@timestamp": {"type": "date"},
        "message": {"type": "match_only_text"},
        "event": {"properties": {
            "kind": _keyword(), "category": _keyword(), "type": _keyword(), "id": _keyword(),
            "created": {"type": "date"}, "ingested": {"type": "date"}, "module": _keyword(), "action": _keyword(),
            "dataset": _keyword(),
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
    if data_stream is not None:
        properties["data_stream"] = {"properties": {
            name: {"type": "constant_keyword", "value": value}
            for name, value in zip(("type", "dataset", "namespace"), data_stream, strict=True)}}
    if original_field:
        node = properties
        for key in original_field[:-1]:
            node = node.setdefault(key, {"properties": {}})["properties"]
        node[original_field[-1]] = {"type": "flattened", "depth_limit": FLATTENED_DEPTH_LIMIT,
                                     "ignore_above": FLATTENED_IGNORE_ABOVE}
    return {"dynamic": False, "properties": properties}
