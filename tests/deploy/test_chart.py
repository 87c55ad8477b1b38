"""The Helm chart (helm/siemgate), rendered with Helm's Go SDK for the defaults and every
ci/*-values.yaml: lint, strict Kubernetes schemas, the CRDs' shape, and what siemgate itself
needs (its config loads in each pod with that pod's environment, secrets stay in the Secret,
the KEDA triggers name the consumer group and topics siemgate really uses)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from siemgate import __version__
from siemgate.cli import build_parser
from siemgate.config import Config, load_config
from siemgate.forwarders.runtime import group_id
from siemgate.forwarders.service import selected_sinks
from siemgate.ingest.server import GRACEFUL_SHUTDOWN_SECONDS
from siemgate.record import all_topics
from siemgate.reload import ConfigReloader
from siemgate.secrets import Secret
from tests.deploy.support import (
    AGREED_METRICS,
    CHART,
    CI_VALUES,
    NAMESPACE,
    ROOT,
    SECRETS_DIR,
    Obj,
    Rendered,
    container_env,
    defined_metric_names,
    exported_metric_names,
    file_refs,
    labels_match,
    load_values,
    materialize,
    metric_names_in,
    mounted_config,
    promql_selectors,
    quantity_bytes,
    render,
    secret_files,
    secret_volume,
)

# The newest Kubernetes the schemas know, and the oldest the chart supports (Chart.yaml kubeVersion).
K8S_LATEST = kubernetes_validate.latest_version()
K8S_OLDEST = "1.30"
CRD_KINDS = {"ScaledObject", "TriggerAuthentication", "ServiceMonitor", "PrometheusRule"}
VALUES_FILES: list[Path | None] = [None, *CI_VALUES]


def _id(path: Path | None) -> str:
    return "defaults" if path is None else path.name.removesuffix("-values.yaml")


@pytest.fixture(scope="module", params=VALUES_FILES, ids=_id)
def rendered(request: pytest.FixtureRequest) -> Rendered:
    """The chart rendered once per values file."""
    return render(load_values(request.param))


@dataclass(frozen=True)
class Workload:
    obj: Obj
    pod: Obj
    container: Obj
    config: Config

    @property
    def name(self) -> str:
        return str(self.obj["metadata"]["name"])

    @property
    def command(self) -> str:
        return str(self.container["args"][0])

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.obj["spec"]["template"]["metadata"]["labels"])


@pytest.fixture(scope="module")
def loaded(rendered: Rendered, tmp_path_factory: pytest.TempPathFactory) -> list[Workload]:
    """Every siemgate workload with its config, loaded by siemgate's own loader with the
    environment Kubernetes gives its container and the Secret's files it mounts."""
    out = []
    directory = tmp_path_factory.mktemp("configs")
    for obj, pod in rendered.pods:
        if obj["kind"] in ("Pod", "Job"):
            continue
        container = _siemgate_container(pod)
        _, text = mounted_config(rendered, pod, container)
        files = secret_files(rendered, pod, container)
        path = directory / f"{obj['metadata']['name']}.yaml"
        path.write_text(materialize(text, files, directory / f"{obj['metadata']['name']}-secrets"))
        out.append(Workload(obj, pod, container, load_config(path, container_env(rendered, container))))
    assert out, "no siemgate workload rendered"
    return out


def _workload(loaded: list[Workload], name: str) -> Workload:
    (found,) = [w for w in loaded if w.name == name]
    return found


def _siemgate_container(pod: Obj) -> Obj:
    containers = [c for c in pod["containers"] if c["name"] == "siemgate"]
    assert len(containers) == 1
    return containers[0]


def _mode(rendered: Rendered) -> str:
    return rendered.values.get("config", {}).get("bus", {}).get("type", "embedded")


def _forwarders(rendered: Rendered) -> list[Obj]:
    return [w for w in rendered.kind("Deployment")
            if w["metadata"]["labels"].get("app.kubernetes.io/component") == "forwarder"]


def _ingest(rendered: Rendered) -> Obj:
    found = [w for w in rendered.workloads if w["metadata"]["labels"]["app.kubernetes.io/component"] == "ingest"]
    assert len(found) == 1
    return found[0]


def _sink_names(rendered: Rendered) -> list[str]:
    values = rendered.values.get("sinks")
    if values is None:
        with helm.Chart.load(CHART) as chart:
            values = chart.values["sinks"]
    return [s["name"] for s in values]


# --- lint, render, Kubernetes schemas --------------------------------------------------------


@pytest.mark.parametrize("path", VALUES_FILES, ids=_id)
def test_lint_is_clean(path: Path | None) -> None:
    report = helm.lint(CHART, load_values(path) or None, strict=True, namespace=NAMESPACE)
    assert report["errors"] == []
    problems = [m for m in report["messages"] if m["severity"] >= 2]  # 2 warning, 3 error
    assert problems == []


def test_renders_the_workloads_of_its_mode(rendered: Rendered) -> None:
    ingest = _ingest(rendered)
    args = _siemgate_container(ingest["spec"]["template"]["spec"])["args"]
    if _mode(rendered) == "embedded":
        assert args[0] == "run"
        assert _forwarders(rendered) == []
    else:
        assert args[0] == "ingest"
        assert sorted(f["metadata"]["labels"]["siemgate.io/sink"] for f in _forwarders(rendered)) == sorted(
            _sink_names(rendered))
    names = [(o["kind"], o["metadata"]["name"]) for o in rendered.objects]
    assert len(names) == len(set(names)), "two objects share a kind and name"
    assert rendered.notes.strip()


@pytest.mark.parametrize("version", [K8S_LATEST, K8S_OLDEST])
def test_builtin_objects_are_valid_kubernetes_strictly(rendered: Rendered, version: str) -> None:
    builtin = [o for o in rendered.objects if o["kind"] not in CRD_KINDS]
    assert builtin
    for obj in builtin:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']} ({rendered.source(obj)}), Kubernetes {version}: "
                        f"{exc.message} at {'.'.join(map(str, exc.path))}")
    unknown = {o["kind"] for o in rendered.objects} - CRD_KINDS - {o["kind"] for o in builtin}
    assert unknown == set()


def test_object_names_are_dns_labels(rendered: Rendered) -> None:
    for obj in rendered.objects:
        name = obj["metadata"]["name"]
        assert re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", name), name


def test_chart_app_version_is_siemgates() -> None:
    with helm.Chart.load(CHART) as chart:
        assert chart.metadata["appVersion"] == __version__


# --- siemgate's own view: commands, configs, secrets ------------------------------------------


def test_every_container_runs_a_siemgate_command_on_its_config(rendered: Rendered, loaded: list[Workload]) -> None:
    parser = build_parser()
    for w in loaded:
        args = parser.parse_args(w.container["args"])
        path, _ = mounted_config(rendered, w.pod, w.container)
        assert args.config == path
        config = w.config
        if args.command == "run":
            assert config.bus.type == "embedded"
            selected_sinks(config, ())  # what `siemgate run` checks before it starts
            assert [s.name for s in config.sinks] == _sink_names(rendered)
        elif args.command == "ingest":
            assert config.bus.type == "kafka"  # `siemgate ingest` refuses anything else
            assert config.sinks == ()  # no sink, so none of the sinks' credentials
        else:
            assert args.command == "forward"
            assert config.bus.type == "kafka"
            assert args.sink == [w.labels["siemgate.io/sink"]]
            assert [s.name for s in config.sinks] == args.sink
            assert config.integrations == ()  # so none of the webhook keys
            # What `siemgate forward --sink NAME` checks before it starts: the sink type exists.
            selected_sinks(config, args.sink)


def test_each_pod_gets_exactly_the_secrets_its_config_uses(rendered: Rendered) -> None:
    """Secrets are files of a projected volume (so a rotation reaches the running process by
    hot reload), never environment variables; each pod mounts exactly the keys its config
    reads, optional (the pod starts without it) exactly where the config gives a default."""
    for obj, pod in rendered.pods:
        for container in pod["containers"]:
            assert not any("valueFrom" in e for e in container.get("env", [])), "a secret in the environment"
            assert "envFrom" not in container
            if obj["kind"] == "Pod":
                assert secret_volume(pod) is None
                continue
            _, text = mounted_config(rendered, pod, container)
            plain = {e["name"] for e in container.get("env", [])}
            left = set(re.findall(r"(?<!\$)\$\{(?!file:)([A-Za-z_][A-Za-z0-9_]*)", text)) - plain
            assert not left, f"{left}: read from the environment, which extraEnv does not set"
            used = file_refs(text)
            assert all(path.startswith(SECRETS_DIR + "/") for path in used)
            volume = secret_volume(pod)
            mounted: dict[str, bool] = {}
            for source in (volume["projected"]["sources"] if volume else []):
                for item in source["secret"]["items"]:
                    assert item["path"] == item["key"]
                    mounted[f"{SECRETS_DIR}/{item['key']}"] = not source["secret"].get("optional", False)
            assert set(mounted) <= set(used), f"{obj['metadata']['name']} mounts secrets it does not use"
            for path, required in used.items():
                if path not in mounted:
                    # Only an optional key the chart's own Secret does not hold is left out.
                    assert not required and path.rsplit("/", 1)[1] not in rendered.secret_values, f"{path} not mounted"
                    continue
                assert mounted[path] is required, path
            if volume is not None:
                assert volume["projected"]["defaultMode"] == 0o440  # the group (fsGroup) only


def test_no_secret_value_in_any_config_map(rendered: Rendered, loaded: list[Workload]) -> None:
    secrets = {v for v in rendered.secret_values.values() if v}
    for w in loaded:
        secrets.update(s.reveal() for s in _secrets_in(w.config) if s.reveal())
    if not secrets:  # the defaults: no integration yet, so no key, and no Secret
        assert rendered.kind("Secret") == [] and rendered.values == {}
        return
    for config_map in rendered.kind("ConfigMap"):
        text = json.dumps(config_map)
        for secret in secrets:
            assert secret not in text, f"a secret value is in ConfigMap {config_map['metadata']['name']}"


def _secrets_in(value: Any) -> list[Secret]:
    if isinstance(value, Secret):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _secrets_in(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _secrets_in(v)]
    if dataclasses.is_dataclass(value):
        return [s for f in dataclasses.fields(value) for s in _secrets_in(getattr(value, f.name))]
    return []


def test_the_secret_holds_only_the_values_given(rendered: Rendered) -> None:
    given = rendered.values.get("secrets", {}).get("values", {})
    secrets = rendered.kind("Secret")
    if not given:
        assert secrets == []
        return
    (secret,) = secrets
    assert secret["metadata"]["name"] == rendered.secret_name
    assert rendered.secret_values == {k: str(v) for k, v in given.items()}


def test_paths_siemgate_writes_are_on_writable_volumes(loaded: list[Workload]) -> None:
    """The root filesystem is read-only: every path siemgate writes is under a volume, every
    certificate it reads is mounted."""
    for w in loaded:
        config = w.config
        writable = [m["mountPath"] for m in w.container["volumeMounts"] if not m.get("readOnly")]
        paths = [config.state_dir, config.quarantine.path]
        paths.append(config.bus.spool.path if config.bus.type == "kafka" else config.bus.path)
        paths += [s.settings.path for s in config.sinks if s.type == "file"]
        for path in paths:
            assert _under(path, writable), f"{w.name}: {path} is not on a writable volume"
        mounted = [m["mountPath"] for m in w.container["volumeMounts"]]
        for path in _tls_files(config):
            assert _under(path, mounted), f"{w.name}: {path} is not mounted"


def _under(path: str, mounts: list[str]) -> bool:
    return any(path.startswith(m.rstrip("/") + "/") for m in mounts)


