"""BatchParser: body shapes, the fields records need, and the control-message shortcut."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from siemgate.config import parse_config
from siemgate.errors import InvalidBatch, NotJson, TooManyEvents
from siemgate.ingest.batch import BatchParser
from siemgate.record import decode, dumps, event_id

CONFIG = parse_config("integrations: [{name: appsec, auth: {header: X-K, values: [vvvv]}}]", {})
INTEGRATION = CONFIG.integrations[0]
LINK = "https://vendor.example/confirm?token=abc"


def parse(body: bytes | object, max_events: int = 10_000) -> list[dict[str, object]]:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    batch = BatchParser(INTEGRATION, "p").parse(raw, peer="192.0.2.1", max_events=max_events)
    return [dict(decode(r.value)) | {"_topic": r.topic} for r in batch.records]


def test_pretty_printed_body_keeps_each_event_and_decodes_equal() -> None:
    events = [{"id": "a", "severity": "HIGH", "n": [1, 2]}, {"id": "b", "nested": {"x": None}}]
    records = parse(json.dumps({"events": events}, indent=4).encode())
    assert [r["event"] for r in records] == events
    assert [r["severity"] for r in records] == ["high", "unknown"]
    assert [r["_topic"] for r in records] == ["p.events.high", "p.events.unknown"]


@pytest.mark.parametrize(
    ("event", "severity"),
    [
        ({"severity": "critical"}, "high"),
        ({"severity": None, "level": "high"}, "unknown"),  # the first present field decides
        ({"level": "Informational"}, "low"),
        ({"Severity": "Medium"}, "medium"),
        ({"severity": 7}, "high"),  # a 0-10 score (issue 18: numbers were unknown)
        ({"severity": "9.8"}, "high"),  # critical, routed as high
        ({"severity": "warning"}, "medium"),
        ({"severity": "Very-High"}, "high"),
        ({"severity": 11}, "unknown"),
        ({"severity": True}, "unknown"),
        ({"severity": ["high"]}, "unknown"),
        ({}, "unknown"),
    ],
)
def test_severity(event: dict[str, object], severity: str) -> None:
    assert parse([{**event, "pad": "x"}])[0]["severity"] == severity


def test_severity_by_the_configured_scheme() -> None:
    config = parse_config("normalize: {severity_map: {sev-a: low}, severity_bands: {critical: 5, high: 4, "
                          "medium: 3, low: 1}, severity_max: 5}", {})
    parser = BatchParser(INTEGRATION, "p", config.normalize.severity_scheme)
    events = [{"severity": "SEV_A"}, {"severity": 3}, {"severity": 5}, {"severity": 7}, {"severity": "high"}]
    batch = parser.parse(orjson.dumps(events), peer="192.0.2.1", max_events=10)
    assert [r.severity for r in batch.records] == ["low", "medium", "high", "unknown", "high"]


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        ({"id": "v-1", "event_id": "v-2"}, "v-1"),
        ({"id": "", "event_id": "v-2"}, "v-2"),
        ({"id": None, "alertId": 42}, "42"),
        ({"id": True, "uuid": "u-1"}, "u-1"),
    ],
)
def test_vendor_id(event: dict[str, object], expected: str) -> None:
    assert parse([event])[0]["id"] == expected


def test_content_id_ignores_key_order_and_whitespace() -> None:
    first = parse(b'[{"a": 1, "b": [1, 2]}]')[0]["id"]
    second = parse(b'[ {"b":[1,2],"a":1} ]')[0]["id"]
    assert first == second == event_id({"a": 1, "b": [1, 2]}, "appsec", ())


def test_non_object_events_are_kept() -> None:
    records = parse(b'[1, "text", [1, 2], null, {"id": "x"}]')
    assert [r["event"] for r in records] == [1, "text", [1, 2], None, {"id": "x"}]
    assert all(r["kind"] == "event" and r["severity"] == "unknown" for r in records)
    assert len({r["id"] for r in records}) == 5


@pytest.mark.parametrize(
    ("body", "ids", "severities"),
    [
        (b'[{"id":"a","severity":1e400},{"id":"b","severity":"high"}]', ["a", "b"], ["unknown", "high"]),
        (b'[{"id":"a","severity":-1E+400,"n":1}]', ["a"], ["unknown"]),
        (b'[{"id":"a","risk":1e-400}]', ["a"], ["low"]),  # 0.0: the bottom of the scale
        (b'[{"id":1e400,"severity":"low"},{"id":"b","severity":"low"}]', [None, "b"], ["low", "low"]),
        (b'[{"id":"t","type":1e400,"test":-1e400},{"id":"u","severity":"medium"}]', ["t", "u"],
         ["unknown", "medium"]),
        (b'{"events":[{"id":"w","level":1e400},[1e400]]}', ["w", None], ["unknown", "unknown"]),
        (b'{"id":"s","severity":1e400}', ["s"], ["unknown"]),
    ],
)
def test_numbers_beyond_a_double_in_the_fields_read_lose_no_batch(body: bytes, ids: list[str | None],
                                                                   severities: list[str]) -> None:
    """JSON puts no bound on numbers: one event whose severity, id, type or test flag is 1e400
    (beyond a double) used to be refused with its whole batch ("Number out of range"). Such a
    number is read as Python reads it (inf): no severity on the scale, no id (the content hash
    is the key); every event kept byte for byte."""
    records = parse(body)
    assert [r["severity"] for r in records] == severities
    for record, ident in zip(records, ids, strict=True):
        if ident is None:
            assert isinstance(record["id"], str) and len(record["id"]) >= 32  # the content hash
        else:
            assert record["id"] == ident
    assert all(r["kind"] == "event" for r in records)


@pytest.mark.parametrize(
    "body",
    [b'{"id": "single", "severity": "low"}', b'{"events": "not a list", "id": "single"}'],
)
def test_a_single_object_is_one_event(body: bytes) -> None:
    (record,) = parse(body)
    assert record["event"] == orjson.loads(body)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"", NotJson),
        (b"   ", NotJson),
        (b"[1,", NotJson),
        (b'{"a": tru}', NotJson),
        (b"[1] trailing", NotJson),
        (b'["\xc3\x28"]', NotJson),
        (b"[NaN]", NotJson),
        (b"42", InvalidBatch),
        (b'"text"', InvalidBatch),
        (b"null", InvalidBatch),
    ],
)
def test_not_a_batch(body: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        parse(body)


WIDE_EVENTS = [{"id": "w1", "severity": "high", "msg": "caf\u00e9 \U0001f600 \u4e2d"}, {"id": "w2", "n": [1, 2]}]


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"])
@pytest.mark.parametrize("pretty", [False, True])
def test_utf16_and_utf32_bodies_are_read(codec: str, pretty: bool) -> None:
    """A body in UTF-16 or UTF-32, with a byte order mark (Python's "utf-16", what .NET's
    Encoding.Unicode writes) or without (told by its NUL bytes, RFC 4627 3: JSON starts with an
    ASCII character) was refused 400 "not UTF-8", the batch lost. It is transcoded to UTF-8,
    JSON's encoding: every event kept, equal to what was sent."""
    text = json.dumps(WIDE_EVENTS, ensure_ascii=False, indent=2 if pretty else None)
    records = parse(text.encode(codec))
    assert [r["event"] for r in records] == WIDE_EVENTS
    assert [r["severity"] for r in records] == ["high", "unknown"]


