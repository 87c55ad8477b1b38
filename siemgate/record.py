"""The record contract: one bus record per event (DESIGN.md, "The record contract").

    {"v": 1, "id": "...", "kind": "event", "integration": "appsec-prod", "severity": "high",
     "received_at": "2026-11-28T21:00:00.123456Z", "batch": "...", "seq": 17,
     "peer": "203.0.113.7", "event": {...the original event, untouched...}}

Key: `id`. Headers: `kind`, `severity`, `integration`. Value: orjson bytes. Both the ingest
(which picks the topic from `severity`) and the forwarders use this module.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

import orjson

VERSION: Final = 1
Kind = Literal["event", "test", "confirmation"]
Severity = Literal["high", "medium", "low", "unknown"]
SEVERITIES: Final[tuple[Severity, ...]] = ("high", "medium", "low", "unknown")

_CANONICAL: Final[dict[str, Severity]] = {
    "high": "high",
    "critical": "high",
    "medium": "medium",
    "low": "low",
    "info": "low",
    "informational": "low",
}


def canonical_severity(value: object) -> Severity:
    """The one shared severity function: case-insensitive; `critical` is high, `info` and
    `informational` are low, anything else (missing, a number, a typo) is `unknown`."""
    if isinstance(value, str):
        return _CANONICAL.get(value.strip().lower(), "unknown")
    return "unknown"


def event_severity(event: object, fields: Sequence[str]) -> Severity:
    if isinstance(event, dict):
        for name in fields:
            if name in event:
                return canonical_severity(event[name])
    return "unknown"


def dumps(value: object) -> bytes:
    """orjson, falling back to the standard library for what orjson refuses (integers
    beyond 64 bits): the original event must survive whatever JSON it was."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def loads(data: bytes | str) -> object:
    """orjson, falling back to the standard library for integers beyond 64 bits.

    Raises ValueError for anything that is not JSON (NaN and Infinity included)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        return json.loads(text, parse_constant=_reject_constant)


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not valid JSON")


def event_id(event: object, integration: str, fields: Sequence[str]) -> str:
    """The vendor's id when the event has one, else a hash of its canonical bytes and the
    integration's name: deterministic, so a redelivered event is recognisably the same."""
    if isinstance(event, dict):
        for name in fields:
            value = event.get(name)
            if isinstance(value, str) and value:
                return value
            if isinstance(value, int) and not isinstance(value, bool):
                return str(value)
    digest = hashlib.sha256(integration.encode())
    digest.update(b"\0")
    digest.update(_canonical_bytes(event))
    return digest.hexdigest()[:32]


def _canonical_bytes(event: object) -> bytes:
    try:
        return orjson.dumps(event, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        return json.dumps(event, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class Record:
    """One event on the bus, ready to produce."""

    topic: str
    key: bytes
    value: bytes
    # A list: aiokafka's C record builder takes nothing else.
    headers: list[tuple[str, bytes]]
    severity: Severity
    kind: Kind


def topic_for(prefix: str, kind: Kind, severity: Severity) -> str:
    return f"{prefix}.events.{severity}" if kind == "event" else f"{prefix}.control"


def all_topics(prefix: str) -> list[str]:
    return [f"{prefix}.events.{s}" for s in SEVERITIES] + [f"{prefix}.control"]


def make_record(
    *,
    prefix: str,
    event: object,
    kind: Kind,
    integration: str,
    severity: Severity,
    event_id: str,
    received_at: str,
    batch: str,
    seq: int,
    peer: str,
) -> Record:
    envelope = {
        "v": VERSION,
        "id": event_id,
        "kind": kind,
        "integration": integration,
        "severity": severity,
        "received_at": received_at,
        "batch": batch,
        "seq": seq,
        "peer": peer,
        "event": event,
    }
    return Record(
        topic=topic_for(prefix, kind, severity),
        key=event_id.encode(),
        value=dumps(envelope),
        headers=[("kind", kind.encode()), ("severity", severity.encode()), ("integration", integration.encode())],
        severity=severity,
        kind=kind,
    )


def decode(value: bytes) -> Mapping[str, object]:
    """Decode a record value produced by `make_record`."""
    decoded = loads(value)
    if not isinstance(decoded, dict) or decoded.get("v") != VERSION:
        raise ValueError("not a siemgate record (v1)")
    return decoded
