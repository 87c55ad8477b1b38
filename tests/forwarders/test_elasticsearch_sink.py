"""The Elasticsearch sink against the Elasticsearch stand-in: every bulk item status and
whole-request answer handled deliberately; `siemgate es-setup`."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from siemgate.config import parse_config
from siemgate.errors import RetryableSinkError, SinkAuthError
from siemgate.forwarders.metrics import ForwardMetrics
from siemgate.forwarders.normalize import NormalizedEvent, Normalizer
from siemgate.forwarders.sinks.elasticsearch import ElasticsearchSink, ElasticsearchSinkSettings
from siemgate.forwarders.sinks.elasticsearch_setup import run_setup
from siemgate.forwarders.sinks.registry import build_settings
from siemgate.record import BatchEncoder, make_record
from siemgate_standins.elasticsearch import ElasticsearchStandIn
from siemgate_standins.http_server import Request, Response
from tests.forwarders.test_runtime import Backend, embedded_config_for, record_for, until

pytestmark = pytest.mark.anyio

STREAM = "logs-siemgate.alerts-default"
API_KEY = ("key-id-1", "key-secret-1")


def events(n: int, start: int = 0, pad: int = 100, source_ip: str = "192.0.2.9") -> list[NormalizedEvent]:
    normalizer = Normalizer()
    return [
        normalizer.normalize(make_record(
            prefix="p", event={"id": f"e-{i}", "severity": "high", "pad": "x" * pad, "source_ip": source_ip,
                               "timestamp": "2026-11-28T21:00:00.250Z"},
            kind="event", integration="appsec", severity="high", event_id=f"e-{i}",
            received_at="2026-11-28T21:00:01.000000Z", batch="b", seq=i, peer="127.0.0.1").value)
        for i in range(start, start + n)
    ]


@pytest.fixture
async def es() -> AsyncIterator[ElasticsearchStandIn]:
    async with ElasticsearchStandIn(api_keys=dict([API_KEY]), users={"elastic": "changeme"}) as server:
        yield server


def sink_for(es: ElasticsearchStandIn | str, **options: Any) -> ElasticsearchSink:
    url = es if isinstance(es, str) else es.url
    options.setdefault("api_key", ":".join(API_KEY))
    settings = build_settings("elasticsearch", {"name": "es", "url": url, **options}, {}, "sinks[0]")
    assert isinstance(settings, ElasticsearchSinkSettings)
    return ElasticsearchSink(settings)


def stored(es: ElasticsearchStandIn, target: str = STREAM) -> dict[str, dict[str, Any]]:
    return es.documents(target)


async def test_creates_ecs_documents_with_the_event_id(es: ElasticsearchStandIn) -> None:
    sink = sink_for(es)
    result = await sink.send(events(10))
    await sink.close()
    assert not result.retry and not result.rejected and not result.duplicates
    documents = stored(es)
    assert sorted(documents) == sorted(f"e-{i}" for i in range(10))
    doc = documents["e-3"]
    assert doc["@timestamp"] == "2026-11-28T21:00:00.250000Z"
    assert doc["event"]["kind"] == "alert" and doc["event"]["severity"] == 73 and doc["event"]["id"] == "e-3"
    assert doc["source"] == {"address": "192.0.2.9", "ip": "192.0.2.9"} and doc["labels"]["integration"] == "appsec"
    assert doc["data_stream"] == {"type": "logs", "dataset": "siemgate.alerts", "namespace": "default"}
    assert doc["event"]["dataset"] == "siemgate.alerts"
    request = es.bulk_requests[0]
    assert request.gzip and request.path == f"/{STREAM}/_bulk"
    assert "filter_path" in request.query


async def test_an_id_longer_than_elasticsearch_takes_is_hashed_into_the_id(es: ElasticsearchStandIn) -> None:
    """Found by the sinks' sweep: Elasticsearch refuses an `_id` over 512 bytes, so an event
    whose vendor id was longer (600 bytes; 200 three-byte characters) was dead-lettered. Its
    `_id` is now the id's SHA-256, as deterministic (a redelivery is a 409); `event.id` keeps
    the id whole. An id of exactly 512 bytes is still the `_id` itself."""
    normalizer = Normalizer()
    ids = ["i" * 600, "\u20ac" * 200, "j" * 512]
    batch = [normalizer.normalize(make_record(
        prefix="p", event={"id": event_id, "severity": "high"}, kind="event", integration="appsec",
        severity="high", event_id=event_id, received_at="2026-11-28T21:00:01.000000Z", batch="b", seq=i,
        peer="127.0.0.1").value) for i, event_id in enumerate(ids)]
    sink = sink_for(es)
    result = await sink.send(batch)
    again = await sink.send(batch)
    await sink.close()
    assert not result.retry and not result.rejected and not result.duplicates, result
    assert again.duplicates == [0, 1, 2], "a redelivery is recognised"
    documents = stored(es)
    wanted = [hashlib.sha256(ids[0].encode()).hexdigest(), hashlib.sha256(ids[1].encode()).hexdigest(), ids[2]]
    assert sorted(documents) == sorted(wanted)
    assert [documents[doc_id]["event"]["id"] for doc_id in wanted] == ids


async def test_a_vendor_event_naming_a_key_twice_is_sent_again_from_its_parsed_form(es: ElasticsearchStandIn) -> None:
    """Found by the sinks' sweep: the vendor's event goes as its own bytes, and Elasticsearch
    refuses a text naming a key twice in an object (`Duplicate field`), so such an event was
    dead-lettered. It is now sent again at once, written from its parsed form (each key once,
    the last value, as every JSON parser reads it); the others are sent once. The refusal's
    cause is in a dead letter's reason (Elasticsearch 7 says only "failed to parse" above it)."""
    normalizer = Normalizer()
    texts = [b'{"id":"d-0","severity":"low","severity":"high","hdr":{"Received":"a","Received":"b"}}',
             b'{"id":"d-1","severity":"high","note":"quoted \\": inside"}']
    encoder = BatchEncoder(prefix="p", integration="appsec", received_at="2026-11-28T21:00:01.000000Z", batch="b",
                           peer="127.0.0.1")
    batch = [normalizer.normalize(encoder.encode(event_id=f"d-{i}", kind="event", severity="high", seq=i,
                                                 event_bytes=text).value) for i, text in enumerate(texts)]
    sink = sink_for(es)
    result = await sink.send([*batch, *events(2)])
    await sink.close()
    assert not result.retry and not result.rejected and not result.duplicates, result
    documents = stored(es)
    assert documents["d-0"]["siemgate"]["event"] == {"id": "d-0", "severity": "high", "hdr": {"Received": "b"}}
    assert documents["d-1"]["siemgate"]["event"] == orjson.loads(texts[1])
    assert [r.item_statuses for r in es.bulk_requests] == [[400, 201, 201, 201], [201]]
    es.faults.fail_items(400, error_type="document_parsing_exception", count=1)
    sink = sink_for(es)
    refused = await sink.send(events(1, start=50))
    await sink.close()
    assert [i for i, _ in refused.rejected] == [0] and len(es.bulk_requests) == 3, "other refusals: not again"


