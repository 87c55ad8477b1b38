"""The record contract: one bus record per event (docs/DESIGN.md, "The record contract").

    {"v":1,"id":"...","kind":"event","integration":"appsec-prod","severity":"high",
     "received_at":"2026-11-28T21:00:00.123456Z","batch":"...","seq":17,
     "peer":"203.0.113.7","event":{...the original event, byte for byte...}}

Key: `id`. Headers: `kind`, `severity`, `integration`. Value: an `Envelope`, compact JSON in
field order. The ingest writes it (`BatchEncoder`, which also picks the topic from
`severity`), the forwarders read it (`siemgate.forwarders.normalize`), and a dead letter
(`DeadLetterValue`) carries it byte for byte: all three use the definitions of this module.
"""

from __future__ import annotations

import hashlib
import json
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from itertools import repeat
from typing import Any, Final, Literal, NamedTuple

import msgspec
import orjson

VERSION: Final = 1
Kind = Literal["event", "test", "confirmation"]
Severity = Literal["high", "medium", "low", "unknown"]
SEVERITIES: Final[tuple[Severity, ...]] = ("high", "medium", "low", "unknown")

# The vendor's severity on siemgate's scale: the topics' four severities plus `critical`,
# which is routed (topics, `min_severity`, priority) as `high` but kept distinct in every
# format that has a level above high (RFC 5424 1 alert, CEF 10, ECS 99, CIM critical).
Level = Literal["critical", "high", "medium", "low", "unknown"]
LEVELS: Final[tuple[Level, ...]] = ("critical", "high", "medium", "low", "unknown")
_ROUTED: Final[dict[Level, Severity]] = {"critical": "high", "high": "high", "medium": "medium", "low": "low",
                                         "unknown": "unknown"}

# The vendors' words, compared in lower case with `-`, `_` and runs of spaces made one space
# ("Very-High", "very_high" and "VERY  HIGH" are "very high"). The syslog names (RFC 5424's
# emergency .. debug, and their keywords emerg, crit, err, warn) map by meaning: emergency,
# alert and critical are critical; error is high; warning medium; notice, informational and
# debug low.
DEFAULT_SEVERITY_WORDS: Final[Mapping[str, Level]] = {
    **dict.fromkeys(("critical", "crit", "very high", "veryhigh", "highest", "emergency", "emerg", "alert",
                     "fatal", "urgent", "blocker", "p1", "sev1"), "critical"),
    **dict.fromkeys(("high", "error", "err", "severe", "major", "important", "p2", "sev2"), "high"),
    **dict.fromkeys(("medium", "moderate", "warning", "warn", "med", "elevated", "p3", "sev3"), "medium"),
    **dict.fromkeys(("low", "minor", "notice", "info", "informational", "information", "debug", "lowest", "trivial",
                     "very low", "none", "p4", "p5", "sev4", "sev5"), "low"),
}
# Numbers (and numeric text) as scores from 0 to DEFAULT_SEVERITY_MAX: the lowest score of
# each level, CVSS v3's qualitative bands (0.1-3.9 low, 4.0-6.9 medium, 7.0-8.9 high,
# 9.0-10.0 critical; 0, CVSS "none", is low too). A score outside 0..max is unknown.
DEFAULT_SEVERITY_BANDS: Final[Mapping[Level, float]] = {"critical": 9.0, "high": 7.0, "medium": 4.0, "low": 0.0}
DEFAULT_SEVERITY_MAX: Final = 10.0



class SeverityScale(NamedTuple):
    """A numeric severity scale: its ends, which end is the most severe, and each level's
    threshold (the least severe score that still has that level; see `SeverityScheme`)."""

    minimum: float
    maximum: float
    most_severe: Literal["max", "min"]
    bands: Mapping[Level, float]


# The numeric scales an integration can name (`integrations[].severity_scheme`, or a scheme's
# `scale`): scores where the highest number is the most severe, priorities where 1 is.
BUILTIN_SCALES: Final[Mapping[str, SeverityScale]] = {
    "scores-0-10": SeverityScale(0.0, DEFAULT_SEVERITY_MAX, "max", DEFAULT_SEVERITY_BANDS),
    "scores-1-5": SeverityScale(1.0, 5.0, "max", {"critical": 5.0, "high": 4.0, "medium": 3.0, "low": 1.0}),
    "scores-1-4": SeverityScale(1.0, 4.0, "max", {"critical": 4.0, "high": 3.0, "medium": 2.0, "low": 1.0}),
    "priority-1-5": SeverityScale(1.0, 5.0, "min", {"critical": 1.0, "high": 2.0, "medium": 3.0, "low": 5.0}),
    "priority-1-4": SeverityScale(1.0, 4.0, "min", {"critical": 1.0, "high": 2.0, "medium": 3.0, "low": 4.0}),
}

