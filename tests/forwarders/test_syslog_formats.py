"""The syslog, CEF and LEEF encoders, framing, the UDP truncation rule and the sink settings:
pure functions, no network. Each format is parsed back here by a small reader that follows
the format's own rules, to show that what was escaped comes back as it was."""

from __future__ import annotations

import dataclasses
import os
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from siemgate.errors import ConfigError
from siemgate.forwarders.formats import syslog as fmt
from siemgate.forwarders.formats.cef import encode_cef
from siemgate.forwarders.formats.leef import encode_leef
from siemgate.forwarders.normalize import NormalizedEvent
from siemgate.forwarders.sinks.registry import build_settings
from siemgate.forwarders.sinks.syslog import (
    Address,
    SyslogSinkSettings,
    build_encoder,
    lf_terminated,
    lf_terminated_stream,
    octet_counted,
    octet_counted_stream,
    parse_address,
)
from siemgate.record import Severity
from tests.forwarders.rsyslog import AWKWARD, make_event

SEVERITIES: list[tuple[Severity, int, str, str | None]] = [
    # vendor, RFC 5424, CEF, LEEF sev
    ("high", 2, "8", "8"),  # 1 alert is the vendor's critical (issue 18)
    ("medium", 4, "5", "5"),
    ("low", 5, "3", "3"),
    # CEF: always a number (issue 18: Logstash and Vector refuse `Unknown`); LEEF too (issue 18:
    # no `sev` for an unlisted severity)
    ("unknown", 6, "5", "5"),
]

RICH = {
    "id": "evt-42",
    "timestamp": "2025-01-05T10:20:30.123456Z",
    "severity": "high",
    "type": "sql_injection",
    "rule_name": "SQLi [942100]",
    "rule_id": "942100",
    "source_ip": "203.0.113.9",
    "url": "https://shop.example.com/item?id=1 OR 1=1",
    "method": "GET",
    "action": "blocked",
    "host": "shop-frontend",
    "message": "SQL injection blocked",
}


def settings(**options: Any) -> SyslogSinkSettings:
    options.setdefault("hostname", "fwd-01.example.net")
    built = build_settings("syslog", {"name": "soc", "address": "tcp://127.0.0.1:514", **options}, {}, "sinks[0]")
    assert isinstance(built, SyslogSinkSettings)
    return built


def encode(event: NormalizedEvent, wire_format: str = "rfc5424", **options: Any) -> bytes:
    return build_encoder(settings(**options), wire_format)(event)  # type: ignore[arg-type]


def config_error(**options: Any) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        settings(**options)
    return caught.value


# -- readers ---------------------------------------------------------------------------------


def parse_5424(message: bytes) -> dict[str, Any]:
    """HEADER SP STRUCTURED-DATA SP MSG, with SD-PARAM values unescaped."""
    text = message.decode("utf-8")
    head = re.match(r"<(\d{1,3})>1 (\S+) (\S+) (\S+) (\S+) (\S+) ", text)
    assert head, text
    rest = text[head.end() :]
    sd, rest = parse_sd(rest)
    assert rest.startswith(" ") or rest == "", rest
    pri, timestamp, hostname, app_name, procid, msgid = head.groups()
    return {"pri": int(pri), "timestamp": timestamp, "hostname": hostname, "app_name": app_name,
            "procid": procid, "msgid": msgid, "sd": sd, "msg": rest[1:]}  # fmt: skip


def parse_sd(text: str) -> tuple[dict[str, dict[str, str]], str]:
    """STRUCTURED-DATA at the start of `text`, values unescaped; and the rest of `text`."""
    sd: dict[str, dict[str, str]] = {}
    if text.startswith("-"):
        return sd, text[1:]
    rest = text
    while rest.startswith("["):
        element = re.match(r"\[([^ \]]+)", rest)
        assert element, rest
        sd_id, rest = element.group(1), rest[element.end() :]
        params: dict[str, str] = {}
        while rest.startswith(" "):
            name, rest = rest[1:].split('="', 1)
            value, i = [], 0
            while rest[i] != '"':
                if rest[i] == "\\" and rest[i + 1] in '"\\]':
                    i += 1
                value.append(rest[i])
                i += 1
            params[name] = "".join(value)
            rest = rest[i + 1 :]
        assert rest.startswith("]"), rest
        sd[sd_id], rest = params, rest[1:]
    return sd, rest


def parse_cef(data: bytes | str) -> tuple[list[str], dict[str, str]]:
    """CEF:0|7 header fields|extension, unescaped by CEF's rules."""
    text = data.decode() if isinstance(data, bytes) else data
    assert text.startswith("CEF:"), text
    fields: list[str] = []
    current: list[str] = []
    i = 4
    while len(fields) < 7:
        c = text[i]
        if c == "\\":
            current.append(text[i + 1])
            i += 2
            continue
        if c == "|":
            fields.append("".join(current))
            current = []
        else:
            current.append(c)
        i += 1
    return fields[1:], parse_cef_extension(text[i:])


