"""One normalized view of a record, from which every sink formats its output.

The record's `event` is the vendor's event, untouched. Sinks need a few fields that SOC
tools expect everywhere (id, timestamp, source ip, url, method, rule, action, asset); they
are looked up by configurable dotted paths, first match wins, with defaults that cover the
common spellings; a path's first key also matches case- and separator-insensitively, and a
dotted path the flat key of its parts (`Normalizer._plan`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import msgspec

from siemgate.config import DEFAULT_FIELDS, NormalizeConfig
from siemgate.memo import MEMO_LIMIT, remember
from siemgate.record import (
    SEVERITIES,
    Kind,
    Level,
    Severity,
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
# Vendor severity labels remembered per integration (`Normalizer._vendor_severity`), and the
# longest label remembered.
_MAX_SEVERITIES = 4096
_LONGEST_SEVERITY = 64

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
    # The event's own time when it has one that is a real instant, else `received_at`
    # (RFC 3339, UTC, 6 fraction digits).
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
    # The event's time as the vendor wrote it (as text) when it was no real instant
    # (`2025-02-30T10:00:00Z`, `yesterday`): `timestamp` is then `received_at`. Else None.
    timestamp_invalid: str | None = None
    # The vendor's own severity label as text (normalized field `vendor_severity`), or None.
    vendor_severity: str | None = None
    # `severity` on the scale with `critical`: critical when the record is routed `high` and
    # the vendor's label reads as critical (`normalize.severity_map`); else `severity`.
    # What formats with a level above high show; `severity` is what routing uses.
    level: Level = "unknown"
    # Where the vendor's numeric severity lies on its integration's scale, 0.0 (least severe
    # end) to 1.0 (most severe end); None when it is a word or a number off the scale. What
    # a format with a finer numeric scale keeps (LEEF `sev`).
    severity_position: float | None = None
    # The vendor's event's bytes within `record` when `Normalizer.normalize` read the record as
    # the ingest writes it (a view, not a copy): `event_bytes()` then needs no second parse of
    # the record. Derived from `record`; None: found from `record` when asked.
    raw_event: msgspec.Raw | None = field(default=None, compare=False, repr=False)

    def event_json(self) -> bytes:
        """The vendor's event as compact JSON."""
        return dumps(self.event)

    def event_bytes(self) -> bytes:
        """The vendor's event as the ingest received it, when the record has one (an `Envelope`,
        as the ingest writes records): its exact numbers and no second encoding; else
        `event_json()`. Never contains a line break (NDJSON-safe)."""
        raw: bytes | None
        if self.raw_event is not None:
            raw = bytes(self.raw_event)
            if b"\n" not in raw and b"\r" not in raw:
                return raw
            return dumps(self.event)
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
_Plan = tuple[tuple[int, Callable[[object], object], tuple[tuple[str, tuple[str, ...]], ...]], ...]


