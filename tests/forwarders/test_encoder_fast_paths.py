"""The sinks' encoders' fast paths and memos give exactly what their plain forms give.

`SplunkHecSink.encode` builds its envelope in one go, with `epoch_seconds` reading a
normalized timestamp by a lookup of its seconds and `_ip` / `cim_action` remembered: for any
event (hostile values: control characters, lone surrogates, huge numbers, non-string fields,
odd timestamps, IPv6 and mapped addresses, missing fields) the bytes are those of the
envelope's plain parts (`_head`, `cim_event`, `_fields`) serialized whole, and each memo
agrees with what it remembers, within its bound. Likewise OCSF's lookups (`epoch_ms`, the
outcome of an action word, the activity of a method).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from siemgate.forwarders.formats import ocsf
from siemgate.forwarders.formats.addresses import ip_text
from siemgate.forwarders.formats.ocsf import ocsf_event
from siemgate.forwarders.normalize import NormalizedEvent, Normalizer
from siemgate.forwarders.sinks import sentinel, splunk_hec
from siemgate.forwarders.sinks.registry import build_settings, create_sink
from siemgate.forwarders.sinks.splunk_hec import SplunkHecSink, cim_action, cim_event, epoch_seconds
from siemgate.memo import MEMO_LIMIT
from siemgate.record import BatchEncoder

EXAMPLES = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Timestamps: the normalizer's form, and that form bent one character at a time.
_INSTANTS = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59))
_ODD_CHARS = st.sampled_from(list("0123456789xTZz.:+- _") + ["\u0661", "\uff12", "\u00b2", "\ud800", "\x00", "\u2028"])


@st.composite
def timestamps(draw: st.DrawFn) -> str:
    moment = draw(_INSTANTS)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{moment.microsecond:06d}Z"
    if moment.year < 1000:
        text = text.zfill(27)
    for _ in range(draw(st.integers(0, 2))):
        at = draw(st.integers(0, len(text) - 1))
        text = text[:at] + draw(_ODD_CHARS) + text[at + 1:]
    return text


_TEXT = st.one_of(st.text(max_size=40), st.sampled_from([
    "", " ", "block", " Deny ", "ALLOWED", "detected\n", "x\x00y", "\x7f\u0085\u2028", "\ud800", "é" * 300, "h" * 1500,
    "192.0.2.1", " 192.0.2.1 ", "2001:db8::1", "fe80::1%eth0", "fe80::1%", "192.0.2.1%eth0", "::ffff:192.0.2.1",
    "198.51.100.7:443", "host.example", "1" * 99, "1" * 101, "\u0661.2.3.4", "GET", "post", "BREW",
    "https://a.example:8443/p?q=1#f", "/rel?x", "http://[::1]:80/", "2026-12-07T21:44:60.000000Z",
    "2026-12-07T21:44:44Z", "2026-02-30T10:00:00Z", "yesterday", "2026-12-07T21:44:44.123456+02:00",
]))
_VALUE = st.one_of(_TEXT, timestamps(), st.none(), st.booleans(), st.integers(min_value=-(10**30), max_value=10**30),
                   st.floats(allow_nan=False, allow_infinity=False), st.lists(st.integers(), max_size=3),
                   st.dictionaries(st.text(max_size=5), st.integers(), max_size=2))
_FIELDS = ("timestamp", "severity", "source_ip", "url", "method", "rule", "rule_id", "action", "asset", "type",
           "message", "mitre_technique", "id")


@st.composite
def events(draw: st.DrawFn) -> NormalizedEvent:
    vendor: Any = {name: draw(timestamps() if name == "timestamp" and draw(st.booleans()) else _VALUE)
                   for name in _FIELDS if draw(st.booleans())}
    if draw(st.integers(0, 9)) == 0:
        vendor = draw(st.one_of(st.none(), st.integers(), st.text(max_size=5), st.lists(st.integers(), max_size=2)))
    ascii_only = draw(st.booleans())
    try:
        data = json.dumps(vendor, ensure_ascii=ascii_only).encode()
    except UnicodeEncodeError:  # a lone surrogate: escaped, as a sender writes it
        data = json.dumps(vendor).encode()
    encoder = BatchEncoder(prefix="p", integration=draw(st.sampled_from(["appsec", "x\u2028y", "i" * 300])),
                           received_at=draw(st.sampled_from(["2026-12-07T15:00:00.000000Z",
                                                             "2026-12-07T15:00:01.123456Z"])),
                           batch="b", peer="198.18.0.1")
    record = encoder.encode(event_id=draw(st.sampled_from(["evt-1", "id\n\x00", "é" * 40])),
                            kind=draw(st.sampled_from(["event", "test", "confirmation"])),
                            severity=draw(st.sampled_from(["high", "medium", "low", "unknown"])), seq=0,
                            event_bytes=data)
    return Normalizer().normalize(record.value)


_SINKS = {
    "cim": {},
    "cim with settings": {"host": "fixed.example", "index": "main", "source": "src", "sourcetype": "st",
                          "vendor_product": "VP", "ids_type": "network"},
    "ocsf": {"event_format": "ocsf"},
    "ocsf finding": {"event_format": "ocsf", "index": "i",
                     "ocsf": {"event_class": "detection_finding", "product_name": "P", "vendor_name": "V"}},
    "original": {"event_format": "original", "source": ""},
}


def hec(options: dict[str, Any]) -> SplunkHecSink:
    sink = create_sink(build_settings("splunk_hec", {"name": "h", "url": "http://127.0.0.1:8088", "token": "t",
                                                     **options}, {}, "sinks[0]"))
    assert isinstance(sink, SplunkHecSink)
    return sink


def plain_envelope(sink: SplunkHecSink, event: NormalizedEvent) -> bytes:
    """The envelope of its plain parts, serialized whole (what `encode` was before its fast path)."""
    raw = orjson.Fragment(event.event_bytes())
    host = sink.settings.host or splunk_hec.splunk_host(event.asset)
    envelope = sink._head(event, host)
    event_format = sink.settings.event_format
    envelope["event"] = (
        cim_event(event, vendor_event=raw, dvc=host, vendor_product=sink.settings.vendor_product,
                  ids_type=sink.settings.ids_type) if event_format == "cim"
        else ocsf_event(event, sink.settings.ocsf, vendor_event=raw) if event_format == "ocsf" else raw)
    envelope["fields"] = sink._fields(event)
    return orjson.dumps(envelope, option=orjson.OPT_APPEND_NEWLINE)


@pytest.mark.parametrize("name", list(_SINKS))
@EXAMPLES
@given(event=events())
def test_hec_encode_is_its_envelope_serialized_whole(name: str, event: NormalizedEvent) -> None:
    sink = hec(_SINKS[name])
    encoded = sink.encode(event)
    assert encoded == plain_envelope(sink, event)
    assert encoded == sink.encode(event)  # remembered the second time: the same


@EXAMPLES
@given(timestamp=st.one_of(timestamps(), st.text(max_size=30)))
def test_epoch_seconds_by_its_lookup_is_the_parsed_value(timestamp: str) -> None:
    expected = splunk_hec._parsed_epoch_seconds(timestamp)
    assert epoch_seconds(timestamp) == expected
    assert epoch_seconds(timestamp) == expected  # the second time from the lookup


@EXAMPLES
@given(value=st.one_of(_TEXT, timestamps()))
def test_remembered_addresses_and_actions_are_what_they_remember(value: str) -> None:
    for _ in range(2):
        assert splunk_hec._remembered_ip(value) == splunk_hec._ip(value)
        assert splunk_hec._remembered_action(value) == cim_action(value)


def test_the_memos_are_bounded() -> None:
    base = datetime(2026, 12, 7, tzinfo=UTC)
    for i in range(MEMO_LIMIT + 10):
        text = (base + timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%S") + ".000001Z"
        assert epoch_seconds(text) == splunk_hec._parsed_epoch_seconds(text)
        splunk_hec._remembered_ip(f"192.0.{i // 256 % 256}.{i % 256}")
        splunk_hec._remembered_action(f"word{i}")
    assert len(splunk_hec._SECOND_MICROS) <= MEMO_LIMIT
    assert len(splunk_hec._SRC_IPS) <= MEMO_LIMIT
    assert len(splunk_hec._ACTIONS) <= MEMO_LIMIT
    long = "1" * (splunk_hec._LONGEST_REMEMBERED + 1)
    assert splunk_hec._remembered_ip(long) is None and long not in splunk_hec._SRC_IPS
    assert splunk_hec._remembered_action(" block" * 30) is None and " block" * 30 not in splunk_hec._ACTIONS


def _plain_epoch_ms(timestamp: str) -> int | None:
    """`ocsf.epoch_ms` as it read a timestamp before its lookups."""
    if (len(timestamp) == 27 and timestamp[26] == "Z" and timestamp[19] == "." and timestamp.isascii()
            and timestamp[20:26].isdigit()):
        seconds = ocsf._epoch_seconds(timestamp[:19])
        if seconds is not None:
            return seconds * 1000 + int(timestamp[20:23])
    return ocsf._epoch_ms(timestamp)


@EXAMPLES
@given(timestamp=st.one_of(timestamps(), st.text(max_size=30)))
def test_ocsf_epoch_ms_by_its_lookups_is_the_parsed_value(timestamp: str) -> None:
    expected = _plain_epoch_ms(timestamp)
    assert ocsf.epoch_ms(timestamp) == expected
    assert ocsf.epoch_ms(timestamp) == expected


@EXAMPLES
@given(word=st.one_of(st.none(), _TEXT))
def test_ocsf_outcome_and_activity_remembered_are_what_they_compute(word: str | None) -> None:
    disposition_id, disposition = ocsf._disposition(word)
    action_id = (2 if disposition_id in ocsf._DENYING else 1 if disposition_id in ocsf._ALLOWING
                 else 0 if disposition_id == 0 else 99)
    status_id = 2 if action_id == 2 else 1 if action_id == 1 else 0
    method = word.strip().upper() if word else ""
    activity_id = ocsf._HTTP_ACTIVITY.get(method, 99) if method else 0
    for _ in range(2):
        assert ocsf._outcome(word) == (
            disposition_id, disposition, action_id,
            ocsf._ACTION_CAPTION[action_id] if action_id != 99 else disposition, status_id,
            ocsf._STATUS_CAPTION[status_id])
        named, head = ocsf._activity(word)
        assert named == (method if method in ocsf._HTTP_ACTIVITY else None)
        assert list(head.items()) == [
            ("class_uid", 4002), ("class_name", "HTTP Activity"), ("category_uid", 4),
            ("category_name", "Network Activity"), ("activity_id", activity_id),
            ("activity_name", ocsf._HTTP_ACTIVITY_CAPTION[activity_id]), ("type_uid", 400200 + activity_id),
            ("type_name", ocsf._HTTP_ACTIVITY_TYPE_NAME[activity_id])]


def test_the_ocsf_memos_are_bounded() -> None:
    for i in range(MEMO_LIMIT + 10):
        ocsf._outcome(f"word{i}")
        ocsf._activity(f"M{i}")
        assert ocsf.epoch_ms(f"2026-12-07T21:44:44.{i:06d}Z") == _plain_epoch_ms(f"2026-12-07T21:44:44.{i:06d}Z")
    assert len(ocsf._OUTCOMES) <= MEMO_LIMIT and len(ocsf._ACTIVITIES) <= MEMO_LIMIT
    assert len(ocsf._FRACTION_MS) <= MEMO_LIMIT and len(ocsf._SECONDS) <= MEMO_LIMIT
    long = "block" * 30
    assert ocsf._outcome(long)[0] == 99 and long not in ocsf._OUTCOMES


def _address(source_ip: str | None) -> str | None:
    ip = ip_text(source_ip)
    return None if ip is None else ip.address


def _plain_row(event: NormalizedEvent, vendor: str, product: str | None, additional: object) -> dict[str, Any]:
    """The ASIM row as `COLUMNS` reads: each column's value, left out when None."""
    columns = {
        "TimeGenerated": event.timestamp, "EventId": event.id, "EventSeverity": sentinel.SEVERITY[event.level],
        "EventType": event.event_type, "EventMessage": event.message, "SrcIpAddr": _address(event.source_ip),
        "Url": event.url, "HttpRequestMethod": event.method, "RuleName": event.rule, "RuleId": event.rule_id,
        "DvcAction": event.action, "DstHostname": event.asset, "EventVendor": vendor,
        "EventProduct": product or event.integration, "AdditionalFields": additional,
        "SiemgateIntegration": event.integration, "SiemgateKind": event.kind,
        "SiemgateReceivedTime": event.received_at or None,
    }
    assert list(columns) == list(sentinel.COLUMNS)
    return {name: value for name, value in columns.items() if value is not None}


