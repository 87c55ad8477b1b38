"""From a request body to bus records: batch shapes (docs/SPEC.md, "HTTP") and the record contract.

Accepted: a JSON array of events; an object holding the array under one of the
integration's `batch_keys`; or a single object (the vendor's confirmation and test messages
come alone). Anything else is not a JSON batch.

The hot path never builds Python objects for a whole event. msgspec validates the body and
splits it into each event's raw JSON bytes, then decodes only the few fields the record
needs (id, severity, type); the raw bytes go into the record untouched. An event is parsed
completely only when `ControlPrefilter` says it might be a confirmation or test message,
or when it has no id (its id is then a hash of its canonical form).

What strict parsers refuse for the text alone loses no batch: a leading BOM is dropped, and
events holding a lone surrogate are split from a readable copy of the body (`surrogates`).
"""

from __future__ import annotations

import codecs
import contextlib
import operator
import re
import uuid
from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import accumulate, chain, repeat
from typing import Any, NamedTuple

import msgspec
from msgspec.structs import astuple

from siemgate.config import IntegrationConfig
from siemgate.errors import InvalidBatch, NotJson, TooManyEvents
from siemgate.ingest.confirmation import ControlPrefilter, classify, confirmation_link
from siemgate.ingest.surrogates import member_count, raw_controls_escaped, raw_surrogates_escaped, spans
from siemgate.record import (
    DEFAULT_SCHEME,
    BatchEncoder,
    Kind,
    Record,
    Severity,
    SeverityScheme,
    event_id,
    loads,
    long_digit_run,
    readable,
    unrepresentable,
)


class _Suspects(set[int]):
    """The indexes of the events that need the prefilter's byte checks (`_suspect_events`), with
    each one's span in the body, and the body lowercased, for `span_may_be_control`."""

    def __init__(self, indexes: Iterable[int] = (), spans: dict[int, tuple[int, int]] | None = None,
                 lowered: bytes = b"") -> None:
        super().__init__(indexes)
        self.spans = spans if spans is not None else {}
        self.lowered = lowered


class Events(NamedTuple):
    raws: Sequence[msgspec.Raw | bytes]
    # The JSON array holding them, when there is one.
    array: bytes | None
    # Where the events' JSON array starts in the body, and its length, when known.
    array_start: int | None
    array_length: int | None


@dataclass(frozen=True, slots=True)
class Batch:
    id: str
    records: list[Record]
    # The link of every confirmation message in the batch, in order.
    confirmation_links: list[str]
    # Events holding a lone surrogate escape (kept; read as U+FFFD).
    lone_surrogates: int = 0


_RawList = msgspec.json.Decoder(list[msgspec.Raw])
_RawObject = msgspec.json.Decoder(dict[str, msgspec.Raw])
_UNSET = msgspec.UNSET
_WHITESPACE = b" \t\r\n"
_BOM = b"\xef\xbb\xbf"
# What lies between the events of a JSON array (after its `[`); JSON's blanks.
_GAP = re.compile(rb"[ \t\r\n,]*")
_BLANKS = re.compile(rb"[ \t\r\n]*")
_UNSET_TYPE = type(_UNSET)
_STRINGS = frozenset({str})
_STRINGS_OR_ABSENT = frozenset({str, _UNSET_TYPE})


# A body starting with one of these, or with a NUL second byte, may be UTF-16 or UTF-32.
_WIDE_FIRST = frozenset({b"\0", b"\xff", b"\xfe"})
# JSON text (RFC 8259) starts with an ASCII character: its first 4 bytes tell UTF-16 and UTF-32
# apart, with a byte order mark (RFC 8259 8.1 lets a parser ignore it) or without (RFC 4627 3).
_WIDE_BOMS: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xfe\0\0", "utf-32-le"), (b"\0\0\xfe\xff", "utf-32-be"), (b"\xff\xfe", "utf-16-le"),
    (b"\xfe\xff", "utf-16-be"),
)
_WIDE_NULS = {(True, True, True, False): "utf-32-be", (False, True, True, True): "utf-32-le",
              (True, False, True, False): "utf-16-be", (False, True, False, True): "utf-16-le"}
