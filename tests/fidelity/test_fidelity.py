"""The fidelity corpus (README.md here): every hostile or odd vendor event of corpus.json
through every format, each output byte for byte as the reviewed golden file, and parsed back
by an independent reader where one exists here: rsyslog (RFC 5424, RFC 3164), the Splunk HEC
stand-in, the Elasticsearch stand-in with the template `siemgate es-setup` installs (its
mapping checks: dates, `ip`, depth), pydantic-ocsf (OCSF 1.7.0). One receiver per format,
the whole corpus at once."""

from __future__ import annotations

import io
import json
import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from siemgate.config import parse_config
from siemgate.forwarders.formats.ocsf import ocsf_event
from siemgate.forwarders.formats.syslog import SYSLOG_SEVERITY
from siemgate.forwarders.normalize import NormalizedEvent
from siemgate.forwarders.sinks.base import SendResult
from siemgate.forwarders.sinks.elasticsearch import ElasticsearchSink, document_id
from siemgate.forwarders.sinks.elasticsearch_setup import run_setup
from siemgate.forwarders.sinks.splunk_hec import SplunkHecSink
from siemgate_standins.elasticsearch import ElasticsearchStandIn
from siemgate_standins.splunk_hec import HecToken, SplunkHecStandIn
from tests.fidelity.corpus import (
    GOLDEN,
    HOSTNAME,
    INTEGRATION,
    RECEIVED_AT,
    REGENERATE,
    cases,
    es_settings,
    hec_settings,
    normalized,
    outputs,
    vendor_event,
)
from tests.forwarders.ocsf_schema import validate
from tests.forwarders.rsyslog import Rsyslog, running_rsyslog
from tests.forwarders.test_syslog_formats import parse_sd
from tests.forwarders.test_syslog_sink import open_sink

pytestmark = pytest.mark.anyio

EVENTS = len(cases())
LOCAL0 = 16


def canonical(value: object) -> bytes:
    """JSON in one spelling, to compare values whatever their key order."""
    if _fits(value):
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def _fits(value: object) -> bool:
    try:
        orjson.dumps(value)
    except TypeError:  # an integer beyond 64 bits
        return False
    return True


def test_the_corpus_is_the_size_and_kind_the_issue_asks_for() -> None:
    names = [case.case for case in cases()]
    assert 45 <= len(names) == len(set(names)) <= 70
    events = [vendor_event(case) for case in cases()]
    assert any("\ufffd" in str(e) for e in events) and b"\\ud83d" in b"".join(bytes(c.event) for c in cases())


@pytest.mark.parametrize("index", range(EVENTS), ids=[case.case for case in cases()])
def test_each_case_means_what_it_says(index: int) -> None:
    """The normalized view of each event (the normalizer's reading of a hostile value)."""
    case, event = cases()[index], normalized()[index]
    assert event.integration == INTEGRATION and event.received_at == RECEIVED_AT
    assert event.event == vendor_event(case)
    for name, wanted in case.expect.items():
        assert getattr(event, name) == (RECEIVED_AT if wanted == "RECEIVED" else wanted), name


@pytest.mark.parametrize("name", sorted(outputs()))
def test_output_is_the_reviewed_golden_file(name: str) -> None:
    golden = (GOLDEN / name).read_bytes()
    made = outputs()[name]
    if made != golden:
        lines = [i for i, (a, b) in enumerate(zip(made.splitlines(), golden.splitlines(), strict=False)) if a != b]
        pytest.fail(f"{name} differs from tests/fidelity/golden/{name} (first differing lines {lines[:5]}, cases "
                    f"{[cases()[i].case for i in lines[:5] if i < EVENTS]}): if the change is meant, run "
                    f"`{REGENERATE}`, review the diff line by line and commit it")


# -- what each format says, from the normalized view alone (the spec, not the encoder) --------


def one_line(text: str) -> str:
    return re.sub(r"[\x00-\x1f\x7f]", " ", text)


def printusascii(text: str, limit: int) -> str:
    return re.sub(r"[^\x21-\x7e]", "_", text[:limit]) or "-"


def expected_msgid(event: NormalizedEvent) -> str:
    if event.kind != "event":
        return event.kind.upper()
    return printusascii(event.event_type, 32) if event.event_type else "-"