class Normalizer:
    def __init__(self, config: NormalizeConfig | None = None) -> None:
        config = config or NormalizeConfig()
        self.config = config
        self._paths = {
            name: tuple(tuple(p.split(".")) for p in (*config.fields.get(name, ()), *defaults))
            for name, defaults in DEFAULT_FIELDS.items()
        }
        # The severity scheme per integration (`integrations[].severity_scheme`): what an
        # integration's number or word means; the default one for integrations not listed.
        self._scheme_for = config.scheme_for
        # Per set of wanted fields, the extractor of each event shape seen (top-level key tuple).
        # Per `fields`: each event shape's compiled extractor; and the plans of shapes seen once,
        # compiled when seen again (a one-off shape is walked: compiling costs ~40 plan walks).
        self._plans: dict[frozenset[str] | None, dict[tuple[str, ...], _Extractor]] = {}
        self._seen_once: dict[frozenset[str] | None, dict[tuple[str, ...], _Plan]] = {}
        # (integration, vendor's severity label) -> (critical?, position): `_vendor_severity`.
        self._severities: dict[tuple[str, str], tuple[bool, float | None]] = {}

    def routing_severity(self, severity: Severity) -> Severity:
        """The severity `min_severity` filters compare: unknown maps to the configured level."""
        return self.config.unknown_severity_as if severity == "unknown" else severity

    def normalize(self, value: bytes, fields: frozenset[str] | None = None) -> NormalizedEvent:
        """Raises ValueError for a value that is not a siemgate record. `fields`: the
        normalized fields to look up (the others are None); default all."""
        try:
            envelope = _decode_envelope(value)
            raw = envelope.event
            event = _decode_json(raw)
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
            raw = None  # the event's bytes as received are in `value`, not in `reading`
        # The envelope as the ingest writes it: its types are checked, the values need no conversion.
        # The lookups of `_extract`, `_vendor_severity` and `_timestamp` that answer nearly every
        # event are made here, without their calls (the forwarder makes them for every event).
        received_at = envelope.received_at
        extract = None
        if type(event) is dict:
            plans = self._plans.get(fields)
            if plans is not None:
                extract = plans.get(tuple(event))
        raw_time, source_ip, url, method, rule, rule_id, action, asset, event_type, message, vendor_severity = (
            extract(event) if extract is not None else self._extract(event, fields))
        severity = envelope.severity
        level: Level = severity
        position = None
        if vendor_severity is not None:
            known = self._severities.get((envelope.integration, vendor_severity))
            critical, position = (known if known is not None else
                                  self._vendor_severity(envelope.integration, vendor_severity))
            if critical and severity == "high":
                level = "critical"
        timestamp = invalid = None
        if raw_time is not None:
            if type(raw_time) is str:  # `_timestamp`'s memo
                timestamp = _SECONDS.get(raw_time[:19])
                if timestamp is not None:
                    tail = _TAILS.get(raw_time[19:])
                    timestamp = timestamp + tail if tail is not None else None
            if timestamp is None:
                timestamp = _timestamp_parsed(raw_time)
                if timestamp is None:
                    invalid = _text(raw_time)
        # Positional, in NormalizedEvent's field order: a keyword call costs twice as much.
        return NormalizedEvent(envelope.id, envelope.kind, envelope.integration, severity, received_at,
                               envelope.batch, envelope.seq, envelope.peer, timestamp or received_at, source_ip,
                               url, method, rule, rule_id, action, asset, event_type, message, event, value,
                               invalid, vendor_severity, level, position, raw)

    def _vendor_severity(self, integration: str, vendor_severity: str) -> tuple[bool, float | None]:
        """Whether the integration's scheme reads the vendor's label as critical, and its
        position on the scale; remembered per integration and label (they repeat)."""
        key = (integration, vendor_severity)
        found = self._severities.get(key)
        if found is None:
            scheme = self._scheme_for(integration)
            found = (scheme.level(vendor_severity) == "critical", scheme.position(vendor_severity))
            if len(self._severities) < _MAX_SEVERITIES and len(vendor_severity) <= _LONGEST_SEVERITY:
                self._severities[key] = found
        return found

    def _normalize_any(self, record: Mapping[str, object], value: bytes,
                       fields: frozenset[str] | None) -> NormalizedEvent:
        """Any record: missing envelope fields take defaults, the others are converted."""
        event = record.get("event")
        integration = str(record.get("integration", ""))
        scheme = self._scheme_for(integration)
        severity = record.get("severity")
        if severity not in SEVERITIES:
            severity = scheme.canonical(severity)
        received_at = str(record.get("received_at") or "")
        found = self._extract(event, fields)
        raw_time = found[0]
        timestamp = _timestamp(raw_time) if raw_time is not None else None
        vendor_severity = found[10]
        level: Level = severity
        if severity == "high" and vendor_severity is not None and scheme.level(vendor_severity) == "critical":
            level = "critical"
        return NormalizedEvent(
            id=str(record.get("id", "")),
            kind=record.get("kind", "event"),  # type: ignore[arg-type]
            integration=integration,
            severity=severity,
            received_at=received_at,
            batch=str(record.get("batch", "")),
            seq=int(record.get("seq", 0) or 0),  # type: ignore[call-overload]
            peer=str(record.get("peer", "")),
            timestamp=timestamp or received_at,
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
            timestamp_invalid=_text(raw_time) if raw_time is not None and timestamp is None else None,
            vendor_severity=vendor_severity,
            level=level,
            severity_position=scheme.position(vendor_severity) if vendor_severity is not None else None,
        )

    def _extract(self, event: object, fields: frozenset[str] | None) -> tuple[Any, ...]:
        """Per normalized field (of `fields`, if given), in _FIELD_NAMES order: the first
        scalar found, converted (`_text`; the timestamp as found, `_timestamp` converts it);
        or None."""
        if not isinstance(event, dict):
            return _NOTHING
        plans = self._plans.get(fields)
        shape = tuple(event)
        extract = plans.get(shape) if plans is not None else None
        if extract is not None:
            return extract(event)
        plans = self._plans.setdefault(fields, {})
        seen = self._seen_once.setdefault(fields, {})
        plan = seen.get(shape)
        if plan is not None and len(plans) < _MAX_SHAPES:  # its second event: compiled, kept
            del seen[shape]
            extract = plans[shape] = _compile(plan)
            return extract(event)
        if plan is None:
            plan = self._plan(event, fields)
            if len(seen) < _MAX_SHAPES:
                seen[shape] = plan
        return _walk(plan, event)

    def _plan(self, event: dict[str, object], fields: frozenset[str] | None) -> _Plan:
        """The paths that can match an event with these top-level keys, remembered for its
        shape (`_extract`: walked by `_walk` for its first event, then compiled by `_compile`):
        events of one vendor share their shape, so most lookups are skipped.

        A path's first key matches exactly, else case- and separator-insensitively (`sourceIP`,
        `SourceIp`, `source-ip` for `sourceIp`); a dotted path also matches the flat key of its
        parts joined (`assetName`, `asset_name` for `asset.name`). Done here, once per shape:
        the lookups per event are the same exact-key lookups as before."""
        folded: dict[str, str] | None = None
        entries = []
        for index, name in enumerate(_FIELD_NAMES):
            # the vendor's severity always: every format shows the level
            if fields is not None and name not in fields and name != "vendor_severity":
                continue
            paths: list[tuple[str, tuple[str, ...]]] = []
            for path in self._paths[name]:
                if path[0] in event:
                    found: list[tuple[str, tuple[str, ...]]] = [(path[0], path[1:])]
                else:
                    if folded is None:
                        folded = _folded_keys(event)
                    key = folded.get(_fold(path[0]))
                    found = [(key, path[1:])] if key is not None else []
                if len(path) > 1:
                    if folded is None:
                        folded = _folded_keys(event)
                    key = folded.get(_fold("".join(path)))
                    if key is not None:
                        found.append((key, ()))
                paths += (candidate for candidate in found if candidate not in paths)
            entries.append((index, _as_found if name == "timestamp" else _text, tuple(paths)))
        return tuple(entries)


