"""The Grafana dashboard (deploy/grafana) is built on metrics siemgate really exports."""

from __future__ import annotations

import json
from typing import Any

from tests.deploy.support import CHART, ROOT, exported_metric_names, metric_names_in

DASHBOARD = ROOT / "deploy" / "grafana" / "siemgate-dashboard.json"


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    panels = []
    for panel in dashboard["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    return [p for p in panels if p["type"] != "row"]


def test_the_chart_ships_the_same_dashboard() -> None:
    assert (CHART / "dashboards" / "siemgate-dashboard.json").read_bytes() == DASHBOARD.read_bytes()


def test_every_query_uses_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exported = exported_metric_names()
    panels = _panels(dashboard)
    assert panels
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            used = metric_names_in(target["expr"])
            assert used, f"{panel['title']}: {target['expr']}"
            assert used <= exported, f"{panel['title']}: {used - exported} is not a siemgate metric"
            assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            assert metric_names_in(variable["definition"]) <= exported


def test_the_dashboard_covers_the_pipeline() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    used = {m for p in _panels(dashboard) for t in p["targets"] for m in metric_names_in(t["expr"])}
    assert {
        "siemgate_ingest_events_total",  # ingest rate
        "siemgate_ingest_ack_seconds_bucket",  # ack latency
        "siemgate_spool_bytes",  # spool
        "siemgate_forward_events_total",  # per-sink rate
        "siemgate_forward_lag_events",  # lag per severity
        "siemgate_dlq_events_total",  # DLQ
        "siemgate_sink_up",  # sink up
    } <= used
    lag = [t["expr"] for p in _panels(dashboard) for t in p["targets"] if "siemgate_forward_lag_events" in t["expr"]]
    assert any("severity" in e and "sink" in e for e in lag)
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert dashboard["uid"] and dashboard["title"] == "siemgate"
