"""The normalized view: field extraction, timestamps, severity routing."""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from siemgate.config import DEFAULT_FIELDS, NormalizeConfig, parse_config
from siemgate.forwarders import normalize
from siemgate.forwarders.normalize import (
    NormalizedEvent,
    Normalizer,
    _text,
    _timestamp,
    _timestamp_parsed,
    passes,
)
from siemgate.forwarders.sinks.syslog import SYSLOG_FIELDS
from siemgate.record import SEVERITIES, canonical_severity, decode, envelope_decoder, make_record
from siemgate.simulate import DEFAULT_MIX, make_events

RECEIVED = "2026-11-28T21:00:00.123456Z"


def value(event: object, severity: str = "high", kind: str = "event") -> bytes:
    return make_record(prefix="p", event=event, kind=kind, integration="appsec", severity=severity,  # type: ignore[arg-type]
                       event_id="id-1", received_at=RECEIVED, batch="b1", seq=3, peer="192.0.2.1").value


def test_common_spellings_are_found() -> None:
    event = {
        "eventTime": "2026-11-28T20:59:58.5Z",
        "source": {"ip": "203.0.113.7"},
        "request": {"url": "https://shop.example/login?x=1", "method": "POST"},
        "ruleName": "SQL Injection",
        "ruleId": 942100,
        "action": "blocked",
        "application": {"name": "shop"},
        "type": "sql_injection",
        "description": "a SQL injection attempt",
    }
    normalized = Normalizer().normalize(value(event))
    assert normalized.id == "id-1" and normalized.integration == "appsec" and normalized.seq == 3
    assert normalized.timestamp == "2026-11-28T20:59:58.500000Z"
    assert (normalized.source_ip, normalized.url, normalized.method) == (
        "203.0.113.7", "https://shop.example/login?x=1", "POST")
    assert (normalized.rule, normalized.rule_id, normalized.action) == ("SQL Injection", "942100", "blocked")
    assert (normalized.asset, normalized.event_type) == ("shop", "sql_injection")
    assert normalized.message == "a SQL injection attempt"
    assert normalized.event == event
    assert normalized.record == value(event)