def test_a_lone_surrogate_in_a_utf16_body_is_kept_as_its_escape() -> None:
    body = '[{"id": "s1", "m": "cut \ud83d"}]'.encode("utf-16-le", "surrogatepass")
    (record,) = parse(body)
    assert record["event"] == {"id": "s1", "m": "cut \ufffd"}  # read as U+FFFD, as in a UTF-8 body


@pytest.mark.parametrize(("body", "why"), [
    ('[{"id": "x"}]'.encode("utf-16-le") + b"\x00", "the body is UTF-16-LE (by its first bytes) but not valid"),
    (b"\xff\xfe[\x00\x00\xdc]\x00", "the body is not JSON"),
])
def test_a_broken_utf16_body_is_named(body: bytes, why: str) -> None:
    with pytest.raises(NotJson) as caught:
        parse(body)
    assert str(caught.value).startswith(why)


@pytest.mark.parametrize(("charset", "encoded"), [
    ("ISO-8859-1", "latin-1"), ("latin1", "latin-1"), ("windows-1252", "cp1252"), ('"iso-8859-15"', "iso8859-15"),
])
def test_a_body_not_in_utf8_is_read_in_its_declared_charset(charset: str, encoded: str) -> None:
    """A body that is not UTF-8, in the single-byte charset its Content-Type declares (a Java
    or Windows sender's platform default): read in that charset, not refused with its batch.
    A body that is UTF-8 is read as UTF-8 whatever is declared (RFC 8259 8.1)."""
    parser = BatchParser(INTEGRATION, "p")
    events = [{"id": "l1", "msg": "caf\u00e9 \u00a3 \u00e4"}]
    body = json.dumps(events, ensure_ascii=False).encode(encoded)
    batch = parser.parse(body, peer="192.0.2.1", max_events=10, charset=charset.strip('"'))
    assert [decode(r.value)["event"] for r in batch.records] == events
    utf8 = json.dumps(events, ensure_ascii=False).encode()
    batch = parser.parse(utf8, peer="192.0.2.1", max_events=10, charset=charset.strip('"'))
    assert [decode(r.value)["event"] for r in batch.records] == events
    for unread, note in ((None, ""), ("utf-8", ""), ("punycode", " (its declared charset 'punycode' is not one"),
                         ("no-such-charset", " (its declared charset 'no-such-charset' is unknown)")):
        with pytest.raises(NotJson) as caught:
            parser.parse(body, peer="192.0.2.1", max_events=10, charset=unread)
        message = str(caught.value)
        assert message.startswith("the body is not UTF-8: invalid continuation byte at byte ")
        after = message.split(" at byte ", 1)[1].lstrip("0123456789")
        assert after.startswith(note) and (note or after == "")
    with pytest.raises(NotJson, match=r"\(nor cp1253, its declared charset\)$"):
        parser.parse(b'["\x81\xaa"]', peer="192.0.2.1", max_events=10, charset="cp1253")  # undefined in cp1253


