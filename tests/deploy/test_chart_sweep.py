"""An adopting platform team's sweep of the Helm chart: value sets beyond ci/*-values.yaml
(the longest release name Helm allows, workload identity as the README gives it, PDBs a user
may write), each checked for what the API server or the kubelet would do with it."""

from __future__ import annotations

import re
from typing import Any

import kubernetes_validate
import pytest

from tests.deploy.support import Obj, Rendered, render

# Helm refuses release names over 53 characters; this one is 53.
LONG_RELEASE = "soc-production-eu-west-1-webhook-gateway-primary-a1b2"
assert len(LONG_RELEASE) == 53

DNS_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
INTEGRATIONS = [{"name": "appsec", "auth": {"header": "X-Api-Key", "values": ["${APPSEC_KEY}"]}}]
KEYS = {"APPSEC_KEY": "sweep-webhook-key-0001"}


def _long_sink(suffix: str) -> dict[str, Any]:
    # Two sink names alike for their first 50 characters: a cut name would make them one.
    return {"name": f"splunk-production-indexer-cluster-europe-west-zone-{suffix}", "type": "syslog",
            "config": {"address": f"tcp://rsyslog-{suffix}.logging.svc:514"}}


LONG_NAME_SHAPES: dict[str, dict[str, Any]] = {
    "embedded": {},
    "kafka": {"config": {"bus": {"type": "kafka"}}, "sinks": [_long_sink("a"), _long_sink("b")],
              "networkPolicy": {"enabled": True}, "keda": {"enabled": True},
              "metrics": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}},
              "admin": {"enabled": True}, "secrets": {"values": {"SIEMGATE_ADMIN_TOKEN": "sweep-admin-token-0001"}},
              "spoolDrainJob": {"enabled": True, "claims": ["data-x-ingest-3"]}},
    "kafka-hpa-off": {"config": {"bus": {"type": "kafka"}},
                      "ingest": {"replicas": 3, "autoscaling": {"enabled": False}},
                      "forwarder": {"autoscaling": {"enabled": False}}},
    "existing-claim": {"ingest": {"persistence": {"existingClaim": "siemgate-data"}}},
    "emptydir": {"ingest": {"persistence": {"enabled": False, "acceptDataLossOnPodDeletion": True}}},
}


def _label_values(obj: Obj) -> list[tuple[str, str]]:
    found = list((obj["metadata"].get("labels") or {}).items())
    template = obj.get("spec", {}).get("template", {})
    found += list((template.get("metadata", {}).get("labels") or {}).items())
    for claim in obj.get("spec", {}).get("volumeClaimTemplates", []):
        found += list((claim["metadata"].get("labels") or {}).items())
    return [(k, str(v)) for k, v in found]


@pytest.mark.parametrize("shape", LONG_NAME_SHAPES, ids=list(LONG_NAME_SHAPES))
def test_the_longest_release_name_renders_objects_kubernetes_creates(shape: str) -> None:
    rendered: Rendered = render(LONG_NAME_SHAPES[shape], release=LONG_RELEASE)
    names = [(o["kind"], o["metadata"]["name"]) for o in rendered.objects]
    assert len(names) == len(set(names)), "two objects share a kind and name: one would replace the other"
    for kind, name in names:
        assert DNS_LABEL.fullmatch(name), f"{kind}/{name} ({len(name)} characters) is not a DNS label"
    for obj in rendered.objects:
        for key, value in _label_values(obj):
            assert len(value) <= 63, f"{obj['kind']}/{obj['metadata']['name']}: label {key}={value} is over 63"
    for sts in rendered.kind("StatefulSet"):
        # The controller labels each pod controller-revision-hash=<name>-<hash of up to 10
        # characters>: over 52 characters the API refuses every pod of it.
        name = sts["metadata"]["name"]
        assert len(name) <= 52, f"StatefulSet {name} ({len(name)}): its pods could never be created"
        assert rendered.get("Service", sts["spec"]["serviceName"])["spec"]["clusterIP"] == "None"
    # Every object a workload names exists.
    config_maps = {o["metadata"]["name"] for o in rendered.kind("ConfigMap")}
    for _obj, pod in rendered.pods:
        for volume in pod.get("volumes", []):
            if "configMap" in volume:
                assert volume["configMap"]["name"] in config_maps
    forwarders = [d["metadata"]["name"] for d in rendered.kind("Deployment")
                  if d["metadata"]["labels"].get("app.kubernetes.io/component") == "forwarder"]
    assert len(forwarders) == len(set(forwarders)), "two sinks' forwarders cut to one name"
    if shape == "kafka":
        assert len(forwarders) == 2
    for kind in ("ScaledObject", "PodDisruptionBudget", "NetworkPolicy", "HorizontalPodAutoscaler"):
        for obj in rendered.kind(kind):
            if obj["metadata"]["labels"].get("app.kubernetes.io/component") == "forwarder":
                assert obj["metadata"]["name"] in forwarders
    for obj in rendered.objects:
        if obj["kind"] not in {"ScaledObject", "TriggerAuthentication", "ServiceMonitor", "PrometheusRule"}:
            kubernetes_validate.validate(obj, kubernetes_validate.latest_version(), strict=True)


def test_short_names_are_unchanged() -> None:
    """The names an installed release already has (release `siem`) stay as they were."""
    for values, expected in (({}, "siem-siemgate-ingest"),
                             ({"ingest": {"persistence": {"existingClaim": "c"}}}, "siem-siemgate-ingest")):
        rendered = render(values)
        assert [w["metadata"]["name"] for w in rendered.workloads] == [expected]
        assert [c["metadata"]["name"] for c in rendered.kind("ConfigMap")] == ["siem-siemgate-config"]
    sink = {"name": "splunk-production", "type": "syslog", "config": {"address": "tcp://rsyslog:514"}}
    kafka = render({"config": {"bus": {"type": "kafka"}}, "sinks": [sink]})
    assert {d["metadata"]["name"] for d in kafka.kind("Deployment")} == {"siem-siemgate-fwd-splunk-production"}
    assert [s["metadata"]["name"] for s in kafka.kind("StatefulSet")] == ["siem-siemgate-ingest"]