_SEPARATORS: Final = str.maketrans("-_", "  ")
_NUMBER: Final = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")
# Verdicts are remembered for the spellings seen ("High", "CRITICAL" ...): they repeat from
# event to event. Bounded: the values come from the network.
_SEEN_MAX: Final = 1024
# Only short spellings are remembered: a sender chooses these strings.
_SEEN_LONGEST: Final = 64


class SeverityScheme:
    """How a vendor's severity value becomes a level (and a routed severity): words, and
    numbers as scores on a scale. `words` are added to (and override) the defaults; `bands`
    (level -> its threshold), `minimum`, `maximum` and `most_severe` replace the default 0-10
    scale. A level's threshold is the least severe score that still has that level: with
    `most_severe="max"` a score has the first level (most severe first) whose threshold it
    reaches (>=), with `"min"` (1 the most severe, as priorities P1-P5 are) the first whose
    threshold it does not pass (<=). A score outside minimum..maximum is unknown."""

    def __init__(self, words: Mapping[str, Level] | None = None, bands: Mapping[Level, float] | None = None,
                 maximum: float | None = None, minimum: float = 0.0,
                 most_severe: Literal["max", "min"] = "max") -> None:
        self._words: dict[str, Level] = {**DEFAULT_SEVERITY_WORDS, **{word_key(w): v for w, v in (words or {}).items()}}
        chosen = bands if bands is not None else DEFAULT_SEVERITY_BANDS
        self._descending = most_severe == "max"
        # Most severe band first: the highest threshold on a scale whose maximum is the most severe.
        self._bands = sorted(((float(low), level) for level, low in chosen.items()), reverse=self._descending)
        self._maximum = float(maximum) if maximum is not None else DEFAULT_SEVERITY_MAX
        self._minimum = float(minimum)
        self._seen: dict[str, Severity] = {}
        self._seen_levels: dict[str, Level] = {}
        self.canonical: Callable[[object], Severity] = self._canonical_function()

    def _canonical_function(self) -> Callable[[object], Severity]:
        """`canonical`, as a closure over the verdicts: on the ingest's hot path (the 200 waits
        for it), a remembered spelling costs one dict lookup, as before schemes existed."""
        seen = self._seen
        remember = self._remember

        def canonical(value: object) -> Severity:
            """The routed severity (high, medium, low or unknown): `critical` is high."""
            if type(value) is str:
                found = seen.get(value)
                if found is not None:
                    return found
                return remember(value)
            return _ROUTED[self.level(value)]

        return canonical

    def _remember(self, value: str) -> Severity:
        found = _ROUTED[self.level(value)]
        if len(self._seen) < _SEEN_MAX and len(value) <= _SEEN_LONGEST:
            self._seen[value] = found
        return found

    def level(self, value: object) -> Level:
        """The vendor's value on siemgate's scale; `unknown` for what no rule reads (missing,
        a typo, a boolean, a score outside the scale)."""
        if isinstance(value, str):
            seen = self._seen_levels.get(value)
            if seen is None:
                seen = self._word_level(value)
                if len(self._seen_levels) < _SEEN_MAX and len(value) <= _SEEN_LONGEST:
                    self._seen_levels[value] = seen
            return seen
        if isinstance(value, int | float) and not isinstance(value, bool):
            return self._score_level(value)
        return "unknown"

    def _word_level(self, value: str) -> Level:
        key = word_key(value)
        found = self._words.get(key)
        if found is None and " " in key:  # spaces are ignored too: "sev 3" is "sev3"
            found = self._words.get(key.replace(" ", ""))
        if found is not None:
            return found
        if _NUMBER.fullmatch(key):
            return self._score_level(float(key))
        return "unknown"

    def _score_level(self, score: float) -> Level:
        if not self._minimum <= score <= self._maximum:  # NaN included
            return "unknown"
        for threshold, level in self._bands:
            if (score >= threshold) if self._descending else (score <= threshold):
                return level
        return "unknown"

    def position(self, value: object) -> float | None:
        """Where a numeric vendor severity (a number or numeric text) lies on this scale, from
        0.0 (the least severe end) to 1.0 (the most severe); None for a word, or a number
        outside the scale. What a format with a finer numeric scale (LEEF `sev`) keeps of it."""
        if isinstance(value, str):
            key = value.strip()
            if not _NUMBER.fullmatch(key) or word_key(value) in self._words:
                return None
            score = float(key)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            score = float(value)
        else:
            return None
        if not self._minimum <= score <= self._maximum:  # NaN included
            return None
        span = self._maximum - self._minimum
        fraction = (score - self._minimum) / span if span else 1.0
        return fraction if self._descending else 1.0 - fraction