@pytest.mark.parametrize("ending", [b"\n", b"\r\n", b"\n\n"])
def test_an_ndjson_body_is_one_event_per_line(ending: bytes) -> None:
    """JSON objects one per line (NDJSON / JSON Lines, what log shippers post) was refused 400
    "trailing characters", the batch lost. Each line is an event, its bytes as sent; a control
    message and a lone surrogate among them are what they are in an array."""
    events = [{"id": "n1", "severity": "high"}, {"id": "n2", "n": [1, {"x": None}]},
              {"type": "test_integration", "message": "t"}]
    lines = [json.dumps(e).encode() for e in events]
    body = ending.join(lines) + ending
    records = parse(body)
    assert [r["event"] for r in records] == events
    assert [r["kind"] for r in records] == ["event", "event", "test"]
    assert [r["severity"] for r in records] == ["high", "unknown", "unknown"]
    batch = BatchParser(INTEGRATION, "p").parse(b'{"id": "s1", "m": "\\ud83d"}\n' + body, peer="x", max_events=10)
    assert batch.lone_surrogates == 1 and len(batch.records) == 4
    assert batch.records[0].value.endswith(b'"event":{"id": "s1", "m": "\\ud83d"}}')
    with pytest.raises(TooManyEvents):
        parse(body, max_events=2)


@pytest.mark.parametrize(("body", "why"), [
    (b'{"id": "a"}\n{"id": }\n', "(reading the body as NDJSON, one event per line, joined as an array)"),
    (b'{"id": "a"}\n[1]\n', "trailing characters"),  # not one object per line: not NDJSON
    (b'{"id": "a"} {"id": "b"}', "trailing characters"),  # not one per line
])
def test_what_is_not_ndjson_is_named(body: bytes, why: str) -> None:
    with pytest.raises(NotJson) as caught:
        parse(body)
    assert why in str(caught.value)


