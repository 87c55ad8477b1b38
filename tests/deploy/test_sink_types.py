"""The places that list sink types follow the sink registry: the Helm chart's generated parts
(values.schema.json's sinks, templates/_sink_types.tpl) are what `make helm-schema` generates
now, the generated schema accepts every sink config siemgate's loader accepts (and refuses
what both must refuse), the NetworkPolicy opens each sink type's default port, and README
and the stand-in command name only registered types."""

from __future__ import annotations

import ast
import copy
import dataclasses
import functools
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, get_args, get_type_hints

import helm_python as helm
import jsonschema
import pytest
import yaml

import siemgate.secrets
from siemgate.config_loader import build
from siemgate.errors import ConfigError
from siemgate.secrets import Secret
from tests.deploy.support import CHART, CI_VALUES, NAMESPACE, ROOT, render
from tools import helm_schema

SINKS = helm_schema.sink_types()
KINDS = [s.kind for s in SINKS]


class Environ(Mapping[str, str]):
    """Every ${VAR} is set (to a word, or to what POOL's ${ENV_*} say), except UNSET_*."""

    fixed = {"ENV_INT": "42", "ENV_WORD": "rfc3164", "ENV_URL": "https://h.example:8088"}

    def __getitem__(self, name: str) -> str:
        if name.startswith("UNSET"):
            raise KeyError(name)
        return self.fixed.get(name, f"value-of-{name.lower()}")

    def __iter__(self) -> Iterator[str]:
        return iter(self.fixed)

    def __len__(self) -> int:
        return len(self.fixed)


ENVIRON = Environ()


@pytest.fixture(autouse=True)
def _forget_test_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    # The loader registers every Secret it builds for log redaction; these are test words.
    monkeypatch.setattr(siemgate.secrets._registry, "_values", siemgate.secrets._registry._values)


BY_KIND = {s.kind: s for s in SINKS}


def loader_accepts(kind: str, entry: dict[str, Any]) -> bool:
    """What siemgate does with a sink entry (registry.build_settings): build its settings type."""
    try:
        build(BY_KIND[kind].settings, copy.deepcopy(entry), ENVIRON, "sinks[0]")
    except ConfigError:
        return False
    return True


VALIDATORS = {s.kind: jsonschema.Draft7Validator(helm_schema.sink_config_schema(s)) for s in SINKS}


def schema_accepts(kind: str, entry: dict[str, Any]) -> bool:
    return bool(VALIDATORS[kind].is_valid(entry))


# --- generated = committed --------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(helm_schema.generated()), ids=lambda p: p.name)
def test_committed_chart_files_are_generated_from_the_sink_settings(path: Path) -> None:
    expected = helm_schema.generated()[path]
    assert path.exists() and path.read_text() == expected, (
        f"{path.relative_to(ROOT)} differs from what the sink registry and settings generate: run `make helm-schema` "
        "(python -m tools.helm_schema) and commit the result"
    )


def test_registry_names_each_settings_type_by_its_own_type() -> None:
    for sink in SINKS:
        assert sink.settings.type == sink.kind, f"{sink.settings.__name__}.type is not its registry key {sink.kind!r}"


def test_the_chart_schema_lists_exactly_the_registered_sink_types() -> None:
    import json

    item = json.loads(helm_schema.VALUES_SCHEMA.read_text())["properties"]["sinks"]["items"]
    assert item["properties"]["type"]["enum"] == KINDS
    assert [b["if"]["properties"]["type"]["const"] for b in item["allOf"]] == KINDS


def test_chart_policies_name_registered_types_and_their_keys() -> None:
    for kind, policy in helm_schema.CHART_POLICIES.items():
        assert kind in BY_KIND, f"CHART_POLICIES names {kind!r}, which is not a registered sink type"
        keys = helm_schema.sink_config_schema(BY_KIND[kind])["properties"]
        named = set(policy.get("properties", {}))
        for alternative in policy.get("anyOf", []):
            named.update(alternative.get("required", []))
        assert named <= set(keys), f"CHART_POLICIES[{kind!r}] names keys {kind} sinks do not have: {named - set(keys)}"


# --- the schema against the loader: every sink config in the repository ------------------------


def _entries(doc: object) -> Iterator[dict[str, Any]]:
    if isinstance(doc, dict) and isinstance(doc.get("sinks"), list):
        for item in doc["sinks"]:
            if isinstance(item, dict) and item.get("type") in KINDS:
                yield item


