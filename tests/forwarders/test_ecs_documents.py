"""Every field of every document the Elasticsearch sink produces, checked against the ECS field
list (tests/forwarders/ecs_check.py): the simulator's events and hostile ones, encoded by the
sink as it sends them, then sent to the Elasticsearch stand-in behind `siemgate es-setup`'s
template, where every one must be taken."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from siemgate.config import parse_config
from siemgate.forwarders.formats.ecs import ECS_TOP_LEVEL, mappings
from siemgate.forwarders.normalize import NormalizedEvent, Normalizer
from siemgate.forwarders.sinks.elasticsearch import ElasticsearchSink, ElasticsearchSinkSettings
from siemgate.forwarders.sinks.elasticsearch_setup import index_template, run_setup
from siemgate.forwarders.sinks.registry import build_settings
from siemgate.record import make_record
from siemgate.simulate import TEST_MESSAGE, make_events
from siemgate_standins.elasticsearch import ElasticsearchStandIn
from tests.forwarders.ecs_check import assert_ecs, ecs_fields, mapping_problems, problems

INGESTED = "2026-11-29T10:00:00.000Z"


def _deep(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = {"leaf": "bottom"}
    for level in range(depth - 1):
        node = {f"l{depth - 1 - level}": node}
    return node


# Hostile and odd vendor events: what the normalizer and the encoder must turn into ECS.
HOSTILE: list[dict[str, Any]] = [
    {"id": "zone", "severity": "high", "source_ip": "fe80::1%eth0", "method": "post"},
    {"id": "zone-only", "severity": "high", "sourceIp": "fe80::1%", "method": "PoSt"},
    {"id": "zone-bad", "severity": "high", "sourceIp": "not-an-ip%eth0"},
    {"id": "leading-zeros", "severity": "low", "src_ip": "010.000.000.001"},
    {"id": "bracketed", "severity": "low", "client_ip": "[2001:db8::1]"},
    {"id": "with-port", "severity": "low", "client_ip": "203.0.113.9:443"},
    {"id": "v4-mapped", "severity": "low", "client_ip": "::ffff:192.0.2.1"},
    {"id": "ip-number", "severity": "low", "ip": 3232235777},
    {"id": "ip-list", "severity": "low", "ip": ["192.0.2.1", "192.0.2.2"]},
    {"id": "ip-object", "severity": "low", "ip": {"v4": "192.0.2.1"}},
    {"id": "ip-empty", "severity": "low", "ip": ""},
    {"id": "ip-space", "severity": "low", "ip": " 192.0.2.1 "},
    {"id": "bad-date", "severity": "medium", "timestamp": "2025-02-30T10:00:00Z"},
    {"id": "leap-second", "severity": "medium", "timestamp": "2016-12-31T23:59:60Z"},
    {"id": "nonsense-date", "severity": "medium", "timestamp": "2025-13-45T99:99:99Z"},
    {"id": "epoch-date", "severity": "medium", "timestamp": 1795899600123},
    {"id": "critical", "severity": "critical", "method": "GET\r\nX-Injected: 1"},
    {"id": "numeric-sev", "severity": 9, "method": "x" * 5000},
    {"id": "unknown-sev", "severity": "Very-High", "method": ""},
    {"id": "bool-action", "severity": "high", "action": True, "rule": 942100, "asset": {"name": "shop"}},
    {"id": "weird-url", "severity": "high", "url": "http://[::1:bad/x"},
    {"id": "port-url", "severity": "high", "url": "https://shop.example:99999/login"},
    {"id": "relative-url", "severity": "high", "url": "/login?q=' OR 1=1 --"},
    {"id": "unicode", "severity": "high", "message": "攻撃 🛡️ \u202e\u0000\u001b[31m", "asset": "ünï.example",
     "rule_name": "\ud7ff" + "r" * 20000},
    {"id": "control", "severity": "high", "message": "a\nb\rc\td\x00e", "host": "web\n01\x00"},
    {"id": "deep", "severity": "high", "vendor": _deep(30)},
    {"id": "deep-arrays", "severity": "high", "vendor": [[[[[[[[[[[[[[[[[[[[[[[[[["x"]]]]]]]]]]]]]]]]]]]]]]]]]]},
    {"id": "nul-key", "severity": "high", "vendor": {"a\u0000b": "nul in a key", "c.d": {"e": 1}}},
    {"id": "dotted-keys", "severity": "high", "source.ip": "192.0.2.7", "http.request.method": "delete"},
    {"id": "huge", "severity": "low", "message": "m" * 100_000, "blob": "b" * 40_000},
    {"id": "emoji-payload", "severity": "low", "payload": "\U0001f6e1" * 8000},
    {"id": "long-key-path", "severity": "low", "vendor": {"k" * 17000: {"k" * 17000: "v"}}},
    {"id": "numbers", "severity": "low", "big": 2**70, "float": 1e308, "neg": -0.0},
    {"id": "empty", "severity": "low"},
]


def normalize(event: dict[str, Any], *, kind: str = "event", seq: int = 0) -> NormalizedEvent:
    event_id = str(event.get("id") or f"sim-{seq}")
    record = make_record(prefix="p", event=event, kind=kind, integration="appsec-prod",  # type: ignore[arg-type]
                         severity="high", event_id=event_id, received_at="2026-11-28T21:00:01.000000Z",
                         batch="b", seq=seq, peer="127.0.0.1")
    return Normalizer().normalize(record.value)


def corpus() -> list[NormalizedEvent]:
    events = [normalize(e, seq=i) for i, e in enumerate(make_events(300, mix="high=1,medium=2,low=3,Critical=1,"
                                                                          "unknown=1,9=1,informational=1", seed=18))]
    events += [normalize(e, seq=1000 + i) for i, e in enumerate(HOSTILE)]
    events.append(normalize(dict(TEST_MESSAGE), kind="test", seq=2000))
    return events


def sink(url: str = "https://es.example:9200", **options: Any) -> ElasticsearchSink:
    settings = build_settings("elasticsearch", {"name": "es", "url": url, **options}, {}, "sinks[0]")
    assert isinstance(settings, ElasticsearchSinkSettings)
    return ElasticsearchSink(settings)


def wire_documents(es_sink: ElasticsearchSink, events: list[NormalizedEvent]) -> list[dict[str, Any]]:
    """The documents exactly as the sink puts them on the wire."""
    out = []
    for event in events:
        action, document, end = es_sink.encode(event, INGESTED).split(b"\n")
        assert end == b"" and orjson.loads(action) == {"create": {"_id": event.id}}
        out.append(orjson.loads(document))
    return out


# -- the check itself catches what it is for


def test_the_ecs_check_refuses_what_is_not_ecs() -> None:
    good = {"@timestamp": "2026-11-28T21:00:00.123Z", "event": {"kind": "alert", "category": ["intrusion_detection"],
                                                                "type": ["denied"], "severity": 73},
            "source": {"ip": "192.0.2.1"}, "labels": {"a": "b"}, "siemgate": {"event": {"anything": [1, {}]}}}
    assert problems(good) == []
    bad: list[tuple[dict[str, Any], str]] = [
        ({"event": {"kind": "incident"}}, "event.kind: 'incident' is not one of"),
        ({"event": {"category": "intrusion_detection"}}, "event.category: ECS says an array"),
        ({"event": {"type": ["blocked"]}}, "event.type: 'blocked' is not one of"),
        ({"event": {"outcome": "blocked"}}, "event.outcome: 'blocked' is not one of"),
        ({"event": {"severity": "73"}}, "event.severity: a long must be an integer"),
        ({"event": {"severity": True}}, "event.severity: a long must be an integer"),
        ({"event": {"risk_score": float("inf")}}, "event.risk_score: a float must be a finite number"),
        ({"event": {"id": ["a", "b"]}}, "event.id: ECS says one value"),
        ({"event": {"vendor": "x"}}, "event.vendor: not an ECS field"),
        ({"source": {"ip": "fe80::1%eth0"}}, "source.ip: not an IP Elasticsearch takes"),
        ({"source": {"ip": "not-an-ip"}}, "source.ip: not an IP"),
        ({"source": "192.0.2.1"}, "source: an ECS object, not a value"),
        ({"@timestamp": "2025-02-30T10:00:00Z"}, "@timestamp: a date must be"),
        ({"@timestamp": "2026-11-28T21:00:00"}, "@timestamp: a date must be"),
        ({"labels": {"n": 1}}, "labels.n: labels are keywords"),
        ({"vendor": {"a": 1}}, "vendor.a: not an ECS field (custom fields go under siemgate.)"),
        ({"siemgate": {"other": 1}}, "the custom namespace holds only `event`"),
        ({"data_stream": {"type": "alerts"}}, "data_stream.type must be logs or metrics"),
        ({"data_stream": {"dataset": "siem-alerts"}}, "breaks the data stream naming scheme"),
        ({"http": {"request": {"method": 1}}}, "http.request.method: a keyword must be a string"),
        ({"url.port": "443"}, "url.port: a long must be an integer"),
    ]
    for doc, expected in bad:
        found = problems(doc)
        assert any(expected in p for p in found), (doc, found)


def test_the_encoder_knows_the_ecs_top_level_names() -> None:
    assert {name.split(".")[0] for name in ecs_fields()} == ECS_TOP_LEVEL


def test_the_template_maps_every_field_with_its_ecs_type() -> None:
    assert mapping_problems(mappings(("siemgate", "event"))) == []


# -- every document the sink produces


@pytest.mark.parametrize("options", [{}, {"event_original": True, "observer": {"vendor": "Acme", "product": "AppSec",
                                                                                "type": "waf", "name": "waf-1"}},
                                     {"index": "siem-alerts"}, {"data_stream": "logs-appsec.alerts-prod"},
                                     {"original_field": ""}])
def test_every_document_is_ecs(options: dict[str, Any]) -> None:
    events = corpus()
    documents = wire_documents(sink(**options), events)
    assert len(documents) == len(events) > 300
    for event, doc in zip(events, documents, strict=True):
        try:
            assert_ecs(doc)
        except AssertionError as exc:
            raise AssertionError(f"event {event.id}: {exc}") from None


@pytest.fixture
async def es() -> AsyncIterator[ElasticsearchStandIn]:
    async with ElasticsearchStandIn() as server:
        yield server


@pytest.mark.anyio
@pytest.mark.parametrize("target", [{}, {"index": "siem-alerts"}])
async def test_elasticsearch_takes_every_document_behind_the_template(es: ElasticsearchStandIn,
                                                                       target: dict[str, str]) -> None:
    extra = "".join(f", {k}: {v}" for k, v in target.items())
    config = parse_config(f'sinks: [{{name: es, type: elasticsearch, url: "{es.url}"{extra}}}]', {})
    out = io.StringIO()
    assert await run_setup(config, (), out) == 0, out.getvalue()
    settings = config.sinks[0].settings
    assert isinstance(settings, ElasticsearchSinkSettings)
    assert mapping_problems(index_template(settings)["template"]["mappings"]) == []
    es_sink = ElasticsearchSink(settings)
    events = corpus()
    result = await es_sink.send(events)
    await es_sink.close()
    assert not result.rejected and not result.retry, result.rejected[:5]
    stored = es.documents(settings.target)
    assert len(stored) == len(events)
    for doc in stored.values():
        assert_ecs(doc)
