"""Proof of fidelity: real Elasticsearch clients against the stand-in.

- the official `elasticsearch` Python client (9.x): `helpers.bulk` / `helpers.streaming_bulk`
  (item-level 429 retried by the helper until accepted, item-level 400 reported, 409 on create,
  whole-request 429 retried), index template and data stream APIs, count, get, search, info,
  ApiKey and Basic auth, gzip both ways;
- rsyslog's omelasticsearch (Debian rsyslog-elasticsearch) in bulk mode: events sent to a private
  rsyslogd arrive as documents; item-level 400s (injected, and a real mapping error) show up in
  its errorfile. Under CI=true a missing rsyslogd/omelasticsearch fails the test.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import elasticsearch
import httpx
import pytest
from elasticsearch import Elasticsearch, helpers

from siemgate_standins.elasticsearch import ElasticsearchStandIn, serve_in_thread
from tests.forwarders.rsyslog import (
    STARTUP_SECONDS,
    STOP_SECONDS,
    RsyslogUnavailable,
    _bound_ports,
    _free_port,
    rsyslogd_binary,
    unavailable,
)

DEADLINE = 10.0
KEY_ID, KEY = "VuaCfGcBCdbkQm-e5aOx", "ui2lp2axTNmsyakw9tvNnw"
USER, PASSWORD = "elastic", "changeme"
TS = "2025-01-15T10:20:30.123Z"
ALERTS = "logs-siem.alerts-default"
TEMPLATE: dict[str, Any] = {
    "index_patterns": ["logs-siem.alerts-*"],
    "priority": 200,
    "data_stream": {},
    "template": {"mappings": {"properties": {
        "@timestamp": {"type": "date"},
        "event": {"properties": {"id": {"type": "keyword"}, "severity": {"type": "long"},
                                 "kind": {"type": "keyword"}}},
        "source.ip": {"type": "ip"},
    }}},
}


def wait_until(condition: Callable[[], Any], timeout: float = DEADLINE, what: str = "condition") -> Any:
    """Poll `condition` until it is truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def alert(i: int, **extra: Any) -> dict[str, Any]:
    return {"@timestamp": TS, "event": {"kind": "alert", "id": f"evt-{i}", "severity": 73},
            "source": {"ip": "203.0.113.9"}, "message": f"alert {i}", **extra}


def actions(ids: range, **extra: Any) -> list[dict[str, Any]]:
    return [{"_op_type": "create", "_index": ALERTS, "_id": f"evt-{i}", "_source": alert(i, **extra)} for i in ids]


@pytest.fixture
def es() -> Iterator[ElasticsearchStandIn]:
    # A 9.x cluster: the installed 9.x client asks for compatible-with=9 (see the 8.x test below).
    stand_in = ElasticsearchStandIn(version="9.1.0", api_keys={KEY_ID: KEY}, users={USER: PASSWORD})
    with serve_in_thread(stand_in):
        yield stand_in


@pytest.fixture
def client(es: ElasticsearchStandIn) -> Iterator[Elasticsearch]:
    with Elasticsearch(es.url, api_key=(KEY_ID, KEY), http_compress=True, request_timeout=DEADLINE) as es_client:
        es_client.indices.put_index_template(name="siem-alerts", **TEMPLATE)
        yield es_client


# -- the official Python client


def test_info_and_authentication(es: ElasticsearchStandIn, client: Elasticsearch) -> None:
    info = client.info()
    assert info["version"]["number"] == "9.1.0" and info.meta.headers["x-elastic-product"] == "Elasticsearch"
    who = client.security.authenticate()
    assert who["api_key"]["id"] == KEY_ID
    with Elasticsearch(es.url, basic_auth=(USER, PASSWORD)) as basic:
        assert basic.security.authenticate()["username"] == USER
        assert basic.ping() is True
    with Elasticsearch(es.url, basic_auth=(USER, "wrong")) as wrong, pytest.raises(
            elasticsearch.AuthenticationException) as refused:
        wrong.info()
    assert refused.value.meta.status == 401 and refused.value.message == "security_exception"
    assert refused.value.body["error"]["reason"].startswith(f"unable to authenticate user [{USER}]")