def _python_sources() -> Iterator[tuple[str, object]]:
    """Sink entries written as literals in the tests: dicts, and YAML texts with `sinks:`."""
    for path in sorted((ROOT / "tests").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Dict):
                try:
                    value = ast.literal_eval(node)
                except ValueError:
                    continue
                if isinstance(value, dict) and value.get("type") in KINDS and "config" not in value:
                    yield where, {"sinks": [value]}
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and "sinks:" in node.value:
                try:
                    yield where, yaml.safe_load(node.value)
                except yaml.YAMLError:
                    continue


def _readme_blocks() -> Iterator[tuple[str, object]]:
    text = (ROOT / "README.md").read_text()
    for number, block in enumerate(re.findall(r"```yaml\n(.*?)```", text, re.S)):
        if "sinks:" in block:
            yield f"README.md yaml block {number}", yaml.safe_load(block)


@functools.cache
def repository_sink_configs() -> list[tuple[str, str, dict[str, Any]]]:
    """(where, type, entry without `type`) of every sink config in the repository."""
    docs: list[tuple[str, object]] = []
    for path in [*sorted((ROOT / "deploy").rglob("*.yaml"))]:
        docs.extend((str(path.relative_to(ROOT)), doc) for doc in yaml.safe_load_all(path.read_text()))
    docs.extend(_readme_blocks())
    docs.extend(_python_sources())
    for path in [*CI_VALUES, CHART / "values.yaml"]:
        values = yaml.safe_load(path.read_text())
        chart_sinks = [{**s.get("config", {}), "name": s["name"], "type": s["type"]} for s in values.get("sinks", [])]
        docs.append((str(path.relative_to(ROOT)), {"sinks": chart_sinks}))
    found = []
    for where, doc in docs:
        for entry in _entries(doc):
            found.append((where, entry["type"], {k: v for k, v in entry.items() if k != "type"}))
    return found


def test_the_schema_accepts_every_sink_config_of_the_repository_the_loader_accepts() -> None:
    configs = repository_sink_configs()
    accepted = [(where, kind, entry) for where, kind, entry in configs if loader_accepts(kind, entry)]
    refused_by_schema = [(where, entry) for where, kind, entry in accepted if not schema_accepts(kind, entry)]
    assert refused_by_schema == []
    assert len(accepted) >= 20, f"only {len(accepted)} sink configs found: is the collector broken?"
    assert {kind for _, kind, _ in accepted} == set(KINDS), "every sink type has a config the loader accepts"


@functools.cache
def _base_entries() -> dict[str, dict[str, Any]]:
    """Per type, the smallest repository config the loader accepts."""
    bases: dict[str, dict[str, Any]] = {}
    for _, kind, entry in repository_sink_configs():
        if loader_accepts(kind, entry) and (kind not in bases or len(entry) < len(bases[kind])):
            bases[kind] = entry
    return bases


# Values of every shape the loader might coerce: YAML scalars, the strings bool/int/float read, ${VAR}s,
# non-ASCII digits and spaces, lists and mappings.
POOL: list[object] = [
    None, True, False, 0, 1, -3, 7, 2048, 70000, 1.5, 0.25, 1e3, 2.0,
    "", "x", "yes", "Off", "TRUE", "on", "NO", "1", "0", " 12 ", "1_000", "_5", "+4", "-2", "1.5", "1e3", ".5",
    "-inf", "NaN", "Infinity", "1__0", "0x10", "abc", "٣", "\u20035", "5\x1c", "1 2", "true ",
    "rfc5424", "cef", "lf", "cim", "original", "low", "high", "batch", "never", "utc", "local", "local0",
    "${ENV_INT}", "${ENV_WORD}", "${UNSET_X:-3}", "${UNSET_Y}", "$${X}", "$$5",
    "https://h.example:8088", "http://h.example", "tcp://h.example:514", "udp://h.example", "tls://h.example",
    "/data/x", "logs-a-b", "siemgate@32473",
    [], ["a"], [1], {}, {"verify": False}, {"max_events": 10}, {"bogus": 1},
]


# Keys that make a repository config pass the chart's own rules, so that the chart's schema is tried too.
CHART_FRIENDLY: dict[str, dict[str, Any]] = {
    "file": {"path": "/data/out/events.ndjson"},
    "splunk_hec": {"token": "${HEC_TOKEN}"},
    "elasticsearch": {"api_key": "${ES_API_KEY}", "username": None, "password": None},
}


