"""Explicit mappings: compiled from a template's or an index's `mappings`, checked against each
document as Elasticsearch would (`document_parsing_exception`, `strict_dynamic_mapping_exception`)."""

from __future__ import annotations

import calendar
import ipaddress
import math
import re
from collections.abc import Callable, Mapping
from typing import Any, Final

from siemgate_standins.elasticsearch.protocol import EsError, _dumps

_DEFAULT_DATE_FORMAT: Final = "strict_date_optional_time||epoch_millis"


# Mappings
#
# A mapping compiles to a tree of `_ObjectMapping` / `_Leaf` nodes, each with a `value` function:
# value -> None when it fits, else a `_Problem` (built only on failure, formatted with the
# document's source and _id by `_problem_error`). Objects whose dynamic setting is not strict
# only look at the fields they map (and at dotted keys), so unmapped parts of a document cost
# nothing.

_INTEGER_RANGES: Final = {
    "long": (-(2**63), 2**63 - 1, "a long"),
    "integer": (-(2**31), 2**31 - 1, "an integer"),
    "short": (-(2**15), 2**15 - 1, "a short"),
    "byte": (-(2**7), 2**7 - 1, "a byte"),
    "unsigned_long": (0, 2**64 - 1, "an unsigned_long"),
}
_FLOAT_TYPES: Final = frozenset({"float", "double", "half_float", "scaled_float"})
_TEXT_TYPES: Final = frozenset({"keyword", "text", "match_only_text", "wildcard", "constant_keyword",
                                "search_as_you_type", "version", "counted_keyword", "semantic_text",
                                "annotated_text"})
_DATE_TYPES: Final = frozenset({"date", "date_nanos"})
_OBJECT_TYPES: Final = frozenset({"object", "nested", "passthrough"})
_OTHER_TYPES: Final = frozenset({
    "binary", "flattened", "geo_point", "geo_shape", "point", "shape", "integer_range", "float_range",
    "long_range", "double_range", "date_range", "ip_range", "alias", "join", "percolator", "completion",
    "token_count", "dense_vector", "sparse_vector", "rank_feature", "rank_features", "histogram",
    "aggregate_metric_double", "murmur3",
})
_KNOWN_TYPES: Final = (frozenset(_INTEGER_RANGES) | _FLOAT_TYPES | _TEXT_TYPES | _DATE_TYPES | _OBJECT_TYPES
                       | _OTHER_TYPES | {"boolean", "ip"})

_DATE_RE: Final = re.compile(
    r"(\d{4})(?:-(\d{2})(?:-(\d{2})"
    r"(?:T(\d{2})(?::(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?)?"
    r"(Z|[+-]\d{2}(?::?\d{2})?)?)?)?)?"
)
_STRICT_DATE_TIME_RE: Final = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,9}))?(Z|[+-]\d{2}:?\d{2})"
)
_UTC_DATE_TIME_RE: Final = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?Z")
_EPOCH_RE: Final = re.compile(r"-?\d+(?:\.\d+)?")
_IPV4_RE: Final = re.compile(r"(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)")
_MONTH_DAYS: Final = {"01": "31", "02": "29", "03": "31", "04": "30", "05": "31", "06": "30", "07": "31",
                      "08": "31", "09": "30", "10": "31", "11": "30", "12": "31"}

Cause = dict[str, Any]
Checker = Callable[[Any], Cause | None]


def _valid_date_parts(match: re.Match[str]) -> bool:
    """Ranges of a matched date (2-digit fields compare as strings: no int conversions)."""
    year, month, day, hour, minute, second, _fraction, zone = match.groups()
    if month is not None:
        last = _MONTH_DAYS.get(month)
        if last is None:
            return False
        if day is not None and not "01" <= day <= last:
            return False
        if day == "29" and month == "02" and not calendar.isleap(int(year)):
            return False
    if hour is not None and hour > "23":
        return False
    if minute is not None and minute > "59":
        return False
    if second is not None and second > "59":
        return False
    if zone and zone != "Z":
        digits = zone[1:].replace(":", "")
        if digits[:2] > "18" or (len(digits) == 4 and digits[2:] > "59"):
            return False
    return True