def word_key(word: str) -> str:
    """A severity word as compared: lower case, `-`/`_` as spaces, spaces collapsed."""
    return " ".join(word.translate(_SEPARATORS).lower().split())


DEFAULT_SCHEME: Final = SeverityScheme()


# The routed severity of a vendor's value by the default scheme (`SeverityScheme`):
# case-insensitive words (`critical` and `very high` are high here, `warning` medium, `info`
# low ...), numbers and numeric text as 0-10 scores; anything else `unknown`.
canonical_severity: Final = DEFAULT_SCHEME.canonical


def severity_level(value: object) -> Level:
    """The vendor's value on siemgate's scale (with `critical`) by the default scheme."""
    return DEFAULT_SCHEME.level(value)


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
_DIGIT_RUN: Final = re.compile(rb"[0-9]*")
_TOO_MANY_DIGITS: Final = re.compile(rb"[0-9]{%d}" % (_MAX_INT_DIGITS + 1))
_DIGITS: Final = b"0123456789"


def long_digit_run(data: bytes) -> bool:
    """Whether `data` holds a run of more than 4,300 ASCII digits. Cheap for any length: such a
    run covers an offset that is a multiple of 4,301, so only the runs through the digits at
    those offsets are measured (most long texts: a few bytes looked at)."""
    step = _MAX_INT_DIGITS + 1
    if len(data) < step:
        return False
    sampled = data[::step]
    if len(sampled.translate(None, _DIGITS)) == len(sampled):
        return False
    for index, byte in enumerate(sampled):
        if 0x30 <= byte <= 0x39:
            end = _DIGIT_RUN.match(data, index * step).end()  # type: ignore[union-attr]  # always matches
            if end >= step and _TOO_MANY_DIGITS.match(data, end - step):
                return True
    return False