def parse_cef_extension(ext: str) -> dict[str, str]:
    """An unescaped `=` ends a key: the key is the word before it, the value what precedes."""
    pairs: dict[str, str] = {}
    key: str | None = None
    value: list[str] = []
    i = 0
    while i < len(ext):
        c = ext[i]
        if c == "\\":
            value.append({"n": "\n", "r": "\r"}.get(ext[i + 1], ext[i + 1]))
            i += 2
            continue
        if c == "=":
            text = "".join(value)
            cut = text.rfind(" ")
            if key is not None:
                pairs[key] = text[:cut]
            key, value = text[cut + 1 :], []
        else:
            value.append(c)
        i += 1
    if key is not None:
        pairs[key] = "".join(value)
    return pairs


def parse_leef(data: bytes | str) -> tuple[list[str], dict[str, str]]:
    """LEEF:2.0|Vendor|Product|Version|EventID|Delimiter|attributes (no escaping in LEEF)."""
    text = data.decode() if isinstance(data, bytes) else data
    version, vendor, product, product_version, event_id, delimiter, body = text.split("|", 6)
    assert version == "LEEF:2.0"
    assert delimiter == "x09"
    attributes = dict(item.split("=", 1) for item in body.split("\t"))
    return [vendor, product, product_version, event_id], attributes


def one_line(text: str) -> str:
    return re.sub(r"[\x00-\x1f\x7f]", " ", text)


# -- PRI, facility, severity -----------------------------------------------------------------


@pytest.mark.parametrize(("severity", "code", "cef", "leef"), SEVERITIES)
def test_severity_per_design_table(severity: Severity, code: int, cef: str, leef: str | None) -> None:
    event = make_event(severity=severity)
    assert parse_5424(encode(event))["pri"] == 16 * 8 + code  # local0 by default
    assert encode(event, "rfc3164").startswith(b"<%d>" % (16 * 8 + code))
    header, _ = parse_cef(encode_cef(event, vendor="V", product="P", version="1").decode())
    assert header[5] == cef
    _, attributes = parse_leef(encode_leef(event, vendor="V", product="P", version="1").decode())
    assert attributes.get("sev") == leef
    assert attributes["severity"] == severity


@pytest.mark.parametrize(
    ("facility", "code"),
    [("kern", 0), ("auth", 4), ("AuthPriv", 10), ("local0", 16), ("local7", 23), (0, 0), (23, 23), ("13", 13)],
)
def test_facility_by_name_or_number(facility: int | str, code: int) -> None:
    event = make_event(severity="medium")
    for wire_format in ("rfc5424", "rfc3164", "cef", "leef"):
        assert encode(event, wire_format, facility=facility).startswith(b"<%d>" % (code * 8 + 4))


@pytest.mark.parametrize("facility", ["local8", "", 24, -1, "security"])
def test_facility_refused(facility: int | str) -> None:
    error = config_error(facility=facility)
    assert error.path == "sinks[0].facility"
    assert "0-23" in error.reason


def test_pri_bounds() -> None:
    assert fmt.pri(0, "critical") == 1
    assert fmt.pri(0, "high") == 2
    assert fmt.pri(23, "unknown") == 190  # the largest PRIVAL we can produce (191 is the limit)


# -- RFC 5424 --------------------------------------------------------------------------------


def test_rfc5424_fields() -> None:
    message = encode(make_event(RICH, event_id="evt-42", integration="appsec-prod"))
    parsed = parse_5424(message)
    assert parsed["timestamp"] == "2025-01-05T10:20:30.123456Z"
    assert parsed["hostname"] == "fwd-01.example.net"
    assert parsed["app_name"] == "siemgate"
    assert parsed["procid"] == "-"
    assert parsed["msgid"] == "sql_injection"
    assert parsed["sd"] == {
        "siemgate@32473": {
            "id": "evt-42", "kind": "event", "integration": "appsec-prod", "severity": "high",
            "rule": "SQLi [942100]", "rule_id": "942100", "source_ip": "203.0.113.9",
        }
    }  # fmt: skip
    # SP, BOM, then the event as compact JSON, untouched.
    assert message.endswith(b"] " + fmt.BOM + orjson.dumps(RICH))
    assert orjson.loads(parsed["msg"].encode()[len(fmt.BOM) :]) == RICH


def test_rfc5424_minimal_event_leaves_optional_params_out() -> None:
    parsed = parse_5424(encode(make_event({"severity": "low"}, severity="low", event_id="abc")))
    assert parsed["msgid"] == "-"
    params = {"id": "abc", "kind": "event", "integration": "appsec", "severity": "low"}
    assert parsed["sd"] == {"siemgate@32473": params}


def test_rfc5424_configurable_header_fields() -> None:
    parsed = parse_5424(encode(make_event(), app_name="appsec-fwd", sd_id="alert@32473", include_pid=True))
    assert parsed["app_name"] == "appsec-fwd"
    assert parsed["procid"] == str(os.getpid())
    assert list(parsed["sd"]) == ["alert@32473"]


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        ("2025-01-15T10:20:30Z", "2025-01-15T10:20:30.000000Z"),
        ("2025-01-15T12:20:30.5+02:00", "2025-01-15T10:20:30.500000Z"),
        (1736936430123, "2025-01-15T10:20:30.123000Z"),  # epoch milliseconds
        ("0999-06-01T00:00:00+01:00", "0999-05-31T23:00:00.000000Z"),  # four digits (%Y wrote `999`)
    ],
)
def test_rfc5424_timestamp_is_the_events_in_utc(timestamp: object, expected: str) -> None:
    parsed = parse_5424(encode(make_event({"timestamp": timestamp})))
    assert parsed["timestamp"] == expected
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{1,6}Z", parsed["timestamp"])
    assert fmt.rfc3339(datetime.fromisoformat(expected)) == expected


