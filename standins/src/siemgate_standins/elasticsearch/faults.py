"""The faults the Elasticsearch stand-in injects (`es.faults`, `POST /_standin/faults`), and the
record it keeps of each bulk request."""

from __future__ import annotations

import collections
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

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
