"""deploy/azure/sentinel.json, the ARM template of the Sentinel sink's Azure side, agrees with
the sink: the DCR's stream declaration has exactly the columns (and types) of the rows the sink
sends, its transformation outputs only columns the custom table has (with the same types), and
the names (stream, table, output stream) are the ones the sink and README use."""

from __future__ import annotations

import json
import re
from typing import Any

from siemgate.forwarders.sinks.sentinel import COLUMNS, DEFAULT_STREAM
from tests.deploy.support import ROOT

TEMPLATE = ROOT / "deploy" / "azure" / "sentinel.json"
TABLE = "SiemgateAlerts_CL"


def template() -> dict[str, Any]:
    value = json.loads(TEMPLATE.read_text())
    assert isinstance(value, dict)
    return value


def resource(kind: str) -> dict[str, Any]:
    (found,) = [r for r in template()["resources"] if r["type"] == kind]
    return found  # type: ignore[no-any-return]


def columns(declared: list[dict[str, str]]) -> dict[str, str]:
    names = [c["name"] for c in declared]
    assert len(names) == len(set(names)), "a column declared twice"
    return {c["name"]: c["type"] for c in declared}


def projected(kql: str) -> list[str]:
    """The output columns of `source | project a, b = expr, ...` (the form this template uses)."""
    match = re.fullmatch(r"\s*source\s*\|\s*project\s+(.+?)\s*", kql, re.S)
    assert match, f"transformKql is not `source | project ...`: {kql!r}"
    return [part.split("=", 1)[0].strip() for part in match.group(1).split(",")]


def test_the_dcr_stream_declares_exactly_the_sinks_row_columns() -> None:
    declarations = resource("Microsoft.Insights/dataCollectionRules")["properties"]["streamDeclarations"]
    assert list(declarations) == [DEFAULT_STREAM]
    assert columns(declarations[DEFAULT_STREAM]["columns"]) == dict(COLUMNS)


def test_the_transformation_writes_only_the_tables_columns() -> None:
    rule = resource("Microsoft.Insights/dataCollectionRules")["properties"]
    (flow,) = rule["dataFlows"]
    assert flow["streams"] == [DEFAULT_STREAM] and flow["outputStream"] == f"Custom-{TABLE}"
    assert flow["destinations"] == [d["name"] for d in rule["destinations"]["logAnalytics"]]
    table = resource("Microsoft.OperationalInsights/workspaces/tables")
    assert table["properties"]["schema"]["name"] == "[variables('tableName')]"
    assert template()["variables"]["tableName"] == TABLE
    table_columns = columns(table["properties"]["schema"]["columns"])
    output = projected(flow["transformKql"])
    assert "TimeGenerated" in output and table_columns["TimeGenerated"] == "datetime"
    missing = [name for name in output if name not in table_columns]
    assert not missing, f"the transformation writes columns the table lacks: {missing}"
    stream = columns(rule["streamDeclarations"][DEFAULT_STREAM]["columns"])
    assert {name: table_columns[name] for name in output} == {name: stream[name] for name in output}, \
        "a projected column changes type between the stream and the table"
    assert set(output) == set(COLUMNS), "every column the sink sends reaches the table"


def test_the_dcr_uses_the_endpoint_and_the_role_is_monitoring_metrics_publisher() -> None:
    rule = resource("Microsoft.Insights/dataCollectionRules")
    assert "dataCollectionEndpoints" in rule["properties"]["dataCollectionEndpointId"]
    assignment = resource("Microsoft.Authorization/roleAssignments")
    assert template()["variables"]["monitoringMetricsPublisher"] == "3913510d-42f4-4e42-8a64-420c390055eb"
    assert "monitoringMetricsPublisher" in assignment["properties"]["roleDefinitionId"]
    assert "dataCollectionRules" in assignment["scope"]
    assert set(template()["outputs"]) == {"endpoint", "dcrImmutableId", "stream"}


def test_readme_names_the_template_the_table_and_the_dedup_query() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "deploy/azure/sentinel.json" in readme
    assert f"{TABLE} | summarize arg_max(TimeGenerated, *) by EventId" in readme
    assert "Monitoring Metrics Publisher" in readme
