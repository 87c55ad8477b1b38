"""The Sentinel sink's OCSF rows (`event_format: ocsf`), and both formats' rows against the
stream declarations of deploy/azure/sentinel.json as the stand-in checks them (Azure's way: an
undeclared column dropped, a value that misses its declared type nulled and logged). A column
added to the sink and not to the template, or a value of another type than declared, fails here.
The OCSF table's other columns are the DCR transformation's (`extend x = toint(ocsf.x)` ...):
each path it reads is checked against the records the sink sent, its value of the column's type.
Every OCSF record that reaches the stand-in is validated against OCSF 1.7.0 (pydantic-ocsf)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest

from siemgate.forwarders.formats.ocsf import OcsfSettings
from siemgate.forwarders.normalize import NormalizedEvent
from siemgate.forwarders.sinks.registry import build_settings
from siemgate.forwarders.sinks.sentinel import (
    COLUMNS,
    DEFAULT_STREAM,
    FIELD_MAX_BYTES,
    OCSF_COLUMNS,
    OCSF_STREAM,
    SentinelSink,
    SentinelSinkSettings,
)
from siemgate.record import Kind, Severity
from siemgate_standins.sentinel import (
    DEFAULT_TENANT,
    AppRegistration,
    DataCollectionRule,
    SentinelStandIn,
    conforms,
    stream_declarations,
)
from tests.deploy.support import ROOT
from tests.deploy.test_azure import transformation
from tests.forwarders.ocsf_schema import validate
from tests.forwarders.test_ocsf_format import WAF, normalized
from tests.forwarders.test_sentinel_sink import CLIENT, DCR, SECRET

pytestmark = pytest.mark.anyio

TEMPLATE = ROOT / "deploy" / "azure" / "sentinel.json"
ODD = "ルール\u202e" + "A" * 3_000


def declared() -> dict[str, dict[str, str]]:
    return stream_declarations(json.loads(TEMPLATE.read_text()))


def extended() -> dict[str, tuple[str, str | None]]:
    """The OCSF flow's extended columns: column -> (the path it reads, its conversion's type)."""
    template = json.loads(TEMPLATE.read_text())
    (rule,) = [r for r in template["resources"] if r["type"] == "Microsoft.Insights/dataCollectionRules"]
    (flow,) = [f for f in rule["properties"]["dataFlows"] if f["streams"] == [OCSF_STREAM]]
    return transformation(flow["transformKql"])[0]


def table_row(row: dict[str, Any]) -> dict[str, Any]:
    """The row as the DCR's transformation writes it to SiemgateOcsf_CL: each extended column
    the value at its path (checked to be of the column's type, so the conversion keeps it)."""
    table = dict(row)
    for name, (path, converted) in extended().items():
        value: Any = row
        for step in path.split("."):
            value = value.get(step) if isinstance(value, dict) else None
        assert conforms(value, converted or "dynamic"), f"{path} = {value!r} is no {converted}"
        if value is not None:
            table[name] = value
    return table


def varied() -> list[NormalizedEvent]:
    """Events of every shape the format maps differently (each id distinct)."""
    shapes: list[tuple[object, Severity, Kind]] = [
        (WAF, "high", "event"),
        ({**WAF, "severity": "critical", "method": "PATCH", "mitre_tactic": "TA0001"}, "high", "event"),
        ({"source_ip": "2001:db8::7", "action": "log", "message": "ü", "severity": "low"}, "low", "event"),
        ({"source_ip": "not an ip", "url": "::not a url::", "method": "BREW", "action": "weird"}, "medium", "event"),
        ({"timestamp": "2025-02-30T10:00:00Z", "action": "allow", "url": "http://[::1]:8080/x?y"}, "unknown", "event"),
        ({"timestamp": 1795899598123, "rule_id": 10**30, "asset": ODD, "message": ODD, "rule": ODD}, "high", "event"),
        ({"timestamp": "1960-01-01T00:00:00Z", "action": "blocked"}, "high", "event"),
        ({"message": "test"}, "unknown", "test"),
        ({"confirm": "https://vendor.example/c"}, "unknown", "confirmation"),
        ([1, "two", {"three": 3}], "unknown", "event"),
        ("a bare string", "unknown", "event"),
        ({}, "unknown", "event"),
        # year 1 (the C library's %Y wrote `1`: no datetime for Azure; the sinks' sweep)
        ({"timestamp": "0001-01-01T00:00:00Z"}, "high", "event"),
    ]
    return [normalized(event, severity=severity, kind=kind, event_id=f"r-{i}")
            for i, (event, severity, kind) in enumerate(shapes)]


@pytest.fixture
async def azure() -> AsyncIterator[SentinelStandIn]:
    """The stand-in with the DCR as deploy/azure/sentinel.json declares it."""
    async with SentinelStandIn(apps=[AppRegistration(CLIENT, secrets=(SECRET,))],
                               rules=[DataCollectionRule(DCR, declared())]) as server:
        yield server


def sink_for(azure: SentinelStandIn, **options: Any) -> SentinelSink:
    entry = {"name": "sentinel", "endpoint": azure.url, "dcr_immutable_id": DCR, "tenant_id": DEFAULT_TENANT,
             "client_id": CLIENT, "client_secret": SECRET, "authority_host": azure.url, **options}
    settings = build_settings("sentinel", entry, {}, "sinks[0]")
    assert isinstance(settings, SentinelSinkSettings)
    return SentinelSink(settings)


def clean(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in ("_dcr", "_stream")}


def iso_of_ms(epoch_ms: int) -> str:
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=epoch_ms)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