def _date_format_ok(name: str, value: Any) -> bool:
    name = name.strip()
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if name in ("epoch_millis", "epoch_second"):
        if is_number:
            return math.isfinite(value)
        return isinstance(value, str) and _EPOCH_RE.fullmatch(value) is not None
    text = value if isinstance(value, str) else None
    if name in ("strict_date_optional_time", "date_optional_time", "strict_date_optional_time_nanos"):
        if text is None:
            return False
        match = _DATE_RE.fullmatch(text)
        return match is not None and _valid_date_parts(match)
    if name in ("strict_date_time", "date_time", "strict_date_time_no_millis", "date_time_no_millis"):
        if text is None:
            return False
        match = _STRICT_DATE_TIME_RE.fullmatch(text)
        return match is not None and _valid_date_parts(match)
    if name in ("date", "strict_date", "yyyy-MM-dd"):
        if text is None or len(text) != 10:
            return False
        match = _DATE_RE.fullmatch(text)
        return match is not None and _valid_date_parts(match)
    # A custom Java pattern: not emulated, any string (or number, as Elasticsearch formats it) passes.
    return text is not None or is_number


def _date_checker(fmt: str) -> Checker:
    formats = [part.strip() for part in fmt.split("||") if part.strip()] or [_DEFAULT_DATE_FORMAT]
    iso_first = formats[0] in ("strict_date_optional_time", "date_optional_time")
    fullmatch = _DATE_RE.fullmatch
    fast = _UTC_DATE_TIME_RE.fullmatch

    def check(value: Any) -> Cause | None:
        if iso_first and type(value) is str:
            # The usual case, "2025-01-15T10:20:30.123Z": one simple regex and string comparisons.
            if value[-1:] == "Z" and fast(value):
                month, day = value[5:7], value[8:10]
                last = _MONTH_DAYS.get(month)
                if (last is not None and "01" <= day <= last and value[11:13] <= "23" and value[14:16] <= "59"
                        and value[17:19] <= "59" and (day != "29" or month != "02" or calendar.isleap(int(value[:4])))):
                    return None
            match = fullmatch(value)
            if match is not None and _valid_date_parts(match):
                return None
        if isinstance(value, dict):
            return _object_cause()
        if isinstance(value, bool):
            value = "true" if value else "false"
        if any(_date_format_ok(name, value) for name in formats):
            return None
        text = _preview(value)
        inner = ("Failed to parse with all enclosed parsers" if len(formats) > 1
                 else f"Text '{text}' could not be parsed at index 0")
        return {"type": "illegal_argument_exception",
                "reason": f"failed to parse date field [{text}] with format [{fmt}]",
                "caused_by": {"type": "date_time_parse_exception", "reason": inner}}

    return check


def _object_cause() -> Cause:
    return {"type": "illegal_state_exception", "reason": "Can't get text on a START_OBJECT at 1:1"}


def _not_numeric(value: Any) -> Cause:
    token = "VALUE_TRUE" if value else "VALUE_FALSE"
    return {"type": "illegal_argument_exception",
            "reason": f"Current token ({token}) not numeric, can not use numeric value accessors"}


def _integer_checker(type_: str, coerce: bool) -> Checker:
    low, high, article = _INTEGER_RANGES[type_]

    def check(value: Any) -> Cause | None:
        kind = type(value)
        if kind is int and low <= value <= high:
            return None
        number: float | int
        if kind is int:
            number = value
        elif kind is float:
            if not math.isfinite(value):
                return {"type": "illegal_argument_exception",
                        "reason": f"[{type_}] supports only finite values, but got [{_preview(value)}]"}
            if not coerce and not value.is_integer():
                return {"type": "illegal_argument_exception",
                        "reason": f"Value [{_preview(value)}] has a decimal part"}
            number = value
        elif kind is str:
            try:
                number = int(value.strip())
            except ValueError:
                try:
                    number = float(value) if coerce else math.nan
                except ValueError:
                    number = math.nan
                if not math.isfinite(number):
                    return {"type": "number_format_exception", "reason": f'For input string: "{value}"'}
        elif kind is bool:
            return _not_numeric(value)
        elif kind is dict:
            return _object_cause()
        else:
            return {"type": "illegal_argument_exception", "reason": f"cannot parse [{_preview(value)}] as a number"}
        if not low <= number <= high:
            return {"type": "illegal_argument_exception",
                    "reason": f"Value [{_preview(value)}] is out of range for {article}"}
        return None

    return check


