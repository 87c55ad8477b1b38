"""An Elasticsearch stand-in that answers `_bulk` (and what a bulk client needs around it) like
Elasticsearch 8.x does on the wire.

The Elasticsearch sink's tests and benchmarks run against it; `tests/testing/test_elasticsearch_clients.py`
proves it against the official Python client and rsyslog's omelasticsearch. Facts:
../shared/reference/protocols.md section 2.

    async with ElasticsearchStandIn(api_keys={"id": "key"}) as es:
        ...PUT es.url + "/_index_template/alerts", POST es.url + "/_bulk"...
        es.faults.fail_requests(429)                    # the next bulk request: whole-request 429
        es.faults.fail_items(429, ids=["evt-3"])        # evt-3 is rejected once, then accepted
        es.faults.fail_items(400, count=2)              # the next two items: document_parsing_exception
        await es.wait_for_documents("logs-siem.alerts-default", 10)
        es.documents("logs-siem.alerts-default"), es.bulk_requests

From synchronous code (the official client): `with serve_in_thread(ElasticsearchStandIn()) as es: ...`.
Or its own process: `python -m siemgate_standins.elasticsearch --port 9200 --api-key id:key --user u:p`
(prints its URL as its first line; SIGTERM/SIGINT stop it). Faults and inspection over HTTP,
without authentication: `GET /_standin/state`, `POST /_standin/faults` (JSON, see `Faults.apply`),
`POST /_standin/reset`.

Endpoints: `GET|HEAD /`; `POST|PUT /_bulk`, `/{target}/_bulk`; `PUT|POST|GET|HEAD|DELETE
/_index_template/{name}` (and `GET /_index_template`); `PUT|GET|DELETE /_data_stream/{name}` (and
`GET /_data_stream`); `PUT|GET|HEAD|DELETE /{index}`; `GET|HEAD|PUT|POST|DELETE /{index}/_doc/{id}`,
`POST /{index}/_doc`, `PUT|POST /{index}/_create/{id}`, `POST /{index}/_update/{id}`; `GET|POST
[/{target}]/_count`, `[/{target}]/_search` (`match_all`, `term`, `terms`, `ids`, `bool`; `size`,
`from`); `GET|POST [/{target}]/_refresh`; `GET /_cluster/health`; `GET /_security/_authenticate`;
`GET /_cat/health` (omelasticsearch's health check). `filter_path` (see `FilterPath`) and
`pretty` work on every JSON answer (not on error bodies, which Elasticsearch does not filter).

What it does like Elasticsearch 8 (and what a client may rely on):
- Every answer carries `X-Elastic-Product: Elasticsearch` (the official client refuses a 2xx
  without it). A request that asks for a compatible version (`Accept: application/vnd.elasticsearch+json;
  compatible-with=N`, as the official clients send) is answered with that media type; N must be the
  stand-in's major version or the one before, else 400 `media_type_header_exception`, exactly as
  an 8.x cluster answers the 9.x client (`version="9.1.0"` for a 9.x cluster). A body whose
  Content-Type is not JSON/NDJSON is answered 406. Answers are gzipped when the client accepts
  gzip and TLS is off (`http.compression`).
- Security on when any api_keys/users are given: `ApiKey base64(id:key)` or `Basic base64(user:pass)`
  on every request (not on `/_standin/*`), else 401 `security_exception` with the three
  `WWW-Authenticate` headers. Without security, `/_security/_authenticate` answers 500 as a
  cluster with security disabled does.
- `_bulk`: the NDJSON rules (final newline, `\\r\\n`, blank lines skipped, a trailing action without
  its source ignored), the action/metadata validation messages, items in request order, `errors`,
  `took`; index/create/update/delete with `_id`, auto ids, versions, `_seq_no`, `if_seq_no` /
  `if_primary_term`, external versions; 409 on `create` of an existing `_id`; 404 `not_found`
  for a missing delete (not an error); data streams (create only, `@timestamp` required, backing
  indices `.ds-<name>-YYYY.MM.DD-000001`); auto-creation of a data stream when the
  highest-priority matching index template has `data_stream`, else of a plain index (with the
  template's mappings, if any). The built-in `logs-*-*`, `metrics-*-*` and `synthetics-*-*`
  data stream templates (priority 100) exist as in a default 8.x cluster unless
  `builtin_templates=False`.
- Mappings (explicit only: a template's `template.mappings`, or `PUT /{index}`): types ip, date
  / date_nanos (strict_date_optional_time, epoch_millis, epoch_second, date, strict_date_time;
  other formats accept any string), long / integer / short / byte / unsigned_long (coerced from
  strings and floats, range-checked), float / double / half_float / scaled_float, keyword /
  text / wildcard / constant_keyword, boolean, object / nested / flattened, in dotted or nested
  form, `dynamic: strict` (-> `strict_dynamic_mapping_exception`), `ignore_malformed`. A value that
  does not fit answers item 400 `document_parsing_exception` ("[1:COL] failed to parse field [F]
  of type [T] in document with id 'ID'. Preview of field's value: 'V'", with `caused_by`). COL is
  approximate.

Choices where Elasticsearch is richer or the reference leaves a gap:
- Unmapped fields are accepted without being mapped dynamically (a later document with another
  type for the same field is not refused as a real cluster would). Scripted updates answer item
  400. Ingest pipelines are not run: `pipeline` is accepted whatever it names. `routing`,
  `timeout`, `wait_for_active_shards`, `_source*` are accepted and ignored. Documents are
  searchable at once, whatever `refresh` says (`refresh=true` adds `forced_refresh` to items).
- Index templates: `composed_of` is stored but not resolved (there are no component templates);
  two templates with overlapping patterns and the same priority are refused (overlap is
  approximated). Only gzip request bodies are decoded (not deflate).
- One node, replicas 0: `_shards` is `{"total":1,"successful":1,"failed":0}`, health green.
- Memory: a stored document costs about its source size plus ~180 bytes; for long benchmarks
  `keep_sources=False` (`--no-keep-sources`) keeps only `_id`s and versions (409s still work).
- An unknown path answers what Elasticsearch answers: a single segment is `/{index}` (e.g. 404
  `index_not_found_exception`), more segments are 400 `{"error":"no handler found for uri [...]
  and method [...]"}`, a known path with another method 405 with `Allow`.
- Injected faults: `drop_connections` and `delay_seconds` apply to every request; `fail_requests`
  to bulk requests (after authentication); `fail_items` to bulk items, after the target resolved.
  A delayed answer is delayed after the request was processed (a client that times out and
  retries a `create` sees 409).
- A body over `max_body_bytes` is refused 413 by the HTTP server before it is read (empty body,
  no product header: Elasticsearch's Netty front end answers the same); a gzip body that
  decompresses to more answers 413 with an empty body too.

Loopback test tooling, not a production server.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import calendar
import collections
import contextlib
import datetime as dt
import ipaddress
import logging
import math
import re
import secrets
import ssl
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, TypeVar
from urllib.parse import urlencode

import orjson

from siemgate_standins.http_server import (
    BadBody,
    BodyTooLarge,
    DropConnection,
    HttpStandIn,
    Request,
    Response,
    run_main,
)

__all__ = [
    "BulkRecord",
    "ElasticsearchStandIn",
    "Faults",
    "FilterPath",
    "add_arguments",
    "main",
    "serve",
    "serve_in_thread",
]

log = logging.getLogger("siemgate_standins.elasticsearch")

_EMPTY: Final[Mapping[str, str]] = MappingProxyType({})
_PRODUCT: Final = ("X-Elastic-Product", "Elasticsearch")
_SHARDS: Final = MappingProxyType({"total": 1, "successful": 1, "failed": 0})
_NOOP_SHARDS: Final = MappingProxyType({"total": 0, "successful": 0, "failed": 0})
_WWW_AUTHENTICATE: Final = ('Basic realm="security", charset="UTF-8"', 'Bearer realm="security"', "ApiKey")
_MISSING: Final = object()
_DEFAULT_DATE_FORMAT: Final = "strict_date_optional_time||epoch_millis"
_States = tuple[tuple[int, int], ...]  # filter_path: (path, position in it) pairs


def _orjson_default(value: object) -> object:
    if isinstance(value, MappingProxyType):
        return dict(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def _dumps(value: Any, option: int = 0) -> bytes:
    return orjson.dumps(value, default=_orjson_default, option=option)


# ---------------------------------------------------------------------------------------------
# Errors


class EsError(Exception):
    """A whole-request error, answered with Elasticsearch's standard error body
    `{"error":{"root_cause":[...],"type":...,"reason":...},"status":N}`."""

    def __init__(self, status: int, type_: str, reason: str | None, *, extra: Mapping[str, Any] | None = None,
                 caused_by: Mapping[str, Any] | None = None, headers: Sequence[tuple[str, str]] = (),
                 flat: bool = False, status_field: bool = True) -> None:
        super().__init__(f"{status} {type_}: {reason}")
        self.status = status
        self.type = type_
        self.reason = reason
        self.extra = dict(extra or {})
        self.caused_by = caused_by
        self.headers = list(headers)
        # A few answers come from Elasticsearch's REST layer, not an exception: `{"error":"...","status":N}`.
        self.flat = flat
        self.status_field = status_field

    def body(self) -> dict[str, Any]:
        if self.flat:
            return {"error": self.reason, **({"status": self.status} if self.status_field else {})}
        cause: dict[str, Any] = {"type": self.type, "reason": self.reason, **self.extra}
        error: dict[str, Any] = {"root_cause": [dict(cause)], **cause}
        if self.caused_by is not None:
            error["caused_by"] = dict(self.caused_by)
        return {"error": error, "status": self.status}


def _index_not_found(name: str) -> EsError:
    return EsError(404, "index_not_found_exception", f"no such index [{name}]",
                   extra={"resource.type": "index_or_alias", "resource.id": name, "index_uuid": "_na_",
                          "index": name})


def _bad(reason: str, type_: str = "illegal_argument_exception") -> EsError:
    return EsError(400, type_, reason)


@dataclass(slots=True)
class _Answer:
    status: int
    body: Any = None  # a JSON value, `_Raw`, or None (no body)
    headers: list[tuple[str, str]] = field(default_factory=list)
    error: bool = False  # an error body: Elasticsearch does not apply filter_path to those


@dataclass(frozen=True, slots=True)
class _Raw:
    data: bytes
    content_type: str


# ---------------------------------------------------------------------------------------------
# filter_path


class FilterPath:
    """Elasticsearch's `filter_path` as a generic JSON filter.

    `expression` is the comma list of the query parameter (or a sequence of paths). A path is
    dot-separated field names; `*` in a name matches any characters, a `**` name any number of
    levels (zero included); arrays are traversed without consuming a name. With inclusive paths
    only the matching fields (and the objects leading to them) are kept: objects and arrays
    left empty are dropped, and nothing matching gives `{}`. A path starting with `-` removes
    what it matches (its parents stay). Exclusions apply first, then inclusions.

    Fast on repetitive JSON (a bulk response): the set of partial matches at a level is an
    interned integer, and what to do with an object is planned once per (state, key tuple).
    """

    _ANY_DEPTH: Final = "**"
    _KEEP: Final = -1  # in a plan: the key completes a path (include: keep it whole; exclude: drop it)

    def __init__(self, expression: str | Sequence[str]) -> None:
        paths = expression.split(",") if isinstance(expression, str) else list(expression)
        includes: list[tuple[str | re.Pattern[str], ...]] = []
        excludes: list[tuple[str | re.Pattern[str], ...]] = []
        for raw in paths:
            path = raw.strip()
            target = excludes if path.startswith("-") else includes
            path = path.lstrip("-")
            if path:
                target.append(tuple(self._segment(name) for name in path.split(".")))
        self._patterns = {True: tuple(includes), False: tuple(excludes)}
        # State sets (tuples of (path, position)) interned as ints; 0 is the empty set.
        self._sets: list[_States] = [()]
        self._ids: dict[tuple[bool, _States], int] = {}
        self._plans: dict[tuple[bool, int, tuple[str, ...]], tuple[tuple[str, int], ...]] = {}
        self._starts = {inclusive: self._start(inclusive, len(ps))
                        for inclusive, ps in self._patterns.items()}

    def _start(self, inclusive: bool, paths: int) -> int:
        return self._intern(inclusive, self._closure(inclusive, {(i, 0) for i in range(paths)})[1])

    @classmethod
    def _segment(cls, name: str) -> str | re.Pattern[str]:
        if name == cls._ANY_DEPTH or "*" not in name:
            return name
        return re.compile(".*".join(re.escape(part) for part in name.split("*")), re.DOTALL)

    def apply(self, value: Any) -> Any:
        """The filtered value (a new object; `value` is not modified)."""
        if self._patterns[False]:
            value = self._exclude(value, self._starts[False])
        if self._patterns[True]:
            kept = self._include(value, self._starts[True])
            return {} if kept is _MISSING else kept
        return value

    def _intern(self, inclusive: bool, states: _States) -> int:
        if not states:
            return 0
        key = (inclusive, states)
        found = self._ids.get(key)
        if found is None:
            found = self._ids[key] = len(self._sets)
            self._sets.append(states)
        return found

    def _closure(self, inclusive: bool, states: set[tuple[int, int]]) -> tuple[bool, _States]:
        """Add the states a `**` reaches by matching zero levels; True when a path is complete."""
        patterns = self._patterns[inclusive]
        complete = False
        todo = list(states)
        out: set[tuple[int, int]] = set()
        while todo:
            i, pos = todo.pop()
            segments = patterns[i]
            if pos == len(segments):
                complete = True
                continue
            if (i, pos) in out:
                continue
            out.add((i, pos))
            if segments[pos] == self._ANY_DEPTH:
                todo.append((i, pos + 1))
        return complete, tuple(sorted(out))

    def _step(self, inclusive: bool, state: int, key: str) -> int:
        """`_KEEP` when `key` completes a path, else the state for its children (0: nothing left)."""
        patterns = self._patterns[inclusive]
        reached: set[tuple[int, int]] = set()
        for i, pos in self._sets[state]:
            segment = patterns[i][pos]
            if segment == self._ANY_DEPTH:
                reached.add((i, pos))  # `**` takes this level and stays
            elif segment == key if isinstance(segment, str) else segment.fullmatch(key):
                reached.add((i, pos + 1))
        complete, following = self._closure(inclusive, reached)
        return self._KEEP if complete else self._intern(inclusive, following)

    def _plan(self, inclusive: bool, state: int, keys: tuple[str, ...]) -> tuple[tuple[str, int], ...]:
        cache_key = (inclusive, state, keys)
        plan = self._plans.get(cache_key)
        if plan is None:
            steps = ((key, self._step(inclusive, state, key)) for key in keys)
            # include: only the keys that matter; exclude: every key, in order (0: keep as is)
            plan = tuple(step for step in steps if step[1] != 0 or not inclusive)
            if len(self._plans) > 20_000:
                self._plans.clear()
            self._plans[cache_key] = plan
        return plan

    def _include(self, value: Any, state: int) -> Any:
        kind = type(value)
        if kind is dict:
            out: dict[str, Any] = {}
            for key, following in self._plan(True, state, tuple(value)):
                child = value[key]
                if following == self._KEEP:
                    out[key] = child
                elif type(child) is dict or type(child) is list:
                    kept = self._include(child, following)
                    if kept is not _MISSING:
                        out[key] = kept
            return out if out else _MISSING
        if kind is list:
            items = []
            for child in value:
                if type(child) is dict or type(child) is list:
                    kept = self._include(child, state)
                    if kept is not _MISSING:
                        items.append(kept)
            return items if items else _MISSING
        return _MISSING

    def _exclude(self, value: Any, state: int) -> Any:
        kind = type(value)
        if kind is dict:
            out: dict[str, Any] = {}
            for key, following in self._plan(False, state, tuple(value)):
                child = value[key]
                if following == self._KEEP:
                    continue
                if following and (type(child) is dict or type(child) is list):
                    out[key] = self._exclude(child, following)
                else:
                    out[key] = child
            return out
        if kind is list:
            return [self._exclude(child, state) if type(child) is dict or type(child) is list else child
                    for child in value]
        return value


# ---------------------------------------------------------------------------------------------
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
        try:
            ipaddress.ip_address(value)
            return None
        except ValueError:
            pass
    if isinstance(value, dict):
        return _object_cause()
    return {"type": "illegal_argument_exception", "reason": f"'{_preview(value)}' is not an IP string literal."}


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


class _Leaf:
    __slots__ = ("check", "ignore_malformed", "name", "path", "type", "value")

    def __init__(self, path: str, type_: str, spec: Mapping[str, Any]) -> None:
        self.path = path
        self.name = path.rpartition(".")[2]
        self.type = type_
        self.ignore_malformed = spec.get("ignore_malformed") in (True, "true")
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


def _compile_mapping(mappings: Mapping[str, Any] | None, *, timestamp: bool = False) -> _ObjectMapping | None:
    """The checks for a `mappings` object (None when it maps nothing and allows anything);
    `timestamp`: a data stream's, where `@timestamp` is a date unless mapped otherwise."""
    if not mappings and not timestamp:
        return None
    mappings = mappings or {}
    if not isinstance(mappings, Mapping):
        raise _mapping_error("mappings must be an object")
    root = _ObjectMapping("", _dynamic(mappings.get("dynamic")) or "true")
    properties = mappings.get("properties") or {}
    if not isinstance(properties, Mapping):
        raise _mapping_error("[properties] must be an object")
    _add_properties(root, properties)
    if timestamp and "@timestamp" not in root.props:
        root.props["@timestamp"] = _Leaf("@timestamp", "date", {})
    if root.dynamic == "true" and not root.props:
        return None
    root.compile("true")
    return root


