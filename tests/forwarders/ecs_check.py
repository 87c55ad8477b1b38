"""Validation of Elasticsearch documents (and the index template's mappings) against the ECS
field list, for the tests.

tests/data/ecs-fields.json is elastic/ecs's `generated/ecs/ecs_flat.yml` (Apache License 2.0)
reduced to each field's type, level, `normalize` (`array`: the value is a list) and allowed /
expected values; its `source` key names the commit (ECS 9.5.0-dev). A document fails when:

- a field is not in ECS and not under the custom namespace `siemgate.` (where the sink puts
  the vendor's event, mapped `flattened`: anything goes inside it);
- a value does not fit the field's type (keyword: a string; long: an integer in range; float:
  a finite number; date: an ISO 8601 instant with a zone that is a real date; ip: an address
  Elasticsearch's `ip` type takes, so no IPv6 zone; boolean; object / flattened: an object);
- a value is not among the field's allowed values (`event.kind`, `event.category`,
  `event.type`, `event.outcome` ...) or expected values;
- a list where ECS does not say `array`, or a scalar where it does;
- `labels.*` holds anything but strings (ECS: keyword values); `data_stream.*` breaks the data
  stream naming scheme (type `logs` or `metrics`, dataset and namespace without `-`, lowercase,
  at most 100 characters).
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from collections.abc import Iterator, Mapping
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

FIELDS_FILE = Path(__file__).resolve().parent.parent / "data" / "ecs-fields.json"
# The one top-level name outside ECS a siemgate document may carry: the vendor's event goes
# under `siemgate.event` (the sink's `original_field`), mapped `flattened`.
CUSTOM_NAMESPACE = "siemgate"

_TEXT = frozenset({"keyword", "constant_keyword", "wildcard", "match_only_text", "text"})
_INTEGER = {"long": (-(2**63), 2**63 - 1), "integer": (-(2**31), 2**31 - 1)}
_FLOAT = frozenset({"float", "double", "scaled_float", "half_float"})
_DATE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)")
_DATA_STREAM_BAD = re.compile(r'[\\/*?"<>| ,#:-]')


@cache
def ecs_fields() -> Mapping[str, Mapping[str, Any]]:
    fields: dict[str, Mapping[str, Any]] = json.loads(FIELDS_FILE.read_text())["fields"]
    return fields


@cache
def _object_paths() -> frozenset[str]:
    """Every proper prefix of an ECS field name (`event`, `http.request` ...): an object there."""
    prefixes = set()
    for name in ecs_fields():
        parts = name.split(".")
        prefixes.update(".".join(parts[:i]) for i in range(1, len(parts)))
    return frozenset(prefixes)


def es_ip(value: str) -> bool:
    """What Elasticsearch's `ip` type parses (InetAddresses.forString): IPv4 dotted quads and
    IPv6, no zone (`%eth0`)."""
    if "%" in value:
        return False
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _real_date(value: str) -> bool:
    match = _DATE.fullmatch(value)
    if match is None:
        return False
    fraction = match.group(1)
    text = value[:19] + (f".{fraction[:6].ljust(6, '0')}" if fraction else "") + (
        "+00:00" if match.group(2) == "Z" else match.group(2))
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def _type_problem(type_: str, value: Any) -> str | None:
    if type_ in _TEXT:
        return None if isinstance(value, str) else f"a {type_} must be a string, not {value!r}"
    if type_ in _INTEGER:
        low, high = _INTEGER[type_]
        if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
            return None
        return f"a {type_} must be an integer in range, not {value!r}"
    if type_ in _FLOAT:
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            return None
        return f"a {type_} must be a finite number, not {value!r}"
    if type_ == "date":
        if isinstance(value, str) and _real_date(value):
            return None
        return f"a date must be an ISO 8601 instant with a zone that exists, not {value!r}"
    if type_ == "ip":
        return None if isinstance(value, str) and es_ip(value) else f"not an IP Elasticsearch takes: {value!r}"
    if type_ == "boolean":
        return None if isinstance(value, bool) else f"a boolean must be true or false, not {value!r}"
    if type_ == "geo_point":
        return None if isinstance(value, dict) and {"lat", "lon"} <= set(value) else f"not a geo_point: {value!r}"
    return f"type {type_} is not checked here (add it)"


def _leaves(doc: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted path, value) of each field, descending into objects that are not ECS fields
    themselves (a dotted key counts as its path, as Elasticsearch reads it)."""
    fields = ecs_fields()
    for key, value in doc.items():
        path = f"{prefix}{key}"
        if path not in fields and isinstance(value, dict) and not path.startswith(f"{CUSTOM_NAMESPACE}."):
            if path == CUSTOM_NAMESPACE:
                yield path, value
            else:
                yield from _leaves(value, f"{path}.")
        else:
            yield path, value


