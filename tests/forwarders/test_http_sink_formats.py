"""What the HTTP sinks put on the wire: ECS documents, HEC envelopes, their settings."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest

from siemgate.config import parse_config
from siemgate.errors import ConfigError
from siemgate.forwarders.formats.ecs import ecs_document, event_type, mappings, url_fields
from siemgate.forwarders.normalize import NormalizedEvent, Normalizer
from siemgate.forwarders.sinks.elasticsearch import (
    ElasticsearchSink,
    ElasticsearchSinkSettings,
    authorization,
)
from siemgate.forwarders.sinks.http import chunks_by_size
from siemgate.forwarders.sinks.splunk_hec import SplunkHecSink, SplunkHecSinkSettings, cim_action, epoch_seconds
from siemgate.record import Severity, make_record
from siemgate.secrets import Secret

INGESTED = "2026-11-29T10:00:00.000Z"


def normalized(severity: Severity = "high", kind: str = "event", **fields: Any) -> NormalizedEvent:
    event = {"id": "evt-1", "timestamp": "2026-11-28T21:00:00.123Z", "severity": severity,
             "source_ip": "203.0.113.9", "url": "https://shop.example:8443/login?q=1", "method": "post",
             "rule_name": "SQL injection", "rule_id": "942100", "action": "blocked", "asset": "shop-frontend",
             "type": "sqli", "message": "SQL injection blocked", **fields}
    record = make_record(prefix="p", event=event, kind=kind, integration="appsec-prod",  # type: ignore[arg-type]
                         severity=severity, event_id="evt-1", received_at="2026-11-28T21:00:01.000000Z",
                         batch="b", seq=0, peer="127.0.0.1")
    return Normalizer().normalize(record.value)


def as_json(value: object) -> Any:
    """What Elasticsearch receives (tuples become arrays)."""
    return orjson.loads(orjson.dumps(value))


def test_ecs_alert_document() -> None:
    doc = as_json(ecs_document(normalized(), ingested=INGESTED, observer={"vendor": "Acme", "product": "AppSec"}))
    assert doc["@timestamp"] == "2026-11-28T21:00:00.123000Z"
    assert doc["event"] == {
        "kind": "alert", "category": ["intrusion_detection"], "type": ["denied"], "id": "evt-1",
        "created": "2026-11-28T21:00:01.000000Z", "ingested": INGESTED, "module": "siemgate",
        "severity": 73, "risk_score": 73.0, "action": "blocked", "dataset": "siemgate.alerts",
        "original": orjson.dumps(normalized().event).decode(),
    }
    assert "data_stream" not in doc  # not given the target's: the sink passes it (test_ecs_documents)
    assert doc["source"] == {"address": "203.0.113.9", "ip": "203.0.113.9"}
    assert doc["destination"] == {"address": "shop-frontend"}
    assert doc["url"] == {"original": "https://shop.example:8443/login?q=1", "full": "https://shop.example:8443/login?q=1",
                          "scheme": "https", "domain": "shop.example", "port": 8443, "path": "/login", "query": "q=1"}
    assert doc["http"] == {"request": {"method": "post"}}  # the vendor's case (ECS)
    assert doc["rule"] == {"name": "SQL injection", "id": "942100"}
    assert doc["observer"] == {"vendor": "Acme", "product": "AppSec"}
    assert doc["labels"] == {"integration": "appsec-prod", "severity": "high"}
    assert doc["message"] == "SQL injection blocked"
    assert doc["siemgate"]["event"]["rule_name"] == "SQL injection"
    assert doc["ecs"] == {"version": "8.11.0"}


@pytest.mark.parametrize(("severity", "risk"), [("high", 73), ("medium", 47), ("low", 21), ("unknown", None)])
def test_ecs_severity_and_risk_score_per_design(severity: Severity, risk: int | None) -> None:
    doc = ecs_document(normalized(severity), ingested=INGESTED)
    assert doc["event"].get("severity") == risk
    assert doc["event"].get("risk_score") == (float(risk) if risk is not None else None)
    assert doc["labels"]["severity"] == severity


def test_ecs_source_that_is_not_an_ip_goes_to_address_and_test_messages_are_not_alerts() -> None:
    doc = ecs_document(normalized(source_ip="not-an-ip", kind="test"), ingested=INGESTED, original_field=None,
                       event_original=False)
    assert doc["source"] == {"address": "not-an-ip"}
    assert doc["event"]["kind"] == "event" and doc["labels"]["kind"] == "test"
    assert "siemgate" not in doc and "original" not in doc["event"]


def test_ecs_event_type_and_relative_urls() -> None:
    assert event_type("Blocked") == ("denied",)
    assert event_type("logged") == ("allowed",)
    assert event_type(None) == ("info",) == event_type("whatever")
    assert url_fields("/login?x=1") == {"original": "/login?x=1", "path": "/login", "query": "x=1"}
    assert url_fields("http://[::1:bad") == {"original": "http://[::1:bad"}


def test_template_mappings_type_the_fields_and_flatten_the_vendor_event() -> None:
    mapped = mappings(("vendor", "raw"))
    assert mapped["dynamic"] is False
    assert mapped["properties"]["source"]["properties"]["ip"] == {"type": "ip"}
    assert mapped["properties"]["vendor"]["properties"]["raw"]["type"] == "flattened"
    assert mapped["properties"]["event"]["properties"]["severity"] == {"type": "long"}


def hec(**options: Any) -> SplunkHecSink:
    return SplunkHecSink(SplunkHecSinkSettings(name="splunk", url="http://127.0.0.1:8088", token=Secret("t"),
                                               **options))


def test_hec_envelope_cim() -> None:
    envelope = hec(index="appsec", sourcetype="appsec:event").envelope(normalized())
    assert envelope["time"] == pytest.approx(1795899600.123)
    assert envelope["host"] == "shop-frontend"
    assert envelope["source"] == "appsec-prod"
    assert envelope["sourcetype"] == "appsec:event"
    assert envelope["index"] == "appsec"
    assert envelope["fields"] == {"integration": "appsec-prod", "severity": "high"}
    body = envelope["event"]
    assert body["severity"] == "high" and body["severity_id"] == 4
    assert body["signature"] == "SQL injection" and body["signature_id"] == "942100"
    assert body["src"] == "203.0.113.9" and body["dest"] == "shop-frontend" and body["action"] == "blocked"
    assert body["http_method"] == "post" and body["url"] == "https://shop.example:8443/login?q=1"
    assert body["id"] == "evt-1" and body["integration"] == "appsec-prod" and body["kind"] == "event"
    assert body["vendor_event"]["rule_id"] == "942100"


def test_hec_envelope_original_and_defaults() -> None:
    sink = hec(event_format="original", host="waf-01", source="appsec")
    envelope = sink.envelope(normalized("unknown", kind="test"))
    assert envelope["event"] == normalized("unknown", kind="test").event
    assert envelope["host"] == "waf-01" and envelope["source"] == "appsec" and "index" not in envelope
    assert envelope["fields"] == {"integration": "appsec-prod", "severity": "unknown", "kind": "test"}
    line = hec().encode(normalized())
    assert line.endswith(b"\n") and orjson.loads(line)["event"]["severity_id"] == 4


def test_hec_cim_intrusion_detection_and_alerts_fields() -> None:
    body = hec().envelope(normalized())["event"]
    assert next(iter(body)) == "timestamp" and body["timestamp"] == "2026-11-28T21:00:00.123000Z"
    assert body["vendor_product"] == "appsec-prod" and body["ids_type"] == "application"
    assert body["dvc"] == "shop-frontend" and body["dest"] == "shop-frontend"
    assert body["src"] == body["src_ip"] == "203.0.113.9"
    assert body["signature"] == "SQL injection" and body["category"] == "sqli"
    assert body["action"] == "blocked" and body["vendor_action"] == "blocked"
    assert body["type"] == "alert"
    configured = hec(host="waf-01", vendor_product="Acme WAF", ids_type="network").envelope(normalized())["event"]
    assert configured["dvc"] == "waf-01" and configured["dest"] == "shop-frontend"
    assert configured["vendor_product"] == "Acme WAF" and configured["ids_type"] == "network"
    assert hec().envelope(normalized(kind="test"))["event"]["type"] == "event"
    unnamed = hec().envelope(normalized(rule_name=None))["event"]
    assert unnamed["signature"] == "sqli", "without a rule name the category names the attack"


@pytest.mark.parametrize(("action", "cim", "vendor"), [
    ("blocked", "blocked", "blocked"), (" DENY ", "blocked", " DENY "), ("Dropped", "blocked", "Dropped"),
    ("challenge", "blocked", "challenge"), ("detected", "allowed", "detected"), ("LOG", "allowed", "LOG"),
    ("alert", "allowed", "alert"), ("allow", "allowed", "allow"),
    # a boolean from the vendor, or a word that says neither: no CIM action, the word kept
    (True, None, "true"), (False, None, "false"), ("whatever", None, "whatever"), (1, None, "1"),
    (None, None, None),
])
def test_hec_action_is_a_cim_value_and_the_vendor_word_is_kept(action: object, cim: str | None,
                                                                vendor: str | None) -> None:
    body = hec().envelope(normalized(action=action))["event"]
    assert body.get("action") == cim
    assert body.get("vendor_action") == vendor
    assert cim_action("true") is None and cim_action("Blocked") == "blocked"


@pytest.mark.parametrize(("asset", "host"), [
    ("shop\nfrontend", "shopfrontend"),
    ("shop-frontend\r\nX-Injected: 1", "shop-frontendX-Injected: 1"),
    ("a\x00b", "ab"), ("\x1b[31mred\x1b[0m", "[31mred[0m"), ("\u202eevil\u200b.example", "evil.example"),
    ("line\u2028sep\u2029para\x85nel\x7f", "lineseppara" + "nel"),
    ("  padded\t ", "padded"), ("x" * 1000, "x" * 255), ("h\u00e9te-\u6771\u4eac", "h\u00e9te-\u6771\u4eac"),
])
def test_hec_host_is_sanitized(asset: str, host: str) -> None:
    envelope = hec().envelope(normalized(asset=asset))
    assert envelope["host"] == host == envelope["event"]["dvc"]
    assert envelope["event"]["dest"] == asset, "dest keeps the vendor's value (JSON-escaped on the wire)"
    line = hec().encode(normalized(asset=asset))
    assert line.count(b"\n") == 1 and line.endswith(b"\n") and b"\x00" not in line
    assert orjson.loads(line)["host"] == host


@pytest.mark.parametrize("asset", ["\n", "\x00\x01\x02", "   ", "\u200b\u2028", ""])
def test_hec_host_with_nothing_left_falls_back_to_the_tokens_default(asset: str) -> None:
    envelope = hec().envelope(normalized(asset=asset))
    assert "host" not in envelope and "dvc" not in envelope["event"]
    assert hec(host="waf-01").envelope(normalized(asset=asset))["host"] == "waf-01"


@pytest.mark.parametrize("host", ["waf\n01", "waf-01\x00", " waf-01", "w" * 256])
def test_hec_configured_host_must_be_clean(host: str) -> None:
    with pytest.raises(ConfigError, match="host"):
        hec(host=host)


@pytest.mark.parametrize(("source_ip", "src_ip"), [
    ("203.0.113.9", "203.0.113.9"), ("2001:DB8::1", "2001:DB8::1"), ("fe80::1%eth0", "fe80::1"),
    ("not-an-ip", None), ("203.0.113.9:443", None), ("999.1.1.1", None),
])
def test_hec_src_ip_only_for_an_ip_address(source_ip: str, src_ip: str | None) -> None:
    body = hec().envelope(normalized(source_ip=source_ip))["event"]
    assert body["src"] == source_ip
    assert body.get("src_ip") == src_ip


def test_epoch_seconds() -> None:
    assert epoch_seconds("1970-01-01T00:00:01.5Z") == 1.5
    assert epoch_seconds("2026-11-28T21:00:00+01:00") == 1795896000.0
    assert epoch_seconds("yesterday") is None


def test_es_action_line_and_auth_header() -> None:
    sink = ElasticsearchSink(ElasticsearchSinkSettings(name="es", url="http://127.0.0.1:9200",
                                                       api_key=Secret("id1:key1")))
    action, doc, rest = sink.encode(normalized(), INGESTED).split(b"\n")
    assert orjson.loads(action) == {"create": {"_id": "evt-1"}}
    assert orjson.loads(doc)["event"]["id"] == "evt-1" and rest == b""
    assert authorization(sink.settings) == "ApiKey " + base64.b64encode(b"id1:key1").decode()
    encoded = ElasticsearchSinkSettings(name="es", url="http://h:9200", api_key=Secret("aWQxOmtleTE="))
    assert authorization(encoded) == "ApiKey aWQxOmtleTE="
    basic = ElasticsearchSinkSettings(name="es", url="http://h:9200", username="u", password=Secret("p"))
    assert authorization(basic) == "Basic " + base64.b64encode(b"u:p").decode()
    assert sink.settings.target == "logs-siemgate.alerts-default"


@pytest.mark.parametrize(("entry", "message"), [
    ("{name: e, type: elasticsearch, url: 'ftp://x'}", "sinks[0].url: must be http(s)://host[:port]"),
    ("{name: e, type: elasticsearch, url: 'http://x', index: a, data_stream: b}", "sinks[0].index: set either"),
    ("{name: e, type: elasticsearch, url: 'http://x', index: Alerts}", "is not a valid Elasticsearch name"),
    ("{name: e, type: elasticsearch, url: 'http://x', original_field: event.vendor}",
     "sinks[0].original_field: 'event.vendor' is under ECS's 'event'"),
    ("{name: e, type: elasticsearch, url: 'http://x', username: u}", "username and password go together"),
    ("{name: e, type: elasticsearch, url: 'http://x', api_key: k, username: u, password: p}", "set either api_key"),
    ("{name: h, type: splunk_hec, url: 'http://x:8088'}", "sinks[0].token"),
    ("{name: h, type: splunk_hec, url: 'http://x:8088', token: t, ack_timeout_seconds: 0}", "must be > 0"),
    ("{name: h, type: splunk_hec, url: 'http://x:8088', token: t, batch: {max_bytes: 10}}", "at least 1024"),
    ("{name: h, type: splunk_hec, url: 'http://u:p@x:8088', token: t}", "must not carry"),
])
def test_settings_errors_name_the_key(entry: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(f"sinks: [{entry}]", {})
    assert message in str(caught.value)


def test_secrets_do_not_print() -> None:
    config = parse_config("sinks: [{name: h, type: splunk_hec, url: 'http://x:8088', token: 's3cr3t-t0k3n'}]", {})
    assert "s3cr3t-t0k3n" not in repr(config)


def test_chunks_by_size() -> None:
    assert list(chunks_by_size([], 10)) == []
    assert list(chunks_by_size([4, 4, 4], 8)) == [range(0, 2), range(2, 3)]
    assert list(chunks_by_size([20, 1, 1], 8)) == [range(0, 1), range(1, 3)]


def ingest_record(event_json: bytes) -> NormalizedEvent:
    """A record as the ingest writes it, around the event's bytes as the sender sent them."""
    from siemgate.record import BatchEncoder

    encoder = BatchEncoder(prefix="p", integration="appsec-prod", received_at="2026-11-28T21:00:01.000000Z",
                           batch="b", peer="127.0.0.1")
    record = encoder.encode(event_id="evt-1", kind="event", severity="high", seq=0, event_bytes=event_json)
    return Normalizer().normalize(record.value)