async def test_basic_auth_and_no_gzip(es: ElasticsearchStandIn) -> None:
    sink = sink_for(es, api_key=None, username="elastic", password="changeme", gzip=False)
    assert not (await sink.send(events(3))).retry
    await sink.close()
    assert not es.bulk_requests[0].gzip and len(stored(es)) == 3


async def test_credentials_refused_or_lacking_privileges_pause_the_sink(es: ElasticsearchStandIn) -> None:
    sink = sink_for(es, api_key="key-id-1:wrong")
    with pytest.raises(SinkAuthError, match="401.*api_key"):
        await sink.send(events(1))
    with pytest.raises(SinkAuthError):
        await sink.healthcheck()
    await sink.close()
    es.faults.fail_requests(403)
    sink = sink_for(es)
    with pytest.raises(SinkAuthError, match="403.*create_doc"):
        await sink.send(events(1))
    await sink.close()


async def test_redelivery_is_a_duplicate_not_a_second_document(es: ElasticsearchStandIn) -> None:
    sink = sink_for(es)
    first = await sink.send(events(5))
    again = await sink.send(events(8))
    await sink.close()
    assert not first.duplicates
    assert list(again.duplicates) == [0, 1, 2, 3, 4] and not again.retry and not again.rejected
    assert len(stored(es)) == 8