def test_configured_paths_come_first() -> None:
    config = parse_config("normalize: {fields: {source_ip: [meta.client.addr], asset: [svc]}}", {})
    event = {"ip": "198.51.100.1", "meta": {"client": {"addr": "203.0.113.9"}}, "svc": "billing", "host": "h"}
    normalized = Normalizer(config.normalize).normalize(value(event))
    assert normalized.source_ip == "203.0.113.9"
    assert normalized.asset == "billing"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2026-11-28T20:59:58Z", "2026-11-28T20:59:58.000000Z"),
        ("2026-11-28T20:59:58.123456789Z", "2026-11-28T20:59:58.123456Z"),
        ("2026-11-28T20:59:58.5Z", "2026-11-28T20:59:58.500000Z"),
        ("2026-11-28T20:59:58.12345Z", "2026-11-28T20:59:58.123450Z"),
        ("2026-11-28T20:59:58.123456Z", "2026-11-28T20:59:58.123456Z"),
        ("2026-11-28T21:59:58+01:00", "2026-11-28T20:59:58.000000Z"),
        ("2026-11-28 20:59:58", "2026-11-28T20:59:58.000000Z"),
        (1795899598, "2026-11-28T20:59:58.000000Z"),
        (1795899598123, "2026-11-28T20:59:58.123000Z"),
        ("yesterday", RECEIVED),
        (None, RECEIVED),
        (True, RECEIVED),
        ({"nested": 1}, RECEIVED),
    ],
)
def test_timestamps(raw: object, expected: str) -> None:
    assert Normalizer().normalize(value({"timestamp": raw})).timestamp == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # Leap seconds: the last microsecond before them, whatever the offset they are written in.
        ("2016-12-31T23:59:60Z", "2016-12-31T23:59:59.999999Z"),
        ("2016-12-31T23:59:60.5Z", "2016-12-31T23:59:59.999999Z"),
        ("2017-01-01T05:29:60+05:30", "2016-12-31T23:59:59.999999Z"),
        ("2026-11-28T21:59:58+05:30", "2026-11-28T16:29:58.000000Z"),
        ("2026-11-28t20:59:58z", "2026-11-28T20:59:58.000000Z"),
        ("2024-02-29T10:00:00Z", "2024-02-29T10:00:00.000000Z"),
        # Epoch seconds and milliseconds as text.
        ("1795899598", "2026-11-28T20:59:58.000000Z"),
        ("1795899598123", "2026-11-28T20:59:58.123000Z"),
        ("1795899598.25", "2026-11-28T20:59:58.250000Z"),
        # Epoch microseconds and nanoseconds (Fastly, Cloudflare's `unixnano`), by magnitude; an
        # integer exactly (a nanosecond count as a float would be off by ~100 ns), cut to the
        # microsecond; before 1970 alike.
        (1795899598123456, "2026-11-28T20:59:58.123456Z"),
        (1795899598123456789, "2026-11-28T20:59:58.123456Z"),
        ("1795899598123456", "2026-11-28T20:59:58.123456Z"),
        ("1795899598123456789", "2026-11-28T20:59:58.123456Z"),
        (1795899598123.5, "2026-11-28T20:59:58.123500Z"),
        (-1_000_000_000_000, "1938-04-24T22:13:20.000000Z"),
        (-1, "1969-12-31T23:59:59.000000Z"),
        # The bounds: below 10^11 seconds, then milliseconds.
        (99_999_999_999, "5138-11-16T09:46:39.000000Z"),
        (100_000_000_000, "1973-03-03T09:46:40.000000Z"),
        # Years before 1000 keep four digits (the C library's %Y wrote `999`: the sinks' sweep).
        ("0999-06-01T00:00:00+01:00", "0999-05-31T23:00:00.000000Z"),
        ("0050-01-01 10:00:00", "0050-01-01T10:00:00.000000Z"),
        ("0001-01-01T05:30:00+05:30", "0001-01-01T00:00:00.000000Z"),
    ],
)
def test_more_timestamp_forms(raw: object, expected: str) -> None:
    normalized = Normalizer().normalize(value({"timestamp": raw}))
    assert (normalized.timestamp, normalized.timestamp_invalid) == (expected, None)


@pytest.mark.parametrize(
    "raw",
    ["2025-02-30T10:00:00Z", "2025-13-45T99:99:99Z", "2025-01-01T24:00:00Z", "2025-01-01T10:60:00Z",
     "2025-02-29T10:00:00+01:00", "2025-02-30T10:00:00.123Z", "2016-12-31T22:59:60Z", "yesterday", 1e20,
     # Past nanoseconds' range (10^20: year 5138 in nanoseconds), 20 digits of text.
     -1e20, "17958995981234567890",
     # Real local times whose UTC instant lies outside years 1-9999 (datetime raised OverflowError,
     # which stopped the forwarder on the record: the sink's sweep, issue 19).
     "0001-01-01T00:00:00+05:00", "9999-12-31T23:00:00-05:00", "0001-01-01T05:29:60+05:30",
     # Year 0 exists in no format siemgate writes (ISO 8601's proleptic year 0 aside): Python,
     # Sentinel's datetime and Splunk refuse it; and digits that are not ASCII ("2026" in
     # Arabic-Indic digits), which `\d` matched: every SIEM refused the "timestamp" written back.
     "0000-01-01T00:00:00Z", "0000-06-15T10:00:00.5Z", "\u0662\u0660\u0662\u0666-12-07T10:00:00Z",
     "2026-12-07T1\u0660:00:00Z"],
)
def test_impossible_timestamps_fall_back_to_the_receive_time_and_say_so(raw: object) -> None:
    for normalized in (Normalizer().normalize(value({"timestamp": raw})),
                       # a record the ingest did not write (its fields converted)
                       Normalizer().normalize(orjson.dumps({**orjson.loads(value({"timestamp": raw})), "seq": "3"}))):
        assert normalized.timestamp == RECEIVED
        assert normalized.timestamp_invalid == _text(raw)


