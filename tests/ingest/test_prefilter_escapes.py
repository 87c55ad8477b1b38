"""The confirmation prefilter's escape scan (ControlPrefilter.suspect_positions): every escape
that could spell what it looks for is reported, whatever surrounds it."""

from __future__ import annotations

import json

from hypothesis import example, given, settings
from hypothesis import strategies as st

from siemgate.config import parse_config
from siemgate.ingest.confirmation import ControlPrefilter, _in_a_key

CONFIG = "integrations: [{name: appsec, auth: {header: X-K, values: [vvvv]}}]"
PREFILTER = ControlPrefilter(parse_config(CONFIG, {}).integrations[0].confirmation)
# Pieces of escapes, none of which can spell the hint or the test text.
PIECES = [b"\\", b"u", b"0", b"00", b"/", b"2", b"3", b"6", b"7", b"8", b"A", b"F", b"f", b"e", b"x", b'"',
          b"\\u00", b"\\u006", b"\\u003A", b"\\u00e9", b"\\u0063", b"\\/", b"\\\\"]


# The characters of the hint ("confirm") and of the test text, in both cases: where the byte
# checks can succeed, one of them is spelled (`https://` alone is no reason to look closer).
SPELLED = {c for text in ("confirm", "completed integrating") for c in (*text, *text.upper())}


def reference(body: bytes) -> list[int]:
    """Every backslash followed by u00 and two hex digits of a character of the hint or the test
    text (no slash is one of them: an escaped slash is not reported)."""
    return [at for at in range(len(body)) if body[at : at + 1] == b"\\"
            and body[at + 1 : at + 4] == b"u00" and body[at + 4 : at + 6] in
            {b"%02x" % ord(c) for c in SPELLED} | {b"%02X" % ord(c) for c in SPELLED}]


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=40))
def test_every_escape_that_could_spell_the_hint_is_suspect(pieces: list[bytes]) -> None:
    body = b"".join(pieces)
    assert PREFILTER.suspect_positions(body) == reference(body)


def test_escapes_of_other_characters_are_not_suspect() -> None:
    body = b'[{"m": "caf\\u00e9 \\u00fc\\u00df \\u003c \\"q\\" \\\\ \\ud83d\\udd25"}]'
    assert PREFILTER.suspect_positions(body) == []
    assert PREFILTER.suspect_positions(b'"\\u0063onfirm"') == [1]  # c, escaped: the hint


# Pieces of events: the hint, the test text and https:// in parts, raw or escaped, in either case.
EVENT_PIECES = [b"confirm", b"CONF", b"irm", b"\\u0063", b"\\u0043", b"\\u006F", b"onfirm", b"https:", b"//",
                b"\\/", b"\\u002f", b"\\u003a", b"\\u0068ttps", b"h\\u0074tps", b'"', b'":', b'"k', b"{", b"}", b" ",
                b"x", b"completed", b" integrating", b"\\u0020", b"\\u0069ntegrating", b"\\\\", b"\\u00e9"]


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.lists(st.sampled_from(EVENT_PIECES), max_size=14), min_size=1, max_size=5))
def test_every_event_the_byte_checks_may_pass_spans_a_suspect_position(events: list[list[bytes]]) -> None:
    """What the positions are for: an event whose byte checks succeed (the hint or the test
    text, raw or escaped, with a link written any way) spans one of its body's positions, so
    an event spanning none may skip the checks."""
    datas = [b"{" + b"".join(pieces) + b"}" for pieces in events]
    body = b"[" + b",".join(datas) + b"]"
    positions = PREFILTER.suspect_positions(body)
    assert positions is not None
    start = 1
    for data in datas:
        end = start + len(data)
        if PREFILTER.bytes_may_be_control(data):
            assert any(start <= at < end for at in positions), data
        start = end + 1


# `span_may_be_control` reads an event in place in its body (lowercased once for the whole
# body) where `bytes_may_be_control` copies and lowers it: the same verdict for every event,
# whatever the hint and however it is spelled (escaped, in mixed case, with a character whose
# lowercase is ASCII: the Kelvin sign for "key", İ at the end of "confi").
def _prefilter(hint: str) -> ControlPrefilter:
    config = parse_config("integrations: [{name: appsec, auth: {header: X-K, values: [vvvv]},"
                          f" confirmation: {{field_hint: '{hint}'}}}}]", {})
    return ControlPrefilter(config.integrations[0].confirmation)


SPAN_PREFILTERS = {hint: _prefilter(hint) for hint in ("confirm", "key", "confi")}
SPAN_PIECES = [*EVENT_PIECES, b"Confirm", b"cOnFiRm", b"CONFIRM", b"\\u0063ONFIRM", b"\\u00630nfirm", b"Key",
               b"KEY", b"\\u006bey", b"\\u006Bey", "\u212a".encode(), b"\\u212a", b"\\u212A", b"ey", b"CONF",
               "\u0130".encode(), b"\\u0130", b"HTTPS://", b"Https:\\/\\/", b"https:\\u002f\\u002f", b"url",
               b'"a":1,', b'"b":[1,2],', b'"c":{"d":"e"},', b"\\\\\"", b'\\"', b"\\", b":", b"\t", b"\n",
               b"COMPLETED INTEGRATING", b"Completed\\u0020Integrating", b"\\u00e9", b"\\u00C9", "é".encode(),
               b"https://", "\u212aey".encode(), b"\\u212aey", "CONF\u0130".encode(), b"CONF\\u0130",
               b'"\\u0063onfirmUrl":']