@pytest.mark.parametrize("event_class", ["http_activity", "detection_finding"])
async def test_ocsf_rows_reach_their_stream_whole_and_valid(azure: SentinelStandIn, event_class: str) -> None:
    sink = sink_for(azure, event_format="ocsf",
                    ocsf={"event_class": event_class, "product_name": "AppSec WAF", "vendor_name": "Acme"})
    batch = varied()
    result = await sink.send(batch)
    await sink.close()
    assert not result.retry and not result.rejected
    assert [c.path for c in azure.calls()] == [f"/dataCollectionRules/{DCR}/streams/{OCSF_STREAM}"]
    assert azure.log_errors() == [] and [c.undeclared for c in azure.calls()] == [0], "rows drift from the template"
    rows = [clean(r) for r in azure.rows(OCSF_STREAM)]
    assert [r["metadata_uid"] for r in rows] == [f"r-{i}" for i in range(len(batch))]
    found: set[str] = set()
    for row, event in zip(rows, batch, strict=True):
        record = row["ocsf"]
        validate(record)  # OCSF 1.7.0, by pydantic-ocsf and the strict walk
        assert record["class_uid"] == (4002 if event_class == "http_activity" else 2004)
        assert record["metadata"]["uid"] == row["metadata_uid"] == event.id
        assert record["metadata"]["product"] == {"name": "AppSec WAF", "vendor_name": "Acme"}
        assert set(row) == set(OCSF_COLUMNS) - {"unmapped"}, "the record once, whole, with its time and id"
        # each column the transformation extends is the record's top-level field of that name
        table = table_row(row)
        for column in extended():
            assert table.get(column) == record.get(column), column
            if column in record:
                found.add(column)
        assert row["TimeGenerated"] == iso_of_ms(record["time"])
        # the vendor's event as the ingest received it (read by the stand-in's JSON parser, as the row)
        vendor = orjson.loads(event.event_bytes())
        assert record["unmapped"] == (vendor if isinstance(vendor, dict) else {"value": vendor})
    # every path the transformation reads is one the records have (a renamed field fails here)
    one_class_only = {"http_activity": {"finding_info", "evidences"},
                      "detection_finding": {"src_endpoint", "dst_endpoint", "http_request", "firewall_rule"}}
    assert found == set(extended()) - one_class_only[event_class]
    rows = [table_row(row) for row in rows]
    first = rows[0]
    if event_class == "http_activity":
        assert (first["class_uid"], first["activity_id"], first["type_uid"]) == (4002, 6, 400206)
        assert first["severity_id"] == 4
        assert first["src_endpoint"] == {"ip": "203.0.113.9"} and first["dst_endpoint"] == {"hostname": "shop-frontend"}
        assert first["http_request"]["http_method"] == "POST" and first["is_alert"] is True
        assert first["firewall_rule"] == {"name": "SQL injection", "uid": "942100"}
        assert "evidences" not in first
    else:
        assert (first["class_uid"], first["activity_id"], first["type_uid"]) == (2004, 1, 200401)
        assert first["evidences"][0]["src_endpoint"] == {"ip": "203.0.113.9"} and "src_endpoint" not in first
        assert first["finding_info"]["analytic"]["uid"] == "942100"
    assert rows[1]["severity_id"] == 5 and rows[1]["severity"] == "Critical"
    assert rows[7]["is_alert"] is False  # the vendor's test message
    assert rows[6]["TimeGenerated"] == "1960-01-01T00:00:00.000000Z"
    assert rows[12]["TimeGenerated"] == "0001-01-01T00:00:00.000000Z"