def test_index_template_and_data_stream_through_the_client(es: ElasticsearchStandIn, client: Elasticsearch) -> None:
    assert client.indices.exists_index_template(name="siem-alerts")
    template = client.indices.get_index_template(name="siem-alerts")["index_templates"][0]
    assert template["index_template"]["index_patterns"] == ["logs-siem.alerts-*"]
    client.indices.create_data_stream(name="logs-siem.alerts-edr")
    streams = client.indices.get_data_stream(name="logs-siem.alerts-edr")["data_streams"]
    assert [(s["name"], s["template"]) for s in streams] == [("logs-siem.alerts-edr", "siem-alerts")]
    assert es.data_streams["logs-siem.alerts-edr"]["indices"][0].startswith(".ds-logs-siem.alerts-edr-")
    with pytest.raises(elasticsearch.BadRequestError) as again:
        client.indices.create_data_stream(name="logs-siem.alerts-edr")
    assert again.value.message == "resource_already_exists_exception"
    client.indices.delete_data_stream(name="logs-siem.alerts-edr")
    assert es.data_streams == {}
    client.indices.delete_index_template(name="siem-alerts")
    assert not client.indices.exists_index_template(name="siem-alerts")


def test_helpers_bulk_into_a_data_stream_then_count_get_search(es: ElasticsearchStandIn,
                                                              client: Elasticsearch) -> None:
    ok, errors = helpers.bulk(client, actions(range(10)), chunk_size=4)
    assert (ok, errors) == (10, [])
    assert set(es.documents(ALERTS)) == {f"evt-{i}" for i in range(10)}
    assert es.documents(ALERTS)["evt-3"] == alert(3)
    assert [len(r.item_statuses) for r in es.bulk_requests] == [4, 4, 2]
    assert all(r.gzip for r in es.bulk_requests)  # http_compress=True gzips the bulk bodies
    assert client.count(index=ALERTS)["count"] == 10
    hits = client.search(index=ALERTS, query={"term": {"event.id": "evt-7"}})["hits"]
    assert hits["total"]["value"] == 1 and hits["hits"][0]["_source"] == alert(7)
    backing = hits["hits"][0]["_index"]
    assert backing.startswith(f".ds-{ALERTS}-") and backing.endswith("-000001")
    assert client.search(index=ALERTS, size=3)["hits"]["hits"].__len__() == 3
    document = client.get(index=backing, id="evt-7")
    assert document["found"] and document["_source"] == alert(7)
    with pytest.raises(elasticsearch.BadRequestError) as data_stream_get:
        client.get(index=ALERTS, id="evt-7")  # as Elasticsearch: a get needs the concrete (backing) index
    assert "matches a data stream" in data_stream_get.value.body["error"]["reason"]
    with pytest.raises(elasticsearch.NotFoundError):
        client.get(index=backing, id="nope")


def test_streaming_bulk_retries_item_429_until_accepted(es: ElasticsearchStandIn, client: Elasticsearch) -> None:
    es.faults.fail_items(429, count=2, ids=["evt-3", "evt-7"])
    # The helper retries rejected items only with raise_on_error=False (elastic/elasticsearch-py#864).
    results = list(helpers.streaming_bulk(client, actions(range(10)), chunk_size=10, max_retries=3,
                                          initial_backoff=0.01, max_backoff=0.02, raise_on_error=False))
    assert len(results) == 10 and all(ok for ok, _item in results)
    assert set(es.documents(ALERTS)) == {f"evt-{i}" for i in range(10)}  # nothing lost, nothing duplicated
    statuses = [r.item_statuses for r in es.bulk_requests]
    assert statuses == [[201, 201, 201, 429, 201, 201, 201, 429, 201, 201], [429, 429], [201, 201]]


def test_streaming_bulk_with_raise_on_error_stops_at_an_item_429(es: ElasticsearchStandIn,
                                                                 client: Elasticsearch) -> None:
    es.faults.fail_items(429, ids=["evt-1"])
    with pytest.raises(helpers.BulkIndexError) as raised:
        list(helpers.streaming_bulk(client, actions(range(3)), max_retries=3, initial_backoff=0.01))
    assert [(e["create"]["_id"], e["create"]["status"], e["create"]["error"]["type"]) for e in raised.value.errors] == [
        ("evt-1", 429, "es_rejected_execution_exception")]
    assert len(es.bulk_requests) == 1 and set(es.documents(ALERTS)) == {"evt-0", "evt-2"}


