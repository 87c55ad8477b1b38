"""An adopting platform team's sweep of the Helm chart: value sets beyond ci/*-values.yaml
(the longest release name Helm allows, workload identity as the README gives it, PDBs a user
may write), each checked for what the API server or the kubelet would do with it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from siemgate.config import load_config
from tests.deploy.support import (
    SECRETS_DIR,
    Obj,
    Rendered,
    container_env,
    materialize,
    mounted_config,
    render,
    secret_files,
)

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


# --- variables a mutating webhook injects (Azure Workload Identity, as the README gives it) ----

SENTINEL_WORKLOAD_IDENTITY = {
    "name": "sentinel", "type": "sentinel",
    "config": {"endpoint": "https://siemgate-dce-a1b2.westeurope-1.ingest.monitor.azure.com",
               "dcr_immutable_id": "dcr-00000000000000000000000000000000",
               "tenant_id": "${AZURE_TENANT_ID}", "client_id": "${AZURE_CLIENT_ID}",
               "federated_token_file": "${AZURE_FEDERATED_TOKEN_FILE}"}}
# What the azure-workload-identity webhook puts in a labelled pod's environment.
INJECTED = {"AZURE_CLIENT_ID": "00000000-0000-0000-0000-00000000c11d",
            "AZURE_TENANT_ID": "00000000-0000-0000-0000-0000000073a7",
            "AZURE_FEDERATED_TOKEN_FILE": "/var/run/secrets/azure/tokens/azure-identity-token",
            "AZURE_AUTHORITY_HOST": "https://login.microsoftonline.com/"}


def _sentinel_pod(rendered: Rendered) -> tuple[Obj, Obj, Obj]:
    for obj, pod in rendered.pods:
        container = next(c for c in pod["containers"] if c["name"] == "siemgate")
        if obj["kind"] != "Job" and ("run" in container["args"] or "sentinel" in container["args"]):
            return obj, pod, container
    raise AssertionError("no pod runs the sentinel sink")


@pytest.mark.parametrize("mode", ["embedded", "kafka"])
def test_workload_identity_as_the_readme_gives_it(mode: str, tmp_path: Path) -> None:
    """README, "Microsoft Sentinel sink": the service account's client-id annotation and the
    pods' azure.workload.identity/use label. The webhook, not the Secret, gives the pod
    AZURE_CLIENT_ID, AZURE_TENANT_ID and AZURE_FEDERATED_TOKEN_FILE: their ${VAR}s stay
    environment variables, and siemgate loads the config with the environment the pod gets."""
    pods = "ingest" if mode == "embedded" else "forwarder"
    values = {"config": {"bus": {"type": mode}, "integrations": INTEGRATIONS}, "secrets": {"values": KEYS},
              "serviceAccount": {"annotations": {"azure.workload.identity/client-id": INJECTED["AZURE_CLIENT_ID"]}},
              pods: {"podLabels": {"azure.workload.identity/use": "true"}},
              "sinks": [SENTINEL_WORKLOAD_IDENTITY]}
    rendered = render(values)
    obj, pod, container = _sentinel_pod(rendered)
    assert obj["spec"]["template"]["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    _, text = mounted_config(rendered, pod, container)
    for var in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_FEDERATED_TOKEN_FILE"):
        assert f"${{{var}}}" in text, f"{var} must stay the environment's"
        assert f"{SECRETS_DIR}/{var}" not in text
    files = secret_files(rendered, pod, container)
    assert not any("AZURE" in path for path in files)
    config_path = tmp_path / "siemgate.yaml"
    config_path.write_text(materialize(text, files, tmp_path / "secrets"))
    config = load_config(config_path, {**container_env(rendered, container), **INJECTED})
    (sink,) = [s for s in config.sinks if s.name == "sentinel"]
    assert sink.settings.client_id == INJECTED["AZURE_CLIENT_ID"]
    assert sink.settings.federated_token_file == INJECTED["AZURE_FEDERATED_TOKEN_FILE"]


def test_injected_env_keeps_a_webhooks_variable_out_of_the_secret(tmp_path: Path) -> None:
    """A token Vault's agent injects (forwarder.injectedEnv) is read from the environment."""
    values = {"config": {"bus": {"type": "kafka"}, "integrations": INTEGRATIONS}, "secrets": {"values": KEYS},
              "forwarder": {"injectedEnv": ["HEC_TOKEN"],
                            "podAnnotations": {"vault.hashicorp.com/agent-inject": "true"}},
              "sinks": [{"name": "splunk", "type": "splunk_hec",
                         "config": {"url": "https://splunk:8088", "token": "${HEC_TOKEN}", "index": "appsec"}}]}
    rendered = render(values)
    obj, pod, container = _pod_forwarding(rendered, "splunk")
    _, text = mounted_config(rendered, pod, container)
    assert "token: ${HEC_TOKEN}" in text
    assert secret_files(rendered, pod, container) == {}
    path = tmp_path / "siemgate.yaml"
    path.write_text(text)
    config = load_config(path, {"HEC_TOKEN": "vault-injected-hec-token"})
    assert config.sinks[0].settings.token.reveal() == "vault-injected-hec-token"
    with pytest.raises(Exception, match="injectedEnv"):
        render({**values, "forwarder": {"injectedEnv": ["not a name"]}})


