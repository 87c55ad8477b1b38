"""The normalized view: field extraction, timestamps, severity routing."""

from __future__ import annotations

import pytest

from siemgate.config import parse_config
from siemgate.forwarders.normalize import NormalizeConfig, Normalizer, passes
from siemgate.record import make_record

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