def _data_stream_problem(name: str, value: Any) -> str | None:
    if not isinstance(value, str):
        return None  # the type check says it
    if name == "data_stream.type":
        return None if value in ("logs", "metrics") else f"data_stream.type must be logs or metrics, not {value!r}"
    if not value or len(value) > 100 or value != value.lower() or _DATA_STREAM_BAD.search(value):
        return f"{name} {value!r} breaks the data stream naming scheme (lowercase, no '-', at most 100 characters)"
    return None


def problems(doc: Mapping[str, Any]) -> list[str]:
    """Everything in `doc` (as Elasticsearch receives it: JSON types) that is not ECS."""
    fields = ecs_fields()
    out: list[str] = []
    for path, value in _leaves(doc):
        if path == CUSTOM_NAMESPACE:
            unknown = set(value) - {"event"}
            if unknown:
                out.append(f"{path}: the custom namespace holds only `event` (the vendor's event), "
                           f"not {sorted(unknown)}")
            continue
        spec = fields.get(path)
        if spec is None:
            if path in _object_paths():
                out.append(f"{path}: an ECS object, not a value: {value!r}")
            else:
                out.append(f"{path}: not an ECS field (custom fields go under {CUSTOM_NAMESPACE}.)")
            continue
        type_ = spec["type"]
        if type_ == "flattened":
            if not isinstance(value, dict):
                out.append(f"{path}: a flattened field must be an object")
            continue
        if type_ == "object":
            if not isinstance(value, dict):
                out.append(f"{path}: must be an object, not {value!r}")
            elif path == "labels":
                out.extend(f"labels.{k}: labels are keywords (strings), not {v!r}"
                           for k, v in value.items() if not isinstance(v, str))
            continue
        array = "array" in spec.get("normalize", ())
        if array and not isinstance(value, list):
            out.append(f"{path}: ECS says an array, got the scalar {value!r}")
            continue
        if not array and isinstance(value, list):
            out.append(f"{path}: ECS says one value, got the array {value!r}")
            continue
        allowed = spec.get("allowed_values") or spec.get("expected_values")
        for element in (value if isinstance(value, list) else [value]):
            problem = _type_problem(type_, element)
            if problem is not None:
                out.append(f"{path}: {problem}")
            elif allowed is not None and element not in allowed:
                out.append(f"{path}: {element!r} is not one of ECS's values {allowed}")
            elif path.startswith("data_stream."):
                problem = _data_stream_problem(path, element)
                if problem is not None:
                    out.append(problem)
    return out


def assert_ecs(doc: Mapping[str, Any]) -> None:
    found = problems(doc)
    assert not found, "not ECS:\n  " + "\n  ".join(found)


# The mapping types that index an ECS type faithfully (a narrower mapping is a mistake).
_MAPPED_AS: Mapping[str, frozenset[str]] = {
    "keyword": frozenset({"keyword"}), "constant_keyword": frozenset({"constant_keyword"}),
    "wildcard": frozenset({"wildcard"}), "match_only_text": frozenset({"match_only_text"}),
    "long": frozenset({"long"}), "integer": frozenset({"integer"}), "float": frozenset({"float"}),
    "scaled_float": frozenset({"scaled_float"}), "double": frozenset({"double"}), "date": frozenset({"date"}),
    "ip": frozenset({"ip"}), "boolean": frozenset({"boolean"}), "flattened": frozenset({"flattened"}),
    "object": frozenset({"object"}),
}


def mapping_problems(mappings: Mapping[str, Any]) -> list[str]:
    """Every mapped field of an index template's `mappings` whose name or type is not ECS's
    (outside the custom namespace)."""
    fields = ecs_fields()
    out: list[str] = []

    def walk(properties: Mapping[str, Any], prefix: str) -> None:
        for key, spec in properties.items():
            path = f"{prefix}{key}"
            if path == CUSTOM_NAMESPACE or path.startswith(f"{CUSTOM_NAMESPACE}."):
                continue
            ecs = fields.get(path)
            if prefix == "labels.":
                if spec.get("type") != "keyword":
                    out.append(f"{path}: labels are keywords, mapped {spec.get('type')}")
                continue
            if "properties" in spec and (ecs is None or ecs["type"] == "object"):
                walk(spec["properties"], f"{path}.")
                continue
            if ecs is None:
                out.append(f"{path}: mapped but not an ECS field")
            elif spec.get("type") not in _MAPPED_AS.get(ecs["type"], frozenset({ecs["type"]})):
                out.append(f"{path}: mapped {spec.get('type')}, ECS says {ecs['type']}")

    walk(mappings.get("properties", {}), "")
    return out