def test_streaming_bulk_retries_a_whole_request_429(es: ElasticsearchStandIn, client: Elasticsearch) -> None:
    es.faults.fail_requests(429)
    results = list(helpers.streaming_bulk(client, actions(range(5)), max_retries=2, initial_backoff=0.01,
                                          max_backoff=0.02))
    assert all(ok for ok, _item in results) and len(es.documents(ALERTS)) == 5
    assert [r.status for r in es.bulk_requests] == [429, 200]


def test_item_400_is_reported_with_raise_on_error_false(es: ElasticsearchStandIn, client: Elasticsearch) -> None:
    es.faults.fail_items(400, ids=["evt-1"])
    docs = actions(range(4))
    docs[2]["_source"]["source"]["ip"] = "not-an-ip"  # a real mapping error
    ok, errors = helpers.bulk(client, docs, raise_on_error=False)
    assert ok == 2 and isinstance(errors, list) and len(errors) == 2
    by_id = {error["create"]["_id"]: error["create"] for error in errors}
    assert set(by_id) == {"evt-1", "evt-2"}
    for item in by_id.values():
        assert item["status"] == 400 and item["error"]["type"] == "document_parsing_exception"
    assert "failed to parse field [source.ip] of type [ip] in document with id 'evt-2'" in by_id["evt-2"]["error"][
        "reason"]
    assert by_id["evt-2"]["error"]["caused_by"] == {"type": "illegal_argument_exception",
                                                    "reason": "'not-an-ip' is not an IP string literal."}
    assert set(es.documents(ALERTS)) == {"evt-0", "evt-3"}
    # streaming_bulk says the same per item, and never retries a 400
    es.faults.fail_items(400, ids=["evt-9"])
    outcome = dict((item["create"]["_id"], (ok, item["create"]["status"])) for ok, item in helpers.streaming_bulk(
        client, actions(range(8, 10)), raise_on_error=False, max_retries=3, initial_backoff=0.01))
    assert outcome == {"evt-8": (True, 201), "evt-9": (False, 400)}


def test_create_on_existing_ids_is_409(es: ElasticsearchStandIn, client: Elasticsearch) -> None:
    assert helpers.bulk(client, actions(range(3))) == (3, [])
    ok, errors = helpers.bulk(client, actions(range(4)), raise_on_error=False)
    assert ok == 1 and isinstance(errors, list)
    assert [(e["create"]["_id"], e["create"]["status"], e["create"]["error"]["type"]) for e in errors] == [
        (f"evt-{i}", 409, "version_conflict_engine_exception") for i in range(3)]
    with pytest.raises(helpers.BulkIndexError) as raised:
        helpers.bulk(client, actions(range(1)))
    assert raised.value.errors[0]["create"]["status"] == 409
    assert len(es.documents(ALERTS)) == 4


def test_single_document_apis(client: Elasticsearch) -> None:
    assert client.index(index="plain", id="1", document={"a": 1})["result"] == "created"
    assert client.index(index="plain", id="1", document={"a": 2})["_version"] == 2
    with pytest.raises(elasticsearch.ConflictError):
        client.create(index="plain", id="1", document={"a": 3})
    assert client.get(index="plain", id="1")["_source"] == {"a": 2}
    assert client.exists(index="plain", id="1") and not client.exists(index="plain", id="2")
    assert client.count(index="plain", query={"term": {"a": 2}})["count"] == 1
    assert client.delete(index="plain", id="1")["result"] == "deleted"
    assert client.indices.exists(index="plain") and not client.indices.exists(index="nope")