# Declared charsets read for a body that is not UTF-8: the single-byte ones senders' platforms
# default to (Python's codec names, after `codecs.lookup`). UTF-16/32 need no declaration.
_DECLARED = re.compile(r"iso8859-\d+|cp125\d|cp437|cp850|mac-roman|koi8-[ru]")


def _wide_codec(head: bytes) -> tuple[int, str] | None:
    """The UTF-16/32 codec of a JSON text starting with `head` (4 bytes), and its BOM's length."""
    for bom, codec in _WIDE_BOMS:
        if head.startswith(bom):
            return len(bom), codec
    if len(head) < 4:
        return None
    found = _WIDE_NULS.get((head[0] == 0, head[1] == 0, head[2] == 0, head[3] == 0))
    return None if found is None else (0, found)


def _from_utf16_or_32(body: bytes) -> bytes:
    """A UTF-16 or UTF-32 body as UTF-8 (JSON's encoding, RFC 8259 8.1), `body` itself if it is
    neither. A lone surrogate stays one (as the CESU-8 bytes the surrogate path escapes)."""
    found = _wide_codec(body[:4])
    if found is None:
        return body
    skip, codec = found
    try:
        return body[skip:].decode(codec, "surrogatepass").encode("utf-8", "surrogatepass")
    except UnicodeDecodeError as exc:
        raise NotJson(f"the body is {codec.upper()} (by its first bytes) but not valid {codec.upper()}: "
                      f"{exc.reason} at byte {exc.start + skip}") from None


def _declared_note(charset: str | None) -> str:
    """What the refusal of a body that is not UTF-8 says of its declared charset."""
    if not charset:
        return ""
    try:
        name = codecs.lookup(charset).name
    except LookupError:
        return f" (its declared charset {charset!r} is unknown)"
    if name == "utf-8":
        return ""
    if not _DECLARED.fullmatch(name):
        return f" (its declared charset {charset!r} is not one siemgate reads: ISO-8859-x, windows-125x, UTF-16/32)"
    return f" (nor {charset}, its declared charset)"


def _from_declared(body: bytes, charset: str | None) -> bytes | None:
    """`body` read in the `charset` its Content-Type declares, as UTF-8; None when there is none,
    siemgate does not read it (`_DECLARED`), or the body is not in it."""
    if not charset:
        return None
    try:
        name = codecs.lookup(charset).name
    except LookupError:
        return None
    if not _DECLARED.fullmatch(name):
        return None
    try:
        return body.decode(name).encode("utf-8")
    except UnicodeDecodeError:
        return None


def _ndjson_as_array(body: bytes) -> bytes | None:
    """A body of JSON objects one per line (NDJSON, JSON Lines: what log shippers post) as the
    JSON array of them, each line's bytes as they are; None when it is not one: fewer than two
    lines, or a line that does not hold one object (by its first and last bytes; the array is
    then parsed as any body). Only called for a body that did not parse as JSON."""
    if body[_BLANKS.match(body).end():][:1] != b"{":  # type: ignore[union-attr]  # always matches
        return None
    lines = [line for line in (part.strip(_WHITESPACE) for part in body.split(b"\n")) if line]
    if len(lines) < 2 or not all(line[:1] == b"{" and line[-1:] == b"}" for line in lines):
        return None
    return b"[" + b",".join(lines) + b"]"


def _find(body: bytes, part: bytes, start: int) -> int | None:
    """Where `part` (a slice of `body`) stands in `body`: a short search, then one compare."""
    head = part[:64]
    at = body.find(head, start)
    while at != -1:
        if body.startswith(part, at):
            return at
        at = body.find(head, at + 1)
    return None


