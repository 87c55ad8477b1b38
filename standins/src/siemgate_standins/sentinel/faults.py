"""The faults the Sentinel stand-in injects (`standin.faults`, `POST /_standin/faults`)."""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from siemgate_standins.http_server import Response
from siemgate_standins.sentinel.protocol import aad_error, azure_error

_DEFAULT_CODES = {400: "InvalidPayload", 401: "InvalidToken", 403: "OperationFailed", 404: "NotFound",
                  413: "ContentLengthLimitExceeded", 429: "TooManyRequests", 500: "InternalServerError",
                  503: "ServiceUnavailable"}


@dataclass
class Failure:
    status: int
    count: int
    code: str | None = None
    message: str | None = None
    retry_after: int | None = None

    def ingestion_response(self) -> Response:
        headers = [("Retry-After", str(self.retry_after))] if self.retry_after is not None else []
        code = self.code or _DEFAULT_CODES.get(self.status, "Error")
        return azure_error(self.status, code, self.message or f"Injected failure ({self.status}).", headers)

    def token_response(self) -> Response:
        headers = [("Retry-After", str(self.retry_after))] if self.retry_after is not None else []
        if self.status == 429 or self.status >= 500:
            return aad_error(self.status, "temporarily_unavailable", 50196,
                             self.message or "The server is temporarily unavailable.", headers)
        return aad_error(self.status, self.code or "invalid_client", 7000215,
                         self.message or "Invalid client secret provided.", headers)


@dataclass
class RowRule:
    """Rows the stand-in refuses: a call holding one is answered 400, nothing of it ingested."""

    values: frozenset[Hashable]
    column: str = "EventId"
    code: str = "InvalidPayload"
    message: str = "The request contains a record that cannot be processed."
    count: int | None = None  # calls it may refuse; None: until cleared


class Faults:
    """What the stand-in does wrong on purpose. Set in-process, or over HTTP with `apply`."""

    def __init__(self) -> None:
        self.delay_seconds = 0.0  # every ingestion answer waits this long (after the work is done)
        self.failures: deque[Failure] = deque()  # ingestion calls, before authentication
        self.token_failures: deque[Failure] = deque()
        self.rules: list[RowRule] = []
        self.drops: deque[bool] = deque()  # one per ingestion call to drop: after ingesting?

    def clear(self) -> None:
        self.delay_seconds = 0.0
        self.failures.clear()
        self.token_failures.clear()
        self.rules.clear()
        self.drops.clear()

    def fail_requests(self, status: int, count: int = 1, *, code: str | None = None, message: str | None = None,
                      retry_after: int | None = None) -> None:
        """The next `count` ingestion calls are answered `status` with Azure's error shape
        (`code`, default per status: 429 TooManyRequests, 503 ServiceUnavailable ...) and
        `Retry-After` when given, before authentication, nothing ingested. Calls queue up."""
        if count < 1:
            raise ValueError("count must be at least 1")
        self.failures.append(Failure(status, count, code, message, retry_after))

    def fail_tokens(self, status: int, count: int = 1, *, retry_after: int | None = None,
                    message: str | None = None) -> None:
        """The next `count` token requests are answered `status` (429/5xx: temporarily_unavailable;
        others: invalid_client)."""
        if count < 1:
            raise ValueError("count must be at least 1")
        self.token_failures.append(Failure(status, count, None, message, retry_after))

    def refuse_rows(self, values: Iterable[Hashable], *, column: str = "EventId", code: str = "InvalidPayload",
                    message: str | None = None, count: int | None = None) -> RowRule:
        """A call with a row whose `column` is in `values` is refused whole: 400 with `code`
        (the answer says not which row, as Azure's does not)."""
        rule = RowRule(frozenset(values), column, code, message or RowRule.message, count)
        self.rules.append(rule)
        return rule

    def drop_connections(self, count: int = 1, *, after_ingesting: bool = False) -> None:
        """The next `count` ingestion calls: the connection is closed without an answer, before
        anything is looked at or, with `after_ingesting`, once the rows are in (a resend duplicates them)."""
        self.drops.extend([after_ingesting] * count)

    @staticmethod
    def _take(queue: deque[Failure]) -> Failure | None:
        if not queue:
            return None
        failure = queue[0]
        failure.count -= 1
        if failure.count <= 0:
            queue.popleft()
        return failure

    def _refused(self, rows: list[Any]) -> RowRule | None:
        for rule in self.rules:
            if any(isinstance(row, dict) and _hashable(row.get(rule.column)) in rule.values for row in rows):
                if rule.count is not None:
                    rule.count -= 1
                    if rule.count <= 0:
                        self.rules.remove(rule)
                return rule
        return None

    def snapshot(self) -> dict[str, Any]:
        return {
            "delay_seconds": self.delay_seconds,
            "fail_requests": [dataclasses.asdict(f) for f in self.failures],
            "fail_tokens": [dataclasses.asdict(f) for f in self.token_failures],
            "refuse_rows": [{"values": sorted(map(str, r.values)), "column": r.column, "code": r.code,
                             "count": r.count} for r in self.rules],
            "drop_connections": [{"after_ingesting": after} for after in self.drops],
        }

    def apply(self, spec: Mapping[str, Any]) -> None:
        """The HTTP form, a JSON object applied key by key: `clear`: true; `delay_seconds`;
        `fail_requests`: {status, count?, code?, message?, retry_after?} or a list; `fail_tokens`:
        {status, count?, retry_after?} or a list; `refuse_rows`: {values, column?, code?, count?}
        or a list; `drop_connections`: count or {count, after_ingesting}. Raises ValueError."""
        if not isinstance(spec, Mapping):
            raise ValueError("the faults must be a JSON object")
        for key, value in spec.items():
            if key == "clear":
                if value is True:
                    self.clear()
            elif key == "delay_seconds":
                if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                    raise ValueError("delay_seconds must be a number >= 0")
                self.delay_seconds = float(value)
            elif key in ("fail_requests", "fail_tokens"):
                for item in _items(key, value):
                    status, count = _int(key, item.get("status")), _int(key, item.get("count", 1))
                    after = item.get("retry_after")
                    retry_after = None if after is None else _int(key, after)
                    if key == "fail_requests":
                        self.fail_requests(status, count, code=item.get("code"), message=item.get("message"),
                                           retry_after=retry_after)
                    else:
                        self.fail_tokens(status, count, retry_after=retry_after, message=item.get("message"))
            elif key == "refuse_rows":
                for item in _items(key, value):
                    values = item.get("values")
                    if not isinstance(values, list):
                        raise ValueError("refuse_rows: values must be a list")
                    limit = item.get("count")
                    self.refuse_rows([_hashable(v) for v in values], column=str(item.get("column", "EventId")),
                                     code=str(item.get("code", "InvalidPayload")),
                                     count=None if limit is None else _int(key, limit))
            elif key == "drop_connections":
                if isinstance(value, Mapping):
                    self.drop_connections(_int(key, value.get("count", 1)),
                                          after_ingesting=bool(value.get("after_ingesting", False)))
                else:
                    self.drop_connections(_int(key, value))
            else:
                raise ValueError(f"unknown fault {key!r}")


def _int(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{key}: {value!r} is not an integer")
    return value


def _hashable(value: Any) -> Hashable:
    return value if isinstance(value, str | int | float | bool) or value is None else repr(value)


def _items(key: str, value: Any) -> list[Mapping[str, Any]]:
    items = value if isinstance(value, list) else [value]
    if not all(isinstance(item, Mapping) for item in items):
        raise ValueError(f"{key} must be an object or a list of objects")
    return items