def _float_checker(type_: str) -> Checker:
    def check(value: Any) -> Cause | None:
        kind = type(value)
        if kind is int:
            return None
        if kind is float:
            number = value
        elif kind is str:
            try:
                number = float(value)
            except ValueError:
                return {"type": "number_format_exception", "reason": f'For input string: "{value}"'}
        elif kind is bool:
            return _not_numeric(value)
        elif kind is dict:
            return _object_cause()
        else:
            return {"type": "illegal_argument_exception", "reason": f"cannot parse [{_preview(value)}] as a number"}
        if not math.isfinite(number):
            return {"type": "illegal_argument_exception",
                    "reason": f"[{type_}] supports only finite values, but got [{_preview(value)}]"}
        return None

    return check


def _check_boolean(value: Any) -> Cause | None:
    if value is True or value is False or value in ("true", "false", ""):
        return None
    if isinstance(value, dict):
        return _object_cause()
    return {"type": "illegal_argument_exception",
            "reason": f"Failed to parse value [{_preview(value)}] as only [true] or [false] are allowed."}


def _check_ip(value: Any) -> Cause | None:
    if type(value) is str:
        if _IPV4_RE.fullmatch(value):
            return None
        # Elasticsearch's InetAddresses.forString takes no IPv6 zone (`fe80::1%eth0`); Python's does.
        if "%" not in value:
            try:
                ipaddress.ip_address(value)
                return None
            except ValueError:
                pass
    if isinstance(value, dict):
        return _object_cause()
    return {"type": "illegal_argument_exception", "reason": f"'{_preview(value)}' is not an IP string literal."}


_MAX_TERM_BYTES: Final = 32766  # Lucene's IndexWriter.MAX_TERM_LENGTH


def _flattened_checker(path: str, depth_limit: int, ignore_above: int) -> Checker:
    """A `flattened` field: an object (each element of an array), nested at most `depth_limit`
    deep (the root object is 1, arrays do not count), no NUL in a key, no leaf whose term
    (`key path \\0 value`) is longer than Lucene takes unless the value is longer than
    `ignore_above` characters (then not indexed): FlattenedFieldParser."""

    def leaf(name: str, value: Any) -> Cause | None:
        text = _preview(value)
        if len(text) > ignore_above:
            return None
        key_bytes, value_bytes = len(name.encode()), len(text.encode())
        if key_bytes + 1 + value_bytes <= _MAX_TERM_BYTES:
            return None
        return {"type": "illegal_argument_exception",
                "reason": f"Flattened field [{path}] contains one immense field whose keyed encoding is longer than "
                          f"the allowed max length of {_MAX_TERM_BYTES} bytes. Key length: {len(name)}, value length: "
                          f"{len(text)} for key starting with [{name[:50]}]"}

    def walk(obj: dict[str, Any], depth: int, prefix: str) -> Cause | None:
        for key, child in obj.items():
            name = f"{prefix}{key}"
            if "\0" in name:
                return {"type": "illegal_argument_exception",
                        "reason": f"Keys in [flattened] fields cannot contain the reserved character \\0. Offending "
                                  f"key: [{name}]."}
            stack = [child]
            while stack:
                item = stack.pop()
                if type(item) is list:
                    stack.extend(item)
                elif item is not None and type(item) is not dict:
                    cause = leaf(name, item)
                    if cause is not None:
                        return cause
                elif type(item) is dict:
                    if depth + 1 > depth_limit:
                        return {"type": "illegal_argument_exception",
                                "reason": f"The provided [flattened] field [{path}] exceeds the maximum depth limit "
                                          f"of [{depth_limit}]."}
                    cause = walk(item, depth + 1, f"{name}.")
                    if cause is not None:
                        return cause
        return None

    def check(value: Any) -> Cause | None:
        if type(value) is not dict:
            token = "START_ARRAY" if type(value) is list else "VALUE_NUMBER" if isinstance(value, int | float) \
                and not isinstance(value, bool) else "VALUE_BOOLEAN" if isinstance(value, bool) else "VALUE_STRING"
            return {"type": "parsing_exception",
                    "reason": f"Failed to parse object: expecting token of type [START_OBJECT] but found [{token}]"}
        return walk(value, 1, "")

    return check