def unrepresentable(data: bytes) -> str | None:
    """Why an event's JSON could not be read back by the forwarders, or None: an integer of
    more than 4,300 digits (Python's limit). Free for ordinary events: only an event with a
    run of that many digits can hold one, and only such an event is parsed. (Depth is bounded
    by the ingest's parser; numbers beyond a double travel as the sender wrote them.)"""
    if not long_digit_run(data):
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
        # surrogatepass: an event read with a lone surrogate (`"\\ud83d"`) still hashes, to
        # bytes of its own (the same as before for every other event).
        return json.dumps(event, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode(
            "utf-8", "surrogatepass")


# Every backslash escape of a JSON text, left to right (so `\\\\` is one escape); groups: a
# high surrogate escape and the low one that may follow it, or a low surrogate escape alone.
_ESCAPE: Final = re.compile(
    rb"\\(?:u([dD][89abAB][0-9a-fA-F]{2})(\\u[dD][c-fC-F][0-9a-fA-F]{2})?|u([dD][c-fC-F][0-9a-fA-F]{2})|.)",
    re.DOTALL)
_REPLACEMENT: Final = b"\\ufffd"


def _replace_lone(match: re.Match[bytes]) -> bytes:
    high, low, lone_low = match.group(1, 2, 3)
    if (high is not None and low is None) or lone_low is not None:
        return _REPLACEMENT
    return match.group(0)


def lone_surrogates(data: bytes) -> bool:
    """Whether JSON text `data` holds a lone surrogate escape (`"\\ud83d"` without its low
    half: what a UTF-16 runtime writes when it cuts a string in the middle of an emoji)."""
    return b"\\u" in data and readable(data) != data


def readable(data: bytes) -> bytes:
    """JSON text `data` with each lone surrogate escape replaced by `\\ufffd` (U+FFFD, the
    replacement character): what siemgate reads of an event whose sender wrote one, since
    a lone surrogate is no text (strict parsers refuse it, UTF-8 cannot encode it). Same
    length, so every offset in `data` stays valid; `data` itself when it holds none."""
    if b"\\u" not in data:
        return data
    return _ESCAPE.sub(_replace_lone, data)


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


class Envelope(msgspec.Struct):
    """A record's value: one event and where it came from. The one definition of the envelope.

    Encoded as compact JSON, keys in this order (`event` last), byte for byte what the ingest
    has always written; `event` is the sender's JSON, untouched (`msgspec.Raw`). Build it
    positionally (a keyword call costs twice as much).
    """

    v: Literal[1]
    id: str
    kind: Kind
    integration: str
    severity: Severity
    received_at: str
    batch: str
    seq: int
    peer: str
    event: msgspec.Raw


class EnvelopeEvent(msgspec.Struct):
    """An Envelope read for its `event` alone, undecoded: what a sink that writes the sender's
    bytes needs, for less than decoding the whole Envelope."""

    event: msgspec.Raw


class DeadLetterValue(msgspec.Struct):
    """A dead letter's value (`<prefix>.dlq.<sink>`): why the sink refused the record, and the
    record itself, byte for byte as it was on the bus (`record` last)."""

    sink: str
    reason: str
    attempts: int
    failed_at: str
    id: str
    record: msgspec.Raw


_encode: Final = msgspec.json.Encoder().encode
# Strict: a value that is not exactly an Envelope (a field missing or of another type, another
# version, not JSON) raises msgspec.DecodeError, a ValueError; `decode` reads any record.
# msgspec recurses on nested JSON: nesting deeper than the recursion limit allows where it is
# called raises RecursionError (orjson's fixed limit is 1024 levels).
envelope_decoder: Final = msgspec.json.Decoder(Envelope)
envelope_event_decoder: Final = msgspec.json.Decoder(EnvelopeEvent)
dead_letter_decoder: Final = msgspec.json.Decoder(DeadLetterValue)
# JSON into Python objects, integers beyond 64 bits exactly: how the forwarders read an event.
json_decoder: Final = msgspec.json.Decoder()


def encode_value(value: Envelope | DeadLetterValue) -> bytes:
    return _encode(value)


# Stands for the fields that differ from record to record in an encoded Envelope: a raw zero
# byte, which JSON text never holds (a string escapes it as \u0000).
_HOLE: Final = msgspec.Raw(b"\0")


def event_in(value: bytes, ident: str, kind: Kind, integration: str, severity: Severity, received_at: str,
             batch: str, seq: int, peer: str) -> bytes | None:
    """The event's bytes in the record `value`, when `value` is exactly the Envelope of these
    fields (as the ingest writes it); else None. Found by encoding the Envelope around a hole,
    so the event is not parsed: cheap, and at any depth of nesting."""
    try:
        head, end = _encode(Envelope(VERSION, ident, kind, integration, severity, received_at, batch, seq, peer,
                                     _HOLE)).split(b"\0")
    except (TypeError, ValueError):  # not what a writer could have written (a lone surrogate ...)
        return None
    if len(value) > len(head) + len(end) and value.startswith(head) and value.endswith(end):
        return value[len(head) : len(value) - len(end)]
    return None


class BatchEncoder:
    """Encodes the records of one batch as `Envelope`s.

    What the records of one batch share (kind, integration, severity, received_at, batch,
    peer) is encoded once per kind and severity, by encoding an Envelope whose per-record
    fields (`id`, `seq`, `event`) are holes; each record joins those parts around its own
    values. Byte for byte `encode_value(Envelope(...))` (tested), for a join instead of
    encoding every field of every record (~0.2 µs an event less: bench/envelope.py).
    """

    def __init__(self, *, prefix: str, integration: str, received_at: str, batch: str, peer: str) -> None:
        self._prefix = prefix
        self._integration = integration
        self._received_at = received_at
        self._batch = batch
        self._peer = peer
        self._shared: dict[str, tuple[str, tuple[bytes, bytes, bytes, bytes], list[tuple[str, bytes]]]] = {}

    def _parts(self, kind: Kind, severity: Severity) -> tuple[str, tuple[bytes, bytes, bytes, bytes],
                                                                list[tuple[str, bytes]]]:
        hole: Any = _HOLE  # in place of a str and an int: encoding does not check types
        template = _encode(Envelope(VERSION, hole, kind, self._integration, severity, self._received_at,
                                    self._batch, hole, self._peer, _HOLE))
        head, middle, tail, end = template.split(b"\0")  # around id, seq and event, in field order
        headers = [("kind", kind.encode()), ("severity", severity.encode()),
                   ("integration", self._integration.encode())]
        found = (topic_for(self._prefix, kind, severity), (head, middle, tail, end), headers)
        self._shared[kind + severity] = found
        return found

    def encode(self, *, event_id: str, kind: Kind, severity: Severity, seq: int, event_bytes: bytes) -> Record:
        """`event_bytes` is the event's JSON (the sender's bytes, or `dumps`'s)."""
        found = self._shared.get(kind + severity)
        topic, (head, middle, tail, end), headers = found if found is not None else self._parts(kind, severity)
        value = b"".join((head, _encode(event_id), middle, b"%d" % seq, tail, event_bytes, end))
        return Record(topic, event_id.encode(), value, headers, severity, kind)

    def encode_batch(self, ids: Sequence[str], kinds: Sequence[Kind], severities: Sequence[Severity],
                     events: Sequence[bytes | msgspec.Raw]) -> list[Record]:
        """The records of a whole batch, `seq` 0, 1, 2 ...: byte for byte `encode` of each
        (tested), column by column in C (`map`, `zip`, `bytes.join`) instead of Python calls
        per event. `events`: each event's JSON, as bytes or any buffer (a `msgspec.Raw` of the
        body: copied once, into its record)."""
        count = len(ids)
        keys = list(map(str.encode, ids))
        # An id's JSON string is its UTF-8 between quotes unless it holds what JSON escapes.
        quoted = keys if _plain_in_json(b"".join(keys)) else [_encode(i)[1:-1] for i in ids]
        # What each record shares with others, keyed by its kind and severity (by its severity
        # alone when every record is an event, as nearly all are: no key to build per record).
        pairs: Sequence[str]
        parts: dict[str, tuple[str, tuple[bytes, bytes, bytes, bytes], list[tuple[str, bytes]]]]
        if kinds.count("event") == count:
            pairs = severities
            parts = {severity: self._shared.get("event" + severity) or self._parts("event", severity)
                     for severity in set(severities)}
        else:
            pairs = list(map(operator.add, kinds, severities))
            parts = {pair: self._shared.get(pair) or self._parts(*_PAIRS[pair]) for pair in set(pairs)}
        topics = {pair: topic for pair, (topic, _, _) in parts.items()}
        middles = {pair: b'"' + middle for pair, (_, (_, middle, _, _), _) in parts.items()}
        shared = {pair: headers for pair, (_, _, headers) in parts.items()}
        head, _, tail, end = next(iter(parts.values()))[1] if parts else (b"", b"", b"", b"")
        values = list(map(b"".join, zip(repeat(head + b'"', count), quoted, map(middles.__getitem__, pairs),
                                        _seq_bytes(count), repeat(tail, count), events, repeat(end, count),
                                        strict=True)))
        fields = zip(map(topics.__getitem__, pairs), keys, values, map(shared.__getitem__, pairs), severities, kinds,
                     strict=True)
        return list(map(tuple.__new__, repeat(Record, count), fields))  # Record(*fields), in C


# What a JSON string escapes (msgspec's encoder: nothing else; tested over every code point,
# with `_plain_in_json`, which the encoder uses).
_ESCAPED_IN_JSON: Final = re.compile(r'["\\\x00-\x1f]')
# The same as UTF-8 bytes: none of them is ever part of a multi-byte sequence (those are all
# 0x80 and above), so a string's UTF-8 holds one of these bytes exactly when the string holds
# one of those characters.
_ESCAPED_BYTES: Final = bytes(range(0x20)) + b'"\\'


def _plain_in_json(utf8: bytes) -> bool:
    """Whether JSON writes the string of these UTF-8 bytes as they are (nothing escaped). A
    delete-translate in C: ~4x fewer instructions than `_ESCAPED_IN_JSON.search` on the
    string (500 uuids: 0.28M against 0.98M, valgrind)."""
    return len(utf8.translate(None, _ESCAPED_BYTES)) == len(utf8)


_PAIRS: Final[dict[str, tuple[Kind, Severity]]] = {
    kind + severity: (kind, severity) for kind in ("event", "test", "confirmation") for severity in SEVERITIES}
# b"0", b"1", ...: each record's `seq`, grown to the largest batch seen (max_events_per_batch).
_SEQ_BYTES: list[bytes] = []


def _seq_bytes(count: int) -> list[bytes]:
    if len(_SEQ_BYTES) < count:
        _SEQ_BYTES.extend(b"%d" % i for i in range(len(_SEQ_BYTES), count))
    return _SEQ_BYTES[:count]


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
    """Any record value as a mapping, also one that is not exactly an `Envelope` (missing or
    mistyped fields). Raises ValueError for a value that is not a v1 record.

    Numbers are read as the forwarders read events (`json_decoder`: integers beyond 64 bits
    exactly); a lone surrogate as U+FFFD (`readable`); what msgspec refuses otherwise (a
    float beyond a double, nesting deeper than Python's recursion limit allows here) by `loads`."""
    try:
        decoded = json_decoder.decode(value)
    except (msgspec.DecodeError, RecursionError):
        decoded = loads(readable(value))
    if not isinstance(decoded, dict) or decoded.get("v") != VERSION:
        raise ValueError("not a siemgate record (v1)")
    return decoded
