"""The Elasticsearch stand-in against docs/PROTOCOLS.md section 2, over HTTP with httpx: the NDJSON
rules, every item status, whole-request errors, filter_path, gzip, authentication, data streams,
mappings, fault injection, the HTTP control endpoints and the process entry point."""

from __future__ import annotations

import base64
import gzip
import re
import select
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
import trustme

from siemgate_standins.elasticsearch import ElasticsearchStandIn, FilterPath

pytestmark = pytest.mark.anyio

DEADLINE = 10.0
NDJSON = {"content-type": "application/x-ndjson"}
JSON = {"content-type": "application/json"}
TS = "2025-01-15T10:20:30.123Z"
BACKING = re.compile(r"^\.ds-(?P<name>.+)-\d{4}\.\d{2}\.\d{2}-000001$")
ALERTS_TEMPLATE = {
    "index_patterns": ["alerts-*"],
    "priority": 200,
    "data_stream": {},
    "template": {"mappings": {"properties": {
        "source.ip": {"type": "ip"},
        "event": {"properties": {"severity": {"type": "long"}, "risk_score": {"type": "float"},
                                 "id": {"type": "keyword"}}},
    }}},
}


def ndjson(*lines: Any) -> bytes:
    return b"".join(orjson.dumps(line) + b"\n" for line in lines)


def alert(i: int | str, **extra: Any) -> dict[str, Any]:
    return {"@timestamp": TS, "event": {"kind": "alert", "id": f"a-{i}", "severity": 73}, "message": f"alert {i}",
            **extra}