def _getter(attributes: list[str]) -> Callable[[object], tuple[object, ...]]:
    """The named attributes of an object, as a tuple (operator.attrgetter, always a tuple)."""
    if not attributes:
        return lambda _: ()
    getter = operator.attrgetter(*attributes)
    if len(attributes) == 1:
        return lambda value: (getter(value),)
    return getter


class BatchParser:
    """Parses one integration's bodies into records. Built once per integration."""

    def __init__(self, integration: IntegrationConfig, prefix: str, severity: SeverityScheme | None = None) -> None:
        """`severity`: how the vendors' severities are read (`normalize.severity_scheme`);
        default siemgate's defaults."""
        self.integration = integration
        self._canonical = (severity or DEFAULT_SCHEME).canonical
        self.prefix = prefix
        self.prefilter = ControlPrefilter(integration.confirmation)
        # One struct with every field the record needs, under safe attribute names; fields
        # absent from an event are UNSET (a JSON null is None: "present").
        confirmation = integration.confirmation
        names = list(dict.fromkeys((*integration.id_fields, *integration.severity_fields,
                                    *confirmation.type_fields, *confirmation.test_flags)))
        attributes = {name: f"f{i}" for i, name in enumerate(names)}
        header = msgspec.defstruct(
            "EventHeader",
            [(attributes[name], Any, _UNSET) for name in names],
            rename={attribute: name for name, attribute in attributes.items()},
            gc=False,  # decoded JSON holds no reference cycles: untracked, a few % faster to decode
        )
        self._header = msgspec.json.Decoder(header)
        self._headers = msgspec.json.Decoder(list[header])  # type: ignore[valid-type]
        # The same, reading a number beyond a double (1e400) in those fields as Python does
        # (inf; 0.0 for 1e-400) instead of refusing it: valid JSON, so no batch is lost to it
        # (a severity of inf is unknown; an id of inf is no id: the content hash is the key).
        # Used only when the strict decoders refuse (`float_hook` costs a call per float).
        self._header_lenient = msgspec.json.Decoder(header, float_hook=float)
        self._headers_lenient = msgspec.json.Decoder(list[header], float_hook=float)  # type: ignore[valid-type]
        self._id_fields = [attributes[n] for n in integration.id_fields]
        self._severity_fields = [attributes[n] for n in integration.severity_fields]
        # Each field's place in the header's tuple (`msgspec.structs.astuple`), for columns.
        self._id_columns = [names.index(n) for n in integration.id_fields]
        self._severity_columns = [names.index(n) for n in integration.severity_fields]
        self._type_columns = [names.index(n) for n in confirmation.type_fields]
        self._flag_columns = [names.index(n) for n in confirmation.test_flags]
        self._type_values = _getter([attributes[n] for n in confirmation.type_fields])
        self._flag_values = _getter([attributes[n] for n in confirmation.test_flags])

    def split(self, body: bytes) -> Events:
        """Each event's raw JSON, and where their array lies in `body` when that is known
        cheaply. Raises NotJson or InvalidBatch."""
        return self._read(body)[1]

    def _read(self, body: bytes, charset: str | None = None) -> tuple[bytes, Events, dict[int, bytes]]:
        """The body as read (a leading BOM dropped; UTF-16/32, or a body that is not UTF-8 in the
        `charset` its Content-Type declares, transcoded to UTF-8; raw surrogates escaped), its events, and
        siemgate's reading of each event that holds a lone surrogate (`record.readable`)
        by index. Raises NotJson or InvalidBatch."""
        if body.startswith(_BOM):  # RFC 8259 8.1: a parser may ignore it; .NET senders write it
            body = body[len(_BOM):]
        elif body[:1] in _WIDE_FIRST or body[1:2] == b"\0":
            body = _from_utf16_or_32(body)
        try:
            body.decode("utf-8")  # msgspec does not check strings it only skips
        except UnicodeDecodeError as exc:
            escaped = raw_surrogates_escaped(body)
            if escaped is None:
                declared = _from_declared(body, charset)
                if declared is None:
                    raise NotJson(f"the body is not UTF-8: {exc.reason} at byte {exc.start}"
                                  + _declared_note(charset)) from None
                escaped = declared
            body = escaped
        try:
            return body, self._split(body)[0], {}
        except msgspec.DecodeError as exc:
            controls = raw_controls_escaped(body)
            if controls is not None:  # a raw newline, tab ... inside a string: escaped, then read
                return self._read(controls)
            array = _ndjson_as_array(body)
            if array is not None:
                return self._ndjson(array)
            reading = readable(body)
            if reading == body:
                raise NotJson(f"the body is not JSON: {exc}") from None
        except RecursionError:
            raise NotJson("the body is nested deeper than the JSON parser allows") from None
        # Lone surrogates: split what siemgate reads, then take each event's own bytes from
        # the body, at the same offsets.
        try:
            events, key = self._split(reading)
        except msgspec.DecodeError as exc:
            array = _ndjson_as_array(body)
            if array is not None:
                return self._ndjson(array)
            raise NotJson(f"the body is not JSON: {exc}") from None
        except RecursionError:
            raise NotJson("the body is nested deeper than the JSON parser allows") from None
        if events.array is None:
            originals = [body.strip(_WHITESPACE)]
        else:
            originals = [body[start:end] for start, end in spans(reading, key)]
        readings = {index: bytes(raw) for index, (raw, original) in enumerate(zip(events.raws, originals,
                                                                                  strict=True))
                    if bytes(raw) != original}
        return body, events._replace(raws=originals), readings

    def _ndjson(self, array: bytes) -> tuple[bytes, Events, dict[int, bytes]]:
        """`_read` of an NDJSON body made a JSON array (`_ndjson_as_array`)."""
        try:
            return self._read(array)
        except NotJson as exc:
            raise NotJson(f"{exc} (reading the body as NDJSON, one event per line, joined as an array)") from None

    def _split(self, body: bytes) -> tuple[Events, str | None]:
        """Events, and the batch key whose array holds them (None: a top-level array, or a
        single object). Raises msgspec.DecodeError, RecursionError or InvalidBatch."""
        lead = _BLANKS.match(body).end()  # type: ignore[union-attr]  # always matches (lstrip would copy the body)
        start = body[lead : lead + 1]
        if not start:
            raise NotJson("the body is empty (expected a JSON array of events)")
        if start == b"[":
            end = len(body)
            while body[end - 1] in _WHITESPACE:  # the trailing blanks (rstrip would copy the body)
                end -= 1
            return Events(_RawList.decode(body), body, lead, end - lead), None
        if start == b"{":
            document = _RawObject.decode(body)
            for key in self.integration.batch_keys:
                inner = document.get(key)
                if inner is None:
                    continue
                array = bytes(inner)
                if array[:1] == b"[":
                    # The array's offset: known when its key comes first ({"events":[...), else
                    # found (its first bytes, then all of it compared). Where the same bytes
                    # stand twice, either place holds the same events at the same offsets.
                    opening = b'{"' + key.encode() + b'":'
                    at: int | None = None
                    if body.startswith(opening, lead):  # past the blanks after the colon ({"events": [)
                        at = _BLANKS.match(body, lead + len(opening)).end()  # type: ignore[union-attr]  # always
                    if at is None:
                        at = _find(body, array, lead)
                    if at is not None:
                        self._one_batch_key(body, key, lead, at, array)
                    return Events(_RawList.decode(array), array, at, len(array)), key
            return Events([body.strip(_WHITESPACE)], None, None, None), None
        _RawList.decode(b"[" + body + b"]")  # is it JSON at all?
        raise InvalidBatch(
            f"expected a JSON array of events or an object holding one under "
            f"{'/'.join(self.integration.batch_keys)}, got a JSON scalar"
        )

    @staticmethod
    def _one_batch_key(body: bytes, key: str, lead: int, start: int, array: bytes) -> None:
        """Raise InvalidBatch when the body's object names `key` twice: a JSON decoder keeps the
        last array only, so the events of the other would be dropped under a 200 (and `start`,
        where the first stands, would not be where the events are). Cheap for the usual bodies:
        the array the only member, or the other members (the array not walked) without the key."""
        end = start + len(array)
        before, after = body[lead:start], body[end:]
        name = key.encode()
        if after.strip(_WHITESPACE) == b"}" and before.translate(None, _WHITESPACE) == b'{"' + name + b'":':
            return  # {"events": [...]}: one member
        if not body.startswith(array, start):
            count = member_count(body, key)  # the first of two arrays under the key stands at `start`
        elif b'"' + name + b'"' not in before + after and b"\\u" not in before + after:
            return
        else:
            try:  # the members but the array's (null in its place): the events are not walked
                count = member_count(before + b"null" + after, key)
            except (ValueError, IndexError, msgspec.DecodeError):  # `start` was an equal array elsewhere
                count = member_count(body, key)
        if count > 1:
            raise InvalidBatch(f"the body's object names the batch key {key!r} {count} times (which array is the "
                               "batch is ambiguous; JSON decoders keep the last, dropping the others' events): "
                               "send each batch once")

    def parse(self, body: bytes, *, peer: str, max_events: int, charset: str | None = None) -> Batch:
        """Raises NotJson, InvalidBatch or TooManyEvents. `charset`: what the request's
        Content-Type declares, read only for a body that is not UTF-8 (`_from_declared`).

        The batch is worked column by column (every event's id, then every severity, ...)
        with C doing the per-event steps (`map`, `set`, `bytes.join`); only the events that
        need a closer look (the prefilter's, an event without an id, one that may hold an
        integer Python cannot read) take the per-event path (`_event`)."""
        body, (raws, array, array_start, array_length), readings = self._read(body, charset)
        count = len(raws)
        if count > max_events:
            raise TooManyEvents(f"{count} events in one batch; the limit is {max_events}")
        batch_id = uuid.uuid4().hex
        encoder = BatchEncoder(
            prefix=self.prefix,
            integration=self.integration.name,
            received_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            batch=batch_id,
            peer=peer,
        )
        links: list[str] = []
        suspects = self._suspect_events(body, raws, array_start, array_length)
        headers: list[Any] | None = None
        if array is not None:
            # One pass for every event's header; fails when some event is not an object.
            try:
                headers = self._headers.decode(array)
            except msgspec.ValidationError:
                with contextlib.suppress(msgspec.ValidationError):
                    headers = self._headers_lenient.decode(array)  # a number out of a double's range?
        if not headers or readings:  # not all objects, or lone surrogates: every event on its own
            ids: list[str | None] = [None] * count
            kinds: list[Kind] = ["event"] * count
            severities: list[Severity] = ["unknown"] * count
            closer: Iterable[int] = range(count)
        else:
            # Every header field as a column (one tuple per field, an item per event), in C.
            columns: list[tuple[Any, ...]] = list(zip(*map(astuple, headers), strict=True))
            ids = self._vendor_ids(columns, count)
            kinds = ["event"] * count
            severities = self._severities(columns, count)
            closer = self._closer_look(columns, ids, raws, body, suspects)
        for seq in closer:
            data = bytes(raws[seq])
            header = headers[seq] if headers is not None else None
            try:
                ids[seq], kinds[seq], severities[seq] = self._event(
                    data, readings.get(seq), header, suspects is None or seq in suspects, links)
            except (msgspec.ValidationError, msgspec.DecodeError, ValueError, TypeError, RecursionError) as exc:
                raise InvalidBatch(f"event {seq} cannot be read: {exc}") from None
        try:
            records = encoder.encode_batch(ids, kinds, severities, raws)  # type: ignore[arg-type]  # every id set
        except (ValueError, TypeError) as exc:
            raise InvalidBatch(f"an event cannot be read: {exc}") from None
        return Batch(id=batch_id, records=records, confirmation_links=links, lone_surrogates=len(readings))

    def _closer_look(self, columns: list[tuple[Any, ...]], ids: list[str | None],
                     raws: Sequence[msgspec.Raw | bytes], body: bytes, suspects: _Suspects | None) -> list[int]:
        """The events that take the per-event path, in order: those the prefilter cannot rule
        out as control messages by their decoded fields (`_control_fields`) or by their bytes
        (the `suspects` only), those without an id (hashed), and, when the body has a run of
        over 4,300 digits somewhere, every event (`record.unrepresentable`)."""
        count = len(raws)
        if suspects is None or long_digit_run(body):
            return list(range(count))
        closer = self._control_fields(columns)
        # Each suspect read in place; one with a type field holding a string (not a control type:
        # those are in `closer` already) can be a control message by a hinted key alone.
        check, lowered = self.prefilter.span_may_be_control, suspects.lowered
        types = [column for column in map(columns.__getitem__, self._type_columns)
                 if column[0] is not _UNSET or column.count(_UNSET) != count]  # those in some event
        for index, (start, end) in suspects.spans.items():
            typed = False
            for column in types:
                if type(column[index]) is str:
                    typed = True
                    break
            if check(body, lowered, start, end, typed):
                closer.add(index)
        if None in ids:
            closer.update(index for index, ident in enumerate(ids) if ident is None)
        return sorted(closer)

    def _event(self, data: bytes, reading: bytes | None, header: Any, byte_checks: bool,
               links: list[str]) -> tuple[str, Kind, Severity]:
        """One event's id, kind and severity, looked at closely. `reading`: what siemgate reads
        of an event holding a lone surrogate (U+FFFD in its place), else None. Raises ValueError
        (or msgspec's errors) for an event that cannot be carried to the sinks as it is."""
        integration = self.integration
        reason = unrepresentable(data)
        if reason is not None:
            # Python's advice ("use sys.set_int_max_str_digits()") is no advice to an operator.
            raise ValueError(f"{reason.partition('; use sys.')[0]} (the forwarders could not read it back)")
        text = data if reading is None else reading
        kind: Kind = "event"
        severity: Severity = "unknown"
        ident: str | None = None
        parsed: object = _UNSET
        if header is not None or data[:1] == b"{":
            if header is None:
                try:
                    header = self._header.decode(text)
                except msgspec.ValidationError:
                    header = self._header_lenient.decode(text)  # a number out of a double's range?
            ident = self._vendor_id(header)
            if reading is not None and ident is not None and "\ufffd" in ident:
                # The id may have held a lone surrogate: read as U+FFFD, two different ids could
                # become one key. The content hash tells the events apart.
                ident = None
            severity = self._severity(header)
            if self.prefilter.may_be_control(data, self._type_values(header), self._flag_values(header), byte_checks):
                parsed = loads(text)
                kind = classify(parsed, integration.confirmation)
                if kind == "confirmation":
                    link = confirmation_link(parsed, integration.confirmation)
                    if link:
                        links.append(link)
        if ident is None:
            # The sender's event itself (a lone surrogate kept): its hash differs from that of
            # an event holding U+FFFD or another lone surrogate there.
            if parsed is _UNSET or reading is not None:
                parsed = loads(data)
            ident = event_id(parsed, integration.name, ())
        return ident, kind, severity

    def _vendor_ids(self, columns: list[tuple[Any, ...]], count: int) -> list[str | None]:
        """Each event's id by `_vendor_id`, field by field: the first non-empty string or
        integer; None where there is none."""
        ids: list[str | None] | None = None
        for index in self._id_columns:
            column = columns[index]
            if column[0] is _UNSET and column.count(_UNSET) == count:  # in no event (compared by identity first)
                continue
            if ids is None and set(map(type, column)) == _STRINGS and all(column):
                return list(column)  # the common case: one id field, a string in every event
            found: list[str | None] = [value if type(value) is str and value else str(value)
                                       if type(value) is int else None for value in column]
            ids = found if ids is None else [old if old is not None else new for old, new in zip(ids, found,
                                                                                                  strict=True)]
            if None not in ids:
                break
        return ids if ids is not None else [None] * count

    def _severities(self, columns: list[tuple[Any, ...]], count: int) -> list[Severity]:
        """Each event's severity by `_severity`: its first severity field present, read by the
        scheme, each distinct string once."""
        values: Sequence[Any] | None = None
        types: set[type] = set()
        for index in self._severity_columns:
            column = columns[index]
            if column[0] is _UNSET and column.count(_UNSET) == count:
                continue
            values = column if values is None else [old if old is not _UNSET else new
                                                    for old, new in zip(values, column, strict=True)]
            types = set(map(type, values))
            if _UNSET_TYPE not in types:
                break
        if values is None:
            return ["unknown"] * count
        canonical = self._canonical
        if types <= _STRINGS_OR_ABSENT:  # hashable, and equal only when the same
            verdicts = {value: canonical(value) if value is not _UNSET else "unknown" for value in set(values)}
            return list(map(verdicts.__getitem__, values))
        return [canonical(value) if value is not _UNSET else "unknown" for value in values]

    def _control_fields(self, columns: list[tuple[Any, ...]]) -> set[int]:
        """The events whose type or test-flag fields may make them control messages (the first
        check of `ControlPrefilter.may_be_control`; a superset: they take the whole check)."""
        closer: set[int] = set()
        control_type = self.prefilter.control_type
        for index in self._type_columns:
            column = columns[index]
            try:
                distinct: Iterable[object] = set(column)
            except TypeError:  # objects or arrays: hashed by nobody, looked at one by one
                distinct = column
            if any(type(value) is str and control_type(value) for value in distinct):
                closer.update(at for at, value in enumerate(column) if type(value) is str and control_type(value))
        for index in self._flag_columns:
            column = columns[index]
            if (column[0] is not _UNSET or column.count(_UNSET) != len(column)) and True in column:  # 1 and 1.0 too
                closer.update(at for at, value in enumerate(column) if value is True)
        return closer

    def _suspect_events(self, body: bytes, raws: Sequence[msgspec.Raw | bytes], array_start: int | None,
                        array_length: int | None) -> _Suspects | None:
        """Indexes of the events that need the prefilter's byte checks; None: all of them.

        Each event's offset in the body: its array's offset and the lengths of the events
        before it when the array is compact JSON (what JSON encoders write: `[`, the events
        joined by `,`, `]`), else found by skipping the blanks and commas between events."""
        positions, lowered = self.prefilter.scan(body)
        if (positions is not None and not positions) or not raws:
            return _Suspects()
        if positions is None or array_start is None or array_length is None:
            return None
        lengths = list(map(len, raws))
        if array_length == 2 + sum(lengths) + max(len(lengths) - 1, 0):
            starts = list(accumulate(chain((array_start + 1,), map(operator.add, lengths[:-1], repeat(1)))))
        else:
            starts = []
            at = array_start + 1
            for length in lengths:
                at = _GAP.match(body, at).end()  # type: ignore[union-attr]  # [ \t\r\n,]* always matches
                starts.append(at)
                at += length
        spans: dict[int, tuple[int, int]] = {}
        for position in positions:
            index = bisect_right(starts, position) - 1
            if index >= 0 and position < starts[index] + lengths[index]:
                spans[index] = (starts[index], starts[index] + lengths[index])
        return _Suspects(spans, spans, lowered)

    def _vendor_id(self, header: object) -> str | None:
        for field in self._id_fields:
            value = getattr(header, field)
            if isinstance(value, str) and value:
                return value
            if isinstance(value, int) and not isinstance(value, bool):
                return str(value)
        return None

    def _severity(self, header: object) -> Severity:
        for field in self._severity_fields:
            value = getattr(header, field)
            if value is not _UNSET:
                return self._canonical(value)
        return "unknown"