def _tls_files(config: Config) -> list[str]:
    files: list[str | None] = []
    if config.bus.kafka is not None:
        security = config.bus.kafka.security
        files += [security.ca_file, security.cert_file, security.key_file]
    for sink in config.sinks:
        tls = getattr(sink.settings, "tls", None)
        if tls is not None:
            files += [tls.ca_file, tls.cert, tls.key]
    return [f for f in files if f]


# --- acknowledged events and the volumes that hold them (issue 15) ---------------------------

GiB = 1024**3
# siemgate's defaults for the keys agreed in issue 15 that other branches add to its config
# (bus.max_bytes, bus.spool.drain_timeout_seconds): read from the config once it has them.
EMBEDDED_LOG_MAX_BYTES = 10 * GiB
SPOOL_DRAIN_SECONDS = 300.0


def _log_cap(config: Config) -> int:
    return int(getattr(config.bus, "max_bytes", EMBEDDED_LOG_MAX_BYTES))


def _spool_drain_seconds(config: Config) -> float:
    return float(getattr(config.bus.spool, "drain_timeout_seconds", SPOOL_DRAIN_SECONDS))


def _data_volume(rendered: Rendered, w: Workload) -> tuple[str, int]:
    """(kind, bytes) of the volume at /data: claimTemplate, existingClaim or emptyDir."""
    (mount,) = [m for m in w.container["volumeMounts"] if m["mountPath"] == "/data"]
    volumes = [v for v in w.pod["volumes"] if v["name"] == mount["name"]]
    if not volumes:
        (template,) = [t for t in w.obj["spec"]["volumeClaimTemplates"] if t["metadata"]["name"] == mount["name"]]
        return "claimTemplate", quantity_bytes(template["spec"]["resources"]["requests"]["storage"])
    volume = volumes[0]
    if "persistentVolumeClaim" in volume:
        # The chart cannot see the claim: ingest.persistence.size states its capacity.
        persistence = rendered.values["ingest"]["persistence"]
        assert volume["persistentVolumeClaim"]["claimName"] == persistence["existingClaim"]
        return "existingClaim", quantity_bytes(persistence["size"])
    return "emptyDir", quantity_bytes(volume["emptyDir"]["sizeLimit"])


def _file_sink_bytes(config: Config) -> int:
    return sum(s.settings.rotate_bytes * (s.settings.keep + 1) for s in config.sinks if s.type == "file")


def test_no_acknowledged_event_on_a_volume_deleted_with_its_pod(rendered: Rendered, loaded: list[Workload]) -> None:
    """The spool (Kafka) or the embedded log holds events answered 200 and not yet on Kafka
    (or not yet forwarded): it is on a claim that outlives the pod, its replica and the
    release, or the values said in so many words that losing it is accepted (and NOTES warn)."""
    ingest = _ingest(rendered)
    w = _workload(loaded, ingest["metadata"]["name"])
    config = w.config
    acked = config.bus.spool.path if config.bus.type == "kafka" else config.bus.path
    (mount,) = [m for m in w.container["volumeMounts"] if _under(acked, [m["mountPath"]])]
    assert _under(config.state_dir, [mount["mountPath"]])  # the confirmation state with it
    kind, _ = _data_volume(rendered, w)
    hpa = rendered.maybe("HorizontalPodAutoscaler", w.name)
    replicas = ingest["spec"].get("replicas")
    if kind == "claimTemplate":
        assert ingest["kind"] == "StatefulSet"
        retention = ingest["spec"]["persistentVolumeClaimRetentionPolicy"]
        assert retention == {"whenDeleted": "Retain", "whenScaled": "Retain"}
    else:
        # One volume for the workload: one replica, never two pods on it, never autoscaled.
        assert ingest["kind"] == "Deployment" and hpa is None and replicas == 1
        if kind == "emptyDir":
            assert rendered.values["ingest"]["persistence"]["acceptDataLossOnPodDeletion"] is True
            assert "WARNING: DATA LOSS ON POD DELETION" in rendered.notes
        else:
            assert ingest["spec"]["strategy"]["type"] == "Recreate"
    if config.bus.type == "embedded":
        assert hpa is None and replicas == 1, "the embedded bus is one process"
    if hpa is not None:
        assert hpa["spec"]["scaleTargetRef"]["kind"] == "StatefulSet" and kind == "claimTemplate"
    assert "WARNING: DATA LOSS" not in rendered.notes or kind == "emptyDir"