def test_rfc5424_timestamp_falls_back_to_received_at_then_nil() -> None:
    event = make_event({"note": "no time"}, received_at="2026-11-28T21:00:00.123456Z")
    assert parse_5424(encode(event))["timestamp"] == "2026-11-28T21:00:00.123456Z"
    assert parse_5424(encode(dataclasses.replace(event, timestamp="")))["timestamp"] == "-"


@pytest.mark.parametrize(
    ("kind", "event_type", "expected"),
    [
        ("test", "sqli", "TEST"),
        ("confirmation", None, "CONFIRMATION"),
        ("event", "SQL Injection é", "SQL_Injection__"),
        ("event", "x" * 40, "x" * 32),
        ("event", None, "-"),
    ],
)
def test_msgid(kind: str, event_type: str | None, expected: str) -> None:
    body = {"type": event_type} if event_type else {}
    assert parse_5424(encode(make_event(body, kind=kind)))["msgid"] == expected  # type: ignore[arg-type]


def test_sd_param_escaping() -> None:
    message = encode(make_event({"rule_name": AWKWARD}))
    raw = message.decode()
    # `"`, `\` and `]` are escaped in the value; `=`, `|` and `[` are not; no control characters.
    assert 'rule="pipe| eq= back\\\\ br\\] quote\\" nl nl cr cr tab tab é 日本 🙂"' in raw
    assert parse_5424(message)["sd"]["siemgate@32473"]["rule"] == one_line(AWKWARD)
    assert fmt.sd_escape('a"b\\c]d=e[f') == 'a\\"b\\\\c\\]d=e[f'


def test_bom_starts_the_message_and_event_stays_utf8() -> None:
    event = {"note": AWKWARD}
    message = encode(make_event(event))
    assert message.count(fmt.BOM) == 1
    json_part = message.split(fmt.BOM, 1)[1]
    assert orjson.loads(json_part) == event
    assert "日本 🙂".encode() in json_part


def test_default_hostname_is_this_machine_sanitized(monkeypatch: pytest.MonkeyPatch) -> None:
    fmt.machine_hostname.cache_clear()
    monkeypatch.setattr(fmt.socket, "gethostname", lambda: "my host é")
    monkeypatch.setattr(fmt.socket, "getfqdn", lambda name="": name)
    try:
        assert parse_5424(encode(make_event(), hostname=None))["hostname"] == "my_host__"
        fmt.machine_hostname.cache_clear()
        monkeypatch.setattr(fmt.socket, "gethostname", lambda: "node7")
        monkeypatch.setattr(fmt.socket, "getfqdn", lambda name="": "node7.dc1.example.net")
        assert fmt.machine_hostname() == "node7.dc1.example.net"
        fmt.machine_hostname.cache_clear()
        monkeypatch.setattr(fmt.socket, "gethostname", lambda: "h" * 300)
        monkeypatch.setattr(fmt.socket, "getfqdn", lambda name="": "localhost.localdomain")
        assert fmt.machine_hostname() == "h" * 255
    finally:
        fmt.machine_hostname.cache_clear()


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("hostname", "two words"),
        ("hostname", "h" * 256),
        ("app_name", "a" * 49),
        ("app_name", "app:name"),
        ("app_name", ""),
        ("sd_id", "origin"),
        ("sd_id", "has space@32473"),
        ("sd_id", 'q"@32473'),
        ("sd_id", "x" * 30 + "@32473"),
        ("vendor", "Acme|Corp"),
        ("product", ""),
        ("product_version", "1" * 32),
    ],
)
def test_format_settings_refused(key: str, value: str) -> None:
    assert config_error(**{key: value}).path == f"sinks[0].{key}"


def test_app_name_at_its_limit() -> None:
    assert parse_5424(encode(make_event(), app_name="a" * 48))["app_name"] == "a" * 48


@pytest.mark.parametrize("wire_format", ["rfc5424", "rfc3164", "cef", "leef"])
@pytest.mark.parametrize("header", ["rfc5424", "rfc3164"])
def test_no_line_break_in_any_message(wire_format: str, header: str) -> None:
    """What makes LF framing safe: no format ever emits a CR or LF byte."""
    event = {key: AWKWARD for key in RICH} | {"nested": {"deep": [AWKWARD]}, "timestamp": RICH["timestamp"]}
    message = encode(make_event(event, kind="event"), wire_format, cef_leef_header=header)
    assert b"\n" not in message
    assert b"\r" not in message
    message.decode("utf-8")  # valid UTF-8


def test_lone_surrogate_does_not_break_encoding() -> None:
    # The standard library's JSON decoder (siemgate's fallback) yields lone surrogates.
    event = dataclasses.replace(make_event(), rule="bad \ud800 surrogate", event={"x": 1})
    for wire_format in ("rfc5424", "rfc3164", "cef", "leef"):
        encode(event, wire_format).decode("utf-8")


