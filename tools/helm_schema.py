"""The Helm chart's per-sink-type parts, generated from siemgate's sink registry and settings.

    make helm-schema                          # rewrite them (python -m tools.helm_schema)
    python -m tools.helm_schema --check       # exit 1, naming the files, when one is stale

It writes:

- `helm/siemgate/values.schema.json`: `sinks[].type`'s enum and, per sink type, one
  `if type is X then config is ...` branch built from X's settings dataclass: every key with
  its type, default and nested settings, the required keys, and no other key. Nothing else of
  the file is touched.
- `helm/siemgate/templates/_sink_types.tpl`: the named template `siemgate.sinkTypes`, JSON
  saying per sink type which config key holds its destination URL and each URL scheme's
  default port and protocol (the sink module's `DESTINATION_KEY` and `DEFAULT_PORTS`), which
  the NetworkPolicy uses to open each sink's port.

A config key's schema says what `siemgate.config_loader` accepts for its type: exactly where
JSON Schema can say it, looser where it cannot (never stricter, so the chart never refuses a
config siemgate would load). `${VAR}`s are expanded before a value is checked, so any string
holding `${` passes where a scalar is expected (`msgspec.json.schema` would describe the types
strictly, refusing the strings and numbers the loader coerces, so this walks the types the way
the loader does). What the settings' `__post_init__` checks
(ranges, URLs, keys that go together) is left to siemgate itself. On top of that the chart
adds its own rules, stricter on purpose (`chart=True`): secrets are `${VAR}`s from the
Secret, never literals (`SECRET_REF`), and `CHART_POLICIES`.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import inspect
import json
import math
import re
import sys
import types
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from siemgate.config_loader import NetworkType
from siemgate.secrets import Secret

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "helm" / "siemgate"
VALUES_SCHEMA = CHART / "values.schema.json"
SINK_TYPES_TEMPLATE = CHART / "templates" / "_sink_types.tpl"
COMMAND = "make helm-schema"

Json = dict[str, Any]


@dataclass(frozen=True)
class SinkType:
    kind: str
    settings: type  # the SinkSettings subclass the loader builds the sink's config entry into
    module: types.ModuleType  # the sink's module: DESTINATION_KEY, DEFAULT_PORTS


def sink_types() -> list[SinkType]:
    """Every registered sink type, in the registry's order. The one place this tool reads the
    registry: point it wherever the registry and the settings types live."""
    from siemgate.sink_settings import SINK_TYPES

    found = []
    for kind, (module_name, settings_name, _sink_name) in SINK_TYPES.items():
        module = importlib.import_module(module_name)
        found.append(SinkType(kind, getattr(module, settings_name), module))
    return found


# --- what the loader accepts, as JSON Schema ------------------------------------------------

# Where a string holds `${`, the loader substitutes the environment first: it may become any value.
VAR = r"\$\{"
# Python's int() and float() strip these (str.isspace(), ASCII part); JSON Schema's \s differs.
_SPACE = r"[\t\n\x0b\x0c\r\x1c-\x1f ]"
# Python's int() and float() also read non-ASCII digits and spaces: such strings pass (looser).
_NON_ASCII = r"[^\x00-\x7f]"


def _anycase(word: str) -> str:
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in word)


def _words(words: tuple[str, ...]) -> str:
    return "(?:" + "|".join(_anycase(w) for w in words) + ")"


# int(value.replace("_", "")): underscores anywhere, spaces around, a sign, digits.
INT_TEXT = rf"^(?:{_SPACE}|_)*[+-]?[0-9_]*[0-9][0-9_]*(?:{_SPACE}|_)*$|{_NON_ASCII}|{VAR}"
# float(value): a decimal (underscores between digits, an exponent), inf, infinity or nan, any case.
FLOAT_TEXT = (
    rf"^{_SPACE}*[+-]?(?:[0-9_]*\.?[0-9_]*(?:[eE][+-]?[0-9_]+)?|{_words(('inf', 'infinity', 'nan'))}){_SPACE}*$"
    rf"|{_NON_ASCII}|{VAR}"
)
# config_loader._TRUE | _FALSE, compared after .lower().
BOOL_TEXT = rf"^{_words(('true', 'yes', 'on', '1', 'false', 'no', 'off', '0'))}$|{VAR}"
# The chart's rule for secrets: a reference to the Secret, never the value.
SECRET_REF: Json = {
    "type": "string",
    "pattern": r"^\$\{[A-Za-z_][A-Za-z0-9_]*(:-)?\}$",
    "description": "A ${VAR} (or ${VAR:-} when optional) whose value comes from the Secret, never a literal.",
}


def value_schema(tp: Any, *, chart: bool) -> Json:
    """What `siemgate.config_loader` accepts for a value of type `tp` (its `_convert`, branch by branch)."""
    origin = get_origin(tp)
    if tp is Any:
        return {}
    if tp == NetworkType:
        return {"type": "string"}
    if origin in (Union, types.UnionType):
        options = get_args(tp)
        schemas = [value_schema(option, chart=chart) for option in options if option is not type(None)]
        if type(None) in options:
            schemas.append({"type": "null"})
        return schemas[0] if len(schemas) == 1 else {"anyOf": schemas}
    if origin is Literal:
        allowed = get_args(tp)
        if not all(isinstance(a, str) and "$" not in a for a in allowed):
            raise TypeError(f"{tp!r}: only Literals of strings without '$' are described (teach tools/helm_schema.py)")
        return {"anyOf": [{"enum": list(allowed)}, {"type": "string", "pattern": VAR}]}
    if origin is tuple:
        return {"type": "array", "items": value_schema(get_args(tp)[0], chart=chart)}
    if origin is dict:
        key_type, item_type = get_args(tp)
        if key_type is not str:
            raise TypeError(f"{tp!r}: only str keys are described (teach tools/helm_schema.py)")
        return {"type": "object", "additionalProperties": value_schema(item_type, chart=chart)}
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        # A nested settings block; null (or nothing) means every default.
        return {**settings_schema(tp, chart=chart), "type": ["object", "null"]}
    if tp is Secret:
        return dict(SECRET_REF) if chart else {"type": "string"}
    if tp is bool:
        return {"type": ["boolean", "string"], "pattern": BOOL_TEXT}
    if tp is int:
        return {"type": ["integer", "string"], "pattern": INT_TEXT}
    if tp is float:
        return {"type": ["number", "string"], "pattern": FLOAT_TEXT}
    if tp is str:
        return {"type": ["string", "number"]}
    raise TypeError(f"tools/helm_schema.py cannot describe {tp!r}: add the config loader's rule for it")


_NO_DEFAULT = object()


def _as_json(value: object) -> object:
    """A default as JSON, or _NO_DEFAULT when JSON cannot show it (a Secret, infinity ...)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else _NO_DEFAULT
    if isinstance(value, tuple | list):
        items = [_as_json(v) for v in value]
        return _NO_DEFAULT if _NO_DEFAULT in items else items
    if isinstance(value, dict):
        pairs = {k: _as_json(v) for k, v in value.items()}
        return _NO_DEFAULT if _NO_DEFAULT in pairs.values() or not all(isinstance(k, str) for k in pairs) else pairs
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _as_json({f.name: getattr(value, f.name) for f in dataclasses.fields(value) if f.init})
    return _NO_DEFAULT