async def test_items_refused_for_now_are_sent_again_alone(es: ElasticsearchStandIn) -> None:
    es.faults.fail_items(429, ids=["e-2", "e-6"])
    es.faults.fail_items(503, ids=["e-4"])
    sink = sink_for(es)
    batch = events(8)
    result = await sink.send(batch)
    assert sorted(result.retry) == [2, 4, 6] and not result.rejected
    assert len(stored(es)) == 5
    again = await sink.send([batch[i] for i in result.retry])
    await sink.close()
    assert not again.retry and sorted(stored(es)) == sorted(f"e-{i}" for i in range(8))
    assert [r.item_statuses for r in es.bulk_requests][-1] == [201, 201, 201]


async def test_items_refused_for_good_go_to_the_dlq_with_type_and_reason(es: ElasticsearchStandIn) -> None:
    es.faults.fail_items(400, ids=["e-1"])
    es.faults.fail_items(404, ids=["e-5"], error_type="index_not_found_exception", reason="no such index [x]")
    sink = sink_for(es)
    result = await sink.send(events(6))
    await sink.close()
    rejected = dict(result.rejected)
    assert sorted(rejected) == [1, 5] and not result.retry
    assert rejected[1].startswith("document_parsing_exception: Elasticsearch answered 400: ")
    assert rejected[5] == "index_not_found_exception: Elasticsearch answered 404: no such index [x]"
    assert len(stored(es)) == 4


async def test_a_real_mapping_conflict_is_dead_lettered(es: ElasticsearchStandIn) -> None:
    async with httpx.AsyncClient(base_url=es.url, auth=("elastic", "changeme")) as client:
        created = await client.put("/strict-alerts", json={"mappings": {"properties": {"labels": {
            "properties": {"severity": {"type": "long"}}}}}})
        assert created.status_code == 200, created.text
    sink = sink_for(es, index="strict-alerts")
    result = await sink.send(events(2))
    await sink.close()
    assert [i for i, _ in result.rejected] == [0, 1]
    assert all(reason.startswith("document_parsing_exception") for _, reason in result.rejected)


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
async def test_whole_request_refusals_are_retried(es: ElasticsearchStandIn, status: int) -> None:
    es.faults.fail_requests(status)
    sink = sink_for(es)
    with pytest.raises(RetryableSinkError, match=f"HTTP {status}"):
        await sink.send(events(3))
    assert not (await sink.send(events(3))).retry
    await sink.close()
    assert len(stored(es)) == 3


async def test_confirmed_requests_stay_delivered_when_a_later_one_fails() -> None:
    class SecondBulkBusy(ElasticsearchStandIn):
        bulks = 0

        async def handle(self, request: Request) -> Response:
            if request.path.endswith("/_bulk"):
                self.bulks += 1
                if self.bulks == 2:
                    return Response.json(429, {"error": {"type": "es_rejected_execution_exception",
                                                         "reason": "rejected execution"}, "status": 429})
            return await super().handle(request)

    async with SecondBulkBusy() as es:
        sink = sink_for(es, api_key=None, gzip=False, batch={"max_bytes": 4096})
        batch = events(20)
        result = await sink.send(batch)
        assert result.retry, "the refused request's documents and those after it are sent again"
        delivered = sorted(f"e-{i}" for i in range(20) if i not in set(result.retry))
        assert sorted(stored(es)) == delivered
        again = await sink.send([batch[i] for i in result.retry])
        await sink.close()
        assert not again.retry and sorted(stored(es)) == sorted(f"e-{i}" for i in range(20))


async def test_413_splits_and_a_document_too_large_alone_is_dead_lettered() -> None:
    async with ElasticsearchStandIn(max_body_bytes=8000) as es:
        sink = sink_for(es, api_key=None, gzip=False)
        batch = events(12, pad=300)
        batch.insert(3, events(1, start=99, pad=9000)[0])
        result = await sink.send(batch)
        await sink.close()
        assert [i for i, _ in result.rejected] == [3]
        assert result.rejected[0][1].startswith("request_entity_too_large")
        assert sorted(stored(es)) == sorted(f"e-{i}" for i in range(12))


async def test_dropped_connections_and_timeouts_are_retryable(es: ElasticsearchStandIn) -> None:
    sink = sink_for(es, timeout_seconds=0.5)
    es.faults.drop_connections(1)
    with pytest.raises(RetryableSinkError):
        await sink.send(events(2))
    es.faults.delay_seconds = 2.0
    with pytest.raises(RetryableSinkError, match="no answer within 0.5 s"):
        await sink.send(events(2))
    es.faults.delay_seconds = 0.0
    result = await sink.send(events(2))
    await sink.close()
    assert not result.retry and len(stored(es)) == 2


