"""An event holding a lone surrogate escape (`"\\ud83d"`: a UTF-16 runtime cut an attack sample
in the middle of an emoji) reaches every sink as valid text: its record keeps the sender's
bytes, every formatter gets the event read with U+FFFD in the surrogate's place (issue 17)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from siemgate.config import parse_config
from siemgate.forwarders.formats.cef import encode_cef
from siemgate.forwarders.formats.ecs import ecs_document
from siemgate.forwarders.formats.leef import encode_leef
from siemgate.forwarders.normalize import NormalizedEvent, Normalizer
from siemgate.forwarders.sinks.elasticsearch import ElasticsearchSink, ElasticsearchSinkSettings
from siemgate.forwarders.sinks.file import FileSink, FileSinkSettings, to_json_line
from siemgate.forwarders.sinks.registry import build_settings
from siemgate.forwarders.sinks.sentinel import SentinelSink, SentinelSinkSettings
from siemgate.forwarders.sinks.splunk_hec import SplunkHecSink, SplunkHecSinkSettings
from siemgate.forwarders.sinks.syslog import SyslogSinkSettings, build_encoder
from siemgate.ingest.batch import BatchParser
from siemgate.secrets import Secret

CONFIG = parse_config("integrations: [{name: appsec, auth: {header: X-K, values: [vvvv]}}]", {})
# Lone high and low surrogates in the message, the rule, a nested field, a key and the id.
BODY = (b'[{"id":"evt-\\ud83d","severity":"high","message":"<script>alert(\\"\\ud83d\\")</script>",'
        b'"rule_name":"XSS \\udc00","source_ip":"203.0.113.9","request":{"body":"a\\\\\\ud83d",'
        b'"k\\udfff":[1,"\\uD83D\\uDE00"]}}]')
READ = {"id": "evt-\ufffd", "severity": "high", "message": '<script>alert("\ufffd")</script>',
        "rule_name": "XSS \ufffd", "source_ip": "203.0.113.9",
        "request": {"body": "a\\\ufffd", "k\ufffd": [1, "\U0001f600"]}}


def normalized() -> NormalizedEvent:
    batch = BatchParser(CONFIG.integrations[0], "p").parse(BODY, peer="192.0.2.1", max_events=10)
    assert batch.lone_surrogates == 1
    (record,) = batch.records
    # The record carries the sender's bytes, lone surrogates and all.
    assert record.value.endswith(b',"event":' + BODY[1:-1] + b"}")
    event = Normalizer().normalize(record.value)
    assert event.record == record.value
    return event


def valid_text(data: bytes) -> str:
    text = data.decode("utf-8")  # strict: a surrogate cannot be encoded
    assert "\\ud83d" not in text.lower() and "\\udc00" not in text.lower() and "\\udfff" not in text.lower()
    return text


def test_the_normalized_event_reads_u_fffd() -> None:
    event = normalized()
    assert event.event == READ
    assert event.severity == "high" and event.message == READ["message"] and event.rule == "XSS \ufffd"
    # The vendor id may have held a surrogate: the key is the content hash, not "evt-\ufffd".
    assert len(event.id) == 32 and "\ufffd" not in event.id
    assert orjson.loads(event.event_bytes()) == READ


def test_file_sink_writes_valid_json(tmp_path: Path) -> None:
    event = normalized()
    assert orjson.loads(valid_text(to_json_line(event)))["event"] == READ
    sink = FileSink(FileSinkSettings(name="archive", path=str(tmp_path / "events.ndjson")))

    async def run() -> None:
        await sink.start()
        result = await sink.send([event])
        assert not result.retry and not result.rejected
        await sink.close()

    asyncio.run(run())
    (line,) = (tmp_path / "events.ndjson").read_bytes().splitlines()
    assert orjson.loads(valid_text(line))["event"] == READ


def test_splunk_hec_and_elasticsearch_and_ecs() -> None:
    event = normalized()
    hec = SplunkHecSink(SplunkHecSinkSettings(name="splunk", url="http://127.0.0.1:8088", token=Secret("t")))
    assert orjson.loads(valid_text(hec.encode(event)))["event"]["vendor_event"] == READ
    es = ElasticsearchSink(ElasticsearchSinkSettings(name="es", url="http://127.0.0.1:9200"))
    action, document, _ = es.encode(event, "2026-12-07T00:00:00.000Z").split(b"\n")
    orjson.loads(valid_text(action))
    assert orjson.loads(valid_text(document))["message"] == READ["message"]
    ecs = orjson.dumps(ecs_document(event, ingested="2026-12-07T00:00:00.000Z"))
    assert orjson.loads(orjson.loads(valid_text(ecs))["event"]["original"]) == READ


def test_sentinel_row() -> None:
    settings = build_settings("sentinel", {
        "name": "sentinel", "endpoint": "https://dce.example", "dcr_immutable_id": "dcr-0",
        "tenant_id": "t", "client_id": "c", "client_secret": "s"}, {}, "sinks[0]")
    assert isinstance(settings, SentinelSinkSettings)
    row = orjson.loads(valid_text(SentinelSink(settings).encode(normalized())))
    assert row["EventMessage"] == READ["message"]


@pytest.mark.parametrize("wire_format", ["rfc5424", "rfc3164", "cef", "leef"])
def test_syslog_formats(wire_format: str) -> None:
    settings = build_settings("syslog", {"name": "soc", "address": "tcp://127.0.0.1:514"}, {}, "sinks[0]")
    assert isinstance(settings, SyslogSinkSettings)
    message = valid_text(build_encoder(settings, wire_format)(normalized()))  # type: ignore[arg-type]
    assert "XSS \ufffd" in message


def test_cef_and_leef_directly() -> None:
    event = normalized()
    valid_text(encode_cef(event, vendor="Acme", product="AppSec", version="1"))
    valid_text(encode_leef(event, vendor="Acme", product="AppSec", version="1"))
