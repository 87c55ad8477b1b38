"""The record contract (docs/DESIGN.md, "The record contract"): one `Envelope` definition, written
by the ingest, read by the forwarders, carried by dead letters; records already on a bus stay
readable."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from siemgate.forwarders import deadletter
from siemgate.forwarders.deadletter import DeadLetter
from siemgate.forwarders.normalize import Normalizer
from siemgate.record import (
    SEVERITIES,
    BatchEncoder,
    DeadLetterValue,
    Envelope,
    EnvelopeEvent,
    Record,
    dead_letter_decoder,
    decode,
    dumps,
    encode_value,
    envelope_decoder,
    event_in,
)

# Written by siemgate before the envelope became a msgspec.Struct (commit d0a308e: bytes joined
# around orjson's output), for the inputs of `_write_like_before`. Frozen: records on Kafka and
# in embedded logs look like this, and must stay readable.
RAW_EVENT = (
    b'{"id":"evt-\\"1\\"\\\\\xc3\xa9","severity":"High","msg":"line\\nbreak\\ttab \xe2\x80\xa8 \xe6\x97\xa5'
    b'\xe6\x9c\xac \xf0\x9f\x94\xa5 \\u0001","nested":{"a":[1,2.5,null,true,{"b":"c"}]},'
    b'"big":1180591620717411303424}'
)
OLD_RECORD = (
    b'{"v":1,"id":"evt-\\"1\\"\\\\\xc3\xa9\xe2\x80\xa8","kind":"event","integration":"appsec-prod",'
    b'"severity":"high","received_at":"2026-11-28T21:00:00.123456Z","batch":"0f1e2d3c4b5a69788796a5b4c3d2e1f0",'
    b'"seq":17,"peer":"2001:db8::7","event":' + RAW_EVENT + b"}"
)
OLD_CONFIRMATION = (
    b'{"v":1,"id":"c0ffee","kind":"confirmation","integration":"appsec-prod","severity":"unknown",'
    b'"received_at":"2026-11-28T21:00:00.123456Z","batch":"0f1e2d3c4b5a69788796a5b4c3d2e1f0","seq":0,'
    b'"peer":"2001:db8::7","event":{"type":"confirmation","confirm":"https://v.example/c?x=1"}}'
)
OLD_DEAD_LETTER = (
    b'{"sink":"elastic","reason":"mapper_parsing_exception: failed to parse [big] \\"x\\"","attempts":2,'
    b'"failed_at":"2026-11-28T21:05:00Z","id":"evt-\\"1\\"\\\\\xc3\xa9\xe2\x80\xa8","record":' + OLD_RECORD + b"}"
)
EVENT_ID = 'evt-"1"\\é\u2028'


def _encoder() -> BatchEncoder:
    return BatchEncoder(prefix="siemgate", integration="appsec-prod", received_at="2026-11-28T21:00:00.123456Z",
                        batch="0f1e2d3c4b5a69788796a5b4c3d2e1f0", peer="2001:db8::7")


def test_records_written_before_are_read() -> None:
    envelope = envelope_decoder.decode(OLD_RECORD)
    assert (envelope.v, envelope.id, envelope.kind, envelope.severity, envelope.seq, envelope.peer) == (
        1, EVENT_ID, "event", "high", 17, "2001:db8::7")
    assert bytes(envelope.event) == RAW_EVENT
    normalized = Normalizer().normalize(OLD_RECORD)
    assert (normalized.id, normalized.integration, normalized.batch, normalized.received_at) == (
        EVENT_ID, "appsec-prod", "0f1e2d3c4b5a69788796a5b4c3d2e1f0", "2026-11-28T21:00:00.123456Z")
    assert normalized.event["msg"] == "line\nbreak\ttab \u2028 日本 🔥 \x01"
    assert normalized.event["big"] == 2**70  # exactly: JSON integers beyond 64 bits stay integers
    assert normalized.event_bytes() == RAW_EVENT
    assert normalized.record == OLD_RECORD
    assert decode(OLD_RECORD)["event"] == normalized.event
    control = Normalizer().normalize(OLD_CONFIRMATION)
    assert (control.kind, control.severity, control.seq) == ("confirmation", "unknown", 0)


def test_the_writer_writes_what_it_wrote_before() -> None:
    encoder = _encoder()
    assert encoder.encode(event_id=EVENT_ID, kind="event", severity="high", seq=17, event_bytes=RAW_EVENT).value \
        == OLD_RECORD
    confirmation = b'{"type":"confirmation","confirm":"https://v.example/c?x=1"}'
    assert encoder.encode(event_id="c0ffee", kind="confirmation", severity="unknown", seq=0,
                          event_bytes=confirmation).value == OLD_CONFIRMATION


def test_dead_letters_are_written_as_before_and_keep_the_record(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(deadletter.time, "strftime", lambda *_: "2026-11-28T21:05:00Z")
    event = Normalizer().normalize(OLD_RECORD)
    value = deadletter.encode("elastic", DeadLetter(event, 'mapper_parsing_exception: failed to parse [big] "x"', 2))
    assert value == OLD_DEAD_LETTER
    letter = dead_letter_decoder.decode(OLD_DEAD_LETTER)
    assert (letter.sink, letter.attempts, letter.id, letter.failed_at) == (
        "elastic", 2, EVENT_ID, "2026-11-28T21:05:00Z")
    assert bytes(letter.record) == OLD_RECORD  # byte for byte: replay reads the record itself


TEXT = st.text(st.characters(codec="utf-8"), max_size=40)


@settings(max_examples=150, deadline=None)
@given(ident=TEXT, integration=TEXT, received_at=TEXT, batch=TEXT, peer=TEXT,
       kind=st.sampled_from(["event", "test", "confirmation"]), severity=st.sampled_from(SEVERITIES),
       seq=st.integers(0, 2**40), event=st.recursive(
           st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | TEXT,
           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4), max_leaves=12))
def test_the_batch_encoder_writes_the_envelope(ident: str, integration: str, received_at: str, batch: str,
                                               peer: str, kind: str, severity: str, seq: int, event: object) -> None:
    """The batch encoder's joined parts are exactly the Envelope's own encoding, for any
    values (NUL and every escape included), and read back as written."""
    encoder = BatchEncoder(prefix="p", integration=integration, received_at=received_at, batch=batch, peer=peer)
    data = dumps(event)
    value = encoder.encode(event_id=ident, kind=kind, severity=severity, seq=seq, event_bytes=data).value  # type: ignore[arg-type]
    envelope = Envelope(1, ident, kind, integration, severity, received_at, batch, seq, peer,  # type: ignore[arg-type]
                        msgspec.Raw(data))
    assert value == encode_value(envelope)
    read = envelope_decoder.decode(value)
    assert msgspec.structs.astuple(read)[:-1] == msgspec.structs.astuple(envelope)[:-1]
    assert bytes(read.event) == data
    assert Normalizer().normalize(value).event == event


def test_the_partial_views_agree_with_the_envelope() -> None:
    """EnvelopeEvent reads one field of the Envelope; DeadLetterValue keeps a record raw."""
    envelope = {field.name: field.type for field in msgspec.structs.fields(Envelope)}
    assert {field.name: field.type for field in msgspec.structs.fields(EnvelopeEvent)} == {"event": msgspec.Raw}
    assert envelope["event"] is msgspec.Raw
    assert msgspec.structs.fields(DeadLetterValue)[-1].type is msgspec.Raw


def test_severity_is_spelled_out_once() -> None:
    """`Severity` and the four severities are written in siemgate/record.py only; every other
    module uses record.Severity / record.SEVERITIES."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "siemgate"
    four = {"high", "medium", "low", "unknown"}
    found = []
    for path in sorted(root.rglob("*.py")):
        if path.name == "record.py" and path.parent == root or "testing" in path.relative_to(root).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if any(isinstance(t, ast.Name) and t.id == "Severity" for t in targets):
                    found.append(f"{path.relative_to(root)}:{node.lineno}: defines Severity")
            if isinstance(node, ast.Tuple | ast.List | ast.Set | ast.Subscript):
                elements = node.slice.elts if isinstance(node, ast.Subscript) and isinstance(
                    node.slice, ast.Tuple) else getattr(node, "elts", [])
                values = {e.value for e in elements if isinstance(e, ast.Constant)}
                if values == four and len(elements) == 4:
                    found.append(f"{path.relative_to(root)}:{node.lineno}: spells out the severities")
    assert not found, "use siemgate.record.Severity / SEVERITIES:\n" + "\n".join(found)


