"""LEEF (issue 18): IBM's documented syslog header by default, the old one selectable; `sev`
(1-10) for every event, a vendor's number kept in its place on its integration's scale;
escaping and the EventID limit on hostile values."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest

from siemgate.config import parse_config
from siemgate.forwarders.formats.leef import MAX_EVENT_ID, encode_leef
from siemgate.forwarders.normalize import NormalizedEvent, Normalizer
from siemgate.record import make_record
from tests.forwarders.rsyslog import make_event
from tests.forwarders.test_syslog_formats import RICH, encode, parse_5424, parse_leef

LEEF_OPENING = "LEEF:2.0|siemgate|siemgate|"


def test_the_default_header_is_ibms_documented_form() -> None:
    """`<PRI>1 yyyy-MM-ddTHH:mm:ss.SSSZ HOST LEEF:...` (IBM, "LEEF event components"):
    milliseconds, `Z`, the host, then LEEF at once: no APP-NAME, MSGID or `-`."""
    message = encode(make_event(RICH, severity="medium"), "leef").decode()
    assert message.startswith("<132>1 2025-01-05T10:20:30.123Z fwd-01.example.net LEEF:2.0|siemgate|siemgate|")
    assert re.fullmatch(r"<\d{1,3}>1 \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \S+ LEEF:2\.0\|.*", message, re.S)


@pytest.mark.parametrize(
    ("options", "opening"),
    [
        ({}, "<130>1 2025-01-05T10:20:30.123Z fwd-01.example.net LEEF:"),
        ({"leef_header": "ibm"}, "<130>1 2025-01-05T10:20:30.123Z fwd-01.example.net LEEF:"),
        ({"leef_header": "rfc5424"}, "<130>1 2025-01-05T10:20:30.123456Z fwd-01.example.net siemgate - LEEF - LEEF:"),
        ({"leef_header": "rfc3164"}, "<130>Jan  5 10:20:30 fwd-01 LEEF:"),
        # Who chose rfc3164 for both keeps it; leef_header decides for LEEF alone.
        ({"cef_leef_header": "rfc3164"}, "<130>Jan  5 10:20:30 fwd-01 LEEF:"),
        ({"cef_leef_header": "rfc3164", "leef_header": "ibm"},
         "<130>1 2025-01-05T10:20:30.123Z fwd-01.example.net LEEF:"),
    ],
)
def test_the_leef_header_choices(options: dict[str, Any], opening: str) -> None:
    assert encode(make_event(RICH), "leef", **options).decode().startswith(opening)


def test_cef_keeps_its_header_whatever_leef_header_says() -> None:
    parsed = parse_5424(encode(make_event(RICH), "cef", leef_header="ibm"))
    assert (parsed["msgid"], parsed["sd"]) == ("CEF", {})


@pytest.mark.parametrize("wire_format", ["leef", "cef"])
def test_a_year_before_1000_is_written_with_four_digits(wire_format: str) -> None:
    """The C library's %Y writes year 1 as `1` (glibc): the IBM header's TIMESTAMP and devTime
    (`yyyy-MM-dd...`) were no times QRadar reads (the sinks' sweep). Four digits, always."""
    event = make_event({**RICH, "timestamp": "0001-01-01T00:00:00.25Z"})
    message = encode(event, wire_format).decode()
    assert message.split(" ")[1] == ("0001-01-01T00:00:00.250Z" if wire_format == "leef"
                                     else "0001-01-01T00:00:00.250000Z")
    if wire_format == "leef":
        assert parse_leef(message[message.index("LEEF:"):])[1]["devTime"] == "0001-01-01T00:00:00.250+0000"
    assert encode(event, "leef", leef_header="rfc5424").decode().split(" ")[1] == "0001-01-01T00:00:00.250000Z"


def test_an_event_without_a_usable_time_is_stamped_now() -> None:
    event = make_event(RICH)
    event.timestamp = "not a time"
    stamp = encode(event, "leef").decode().split(" ")[1]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", stamp)


def scheme_event(severity: object, scheme: str | None) -> NormalizedEvent:
    chosen = f"\n    severity_scheme: {scheme}" if scheme else ""
    config = parse_config(f"""
integrations:
  - name: vendor
    auth: {{header: X-Api-Key, values: [k-0123456789]}}{chosen}
""", {})
    routed = config.normalize.scheme_for("vendor").canonical(severity)
    record = make_record(prefix="p", event={"id": "e", "severity": severity}, kind="event", integration="vendor",
                         severity=routed, event_id="e", received_at="2026-12-01T10:00:00.000000Z", batch="b",
                         seq=0, peer="p")
    return Normalizer(config.normalize).normalize(record.value)


def sev_of(event: NormalizedEvent) -> str:
    return parse_leef(encode_leef(event, vendor="V", product="P", version="1"))[1]["sev"]


@pytest.mark.parametrize(
    ("scheme", "sevs"),
    [
        # CVSS 0-10: the number, rounded up, at least 1; within the level (3.9 is low: 3).
        (None, {0: "1", 0.1: "1", 3: "3", 3.9: "3", 4: "4", 5: "5", 6.9: "6", 7: "7", 8.9: "8", 9: "9", 9.8: "10",
                10: "10", "7.5": "8"}),
        ("scores-1-5", {1: "1", 2: "3", 3: "5", 4: "8", 5: "10"}),
        ("priority-1-4", {1: "10", 2: "7", 3: "4", 4: "1"}),
        # Words by the level; unknown (unlisted, off the scale, a boolean, missing) 5.
        (None, {"critical": "10", "Very-High": "10", "error": "8", "warning": "5", "informational": "3",
                "bogus": "5", 11: "5", -1: "5", True: "5", None: "5"}),
        ("scores-1-5", {0: "5", 6: "5"}),
    ],
)
def test_sev_for_every_severity(scheme: str | None, sevs: dict[object, str]) -> None:
    assert {value: sev_of(scheme_event(value, scheme)) for value in sevs} == sevs


HOSTILE = "a|b=c\\d\te\nf\rg\x00h\x1bi\x7fj \u202eRTL\u202c 🙂 \ufffd 日本"


def test_hostile_values_keep_every_field_apart() -> None:
    """LEEF cannot escape: control characters (the TAB delimiter, CR, LF, NUL, ESC, DEL) become
    spaces everywhere, `|` becomes `_` in the header; `=`, `|` and `\\` stay in attribute values
    (a parser splits an attribute at its first `=`); a lone surrogate becomes `?` in UTF-8.
    U+FFFD (what the ingest reads a lone surrogate escape as), RTL overrides and emoji stay.
    The EventID is cut to 255 characters; nothing else is cut."""
    huge = "x" * 100_000
    event = make_event({"id": "e", "severity": "high", "rule_id": HOSTILE * 1000, "message": HOSTILE + huge,
                        "url": HOSTILE, "source_ip": "fe80::1%eth0", "type": HOSTILE, "host": "h\x00st"})
    message = encode(event, "leef")
    assert b"\n" not in message and b"\r" not in message and b"\x00" not in message
    text = message.decode("utf-8")
    header, attributes = parse_leef(text[text.index("LEEF:"):])
    cleaned = re.sub(r"[\x00-\x1f\x7f]", " ", HOSTILE)
    assert header[3] == (cleaned.replace("|", "_") * 1000)[:MAX_EVENT_ID] and len(header[3]) == MAX_EVENT_ID
    assert attributes["msg"] == cleaned + huge
    assert (attributes["url"], attributes["cat"], attributes["resource"]) == (cleaned, cleaned, "h st")
    # QRadar's `src` is an IP field: a zoned IPv6 address or garbage goes to srcHostName.
    assert attributes["srcHostName"] == "fe80::1%eth0" and "src" not in attributes
    # A lone surrogate (the standard library's JSON reader makes them) is `?` in UTF-8.
    lone = dataclasses.replace(make_event(RICH), message="cut \ud83d emoji")
    assert parse_leef(encode_leef(lone, vendor="V", product="P", version="1"))[1]["msg"] == "cut ? emoji"
    garbage = make_event({"id": "e", "severity": "high", "source_ip": "999.1.1.1"})
    assert parse_leef(encode_leef(garbage, vendor="V", product="P", version="1"))[1]["srcHostName"] == "999.1.1.1"
    # An address with white space around it (" 1.2.3.4\n": LEEF cannot escape, so it went out as
    # "1.2.3.4 ", no IP for QRadar's `src`): the address alone (the sinks' sweep).
    for raw, address in ((" 198.51.100.7\n", "198.51.100.7"), ("\t2001:db8::7 ", "2001:db8::7")):
        padded = make_event({"id": "e", "severity": "high", "source_ip": raw})
        assert parse_leef(encode_leef(padded, vendor="V", product="P", version="1"))[1]["src"] == address