def expected_sd(event: NormalizedEvent) -> dict[str, str]:
    params = {"id": event.id, "kind": event.kind, "integration": event.integration, "severity": event.level,
              "rule": event.rule, "rule_id": event.rule_id, "source_ip": event.source_ip,
              "timestamp_invalid": event.timestamp_invalid}
    return {key: one_line(value) for key, value in params.items() if value is not None}


async def send_to_rsyslog(tmp_path: Path, wire_format: str) -> list[dict[str, Any]]:
    with running_rsyslog(tmp_path / "rsyslog") as rsyslog:
        return await _send(rsyslog, wire_format)


async def _send(rsyslog: Rsyslog, wire_format: str) -> list[dict[str, Any]]:
    async with open_sink(address=f"tcp://127.0.0.1:{rsyslog.tcp_port}", hostname=HOSTNAME, format=wire_format,
                         product_version="1.0.0") as sink:
        assert await sink.send(list(normalized())) == SendResult()
    received = await rsyslog.wait_for(EVENTS, timeout=30)
    assert len(received) == EVENTS
    return received


async def test_rfc5424_as_rsyslog_parses_it(tmp_path: Path) -> None:
    """rsyslog's RFC 5424 parser: PRI, HOSTNAME, APP-NAME, MSGID, STRUCTURED-DATA (its SD
    params read back by RFC 5424's escaping) and MSG (BOM + the event, read by the standard
    library's JSON parser) are what siemgate meant, for every event of the corpus."""
    received = await send_to_rsyslog(tmp_path, "rfc5424")
    by_id = {event.id: event for event in normalized()}
    seen = []
    for message in received:
        sd, rest = parse_sd(message["sd"])
        assert rest == "" and list(sd) == ["siemgate@32473"], message["sd"]
        event = by_id[sd["siemgate@32473"]["id"]]
        seen.append(event.id)
        assert sd["siemgate@32473"] == expected_sd(event)
        assert (message["version"], message["hostname"], message["app_name"]) == ("1", HOSTNAME, "siemgate")
        assert message["msgid"] == expected_msgid(event)
        assert int(message["pri"]) == LOCAL0 * 8 + SYSLOG_SEVERITY[event.level]
        # TIMESTAMP: the event's (or the fallback); NILVALUE from the year 2100 on, which
        # rsyslog cannot read (this corpus found it: the whole header was misread).
        stamp = event.timestamp if event.timestamp < "2100" else "-"
        assert message["raw"].split(" ", 2)[1] == stamp
        assert message["msg"].startswith("\ufeff")
        assert canonical(json.loads(message["msg"][1:])) == canonical(event.event)
    assert Counter(seen) == Counter(list(by_id))


async def test_rfc3164_as_rsyslog_parses_it(tmp_path: Path) -> None:
    """rsyslog's RFC 3164 parser: PRI, HOSTNAME (the first label), TAG `siemgate:` and the
    event as JSON after it, for every event; matched to the events by their content."""
    received = await send_to_rsyslog(tmp_path, "rfc3164")
    wanted = Counter((LOCAL0 * 8 + SYSLOG_SEVERITY[e.level], canonical(e.event)) for e in normalized())
    got: Counter[tuple[int, bytes]] = Counter()
    for message in received:
        assert (message["hostname"], message["tag"]) == ("fwd-01", "siemgate:")
        got[(int(message["pri"]), canonical(json.loads(message["msg"])))] += 1
        stamp = message["raw"].split(">", 1)[1][:15]
        datetime.strptime(stamp.replace("  ", " 0"), "%b %d %H:%M:%S")  # an RFC 3164 TIMESTAMP
    assert got == wanted


HEC_TOKEN = "11111111-2222-3333-4444-555555555555"