def test_non_object_events_and_missing_fields() -> None:
    normalized = Normalizer().normalize(value(["a", 1]))
    assert normalized.event == ["a", 1]
    assert normalized.source_ip is None and normalized.url is None
    assert normalized.timestamp == RECEIVED


@pytest.mark.parametrize("raw", [b"", b"[]", b"not json", b'{"v": 2}', b'{"id": "x"}'])
def test_not_a_record(raw: bytes) -> None:
    with pytest.raises(ValueError):
        Normalizer().normalize(raw)


def test_min_severity_with_unknown_routed_as_configured() -> None:
    default = Normalizer()
    assert passes("unknown", "high", default)  # unknown is routed as high: never filtered away
    assert passes("high", "medium", default) and passes("medium", "medium", default)
    assert not passes("low", "medium", default)
    low = Normalizer(NormalizeConfig(unknown_severity_as="low"))
    assert not passes("unknown", "medium", low)
    assert passes("unknown", "low", low)


# -- the normalizer's fast paths give what the plain rules give -------------------------------


def reference(normalizer: Normalizer, value: bytes, fields: frozenset[str] | None) -> list[object]:
    """NormalizedEvent's fields by the rules written plainly: every envelope field converted
    (missing ones default), each normalized field the first scalar along its paths (configured
    ones first), looked up afresh for every event."""
    record = decode(value)
    event = record.get("event")
    severity = record.get("severity")
    if severity not in SEVERITIES:
        severity = canonical_severity(severity)
    received_at = str(record.get("received_at") or "")
    found: dict[str, object] = dict.fromkeys(DEFAULT_FIELDS)
    for name, defaults in DEFAULT_FIELDS.items():
        if isinstance(event, dict) and (fields is None or name in fields):
            paths = (*normalizer.config.fields.get(name, ()), *defaults)
            found[name] = next(filter(lambda v: v is not None and not isinstance(v, dict | list),
                                      (value for path in paths for value in lookup(event, path))), None)
    texts = [_text(found[name]) for name in DEFAULT_FIELDS if name != "timestamp"]
    if isinstance(event, dict) and fields is not None:  # the vendor's severity is always looked up
        paths = (*normalizer.config.fields.get("vendor_severity", ()), *DEFAULT_FIELDS["vendor_severity"])
        texts[-1] = _text(next(filter(lambda v: v is not None and not isinstance(v, dict | list),
                                      (value for path in paths for value in lookup(event, path))), None))
    vendor_severity = texts.pop()
    scheme = normalizer.config.scheme_for(str(record.get("integration", "")))
    level = "critical" if severity == "high" and scheme.level(vendor_severity) == "critical" else severity
    position = scheme.position(vendor_severity) if vendor_severity is not None else None
    return [str(record.get("id", "")), record.get("kind", "event"), str(record.get("integration", "")), severity,
            received_at, str(record.get("batch", "")), int(record.get("seq", 0) or 0),  # type: ignore[call-overload]
            str(record.get("peer", "")), _timestamp(found["timestamp"]) or received_at, *texts, event, value,
            _text(found["timestamp"]) if found["timestamp"] is not None and _timestamp(found["timestamp"]) is None
            else None, vendor_severity, level, position]


def fold(key: str) -> str:
    return "".join(c for c in key.lower() if c not in "_-. ")


def lookup(event: dict[str, Any], path: str) -> list[object]:
    """The values a path can match, in order: its first key exact, else the first key of the
    event that is equal case- and separator-insensitively; then, for a dotted path, the first
    top-level key equal to its parts joined, in the same way."""
    first, *rest = path.split(".")
    if first not in event:
        first = next((key for key in event if fold(key) == fold(first)), first)
    value: object = event.get(first)
    for part in rest:
        value = value.get(part) if isinstance(value, dict) else None
    values = [value]
    if rest:
        flat = next((key for key in event if fold(key) == fold(path)), None)
        values.append(event[flat] if flat is not None else None)
    return values