def _pod_forwarding(rendered: Rendered, sink: str) -> tuple[Obj, Obj, Obj]:
    for obj, pod in rendered.pods:
        container = next(c for c in pod["containers"] if c["name"] == "siemgate")
        if sink in container["args"]:
            return obj, pod, container
    raise AssertionError(f"no pod forwards to {sink}")


# --- disruption budgets: never one that blocks a drain for good --------------------------------

KAFKA = {"config": {"bus": {"type": "kafka"}}}


@pytest.mark.parametrize(("where", "budget"), [
    ("ingest", 0), ("ingest", "0%"), ("forwarder", 0), ("sink", "0%"), ("ingest", "1"), ("forwarder", -1)])
def test_a_budget_that_would_block_every_drain_is_refused(where: str, budget: Any) -> None:
    """maxUnavailable 0 (or 0%) makes `kubectl drain` and every eviction wait for ever: the
    node cannot be drained while the pod exists. The schema refuses it (and "1", which
    Kubernetes refuses for a PDB: a string must be a percentage)."""
    values: dict[str, Any] = {**KAFKA}
    if where == "sink":
        values["sinks"] = [{"name": "archive", "type": "file", "config": {"path": "/data/out/e.ndjson"},
                            "pdb": {"maxUnavailable": budget}}]
    else:
        values[where] = {"pdb": {"maxUnavailable": budget}}
    with pytest.raises(Exception, match="maxUnavailable"):
        render(values)


@pytest.mark.parametrize("budget", [1, 2, "50%", "1%", "100%"])
def test_budgets_that_let_a_drain_through_render(budget: Any) -> None:
    for replicas in (1, 3):
        rendered = render({**KAFKA, "ingest": {"replicas": replicas, "autoscaling": {"enabled": False},
                                               "pdb": {"maxUnavailable": budget}},
                           "forwarder": {"replicas": replicas, "autoscaling": {"enabled": False},
                                         "pdb": {"maxUnavailable": budget}}})
        budgets = rendered.kind("PodDisruptionBudget")
        assert len(budgets) == 2
        for pdb in budgets:
            assert pdb["spec"]["maxUnavailable"] == budget
            assert "minAvailable" not in pdb["spec"]
            kubernetes_validate.validate(pdb, kubernetes_validate.latest_version(), strict=True)


# --- NOTES.txt, followed literally -----------------------------------------------------------


@pytest.mark.parametrize("tls", [False, True])
def test_notes_try_the_webhook_with_the_scheme_it_serves(tls: bool) -> None:
    config: dict[str, Any] = {"integrations": INTEGRATIONS}
    values: dict[str, Any] = {"config": config, "secrets": {"values": KEYS}}
    if tls:
        config["listen"] = {"tls": {"cert": "/etc/tls/tls.crt", "key": "/etc/tls/tls.key"}}
        values["ingest"] = {"extraVolumes": [{"name": "tls", "secret": {"secretName": "siemgate-tls"}}],
                            "extraVolumeMounts": [{"name": "tls", "mountPath": "/etc/tls", "readOnly": True}]}
    notes = render(values).notes
    (curl,) = [line.strip() for line in notes.splitlines() if line.strip().startswith("curl ")]
    url = curl.split()[2]
    if tls:
        assert curl.startswith("curl -sk https://127.0.0.1:8080/webhook/appsec"), curl
    else:
        assert curl.startswith("curl -s http://127.0.0.1:8080/webhook/appsec"), curl
    assert url.endswith("/webhook/appsec")


# --- a file sink on Kafka: its output is on the forwarder's emptyDir unless given a volume ------

ARCHIVE = {"name": "archive", "type": "file", "config": {"path": "/data/out/events.ndjson"}}
ON_A_CLAIM = {"replicas": 1, "autoscaling": {"enabled": False},
              "extraVolumes": [{"name": "out", "persistentVolumeClaim": {"claimName": "siemgate-archive"}}],
              "extraVolumeMounts": [{"name": "out", "mountPath": "/data/out/"}]}