# -- the RFC 5424 encoder the sink uses: byte for byte `fmt.rfc5424` ------------------------


def varied_events() -> Iterator[NormalizedEvent]:
    """Events through a Normalizer (as the forwarder gets them), then a few built by hand."""
    bodies: list[Any] = [
        RICH,
        {"severity": "low"},
        {"rule_name": AWKWARD, "rule_id": 'r"1]', "source_ip": "back\\slash", "type": AWKWARD},
        {"ruleName": "Règle é 日本 🙂", "ruleId": 942100, "source": {"ip": "2001:db8::1"}, "type": "x" * 40},
        {"rule": "only a rule", "timestamp": "2025-01-15T12:20:30.5+02:00"},
        {"rule_id": True, "source_ip": 12.5, "type": "", "timestamp": 1736936430123},
        {"rule": "r", "rule_id": "1", "source_ip": "ip\ttab\u0000nul", "timestamp": "yesterday"},
        {"big": 2**70, "negative": -(2**65), "float": 1e20, "list": [1, "a", None], "nested": {"x": {"y": []}}},
        {"timestamp": "2026-11-28T20:59:58.123456789Z", "rule": "r", "rule_id": "1", "source_ip": "203.0.113.9"},
        ["not", "an", "object"],
        "a string event",
        0,
    ]
    for body in bodies:
        for severity in ("high", "medium", "low", "unknown"):
            yield make_event(body, severity=severity)
        for kind in ("test", "confirmation"):
            yield make_event(body, kind=kind)
    yield make_event(RICH, event_id='id "quoted" \\ ]', integration="in]te\\gra\"tion é")
    yield make_event(RICH, received_at="not a time")
    yield make_event({"note": "no time"}, received_at="not a time either")
    rich = make_event(RICH)
    yield dataclasses.replace(rich, rule="bad \ud800 surrogate")
    yield dataclasses.replace(rich, id=None)  # type: ignore[arg-type]
    yield dataclasses.replace(rich, kind=None)  # type: ignore[arg-type]
    yield dataclasses.replace(rich, integration=None)  # type: ignore[arg-type]
    yield dataclasses.replace(rich, event_type="SQL Injection é")
    yield dataclasses.replace(rich, timestamp="")
    yield dataclasses.replace(rich, event=None)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"include_pid": True},
        {"facility": "auth", "app_name": "appsec-fwd", "sd_id": "alert@32473"},
        {"hostname": None},  # this machine's
    ],
)
def test_rfc5424_encoder_matches_the_reference(options: dict[str, Any]) -> None:
    config = settings(**options)
    encoder = build_encoder(config, "rfc5424")
    assert isinstance(encoder, fmt.Rfc5424Encoder)
    events = list(varied_events())
    for _ in range(2):  # the second time from its caches
        for event in events:
            assert encoder(event) == fmt.rfc5424(event, config), event


def test_rfc5424_encoder_procid_follows_the_process(monkeypatch: pytest.MonkeyPatch) -> None:
    config = settings(include_pid=True)
    encoder = fmt.Rfc5424Encoder(config)
    event = make_event(RICH)
    for pid in (1234, 1234, 5678):  # e.g. after a fork
        monkeypatch.setattr(os, "getpid", lambda pid=pid: pid)
        assert parse_5424(encoder(event))["procid"] == str(pid)
        assert encoder(event) == fmt.rfc5424(event, config)


def test_rfc5424_encoder_refuses_what_the_reference_refuses() -> None:
    config = settings()
    event = dataclasses.replace(make_event(), level="bogus")  # type: ignore[arg-type]
    for encode_one in (fmt.Rfc5424Encoder(config), lambda e: fmt.rfc5424(e, config)):
        with pytest.raises(KeyError):
            encode_one(event)


def test_rfc5424_encoder_caches_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fmt.Rfc5424Encoder, "_MAX_CACHED", 2)
    config = settings()
    encoder = fmt.Rfc5424Encoder(config)
    for i in range(5):
        event = make_event({"type": f"type-{i}"}, integration=f"integration-{i}")
        assert encoder(event) == fmt.rfc5424(event, config)
    assert len(encoder._middles) == 2
    assert len(encoder._record_params) == 2


# -- RFC 3164 --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        ("2025-01-05T03:04:05Z", "Jan  5 03:04:05"),
        ("2025-12-25T23:59:59Z", "Dec 25 23:59:59"),
        ("2025-03-01T01:30:00+02:00", "Feb 28 23:30:00"),  # in UTC by default
    ],
)
def test_rfc3164_timestamp(timestamp: str, expected: str) -> None:
    message = encode(make_event({"timestamp": timestamp}, severity="low"), "rfc3164")
    assert message.startswith(f"<133>{expected} fwd-01 siemgate: ".encode())


