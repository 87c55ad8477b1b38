"""The Splunk HEC stand-in: event and raw requests, tokens and channels, indexer acknowledgement,
health, the `/_standin/` control API, and what tests inspect."""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import heapq
import itertools
import math
import ssl
import time
from collections import deque
from collections.abc import Iterable
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
)
from siemgate_standins.splunk_hec.faults import Faults, _Failure
from siemgate_standins.splunk_hec.protocol import (
    _GUID,
    _JSON,
    _MISSING,
    _SUCCESS,
    ACK_PATH,
    CODES,
    DEFAULT_HOST,
    DEFAULT_SOURCE,
    DEFAULT_SOURCETYPE,
    EVENT_PATHS,
    HEALTH_PATHS,
    RAW_PATHS,
    TOO_LARGE_TEXT,
    HecToken,
    _event_time,
    _method_not_allowed,
    _Refusal,
    _valid_fields,
    answer,
    parse_envelopes,
)


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
class _PendingAck:
    ready_at: float  # time.monotonic(); inf when lost
    events: list[dict[str, Any]] | None  # None once indexed (or lost)
    lost: bool = False


@dataclass
class _Channel:
    next_id: int = 0
    pending: dict[int, _PendingAck] = field(default_factory=dict)


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