def test_notes_warn_that_a_file_sink_on_the_forwarders_emptydir_goes_with_the_pod() -> None:
    """On Kafka a file sink's forwarder writes /data on an emptyDir: a rollout deletes what it
    wrote after committing the offsets. NOTES.txt says so, and how to keep it."""
    notes = render({**KAFKA, "sinks": [{**ARCHIVE, "dataVolume": {"sizeLimit": "2Gi"}}]}).notes
    assert "WARNING: sink archive (file) writes /data/out/events.ndjson on its forwarder's emptyDir" in notes
    assert "extraVolumeMounts" in notes
    # The default sinks with the bus switched to Kafka: the same warning.
    assert "WARNING: sink archive (file)" in render(KAFKA).notes
    # Embedded, /data is the claim: no warning.
    assert "WARNING: sink" not in render({"sinks": [ARCHIVE], "ingest": {"persistence": {"size": "20Gi"}}}).notes


def test_a_file_sink_on_a_volume_of_its_own_renders_without_a_warning() -> None:
    """Its output on a claim mounted at its directory: no warning, and the emptyDir (which it no
    longer fills) is not sized for its rotation (siemgate's default 100 MiB x 11 > 1Gi)."""
    rendered = render({**KAFKA, "sinks": [{**ARCHIVE, **ON_A_CLAIM}]})
    assert "WARNING: sink" not in rendered.notes
    (deployment,) = [d for d in rendered.kind("Deployment") if d["metadata"]["labels"].get("siemgate.io/sink")]
    pod = deployment["spec"]["template"]["spec"]
    assert {"name": "out", "persistentVolumeClaim": {"claimName": "siemgate-archive"}} in pod["volumes"]
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 0  # never two writers on the claim
    # Still checked on the emptyDir.
    with pytest.raises(Exception, match="dataVolume.sizeLimit"):
        render({**KAFKA, "sinks": [ARCHIVE]})


# --- pods beside the workloads: the helm test pod and the spool drain Jobs ---------------------


def test_helm_test_and_spool_drain_pods_pull_and_schedule_like_the_ingest() -> None:
    """A private registry (imagePullSecrets) and a dedicated node pool (nodeSelector,
    tolerations): `helm test` and `spoolDrainJob` use the ingest's image, so they need the same
    pull secret, and the pool the ingest runs in (a claim's zone, the only nodes that tolerate)."""
    placement = {"nodeSelector": {"pool": "soc"},
                 "tolerations": [{"key": "soc", "operator": "Exists", "effect": "NoSchedule"}],
                 "priorityClassName": "soc-critical"}
    image = {"repository": "registry.soc.example/siemgate", "digest": "sha256:" + "a" * 64}
    rendered = render({**KAFKA, "image": image,
                       "imagePullSecrets": [{"name": "soc-registry"}], "ingest": placement, "forwarder": placement,
                       "spoolDrainJob": {"enabled": True, "claims": ["data-siem-siemgate-ingest-3"]}})
    pods = list(rendered.pods)
    assert {obj["kind"] for obj, _ in pods} == {"StatefulSet", "Deployment", "Job", "Pod"}
    for obj, pod in pods:
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        assert pod.get("imagePullSecrets") == [{"name": "soc-registry"}], where
        assert pod.get("nodeSelector") == placement["nodeSelector"], where
        assert pod.get("tolerations") == placement["tolerations"], where
        for container in pod["containers"]:
            assert container["image"] == "registry.soc.example/siemgate@sha256:" + "a" * 64, where
        if obj["kind"] != "Pod":
            assert pod.get("priorityClassName") == "soc-critical", where
        kubernetes_validate.validate(obj, kubernetes_validate.latest_version(), strict=True)


# --- autoscalers the API server would refuse ------------------------------------------------


def test_an_ingest_hpa_whose_minimum_is_above_its_maximum_is_refused_at_render() -> None:
    """The forwarders' HPA was checked; the ingest's went to the API server, which refuses it at
    install, half-way through the release."""
    complaint = "ingest.autoscaling.minReplicas 5 is above ingest.autoscaling.maxReplicas 2"
    with pytest.raises(Exception, match=re.escape(complaint)):
        render({**KAFKA, "ingest": {"autoscaling": {"minReplicas": 5, "maxReplicas": 2}}})
    rendered = render({**KAFKA, "ingest": {"autoscaling": {"minReplicas": 2, "maxReplicas": 2}}})
    bounds = {h["metadata"]["name"]: (h["spec"]["minReplicas"], h["spec"]["maxReplicas"])
              for h in rendered.kind("HorizontalPodAutoscaler")}
    assert bounds["siem-siemgate-ingest"] == (2, 2)


