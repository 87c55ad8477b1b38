"""The Elasticsearch stand-in's writes: `_bulk` (NDJSON, actions, versions, faults per item) and
the single-document APIs."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson

from siemgate_standins.elasticsearch.catalog import _Catalog
from siemgate_standins.elasticsearch.faults import _ITEM_FAULTS, _REQUEST_FAULTS, _Failure
from siemgate_standins.elasticsearch.mapping import Cause, _check_document
from siemgate_standins.elasticsearch.protocol import (
    _COMMON_PARAMS,
    _NOOP_SHARDS,
    _SHARDS,
    EsError,
    _Answer,
    _bad,
    _deep_merge,
    _dumps,
    _index_not_found,
    _Principal,
    _text,
    _token,
    _truthy,
)
from siemgate_standins.elasticsearch.state import _DataStream, _Index, _invalid_index_name
from siemgate_standins.http_server import BadBody, BodyTooLarge, Request

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


@dataclass(slots=True)
class _Op:
    action: str  # index, create, update, delete
    meta: dict[str, Any]
    source: bytes | None
    line: int
    index: str
    doc_id: str | None
    update: dict[str, Any] | None = None


class _Documents(_Catalog):
    """`_bulk` and the single-document writes."""

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
        index = self._new_index(name, template)
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
        duplicate = _duplicate_key(source, doc)
        if duplicate is not None:
            # Jackson's STRICT_DUPLICATE_DETECTION, always on since Elasticsearch 7.
            return self._item_error(action, index.name, doc_id, 400, {
                "type": "document_parsing_exception",
                "reason": f"[1:{len(source)}] failed to parse: Duplicate field '{duplicate}'",
                "caused_by": {"type": "json_parse_exception", "reason": f"Duplicate field '{duplicate}'"}})
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
        return _Documents._item_error(op.action, index.name, doc_id, 409, {
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


def _duplicate_key(source: bytes, doc: object) -> str | None:
    """A key `source` names twice in one of its objects (which Elasticsearch refuses: `Duplicate
    field`), or None. Counted first, as cheaply as the sink's bytes allow: each key ends with
    `":` in `source` and in `doc` written again (compact, `"` as `\\"`), so equal counts of a text
    without white space before a colon or `\\u0022` mean no key twice; otherwise parsed again,
    keeping every pair."""
    if b'" ' not in source and b'"\n' not in source and b'"\t' not in source and b'"\r' not in source and (
            b"\\u0022" not in source):
        try:
            if source.count(b'":') == orjson.dumps(doc).count(b'":'):
                return None
        except TypeError:  # an integer beyond 64 bits: parsed again below
            pass
    found: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [key for key, _ in items]
        if not found and len(set(keys)) != len(keys):
            found.append(next(key for i, key in enumerate(keys) if key in keys[:i]))
        return dict(items)

    try:
        json.loads(source, object_pairs_hook=pairs)
    except ValueError:
        return None
    return found[0] if found else None