@pytest.fixture
def tokyo(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("tokyo")
def test_rfc3164_local_time() -> None:
    event = make_event({"timestamp": "2025-01-05T20:00:00Z"})
    assert b"Jan  6 05:00:00 " in encode(event, "rfc3164", rfc3164_timezone="local")
    assert b"Jan  5 20:00:00 " in encode(event, "rfc3164")


def test_rfc3164_without_event_time_uses_now() -> None:
    event = dataclasses.replace(make_event(), timestamp="")
    before = datetime.now(UTC).replace(microsecond=0)
    stamp = re.match(rb"<\d+>(\w{3} [ \d]\d \d\d:\d\d:\d\d) ", encode(event, "rfc3164"))
    assert stamp
    parsed = datetime.strptime(f"{before.year} {stamp.group(1).decode()}", "%Y %b %d %H:%M:%S").replace(tzinfo=UTC)
    assert abs((parsed - before).total_seconds()) <= 2


def test_rfc3164_hostname_tag_and_content() -> None:
    event = make_event(RICH)
    assert b" fwd-01 siemgate: {" in encode(event, "rfc3164")
    assert b" 192.0.2.7 siemgate: " in encode(event, "rfc3164", hostname="192.0.2.7")
    assert b" fwd-01 " + b"t" * 32 + b": {" in encode(event, "rfc3164", app_name="t" * 40)
    assert f" siemgate[{os.getpid()}]: ".encode() in encode(event, "rfc3164", include_pid=True)
    assert encode(event, "rfc3164").endswith(b": " + orjson.dumps(RICH))


def test_rfc3164_past_1024_bytes_is_not_truncated() -> None:
    event = {"blob": "x" * 3000}
    message = encode(make_event(event), "rfc3164")
    assert len(message) > 3000
    assert message.endswith(orjson.dumps(event))


# -- CEF -------------------------------------------------------------------------------------


def cef_of(message: bytes) -> str:
    text = message.decode()
    return text[text.index("CEF:0|") :]


def test_cef_header_escaping() -> None:
    event = make_event({"rule_name": AWKWARD, "rule_id": "id|with\\pipe"})
    text = encode_cef(event, vendor="Acme\\Labs", product="WAF Edge", version="5.2").decode()
    assert text.startswith("CEF:0|Acme\\\\Labs|WAF Edge|5.2|id\\|with\\\\pipe|pipe\\| eq= back\\\\ br] quote\" nl")
    header, _ = parse_cef(text)
    assert header == ["Acme\\Labs", "WAF Edge", "5.2", "id|with\\pipe", one_line(AWKWARD), "8"]


def test_cef_extension_escaping() -> None:
    event = make_event({"message": AWKWARD, "url": "https://x.example/?a=1&b=c|d"})
    text = encode_cef(event, vendor="V", product="P", version="1").decode()
    # `=` and `\` escaped, CR/LF as \r \n, tab a space; `|`, `]`, `"` left alone.
    assert 'msg=pipe| eq\\= back\\\\ br] quote" nl\\nnl cr\\rcr tab tab é 日本 🙂' in text
    assert "request=https://x.example/?a\\=1&b\\=c|d" in text
    _, ext = parse_cef(text)
    assert ext["msg"] == AWKWARD.replace("\t", " ")
    assert ext["request"] == "https://x.example/?a=1&b=c|d"


def test_cef_extension_keys() -> None:
    event = make_event(RICH, event_id="evt-42", integration="appsec-prod")
    header, ext = parse_cef(encode_cef(event, vendor="V", product="P", version="1", device_host="fwd-01"))
    assert header == ["V", "P", "1", "942100", "SQLi [942100]", "8"]
    assert ext == {
        "rt": "1736072430123",
        "externalId": "evt-42",
        "cat": "sql_injection",
        "src": "203.0.113.9",
        "request": RICH["url"],
        "requestMethod": "GET",
        "act": "blocked",
        "dhost": "shop-frontend",
        "msg": "SQL injection blocked",
        "dvchost": "fwd-01",
        "cs1Label": "integration", "cs1": "appsec-prod",
        "cs2Label": "rule", "cs2": "SQLi [942100]",
        "cs3Label": "ruleId", "cs3": "942100",
        "cs4Label": "kind", "cs4": "event",
        "cs5Label": "severity", "cs5": "high",
    }  # fmt: skip
    assert datetime.fromtimestamp(int(ext["rt"]) / 1000, UTC) == datetime(2025, 1, 5, 10, 20, 30, 123000, UTC)


@pytest.mark.parametrize(
    ("address", "keys"),
    [("198.51.100.7", {"src": "198.51.100.7"}),
     ("2001:db8::7", {"c6a2": "2001:db8::7", "c6a2Label": "Source IPv6 Address"}),
     ("proxy.example", {"shost": "proxy.example"}),
     # The address without the white space around it (a vendor's X-Forwarded-For split, a
     # trailing newline): CEF's `src` is an IPv4 field, "1.2.3.4\\n" none (the sinks' sweep).
     (" 198.51.100.7\n", {"src": "198.51.100.7"}),
     ("2001:db8::7 ", {"c6a2": "2001:db8::7", "c6a2Label": "Source IPv6 Address"}),
     ("fe80::1%eth0 ", {"shost": "fe80::1%eth0 "})],
)  # fmt: skip
def test_cef_source_address(address: str, keys: dict[str, str]) -> None:
    _, ext = parse_cef(encode_cef(make_event({"source_ip": address}), vendor="V", product="P", version="1"))
    assert {k: v for k, v in ext.items() if k in ("src", "c6a2", "c6a2Label", "shost")} == keys


@pytest.mark.parametrize(("kind", "signature", "name"), [("test", "TEST", "Test message"),
                                                         ("confirmation", "CONFIRMATION", "Confirmation message")])
def test_cef_control_messages(kind: str, signature: str, name: str) -> None:
    header, ext = parse_cef(encode_cef(make_event(RICH, kind=kind), vendor="V", product="P", version="1"))  # type: ignore[arg-type]
    assert header[3:5] == [signature, name]
    assert ext["cs4"] == kind


def test_cef_header_field_limits() -> None:
    header, _ = parse_cef(encode_cef(make_event({"rule_name": "n" * 600, "rule_id": "s" * 1100}),
                                     vendor="V", product="P", version="1"))  # fmt: skip
    assert header[3] == "s" * 1023
    assert header[4] == "n" * 512


def test_cef_header_fields_are_cut_after_escaping_never_inside_an_escape() -> None:
    text = encode_cef(make_event({"rule_name": "|" * 600, "rule_id": "ab" + "\\" * 600}),
                      vendor="V", product="P", version="1").decode()
    header, ext = parse_cef(text)
    assert header[3] == "ab" + "\\" * 510  # 1023 would end inside an escape: 1022
    assert header[4] == "|" * 256  # 512 escaped characters
    assert header[5] == "8" and ext["externalId"] == "evt-1"


@pytest.mark.parametrize(
    ("field", "key", "limit"),
    [("url", "request", 1023), ("action", "act", 63), ("id", "externalId", 40), ("rule_name", "cs2", 4000),
     ("message", "msg", 1023), ("host", "dhost", 1023), ("type", "cat", 1023), ("method", "requestMethod", 1023)],
)
def test_cef_extension_values_keep_the_dictionary_lengths(field: str, key: str, limit: int) -> None:
    hostile = "x=\\\n" * 2500  # escapes on the way, 10,000 characters
    event = make_event({**RICH, field: hostile}, event_id=hostile if field == "id" else "evt-1")
    _, ext = parse_cef(encode_cef(event, vendor="V", product="P", version="1"))
    assert ext[key] == hostile[:limit]


@pytest.mark.parametrize("header", ["rfc5424", "rfc3164"])
def test_cef_carried_in_syslog_header(header: str) -> None:
    message = encode(make_event(RICH), "cef", cef_leef_header=header, vendor="Acme", product="WAF")
    assert fmt.BOM not in message
    if header == "rfc5424":
        parsed = parse_5424(message)
        assert (parsed["pri"], parsed["msgid"], parsed["sd"]) == (130, "CEF", {})
        assert parsed["msg"].startswith("CEF:0|Acme|WAF|0.1.0|942100|")
    else:
        assert message.startswith(b"<130>Jan  5 10:20:30 fwd-01 CEF:0|Acme|WAF|")
    assert parse_cef(cef_of(message))[1]["dvchost"] == "fwd-01.example.net"


# -- LEEF ------------------------------------------------------------------------------------


def test_leef_fields() -> None:
    event = make_event(RICH, event_id="evt-42", integration="appsec-prod")
    text = encode_leef(event, vendor="Acme", product="WAF", version="5.2").decode()
    assert text.startswith("LEEF:2.0|Acme|WAF|5.2|942100|x09|devTime=2025-01-05T10:20:30.123+0000\t")
    header, attributes = parse_leef(text)
    assert header == ["Acme", "WAF", "5.2", "942100"]
    assert attributes == {
        "devTime": "2025-01-05T10:20:30.123+0000",
        "devTimeFormat": "yyyy-MM-dd'T'HH:mm:ss.SSSZ",
        "sev": "8",
        "cat": "sql_injection",
        "src": "203.0.113.9",
        "url": RICH["url"],
        "method": "GET",
        "action": "blocked",
        "policy": "SQLi [942100]",
        "ruleId": "942100",
        "resource": "shop-frontend",
        "eventId": "evt-42",
        "integration": "appsec-prod",
        "kind": "event",
        "severity": "high",
        "msg": "SQL injection blocked",
    }


def test_leef_escaping() -> None:
    event = make_event({"message": AWKWARD, "rule_id": "a|b\tc", "source_ip": "not an ip"})
    text = encode_leef(event, vendor="V", product="P", version="1").decode()
    header, attributes = parse_leef(text)
    assert header[3] == "a_b c"  # LEEF cannot escape: `|` and controls replaced in the header
    assert attributes["msg"] == one_line(AWKWARD)  # `=`, `|`, `\` kept; the TAB delimiter a space
    assert attributes["srcHostName"] == "not an ip"
    assert "src" not in attributes


def test_leef_unknown_severity_has_the_middle_sev_and_kinds_have_their_id() -> None:
    _, attributes = parse_leef(encode_leef(make_event(severity="unknown"), vendor="V", product="P", version="1"))
    assert attributes["sev"] == "5"
    assert attributes["severity"] == "unknown"
    header, _ = parse_leef(encode_leef(make_event(kind="test"), vendor="V", product="P", version="1"))
    assert header[3] == "TEST"


def test_leef_carried_in_syslog_header() -> None:
    """The full RFC 5424 header siemgate wrote before IBM's form became the default
    (tests/forwarders/test_leef.py), still selectable."""
    parsed = parse_5424(encode(make_event(RICH, severity="medium"), "leef", leef_header="rfc5424"))
    assert (parsed["pri"], parsed["msgid"], parsed["sd"]) == (132, "LEEF", {})
    assert parsed["msg"].startswith("LEEF:2.0|siemgate|siemgate|0.1.0|942100|x09|")


# -- framing and the UDP truncation rule -----------------------------------------------------


def test_octet_counting_counts_bytes() -> None:
    assert octet_counted(b"<13>1 - - - - - - hi") == b"20 <13>1 - - - - - - hi"
    assert octet_counted("é".encode()) == b"2 \xc3\xa9"


def test_streams_are_the_framed_messages_joined() -> None:
    messages = [b"<13>1 - - - - - - hi", "é\nnl".encode(), b"", b"x" * 1000]
    assert octet_counted_stream(messages) == b"".join(octet_counted(m) for m in messages)
    assert lf_terminated_stream(messages) == b"".join(lf_terminated(m) for m in messages)
    assert octet_counted_stream([]) == lf_terminated_stream([]) == b""


def test_lf_framing_cannot_be_split() -> None:
    assert lf_terminated(b"one\ntwo") == b"one two\n"
    assert lf_terminated(b"plain") == b"plain\n"


TEXT = ("aé日🙂" * 100).encode()


@pytest.mark.parametrize("limit", range(480, 520))
def test_truncate_utf8_never_splits_a_character(limit: int) -> None:
    cut = fmt.truncate_utf8(TEXT, limit)
    assert len(cut) <= limit
    assert TEXT.startswith(cut)
    decoded = cut.decode("utf-8")  # no partial character
    # Maximal: the next character would not have fitted.
    assert len(cut) + len(TEXT.decode()[len(decoded)].encode()) > limit


def test_truncate_utf8_leaves_short_messages_alone() -> None:
    assert fmt.truncate_utf8(b"short", 480) == b"short"
    assert fmt.truncate_utf8(b"x" * 480, 480) == b"x" * 480


# -- settings --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tcp://syslog:514", Address("tcp", "syslog", 514)),
        ("TLS://siem.example.net", Address("tls", "siem.example.net", 6514)),
        ("udp://127.0.0.1", Address("udp", "127.0.0.1", 514)),
        ("tcp://[::1]:1514", Address("tcp", "::1", 1514)),
    ],
)
def test_parse_address(text: str, expected: Address) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize(
    "address", ["syslog:514", "http://syslog:514", "tcp://", "tcp://host:0", "tcp://host:99999", "tcp://host:514/x",
                "tcp://user@host:514", "tcp://host:port"],
)  # fmt: skip
def test_bad_address_refused(address: str) -> None:
    error = config_error(address=address)
    assert error.path == "sinks[0].address"
    assert "tcp://host:port" in error.reason