def test_volumes_hold_the_caps_siemgate_keeps_to(rendered: Rendered, loaded: list[Workload]) -> None:
    """A full volume answers 503 (an emptyDir past its sizeLimit even gets the pod evicted):
    every volume holds the caps siemgate keeps to, plus headroom for the ingest's /data."""
    for w in loaded:
        kind, size = _data_volume(rendered, w)
        config = w.config
        needed = _file_sink_bytes(config)
        if w.command != "forward":
            needed += config.quarantine.max_bytes
            needed += config.bus.spool.max_bytes if w.command == "ingest" else _log_cap(config)
            needed += max(needed // 10, 512 * 1024**2)  # the chart's default headroom
        assert needed <= size, f"{w.name}: up to {needed} bytes on a {size}-byte {kind}"
        # The pod's ephemeral storage: requests = limits, covering its emptyDirs (and logs).
        resources = w.container["resources"]
        request = quantity_bytes(resources["requests"]["ephemeral-storage"])
        assert request == quantity_bytes(resources["limits"]["ephemeral-storage"])
        empty_dirs = sum(quantity_bytes(v["emptyDir"]["sizeLimit"]) for v in w.pod["volumes"] if "emptyDir" in v)
        assert empty_dirs < request, f"{w.name}: emptyDirs of {empty_dirs} bytes over {request} of ephemeral storage"


def test_grace_periods_cover_siemgates_drains(loaded: list[Workload]) -> None:
    """SIGTERM to SIGKILL: the endpoints go (preStop), requests in flight are answered, then
    the ingest sends its spool to Kafka (the embedded `run`: its forwarders drain)."""
    for w in loaded:
        grace = w.pod["terminationGracePeriodSeconds"]
        pre_stop = w.container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
        forward_drain = w.config.forward.drain_timeout_seconds + 5  # ForwardService waits drain + 5
        if w.command == "forward":
            needed = forward_drain
        else:
            assert pre_stop > 0, f"{w.name}: no preStop sleep before SIGTERM"
            in_flight = max(w.config.limits.body_timeout_seconds, GRACEFUL_SHUTDOWN_SECONDS)
            needed = pre_stop + in_flight
            needed += _spool_drain_seconds(w.config) if w.command == "ingest" else forward_drain
        assert grace >= needed, f"{w.name}: {grace}s of grace for {needed}s of drain"


def test_config_changes_roll_pods_only_when_asked(rendered: Rendered) -> None:
    """Hot reload is the default path; the checksum annotations are opt-in."""
    roll = rendered.values.get("rollOnConfigChange", False)
    for obj in rendered.workloads:
        annotations = obj["spec"]["template"]["metadata"].get("annotations", {})
        assert ("checksum/config" in annotations) is roll, obj["metadata"]["name"]
        assert ("checksum/secret" in annotations) is roll, obj["metadata"]["name"]


def _commands() -> set[str]:
    parser = build_parser()
    return {name for action in parser._actions if isinstance(action, argparse._SubParsersAction)
            for name in action.choices}


def test_spool_drain_jobs_run_on_the_claims_named(rendered: Rendered) -> None:
    jobs = rendered.kind("Job")
    settings = rendered.values.get("spoolDrainJob", {})
    if not settings.get("enabled"):
        assert jobs == []
        return
    ingest = _ingest(rendered)
    ingest_pod = ingest["spec"]["template"]["spec"]
    ingest_container = _siemgate_container(ingest_pod)
    claims = []
    for job in jobs:
        pod = job["spec"]["template"]["spec"]
        container = _siemgate_container(pod)
        path, text = mounted_config(rendered, pod, container)
        assert text == mounted_config(rendered, ingest_pod, ingest_container)[1], "the ingest's config"
        args = container["args"]
        assert args[:2] == ["spool", "drain"] and args[args.index("-c") + 1] == path
        assert int(args[args.index("--timeout") + 1]) == settings.get("timeoutSeconds", 3600)
        if "spool" in _commands():
            build_parser().parse_args(args)  # once `siemgate spool drain` is there (issue 15, another branch)
        (data,) = [v for v in pod["volumes"] if v["name"] == "data"]
        claims.append(data["persistentVolumeClaim"]["claimName"])
        assert job["metadata"]["annotations"]["siemgate.io/claim"] == claims[-1]
        assert secret_volume(pod) == secret_volume(ingest_pod)
        assert pod["restartPolicy"] == "Never"
    assert sorted(claims) == sorted(settings["claims"])


# --- hardening, probes, resources, shutdown ---------------------------------------------------


def test_every_container_is_restricted_and_sized(rendered: Rendered) -> None:
    for obj, pod in rendered.pods:
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        assert pod["automountServiceAccountToken"] is False, where
        pod_security = pod["securityContext"]
        assert pod_security["runAsNonRoot"] is True, where
        assert pod_security["seccompProfile"] == {"type": "RuntimeDefault"}, where
        for container in pod["containers"] + pod.get("initContainers", []):
            security = container["securityContext"]
            assert security["runAsNonRoot"] is True, where
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["allowPrivilegeEscalation"] is False, where
            assert security.get("privileged", False) is False, where
            assert security["capabilities"] == {"drop": ["ALL"]}, where
            assert security["seccompProfile"] == {"type": "RuntimeDefault"}, where
            resources = container["resources"]
            assert resources["requests"]["cpu"] and resources["requests"]["memory"], where
            assert resources["limits"]["memory"], where
    for account in rendered.kind("ServiceAccount"):
        assert account["automountServiceAccountToken"] is False


def test_probes_reach_siemgates_listeners(loaded: list[Workload]) -> None:
    for w in loaded:
        ports = {p["name"]: p["containerPort"] for p in w.container["ports"]}
        forward = w.command == "forward"
        listener = w.config.forward.listen.port if forward else w.config.listen.port
        scheme = "HTTPS" if not forward and w.config.listen.tls else "HTTP"
        for probe, path in (("startupProbe", "/healthz"), ("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            get = w.container[probe]["httpGet"]
            assert get["path"] == path, f"{w.name} {probe}"
            assert ports[get["port"]] == listener, f"{w.name} {probe}: port {get['port']}, siemgate on {listener}"
            assert get.get("scheme", "HTTP") == scheme


def test_ingest_workload_fits_its_bus(rendered: Rendered, loaded: list[Workload]) -> None:
    ingest = _ingest(rendered)
    name = ingest["metadata"]["name"]
    pod_labels = ingest["spec"]["template"]["metadata"]["labels"]
    if _mode(rendered) == "embedded":
        # One process owns the SQLite log: one replica, and never two at once.
        assert ingest["spec"]["replicas"] == 1
        if ingest["kind"] == "Deployment":
            assert ingest["spec"]["strategy"]["type"] == "Recreate"
        assert rendered.kind("HorizontalPodAutoscaler") == []
        assert rendered.kind("PodDisruptionBudget") == []
    else:
        hpa = rendered.maybe("HorizontalPodAutoscaler", name)
        autoscaled = rendered.values.get("ingest", {}).get("autoscaling", {}).get("enabled", True)
        assert (hpa is not None) is autoscaled  # on by default with Kafka
        if hpa is not None:
            assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": ingest["kind"], "name": name}
            assert "replicas" not in ingest["spec"], "replicas would fight the HPA"
            cpu = [m for m in hpa["spec"]["metrics"] if m["type"] == "Resource"]
            assert cpu[0]["resource"]["name"] == "cpu"
        pdb = rendered.get("PodDisruptionBudget", name)
        assert labels_match(pdb["spec"]["selector"]["matchLabels"], pod_labels)
        if ingest["kind"] == "Deployment":
            volumes = ingest["spec"]["template"]["spec"]["volumes"]
            if any("persistentVolumeClaim" in v for v in volumes):  # existingClaim: never two pods on it
                assert ingest["spec"]["strategy"]["type"] == "Recreate"
            else:
                assert ingest["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    if ingest["kind"] == "StatefulSet":
        assert [c["metadata"]["name"] for c in ingest["spec"]["volumeClaimTemplates"]] == ["data"]
        assert rendered.get("Service", ingest["spec"]["serviceName"])["spec"]["clusterIP"] == "None"
        assert not any(v["name"] == "data" for v in ingest["spec"]["template"]["spec"]["volumes"])
    constraints = ingest["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert {c["topologyKey"] for c in constraints} == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
    for constraint in constraints:
        assert labels_match(constraint["labelSelector"]["matchLabels"], pod_labels)
    assert _workload(loaded, name).command == ("run" if _mode(rendered) == "embedded" else "ingest")


def test_service_and_ingress_reach_the_webhooks(rendered: Rendered, loaded: list[Workload]) -> None:
    ingest = _ingest(rendered)
    name = ingest["metadata"]["name"]
    service = rendered.get("Service", name)
    assert labels_match(service["spec"]["selector"], ingest["spec"]["template"]["metadata"]["labels"])
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] == "http"
    ingress = rendered.maybe("Ingress", name)
    if ingress is None:
        assert not rendered.values.get("ingress", {}).get("enabled")
        return
    config = _workload(loaded, name).config
    paths = {p["path"]: p for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]}
    assert set(paths) == {i.path for i in config.integrations}, "each webhook, and only the webhooks"
    for path in paths.values():
        assert path["pathType"] == "Exact"
        assert path["backend"]["service"] == {"name": name, "port": {"name": port["name"]}}
    assert ingress["spec"]["tls"], "the webhook keys travel in headers: TLS"
    hosts = {h for t in ingress["spec"]["tls"] for h in t["hosts"]}
    assert {r["host"] for r in ingress["spec"]["rules"]} <= hosts


# --- forwarders: one Deployment, one consumer group, one autoscaler per sink ------------------


def test_each_sink_has_its_forwarder_scaled_within_its_partitions(rendered: Rendered, loaded: list[Workload]) -> None:
    forwarders = _forwarders(rendered)
    if _mode(rendered) != "kafka":
        assert forwarders == []
        return
    keda = rendered.values.get("keda", {}).get("enabled", False)
    for forwarder in forwarders:
        name = forwarder["metadata"]["name"]
        config = _workload(loaded, name).config
        assert config.bus.kafka is not None
        partitions = config.bus.kafka.topics.partitions
        pod_labels = forwarder["spec"]["template"]["metadata"]["labels"]
        pdb = rendered.get("PodDisruptionBudget", name)
        assert labels_match(pdb["spec"]["selector"]["matchLabels"], pod_labels)
        for constraint in forwarder["spec"]["template"]["spec"]["topologySpreadConstraints"]:
            assert labels_match(constraint["labelSelector"]["matchLabels"], pod_labels)
        scaler = rendered.maybe("ScaledObject" if keda else "HorizontalPodAutoscaler", name)
        assert rendered.maybe("HorizontalPodAutoscaler" if keda else "ScaledObject", name) is None
        if scaler is None:  # autoscaling off for this sink
            assert 1 <= forwarder["spec"]["replicas"] <= partitions
            continue
        assert "replicas" not in forwarder["spec"], "replicas would fight the autoscaler"
        if keda:
            low, high = scaler["spec"]["minReplicaCount"], scaler["spec"]["maxReplicaCount"]
            assert scaler["spec"]["scaleTargetRef"]["name"] == name
        else:
            low, high = scaler["spec"]["minReplicas"], scaler["spec"]["maxReplicas"]
            assert scaler["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
        assert 1 <= low <= high <= partitions, f"{name}: {low}..{high} replicas for {partitions} partitions"


SASL_MODES = {"PLAIN": "plaintext", "SCRAM-SHA-256": "scram_sha256", "SCRAM-SHA-512": "scram_sha512",
              "OAUTHBEARER": "oauthbearer"}


def test_keda_triggers_name_the_sinks_group_and_topics(rendered: Rendered, loaded: list[Workload]) -> None:
    scaled = rendered.kind("ScaledObject")
    if not rendered.values.get("keda", {}).get("enabled"):
        assert scaled == []
        return
    assert len(scaled) == len(_forwarders(rendered))
    for obj in scaled:
        config = _workload(loaded, obj["spec"]["scaleTargetRef"]["name"]).config
        kafka = config.bus.kafka
        assert kafka is not None
        (sink,) = config.sinks
        triggers = obj["spec"]["triggers"]
        assert {t["type"] for t in triggers} == {"kafka"}
        # The group and topics siemgate's forwarder really uses (forwarders/runtime.py, record.py).
        assert {t["metadata"]["consumerGroup"] for t in triggers} == {group_id(config, sink.name)}
        assert sorted(t["metadata"]["topic"] for t in triggers) == sorted(all_topics(config.bus.topic_prefix))
        security = kafka.security
        for trigger in triggers:
            metadata = trigger["metadata"]
            assert metadata["bootstrapServers"] == ",".join(kafka.servers)
            assert metadata["offsetResetPolicy"] == "earliest"  # as siemgate's consumers (bus/kafka_bus.py)
            assert int(metadata["lagThreshold"]) >= 1
            assert metadata.get("sasl") == (SASL_MODES[security.sasl_mechanism]
                                            if security.protocol.startswith("SASL") else None)
            assert (metadata.get("tls") == "enable") is (security.protocol in ("SSL", "SASL_SSL"))
            if security.protocol.startswith("SASL") or (security.protocol == "SSL" and security.ca_file):
                assert "authenticationRef" in trigger
        modifiers = obj["spec"].get("advanced", {}).get("scalingModifiers")
        if modifiers is not None:
            terms = {t.strip() for t in modifiers["formula"].split("+")}
            assert terms == {t["name"] for t in triggers}, "the formula sums every topic's lag"
            assert modifiers["metricType"] == "AverageValue"
    for auth in rendered.kind("TriggerAuthentication"):
        refs = {r["parameter"]: r for r in auth["spec"]["secretTargetRef"]}
        security = loaded[0].config.bus.kafka.security  # type: ignore[union-attr]
        if security.protocol.startswith("SASL"):
            # The same Secret keys the pods expand into username and password.
            assert "${" + refs["username"]["key"] + "}" == security_raw(rendered, "username")
            assert "${" + refs["password"]["key"] + "}" == security_raw(rendered, "password")
        if security.ca_file:
            assert refs["ca"]["name"] == rendered.values["kafkaTls"]["secretName"]
            assert security.ca_file.endswith("/" + refs["ca"]["key"])


def security_raw(rendered: Rendered, key: str) -> str:
    return str(rendered.values["config"]["bus"]["kafka"]["security"][key])


# --- custom resources: their shape (kubernetes-validate has no schema for them) --------------


def _strings(mapping: dict[str, Any]) -> bool:
    return all(isinstance(k, str) and isinstance(v, str) for k, v in mapping.items())


def _other_secrets(values: dict[str, Any]) -> set[str]:
    """The Secrets besides the chart's that values name: kafkaTls's, those forwarder.extraEnv
    reads, keda.authentication's."""
    tls = values.get("kafkaTls", {})
    names = {tls.get(k) for k in ("secretName", "caSecretName", "clientSecretName")}
    names |= {e["valueFrom"]["secretKeyRef"]["name"] for e in values.get("forwarder", {}).get("extraEnv", [])
              if "secretKeyRef" in e.get("valueFrom", {})}
    names |= {r["secretName"] for r in values.get("keda", {}).get("authentication", {}).values()}
    return {n for n in names if n}


def test_custom_resources_are_well_formed(rendered: Rendered) -> None:
    deployments = {d["metadata"]["name"] for d in rendered.kind("Deployment")}
    auths = {a["metadata"]["name"]: a for a in rendered.kind("TriggerAuthentication")}
    for obj in rendered.kind("ScaledObject"):
        assert obj["apiVersion"] == "keda.sh/v1alpha1"
        spec = obj["spec"]
        assert set(spec) <= {"scaleTargetRef", "pollingInterval", "cooldownPeriod", "initialCooldownPeriod",
                             "idleReplicaCount", "minReplicaCount", "maxReplicaCount", "fallback", "advanced",
                             "triggers"}
        assert spec["scaleTargetRef"]["name"] in deployments
        assert spec["triggers"]
        for key in ("pollingInterval", "cooldownPeriod", "minReplicaCount", "maxReplicaCount"):
            assert isinstance(spec[key], int)
        if "fallback" in spec:
            assert isinstance(spec["fallback"]["failureThreshold"], int)
            assert isinstance(spec["fallback"]["replicas"], int)
        if "advanced" in spec:
            assert set(spec["advanced"]) <= {"horizontalPodAutoscalerConfig", "scalingModifiers",
                                             "restoreToOriginalReplicaCount"}
            modifiers = spec["advanced"].get("scalingModifiers")
            if modifiers is not None:
                assert {"formula", "target"} <= set(modifiers) and _strings(modifiers)
        for trigger in spec["triggers"]:
            assert set(trigger) <= {"type", "name", "metadata", "authenticationRef", "metricType", "useCachedMetrics"}
            assert isinstance(trigger["type"], str)
            assert _strings(trigger["metadata"]), "KEDA trigger metadata is a map of strings"
            if "authenticationRef" in trigger:
                assert trigger["authenticationRef"]["name"] in auths
    secret_keys = set(rendered.secret_values)
    for obj in rendered.kind("TriggerAuthentication"):
        assert obj["apiVersion"] == "keda.sh/v1alpha1"
        refs = obj["spec"]["secretTargetRef"]
        assert refs
        for ref in refs:
            assert set(ref) == {"parameter", "name", "key"} and _strings(ref)
            assert ref["parameter"] in {"sasl", "username", "password", "tls", "ca", "cert", "key", "keyPassword"}
            if ref["name"] == rendered.secret_name:
                assert ref["key"] in secret_keys
            else:
                assert ref["name"] in _other_secrets(rendered.values), ref
    services = rendered.kind("Service")
    for obj in rendered.kind("ServiceMonitor"):
        assert obj["apiVersion"] == "monitoring.coreos.com/v1"
        selector = obj["spec"]["selector"]["matchLabels"]
        assert obj["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
        selected = [s for s in services if labels_match(selector, s["metadata"]["labels"])]
        assert len(selected) == 1, "one Service per ServiceMonitor (not the StatefulSet's headless one)"
        ports = {p["name"] for p in selected[0]["spec"]["ports"]}
        for endpoint in obj["spec"]["endpoints"]:
            assert endpoint["port"] in ports
            assert endpoint["path"] == "/metrics"
            assert re.fullmatch(r"[0-9]+(ms|s|m|h)", endpoint["interval"])
    exported = exported_metric_names() | defined_metric_names() | AGREED_METRICS
    for obj in rendered.kind("PrometheusRule"):
        assert obj["apiVersion"] == "monitoring.coreos.com/v1"
        for group in obj["spec"]["groups"]:
            assert isinstance(group["name"], str) and group["rules"]
            for rule in group["rules"]:
                assert set(rule) <= {"alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations"}
                assert isinstance(rule["alert"], str) and isinstance(rule["expr"], str)
                assert rule["expr"].count("(") == rule["expr"].count(")")
                assert rule["expr"].count("{") == rule["expr"].count("}")
                if "for" in rule:
                    assert re.fullmatch(r"[0-9]+(ms|s|m|h|d)", rule["for"])
                assert rule["labels"]["severity"] in {"critical", "warning", "info"}
                # Prometheus's grammar (functions, regexes, vector matching), as promtool checks it.
                names = {name for name, _ in promql_selectors(rule["expr"])}
                assert names, f"{rule['alert']}: no series"
                ours = {n for n in names if n.startswith("siemgate_")}
                assert ours <= exported, f"{rule['alert']}: {ours - exported} not exported by siemgate"
                assert ours == metric_names_in(rule["expr"])
                assert names - ours <= {"up"} | KEDA_METRICS, f"{rule['alert']}: {names - ours - {'up'}}"


# KEDA operator metrics a rule may use (KEDA >= 2.14 names, the chart's minimum).
KEDA_METRICS = {"keda_scaled_object_errors_total", "keda_scaler_detail_errors_total"}


def _alerts(rendered: Rendered) -> list[Obj]:
    return [a for rule in rendered.kind("PrometheusRule") for g in rule["spec"]["groups"] for a in g["rules"]]


def _pod_names(deployment: str) -> list[str]:
    """Names Kubernetes gives a Deployment's pods: <name>-<template hash>-<suffix>."""
    return [f"{deployment}-5d8f7c9b4d-x2k9q", f"{deployment}-7f6b9-abcde"]


def _matches(labels: dict[str, tuple[str, str]], label: str, value: str) -> bool:
    op, wanted = labels[label]
    return value == wanted if op == "Equal" else re.fullmatch(wanted, value) is not None if op == "Re" else False


def _check_gone_alerts(rendered: Rendered) -> None:
    alerts = _alerts(rendered)
    by_name: dict[str, list[Obj]] = {}
    for alert in alerts:
        by_name.setdefault(alert["alert"], []).append(alert)
    services = {s["metadata"]["name"] for s in rendered.kind("Service")}
    sinks = _sink_names(rendered)
    # No ingest up at all (absent of `up == 1`: crashed, unscheduled, or none selected).
    (ingest_absent,) = by_name["SiemgateIngestAbsent"]
    assert ingest_absent["expr"].startswith("absent(")
    ((name, labels),) = promql_selectors(ingest_absent["expr"])
    # The job is the Service the ServiceMonitor scrapes (Prometheus Operator names jobs after it).
    scraped = rendered.get("Service", labels["job"][1])
    assert labels["job"][0] == "Equal" and scraped["metadata"]["labels"].get("siemgate.io/metrics") == "true"
    assert labels_match(scraped["spec"]["selector"], _ingest(rendered)["spec"]["template"]["metadata"]["labels"])
    assert labels["namespace"] == ("Equal", NAMESPACE)
    assert ingest_absent["labels"]["severity"] == "critical"
    # Every sink: no process exporting siemgate_sink_up for it at all.
    unmonitored = {a["labels"]["sink"]: a for a in by_name["SiemgateSinkUnmonitored"]}
    assert set(unmonitored) == set(sinks)
    for sink, alert in unmonitored.items():
        ((name, labels),) = promql_selectors(alert["expr"])
        assert alert["expr"].startswith("absent(") and name == "siemgate_sink_up"
        assert labels["sink"] == ("Equal", sink)
    # Kafka: each sink's forwarder Deployment, by its pods' names (never another sink's pods).
    absent = {a["labels"]["sink"]: a for a in by_name.get("SiemgateForwarderAbsent", [])}
    forwarders = {f["metadata"]["name"]: f for f in _forwarders(rendered)}
    assert len(absent) == len(forwarders) == (len(sinks) if _mode(rendered) == "kafka" else 0)
    for sink, alert in absent.items():
        ((name, labels),) = promql_selectors(alert["expr"])
        assert name == "up" and labels["job"][1] in services
        own = [f for f in forwarders if f.endswith(f"-fwd-{sink}")]
        assert len(own) == 1
        for deployment in forwarders:
            for pod in _pod_names(deployment):
                assert _matches(labels, "pod", pod) is (deployment == own[0]), (sink, pod)
    # A lag that was there and whose series vanished (the forwarders that measured it are gone).
    (unwatched,) = by_name["SiemgateLagUnwatched"]
    expr = " ".join(unwatched["expr"].split())
    assert "last_over_time(siemgate_forward_lag_events{" in expr
    assert re.search(r"unless on \(namespace, sink\) siemgate_forward_lag_events\{[^}]*\}$", expr)
    (frozen,) = by_name["SiemgateLagFrozen"]
    assert "changes(siemgate_forward_lag_events" in frozen["expr"]
    (reload,) = by_name["SiemgateConfigReloadInvalid"]
    ((name, labels),) = promql_selectors(reload["expr"])
    assert name == "siemgate_config_reload_total" and _matches(labels, "result", "invalid")
    # The rules already there for a spool or log that waits or fills are kept, not duplicated.
    for kept in ("SiemgateSpoolStranded", "SiemgateStorageFilling", "SiemgateForwarderStalled", "SiemgateSpooling"):
        assert len(by_name[kept]) == 1
    scaled = [o["metadata"]["name"] for o in rendered.kind("ScaledObject")]
    keda = by_name.get("SiemgateKedaScalerErrors", [])
    assert len(keda) == (1 if scaled else 0)
    for alert in keda:
        selectors = promql_selectors(alert["expr"])
        assert {n for n, _ in selectors} == KEDA_METRICS
        for _, labels in selectors:
            for obj in scaled:
                assert _matches(labels, "scaledObject", obj)
            assert not _matches(labels, "scaledObject", scaled[0] + "x")


def test_prometheus_rule_alerts_when_something_is_gone(rendered: Rendered) -> None:
    if not rendered.values.get("metrics", {}).get("prometheusRule", {}).get("enabled"):
        assert _alerts(rendered) == []
        return
    _check_gone_alerts(rendered)


@pytest.mark.parametrize("name", ["kafka-keda-values.yaml", "default-values.yaml"])
def test_gone_alerts_with_keda_and_embedded(name: str) -> None:
    values = load_values(CHART / "ci" / name)
    values.setdefault("metrics", {})["prometheusRule"] = {"enabled": True}
    _check_gone_alerts(render(values))


def test_promql_check_refuses_what_prometheus_refuses() -> None:
    """The parser under the rule checks is a real one: it refuses what Prometheus refuses."""
    for bad in ("absent(up{job=\"a\"} == 1", "nosuchfunction(up)", 'up{pod=~"("}', "sum by (a) (up) ==",
                "rate(up)"):
        with pytest.raises(ValueError):
            promql_selectors(bad)


def test_metric_definitions_are_found_in_the_code() -> None:
    """defined_metric_names greps the definitions: it finds what the registries export, and
    the metrics only registered at run time."""
    defined = defined_metric_names()
    assert exported_metric_names() - AGREED_METRICS <= defined
    assert {"siemgate_config_reload_total", "siemgate_stalled", "siemgate_storage_bytes"} <= defined


def test_prometheus_rule_alerts_on_what_loses_or_delays_events(rendered: Rendered) -> None:
    rules = rendered.kind("PrometheusRule")
    if not rendered.values.get("metrics", {}).get("prometheusRule", {}).get("enabled"):
        assert rules == []
        return
    (rule,) = rules
    by_metric: dict[str, set[str]] = {}
    for group in rule["spec"]["groups"]:
        for alert in group["rules"]:
            for metric in metric_names_in(alert["expr"]):
                by_metric.setdefault(metric, set()).add(alert["expr"])
    assert "siemgate_sink_up" in by_metric  # sink down
    assert "siemgate_forward_lag_events" in by_metric  # lag growing
    assert "siemgate_spool_bytes" in by_metric  # spool filling
    assert "siemgate_dlq_events_total" in by_metric  # dead letters growing
    assert any('code=~"5.."' in e for e in by_metric["siemgate_ingest_requests_total"])  # 5xx answered
    alerts = {a["alert"]: a for group in rule["spec"]["groups"] for a in group["rules"]}
    # A spool left on the claim of a pod that is gone: its last count (the series went stale with
    # the pod) over a long window, kept only for pods Prometheus no longer scrapes at all.
    stranded = " ".join(alerts["SiemgateSpoolStranded"]["expr"].split())
    assert re.search(r"last_over_time\(siemgate_spool_events\{[^}]*\}\[[0-9]+[smhdwy]\]\)\) > 0", stranded)
    assert re.search(r"unless on \(namespace, pod\) up\{[^}]*\}$", stranded)
    assert alerts["SiemgateSpoolStranded"]["labels"]["severity"] == "critical"
    assert "spoolDrainJob" in alerts["SiemgateSpoolStranded"]["annotations"]["description"]
    ratio = rendered.values["metrics"]["prometheusRule"].get("storageUsageRatio", 0.8)
    usage = " ".join(alerts["SiemgateStorageFilling"]["expr"].split())
    assert "siemgate_storage_bytes" in usage
    assert f"> {ratio} * max by (namespace, pod, store) (siemgate_storage_limit_bytes" in usage
    free = alerts["SiemgateStorageVolumeTooSmall"]["expr"]
    assert "siemgate_storage_free_bytes" in free and "siemgate_storage_limit_bytes" in free
    drains = alerts["SiemgateShutdownDrainIncomplete"]["expr"]
    assert 'outcome=~"timeout|unreachable"' in drains and "siemgate_shutdown_drain_total" in drains


def test_network_policies_let_the_pipeline_through(rendered: Rendered, loaded: list[Workload]) -> None:
    policies = rendered.kind("NetworkPolicy")
    if not rendered.values.get("networkPolicy", {}).get("enabled"):
        assert policies == []
        return
    for w in loaded:
        selecting = [p for p in policies if labels_match(p["spec"]["podSelector"]["matchLabels"], w.labels)]
        assert len(selecting) == 1, w.name
        spec = selecting[0]["spec"]
        assert spec["policyTypes"] == ["Ingress", "Egress"]
        ports = {p["name"] for p in w.container["ports"]}
        admin = rendered.values.get("admin", {})
        if admin.get("enabled") and not admin.get("allowedFrom"):
            ports.discard("admin")  # no peer at all (an empty `from` would be everyone): port-forward only
        assert {p["port"] for rule in spec["ingress"] for p in rule["ports"]} == ports
        egress = {(p["port"], p.get("protocol", "TCP")) for rule in spec["egress"] for p in rule.get("ports", [])}
        assert {(53, "UDP"), (53, "TCP")} <= egress, "DNS"
        config = w.config
        if config.bus.kafka is not None:
            for server in config.bus.kafka.servers:
                assert (int(server.rsplit(":", 1)[1]), "TCP") in egress, f"{w.name}: Kafka {server}"
        for sink in config.sinks:
            if sink.type == "syslog":
                address = sink.settings.target
                assert (address.port, "UDP" if address.transport == "udp" else "TCP") in egress, sink.name
            elif sink.type in ("splunk_hec", "elasticsearch"):
                url = sink.settings.url
                port = re.search(r":([0-9]+)(/|$)", url.split("//", 1)[1])
                expected = int(port.group(1)) if port else (443 if url.startswith("https") else 80)
                assert (expected, "TCP") in egress, f"{w.name}: {sink.name} on {expected}"


def test_helm_test_pod_asks_the_ingest_readyz(rendered: Rendered) -> None:
    pods = rendered.kind("Pod")
    (pod,) = pods
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (container,) = pod["spec"]["containers"]
    script = container["args"][0]
    service = rendered.get("Service", _ingest(rendered)["metadata"]["name"])
    port = service["spec"]["ports"][0]["port"]
    assert f"://{service['metadata']['name']}:{port}/readyz" in script
    compile(script, "helm-test", "exec")
    assert pod["spec"]["restartPolicy"] == "Never"


def test_notes_tell_how_to_reach_and_confirm(rendered: Rendered, loaded: list[Workload]) -> None:
    notes = rendered.notes
    assert "siemgate confirmations -c /etc/siemgate/siemgate.yaml" in notes
    assert "siemgate confirm -c /etc/siemgate/siemgate.yaml" in notes
    config = _workload(loaded, _ingest(rendered)["metadata"]["name"]).config
    for integration in config.integrations:
        assert integration.path in notes and integration.auth.header in notes
    if not config.integrations:
        assert "No integration is configured" in notes


def test_grafana_dashboard_config_map_ships_the_dashboard(rendered: Rendered) -> None:
    maps = [m for m in rendered.kind("ConfigMap") if m["metadata"]["labels"].get("grafana_dashboard") == "1"]
    if not rendered.values.get("metrics", {}).get("grafanaDashboard", {}).get("enabled"):
        assert maps == []
        return
    (config_map,) = maps
    shipped = json.loads(config_map["data"]["siemgate-dashboard.json"])
    assert shipped == json.loads((ROOT / "deploy" / "grafana" / "siemgate-dashboard.json").read_text())


# --- values the chart refuses -----------------------------------------------------------------


def _render_error(values: dict[str, Any]) -> str:
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmError) as caught:
        chart.render(values, name="siem", namespace=NAMESPACE)
    return str(caught.value)


KAFKA = {"bus": {"type": "kafka", "kafka": {"bootstrap_servers": "kafka:9092"}}}


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"sinks": [{"name": "splunk", "type": "splunk_hec",
                     "config": {"url": "https://splunk:8088", "token": "a-literal-token"}}]}, "/sinks/0/config/token"),
        ({"config": {"integrations": [{"name": "a", "auth": {"header": "X-Api-Key", "values": ["hunter2"]}}]}},
         "/config/integrations/0/auth/values/0"),
        ({"config": {"bus": {"kafka": {"security": {"protocol": "SASL_SSL", "password": "pw"}}}}},
         "/config/bus/kafka/security/password"),
        ({"sinks": [{"name": "es", "type": "elasticsearch", "config": {"url": "https://es:9200"}}]}, "/sinks/0/config"),
        ({"sinks": [{"name": "soc", "type": "syslog", "config": {"address": "tcp://s:514"}, "replica": 3}]},
         "/sinks/0"),
        ({"sinks": [{"name": "Bad_Name", "type": "file", "config": {"path": "/data/x"}}]}, "/sinks/0/name"),
        ({"sinks": [{"name": "out", "type": "file", "config": {"path": "/var/log/x"}}]}, "/sinks/0/config/path"),
        ({"config": {"state_dir": "/var/lib/siemgate"}}, "/config"),
        ({"securityContext": {"readOnlyRootFilesystem": False}}, "/securityContext/readOnlyRootFilesystem"),
        ({"ingest": {"resources": {"requests": {"memory": None}}}}, "/ingest/resources/requests"),
        ({"unknownKey": True}, "unknownKey"),
    ],
    ids=["literal-sink-token", "literal-webhook-key", "literal-kafka-password", "es-without-credentials",
         "misspelt-forwarder-key", "sink-name", "file-sink-off-the-volume", "chart-owned-path", "writable-root",
         "no-memory-request", "unknown-key"],
)
def test_values_schema_rejects_bad_values(values: dict[str, Any], complaint: str) -> None:
    message = _render_error(values)
    assert "schema" in message and complaint in message


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"config": {**KAFKA, "integrations": [
            {"name": "a", "auth": {"header": "X-Api-Key", "values": ["${APPSEC_KEY}"]}}]}},
         "set secrets.values.APPSEC_KEY"),
        ({"sinks": [{"name": "a", "type": "file", "config": {"path": "/data/a"}},
                    {"name": "a", "type": "file", "config": {"path": "/data/b"}}]}, "used twice"),
        ({"secrets": {"existingSecret": "keys", "values": {"A": "b"}}}, "not both"),
        ({"config": KAFKA, "forwarder": {"autoscaling": {"minReplicas": 7}}}, "minReplicas 7 is above its maximum 6"),
        ({"config": {"bus": {"type": "kafka", "kafka": {
            "bootstrap_servers": "kafka:9092",
            "security": {"protocol": "SASL_SSL", "username": "siemgate", "password": "${KAFKA_PASSWORD}"}}}},
          "keda": {"enabled": True}, "secrets": {"values": {"KAFKA_PASSWORD": "pw"}}},
         "security.username must be a ${VAR}"),
    ],
    ids=["missing-secret", "duplicate-sink", "two-secret-sources", "min-above-partitions", "keda-literal-username"],
)
def test_templates_refuse_inconsistent_values(values: dict[str, Any], complaint: str) -> None:
    assert complaint in _render_error(values)