async def test_healthcheck(es: ElasticsearchStandIn) -> None:
    sink = sink_for(es)
    assert "Elasticsearch 8.15.0 (cluster" in await sink.healthcheck()
    await sink.close()


async def test_es_setup_installs_the_template_and_the_data_stream(es: ElasticsearchStandIn) -> None:
    config = parse_config(f"""
sinks:
  - {{name: es, type: elasticsearch, url: "{es.url}", api_key: "{':'.join(API_KEY)}"}}
  - {{name: idx, type: elasticsearch, url: "{es.url}", api_key: "{':'.join(API_KEY)}", index: siem-alerts}}
""", {})
    out = io.StringIO()
    assert await run_setup(config, (), out) == 0, out.getvalue()
    text = out.getvalue()
    assert f"es: index template siemgate-{STREAM} installed" in text
    assert "composed of logs@mappings, logs@settings, logs@custom, logs-siemgate.alerts@custom: the built-in logs " \
           "lifecycle policy" in text
    assert "idx: index template siemgate-siem-alerts installed (ECS 8.11.0; an index: no lifecycle)" in text
    assert f"es: data stream {STREAM} created" in text
    assert "idx: index siem-alerts created" in text
    out = io.StringIO()
    assert await run_setup(config, ["es"], out) == 0
    assert "already exists" in out.getvalue()
    # The ECS documents fit the mappings the template declares (the stand-in checks them).
    for name, target in (("es", STREAM), ("idx", "siem-alerts")):
        sink = ElasticsearchSink(next(s.settings for s in config.sinks if s.name == name))
        result = await sink.send(events(5) + events(1, start=9, source_ip="not-an-ip"))
        await sink.close()
        assert not result.rejected and not result.retry, result
        assert len(stored(es, target)) == 6
    out = io.StringIO()
    assert await run_setup(config, ["nope"], out) == 2


async def test_es_setup_reports_refusals(es: ElasticsearchStandIn) -> None:
    config = parse_config(f'sinks: [{{name: es, type: elasticsearch, url: "{es.url}", api_key: "a:b"}}]', {})
    out = io.StringIO()
    assert await run_setup(config, (), out) == 1
    assert "es: FAILED" in out.getvalue() and "401" in out.getvalue()


async def test_through_the_runtime_dead_letters_carry_the_error_type(tmp_path: Path) -> None:
    backend = Backend("embedded", embedded_config_for(tmp_path))
    await backend.produce([record_for(backend.prefix, i) for i in range(10)])
    metrics = ForwardMetrics()
    async with ElasticsearchStandIn() as es:
        es.faults.fail_items(400, ids=["e-3"])
        es.faults.fail_items(429, ids=["e-6"])
        sink = sink_for(es, api_key=None)
        async with backend.forwarding(sink, metrics):
            await until(lambda: len(stored(es)) >= 9)
            await until(lambda: metrics.dlq.labels("es", "document_parsing_exception")._value.get() >= 1)
        assert sorted(stored(es)) == sorted(f"e-{i}" for i in range(10) if i != 3)
    letters = await backend.dead_letters("es", 1)
    assert [letter["id"] for letter in letters] == ["e-3"]
    assert letters[0]["reason"].startswith("document_parsing_exception: Elasticsearch answered 400")


def vendor_events(*bodies: dict[str, Any]) -> list[NormalizedEvent]:
    normalizer = Normalizer()
    return [normalizer.normalize(make_record(
        prefix="p", event={"timestamp": "2026-11-28T21:00:00.250Z", **body}, kind="event", integration="appsec",
        severity="high", event_id=str(body["id"]), received_at="2026-11-28T21:00:01.000000Z", batch="b", seq=i,
        peer="127.0.0.1").value) for i, body in enumerate(bodies)]


async def setup(es: ElasticsearchStandIn, **options: str) -> ElasticsearchSinkSettings:
    extra = "".join(f", {k}: {v}" for k, v in options.items())
    config = parse_config(f'sinks: [{{name: es, type: elasticsearch, url: "{es.url}", '
                          f'api_key: "{":".join(API_KEY)}"{extra}}}]', {})
    out = io.StringIO()
    assert await run_setup(config, (), out) == 0, out.getvalue()
    settings = config.sinks[0].settings
    assert isinstance(settings, ElasticsearchSinkSettings)
    return settings