@pytest.mark.parametrize("depth", [100, 990, 1020])
def test_deeply_nested_events_read_as_before(depth: int) -> None:
    """msgspec gives up where Python's recursion limit says (less deep than orjson's 1024
    levels, depending on the stack): such a record is still read, by the lenient path."""
    event_bytes = b'{"a":' * depth + b"1" + b"}" * depth
    value = _encoder().encode(event_id="deep", kind="event", severity="low", seq=0, event_bytes=event_bytes).value
    normalized = Normalizer().normalize(value)
    assert (normalized.id, normalized.severity) == ("deep", "low")
    inner = normalized.event
    for _ in range(depth):  # walked, not compared: == recurses too
        assert isinstance(inner, dict) and list(inner) == ["a"]
        inner = inner["a"]
    assert inner == 1
    assert normalized.event_bytes() == event_bytes


def test_event_in_finds_the_event_only_in_the_exact_envelope() -> None:
    fields = (EVENT_ID, "event", "appsec-prod", "high", "2026-11-28T21:00:00.123456Z",
              "0f1e2d3c4b5a69788796a5b4c3d2e1f0", 17, "2001:db8::7")
    assert event_in(OLD_RECORD, *fields) == RAW_EVENT  # type: ignore[arg-type]
    assert event_in(OLD_RECORD, *fields[:-1], "203.0.113.7") is None  # type: ignore[arg-type]
    reordered = b'{"event":' + RAW_EVENT + b"," + OLD_RECORD[1 : OLD_RECORD.index(b',"event":')] + b"}"
    assert decode(reordered)["id"] == EVENT_ID
    assert event_in(reordered, *fields) is None  # type: ignore[arg-type]
    assert event_in(OLD_RECORD, "\ud800", *fields[1:]) is None  # type: ignore[arg-type]