def test_forwarder_replicas_are_capped_by_partitions_unless_told_otherwise() -> None:
    base = {"config": {**KAFKA, "bus": {**KAFKA["bus"], "kafka": {"bootstrap_servers": "kafka:9092",
                                                                   "topics": {"partitions": 4}}}},
            "keda": {"enabled": True},
            "sinks": [{"name": "archive", "type": "file", "config": {"path": "/data/a", "rotate_bytes": 67108864},
                       "autoscaling": {"maxReplicas": 20}}]}
    capped = render(base).get("ScaledObject", "siem-siemgate-fwd-archive")
    assert capped["spec"]["maxReplicaCount"] == 4
    for trigger in capped["spec"]["triggers"]:
        assert trigger["metadata"]["allowIdleConsumers"] == "false"
    base["sinks"][0]["autoscaling"]["allowIdleConsumers"] = True
    uncapped = render(base).get("ScaledObject", "siem-siemgate-fwd-archive")
    assert uncapped["spec"]["maxReplicaCount"] == 20
    for trigger in uncapped["spec"]["triggers"]:
        assert trigger["metadata"]["allowIdleConsumers"] == "true"


# --- the status page (admin) ------------------------------------------------------------------


def _admin_enabled(rendered: Rendered) -> bool:
    return bool(rendered.values.get("admin", {}).get("enabled"))


