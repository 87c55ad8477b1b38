"""The faults the Splunk HEC stand-in injects (`hec.faults`, `POST /_standin/faults`)."""

from __future__ import annotations

import contextlib
import dataclasses
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from siemgate_standins.http_server import (
    Response,
)
from siemgate_standins.splunk_hec.protocol import _MISSING, CODES, EVENT_CODES, TOO_LARGE_TEXT, HecToken


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