def _paths(schema: dict[str, Any], prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every key of a settings schema, nested settings' keys included."""
    for key, sub in schema["properties"].items():
        yield (*prefix, key)
        if "properties" in sub:
            yield from _paths(sub, (*prefix, key))


def _with(entry: dict[str, Any], path: tuple[str, ...], value: object) -> dict[str, Any]:
    out = copy.deepcopy(entry)
    target = out
    for key in path[:-1]:
        if not isinstance(target.get(key), dict):
            target[key] = {}
        target = target[key]
    target[path[-1]] = copy.deepcopy(value)
    return out


CHART_VALIDATORS = {s.kind: jsonschema.Draft7Validator(helm_schema.chart_config_schema(s)) for s in SINKS}
VAR_REF = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*(:-)?\}")


def chart_rules_allow(sink: helm_schema.SinkType, entry: dict[str, Any]) -> bool:
    """The chart's own rules (its README, "Secrets" and "Security"), said again independently."""
    hints = get_type_hints(sink.settings)
    for key, value in entry.items():
        secret = Secret in (hints[key], *get_args(hints[key]))
        if secret and value is not None and not (isinstance(value, str) and VAR_REF.fullmatch(value)):
            return False  # a literal secret
    if sink.kind == "file" and not (isinstance(entry.get("path"), str) and entry["path"].startswith("/data/")):
        return False  # off the /data volume
    return not (sink.kind == "elasticsearch" and entry.get("api_key") is None and entry.get("password") is None)


@pytest.mark.parametrize("sink", SINKS, ids=KINDS)
def test_the_schema_accepts_whatever_the_loader_accepts_key_by_key(sink: helm_schema.SinkType) -> None:
    """Every key of the sink type, set to every value of POOL on a valid config: where the
    loader takes it the schema must (never stricter), and the chart's schema too unless one of
    its own rules refuses it; and the schema must refuse something."""
    base = {**_base_entries()[sink.kind], **CHART_FRIENDLY.get(sink.kind, {})}
    stricter, chart_stricter, refused, chart_checked = [], [], 0, 0
    for path in _paths(helm_schema.sink_config_schema(sink)):
        for value in POOL:
            entry = _with(base, path, value)
            loader, schema = loader_accepts(sink.kind, entry), schema_accepts(sink.kind, entry)
            if loader and not schema:
                stricter.append((".".join(path), value))
            refused += not schema
            if loader and chart_rules_allow(sink, entry):
                chart_checked += 1
                config = {k: v for k, v in entry.items() if k != "name"}
                if not CHART_VALIDATORS[sink.kind].is_valid(config):
                    chart_stricter.append((".".join(path), value))
    assert stricter == [], f"the schema refuses what siemgate loads: {stricter[:20]}"
    assert chart_stricter == [], f"the chart's schema refuses what siemgate loads: {chart_stricter[:20]}"
    assert refused > 100, "the schema refuses almost nothing: is it generated from the settings?"
    assert chart_checked > 100, "too few configs the chart's rules allow: CHART_FRIENDLY needs a look"


def test_loose_patterns_take_every_string_python_reads() -> None:
    """Where JSON Schema cannot say int()/float() exactly, the patterns are looser."""
    samples = [*(s for s in POOL if isinstance(s, str)), "\u0663\u0664", "\u2007+7\u2007", "1_0.5e-3", "\x1f-0\x0b",
               "infinity", "+Inf", "-nan", "0.", "\u00a0" + "8", "_", "1_", "_ +1 _"]
    readers = ((helm_schema.INT_TEXT, lambda s: int(s.replace("_", ""))), (helm_schema.FLOAT_TEXT, float))
    for sample in samples:
        for pattern, read in readers:
            try:
                read(sample)
            except ValueError:
                continue
            assert re.search(pattern, sample), f"{sample!r} is read by Python but refused by {pattern}"
    for word in ("True", "yES", "0", "oFf"):
        assert re.search(helm_schema.BOOL_TEXT, word)
    for word in ("maybe", "tru", "2", " yes"):
        assert not re.search(helm_schema.BOOL_TEXT, word)