def test_admin_service_reaches_the_ingest_pods_admin_listener(rendered: Rendered, loaded: list[Workload]) -> None:
    services = [s for s in rendered.kind("Service") if s["metadata"]["name"].endswith("-admin")]
    if not _admin_enabled(rendered):
        assert services == []
        for w in loaded:
            assert w.config.admin is None
            assert "admin" not in {p["name"] for p in w.container["ports"]}
        return
    (service,) = services
    ingest = _ingest(rendered)
    assert service["spec"]["type"] == "ClusterIP"
    assert labels_match(service["spec"]["selector"], ingest["spec"]["template"]["metadata"]["labels"])
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] == "admin"
    assert "siemgate.io/metrics" not in service["metadata"]["labels"], "the status page is not scraped"
    secrets = rendered.secret_values
    for w in loaded:
        admin = w.config.admin
        assert admin is not None, w.name
        ports = {p["name"]: p["containerPort"] for p in w.container["ports"]}
        assert ports["admin"] == admin.port and admin.host == "0.0.0.0"
        assert admin.port not in (w.config.listen.port, w.config.forward.listen.port)
        # The token comes from the Secret, as every other secret.
        key = rendered.values["admin"].get("tokenKey", "SIEMGATE_ADMIN_TOKEN")
        assert admin.token.reveal() == secrets[key]
    for config_map in rendered.kind("ConfigMap"):
        assert secrets[rendered.values["admin"].get("tokenKey", "SIEMGATE_ADMIN_TOKEN")] not in json.dumps(config_map)


def test_the_ingress_never_routes_to_the_status_page(rendered: Rendered) -> None:
    _assert_ingress_never_routes_to_admin(rendered)


@pytest.mark.parametrize("paths", [None, [{"path": "/"}], [{"path": "/", "pathType": "Prefix"},
                                                         {"path": "/admin", "pathType": "Prefix"}]],
                         ids=["webhook-paths", "root", "prefixes"])
def test_the_ingress_never_routes_to_the_status_page_whatever_its_paths(paths: list[Any] | None) -> None:
    host: dict[str, Any] = {"host": "siemgate.example.com"}
    if paths is not None:
        host["paths"] = paths
    rendered = render({
        "config": {"integrations": [{"name": "appsec-prod", "auth": {"header": "X-Api-Key", "values": ["${K}"]}}]},
        "secrets": {"values": {"K": "k-0123456789abcdef", "SIEMGATE_ADMIN_TOKEN": "admin-token-0123456789"}},
        "admin": {"enabled": True},
        "ingress": {"enabled": True, "hosts": [host]},
    })
    assert rendered.maybe("Service", "siem-siemgate-admin") is not None
    assert rendered.kind("Ingress")
    _assert_ingress_never_routes_to_admin(rendered)


def _assert_ingress_never_routes_to_admin(rendered: Rendered) -> None:
    admin_services = {s["metadata"]["name"] for s in rendered.kind("Service")
                      if s["metadata"]["name"].endswith("-admin")}
    ingest_service = _ingest(rendered)["metadata"]["name"]
    for ingress in rendered.kind("Ingress"):
        assert "defaultBackend" not in ingress["spec"]
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                assert backend["name"] not in admin_services
                assert backend["name"] == ingest_service and backend["port"] == {"name": "http"}


def test_network_policy_opens_the_admin_port_to_allowed_from_only(rendered: Rendered) -> None:
    if not (_admin_enabled(rendered) and rendered.values.get("networkPolicy", {}).get("enabled")):
        return
    allowed = rendered.values["admin"].get("allowedFrom") or []
    for policy in rendered.kind("NetworkPolicy"):
        rules = [r for r in policy["spec"]["ingress"] if any(p["port"] == "admin" for p in r["ports"])]
        if not allowed:
            assert rules == [], "no rule at all: an empty `from` would let everyone in"
            continue
        (rule,) = rules
        assert rule["from"] == allowed
        assert [p["port"] for p in rule["ports"]] == ["admin"]


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"admin": {"enabled": True}}, "set secrets.values.SIEMGATE_ADMIN_TOKEN"),
        ({"admin": {"enabled": True, "port": 8080}, "secrets": {"values": {"SIEMGATE_ADMIN_TOKEN": "t" * 20}}},
         "admin.port 8080 is the webhook port"),
        ({"admin": {"enabled": True, "port": 9108}, "secrets": {"values": {"SIEMGATE_ADMIN_TOKEN": "t" * 20}}},
         "admin.port 9108 is config.forward.listen.port"),
    ],
    ids=["no-token", "webhook-port", "forward-port"],
)
def test_admin_values_the_chart_refuses(values: dict[str, Any], complaint: str) -> None:
    assert complaint in _render_error(values)


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"config": {"admin": {"port": 9180, "token": "${T}"}}}, "/config"),
        ({"admin": {"enabled": True, "tokenKey": "not a variable"}}, "/admin/tokenKey"),
        ({"admin": {"enabled": True, "service": {"type": "LoadBalancer"}}}, "/admin/service"),
    ],
    ids=["chart-owned-config", "token-key", "service-type"],
)
def test_admin_values_the_schema_refuses(values: dict[str, Any], complaint: str) -> None:
    message = _render_error(values)
    assert "schema" in message and complaint in message


# --- combinations that could lose acknowledged events, refused with what to set (issue 15) ----


def _kafka_bus(**extra: Any) -> dict[str, Any]:
    return {"type": "kafka", "kafka": {"bootstrap_servers": "kafka:9092"}, **extra}