def _constant_checker(leaf: _Leaf, spec: Mapping[str, Any]) -> Checker:
    """A `constant_keyword`: every value equals the mapping's `value`; without one, the first
    document's value becomes it (a mapping update in Elasticsearch)."""
    configured = spec.get("value")
    if configured is not None:
        leaf.constant = str(configured)

    def check(value: Any) -> Cause | None:
        if type(value) is dict:
            return _object_cause()
        text = _preview(value)
        if leaf.constant is None:
            leaf.constant = text
            return None
        if text == leaf.constant:
            return None
        return {"type": "illegal_argument_exception",
                "reason": f"[constant_keyword] field [{leaf.path}] only accepts values that are equal to the value "
                          f"defined in the mappings [{leaf.constant}], but got [{text}]"}

    return check


def _check_text(value: Any) -> Cause | None:
    return _object_cause() if type(value) is dict else None


def _check_anything(value: Any) -> Cause | None:
    return None


def _preview(value: Any) -> str:
    """A value as Elasticsearch prints it in messages (Java's toString)."""
    if isinstance(value, str):
        return value
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, float):
        if math.isfinite(value):
            return repr(value)
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}={_preview(child)}" for key, child in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_preview(child) for child in value) + "]"
    return str(value)


class _Problem:
    """Why a document does not fit (formatted into the item error by `_problem_error`)."""

    __slots__ = ("cause", "key", "kind", "path", "type", "value")

    def __init__(self, kind: str, key: str, path: str, type_: str = "", value: Any = None,
                 cause: Cause | None = None) -> None:
        self.kind = kind  # leaf, strict, concrete, not_object
        self.key = key
        self.path = path
        self.type = type_
        self.value = value
        self.cause = cause


ValueCheck = Callable[[Any], "_Problem | None"]


# The types `ignore_malformed` (the field's or the index's `index.mapping.ignore_malformed`) applies to.
_MALFORMED_IGNORABLE: Final = frozenset(_INTEGER_RANGES) | _FLOAT_TYPES | _DATE_TYPES | {"ip", "geo_point",
                                                                                      "geo_shape", "boolean"}


class _Leaf:
    __slots__ = ("check", "constant", "ignore_malformed", "name", "path", "type", "value")

    def __init__(self, path: str, type_: str, spec: Mapping[str, Any], index_ignore_malformed: bool = False) -> None:
        self.path = path
        self.name = path.rpartition(".")[2]
        self.type = type_
        self.constant: str | None = None
        own = spec.get("ignore_malformed")
        self.ignore_malformed = type_ in _MALFORMED_IGNORABLE and (
            own in (True, "true") if own is not None else index_ignore_malformed)
        coerce = spec.get("coerce") not in (False, "false")
        if type_ in _INTEGER_RANGES:
            self.check: Checker = _integer_checker(type_, coerce)
        elif type_ in _FLOAT_TYPES:
            self.check = _float_checker(type_)
        elif type_ in _DATE_TYPES:
            self.check = _date_checker(str(spec.get("format") or _DEFAULT_DATE_FORMAT))
        elif type_ == "boolean":
            self.check = _check_boolean
        elif type_ == "ip":
            self.check = _check_ip
        elif type_ == "flattened":
            self.check = _flattened_checker(path, int(spec.get("depth_limit", 20)),
                                            int(spec.get("ignore_above", 2**31 - 1)))
        elif type_ == "constant_keyword":
            self.check = _constant_checker(self, spec)
        elif type_ in _TEXT_TYPES:
            self.check = _check_text
        else:
            self.check = _check_anything
        self.value: ValueCheck = self._compile()

    def _compile(self) -> ValueCheck:
        check = self.check
        if check is _check_anything or self.ignore_malformed:
            return lambda value: None

        def value_check(value: Any) -> _Problem | None:
            if type(value) is list:
                for element in value:
                    if element is not None:
                        cause = check(element)
                        if cause is not None:
                            return _Problem("leaf", self.name, self.path, self.type, element, cause)
                return None
            if value is None:
                return None
            cause = check(value)
            return None if cause is None else _Problem("leaf", self.name, self.path, self.type, value, cause)

        return value_check