async def test_hec_events_as_the_hec_stand_in_indexes_them() -> None:
    """The HEC stand-in validates each envelope as HEC does (time, host, fields) and indexes
    it: every event is there, at its own time, with its level and the vendor's event."""
    async with SplunkHecStandIn(tokens=[HecToken(HEC_TOKEN, ack=True)]) as hec:
        sink = SplunkHecSink(hec_settings(hec.url, HEC_TOKEN))
        try:
            result = await sink.send(list(normalized()))
        finally:
            await sink.close()
        assert not result.retry and not result.rejected, result
        indexed = hec.events()
    assert len(indexed) == EVENTS
    by_id = {event.id: event for event in normalized()}
    for record in indexed:
        event = by_id[record["event"]["id"]]
        assert record["time"] == pytest.approx(datetime.fromisoformat(event.timestamp).timestamp(), abs=1e-6)
        assert record["fields"]["severity"] == event.level and record["event"]["severity"] == event.level
        assert record["source"] == INTEGRATION and record["sourcetype"] == "siemgate:event"
        # The stand-in reads an integer beyond 64 bits as a double (as most JSON readers do; the
        # bytes sent are exact: golden/hec.ndjson).
        assert canonical(record["event"]["vendor_event"]) == canonical(as_doubles(event.event))
    assert Counter(r["event"]["id"] for r in indexed) == Counter(list(by_id))


def as_doubles(value: object) -> object:
    """`value` with each integer beyond 64 bits as the nearest double."""
    if isinstance(value, dict):
        return {k: as_doubles(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_doubles(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**64:
        return float(value)
    return value


ES_KEY = ("fidelity-id", "fidelity-secret")


async def test_ecs_documents_as_the_elasticsearch_stand_in_maps_them() -> None:
    """`siemgate es-setup`'s template installed, then the corpus through the sink: the stand-in
    checks each document against the mappings (dates, `ip`, keyword lengths, objects) as
    Elasticsearch does. Every document is taken, with its own @timestamp."""
    async with ElasticsearchStandIn(api_keys=dict([ES_KEY])) as es:
        config = parse_config(f'sinks: [{{name: es, type: elasticsearch, url: "{es.url}", '
                              f'api_key: "{":".join(ES_KEY)}"}}]', {})
        out = io.StringIO()
        assert await run_setup(config, (), out) == 0, out.getvalue()
        settings = es_settings(es.url, api_key=":".join(ES_KEY))
        sink = ElasticsearchSink(settings)
        try:
            result = await sink.send(list(normalized()))
        finally:
            await sink.close()
        refused = {normalized()[i].id: reason for i, reason in result.rejected}
        assert not refused, refused
        assert not result.retry, result
        documents = es.documents(settings.target)
    # The `_id`: the event's id (its SHA-256 when over Elasticsearch's 512 bytes).
    by_id = {document_id(event.id): event for event in normalized()}
    assert sorted(documents) == sorted(by_id)
    for ident, doc in documents.items():
        assert doc["@timestamp"] == by_id[ident].timestamp
        assert doc["event"]["id"] == by_id[ident].id


@pytest.mark.parametrize("event_class", ["http_activity", "detection_finding"])
def test_ocsf_records_are_valid_ocsf(event_class: str) -> None:
    """pydantic-ocsf's models and schema (tests/forwarders/ocsf_schema.py), for every event."""
    from siemgate.forwarders.formats.ocsf import OcsfSettings

    settings = OcsfSettings(event_class=event_class)  # type: ignore[arg-type]
    for event in normalized():
        record = ocsf_event(event, settings)
        validate(record)
        assert record["metadata"]["uid"] == event.id
        # the instant's milliseconds, exactly (integer arithmetic: 9999-12-31T23:59:59.999999 stays in 9999)
        moment = datetime.fromisoformat(event.timestamp)
        assert record["time"] == (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
        assert canonical(record.get("unmapped", {})) == canonical(event.event)


def depth(value: object) -> int:
    """Object nesting as Elasticsearch's `flattened` counts it (arrays add no level)."""
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return max((depth(v) for v in value), default=0)
    return 0


def test_ecs_documents_within_what_elasticsearch_refuses_beyond_the_stand_in() -> None:
    """What real Elasticsearch refuses and the stand-in does not check: an `ip` with a zone
    (`fe80::1%eth0`: not an IP string literal), an object under `flattened` deeper than its
    `depth_limit` (20). Checked on the documents the sink writes."""
    sink = ElasticsearchSink(es_settings())
    refused = []
    for event in normalized():
        doc = sink.document(event, "2026-12-07T15:00:01.000Z")
        if "%" in str(doc.get("source", {}).get("ip", "")):
            refused.append((event.id, "source.ip with a zone"))
        if depth(doc.get("siemgate", {}).get("event")) > 20:
            refused.append((event.id, "siemgate.event deeper than 20"))
    assert not refused, refused