ONE_EMPTYDIR_DEMO = {"replicas": 1, "autoscaling": {"enabled": False}}


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"ingest": {"persistence": {"enabled": False}}},
         "ingest.persistence.enabled=false puts /data, which holds the embedded log"),
        ({"config": KAFKA, "ingest": {"persistence": {"enabled": False}}},
         "for a throw-away demo only, set ingest.persistence.acceptDataLossOnPodDeletion=true"),
        ({"config": KAFKA, "ingest": {"persistence": {"enabled": False, "acceptDataLossOnPodDeletion": True}}},
         "ingest.autoscaling.enabled over emptyDir spools: every scale-down deletes a pod and what its spool holds. "
         "Set ingest.persistence.enabled=true"),
        ({"config": KAFKA, "ingest": {"replicas": 3, "autoscaling": {"enabled": False},
                                      "persistence": {"enabled": False, "acceptDataLossOnPodDeletion": True}}},
         "ingest.replicas=3 over emptyDir spools"),
        ({"ingest": {"autoscaling": {"enabled": True}}}, "set ingest.autoscaling.enabled=false (or leave it unset)"),
        ({"ingest": {"replicas": 2}}, "ingest.replicas=2: the embedded bus is one process"),
        ({"config": KAFKA, "ingest": {"persistence": {"existingClaim": "spool"}}},
         "set ingest.autoscaling.enabled=false and ingest.replicas=1"),
        ({"ingest": {"persistence": {"enabled": False, "existingClaim": "spool"}}},
         "set ingest.persistence.enabled=true to use the claim"),
        ({"config": KAFKA, "ingest": {"persistence": {"retentionPolicy": {"whenScaled": "Delete"}}}},
         "ingest.persistence.retentionPolicy.whenScaled=Delete deletes a claim that may still hold the spool"),
        ({"config": KAFKA, "ingest": {"persistence": {"retentionPolicy": {"whenDeleted": "Delete"}}}},
         "ingest.persistence.retentionPolicy.whenDeleted=Delete"),
        # The issue's example: an 8 GiB spool on a 6 Gi emptyDir.
        ({"config": {"bus": _kafka_bus(spool={"max_bytes": 8 * 1024**3})},
          "ingest": {**ONE_EMPTYDIR_DEMO, "persistence": {"enabled": False, "acceptDataLossOnPodDeletion": True,
                                                          "emptyDir": {"sizeLimit": "6Gi"}}}},
         "ingest.persistence.emptyDir.sizeLimit=6Gi is smaller than what siemgate may keep on /data: "
         "config.bus.spool.max_bytes 8.00Gi + config.quarantine.max_bytes 0.25Gi + the spool file's overhead 2.00Gi "
         "(ingest.persistence.spoolFileOverheadPercent) + headroom 1.02Gi (10%, at least "
         "ingest.persistence.minHeadroom) = 11.27Gi. Set ingest.persistence.emptyDir.sizeLimit to at least 12Gi"),
        ({"config": {"bus": _kafka_bus(spool={"max_bytes": 8 * 1024**3})}, "ingest": {"persistence": {"size": "6Gi"}}},
         "Set ingest.persistence.size to at least 12Gi"),
        # Decimal units: 12G (12e9 bytes) is less than the default caps' 11.5 GiB (12.4e9 bytes).
        ({"ingest": {"persistence": {"size": "12G"}}},
         "ingest.persistence.size=12G is smaller than what siemgate may keep on /data: config.bus.max_bytes 10.00Gi"
         " + config.quarantine.max_bytes 0.25Gi + file sinks 0.25Gi"),
        ({"config": {"bus": {"max_bytes": 20 * 1024**3}}}, "Set ingest.persistence.size to at least 23Gi"),
        ({"config": {"bus": {"max_bytes": 20 * 1024**3}}, "ingest": {"persistence": {"minHeadroom": "8Gi"}}},
         "headroom 8.00Gi"),
        ({"config": KAFKA, "ingest": {"terminationGracePeriodSeconds": 60}},
         "ingest.terminationGracePeriodSeconds=60 is shorter than siemgate's shutdown: preStop 10s + requests in "
         "flight 30s (config.limits.body_timeout_seconds, at least 25) + config.bus.spool.drain_timeout_seconds 300s"
         " = 340s"),
        ({"config": {**KAFKA, "bus": _kafka_bus(spool={"drain_timeout_seconds": 30}),
                     "limits": {"body_timeout_seconds": 5}},
          "ingest": {"terminationGracePeriodSeconds": 60}}, "Set it to at least 65"),
        ({"ingest": {"terminationGracePeriodSeconds": 60}},
         "the forwarders' drain (config.forward.drain_timeout_seconds + 5) 25s = 65s"),
        ({"config": KAFKA, "forwarder": {"terminationGracePeriodSeconds": 10}},
         "terminationGracePeriodSeconds=10 of sink archive's forwarder is shorter than its drain"),
        ({"config": KAFKA, "sinks": [{"name": "out", "type": "file", "config": {"path": "/data/out"}}]},
         "sink out keeps up to 1.07Gi of files (rotate_bytes x (keep + 1)) on a 1Gi emptyDir"),
        ({"ingest": {"resources": {"requests": {"cpu": "1", "memory": "1Gi", "ephemeral-storage": "100Mi"},
                                   "limits": {"memory": "1Gi"}}}},
         "ingest.resources.requests.ephemeral-storage=100Mi is smaller than what the pod writes outside its claims"),
        ({"spoolDrainJob": {"enabled": True, "claims": ["data-x"]}}, "the embedded bus has no spool to drain"),
        ({"config": KAFKA, "spoolDrainJob": {"enabled": True}}, "name the claims to drain in spoolDrainJob.claims"),
    ],
    ids=["embedded-emptydir", "kafka-emptydir", "hpa-over-emptydir", "replicas-over-emptydir", "embedded-hpa",
         "embedded-replicas", "existing-claim-autoscaled", "existing-claim-disabled", "scaled-claims-deleted",
         "deleted-claims-deleted", "spool-over-emptydir", "spool-over-claim", "log-over-claim-decimal-units",
         "log-cap-over-claim", "min-headroom", "grace-below-spool-drain", "grace-below-short-drain",
         "grace-below-forwarders-drain", "forwarder-grace", "file-sink-over-data-volume", "ephemeral-given-too-small",
         "drain-job-embedded", "drain-job-without-claims"],
)
def test_chart_refuses_what_could_lose_acknowledged_events(values: dict[str, Any], complaint: str) -> None:
    assert complaint in _render_error(values)


def test_the_ingest_memory_budget_is_a_share_of_its_memory_limit(rendered: Rendered, loaded: list[Workload]) -> None:
    """limits.memory_budget_bytes, as the ingest's process loads it: ingest.memoryBudgetPercent
    of the container's memory limit, unless the config gives it."""
    values = rendered.values
    given = values.get("config", {}).get("limits", {}).get("memory_budget_bytes")
    percent = values.get("ingest", {}).get("memoryBudgetPercent", 50)
    for w in loaded:
        if w.command == "forward":
            continue
        limit = w.container["resources"]["limits"]["memory"]
        expected = given if given is not None else quantity_bytes(limit) * percent // 100
        assert w.config.limits.memory_budget_bytes == expected, w.name
        assert w.config.limits.memory_budget_bytes < quantity_bytes(limit), w.name


def test_the_memory_budget_follows_the_limit_and_is_refused_when_too_small() -> None:
    def budget(values: dict[str, Any], key: str = "run.yaml") -> int:
        config = yaml.safe_load(render(values).get("ConfigMap", "siem-siemgate-config")["data"][key])
        return int(config["limits"]["memory_budget_bytes"])

    assert budget({}) == 256 * 1024**2  # half the default 512Mi
    kafka_1gi = {"config": KAFKA, "ingest": {"resources": {"limits": {"memory": "1Gi"}}}}
    assert budget(kafka_1gi, "ingest.yaml") == 512 * 1024**2
    assert budget({"ingest": {"memoryBudgetPercent": 60, "resources": {"limits": {"memory": "2G"}}}}) == 1_200_000_000
    assert budget({"config": {"limits": {"memory_budget_bytes": 300 * 1024**2}}}) == 300 * 1024**2
    refused = _render_error({"ingest": {"resources": {"limits": {"memory": "384Mi"}}}})
    assert ("ingest.memoryBudgetPercent 50% of ingest.resources.limits.memory 384Mi is 192Mi: less than one gzip'd "
            "body of config.limits.max_body_bytes (33554432) takes in memory (7 x max_body_bytes = 224Mi)") in refused
    # A smaller body limit fits a smaller pod.
    assert budget({"config": {"limits": {"max_body_bytes": 8 * 1024**2}},
                   "ingest": {"resources": {"limits": {"memory": "384Mi"}}}}) == 192 * 1024**2


def test_quantities_are_read_as_kubernetes_reads_them() -> None:
    """The default caps need 11.55 GiB (12,401,718,067 bytes): 13G (13e9 bytes), 11.6Gi, 1.5Ti and
    the plain number 12401718067 hold them (12G and 12401718066 do not: see the refusals)."""
    for size in ("13G", "11.6Gi", "1.5Ti", "12401718067"):
        rendered = render({"ingest": {"persistence": {"size": size}}})
        (template,) = _ingest(rendered)["spec"]["volumeClaimTemplates"]
        assert str(template["spec"]["resources"]["requests"]["storage"]) == size
    refused = _render_error({"ingest": {"persistence": {"size": "12401718066"}}})
    assert "is smaller than what siemgate may keep" in refused


def test_an_emptydir_ingest_sizes_its_ephemeral_storage_with_it() -> None:
    rendered = render({"config": KAFKA, "ingest": {**ONE_EMPTYDIR_DEMO, "persistence": {
        "enabled": False, "acceptDataLossOnPodDeletion": True, "emptyDir": {"sizeLimit": "16Gi"}}}})
    pod = _ingest(rendered)["spec"]["template"]["spec"]
    resources = _siemgate_container(pod)["resources"]
    # /data (16 GiB) + /tmp (64 MiB) + ephemeralStorageOverhead (256 MiB), requested and limited.
    assert resources["requests"]["ephemeral-storage"] == resources["limits"]["ephemeral-storage"] == "16704Mi"
    assert "WARNING: DATA LOSS ON POD DELETION" in rendered.notes


def test_caps_and_drain_times_reach_the_config_and_size_the_pod() -> None:
    """The keys agreed for issue 15 (bus.max_bytes, bus.spool.drain_timeout_seconds) go into
    siemgate's config as given, and the volume check and grace period follow them."""
    embedded = render({"config": {"bus": {"max_bytes": 20 * GiB}}, "ingest": {"persistence": {"size": "30Gi"}}})
    run = yaml.safe_load(embedded.get("ConfigMap", "siem-siemgate-config")["data"]["run.yaml"])
    assert run["bus"] == {"type": "embedded", "path": "/data/siemgate.db", "max_bytes": 20 * GiB}
    kafka = render({"config": {"bus": _kafka_bus(spool={"drain_timeout_seconds": 60}),
                               "limits": {"body_timeout_seconds": 40}}})
    ingest = yaml.safe_load(kafka.get("ConfigMap", "siem-siemgate-config")["data"]["ingest.yaml"])
    assert ingest["bus"]["spool"]["drain_timeout_seconds"] == 60
    pod = _ingest(kafka)["spec"]["template"]["spec"]
    # preStop 10 + body 40 + drain 60 + margin 10.
    assert pod["terminationGracePeriodSeconds"] == 120
    assert _siemgate_container(pod)["lifecycle"]["preStop"] == {"sleep": {"seconds": 10}}


