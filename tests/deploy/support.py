"""Rendering the Helm chart (Helm's Go SDK through helm-python-sdk, no helm binary) and reading
what it renders the way Kubernetes and siemgate would."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml
from prometheus_client import CollectorRegistry

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "siemgate"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
RELEASE = "siem"
NAMESPACE = "soc"

# What the `existingSecret` of a ci values file holds in the cluster (the chart cannot know it).
EXISTING_SECRETS: dict[str, dict[str, str]] = {
    "siemgate-keys": {
        "APPSEC_KEY": "existing-webhook-key-0001",
        "APPSEC_STAGING_KEY": "existing-staging-key-0001",
        "ES_PASSWORD": "existing-es-password-0001",
        "SIEMGATE_ADMIN_TOKEN": "existing-admin-token-0001",
    },
}

Obj = dict[str, Any]


@dataclass
class Rendered:
    values: dict[str, Any]
    objects: list[Obj]
    notes: str
    # The template each object came from, by id() of the object.
    sources: dict[int, str] = field(default_factory=dict)

    def source(self, obj: Obj) -> str:
        return self.sources[id(obj)]

    def kind(self, kind: str) -> list[Obj]:
        return [o for o in self.objects if o["kind"] == kind]

    def get(self, kind: str, name: str) -> Obj:
        found = [o for o in self.kind(kind) if o["metadata"]["name"] == name]
        assert len(found) == 1, f"{kind}/{name}: {len(found)} rendered"
        return found[0]

    def maybe(self, kind: str, name: str) -> Obj | None:
        found = [o for o in self.kind(kind) if o["metadata"]["name"] == name]
        return found[0] if found else None

    @property
    def workloads(self) -> list[Obj]:
        return [o for o in self.objects if o["kind"] in ("Deployment", "StatefulSet")]

    @property
    def pods(self) -> Iterator[tuple[Obj, Obj]]:
        """(object, pod spec) of every workload, Job (spoolDrainJob) and bare pod (the helm test hook)."""
        for obj in self.objects:
            if obj["kind"] in ("Deployment", "StatefulSet", "Job"):
                yield obj, obj["spec"]["template"]["spec"]
            elif obj["kind"] == "Pod":
                yield obj, obj["spec"]

    @property
    def secret_values(self) -> dict[str, str]:
        """What the pods' Secret holds: the chart's own, or the cluster's existingSecret."""
        existing = self.values.get("secrets", {}).get("existingSecret")
        if existing:
            return dict(EXISTING_SECRETS[existing])
        out: dict[str, str] = {}
        for secret in self.kind("Secret"):
            for key, value in (secret.get("data") or {}).items():
                out[key] = base64.b64decode(value).decode()
        return out

    @property
    def secret_name(self) -> str:
        existing = self.values.get("secrets", {}).get("existingSecret")
        return existing or f"{RELEASE}-siemgate"


def load_values(path: Path | None) -> dict[str, Any]:
    return yaml.safe_load(path.read_text()) if path is not None else {}


def render(values: dict[str, Any] | None, release: str = RELEASE) -> Rendered:
    with helm.Chart.load(CHART) as chart:
        manifests = chart.render(values or None, name=release, namespace=NAMESPACE)
    rendered = Rendered(values=values or {}, objects=[], notes="")
    for template, text in sorted(manifests.items()):
        if template.endswith("NOTES.txt"):
            rendered.notes = text
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                rendered.objects.append(doc)
                rendered.sources[id(doc)] = template
    return rendered


# Where the chart mounts the Secret's keys (one file each), read by the configs as ${file:...}.
SECRETS_DIR = "/etc/siemgate-secrets"


def container_env(rendered: Rendered, container: Obj) -> dict[str, str]:
    """The environment Kubernetes gives the container (plain values: secrets come as files)."""
    env: dict[str, str] = {}
    for item in container.get("env", []):
        assert "value" in item, f"{item['name']}: only plain values in the environment, secrets are files"
        env[item["name"]] = str(item["value"])
    return env


def secret_volume(pod: Obj) -> Obj | None:
    found = [v for v in pod.get("volumes", []) if v["name"] == "secrets"]
    return found[0] if found else None


def secret_files(rendered: Rendered, pod: Obj, container: Obj) -> dict[str, str]:
    """The files Kubernetes puts under SECRETS_DIR in the container: {path: content}. A key the
    Secret lacks fails (the pod would not start) unless its source is optional."""
    volume = secret_volume(pod)
    mounts = [m for m in container.get("volumeMounts", []) if m["name"] == "secrets"]
    if volume is None:
        assert mounts == []
        return {}
    (mount,) = mounts
    assert mount["mountPath"] == SECRETS_DIR and mount.get("readOnly") is True
    secrets = rendered.secret_values
    files: dict[str, str] = {}
    for source in volume["projected"]["sources"]:
        secret = source["secret"]
        assert secret["name"] == rendered.secret_name, f"an unknown Secret {secret['name']}"
        for item in secret["items"]:
            if item["key"] in secrets:
                files[f"{SECRETS_DIR}/{item['path']}"] = secrets[item["key"]]
            else:
                assert secret.get("optional"), f"the Secret has no key {item['key']}: the pod would not start"
    return files


def materialize(text: str, files: Mapping[str, str], directory: Path) -> str:
    """The config text with SECRETS_DIR moved to `directory`, holding the Secret's files as
    the kubelet writes them (the value, no trailing newline)."""
    directory.mkdir(parents=True, exist_ok=True)
    for path, value in files.items():
        (directory / path.rsplit("/", 1)[1]).write_text(value)
    return text.replace(f"${{file:{SECRETS_DIR}/", f"${{file:{directory}/")