async def test_es_setup_keeps_the_builtin_logs_lifecycle_and_mappings(es: ElasticsearchStandIn) -> None:
    settings = await setup(es)
    template = es.index_templates[f"siemgate-{STREAM}"]
    assert template["index_patterns"] == [STREAM] and 100 < template["priority"] < 200
    assert template["composed_of"] == ["logs@mappings", "logs@settings", "logs@custom", "logs-siemgate.alerts@custom"]
    assert template["ignore_missing_component_templates"] == ["logs@custom", "logs-siemgate.alerts@custom"]
    stream = es.data_streams[STREAM]
    assert stream["template"] == f"siemgate-{STREAM}"
    assert stream["ilm_policy"] == "logs"  # the built-in logs template's lifecycle: rollover
    assert stream["settings"]["mapping"]["ignore_malformed"] == "true"
    (backing,) = stream["indices"]
    properties = es.indices[backing]["mappings"]["properties"]
    assert properties["data_stream.type"] == {"type": "constant_keyword", "value": "logs"}  # logs@mappings
    assert properties["data_stream"]["properties"]["dataset"] == {"type": "constant_keyword",
                                                                  "value": "siemgate.alerts"}
    assert properties["message"] == {"type": "match_only_text"}
    # The documents fit the data stream's constant_keywords (the stand-in refuses another value).
    sink = ElasticsearchSink(settings)
    assert not (await sink.send(events(2))).rejected
    await sink.close()
    doc = stored(es)["e-1"]
    assert doc["data_stream"] == {"type": "logs", "dataset": "siemgate.alerts", "namespace": "default"}
    assert doc["event"]["dataset"] == "siemgate.alerts"


async def test_es_setup_for_other_targets_states_their_lifecycle(es: ElasticsearchStandIn) -> None:
    custom = await setup(es, data_stream="logs-appsec.waf-prod")
    assert es.data_streams["logs-appsec.waf-prod"]["ilm_policy"] == "logs"
    sink = ElasticsearchSink(custom)
    assert not (await sink.send(events(1))).rejected
    await sink.close()
    doc = stored(es, "logs-appsec.waf-prod")["e-0"]
    assert doc["data_stream"] == {"type": "logs", "dataset": "appsec.waf", "namespace": "prod"}
    assert doc["event"]["dataset"] == "appsec.waf"
    # A data stream outside the naming scheme: its own data stream lifecycle, no data_stream.* fields.
    await setup(es, data_stream="siemgate-alerts")
    template = es.index_templates["siemgate-siemgate-alerts"]
    assert not template.get("composed_of") and template["template"]["lifecycle"] == {"enabled": True}
    assert es.data_streams["siemgate-alerts"]["lifecycle"] == {"enabled": True}
    # An index: no lifecycle, no data stream.
    await setup(es, index="siem-alerts")
    template = es.index_templates["siemgate-siem-alerts"]
    assert not template.get("composed_of") and "lifecycle" not in template["template"]
    assert "data_stream" not in template
    for target in ("siemgate-alerts", "siem-alerts"):
        sink = sink_for(es, **({"index": target} if target == "siem-alerts" else {"data_stream": target}))
        assert not (await sink.send(events(1))).rejected
        await sink.close()
        doc = stored(es, target)["e-0"]
        assert "data_stream" not in doc and doc["event"]["dataset"] == "siemgate.alerts"


async def test_an_ipv6_zone_never_reaches_an_ip_field(es: ElasticsearchStandIn) -> None:
    # An index: no ignore_malformed, so an invalid ip would be refused (the stand-in refuses zones, as ES).
    settings = await setup(es, index="siem-alerts")
    sink = ElasticsearchSink(settings)
    result = await sink.send(vendor_events({"id": "z", "source_ip": "fe80::1%eth0"},
                                           {"id": "n", "source_ip": "web-01%eth0"},
                                           {"id": "p", "source_ip": "203.0.113.9:443"}))
    await sink.close()
    assert not result.rejected and not result.retry, result
    docs = stored(es, "siem-alerts")
    assert docs["z"]["source"] == {"address": "fe80::1%eth0", "ip": "fe80::1"}
    assert docs["n"]["source"] == {"address": "web-01%eth0"}
    assert docs["p"]["source"] == {"address": "203.0.113.9:443"}