@pytest.mark.parametrize(
    ("options", "path"),
    [
        ({"address": "tls://h:6514", "framing": "lf"}, "framing"),
        ({"address": "udp://h:514", "framing": "lf"}, "framing"),
        ({"address": "tcp://h:514", "tls": {"ca_file": "/ca.pem"}}, "tls"),
        ({"address": "tls://h:6514", "tls": {"key": "/k.pem"}}, "tls.cert"),
        ({"max_datagram_bytes": 479}, "max_datagram_bytes"),
        ({"max_datagram_bytes": 65508}, "max_datagram_bytes"),
        ({"connect_timeout_seconds": 0}, "connect_timeout_seconds"),
        ({"accept_check_seconds": -1}, "accept_check_seconds"),
        ({"format": "json"}, "format"),
        ({"framing": "nul"}, "framing"),
        ({"port": 514}, "port"),
    ],
)
def test_sink_settings_refused(options: dict[str, Any], path: str) -> None:
    assert config_error(**options).path == f"sinks[0].{path}"


def test_sink_settings_defaults() -> None:
    built = build_settings("syslog", {"name": "soc", "address": "tls://siem:6514"}, {}, "sinks[0]")
    assert isinstance(built, SyslogSinkSettings)
    assert (built.format, built.framing, built.facility_code) == ("rfc5424", "octet-counting", 16)
    assert built.tls.verify is True
    assert built.max_datagram_bytes == 2048
    assert built.target == Address("tls", "siem", 6514)


