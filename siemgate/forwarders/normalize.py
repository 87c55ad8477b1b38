"""One normalized view of a record, from which every sink formats its output.

The record's `event` is the vendor's event, untouched. Sinks need a few fields that SOC
tools expect everywhere (id, timestamp, source ip, url, method, rule, action, asset); they
are looked up by configurable dotted paths, first match wins, with defaults that cover the
common spellings.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

from siemgate.errors import ConfigError
from siemgate.record import SEVERITIES, Kind, Severity, canonical_severity, decode

# Where each normalized field is looked for in the vendor's event, in order.
DEFAULT_FIELDS: Mapping[str, tuple[str, ...]] = {
    "timestamp": ("timestamp", "@timestamp", "time", "eventTime", "event_time", "date", "created_at", "createdAt"),
    "source_ip": ("source_ip", "sourceIp", "src_ip", "srcIp", "client_ip", "clientIp", "ip", "source.ip",
                  "source.address", "client.ip", "request.client_ip", "request.clientIp", "request.ip"),
    "url": ("url", "uri", "request.url", "request.uri", "http.url", "url.full"),
    "method": ("method", "http_method", "httpMethod", "request.method", "http.method", "http.request.method"),
    "rule": ("rule_name", "ruleName", "rule.name", "rule", "signature", "policy", "policyName"),
    "rule_id": ("rule_id", "ruleId", "rule.id", "signature_id", "signatureId"),
    "action": ("action", "outcome", "decision", "disposition", "result"),
    "asset": ("asset", "asset.name", "asset.host", "host", "hostname", "application.name", "application", "app",
              "target", "service"),
    "event_type": ("type", "event_type", "eventType", "category", "attack_type", "attackType"),
    "message": ("message", "description", "title", "summary", "details"),
}

# Event shapes (top-level key tuples) whose lookup plan is remembered; the values come from
# the network, so the number is bounded.
_MAX_SHAPES = 1024

SeverityOrder: Mapping[Severity, int] = {"unknown": 0, "low": 1, "medium": 2, "high": 3}


@dataclass(frozen=True, kw_only=True)
class NormalizeConfig:
    """`normalize:` in the config."""

    # How events of unknown severity are routed (min_severity filters, priority); they keep
    # `unknown` in every output. The default, high, lets them through every filter: an event
    # whose severity nobody could read must not vanish because of it.
    unknown_severity_as: Literal["high", "medium", "low"] = "high"
    # Extra or replacement lookup paths per normalized field, tried before the defaults.
    fields: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in self.fields:
            if name not in DEFAULT_FIELDS:
                known = ", ".join(DEFAULT_FIELDS)
                raise ConfigError(f"fields.{name}", f"is not a normalized field (known: {known})")


@dataclass(slots=True)
class NormalizedEvent:
    """What a sink formats. `event` is the vendor's event, as decoded from the record.

    Not frozen: creating one per event is on the forwarder's hot path (a frozen dataclass
    costs several microseconds more); treat it as read-only."""

    id: str
    kind: Kind
    integration: str
    severity: Severity
    received_at: str
    batch: str
    seq: int
    peer: str
    # The event's own time when it has a parseable one, else `received_at` (RFC 3339, UTC).
    timestamp: str
    source_ip: str | None
    url: str | None
    method: str | None
    rule: str | None
    rule_id: str | None
    action: str | None
    asset: str | None
    event_type: str | None
    message: str | None
    event: Any
    # The record value as it came off the bus: what a dead letter keeps.
    record: bytes

    def event_json(self) -> bytes:
        """The vendor's event as compact JSON."""
        return orjson.dumps(self.event)