def as_list(normalized: NormalizedEvent) -> list[object]:
    """The view's fields; `raw_event` (a view into `record`, kept to spare `event_bytes` a
    second parse) is checked here to be exactly the event's bytes in the record, when kept."""
    if normalized.raw_event is not None:
        assert bytes(normalized.raw_event) == bytes(envelope_decoder.decode(normalized.record).event)
    return [getattr(normalized, f.name) for f in dataclasses.fields(normalized) if f.name != "raw_event"]


EVENTS: list[object] = [
    *make_events(20, DEFAULT_MIX, 7),
    {"eventTime": "2026-11-28T20:59:58.5Z", "source": {"ip": "203.0.113.7"}, "ruleName": "SQLi", "ruleId": 942100,
     "request": {"url": "https://shop.example/?q=1", "method": "POST"}, "application": {"name": "shop"}},
    # The same keys in another order: another shape.
    {"ruleId": 942100, "ruleName": "SQLi", "source": {"ip": "203.0.113.7"}, "eventTime": "2026-11-28T20:59:58Z"},
    # Containers and nulls are skipped for the next path; booleans and numbers become text.
    {"source_ip": None, "sourceIp": {"v": 4}, "src_ip": ["a"], "srcIp": "198.51.100.1", "rule": True,
     "rule_id": 1.5, "action": False, "host": 0, "type": "", "message": 2**70, "timestamp": 1795899598123},
    {"source": "not an object", "request": {"client_ip": None, "ip": "192.0.2.1"}, "url": {"full": "u"},
     "http": {"request": {"method": "GET"}}, "timestamp": "2026-11-28T21:59:58+01:00"},
    {"asset": {"name": None, "host": "h"}, "timestamp": "2026-11-28T20:59:58.123456789Z", "meta": {"svc": "s"}},
    {"timestamp": "yesterday", "description": "é 日本 🙂", "big": -(2**65), "float": 1e20},
    {"timestamp": True}, {"timestamp": {"nested": 1}}, {"timestamp": "2026-11-28T20:59:58.12Z"},
    # Keys that differ by case or separators, flat spellings of dotted paths, collisions.
    {"sourceIP": "203.0.113.1", "assetName": "web", "RuleName": "r", "EventTime": "2026-11-28T20:59:58Z",
     "SEVERITY": "Critical", "Http-Method": "get"},
    {"SourceIp": "203.0.113.2", "Asset": {"Name": "x"}, "asset_name": "y", "source_ip": None},
    {"source-ip": "203.0.113.3", "SOURCE_IP": "203.0.113.4", "sourceIp": "203.0.113.5", "request_url": "u",
     "Request": {"URL": "v"}, "rule.name": "flat", "ruleName": {"not": "scalar"}},
    {}, ["a", 1], "text", 5, None,
]


def envelopes() -> list[bytes]:
    """Records as the ingest writes them, and ones it does not write (each field odd once)."""
    written = [value(event, severity) for event in EVENTS for severity in ("high", "unknown")]
    written.append(value(EVENTS[0], kind="test"))
    base = orjson.loads(written[0])
    odd: list[dict[str, object]] = [
        {"id": 42}, {"id": None}, {"kind": None}, {"kind": 7}, {"integration": 3}, {"severity": "High"},
        {"severity": "critical"}, {"severity": None}, {"severity": ["high"]}, {"received_at": None},
        {"received_at": ""}, {"received_at": 17}, {"batch": None}, {"seq": True}, {"seq": 2.9}, {"seq": "12"},
        {"seq": None}, {"peer": ["p"]}, {"extra": "ignored"}, {"v": True},
    ]
    missing = ["id", "kind", "integration", "severity", "received_at", "batch", "seq", "peer", "event"]
    records = [{**base, **change} for change in odd]
    records += [{key: item for key, item in base.items() if key != name} for name in missing]
    return written + [orjson.dumps(record) for record in records]


