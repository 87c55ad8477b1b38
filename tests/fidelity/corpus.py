"""The fidelity corpus (tests/fidelity/README.md): hostile and odd vendor events, read as the
ingest reads them and formatted by every encoder a sink uses, with fixed settings and clocks
so that the output is the same on every machine (the golden files).

`cases()` reads corpus.json keeping each event's bytes as written (msgspec.Raw: numbers,
escapes and a lone surrogate as the sender wrote them); `records()` passes them through the
ingest's real parser as one batch; `normalized()` through the forwarders' normalizer;
`outputs()` gives each format's bytes, what `python -m tests.fidelity.regen` writes to
golden/ and test_fidelity.py compares with it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import msgspec
import orjson

from siemgate.config import Config, parse_config
from siemgate.forwarders.formats.ocsf import ocsf_event
from siemgate.forwarders.normalize import NormalizedEvent, Normalizer
from siemgate.forwarders.sinks.elasticsearch import ElasticsearchSink, ElasticsearchSinkSettings
from siemgate.forwarders.sinks.registry import build_settings
from siemgate.forwarders.sinks.splunk_hec import SplunkHecSink, SplunkHecSinkSettings
from siemgate.forwarders.sinks.syslog import SyslogSinkSettings, build_encoder
from siemgate.ingest.batch import BatchParser
from siemgate.record import Record, dumps, loads, readable

HERE = Path(__file__).parent
CORPUS = HERE / "corpus.json"
GOLDEN = HERE / "golden"
REGENERATE = "python -m tests.fidelity.regen"

INTEGRATION = "fidelity"
RECEIVED_AT = "2026-12-07T15:00:00.000000Z"  # every record's receive time (the fallback time)
INGESTED = "2026-12-07T15:00:01.000Z"  # the Elasticsearch sink's event.ingested
BATCH = "fidelity-batch"
PEER = "198.18.0.1"
HOSTNAME = "fwd-01.example.net"
HEC_URL = "http://127.0.0.1:8088"
HEC_TOKEN = "00000000-0000-0000-0000-000000000000"
ES_URL = "http://127.0.0.1:9200"

CONFIG_TEXT = f"""
integrations:
  - name: {INTEGRATION}
    auth: {{header: X-Api-Key, values: [fidelity-key-0123456789]}}
"""


class Case(msgspec.Struct, forbid_unknown_fields=True):
    case: str
    event: msgspec.Raw
    # What the normalized view must say (NormalizedEvent's field names); "RECEIVED" for the
    # receive time.
    expect: dict[str, Any] = msgspec.field(default_factory=dict)


@functools.cache
def cases() -> tuple[Case, ...]:
    """The cases, each event's bytes exactly as corpus.json has them. (msgspec refuses a lone
    surrogate escape: the file is read as siemgate reads it, `\\ufffd` in its place at the same
    length, and each event's bytes are taken from the file at the offsets found there.)"""
    data = CORPUS.read_bytes()
    reading = readable(data)
    found = []
    at = 0
    for case in msgspec.json.decode(reading, type=list[Case]):
        raw = bytes(case.event)
        at = reading.index(raw, at)
        found.append(Case(case.case, msgspec.Raw(data[at : at + len(raw)]), case.expect))
        at += len(raw)
    return tuple(found)


@functools.cache
def config() -> Config:
    return parse_config(CONFIG_TEXT, {})


def vendor_event(case: Case) -> object:
    """The event as siemgate reads it (a lone surrogate as U+FFFD), by the standard library:
    what every format must carry."""
    return loads(readable(bytes(case.event)))


@functools.cache
def records() -> tuple[Record, ...]:
    """The corpus as one batch through the ingest's parser, its receive time and batch id fixed."""
    cfg = config()
    integration = cfg.integration(INTEGRATION)
    parser = BatchParser(integration, "fidelity", cfg.normalize.scheme_for(INTEGRATION))
    body = b"[" + b",\n".join(bytes(case.event) for case in cases()) + b"]"
    batch = parser.parse(body, peer=PEER, max_events=len(cases()))
    head = orjson.loads(batch.records[0].value[: batch.records[0].value.index(b',"event":')] + b"}")
    fixed = []
    for record in batch.records:
        value = record.value.replace(f'"received_at":"{head["received_at"]}"'.encode(),
                                     f'"received_at":"{RECEIVED_AT}"'.encode(), 1)
        value = value.replace(f'"batch":"{batch.id}"'.encode(), f'"batch":"{BATCH}"'.encode(), 1)
        fixed.append(record._replace(value=value))
    return tuple(fixed)


@functools.cache
def normalized() -> tuple[NormalizedEvent, ...]:
    normalizer = Normalizer(config().normalize)
    return tuple(normalizer.normalize(record.value) for record in records())


def syslog_settings(**options: Any) -> SyslogSinkSettings:
    built = build_settings("syslog", {"name": "soc", "address": "tcp://127.0.0.1:514", "hostname": HOSTNAME,
                                      "product_version": "1.0.0", **options}, {}, "sinks[0]")
    assert isinstance(built, SyslogSinkSettings)
    return built


def hec_settings(url: str = HEC_URL, token: str = HEC_TOKEN) -> SplunkHecSinkSettings:
    built = build_settings("splunk_hec", {"name": "splunk", "url": url, "token": token}, {}, "sinks[0]")
    assert isinstance(built, SplunkHecSinkSettings)
    return built


def es_settings(url: str = ES_URL, **options: Any) -> ElasticsearchSinkSettings:
    built = build_settings("elasticsearch", {"name": "es", "url": url, **options}, {}, "sinks[0]")
    assert isinstance(built, ElasticsearchSinkSettings)
    return built


def _syslog(wire_format: str) -> Callable[[NormalizedEvent], bytes]:
    encode = build_encoder(syslog_settings(), wire_format)  # type: ignore[arg-type]
    return lambda event: encode(event) + b"\n"  # no encoder writes an LF: one message a line


def _hec() -> Callable[[NormalizedEvent], bytes]:
    return SplunkHecSink(hec_settings()).encode


def _ecs() -> Callable[[NormalizedEvent], bytes]:
    sink = ElasticsearchSink(es_settings())
    return lambda event: sink.encode(event, INGESTED)


def _ocsf() -> Callable[[NormalizedEvent], bytes]:
    return lambda event: dumps(ocsf_event(event)) + b"\n"


# Each format's golden file and how one event becomes its line(s).
FORMATS: Mapping[str, Callable[[], Callable[[NormalizedEvent], bytes]]] = {
    "rfc5424.log": lambda: _syslog("rfc5424"),
    "rfc3164.log": lambda: _syslog("rfc3164"),
    "cef.log": lambda: _syslog("cef"),
    "leef.log": lambda: _syslog("leef"),
    "hec.ndjson": _hec,
    "ecs-bulk.ndjson": _ecs,
    "ocsf.ndjson": _ocsf,
}


def outputs() -> dict[str, bytes]:
    """Each golden file's content: the corpus through that format, one event after another."""
    events = normalized()
    found = {}
    for name, make in FORMATS.items():
        encode = make()
        found[name] = b"".join(encode(event) for event in events)
    return found