# An event shape's extractor: the event -> the normalized fields (`Normalizer._extract`).
_Extractor = Callable[[dict[str, Any]], tuple[Any, ...]]
_NOTHING: tuple[None, ...] = (None,) * len(_FIELD_NAMES)


def _walk(plan: _Plan, event: dict[str, Any]) -> tuple[Any, ...]:
    """What `_compile(plan)(event)` returns, by walking the plan (for shapes seen once)."""
    found: list[Any] = [None] * len(_FIELD_NAMES)
    for index, convert, paths in plan:
        for first, rest in paths:
            value = event[first]
            for part in rest:
                value = value.get(part) if isinstance(value, dict) else None
            if value is not None and not isinstance(value, _CONTAINERS):
                found[index] = convert(value)
                break
    return tuple(found)


def _compile(plan: _Plan) -> _Extractor:
    """A plan as one function of straight-line code: per field, its paths in order, the first
    scalar found wins. The same lookups as walking the plan, without the loops and calls per
    field (the forwarder runs it for every event). The keys are no part of the code: they are
    the constants `_k<n>` of its namespace, whatever text the event's keys hold."""
    namespace: dict[str, Any] = {"_text": _text, "_CONTAINERS": _CONTAINERS}
    constants: dict[str, str] = {}

    def constant(key: str) -> str:
        name = constants.get(key)
        if name is None:
            name = constants[key] = f"_k{len(constants)}"
            namespace[name] = key
        return name

    lines = ["def extract(event):"]
    found = ["None"] * len(_FIELD_NAMES)
    for index, convert, paths in plan:
        if not paths:
            continue
        target = f"f{index}"
        found[index] = target
        lines.append(f"    {target} = None")
        for number, (first, rest) in enumerate(paths):
            indent = "    "
            if number:  # the next path only while nothing was found
                lines.append(f"    if {target} is None:")
                indent = "        "
            lines.append(f"{indent}v = event[{constant(first)}]")
            for part in rest:
                lines.append(f"{indent}v = v.get({constant(part)}) if isinstance(v, dict) else None")
            if convert is _as_found:
                lines.append(f"{indent}if v is not None and not isinstance(v, _CONTAINERS): {target} = v")
            else:
                lines.append(f"{indent}if type(v) is str: {target} = v")
                lines.append(f"{indent}elif v is not None and not isinstance(v, _CONTAINERS): {target} = _text(v)")
    lines.append(f"    return ({', '.join(found)},)")
    exec(compile("\n".join(lines), "<siemgate.normalize plan>", "exec"), namespace)  # noqa: S102 - no event text in the code
    extract: _Extractor = namespace["extract"]
    return extract