def file_refs(text: str) -> dict[str, bool]:
    """The ${file:...} a config reads, and whether each is required (no default anywhere)."""
    found: dict[str, bool] = {}
    for match in re.finditer(r"\$\$|\$\{file:([^}]*?)(:-[^}]*)?\}", text):
        if match.group(0) == "$$":
            continue
        path, required = match.group(1), match.group(2) is None
        found[path] = found.get(path, False) or required
    return found


def mounted_config(rendered: Rendered, pod: Obj, container: Obj) -> tuple[str, str]:
    """(path in the container, text) of the config file passed with `-c`."""
    args = container.get("args", [])
    path = args[args.index("-c") + 1]
    for mount in container["volumeMounts"]:
        prefix = mount["mountPath"].rstrip("/") + "/"
        if not path.startswith(prefix):
            continue
        volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
        config_map = rendered.get("ConfigMap", volume["configMap"]["name"])
        relative = path[len(prefix):]
        items = volume["configMap"].get("items")
        key = next(i["key"] for i in items if i["path"] == relative) if items else relative
        return path, config_map["data"][key]
    raise AssertionError(f"{path} is not on any volume of the container")


def config_vars(text: str) -> dict[str, bool]:
    """The ${VAR}s a config uses, and whether each is required (no default anywhere)."""
    found: dict[str, bool] = {}
    for match in re.finditer(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}", text):
        if match.group(0) == "$$":
            continue
        name, required = match.group(1), match.group(2) is None
        found[name] = found.get(name, False) or required
    return found


_UNITS = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30,
          "Ti": 2**40}


def quantity_bytes(quantity: str | int) -> int:
    match = re.fullmatch(r"([0-9]+)([kMGT]i?|Ki)?", str(quantity))
    assert match, f"not a byte quantity: {quantity!r}"
    return int(match.group(1)) * _UNITS[match.group(2) or ""]


# Metrics agreed for issue 15 and implemented on other branches (the ingest's drain on SIGTERM,
# the embedded log's cap): accepted in alert rules until siemgate exports them, after which
# this set no longer matters (exported_metric_names finds them).
AGREED_METRICS = {"siemgate_storage_bytes", "siemgate_storage_limit_bytes", "siemgate_storage_free_bytes",
                  "siemgate_shutdown_drain_total"}


def exported_metric_names() -> set[str]:
    """Every series name siemgate exports: the ingest's (with its spool) and the forwarders'."""
    from siemgate.bus.spool import SpoolStats
    from siemgate.forwarders.metrics import ForwardMetrics
    from siemgate.ingest.metrics import IngestMetrics

    ingest = IngestMetrics()
    ingest.watch_spool(lambda: SpoolStats())
    registries: list[CollectorRegistry] = [ingest.registry, ForwardMetrics().registry]
    names: set[str] = set()
    for registry in registries:
        for family in registry.collect():
            if family.type == "counter":
                names.add(f"{family.name}_total")
            elif family.type == "histogram":
                names.update(f"{family.name}_{suffix}" for suffix in ("bucket", "count", "sum"))
            else:
                names.add(family.name)
    return names


def metric_names_in(expr: str) -> set[str]:
    return set(re.findall(r"\bsiemgate_[a-z0-9_]+", expr))


def labels_match(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


# The kinds of metric the code defines and the series names each kind exports.
_METRIC_KINDS = {"Counter": ("_total",), "CounterMetricFamily": ("_total",), "Gauge": ("",),
                 "GaugeMetricFamily": ("",), "Histogram": ("_bucket", "_count", "_sum"),
                 "HistogramMetricFamily": ("_bucket", "_count", "_sum"), "Summary": ("_count", "_sum", ""),
                 "Info": ("_info",)}
_DEFINITION = re.compile(r"\b(" + "|".join(_METRIC_KINDS) + r")\(\s*\"(siemgate_[a-z0-9_]+)\"")


def defined_metric_names() -> set[str]:
    """Every series name a metric definition under siemgate/ gives (Counter("siemgate_x", ...)
    and the collectors' *MetricFamily("siemgate_x", ...)): found in the source, so a metric only
    registered at run time (the reloader's, the storage collector's) counts too."""
    names: set[str] = set()
    for path in (ROOT / "siemgate").rglob("*.py"):
        for kind, name in _DEFINITION.findall(path.read_text()):
            names.update(name + suffix for suffix in _METRIC_KINDS[kind])
    return names


def promql_selectors(expr: str) -> list[tuple[str, dict[str, tuple[str, str]]]]:
    """Parse `expr` with Prometheus's grammar (promql-parser, a Rust port of the Prometheus
    parser: functions, regexes and vector matching are checked as promtool does) and return its
    vector selectors: (metric name, {label: (operator, value)})."""
    try:
        import promql_parser
    except ImportError as exc:  # a test dependency (pyproject's `test` extra), never skipped
        raise AssertionError("promql-parser is missing: pip install -e '.[test]'") from exc
    tree = promql_parser.parse(expr)  # ValueError with the parser's message when invalid
    found: list[tuple[str, dict[str, tuple[str, str]]]] = []

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            labels = {m.name: (str(m.op).rsplit(".", 1)[-1], m.value) for m in node.matchers.matchers}
            found.append((node.name or labels.get("__name__", ("", ""))[1], labels))

    promql_parser.walk(tree, visit)
    return found