def _add_properties(parent: _ObjectMapping, properties: Mapping[str, Any]) -> None:
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
            _add_properties(obj, sub)
        elif type_ is None:
            raise _mapping_error(f"No type specified for field [{name}]")
        elif not isinstance(type_, str) or type_ not in _KNOWN_TYPES:
            raise _mapping_error(f"No handler for type [{type_}] declared on field [{name}]")
        else:
            node.props[last] = _Leaf(path, type_, spec)


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


# ---------------------------------------------------------------------------------------------
# Indices, data streams, templates

_INVALID_NAME_CHARS: Final = ('\\', '/', '*', '?', '"', '<', '>', '|', ' ', ',', '#', ':')


def _invalid_index_name(name: str) -> str | None:
    if not name:
        return "must not be empty"
    if name != name.lower():
        return "must be lowercase"
    if any(char in name for char in _INVALID_NAME_CHARS):
        return "must not contain the following characters [" + ", ".join(f"'{c}'" for c in _INVALID_NAME_CHARS) + "]"
    if name[0] in "_-+":
        return "must not start with '_', '-', or '+'"
    if name in (".", ".."):
        return "must not be '.' or '..'"
    if len(name.encode()) > 255:
        return "index name is too long, (" + str(len(name.encode())) + " > 255)"
    return None


def _uuid() -> str:
    return secrets.token_urlsafe(16)[:22]


class _Index:
    __slots__ = ("created", "data_stream", "docs", "mapping", "mappings_raw", "name", "seq_no", "settings", "uuid")

    def __init__(self, name: str, mappings_raw: Mapping[str, Any] | None, mapping: _ObjectMapping | None,
                 settings: Mapping[str, Any] | None = None, data_stream: str | None = None) -> None:
        self.name = name
        self.uuid = _uuid()
        # _id -> (version, seq_no, source line as received, or None when sources are not kept)
        self.docs: dict[str, tuple[int, int, bytes | None]] = {}
        self.seq_no = -1
        self.mapping = mapping
        self.mappings_raw = dict(mappings_raw or {})
        self.settings = dict(settings or {})
        self.data_stream = data_stream
        self.created = time.time()


class _DataStream:
    __slots__ = ("created", "indices", "name", "template")

    def __init__(self, name: str, template: str, first: _Index) -> None:
        self.name = name
        self.template = template
        self.indices = [first]
        self.created = time.time()


class _Template:
    __slots__ = ("body", "data_stream", "mapping", "mappings_raw", "name", "patterns", "priority", "regexes")

    def __init__(self, name: str, body: dict[str, Any]) -> None:
        self.name = name
        self.body = body
        patterns = body.get("index_patterns")
        self.patterns: tuple[str, ...] = (patterns,) if isinstance(patterns, str) else tuple(patterns or ())
        self.regexes = tuple(re.compile(".*".join(re.escape(p) for p in pattern.split("*")))
                             for pattern in self.patterns)
        self.priority = int(body.get("priority") or 0)
        self.data_stream = isinstance(body.get("data_stream"), Mapping)
        template = body.get("template") or {}
        self.mappings_raw: dict[str, Any] = dict(template.get("mappings") or {})
        self.mapping = _compile_mapping(self.mappings_raw)

    def matches(self, name: str) -> bool:
        return any(regex.fullmatch(name) for regex in self.regexes)


_TEMPLATE_KEYS: Final = frozenset({"index_patterns", "template", "composed_of", "priority", "version", "_meta",
                                   "data_stream", "allow_auto_create", "ignore_missing_component_templates",
                                   "deprecated"})
_TEMPLATE_TEMPLATE_KEYS: Final = frozenset({"settings", "mappings", "aliases", "lifecycle", "data_stream_options"})


def _builtin_templates() -> dict[str, dict[str, Any]]:
    """The data stream templates a default 8.x cluster installs (mappings reduced to @timestamp)."""
    out = {}
    for name in ("logs", "metrics", "synthetics"):
        out[name] = {
            "index_patterns": [f"{name}-*-*"],
            "composed_of": [f"{name}@mappings", f"{name}@settings", f"{name}@custom", "ecs@mappings"],
            "priority": 100,
            "version": 1,
            "_meta": {"description": f"default {name} template installed by x-pack", "managed": True},
            "data_stream": {"hidden": False, "allow_custom_routing": False},
            "allow_auto_create": True,
            "ignore_missing_component_templates": [f"{name}@custom"],
        }
    return out


# ---------------------------------------------------------------------------------------------
# Faults and records


@dataclass(slots=True)
class BulkRecord:
    """One bulk request as the stand-in saw it. `body_bytes`: as received (gzip'd or not). `status` 0:
    the connection was dropped without an answer. `item_statuses`: one per item, in order, when the
    items were processed (also when the answer was then dropped with `after_indexing`)."""

    path: str
    query: dict[str, list[str]]
    gzip: bool
    body_bytes: int
    status: int
    item_statuses: list[int]


@dataclass(slots=True)
class _Failure:
    status: int
    error_type: str | None
    reason: str | None
    remaining: int = 1

    def snapshot(self) -> dict[str, Any]:
        return {"status": self.status, "remaining": self.remaining, "error_type": self.error_type,
                "reason": self.reason}