def _default(field: dataclasses.Field[Any]) -> object:
    if field.default is not dataclasses.MISSING:
        return _as_json(field.default)
    if field.default_factory is not dataclasses.MISSING:
        return _as_json(field.default_factory())
    return _NO_DEFAULT


_FIELD = re.compile(r"^    ([A-Za-z_][A-Za-z0-9_]*)\s*:")
_COMMENT = re.compile(r"^    #\s?(.*)$")


def field_comments(cls: type) -> dict[str, str]:
    """The comment lines right above each field of a settings dataclass (and of its bases)."""
    comments: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            lines = inspect.getsource(klass).splitlines()
        except (OSError, TypeError):
            continue
        pending: list[str] = []
        for line in lines:
            if (comment := _COMMENT.match(line)) is not None:
                pending.append(comment.group(1).strip())
                continue
            if (field := _FIELD.match(line)) is not None and pending:
                comments[field.group(1)] = " ".join(pending)
            pending = []
    return comments


def _docstring(cls: type) -> str | None:
    """The class's own docstring's first paragraph (not the signature dataclass writes when it has none)."""
    doc = cls.__doc__
    if not doc or doc.startswith(f"{cls.__name__}("):
        return None
    return " ".join(inspect.cleandoc(doc).split("\n\n")[0].split())


def settings_schema(cls: type, *, chart: bool, leave_out: frozenset[str] = frozenset()) -> Json:
    """A settings dataclass as a mapping: its init fields, no other key (the loader refuses unknown keys)."""
    hints = get_type_hints(cls)
    comments = field_comments(cls)
    properties: Json = {}
    required = []
    for field in dataclasses.fields(cls):
        if not field.init or field.name in leave_out:
            continue
        schema = value_schema(hints[field.name], chart=chart)
        if field.name in comments and "description" not in schema:
            schema["description"] = comments[field.name]
        default = _default(field)
        if default is not _NO_DEFAULT:
            schema["default"] = default
        else:
            required.append(field.name)
        properties[field.name] = schema
    out: Json = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        out["required"] = required
    if (doc := _docstring(cls)) is not None:
        out["description"] = doc
    return out


def sink_config_schema(sink: SinkType) -> Json:
    """A sink's config entry as siemgate's loader takes it (`registry.build_settings`: `name` and the
    sink's own keys, `type` already taken out)."""
    return settings_schema(sink.settings, chart=False)