@pytest.mark.parametrize("body", [b'[{"id": "big", "n": ' + b"9" * 5000 + b"}]", b"[" + b"9" * 4301 + b"]"])
def test_an_integer_python_cannot_read_is_refused_naming_it_for_the_operator(body: bytes) -> None:
    """Still refused (the forwarders read events with Python, which refuses integers of more than
    4,300 digits), but named for an operator: not Python's advice to call a function."""
    with pytest.raises(InvalidBatch) as caught:
        parse(body)
    message = str(caught.value)
    assert message.startswith("event 0 cannot be read: Exceeds the limit (4300 digits) for integer string conversion")
    assert "(the forwarders could not read it back)" in message
    assert "sys.set_int_max_str_digits" not in message


@pytest.mark.parametrize(("raw", "read"), [
    (b"line 1\nline 2", "line 1\nline 2"), (b"a\tb\r\n", "a\tb\r\n"),
    (b"nul \x00 bell \x07 esc \x1b", "nul \x00 bell \x07 esc \x1b"),
    (b"\\\\\n", "\\\n"),  # an escaped backslash, then a raw newline
])
def test_raw_control_characters_inside_strings_lose_no_batch(raw: bytes, read: str) -> None:
    """JSON built by hand (a multi-line attack sample pasted into a template) holds raw newlines,
    tabs, NULs inside its strings: RFC 8259 7 wants them escaped, so the batch was refused 400
    "invalid character". Each is written as its escape (the only change to the sender's bytes,
    as for raw surrogates), in an array, a wrapper or NDJSON; keys too."""
    for body in (b'[{"id": "c1", "m": "' + raw + b'"}, {"id": "c2"}]',
                 b'{"events": [{"id": "c1", "m": "' + raw + b'"}, {"id": "c2"}]}',
                 b'{"id": "c1", "m": "' + raw + b'"}\n{"id": "c2"}\n'):
        records = parse(body)
        assert [r["event"] for r in records] == [{"id": "c1", "m": read}, {"id": "c2"}], body
    (record,) = parse(b'[{"id": "k", "a\tkey": 1}]')
    assert record["event"] == {"id": "k", "a\tkey": 1}


@pytest.mark.parametrize("body", [
    b'[{"id": "x"}\x01]',  # between tokens: not in a string
    b'[{"id": "x", "m": "a\\\nb"}]',  # right after a backslash: its escape would mean something else
])
def test_raw_control_characters_that_cannot_be_escaped_are_still_400(body: bytes) -> None:
    with pytest.raises(NotJson):
        parse(body)


@pytest.mark.parametrize("body", [
    b'{"events": [{"id": "a"}], "events": [{"id": "b"}, {"id": "c"}]}',
    b'{"events":[{"id":"a"},{"id":"a2"},{"id":"a3"}],"events":[{"id":"b"}]}',
    b'{"meta": 1, "events": [{"id": "a"}], "\\u0065vents": [{"id": "b"}]}',  # the same name, escaped
    b'{"events": [{"id": "a"}], "events": [{"id": "a"}]}',
    b'{"alerts": [], "alerts": [{"id": "a"}]}',
])
def test_a_batch_key_named_twice_is_refused_not_half_taken(body: bytes) -> None:
    """`{"events": [a], "events": [b, c]}`: JSON decoders keep the last member, so a was dropped
    under a 200 (`{"accepted": 2}`). Which array is the batch is ambiguous (RFC 8259 4: names
    should be unique): refused 400, naming it (the body is quarantined, nothing lost)."""
    with pytest.raises(InvalidBatch, match="names the batch key '(events|alerts)' 2 times"):
        parse(body)


