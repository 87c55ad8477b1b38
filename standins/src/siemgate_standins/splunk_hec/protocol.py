"""HEC on the wire: its codes and answers, its paths and defaults, tokens, and the parsing of a
body of JSON envelopes."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

import orjson

from siemgate_standins.http_server import (
    Response,
)

# docs/PROTOCOLS.md 1.5: code -> (HTTP status, text). 23-27: newer Splunk, wording unconfirmed.
CODES: dict[int, tuple[int, str]] = {
    0: (200, "Success"),
    1: (403, "Token disabled"),
    2: (401, "Token is required"),
    3: (401, "Invalid authorization"),
    4: (403, "Invalid token"),
    5: (400, "No data"),
    6: (400, "Invalid data format"),
    7: (400, "Incorrect index"),
    8: (500, "Internal server error"),
    9: (503, "Server is busy"),
    10: (400, "Data channel is missing"),
    11: (400, "Invalid data channel"),
    12: (400, "Event field is required"),
    13: (400, "Event field cannot be blank"),
    14: (400, "ACK is disabled"),
    15: (400, "Error in handling indexed fields"),
    16: (400, "Query string authorization is not enabled"),
    17: (200, "HEC is healthy"),
    18: (503, "HEC is unhealthy, queues are full"),
    19: (503, "HEC is unhealthy, ack service unavailable"),
    20: (503, "HEC is unhealthy, queues are full, ack service unavailable"),
    21: (400, "Invalid token"),
    22: (400, "Token disabled"),
    23: (503, "Server is shutting down"),
    24: (200, "HEC queue is approaching its capacity limit"),
    25: (200, "HEC ACK is approaching its capacity limit"),
    26: (429, "HEC queue is at capacity"),
    27: (429, "HEC ACK channel is at capacity"),
}
# Codes that an event of a batch can be refused with (answered with `invalid-event-number`).
EVENT_CODES = frozenset({6, 7, 12, 13, 15})
TOO_LARGE_TEXT = "Request entity too large"

EVENT_PATHS = frozenset({"/services/collector", "/services/collector/event", "/services/collector/event/1.0"})
RAW_PATHS = frozenset({"/services/collector/raw", "/services/collector/raw/1.0"})
HEALTH_PATHS = frozenset({"/services/collector/health", "/services/collector/health/1.0"})
ACK_PATH = "/services/collector/ack"

DEFAULT_HOST = "splunk-standin"
DEFAULT_SOURCE = "http:standin"
DEFAULT_SOURCETYPE = "httpevent"

_GUID = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_WHITESPACE = re.compile(r"[ \t\r\n]*")
_MISSING: Any = object()
_SUCCESS = orjson.dumps({"text": "Success", "code": 0})
_JSON = [("Content-Type", "application/json")]


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


@dataclass
class HecToken:
    value: str
    enabled: bool = True
    # Indexes the token may write to; empty: any. Its default index is always allowed.
    indexes: tuple[str, ...] = ()
    default_index: str = "main"
    ack: bool = False
    query_string_auth: bool = False


class _Refusal(Exception):
    def __init__(self, code: int, **extra: Any) -> None:
        super().__init__(code)
        self.code = code
        self.extra = extra


def answer(code: int, **extra: Any) -> Response:
    """A HEC answer: the status and text of `code` in the table, and `extra` keys."""
    status, text = CODES[code]
    return Response(status, orjson.dumps({"text": text, "code": code, **extra}), _JSON)


def _method_not_allowed(allow: str) -> Response:
    return Response.json(405, {"text": "Method Not Allowed", "code": 405}, [("Allow", allow)])


def parse_envelopes(body: bytes) -> tuple[list[Any], int | None]:
    """The JSON values of a HEC body, one after another, and the position of the first that
    does not parse (None when all do). One value per line is the fast path (orjson per line);
    anything else (values sharing or spanning lines) goes through a `raw_decode` loop that
    walks the text once."""
    values: list[Any] = []
    append = values.append
    loads = orjson.loads
    try:
        for line in body.split(b"\n"):
            if line and not line.isspace():
                append(loads(line))
        return values, None
    except orjson.JSONDecodeError:
        pass
    try:
        text = body.decode("utf-8")
        cut = False
    except UnicodeDecodeError as exc:  # what comes before the bad byte, then a bad value
        text = body[:exc.start].decode("utf-8")
        cut = True
    values = []
    append = values.append
    decode = _DECODER.raw_decode
    skip = _WHITESPACE.match
    position = 0
    end = len(text)
    while True:
        match = skip(text, position)
        position = match.end() if match else position
        if position >= end:
            break
        try:
            value, position = decode(text, position)
        except ValueError:  # json.JSONDecodeError and NaN/Infinity
            return values, len(values)
        append(value)
    return values, len(values) if cut else None


def _event_time(value: Any) -> float | None:
    kind = type(value)
    if not (kind is float or kind is int or (kind is str and _NUMBER.fullmatch(value))):
        return None  # bool, null, text, objects
    number = float(value)
    return number if math.isfinite(number) else None


def _valid_fields(fields: Any) -> bool:
    if type(fields) is not dict:
        return False
    for value in fields.values():
        if type(value) is str:
            continue
        if type(value) is list and all(type(item) is str for item in value):
            continue
        return False
    return True