class _ObjectMapping:
    __slots__ = ("dynamic", "object", "path", "props", "strict", "value")

    def __init__(self, path: str, dynamic: str | None) -> None:
        self.path = path
        self.dynamic = dynamic  # None: inherited
        self.props: dict[str, _ObjectMapping | _Leaf] = {}
        self.strict = False
        self.object: Callable[[dict[str, Any]], _Problem | None] = lambda obj: None
        self.value: ValueCheck = lambda value: None

    def leaf(self, path: str) -> _Leaf | None:
        node: _ObjectMapping | _Leaf = self
        for part in path.split("."):
            if not isinstance(node, _ObjectMapping):
                return None
            child = node.props.get(part)
            if child is None:
                return None
            node = child
        return node if isinstance(node, _Leaf) else None

    def compile(self, inherited: str) -> None:
        """Build `object` (checks a dict) and `value` (checks what a document holds at this field)."""
        self.strict = (self.dynamic or inherited) == "strict"
        for child in self.props.values():
            if isinstance(child, _ObjectMapping):
                child.compile(self.dynamic or inherited)
        props = self.props
        entries = tuple((name, child.value) for name, child in props.items())
        strict = self.strict
        path = self.path
        dotted = self._dotted

        def generic(obj: dict[str, Any]) -> _Problem | None:
            for key, value in obj.items():
                child = props.get(key)
                if child is not None:
                    problem = child.value(value)
                elif "." in key:
                    problem = dotted(key, value)
                elif strict:
                    problem = _Problem("strict", key, path)
                else:
                    continue
                if problem is not None:
                    return problem
            return None

        def mapped_only(obj: dict[str, Any]) -> _Problem | None:
            if "." in "".join(obj):  # a dotted key: the full walk
                return generic(obj)
            get = obj.get
            for name, check in entries:
                value = get(name)
                if value is not None:
                    problem = check(value)
                    if problem is not None:
                        return problem
            return None

        self.object = generic if strict else mapped_only
        check_object = self.object

        def value_check(value: Any) -> _Problem | None:
            if type(value) is dict:
                return check_object(value)
            if value is None:
                return None
            for element in (value if type(value) is list else (value,)):
                if type(element) is dict:
                    problem = check_object(element)
                    if problem is not None:
                        return problem
                elif element is not None:
                    return _Problem("concrete", path.rpartition(".")[2], path)
            return None

        self.value = value_check

    def _dotted(self, key: str, value: Any) -> _Problem | None:
        parts = key.split(".")
        node = self
        for part in parts[:-1]:
            child = node.props.get(part)
            if child is None:
                return _Problem("strict", part, node.path) if node.strict else None
            if isinstance(child, _Leaf):
                return _Problem("not_object", key, child.path, child.type)
            node = child
        last = node.props.get(parts[-1])
        if last is None:
            return _Problem("strict", parts[-1], node.path) if node.strict else None
        return last.value(value)


def _problem_error(problem: _Problem, source: bytes, doc_id: str) -> Cause:
    """The item error Elasticsearch answers for a document that does not fit its mappings."""
    encoded = _dumps(problem.key)
    position = source.find(encoded)
    column = 1 if position < 0 else position + len(encoded) + 2
    if problem.kind == "strict":
        return {"type": "strict_dynamic_mapping_exception",
                "reason": f"[1:{column}] mapping set to strict, dynamic introduction of [{problem.key}] within "
                          f"[{problem.path or '_doc'}] is not allowed"}
    if problem.kind == "not_object":
        return {"type": "document_parsing_exception",
                "reason": f"[1:{column}] Could not dynamically add mapping for field [{problem.key}]. Existing "
                          f"mapping for [{problem.path}] must be of type object but found [{problem.type}]."}
    if problem.kind == "concrete":
        return {"type": "document_parsing_exception",
                "reason": f"[1:{column}] object mapping for [{problem.path}] tried to parse field [{problem.key}] as "
                          "object, but found a concrete value"}
    return {"type": "document_parsing_exception",
            "reason": f"[1:{column}] failed to parse field [{problem.path}] of type [{problem.type}] in document with "
                      f"id '{doc_id}'. Preview of field's value: '{_preview(problem.value)}'",
            "caused_by": problem.cause}