def test_secrets_become_files_except_what_extra_env_sets() -> None:
    rendered = render({
        "config": {"integrations": [{"name": "a", "auth": {"header": "X-Api-Key",
                                                            "values": ["${KEY_A}", "${KEY_B}", "${KEY_NEXT:-}"]}}]},
        "sinks": [{"name": "archive", "type": "file",
                   "config": {"path": "/data/out/$${literal}/${file:/etc/other/x:-y}.ndjson",
                              "rotate_bytes": 1048576}}],
        "secrets": {"values": {"KEY_A": "key-a-0123456789"}},
        "ingest": {"extraEnv": [{"name": "KEY_B", "value": "key-b-0123456789"}]},
    })
    ingest = _ingest(rendered)
    pod = ingest["spec"]["template"]["spec"]
    _, text = mounted_config(rendered, pod, _siemgate_container(pod))
    assert f"${{file:{SECRETS_DIR}/KEY_A}}" in text  # from the Secret, as a file
    assert "${KEY_B}" in text  # extraEnv sets it: the environment
    assert f"${{file:{SECRETS_DIR}/KEY_NEXT:-}}" in text  # optional, the chart's Secret lacks it: the default
    assert "$${literal}" in text and "${file:/etc/other/x:-y}" in text  # left as written
    volume = secret_volume(pod)
    assert volume is not None
    assert [s["secret"]["items"] for s in volume["projected"]["sources"]] == [[{"key": "KEY_A", "path": "KEY_A"}]]


@pytest.mark.anyio
async def test_a_rotated_secret_reaches_a_running_config_without_a_roll(tmp_path: Path) -> None:
    """The chart's own wiring end to end: the ingest config as mounted, the Secret's files as
    the kubelet writes them (a `..data` symlink swapped on rotation), siemgate's reloader."""
    rendered = render(load_values(CHART / "ci" / "kafka-keda-values.yaml"))
    ingest = _ingest(rendered)
    pod = ingest["spec"]["template"]["spec"]
    container = _siemgate_container(pod)
    assert "checksum/secret" not in ingest["spec"]["template"]["metadata"].get("annotations", {})
    _, text = mounted_config(rendered, pod, container)
    files = secret_files(rendered, pod, container)
    secrets = tmp_path / "secrets"
    for stamp, key in (("..2026_01", "old-key-0123456789"), ("..2026_02", "new-key-0123456789")):
        materialize(text, {**files, f"{SECRETS_DIR}/APPSEC_KEY": key}, secrets / stamp)
    (secrets / "..data").symlink_to("..2026_01")
    for path in files:
        name = path.rsplit("/", 1)[1]
        (secrets / name).symlink_to(f"..data/{name}")
    config_path = tmp_path / "siemgate.yaml"
    config_path.write_text(materialize(text, {}, secrets))
    reloader = ConfigReloader(config_path, load_config(config_path, {}))
    following = rendered.secret_values["APPSEC_KEY_NEXT"]  # the rotation's other key, unchanged
    (integration,) = reloader.config.integrations
    assert [v.reveal() for v in integration.auth.values] == ["old-key-0123456789", following]
    assert await reloader.reload(force=False) == "unchanged"
    link = secrets / "..data_tmp"
    link.symlink_to("..2026_02")
    link.replace(secrets / "..data")
    assert await reloader.reload(force=False) == "applied"
    (integration,) = reloader.config.integrations
    assert [v.reveal() for v in integration.auth.values] == ["new-key-0123456789", following]


# --- the ingest's /metrics on a port of its own; what the NetworkPolicy lets through ----------


def _ingest_monitor(rendered: Rendered) -> tuple[Obj, Obj] | None:
    """(ServiceMonitor, the Service it selects) of the ingest."""
    monitors = [m for m in rendered.kind("ServiceMonitor")
                if m["spec"]["selector"]["matchLabels"].get("app.kubernetes.io/component") == "ingest"]
    if not monitors:
        return None
    (monitor,) = monitors
    (service,) = [s for s in rendered.kind("Service")
                  if labels_match(monitor["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])]
    return monitor, service


def _ports(container: Obj) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in container["ports"]}


def test_the_ingest_serves_metrics_on_their_own_port_by_default(rendered: Rendered, loaded: list[Workload]) -> None:
    ingest = _workload(loaded, _ingest(rendered)["metadata"]["name"])
    metrics = ingest.config.metrics
    assert metrics is not None, "the chart configures the metrics listener by default"
    assert metrics.host == "0.0.0.0" and _ports(ingest.container)["metrics"] == metrics.port
    webhook_service = rendered.get("Service", ingest.name)
    assert {p["name"] for p in webhook_service["spec"]["ports"]} == {"http"}, "never /metrics on the webhook Service"
    assert "siemgate.io/metrics" not in webhook_service["metadata"]["labels"]
    found = _ingest_monitor(rendered)
    if found is None:
        assert not rendered.values.get("metrics", {}).get("serviceMonitor", {}).get("enabled")
        return
    monitor, service = found
    assert service["metadata"]["name"] != ingest.name and service["spec"]["clusterIP"] == "None"
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["metrics"]
    ((endpoint),) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "metrics" and endpoint["scheme"] == "http"


def test_metrics_null_keeps_them_on_the_webhook_port() -> None:
    values = load_values(CHART / "ci" / "observability-values.yaml")
    values["config"]["metrics"] = None
    rendered = render(values)
    ingest = _ingest(rendered)
    container = _siemgate_container(ingest["spec"]["template"]["spec"])
    assert "metrics" not in _ports(container)
    found = _ingest_monitor(rendered)
    assert found is not None
    monitor, service = found
    assert service["metadata"]["name"] == ingest["metadata"]["name"]
    assert monitor["spec"]["endpoints"][0]["port"] == "http"
    (policy,) = [p for p in rendered.kind("NetworkPolicy") if p["metadata"]["name"] == ingest["metadata"]["name"]]
    assert {p["port"] for r in policy["spec"]["ingress"] for p in r["ports"]} == {"http", "admin"}
    rules = [r for r in _alerts(rendered) if r["alert"] == "SiemgateIngestAbsent"]
    assert promql_selectors(rules[0]["expr"])[0][1]["job"] == ("Equal", ingest["metadata"]["name"])


def _peers(rule: Obj) -> list[Obj] | None:
    return rule.get("from")


def test_network_policy_lets_prometheus_reach_only_the_metrics_port(rendered: Rendered) -> None:
    if not rendered.values.get("networkPolicy", {}).get("enabled"):
        return
    np = rendered.values["networkPolicy"]
    ingest = _ingest(rendered)
    (policy,) = [p for p in rendered.kind("NetworkPolicy") if p["metadata"]["name"] == ingest["metadata"]["name"]]
    rules = policy["spec"]["ingress"]
    metrics_rules = [r for r in rules if any(p["port"] == "metrics" for p in r["ports"])]
    (metrics_rule,) = metrics_rules
    assert [p["port"] for p in metrics_rule["ports"]] == ["metrics"], "the scrapers' peers reach /metrics alone"
    assert _peers(metrics_rule) == (np.get("metricsFrom") or None)
    # The webhook port: ingest.from, and the helm test pod (when ingest.from restricts it).
    test_pods = rendered.kind("Pod")
    for rule in rules:
        if any(p["port"] == "http" for p in rule["ports"]):
            assert [p["port"] for p in rule["ports"]] == ["http"]
    http_rules = [r for r in rules if r["ports"][0]["port"] == "http"]
    for pod in test_pods:
        allowed = any(_peers(r) is None or any(
            set(peer) == {"podSelector"} and labels_match(peer["podSelector"]["matchLabels"], pod["metadata"]["labels"])
            for peer in _peers(r) or []) for r in http_rules)
        assert allowed, "helm test's pod may ask the ingest's /readyz"


def test_the_helm_test_pod_is_allowed_with_the_observability_values() -> None:
    rendered = render(load_values(CHART / "ci" / "observability-values.yaml"))
    assert rendered.values["networkPolicy"]["ingest"]["from"], "the case that used to block it"
    test_network_policy_lets_prometheus_reach_only_the_metrics_port(rendered)


def _https_egress(rendered: Rendered) -> list[Obj]:
    name = _ingest(rendered)["metadata"]["name"]
    (policy,) = [p for p in rendered.kind("NetworkPolicy") if p["metadata"]["name"] == name]
    return [r for r in policy["spec"]["egress"] if any(p["port"] == 443 for p in r.get("ports", []))]


@pytest.mark.parametrize(
    ("mode", "egress", "admin", "opened"),
    [("manual", "auto", False, False), ("auto", "auto", False, True), ("manual", "auto", True, True),
     ("manual", True, False, True), ("auto", False, False, False)],
    ids=["manual", "auto-mode", "confirm-button", "always", "never"],
)
def test_confirmation_egress_opens_https_only_when_siemgate_requests_links(
    mode: str, egress: object, admin: bool, opened: bool
) -> None:
    values = load_values(CHART / "ci" / "observability-values.yaml")
    values["config"]["integrations"][0]["confirmation"] = {"mode": mode, "allowed_hosts": ["*.vendor.example"]}
    values["networkPolicy"]["ingest"]["confirmationEgress"] = egress
    values["admin"]["enabled"] = admin
    rules = _https_egress(render(values))
    assert len(rules) == int(opened)
    values["networkPolicy"]["ingest"]["confirmationEgressTo"] = [{"ipBlock": {"cidr": "203.0.113.0/24"}}]
    rules = _https_egress(render(values))
    assert [r.get("to") for r in rules] == ([[{"ipBlock": {"cidr": "203.0.113.0/24"}}]] if opened else [])


def test_the_metrics_port_must_be_a_port_of_its_own() -> None:
    assert "config.metrics.port 8080 is the webhook port" in _render_error({"config": {"metrics": {"port": 8080}}})
    values = {"config": {"metrics": {"port": 9180}}, "admin": {"enabled": True},
              "secrets": {"values": {"SIEMGATE_ADMIN_TOKEN": "t" * 20}}}
    assert "config.metrics.port 9180 is admin.port" in _render_error(values)


# --- KEDA on real clusters: credentials from any Secret, Strimzi's layout --------------------


def _keda_values(**security: Any) -> dict[str, Any]:
    values = load_values(CHART / "ci" / "kafka-keda-values.yaml")
    values["config"]["bus"]["kafka"]["security"] = security
    return values


def _auth_refs(rendered: Rendered) -> dict[str, tuple[str, str]]:
    (auth,) = rendered.kind("TriggerAuthentication")
    return {r["parameter"]: (r["name"], r["key"]) for r in auth["spec"]["secretTargetRef"]}


def _tls_mounts(rendered: Rendered) -> Iterator[tuple[Obj, dict[str, tuple[str, str]]]]:
    """Each pod's siemgate container and its kafka-tls files: {path: (secret, key)}."""
    for obj, pod in rendered.pods:
        if obj["kind"] == "Pod":
            continue
        container = _siemgate_container(pod)
        (volume,) = [v for v in pod["volumes"] if v["name"] == "kafka-tls"]
        (mount,) = [m for m in container["volumeMounts"] if m["name"] == "kafka-tls"]
        files = {f"{mount['mountPath']}/{item['path']}": (source["secret"]["name"], item["key"])
                 for source in volume["projected"]["sources"] for item in source["secret"]["items"]}
        yield container, files


def test_strimzi_layout_the_ca_and_the_user_in_two_secrets(tmp_path: Path) -> None:
    values = _keda_values(protocol="SSL")
    values["kafkaTls"] = {"caSecretName": "my-cluster-cluster-ca-cert", "caKey": "ca.crt",
                          "clientSecretName": "siemgate", "certKey": "user.crt", "keyKey": "user.key"}
    rendered = render(values)
    assert _auth_refs(rendered) == {"ca": ("my-cluster-cluster-ca-cert", "ca.crt"), "cert": ("siemgate", "user.crt"),
                                    "key": ("siemgate", "user.key")}
    mounted = list(_tls_mounts(rendered))
    assert len(mounted) == len(rendered.workloads)
    for _, files in mounted:
        assert files == {"/etc/siemgate/kafka-tls/ca.crt": ("my-cluster-cluster-ca-cert", "ca.crt"),
                         "/etc/siemgate/kafka-tls/user.crt": ("siemgate", "user.crt"),
                         "/etc/siemgate/kafka-tls/user.key": ("siemgate", "user.key")}
    # The pods' config points at those files (what siemgate opens is what the scaler reads).
    for config_map in rendered.kind("ConfigMap"):
        for text in config_map["data"].values():
            security = (yaml.safe_load(text).get("bus", {}).get("kafka") or {}).get("security")
            if security:
                assert security["ca_file"] == "/etc/siemgate/kafka-tls/ca.crt"
                assert (security["cert_file"], security["key_file"]) == (
                    "/etc/siemgate/kafka-tls/user.crt", "/etc/siemgate/kafka-tls/user.key")


def test_a_sasl_password_from_a_kafkauser_secret_reaches_the_scaler() -> None:
    values = _keda_values(protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512", username="${KAFKA_USERNAME}",
                          password="${KAFKA_PASSWORD}")
    values["secrets"]["values"].pop("KAFKA_PASSWORD")
    # Strimzi's KafkaUser Secret `siemgate` holds the SCRAM password under `password`.
    password = [{"name": "KAFKA_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "siemgate", "key": "password"}}}]
    values["forwarder"] = {"extraEnv": password}
    values["ingest"] = {"extraEnv": password}
    values["kafkaTls"] = {"caSecretName": "my-cluster-cluster-ca-cert", "caKey": "ca.crt"}
    refs = _auth_refs(render(values))
    assert refs == {"username": ("siem-siemgate", "KAFKA_USERNAME"), "password": ("siemgate", "password"),
                    "ca": ("my-cluster-cluster-ca-cert", "ca.crt")}
    # Any parameter from any Secret: keda.authentication wins.
    values["keda"]["authentication"] = {"username": {"secretName": "kafka-names", "key": "user"}}
    assert _auth_refs(render(values))["username"] == ("kafka-names", "user")


OIDC = {"provider": "oidc", "token_endpoint": "https://idp.example.com/oauth2/token", "client_id": "siemgate",
        "client_secret": "${KAFKA_OAUTH_SECRET}", "scope": "kafka", "extensions": {"logicalCluster": "lkc-1"}}


def test_oauthbearer_gives_the_scaler_the_pods_client_secret_and_the_named_secrets(tmp_path: Path) -> None:
    values = _keda_values(protocol="SASL_SSL", sasl_mechanism="OAUTHBEARER", oauth=OIDC)
    values["secrets"]["values"]["KAFKA_OAUTH_SECRET"] = "oauth-client-secret-0001"
    values["keda"]["authentication"] = {"username": {"secretName": "kafka-oauth", "key": "client-id"},
                                        "oauthTokenEndpointUri": {"secretName": "kafka-oauth", "key": "endpoint"},
                                        "oauthExtensions": {"secretName": "kafka-oauth", "key": "extensions"}}
    rendered = render(values)
    assert _auth_refs(rendered) == {"username": ("kafka-oauth", "client-id"),
                                    "password": ("siem-siemgate", "KAFKA_OAUTH_SECRET"),
                                    "oauthTokenEndpointUri": ("kafka-oauth", "endpoint"),
                                    "oauthExtensions": ("kafka-oauth", "extensions"),
                                    "ca": ("kafka-ca", "ca.crt")}
    for scaled in rendered.kind("ScaledObject"):
        assert {t["metadata"]["sasl"] for t in scaled["spec"]["triggers"]} == {"oauthbearer"}
    # The pods' config loads with siemgate's loader: the OAuth settings arrive intact.
    for obj, pod in rendered.pods:
        if obj["kind"] == "Pod":
            continue
        container = _siemgate_container(pod)
        _, text = mounted_config(rendered, pod, container)
        directory = tmp_path / obj["metadata"]["name"]
        path = directory / "config.yaml"
        text = materialize(text, secret_files(rendered, pod, container), directory)
        path.write_text(text)
        kafka = load_config(path, environ={}).bus.kafka
        assert kafka is not None and kafka.security.oauth is not None
        assert kafka.security.oauth.extensions == {"logicalCluster": "lkc-1"}
        assert kafka.security.oauth.client_secret is not None
        assert kafka.security.oauth.client_secret.reveal() == "oauth-client-secret-0001"


@pytest.mark.parametrize(
    ("oauth", "authentication", "complaint"),
    [
        (OIDC, {}, "keda.authentication.username and keda.authentication.oauthTokenEndpointUri"),
        ({**OIDC, "client_secret": "${KAFKA_OAUTH_SECRET}"}, {"username": {"secretName": "o", "key": "id"}},
         "oauthTokenEndpointUri is missing"),
        ({"provider": "aws_msk_iam", "aws_region": "eu-west-1"}, {}, "cannot sign MSK IAM tokens"),
    ],
    ids=["no-client-id-or-endpoint", "no-endpoint", "msk-iam"],
)
def test_oauthbearer_values_the_chart_refuses_with_keda(oauth: dict[str, Any], authentication: dict[str, Any],
                                                         complaint: str) -> None:
    values = _keda_values(protocol="SASL_SSL", sasl_mechanism="OAUTHBEARER", oauth=oauth)
    values["secrets"]["values"]["KAFKA_OAUTH_SECRET"] = "oauth-client-secret-0001"
    values["keda"]["authentication"] = authentication
    assert complaint in _render_error(values)


def test_a_literal_oauth_client_secret_is_refused_by_the_schema() -> None:
    values = _keda_values(protocol="SASL_SSL", sasl_mechanism="OAUTHBEARER",
                          oauth={**OIDC, "client_secret": "hunter2"})
    assert "/config/bus/kafka/security/oauth/client_secret" in _render_error(values)


def test_msk_iam_renders_without_keda(tmp_path: Path) -> None:
    values = _keda_values(protocol="SASL_SSL", sasl_mechanism="OAUTHBEARER",
                          oauth={"provider": "aws_msk_iam", "aws_region": "eu-west-1"})
    values["keda"] = {"enabled": False}
    rendered = render(values)
    assert rendered.kind("TriggerAuthentication") == [] and rendered.kind("ScaledObject") == []


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"keda": {"enabled": True, "fallback": {"failureThreshold": 3, "replicas": 2}}},
         "keda: fallback together with sumTopicLag"),
        ({"kafkaTls": {"secretName": "tls", "caKey": "tls.crt", "certKey": "tls.crt", "keyKey": "tls.key"}},
         "would be mounted on the same file"),
        ({"kafkaTls": {"secretName": "tls", "caKey": "ca.crt", "certKey": "user.crt", "keyKey": ""}},
         "kafkaTls: certKey without keyKey"),
        ({"keda": {"enabled": True, "authentication": {"password": {"secretName": "x"}}}}, "key"),
    ],
    ids=["fallback-with-modifiers", "tls-key-clash", "cert-without-key", "auth-without-key"],
)
def test_keda_values_the_chart_refuses(change: dict[str, Any], complaint: str) -> None:
    values = load_values(CHART / "ci" / "kafka-keda-values.yaml")
    for key, value in change.items():
        values[key] = {**values.get(key, {}), **value}
    assert complaint in _render_error(values)