@pytest.mark.parametrize("fields", [None, SYSLOG_FIELDS, frozenset({"url", "asset"}), frozenset()])
@pytest.mark.parametrize("configured", [False, True])
def test_normalize_matches_the_plain_rules(fields: frozenset[str] | None, configured: bool,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    config = NormalizeConfig(fields={"asset": ("meta.svc",), "source_ip": ("request.ip",)}) if configured else None
    normalizer = Normalizer(config)
    records = envelopes()
    # A shape's first event walks its plan, the second compiles it, the third uses it compiled.
    for _ in range(3):
        for record in records:
            assert as_list(normalizer.normalize(record, fields)) == reference(normalizer, record, fields), record
    # Past the bound on remembered shapes, plans are made for each event.
    monkeypatch.setattr(normalize, "_MAX_SHAPES", 1)
    normalizer = Normalizer(config)
    for record in records:
        assert as_list(normalizer.normalize(record, fields)) == reference(normalizer, record, fields), record


@pytest.mark.parametrize("seq", [[1], "x"])
def test_unconvertible_seq_fails_as_before(seq: object) -> None:
    record = {**orjson.loads(value({"a": 1})), "seq": seq}
    with pytest.raises(TypeError if isinstance(seq, list) else ValueError):
        Normalizer().normalize(orjson.dumps(record))


# -- severity: the level, with critical, and the vendor's own label ---------------------------


@pytest.mark.parametrize(
    ("raw", "level"),
    [
        ("critical", "critical"), ("CRITICAL", "critical"), ("crit", "critical"), ("emergency", "critical"),
        ("Very-High", "critical"), ("very high", "critical"), ("very_high", "critical"), (9, "critical"),
        ("9.8", "critical"), (10, "critical"), ("high", "high"), ("error", "high"), ("severe", "high"),
        ("major", "high"), (7, "high"), ("8.9", "high"), ("warning", "medium"), ("moderate", "medium"),
        (4, "medium"), ("6.9", "medium"), ("minor", "low"), ("info", "low"), ("notice", "low"),
        ("informational", "low"), (0, "low"), ("3.9", "low"), (11, "unknown"), (-1, "unknown"),
        ("1e3", "unknown"), ("nan", "unknown"), (True, "unknown"), ("bogus", "unknown"), (None, "unknown"),
    ],
)
def test_severity_words_and_scores(raw: object, level: str) -> None:
    from siemgate.record import severity_level

    routed = {"critical": "high"}.get(level, level)
    assert (severity_level(raw), canonical_severity(raw)) == (level, routed)


def test_critical_is_the_level_of_a_record_routed_high() -> None:
    normalized = Normalizer().normalize(value({"severity": "Critical"}, "high"))
    assert (normalized.severity, normalized.level, normalized.vendor_severity) == ("high", "critical", "Critical")
    normalized = Normalizer().normalize(value({"severity": 9.8}, "high"), SYSLOG_FIELDS)
    assert (normalized.severity, normalized.level, normalized.vendor_severity) == ("high", "critical", "9.8")
    # The level never contradicts the routing: a record the ingest routed otherwise keeps its severity.
    normalized = Normalizer().normalize(value({"severity": "critical"}, "unknown"))
    assert (normalized.severity, normalized.level) == ("unknown", "unknown")
    normalized = Normalizer().normalize(value({"severity": "high"}, "high"))
    assert (normalized.severity, normalized.level) == ("high", "high")


def test_the_configured_severity_map_and_field() -> None:
    config = parse_config("normalize: {severity_map: {P0: critical}, fields: {vendor_severity: [meta.prio]}}", {})
    normalized = Normalizer(config.normalize).normalize(value({"meta": {"prio": "p0"}, "severity": "high"}, "high"))
    assert (normalized.level, normalized.vendor_severity) == ("critical", "p0")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("normalize: {severity_map: {x: huge}}", "normalize.severity_map.x: must be one of"),
        ("normalize: {severity_map: {'--': high}}", "is no word"),
        ("normalize: {severity_bands: {unknown: 1}}", "normalize.severity_bands.unknown: is not a band"),
        ("normalize: {severity_bands: {high: 5, critical: 4}}", "normalize.severity_bands.high: must be below"),
        ("normalize: {severity_bands: {high: 50}}", "must be between 0 and severity_max"),
        ("normalize: {severity_bands: {}}", "needs at least one level"),
        ("normalize: {severity_max: 0}", "normalize.severity_max: must be more than 0"),
    ],
)
def test_severity_settings_are_validated(text: str, message: str) -> None:
    from siemgate.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        parse_config(text, {})