@settings(max_examples=1500, deadline=None)
@example("key", [[b'"', "\u212aey".encode(), b'":', b"https://"]], b",")
@example("confi", [[b'"', "CONF\u0130".encode(), b'":', b"https://"]], b",")
@example("confirm", [[b'"', b"\\u0063ONFIRM", b'":', b"https:\\/\\/"]], b",")
@given(st.sampled_from(sorted(SPAN_PREFILTERS)),
       st.lists(st.lists(st.sampled_from(SPAN_PIECES), max_size=16), min_size=1, max_size=4),
       st.sampled_from([b",", b" , ", b",\n  "]))
def test_an_event_read_in_place_gets_the_verdict_of_its_copy(hint: str, events: list[list[bytes]],
                                                             separator: bytes) -> None:
    prefilter = SPAN_PREFILTERS[hint]
    datas = [b"{" + b"".join(pieces) + b"}" for pieces in events]
    body = b'{"events": [' + separator.join(datas) + b"]}"
    positions, lowered = prefilter.scan(body)
    assert positions == prefilter.suspect_positions(body)
    assert lowered == body.lower()
    start = body.index(b"[") + 1
    for data in datas:
        start = body.index(data, start)
        end = start + len(data)
        assert prefilter.span_may_be_control(body, lowered, start, end) == prefilter.bytes_may_be_control(data), data
        start = end


def test_an_event_read_in_place_with_its_verdict_each_way() -> None:
    """The cases the equality above must hold on, each way (so it cannot hold by always saying
    the same): a hint in a key with a link, in a value with a link, escaped, without a link."""
    prefilter = SPAN_PREFILTERS["confirm"]
    cases = {
        b'{"confirmUrl":"https://v.example/x"}': True,
        b'{"a":1,"b":2,"c":3,"d":4,"e":5,"u":"https://v.example/confirm"}': False,
        b'{"a":1,"u":"https://v.example/confirm"}': True,  # a short message: its text may count
        b'{"a":1,"b":2,"c":3,"d":4,"e":5,"\\u0063onfirmUrl":"https:\\/\\/v.example/x"}': True,
        b'{"a":1,"b":2,"c":3,"d":4,"e":5,"CONFIRM \\"x\\"" : "HTTPS://v.example/"}': True,
        b'{"a":1,"b":2,"c":3,"d":4,"e":5,"x":"confirm \\":\\" https://v.example/"}': False,
        b'{"confirmUrl":"http://v.example/x","b":"caf\\u00e9"}': False,
        b'{"a":1,"b":2,"c":3,"d":4,"e":5,"m":"You\\u2019ve Completed Integrating"}': True,
    }
    for data, verdict in cases.items():
        body = b"[" + b'{"id":"pad"},' + data + b"]"
        start = body.index(data)
        assert prefilter.bytes_may_be_control(data) is verdict, data
        assert prefilter.span_may_be_control(body, body.lower(), start, start + len(data)) is verdict, data
    # A key's colon counts only inside the span.
    assert not _in_a_key(b'["confirm" :', b"confirm", 0, 11)
    assert _in_a_key(b'["confirm" :', b"confirm")


# `typed`: an event whose type field holds a string (not a control type) is a control message
# only by a hinted key with an https link; the prefilter may then skip the text-only rules.
TYPED_KEYS = st.sampled_from(["confirmUrl", "CONFIRMATION", "Confirm", "url", "link", "message", "text", "data",
                              "confirmation", "note", "a", "b", "\u212aey"])
TYPED_VALUES = st.sampled_from(["https://v.example/c?t=1", "HTTPS://V.example/confirm", "http://v.example/",
                                "Please confirm: https://v.example/x", "You've completed integrating X",
                                "confirm", "x", "https://v.example/checkout/confirm"])
TYPED_EVENTS = st.dictionaries(TYPED_KEYS, TYPED_VALUES | st.dictionaries(TYPED_KEYS, TYPED_VALUES, max_size=3)
                               | st.integers(0, 3), max_size=6)


@settings(max_examples=800, deadline=None)
@given(TYPED_EVENTS, st.sampled_from(["waf_block", "security_event", ""]), st.sampled_from(["type", "eventType"]),
       st.booleans(), st.sampled_from(["", "c", "/", "co/"]))
def test_a_typed_event_is_a_control_message_only_if_its_span_says_it_may_be(
        event: dict[str, object], kind: str, field: str, ascii_only: bool, escaped: str) -> None:
    from siemgate.ingest.confirmation import classify

    prefilter = SPAN_PREFILTERS["confirm"]
    config = parse_config(CONFIG, {}).integrations[0].confirmation
    event = {field: kind, **event}
    text = json.dumps(event, ensure_ascii=ascii_only)
    for character in escaped:  # hint letters, or the link's slashes, as \\u escapes
        text = text.replace(character, f"\\u{ord(character):04x}")
    data = text.encode()
    body = b'[{"id":"x"},' + data + b"]"
    start = body.index(data)
    verdict = prefilter.span_may_be_control(body, body.lower(), start, start + len(data), typed=True)
    if classify(json.loads(data), config) != "event":
        assert verdict, data
    if verdict:  # the typed check never says more than the full one
        assert prefilter.bytes_may_be_control(data)