@pytest.mark.parametrize("body", [
    b'{"events": [{"id": "a", "events": 1}]}',
    b'{ "events" : [{"id": "a"}] }',
    b'{"meta": {"events": 3}, "events": [{"id": "a"}], "count": 1}',
    b'{"events": [{"id": "a"}], "x": {"events": [{"id": "a"}]}}',
    b'{"x": [{"id": "a"}], "events": [{"id": "a"}]}',  # the same array bytes earlier
    b'{"s": "[{\\"id\\": \\"a\\"}]", "events": [{"id": "a"}]}',
])
def test_a_batch_key_named_once_is_taken(body: bytes) -> None:
    assert [r["event"] for r in parse(body)] == [orjson.loads(body)["events"][0]]


@pytest.mark.parametrize("body", [b'{"events": [{"id": "a"}]}', b'{"events":\n  [{"id": "a"}]}',
                                  b'{"events":[{"id":"a"}]}'])
def test_the_array_of_a_wrapper_is_where_it_stands(body: bytes) -> None:
    """With a blank after the key's colon (Python's json.dumps writes `{"events": [`), the array
    was placed on that blank, one byte early: the prefilter's event spans were off by one."""
    events = BatchParser(INTEGRATION, "p").split(body)
    assert events.array is not None and events.array_start is not None
    assert body[events.array_start:].startswith(events.array)


def test_too_many_events() -> None:
    with pytest.raises(TooManyEvents):
        parse([{"i": i} for i in range(4)], max_events=3)


@pytest.mark.parametrize(
    "body",
    [
        # JSON escapes hide the words the shortcut looks for: it must still look closer.
        b'{"\\u0063onfirmLink": "https://vendor.example/confirm?token=abc"}',
        b'{"confirmLink": "https:\\/\\/vendor.example\\/confirm?token=abc"}',
        b'{"t": 1, "u": 2, "v": 3, "w": 4, "x": 5, "type": "\\u0063onfirmation", "url": "https://vendor.example/c"}',
        b'{"a": 1, "b": 2, "c": 3, "d": 4, "e": 5, "f": {"confirmUrl": "https://vendor.example/c"}}',
    ],
)
def test_confirmation_behind_escapes_and_nesting(body: bytes) -> None:
    (record,) = parse(body)
    assert record["kind"] == "confirmation"
    assert record["_topic"] == "p.control"


def test_test_flag_and_typed_test() -> None:
    records = parse([{"a": 1, "b": 2, "c": 3, "d": 4, "e": 5, "isTest": True},
                     {"a": 1, "b": 2, "c": 3, "d": 4, "e": 5, "eventType": "Test-Integration"},
                     {"a": 1, "b": 2, "c": 3, "d": 4, "e": 5, "blocked": True, "rule": "test-rule"}])
    assert [r["kind"] for r in records] == ["test", "test", "event"]


def test_confirmation_links_are_collected_in_order() -> None:
    parser = BatchParser(INTEGRATION, "p")
    body = orjson.dumps([{"confirmationLink": LINK}, {"id": "e"}, {"type": "confirmation", "url": LINK + "2"}])
    batch = parser.parse(body, peer="x", max_events=10)
    assert batch.confirmation_links == [LINK, LINK + "2"]


def test_configured_field_names_with_odd_characters() -> None:
    config = parse_config(
        """
integrations:
  - name: appsec
    auth: {header: X-K, values: [vvvv]}
    id_fields: ["event-id", "class"]
    severity_fields: ["risk level"]
    batch_keys: [results]
""",
        {},
    )
    parser = BatchParser(config.integrations[0], "p")
    body = orjson.dumps({"results": [{"event-id": "z-1", "risk level": "critical"}, {"class": "k"}]})
    records = [decode(r.value) for r in parser.parse(body, peer="x", max_events=10).records]
    assert [(r["id"], r["severity"]) for r in records] == [("z-1", "high"), ("k", "unknown")]


PAD = {f"f{i}": i for i in range(6)}
MIXED = [
    {"id": "a", **PAD, "url": "https://shop.example/checkout/confirm"},  # the hint, in a value only
    {"id": "b", **PAD},
    {"id": "c", **PAD, "data": {"confirmUrl": LINK}},  # a confirmation among events
    {"id": "d", **PAD, "note": "escaped \\ backslash"},
    {"id": "e", **PAD, "isTest": True},
]