def test_ingest_replicas_under_the_hpa_are_refused_not_ignored() -> None:
    """On Kafka the ingest is autoscaled by default: `ingest.replicas: 1` (a user wanting one
    replica) was silently ignored and the HPA ran 2 to 10."""
    with pytest.raises(Exception, match=re.escape("ingest.replicas=1 is set, but the ingest is autoscaled")):
        render({**KAFKA, "ingest": {"replicas": 1}})
    one = render({**KAFKA, "ingest": {"replicas": 1, "autoscaling": {"enabled": False}}})
    assert [w["spec"]["replicas"] for w in one.kind("StatefulSet")] == [1]
    assert [h["metadata"]["name"] for h in one.kind("HorizontalPodAutoscaler")] == ["siem-siemgate-fwd-archive"]
    # The embedded bus is one replica whatever autoscaling says (not autoscaled): replicas 1 is fine.
    assert [w["spec"]["replicas"] for w in render({"ingest": {"replicas": 1}}).workloads] == [1]


def test_an_ingress_without_hosts_is_refused_at_render() -> None:
    """ingress.enabled with no hosts rendered `rules: null` and no defaultBackend, which the API
    server refuses ("either defaultBackend or rules must be specified") mid-install."""
    values = {"config": {"integrations": INTEGRATIONS}, "secrets": {"values": KEYS}}
    with pytest.raises(Exception, match=re.escape("ingress.hosts is empty")):
        render({**values, "ingress": {"enabled": True}})
    rendered = render({**values, "ingress": {"enabled": True, "hosts": [{"host": "siemgate.example.com"}]}})
    (ingress,) = rendered.kind("Ingress")
    assert [r["host"] for r in ingress["spec"]["rules"]] == ["siemgate.example.com"]
    assert "https://siemgate.example.com/webhook/appsec" not in rendered.notes  # no tls given
    assert "http://siemgate.example.com/webhook/appsec" in rendered.notes


# --- NetworkPolicy: Kafka's port from every way bootstrap_servers may be written ----------------


def _kafka_ports(rendered: Rendered) -> dict[str, set[int]]:
    out = {}
    for policy in rendered.kind("NetworkPolicy"):
        ports = {p["port"] for rule in policy["spec"]["egress"] for p in rule.get("ports", []) if p["port"] != 53}
        out[policy["metadata"]["name"]] = ports
    return out


@pytest.mark.parametrize(("servers", "ports"), [
    ("kafka.kafka.svc", {9092}),               # no port: aiokafka's default, 9092
    ("10.0.0.1,kafka-1:9093", {9092, 9093}),   # an address without port was read as port 1
    (["[fd00::1]:9094", "[fd00::2]"], {9094, 9092}),
])
def test_network_policy_opens_the_port_siemgate_connects_to(servers: Any, ports: set[int]) -> None:
    rendered = render({"config": {"bus": {"type": "kafka", "kafka": {"bootstrap_servers": servers}}},
                       "networkPolicy": {"enabled": True}})
    found = _kafka_ports(rendered)
    assert found == {"siem-siemgate-ingest": ports, "siem-siemgate-fwd-archive": ports}


def test_network_policy_with_bootstrap_servers_from_a_variable_needs_the_port_named() -> None:
    """"${KAFKA_SERVERS}" hides the port: the policy opened none, so no pod could reach Kafka
    (the ingest spooling every batch, the forwarders idle). Refused unless extraPorts names it."""
    values: dict[str, Any] = {
        "config": {"bus": {"type": "kafka", "kafka": {"bootstrap_servers": "${KAFKA_SERVERS}"}}},
        "secrets": {"values": {"KAFKA_SERVERS": "kafka:9093"}}, "networkPolicy": {"enabled": True}}
    with pytest.raises(Exception, match=re.escape("networkPolicy.kafka.extraPorts")):
        render(values)
    values["networkPolicy"]["kafka"] = {"extraPorts": [9093]}
    assert list(_kafka_ports(render(values)).values()) == [{9093}, {9093}]


def test_notes_say_when_the_network_policy_keeps_siemgate_confirm_from_the_link() -> None:
    """NOTES.txt tells to run `siemgate confirm` in an ingest pod; with networkPolicy.enabled
    and manual confirmation (confirmationEgress auto opens nothing then) it cannot get out."""
    base = {"config": {"integrations": INTEGRATIONS}, "secrets": {"values": KEYS}}
    closed = render({**base, "networkPolicy": {"enabled": True}})
    assert "siemgate confirm -c" in closed.notes
    assert "`siemgate confirm` cannot reach the link until you set it to true" in closed.notes
    (policy,) = closed.kind("NetworkPolicy")
    assert all(p["port"] != 443 for rule in policy["spec"]["egress"] for p in rule.get("ports", []))
    for values in ({**base, "networkPolicy": {"enabled": True, "ingest": {"confirmationEgress": True}}},
                   {**base, "networkPolicy": {"enabled": False}},
                   {"config": {"integrations": [{**INTEGRATIONS[0], "confirmation": {
                       "mode": "auto", "allowed_hosts": ["*.appsec.example.com"]}}]},
                    "secrets": {"values": KEYS}, "networkPolicy": {"enabled": True}}):
        assert "cannot reach the link" not in render(values).notes