def _mapping_error(message: str) -> EsError:
    return EsError(400, "mapper_parsing_exception", f"Failed to parse mapping: {message}",
                   caused_by={"type": "mapper_parsing_exception", "reason": message})


def _dynamic(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).lower() if not isinstance(value, bool) else ("true" if value else "false")
    if text not in ("true", "false", "strict", "runtime"):
        raise _mapping_error(f"Could not convert [dynamic] to boolean, [{value}] is not a valid value "
                             "(true, false, strict, runtime)")
    return text


def _compile_mapping(mappings: Mapping[str, Any] | None, *, timestamp: bool = False,
                     ignore_malformed: bool = False) -> _ObjectMapping | None:
    """The checks for a `mappings` object (None when it maps nothing and allows anything);
    `timestamp`: a data stream's, where `@timestamp` is a date unless mapped otherwise;
    `ignore_malformed`: the index setting `index.mapping.ignore_malformed`."""
    if not mappings and not timestamp:
        return None
    mappings = mappings or {}
    if not isinstance(mappings, Mapping):
        raise _mapping_error("mappings must be an object")
    root = _ObjectMapping("", _dynamic(mappings.get("dynamic")) or "true")
    properties = mappings.get("properties") or {}
    if not isinstance(properties, Mapping):
        raise _mapping_error("[properties] must be an object")
    _add_properties(root, properties, ignore_malformed)
    if timestamp and "@timestamp" not in root.props:
        root.props["@timestamp"] = _Leaf("@timestamp", "date", {})
    if root.dynamic == "true" and not root.props:
        return None
    root.compile("true")
    return root


def _add_properties(parent: _ObjectMapping, properties: Mapping[str, Any], ignore_malformed: bool = False) -> None:
    for name, spec in properties.items():
        if not isinstance(spec, Mapping):
            raise _mapping_error(f"Expected map for property [fields] on field [{name}] but got a "
                                 f"{type(spec).__name__}")
        parts = name.split(".")
        node = parent
        for part in parts[:-1]:
            child = node.props.get(part)
            if child is None:
                child = node.props[part] = _ObjectMapping(_join(node.path, part), None)
            if not isinstance(child, _ObjectMapping):
                raise _mapping_error(f"can't merge a non object mapping [{child.path}] with an object mapping")
            node = child
        last = parts[-1]
        path = _join(node.path, last)
        type_ = spec.get("type")
        if "properties" in spec or type_ in _OBJECT_TYPES or (type_ is None and "dynamic" in spec):
            existing = node.props.get(last)
            if existing is not None and not isinstance(existing, _ObjectMapping):
                raise _mapping_error(f"can't merge a non object mapping [{path}] with an object mapping")
            obj = existing or _ObjectMapping(path, None)
            obj.dynamic = _dynamic(spec.get("dynamic")) or obj.dynamic
            node.props[last] = obj
            sub = spec.get("properties") or {}
            if not isinstance(sub, Mapping):
                raise _mapping_error(f"[properties] of [{path}] must be an object")
            _add_properties(obj, sub, ignore_malformed)
        elif type_ is None:
            raise _mapping_error(f"No type specified for field [{name}]")
        elif not isinstance(type_, str) or type_ not in _KNOWN_TYPES:
            raise _mapping_error(f"No handler for type [{type_}] declared on field [{name}]")
        else:
            node.props[last] = _Leaf(path, type_, spec, ignore_malformed)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _merge_mappings(base: Mapping[str, Any] | None, override: Mapping[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = dict(base or {})
    for key, value in (override or {}).items():
        current = out.get(key)
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            out[key] = _merge_mappings(current, value)
        else:
            out[key] = value
    return out


def _check_document(mapping: _ObjectMapping, doc: dict[str, Any], source: bytes, doc_id: str) -> Cause | None:
    problem = mapping.object(doc)
    return None if problem is None else _problem_error(problem, source, doc_id)