@pytest.mark.parametrize("event_class", ["http_activity", "detection_finding"])
async def test_a_row_over_64_kb_sends_the_vendors_event_apart(azure: SentinelStandIn, event_class: str) -> None:
    """Azure truncates a field over 64 KB, perhaps before the transformation reads `ocsf`: a
    record with a large vendor event keeps `ocsf` (without `unmapped`) and the columns read from
    it whole, and its vendor's event goes in the column `unmapped`, the only one Azure may cut.
    Rows under the limit (the ~3 KB one here) stay as they are, the vendor's event in `ocsf`."""
    sink = sink_for(azure, event_format="ocsf", ocsf={"event_class": event_class})
    sample = "' OR 1=1 -- \u00e9\"\\ é" * 10_000  # ~230 KB as JSON: escapes, non-ASCII
    headers = [{"n": f"h{i}", "v": "x" * 900} for i in range(80)]
    over = {**WAF, "payload_sample": sample, "details": {"headers": headers}}
    just_under = {**WAF, "payload_sample": "y" * (FIELD_MAX_BYTES - 2_000)}
    just_over = {**WAF, "payload_sample": "y" * (FIELD_MAX_BYTES + 10)}
    batch = [normalized(event, event_id=f"big-{i}") for i, event in enumerate([over, WAF, just_under, just_over])]
    result = await sink.send(batch)
    await sink.close()
    assert not result.retry and not result.rejected
    assert azure.log_errors() == [] and {c.undeclared for c in azure.calls()} == {0}
    rows = {r["metadata_uid"]: clean(r) for r in azure.rows(OCSF_STREAM)}
    assert set(rows) == {e.id for e in batch}
    for event in batch:
        row, sent = rows[event.id], sink.encode(event)
        assert row == orjson.loads(sent) == sink.row(event), "nothing nulled or dropped on the way"
        vendor = orjson.loads(event.event_bytes())
        record = row["ocsf"]
        validate(record)
        assert record["metadata"]["uid"] == event.id
        if len(orjson.dumps({**record, "unmapped": vendor})) > FIELD_MAX_BYTES:
            assert row["unmapped"] == vendor and "unmapped" not in record
            assert len(orjson.dumps(record)) < 4_000, "the record without the vendor's event is small"
        else:
            assert record["unmapped"] == vendor and "unmapped" not in row
        assert len(sent) <= FIELD_MAX_BYTES or "unmapped" in row
        table = table_row(row)
        for column in extended():
            assert table.get(column) == record.get(column), column
    assert "unmapped" in rows["big-0"] and "unmapped" in rows["big-3"]
    assert "unmapped" not in rows["big-1"] and "unmapped" not in rows["big-2"]


