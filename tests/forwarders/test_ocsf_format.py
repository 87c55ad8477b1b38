"""The `ocsf` event format: every record it makes, ordinary or hostile, is validated against
the OCSF 1.7.0 schema (tests/forwarders/ocsf_schema.py, on pydantic-ocsf); and the format
through the file sink and the Splunk HEC sink (its stand-in)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from siemgate.config import NormalizeConfig
from siemgate.forwarders.formats.ocsf import OCSF_VERSION, OcsfSettings, ocsf_event
from siemgate.forwarders.normalize import NormalizedEvent, Normalizer
from siemgate.forwarders.sinks.file import FileSink, FileSinkSettings
from siemgate.forwarders.sinks.registry import build_settings
from siemgate.forwarders.sinks.splunk_hec import SplunkHecSink, SplunkHecSinkSettings
from siemgate.record import Kind, Severity, loads, make_record
from siemgate_standins.splunk_hec import HecToken, SplunkHecStandIn
from tests.forwarders.ocsf_schema import SCHEMA_VERSION, validate

pytestmark = pytest.mark.anyio

CLASSES = [OcsfSettings(), OcsfSettings(event_class="detection_finding", product_name="AppSec WAF",
                                        vendor_name="Acme")]

WAF = {
    "id": "evt-1", "timestamp": "2026-11-28T21:00:00.123Z", "source_ip": "203.0.113.9",
    "url": "https://shop.example:8443/login?user=a&q=1", "method": "post", "rule": "SQL injection",
    "rule_id": "942100", "action": "blocked", "asset": "shop-frontend", "message": "SQL injection blocked",
    "severity": "high", "mitre_technique": "T1190",
}


def normalized(event: object, *, severity: Severity = "high", kind: Kind = "event",
               received_at: str = "2026-11-28T21:00:01.000000Z", event_id: str = "r-1") -> NormalizedEvent:
    return Normalizer(NormalizeConfig()).normalize(make_record(
        prefix="p", event=event, kind=kind, integration="appsec-prod", severity=severity, event_id=event_id,
        received_at=received_at, batch="b", seq=1, peer="127.0.0.1").value)


def made(event: object, settings: OcsfSettings = CLASSES[0], **options: Any) -> dict[str, Any]:
    """The record, validated against the schema (each test's records pass through here)."""
    record = ocsf_event(normalized(event, **options), settings)
    validate(record)
    return record


def endpoints(record: dict[str, Any]) -> dict[str, Any]:
    """src_endpoint / dst_endpoint / http_request wherever the class keeps them."""
    if record["class_uid"] == 2004:
        return record["evidences"][0] if "evidences" in record else {}
    return {k: record[k] for k in ("src_endpoint", "dst_endpoint", "http_request") if k in record}


def test_a_blocked_waf_request_is_http_activity_with_the_security_control_profile() -> None:
    record = made(WAF)
    assert record["class_uid"] == 4002 and record["category_uid"] == 4
    assert record["activity_id"] == 6 and record["type_uid"] == 400206 and record["activity_name"] == "Post"
    assert record["time"] == 1795899600123
    assert (record["severity_id"], record["severity"]) == (4, "High")
    assert record["is_alert"] is True
    assert (record["disposition_id"], record["disposition"]) == (2, "Blocked")
    assert (record["action_id"], record["action"]) == (2, "Denied")
    assert (record["status_id"], record["status"]) == (2, "Failure")
    assert record["firewall_rule"] == {"name": "SQL injection", "uid": "942100"}
    assert record["attacks"] == [{"technique": {"uid": "T1190"}}]
    assert record["src_endpoint"] == {"ip": "203.0.113.9"}
    assert record["dst_endpoint"] == {"hostname": "shop-frontend"}
    assert record["http_request"] == {"http_method": "POST", "url": {
        "url_string": "https://shop.example:8443/login?user=a&q=1", "scheme": "https", "hostname": "shop.example",
        "port": 8443, "path": "/login", "query_string": "user=a&q=1"}}
    assert record["message"] == "SQL injection blocked"
    assert record["metadata"] == {
        "version": OCSF_VERSION, "uid": "r-1", "profiles": ["security_control"],
        "product": {"name": "appsec-prod"}, "log_provider": "siemgate", "log_name": "appsec-prod",
        "logged_time": 1795899601000}
    assert record["unmapped"] == WAF
    assert OCSF_VERSION == SCHEMA_VERSION


def test_detection_finding_on_request() -> None:
    record = made(WAF, CLASSES[1])
    assert (record["class_uid"], record["category_uid"], record["activity_id"], record["type_uid"]) == (
        2004, 2, 1, 200401)
    assert (record["status_id"], record["status"]) == (1, "New")
    assert record["metadata"]["product"] == {"name": "AppSec WAF", "vendor_name": "Acme"}
    info = record["finding_info"]
    assert info["uid"] == "r-1" and info["title"] == "SQL injection" and info["desc"] == "SQL injection blocked"
    assert info["analytic"] == {"type_id": 1, "type": "Rule", "name": "SQL injection", "uid": "942100"}
    assert info["attacks"] == record["attacks"] == [{"technique": {"uid": "T1190"}}]
    evidence = record["evidences"][0]
    assert evidence["src_endpoint"] == {"ip": "203.0.113.9"} and evidence["dst_endpoint"]["hostname"] == "shop-frontend"
    assert evidence["http_request"]["http_method"] == "POST"
    assert record["is_alert"] is True and record["disposition_id"] == 2
    assert record["unmapped"] == WAF


@pytest.mark.parametrize("settings", CLASSES, ids=["http_activity", "detection_finding"])
@pytest.mark.parametrize(("level_fields", "severity", "expected"), [
    ({"severity": "critical"}, "high", (5, "Critical")),
    ({"severity": "high"}, "high", (4, "High")),
    ({"severity": "medium"}, "medium", (3, "Medium")),
    ({"severity": "low"}, "low", (2, "Low")),
    ({}, "unknown", (0, "Unknown")),
    ({"severity": "bogus-level"}, "unknown", (0, "Unknown")),
])
def test_severity(settings: OcsfSettings, level_fields: dict[str, str], severity: Severity,
                  expected: tuple[int, str]) -> None:
    record = made({"action": "blocked", **level_fields}, settings, severity=severity)
    assert (record["severity_id"], record["severity"]) == expected


@pytest.mark.parametrize("settings", CLASSES, ids=["http_activity", "detection_finding"])
@pytest.mark.parametrize(("source_ip", "expected"), [
    ("203.0.113.9", "203.0.113.9"),
    ("2001:db8::1", "2001:db8::1"),
    ("2001:0db8:85a3:0000:0000:8a2e:0370:7334", "2001:0db8:85a3:0000:0000:8a2e:0370:7334"),
    ("fe80::1%eth0", "fe80::1"),  # the zone names no address outside its host
    ("::ffff:192.0.2.1", "::ffff:192.0.2.1"),
    ("2001:0db8:85a3:0000:0000:8a2e:0370:7334%a-very-long-zone", "2001:0db8:85a3:0000:0000:8a2e:0370:7334"),
    (" 203.0.113.9", "203.0.113.9"),
    ("not-an-ip", None), ("", None), ("999.1.1.1", None), ("203.0.113.9/24", None),
    (None, None),
])
def test_src_endpoint_ip_only_when_valid(settings: OcsfSettings, source_ip: str | None, expected: str | None) -> None:
    event = {"action": "blocked", "url": "https://a.example/"}
    if source_ip is not None:
        event["source_ip"] = source_ip
    found = endpoints(made(event, settings)).get("src_endpoint")
    assert found == ({"ip": expected} if expected else None)


@pytest.mark.parametrize("settings", CLASSES, ids=["http_activity", "detection_finding"])
@pytest.mark.parametrize(("url", "expected"), [
    ("/relative/path?x=1", {"path": "/relative/path", "query_string": "x=1"}),
    ("//host.example/p", {"hostname": "host.example", "path": "/p"}),
    ("not a url at all", {"path": "not a url at all"}),
    ("http://[::1", {}),  # unbalanced bracket: no part parses
    ("https://h.example:99999/x", {}),  # a port out of range: no part parses
    ("https://h.example:0/", {"scheme": "https", "hostname": "h.example", "port": 0, "path": "/"}),
    ("javascript:alert(1)", {"scheme": "javascript", "path": "alert(1)"}),
    ("https://[2001:db8::1]:8443/a", {"scheme": "https", "hostname": "2001:db8::1", "port": 8443, "path": "/a"}),
    ("https://例え.jp/パス?q=ü", {"scheme": "https", "hostname": "例え.jp", "path": "/パス", "query_string": "q=ü"}),
    ("https://user:pw@h.example/?", {"scheme": "https", "hostname": "h.example", "path": "/"}),
])
def test_odd_urls(settings: OcsfSettings, url: str, expected: dict[str, Any]) -> None:
    request = endpoints(made({"url": url, "method": "GET", "action": "allow"}, settings))["http_request"]
    assert request["url"] == {"url_string": url, **expected}


@pytest.mark.parametrize("settings", CLASSES, ids=["http_activity", "detection_finding"])
@pytest.mark.parametrize(("method", "activity_id", "http_method"), [
    ("get", 3, "GET"), ("PATCH", 9, "PATCH"), (" options ", 5, "OPTIONS"), ("PROPFIND", 99, None), (None, 0, None),
])
def test_methods(settings: OcsfSettings, method: str | None, activity_id: int, http_method: str | None) -> None:
    event: dict[str, Any] = {"url": "https://a.example/", "action": "blocked"}
    if method is not None:
        event["method"] = method
    record = made(event, settings)
    request = endpoints(record)["http_request"]
    assert request.get("http_method") == http_method
    if settings.event_class == "http_activity":
        assert record["activity_id"] == activity_id and record["type_uid"] == 400200 + activity_id


@pytest.mark.parametrize("settings", CLASSES, ids=["http_activity", "detection_finding"])
@pytest.mark.parametrize(("action", "disposition", "action_id"), [
    ("BLOCK", (2, "Blocked"), 2), ("deny", (2, "Blocked"), 2), ("dropped", (6, "Dropped"), 2),
    ("reject", (25, "Rejected"), 2), ("quarantined", (3, "Quarantined"), 2), ("allow", (1, "Allowed"), 1),
    ("pass", (1, "Allowed"), 1), ("log", (17, "Logged"), 99), ("detected", (15, "Detected"), 99),
    ("alert", (19, "Alert"), 99), ("challenge", (23, "Challenge"), 99), ("captcha", (22, "Captcha"), 99),
    ("rate-limited", (99, "rate-limited"), 99), (None, (0, "Unknown"), 0), ("  ", (0, "Unknown"), 0),
])
def test_disposition_from_the_action(settings: OcsfSettings, action: str | None, disposition: tuple[int, str],
                                     action_id: int) -> None:
    event: dict[str, Any] = {"message": "m"}
    if action is not None:
        event["action"] = action
    record = made(event, settings)
    assert (record["disposition_id"], record["disposition"]) == disposition
    assert record["action_id"] == action_id
    if settings.event_class == "http_activity":
        assert record["status_id"] == {2: 2, 1: 1}.get(action_id, 0)


@pytest.mark.parametrize("settings", CLASSES, ids=["http_activity", "detection_finding"])
@pytest.mark.parametrize("kind", ["test", "confirmation"])
def test_test_and_confirmation_messages_are_no_alerts(settings: OcsfSettings, kind: Kind) -> None:
    record = made({"message": "webhook test"}, settings, kind=kind, severity="unknown")
    assert record["is_alert"] is False
    assert record["metadata"]["labels"] == [f"siemgate_kind:{kind}"]
    assert record["severity_id"] == 0


@pytest.mark.parametrize("settings", CLASSES, ids=["http_activity", "detection_finding"])
def test_an_event_time_that_is_no_instant_falls_back_to_the_receive_time(settings: OcsfSettings) -> None:
    record = made({"timestamp": "2025-02-30T10:00:00Z", "action": "blocked"}, settings)
    assert record["time"] == 1795899601000
    assert record["metadata"]["original_time"] == "2025-02-30T10:00:00Z"
    epoch = made({"timestamp": 1795899598123, "action": "blocked"}, settings)
    assert epoch["time"] == 1795899598123 and "original_time" not in epoch["metadata"]


@pytest.mark.parametrize("settings", CLASSES, ids=["http_activity", "detection_finding"])
def test_hostile_values(settings: OcsfSettings) -> None:
    huge = "A" * 200_000
    event = {
        "source_ip": huge, "url": "https://h.example/" + huge + "?" + huge, "method": huge,
        "rule": "ルール\u202e" + huge,
        "rule_id": 10**30, "action": huge, "asset": "資産\x00\u2028" + huge, "message": "攻撃 🚨 \ud7ff" + huge,
        "nested": {"deep": [[[[{"x": 2**70}]]]]}, "mitre_technique": ["t1059.007", "T1190", "TX99", 5],
        "mitre_tactic": "TA0001",
    }
    record = made(event, settings)
    assert "src_endpoint" not in endpoints(record)
    assert endpoints(record)["dst_endpoint"]["hostname"].startswith("資産")
    assert record["disposition_id"] == 99 and record["disposition"] == huge
    assert record["attacks"] == [
        {"technique": {"uid": "T1059"}, "sub_technique": {"uid": "T1059.007"}, "tactic": {"uid": "TA0001"}},
        {"technique": {"uid": "T1190"}, "tactic": {"uid": "TA0001"}}]
    assert record["unmapped"]["nested"] == {"deep": [[[[{"x": 2**70}]]]]}


@pytest.mark.parametrize("settings", CLASSES, ids=["http_activity", "detection_finding"])
@pytest.mark.parametrize("vendor", [[1, "two", {"three": 3}], "a bare string", 42, None, {}])
def test_a_vendor_event_that_is_no_object_is_kept_under_unmapped(settings: OcsfSettings, vendor: object) -> None:
    record = made(vendor, settings, severity="unknown")
    assert record["unmapped"] == (vendor if isinstance(vendor, dict) else {"value": vendor})
    assert record["disposition_id"] == 0 and "attacks" not in record


def test_attacks_only_from_explicit_ids() -> None:
    assert "attacks" not in made({"rule": "SQL injection T1190 attempt", "action": "blocked"})
    assert made({"MITRE-Tactic": ["ta0043", "TA0001"]})["attacks"] == [
        {"tactic": {"uid": "TA0043"}}, {"tactic": {"uid": "TA0001"}}]


@pytest.mark.parametrize("broken", [
    {"bogus_attribute": 1},
    {"src_endpoint": {"ip": "not-an-ip"}},
    {"disposition_id": 777},
    {"disposition": "Allowed"},  # does not match disposition_id 2
    {"type_uid": 400299},
    {"severity_id": 9},
    {"http_request": {"http_method": "FETCH"}},
    {"firewall_rule": {"name": "r", "colour": "red"}},
    {"http_request": {"url": {"url_string": "https://a/", "port": 70000}}},
    {"metadata": {"version": OCSF_VERSION}},  # no product
])
def test_the_validator_refuses_records_that_break_the_schema(broken: dict[str, Any]) -> None:
    """The validation above is not vacuous."""
    record = made(WAF)
    record.update(broken)
    with pytest.raises((AssertionError, ValidationError)):
        validate(record)


# -- through the sinks -------------------------------------------------------------------------


async def test_the_file_sink_writes_ocsf_records(tmp_path: Path) -> None:
    path = tmp_path / "ocsf.ndjson"
    settings = build_settings("file", {"name": "lake", "path": str(path), "event_format": "ocsf",
                                       "ocsf": {"event_class": "http_activity", "product_name": "AppSec WAF",
                                                "vendor_name": "Acme"}}, {}, "sinks[0]")
    assert isinstance(settings, FileSinkSettings)
    sink = FileSink(settings)
    big = 123456789012345678901234567890
    batch = [normalized({**WAF, "n": big}, event_id="r-1"),
             normalized({"source_ip": "2001:db8::7", "action": "log", "message": "ü"}, event_id="r-2",
                        severity="unknown"),
             normalized({"message": "test"}, kind="test", event_id="r-3", severity="unknown")]
    result = await sink.send(batch)
    await sink.close()
    assert not result.retry and not result.rejected
    raw_lines = path.read_bytes().splitlines()
    lines: list[Any] = [loads(line) for line in raw_lines]
    for line in lines:
        validate(line)
    assert [line["metadata"]["uid"] for line in lines] == ["r-1", "r-2", "r-3"]
    assert lines[0]["metadata"]["product"] == {"name": "AppSec WAF", "vendor_name": "Acme"}
    assert lines[1]["src_endpoint"] == {"ip": "2001:db8::7"} and lines[1]["disposition_id"] == 17
    assert lines[2]["is_alert"] is False
    # The vendor's event as received: its exact number (beyond 64 bits) is kept in the text.
    assert str(big).encode() in raw_lines[0]


@pytest.fixture
async def hec() -> AsyncIterator[SplunkHecStandIn]:
    async with SplunkHecStandIn(tokens=[HecToken("11111111-2222-3333-4444-555555555555")]) as server:
        yield server


async def test_the_hec_sink_sends_ocsf_records(hec: SplunkHecStandIn) -> None:
    settings = build_settings("splunk_hec", {
        "name": "splunk", "url": hec.url, "token": "11111111-2222-3333-4444-555555555555",
        "event_format": "ocsf", "ocsf": {"event_class": "detection_finding"}}, {}, "sinks[0]")
    assert isinstance(settings, SplunkHecSinkSettings)
    sink = SplunkHecSink(settings)
    result = await sink.send([normalized(WAF, event_id="r-1"), normalized({"message": "x"}, event_id="r-2",
                                                                            severity="unknown")])
    await sink.close()
    assert not result.retry and not result.rejected
    received = [e["event"] for e in hec.events()]
    assert [e["metadata"]["uid"] for e in received] == ["r-1", "r-2"]
    for record in received:
        validate(record)
    assert received[0]["class_uid"] == 2004 and received[0]["unmapped"] == WAF
    # the mapping view (`envelope`) and the bytes (`encode`) agree
    assert sink.envelope(normalized(WAF, event_id="r-1"))["event"] == received[0]


def test_epoch_ms_is_exact_for_every_instant() -> None:
    """Milliseconds by integer arithmetic (floor), the normalized form and any other RFC 3339 text
    alike: no float rounding into the next millisecond (or year 10000), pre-1970 instants floored."""
    from datetime import UTC, datetime, timedelta

    from siemgate.forwarders.formats.ocsf import epoch_ms

    def exact(text: str) -> int:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)

    for text in ("9999-12-31T23:59:59.999999Z", "2290-06-29T03:48:30.941999Z", "1957-04-27T02:45:00.904627Z",
                 "1970-01-01T00:00:00.000000Z", "2026-12-07T13:58:21.417123Z", "0001-01-01T00:00:00.000000Z"):
        assert epoch_ms(text) == exact(text), text
    assert epoch_ms("2026-12-07T14:58:21.417+01:00") == exact("2026-12-07T13:58:21.417Z")
    assert epoch_ms("2026-12-07T13:58:21Z") == exact("2026-12-07T13:58:21Z")
    assert epoch_ms("2025-02-30T10:00:00.000000Z") is None and epoch_ms("yesterday") is None
    # digits of other scripts are no RFC 3339 (as fromisoformat reads it), in the fraction too
    assert epoch_ms("2026-12-07T13:58:21.\u0664\u0661\u0667123Z") is None
    assert epoch_ms("\u0662026-12-07T13:58:21.417123Z") is None