async def test_the_method_keeps_its_case_and_deep_vendor_objects_are_taken(es: ElasticsearchStandIn) -> None:
    settings = await setup(es)
    node: dict[str, Any] = {"leaf": "bottom"}
    for level in range(29, 0, -1):
        node = {f"l{level}": node}
    sink = ElasticsearchSink(settings)
    emoji = "\U0001f6e1" * 8000  # 32000 bytes: one flattened term too long for Lucene with ignore_above 8191
    long_path = {"k" * 17000: {"k" * 17000: "v"}}  # a key path of 34000 bytes: one term too long
    result = await sink.send(vendor_events({"id": "deep", "method": "pOsT", "vendor": node},
                                           {"id": "nul", "vendor": {"a\u0000b": 1}}, {"id": "x", "method": "get"},
                                           {"id": "emoji", "payload": emoji}, {"id": "path", "vendor": long_path}))
    await sink.close()
    assert not result.rejected and not result.retry, result
    docs = stored(es)
    assert docs["deep"]["http"]["request"]["method"] == "pOsT" and docs["x"]["http"]["request"]["method"] == "get"
    kept = docs["deep"]["siemgate"]["event"]["vendor"]
    for level in range(1, 19):  # the event is level 1, "vendor" 2: objects down to level 20 stay objects
        kept = kept[f"l{level}"]
    assert orjson.loads(kept["l19"]) == {"l20": node_at(node, 20)}  # deeper: its JSON text
    assert docs["nul"]["siemgate"]["event"]["vendor"] == {"a\ufffdb": 1}
    assert docs["emoji"]["siemgate"]["event"]["payload"] == emoji  # kept, not indexed (over ignore_above)
    assert orjson.loads(docs["path"]["siemgate"]["event"]["vendor"]) == long_path  # as its JSON text


def node_at(node: dict[str, Any], level: int) -> Any:
    for i in range(1, level + 1):
        node = node[f"l{i}"]
    return node


async def test_es_setup_on_clusters_with_older_or_no_builtin_logs_templates() -> None:
    async with ElasticsearchStandIn(builtin_templates=False) as es:
        # No built-in component templates (stack templates disabled): a lifecycle of its own.
        settings = await setup(es)
        assert es.data_streams[STREAM]["lifecycle"] == {"enabled": True}
        assert not es.index_templates[f"siemgate-{STREAM}"].get("composed_of")
        # Elasticsearch 8.0-8.11: logs-mappings / logs-settings.
        es.reset()
        async with httpx.AsyncClient(base_url=es.url) as client:
            for name, template in (("logs-mappings", {"mappings": {"properties": {
                                       "data_stream.type": {"type": "constant_keyword", "value": "logs"}}}}),
                                   ("logs-settings", {"settings": {"index.lifecycle.name": "logs"}})):
                response = await client.put(f"/_component_template/{name}", json={"template": template})
                assert response.status_code == 200, response.text
        out = io.StringIO()
        assert await run_setup(parse_config(f'sinks: [{{name: es, type: elasticsearch, url: "{es.url}"}}]', {}),
                               (), out) == 0, out.getvalue()
        assert "composed of logs-mappings, logs-settings: the built-in logs lifecycle policy" in out.getvalue()
        template = es.index_templates[f"siemgate-{STREAM}"]
        assert template["composed_of"] == ["logs-mappings", "logs-settings"]
        assert "ignore_missing_component_templates" not in template
        assert es.data_streams[STREAM]["ilm_policy"] == "logs"
        sink = ElasticsearchSink(settings)
        assert not (await sink.send(events(1))).rejected
        await sink.close()


async def test_es_setup_escapes_what_elasticsearch_answers() -> None:
    """What the cluster answers (an error's reason: whoever answers on that address writes it)
    reaches the operator's terminal escaped: no control sequence is drawn."""
    hostile = orjson.dumps({"error": {"type": "x\x1b]8;;https://evil.example\x07", "reason": "\x1b[2J\u202eno"},
                            "status": 400})

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                await reader.readexactly(length)
                if head.startswith(b"HEAD "):  # every built-in template is there
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                else:
                    writer.write(b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n"
                                 b"content-length: %d\r\n\r\n%s" % (len(hostile), hostile))
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        config = parse_config(f'sinks: [{{name: es, type: elasticsearch, url: "http://127.0.0.1:{port}", '
                              'api_key: "a:b"}]', {})
        out = io.StringIO()
        assert await run_setup(config, (), out) == 1
    finally:
        server.close()
        await server.wait_closed()
    text = out.getvalue()
    assert "es: FAILED" in text, text
    assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text, text