@pytest.mark.parametrize(
    ("event", "found"),
    [
        ({"sourceIP": "203.0.113.1"}, {"source_ip": "203.0.113.1"}),
        ({"SourceIp": "203.0.113.2"}, {"source_ip": "203.0.113.2"}),
        ({"SOURCE-IP": "203.0.113.3"}, {"source_ip": "203.0.113.3"}),
        ({"assetName": "web"}, {"asset": "web"}),
        ({"Asset_Name": "web"}, {"asset": "web"}),
        ({"RuleName": "SQLi", "RULE_ID": 942100}, {"rule": "SQLi", "rule_id": "942100"}),
        ({"Request": {"url": "https://x/"}}, {"url": "https://x/"}),
        # exact spellings keep their place in the order of paths
        ({"sourceIp": "203.0.113.5", "ip": "192.0.2.1"}, {"source_ip": "203.0.113.5"}),
    ],
)
def test_field_names_match_case_and_separator_insensitively(event: dict[str, object], found: dict[str, str]) -> None:
    normalizer = Normalizer()
    for _ in range(2):  # the plan made, then the plan remembered
        normalized = normalizer.normalize(value(event))
        assert {name: getattr(normalized, name) for name in found} == found


# -- the timestamp memo gives what the rules give -----------------------------------------------

# Seconds prefixes and tails, real and not (out of range, another day's length, non-ASCII digits,
# lower case, no `Z` ...), combined every way: the memo holds the halves of the texts seen.
PREFIXES = ["2026-11-28T20:59:58", "2025-02-30T10:00:00", "2024-02-29T10:00:00", "2025-02-29T10:00:00",
            "2025-01-01T24:00:00", "2025-01-01T10:60:00", "\u0662\u0660\u0662\u0665-01-01T10:00:00",
            "2026-11-28t20:59:58", "2026-11-28 20:59:58", "2026-11-28T20:59:5", "2016-12-31T23:59:60", ""]
TAILS = ["Z", "z", ".5Z", ".123456Z", ".1234567Z", ".Z", "+01:00", "", ".\u0663Z", "Z ", ".12a4Z", ".000Z", "0Z"]


class Text(str):
    """A str subclass: no memo entry is made or used for it."""


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(PREFIXES) | st.text(max_size=20),
                          st.sampled_from(TAILS) | st.text(max_size=8)), max_size=12),
       st.integers(min_value=1, max_value=8))