@pytest.mark.parametrize("original_field", ["siemgate.event", "vendor", "siemgate.vendor.raw", ""])
def test_spliced_documents_equal_the_mapping_form(original_field: str) -> None:
    event = normalized()
    sink = ElasticsearchSink(ElasticsearchSinkSettings(name="es", url="http://h:9200",
                                                       original_field=original_field))
    _, doc, _ = sink.encode(event, INGESTED).split(b"\n")
    assert orjson.loads(doc) == as_json(sink.document(event, INGESTED))
    envelope = orjson.loads(hec().encode(event))
    assert envelope == orjson.loads(orjson.dumps(hec().envelope(event)))


def test_the_vendor_event_keeps_its_exact_numbers_and_no_line_breaks() -> None:
    big = b'{"id":"evt-1","n":123456789012345678901234567890,"severity":"high"}'
    event = ingest_record(big)
    assert event.event_bytes() == big
    assert b"123456789012345678901234567890" in hec().encode(event)
    sink = ElasticsearchSink(ElasticsearchSinkSettings(name="es", url="http://h:9200"))
    assert b'"siemgate":{"event":' + big + b"}}" in sink.encode(event, INGESTED)
    pretty = ingest_record(b'{\n  "id": "evt-1",\n  "severity": "high"\n}')
    assert pretty.event_bytes() == b'{"id":"evt-1","severity":"high"}', "re-encoded: NDJSON has no line breaks"
    assert sink.encode(pretty, INGESTED).count(b"\n") == 2