@pytest.mark.parametrize(
    "body",
    [
        orjson.dumps(MIXED),
        orjson.dumps({"events": MIXED}),
        orjson.dumps({"meta": 1, "events": MIXED}),
        json.dumps(MIXED, indent=2).encode(),
        b"\n  " + orjson.dumps(MIXED) + b"\n",
        orjson.dumps(MIXED).replace(b"https://", b"https:\\/\\/"),
        orjson.dumps(MIXED).replace(b"confirmUrl", b"\\u0063onfirmUrl"),
    ],
    ids=["compact", "wrapped", "wrapped-later-key", "pretty", "padded", "escaped-slashes", "escaped-key"],
)
def test_control_messages_are_found_wherever_they_sit(body: bytes) -> None:
    records = parse(body)
    assert [r["kind"] for r in records] == ["event", "event", "confirmation", "event", "test"]


def test_suspect_events_map_byte_positions_to_events() -> None:
    parser = BatchParser(INTEGRATION, "p")
    body = orjson.dumps(MIXED)
    raws, _, start, length = parser.split(body)
    datas = [bytes(r) for r in raws]
    assert parser._suspect_events(body, datas, start, length) == {0, 2}  # an escaped backslash hides nothing
    # Not compact (blanks between the events, or inside a wrapping object): found all the same.
    for spaced in (json.dumps(MIXED, indent=2).encode(), b" \n" + json.dumps({"events": MIXED}, indent=1).encode(),
                   b'{ "meta": 1,\n "events" : [ ' + b" ,\r\n\t".join(map(orjson.dumps, MIXED)) + b" ] }"):
        raws, _, start, length = parser.split(spaced)
        assert parser._suspect_events(spaced, [bytes(r) for r in raws], start, length) == {0, 2}
    clean = orjson.dumps([{"id": "x", **PAD}])
    raws, _, start, length = parser.split(clean)
    assert parser._suspect_events(clean, [bytes(r) for r in raws], start, length) == set()


@pytest.mark.anyio
async def test_a_reloaded_severity_scheme_reaches_every_endpoint(tmp_path: Path) -> None:
    """Hot reload: a changed `normalize` gives every integration's endpoint the new scheme
    (an unchanged integration otherwise keeps its endpoint)."""
    import dataclasses

    from siemgate.config import NormalizeConfig
    from siemgate.ingest.app import create_app
    from tests.ingest.test_drain_on_stop import publisher_for
    from tests.ingest.test_spooling_publisher import ScriptedKafka
    from tests.support import make_config

    config = make_config(tmp_path, None)
    app = create_app(config, publisher_for(tmp_path, ScriptedKafka()))
    webhooks = app.state.webhooks
    integration = config.integrations[0]
    body = orjson.dumps([{"severity": "P0"}])

    def routed() -> str:
        return str(webhooks._endpoints[integration]._parser.parse(body, peer="p", max_events=5).records[0].severity)

    assert routed() == "unknown"
    await webhooks.apply_config(dataclasses.replace(config, normalize=NormalizeConfig(severity_map={"p0": "critical"})))
    assert routed() == "high"


# ------------------------------------------------------------------------------------------
# The prefilter and JSON escapes (issue 17): exact both ways.

def _escape_every(text: str, wanted: str, upper: bool) -> str:
    """`text` (compact JSON) with every character of `wanted` inside its strings written as a
    \\u escape (lower- or uppercase hex)."""
    out = []
    inside = escaped = False
    for character in text:
        if inside and not escaped and character in wanted:
            code = f"{ord(character):04x}"
            out.append("\\u" + (code.upper() if upper else code))
            continue
        out.append(character)
        if escaped:
            escaped = False
        elif character == "\\":
            escaped = inside
        elif character == '"':
            inside = not inside
    return "".join(out)


