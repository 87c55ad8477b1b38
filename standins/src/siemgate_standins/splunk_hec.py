"""A Splunk HTTP Event Collector stand-in that answers like HEC on the wire.

The sink's tests and benchmarks run against it; `tests/testing/test_splunk_hec_clients.py`
proves it against a published HEC client. Facts: ../shared/reference/protocols.md section 1.

    async with SplunkHecStandIn(tokens=[HecToken("tok", ack=True, indexes=("security",))]) as hec:
        ...send to hec.url + "/services/collector/event"...
        hec.faults.fail_requests(503, 9, count=2)      # the next two event requests: busy
        hec.faults.invalid_events(ids={"evt-3"})        # event.id == "evt-3": code 6 at its index
        hec.faults.lose_acks(1)                         # the next ackId never comes true (data lost)
        await hec.wait_for_events(10)
        hec.events(index="security"), hec.requests, hec.pending_acks

Or its own process: `python -m siemgate_standins.splunk_hec --port 8088 --token TOKEN[:ack]`
(prints its URL as its first line; SIGTERM/SIGINT stop it). Faults and inspection over HTTP:
`GET /_standin/state`, `POST /_standin/faults` (JSON, see `Faults.apply`), `POST /_standin/reset`.

Endpoints: POST /services/collector, /services/collector/event[/1.0] (JSON envelopes, one
after another, whitespace between), POST /services/collector/raw[/1.0] (lines are events,
metadata from the query string), GET|POST /services/collector/health[/1.0] (`?ack=true`),
POST /services/collector/ack. Answers and codes: the table of protocols.md 1.5 (`CODES`).

Choices where the reference leaves a gap (a real Splunk may differ; clients branch on the
HTTP status and `code`, never on `text`):
- A top-level JSON array is not an envelope: `400 {"text":"Invalid data format","code":6,
  "invalid-event-number":0}` (each value in the body must be an object).
- Per-event errors (6, 7, 12, 13, 15) carry `invalid-event-number`, the zero-based index of the
  first bad event. Events before it are indexed unless `index_before_invalid=False`. Except
  code 7: a real Splunk reports one more than the position (Splunk's SC4S docs show a single
  event with a disallowed index answered `"invalid-event-number":1`), so the stand-in adds
  `incorrect_index_number_offset` (default 1; 0 for zero-based like the others).
- `Content-Encoding` other than gzip (e.g. deflate) is not decoded, as Splunk supports gzip only:
  the body is taken as it is, so a deflated JSON body fails with code 6. A body labelled gzip
  that does not gunzip: 400 / code 6.
- A body over `max_body_bytes` is refused by the HTTP server with a bare 413 before it is read;
  one that gunzips to more than `max_decompressed_bytes`, and an injected 413, answer
  `413 {"text":"Request entity too large","code":6}` as several HEC emulators do.
- The channel must be a GUID in its 8-4-4-4-12 form (code 11); without ack it is optional.
- The health endpoint checks a token only when one is sent: unknown 400/21, disabled 400/22.
- Defaults when neither the envelope nor the query string sets them: host `splunk-standin`,
  source `http:standin`, sourcetype `httpevent`, the token's default index, arrival time.
- Unknown path: `404 {"text":"The requested URL was not found on this server.","code":404}`;
  a wrong method: 405 with the same shape.
- Acks: ackIds count from 0 per (token, channel); an ackId is true once its data is indexed,
  `ack_delay_seconds` after the request; `/ack` answers true once and then forgets the id. An
  ackId lost with `lose_acks` stays false forever and its events are never indexed. More than
  `max_pending_acks_per_channel` unanswered ackIds on a channel: 429 / code 27, nothing indexed.
- Injected faults (`fail_requests`, `drop_connections`, `delay_seconds`) apply to event and raw
  requests only, before authentication; `queue_full` answers events 503/9 (after
  authentication) and health 503/18; `ack_unavailable` turns health with `?ack=true` to 19/20.

Loopback test tooling, not a production server.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import dataclasses
import heapq
import itertools
import json
import logging
import math
import re
import ssl
import sys
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

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

log = logging.getLogger("siemgate_standins.splunk_hec")

# protocols.md 1.5: code -> (HTTP status, text). 23-27: newer Splunk, wording unconfirmed.
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


@dataclass(slots=True)
class RequestRecord:
    """One request to a HEC endpoint, as the stand-in saw and answered it."""

    at: float  # time.time() at arrival
    method: str
    path: str
    gzip: bool
    channel: str | None = None
    status: int = 0  # 0: dropped before an answer
    code: int | None = None
    event_count: int = 0  # events parsed from the body
    indexed: int = 0  # events this request put in the index (or will, once its ack comes)
    ack_id: int | None = None
    dropped: bool = False


@dataclass
class InvalidEventRule:
    """Events of a batch that the stand-in refuses as invalid (see `Faults.invalid_events`)."""

    code: int
    ids: frozenset[Hashable] = frozenset()
    id_field: str = "id"
    indexes: frozenset[int] = frozenset()
    where: Callable[[int, Mapping[str, Any]], bool] | None = None
    count: int | None = None  # matches left; None: until cleared

    def matches(self, position: int, envelope: Mapping[str, Any]) -> bool:
        if position in self.indexes:
            return True
        if self.ids:
            value: Any = envelope.get("event")
            for part in self.id_field.split("."):
                if type(value) is not dict:
                    value = _MISSING
                    break
                value = value.get(part, _MISSING)
            if value is not _MISSING and isinstance(value, Hashable):
                with contextlib.suppress(TypeError):
                    if value in self.ids:
                        return True
        return self.where is not None and self.where(position, envelope)

    def snapshot(self) -> dict[str, Any]:
        return {"code": self.code, "ids": sorted(self.ids, key=repr), "id_field": self.id_field,
                "indexes": sorted(self.indexes), "where": self.where is not None, "count": self.count}


@dataclass
class _Failure:
    status: int
    code: int | None
    text: str | None
    retry_after: int | None
    count: int

    def response(self) -> Response:
        headers = [("Retry-After", str(self.retry_after))] if self.retry_after is not None else []
        if self.code is None and self.status == 413:
            return Response.json(413, {"text": self.text or TOO_LARGE_TEXT, "code": 6}, headers)
        if self.code is None:  # e.g. a proxy's 502: no HEC body
            return Response(self.status, (self.text or "Bad Gateway").encode(),
                            [("Content-Type", "text/html"), *headers])
        text = self.text if self.text is not None else CODES.get(self.code, (0, "Error"))[1]
        return Response.json(self.status, {"text": text, "code": self.code}, headers)


class Faults:
    """What the stand-in does wrong on purpose. Set in-process, or over HTTP with `apply`."""

    def __init__(self, tokens: dict[str, HecToken], *, ack_delay_seconds: float = 0.0) -> None:
        self._tokens = tokens
        self._initial_ack_delay = ack_delay_seconds
        self.delay_seconds = 0.0  # every event/raw answer waits this long (after the work is done)
        self.ack_delay_seconds = ack_delay_seconds  # an ackId comes true (its data indexed) this late
        self.queue_full = False  # events 503/9, health 503/18
        self.ack_unavailable = False  # health ?ack=true 503/19 (20 with queue_full)
        self.failures: deque[_Failure] = deque()
        self.rules: list[InvalidEventRule] = []
        self.drops: deque[bool] = deque()  # one per connection to drop: after indexing?
        self.acks_to_lose = 0

    def clear(self) -> None:
        """No fault at all (tokens enabled again; `ack_delay_seconds` back to its initial value)."""
        self.delay_seconds = 0.0
        self.ack_delay_seconds = self._initial_ack_delay
        self.queue_full = False
        self.ack_unavailable = False
        self.failures.clear()
        self.rules.clear()
        self.drops.clear()
        self.acks_to_lose = 0

    def fail_requests(self, status: int, code: int | None = None, count: int = 1, *, text: str | None = None,
                      retry_after: int | None = None) -> None:
        """The next `count` event/raw requests are answered `status` with HEC `code` and its text
        from the table (503/9, 500/8, 429/26, 503/23, 401/2, 403/4 ...), before authentication and
        without indexing anything. 413 without a code answers {"text":"Request entity too large",
        "code":6}; another status without a code answers a non-JSON body, as a proxy would.
        A 2xx status (codes 24, 25: capacity warnings) indexes the data and answers that code.
        Calls queue up: each applies to the requests after the previous one's."""
        if count < 1:
            raise ValueError("count must be at least 1")
        if code is not None and code not in CODES:
            raise ValueError(f"unknown HEC code {code}")
        self.failures.append(_Failure(status, code, text, retry_after, count))

    def invalid_events(self, *, ids: Iterable[Hashable] = (), id_field: str = "id", indexes: Iterable[int] = (),
                       where: Callable[[int, Mapping[str, Any]], bool] | None = None, code: int = 6,
                       count: int | None = None) -> InvalidEventRule:
        """Refuse events of a batch as invalid data: those whose `event.<id_field>` (dotted path into
        the envelope's `event` object) is in `ids`, those at a zero-based position in `indexes`,
        and those `where(position, envelope)` is true for. The request is answered 400 with
        `code` (6, 7, 12, 13 or 15) and `invalid-event-number` = the first such event's position.
        `ids` are repeatable: the same event is refused each time it is re-sent. `count`: how many
        times the rule may fire (None: until `clear`)."""
        if code not in EVENT_CODES:
            raise ValueError(f"an event can be refused with codes {sorted(EVENT_CODES)}, not {code}")
        rule = InvalidEventRule(code=code, ids=frozenset(ids), id_field=id_field, indexes=frozenset(indexes),
                                where=where, count=count)
        self.rules.append(rule)
        return rule

    def drop_connections(self, count: int = 1, *, after_indexing: bool = False) -> None:
        """The next `count` event/raw requests: the connection is closed without an answer, before
        the request is looked at (nothing indexed) or, with `after_indexing`, once it has been
        handled (the data is in, the answer lost: a resend duplicates it)."""
        self.drops.extend([after_indexing] * count)

    def lose_acks(self, count: int = 1) -> None:
        """The next `count` ackIds never come true and their data is never indexed (a failed indexer)."""
        self.acks_to_lose += count

    def disable_token(self, value: str) -> None:
        self._token(value).enabled = False

    def enable_token(self, value: str) -> None:
        self._token(value).enabled = True

    def _token(self, value: str) -> HecToken:
        try:
            return self._tokens[value]
        except KeyError:
            raise ValueError(f"no token {value!r}") from None

    def _take_failure(self) -> _Failure | None:
        if not self.failures:
            return None
        failure = self.failures[0]
        failure.count -= 1
        if failure.count <= 0:
            self.failures.popleft()
        return failure

    def _take_lost_ack(self) -> bool:
        if self.acks_to_lose <= 0:
            return False
        self.acks_to_lose -= 1
        return True

    def _refused(self, position: int, envelope: Mapping[str, Any]) -> int | None:
        for rule in self.rules:
            if rule.matches(position, envelope):
                if rule.count is not None:
                    rule.count -= 1
                    if rule.count <= 0:
                        self.rules.remove(rule)
                return rule.code
        return None

    def snapshot(self) -> dict[str, Any]:
        return {
            "delay_seconds": self.delay_seconds,
            "ack_delay_seconds": self.ack_delay_seconds,
            "queue_full": self.queue_full,
            "ack_unavailable": self.ack_unavailable,
            "fail_requests": [dataclasses.asdict(failure) for failure in self.failures],
            "invalid_events": [rule.snapshot() for rule in self.rules],
            "drop_connections": [{"after_indexing": after} for after in self.drops],
            "lose_acks": self.acks_to_lose,
            "disabled_tokens": sorted(value for value, token in self._tokens.items() if not token.enabled),
        }

    def apply(self, spec: Mapping[str, Any]) -> None:
        """The HTTP form (`POST /_standin/faults`), a JSON object whose keys are applied in order:
        `clear`: true; `delay_seconds`, `ack_delay_seconds`: number; `queue_full`,
        `ack_unavailable`: bool; `fail_requests`: {status, code?, count?, text?, retry_after?} or
        a list of them; `invalid_events`: {ids?, id_field?, indexes?, code?, count?} or a list;
        `drop_connections`: count or {count, after_indexing}; `lose_acks`: count;
        `disable_token`, `enable_token`: a token or a list. Raises ValueError."""
        if not isinstance(spec, Mapping):
            raise ValueError("the faults must be a JSON object")
        for key, value in spec.items():
            if key == "clear":
                if value is True:
                    self.clear()
            elif key in ("delay_seconds", "ack_delay_seconds"):
                setattr(self, key, _number(key, value))
            elif key in ("queue_full", "ack_unavailable"):
                if not isinstance(value, bool):
                    raise ValueError(f"{key} must be true or false")
                setattr(self, key, value)
            elif key == "fail_requests":
                for item in _items(key, value):
                    self.fail_requests(_int(key, item.get("status")), _int_or_none(key, item.get("code")),
                                       _int(key, item.get("count", 1)), text=_str_or_none(key, item.get("text")),
                                       retry_after=_int_or_none(key, item.get("retry_after")))
            elif key == "invalid_events":
                for item in _items(key, value):
                    ids = item.get("ids", [])
                    indexes = item.get("indexes", [])
                    if not isinstance(ids, list) or not isinstance(indexes, list):
                        raise ValueError("invalid_events: ids and indexes must be lists")
                    self.invalid_events(ids=[_hashable(v) for v in ids], id_field=str(item.get("id_field", "id")),
                                        indexes=[_int(key, i) for i in indexes], code=_int(key, item.get("code", 6)),
                                        count=_int_or_none(key, item.get("count")))
            elif key == "drop_connections":
                if isinstance(value, Mapping):
                    self.drop_connections(_int(key, value.get("count", 1)),
                                          after_indexing=bool(value.get("after_indexing", False)))
                else:
                    self.drop_connections(_int(key, value))
            elif key == "lose_acks":
                self.lose_acks(_int(key, value))
            elif key in ("disable_token", "enable_token"):
                for token in value if isinstance(value, list) else [value]:
                    getattr(self, key)(str(token))
            else:
                raise ValueError(f"unknown fault {key!r}")


