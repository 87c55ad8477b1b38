"""deploy/azure/sentinel.json, the ARM template of the Sentinel sink's Azure side, agrees with
the sink: for each event format (asim, ocsf) the DCR's stream declaration has exactly the
columns (and types) of the rows the sink sends, its transformation outputs only columns its
custom table has (with the same types), and the names (stream, table, output stream) are the
ones the sink and README use. (tests/forwarders/test_sentinel_sink.py sends rows of both formats
to the stand-in configured from this template: no value may miss its declared type.)"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import pytest

from siemgate.forwarders.sinks.sentinel import (
    COLUMNS,
    DEFAULT_STREAM,
    OCSF_COLUMNS,
    OCSF_STREAM,
    OCSF_TABLE_COLUMNS,
    STREAMS,
)
from siemgate_standins.sentinel import stream_declarations
from tests.deploy.support import ROOT

TEMPLATE = ROOT / "deploy" / "azure" / "sentinel.json"
TABLE = "SiemgateAlerts_CL"
OCSF_TABLE = "SiemgateOcsf_CL"
# event format -> (stream, its table's variable, the table, the sink's columns, the table's columns)
FORMATS: dict[str, tuple[str, str, str, Mapping[str, str], Mapping[str, str]]] = {
    "asim": (DEFAULT_STREAM, "tableName", TABLE, COLUMNS, COLUMNS),
    "ocsf": (OCSF_STREAM, "ocsfTableName", OCSF_TABLE, OCSF_COLUMNS, OCSF_TABLE_COLUMNS),
}
# KQL's conversion function of each Log Analytics type (a dynamic column takes the value as is).
CONVERSIONS: Mapping[str, str] = {"toint": "int", "tolong": "long", "tostring": "string", "tobool": "boolean",
                                  "toreal": "real", "todatetime": "datetime"}


def template() -> dict[str, Any]:
    value = json.loads(TEMPLATE.read_text())
    assert isinstance(value, dict)
    return value


def resource(kind: str) -> dict[str, Any]:
    (found,) = [r for r in template()["resources"] if r["type"] == kind]
    return found  # type: ignore[no-any-return]


def table_named(variable: str) -> dict[str, Any]:
    (found,) = [r for r in template()["resources"] if r["type"] == "Microsoft.OperationalInsights/workspaces/tables"
                and r["properties"]["schema"]["name"] == f"[variables('{variable}')]"]
    assert found["name"] == f"[format('{{0}}/{{1}}', parameters('workspaceName'), variables('{variable}'))]"
    return found  # type: ignore[no-any-return]


def columns(declared: list[dict[str, str]]) -> dict[str, str]:
    names = [c["name"] for c in declared]
    assert len(names) == len(set(names)), "a column declared twice"
    return {c["name"]: c["type"] for c in declared}


def transformation(kql: str) -> tuple[dict[str, tuple[str, str | None]], list[str]]:
    """The forms this template uses: `source | project a, b, ...`, or `source | extend x =
    toint(ocsf.x), y = ocsf.y, ... | project a, x, ...`. Returns ({extended column: (the path
    it reads, its conversion's type or None for as is)}, the projected columns)."""
    match = re.fullmatch(r"\s*source\s*(?:\|\s*extend\s+(.+?)\s*)?\|\s*project\s+(.+?)\s*", kql, re.S)
    assert match, f"transformKql is not `source | [extend ... |] project ...`: {kql!r}"
    extended: dict[str, tuple[str, str | None]] = {}
    for part in (match.group(1) or "").split(",") if match.group(1) else ():
        name, _, expression = (p.strip() for p in part.partition("="))
        found = re.fullmatch(r"(?:(\w+)\()?([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+)(\))?", expression)
        assert found and bool(found.group(1)) == bool(found.group(3)), f"unexpected extend: {part!r}"
        assert found.group(1) is None or found.group(1) in CONVERSIONS, f"unknown conversion: {part!r}"
        assert name not in extended, f"{name} extended twice"
        extended[name] = (found.group(2), CONVERSIONS[found.group(1)] if found.group(1) else None)
    projected = [part.strip() for part in match.group(2).split(",")]
    assert all(re.fullmatch(r"[A-Za-z_]\w*", name) for name in projected), projected
    return extended, projected


def projected(kql: str) -> list[str]:
    """The output columns of the transformation."""
    return transformation(kql)[1]


def test_the_dcr_declares_one_stream_per_event_format() -> None:
    declarations = resource("Microsoft.Insights/dataCollectionRules")["properties"]["streamDeclarations"]
    assert list(declarations) == [DEFAULT_STREAM, OCSF_STREAM] == [FORMATS[f][0] for f in STREAMS]
    assert dict(STREAMS) == {f: FORMATS[f][0] for f in FORMATS}


@pytest.mark.parametrize("event_format", list(FORMATS))
def test_the_dcr_stream_declares_exactly_the_sinks_row_columns(event_format: str) -> None:
    stream, _, _, sink_columns, _ = FORMATS[event_format]
    declarations = resource("Microsoft.Insights/dataCollectionRules")["properties"]["streamDeclarations"]
    assert columns(declarations[stream]["columns"]) == dict(sink_columns)
    # what the stand-in reads from the template (its --dcr-template) is the same declaration
    assert stream_declarations(template())[stream] == dict(sink_columns)


@pytest.mark.parametrize("event_format", list(FORMATS))
def test_the_transformation_writes_only_the_tables_columns(event_format: str) -> None:
    stream, variable, table_name, sink_columns, sink_table_columns = FORMATS[event_format]
    rule = resource("Microsoft.Insights/dataCollectionRules")["properties"]
    (flow,) = [f for f in rule["dataFlows"] if f["streams"] == [stream]]
    assert flow["outputStream"] == f"Custom-{table_name}"
    assert flow["destinations"] == [d["name"] for d in rule["destinations"]["logAnalytics"]]
    table = table_named(variable)
    assert template()["variables"][variable] == table_name
    dcr = resource("Microsoft.Insights/dataCollectionRules")
    assert any(variable in dependency for dependency in dcr["dependsOn"]), "the DCR waits for its table"
    table_columns = columns(table["properties"]["schema"]["columns"])
    extended, output = transformation(flow["transformKql"])
    assert "TimeGenerated" in output and table_columns["TimeGenerated"] == "datetime"
    missing = [name for name in output if name not in table_columns]
    assert not missing, f"the transformation writes columns the table lacks: {missing}"
    declared = columns(rule["streamDeclarations"][stream]["columns"])
    assert not set(extended) & set(declared), "an extend overwrites a column the stream declares"
    assert set(output) <= set(declared) | set(extended), "a projected column comes from nowhere"
    # each extended column reads a declared dynamic column's field and converts it to the table's type
    for name, (path, converted) in extended.items():
        assert path.split(".")[0] in declared and declared[path.split(".")[0]] == "dynamic", (name, path)
        assert (converted or "dynamic") == table_columns[name], f"{name}: {converted} into {table_columns[name]}"
    assert {name: table_columns[name] for name in output if name in declared} == \
        {name: declared[name] for name in output if name in declared}, \
        "a projected column changes type between the stream and the table"
    assert set(declared) <= set(output), "every column the sink sends reaches the table"
    assert {name: table_columns[name] for name in output} == dict(sink_table_columns), \
        "the table's columns are the sink's (sentinel.py)"


def test_the_ocsf_tables_columns_are_the_records_top_level_fields() -> None:
    """What the OCSF flow extends: `<column> = conversion(ocsf.<column>)`, the record's top-level
    field of the column's own name (the records themselves: tests/forwarders/test_sentinel_ocsf.py
    checks every projected path against the rows the sink sends)."""
    rule = resource("Microsoft.Insights/dataCollectionRules")["properties"]
    (flow,) = [f for f in rule["dataFlows"] if f["streams"] == [OCSF_STREAM]]
    extended, output = transformation(flow["transformKql"])
    assert extended, "the OCSF table's columns come from the record"
    assert {path for path, _ in extended.values()} == {f"ocsf.{name}" for name in extended}
    assert set(output) == set(extended) | set(OCSF_COLUMNS)


def test_every_stream_has_a_flow_and_an_output() -> None:
    rule = resource("Microsoft.Insights/dataCollectionRules")["properties"]
    assert sorted(s for f in rule["dataFlows"] for s in f["streams"]) == sorted(rule["streamDeclarations"])
    outputs = template()["outputs"]
    assert outputs["stream"]["value"] == "[variables('streamName')]"
    assert outputs["ocsfStream"]["value"] == "[variables('ocsfStreamName')]"
    assert template()["variables"]["streamName"] == DEFAULT_STREAM
    assert template()["variables"]["ocsfStreamName"] == OCSF_STREAM


def test_the_dcr_uses_the_endpoint_and_the_role_is_monitoring_metrics_publisher() -> None:
    rule = resource("Microsoft.Insights/dataCollectionRules")
    assert "dataCollectionEndpoints" in rule["properties"]["dataCollectionEndpointId"]
    assignment = resource("Microsoft.Authorization/roleAssignments")
    assert template()["variables"]["monitoringMetricsPublisher"] == "3913510d-42f4-4e42-8a64-420c390055eb"
    assert "monitoringMetricsPublisher" in assignment["properties"]["roleDefinitionId"]
    assert "dataCollectionRules" in assignment["scope"]
    assert set(template()["outputs"]) == {"endpoint", "dcrImmutableId", "stream", "ocsfStream"}


def test_readme_names_the_template_the_table_and_the_dedup_query() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "deploy/azure/sentinel.json" in readme
    assert f"{TABLE} | summarize arg_max(TimeGenerated, *) by EventId" in readme
    assert f"{OCSF_TABLE} | summarize arg_max(TimeGenerated, *) by metadata_uid" in readme
    assert "Monitoring Metrics Publisher" in readme
