"""The Elasticsearch stand-in's HTTP surface: media types, authentication, routing, rendering
(`filter_path`, `pretty`, gzip), the cluster endpoints and the `/_standin/` control API."""

from __future__ import annotations

import asyncio
import time
import zlib
from typing import Any

import orjson

from siemgate_standins.elasticsearch.documents import _Documents
from siemgate_standins.elasticsearch.filter_path import FilterPath
from siemgate_standins.elasticsearch.protocol import (
    _JSON_MEDIA,
    _PRODUCT,
    _VND_MEDIA,
    EsError,
    _Answer,
    _dumps,
    _flat_error,
    _media_error,
    _media_version,
    _method_not_allowed,
    _Principal,
    _Raw,
    _truthy,
    _uri,
)
from siemgate_standins.http_server import BadBody, DropConnection, Request, Response

# The stand-in


class ElasticsearchStandIn(_Documents):
    """An Elasticsearch 8.x single node as a bulk client sees it (see the package docstring)."""

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
        if first == "_component_template" and count <= 2:
            if count == 1:
                allow("GET", "HEAD")
                return self._component_template_api(request, None)
            allow("GET", "HEAD", "PUT", "POST", "DELETE")
            return self._component_template_api(request, parts[1])
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