def test_fallback_renders_without_scaling_modifiers() -> None:
    values = load_values(CHART / "ci" / "kafka-keda-values.yaml")
    values["keda"].update(fallback={"failureThreshold": 3, "replicas": 2}, sumTopicLag=False)
    for obj in render(values).kind("ScaledObject"):
        assert obj["spec"]["fallback"] == {"failureThreshold": 3, "replicas": 2}
        assert "scalingModifiers" not in obj["spec"].get("advanced", {})


def test_the_minimum_keda_version_is_stated() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    version = chart["annotations"]["siemgate.io/min-keda-version"]
    assert re.fullmatch(r"2\.[0-9]+\.[0-9]+", version)
    assert f"KEDA {version}" in (CHART / "README.md").read_text()
    assert f"KEDA {version}" in (ROOT / "docs/KAFKA.md").read_text()


def _kafka_doc_values() -> dict[str, dict[str, Any]]:
    """The values blocks of docs/KAFKA.md's recipes, by section."""
    found: dict[str, dict[str, Any]] = {}
    for section in re.split(r"^## ", (ROOT / "docs/KAFKA.md").read_text(), flags=re.M)[1:]:
        title = section.splitlines()[0].strip()
        for block in re.findall(r"```yaml\n(.*?)```", section, re.S):
            for values in yaml.safe_load_all(block):
                if "config" in values:
                    found[title] = values
    return found


@pytest.mark.parametrize("recipe", ["Strimzi", "Amazon MSK", "Confluent Cloud"])
def test_the_kafka_recipes_render_and_give_keda_the_pods_credentials(recipe: str, tmp_path: Path) -> None:
    values = _kafka_doc_values()[recipe]
    values["config"]["bus"]["type"] = "kafka"
    values["config"]["integrations"] = [{"name": "appsec", "auth": {"header": "X-Api-Key", "values": ["${KEY}"]}}]
    secrets = values.setdefault("secrets", {}).setdefault("values", {})
    secrets.update(KEY="recipe-webhook-key-0001", KAFKA_USERNAME=secrets.get("KAFKA_USERNAME", "siemgate"))
    if recipe != "Strimzi":
        secrets["KAFKA_PASSWORD"] = "recipe-kafka-password"
    values["keda"] = {"enabled": True}
    rendered = render(values)
    refs = _auth_refs(rendered)
    mechanism = values["config"]["bus"]["kafka"]["security"]["sasl_mechanism"]
    for trigger in rendered.kind("ScaledObject")[0]["spec"]["triggers"]:
        assert trigger["metadata"]["sasl"] == SASL_MODES[mechanism] and trigger["metadata"]["tls"] == "enable"
    if recipe == "Strimzi":
        assert refs == {"username": ("siem-siemgate", "KAFKA_USERNAME"), "password": ("siemgate", "password"),
                        "ca": ("my-cluster-cluster-ca-cert", "ca.crt")}
    else:
        assert refs == {"username": ("siem-siemgate", "KAFKA_USERNAME"),
                        "password": ("siem-siemgate", "KAFKA_PASSWORD")}
    # Each pod's config loads with siemgate's own loader (the password from the Secret or the env).
    for obj, pod in rendered.pods:
        if obj["kind"] == "Pod":
            continue
        container = _siemgate_container(pod)
        _, text = mounted_config(rendered, pod, container)
        env = {e["name"]: "from-the-kafkauser-secret" for e in container.get("env", []) if "valueFrom" in e}
        directory = tmp_path / obj["metadata"]["name"]
        text = materialize(text, secret_files(rendered, pod, container), directory)
        path = directory / "config.yaml"
        path.write_text(text)
        config = load_config(path, environ=env)
        assert config.bus.kafka is not None and config.bus.kafka.security.password is not None


def test_an_integrations_severity_scheme_passes_the_values_schema() -> None:
    """`integrations[].severity_scheme` and `normalize.severity_schemes` (issue 18) are chart
    values like any other config key; a name that is none is refused by the schema."""
    values = {
        "config": {
            "integrations": [{"name": "scanner", "auth": {"header": "X-Api-Key", "values": ["${K}"]},
                              "severity_scheme": "acme"}],
            "normalize": {"severity_schemes": {"acme": {"scale": "priority-1-4", "words": {"blocker": "high"}}}},
        },
        "secrets": {"values": {"K": "k-0123456789abcdef"}},
    }
    rendered = render(values)
    assert any("severity_scheme: acme" in str(c.get("data", {})) for c in rendered.kind("ConfigMap"))
    bad = {**values, "config": {**values["config"], "integrations": [
        {**values["config"]["integrations"][0], "severity_scheme": "Not A Name"}]}}
    message = _render_error(bad)
    assert "schema" in message and "/config/integrations/0/severity_scheme" in message