def test_the_9x_client_against_an_8x_cluster() -> None:
    # The installed client is 9.x and asks every API for compatible-with=9: an 8.15 cluster refuses
    # it, as a real one does (elastic/elasticsearch-net#8512). A request with 8.x compatibility
    # headers goes through, answered with that media type, which the transport parses.
    with serve_in_thread(ElasticsearchStandIn(api_keys={KEY_ID: KEY})) as es, Elasticsearch(
            es.url, api_key=(KEY_ID, KEY)) as client:
        with pytest.raises(elasticsearch.BadRequestError) as refused:
            client.info()
        assert refused.value.message == "media_type_header_exception"
        assert refused.value.body["error"]["caused_by"]["reason"].startswith(
            "Accept version must be either version 8 or 7, but found 9.")
        compat = {"accept": "application/vnd.elasticsearch+json; compatible-with=8"}
        info = client.perform_request("GET", "/", headers=compat)
        assert info.meta.headers["content-type"] == "application/vnd.elasticsearch+json;compatible-with=8"
        assert info["version"]["number"] == "8.15.0"
        body = b"".join(json.dumps(line).encode() + b"\n" for line in (
            {"create": {"_index": ALERTS, "_id": "1"}}, alert(1)))
        answer = client.perform_request("POST", "/_bulk", body=body, headers={
            **compat, "content-type": "application/vnd.elasticsearch+x-ndjson; compatible-with=8"})
        assert answer["errors"] is False
        assert es.data_streams[ALERTS]["template"] == "logs"  # the built-in logs-*-* template


# -- rsyslog's omelasticsearch