@pytest.mark.parametrize("wire_format", ["rfc5424", "rfc3164"])
def test_syslog_formats_read_only_the_fields_the_sink_declares(wire_format: str) -> None:
    """The forwarder looks up only SYSLOG_FIELDS for these formats: the output must not change."""
    from siemgate.forwarders.normalize import Normalizer
    from siemgate.forwarders.sinks.syslog import SYSLOG_FIELDS, SyslogSinkSettings, build_encoder
    from siemgate.record import make_record

    event = {"id": "x", "timestamp": "2026-11-28T20:00:00Z", "type": "xss", "ruleName": "r", "ruleId": 7,
             "source": {"ip": "192.0.2.1"}, "url": "https://a.example/", "method": "GET", "action": "blocked",
             "asset": "shop", "message": "m"}
    value = make_record(prefix="p", event=event, kind="event", integration="i", severity="high", event_id="x",
                        received_at="2026-11-28T21:00:00.000000Z", batch="b", seq=0, peer="p").value
    settings = SyslogSinkSettings(name="s", address="tcp://127.0.0.1:514", hostname="h")
    encode = build_encoder(settings, wire_format)  # type: ignore[arg-type]
    normalizer = Normalizer()
    assert encode(normalizer.normalize(value, SYSLOG_FIELDS)) == encode(normalizer.normalize(value))