def _number(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"{key} must be a number >= 0")
    return float(value)


def _int(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{key}: {value!r} is not an integer")
    return value


def _int_or_none(key: str, value: Any) -> int | None:
    return None if value is None else _int(key, value)


def _str_or_none(key: str, value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{key}: {value!r} is not a string")
    return value


def _hashable(value: Any) -> Hashable:
    if isinstance(value, list | dict):
        raise ValueError("invalid_events: ids must be strings or numbers")
    return value  # type: ignore[no-any-return]


def _items(key: str, value: Any) -> list[Mapping[str, Any]]:
    items = value if isinstance(value, list) else [value]
    if not all(isinstance(item, Mapping) for item in items):
        raise ValueError(f"{key} must be an object or a list of objects")
    return items


@dataclass
class _PendingAck:
    ready_at: float  # time.monotonic(); inf when lost
    events: list[dict[str, Any]] | None  # None once indexed (or lost)
    lost: bool = False


@dataclass
class _Channel:
    next_id: int = 0
    pending: dict[int, _PendingAck] = field(default_factory=dict)


class _Refusal(Exception):
    def __init__(self, code: int, **extra: Any) -> None:
        super().__init__(code)
        self.code = code
        self.extra = extra


def answer(code: int, **extra: Any) -> Response:
    """A HEC answer: the status and text of `code` in the table, and `extra` keys."""
    status, text = CODES[code]
    return Response(status, orjson.dumps({"text": text, "code": code, **extra}), _JSON)


class SplunkHecStandIn(HttpStandIn):
    def __init__(self, *, tokens: Iterable[HecToken], host: str = "127.0.0.1", port: int = 0,
                 ssl_context: ssl.SSLContext | None = None, max_body_bytes: int = 1_000_000,
                 max_decompressed_bytes: int | None = None, ack_delay_seconds: float = 0.0,
                 index_before_invalid: bool = True, max_pending_acks_per_channel: int = 1_000_000,
                 keep_events: bool = True, max_requests_kept: int = 100_000,
                 incorrect_index_number_offset: int = 1) -> None:
        """`max_body_bytes`: Splunk's `max_content_length` (version dependent), on the body as sent;
        `max_decompressed_bytes` (default 50 x that) caps a gzip body once inflated.
        `index_before_invalid`: events before an invalid one of a batch are indexed (a real Splunk
        may do so) or not. `keep_events=False` only counts indexed events (long benchmarks).
        `incorrect_index_number_offset`: added to `invalid-event-number` with code 7 (see above)."""
        super().__init__(host=host, port=port, ssl_context=ssl_context, max_body_bytes=max_body_bytes)
        self._initial_tokens = [dataclasses.replace(token) for token in tokens]
        self.tokens: dict[str, HecToken] = {}
        self.max_decompressed_bytes = max_decompressed_bytes or 50 * max_body_bytes
        self.index_before_invalid = index_before_invalid
        self.max_pending_acks_per_channel = max_pending_acks_per_channel
        self.keep_events = keep_events
        self.incorrect_index_number_offset = incorrect_index_number_offset
        self.faults = Faults(self.tokens, ack_delay_seconds=ack_delay_seconds)
        self._events: list[dict[str, Any]] = []
        self._requests: deque[RequestRecord] = deque(maxlen=max_requests_kept)
        self._channels: dict[tuple[str, str], _Channel] = {}
        self._due: list[tuple[float, int, _PendingAck]] = []  # heap of acks still to index
        self._seq = itertools.count()
        self.indexed_total = 0
        self.reset()

    # -- inspection

    def reset(self) -> None:
        """Forget events, requests and acks; clear every fault; tokens as configured."""
        self.tokens.clear()
        self.tokens.update((token.value, dataclasses.replace(token)) for token in self._initial_tokens)
        self.faults.clear()
        self._events = []
        self._requests.clear()
        self._channels.clear()
        self._due.clear()
        self.indexed_total = 0

    def events(self, index: str | None = None) -> list[dict[str, Any]]:
        """Indexed events in arrival order: {time, host, source, sourcetype, index, event, fields,
        channel, ackId} with their final values (ackId None without ack)."""
        self._settle()
        if index is None:
            return list(self._events)
        return [event for event in self._events if event["index"] == index]

    @property
    def requests(self) -> list[RequestRecord]:
        return list(self._requests)

    @property
    def pending_acks(self) -> dict[str, list[int]]:
        """Per channel, the ackIds not yet answered true (still to come, come but not asked, or lost)."""
        self._settle()
        pending: dict[str, list[int]] = {}
        for (_token, channel), state in self._channels.items():
            if state.pending:
                pending.setdefault(channel, []).extend(state.pending)
        return {channel: sorted(ids) for channel, ids in pending.items()}

    def state(self, *, index: str | None = None, with_events: bool = True) -> dict[str, Any]:
        """What `GET /_standin/state` answers."""
        state: dict[str, Any] = {
            "url": self.url,
            "indexed_total": self.indexed_total,
            "requests": [dataclasses.asdict(record) for record in self._requests],
            "pending_acks": self.pending_acks,
            "faults": self.faults.snapshot(),
            "tokens": [dataclasses.asdict(token) for token in self.tokens.values()],
        }
        if with_events:
            state["events"] = self.events(index)
        return state

    async def wait_for_events(self, count: int, *, index: str | None = None, timeout: float = 10.0,
                              interval: float = 0.01) -> list[dict[str, Any]]:
        """Poll until at least `count` events are indexed (in `index`); TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            events = self.events(index)
            if len(events) >= count:
                return events
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{len(events)} events indexed, {count} awaited")
            await asyncio.sleep(interval)

    # -- HTTP

    async def handle(self, request: Request) -> Response:
        path = request.path
        if path in EVENT_PATHS or path in RAW_PATHS:
            return await self._event_request(request, raw=path in RAW_PATHS)
        if path in HEALTH_PATHS:
            return self._health(request) if request.method in ("GET", "POST") else _method_not_allowed("GET, POST")
        if path == ACK_PATH:
            return self._ack(request) if request.method == "POST" else _method_not_allowed("POST")
        if path.startswith("/_standin/"):
            return self._control(request)
        return Response.json(404, {"text": "The requested URL was not found on this server.", "code": 404})

    async def _event_request(self, request: Request, *, raw: bool) -> Response:
        if request.method != "POST":
            return _method_not_allowed("POST")
        faults = self.faults
        record = RequestRecord(at=time.time(), method=request.method, path=request.path, gzip=request.gzipped)
        self._requests.append(record)
        drop_after = False
        if faults.drops:
            drop_after = faults.drops.popleft()
            record.dropped = True
            if not drop_after:
                raise DropConnection
        failure = faults._take_failure()
        if failure is not None and not 200 <= failure.status < 300:
            response = failure.response()
            record.status, record.code = failure.status, failure.code
        else:
            try:
                response = self._accept_events(request, record, raw, failure)
            except _Refusal as refusal:
                response = answer(refusal.code, **refusal.extra)
                record.status, record.code = response.status, refusal.code
            except BodyTooLarge:
                response = Response.json(413, {"text": TOO_LARGE_TEXT, "code": 6})
                record.status, record.code = 413, 6
        if faults.delay_seconds > 0:
            await asyncio.sleep(faults.delay_seconds)
        if drop_after:
            raise DropConnection
        return response

    def _accept_events(self, request: Request, record: RequestRecord, raw: bool, warning: _Failure | None) -> Response:
        token = self._authenticate(request)
        if self.faults.queue_full:
            raise _Refusal(9)
        record.channel = channel = self._channel(request, token)
        try:
            body = request.decoded_body(self.max_decompressed_bytes)
        except BadBody:
            raise _Refusal(6) from None
        if not body or body.isspace():
            raise _Refusal(5)
        if raw:
            text = body.decode("utf-8", "replace")
            values: list[Any] = [{"event": line.rstrip("\r")} for line in text.split("\n") if line.strip()]
            bad_at: int | None = None
        else:
            values, bad_at = parse_envelopes(body)
        record.event_count = len(values) + (bad_at is not None)  # a value that did not parse is one more
        events, refused = self._validate(values, request, token, channel, raw)
        if refused is None and bad_at is not None:
            refused = (bad_at, 6)
        if refused is not None:
            position, code = refused
            if self.index_before_invalid and position:
                del events[position:]
                self._index(events)
                record.indexed = len(events)
            number = position + self.incorrect_index_number_offset if code == 7 else position
            raise _Refusal(code, **{"invalid-event-number": number})
        ack_id: int | None = None
        if token.ack:
            assert channel is not None
            ack_id = self._register_ack(token, channel, events)
        else:
            self._index(events)
        record.indexed = len(events)
        record.ack_id = ack_id
        if warning is not None:  # a 2xx fault: codes 24/25, the data accepted
            code = warning.code if warning.code is not None else 0
            body_value: dict[str, Any] = {"text": warning.text or CODES.get(code, (0, "Success"))[1], "code": code}
            if ack_id is not None:
                body_value["ackId"] = ack_id
            record.status, record.code = warning.status, code
            return Response.json(warning.status, body_value)
        record.status, record.code = 200, 0
        if ack_id is None:
            return Response(200, _SUCCESS, _JSON)
        return Response(200, orjson.dumps({"text": "Success", "code": 0, "ackId": ack_id}), _JSON)

    def _validate(self, values: list[Any], request: Request, token: HecToken, channel: str | None,
                  raw: bool) -> tuple[list[dict[str, Any]], tuple[int, int] | None]:
        """Envelopes -> index records, stopping at the first refused one: (records, (position, code))."""
        query = request.query
        default_host = query["host"][-1] if "host" in query else DEFAULT_HOST
        default_source = query["source"][-1] if "source" in query else DEFAULT_SOURCE
        default_sourcetype = query["sourcetype"][-1] if "sourcetype" in query else DEFAULT_SOURCETYPE
        default_index = query["index"][-1] if "index" in query else token.default_index
        if "time" in query:
            default_time = _event_time(query["time"][-1])
            if default_time is None:
                return [], (0, 6)
        else:
            default_time = time.time()
        allowed = frozenset((*token.indexes, token.default_index)) if token.indexes else None
        rules = self.faults.rules
        records: list[dict[str, Any]] = []
        append = records.append
        for position, envelope in enumerate(values):
            if type(envelope) is not dict:
                return records, (position, 6)
            event = envelope.get("event", _MISSING)
            if event is _MISSING:
                return records, (position, 12)
            if event is None or event == "":
                return records, (position, 13)
            moment = envelope.get("time", _MISSING)
            if moment is _MISSING:
                moment = default_time
            else:
                moment = _event_time(moment)
                if moment is None:
                    return records, (position, 6)
            host = envelope.get("host", default_host)
            source = envelope.get("source", default_source)
            sourcetype = envelope.get("sourcetype", default_sourcetype)
            index = envelope.get("index", default_index)
            if type(host) is not str or type(source) is not str or type(sourcetype) is not str \
                    or type(index) is not str:
                return records, (position, 6)
            fields = envelope.get("fields", _MISSING) if not raw else _MISSING
            if fields is _MISSING:
                fields = {}
            elif not _valid_fields(fields):
                return records, (position, 15)
            if allowed is not None and index not in allowed:
                return records, (position, 7)
            if rules:
                code = self.faults._refused(position, envelope)
                if code is not None:
                    return records, (position, code)
            append({"time": moment, "host": host, "source": source, "sourcetype": sourcetype, "index": index,
                    "event": event, "fields": fields, "channel": channel, "ackId": None})
        return records, None

    def _authenticate(self, request: Request) -> HecToken:
        header = request.headers.get("authorization")
        from_query = False
        if header is not None and header.strip():
            scheme, _, credentials = header.strip().partition(" ")
            scheme = scheme.lower()
            credentials = credentials.strip()
            if scheme == "splunk":
                value = credentials
            elif scheme == "basic":
                try:
                    decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
                except (binascii.Error, UnicodeDecodeError):
                    raise _Refusal(3) from None
                _user, colon, value = decoded.partition(":")
                if not colon:
                    raise _Refusal(3)
            else:
                raise _Refusal(3)
        else:
            value = request.param("token") or ""
            from_query = True
        if not value:
            raise _Refusal(2)
        token = self.tokens.get(value)
        if token is None:
            raise _Refusal(4)
        if not token.enabled:
            raise _Refusal(1)
        if from_query and not token.query_string_auth:
            raise _Refusal(16)
        return token

    @staticmethod
    def _channel(request: Request, token: HecToken) -> str | None:
        channel = request.headers.get("x-splunk-request-channel") or request.param("channel")
        if channel:
            if not _GUID.fullmatch(channel):
                raise _Refusal(11)
            return channel
        if token.ack:
            raise _Refusal(10)
        return None

    # -- indexer acknowledgement

    def _index(self, events: list[dict[str, Any]]) -> None:
        self.indexed_total += len(events)
        if self.keep_events:
            self._events.extend(events)

    def _register_ack(self, token: HecToken, channel: str, events: list[dict[str, Any]]) -> int:
        state = self._channels.get((token.value, channel))
        if state is None:
            state = self._channels[(token.value, channel)] = _Channel()
        if len(state.pending) >= self.max_pending_acks_per_channel:
            raise _Refusal(27)
        ack_id = state.next_id
        state.next_id += 1
        for event in events:
            event["ackId"] = ack_id
        if self.faults._take_lost_ack():
            state.pending[ack_id] = _PendingAck(math.inf, None, lost=True)
            return ack_id
        delay = self.faults.ack_delay_seconds
        if delay <= 0:
            self._index(events)
            state.pending[ack_id] = _PendingAck(time.monotonic(), None)
        else:
            pending = _PendingAck(time.monotonic() + delay, events)
            state.pending[ack_id] = pending
            heapq.heappush(self._due, (pending.ready_at, next(self._seq), pending))
        return ack_id

    def _settle(self) -> None:
        """Index the data of every ackId whose delay has passed."""
        now = time.monotonic()
        due = self._due
        while due and due[0][0] <= now:
            pending = heapq.heappop(due)[2]
            if pending.events is not None:
                self._index(pending.events)
                pending.events = None

    def _ack(self, request: Request) -> Response:
        record = RequestRecord(at=time.time(), method=request.method, path=request.path, gzip=request.gzipped)
        self._requests.append(record)
        try:
            token = self._authenticate(request)
            if not token.ack:
                raise _Refusal(14)
            record.channel = channel = self._channel(request, token)
            assert channel is not None
            try:
                body = request.decoded_body(self.max_decompressed_bytes)
            except (BadBody, BodyTooLarge):
                raise _Refusal(6) from None
            if not body or body.isspace():
                raise _Refusal(5)
            try:
                query = orjson.loads(body)
            except orjson.JSONDecodeError:
                raise _Refusal(6) from None
            ids = query.get("acks") if type(query) is dict else None
            if type(ids) is not list or not all(type(i) is int for i in ids):
                raise _Refusal(6)
        except _Refusal as refusal:
            record.status, record.code = CODES[refusal.code][0], refusal.code
            return answer(refusal.code)
        self._settle()
        now = time.monotonic()
        state = self._channels.get((token.value, channel))
        result: dict[str, bool] = {}
        for ack_id in ids:
            pending = state.pending.get(ack_id) if state is not None else None
            done = pending is not None and not pending.lost and pending.ready_at <= now
            if done and state is not None:
                del state.pending[ack_id]  # true once, then forgotten
            result[str(ack_id)] = done
        record.status, record.event_count = 200, len(ids)
        return Response.json(200, {"acks": result})

    # -- health

    def _health(self, request: Request) -> Response:
        record = RequestRecord(at=time.time(), method=request.method, path=request.path, gzip=request.gzipped)
        self._requests.append(record)
        code = self._health_code(request)
        record.status, record.code = CODES[code][0], code
        return answer(code)

    def _health_code(self, request: Request) -> int:
        if request.headers.get("authorization", "").strip() or request.param("token"):
            try:
                self._authenticate(request)
            except _Refusal as refusal:
                if refusal.code == 1:
                    return 22
                if refusal.code != 16:  # a known token sent in the query string: its status is what is asked
                    return 21
        ack = (request.param("ack") or "").lower() == "true" and self.faults.ack_unavailable
        if self.faults.queue_full:
            return 20 if ack else 18
        return 19 if ack else 17

    # -- control

    def _control(self, request: Request) -> Response:
        path = request.path
        if path == "/_standin/state" and request.method == "GET":
            with_events = (request.param("events") or "true").lower() not in ("false", "0", "no")
            return Response.json(200, self.state(index=request.param("index"), with_events=with_events))
        if path == "/_standin/reset" and request.method == "POST":
            self.reset()
            return Response.json(200, {"reset": True})
        if path == "/_standin/faults" and request.method == "POST":
            try:
                spec = orjson.loads(request.decoded_body()) if request.body.strip() else {}
                self.faults.apply(spec)
            except (ValueError, BadBody) as exc:  # orjson.JSONDecodeError is a ValueError
                return Response.json(400, {"error": str(exc)})
            return Response.json(200, {"faults": self.faults.snapshot()})
        if path in ("/_standin/state", "/_standin/reset", "/_standin/faults"):
            return _method_not_allowed("GET" if path == "/_standin/state" else "POST")
        return Response.json(404, {"error": f"no {path}"})


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


# ------------------------------------------------------------------------------------------
# Command line


def token_spec(text: str) -> HecToken:
    """`TOKEN[:ack][:qs][:disabled][:index=NAME][:indexes=A,B]` -> HecToken."""
    value, *options = text.split(":")
    if not value:
        raise argparse.ArgumentTypeError(f"{text!r}: no token")
    token = HecToken(value)
    for option in options:
        name, _, argument = option.partition("=")
        if name == "ack" and not argument:
            token.ack = True
        elif name == "qs" and not argument:
            token.query_string_auth = True
        elif name == "disabled" and not argument:
            token.enabled = False
        elif name == "index" and argument:
            token.default_index = argument
        elif name == "indexes" and argument:
            token.indexes = tuple(part for part in argument.split(",") if part)
        else:
            raise argparse.ArgumentTypeError(f"{text!r}: unknown option {option!r} "
                                             "(ack, qs, disabled, index=NAME, indexes=A,B)")
    return token


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8088, help="listen port (default 8088; 0: a free port)")
    parser.add_argument("--token", dest="tokens", type=token_spec, action="append", required=True,
                        metavar="TOKEN[:ack][:qs][:disabled][:index=NAME][:indexes=A,B]",
                        help="a HEC token (repeat for more): with indexer acknowledgement, query-string "
                             "authorization, disabled, its default index, its allowed indexes")
    parser.add_argument("--max-body-bytes", type=int, default=1_000_000,
                        help="HEC max_content_length: larger bodies are answered 413 (default 1000000)")
    parser.add_argument("--ack-delay", type=float, default=0.0, metavar="SECONDS",
                        help="an ackId comes true this long after its request (default 0)")
    parser.add_argument("--index-before-invalid", action=argparse.BooleanOptionalAction, default=True,
                        help="index the events before an invalid one of a batch (default yes)")
    parser.add_argument("--keep-events", action=argparse.BooleanOptionalAction, default=True,
                        help="keep indexed events for inspection, or only count them (default keep)")
    parser.add_argument("--certfile", help="serve HTTPS with this certificate chain (PEM)")
    parser.add_argument("--keyfile", help="the certificate's private key (PEM)")


def from_arguments(args: argparse.Namespace) -> SplunkHecStandIn:
    context: ssl.SSLContext | None = None
    if args.certfile:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.certfile, args.keyfile)
    return SplunkHecStandIn(tokens=args.tokens, host=args.host, port=args.port, ssl_context=context,
                            max_body_bytes=args.max_body_bytes, ack_delay_seconds=args.ack_delay,
                            index_before_invalid=args.index_before_invalid, keep_events=args.keep_events)


async def serve(args: argparse.Namespace) -> None:
    """Serve until SIGTERM or SIGINT; the URL is printed (and flushed) as the first line of stdout."""
    standin = from_arguments(args)
    await standin.serve_until_signalled()
    log.info("stopped after %d requests, %d events indexed", len(standin.requests), standin.indexed_total)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m siemgate_standins.splunk_hec`: a Splunk HEC stand-in in its own process."""
    parser = argparse.ArgumentParser(prog="python -m siemgate_standins.splunk_hec", description=main.__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    return run_main(lambda: serve(args))


if __name__ == "__main__":
    sys.exit(main())