_SEPARATORS = str.maketrans("", "", "_-. ")


def _fold(key: str) -> str:
    """A field name as compared when not exact: lower case, without `_`, `-`, `.` and spaces."""
    return key.translate(_SEPARATORS).lower()


def _folded_keys(event: dict[str, object]) -> dict[str, str]:
    """The event's top-level keys by their folded form; the first of a folded form wins."""
    folded: dict[str, str] = {}
    for key in event:
        folded.setdefault(_fold(key), key)
    return folded


def _as_found(value: object) -> object:
    return value


def _text(value: object) -> str | None:
    if type(value) is str:
        return value
    if value is None or isinstance(value, bool):
        return None if value is None else str(value).lower()
    return str(value)


# RFC 3339 in UTC with a Z, each field in its range (whether day 29-31 exists is checked apart):
# ASCII digits only (`re.ASCII`: `\d` takes any script's), no year 0 (no date type reads it).
_RFC3339_UTC = re.compile(
    r"(?!0000)\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{1,6})?Z",
    re.ASCII)
# What makes a match of it 6 fraction digits, by its length: 20 has none, 22-27 have 1-6.
_FRACTION_PADDING = {20: ".000000", **{21 + digits: "0" * (6 - digits) for digits in range(1, 7)}}
# Epoch seconds, milliseconds, microseconds or nanoseconds as text ("1795899598",
# "1795899598123", "1795899598.5", "1795899598123456789").
_EPOCH_TEXT = re.compile(r"-?\d{9,19}(?:\.\d+)?", re.ASCII)
# An epoch number's unit by its magnitude (what `_epoch` divides by to get seconds): below
# 10^11 seconds (until year 5138), then milliseconds, microseconds, nanoseconds, each below
# 1000 times its predecessor's bound (Cloudflare's `unixnano`, Fastly's microseconds).
_EPOCH_UNITS = ((1e11, 1), (1e14, 1_000), (1e17, 1_000_000), (1e20, 1_000_000_000))
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# A leap second, `hh:mm:60`, in an ISO 8601 time: the date, the hour and minute, the rest.
_LEAP_SECOND = re.compile(r"(\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d):60(?:\.\d+)?(.*)")
# Verdicts on the days seen (YYYY-MM-DD -> a real date?): they repeat from event to event.
_DAYS: dict[str, bool] = {}
_MAX_DAYS = 4096


def _real_day(day: str) -> bool:
    valid = _DAYS.get(day)
    if valid is None:
        try:
            date.fromisoformat(day)
            valid = True
        except ValueError:
            valid = False
        if len(_DAYS) < _MAX_DAYS:
            _DAYS[day] = valid
    return valid


# The common case's two halves seen (`_timestamp`): `_RFC3339_UTC` is a date and time of 19
# characters followed by `(.digits)?Z`, and a text matches it (on a real day) exactly when its
# first 19 characters are a seconds prefix seen in a match and the rest a tail seen in one.
# Prefix -> itself; tail -> its 6-digit form. Bounded (`memo.remember`: the values come from the network):
# emptied when full (a new second every second).
_SECONDS: dict[str, str] = {}
_TAILS: dict[str, str] = {}
_MAX_MEMO = MEMO_LIMIT