# --- the chart -------------------------------------------------------------------------------

# The chart's own rules per sink type, on top of the loader's (its README: "Secrets", "Security").
CHART_POLICIES: Mapping[str, Json] = {
    # The root filesystem is read-only: a file sink writes on the /data volume.
    "file": {"properties": {"path": {"type": "string", "pattern": "^/data/"}}},
    # Credentials from the Secret, always: an Elasticsearch sink without them is a mistake here.
    "elasticsearch": {"anyOf": [{"required": ["api_key"]}, {"required": ["username", "password"]}]},
}


def chart_config_schema(sink: SinkType) -> Json:
    """`sinks[].config` of a sink type: the loader's keys but `name` (the chart sets it), secrets as
    `${VAR}`s, and `CHART_POLICIES`."""
    schema = settings_schema(sink.settings, chart=True, leave_out=frozenset({"name"}))
    policy = CHART_POLICIES.get(sink.kind, {})
    for key, extra in policy.get("properties", {}).items():
        schema["properties"][key].update(extra)
    schema.update({k: v for k, v in policy.items() if k != "properties"})
    about = f"siemgate's `{sink.kind}` sink ({sink.settings.__module__}.{sink.settings.__name__}"
    schema["description"] = f"{about}; generated by `{COMMAND}`). {schema.get('description', '')}".rstrip()
    return schema


def sinks_part(sinks: list[SinkType]) -> tuple[Json, list[Json]]:
    """(`sinks[].type`, `sinks[].allOf`) of values.schema.json."""
    kind = {"enum": [s.kind for s in sinks], "description": f"A registered sink type (generated by `{COMMAND}`)."}
    branches = [
        {"if": {"properties": {"type": {"const": s.kind}}, "required": ["type"]},
         "then": {"properties": {"config": chart_config_schema(s)}}}
        for s in sinks
    ]
    return kind, branches


def values_schema_text(current: str, sinks: list[SinkType]) -> str:
    schema = json.loads(current)
    item = schema["properties"]["sinks"]["items"]
    item["properties"]["type"], item["allOf"] = sinks_part(sinks)
    item["properties"]["config"] = {
        "type": "object",
        "description": "The sink's own keys (README 'Forwarding'), checked per type below. Credentials are ${VAR}s.",
    }
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def destinations(sinks: list[SinkType]) -> Json:
    """Per sink type: the config key holding its destination URL (null: it connects nowhere) and
    each URL scheme's default port and protocol."""
    out: Json = {}
    for sink in sinks:
        key = getattr(sink.module, "DESTINATION_KEY", _NO_DEFAULT)
        ports = getattr(sink.module, "DEFAULT_PORTS", _NO_DEFAULT)
        if key is _NO_DEFAULT or ports is _NO_DEFAULT:
            raise TypeError(f"{sink.module.__name__} must declare DESTINATION_KEY and DEFAULT_PORTS "
                            "(None and {} for a sink that connects nowhere)")
        assert isinstance(ports, Mapping)
        out[sink.kind] = {
            "destination": key,
            "ports": {scheme: {"port": port, "protocol": "UDP" if scheme == "udp" else "TCP"}
                      for scheme, port in ports.items()},
        }
    return out


def sink_types_template(sinks: list[SinkType]) -> str:
    data = json.dumps(destinations(sinks), sort_keys=True, separators=(",", ":"))
    assert "{{" not in data, data  # would open a template action
    return (
        f"{{{{/* Generated by `{COMMAND}` (tools/helm_schema.py) from siemgate's sink registry: do not edit. */}}}}\n"
        "{{/* Per sink type: the config key holding its destination URL (null: it connects nowhere)\n"
        "and each URL scheme's default port and protocol (the sink module's DESTINATION_KEY and\n"
        "DEFAULT_PORTS), as JSON: include \"siemgate.sinkTypes\" . | fromJson */}}\n"
        "{{- define \"siemgate.sinkTypes\" -}}\n"
        f"{data}\n"
        "{{- end -}}\n"
    )


def generated() -> dict[Path, str]:
    """Each generated file and the text it must have."""
    sinks = sink_types()
    return {
        VALUES_SCHEMA: values_schema_text(VALUES_SCHEMA.read_text(), sinks),
        SINK_TYPES_TEMPLATE: sink_types_template(sinks),
    }


def stale() -> list[Path]:
    return [path for path, text in generated().items() if not path.exists() or path.read_text() != text]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.helm_schema", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only say whether the committed files are up to date")
    args = parser.parse_args(argv)
    if args.check:
        old = stale()
        for path in old:
            print(f"{path.relative_to(ROOT)} is not what the sink settings generate: run `{COMMAND}`", file=sys.stderr)
        return 1 if old else 0
    for path, text in generated().items():
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