# -- an impossible event time: the receive time in every format, the original said -----------


@pytest.mark.parametrize("raw", ["2025-02-30T10:00:00Z", "2025-13-45T99:99:99Z", "2016-12-31T22:59:60Z"])
def test_an_impossible_time_is_the_receive_time_in_every_format(raw: str) -> None:
    from siemgate.forwarders.formats.ecs import ecs_document
    from siemgate.forwarders.sinks.splunk_hec import SplunkHecSink, SplunkHecSinkSettings
    from siemgate.secrets import Secret

    received = "2026-11-28T21:00:00.123456Z"
    event = make_event({**RICH, "timestamp": raw}, received_at=received)
    assert (event.timestamp, event.timestamp_invalid) == (received, raw)
    message = parse_5424(encode(event, "rfc5424"))
    assert message["timestamp"] == received
    assert message["sd"]["siemgate@32473"]["timestamp_invalid"] == raw
    # the slow path (every param escaped) says the same
    odd = dataclasses.replace(event, rule='a "quoted" rule')
    assert parse_5424(encode(odd, "rfc5424"))["sd"]["siemgate@32473"]["timestamp_invalid"] == raw
    assert encode(event, "rfc3164").startswith(b"<130>Nov 28 21:00:00 fwd-01 ")
    millis = str(int(datetime(2026, 11, 28, 21, 0, 0, 123000, tzinfo=UTC).timestamp() * 1000))
    _, ext = parse_cef(encode_cef(event, vendor="V", product="P", version="1"))
    assert ext["rt"] == millis
    assert (ext["cs6Label"], ext["cs6"]) == ("timestampInvalid", raw)
    _, attributes = parse_leef(encode_leef(event, vendor="V", product="P", version="1"))
    assert attributes["devTime"] == "2026-11-28T21:00:00.123+0000"
    assert attributes["timestampInvalid"] == raw
    hec = SplunkHecSink(SplunkHecSinkSettings(name="s", url="http://127.0.0.1:8088", token=Secret("t")))
    envelope = orjson.loads(hec.encode(event))
    assert envelope["time"] == pytest.approx(1795899600.123456)
    assert envelope["fields"]["timestamp_invalid"] == raw and envelope["event"]["timestamp_invalid"] == raw
    doc = ecs_document(event, ingested=received)
    assert doc["@timestamp"] == received and doc["labels"]["timestamp_invalid"] == raw


def test_a_leap_second_is_the_microsecond_before_it_in_every_format() -> None:
    event = make_event({**RICH, "timestamp": "2016-12-31T23:59:60Z"})
    assert (event.timestamp, event.timestamp_invalid) == ("2016-12-31T23:59:59.999999Z", None)
    assert parse_5424(encode(event, "rfc5424"))["timestamp"] == "2016-12-31T23:59:59.999999Z"
    assert b"Dec 31 23:59:59 " in encode(event, "rfc3164")
    _, ext = parse_cef(encode_cef(event, vendor="V", product="P", version="1"))
    assert ext["rt"] == "1483228799999" and "cs6" not in ext


# -- critical: routed as high, shown as critical where a format has the level -----------------


def test_a_vendor_critical_is_critical_in_every_format() -> None:
    from siemgate.forwarders.formats.ecs import ecs_document
    from siemgate.forwarders.sinks.file import to_json_line
    from siemgate.forwarders.sinks.splunk_hec import SplunkHecSink, SplunkHecSinkSettings
    from siemgate.secrets import Secret

    event = make_event({**RICH, "severity": "Critical"}, severity="high")
    assert (event.severity, event.level) == ("high", "critical")
    message = parse_5424(encode(event, "rfc5424"))
    assert message["pri"] == 16 * 8 + 1 and message["sd"]["siemgate@32473"]["severity"] == "critical"
    assert encode(event, "rfc3164").startswith(b"<129>")
    header, ext = parse_cef(encode_cef(event, vendor="V", product="P", version="1"))
    assert header[5] == "10" and (ext["cs5Label"], ext["cs5"]) == ("severity", "Critical")
    _, attributes = parse_leef(encode_leef(event, vendor="V", product="P", version="1"))
    assert (attributes["sev"], attributes["severity"]) == ("10", "critical")
    hec = SplunkHecSink(SplunkHecSinkSettings(name="s", url="http://127.0.0.1:8088", token=Secret("t")))
    envelope = orjson.loads(hec.encode(event))
    assert (envelope["event"]["severity"], envelope["event"]["severity_id"]) == ("critical", 5)
    assert envelope["fields"]["severity"] == "critical"
    doc = ecs_document(event, ingested="2026-11-28T21:00:00.000Z")
    assert (doc["event"]["severity"], doc["event"]["risk_score"], doc["labels"]["severity"]) == (99, 99.0, "critical")
    line = orjson.loads(to_json_line(event))
    assert (line["severity"], line["level"], line["vendor_severity"]) == ("high", "critical", "Critical")