def test_helms_validator_reads_the_patterns_as_python_does() -> None:
    """Helm matches `pattern` with Go's regexp, the tests above with Python's re: same verdicts."""
    strings = [s for s in POOL if isinstance(s, str)]
    cases = [("file", {"path": "/data/a", "batch": {"max_events": s}}) for s in strings]
    cases += [("file", {"path": "/data/a", "retry": {"max_seconds": s}}) for s in strings]
    cases += [("syslog", {"address": "tcp://s:514", "include_pid": s}) for s in strings]
    sinks = [{"name": f"s{i}", "type": kind, "config": config} for i, (kind, config) in enumerate(cases)]
    with helm.Chart.load(CHART) as chart:
        try:
            chart.render({"sinks": sinks}, name="siem", namespace=NAMESPACE)
            message = ""
        except helm.HelmError as exc:
            message = str(exc)
    verdicts = set()
    for i, (kind, config) in enumerate(cases):
        python = schema_accepts(kind, {"name": f"s{i}", **config})
        go = f"'/sinks/{i}/config" not in message
        assert python == go, f"{config}: Python's verdict {python}, Helm's {go}"
        verdicts.add(go)
    assert verdicts == {True, False}


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Block:
    on: bool = True
    level: Literal["a", "b"] = "a"


@dataclasses.dataclass(frozen=True, kw_only=True)
class _EveryType:
    """What a future sink's settings might hold: every type the generator describes."""

    text: str
    count: int = 1
    ratio: float = 0.5
    flag: bool = False
    choice: Literal["x", "y"] = "x"
    maybe: str | None = None
    either: int | str = 0
    names: tuple[str, ...] = ()
    numbers: tuple[int, ...] = (1, 2)
    labels: dict[str, str] = dataclasses.field(default_factory=dict)
    block: _Block = dataclasses.field(default_factory=_Block)
    blocks: tuple[_Block, ...] = ()
    token: Secret | None = None
    anything: Any = None


def test_every_type_the_generator_describes_is_never_stricter_than_the_loader() -> None:
    schema = helm_schema.settings_schema(_EveryType, chart=False)
    validator = jsonschema.Draft7Validator(schema)
    assert schema["required"] == ["text"] and schema["additionalProperties"] is False
    assert schema["properties"]["numbers"]["default"] == [1, 2]
    assert schema["properties"]["block"]["default"] == {"on": True, "level": "a"}
    assert "default" not in schema["properties"]["text"]
    values = [*POOL, [{"on": "no"}], [{"level": "c"}], {"a": "b"}, {"a": 1}, {"a": None}, ["x", 2], [True]]
    stricter, refused = [], 0
    for path in _paths(schema):
        for value in values:
            entry = _with({"text": "t"}, path, value)
            try:
                build(_EveryType, copy.deepcopy(entry), ENVIRON, "")
                loader = True
            except ConfigError:
                loader = False
            schema_ok = validator.is_valid(entry)
            if loader and not schema_ok:
                stricter.append((".".join(path), value))
            refused += not schema_ok
    assert stricter == [], stricter[:20]
    assert refused > 200
    for wrong in ({"text": "t", "names": "a"}, {"text": "t", "labels": ["a"]}, {"text": "t", "blocks": [{"x": 1}]},
                  {"text": "t", "token": 5}, {"text": "t", "choice": "z"}, {}):
        assert not validator.is_valid(wrong), wrong
    with pytest.raises(TypeError, match="cannot describe"):
        helm_schema.value_schema(complex, chart=False)


# A valid entry per type, and what both must refuse.
INVALID: list[tuple[str, str, dict[str, Any]]] = [
    ("unknown key", "file", {"name": "a", "path": "/data/a", "colour": "red"}),
    ("unknown nested key", "syslog", {"name": "a", "address": "tcp://s:514", "batch": {"max_event": 5}}),
    ("missing required key", "splunk_hec", {"name": "a", "token": "${HEC_TOKEN}"}),
    ("wrong type: a list for a string", "splunk_hec", {"name": "a", "url": ["https://s:8088"], "token": "t0ken"}),
    ("wrong type: a word for an int", "file", {"name": "a", "path": "/data/a", "keep": "many"}),
    ("wrong type: a float for an int", "file", {"name": "a", "path": "/data/a", "keep": 2.5}),
    ("wrong type: a word for a float", "syslog",
     {"name": "a", "address": "tcp://s:514", "write_timeout_seconds": "soon"}),
    ("wrong type: a word for a bool", "elasticsearch", {"name": "a", "url": "https://es:9200", "gzip": "maybe"}),
    ("wrong type: a number for a secret", "splunk_hec", {"name": "a", "url": "https://s:8088", "token": 12345}),
    ("wrong type: a mapping for a block", "elasticsearch", {"name": "a", "url": "https://es:9200", "tls": "on"}),
    ("bad enum", "syslog", {"name": "a", "address": "tcp://s:514", "format": "xml"}),
    ("bad nested enum", "file", {"name": "a", "path": "/data/a", "min_severity": "critical"}),
]