class RsyslogElasticsearch:
    """A private rsyslogd: imtcp on a free loopback port -> omelasticsearch (bulk mode) -> the stand-in."""

    def __init__(self, directory: Path, es_url: str, index: str, user: str, password: str) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        (directory / "work").mkdir(exist_ok=True)
        self.tcp_port = _free_port(socket.SOCK_STREAM)
        self.errorfile = directory / "es-errors.json"
        self.log = directory / "rsyslogd.log"
        self.config = directory / "rsyslog.conf"
        host, port = es_url.removeprefix("http://").rsplit(":", 1)
        self.config.write_text(f"""
global(workDirectory="{directory}/work" maxMessageSize="64k" parser.escapeControlCharactersOnReceive="off")
module(load="imtcp")
module(load="omelasticsearch")
input(type="imtcp" address="127.0.0.1" port="{self.tcp_port}" ruleset="es")
template(name="doc" type="list" option.jsonf="on") {{
  property(outname="@timestamp" name="timereported" dateFormat="rfc3339" format="jsonf")
  property(outname="host.ip" name="hostname" format="jsonf")
  property(outname="event.id" name="msgid" format="jsonf")
  property(outname="message" name="msg" format="jsonf")
}}
template(name="bulkid" type="string" string="%msgid%")
ruleset(name="es") {{
  action(type="omelasticsearch" server="{host}" serverport="{port}" searchIndex="{index}" bulkmode="on"
         writeoperation="create" dynbulkid="on" bulkid="bulkid" template="doc" esVersion.major="8"
         uid="{user}" pwd="{password}" errorfile="{self.errorfile}")
}}
""")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = rsyslogd_binary()
        check = subprocess.run([binary, "-N1", "-f", str(self.config)], capture_output=True, text=True, check=False)
        if check.returncode != 0:  # e.g. rsyslog-elasticsearch missing: "could not load module"
            raise RsyslogUnavailable(f"rsyslogd refuses the omelasticsearch config: {check.stdout}{check.stderr}")
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen([binary, "-n", "-f", str(self.config), "-i",
                                             str(self.directory / "rsyslogd.pid")],
                                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + STARTUP_SECONDS
        while self.tcp_port not in _bound_ports("tcp"):
            if self.process.poll() is not None:
                self.process = None
                raise RsyslogUnavailable(f"rsyslogd exited at startup: {self.log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise RsyslogUnavailable(f"rsyslogd did not listen within {STARTUP_SECONDS}s: {self.log.read_text()}")
            time.sleep(0.01)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def send(self, lines: list[str]) -> None:
        with socket.create_connection(("127.0.0.1", self.tcp_port), timeout=DEADLINE) as connection:
            connection.sendall("".join(f"{line}\n" for line in lines).encode())

    def error_records(self) -> list[dict[str, Any]]:
        """The errorfile's records (omelasticsearch appends one JSON object per failed batch)."""
        if not self.errorfile.exists():
            return []
        text, decoder, position = self.errorfile.read_text(), json.JSONDecoder(), 0
        records: list[dict[str, Any]] = []
        while True:
            while position < len(text) and text[position].isspace():
                position += 1
            if position >= len(text):
                return records
            try:
                record, position = decoder.raw_decode(text, position)
            except json.JSONDecodeError:
                return records  # rsyslog is still writing the last one
            records.append(record)


@contextlib.contextmanager
def running(server: RsyslogElasticsearch) -> Iterator[RsyslogElasticsearch]:
    try:
        server.start()
    except RsyslogUnavailable as exc:
        unavailable(str(exc))  # skips, or fails under CI=true
    try:
        yield server
    finally:
        server.stop()


def test_rsyslog_omelasticsearch_bulk_mode(tmp_path: Path) -> None:
    index = "logs-rsyslog-default"
    stand_in = ElasticsearchStandIn(users={"rsyslog": "s3cret"})
    with serve_in_thread(stand_in):
        stand_in.faults.fail_items(400, ids=["evt-2"])  # injected: answered 400 once
        # A template as a sink's setup would install it: host.ip is an ip (rsyslog sends the key dotted).
        template = {"index_patterns": ["logs-rsyslog-*"], "priority": 200, "data_stream": {},
                    "template": {"mappings": {"properties": {"host": {"properties": {"ip": {"type": "ip"}}}}}}}
        created = httpx.put(f"{stand_in.url}/_index_template/logs-rsyslog", json=template, auth=("rsyslog", "s3cret"))
        assert created.json() == {"acknowledged": True}
        rsyslog = RsyslogElasticsearch(tmp_path / "rsyslog", stand_in.url, index, "rsyslog", "s3cret")
        with running(rsyslog):
            rsyslog.send([
                "<14>1 2026-11-28T21:00:00.123456Z 203.0.113.9 waf 1 evt-1 - first alert",
                "<14>1 2026-11-28T21:00:01Z 203.0.113.10 waf 1 evt-2 - rejected by the injected fault",
                "<14>1 2026-11-28T21:00:02Z not-an-ip waf 1 evt-3 - rejected by the mapping",
                "<14>1 2026-11-28T21:00:03+02:00 2001:db8::1 waf 1 evt-4 - last alert",
            ])
            documents = wait_until(lambda: (docs := stand_in.documents(index)) and len(docs) >= 2 and docs,
                                   what="rsyslog's documents")

            def failed_items() -> dict[str, dict[str, Any]]:
                items = {}
                for record in rsyslog.error_records():
                    for item in record["reply"]["items"]:
                        body = item["create"]
                        if body["status"] >= 300:
                            items[body["_id"]] = body
                return items if {"evt-2", "evt-3"} <= set(items) else {}

            failed = wait_until(failed_items, what="omelasticsearch's errorfile")
        # arrived: the two good events, created with their MSGID as _id, into the data stream
        assert set(documents) == {"evt-1", "evt-4"}
        assert documents["evt-1"] == {"@timestamp": "2026-11-28T21:00:00.123456Z", "host.ip": "203.0.113.9",
                                      "event.id": "evt-1", "message": "first alert"}
        assert stand_in.data_streams[index]["template"] == "logs-rsyslog"
        # refused: both 400s are in omelasticsearch's errorfile, with the request it sent
        assert failed["evt-2"]["status"] == 400 and failed["evt-2"]["error"]["type"] == "document_parsing_exception"
        assert failed["evt-3"]["status"] == 400 and failed["evt-3"]["error"]["type"] == "document_parsing_exception"
        assert "failed to parse field [host.ip] of type [ip]" in failed["evt-3"]["error"]["reason"]
        record = rsyslog.error_records()[0]
        assert record["request"]["url"] == f"{stand_in.url}/_bulk"
        assert '"_id":"evt-' in record["request"]["postdata"]
        # what went over the wire: POST /_bulk, create actions, Basic auth (else 401)
        assert all(r.path == "/_bulk" and r.status == 200 for r in stand_in.bulk_requests)
        assert sorted(s for r in stand_in.bulk_requests for s in r.item_statuses) == [201, 201, 400, 400]