def test_unrepresentable_finds_every_run_of_too_many_digits_wherever_it_lies() -> None:
    """The sampled look (every 4,301st byte) never misses a run of 4,301 digits, at any offset
    and in events of any length, and never flags a run of 4,300."""
    from siemgate.record import unrepresentable

    filler = b"a1 " * 5000
    for offset in (0, 1, 7, 4279, 4280, 4281, 4282, 8580, 8581, 12000):  # digits from offset + 21
        for run in (4300, 4301, 4400):
            data = b'{"message": "' + filler[:offset] + b'", "n": ' + b"9" * run + b"}"
            assert (unrepresentable(data) is not None) == (run > 4300), (offset, run)
    # Long events of ordinary text, digits included, are never flagged.
    assert unrepresentable(b'{"message": "' + b"2026-12-07 10:00:00 " * 2000 + b'"}') is None


@settings(max_examples=100, deadline=None)
@given(ids=st.lists(TEXT, max_size=12), integration=TEXT, peer=TEXT, data=st.data())
def test_a_whole_batch_is_encoded_as_each_record_alone(ids: list[str], integration: str, peer: str,
                                                       data: st.DataObject) -> None:
    """`encode_batch` (column by column) writes byte for byte what `encode` writes for each
    record, whatever the ids hold (quotes, backslashes, control characters, non-ASCII), with
    kinds and severities mixed, from bytes or from `msgspec.Raw` views."""
    count = len(ids)
    kinds = data.draw(st.lists(st.sampled_from(["event", "test", "confirmation"]), min_size=count, max_size=count))
    severities = data.draw(st.lists(st.sampled_from(SEVERITIES), min_size=count, max_size=count))
    events: list[bytes | msgspec.Raw] = [dumps({"n": seq, "s": ident}) for seq, ident in enumerate(ids)]
    events = [msgspec.Raw(e) if seq % 2 else e for seq, e in enumerate(events)]
    encoder = BatchEncoder(prefix="p", integration=integration, received_at="t", batch="b", peer=peer)
    records = encoder.encode_batch(ids, kinds, severities, events)  # type: ignore[arg-type]
    assert records == [
        encoder.encode(event_id=ident, kind=kind, severity=severity, seq=seq, event_bytes=bytes(event))  # type: ignore[arg-type]
        for seq, (ident, kind, severity, event) in enumerate(zip(ids, kinds, severities, events, strict=True))]
    assert all(type(r) is Record and type(r.value) is bytes and type(r.key) is bytes for r in records)


def test_ids_are_escaped_exactly_where_json_escapes() -> None:
    """`encode_batch` writes an id's UTF-8 bytes between quotes unless it holds one of the
    characters msgspec escapes; that set is checked over every code point."""
    from siemgate.record import _ESCAPED_IN_JSON, _encode, _plain_in_json

    for code in range(0x110000):
        if 0xD800 <= code < 0xE000:
            continue
        character = chr(code)
        plain = _encode(character) == b'"' + character.encode() + b'"'
        assert plain == (_ESCAPED_IN_JSON.search(character) is None), hex(code)
        utf8 = character.encode()
        assert plain == _plain_in_json(utf8) == _plain_in_json(b"x" + utf8 + b"y"), hex(code)


def test_long_digit_runs_are_found_by_their_sampled_bytes() -> None:
    """`long_digit_run` (every 4,301st byte, then the run through it) agrees with a plain
    search, for runs around the limit at every offset modulo the step, and bodies of many
    short numbers."""
    import random
    import re

    from siemgate.record import long_digit_run

    plain = re.compile(rb"[0-9]{4301}")
    rng = random.Random(17)
    for _ in range(300):
        prefix = bytes(rng.choice(b"ab1 9") for _ in range(rng.randrange(0, 9000)))
        run = rng.choice([0, 1, 4299, 4300, 4301, 4302, 9000])
        data = prefix + b"x" + b"7" * run + bytes(rng.choice(b"a 5") for _ in range(rng.randrange(0, 5000)))
        assert long_digit_run(data) == (plain.search(data) is not None), (len(prefix), run)
    assert not long_digit_run(b"1" * 4300)
    assert long_digit_run(b"1" * 4301)
