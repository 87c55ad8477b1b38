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
from typing import Final, Literal, NamedTuple

import orjson

VERSION: Final = 1  # also spelled out in BatchEncoder.encode
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


# Verdicts for the spellings seen so far ("High", "CRITICAL" ...): they repeat from event
# to event. Bounded: the values come from the network.
_SEEN: dict[str, Severity] = {}
_SEEN_MAX: Final = 1024
# Only short spellings are remembered: a sender chooses these strings.
_SEEN_LONGEST: Final = 64


def canonical_severity(value: object) -> Severity:
    """The one shared severity function: case-insensitive; `critical` is high, `info` and
    `informational` are low, anything else (missing, a number, a typo) is `unknown`."""
    if not isinstance(value, str):
        return "unknown"
    seen = _SEEN.get(value)
    if seen is None:
        seen = _CANONICAL.get(value.strip().lower(), "unknown")
        if len(_SEEN) < _SEEN_MAX and len(value) <= _SEEN_LONGEST:
            _SEEN[value] = seen
    return seen


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


# Python refuses to read integers of more digits than this (CVE-2020-10735's limit).
_MAX_INT_DIGITS: Final = 4300
_DIGITS_AS_ZERO: Final = bytes.maketrans(b"123456789", b"000000000")


def unrepresentable(data: bytes) -> str | None:
    """Why an event's JSON could not be read back by the forwarders, or None: an integer of
    more than 4,300 digits (Python's limit). Free for ordinary events: only an event longer
    than that can hold one, and it is parsed only if it has such a run of digits. (Depth is
    bounded by the ingest's parser; numbers beyond a double travel as the sender wrote them.)"""
    if len(data) <= _MAX_INT_DIGITS or b"0" * (_MAX_INT_DIGITS + 1) not in data.translate(_DIGITS_AS_ZERO):
        return None
    try:
        loads(data)
    except (ValueError, RecursionError) as exc:
        return str(exc)
    return None


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


class Record(NamedTuple):
    """One event on the bus, ready to produce. (A NamedTuple: batches create hundreds.)"""

    topic: str
    key: bytes
    value: bytes
    # A list: aiokafka's C record builder takes nothing else. Shared between records.
    headers: list[tuple[str, bytes]]
    severity: Severity
    kind: Kind


def topic_for(prefix: str, kind: Kind, severity: Severity) -> str:
    return f"{prefix}.events.{severity}" if kind == "event" else f"{prefix}.control"


def all_topics(prefix: str) -> list[str]:
    return [f"{prefix}.events.{s}" for s in SEVERITIES] + [f"{prefix}.control"]


class BatchEncoder:
    """Encodes the records of one batch; what all of them share is serialized once.

    The value is byte-for-byte what `orjson.dumps` gives for the envelope (keys in contract
    order, `event` last), built by joining pre-serialized parts around each event's bytes.
    """

    def __init__(self, *, prefix: str, integration: str, received_at: str, batch: str, peer: str) -> None:
        self._prefix = prefix
        self._integration = integration
        self._received_at = received_at
        self._batch = batch
        self._tail = b',"peer":' + orjson.dumps(peer) + b',"event":'
        self._middles: dict[str, tuple[str, bytes, list[tuple[str, bytes]]]] = {}

    def _middle(self, kind: Kind, severity: Severity) -> tuple[str, bytes, list[tuple[str, bytes]]]:
        found = self._middles.get(kind + severity)
        if found is None:
            middle = orjson.dumps(
                {
                    "kind": kind,
                    "integration": self._integration,
                    "severity": severity,
                    "received_at": self._received_at,
                    "batch": self._batch,
                }
            )
            headers = [("kind", kind.encode()), ("severity", severity.encode()),
                       ("integration", self._integration.encode())]
            found = (topic_for(self._prefix, kind, severity), b"," + middle[1:-1] + b',"seq":', headers)
            self._middles[kind + severity] = found
        return found

    def encode(self, *, event_id: str, kind: Kind, severity: Severity, seq: int, event_bytes: bytes) -> Record:
        """`event_bytes` is the event serialized with `dumps`."""
        found = self._middles.get(kind + severity)
        topic, middle, headers = found if found is not None else self._middle(kind, severity)
        value = b"".join(
            (b'{"v":1,"id":', orjson.dumps(event_id), middle, b"%d" % seq, self._tail, event_bytes, b"}")
        )
        return Record(topic, event_id.encode(), value, headers, severity, kind)


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
    """One record on its own (the ingest encodes whole batches with `BatchEncoder`)."""
    encoder = BatchEncoder(prefix=prefix, integration=integration, received_at=received_at, batch=batch, peer=peer)
    return encoder.encode(event_id=event_id, kind=kind, severity=severity, seq=seq, event_bytes=dumps(event))


def decode(value: bytes) -> Mapping[str, object]:
    """Decode a record value produced by `make_record`."""
    decoded = loads(value)
    if not isinstance(decoded, dict) or decoded.get("v") != VERSION:
        raise ValueError("not a siemgate record (v1)")
    return decoded
