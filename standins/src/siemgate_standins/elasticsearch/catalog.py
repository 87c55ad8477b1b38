"""The Elasticsearch stand-in's index, index template and data stream APIs, document reads and
search."""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Mapping
from typing import Any

import orjson

from siemgate_standins.elasticsearch.mapping import _compile_mapping, _merge_mappings
from siemgate_standins.elasticsearch.protocol import (
    EsError,
    _Answer,
    _bad,
    _index_not_found,
    _non_negative,
    _patterns_overlap,
    _token,
    _truthy,
    _wildcard,
)
from siemgate_standins.elasticsearch.query import _compile_query
from siemgate_standins.elasticsearch.state import (
    _TEMPLATE_KEYS,
    _TEMPLATE_TEMPLATE_KEYS,
    _DataStream,
    _Index,
    _invalid_index_name,
    _Store,
    _Template,
    flat_settings,
    nested_index_settings,
)
from siemgate_standins.http_server import BadBody, Request


class _Catalog(_Store):
    """Indices, index templates, data streams; document reads and search."""

    def _get_doc(self, target: str, doc_id: str) -> _Answer:
        if target in self._data_streams:
            raise _bad(f"The provided expression [{target}] matches a data stream, specify the corresponding concrete "
                       "indices instead.")
        index = self._indices.get(target)
        if index is None:
            raise _index_not_found(target)
        entry = index.docs.get(doc_id)
        if entry is None:
            return _Answer(404, {"_index": index.name, "_id": doc_id, "found": False})
        version, seq_no, source = entry
        return _Answer(200, {"_index": index.name, "_id": doc_id, "_version": version, "_seq_no": seq_no,
                             "_primary_term": 1, "found": True,
                             "_source": orjson.loads(source) if source is not None else {}})

    # -- indices

    def _new_index(self, name: str, template: _Template | None, mappings: Mapping[str, Any] | None = None,
                   settings: Mapping[str, Any] | None = None, data_stream: str | None = None) -> _Index:
        """An index as Elasticsearch creates it: the matching template composed with its component
        templates, then the request's own mappings and settings; `index.mapping.ignore_malformed`
        applies to every field that does not set its own."""
        base_mappings, base_settings, _ = self.resolved(template) if template is not None else ({}, {}, None)
        merged = _merge_mappings(base_mappings, mappings)
        flat = {**base_settings, **flat_settings(settings)}
        ignore_malformed = flat.get("index.mapping.ignore_malformed") in (True, "true")
        compiled = _compile_mapping(merged, timestamp=data_stream is not None, ignore_malformed=ignore_malformed)
        return _Index(name, merged, compiled, nested_index_settings(flat), data_stream=data_stream)

    def _index_api(self, request: Request, name: str) -> _Answer:
        method = request.method
        if method == "PUT":
            return self._create_index(request, name)
        if method == "DELETE":
            deleted = []
            for part in name.split(","):
                if part in self._data_streams:
                    raise _bad(f"The provided expression [{part}] matches a data stream, specify the corresponding "
                               "concrete indices instead.")
                index = self._indices.get(part)
                if index is None:
                    raise _index_not_found(part)
                if index.data_stream is not None:
                    raise _bad(f"index [{part}] is the write index for data stream [{index.data_stream}] and cannot be "
                               "deleted")
                deleted.append(part)
            for part in deleted:
                del self._indices[part]
            return _Answer(200, {"acknowledged": True})
        indices = self._read_indices(name)
        if method == "HEAD":
            return _Answer(200 if indices else 404, None)
        return _Answer(200, {index.name: {"aliases": {}, "mappings": index.mappings_raw,
                                          "settings": {"index": {"uuid": index.uuid, "number_of_shards": "1",
                                                                 "number_of_replicas": "0",
                                                                 "provided_name": index.name,
                                                                 "creation_date": str(int(index.created * 1000)),
                                                                 **index.settings}},
                                          **({"data_stream": index.data_stream} if index.data_stream else {})}
                             for index in indices})

    def _create_index(self, request: Request, name: str) -> _Answer:
        problem = _invalid_index_name(name)
        if problem is not None:
            raise EsError(400, "invalid_index_name_exception", f"Invalid index name [{name}], {problem}",
                          extra={"index_uuid": "_na_", "index": name})
        if name in self._indices or name in self._data_streams:
            existing = self._indices.get(name)
            raise EsError(400, "resource_already_exists_exception",
                          f"index [{name}/{existing.uuid if existing else '_na_'}] already exists",
                          extra={"index_uuid": existing.uuid if existing else "_na_", "index": name})
        body = self._json_body(request)
        unknown = set(body) - {"settings", "mappings", "aliases"}
        if unknown:
            raise EsError(400, "x_content_parse_exception",
                          f"[1:2] unknown key [{sorted(unknown)[0]}] for create index")
        template = self._match_template(name)
        if template is not None and template.data_stream:
            raise _bad(f"cannot create index with name [{name}], because it matches with template [{template.name}] "
                       "that creates data streams only, use create data stream api instead")
        index = self._new_index(name, template, body.get("mappings"), body.get("settings"))
        self._indices[name] = index
        return _Answer(200, {"acknowledged": True, "shards_acknowledged": True, "index": name})

    def _read_indices(self, target: str | None) -> list[_Index]:
        """The indices a read request names (comma list, wildcards, data streams, `_all`)."""
        if target is None or target in ("_all", "*"):
            return list(self._indices.values())
        out: list[_Index] = []
        for part in target.split(","):
            if "*" in part:
                regex = re.compile(".*".join(re.escape(p) for p in part.split("*")))
                for name, ds in self._data_streams.items():
                    if regex.fullmatch(name):
                        out.extend(ds.indices)
                for name, index in self._indices.items():
                    if regex.fullmatch(name) and (not name.startswith(".") or part.startswith(".")):
                        out.append(index)
            elif part in self._data_streams:
                out.extend(self._data_streams[part].indices)
            elif part in self._indices:
                out.append(self._indices[part])
            else:
                raise _index_not_found(part)
        unique: dict[str, _Index] = {index.name: index for index in out}
        return list(unique.values())

    # -- search

    def _search(self, request: Request, target: str | None, *, count_only: bool) -> _Answer:
        started = time.perf_counter()
        indices = self._read_indices(target)
        body = self._json_body(request)
        query = body.get("query", {"match_all": {}})
        matcher = _compile_query(query)
        if count_only:
            total = sum(1 for index in indices for doc_id, entry in index.docs.copy().items()
                        if matcher(index, doc_id, entry))
            return _Answer(200, {"count": total, "_shards": {"total": len(indices), "successful": len(indices),
                                                              "skipped": 0, "failed": 0}})
        size = _non_negative("size", request.param("size") or body.get("size", 10))
        start = _non_negative("from", request.param("from") or body.get("from", 0))
        hits = []
        total = 0
        for index in indices:
            for doc_id, entry in index.docs.copy().items():
                if matcher(index, doc_id, entry):
                    if start <= total < start + size:
                        hits.append({"_index": index.name, "_id": doc_id, "_score": 1.0,
                                     "_source": orjson.loads(entry[2]) if entry[2] is not None else {}})
                    total += 1
        return _Answer(200, {"took": int((time.perf_counter() - started) * 1000), "timed_out": False,
                             "_shards": {"total": len(indices), "successful": len(indices), "skipped": 0, "failed": 0},
                             "hits": {"total": {"value": total, "relation": "eq"},
                                      "max_score": 1.0 if hits else None, "hits": hits}})

    @staticmethod
    def _json_body(request: Request) -> dict[str, Any]:
        try:
            raw = request.decoded_body()
        except BadBody as exc:
            raise EsError(400, "parse_exception", str(exc)) from None
        if not raw.strip():
            return {}
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise EsError(400, "x_content_parse_exception", f"[1:1] {exc}") from None
        if type(value) is not dict:
            raise EsError(400, "parse_exception", f"request body must be an object, not {_token(value)}")
        return value

    # -- templates

    def _match_template(self, name: str) -> _Template | None:
        best: _Template | None = None
        for template in self._templates.values():
            if template.matches(name) and (best is None or template.priority > best.priority):
                best = template
        return best

    def _template_api(self, request: Request, name: str) -> _Answer:
        method = request.method
        if method in ("GET", "HEAD"):
            return self._get_templates(name, method == "HEAD")
        if method == "DELETE":
            names = [n for n in self._templates if _wildcard(name, n)] if "*" in name else [name]
            if not names or names[0] not in self._templates:
                raise EsError(404, "index_template_missing_exception", f"index_template [{name}] missing")
            for template_name in names:
                users = sorted(ds.name for ds in self._data_streams.values() if ds.template == template_name)
                if users:
                    raise _bad(f"unable to remove composable templates [{template_name}] as they are in use by a data "
                               f"streams [{', '.join(users)}]")
            for template_name in names:
                del self._templates[template_name]
            return _Answer(200, {"acknowledged": True})
        body = self._json_body(request)
        if _truthy(request.param("create")) and name in self._templates:
            raise _bad(f"index template [{name}] already exists")
        unknown = sorted(set(body) - _TEMPLATE_KEYS)
        if unknown:
            raise EsError(400, "x_content_parse_exception", f"[1:2] [index_template] unknown field [{unknown[0]}]")
        patterns = body.get("index_patterns")
        if isinstance(patterns, str):
            patterns = [patterns]
        if not patterns or not isinstance(patterns, list) or not all(isinstance(p, str) and p for p in patterns):
            raise EsError(400, "action_request_validation_exception",
                          "Validation Failed: 1: index patterns are missing;")
        inner = body.get("template") or {}
        if not isinstance(inner, Mapping):
            raise EsError(400, "x_content_parse_exception", "[1:2] [index_template] failed to parse field [template]")
        unknown = sorted(set(inner) - _TEMPLATE_TEMPLATE_KEYS)
        if unknown:
            raise EsError(400, "x_content_parse_exception", f"[1:2] [template] unknown field [{unknown[0]}]")
        priority = body.get("priority", 0)
        if isinstance(priority, bool) or not isinstance(priority, int) or priority < 0:
            raise _bad("index template priority must be >= 0")
        composed = body.get("composed_of", [])
        ignored = body.get("ignore_missing_component_templates", [])
        if not isinstance(composed, list) or not all(isinstance(c, str) for c in composed):
            raise EsError(400, "x_content_parse_exception",
                          "[1:2] [index_template] failed to parse field [composed_of]")
        if not isinstance(ignored, list) or not all(isinstance(c, str) for c in ignored):
            raise EsError(400, "x_content_parse_exception",
                          "[1:2] [index_template] failed to parse field [ignore_missing_component_templates]")
        missing = [c for c in composed if c not in self._component_templates and c not in ignored]
        if missing:
            raise EsError(400, "invalid_index_template_exception",
                          f"index_template [{name}] invalid, cause [index template [{name}] specifies component "
                          f"templates [{', '.join(missing)}] that do not exist]")
        stored = {"index_patterns": patterns, "composed_of": [], **body}
        stored["index_patterns"] = patterns
        template = _Template(name, stored)  # compiles the mappings: mapper_parsing_exception
        overlapping = sorted(other.name for other in self._templates.values()
                             if other.name != name and other.priority == template.priority
                             and _patterns_overlap(template.patterns, other.patterns))
        if overlapping:
            described = ", ".join(f"{o} => [{', '.join(self._templates[o].patterns)}]" for o in overlapping)
            raise _bad(f"index template [{name}] has index patterns [{', '.join(template.patterns)}] matching "
                       f"patterns from existing templates [{', '.join(overlapping)}] with patterns ({described}) "
                       f"that have the same priority [{template.priority}], multiple index templates may not match "
                       "during index creation, please use a different priority")
        self._templates[name] = template
        return _Answer(200, {"acknowledged": True})

    def _component_template_api(self, request: Request, name: str | None) -> _Answer:
        method = request.method
        if method in ("GET", "HEAD"):
            pattern = name or "*"
            names = [n for n in sorted(self._component_templates)
                     if any(_wildcard(part, n) for part in pattern.split(","))]
            if not names and "*" not in pattern:
                if method == "HEAD":
                    return _Answer(404, None)
                raise EsError(404, "resource_not_found_exception", f"component template matching [{pattern}] not found")
            if method == "HEAD":
                return _Answer(200, None)
            return _Answer(200, {"component_templates": [{"name": n, "component_template": self._component_templates[n]}
                                                         for n in names]})
        assert name is not None
        if method == "DELETE":
            names = [n for n in self._component_templates if _wildcard(name, n)] if "*" in name else [name]
            if not names or names[0] not in self._component_templates:
                raise EsError(404, "resource_not_found_exception", f"{name}")
            users = sorted(t.name for t in self._templates.values() if set(t.composed_of) & set(names))
            if users:
                raise _bad(f"component templates [{', '.join(names)}] cannot be removed as they are still in use by "
                           f"index templates [{', '.join(users)}]")
            for component in names:
                del self._component_templates[component]
            return _Answer(200, {"acknowledged": True})
        body = self._json_body(request)
        if _truthy(request.param("create")) and name in self._component_templates:
            raise _bad(f"component template [{name}] already exists")
        unknown = sorted(set(body) - {"template", "version", "_meta", "deprecated"})
        if unknown:
            raise EsError(400, "x_content_parse_exception", f"[1:2] [component_template] unknown field [{unknown[0]}]")
        inner = body.get("template")
        if not isinstance(inner, Mapping):
            raise EsError(400, "action_request_validation_exception", "Validation Failed: 1: template is missing;")
        unknown = sorted(set(inner) - _TEMPLATE_TEMPLATE_KEYS)
        if unknown:
            raise EsError(400, "x_content_parse_exception", f"[1:2] [template] unknown field [{unknown[0]}]")
        _compile_mapping(inner.get("mappings"))  # mapper_parsing_exception
        self._component_templates[name] = body
        return _Answer(200, {"acknowledged": True})

    def _get_templates(self, name: str, head: bool) -> _Answer:
        names = [n for n in sorted(self._templates) if any(_wildcard(part, n) for part in name.split(","))]
        if not names and "*" not in name:
            if head:
                return _Answer(404, None)
            raise EsError(404, "resource_not_found_exception", f"index template matching [{name}] not found")
        if head:
            return _Answer(200, None)
        return _Answer(200, {"index_templates": [{"name": n, "index_template": self._templates[n].body}
                                                 for n in names]})

    # -- data streams

    def _create_data_stream(self, name: str, template: _Template) -> _DataStream:
        backing = f".ds-{name}-{dt.datetime.now(dt.UTC).strftime('%Y.%m.%d')}-000001"
        index = self._new_index(backing, template, data_stream=name)
        _, settings, lifecycle = self.resolved(template)
        self._indices[backing] = index
        policy = settings.get("index.lifecycle.name")
        stream = _DataStream(name, template.name, index, ilm_policy=str(policy) if policy else None,
                             lifecycle=lifecycle)
        self._data_streams[name] = stream
        return stream

    def _data_stream_api(self, request: Request, name: str) -> _Answer:
        method = request.method
        if method == "GET":
            return self._get_data_streams(name)
        if method == "DELETE":
            names = [n for n in self._data_streams if any(_wildcard(part, n) for part in name.split(","))]
            if not names and "*" not in name:
                raise _index_not_found(name)
            for ds_name in names:
                stream = self._data_streams.pop(ds_name)
                for index in stream.indices:
                    self._indices.pop(index.name, None)
            return _Answer(200, {"acknowledged": True})
        problem = _invalid_index_name(name)
        if problem is not None:
            raise EsError(400, "invalid_index_name_exception", f"Invalid index name [{name}], {problem}",
                          extra={"index_uuid": "_na_", "index": name})
        if name in self._data_streams:
            raise EsError(400, "resource_already_exists_exception", f"data_stream [{name}] already exists")
        if name in self._indices:
            raise EsError(400, "resource_already_exists_exception",
                          f"index [{name}/{self._indices[name].uuid}] already exists")
        template = self._match_template(name)
        if template is None:
            raise _bad(f"no matching index template found for data stream [{name}]")
        if not template.data_stream:
            raise _bad(f"matching index template [{template.name}] for data stream [{name}] has no data stream "
                       "template")
        self._create_data_stream(name, template)
        return _Answer(200, {"acknowledged": True})

    def _get_data_streams(self, name: str) -> _Answer:
        names = [n for n in sorted(self._data_streams) if any(_wildcard(part, n) for part in name.split(","))]
        if not names and "*" not in name:
            raise _index_not_found(name)
        return _Answer(200, {"data_streams": [self._data_stream_body(self._data_streams[n]) for n in names]})

    def _data_stream_body(self, stream: _DataStream) -> dict[str, Any]:
        managed_by = ("Index Lifecycle Management" if stream.ilm_policy
                      else "Data stream lifecycle" if stream.lifecycle is not None else "Unmanaged")
        extra: dict[str, Any] = {}
        if stream.ilm_policy:
            extra["ilm_policy"] = stream.ilm_policy
        if stream.lifecycle is not None:
            extra["lifecycle"] = {"enabled": True, **stream.lifecycle}
        return {
            "name": stream.name,
            "timestamp_field": {"name": "@timestamp"},
            "indices": [{"index_name": index.name, "index_uuid": index.uuid, "prefer_ilm": True,
                         **({"ilm_policy": stream.ilm_policy} if stream.ilm_policy else {}),
                         "managed_by": managed_by} for index in stream.indices],
            "generation": len(stream.indices),
            "status": "GREEN",
            "template": stream.template,
            **extra,
            "next_generation_managed_by": managed_by,
            "prefer_ilm": True,
            "hidden": False,
            "system": False,
            "allow_custom_routing": False,
            "replicated": False,
            "rollover_on_write": False,
        }