def _control_messages() -> list[dict[str, object]]:
    from tests.ingest.test_confirmation import PADDING, _cases, test_confirmation_shapes, test_test_messages

    shapes = [*_cases(test_confirmation_shapes), *_cases(test_test_messages)]
    return [*shapes, *({**m, **PADDING} for m in shapes)]  # type: ignore[dict-item]


@pytest.mark.parametrize("upper", [False, True])
@pytest.mark.parametrize("wanted", ["confirm", "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ :/'", "/"])
def test_control_messages_spelled_with_escapes_are_found(wanted: str, upper: bool) -> None:
    """Every confirmation and test message of the detection tests, its hint words, link and
    test text written with \\u escapes (and escaped slashes), among ordinary events: each is
    recognised exactly as its plain spelling is."""
    from siemgate.ingest.confirmation import classify

    messages = _control_messages()
    ordinary = [{"id": f"e{i}", **PAD, "sample": "caf\u00e9 \"quoted\" back\\slash <img>"} for i in range(3)]
    batch = [*ordinary[:2], *messages, ordinary[2]]
    body = _escape_every(json.dumps(batch, separators=(",", ":"), ensure_ascii=False), wanted, upper).encode()
    if wanted == "/":
        body = body.replace(b"\\u002f", b"\\/").replace(b"\\u002F", b"\\/")
    assert body.count(b"\\u") > len(messages) or wanted == "/"
    kinds = [r["kind"] for r in parse(body)]
    assert kinds == ["event", "event", *(classify(m, INTEGRATION.confirmation) for m in messages), "event"]
    assert kinds.count("event") < len(kinds) - 10  # the cases are control messages


@pytest.mark.parametrize("spelling", ["\u212a", "\\u212a", "\\u212A"])
def test_a_character_whose_lowercase_is_ascii_is_no_hiding_place(spelling: str) -> None:
    """`classify` lowercases keys: the Kelvin sign K reads as "k", so with the hint "key" the
    key "Kkey"... and "\u212aeyUrl" hold it. Raw or escaped, the prefilter sees it."""
    config = parse_config("integrations: [{name: appsec, auth: {header: X-K, values: [vvvv]},"
                          " confirmation: {field_hint: key}}]", {})
    parser = BatchParser(config.integrations[0], "p")
    body = ('[{"id":"a","f0":0,"f1":1,"f2":2,"f3":3,"f4":4,"' + spelling + 'eyUrl":"' + LINK + '"}]').encode()
    batch = parser.parse(body, peer="x", max_events=10)
    assert [r.kind for r in batch.records] == ["confirmation"]
    assert batch.confirmation_links == [LINK]


@pytest.mark.parametrize("spelling", ["\u0130", "\\u0130"])
def test_a_capital_dotted_i_ends_a_hint_that_ends_with_i(spelling: str) -> None:
    """"İ".lower() is "i" + U+0307: with the hint "confi", the key "CONFİUrl" holds it."""
    config = parse_config("integrations: [{name: appsec, auth: {header: X-K, values: [vvvv]},"
                          " confirmation: {field_hint: confi}}]", {})
    parser = BatchParser(config.integrations[0], "p")
    body = ('[{"id":"a","f0":0,"f1":1,"f2":2,"f3":3,"f4":4,"CONF' + spelling + 'Url":"' + LINK + '"}]').encode()
    assert [r.kind for r in parser.parse(body, peer="x", max_events=10).records] == ["confirmation"]