def _timestamp(value: object) -> str | None:
    """RFC 3339 UTC with microseconds, from ISO 8601 text (any offset, `T`/`t`, `Z`/`z`) or
    epoch seconds/milliseconds/microseconds/nanoseconds by magnitude (numbers or numeric text,
    `_EPOCH_UNITS`); None when the value is no real instant (`2025-02-30`, hour 24 or more,
    minute 60 ...). A leap second, `23:59:60` in UTC, is the last microsecond before it,
    `23:59:59.999999` (Python's datetime has no second 60)."""
    # The common case, already UTC with a Z, seen before (its second and its fraction's form):
    # two lookups (events of one second share the prefix, the tails are few).
    if type(value) is str:
        seconds = _SECONDS.get(value[:19])
        if seconds is not None:
            tail = _TAILS.get(value[19:])
            if tail is not None:
                return seconds + tail
    return _timestamp_parsed(value)


def _timestamp_parsed(value: object) -> str | None:
    """`_timestamp`, by its rules (and remembering the common case's halves)."""
    # The common case, already UTC with a Z: no datetime round trip, only the fields' ranges.
    if isinstance(value, str) and _RFC3339_UTC.fullmatch(value) and (value[8:10] < "29" or _real_day(value[:10])):
        if type(value) is str:  # a subclass's slices would not be the same text
            remember(_SECONDS, value[:19], value[:19], _MAX_MEMO)
            remember(_TAILS, value[19:], f"{value[19:-1]}{_FRACTION_PADDING[len(value)]}Z", _MAX_MEMO)
        return f"{value[:-1]}{_FRACTION_PADDING[len(value)]}Z"
    moment: datetime | None = None
    if isinstance(value, str) and _EPOCH_TEXT.fullmatch(value.strip()):
        value = float(value) if "." in value else int(value)  # an integer exactly
    if isinstance(value, int | float) and not isinstance(value, bool):
        moment = _epoch(value)
    elif isinstance(value, str) and value:
        moment = _iso_moment(value)
    if moment is None:
        return None
    try:
        moment = moment.astimezone(UTC)
    except OverflowError:  # a local time whose UTC instant is before year 1 or after 9999
        return None
    # The year zero-padded by hand: the C library's %Y writes year 999 as `999` (glibc), no
    # RFC 3339 time.
    return f"{moment.year:04d}{moment:-%m-%dT%H:%M:%S.%fZ}"


def _epoch(value: int | float) -> datetime | None:
    """Epoch seconds, milliseconds, microseconds or nanoseconds (`_EPOCH_UNITS`, by magnitude)
    as a moment; an integer exactly (to the microsecond, rounding down), a float as
    `datetime.fromtimestamp` rounds it. None: out of range, or no number (NaN)."""
    per_second = next((unit for bound, unit in _EPOCH_UNITS if -bound < value < bound), None)
    if per_second is None:
        return None
    try:
        if type(value) is int:
            if per_second <= 1_000_000:
                return _EPOCH + timedelta(microseconds=value * (1_000_000 // per_second))
            return _EPOCH + timedelta(microseconds=value // 1_000)
        return datetime.fromtimestamp(value / per_second, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _iso_moment(text: str) -> datetime | None:
    """ISO 8601 text as an aware datetime (UTC when it names no zone), or None."""
    text = text.replace("Z", "+00:00").replace("z", "+00:00")
    leap = None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        leap = _LEAP_SECOND.fullmatch(text)
        if leap is None:
            return None
        try:
            moment = datetime.fromisoformat(f"{leap[1]}:59{leap[2]}")
        except ValueError:
            return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if leap is not None:
        # Only the last second of a UTC day can be a leap second.
        try:
            moment = moment.astimezone(UTC)
        except OverflowError:  # before year 1 or after 9999 in UTC
            return None
        if (moment.hour, moment.minute) != (23, 59):
            return None
        moment = moment.replace(microsecond=999999)
    return moment


def passes(severity: Severity, minimum: Severity, normalizer: Normalizer) -> bool:
    """The `min_severity` filter, with unknown ranked as `unknown_severity_as`."""
    return SeverityOrder[normalizer.routing_severity(severity)] >= SeverityOrder[minimum]


__all__: Sequence[str] = ("NormalizedEvent", "Normalizer", "passes")