@pytest.mark.parametrize("event_class", ["http_activity", "detection_finding"])
async def test_a_record_with_long_texts_of_its_own_keeps_ocsf_under_64_kb(azure: SentinelStandIn,
                                                                         event_class: str) -> None:
    """Found by the sinks' sweep: with the vendor's event apart, `ocsf` itself passed 64 KB when
    the record holds a long text (a URL with a 30 KB query is in it twice, `url_string` and
    `query_string`; a 70 KB message; a long rule), so Azure's cut reached `ocsf` after all. Its
    longest strings are cut (ending with an ellipsis) until it fits; the vendor's event, the
    whole texts in it, is in `unmapped`; the record is still valid OCSF."""
    sink = sink_for(azure, event_format="ocsf", ocsf={"event_class": event_class})
    url = "https://shop.example/search?q=" + "%27%20OR%201%3D1--" * 1_900
    long_url = {**WAF, "url": url}
    long_texts = {**WAF, "url": url, "message": "\u00e9\"\n" * 25_000, "rule_name": "R" * 40_000}
    batch = [normalized(event, event_id=f"long-{i}") for i, event in enumerate([long_url, long_texts, WAF])]
    result = await sink.send(batch)
    await sink.close()
    assert not result.retry and not result.rejected
    assert azure.log_errors() == [] and {c.undeclared for c in azure.calls()} == {0}
    rows = {r["metadata_uid"]: clean(r) for r in azure.rows(OCSF_STREAM)}
    for event in batch[:2]:
        row = rows[event.id]
        assert row == orjson.loads(sink.encode(event)) == sink.row(event)
        record = row["ocsf"]
        assert len(orjson.dumps(record)) <= FIELD_MAX_BYTES
        validate({**record, "unmapped": row["unmapped"]})
        assert row["unmapped"] == orjson.loads(event.event_bytes()), "the vendor's event, whole"
        request = record["http_request"] if event_class == "http_activity" else record["evidences"][0]["http_request"]
        assert request["url"]["url_string"].startswith("https://shop.example/search?q=%27%20OR")
        assert request["url"]["url_string"].endswith("\u2026") and request["url"]["hostname"] == "shop.example"
        table = table_row(row)
        for column in extended():
            assert table.get(column) == record.get(column), column
    assert rows["long-2"]["ocsf"]["http_request" if event_class == "http_activity" else "evidences"] == (
        orjson.loads(sink.encode(batch[2]))["ocsf"]["http_request" if event_class == "http_activity" else "evidences"])
    assert "unmapped" not in rows["long-2"], "a row under 64 KB is as it was"


async def test_asim_rows_fit_the_template_too(azure: SentinelStandIn) -> None:
    sink = sink_for(azure)
    batch = varied()
    result = await sink.send(batch)
    await sink.close()
    assert not result.retry and not result.rejected
    assert [c.path for c in azure.calls()] == [f"/dataCollectionRules/{DCR}/streams/{DEFAULT_STREAM}"]
    assert azure.log_errors() == [] and [c.undeclared for c in azure.calls()] == [0]
    rows = [clean(r) for r in azure.rows(DEFAULT_STREAM)]
    assert [r["EventId"] for r in rows] == [e.id for e in batch]
    assert all(set(r) <= set(COLUMNS) for r in rows)
    assert rows == [orjson.loads(sink.encode(e)) for e in batch], "nothing nulled or dropped on the way"


async def test_the_stand_in_nulls_and_logs_what_misses_the_declaration(azure: SentinelStandIn) -> None:
    """Azure's way with a row that does not fit its stream: 204, undeclared columns dropped,
    values of another type null (DCRLogErrors); so a drifting sink shows up in `log_errors`."""
    sink = sink_for(azure, event_format="ocsf")
    token = await sink.tokens.token()
    await sink.close()
    rows = [{"TimeGenerated": "not a time", "metadata_uid": 17, "ocsf": "anything goes in dynamic",
             "class_uid": 4002, "extra_column": "dropped"}]
    async with httpx.AsyncClient() as client:
        answer = await client.post(f"{azure.url}/dataCollectionRules/{DCR}/streams/{OCSF_STREAM}",
                                   params={"api-version": "2023-01-01"}, json=rows,
                                   headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 204
    (row,) = azure.rows(OCSF_STREAM)
    assert clean(row) == {"ocsf": "anything goes in dynamic"}
    assert sorted((e.column, e.column_type) for e in azure.log_errors()) == [
        ("TimeGenerated", "datetime"), ("metadata_uid", "string")]
    (call,) = azure.calls()
    assert (call.type_errors, call.undeclared) == (2, 2)


async def test_the_stream_follows_the_format_unless_named(azure: SentinelStandIn) -> None:
    assert sink_for(azure).settings.stream_name == DEFAULT_STREAM
    ocsf = sink_for(azure, event_format="ocsf")
    assert ocsf.settings.stream_name == OCSF_STREAM and ocsf.settings.ocsf == OcsfSettings()
    assert sink_for(azure, event_format="ocsf", stream="Custom-MyOcsf").settings.stream_name == "Custom-MyOcsf"
    message = await ocsf.healthcheck()
    await ocsf.close()
    assert f"stream {OCSF_STREAM}" in message and not azure.rows()
    with pytest.raises(Exception, match="event_format"):
        sink_for(azure, event_format="cef")