class Faults:
    """What the stand-in does wrong on purpose. In-process: call the methods / set the attributes;
    over HTTP: `POST /_standin/faults` with the JSON `apply` takes."""

    def __init__(self) -> None:
        self.delay_seconds: float = 0.0
        self.reject_auth: bool = False
        self._requests: collections.deque[_Failure] = collections.deque()
        self._items: collections.deque[_Failure] = collections.deque()
        self._by_id: dict[str, collections.deque[_Failure]] = {}
        self._drops = 0
        self._drops_after = 0

    def clear(self) -> None:
        self.delay_seconds = 0.0
        self.reject_auth = False
        self._requests.clear()
        self._items.clear()
        self._by_id.clear()
        self._drops = 0
        self._drops_after = 0

    def fail_requests(self, status: int, count: int = 1, *, error_type: str | None = None,
                      reason: str | None = None) -> None:
        """The next `count` bulk requests are answered `status` with Elasticsearch's error body for it
        (429 `es_rejected_execution_exception`, 401/403 `security_exception`, 503
        `cluster_block_exception`, 413 an empty body, ...; `error_type`/`reason` override it)."""
        _check_status(status)
        for _ in range(_count(count)):
            self._requests.append(_Failure(status, error_type, reason))

    def fail_items(self, status: int, count: int = 1, ids: Sequence[str] | None = None, error_type: str | None = None,
                   reason: str | None = None) -> None:
        """The next `count` bulk items (any), or each item whose `_id` is in `ids` (`count` times each,
        then it is accepted), are answered `status` with the usual error for it (429
        `es_rejected_execution_exception`, 400 `document_parsing_exception`, 503
        `unavailable_shards_exception`, 409 `version_conflict_engine_exception`, 403
        `cluster_block_exception`, 404 `index_not_found_exception`; `error_type`/`reason` override it)."""
        _check_status(status)
        times = _count(count)
        if ids is None:
            self._items.append(_Failure(status, error_type, reason, times))
            return
        if isinstance(ids, str):
            raise TypeError("ids: a sequence of _id strings, not one string")
        for doc_id in ids:
            self._by_id.setdefault(str(doc_id), collections.deque()).append(_Failure(status, error_type, reason, times))

    def drop_connections(self, count: int = 1, *, after_indexing: bool = False) -> None:
        """The next `count` requests: the connection is closed without an answer, before the request is
        processed or, with `after_indexing`, after (the documents are stored, the client never knows)."""
        if after_indexing:
            self._drops_after += _count(count)
        else:
            self._drops += _count(count)

    def pending(self) -> dict[str, Any]:
        return {
            "fail_requests": [failure.snapshot() for failure in self._requests],
            "fail_items": [failure.snapshot() for failure in self._items],
            "fail_items_by_id": {doc_id: [failure.snapshot() for failure in queue]
                                 for doc_id, queue in self._by_id.items() if queue},
            "delay_seconds": self.delay_seconds,
            "drop_connections": self._drops,
            "drop_connections_after_indexing": self._drops_after,
            "reject_auth": self.reject_auth,
        }

    def apply(self, spec: Mapping[str, Any]) -> None:
        """The HTTP form, a JSON object:
        `{"clear": true, "fail_requests": {"status": 429, "count": 2}, "fail_items": [{"status": 429,
        "ids": ["a"], "count": 1}], "delay_seconds": 0.5, "drop_connections": 1 | {"count": 1,
        "after_indexing": true}, "reject_auth": false}`; `fail_requests`/`fail_items` take an object or
        a list of them, with the keyword arguments of the methods. `clear` applies first. Raises
        ValueError (answered 400) on anything else."""
        if not isinstance(spec, Mapping):
            raise ValueError("the faults must be a JSON object")
        unknown = set(spec) - {"clear", "fail_requests", "fail_items", "delay_seconds", "drop_connections",
                               "reject_auth"}
        if unknown:
            raise ValueError(f"unknown fault(s): {sorted(unknown)}")
        if spec.get("clear"):
            self.clear()
        for entry in _entries("fail_requests", spec.get("fail_requests")):
            _only(entry, {"status", "count", "error_type", "reason"}, "fail_requests")
            self.fail_requests(_int(entry.get("status")), _int(entry.get("count", 1)),
                               error_type=_opt_str(entry.get("error_type")), reason=_opt_str(entry.get("reason")))
        for entry in _entries("fail_items", spec.get("fail_items")):
            _only(entry, {"status", "count", "ids", "error_type", "reason"}, "fail_items")
            ids = entry.get("ids")
            if ids is not None and (not isinstance(ids, list) or not all(isinstance(i, str) for i in ids)):
                raise ValueError("fail_items.ids: a list of strings")
            self.fail_items(_int(entry.get("status")), _int(entry.get("count", 1)), ids,
                            _opt_str(entry.get("error_type")), _opt_str(entry.get("reason")))
        if "delay_seconds" in spec:
            delay = spec["delay_seconds"]
            if isinstance(delay, bool) or not isinstance(delay, int | float) or delay < 0:
                raise ValueError("delay_seconds: a number >= 0")
            self.delay_seconds = float(delay)
        drops = spec.get("drop_connections")
        if drops is not None:
            if isinstance(drops, Mapping):
                _only(drops, {"count", "after_indexing"}, "drop_connections")
                self.drop_connections(_int(drops.get("count", 1)), after_indexing=bool(drops.get("after_indexing")))
            else:
                self.drop_connections(_int(drops))
        if "reject_auth" in spec:
            if not isinstance(spec["reject_auth"], bool):
                raise ValueError("reject_auth: true or false")
            self.reject_auth = spec["reject_auth"]

    # -- used by the stand-in

    def _take_request(self) -> _Failure | None:
        return self._requests.popleft() if self._requests else None

    @property
    def _items_pending(self) -> bool:
        return bool(self._items) or bool(self._by_id)

    def _take_item(self, doc_id: str | None) -> _Failure | None:
        if doc_id is not None and self._by_id:
            queue = self._by_id.get(doc_id)
            if queue:
                return self._consume(queue, lambda: self._by_id.pop(doc_id, None))
        if self._items:
            return self._consume(self._items, lambda: None)
        return None

    @staticmethod
    def _consume(queue: collections.deque[_Failure], emptied: Callable[[], object]) -> _Failure:
        failure = queue[0]
        failure.remaining -= 1
        if failure.remaining <= 0:
            queue.popleft()
            if not queue:
                emptied()
        return failure

    def _take_drop(self, after: bool) -> bool:
        if after:
            if self._drops_after > 0:
                self._drops_after -= 1
                return True
        elif self._drops > 0:
            self._drops -= 1
            return True
        return False


def _check_status(status: int) -> None:
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise ValueError(f"status: an HTTP status code, not {status!r}")


def _count(count: int) -> int:
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"count: an integer >= 1, not {count!r}")
    return count


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an integer, not {value!r}")
    return value