_SENTINEL = {"name": "s", "endpoint": "https://dce.example", "dcr_immutable_id": "dcr-0123456789abcdef",
             "tenant_id": "t", "client_id": "c", "client_secret": "s"}


@pytest.mark.parametrize("options", [{}, {"event_vendor": "V", "event_product": "P"}, {"event_format": "ocsf"},
                                     {"event_format": "ocsf", "ocsf": {"event_class": "detection_finding"}}])
@EXAMPLES
@given(event=events())
def test_sentinel_encode_is_its_row_serialized(options: dict[str, Any], event: NormalizedEvent) -> None:
    sink = create_sink(build_settings("sentinel", {**_SENTINEL, **options}, {}, "sinks[0]"))
    assert isinstance(sink, sentinel.SentinelSink)
    raw = orjson.Fragment(event.event_bytes())
    if sink.settings.event_format == "ocsf":
        record = ocsf_event(event, sink.settings.ocsf, vendor_event=raw)
        expected = orjson.dumps(sentinel.ocsf_row(record))
        if len(expected) > sentinel.FIELD_MAX_BYTES:
            expected = orjson.dumps(sentinel.ocsf_row(record, unmapped_apart=True))
    else:
        expected = orjson.dumps(_plain_row(event, sink.settings.event_vendor, sink.settings.event_product, raw))
        assert sink.row(event) == _plain_row(event, sink.settings.event_vendor, sink.settings.event_product,
                                             event.event)
    assert sink.encode(event) == expected
