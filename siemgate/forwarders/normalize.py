"""One normalized view of a record, from which every sink formats its output.

The record's `event` is the vendor's event, untouched. Sinks need a few fields that SOC
tools expect everywhere (id, timestamp, source ip, url, method, rule, action, asset); they
are looked up by configurable dotted paths, first match wins, with defaults that cover the
common spellings.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec

from siemgate.config import DEFAULT_FIELDS, NormalizeConfig
from siemgate.record import (
    SEVERITIES,
    Kind,
    Severity,
    canonical_severity,
    decode,
    dumps,
    envelope_decoder,
    envelope_event_decoder,
    event_in,
    json_decoder,
    readable,
)

# Event shapes (top-level key tuples) whose lookup plan is remembered; the values come from
# the network, so the number is bounded.
_MAX_SHAPES = 1024

SeverityOrder: Mapping[Severity, int] = {"unknown": 0, "low": 1, "medium": 2, "high": 3}


@dataclass(slots=True)
class NormalizedEvent:
    """What a sink formats. `event` is the vendor's event, as decoded from the record.

    Not frozen: creating one per event is on the forwarder's hot path (a frozen dataclass
    costs several microseconds more); treat it as read-only. `Normalizer.normalize` passes
    the fields positionally, in this order."""

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
        return dumps(self.event)

    def event_bytes(self) -> bytes:
        """The vendor's event as the ingest received it, when the record has one (an `Envelope`,
        as the ingest writes records): its exact numbers and no second encoding; else
        `event_json()`. Never contains a line break (NDJSON-safe)."""
        raw: bytes | None
        try:
            raw = bytes(_decode_envelope_event(self.record).event)
        except msgspec.DecodeError:
            raw = None
        except RecursionError:  # nested deeper than msgspec goes here: found without parsing it
            raw = event_in(self.record, self.id, self.kind, self.integration, self.severity, self.received_at,
                           self.batch, self.seq, self.peer)
        if raw is not None and b"\n" not in raw and b"\r" not in raw:
            return raw
        return dumps(self.event)


_decode_envelope = envelope_decoder.decode
_decode_json = json_decoder.decode
_decode_envelope_event = envelope_event_decoder.decode
_FIELD_NAMES: tuple[str, ...] = tuple(DEFAULT_FIELDS)  # NormalizedEvent's order, timestamp first
_CONTAINERS = (dict, list)

# How to find the normalized fields in events of one shape: per field, its index into
# _FIELD_NAMES, its conversion, and the paths whose first key the shape has, as (first key,
# the rest).
_Plan = tuple[tuple[int, Callable[[object], str | None], tuple[tuple[str, tuple[str, ...]], ...]], ...]


class Normalizer:
    def __init__(self, config: NormalizeConfig | None = None) -> None:
        config = config or NormalizeConfig()
        self.config = config
        self._paths = {
            name: tuple(tuple(p.split(".")) for p in (*config.fields.get(name, ()), *defaults))
            for name, defaults in DEFAULT_FIELDS.items()
        }
        # Per set of wanted fields, the plan of each event shape seen (top-level key tuple).
        self._plans: dict[frozenset[str] | None, dict[tuple[str, ...], _Plan]] = {}

    def routing_severity(self, severity: Severity) -> Severity:
        """The severity `min_severity` filters compare: unknown maps to the configured level."""
        return self.config.unknown_severity_as if severity == "unknown" else severity

    def normalize(self, value: bytes, fields: frozenset[str] | None = None) -> NormalizedEvent:
        """Raises ValueError for a value that is not a siemgate record. `fields`: the
        normalized fields to look up (the others are None); default all."""
        try:
            envelope = _decode_envelope(value)
            event = _decode_json(envelope.event)
        except (msgspec.DecodeError, RecursionError):  # also ValidationError: not exactly the envelope
            # An event holding a lone surrogate escape is read with U+FFFD in its place (the
            # record keeps the sender's bytes): every sink gets valid text.
            reading = readable(value)
            if reading == value:
                return self._normalize_any(decode(value), value, fields)
            try:
                envelope = _decode_envelope(reading)
                event = _decode_json(envelope.event)
            except (msgspec.DecodeError, RecursionError):
                return self._normalize_any(decode(value), value, fields)
        # The envelope as the ingest writes it: its types are checked, the values need no conversion.
        received_at = envelope.received_at
        timestamp, source_ip, url, method, rule, rule_id, action, asset, event_type, message = self._extract(
            event, fields)
        # Positional, in NormalizedEvent's field order: a keyword call costs twice as much.
        return NormalizedEvent(envelope.id, envelope.kind, envelope.integration, envelope.severity, received_at,
                               envelope.batch, envelope.seq, envelope.peer, timestamp or received_at, source_ip,
                               url, method, rule, rule_id, action, asset, event_type, message, event, value)

    def _normalize_any(self, record: Mapping[str, object], value: bytes,
                       fields: frozenset[str] | None) -> NormalizedEvent:
        """Any record: missing envelope fields take defaults, the others are converted."""
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
            timestamp=found[0] or received_at,
            source_ip=found[1],
            url=found[2],
            method=found[3],
            rule=found[4],
            rule_id=found[5],
            action=found[6],
            asset=found[7],
            event_type=found[8],
            message=found[9],
            event=event,
            record=value,
        )

    def _extract(self, event: object, fields: frozenset[str] | None) -> list[str | None]:
        """Per normalized field (of `fields`, if given), in _FIELD_NAMES order: the first
        scalar found, converted (`_timestamp` for the timestamp, else `_text`); or None."""
        found: list[str | None] = [None] * len(_FIELD_NAMES)
        if not isinstance(event, dict):
            return found
        plans = self._plans.get(fields)
        plan = plans.get(tuple(event)) if plans is not None else None
        if plan is None:
            plan = self._plan(event, fields)
        for index, convert, paths in plan:
            for first, rest in paths:
                value = event[first]
                if rest:
                    for part in rest:
                        value = value.get(part) if isinstance(value, dict) else None
                if value is not None and not isinstance(value, _CONTAINERS):
                    found[index] = convert(value)
                    break
        return found

    def _plan(self, event: dict[str, object], fields: frozenset[str] | None) -> _Plan:
        """The paths that can match an event with these top-level keys, remembered for its
        shape: events of one vendor share their shape, so most lookups are skipped."""
        plan = tuple(
            (index, _timestamp if name == "timestamp" else _text,
             tuple((path[0], path[1:]) for path in self._paths[name] if path[0] in event))
            for index, name in enumerate(_FIELD_NAMES)
            if fields is None or name in fields
        )
        plans = self._plans.setdefault(fields, {})
        if len(plans) < _MAX_SHAPES:
            plans[tuple(event)] = plan
        return plan


def _text(value: object) -> str | None:
    if type(value) is str:
        return value
    if value is None or isinstance(value, bool):
        return None if value is None else str(value).lower()
    return str(value)


_RFC3339_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?Z")
# What makes a match of it 6 fraction digits, by its length: 20 has none, 22-27 have 1-6.
_FRACTION_PADDING = {20: ".000000", **{21 + digits: "0" * (6 - digits) for digits in range(1, 7)}}


def _timestamp(value: object) -> str | None:
    """RFC 3339 UTC with microseconds, from ISO 8601 text or epoch seconds/milliseconds."""
    # The common case, already UTC with a Z: no datetime round trip.
    if isinstance(value, str) and _RFC3339_UTC.fullmatch(value):
        return f"{value[:-1]}{_FRACTION_PADDING[len(value)]}Z"
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


__all__: Sequence[str] = ("NormalizedEvent", "Normalizer", "passes")