def test_escapes_that_hide_nothing_skip_classification(monkeypatch: pytest.MonkeyPatch) -> None:
    """What json.dumps (non-ASCII as \\u escapes), Jackson (uppercase hex) and Go (<>& escaped)
    write: no event is sent to classification for its escapes alone."""
    import siemgate.ingest.batch as batch_module

    calls: list[object] = []
    real = batch_module.classify

    def counting(event: object, config: object) -> object:
        calls.append(event)
        return real(event, config)  # type: ignore[arg-type]

    monkeypatch.setattr(batch_module, "classify", counting)
    events = [{"id": f"e{i}", "severity": "high", "sample": f"<script>alert(\"x{i}\")</script> \\ é ✓ 😀 ü",
               "request": {"path": "/admin\\..\\x", "ua": "Mozilla/5.0 (café)"}} for i in range(50)]
    bodies = [
        json.dumps(events).encode(),
        json.dumps(events).replace("\\u00e9", "\\u00E9").encode(),
        json.dumps(events).replace("<", "\\u003c").replace(">", "\\u003e").encode(),
        json.dumps(events, indent=2).encode(),
        json.dumps({"events": events}).encode(),
    ]
    for body in bodies:
        assert len(parse(body)) == 50
    assert calls == []


ODD_EVENTS: list[object] = [
    {"id": "a", "severity": "HIGH"},
    {"id": 7, "severity": 9.5},  # an integer id, a score
    {"id": True, "event_id": "b", "severity": True},  # a boolean is neither an id nor a score
    {"id": "", "uuid": "c", "Severity": 1},  # empty: the next id field; the second severity field
    {"id": None, "severity": None, "level": "high"},  # null: present, so the severity is unknown
    {"severity": {"v": 1}, "n": [1, 2]},  # no id: hashed; an object as severity
    {"id": 'q"uo\\te\n', "severity": "warning"},  # an id JSON escapes
    {"id": "d", "type": {"nested": "confirmation"}, "severity": "low"},  # an object as type
    {"id": "e", "eventType": "Test-Integration", "severity": "low"},  # a control type, the last type field
    {"id": "f", "isTest": 1, "test": "true"},  # 1 and "true" are no flag
    {"id": "g", "is_test": True},  # a flag
    {"id": "h", "data": {"confirmUrl": LINK}},  # a confirmation, by position and bytes
    {"id": "i", "url": "https://shop.example/checkout/confirm", "a": 1, "b": 2, "c": 3, "d": 4},
    {"id": "ünï", "message": "You've completed integrating Application Security with your webhook!"},
    {"id": 2**70, "risk": "sev1"},
    {"alertId": "j", "severity": "Critical"},
]


@pytest.mark.parametrize("style", ["compact", "pretty", "wrapped", "escaped-slashes"])
@pytest.mark.parametrize("shuffle", [0, 1, 2])
def test_the_column_path_gives_the_per_event_records(monkeypatch: pytest.MonkeyPatch, style: str,
                                                     shuffle: int) -> None:
    """The batch is worked column by column, with a closer look only for some events: its
    records are those of looking closely at every event, one by one (the reference), for
    events of every odd kind: ids of each type and field, severities of each type, control
    types and flags, confirmation and test messages, escapes."""
    import random

    import siemgate.ingest.batch as batch

    events = list(ODD_EVENTS)
    random.Random(shuffle).shuffle(events)
    events = events * (1 + shuffle)
    body = {"compact": dumps(events), "pretty": json.dumps(events, indent=2).encode(),
            "wrapped": dumps({"meta": {"n": 1}, "alerts": events}),
            "escaped-slashes": dumps(events).replace(b"/", b"\\/")}[style]
    parser = BatchParser(INTEGRATION, "p")
    monkeypatch.setattr(batch.uuid, "uuid4", lambda: type("U", (), {"hex": "b" * 32})())
    got = parser.parse(body, peer="192.0.2.1", max_events=1000)
    monkeypatch.setattr(BatchParser, "_closer_look", lambda self, headers, ids, raws, body, suspects:
                        list(range(len(raws))))
    want = parser.parse(body, peer="192.0.2.1", max_events=1000)
    assert len(got.records) == len(events)
    assert got.confirmation_links == want.confirmation_links == [LINK] * (1 + shuffle)
    for mine, theirs in zip(got.records, want.records, strict=True):
        assert mine._replace(value=b"") == theirs._replace(value=b"")
        assert {**decode(mine.value), "received_at": ""} == {**decode(theirs.value), "received_at": ""}
    assert sorted({r.kind for r in got.records}) == ["confirmation", "event", "test"]
