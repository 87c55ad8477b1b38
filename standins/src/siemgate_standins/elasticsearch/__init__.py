"""An Elasticsearch stand-in that answers `_bulk` (and what a bulk client needs around it) like
Elasticsearch 8.x does on the wire.

The Elasticsearch sink's tests and benchmarks run against it; `tests/testing/test_elasticsearch_clients.py`
proves it against the official Python client and rsyslog's omelasticsearch. Facts:
docs/PROTOCOLS.md section 2.

    async with ElasticsearchStandIn(api_keys={"id": "key"}) as es:
        ...PUT es.url + "/_index_template/alerts", POST es.url + "/_bulk"...
        es.faults.fail_requests(429)                    # the next bulk request: whole-request 429
        es.faults.fail_items(429, ids=["evt-3"])        # evt-3 is rejected once, then accepted
        es.faults.fail_items(400, count=2)              # the next two items: document_parsing_exception
        await es.wait_for_documents("logs-siem.alerts-default", 10)
        es.documents("logs-siem.alerts-default"), es.bulk_requests

From synchronous code (the official client): `with serve_in_thread(ElasticsearchStandIn()) as es: ...`.
Or its own process: `python -m siemgate_standins.elasticsearch --port 9200 --api-key id:key --user u:p`
(prints its URL as its first line; SIGTERM/SIGINT stop it). Faults and inspection over HTTP,
without authentication: `GET /_standin/state`, `POST /_standin/faults` (JSON, see `Faults.apply`),
`POST /_standin/reset`.

Endpoints: `GET|HEAD /`; `POST|PUT /_bulk`, `/{target}/_bulk`; `PUT|POST|GET|HEAD|DELETE
/_index_template/{name}` (and `GET /_index_template`); `PUT|POST|GET|HEAD|DELETE
/_component_template/{name}` (and `GET /_component_template`); `PUT|GET|DELETE /_data_stream/{name}` (and
`GET /_data_stream`); `PUT|GET|HEAD|DELETE /{index}`; `GET|HEAD|PUT|POST|DELETE /{index}/_doc/{id}`,
`POST /{index}/_doc`, `PUT|POST /{index}/_create/{id}`, `POST /{index}/_update/{id}`; `GET|POST
[/{target}]/_count`, `[/{target}]/_search` (`match_all`, `term`, `terms`, `ids`, `bool`; `size`,
`from`); `GET|POST [/{target}]/_refresh`; `GET /_cluster/health`; `GET /_security/_authenticate`;
`GET /_cat/health` (omelasticsearch's health check). `filter_path` (see `FilterPath`) and
`pretty` work on every JSON answer (not on error bodies, which Elasticsearch does not filter).

What it does like Elasticsearch 8 (and what a client may rely on):
- Every answer carries `X-Elastic-Product: Elasticsearch` (the official client refuses a 2xx
  without it). A request that asks for a compatible version (`Accept: application/vnd.elasticsearch+json;
  compatible-with=N`, as the official clients send) is answered with that media type; N must be the
  stand-in's major version or the one before, else 400 `media_type_header_exception`, exactly as
  an 8.x cluster answers the 9.x client (`version="9.1.0"` for a 9.x cluster). A body whose
  Content-Type is not JSON/NDJSON is answered 406. Answers are gzipped when the client accepts
  gzip and TLS is off (`http.compression`).
- Security on when any api_keys/users are given: `ApiKey base64(id:key)` or `Basic base64(user:pass)`
  on every request (not on `/_standin/*`), else 401 `security_exception` with the three
  `WWW-Authenticate` headers. Without security, `/_security/_authenticate` answers 500 as a
  cluster with security disabled does.
- `_bulk`: the NDJSON rules (final newline, `\r\n`, blank lines skipped, a trailing action without
  its source ignored), the action/metadata validation messages, items in request order, `errors`,
  `took`; index/create/update/delete with `_id`, auto ids, versions, `_seq_no`, `if_seq_no` /
  `if_primary_term`, external versions; 409 on `create` of an existing `_id`; 404 `not_found`
  for a missing delete (not an error); data streams (create only, `@timestamp` required, backing
  indices `.ds-<name>-YYYY.MM.DD-000001`); auto-creation of a data stream when the
  highest-priority matching index template has `data_stream`, else of a plain index (with the
  template's mappings, if any). The built-in `logs-*-*`, `metrics-*-*` and `synthetics-*-*`
  data stream templates (priority 100) and the component templates they are composed of
  (`logs@mappings`: `@timestamp` and the `data_stream.*` constant_keywords; `logs@settings`: the
  `logs` lifecycle policy and `index.mapping.ignore_malformed: true`; the same for metrics and
  synthetics; `ecs@mappings`) exist as in a default 8.x cluster unless `builtin_templates=False`.
- Index templates are composed as Elasticsearch composes them when an index or data stream is
  created: the `composed_of` component templates' mappings and settings in order, then the
  template's own; a `composed_of` naming a component template that does not exist (and is not in
  `ignore_missing_component_templates`) is refused 400 `invalid_index_template_exception`, a
  component template in use cannot be deleted. A data stream reports its lifecycle
  (`ilm_policy` from `index.lifecycle.name`, or the template's data stream `lifecycle`).
- Mappings (explicit only: a template's `template.mappings`, or `PUT /{index}`): types ip, date
  / date_nanos (strict_date_optional_time, epoch_millis, epoch_second, date, strict_date_time;
  other formats accept any string), long / integer / short / byte / unsigned_long (coerced from
  strings and floats, range-checked), float / double / half_float / scaled_float, keyword /
  text / wildcard / constant_keyword (one value: the mapping's `value`, else the first
  document's), boolean, object / nested / flattened (an object, `depth_limit` (default 20,
  arrays no level), no NUL in a key), in dotted or nested form, ip without an IPv6 zone (as
  Elasticsearch's parser, unlike Python's), `dynamic: strict` (-> `strict_dynamic_mapping_exception`),
  `ignore_malformed` (the field's, or the index setting `index.mapping.ignore_malformed`). A value that
  does not fit answers item 400 `document_parsing_exception` ("[1:COL] failed to parse field [F]
  of type [T] in document with id 'ID'. Preview of field's value: 'V'", with `caused_by`). COL is
  approximate.

Choices where Elasticsearch is richer or the reference leaves a gap:
- Unmapped fields are accepted without being mapped dynamically (a later document with another
  type for the same field is not refused as a real cluster would). Scripted updates answer item
  400. Ingest pipelines are not run: `pipeline` is accepted whatever it names. `routing`,
  `timeout`, `wait_for_active_shards`, `_source*` are accepted and ignored. Documents are
  searchable at once, whatever `refresh` says (`refresh=true` adds `forced_refresh` to items).
- Index templates: two templates with overlapping patterns and the same priority are refused
  (overlap is approximated); the composition's mappings are not validated as a whole when the
  template is put. Lifecycles are reported, never run (no rollover, no retention). Only gzip
  request bodies are decoded (not deflate).
- One node, replicas 0: `_shards` is `{"total":1,"successful":1,"failed":0}`, health green.
- Memory: a stored document costs about its source size plus ~180 bytes; for long benchmarks
  `keep_sources=False` (`--no-keep-sources`) keeps only `_id`s and versions (409s still work).
- An unknown path answers what Elasticsearch answers: a single segment is `/{index}` (e.g. 404
  `index_not_found_exception`), more segments are 400 `{"error":"no handler found for uri [...]
  and method [...]"}`, a known path with another method 405 with `Allow`.
- Injected faults: `drop_connections` and `delay_seconds` apply to every request; `fail_requests`
  to bulk requests (after authentication); `fail_items` to bulk items, after the target resolved.
  A delayed answer is delayed after the request was processed (a client that times out and
  retries a `create` sees 409).
- A body over `max_body_bytes` is refused 413 by the HTTP server before it is read (empty body,
  no product header: Elasticsearch's Netty front end answers the same); a gzip body that
  decompresses to more answers 413 with an empty body too.

Loopback test tooling, not a production server.
"""

from __future__ import annotations

from siemgate_standins.elasticsearch.cli import add_arguments, from_arguments, main, serve, serve_in_thread
from siemgate_standins.elasticsearch.faults import BulkRecord, Faults
from siemgate_standins.elasticsearch.filter_path import FilterPath
from siemgate_standins.elasticsearch.protocol import EsError
from siemgate_standins.elasticsearch.server import ElasticsearchStandIn

__all__ = [
    "BulkRecord",
    "ElasticsearchStandIn",
    "EsError",
    "Faults",
    "FilterPath",
    "add_arguments",
    "from_arguments",
    "main",
    "serve",
    "serve_in_thread",
]