def test_the_timestamp_memo_gives_what_the_rules_give(halves: list[tuple[str, str]], bound: int) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(normalize, "_MAX_MEMO", bound)  # small: the memo is emptied as it fills
        patch.setattr(normalize, "_SECONDS", {})
        patch.setattr(normalize, "_TAILS", {})
        prefixes = [prefix for prefix, _ in halves] + PREFIXES
        tails = [tail for _, tail in halves] + TAILS
        for prefix in prefixes:
            for tail in tails:
                text = prefix + tail
                assert _timestamp(text) == _timestamp_parsed(text), text
                assert _timestamp(text) == _timestamp_parsed(text), text  # its halves remembered now
                assert _timestamp(Text(text)) == _timestamp_parsed(Text(text)), text
        assert len(normalize._SECONDS) <= bound and len(normalize._TAILS) <= bound
        # `Normalizer.normalize` looks the memo up inline: the same answers.
        normalizer = Normalizer()
        for prefix in prefixes:
            for tail in tails[:4]:
                text = prefix + tail
                expected = _timestamp_parsed(text)
                for _ in range(3):  # the shape's plan walked, compiled, then used compiled
                    normalized = normalizer.normalize(value({"timestamp": text}))
                    assert (normalized.timestamp, normalized.timestamp_invalid) == (
                        (expected, None) if expected is not None else (RECEIVED, text)), text


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        # AWS WAF (its log's own shape, abridged).
        ({"timestamp": 1765180800123, "formatVersion": 1, "webaclId": "arn:aws:wafv2:...", "action": "BLOCK",
          "terminatingRuleId": "AWS-AWSManagedRulesSQLiRuleSet", "terminatingRuleType": "MANAGED_RULE_GROUP",
          "httpRequest": {"clientIp": "198.51.100.7", "country": "US", "uri": "/login", "args": "id=1%27",
                          "httpVersion": "HTTP/1.1", "httpMethod": "POST", "requestId": "rid-1",
                          "headers": [{"name": "Host", "value": "shop.example.com"}]}},
         ("2025-12-08T08:00:00.123000Z", "198.51.100.7", "/login", "POST", "AWS-AWSManagedRulesSQLiRuleSet", "BLOCK")),
        # Cloudflare firewall events (Logpush, `unixnano` timestamps).
        ({"Datetime": 1765180800123456789, "ClientIP": "2001:db8::7", "ClientRequestHost": "shop.example.com",
          "ClientRequestMethod": "GET", "ClientRequestURI": "/search?q=%3Cscript%3E", "Action": "block",
          "RuleID": "100173", "Source": "firewallManaged", "RayID": "7d2c0b1a2b3c4d5e"},
         ("2025-12-08T08:00:00.123456Z", "2001:db8::7", "/search?q=%3Cscript%3E", "GET", "100173", "block")),
        # F5 ASM (JSON remote logging).
        ({"date_time": "2025-12-08 08:00:00", "ip_client": "203.0.113.9", "method": "POST", "uri": "/api/v1/users",
          "request_status": "blocked", "attack_type": "SQL-Injection", "sig_ids": "200002147", "severity": "Error"},
         ("2025-12-08T08:00:00.000000Z", "203.0.113.9", "/api/v1/users", "POST", None, "blocked")),
        # ModSecurity's JSON audit log.
        ({"transaction": {"client_ip": "192.0.2.44", "time_stamp": "Mon Dec  8 08:00:00 2025", "client_port": 51234,
                          "request": {"method": "GET", "uri": "/?id=1%20OR%201=1", "http_version": 1.1},
                          "response": {"http_code": 403}}},
         (None, "192.0.2.44", "/?id=1%20OR%201=1", "GET", None, None)),
        # Azure Front Door WAF (diagnostic log).
        ({"time": "2025-12-08T08:00:00.5Z", "category": "FrontDoorWebApplicationFirewallLog",
          "properties": {"clientIP": "198.51.100.99", "requestUri": "https://shop.example.com:443/login",
                         "ruleName": "Microsoft_DefaultRuleSet-2.1-SQLI-942100", "action": "Block",
                         "policy": "prodwaf", "host": "shop.example.com"}},
         ("2025-12-08T08:00:00.500000Z", "198.51.100.99", "https://shop.example.com:443/login", None, None, "Block")),
    ],
    ids=["aws-waf", "cloudflare", "f5-asm", "modsecurity", "azure-front-door"],
)
def test_common_waf_vendors_logs_are_read_by_the_default_paths(
        event: dict[str, object], expected: tuple[str | None, ...]) -> None:
    normalized = Normalizer().normalize(value(event))
    timestamp, source_ip, url, method, rule_id, action = expected
    assert normalized.timestamp == (timestamp or RECEIVED)
    assert normalized.timestamp_invalid is None
    assert (normalized.source_ip, normalized.url, normalized.method, normalized.rule_id, normalized.action) == (
        source_ip, url, method, rule_id, action)