def test_epoch_seconds_fast_path_agrees_with_the_standard_parser() -> None:
    from datetime import datetime

    for text in ("2026-11-28T21:00:00.123456Z", "2026-11-28T23:59:59Z", "2024-02-29T12:30:15.5Z"):
        assert epoch_seconds(text) == round(datetime.fromisoformat(text).timestamp(), 6)
    assert epoch_seconds("2026-11-28T25:00:00Z") is None
    assert epoch_seconds("2026-02-30T00:00:00Z") is None


def test_epoch_seconds_of_normalized_timestamps_agree_with_the_standard_parser() -> None:
    """The normalizer's own form (6 fraction digits) goes by whole microseconds: the same float
    as the standard parser's, over instants spread across 1901-2099 and each second's edges."""
    import random
    from datetime import datetime

    rng = random.Random(19)
    texts = [f"{rng.randrange(1901, 2100):04d}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}T"
             f"{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}."
             f"{rng.choice((0, 1, 499999, 500000, 999999, rng.randrange(10**6))):06d}Z" for _ in range(20_000)]
    for text in texts:
        assert epoch_seconds(text) == round(datetime.fromisoformat(text).timestamp(), 6), text
    # No real instant: not taken for one.
    assert epoch_seconds("2026-11-28T21:00:61.000000Z") is None
    assert epoch_seconds("2026-11-28T21:00:00.12345aZ") is None
