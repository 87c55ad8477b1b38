"""The Elasticsearch stand-in's state: indices, data streams, index templates, the records of
the requests, the credentials; what tests inspect (`documents`, `counts`, `state` ...)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import contextlib
import re
import secrets
import ssl
import time
from collections.abc import Mapping
from typing import Any, Final

import orjson

from siemgate_standins.elasticsearch.faults import BulkRecord, Faults
from siemgate_standins.elasticsearch.filter_path import FilterPath
from siemgate_standins.elasticsearch.mapping import _compile_mapping, _merge_mappings, _ObjectMapping
from siemgate_standins.elasticsearch.protocol import _EMPTY, _WWW_AUTHENTICATE, EsError, _Principal, _uri
from siemgate_standins.http_server import HttpStandIn, Request

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
    __slots__ = ("created", "ilm_policy", "indices", "lifecycle", "name", "template")

    def __init__(self, name: str, template: str, first: _Index, ilm_policy: str | None = None,
                 lifecycle: Mapping[str, Any] | None = None) -> None:
        self.name = name
        self.template = template
        self.ilm_policy = ilm_policy
        self.lifecycle = dict(lifecycle) if lifecycle is not None else None
        self.indices = [first]
        self.created = time.time()


class _Template:
    __slots__ = ("body", "composed_of", "data_stream", "mapping", "mappings_raw", "name", "patterns", "priority",
                 "regexes")

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
        composed = body.get("composed_of") or []
        self.composed_of: tuple[str, ...] = tuple(c for c in composed if isinstance(c, str))

    def matches(self, name: str) -> bool:
        return any(regex.fullmatch(name) for regex in self.regexes)


_TEMPLATE_KEYS: Final = frozenset({"index_patterns", "template", "composed_of", "priority", "version", "_meta",
                                   "data_stream", "allow_auto_create", "ignore_missing_component_templates",
                                   "deprecated"})
_TEMPLATE_TEMPLATE_KEYS: Final = frozenset({"settings", "mappings", "aliases", "lifecycle", "data_stream_options"})


def _builtin_component_templates() -> dict[str, dict[str, Any]]:
    """The component templates the built-in data stream templates are composed of, as a default
    8.x cluster installs them (mappings reduced to what the stand-in checks: `@timestamp` and the
    `data_stream.*` constant_keywords; ecs@mappings' dynamic templates left out, the stand-in maps
    nothing dynamically)."""
    out: dict[str, dict[str, Any]] = {}
    meta = {"managed": True}
    for name in ("logs", "metrics", "synthetics"):
        out[f"{name}@mappings"] = {
            "template": {"mappings": {"date_detection": False, "properties": {
                "@timestamp": {"type": "date"},
                "data_stream.type": {"type": "constant_keyword", "value": name},
                "data_stream.dataset": {"type": "constant_keyword"},
                "data_stream.namespace": {"type": "constant_keyword"},
            }}},
            "version": 1,
            "_meta": {"description": f"default mappings for the {name} index template installed by x-pack", **meta},
        }
        index: dict[str, Any] = {"lifecycle": {"name": name}, "codec": "best_compression"}
        if name == "logs":
            index["mapping"] = {"ignore_malformed": True, "total_fields": {"ignore_dynamic_beyond_limit": True}}
            index["default_pipeline"] = "logs@default-pipeline"
        out[f"{name}@settings"] = {
            "template": {"settings": {"index": index}},
            "version": 1,
            "_meta": {"description": f"default settings for the {name} index template installed by x-pack", **meta},
        }
    out["ecs@mappings"] = {"template": {"mappings": {"dynamic_templates": []}}, "version": 1,
                           "_meta": {"description": "dynamic mappings based on ECS, installed by x-pack", **meta}}
    return out


def flat_settings(settings: Mapping[str, Any] | None, prefix: str = "") -> dict[str, Any]:
    """Index settings as `index.*` dotted keys, whether given nested or dotted."""
    out: dict[str, Any] = {}
    for key, value in (settings or {}).items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flat_settings(value, f"{path}."))
        else:
            out[path if path.startswith("index.") else f"index.{path}"] = value
    return out


def nested_index_settings(flat: Mapping[str, Any]) -> dict[str, Any]:
    """`index.*` dotted settings as the object under `settings.index` in a GET answer."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        parts = key.removeprefix("index.").split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            node = child if isinstance(child, dict) else node
        node[parts[-1]] = value if isinstance(value, str) else orjson.dumps(value).decode().strip('"')
    return out


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


class _Store(HttpStandIn):
    """The stand-in's state and credentials, and what tests inspect."""

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
        self._component_templates: dict[str, dict[str, Any]] = {}
        if self.builtin_templates:
            self._component_templates.update(_builtin_component_templates())
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
    def component_templates(self) -> dict[str, dict[str, Any]]:
        """Component templates by name, bodies as stored (the built-in ones included)."""
        return dict(self._component_templates)

    def resolved(self, template: _Template) -> tuple[dict[str, Any], dict[str, Any], Mapping[str, Any] | None]:
        """What an index created from `template` gets, as Elasticsearch composes it: the mappings
        and the settings (`index.*` dotted keys) of its `composed_of` component templates in
        order (missing ones skipped, as `ignore_missing_component_templates` allows), then its
        own; and its data stream lifecycle (`template.lifecycle`), if any."""
        mappings: dict[str, Any] = {}
        settings: dict[str, Any] = {}
        lifecycle: Mapping[str, Any] | None = None
        parts = [self._component_templates.get(name, {}).get("template") or {} for name in template.composed_of]
        parts.append(template.body.get("template") or {})
        for part in parts:
            mappings = _merge_mappings(mappings, part.get("mappings"))
            settings.update(flat_settings(part.get("settings")))
            if isinstance(part.get("lifecycle"), Mapping):
                lifecycle = part["lifecycle"]
        return mappings, settings, lifecycle

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

    def _record(self, request: Request, status: int, item_statuses: list[int]) -> None:
        self.bulk_requests.append(BulkRecord(request.path, {k: list(v) for k, v in request.query.items()},
                                             request.gzipped, len(request.body), status, item_statuses))

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

    @staticmethod
    def _data_stream_summary(stream: _DataStream) -> dict[str, Any]:
        return {"name": stream.name, "template": stream.template, "generation": len(stream.indices),
                "indices": [index.name for index in stream.indices], "ilm_policy": stream.ilm_policy,
                "lifecycle": stream.lifecycle, "settings": stream.indices[-1].settings}