class Normalizer:
    def __init__(self, config: NormalizeConfig | None = None) -> None:
        config = config or NormalizeConfig()
        self.config = config
        self._paths = {
            name: tuple(tuple(p.split(".")) for p in (*config.fields.get(name, ()), *defaults))
            for name, defaults in DEFAULT_FIELDS.items()
        }
        self._plans: dict[tuple[str, ...], dict[str, tuple[tuple[str, ...], ...]]] = {}

    def routing_severity(self, severity: Severity) -> Severity:
        """The severity `min_severity` filters compare: unknown maps to the configured level."""
        return self.config.unknown_severity_as if severity == "unknown" else severity

    def normalize(self, value: bytes, fields: frozenset[str] | None = None) -> NormalizedEvent:
        """Raises ValueError for a value that is not a siemgate record. `fields`: the
        normalized fields to look up (the others are None); default all."""
        record = decode(value)
        event = record.get("event")
        severity = record.get("severity")
        if severity not in SEVERITIES:
            severity = canonical_severity(severity)
        received_at = str(record.get("received_at") or "")
        found = self._extract(event, fields)
        return NormalizedEvent(
            id=str(record.get("id", "")),
            kind=record.get("kind", "event"),  # type: ignore[arg-type]
            integration=str(record.get("integration", "")),
            severity=severity,
            received_at=received_at,
            batch=str(record.get("batch", "")),
            seq=int(record.get("seq", 0) or 0),  # type: ignore[call-overload]
            peer=str(record.get("peer", "")),
            timestamp=_timestamp(found["timestamp"]) or received_at,
            source_ip=_text(found["source_ip"]),
            url=_text(found["url"]),
            method=_text(found["method"]),
            rule=_text(found["rule"]),
            rule_id=_text(found["rule_id"]),
            action=_text(found["action"]),
            asset=_text(found["asset"]),
            event_type=_text(found["event_type"]),
            message=_text(found["message"]),
            event=event,
            record=value,
        )

    def _extract(self, event: object, fields: frozenset[str] | None) -> dict[str, object]:
        """The first scalar found for each normalized field (of `fields`, if given)."""
        if not isinstance(event, dict):
            return dict.fromkeys(self._paths)
        # The paths that can match an event with these top-level keys: events of one vendor
        # share their shape, so most lookups are skipped after the first event.
        shape = tuple(event)
        plan = self._plans.get(shape)
        if plan is None:
            plan = {name: tuple(p for p in paths if p[0] in event) for name, paths in self._paths.items()}
            if len(self._plans) < _MAX_SHAPES:
                self._plans[shape] = plan
        found: dict[str, object] = dict.fromkeys(self._paths) if fields is not None else {}
        for name, paths in plan.items():
            if fields is not None and name not in fields:
                continue
            result: object = None
            for path in paths:
                value: object = event.get(path[0])
                for part in path[1:]:
                    value = value.get(part) if isinstance(value, dict) else None
                if value is not None and not isinstance(value, dict | list):
                    result = value
                    break
            found[name] = result
        return found


def _text(value: object) -> str | None:
    if value is None or isinstance(value, bool):
        return None if value is None else str(value).lower()
    return str(value)


_RFC3339_UTC = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,6}))?Z")


def _timestamp(value: object) -> str | None:
    """RFC 3339 UTC with microseconds, from ISO 8601 text or epoch seconds/milliseconds."""
    if isinstance(value, str):
        # The common case, already UTC with a Z: no datetime round trip.
        match = _RFC3339_UTC.fullmatch(value)
        if match is not None:
            return f"{match.group(1)}.{(match.group(2) or '').ljust(6, '0')}Z"
    moment: datetime | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = value / 1000 if value > 1e11 else value
        try:
            moment = datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    elif isinstance(value, str) and value:
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def passes(severity: Severity, minimum: Severity, normalizer: Normalizer) -> bool:
    """The `min_severity` filter, with unknown ranked as `unknown_severity_as`."""
    return SeverityOrder[normalizer.routing_severity(severity)] >= SeverityOrder[minimum]


__all__: Sequence[str] = ("NormalizeConfig", "NormalizedEvent", "Normalizer", "passes")