def only(item: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(action, body) of one response item."""
    assert len(item) == 1, item
    ((action, body),) = item.items()
    return action, body


def basic(user: str, password: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def api_key(key_id: str, key: str) -> dict[str, str]:
    return {"authorization": "ApiKey " + base64.b64encode(f"{key_id}:{key}".encode()).decode()}


@pytest.fixture
async def es() -> AsyncIterator[ElasticsearchStandIn]:
    async with ElasticsearchStandIn() as server:
        yield server


@pytest.fixture
async def client(es: ElasticsearchStandIn) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=es.url, timeout=DEADLINE) as http:
        yield http


async def bulk(client: httpx.AsyncClient, *lines: Any, path: str = "/_bulk", params: dict[str, str] | None = None,
               headers: dict[str, str] | None = None) -> httpx.Response:
    return await client.post(path, content=ndjson(*lines), params=params, headers={**NDJSON, **(headers or {})})


async def put_template(client: httpx.AsyncClient, name: str, body: dict[str, Any]) -> None:
    response = await client.put(f"/_index_template/{name}", json=body)
    assert response.json() == {"acknowledged": True}, response.text


def assert_error_body(response: httpx.Response, status: int, type_: str,
                      reason: str | re.Pattern[str]) -> dict[str, Any]:
    """Elasticsearch's standard error body; answers its `error`."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "status"} and body["status"] == status, body
    error = body["error"]
    assert error["type"] == type_, body
    if isinstance(reason, str):
        assert error["reason"] == reason, body
    else:
        assert reason.fullmatch(error["reason"]), body
    assert error["root_cause"][0]["type"] == type_ and error["root_cause"][0]["reason"] == error["reason"]
    return dict(error)


# -- info, media types, compression


async def test_info_and_head_carry_the_product_header(client: httpx.AsyncClient) -> None:
    response = await client.get("/")
    assert response.status_code == 200
    assert response.headers["x-elastic-product"] == "Elasticsearch"
    assert response.headers["content-type"] == "application/json"
    info = response.json()
    assert info["version"]["number"] == "8.15.0" and info["tagline"] == "You Know, for Search"
    head = await client.head("/")
    assert head.status_code == 200 and head.content == b"" and head.headers["x-elastic-product"] == "Elasticsearch"


async def test_a_compatible_version_is_answered_with_its_media_type(client: httpx.AsyncClient) -> None:
    for version in (8, 7):
        accept = f"application/vnd.elasticsearch+json; compatible-with={version}"
        response = await client.post("/_bulk", content=ndjson({"create": {"_index": "idx"}}, {"a": 1}), headers={
            "accept": accept, "content-type": f"application/vnd.elasticsearch+x-ndjson; compatible-with={version}"})
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == f"application/vnd.elasticsearch+json;compatible-with={version}"
        assert response.headers["x-elastic-product"] == "Elasticsearch"


async def test_an_8x_cluster_refuses_the_9x_client_headers(client: httpx.AsyncClient) -> None:
    # What every 9.x official client sends to an 8.x cluster (elastic/elasticsearch-net#8512 and others).
    response = await client.get("/", headers={"accept": "application/vnd.elasticsearch+json; compatible-with=9"})
    error = assert_error_body(response, 400, "media_type_header_exception",
                              "Invalid media-type value on headers [Accept, Content-Type]")
    assert error["caused_by"] == {
        "type": "status_exception",
        "reason": "Accept version must be either version 8 or 7, but found 9. "
                  "Accept=application/vnd.elasticsearch+json; compatible-with=9"}
    # Versions asked on one header only, with a body: refused too.
    mismatch = await client.post("/_count", content=b"{}", headers={
        "accept": "application/vnd.elasticsearch+json; compatible-with=8", "content-type": "application/json"})
    error = assert_error_body(mismatch, 400, "media_type_header_exception",
                              "Invalid media-type value on headers [Accept, Content-Type]")
    assert error["caused_by"]["reason"].startswith("A compatible version is required on both Content-Type and Accept")


async def test_a_9x_stand_in_accepts_the_9x_client_headers() -> None:
    async with ElasticsearchStandIn(version="9.1.0") as server, httpx.AsyncClient(base_url=server.url) as http:
        response = await http.get("/", headers={"accept": "application/vnd.elasticsearch+json; compatible-with=9"})
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/vnd.elasticsearch+json;compatible-with=9"
        assert response.json()["version"]["number"] == "9.1.0"


async def test_a_body_must_be_json(client: httpx.AsyncClient) -> None:
    body = ndjson({"create": {"_index": "idx"}}, {"a": 1})
    plain = await client.post("/_bulk", content=body, headers={"content-type": "text/plain"})
    assert plain.status_code == 406
    assert plain.json() == {"error": "Content-Type header [text/plain] is not supported", "status": 406}
    missing = await client.post("/_bulk", content=body)
    assert missing.status_code == 406
    assert missing.json() == {"error": "Content-Type header is missing", "status": 406}
    # rsyslog's omelasticsearch sends this one
    ok = await client.post("/_bulk", content=body, headers={"content-type": "application/json; charset=utf-8"})
    assert ok.status_code == 200 and ok.json()["errors"] is False


async def test_answers_are_gzipped_when_the_client_accepts_gzip(es: ElasticsearchStandIn) -> None:
    async with httpx.AsyncClient(base_url=es.url) as http:
        identity = await http.get("/", headers={"accept-encoding": "identity"})
        assert "content-encoding" not in identity.headers
        zipped = await http.get("/", headers={"accept-encoding": "gzip"})
        assert zipped.headers["content-encoding"] == "gzip"
        assert zipped.json() == identity.json()  # httpx gunzips


async def test_pretty(client: httpx.AsyncClient) -> None:
    response = await client.get("/", params={"pretty": ""})
    assert response.text.startswith("{\n  ") and response.text.endswith("}\n")


# -- bulk: the documented semantics


async def test_items_in_request_order_with_the_documented_fields(es: ElasticsearchStandIn,
                                                                 client: httpx.AsyncClient) -> None:
    response = await bulk(
        client,
        {"index": {"_index": "idx", "_id": "1"}}, {"n": 1},
        {"create": {"_index": "idx", "_id": "2"}}, {"n": 2},
        {"index": {"_index": "idx", "_id": "1"}}, {"n": 10},
        {"update": {"_index": "idx", "_id": "2"}}, {"doc": {"m": 2}},
        {"delete": {"_index": "idx", "_id": "1"}},
        {"delete": {"_index": "idx", "_id": "never"}},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["errors"] is False and isinstance(body["took"], int)
    items = [only(item) for item in body["items"]]
    assert [(action, b["_id"], b["status"], b["result"], b["_version"]) for action, b in items] == [
        ("index", "1", 201, "created", 1),
        ("create", "2", 201, "created", 1),
        ("index", "1", 200, "updated", 2),
        ("update", "2", 200, "updated", 2),
        ("delete", "1", 200, "deleted", 3),
        ("delete", "never", 404, "not_found", 1),
    ]
    for _action, b in items:
        assert b["_index"] == "idx" and b["_primary_term"] == 1 and "error" not in b
        assert b["_shards"] == {"total": 1, "successful": 1, "failed": 0}
    assert [b["_seq_no"] for _a, b in items] == [0, 1, 2, 3, 4, 5]
    assert es.documents("idx") == {"2": {"n": 2, "m": 2}}


async def test_create_on_an_existing_id_is_an_item_409(es: ElasticsearchStandIn, client: httpx.AsyncClient) -> None:
    first = await bulk(client, {"create": {"_index": "idx", "_id": "a7f3c9e2-0001"}}, {"n": 1})
    assert first.json()["errors"] is False
    second = await bulk(client, {"create": {"_index": "idx", "_id": "a7f3c9e2-0001"}}, {"n": 2},
                        {"create": {"_index": "idx", "_id": "a7f3c9e2-0002"}}, {"n": 3})
    body = second.json()
    assert second.status_code == 200 and body["errors"] is True
    action, conflict = only(body["items"][0])
    assert action == "create" and conflict["status"] == 409 and conflict["_id"] == "a7f3c9e2-0001"
    error = conflict["error"]
    assert error["type"] == "version_conflict_engine_exception"
    assert error["reason"] == "[a7f3c9e2-0001]: version conflict, document already exists (current version [1])"
    assert error["shard"] == "0" and error["index"] == "idx" and error["index_uuid"]
    assert only(body["items"][1])[1]["status"] == 201  # one item failing does not affect the others
    assert es.documents("idx") == {"a7f3c9e2-0001": {"n": 1}, "a7f3c9e2-0002": {"n": 3}}


async def test_update_semantics(es: ElasticsearchStandIn, client: httpx.AsyncClient) -> None:
    await bulk(client, {"index": {"_index": "idx", "_id": "u"}}, {"a": {"b": 1, "c": 2}})
    response = await bulk(
        client,
        {"update": {"_index": "idx", "_id": "u"}}, {"doc": {"a": {"c": 3}}},
        {"update": {"_index": "idx", "_id": "u"}}, {"doc": {"a": {"c": 3}}},
        {"update": {"_index": "idx", "_id": "missing"}}, {"doc": {"x": 1}},
        {"update": {"_index": "idx", "_id": "up1"}}, {"doc": {"x": 1}, "doc_as_upsert": True},
        {"update": {"_index": "idx", "_id": "up2"}}, {"doc": {"x": 1}, "upsert": {"x": 0}},
        {"update": {"_index": "idx", "_id": "s"}}, {"script": {"source": "ctx._source.x++"}},
    )
    items = [only(item)[1] for item in response.json()["items"]]
    assert [(b["status"], b.get("result")) for b in items] == [
        (200, "updated"), (200, "noop"), (404, None), (201, "created"), (201, "created"), (400, None)]
    assert items[1]["_version"] == 2 and items[1]["_shards"] == {"total": 0, "successful": 0, "failed": 0}
    assert items[2]["error"]["type"] == "document_missing_exception"
    assert items[2]["error"]["reason"] == "[missing]: document missing"
    assert items[5]["error"]["type"] == "illegal_argument_exception"
    assert es.documents("idx") == {"u": {"a": {"b": 1, "c": 3}}, "up1": {"x": 1}, "up2": {"x": 0}}


async def test_delete_of_a_missing_index_is_an_item_error(client: httpx.AsyncClient) -> None:
    response = await bulk(client, {"delete": {"_index": "nowhere", "_id": "1"}})
    body = response.json()
    assert body["errors"] is True
    item = only(body["items"][0])[1]
    assert item["status"] == 404
    assert item["error"]["type"] == "index_not_found_exception" and item["error"]["reason"] == "no such index [nowhere]"


async def test_the_url_target_is_the_default_index(es: ElasticsearchStandIn, client: httpx.AsyncClient) -> None:
    response = await bulk(client, {"create": {"_id": "1"}}, {"a": 1}, {"create": {"_index": "other", "_id": "2"}},
                          {"b": 2}, path="/default/_bulk")
    assert [only(i)[1]["_index"] for i in response.json()["items"]] == ["default", "other"]
    assert es.documents("default") == {"1": {"a": 1}} and es.documents("other") == {"2": {"b": 2}}


async def test_ids_are_generated_when_absent(es: ElasticsearchStandIn, client: httpx.AsyncClient) -> None:
    response = await bulk(client, {"index": {"_index": "idx"}}, {"a": 1}, {"create": {"_index": "idx"}}, {"a": 2})
    ids = [only(i)[1]["_id"] for i in response.json()["items"]]
    assert len(set(ids)) == 2 and all(len(i) == 20 for i in ids)
    assert set(es.documents("idx")) == set(ids)


async def test_optimistic_concurrency_and_external_versions(client: httpx.AsyncClient) -> None:
    first = only((await bulk(client, {"index": {"_index": "idx", "_id": "c"}}, {"v": 1})).json()["items"][0])[1]
    response = await bulk(
        client,
        {"index": {"_index": "idx", "_id": "c", "if_seq_no": first["_seq_no"] + 5, "if_primary_term": 1}}, {"v": 2},
        {"index": {"_index": "idx", "_id": "c", "if_seq_no": first["_seq_no"], "if_primary_term": 1}}, {"v": 3},
        {"index": {"_index": "idx", "_id": "e", "version": 5, "version_type": "external"}}, {"v": 1},
        {"index": {"_index": "idx", "_id": "e", "version": 5, "version_type": "external"}}, {"v": 2},
    )
    items = [only(i)[1] for i in response.json()["items"]]
    assert [i["status"] for i in items] == [409, 200, 201, 409]
    assert items[0]["error"]["reason"].startswith("[c]: version conflict, required seqNo")
    assert items[2]["_version"] == 5
    assert items[3]["error"]["reason"] == ("[e]: version conflict, current version [5] is higher or equal to the one "
                                           "provided [5]")


async def test_the_final_newline_is_required(es: ElasticsearchStandIn, client: httpx.AsyncClient) -> None:
    body = ndjson({"create": {"_index": "idx", "_id": "1"}}, {"a": 1})[:-1]
    response = await client.post("/_bulk", content=body, headers=NDJSON)
    assert_error_body(response, 400, "illegal_argument_exception",
                      "The bulk request must be terminated by a newline [\\n]")
    assert es.documents("idx") == {}


async def test_crlf_blank_lines_and_a_trailing_action_without_source(es: ElasticsearchStandIn,
                                                                     client: httpx.AsyncClient) -> None:
    body = (b'{"create":{"_index":"idx","_id":"1"}}\r\n{"a":1}\r\n\r\n\n'
            b'{"create":{"_index":"idx","_id":"2"}}\r\n{"a":2}\r\n'
            b'{"create":{"_index":"idx","_id":"3"}}\n')  # an action without its source at the end: ignored
    response = await client.post("/_bulk", content=body, headers=NDJSON)
    assert response.status_code == 200, response.text
    assert [only(i)[1]["status"] for i in response.json()["items"]] == [201, 201]
    assert es.documents("idx") == {"1": {"a": 1}, "2": {"a": 2}}


async def test_an_empty_bulk(client: httpx.AsyncClient) -> None:
    empty = await client.post("/_bulk", content=b"", headers=NDJSON)
    assert_error_body(empty, 400, "parse_exception", "request body is required")
    blank = await client.post("/_bulk", content=b"\n\n", headers=NDJSON)
    assert_error_body(blank, 400, "action_request_validation_exception", "Validation Failed: 1: no requests added;")


@pytest.mark.parametrize(("body", "type_", "reason"), [
    (b'{"create":{"_index":"idx"}\n{"a":1}\n', "x_content_parse_exception", re.compile(r"\[1:1\] .+")),
    (b'["create"]\n{"a":1}\n', "illegal_argument_exception",
     "Malformed action/metadata line [1], expected START_OBJECT but found [START_ARRAY]"),
    (b'{"upsert":{"_index":"idx"}}\n{"a":1}\n', "illegal_argument_exception",
     "Malformed action/metadata line [1], expected field [create], [delete], [index] or [update] but found [upsert]"),
    (b'{"index":{"_index":"idx","_type":"_doc"}}\n{"a":1}\n', "illegal_argument_exception",
     "Action/metadata line [1] contains an unknown parameter [_type]"),
    (b'{"index":{"_index":"idx"},"x":1}\n{"a":1}\n', "illegal_argument_exception",
     "Malformed action/metadata line [1], expected END_OBJECT but found [FIELD_NAME]"),
    (b'{"index":{"_index":["idx"]}}\n{"a":1}\n', "illegal_argument_exception",
     "Malformed action/metadata line [1], expected a simple value for field [_index] but found [START_ARRAY]"),
    (b'{"create":{"_index":"idx"}}\n{"a":1}\n{"index":"idx"}\n{"a":1}\n', "illegal_argument_exception",
     "Malformed action/metadata line [3], expected START_OBJECT or END_OBJECT but found [VALUE_STRING]"),
    (b'{"create":{}}\n{"a":1}\n{"delete":{"_index":"idx"}}\n', "action_request_validation_exception",
     "Validation Failed: 1: index is missing;2: id is missing;"),
    (b'{"update":{"_index":"idx","_id":"1"}}\n{"dok":{"a":1}}\n', "x_content_parse_exception",
     "[2:2] [UpdateRequest] unknown field [dok]"),
], ids=["not-json", "array", "unknown-action", "_type", "extra-key", "array-value", "line-3", "validation",
        "update-body"])
async def test_malformed_requests_are_refused_whole(es: ElasticsearchStandIn, client: httpx.AsyncClient, body: bytes,
                                                    type_: str, reason: str | re.Pattern[str]) -> None:
    response = await client.post("/_bulk", content=body, headers=NDJSON)
    assert_error_body(response, 400, type_, reason)
    assert es.all_documents() == {}  # nothing of a refused request is applied
    assert es.bulk_requests[-1].status == 400 and es.bulk_requests[-1].item_statuses == []


async def test_query_parameters(es: ElasticsearchStandIn, client: httpx.AsyncClient) -> None:
    lines = ({"create": {"_index": "idx"}}, {"a": 1})
    for params in ({"refresh": "true"}, {"refresh": "wait_for"}, {"refresh": "false"},
                   {"pipeline": "anything", "routing": "r", "timeout": "1m", "wait_for_active_shards": "1"}):
        response = await bulk(client, *lines, params=params)
        assert response.status_code == 200 and response.json()["errors"] is False, (params, response.text)
        item = only(response.json()["items"][0])[1]
        assert item.get("forced_refresh", False) is (params.get("refresh") == "true")
    unknown = await bulk(client, *lines, params={"refres": "true"})
    assert_error_body(unknown, 400, "illegal_argument_exception",
                      "request [/_bulk] contains unrecognized parameter: [refres]")
    bad = await bulk(client, *lines, params={"refresh": "soon"})
    assert_error_body(bad, 400, "illegal_argument_exception", "Unknown value for refresh: [soon].")
    assert len(es.documents("idx")) == 4


async def test_invalid_index_names_are_item_errors(client: httpx.AsyncClient) -> None:
    response = await bulk(client, {"create": {"_index": "Upper"}}, {"a": 1}, {"create": {"_index": "ok"}}, {"a": 1})
    items = [only(i)[1] for i in response.json()["items"]]
    assert items[0]["status"] == 400 and items[0]["error"]["type"] == "invalid_index_name_exception"
    assert items[0]["error"]["reason"] == "Invalid index name [Upper], must be lowercase"
    assert items[1]["status"] == 201


async def test_a_key_twice_in_an_object_is_an_item_error(es: ElasticsearchStandIn, client: httpx.AsyncClient) -> None:
    """Elasticsearch (Jackson's STRICT_DUPLICATE_DETECTION, on since 7.0) refuses a document
    naming a key twice in one object, at any depth, white space or not; `\\":` inside a string
    and the same key in two objects are no duplicates."""
    action = b'{"create":{"_index":"idx"}}\n'
    sources = [b'{"a":1,"a":2}', b'{"o":{"k":1,"k":2}}', b'{"a" : 1, "a" : 2}', b'{"l":[{"k":1},{"k":1,"k":1}]}',
               b'{"a":"x\\":y","b":{"a":1},"c":[{"a":1},{"a":2}]}', b'{"a":"\\u0022:","b":1}']
    response = await client.post("/_bulk", content=b"".join(action + source + b"\n" for source in sources),
                                 headers=NDJSON)
    items = [only(i)[1] for i in response.json()["items"]]
    assert [i["status"] for i in items] == [400, 400, 400, 400, 201, 201]
    assert items[0]["error"]["type"] == "document_parsing_exception"
    assert items[0]["error"]["caused_by"] == {"type": "json_parse_exception", "reason": "Duplicate field 'a'"}
    assert [i["error"]["caused_by"]["reason"] for i in items[1:4]] == [
        "Duplicate field 'k'", "Duplicate field 'a'", "Duplicate field 'k'"]
    assert len(es.documents("idx")) == 2


async def test_bulk_requests_are_recorded(es: ElasticsearchStandIn, client: httpx.AsyncClient) -> None:
    await bulk(client, {"create": {"_index": "idx", "_id": "1"}}, {"a": 1}, {"create": {"_index": "idx", "_id": "1"}},
               {"a": 1}, params={"filter_path": "errors"})
    await client.post("/_bulk", content=b"{}", headers=NDJSON)
    first, second = es.bulk_requests
    assert first.path == "/_bulk" and first.query == {"filter_path": ["errors"]} and first.gzip is False
    assert first.body_bytes > 0 and first.status == 200 and first.item_statuses == [201, 409]
    assert second.status == 400 and second.item_statuses == []
    assert es.item_statuses == {201: 1, 409: 1}


# -- gzip and sizes


async def test_gzip_request_bodies(es: ElasticsearchStandIn, client: httpx.AsyncClient) -> None:
    body = gzip.compress(ndjson({"create": {"_index": "idx", "_id": "z"}}, {"zipped": True}))
    response = await client.post("/_bulk", content=body, headers={**NDJSON, "content-encoding": "gzip"})
    assert response.status_code == 200 and response.json()["errors"] is False
    assert es.documents("idx") == {"z": {"zipped": True}}
    record = es.bulk_requests[-1]
    assert record.gzip is True and record.body_bytes == len(body)
    broken = await client.post("/_bulk", content=b"not gzip", headers={**NDJSON, "content-encoding": "gzip"})
    assert broken.status_code == 400 and broken.json()["error"]["type"] == "parse_exception"


async def test_bodies_over_max_body_bytes_are_413() -> None:
    async with ElasticsearchStandIn(max_body_bytes=10_000) as server, httpx.AsyncClient(base_url=server.url) as http:
        big = ndjson({"create": {"_index": "idx"}}, {"pad": "x" * 20_000})
        plain = await http.post("/_bulk", content=big, headers=NDJSON)
        assert plain.status_code == 413 and plain.content == b""
        # small on the wire, too large once decompressed: 413 as well
        bomb = gzip.compress(big)
        assert len(bomb) < 10_000
        zipped = await http.post("/_bulk", content=bomb, headers={**NDJSON, "content-encoding": "gzip"})
        assert zipped.status_code == 413 and zipped.content == b""
        assert server.documents("idx") == {}


async def test_tls_and_sources_not_kept() -> None:
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    async with ElasticsearchStandIn(ssl_context=context, keep_sources=False) as server:
        assert server.url.startswith("https://127.0.0.1:")
        verify = ssl.create_default_context()
        ca.configure_trust(verify)
        async with httpx.AsyncClient(base_url=server.url, verify=verify, timeout=DEADLINE) as http:
            response = await bulk(http, {"create": {"_index": "idx", "_id": "1"}}, {"a": 1},
                                  {"create": {"_index": "idx", "_id": "1"}}, {"a": 1},
                                  headers={"accept-encoding": "gzip"})
            assert [only(i)[1]["status"] for i in response.json()["items"]] == [201, 409]  # ids are still kept
            assert "content-encoding" not in response.headers  # Elasticsearch compresses plain HTTP only
            assert (await http.get("/idx/_doc/1")).json()["_source"] == {}
        assert server.documents("idx") == {"1": {}} and server.counts() == {"idx": 1}


# -- authentication


async def test_without_security_no_credentials_are_needed(client: httpx.AsyncClient) -> None:
    assert (await client.get("/", headers=basic("anyone", "anything"))).status_code == 200
    response = await client.get("/_security/_authenticate")
    assert_error_body(response, 500, "exception", re.compile(r"Security must be explicitly enabled.*"))


@pytest.fixture
async def secured() -> AsyncIterator[ElasticsearchStandIn]:
    async with ElasticsearchStandIn(api_keys={"VuaCfGcBCdbkQm-e5aOx": "ui2lp2axTNmsyakw9tvNnw"},
                                    users={"elastic": "changeme"}) as server:
        yield server


async def test_missing_credentials_are_401_with_www_authenticate(secured: ElasticsearchStandIn) -> None:
    async with httpx.AsyncClient(base_url=secured.url) as http:
        response = await http.post("/_bulk", content=ndjson({"create": {"_index": "idx"}}, {"a": 1}), headers=NDJSON,
                                   params={"filter_path": "errors"})
    error = assert_error_body(response, 401, "security_exception",
                              "missing authentication credentials for REST request [/_bulk?filter_path=errors]")
    challenges = ['Basic realm="security", charset="UTF-8"', 'Bearer realm="security"', "ApiKey"]
    assert response.headers.get_list("www-authenticate") == challenges
    assert error["header"] == {"WWW-Authenticate": challenges}
    assert response.headers["x-elastic-product"] == "Elasticsearch"
    assert secured.all_documents() == {} and secured.bulk_requests[-1].status == 401


@pytest.mark.parametrize(("headers", "reason"), [
    (basic("elastic", "wrong"), "unable to authenticate user [elastic] for REST request [/]"),
    (api_key("VuaCfGcBCdbkQm-e5aOx", "wrong"),
     "unable to authenticate with provided credentials and anonymous access is not allowed for this request"),
    ({"authorization": "Bearer abc"},
     "unable to authenticate with provided credentials and anonymous access is not allowed for this request"),
], ids=["basic", "api-key", "bearer"])
async def test_bad_credentials_are_401(secured: ElasticsearchStandIn, headers: dict[str, str], reason: str) -> None:
    async with httpx.AsyncClient(base_url=secured.url) as http:
        response = await http.get("/", headers=headers)
    assert_error_body(response, 401, "security_exception", reason)
    assert len(response.headers.get_list("www-authenticate")) == 3


async def test_api_key_and_basic_credentials(secured: ElasticsearchStandIn) -> None:
    # The encoded form is the one docs/PROTOCOLS.md 2.1 shows.
    assert api_key("VuaCfGcBCdbkQm-e5aOx", "ui2lp2axTNmsyakw9tvNnw")["authorization"] == (
        "ApiKey VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw==")
    async with httpx.AsyncClient(base_url=secured.url) as http:
        key = api_key("VuaCfGcBCdbkQm-e5aOx", "ui2lp2axTNmsyakw9tvNnw")
        who = (await http.get("/_security/_authenticate", headers=key)).json()
        assert who["authentication_type"] == "api_key" and who["api_key"]["id"] == "VuaCfGcBCdbkQm-e5aOx"
        user = (await http.get("/_security/_authenticate", headers=basic("elastic", "changeme"))).json()
        assert user["username"] == "elastic" and user["authentication_type"] == "realm"
        for headers in (key, basic("elastic", "changeme")):
            response = await http.post("/_bulk", content=ndjson({"create": {"_index": "idx"}}, {"a": 1}),
                                       headers={**NDJSON, **headers})
            assert response.status_code == 200 and response.json()["errors"] is False
        # The control endpoints need no credentials.
        assert (await http.get("/_standin/state")).json()["targets"] == {"idx": 2}


async def test_reject_auth(secured: ElasticsearchStandIn) -> None:
    secured.faults.reject_auth = True
    async with httpx.AsyncClient(base_url=secured.url, headers=basic("elastic", "changeme")) as http:
        assert (await http.get("/")).status_code == 401
        secured.faults.reject_auth = False
        assert (await http.get("/")).status_code == 200


# -- data streams


async def test_a_matching_data_stream_template_auto_creates_a_data_stream(es: ElasticsearchStandIn,
                                                                          client: httpx.AsyncClient) -> None:
    await put_template(client, "alerts", ALERTS_TEMPLATE)
    response = await bulk(client, {"create": {"_index": "alerts-waf", "_id": "1"}}, alert(1),
                          {"create": {"_index": "alerts-waf", "_id": "2"}}, alert(2))
    items = [only(i)[1] for i in response.json()["items"]]
    assert [i["status"] for i in items] == [201, 201]
    match = BACKING.fullmatch(items[0]["_index"])
    assert match is not None and match["name"] == "alerts-waf", items[0]
    assert time.strftime("%Y.%m.%d", time.gmtime()) in items[0]["_index"]
    streams = (await client.get("/_data_stream/alerts-waf")).json()["data_streams"]
    assert [(s["name"], s["template"], s["timestamp_field"], [i["index_name"] for i in s["indices"]])
            for s in streams] == [("alerts-waf", "alerts", {"name": "@timestamp"}, [items[0]["_index"]])]
    assert es.data_streams["alerts-waf"]["indices"] == [items[0]["_index"]]
    assert set(es.documents("alerts-waf")) == {"1", "2"}
    assert es.documents(items[0]["_index"]) == es.documents("alerts-waf")


async def test_the_builtin_logs_template_makes_data_streams(es: ElasticsearchStandIn,
                                                             client: httpx.AsyncClient) -> None:
    response = await bulk(client, {"create": {"_index": "logs-siem.alerts-default", "_id": "1"}}, alert(1))
    assert BACKING.fullmatch(only(response.json()["items"][0])[1]["_index"])
    assert es.data_streams["logs-siem.alerts-default"]["template"] == "logs"
    disabled = ElasticsearchStandIn(builtin_templates=False)
    assert disabled.index_templates == {}


@pytest.mark.parametrize("action", ["index", "update", "delete"])
async def test_a_data_stream_takes_create_only(client: httpx.AsyncClient, action: str) -> None:
    await put_template(client, "alerts", ALERTS_TEMPLATE)
    await bulk(client, {"create": {"_index": "alerts-x", "_id": "1"}}, alert(1))
    lines: list[Any] = [{action: {"_index": "alerts-x", "_id": "1"}}]
    if action != "delete":
        lines.append({"doc": {"a": 1}} if action == "update" else alert(1))
    body = (await bulk(client, *lines)).json()
    assert body["errors"] is True
    item = only(body["items"][0])[1]
    assert item["status"] == 400 and BACKING.fullmatch(item["_index"])
    assert item["error"] == {"type": "illegal_argument_exception",
                             "reason": "only write ops with an op_type of create are allowed in data streams"}


async def test_a_data_stream_document_needs_a_timestamp(es: ElasticsearchStandIn, client: httpx.AsyncClient) -> None:
    await put_template(client, "alerts", ALERTS_TEMPLATE)
    response = await bulk(client, {"create": {"_index": "alerts-x", "_id": "1"}}, {"message": "no time"},
                          {"create": {"_index": "alerts-x", "_id": "2"}}, {"@timestamp": "not a date"})
    first, second = (only(i)[1] for i in response.json()["items"])
    assert first["status"] == 400 and first["error"]["type"] == "document_parsing_exception"
    assert re.fullmatch(r"\[1:\d+\] failed to parse: data stream timestamp field \[@timestamp\] is missing",
                        first["error"]["reason"])
    assert first["error"]["caused_by"] == {"type": "illegal_argument_exception",
                                           "reason": "data stream timestamp field [@timestamp] is missing"}
    assert second["status"] == 400 and "of type [date]" in second["error"]["reason"]
    assert es.documents("alerts-x") == {}


async def test_without_a_data_stream_template_a_plain_index_is_created(es: ElasticsearchStandIn,
                                                                       client: httpx.AsyncClient) -> None:
    response = await bulk(client, {"index": {"_index": "siem-alerts", "_id": "1"}}, {"no": "timestamp"})
    assert only(response.json()["items"][0])[1] | {"_seq_no": 0} == {
        "_index": "siem-alerts", "_id": "1", "_version": 1, "result": "created", "status": 201, "_primary_term": 1,
        "_seq_no": 0, "_shards": {"total": 1, "successful": 1, "failed": 0}}
    assert es.data_streams == {} and es.documents("siem-alerts") == {"1": {"no": "timestamp"}}


async def test_the_data_stream_api(es: ElasticsearchStandIn, client: httpx.AsyncClient) -> None:
    none = await client.put("/_data_stream/alerts-x")
    assert_error_body(none, 400, "illegal_argument_exception", "no matching index template found for data stream "
                                                               "[alerts-x]")
    await put_template(client, "plain", {"index_patterns": ["plain-*"]})
    not_ds = await client.put("/_data_stream/plain-x")
    assert_error_body(not_ds, 400, "illegal_argument_exception",
                      "matching index template [plain] for data stream [plain-x] has no data stream template")
    await put_template(client, "alerts", ALERTS_TEMPLATE)
    assert (await client.put("/_data_stream/alerts-x")).json() == {"acknowledged": True}
    again = await client.put("/_data_stream/alerts-x")
    assert_error_body(again, 400, "resource_already_exists_exception", "data_stream [alerts-x] already exists")
    listed = (await client.get("/_data_stream")).json()["data_streams"]
    assert [s["name"] for s in listed] == ["alerts-x"] and listed[0]["generation"] == 1
    in_use = await client.delete("/_index_template/alerts")
    assert_error_body(in_use, 400, "illegal_argument_exception", re.compile(r"unable to remove composable templates "
                                                                            r"\[alerts\].*\[alerts-x\]"))
    assert (await client.delete("/_data_stream/alerts-x")).json() == {"acknowledged": True}
    missing = await client.get("/_data_stream/alerts-x")
    assert_error_body(missing, 404, "index_not_found_exception", "no such index [alerts-x]")
    assert es.data_streams == {} and es.indices == {}


async def test_backing_indices_refuse_direct_writes_and_gets_need_them(client: httpx.AsyncClient) -> None:
    await put_template(client, "alerts", ALERTS_TEMPLATE)
    created = only((await bulk(client, {"create": {"_index": "alerts-x", "_id": "1"}}, alert(1))).json()["items"][0])
    backing = created[1]["_index"]
    direct = only((await bulk(client, {"create": {"_index": backing, "_id": "2"}}, alert(2))).json()["items"][0])[1]
    assert direct["status"] == 400 and direct["error"]["reason"] == (
        "index request with op_type=create targeting backing indices is disallowed, target corresponding data "
        "stream [alerts-x] instead")
    refused = await client.get("/alerts-x/_doc/1")
    assert_error_body(refused, 400, "illegal_argument_exception", "The provided expression [alerts-x] matches a data "
                                                                  "stream, specify the corresponding concrete indices "
                                                                  "instead.")
    found = (await client.get(f"/{backing}/_doc/1")).json()
    assert found["found"] is True and found["_source"] == alert(1)


# -- index templates and indices


async def test_the_index_template_api(es: ElasticsearchStandIn, client: httpx.AsyncClient) -> None:
    await put_template(client, "alerts", ALERTS_TEMPLATE)
    got = (await client.get("/_index_template/alerts")).json()["index_templates"]
    assert [t["name"] for t in got] == ["alerts"] and got[0]["index_template"]["priority"] == 200
    assert got[0]["index_template"]["composed_of"] == []
    assert (await client.head("/_index_template/alerts")).status_code == 200
    assert es.index_templates["alerts"]["data_stream"] == {}
    everything = (await client.get("/_index_template")).json()["index_templates"]
    assert {t["name"] for t in everything} == {"alerts", "logs", "metrics", "synthetics"}
    overlapping = {**ALERTS_TEMPLATE, "index_patterns": ["alerts-w*"]}
    same_priority = await client.put("/_index_template/other", json=overlapping)
    assert_error_body(same_priority, 400, "illegal_argument_exception",
                      re.compile(r"index template \[other\] has index patterns \[alerts-w\*\] matching patterns from "
                                 r"existing templates \[alerts\].*same priority \[200\].*"))
    no_patterns = await client.put("/_index_template/bad", json={"priority": 1})
    assert_error_body(no_patterns, 400, "action_request_validation_exception",
                      "Validation Failed: 1: index patterns are missing;")
    bad_type = await client.put("/_index_template/bad", json={
        "index_patterns": ["bad-*"], "template": {"mappings": {"properties": {"f": {"type": "strnig"}}}}})
    error = assert_error_body(bad_type, 400, "mapper_parsing_exception",
                              "Failed to parse mapping: No handler for type [strnig] declared on field [f]")
    assert error["caused_by"]["type"] == "mapper_parsing_exception"
    assert (await client.delete("/_index_template/alerts")).json() == {"acknowledged": True}
    gone = await client.get("/_index_template/alerts")
    assert_error_body(gone, 404, "resource_not_found_exception", "index template matching [alerts] not found")
    assert (await client.head("/_index_template/alerts")).status_code == 404
    deleted_again = await client.delete("/_index_template/alerts")
    assert_error_body(deleted_again, 404, "index_template_missing_exception", "index_template [alerts] missing")


async def test_a_template_without_data_stream_maps_auto_created_indices(client: httpx.AsyncClient) -> None:
    await put_template(client, "siem", {"index_patterns": ["siem-*"], "template": {"mappings": {"properties": {
        "source": {"properties": {"ip": {"type": "ip"}}}}}}})
    body = (await bulk(client, {"index": {"_index": "siem-1", "_id": "ok"}}, {"source": {"ip": "203.0.113.9"}},
                       {"index": {"_index": "siem-1", "_id": "bad"}}, {"source": {"ip": "not-an-ip"}})).json()
    assert [only(i)[1]["status"] for i in body["items"]] == [201, 400]
    assert (await client.get("/siem-1")).json()["siem-1"]["mappings"]["properties"]["source"]


async def test_the_index_api(es: ElasticsearchStandIn, client: httpx.AsyncClient) -> None:
    created = await client.put("/strict-idx", json={"mappings": {"dynamic": "strict", "properties": {
        "a": {"type": "long"}}}})
    assert created.json() == {"acknowledged": True, "shards_acknowledged": True, "index": "strict-idx"}
    again = await client.put("/strict-idx")
    assert_error_body(again, 400, "resource_already_exists_exception", re.compile(r"index \[strict-idx/.+\] already "
                                                                                  r"exists"))
    invalid = await client.put("/Bad")
    assert_error_body(invalid, 400, "invalid_index_name_exception", "Invalid index name [Bad], must be lowercase")
    ds_only = await client.put("/logs-a-b")
    assert_error_body(ds_only, 400, "illegal_argument_exception", re.compile(r"cannot create index with name "
                                                                             r"\[logs-a-b\], because it matches with "
                                                                             r"template \[logs\].*"))
    assert (await client.head("/strict-idx")).status_code == 200
    assert (await client.head("/nope")).status_code == 404
    body = (await bulk(client, {"index": {"_index": "strict-idx", "_id": "1"}}, {"a": 1},
                       {"index": {"_index": "strict-idx", "_id": "2"}}, {"a": 1, "b": 2})).json()
    assert [only(i)[1]["status"] for i in body["items"]] == [201, 400]
    assert (await client.delete("/strict-idx")).json() == {"acknowledged": True}
    assert es.indices == {}


# -- mappings


MAPPINGS = {"properties": {
    "@timestamp": {"type": "date"},
    "source.ip": {"type": "ip"},
    "event": {"properties": {"severity": {"type": "long"}, "risk_score": {"type": "float"},
                             "count": {"type": "integer"}, "blocked": {"type": "boolean"},
                             "id": {"type": "keyword"}, "when": {"type": "date", "format": "epoch_second"}}},
    "labels": {"type": "object"},
    "lenient": {"type": "long", "ignore_malformed": True},
    "strict_part": {"dynamic": "strict", "properties": {"known": {"type": "keyword"}}},
}}


@pytest.fixture
async def mapped(client: httpx.AsyncClient) -> httpx.AsyncClient:
    await put_template(client, "mapped", {"index_patterns": ["mapped"], "template": {"mappings": MAPPINGS}})
    return client


async def index_one(client: httpx.AsyncClient, doc: dict[str, Any], doc_id: str = "d1") -> dict[str, Any]:
    response = await bulk(client, {"index": {"_index": "mapped", "_id": doc_id}}, doc)
    return only(response.json()["items"][0])[1]


@pytest.mark.parametrize(("doc", "field", "type_", "preview", "cause"), [
    ({"source": {"ip": "not-an-ip"}}, "source.ip", "ip", "not-an-ip",
     {"type": "illegal_argument_exception", "reason": "'not-an-ip' is not an IP string literal."}),
    ({"source.ip": "999.1.1.1"}, "source.ip", "ip", "999.1.1.1",
     {"type": "illegal_argument_exception", "reason": "'999.1.1.1' is not an IP string literal."}),
    ({"source": {"ip": ["203.0.113.9", "nope"]}}, "source.ip", "ip", "nope",
     {"type": "illegal_argument_exception", "reason": "'nope' is not an IP string literal."}),
    ({"@timestamp": "yesterday"}, "@timestamp", "date", "yesterday",
     {"type": "illegal_argument_exception",
      "reason": "failed to parse date field [yesterday] with format [strict_date_optional_time||epoch_millis]",
      "caused_by": {"type": "date_time_parse_exception", "reason": "Failed to parse with all enclosed parsers"}}),
    ({"@timestamp": "2025-02-30T00:00:00Z"}, "@timestamp", "date", "2025-02-30T00:00:00Z", None),
    ({"event": {"when": "2025-01-01"}}, "event.when", "date", "2025-01-01",
     {"type": "illegal_argument_exception", "reason": "failed to parse date field [2025-01-01] with format "
                                                      "[epoch_second]",
      "caused_by": {"type": "date_time_parse_exception",
                    "reason": "Text '2025-01-01' could not be parsed at index 0"}}),
    ({"event": {"severity": "high"}}, "event.severity", "long", "high",
     {"type": "number_format_exception", "reason": 'For input string: "high"'}),
    ({"event.severity": True}, "event.severity", "long", "true", None),
    ({"event": {"count": 3_000_000_000}}, "event.count", "integer", "3000000000",
     {"type": "illegal_argument_exception", "reason": "Value [3000000000] is out of range for an integer"}),
    ({"event": {"risk_score": "very"}}, "event.risk_score", "float", "very",
     {"type": "number_format_exception", "reason": 'For input string: "very"'}),
    ({"event": {"blocked": "yes"}}, "event.blocked", "boolean", "yes",
     {"type": "illegal_argument_exception",
      "reason": "Failed to parse value [yes] as only [true] or [false] are allowed."}),
    ({"event": {"id": {"nested": 1}}}, "event.id", "keyword", "{nested=1}", None),
], ids=["ip", "ip-dotted", "ip-array", "date", "date-range", "date-format", "long", "long-bool", "integer-range",
        "float", "boolean", "keyword-object"])
async def test_a_value_that_does_not_fit_its_mapping_is_an_item_400(es: ElasticsearchStandIn, mapped: httpx.AsyncClient,
                                                                    doc: dict[str, Any], field: str, type_: str,
                                                                    preview: str, cause: dict[str, Any] | None) -> None:
    item = await index_one(mapped, doc)
    assert item["status"] == 400 and item["_id"] == "d1"
    error = item["error"]
    assert error["type"] == "document_parsing_exception"
    expected = (rf"\[1:\d+\] failed to parse field \[{re.escape(field)}\] of type \[{type_}\] in document with id "
                rf"'d1'\. Preview of field's value: '{re.escape(preview)}'")
    assert re.fullmatch(expected, error["reason"]), error["reason"]
    if cause is not None:
        assert error["caused_by"] == cause
    else:
        assert error["caused_by"]["type"] in ("illegal_argument_exception", "illegal_state_exception")
    assert es.documents("mapped") == {}


@pytest.mark.parametrize(("doc", "type_", "reason"), [
    ({"source": "203.0.113.9"}, "document_parsing_exception",
     r"\[1:\d+\] object mapping for \[source\] tried to parse field \[source\] as object, but found a concrete "
     r"value"),
    ({"source.ip.port": 1}, "document_parsing_exception",
     r"\[1:\d+\] Could not dynamically add mapping for field \[source\.ip\.port\]\. Existing mapping for "
     r"\[source\.ip\] must be of type object but found \[ip\]\."),
    ({"strict_part": {"known": "k", "unknown": 1}}, "strict_dynamic_mapping_exception",
     r"\[1:\d+\] mapping set to strict, dynamic introduction of \[unknown\] within \[strict_part\] is not allowed"),
], ids=["concrete-for-object", "leaf-as-object", "strict"])
async def test_structural_mapping_errors(mapped: httpx.AsyncClient, doc: dict[str, Any], type_: str,
                                         reason: str) -> None:
    item = await index_one(mapped, doc)
    assert item["status"] == 400 and item["error"]["type"] == type_
    assert re.fullmatch(reason, item["error"]["reason"]), item["error"]["reason"]


async def test_strict_at_the_root(client: httpx.AsyncClient) -> None:
    await put_template(client, "strict", {"index_patterns": ["strict"], "template": {"mappings": {
        "dynamic": "strict", "properties": {"a": {"type": "keyword"}}}}})
    response = await bulk(client, {"index": {"_index": "strict", "_id": "1"}}, {"a": "x", "extra": 1})
    error = only(response.json()["items"][0])[1]["error"]
    assert error["type"] == "strict_dynamic_mapping_exception"
    assert re.fullmatch(r"\[1:\d+\] mapping set to strict, dynamic introduction of \[extra\] within \[_doc\] is not "
                        r"allowed", error["reason"])


@pytest.mark.parametrize("doc", [
    {"@timestamp": "2025-01-15"},
    {"@timestamp": "2025-01-15T10:20:30+01:00"},
    {"@timestamp": "2025-01-15T10:20:30.123456789Z"},
    {"@timestamp": "2024-02-29T00:00:00Z"},
    {"@timestamp": 1736936430123},
    {"@timestamp": "1736936430123"},
    {"source": {"ip": "2001:db8::1"}},
    {"source.ip": ["203.0.113.9", None]},
    {"event": {"severity": "12", "risk_score": "1.5", "count": 7.9, "blocked": "false", "id": 42, "when": 1736936430}},
    {"event": {"severity": None, "blocked": True}},
    {"labels": {"anything": "goes"}, "unmapped": {"deep": [1, "x", {"y": True}]}},
    {"lenient": "not a number"},
    {"strict_part": {"known": "k"}},
    {"strict_part.known": ["k1", "k2"]},
], ids=["date", "offset", "nanos", "leap-day", "epoch", "epoch-string", "ipv6", "ip-array-null", "coerced", "nulls",
        "unmapped", "ignore-malformed", "strict-known", "strict-dotted"])
async def test_values_that_fit_are_accepted(es: ElasticsearchStandIn, mapped: httpx.AsyncClient,
                                            doc: dict[str, Any]) -> None:
    item = await index_one(mapped, doc)
    assert item["status"] == 201, item
    assert es.documents("mapped") == {"d1": doc}


async def test_an_ipv6_zone_is_no_ip_literal(es: ElasticsearchStandIn, mapped: httpx.AsyncClient) -> None:
    # Python's ipaddress takes "fe80::1%eth0"; Elasticsearch's InetAddresses.forString does not.
    item = await index_one(mapped, {"source": {"ip": "fe80::1%eth0"}})
    assert item["status"] == 400 and item["error"]["caused_by"] == {
        "type": "illegal_argument_exception", "reason": "'fe80::1%eth0' is not an IP string literal."}
    assert (await index_one(mapped, {"source": {"ip": "fe80::1"}}, "d2"))["status"] == 201


async def test_flattened_fields_take_objects_within_their_depth_limit(es: ElasticsearchStandIn,
                                                                       client: httpx.AsyncClient) -> None:
    await put_template(client, "flat", {"index_patterns": ["flat*"], "template": {"mappings": {"properties": {
        "vendor": {"type": "flattened"}, "shallow": {"type": "flattened", "depth_limit": 2}}}}})

    def deep(depth: int) -> dict[str, Any]:
        node: dict[str, Any] = {"leaf": "x"}
        for _ in range(depth - 1):
            node = {"k": node, "list": [1, [2]]}  # arrays are no level
        return node

    async def one(doc: dict[str, Any]) -> dict[str, Any]:
        response = await bulk(client, {"index": {"_index": "flat"}}, doc)
        return only(response.json()["items"][0])[1]

    assert (await one({"vendor": deep(20)}))["status"] == 201
    assert (await one({"vendor": {"a": [{"b": [{"c": 1}]}]}, "shallow": {"a": [[{"b": 1}]]}}))["status"] == 201
    for doc, field, limit in (({"vendor": deep(21)}, "vendor", 20), ({"shallow": {"a": {"b": {"c": 1}}}}, "shallow", 2),
                              ({"shallow": {"a": [[{"b": {"c": 1}}]]}}, "shallow", 2)):
        item = await one(doc)
        assert item["status"] == 400 and item["error"]["type"] == "document_parsing_exception", item
        assert item["error"]["caused_by"] == {
            "type": "illegal_argument_exception",
            "reason": f"The provided [flattened] field [{field}] exceeds the maximum depth limit of [{limit}]."}
    item = await one({"vendor": {"a": {"b\u0000c": 1}}})
    assert item["error"]["caused_by"]["reason"] == ("Keys in [flattened] fields cannot contain the reserved "
                                                    "character \\0. Offending key: [a.b\u0000c].")
    for value, token in (("text", "VALUE_STRING"), ([1, 2], "VALUE_NUMBER"), (7, "VALUE_NUMBER")):
        item = await one({"vendor": value})
        assert item["status"] == 400 and item["error"]["caused_by"] == {
            "type": "parsing_exception",
            "reason": f"Failed to parse object: expecting token of type [START_OBJECT] but found [{token}]"}, item


async def test_flattened_terms_longer_than_lucene_takes_are_refused(es: ElasticsearchStandIn,
                                                                     client: httpx.AsyncClient) -> None:
    await put_template(client, "flat", {"index_patterns": ["flat*"], "template": {"mappings": {"properties": {
        "vendor": {"type": "flattened"}, "capped": {"type": "flattened", "ignore_above": 8191}}}}})

    async def one(doc: dict[str, Any]) -> dict[str, Any]:
        response = await bulk(client, {"index": {"_index": "flat"}}, doc)
        return only(response.json()["items"][0])[1]

    emoji = "\U0001f6e1" * 8191  # 8191 characters, 32764 bytes: with its key and \0, one term too many
    for doc, field, key in (({"capped": {"payload": emoji}}, "capped", "payload"),
                            ({"vendor": {"k" * 20000: "v" * 12766}}, "vendor", "k" * 20000)):
        item = await one(doc)
        assert item["status"] == 400 and item["error"]["caused_by"]["reason"].startswith(
            f"Flattened field [{field}] contains one immense field whose keyed encoding is longer than the allowed "
            f"max length of 32766 bytes. Key length: {len(key)}, value length: "), item
    assert (await one({"capped": {"payload": emoji + "x"}}))["status"] == 201  # over ignore_above: not indexed
    assert (await one({"vendor": {"k" * 20000: "v" * 12765}}))["status"] == 201


async def test_constant_keywords_take_one_value(es: ElasticsearchStandIn, client: httpx.AsyncClient) -> None:
    await put_template(client, "const", {"index_patterns": ["const"], "template": {"mappings": {"properties": {
        "fixed": {"type": "constant_keyword", "value": "logs"}, "first": {"type": "constant_keyword"}}}}})

    async def one(doc: dict[str, Any]) -> dict[str, Any]:
        response = await bulk(client, {"index": {"_index": "const"}}, doc)
        return only(response.json()["items"][0])[1]

    assert (await one({"fixed": "logs", "first": "a"}))["status"] == 201
    assert (await one({"first": "a"}))["status"] == 201
    for doc, field, value, got in (({"fixed": "metrics"}, "fixed", "logs", "metrics"),
                                   ({"first": "b"}, "first", "a", "b")):
        item = await one(doc)
        assert item["status"] == 400 and item["error"]["caused_by"] == {
            "type": "illegal_argument_exception",
            "reason": f"[constant_keyword] field [{field}] only accepts values that are equal to the value defined "
                      f"in the mappings [{value}], but got [{got}]"}, item


async def test_component_templates_compose_and_must_exist(es: ElasticsearchStandIn, client: httpx.AsyncClient) -> None:
    builtin = (await client.get("/_component_template/logs@*")).json()["component_templates"]
    assert [c["name"] for c in builtin] == ["logs@mappings", "logs@settings"]
    settings = builtin[1]["component_template"]["template"]["settings"]["index"]
    assert settings["lifecycle"] == {"name": "logs"} and settings["mapping"]["ignore_malformed"] is True
    response = await client.put("/_index_template/mine", json={"index_patterns": ["mine-*"], "priority": 150,
                                                               "composed_of": ["logs@mappings", "mine@custom"]})
    assert_error_body(response, 400, "invalid_index_template_exception",
                      "index_template [mine] invalid, cause [index template [mine] specifies component templates "
                      "[mine@custom] that do not exist]")
    assert "mine" not in es.index_templates
    response = await client.put("/_component_template/mine@custom", json={"template": {"settings": {
        "index.mapping.ignore_malformed": True}, "mappings": {"properties": {"n": {"type": "long"}}}}})
    assert response.json() == {"acknowledged": True}
    await put_template(client, "mine", {"index_patterns": ["mine-*"], "priority": 150, "data_stream": {},
                                        "composed_of": ["logs@mappings", "logs@settings", "mine@custom", "gone@custom"],
                                        "ignore_missing_component_templates": ["gone@custom"],
                                        "template": {"mappings": {"properties": {"ip": {"type": "ip"}}}}})
    response = await client.delete("/_component_template/mine@custom")
    assert_error_body(response, 400, "illegal_argument_exception",
                      "component templates [mine@custom] cannot be removed as they are still in use by index "
                      "templates [mine]")
    # The data stream gets the composition: the components' mappings and settings, then the template's own.
    response = await bulk(client, {"create": {"_index": "mine-a-b", "_id": "1"}},
                          {"@timestamp": TS, "n": "many", "ip": "nope", "data_stream": {"type": "logs"}},
                          {"create": {"_index": "mine-a-b", "_id": "2"}},
                          {"@timestamp": TS, "data_stream": {"type": "metrics"}})
    items = [only(i)[1] for i in response.json()["items"]]
    assert items[0]["status"] == 201, items  # ignore_malformed (logs@settings): kept in _source, not indexed
    assert items[1]["status"] == 400 and "[constant_keyword] field [data_stream.type]" in items[1]["error"][
        "caused_by"]["reason"]
    stream = (await client.get("/_data_stream/mine-a-b")).json()["data_streams"][0]
    assert stream["ilm_policy"] == "logs" and stream["next_generation_managed_by"] == "Index Lifecycle Management"
    index = (await client.get(f"/{stream['indices'][0]['index_name']}")).json()
    (body,) = index.values()
    assert body["settings"]["index"]["lifecycle"] == {"name": "logs"}
    assert body["mappings"]["properties"]["ip"] == {"type": "ip"}
    # A template's own data stream lifecycle.
    await put_template(client, "own", {"index_patterns": ["own-*"], "data_stream": {},
                                       "template": {"lifecycle": {"data_retention": "30d"}}})
    assert (await client.put("/_data_stream/own-x")).status_code == 200
    stream = (await client.get("/_data_stream/own-x")).json()["data_streams"][0]
    assert stream["lifecycle"] == {"enabled": True, "data_retention": "30d"} and "ilm_policy" not in stream
    assert stream["next_generation_managed_by"] == "Data stream lifecycle"
    # Without ignore_malformed a bad value is refused.
    await put_template(client, "strictish", {"index_patterns": ["strictish"], "composed_of": ["logs@mappings"],
                                             "template": {"mappings": {"properties": {"ip": {"type": "ip"}}}}})
    response = await bulk(client, {"index": {"_index": "strictish"}}, {"ip": "nope"})
    assert only(response.json()["items"][0])[1]["status"] == 400
    assert (await client.get("/_component_template/nope")).status_code == 404


# -- filter_path


def test_filter_path_on_the_documented_examples() -> None:
    # Examples of Elasticsearch's "Common options" page, on answers shaped like theirs.
    search: dict[str, Any] = {"took": 3, "timed_out": False, "_shards": {"total": 1},
              "hits": {"total": {"value": 2}, "hits": [{"_id": "1", "_score": 1.0, "_source": {"title": "a"}},
                                                       {"_id": "2", "_score": 0.5, "_source": {"title": "b"}}]}}
    assert FilterPath("took,hits.hits._id,hits.hits._score").apply(search) == {
        "took": 3, "hits": {"hits": [{"_id": "1", "_score": 1.0}, {"_id": "2", "_score": 0.5}]}}
    state = {"metadata": {"indices": {"my-index-000001": {"state": "open", "settings": {}, "stats": 1},
                                      "logstash-2024": {"state": "close"}}},
             "routing_table": {"indices": {"my-index-000001": {"shards": {"0": [
                 {"state": "STARTED", "primary": True}, {"state": "UNASSIGNED", "primary": False}]}}}}}
    assert FilterPath("metadata.indices.*.stat*").apply(state) == {"metadata": {"indices": {
        "my-index-000001": {"state": "open", "stats": 1}, "logstash-2024": {"state": "close"}}}}
    assert FilterPath("routing_table.indices.**.state").apply(state) == {"routing_table": {"indices": {
        "my-index-000001": {"shards": {"0": [{"state": "STARTED"}, {"state": "UNASSIGNED"}]}}}}}
    assert FilterPath("-metadata").apply(state) == {"routing_table": state["routing_table"]}
    assert FilterPath("metadata.indices.*.state,-metadata.indices.logstash-*").apply(state) == {
        "metadata": {"indices": {"my-index-000001": {"state": "open"}}}}
    assert FilterPath("**.primary").apply(state) == {"routing_table": {"indices": {"my-index-000001": {"shards": {
        "0": [{"primary": True}, {"primary": False}]}}}}}
    assert FilterPath("nothing.here").apply(state) == {}
    assert FilterPath(["took", "-took"]).apply(search) == {}
    assert FilterPath("").apply(search) == search
    assert search["took"] == 3 and len(search["hits"]["hits"][0]) == 3  # the input is not modified


async def test_filter_path_on_bulk_answers(client: httpx.AsyncClient) -> None:
    lines = ({"create": {"_index": "idx", "_id": "1"}}, {"a": 1}, {"create": {"_index": "idx", "_id": "1"}}, {"a": 1},
             {"create": {"_index": "idx", "_id": "2"}}, {"a": 2})
    compact = (await bulk(client, *lines, params={"filter_path": "errors,items.*.status,items.*.error"})).json()
    assert compact["errors"] is True and "took" not in compact
    assert [only(i)[1]["status"] for i in compact["items"]] == [201, 409, 201]
    assert only(compact["items"][1])[1]["error"]["type"] == "version_conflict_engine_exception"
    assert set(only(compact["items"][0])[1]) == {"status"}
    errors_only = (await bulk(client, *lines, params={"filter_path": "items.*.error"})).json()
    # every item failed this time: all three have an error
    assert [only(i)[1]["error"]["type"] for i in errors_only["items"]] == ["version_conflict_engine_exception"] * 3
    all_ok = (await bulk(client, {"create": {"_index": "idx", "_id": "3"}}, {"a": 3},
                         params={"filter_path": "errors,items.*.status"})).json()
    assert all_ok == {"errors": False, "items": [{"create": {"status": 201}}]}
    nothing = (await bulk(client, {"create": {"_index": "idx", "_id": "4"}}, {"a": 4},
                          params={"filter_path": "items.*.error"})).json()
    assert nothing == {}
    excluded = (await bulk(client, {"create": {"_index": "idx", "_id": "5"}}, {"a": 5},
                           params={"filter_path": "-took,-items.*._shards"})).json()
    assert "took" not in excluded and "_shards" not in only(excluded["items"][0])[1]
    assert only(excluded["items"][0])[1]["_id"] == "5"


async def test_filter_path_on_other_answers(client: httpx.AsyncClient) -> None:
    assert (await client.get("/", params={"filter_path": "version.number"})).json() == {
        "version": {"number": "8.15.0"}}


# -- fault injection


REQUEST_FAULTS = [
    (429, "es_rejected_execution_exception", r"rejected execution of coordinating operation .+"),
    (500, "exception", r".+"),
    (502, "status_exception", r".+"),
    (503, "cluster_block_exception", r"blocked by: \[SERVICE_UNAVAILABLE/1/state not recovered / initialized\];"),
    (504, "status_exception", r".+"),
    (401, "security_exception", r"missing authentication credentials for REST request \[/_bulk\]"),
    (403, "security_exception",
     r"action \[indices:data/write/bulk\[s\]\] is unauthorized for user \[anonymous\] .+ this action is granted by "
     r"the index privileges \[create_doc,create,index,write,all\]"),
]


@pytest.mark.parametrize(("status", "type_", "reason"), REQUEST_FAULTS, ids=[str(f[0]) for f in REQUEST_FAULTS])
async def test_fail_requests(es: ElasticsearchStandIn, client: httpx.AsyncClient, status: int, type_: str,
                             reason: str) -> None:
    es.faults.fail_requests(status, count=2)
    lines = ({"create": {"_index": "idx", "_id": "1"}}, {"a": 1})
    for _ in range(2):
        response = await bulk(client, *lines)
        assert_error_body(response, status, type_, re.compile(reason))
        assert response.headers["x-elastic-product"] == "Elasticsearch"
        if status == 401:
            assert len(response.headers.get_list("www-authenticate")) == 3
    assert es.documents("idx") == {}
    assert (await client.get("/")).status_code == 200  # only bulk requests fail
    assert (await bulk(client, *lines)).json()["errors"] is False
    assert [r.status for r in es.bulk_requests] == [status, status, 200]


async def test_fail_requests_413_has_an_empty_body_and_types_can_be_chosen(es: ElasticsearchStandIn,
                                                                           client: httpx.AsyncClient) -> None:
    es.faults.fail_requests(413)
    es.faults.fail_requests(429, error_type="circuit_breaking_exception", reason="[parent] Data too large")
    lines = ({"create": {"_index": "idx"}}, {"a": 1})
    too_large = await bulk(client, *lines)
    assert too_large.status_code == 413 and too_large.content == b""
    breaker = await bulk(client, *lines)
    assert_error_body(breaker, 429, "circuit_breaking_exception", "[parent] Data too large")


async def test_fail_items_next_n(es: ElasticsearchStandIn, client: httpx.AsyncClient) -> None:
    es.faults.fail_items(429, count=2)
    body = (await bulk(client, *[line for i in range(3) for line in ({"create": {"_index": "idx", "_id": str(i)}},
                                                                    {"n": i})])).json()
    assert body["errors"] is True
    items = [only(i)[1] for i in body["items"]]
    assert [i["status"] for i in items] == [429, 429, 201]
    assert items[0]["error"]["type"] == "es_rejected_execution_exception"
    assert items[0]["error"]["reason"].startswith("rejected execution of ")
    assert items[0]["_index"] == "idx" and items[0]["_id"] == "0"
    assert es.documents("idx") == {"2": {"n": 2}}
    assert es.faults.pending()["fail_items"] == []


async def test_fail_items_by_id_then_accepted(es: ElasticsearchStandIn, client: httpx.AsyncClient) -> None:
    es.faults.fail_items(429, count=2, ids=["b"])
    lines = [line for doc_id in "abc" for line in ({"create": {"_index": "idx", "_id": doc_id}}, {"id": doc_id})]
    first = [only(i)[1]["status"] for i in (await bulk(client, *lines)).json()["items"]]
    assert first == [201, 429, 201]
    retry = ({"create": {"_index": "idx", "_id": "b"}}, {"id": "b"})
    assert only((await bulk(client, *retry)).json()["items"][0])[1]["status"] == 429
    assert only((await bulk(client, *retry)).json()["items"][0])[1]["status"] == 201  # a retried item succeeds
    assert set(es.documents("idx")) == {"a", "b", "c"}


ITEM_FAULTS = [
    (400, "document_parsing_exception", False),
    (403, "cluster_block_exception", False),
    (404, "index_not_found_exception", True),
    (409, "version_conflict_engine_exception", True),
    (429, "es_rejected_execution_exception", False),
    (500, "exception", False),
    (503, "unavailable_shards_exception", True),
]


@pytest.mark.parametrize(("status", "type_", "with_index"), ITEM_FAULTS, ids=[str(f[0]) for f in ITEM_FAULTS])
async def test_fail_items_answer_the_usual_error(es: ElasticsearchStandIn, client: httpx.AsyncClient, status: int,
                                                 type_: str, with_index: bool) -> None:
    await put_template(client, "alerts", ALERTS_TEMPLATE)
    es.faults.fail_items(status, ids=["x"])
    item = only((await bulk(client, {"create": {"_index": "alerts-x", "_id": "x"}}, alert(1))).json()["items"][0])[1]
    assert item["status"] == status and BACKING.fullmatch(item["_index"])
    assert item["error"]["type"] == type_ and item["error"]["reason"]
    if with_index:
        assert item["error"]["index"] == item["_index"] and item["error"]["shard"] == "0"
    if status == 400:
        assert item["error"]["caused_by"]["type"] == "illegal_argument_exception"


async def test_fail_items_with_a_chosen_error(client: httpx.AsyncClient, es: ElasticsearchStandIn) -> None:
    es.faults.fail_items(400, error_type="illegal_argument_exception", reason="pipeline with id [x] does not exist")
    item = only((await bulk(client, {"create": {"_index": "idx"}}, {"a": 1})).json()["items"][0])[1]
    assert item["error"] == {"type": "illegal_argument_exception", "reason": "pipeline with id [x] does not exist"}


async def test_delay(es: ElasticsearchStandIn, client: httpx.AsyncClient) -> None:
    es.faults.delay_seconds = 0.3
    started = time.monotonic()
    response = await bulk(client, {"create": {"_index": "idx", "_id": "1"}}, {"a": 1})
    assert time.monotonic() - started >= 0.3
    assert response.json()["errors"] is False
    assert es.documents("idx") == {"1": {"a": 1}}


async def test_dropped_connections(es: ElasticsearchStandIn, client: httpx.AsyncClient) -> None:
    es.faults.drop_connections(2)
    lines = ({"create": {"_index": "idx", "_id": "1"}}, {"a": 1})
    for _ in range(2):
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            await bulk(client, *lines)
    assert es.documents("idx") == {}  # dropped before it was processed
    assert (await bulk(client, *lines)).json()["errors"] is False
    assert [(r.status, r.item_statuses) for r in es.bulk_requests] == [(0, []), (0, []), (200, [201])]


async def test_dropped_after_indexing(es: ElasticsearchStandIn, client: httpx.AsyncClient) -> None:
    es.faults.drop_connections(1, after_indexing=True)
    lines = ({"create": {"_index": "idx", "_id": "1"}}, {"a": 1})
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        await bulk(client, *lines)
    assert es.documents("idx") == {"1": {"a": 1}}  # stored, the client never knew
    retried = only((await bulk(client, *lines)).json()["items"][0])[1]
    assert retried["status"] == 409  # create + _id: the retry is a duplicate, not a second copy
    assert [(r.status, r.item_statuses) for r in es.bulk_requests] == [(0, [201]), (200, [409])]


async def test_faults_and_state_over_http(es: ElasticsearchStandIn, client: httpx.AsyncClient) -> None:
    spec = {"fail_requests": {"status": 503, "count": 1}, "fail_items": [{"status": 429, "ids": ["b"], "count": 1}],
            "delay_seconds": 0.0, "drop_connections": {"count": 1, "after_indexing": False}, "reject_auth": False}
    answer = await client.post("/_standin/faults", json=spec)
    assert answer.status_code == 200
    pending = answer.json()["faults"]
    assert [f["status"] for f in pending["fail_requests"]] == [503]
    assert pending["fail_items_by_id"]["b"][0]["status"] == 429 and pending["drop_connections"] == 1
    lines = [line for doc_id in "ab" for line in ({"create": {"_index": "idx", "_id": doc_id}}, {"id": doc_id})]
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        await bulk(client, *lines)
    assert (await bulk(client, *lines)).status_code == 503
    assert [only(i)[1]["status"] for i in (await bulk(client, *lines)).json()["items"]] == [201, 429]
    state = (await client.get("/_standin/state")).json()
    assert state["targets"] == {"idx": 1} and state["documents"] == 1
    assert state["bulk_requests"] == 3 and state["item_statuses"] == {"201": 1, "429": 1}
    assert state["faults"]["fail_requests"] == [] and state["faults"]["fail_items_by_id"] == {}
    assert "logs" in state["index_templates"]
    for bad in ({"fail_items": {"status": "soon"}}, {"nonsense": 1}, {"delay_seconds": -1},
                {"fail_items": {"status": 429, "ids": "b"}}):
        refused = await client.post("/_standin/faults", json=bad)
        assert refused.status_code == 400, bad
    assert (await client.get("/_standin/faults")).status_code == 405
    await client.post("/_standin/faults", json={"fail_requests": {"status": 429}})
    assert (await client.post("/_standin/reset")).json() == {"acknowledged": True}
    state = (await client.get("/_standin/state")).json()
    assert state["targets"] == {} and state["bulk_requests"] == 0 and state["faults"]["fail_requests"] == []
    assert (await bulk(client, *lines)).json()["errors"] is False


async def test_wait_for_documents(es: ElasticsearchStandIn, client: httpx.AsyncClient) -> None:
    await bulk(client, {"create": {"_index": "idx", "_id": "1"}}, {"a": 1})
    assert await es.wait_for_documents("idx", 1) == {"1": {"a": 1}}
    with pytest.raises(AssertionError, match="expected 2 documents"):
        await es.wait_for_documents("idx", 2, timeout=0.2)


# -- the other endpoints


async def test_get_count_search(client: httpx.AsyncClient) -> None:
    await put_template(client, "alerts", ALERTS_TEMPLATE)
    await bulk(client, *[line for i in range(5) for line in ({"create": {"_index": "alerts-x", "_id": str(i)}},
                                                            alert(i, tag="even" if i % 2 == 0 else "odd"))])
    await bulk(client, {"index": {"_index": "plain", "_id": "p"}}, {"message": "Hello World"})
    assert (await client.get("/alerts-x/_count")).json()["count"] == 5
    assert (await client.post("/_count", json={"query": {"match_all": {}}})).json()["count"] == 6
    assert (await client.post("/alerts-*/_count", json={"query": {"term": {"tag.keyword": "even"}}})).json()[
        "count"] == 3
    by_keyword = (await client.post("/alerts-x/_search", json={"query": {"term": {"event.id": "a-3"}}})).json()
    assert [h["_id"] for h in by_keyword["hits"]["hits"]] == ["3"]
    assert BACKING.fullmatch(by_keyword["hits"]["hits"][0]["_index"])
    assert by_keyword["hits"]["hits"][0]["_source"] == alert(3, tag="odd")
    # an unmapped string is text: a term query matches one of its (lower-cased) tokens only
    assert (await client.post("/plain/_count", json={"query": {"term": {"message": "hello"}}})).json()["count"] == 1
    assert (await client.post("/plain/_count", json={"query": {"term": {"message": "Hello World"}}})).json()[
        "count"] == 0
    assert (await client.post("/plain/_count", json={"query": {"term": {"message.keyword": "Hello World"}}})).json()[
        "count"] == 1
    page = (await client.get("/alerts-x/_search", params={"size": "2", "from": "1"})).json()
    assert page["hits"]["total"] == {"value": 5, "relation": "eq"} and len(page["hits"]["hits"]) == 2
    numbers = (await client.post("/alerts-x/_search", json={"size": 10, "query": {"term": {"event.severity": 73}}}))
    assert numbers.json()["hits"]["total"]["value"] == 5
    unknown = await client.post("/alerts-x/_search", json={"query": {"fuzzy_thing": {}}})
    assert_error_body(unknown, 400, "parsing_exception", "unknown query [fuzzy_thing]")
    missing = await client.get("/nope/_count")
    assert_error_body(missing, 404, "index_not_found_exception", "no such index [nope]")
    assert (await client.get("/nope-*/_count")).json()["count"] == 0
    doc = (await client.get("/plain/_doc/p")).json()
    assert doc["found"] is True and doc["_version"] == 1 and doc["_source"] == {"message": "Hello World"}
    absent = await client.get("/plain/_doc/zz")
    assert absent.status_code == 404 and absent.json() == {"_index": "plain", "_id": "zz", "found": False}
    assert (await client.post("/alerts-x/_refresh")).json()["_shards"]["failed"] == 0


async def test_single_document_apis(es: ElasticsearchStandIn, client: httpx.AsyncClient) -> None:
    created = await client.put("/idx/_doc/1", json={"a": 1})
    assert created.status_code == 201 and created.json()["result"] == "created"
    replaced = await client.put("/idx/_doc/1", json={"a": 2})
    assert replaced.status_code == 200 and replaced.json()["_version"] == 2
    conflict = await client.put("/idx/_create/1", json={"a": 3})
    assert_error_body(conflict, 409, "version_conflict_engine_exception",
                      "[1]: version conflict, document already exists (current version [2])")
    updated = await client.post("/idx/_update/1", json={"doc": {"b": 1}})
    assert updated.status_code == 200 and es.documents("idx") == {"1": {"a": 2, "b": 1}}
    auto = await client.post("/idx/_doc", json={"c": 1})
    assert auto.status_code == 201 and len(auto.json()["_id"]) == 20
    deleted = await client.delete("/idx/_doc/1")
    assert deleted.status_code == 200 and deleted.json()["result"] == "deleted"
    again = await client.delete("/idx/_doc/1")
    assert again.status_code == 404 and again.json()["result"] == "not_found"


async def test_health_endpoints(client: httpx.AsyncClient) -> None:
    health = (await client.get("/_cluster/health")).json()
    assert health["status"] == "green" and health["number_of_nodes"] == 1
    cat = await client.get("/_cat/health")
    assert cat.status_code == 200 and cat.headers["content-type"].startswith("text/plain")
    assert " standin green " in cat.text
    assert (await client.get("/_cat/health", params={"format": "json"})).json()[0]["status"] == "green"


async def test_unknown_paths_and_methods(client: httpx.AsyncClient) -> None:
    no_handler = await client.get("/_foo/bar/baz")
    assert no_handler.status_code == 400
    assert no_handler.json() == {"error": "no handler found for uri [/_foo/bar/baz] and method [GET]"}
    assert no_handler.headers["x-elastic-product"] == "Elasticsearch"
    index_route = await client.get("/no-such-index")
    assert_error_body(index_route, 404, "index_not_found_exception", "no such index [no-such-index]")
    wrong = await client.get("/_bulk")
    assert wrong.status_code == 405 and wrong.headers["allow"] == "POST,PUT"
    assert wrong.json() == {"error": "Incorrect HTTP method for uri [/_bulk] and method [GET], allowed: [POST, PUT]",
                            "status": 405}


# -- the process entry point


def read_line(process: subprocess.Popen[bytes], timeout: float = DEADLINE) -> str:
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    assert ready, f"no output within {timeout}s"
    return process.stdout.readline().decode().strip()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_the_process_entry_point(signum: signal.Signals, processes: list[subprocess.Popen[bytes]]) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "siemgate_standins.elasticsearch", "--host", "127.0.0.1", "--port", "0",
         "--api-key", "id:key", "--user", "u:p"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    processes.append(process)
    url = read_line(process)
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url), url
    with httpx.Client(base_url=url, timeout=DEADLINE) as http:
        assert http.get("/").status_code == 401
        assert http.get("/", headers=basic("u", "p")).json()["version"]["number"] == "8.15.0"
        http.post("/_standin/faults", json={"fail_items": {"status": 429, "ids": ["1"]}})
        response = http.post("/_bulk", content=ndjson({"create": {"_index": "idx", "_id": "1"}}, {"a": 1}),
                             headers={**NDJSON, **api_key("id", "key")})
        assert only(response.json()["items"][0])[1]["status"] == 429
        assert http.get("/_standin/state").json()["item_statuses"] == {"429": 1}
    process.send_signal(signum)
    _out, err = process.communicate(timeout=DEADLINE)
    assert process.returncode == 0, err.decode()


def test_the_process_refuses_bad_arguments(processes: list[subprocess.Popen[bytes]]) -> None:
    process = subprocess.Popen([sys.executable, "-m", "siemgate_standins.elasticsearch", "--port", "0",
                                "--api-key", "no-colon"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               stdin=subprocess.DEVNULL)
    processes.append(process)
    _out, err = process.communicate(timeout=DEADLINE)
    assert process.returncode == 2 and b"expected NAME:SECRET" in err