def _opt_str(value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ValueError(f"expected a string, not {value!r}")
    return value


def _entries(name: str, value: Any) -> list[Mapping[str, Any]]:
    if value is None:
        return []
    entries = value if isinstance(value, list) else [value]
    if not all(isinstance(entry, Mapping) for entry in entries):
        raise ValueError(f"{name}: an object or a list of objects")
    return entries


def _only(entry: Mapping[str, Any], allowed: set[str], name: str) -> None:
    unknown = set(entry) - allowed
    if unknown:
        raise ValueError(f"{name}: unknown key(s) {sorted(unknown)}")


_ITEM_FAULTS: Final[dict[int, tuple[str, str, bool]]] = {
    # status: (type, reason, carries the index fields)
    400: ("document_parsing_exception", "[1:2] failed to parse: injected by the stand-in", False),
    403: ("cluster_block_exception", "index [{index}] blocked by: [FORBIDDEN/8/index write (api)];", False),
    404: ("index_not_found_exception", "no such index [{index}]", True),
    409: ("version_conflict_engine_exception",
          "[{id}]: version conflict, document already exists (current version [1])", True),
    429: ("es_rejected_execution_exception",
          "rejected execution of org.elasticsearch.action.support.replication.TransportWriteAction$1 on "
          "EsThreadPoolExecutor[name = standin/write, queue capacity = 10000, "
          "org.elasticsearch.common.util.concurrent.EsThreadPoolExecutor@1[Running, pool size = 2, "
          "active threads = 2, queued tasks = 10000, completed tasks = 0]]", False),
    500: ("exception", "injected by the stand-in", False),
    503: ("unavailable_shards_exception",
          "[{index}][0] primary shard is not active Timeout: [1m], request: [BulkShardRequest [[{index}][0]] "
          "containing [1] requests]", True),
}

_REQUEST_FAULTS: Final[dict[int, tuple[str, str]]] = {
    400: ("illegal_argument_exception", "injected by the stand-in"),
    404: ("index_not_found_exception", "no such index [_all]"),
    429: ("es_rejected_execution_exception",
          "rejected execution of coordinating operation [coordinating_and_primary_bytes=0, replica_bytes=0, "
          "all_bytes=0, coordinating_operation_bytes={size}, max_coordinating_and_primary_bytes=53687091]"),
    500: ("exception", "injected by the stand-in"),
    503: ("cluster_block_exception", "blocked by: [SERVICE_UNAVAILABLE/1/state not recovered / initialized];"),
}


# ---------------------------------------------------------------------------------------------
# Requests: media types, parameters

_JSON_MEDIA: Final = frozenset({"application/json", "application/x-ndjson"})
_VND_MEDIA: Final = frozenset({"application/vnd.elasticsearch+json", "application/vnd.elasticsearch+x-ndjson"})
_COMMON_PARAMS: Final = frozenset({"pretty", "human", "error_trace", "filter_path"})
_BULK_PARAMS: Final = _COMMON_PARAMS | {
    "refresh", "pipeline", "routing", "timeout", "wait_for_active_shards", "require_alias", "require_data_stream",
    "_source", "_source_includes", "_source_excludes", "list_executed_pipelines", "include_source_on_error", "type",
}
_ACTIONS: Final = frozenset({"index", "create", "update", "delete"})
_META_KEYS: Final = frozenset({"_index", "_id", "routing", "op_type", "version", "version_type", "if_seq_no",
                               "if_primary_term", "retry_on_conflict", "pipeline", "_source", "require_alias",
                               "require_data_stream", "dynamic_templates", "list_executed_pipelines"})
_UPDATE_KEYS: Final = frozenset({"doc", "upsert", "doc_as_upsert", "script", "scripted_upsert", "detect_noop",
                                 "_source", "lang", "params"})


def _media_version(value: str, header: str) -> tuple[str, int | None]:
    """(media type, compatible-with version) of a Content-Type / Accept value (the first of a list
    that asks for a version, else the first)."""
    chosen: tuple[str, int | None] | None = None
    for part in value.split(","):
        media, _, params = part.partition(";")
        media = media.strip().lower()
        version: int | None = None
        for param in params.split(";"):
            key, _, raw = param.partition("=")
            if key.strip().lower() == "compatible-with":
                raw = raw.strip()
                if not raw.isdigit():
                    raise _media_error(f"{header} version must be a number, but found {raw}. {header}={value}")
                version = int(raw)
        if version is not None:
            return media, version
        if chosen is None:
            chosen = (media, None)
    return chosen or ("", None)


def _media_error(cause: str) -> EsError:
    return EsError(400, "media_type_header_exception", "Invalid media-type value on headers [Accept, Content-Type]",
                   caused_by={"type": "status_exception", "reason": cause})


def _uri(request: Request) -> str:
    query = urlencode([(key, value) for key, values in request.query.items() for value in values])
    return request.path + (f"?{query}" if query else "")


def _truthy(value: str | None) -> bool:
    return value is not None and value.lower() != "false"


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is True:
        return "true"
    if value is False:
        return "false"
    return str(value)


def _token(value: Any) -> str:
    if isinstance(value, dict):
        return "START_OBJECT"
    if isinstance(value, list):
        return "START_ARRAY"
    if isinstance(value, str):
        return "VALUE_STRING"
    if isinstance(value, bool):
        return "VALUE_TRUE" if value else "VALUE_FALSE"
    if value is None:
        return "VALUE_NULL"
    return "VALUE_NUMBER"


@dataclass(slots=True)
class _Op:
    action: str  # index, create, update, delete
    meta: dict[str, Any]
    source: bytes | None
    line: int
    index: str
    doc_id: str | None
    update: dict[str, Any] | None = None


@dataclass(slots=True)
class _Principal:
    username: str
    api_key_id: str | None = None


# ---------------------------------------------------------------------------------------------
# The stand-in


class ElasticsearchStandIn(HttpStandIn):
    """An Elasticsearch 8.x single node as a bulk client sees it (see the module docstring)."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, api_keys: Mapping[str, str] = _EMPTY,
                 users: Mapping[str, str] = _EMPTY, ssl_context: ssl.SSLContext | None = None,
                 max_body_bytes: int = 100 * 1024 * 1024, version: str = "8.15.0", keep_sources: bool = True,
                 builtin_templates: bool = True) -> None:
        super().__init__(host=host, port=port, ssl_context=ssl_context, max_body_bytes=max_body_bytes)
        self.version = version
        try:
            self._major = int(version.split(".")[0])
        except ValueError as exc:
            raise ValueError(f"version: like 8.15.0, not {version!r}") from exc
        self.api_keys = dict(api_keys)
        self.users = dict(users)
        self.keep_sources = keep_sources
        self.builtin_templates = builtin_templates
        self.faults = Faults()
        self.cluster_uuid = _uuid()
        self._credentials: dict[str, _Principal] = {}
        for key_id, key in self.api_keys.items():
            encoded = base64.b64encode(f"{key_id}:{key}".encode()).decode()
            self._credentials[f"ApiKey {encoded}"] = _Principal(f"api-key-{key_id}", key_id)
        for user, password in self.users.items():
            encoded = base64.b64encode(f"{user}:{password}".encode()).decode()
            self._credentials[f"Basic {encoded}"] = _Principal(user)
        self._filters: dict[str, FilterPath] = {}
        self._reset_state()

    @property
    def security(self) -> bool:
        return bool(self.api_keys or self.users)

    def _reset_state(self) -> None:
        self._indices: dict[str, _Index] = {}
        self._data_streams: dict[str, _DataStream] = {}
        self._templates: dict[str, _Template] = {}
        if self.builtin_templates:
            for name, body in _builtin_templates().items():
                self._templates[name] = _Template(name, body)
        self.bulk_requests: list[BulkRecord] = []
        self.request_count = 0
        self._item_statuses: collections.Counter[int] = collections.Counter()
        self._changed = asyncio.Event() if self._has_loop() else None

    @staticmethod
    def _has_loop() -> bool:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return False
        return True

    def reset(self) -> None:
        """Forget documents, indices, data streams, user templates, records, and clear the faults."""
        self.faults.clear()
        self._reset_state()

    # -- inspection

    def documents(self, target: str) -> dict[str, dict[str, Any]]:
        """The documents of a data stream (all its backing indices) or an index: `_id` -> source
        (`{}` for each when sources are not kept). Unknown target: `{}`."""
        indices: list[_Index]
        if target in self._data_streams:
            indices = list(self._data_streams[target].indices)
        elif target in self._indices:
            indices = [self._indices[target]]
        else:
            return {}
        out: dict[str, dict[str, Any]] = {}
        for index in indices:
            for doc_id, (_version, _seq, source) in index.docs.copy().items():
                out[doc_id] = orjson.loads(source) if source is not None else {}
        return out

    def all_documents(self) -> dict[str, dict[str, dict[str, Any]]]:
        """`documents(target)` for every data stream and every index that is not a backing index."""
        targets = list(self._data_streams) + [name for name, index in self._indices.copy().items()
                                              if index.data_stream is None]
        return {target: self.documents(target) for target in targets}

    def counts(self) -> dict[str, int]:
        """Documents per target (data streams and indices that are not backing indices)."""
        out = {name: sum(len(index.docs) for index in ds.indices) for name, ds in self._data_streams.copy().items()}
        out.update({name: len(index.docs) for name, index in self._indices.copy().items() if index.data_stream is None})
        return out

    @property
    def index_templates(self) -> dict[str, dict[str, Any]]:
        """Index templates by name, bodies as stored (the built-in ones included)."""
        return {name: template.body for name, template in self._templates.copy().items()}

    @property
    def data_streams(self) -> dict[str, dict[str, Any]]:
        return {name: self._data_stream_summary(ds) for name, ds in self._data_streams.copy().items()}

    @property
    def indices(self) -> dict[str, dict[str, Any]]:
        return {name: {"uuid": index.uuid, "data_stream": index.data_stream, "docs": len(index.docs),
                       "mappings": index.mappings_raw}
                for name, index in self._indices.copy().items()}

    @property
    def item_statuses(self) -> dict[int, int]:
        """How many bulk items were answered with each status, since the start or `reset`."""
        return dict(self._item_statuses)

    def state(self) -> dict[str, Any]:
        """What `GET /_standin/state` answers."""
        counts = self.counts()
        return {
            "version": self.version,
            "targets": counts,
            "documents": sum(counts.values()),
            "requests": self.request_count,
            "bulk_requests": len(self.bulk_requests),
            "item_statuses": {str(status): count for status, count in sorted(self._item_statuses.items())},
            "index_templates": sorted(self._templates),
            "data_streams": self.data_streams,
            "faults": self.faults.pending(),
        }

    async def wait_for_documents(self, target: str, count: int, timeout: float = 10.0) -> dict[str, dict[str, Any]]:
        """The documents of `target` once there are at least `count` (fails after `timeout` seconds
        with what there is)."""
        deadline = time.monotonic() + timeout
        while True:
            total = self.counts().get(target, 0)
            if total >= count:
                return self.documents(target)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"expected {count} documents in {target!r}, got {total}: {self.counts()}")
            if self._changed is None:
                self._changed = asyncio.Event()
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.5))

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()

    # -- requests

    async def handle(self, request: Request) -> Response:
        if request.path.startswith("/_standin/"):
            return self._control(request)
        self.request_count += 1
        bulk = request.path == "/_bulk" or request.path.endswith("/_bulk")
        if self.faults._take_drop(after=False):
            if bulk:
                self._record(request, 0, [])
            raise DropConnection
        compat: int | None = None
        records = len(self.bulk_requests)
        try:
            compat = self._check_media(request)
            principal = self._authenticate(request)
            answer = self._route(request, principal, bulk)
        except EsError as exc:
            answer = _Answer(exc.status, exc.body(), exc.headers, error=True)
            if bulk and len(self.bulk_requests) == records:  # refused before `_bulk` (media type, auth)
                self._record(request, exc.status, [])
        # Routing is synchronous: a record added since `records` is this request's.
        record = self.bulk_requests[records] if len(self.bulk_requests) > records else None
        if self.faults.delay_seconds > 0:
            await asyncio.sleep(self.faults.delay_seconds)
        if self.faults._take_drop(after=True):
            if record is not None:
                record.status = 0
            raise DropConnection
        return self._render(request, answer, compat)

    def _record(self, request: Request, status: int, item_statuses: list[int]) -> None:
        self.bulk_requests.append(BulkRecord(request.path, {k: list(v) for k, v in request.query.items()},
                                             request.gzipped, len(request.body), status, item_statuses))

    def _check_media(self, request: Request) -> int | None:
        """The compatible-with version asked for (None: plain JSON). Raises 400/406 like Elasticsearch."""
        accept_header = request.headers.get("accept")
        accept_version = None
        if accept_header:
            _media, accept_version = _media_version(accept_header, "Accept")
        content_header = request.headers.get("content-type")
        content_version = None
        has_body = bool(request.body)
        if has_body:
            if not content_header:
                raise _flat_error(406, "Content-Type header is missing")
            media, content_version = _media_version(content_header, "Content-Type")
            if media not in _JSON_MEDIA and media not in _VND_MEDIA:
                raise _flat_error(406, f"Content-Type header [{content_header}] is not supported")
        allowed = (self._major, self._major - 1)
        if accept_version is not None and accept_version not in allowed:
            raise _media_error(f"Accept version must be either version {allowed[0]} or {allowed[1]}, but found "
                               f"{accept_version}. Accept={accept_header}")
        if content_version is not None and content_version not in allowed:
            raise _media_error(f"Content-Type version must be either version {allowed[0]} or {allowed[1]}, but found "
                               f"{content_version}. Content-Type={content_header}")
        asked = accept_version is not None or content_version is not None
        if has_body and asked and accept_version != content_version:
            raise _media_error("A compatible version is required on both Content-Type and Accept headers if either one "
                               "has requested a compatible version and the compatible versions must match. "
                               f"Accept={accept_header}, Content-Type={content_header}")
        return accept_version

    def _authenticate(self, request: Request) -> _Principal | None:
        if not self.security:
            if self.faults.reject_auth:
                raise self._unauthenticated(request, request.headers.get("authorization"))
            return None
        header = request.headers.get("authorization")
        principal = self._credentials.get(header) if header else None
        if principal is None or self.faults.reject_auth:
            raise self._unauthenticated(request, header)
        return principal

    def _unauthenticated(self, request: Request, header: str | None) -> EsError:
        headers = [("WWW-Authenticate", value) for value in _WWW_AUTHENTICATE]
        extra: dict[str, Any] = {"header": {"WWW-Authenticate": list(_WWW_AUTHENTICATE)}}
        uri = _uri(request)
        if not header:
            return EsError(401, "security_exception", f"missing authentication credentials for REST request [{uri}]",
                           extra=extra, headers=headers)
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() == "basic":
            try:
                user = base64.b64decode(credentials.strip(), validate=True).decode().partition(":")[0]
            except (binascii.Error, UnicodeDecodeError):
                user = ""
            if user:
                return EsError(401, "security_exception",
                               f"unable to authenticate user [{user}] for REST request [{uri}]",
                               extra=extra, headers=headers)
        detail = "unable to authenticate with provided credentials and anonymous access is not allowed for this request"
        if scheme.lower() == "apikey":
            try:
                key_id = base64.b64decode(credentials.strip(), validate=True).decode().partition(":")[0]
            except (binascii.Error, UnicodeDecodeError):
                key_id = ""
            extra = {"additional_unsuccessful_credentials": f"API key: unable to authenticate API key [{key_id}]",
                     **extra}
        return EsError(401, "security_exception", detail, extra=extra, headers=headers)

    def _forbidden(self, principal: _Principal | None, target: str) -> EsError:
        if principal is not None and principal.api_key_id is not None:
            who = f"API key id [{principal.api_key_id}] of user [{principal.username}]"
        else:
            who = f"user [{principal.username if principal else 'anonymous'}]"
        return EsError(403, "security_exception",
                       f"action [indices:data/write/bulk[s]] is unauthorized for {who} with effective roles [] on "
                       f"indices [{target}], this action is granted by the index privileges "
                       "[create_doc,create,index,write,all]")

    def _render(self, request: Request, answer: _Answer, compat: int | None) -> Response:
        headers = [_PRODUCT, *answer.headers]
        body = answer.body
        if body is None or request.method == "HEAD":
            if request.method == "HEAD" and body is not None:
                headers.append(("content-type", self._json_type(compat)))
            return Response(answer.status, b"", headers)
        if isinstance(body, _Raw):
            data, content_type = body.data, body.content_type
        else:
            expression = request.param("filter_path")
            if expression and not answer.error:
                body = self._filter(expression).apply(body)
            pretty = _truthy(request.param("pretty"))
            data = _dumps(body, orjson.OPT_INDENT_2) + b"\n" if pretty else _dumps(body)
            content_type = self._json_type(compat)
        headers.append(("content-type", content_type))
        if data and self.ssl_context is None and "gzip" in request.headers.get("accept-encoding", "").lower():
            compressor = zlib.compressobj(3, zlib.DEFLATED, 31)
            data = compressor.compress(data) + compressor.flush()
            headers.append(("content-encoding", "gzip"))
        return Response(answer.status, data, headers)

    @staticmethod
    def _json_type(compat: int | None) -> str:
        return "application/json" if compat is None else f"application/vnd.elasticsearch+json;compatible-with={compat}"

    def _filter(self, expression: str) -> FilterPath:
        compiled = self._filters.get(expression)
        if compiled is None:
            if len(self._filters) > 256:
                self._filters.clear()
            compiled = self._filters[expression] = FilterPath(expression)
        return compiled

    # -- routing

    def _route(self, request: Request, principal: _Principal | None, bulk: bool) -> _Answer:
        method = request.method
        parts = [part for part in request.path.split("/") if part]
        count = len(parts)
        first = parts[0] if parts else ""

        def allow(*methods: str) -> None:
            if method not in methods:
                raise _method_not_allowed(request, methods)

        if count == 0:
            allow("GET", "HEAD")
            return _Answer(200, self._info())
        if bulk and count <= 2:
            allow("POST", "PUT")
            return self._bulk(request, parts[0] if count == 2 else None, principal)
        if first == "_index_template" and count <= 2:
            if count == 1:
                allow("GET", "HEAD")
                return self._get_templates("*", method == "HEAD")
            allow("GET", "HEAD", "PUT", "POST", "DELETE")
            return self._template_api(request, parts[1])
        if first == "_data_stream" and count <= 2:
            if count == 1:
                allow("GET")
                return self._get_data_streams("*")
            allow("GET", "PUT", "DELETE")
            return self._data_stream_api(request, parts[1])
        if count in (1, 2) and parts[-1] in ("_count", "_search", "_refresh"):
            target = parts[0] if count == 2 else None
            allow("GET", "POST")
            if parts[-1] == "_refresh":
                indices = self._read_indices(target)
                return _Answer(200, {"_shards": {"total": len(indices), "successful": len(indices), "failed": 0}})
            return self._search(request, target, count_only=parts[-1] == "_count")
        if first == "_cluster" and count in (2, 3) and parts[1] == "health":
            allow("GET")
            return _Answer(200, self._health())
        if parts == ["_security", "_authenticate"]:
            allow("GET")
            return self._authenticate_api(principal)
        if parts == ["_cat", "health"]:
            allow("GET")
            return self._cat_health(request)
        if count == 3 and parts[1] in ("_doc", "_create", "_update"):
            allowed = {"_doc": ("GET", "HEAD", "PUT", "POST", "DELETE"), "_create": ("PUT", "POST"),
                       "_update": ("POST",)}[parts[1]]
            allow(*allowed)
            if method in ("GET", "HEAD"):
                return self._get_doc(parts[0], parts[2])
            return self._single_write(request, parts[0], parts[1], parts[2])
        if count == 2 and parts[1] == "_doc":
            allow("POST")
            return self._single_write(request, parts[0], "_doc", None)
        if count == 1:
            allow("PUT", "GET", "HEAD", "DELETE")
            return self._index_api(request, parts[0])
        raise _flat_error(400, f"no handler found for uri [{_uri(request)}] and method [{method}]", status_field=False)

    def _info(self) -> dict[str, Any]:
        return {
            "name": "standin",
            "cluster_name": "standin",
            "cluster_uuid": self.cluster_uuid,
            "version": {
                "number": self.version,
                "build_flavor": "default",
                "build_type": "docker",
                "build_hash": "0" * 40,
                "build_date": "2024-08-05T10:05:34.233336849Z",
                "build_snapshot": False,
                "lucene_version": "9.11.1",
                "minimum_wire_compatibility_version": f"{self._major - 1}.17.0",
                "minimum_index_compatibility_version": f"{self._major - 1}.0.0",
            },
            "tagline": "You Know, for Search",
        }

    def _health(self) -> dict[str, Any]:
        shards = len(self._indices)
        return {"cluster_name": "standin", "status": "green", "timed_out": False, "number_of_nodes": 1,
                "number_of_data_nodes": 1, "active_primary_shards": shards, "active_shards": shards,
                "relocating_shards": 0, "initializing_shards": 0, "unassigned_shards": 0,
                "unassigned_primary_shards": 0, "delayed_unassigned_shards": 0, "number_of_pending_tasks": 0,
                "number_of_in_flight_fetch": 0, "task_max_waiting_in_queue_millis": 0,
                "active_shards_percent_as_number": 100.0}

    def _cat_health(self, request: Request) -> _Answer:
        now = time.time()
        shards = len(self._indices)
        row = {"epoch": str(int(now)), "timestamp": time.strftime("%H:%M:%S", time.gmtime(now)),
               "cluster": "standin", "status": "green", "node.total": "1", "node.data": "1", "shards": str(shards),
               "pri": str(shards), "relo": "0", "init": "0", "unassign": "0", "unassign.pri": "0",
               "pending_tasks": "0", "max_task_wait_time": "-", "active_shards_percent": "100.0%"}
        if request.param("format") == "json":
            return _Answer(200, [row])
        lines = [" ".join(row.values())]
        if request.param("v") is not None and _truthy(request.param("v") or "true"):
            lines.insert(0, " ".join(row))
        return _Answer(200, _Raw(("\n".join(lines) + "\n").encode(), "text/plain; charset=UTF-8"))

    def _authenticate_api(self, principal: _Principal | None) -> _Answer:
        if not self.security:
            raise EsError(500, "exception", "Security must be explicitly enabled when using a [basic] license. Enable "
                          "security by setting [xpack.security.enabled] to [true] in the elasticsearch.yml file and "
                          "restart the node.")
        assert principal is not None
        if principal.api_key_id is not None:
            realm = {"name": "_es_api_key", "type": "_es_api_key"}
            return _Answer(200, {"username": principal.username, "roles": [], "full_name": None, "email": None,
                                 "metadata": {}, "enabled": True, "authentication_realm": realm, "lookup_realm": realm,
                                 "authentication_type": "api_key",
                                 "api_key": {"id": principal.api_key_id, "name": principal.api_key_id}})
        realm = {"name": "default_native", "type": "native"}
        return _Answer(200, {"username": principal.username, "roles": ["superuser"], "full_name": None, "email": None,
                             "metadata": {}, "enabled": True, "authentication_realm": realm, "lookup_realm": realm,
                             "authentication_type": "realm"})

    # -- bulk

    def _bulk(self, request: Request, default_index: str | None, principal: _Principal | None) -> _Answer:
        started = time.perf_counter()
        failure = self.faults._take_request()
        if failure is not None:
            return self._failed_request(request, failure, principal, default_index)
        try:
            body = request.decoded_body(self.max_body_bytes)
        except BodyTooLarge:
            self._record(request, 413, [])
            return _Answer(413, None)
        except BadBody as exc:
            self._record(request, 400, [])
            raise EsError(400, "parse_exception", str(exc)) from None
        try:
            self._check_params(request, _BULK_PARAMS)
            refresh = request.param("refresh")
            if refresh not in (None, "", "true", "false", "wait_for"):
                raise _bad(f"Unknown value for refresh: [{refresh}].")
            if not body:
                raise EsError(400, "parse_exception", "request body is required")
            ops = self._parse_bulk(body, default_index, _truthy(request.param("require_alias")))
        except EsError as exc:
            self._record(request, exc.status, [])
            raise
        forced = refresh in ("", "true")
        items: list[dict[str, Any]] = []
        statuses: list[int] = []
        errors = False
        cache: dict[str, _Index | _DataStream] = {}
        for op in ops:
            item, status = self._execute(op, cache, forced)
            items.append(item)
            statuses.append(status)
            if status >= 300 and "error" in item[next(iter(item))]:
                errors = True
        self._item_statuses.update(statuses)
        self._record(request, 200, statuses)
        self._notify()
        took = int((time.perf_counter() - started) * 1000)
        return _Answer(200, {"errors": errors, "took": took, "items": items})

    def _failed_request(self, request: Request, failure: _Failure, principal: _Principal | None,
                        target: str | None) -> _Answer:
        status = failure.status
        self._record(request, status, [])
        if status == 413 and failure.error_type is None:
            return _Answer(413, None)
        if status == 401 and failure.error_type is None:
            error = self._unauthenticated(request, request.headers.get("authorization"))
        elif status == 403 and failure.error_type is None:
            error = self._forbidden(principal, target or "*")
        else:
            type_, reason = _REQUEST_FAULTS.get(status, ("status_exception", "injected by the stand-in"))
            error = EsError(status, type_, reason.format(size=len(request.body)))
        if failure.reason is not None:
            error.reason = failure.reason
        if failure.error_type is not None:
            error.type = failure.error_type
        return _Answer(status, error.body(), error.headers, error=True)

    @staticmethod
    def _check_params(request: Request, allowed: frozenset[str]) -> None:
        for name in request.query:
            if name not in allowed:
                raise _bad(f"request [{request.path}] contains unrecognized parameter: [{name}]")

    def _parse_bulk(self, body: bytes, default_index: str | None, require_alias: bool) -> list[_Op]:
        lines = body.split(b"\n")
        if lines[-1]:
            raise _bad("The bulk request must be terminated by a newline [\\n]")
        total = len(lines) - 1
        loads = orjson.loads
        ops: list[_Op] = []
        problems: list[str] = []
        position = 0
        while position < total:
            line = lines[position]
            position += 1
            number = position
            try:
                action_line = loads(line)
            except orjson.JSONDecodeError as exc:
                if not line.strip():
                    continue  # Elasticsearch skips blank lines where an action is expected
                raise EsError(400, "x_content_parse_exception", f"[{number}:1] {exc}") from None
            if type(action_line) is not dict:
                raise _bad(f"Malformed action/metadata line [{number}], expected START_OBJECT but found "
                           f"[{_token(action_line)}]")
            if len(action_line) != 1:
                if not action_line:
                    raise _bad(f"Malformed action/metadata line [{number}], expected FIELD_NAME but found [END_OBJECT]")
                raise _bad(f"Malformed action/metadata line [{number}], expected END_OBJECT but found [FIELD_NAME]")
            ((action, meta),) = action_line.items()
            if action not in _ACTIONS:
                raise _bad(f"Malformed action/metadata line [{number}], expected field [create], [delete], [index] "
                           f"or [update] but found [{action}]")
            if type(meta) is not dict:
                raise _bad(f"Malformed action/metadata line [{number}], expected START_OBJECT or END_OBJECT but found "
                           f"[{_token(meta)}]")
            if not meta.keys() <= _META_KEYS:
                unknown = next(key for key in meta if key not in _META_KEYS)
                raise _bad(f"Action/metadata line [{number}] contains an unknown parameter [{unknown}]")
            for key, value in meta.items():
                if isinstance(value, dict | list) and key not in ("_source", "dynamic_templates"):
                    raise _bad(f"Malformed action/metadata line [{number}], expected a simple value for field [{key}] "
                               f"but found [{_token(value)}]")
            source: bytes | None = None
            if action != "delete":
                if position >= total:
                    break  # an action without its source line at the end: ignored, as Elasticsearch does
                source = lines[position]
                position += 1
            op_type = meta.get("op_type")
            if action == "index" and op_type is not None:
                if op_type not in ("index", "create"):
                    raise _bad(f"opType must be 'create' or 'index', found: [{op_type}]")
                action = op_type
            index = meta.get("_index")
            raw_id = meta.get("_id")
            doc_id = None if raw_id is None else _text(raw_id)
            op = _Op(action, meta, source, number, _text(index) if index is not None else (default_index or ""),
                     doc_id)
            if not op.index:
                problems.append("index is missing")
            if doc_id is None and action in ("update", "delete"):
                problems.append("id is missing")
            elif doc_id is not None:
                if not doc_id:
                    problems.append("if _id is specified it must not be empty")
                elif len(doc_id.encode()) > 512:
                    problems.append(f"id [{doc_id}] is too long, must be no longer than 512 bytes but was: "
                                    f"{len(doc_id.encode())}")
            if action == "update":
                if "version" in meta or "version_type" in meta:
                    raise _bad("Update requests do not support versioning. Please use `if_seq_no` and "
                               "`if_primary_term` instead")
                op.update = self._parse_update(source or b"", number + 1)
            if require_alias and "require_alias" not in meta:
                meta["require_alias"] = True
            ops.append(op)
        if not ops:
            problems.append("no requests added")
        if problems:
            raise EsError(400, "action_request_validation_exception",
                          "Validation Failed: " + "".join(f"{i}: {p};" for i, p in enumerate(problems, 1)))
        return ops

    @staticmethod
    def _parse_update(source: bytes, line: int) -> dict[str, Any]:
        try:
            update = orjson.loads(source)
        except orjson.JSONDecodeError as exc:
            raise EsError(400, "x_content_parse_exception", f"[{line}:1] {exc}") from None
        if type(update) is not dict:
            raise EsError(400, "x_content_parse_exception", f"[{line}:1] [UpdateRequest] Expected START_OBJECT but "
                          f"was: {_token(update)}")
        for key in update:
            if key not in _UPDATE_KEYS:
                raise EsError(400, "x_content_parse_exception", f"[{line}:2] [UpdateRequest] unknown field [{key}]")
        if "doc" in update and type(update["doc"]) is not dict:
            raise EsError(400, "x_content_parse_exception", f"[{line}:8] [UpdateRequest] failed to parse field [doc]")
        return update

    def _write_target(self, name: str, action: str, require_alias: bool) -> _Index | _DataStream | EsError:
        if require_alias:
            return EsError(404, "index_not_found_exception",
                           f"no such index [{name}] and [require_alias] request flag is [true] and [{name}] is not "
                           "an alias", extra={"index_uuid": "_na_", "index": name})
        found = self._data_streams.get(name) or self._indices.get(name)
        if found is not None:
            return found
        if action == "delete":
            return _index_not_found(name)
        problem = _invalid_index_name(name)
        if problem is not None:
            return EsError(400, "invalid_index_name_exception", f"Invalid index name [{name}], {problem}",
                           extra={"index_uuid": "_na_", "index": name})
        template = self._match_template(name)
        if template is not None and template.data_stream:
            return self._create_data_stream(name, template)
        index = _Index(name, template.mappings_raw if template else None, template.mapping if template else None)
        self._indices[name] = index
        return index

    def _execute(self, op: _Op, cache: dict[str, _Index | _DataStream], forced: bool) -> tuple[dict[str, Any], int]:
        action = op.action
        require_alias = bool(op.meta.get("require_alias"))
        cached = None if require_alias else cache.get(op.index)
        target = cached if cached is not None else self._write_target(op.index, action, require_alias)
        if cached is None and not isinstance(target, EsError):
            cache[op.index] = target
        doc_id = op.doc_id
        if doc_id is None:
            doc_id = op.doc_id = secrets.token_urlsafe(15)
        if isinstance(target, EsError):
            return self._item_error(action, op.index, doc_id, target.status,
                                    {"type": target.type, "reason": target.reason, **target.extra})
        index: _Index
        if isinstance(target, _DataStream):
            index = target.indices[-1]
            if action != "create":
                return self._item_error(action, index.name, doc_id, 400, {
                    "type": "illegal_argument_exception",
                    "reason": "only write ops with an op_type of create are allowed in data streams"})
        else:
            index = target
            if index.data_stream is not None and action in ("index", "create") and (
                    action == "create" or "if_seq_no" not in op.meta):
                what = ("op_type=create" if action == "create"
                        else "op_type=index and no if_primary_term and if_seq_no set")
                return self._item_error(action, index.name, doc_id, 400, {
                    "type": "illegal_argument_exception",
                    "reason": f"index request with {what} targeting backing indices is disallowed, target "
                              f"corresponding data stream [{index.data_stream}] instead"})
        if self.faults._items_pending:
            failure = self.faults._take_item(doc_id)
            if failure is not None:
                return self._item_error(action, index.name, doc_id, failure.status,
                                        self._fault_error(failure, index, doc_id))
        if action == "delete":
            return self._delete(op, index, doc_id, forced)
        if action == "update":
            return self._update(op, index, doc_id, forced)
        source = op.source or b""
        try:
            doc = orjson.loads(source)
        except orjson.JSONDecodeError as exc:
            reason = "failed to parse, document is empty" if not source.strip() else f"[1:1] failed to parse: {exc}"
            error: Cause = {"type": "document_parsing_exception", "reason": reason}
            if source.strip():
                error["caused_by"] = {"type": "x_content_parse_exception", "reason": str(exc)}
            return self._item_error(action, index.name, doc_id, 400, error)
        if type(doc) is not dict:
            return self._item_error(action, index.name, doc_id, 400, {
                "type": "document_parsing_exception",
                "reason": f"[1:1] failed to parse: Malformed content, found [{_token(doc)}] where an object was "
                          "expected"})
        if index.data_stream is not None:
            stamp = doc.get("@timestamp")
            problem = ("is missing" if stamp is None
                       else "encountered multiple values" if isinstance(stamp, list) and len(stamp) > 1 else None)
            if problem is not None:
                reason = f"data stream timestamp field [@timestamp] {problem}"
                return self._item_error(action, index.name, doc_id, 400, {
                    "type": "document_parsing_exception", "reason": f"[1:{len(source)}] failed to parse: {reason}",
                    "caused_by": {"type": "illegal_argument_exception", "reason": reason}})
        if index.mapping is not None:
            cause = _check_document(index.mapping, doc, source, doc_id)
            if cause is not None:
                return self._item_error(action, index.name, doc_id, 400, cause)
        docs = index.docs
        current = docs.get(doc_id)
        conflict = self._version_conflict(op, current, doc_id, index)
        if conflict is not None:
            return conflict
        if current is not None and action == "create":
            return self._item_error(action, index.name, doc_id, 409, {
                "type": "version_conflict_engine_exception",
                "reason": f"[{doc_id}]: version conflict, document already exists (current version [{current[0]}])",
                "index_uuid": index.uuid, "shard": "0", "index": index.name})
        external = op.meta.get("version") if op.meta.get("version_type") in ("external", "external_gte") else None
        version = int(external) if external is not None else (1 if current is None else current[0] + 1)
        index.seq_no += 1
        docs[doc_id] = (version, index.seq_no, source if self.keep_sources else None)
        status = 201 if current is None else 200
        result: dict[str, Any] = {"_index": index.name, "_id": doc_id, "_version": version,
                                  "result": "created" if current is None else "updated", "_shards": _SHARDS,
                                  "_seq_no": index.seq_no, "_primary_term": 1, "status": status}
        if forced:
            result["forced_refresh"] = True
        return {action: result}, status

    @staticmethod
    def _version_conflict(op: _Op, current: tuple[int, int, bytes | None] | None, doc_id: str,
                          index: _Index) -> tuple[dict[str, Any], int] | None:
        meta = op.meta
        reason = None
        if "if_seq_no" in meta or "if_primary_term" in meta:
            seq_no, term = meta.get("if_seq_no"), meta.get("if_primary_term")
            if current is None:
                reason = (f"[{doc_id}]: version conflict, required seqNo [{seq_no}], primary term [{term}] but no "
                          "document was found")
            elif current[1] != seq_no or term != 1:
                reason = (f"[{doc_id}]: version conflict, required seqNo [{seq_no}], primary term [{term}]. current "
                          f"document has seqNo [{current[1]}] and primary term [1]")
        elif meta.get("version_type") in ("external", "external_gte") and "version" in meta:
            wanted = int(meta["version"])
            if current is not None and (wanted < current[0] or (wanted == current[0]
                                                                 and meta["version_type"] == "external")):
                reason = (f"[{doc_id}]: version conflict, current version [{current[0]}] is higher or equal to the one "
                          f"provided [{wanted}]")
        if reason is None:
            return None
        return ElasticsearchStandIn._item_error(op.action, index.name, doc_id, 409, {
            "type": "version_conflict_engine_exception", "reason": reason, "index_uuid": index.uuid, "shard": "0",
            "index": index.name})

    def _delete(self, op: _Op, index: _Index, doc_id: str, forced: bool) -> tuple[dict[str, Any], int]:
        current = index.docs.get(doc_id)
        conflict = self._version_conflict(op, current, doc_id, index)
        if conflict is not None:
            return conflict
        index.seq_no += 1
        if current is None:
            result: dict[str, Any] = {"_index": index.name, "_id": doc_id, "_version": 1, "result": "not_found",
                                      "_shards": _SHARDS, "_seq_no": index.seq_no, "_primary_term": 1, "status": 404}
        else:
            del index.docs[doc_id]
            result = {"_index": index.name, "_id": doc_id, "_version": current[0] + 1, "result": "deleted",
                      "_shards": _SHARDS, "_seq_no": index.seq_no, "_primary_term": 1, "status": 200}
        if forced:
            result["forced_refresh"] = True
        return {"delete": result}, result["status"]

    def _update(self, op: _Op, index: _Index, doc_id: str, forced: bool) -> tuple[dict[str, Any], int]:
        update = op.update or {}
        if "script" in update:
            return self._item_error("update", index.name, doc_id, 400, {
                "type": "illegal_argument_exception", "reason": "scripted updates are not supported by the stand-in"})
        current = index.docs.get(doc_id)
        conflict = self._version_conflict(op, current, doc_id, index)
        if conflict is not None:
            return conflict
        partial = update.get("doc")
        if current is None:
            if update.get("doc_as_upsert") and partial is not None:
                new_doc = partial
            elif isinstance(update.get("upsert"), dict):
                new_doc = update["upsert"]
            else:
                return self._item_error("update", index.name, doc_id, 404, {
                    "type": "document_missing_exception", "reason": f"[{doc_id}]: document missing",
                    "index_uuid": index.uuid, "shard": "0", "index": index.name})
        else:
            old = orjson.loads(current[2]) if current[2] is not None else {}
            new_doc = _deep_merge(old, partial or {})
            if new_doc == old and update.get("detect_noop", True) is not False:
                return {"update": {"_index": index.name, "_id": doc_id, "_version": current[0], "result": "noop",
                                   "_shards": _NOOP_SHARDS, "_seq_no": current[1], "_primary_term": 1,
                                   "status": 200}}, 200
        source = _dumps(new_doc)
        if index.data_stream is not None and new_doc.get("@timestamp") is None:
            reason = "data stream timestamp field [@timestamp] is missing"
            return self._item_error("update", index.name, doc_id, 400, {
                "type": "document_parsing_exception", "reason": f"[1:{len(source)}] failed to parse: {reason}",
                "caused_by": {"type": "illegal_argument_exception", "reason": reason}})
        if index.mapping is not None:
            cause = _check_document(index.mapping, new_doc, source, doc_id)
            if cause is not None:
                return self._item_error("update", index.name, doc_id, 400, cause)
        index.seq_no += 1
        version = 1 if current is None else current[0] + 1
        index.docs[doc_id] = (version, index.seq_no, source if self.keep_sources else None)
        status = 201 if current is None else 200
        result: dict[str, Any] = {"_index": index.name, "_id": doc_id, "_version": version,
                                  "result": "created" if current is None else "updated", "_shards": _SHARDS,
                                  "_seq_no": index.seq_no, "_primary_term": 1, "status": status}
        if forced:
            result["forced_refresh"] = True
        return {"update": result}, status

    @staticmethod
    def _item_error(action: str, index: str, doc_id: str | None, status: int,
                    error: Mapping[str, Any]) -> tuple[dict[str, Any], int]:
        return {action: {"_index": index, "_id": doc_id, "status": status, "error": dict(error)}}, status

    @staticmethod
    def _fault_error(failure: _Failure, index: _Index, doc_id: str) -> dict[str, Any]:
        type_, reason, with_index = _ITEM_FAULTS.get(failure.status, ("status_exception", "injected by the stand-in",
                                                                      False))
        error: dict[str, Any] = {"type": failure.error_type or type_,
                                 "reason": failure.reason or reason.format(index=index.name, id=doc_id)}
        if failure.status == 400 and failure.error_type in (None, "document_parsing_exception"):
            error["caused_by"] = {"type": "illegal_argument_exception", "reason": "injected by the stand-in"}
        if with_index:
            error.update({"index_uuid": index.uuid, "shard": "0", "index": index.name})
        return error

    # -- single-document APIs (the same engine as _bulk)

    def _single_write(self, request: Request, target: str, endpoint: str, doc_id: str | None) -> _Answer:
        method = request.method
        if method == "DELETE":
            action = "delete"
        elif endpoint == "_create" or request.param("op_type") == "create":
            action = "create"
        elif endpoint == "_update":
            action = "update"
        else:
            action = "index"
        body = b""
        if action != "delete":
            try:
                body = request.decoded_body(self.max_body_bytes)
            except BodyTooLarge:
                return _Answer(413, None)
            except BadBody as exc:
                raise EsError(400, "parse_exception", str(exc)) from None
            if not body.strip():
                raise EsError(400, "parse_exception", "request body is required")
        meta: dict[str, Any] = {}
        for name in ("if_seq_no", "if_primary_term", "version"):
            value = request.param(name)
            if value is not None:
                if not value.lstrip("-").isdigit():
                    raise _bad(f"Failed to parse value [{value}] for parameter [{name}]")
                meta[name] = int(value)
        if request.param("version_type"):
            meta["version_type"] = request.param("version_type")
        op = _Op(action, meta, body.strip() or None, 1, target, doc_id)
        if action == "update":
            op.update = self._parse_update(body, 1)
        if _truthy(request.param("require_alias")):
            meta["require_alias"] = True
        item, status = self._execute(op, {}, request.param("refresh") in ("", "true"))
        self._item_statuses[status] += 1
        self._notify()
        result = dict(item[next(iter(item))])
        result.pop("status", None)
        if "error" in result:
            error = result["error"]
            cause = {key: value for key, value in error.items() if key != "caused_by"}
            body_out: dict[str, Any] = {"error": {"root_cause": [cause], **error}, "status": status}
            return _Answer(status, body_out, error=True)
        return _Answer(status, result)

    def _get_doc(self, target: str, doc_id: str) -> _Answer:
        if target in self._data_streams:
            raise _bad(f"The provided expression [{target}] matches a data stream, specify the corresponding concrete "
                       "indices instead.")
        index = self._indices.get(target)
        if index is None:
            raise _index_not_found(target)
        entry = index.docs.get(doc_id)
        if entry is None:
            return _Answer(404, {"_index": index.name, "_id": doc_id, "found": False})
        version, seq_no, source = entry
        return _Answer(200, {"_index": index.name, "_id": doc_id, "_version": version, "_seq_no": seq_no,
                             "_primary_term": 1, "found": True,
                             "_source": orjson.loads(source) if source is not None else {}})

    # -- indices

    def _index_api(self, request: Request, name: str) -> _Answer:
        method = request.method
        if method == "PUT":
            return self._create_index(request, name)
        if method == "DELETE":
            deleted = []
            for part in name.split(","):
                if part in self._data_streams:
                    raise _bad(f"The provided expression [{part}] matches a data stream, specify the corresponding "
                               "concrete indices instead.")
                index = self._indices.get(part)
                if index is None:
                    raise _index_not_found(part)
                if index.data_stream is not None:
                    raise _bad(f"index [{part}] is the write index for data stream [{index.data_stream}] and cannot be "
                               "deleted")
                deleted.append(part)
            for part in deleted:
                del self._indices[part]
            return _Answer(200, {"acknowledged": True})
        indices = self._read_indices(name)
        if method == "HEAD":
            return _Answer(200 if indices else 404, None)
        return _Answer(200, {index.name: {"aliases": {}, "mappings": index.mappings_raw,
                                          "settings": {"index": {"uuid": index.uuid, "number_of_shards": "1",
                                                                 "number_of_replicas": "0",
                                                                 "provided_name": index.name,
                                                                 "creation_date": str(int(index.created * 1000)),
                                                                 **index.settings}},
                                          **({"data_stream": index.data_stream} if index.data_stream else {})}
                             for index in indices})

    def _create_index(self, request: Request, name: str) -> _Answer:
        problem = _invalid_index_name(name)
        if problem is not None:
            raise EsError(400, "invalid_index_name_exception", f"Invalid index name [{name}], {problem}",
                          extra={"index_uuid": "_na_", "index": name})
        if name in self._indices or name in self._data_streams:
            existing = self._indices.get(name)
            raise EsError(400, "resource_already_exists_exception",
                          f"index [{name}/{existing.uuid if existing else '_na_'}] already exists",
                          extra={"index_uuid": existing.uuid if existing else "_na_", "index": name})
        body = self._json_body(request)
        unknown = set(body) - {"settings", "mappings", "aliases"}
        if unknown:
            raise EsError(400, "x_content_parse_exception",
                          f"[1:2] unknown key [{sorted(unknown)[0]}] for create index")
        template = self._match_template(name)
        if template is not None and template.data_stream:
            raise _bad(f"cannot create index with name [{name}], because it matches with template [{template.name}] "
                       "that creates data streams only, use create data stream api instead")
        mappings = _merge_mappings(template.mappings_raw if template else None, body.get("mappings"))
        index = _Index(name, mappings, _compile_mapping(mappings), body.get("settings"))
        self._indices[name] = index
        return _Answer(200, {"acknowledged": True, "shards_acknowledged": True, "index": name})

    def _read_indices(self, target: str | None) -> list[_Index]:
        """The indices a read request names (comma list, wildcards, data streams, `_all`)."""
        if target is None or target in ("_all", "*"):
            return list(self._indices.values())
        out: list[_Index] = []
        for part in target.split(","):
            if "*" in part:
                regex = re.compile(".*".join(re.escape(p) for p in part.split("*")))
                for name, ds in self._data_streams.items():
                    if regex.fullmatch(name):
                        out.extend(ds.indices)
                for name, index in self._indices.items():
                    if regex.fullmatch(name) and (not name.startswith(".") or part.startswith(".")):
                        out.append(index)
            elif part in self._data_streams:
                out.extend(self._data_streams[part].indices)
            elif part in self._indices:
                out.append(self._indices[part])
            else:
                raise _index_not_found(part)
        unique: dict[str, _Index] = {index.name: index for index in out}
        return list(unique.values())

    # -- search

    def _search(self, request: Request, target: str | None, *, count_only: bool) -> _Answer:
        started = time.perf_counter()
        indices = self._read_indices(target)
        body = self._json_body(request)
        query = body.get("query", {"match_all": {}})
        matcher = _compile_query(query)
        if count_only:
            total = sum(1 for index in indices for doc_id, entry in index.docs.copy().items()
                        if matcher(index, doc_id, entry))
            return _Answer(200, {"count": total, "_shards": {"total": len(indices), "successful": len(indices),
                                                              "skipped": 0, "failed": 0}})
        size = _non_negative("size", request.param("size") or body.get("size", 10))
        start = _non_negative("from", request.param("from") or body.get("from", 0))
        hits = []
        total = 0
        for index in indices:
            for doc_id, entry in index.docs.copy().items():
                if matcher(index, doc_id, entry):
                    if start <= total < start + size:
                        hits.append({"_index": index.name, "_id": doc_id, "_score": 1.0,
                                     "_source": orjson.loads(entry[2]) if entry[2] is not None else {}})
                    total += 1
        return _Answer(200, {"took": int((time.perf_counter() - started) * 1000), "timed_out": False,
                             "_shards": {"total": len(indices), "successful": len(indices), "skipped": 0, "failed": 0},
                             "hits": {"total": {"value": total, "relation": "eq"},
                                      "max_score": 1.0 if hits else None, "hits": hits}})

    @staticmethod
    def _json_body(request: Request) -> dict[str, Any]:
        try:
            raw = request.decoded_body()
        except BadBody as exc:
            raise EsError(400, "parse_exception", str(exc)) from None
        if not raw.strip():
            return {}
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise EsError(400, "x_content_parse_exception", f"[1:1] {exc}") from None
        if type(value) is not dict:
            raise EsError(400, "parse_exception", f"request body must be an object, not {_token(value)}")
        return value

    # -- templates

    def _match_template(self, name: str) -> _Template | None:
        best: _Template | None = None
        for template in self._templates.values():
            if template.matches(name) and (best is None or template.priority > best.priority):
                best = template
        return best

    def _template_api(self, request: Request, name: str) -> _Answer:
        method = request.method
        if method in ("GET", "HEAD"):
            return self._get_templates(name, method == "HEAD")
        if method == "DELETE":
            names = [n for n in self._templates if _wildcard(name, n)] if "*" in name else [name]
            if not names or names[0] not in self._templates:
                raise EsError(404, "index_template_missing_exception", f"index_template [{name}] missing")
            for template_name in names:
                users = sorted(ds.name for ds in self._data_streams.values() if ds.template == template_name)
                if users:
                    raise _bad(f"unable to remove composable templates [{template_name}] as they are in use by a data "
                               f"streams [{', '.join(users)}]")
            for template_name in names:
                del self._templates[template_name]
            return _Answer(200, {"acknowledged": True})
        body = self._json_body(request)
        if _truthy(request.param("create")) and name in self._templates:
            raise _bad(f"index template [{name}] already exists")
        unknown = sorted(set(body) - _TEMPLATE_KEYS)
        if unknown:
            raise EsError(400, "x_content_parse_exception", f"[1:2] [index_template] unknown field [{unknown[0]}]")
        patterns = body.get("index_patterns")
        if isinstance(patterns, str):
            patterns = [patterns]
        if not patterns or not isinstance(patterns, list) or not all(isinstance(p, str) and p for p in patterns):
            raise EsError(400, "action_request_validation_exception",
                          "Validation Failed: 1: index patterns are missing;")
        inner = body.get("template") or {}
        if not isinstance(inner, Mapping):
            raise EsError(400, "x_content_parse_exception", "[1:2] [index_template] failed to parse field [template]")
        unknown = sorted(set(inner) - _TEMPLATE_TEMPLATE_KEYS)
        if unknown:
            raise EsError(400, "x_content_parse_exception", f"[1:2] [template] unknown field [{unknown[0]}]")
        priority = body.get("priority", 0)
        if isinstance(priority, bool) or not isinstance(priority, int) or priority < 0:
            raise _bad("index template priority must be >= 0")
        stored = {"index_patterns": patterns, "composed_of": [], **body}
        stored["index_patterns"] = patterns
        template = _Template(name, stored)  # compiles the mappings: mapper_parsing_exception
        overlapping = sorted(other.name for other in self._templates.values()
                             if other.name != name and other.priority == template.priority
                             and _patterns_overlap(template.patterns, other.patterns))
        if overlapping:
            described = ", ".join(f"{o} => [{', '.join(self._templates[o].patterns)}]" for o in overlapping)
            raise _bad(f"index template [{name}] has index patterns [{', '.join(template.patterns)}] matching "
                       f"patterns from existing templates [{', '.join(overlapping)}] with patterns ({described}) "
                       f"that have the same priority [{template.priority}], multiple index templates may not match "
                       "during index creation, please use a different priority")
        self._templates[name] = template
        return _Answer(200, {"acknowledged": True})

    def _get_templates(self, name: str, head: bool) -> _Answer:
        names = [n for n in sorted(self._templates) if any(_wildcard(part, n) for part in name.split(","))]
        if not names and "*" not in name:
            if head:
                return _Answer(404, None)
            raise EsError(404, "resource_not_found_exception", f"index template matching [{name}] not found")
        if head:
            return _Answer(200, None)
        return _Answer(200, {"index_templates": [{"name": n, "index_template": self._templates[n].body}
                                                 for n in names]})

    # -- data streams

    def _create_data_stream(self, name: str, template: _Template) -> _DataStream:
        backing = f".ds-{name}-{dt.datetime.now(dt.UTC).strftime('%Y.%m.%d')}-000001"
        mapping = _compile_mapping(template.mappings_raw, timestamp=True)
        index = _Index(backing, template.mappings_raw, mapping, data_stream=name)
        self._indices[backing] = index
        stream = _DataStream(name, template.name, index)
        self._data_streams[name] = stream
        return stream

    def _data_stream_api(self, request: Request, name: str) -> _Answer:
        method = request.method
        if method == "GET":
            return self._get_data_streams(name)
        if method == "DELETE":
            names = [n for n in self._data_streams if any(_wildcard(part, n) for part in name.split(","))]
            if not names and "*" not in name:
                raise _index_not_found(name)
            for ds_name in names:
                stream = self._data_streams.pop(ds_name)
                for index in stream.indices:
                    self._indices.pop(index.name, None)
            return _Answer(200, {"acknowledged": True})
        problem = _invalid_index_name(name)
        if problem is not None:
            raise EsError(400, "invalid_index_name_exception", f"Invalid index name [{name}], {problem}",
                          extra={"index_uuid": "_na_", "index": name})
        if name in self._data_streams:
            raise EsError(400, "resource_already_exists_exception", f"data_stream [{name}] already exists")
        if name in self._indices:
            raise EsError(400, "resource_already_exists_exception",
                          f"index [{name}/{self._indices[name].uuid}] already exists")
        template = self._match_template(name)
        if template is None:
            raise _bad(f"no matching index template found for data stream [{name}]")
        if not template.data_stream:
            raise _bad(f"matching index template [{template.name}] for data stream [{name}] has no data stream "
                       "template")
        self._create_data_stream(name, template)
        return _Answer(200, {"acknowledged": True})

    def _get_data_streams(self, name: str) -> _Answer:
        names = [n for n in sorted(self._data_streams) if any(_wildcard(part, n) for part in name.split(","))]
        if not names and "*" not in name:
            raise _index_not_found(name)
        return _Answer(200, {"data_streams": [self._data_stream_body(self._data_streams[n]) for n in names]})

    @staticmethod
    def _data_stream_summary(stream: _DataStream) -> dict[str, Any]:
        return {"name": stream.name, "template": stream.template, "generation": len(stream.indices),
                "indices": [index.name for index in stream.indices]}

    def _data_stream_body(self, stream: _DataStream) -> dict[str, Any]:
        return {
            "name": stream.name,
            "timestamp_field": {"name": "@timestamp"},
            "indices": [{"index_name": index.name, "index_uuid": index.uuid, "prefer_ilm": True,
                         "managed_by": "Unmanaged"} for index in stream.indices],
            "generation": len(stream.indices),
            "status": "GREEN",
            "template": stream.template,
            "next_generation_managed_by": "Unmanaged",
            "prefer_ilm": True,
            "hidden": False,
            "system": False,
            "allow_custom_routing": False,
            "replicated": False,
            "rollover_on_write": False,
        }

    # -- control (no auth, no faults)

    def _control(self, request: Request) -> Response:
        path, method = request.path, request.method
        routes = {"/_standin/state": "GET", "/_standin/faults": "POST", "/_standin/reset": "POST"}
        if path not in routes:
            return Response.json(404, {"error": f"unknown stand-in endpoint [{path}]", "status": 404}, [_PRODUCT])
        if method != routes[path]:
            return Response.json(405, {"error": f"Incorrect HTTP method for uri [{path}] and method [{method}], "
                                                f"allowed: [{routes[path]}]", "status": 405},
                                 [_PRODUCT, ("Allow", routes[path])])
        if path == "/_standin/state":
            return Response.json(200, self.state(), [_PRODUCT])
        if path == "/_standin/reset":
            self.reset()
            return Response.json(200, {"acknowledged": True}, [_PRODUCT])
        try:
            spec = orjson.loads(request.decoded_body() or b"{}")
            self.faults.apply(spec)
        except (orjson.JSONDecodeError, BadBody, ValueError, TypeError) as exc:
            return Response.json(400, {"error": f"bad faults: {exc}", "status": 400}, [_PRODUCT])
        return Response.json(200, {"faults": self.faults.pending()}, [_PRODUCT])


def _flat_error(status: int, message: str, *, status_field: bool = True) -> EsError:
    """An error Elasticsearch answers with a flat body: `{"error":"...","status":N}`."""
    return EsError(status, "", message, flat=True, status_field=status_field)


def _method_not_allowed(request: Request, methods: Sequence[str]) -> EsError:
    allowed = ", ".join(methods)
    error = _flat_error(405, f"Incorrect HTTP method for uri [{_uri(request)}] and method [{request.method}], "
                             f"allowed: [{allowed}]")
    error.headers.append(("Allow", ",".join(methods)))
    return error


def _non_negative(name: str, value: Any) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise _bad(f"Failed to parse int parameter [{name}] with value [{value}]") from None
    if number < 0:
        raise _bad(f"[{name}] parameter cannot be negative but was [{number}]")
    return number


def _wildcard(pattern: str, name: str) -> bool:
    if "*" not in pattern:
        return pattern == name
    return re.fullmatch(".*".join(re.escape(p) for p in pattern.split("*")), name) is not None


def _patterns_overlap(a: Sequence[str], b: Sequence[str]) -> bool:
    """Whether two pattern lists can match a common name (approximation: one matches the other)."""
    for left in a:
        for right in b:
            if _wildcard(left, right) or _wildcard(right, left):
                return True
            prefix_l, prefix_r = left.split("*")[0], right.split("*")[0]
            if "*" in left and "*" in right and (prefix_l.startswith(prefix_r) or prefix_r.startswith(prefix_l)):
                suffix_l, suffix_r = left.rsplit("*")[-1], right.rsplit("*")[-1]
                if suffix_l.endswith(suffix_r) or suffix_r.endswith(suffix_l):
                    return True
    return False


def _deep_merge(base: dict[str, Any], partial: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in partial.items():
        current = out.get(key)
        if isinstance(current, dict) and isinstance(value, dict):
            out[key] = _deep_merge(current, value)
        else:
            out[key] = value
    return out


# ---------------------------------------------------------------------------------------------
# Queries

Matcher = Callable[[_Index, str, tuple[int, int, bytes | None]], bool]
_WORD_RE: Final = re.compile(r"\w+")


def _compile_query(query: Any) -> Matcher:
    if not isinstance(query, dict) or len(query) != 1:
        raise EsError(400, "parsing_exception", "query malformed, must start with start_object",
                      extra={"line": 1, "col": 1})
    ((kind, spec),) = query.items()
    if kind == "match_all":
        return lambda index, doc_id, entry: True
    if kind == "match_none":
        return lambda index, doc_id, entry: False
    if kind == "ids":
        values = set(map(str, spec.get("values", []))) if isinstance(spec, dict) else set()
        return lambda index, doc_id, entry: doc_id in values
    if kind in ("term", "terms"):
        if not isinstance(spec, dict):
            raise EsError(400, "parsing_exception", f"[{kind}] query malformed, no start_object after query name",
                          extra={"line": 1, "col": 1})
        fields = [(k, v) for k, v in spec.items() if k != "boost"]
        if len(fields) != 1:
            raise EsError(400, "parsing_exception", f"[{kind}] query doesn't support multiple fields",
                          extra={"line": 1, "col": 1})
        ((name, wanted),) = fields
        insensitive = False
        if kind == "term":
            if isinstance(wanted, dict):
                insensitive = bool(wanted.get("case_insensitive"))
                wanted = wanted.get("value")
            candidates = [wanted]
        else:
            if not isinstance(wanted, list):
                raise EsError(400, "parsing_exception", "[terms] query does not support [" + name + "]",
                              extra={"line": 1, "col": 1})
            candidates = wanted
        return _term_matcher(name, candidates, insensitive)
    if kind == "bool":
        if not isinstance(spec, dict):
            raise EsError(400, "parsing_exception", "[bool] query malformed", extra={"line": 1, "col": 1})

        def clauses(key: str) -> list[Matcher]:
            value = spec.get(key, [])
            return [_compile_query(q) for q in (value if isinstance(value, list) else [value])]

        must = clauses("must") + clauses("filter")
        should = clauses("should")
        must_not = clauses("must_not")
        minimum = int(spec.get("minimum_should_match", 0 if must else 1 if should else 0))

        def match(index: _Index, doc_id: str, entry: tuple[int, int, bytes | None]) -> bool:
            return (all(m(index, doc_id, entry) for m in must)
                    and not any(m(index, doc_id, entry) for m in must_not)
                    and sum(1 for m in should if m(index, doc_id, entry)) >= minimum)

        return match
    raise EsError(400, "parsing_exception", f"unknown query [{kind}]", extra={"line": 1, "col": 1})


def _values_at(doc: Any, path: str) -> list[Any]:
    """Every value at a dotted path (nested objects, dotted keys and arrays)."""
    if isinstance(doc, list):
        return [value for element in doc for value in _values_at(element, path)]
    if not isinstance(doc, dict):
        return []
    out: list[Any] = []
    if path in doc:
        value = doc[path]
        out.extend(value if isinstance(value, list) else [value])
    position = path.find(".")
    while position != -1:
        head = path[:position]
        if head in doc:
            out.extend(_values_at(doc[head], path[position + 1:]))
        position = path.find(".", position + 1)
    return out


def _term_matcher(name: str, candidates: list[Any], insensitive: bool) -> Matcher:
    def match(index: _Index, doc_id: str, entry: tuple[int, int, bytes | None]) -> bool:
        if entry[2] is None:
            return False
        doc = orjson.loads(entry[2])
        field = name
        leaf = index.mapping.leaf(field) if index.mapping is not None else None
        exact = leaf is not None and leaf.type not in ("text", "match_only_text")
        if leaf is None and field.endswith(".keyword"):
            field, exact = field[: -len(".keyword")], True
        for value in _values_at(doc, field):
            for wanted in candidates:
                if _term_equal(value, wanted, exact, insensitive):
                    return True
        return False

    return match


def _term_equal(value: Any, wanted: Any, exact: bool, insensitive: bool) -> bool:
    if isinstance(value, bool) or isinstance(wanted, bool):
        return _text(value) == _text(wanted)
    if isinstance(value, int | float):
        try:
            return float(value) == float(wanted)
        except (TypeError, ValueError):
            return False
    if isinstance(value, str):
        expected = _text(wanted)
        if not exact:  # an analysed (text) field: the term must be one of its tokens
            return expected in {token.lower() for token in _WORD_RE.findall(value)}
        if insensitive:
            return value.lower() == expected.lower()
        return value == expected
    return False


# ---------------------------------------------------------------------------------------------
# Running it


_StandIn = TypeVar("_StandIn", bound=HttpStandIn)


@contextlib.contextmanager
def serve_in_thread(stand_in: _StandIn, timeout: float = 10.0) -> Iterator[_StandIn]:
    """Run a stand-in on its own event loop in a background thread, for synchronous clients (the
    official Elasticsearch client); stopped when the block ends."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="standin", daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(stand_in.start(), loop).result(timeout)
        try:
            yield stand_in
        finally:
            asyncio.run_coroutine_threadsafe(stand_in.stop(), loop).result(timeout)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        loop.close()


def _pair(text: str) -> tuple[str, str]:
    name, sep, secret = text.partition(":")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME:SECRET")
    return name, secret


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=9200, help="listen port (default 9200; 0: a free port)")
    parser.add_argument("--api-key", dest="api_keys", type=_pair, action="append", default=[], metavar="ID:KEY",
                        help="accept `Authorization: ApiKey base64(ID:KEY)` (repeat for more; any key or user turns "
                             "security on)")
    parser.add_argument("--user", dest="users", type=_pair, action="append", default=[], metavar="USER:PASSWORD",
                        help="accept `Authorization: Basic base64(USER:PASSWORD)` (repeat for more)")
    parser.add_argument("--es-version", dest="es_version", default="8.15.0",
                        help="the version it reports and the compatible-with versions it accepts (default 8.15.0)")
    parser.add_argument("--max-body-bytes", type=int, default=100 * 1024 * 1024,
                        help="http.max_content_length: larger bodies are answered 413 (default 100 MiB)")
    parser.add_argument("--keep-sources", action=argparse.BooleanOptionalAction, default=True,
                        help="keep document sources for inspection, or only their _id and version (default keep)")
    parser.add_argument("--builtin-templates", action=argparse.BooleanOptionalAction, default=True,
                        help="the logs-*-*, metrics-*-*, synthetics-*-* data stream templates (default yes)")
    parser.add_argument("--certfile", help="serve HTTPS with this certificate chain (PEM)")
    parser.add_argument("--keyfile", help="the certificate's private key (PEM)")


def from_arguments(args: argparse.Namespace) -> ElasticsearchStandIn:
    context: ssl.SSLContext | None = None
    if args.certfile:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.certfile, args.keyfile)
    return ElasticsearchStandIn(host=args.host, port=args.port, api_keys=dict(args.api_keys), users=dict(args.users),
                                ssl_context=context, max_body_bytes=args.max_body_bytes, version=args.es_version,
                                keep_sources=args.keep_sources, builtin_templates=args.builtin_templates)


async def serve(args: argparse.Namespace) -> None:
    """Serve until SIGTERM or SIGINT; the URL is printed (and flushed) as the first line of stdout."""
    stand_in = from_arguments(args)
    await stand_in.serve_until_signalled()
    log.info("stopped after %d requests (%d bulk), %d documents", stand_in.request_count,
             len(stand_in.bulk_requests), sum(stand_in.counts().values()))


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m siemgate_standins.elasticsearch`: an Elasticsearch stand-in in its own process."""
    parser = argparse.ArgumentParser(prog="python -m siemgate_standins.elasticsearch", description=main.__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    return run_main(lambda: serve(args))


if __name__ == "__main__":
    sys.exit(main())
