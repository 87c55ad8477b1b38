"""Validation of OCSF records against the OCSF schema, for the tests.

pydantic-ocsf (PyPI, the `test` extra) ships the OCSF schema versions 1.0.0-1.7.0 as the
exported schema JSON plus pydantic models generated from it. A record is checked:

1. by the package's model of its class (`ocsf.v1_7_0.events.HttpActivity` /
   `DetectionFinding`): required attributes, types, enum ids, captions consistent with
   their ids (`severity` with `severity_id` ...), `type_uid` = class_uid * 100 + activity_id;
2. strictly, where the models are lenient (they allow extra keys and take any string for an
   IP): every key, at every depth, must be an attribute of its class or object in the
   models (except under `unmapped`, which is free-form by definition); the Security Control
   profile's attributes, which the exported class has not merged, against the schema's
   dictionary (`is_alert` boolean, `disposition_id` / `action_id` in their enums, captions
   matching) and the `firewall_rule` / `attack` object models; `ip_t` values against the
   dictionary's regex and 40-character limit; `port_t` in its range.

pydantic-ocsf 3.0.0 types `http_request.http_method` as an integer, though the schema it
ships makes it a string enum (CONNECT ... TRACE): that attribute is checked against the
shipped schema's enum instead, and taken out before the model sees the record. Its models
also drop the base event's `activity_id` 0 (Unknown), which every class inherits (the
shipped schema's `base_event` defines 0 and 99): a record with activity 0 is checked
against that enum and `type_uid` = class_uid * 100 here, and the model sees it as Other (99).
"""

from __future__ import annotations

import json
import re
import types
import typing
from functools import cache
from importlib.resources import files
from typing import Any

from ocsf.v1_7_0 import events as ocsf_events
from ocsf.v1_7_0 import objects as ocsf_objects
from pydantic import BaseModel

from siemgate.record import dumps, loads

SCHEMA_VERSION = "1.7.0"
_CLASSES: dict[int, type[BaseModel]] = {4002: ocsf_events.HttpActivity, 2004: ocsf_events.DetectionFinding}
# The Security Control profile's attributes used by the format, and their object models.
_PROFILE_OBJECTS: dict[str, type[BaseModel]] = {"firewall_rule": ocsf_objects.FirewallRule,
                                                 "attacks": ocsf_objects.Attack}
_CAPTIONS = {4002: "HTTP Activity", 2004: "Detection Finding"}
_PROFILE_ENUMS = ("disposition_id", "action_id")


@cache
def schema() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(files("ocsf").joinpath("schemas/v1_7_0.json").read_text())
    assert data["version"] == SCHEMA_VERSION
    return data


def _models(annotation: object) -> list[type[BaseModel]]:
    """The pydantic model classes an annotation (Optional, list, Annotated, union) holds."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        found += _models(arg)
    origin = typing.get_origin(annotation)
    if origin is types.UnionType or origin is typing.Union:
        return found
    return found


def _field(model: type[BaseModel], key: str) -> Any:
    for name, info in model.model_fields.items():
        if key in (name, info.alias, info.serialization_alias, info.validation_alias):
            return info
    return None


def check_keys(value: object, model: type[BaseModel], where: str, skip: frozenset[str] = frozenset()) -> None:
    """Every key of `value` (a mapping or a list of them) is an attribute of `model`, at every depth."""
    if isinstance(value, list):
        for index, item in enumerate(value):
            check_keys(item, model, f"{where}[{index}]")
        return
    assert isinstance(value, dict), f"{where}: an object expected, got {value!r}"
    for key, item in value.items():
        if key in skip or key == "unmapped":
            continue
        info = _field(model, key)
        assert info is not None, f"{where}.{key}: not an attribute of OCSF {model.__name__}"
        nested = _models(info.annotation)
        if nested and isinstance(item, dict | list):
            check_keys(item, nested[0], f"{where}.{key}")


def _ip_regex() -> re.Pattern[str]:
    ip_t = schema()["dictionary"]["types"]["attributes"]["ip_t"]
    return re.compile(ip_t["regex"])


def _walk_types(value: object, where: str) -> None:
    """ip_t and port_t values, wherever they are (outside `unmapped`)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "unmapped":
                continue
            if key == "ip":
                assert isinstance(item, str) and len(item) <= 40 and _ip_regex().search(item), (
                    f"{where}.ip: {item!r} is no OCSF ip_t")
            if key == "port":
                assert isinstance(item, int) and 0 <= item <= 65535, f"{where}.port: {item!r} is no port_t"
            _walk_types(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _walk_types(item, f"{where}[{index}]")


def validate(record: dict[str, Any]) -> BaseModel | None:
    """Raises AssertionError or pydantic's ValidationError when `record` is no valid OCSF 1.7.0 record."""
    data = loads(dumps(record))  # as a consumer reads it (integers beyond 64 bits too)
    assert isinstance(data, dict)
    model = _CLASSES[data["class_uid"]]
    methods = schema()["objects"]["http_request"]["attributes"]["http_method"]["enum"]
    requests = [data.get("http_request")] + [e.get("http_request") for e in data.get("evidences", ())]
    for request in requests:
        if request is not None and "http_method" in request:
            assert request.pop("http_method") in methods
    if data.get("activity_id") == 0:
        base = schema()["events"]["base_event"]["attributes"]["activity_id"]["enum"]
        assert base["0"]["caption"] == data["activity_name"] == "Unknown"
        assert data["type_uid"] == data["class_uid"] * 100
        assert data["type_name"] == f"{_CAPTIONS[data['class_uid']]}: Unknown"
        model.model_validate({**data, "activity_id": 99, "activity_name": "Other",
                              "type_uid": data["class_uid"] * 100 + 99,
                              "type_name": f"{_CAPTIONS[data['class_uid']]}: Other"})
    parsed = model.model_validate(data) if data.get("activity_id") != 0 else None
    assert data["metadata"]["version"] == SCHEMA_VERSION
    dictionary = schema()["dictionary"]["attributes"]
    profile = {"is_alert", "disposition", "disposition_id", "action", "action_id", "firewall_rule", "attacks"}
    assert "security_control" in data["metadata"].get("profiles", ())
    check_keys(data, model, model.__name__, skip=frozenset(profile - set(model.model_fields)))
    assert isinstance(data.get("is_alert"), bool)
    for name in _PROFILE_ENUMS:
        enum = dictionary[name]["enum"]
        assert str(data[name]) in enum, f"{name} {data[name]} is not in OCSF's enum"
        sibling = dictionary[name]["sibling"]
        if data[name] != 99:
            assert data[sibling] == enum[str(data[name])]["caption"], f"{sibling} does not match {name}"
        else:
            assert isinstance(data[sibling], str) and data[sibling]
    for name, object_model in _PROFILE_OBJECTS.items():
        if name in data:
            items = data[name] if isinstance(data[name], list) else [data[name]]
            assert dictionary[name].get("is_array", False) == isinstance(data[name], list)
            for item in items:
                object_model.model_validate(item)
                check_keys(item, object_model, f"{model.__name__}.{name}")
    _walk_types(data, model.__name__)
    return parsed