@pytest.mark.parametrize(("kind", "entry"), [(k, e) for _, k, e in INVALID], ids=[w for w, _, _ in INVALID])
def test_both_refuse_invalid_entries(kind: str, entry: dict[str, Any]) -> None:
    assert not loader_accepts(kind, entry)
    assert not schema_accepts(kind, entry)


@pytest.mark.parametrize(
    ("sink", "complaint"),
    [
        ({"name": "a", "type": "file", "config": {"path": "/data/a", "colour": "red"}},
         "at '/sinks/0/config': additional properties 'colour' not allowed"),
        ({"name": "a", "type": "syslog", "config": {"address": "tcp://s:514", "format": "xml"}},
         "/sinks/0/config/format"),
        ({"name": "a", "type": "file", "config": {"path": "/data/a", "keep": "many"}}, "/sinks/0/config/keep"),
        ({"name": "a", "type": "file", "config": {"path": "/data/a", "name": "b"}}, "additional properties 'name'"),
        ({"name": "a", "type": "kafka", "config": {}}, "/sinks/0/type"),
    ],
    ids=["unknown-key", "bad-enum", "wrong-type", "chart-owned-name", "unregistered-type"],
)
def test_helm_refuses_invalid_sink_values(sink: dict[str, Any], complaint: str) -> None:
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmError) as caught:
        chart.render({"sinks": [sink]}, name="siem", namespace=NAMESPACE)
    assert "schema" in str(caught.value) and complaint in str(caught.value)


# --- the NetworkPolicy opens each sink type's default ports ------------------------------------


def test_network_policy_opens_every_sink_types_default_port_per_scheme() -> None:
    destinations = helm_schema.destinations(SINKS)
    sinks, expected = [], {}
    for kind, info in destinations.items():
        key = info["destination"]
        for scheme, port in info["ports"].items():
            name = f"{kind.replace('_', '-')}-{scheme.replace('+', '-')}"  # a DNS label: relp+tls -> relp-tls
            config = {key: f"{scheme}://{name}.example"}
            config.update({"token": "${T}"} if kind == "splunk_hec" else {"api_key": "${T}"} if kind == "elasticsearch"
                          else {"dcr_immutable_id": "dcr-0", "tenant_id": "t", "client_id": "c",
                                "client_secret": "${T}"} if kind == "sentinel" else {})
            sinks.append({"name": name, "type": kind, "config": config})
            expected[name] = {"port": port["port"], "protocol": port["protocol"]}
    assert sinks, "no sink type connects anywhere?"
    values = {"config": {"bus": {"type": "kafka", "kafka": {"bootstrap_servers": "kafka:9092"}}},
              "sinks": sinks, "secrets": {"values": {"T": "t"}}, "networkPolicy": {"enabled": True}}
    policies = render(values).kind("NetworkPolicy")
    for name, port in expected.items():
        (policy,) = [p for p in policies if p["metadata"]["labels"].get("siemgate.io/sink") == name] or [None]
        assert policy is not None, f"no NetworkPolicy for sink {name}"
        opened = [p for rule in policy["spec"]["egress"] for p in rule.get("ports", [])]
        assert port in opened, f"{name}: {port} not in {opened}"


# --- README and the stand-in command ------------------------------------------------------------


def test_readme_shows_a_config_of_every_sink_type_and_only_registered_ones() -> None:
    shown = {entry["type"] for _, doc in _readme_blocks() for entry in _entries(doc)}
    written = set(re.findall(r"^\s*(?:- )?type: ([a-z_]+)\s*$", (ROOT / "README.md").read_text(), re.M))
    assert shown == set(KINDS), f"README.md 'Forwarding' needs a yaml example of sink types {set(KINDS) - shown}"
    assert written - {"kafka", "embedded"} <= set(KINDS), "README.md names a sink type that is not registered"
    assert "make helm-schema" in (ROOT / "README.md").read_text()


def test_stand_ins_are_of_registered_sink_types() -> None:
    from siemgate.cli import _STANDINS

    for kind in _STANDINS:
        assert kind.replace("-", "_") in KINDS, f"`siemgate standin {kind}` is a stand-in for no registered sink type"
