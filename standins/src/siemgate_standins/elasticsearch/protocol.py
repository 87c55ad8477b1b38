"""What the Elasticsearch stand-in's answers are made of: errors as Elasticsearch shapes them,
answers, media types, and the small request helpers the parts share."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final
from urllib.parse import urlencode

import orjson

from siemgate_standins.http_server import Request

_EMPTY: Final[Mapping[str, str]] = MappingProxyType({})
_PRODUCT: Final = ("X-Elastic-Product", "Elasticsearch")
_SHARDS: Final = MappingProxyType({"total": 1, "successful": 1, "failed": 0})
_NOOP_SHARDS: Final = MappingProxyType({"total": 0, "successful": 0, "failed": 0})
_WWW_AUTHENTICATE: Final = ('Basic realm="security", charset="UTF-8"', 'Bearer realm="security"', "ApiKey")


def _orjson_default(value: object) -> object:
    if isinstance(value, MappingProxyType):
        return dict(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def _dumps(value: Any, option: int = 0) -> bytes:
    return orjson.dumps(value, default=_orjson_default, option=option)


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


# Requests: media types, parameters

_JSON_MEDIA: Final = frozenset({"application/json", "application/x-ndjson"})
_VND_MEDIA: Final = frozenset({"application/vnd.elasticsearch+json", "application/vnd.elasticsearch+x-ndjson"})
_COMMON_PARAMS: Final = frozenset({"pretty", "human", "error_trace", "filter_path"})


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
class _Principal:
    username: str
    api_key_id: str | None = None


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
