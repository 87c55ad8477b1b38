"""The webhook endpoint over real HTTP against a real broker: every row of docs/SPEC.md's HTTP table."""

from __future__ import annotations

import asyncio
import gzip
import json
import zlib
from pathlib import Path

import httpx
import orjson
import pytest

from siemgate.record import decode
from siemgate_standins.broker import Broker
from tests.support import KEY, NEXT_KEY, consume, event, headers_of, make_config, running_ingest

pytestmark = pytest.mark.anyio

AUTH = {"X-Api-Key": KEY}


async def post(url: str, body: bytes | object, headers: dict[str, str] | None = None) -> httpx.Response:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.post(url, content=content, headers={**AUTH, **(headers or {})})


async def test_batch_lands_on_severity_topics_with_the_record_contract(kafka_broker: Broker, tmp_path: Path) -> None:
    events = [
        event(0, severity="high"),
        event(1, severity="Critical"),
        event(2, severity="medium"),
        event(3, severity="LOW"),
        event(4, severity="informational"),
        event(5, severity="bogus"),
        {k: v for k, v in event(6).items() if k != "severity"},
    ]
    config = make_config(tmp_path, kafka_broker)
    async with running_ingest(config) as ingest:
        response = await post(ingest.webhook(), events)
        assert response.status_code == 200
        assert response.json() == {"accepted": 7}
        records = await consume(kafka_broker, ingest.prefix, 7)
    assert len(records) == 7
    by_id = {r.key.decode(): r for r in records}
    expected_severity = ["high", "high", "medium", "low", "low", "unknown", "unknown"]
    batches = set()
    for seq, (original, severity) in enumerate(zip(events, expected_severity, strict=True)):
        record = by_id[original["id"]]
        assert record.topic == f"{ingest.prefix}.events.{severity}"
        value = decode(record.value)
        assert value["v"] == 1
        assert value["id"] == original["id"]
        assert value["kind"] == "event"
        assert value["integration"] == "appsec"
        assert value["severity"] == severity
        assert value["seq"] == seq
        assert value["peer"] == "127.0.0.1"
        assert str(value["received_at"]).endswith("Z")
        assert value["event"] == original
        batches.add(value["batch"])
        assert headers_of(record) == {
            "kind": b"event",
            "severity": severity.encode(),
            "integration": b"appsec",
        }
    assert len(batches) == 1


async def test_event_without_vendor_id_gets_a_deterministic_content_id(kafka_broker: Broker, tmp_path: Path) -> None:
    body = [{"severity": "low", "rule": "xss", "n": 1}]
    config = make_config(tmp_path, kafka_broker)
    async with running_ingest(config) as ingest:
        assert (await post(ingest.webhook(), body)).status_code == 200
        assert (await post(ingest.webhook(), body)).status_code == 200
        records = await consume(kafka_broker, ingest.prefix, 2)
    ids = {decode(r.value)["id"] for r in records}
    assert len(ids) == 1
    (ident,) = ids
    assert isinstance(ident, str) and len(ident) == 32


@pytest.mark.parametrize(
    ("shape", "extra"),
    [
        ("events", ""),
        ("alerts", ""),
        ("data", ""),
        ("items", ""),
        ("results", "    batch_keys: [results]\n"),
    ],
)
async def test_object_shapes(kafka_broker: Broker, tmp_path: Path, shape: str, extra: str) -> None:
    integrations = f"""
  - name: appsec
    auth: {{header: X-Api-Key, values: ["{KEY}"]}}
{extra}"""
    config = make_config(tmp_path, kafka_broker, integrations=integrations)
    events = [event(i) for i in range(3)]
    async with running_ingest(config) as ingest:
        response = await post(ingest.webhook(), {shape: events, "count": 3})
        assert response.json() == {"accepted": 3}
        records = await consume(kafka_broker, ingest.prefix, 3)
    assert sorted(decode(r.value)["event"]["id"] for r in records) == sorted(e["id"] for e in events)  # type: ignore[index]


async def test_empty_batch_is_accepted(kafka_broker: Broker, tmp_path: Path) -> None:
    async with running_ingest(make_config(tmp_path, kafka_broker)) as ingest:
        response = await post(ingest.webhook(), [])
    assert response.status_code == 200
    assert response.json() == {"accepted": 0}


@pytest.mark.parametrize("encoding", ["gzip", "x-gzip", "GZIP"])
async def test_gzip_body(kafka_broker: Broker, tmp_path: Path, encoding: str) -> None:
    events = [event(i, severity="medium") for i in range(50)]
    async with running_ingest(make_config(tmp_path, kafka_broker)) as ingest:
        response = await post(ingest.webhook(), gzip.compress(orjson.dumps(events)), {"Content-Encoding": encoding})
        assert response.json() == {"accepted": 50}
        records = await consume(kafka_broker, ingest.prefix, 50)
    assert {decode(r.value)["id"] for r in records} == {e["id"] for e in events}


async def test_concatenated_gzip_members_are_one_body(kafka_broker: Broker, tmp_path: Path) -> None:
    raw = orjson.dumps([event(0), event(1)])
    body = gzip.compress(raw[:10]) + gzip.compress(raw[10:])
    async with running_ingest(make_config(tmp_path, kafka_broker)) as ingest:
        response = await post(ingest.webhook(), body, {"Content-Encoding": "gzip"})
    assert response.json() == {"accepted": 2}


async def test_both_rotation_secrets_are_accepted_and_others_get_an_empty_401(
    kafka_broker: Broker, tmp_path: Path
) -> None:
    async with running_ingest(make_config(tmp_path, kafka_broker)) as ingest, httpx.AsyncClient() as client:
        url = ingest.webhook()
        body = orjson.dumps([event()])
        for key in (KEY, NEXT_KEY):
            assert (await client.post(url, content=body, headers={"X-Api-Key": key})).status_code == 200
        for headers in ({"X-Api-Key": "wrong"}, {}, {"X-Api-Key": ""}, {"X-Other": KEY},
                        {"X-Api-Key": KEY + "x"}, {"X-Api-Key": KEY[:-1]}):
            response = await client.post(url, content=body, headers=headers)
            assert response.status_code == 401, headers
            assert response.content == b""
        metrics = (await client.get(ingest.url + "/metrics")).text
    assert 'siemgate_ingest_requests_total{code="200",integration="appsec"} 2.0' in metrics
    assert 'siemgate_ingest_requests_total{code="401",integration="appsec"} 6.0' in metrics


async def test_allowed_cidrs_and_trusted_proxies(kafka_broker: Broker, tmp_path: Path) -> None:
    integrations = f"""
  - name: open
    auth: {{header: X-Api-Key, values: ["{KEY}"]}}
    allowed_cidrs: [127.0.0.0/8]
  - name: closed
    auth: {{header: X-Api-Key, values: ["{KEY}"]}}
    allowed_cidrs: [198.51.100.0/24]
"""
    config = make_config(tmp_path, kafka_broker, integrations=integrations)
    body = orjson.dumps([event()])
    async with running_ingest(config) as ingest, httpx.AsyncClient() as client:
        assert (await client.post(ingest.webhook("open"), content=body, headers=AUTH)).status_code == 200
        closed = await client.post(ingest.webhook("closed"), content=body, headers=AUTH)
        assert closed.status_code == 403
        # No trusted proxies configured: X-Forwarded-For is ignored, the TCP peer counts.
        forged = await client.post(ingest.webhook("closed"), content=body,
                                   headers={**AUTH, "X-Forwarded-For": "198.51.100.7"})
        assert forged.status_code == 403
        # CIDR is checked before auth: no oracle for keys from outside.
        assert (await client.post(ingest.webhook("closed"), content=body)).status_code == 403

    trusted = make_config(tmp_path, kafka_broker, integrations=integrations,
                          extra="listen: {host: 127.0.0.1, port: 0, trusted_proxies: [127.0.0.1/32]}")
    async with running_ingest(trusted) as ingest, httpx.AsyncClient() as client:
        via_proxy = await client.post(ingest.webhook("closed"), content=body,
                                      headers={**AUTH, "X-Forwarded-For": "198.51.100.7"})
        assert via_proxy.status_code == 200
        # The client-supplied left part of the chain is not believed past an untrusted hop.
        spoofed = await client.post(ingest.webhook("closed"), content=body,
                                    headers={**AUTH, "X-Forwarded-For": "198.51.100.7, 203.0.113.9"})
        assert spoofed.status_code == 403
        records = await consume(kafka_broker, ingest.prefix, 1)
    assert decode(records[0].value)["peer"] == "198.51.100.7"


async def test_body_over_the_limit_is_413_declared_or_streamed(kafka_broker: Broker, tmp_path: Path) -> None:
    config = make_config(tmp_path, kafka_broker, extra="limits: {max_body_bytes: 65536}")
    big = orjson.dumps([event(i, pad="x" * 1000) for i in range(100)])
    assert len(big) > 65536

    async def chunks() -> object:
        for start in range(0, len(big), 8192):
            yield big[start : start + 8192]

    async with running_ingest(config) as ingest, httpx.AsyncClient() as client:
        declared = await client.post(ingest.webhook(), content=big, headers=AUTH)
        assert declared.status_code == 413
        streamed = await client.post(ingest.webhook(), content=chunks(), headers=AUTH)  # type: ignore[arg-type]
        assert streamed.status_code == 413
        assert "limit" in streamed.json()["error"]


async def test_gzip_bomb_is_413(kafka_broker: Broker, tmp_path: Path) -> None:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = b"0" * (1 << 20)
    bomb = b"".join(compressor.compress(zeros) for _ in range(50)) + compressor.flush()
    assert len(bomb) < 200_000
    config = make_config(tmp_path, kafka_broker, extra="limits: {max_body_bytes: 1048576}")
    async with running_ingest(config) as ingest:
        response = await post(ingest.webhook(), bomb, {"Content-Encoding": "gzip"})
    assert response.status_code == 413
    assert "inflates" in response.json()["error"]


@pytest.mark.parametrize("encoding", ["br", "deflate", "compress", "gzip, br", "zstd"])
async def test_other_encodings_are_415(kafka_broker: Broker, tmp_path: Path, encoding: str) -> None:
    async with running_ingest(make_config(tmp_path, kafka_broker)) as ingest:
        response = await post(ingest.webhook(), [event()], {"Content-Encoding": encoding})
    assert response.status_code == 415


@pytest.mark.parametrize(("lines", "gzipped", "status"), [
    (["identity", "gzip"], 1, 200), (["gzip", "identity"], 1, 200), (["identity, gzip"], 1, 200),
    (["gzip", "gzip"], 2, 415), (["gzip, gzip"], 2, 415), (["identity"], 0, 200),
])
async def test_content_encoding_lines_are_one_list(kafka_broker: Broker, tmp_path: Path, lines: list[str],
                                                   gzipped: int, status: int) -> None:
    """Content-Encoding over several lines is one list of the codings applied (RFC 9110 5.3, 8.4),
    `identity` changing nothing. Only the first line was read: `identity` then `gzip` got the
    gzip'd body read as JSON (400: a lost batch), `gzip` twice had it inflated once (400).
    gzip applied twice is refused 415, saying so; nothing of it is stored."""
    batch = [event(0), event(1)]
    body = orjson.dumps(batch)
    for _ in range(gzipped):
        body = gzip.compress(body)
    async with running_ingest(make_config(tmp_path, kafka_broker)) as ingest, httpx.AsyncClient() as client:
        headers = [("X-Api-Key", KEY), *(("Content-Encoding", line) for line in lines)]
        response = await client.post(ingest.webhook(), content=body, headers=headers)
        assert response.status_code == status, response.text
        if status == 415:
            assert "gzip applied 2 times" in response.json()["error"]
            response = await client.post(ingest.webhook(), content=orjson.dumps([event(2)]), headers=AUTH)
            assert response.status_code == 200
            (record,) = await consume(kafka_broker, ingest.prefix, 1)
            assert record.key.decode() != batch[0]["id"]
            return
        assert response.json() == {"accepted": 2}
        records = await consume(kafka_broker, ingest.prefix, 2)
    assert sorted(r.key.decode() for r in records) == sorted(e["id"] for e in batch)


@pytest.mark.parametrize(
    ("body", "headers", "why"),
    [
        (b"{not json", {}, "not JSON"),
        (b"42", {}, "expected a JSON array"),
        (b'"a string"', {}, "expected a JSON array"),
        (b"[1, 2", {}, "not JSON"),
        (b'[{"a": "\xff\xfe"}]', {}, "not UTF-8"),
        (b"[NaN]", {}, "not JSON"),
        (gzip.compress(orjson.dumps([{"a": 1}]))[:-12], {"Content-Encoding": "gzip"}, "not valid gzip"),
        (b"plain text, not gzip", {"Content-Encoding": "gzip"}, "not valid gzip"),
    ],
    ids=["garbage", "number", "string", "truncated-json", "invalid-utf8", "nan", "truncated-gzip", "not-gzip"],
)
async def test_not_a_json_batch_is_400_and_quarantined(
    kafka_broker: Broker, tmp_path: Path, body: bytes, headers: dict[str, str], why: str
) -> None:
    async with running_ingest(make_config(tmp_path, kafka_broker)) as ingest, httpx.AsyncClient() as client:
        response = await post(ingest.webhook(), body, headers)
        metrics = (await client.get(ingest.url + "/metrics")).text
    assert response.status_code == 400
    answer = response.json()
    assert why in answer["error"]
    ident = answer["quarantined"]
    kept = tmp_path / "quarantine" / f"{ident}.body"
    assert kept.read_bytes() == body
    meta = json.loads((tmp_path / "quarantine" / f"{ident}.json").read_text())
    assert meta["integration"] == "appsec" and meta["status"] == 400 and meta["peer"] == "127.0.0.1"
    assert 'siemgate_ingest_quarantined_bodies_total{integration="appsec"} 1.0' in metrics


async def test_nothing_is_quarantined_before_auth(kafka_broker: Broker, tmp_path: Path) -> None:
    async with running_ingest(make_config(tmp_path, kafka_broker)) as ingest:
        response = await post(ingest.webhook(), b"{not json", {"X-Api-Key": "wrong"})
    assert response.status_code == 401
    assert not (tmp_path / "quarantine").exists() or not any((tmp_path / "quarantine").iterdir())


async def test_quarantine_is_bounded(kafka_broker: Broker, tmp_path: Path) -> None:
    config = make_config(tmp_path, kafka_broker,
                         extra=f"quarantine: {{path: {tmp_path}/quarantine, max_bytes: 20000}}")
    async with running_ingest(config) as ingest:
        for i in range(10):
            response = await post(ingest.webhook(), b"{" + str(i).encode() * 4000)
            assert response.status_code == 400
    used = sum(p.stat().st_size for p in (tmp_path / "quarantine").iterdir())
    assert used <= 20000
    kept = sorted(p.read_bytes() for p in (tmp_path / "quarantine").glob("*.body"))
    assert kept and kept[-1].startswith(b"{9")  # the newest is kept, the oldest went


async def test_too_many_events_is_413_and_quarantined(kafka_broker: Broker, tmp_path: Path) -> None:
    config = make_config(tmp_path, kafka_broker, extra="limits: {max_events_per_batch: 5}")
    async with running_ingest(config) as ingest:
        response = await post(ingest.webhook(), [event(i) for i in range(6)])
    assert response.status_code == 413
    assert response.json()["quarantined"]


async def test_trickling_client_gets_408(kafka_broker: Broker, tmp_path: Path) -> None:
    config = make_config(tmp_path, kafka_broker, extra="limits: {body_timeout_seconds: 0.5}")
    async with running_ingest(config) as ingest:
        port = int(ingest.url.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            f"POST {ingest.config.integration('appsec').path} HTTP/1.1\r\nHost: x\r\n"
            f"X-Api-Key: {KEY}\r\nContent-Length: 1000\r\n\r\n[".encode()
        )
        await writer.drain()
        # The client sends nothing more; the server's body deadline answers.
        status_line = await asyncio.wait_for(reader.readline(), 10)
        writer.close()
    assert status_line.startswith(b"HTTP/1.1 408")


async def test_kafka_unreachable_is_503_and_not_ready(tmp_path: Path) -> None:
    """The bare KafkaPublisher. `siemgate ingest` wraps it with its local spool, which answers
    200 instead (test_spool_ingest.py)."""
    config = make_config(tmp_path, None, produce_timeout=0.5)
    async with running_ingest(config, wait_ready=False) as ingest, httpx.AsyncClient() as client:
        response = await client.post(ingest.webhook(), content=orjson.dumps([event()]), headers=AUTH)
        assert response.status_code == 503
        assert (await client.get(ingest.url + "/readyz")).status_code == 503
        assert (await client.get(ingest.url + "/healthz")).status_code == 200


async def test_health_ready_and_metrics(kafka_broker: Broker, tmp_path: Path) -> None:
    async with running_ingest(make_config(tmp_path, kafka_broker)) as ingest, httpx.AsyncClient() as client:
        await client.post(ingest.webhook(), content=orjson.dumps([event(0, severity="low"), event(1)]),
                          headers=AUTH)
        assert (await client.get(ingest.url + "/healthz")).json() == {"status": "ok"}
        ready = await client.get(ingest.url + "/readyz")
        metrics = await client.get(ingest.url + "/metrics")
    assert ready.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert 'siemgate_ingest_events_total{integration="appsec",severity="low"} 1.0' in text
    assert 'siemgate_ingest_events_total{integration="appsec",severity="high"} 1.0' in text
    assert "siemgate_ingest_ack_seconds_bucket" in text
    assert 'siemgate_integration_state{integration="appsec",state="pending"} 0.0' in text


async def test_unknown_path_and_wrong_method(kafka_broker: Broker, tmp_path: Path) -> None:
    async with running_ingest(make_config(tmp_path, kafka_broker)) as ingest, httpx.AsyncClient() as client:
        assert (await client.post(ingest.url + "/webhook/other", headers=AUTH)).status_code == 404
        assert (await client.get(ingest.webhook(), headers=AUTH)).status_code == 405


async def test_a_path_with_its_trailing_slash_added_or_removed_is_the_same_webhook(
        kafka_broker: Broker, tmp_path: Path) -> None:
    """A sender configured with a trailing slash (or without the configured one) was answered
    307 (Starlette's redirect_slashes): a batch lost for the sender that does not follow it,
    and behind a TLS proxy a redirect to plain http (the key resent in clear). Both spellings
    are the webhook; where another integration has the other spelling, each keeps its own."""
    integrations = f"""
  - name: appsec
    auth: {{header: X-Api-Key, values: ["{KEY}"]}}
  - name: slashed
    path: /hooks/slashed/
    auth: {{header: X-Api-Key, values: ["{KEY}"]}}
  - name: bare
    path: /hooks/twin
    auth: {{header: X-Api-Key, values: ["{KEY}"]}}
  - name: twin
    path: /hooks/twin/
    auth: {{header: X-Api-Key, values: ["{KEY}"]}}
"""
    config = make_config(tmp_path, kafka_broker, integrations=integrations)
    sent = {"/webhook/appsec/": "appsec", "/hooks/slashed": "slashed", "/hooks/twin": "bare", "/hooks/twin/": "twin"}
    async with running_ingest(config) as ingest:
        ids = {}
        for path, integration in sent.items():
            batch = [event(0), event(1)]
            ids[batch[0]["id"]] = ids[batch[1]["id"]] = integration
            response = await post(ingest.url + path, batch)
            assert response.status_code == 200, f"{path}: {response.status_code} {response.headers}"
            assert response.json() == {"accepted": 2}
        async with httpx.AsyncClient() as client:
            assert (await client.post(ingest.url + "/webhook/appsec/", content=b"[]")).status_code == 401
            assert (await client.get(ingest.url + "/healthz/")).status_code == 404
        records = await consume(kafka_broker, ingest.prefix, 8)
    assert len(records) == 8
    assert {r.key.decode(): headers_of(r)["integration"].decode() for r in records} == ids


@pytest.mark.parametrize(("encoded", "content_type"), [
    ("utf-16", "application/json; charset=utf-16"),  # BOM + little-endian: .NET's Encoding.Unicode
    ("utf-16-be", "application/json"),
    ("utf-32", "application/json"),
    ("latin-1", "application/json; charset=ISO-8859-1"),
    ("cp1252", 'application/json;charset="windows-1252"'),
])
async def test_bodies_not_in_utf8_lose_no_batch(kafka_broker: Broker, tmp_path: Path, encoded: str,
                                                content_type: str) -> None:
    """UTF-16/32 (told by a BOM or by the NUL bytes of the first ASCII character) and a body that
    is not UTF-8 in its declared single-byte charset were 400 "not UTF-8", the batch lost: each
    event lands on the bus as JSON in UTF-8, equal to what was sent (gzip'd too)."""
    events = [event(0, message="caf\u00e9 \u00a3 \u00e4"), event(1, severity="low")]
    body = json.dumps(events, ensure_ascii=False).encode(encoded)
    async with running_ingest(make_config(tmp_path, kafka_broker)) as ingest:
        response = await post(ingest.webhook(), body, {"Content-Type": content_type})
        assert response.status_code == 200, response.text
        assert response.json() == {"accepted": 2}
        zipped = [event(2, message="\u00e9"), event(3)]
        response = await post(ingest.webhook(), gzip.compress(json.dumps(zipped, ensure_ascii=False).encode(encoded)),
                              {"Content-Type": content_type, "Content-Encoding": "gzip"})
        assert response.json() == {"accepted": 2}
        records = await consume(kafka_broker, ingest.prefix, 4)
    by_id = {r.key.decode(): decode(r.value)["event"] for r in records}
    assert by_id == {e["id"]: e for e in [*events, *zipped]}


@pytest.mark.parametrize("content_type", ["application/x-ndjson", "application/json"])
async def test_an_ndjson_body_lands_one_record_per_line(kafka_broker: Broker, tmp_path: Path,
                                                        content_type: str) -> None:
    events = [event(0), event(1, severity="low"), event(2, severity="medium")]
    body = b"\n".join(orjson.dumps(e) for e in events) + b"\n"
    async with running_ingest(make_config(tmp_path, kafka_broker)) as ingest:
        response = await post(ingest.webhook(), gzip.compress(body),
                              {"Content-Type": content_type, "Content-Encoding": "gzip"})
        assert response.status_code == 200, response.text
        assert response.json() == {"accepted": 3}
        records = await consume(kafka_broker, ingest.prefix, 3)
    assert {r.key.decode(): (decode(r.value)["event"], r.topic.rsplit(".", 1)[1]) for r in records} == {
        e["id"]: (e, e["severity"]) for e in events}


async def test_a_gzip_transfer_coding_is_inflated(kafka_broker: Broker, tmp_path: Path) -> None:
    """`Transfer-Encoding: gzip, chunked` (RFC 9112 6.1): the HTTP server undoes chunked only,
    so the gzip bytes reached the parser as the body (400 "not UTF-8", the batch lost)."""
    events = [event(0), event(1)]
    packed = gzip.compress(orjson.dumps(events))
    async with running_ingest(make_config(tmp_path, kafka_broker)) as ingest:
        reader, writer = await asyncio.open_connection("127.0.0.1", int(ingest.url.rsplit(":", 1)[1]))
        try:
            writer.write(b"POST /webhook/appsec HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Api-Key: " + KEY.encode()
                         + b"\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n"
                         + b"%x\r\n%s\r\n0\r\n\r\n" % (len(packed), packed))
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(), 10)
        finally:
            writer.close()
        assert answer.startswith(b"HTTP/1.1 200 "), answer[:300]
        assert answer.endswith(b'{"accepted":2}')
        records = await consume(kafka_broker, ingest.prefix, 2)
    assert sorted(r.key.decode() for r in records) == sorted(e["id"] for e in events)


async def test_raw_control_characters_in_strings_land_escaped(kafka_broker: Broker, tmp_path: Path) -> None:
    """A hand-built body with a raw newline, tab and NUL inside its strings (400 before, the
    batch lost): each event on the bus as valid JSON, its text as the sender meant it."""
    body = b'[{"id": "ctl-1", "m": "a\nb\tc\x00d"}, {"id": "ctl-2", "severity": "low"}]'
    async with running_ingest(make_config(tmp_path, kafka_broker)) as ingest:
        response = await post(ingest.webhook(), body)
        assert response.status_code == 200, response.text
        records = await consume(kafka_broker, ingest.prefix, 2)
    by_id = {r.key.decode(): r for r in records}
    assert decode(by_id["ctl-1"].value)["event"] == {"id": "ctl-1", "m": "a\nb\tc\x00d"}
    assert b'"m": "a\\nb\\tc\\u0000d"' in by_id["ctl-1"].value
    assert decode(by_id["ctl-2"].value)["severity"] == "low"


async def test_unicode_huge_numbers_and_a_1_mib_event(kafka_broker: Broker, tmp_path: Path) -> None:
    events = [
        event(0, description="Ünïcødé ✓ 😀 עברית 中文 \u0000 \u2028", path="/é?q=\"'<>&"),
        event(1, big=2**80, neg=-(2**70), small=1e-300),
        event(2, payload="A" * (1 << 20)),
    ]
    config = make_config(tmp_path, kafka_broker,
                         extra="limits: {max_body_bytes: 8388608}")
    async with running_ingest(config) as ingest:
        response = await post(ingest.webhook(), json.dumps(events).encode())
        assert response.json() == {"accepted": 3}
        records = await consume(kafka_broker, ingest.prefix, 3)
    by_id = {decode(r.value)["id"]: decode(r.value)["event"] for r in records}
    for original in events:
        assert by_id[original["id"]] == original


async def test_twenty_concurrent_senders_lose_and_duplicate_nothing(kafka_broker: Broker, tmp_path: Path) -> None:
    config = make_config(tmp_path, kafka_broker)
    sent: list[str] = []

    async def sender(n: int, client: httpx.AsyncClient, url: str) -> None:
        for b in range(10):
            batch = [event(i, sender=n, batch=b, severity=("high", "medium", "low")[i % 3]) for i in range(25)]
            response = await client.post(url, content=orjson.dumps(batch), headers=AUTH)
            assert response.status_code == 200
            sent.extend(e["id"] for e in batch)

    async with running_ingest(config) as ingest:
        async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=20)) as client:
            await asyncio.gather(*(sender(n, client, ingest.webhook()) for n in range(20)))
        records = await consume(kafka_broker, ingest.prefix, len(sent), timeout=60)
    received = [r.key.decode() for r in records]
    assert len(sent) == 5000
    assert len(received) == len(set(received)), "duplicates"
    assert set(received) == set(sent)


async def test_topics_are_created_at_start_with_the_configured_partitions(
    kafka_broker: Broker, tmp_path: Path
) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    from siemgate.record import all_topics

    async with running_ingest(make_config(tmp_path, kafka_broker)) as ingest:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap_servers)
        await admin.start()
        try:
            described = await admin.describe_topics(all_topics(ingest.prefix))
        finally:
            await admin.close()
    assert sorted(t["topic"] for t in described) == sorted(all_topics(ingest.prefix))
    assert all(t["error_code"] == 0 for t in described)
    assert [len(t["partitions"]) for t in described] == [2] * 5


# Bodies a strict parser refuses for their text alone (issue 17): the sender never resends,
# so a 400 would lose all 500 events for one BOM or one damaged character.
_BOM = b"\xef\xbb\xbf"
# A UTF-16 runtime cut the string after the high (or before the low) half of U+1F600.
_LONE = {"high-escaped": b"\\ud83d", "low-escaped": b"\\uDE00", "high-raw": b"\xed\xa0\xbd", "low-raw": b"\xed\xb8\x80"}
_PLACES = {
    "id": b'{{"id":"evt-{s}","severity":"high","message":"x"}}',
    "severity": b'{{"id":"evt-x","severity":"high{s}","message":"x"}}',
    "nested": b'{{"id":"evt-x","severity":"low","request":{{"args":["<img src=x>{s}",{{"q{s}":"\\\\{s}"}}]}}}}',
    "message": b'{{"id":"evt-x","severity":"medium","message":"<script>alert(\\"{s}\\")</script>"}}',
}


@pytest.mark.parametrize("place", list(_PLACES))
@pytest.mark.parametrize("lone", list(_LONE))
@pytest.mark.parametrize("framing", ["plain", "bom", "bom+gzip", "wrapped+gzip"])
async def test_lone_surrogates_and_bom_lose_nothing(
    kafka_broker: Broker, tmp_path: Path, place: str, lone: str, framing: str
) -> None:
    """One event of 500 holding a lone surrogate, escaped or raw (CESU-8 bytes), in its id,
    severity, a nested key and value, or an attack sample: all 500 are accepted. Its record
    keeps the sender's bytes (a raw surrogate written as its escape); siemgate reads U+FFFD."""
    damaged = _PLACES[place].replace(b"{{", b"{").replace(b"}}", b"}").replace(b"{s}", _LONE[lone])
    others = [orjson.dumps(event(i)) for i in range(499)]
    array = b"[" + b",".join([*others[:250], damaged, *others[250:]]) + b"]"
    body = b'{"meta":{"n":500},"events":' + array + b"}" if framing.startswith("wrapped") else array
    headers = {}
    if framing.startswith("bom"):
        body = _BOM + body
    if framing.endswith("gzip"):
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    async with running_ingest(make_config(tmp_path, kafka_broker)) as ingest, httpx.AsyncClient() as client:
        response = await post(ingest.webhook(), body, headers)
        assert response.status_code == 200, response.text
        assert response.json() == {"accepted": 500}
        records = await consume(kafka_broker, ingest.prefix, 500)
        metrics = (await client.get(ingest.url + "/metrics")).text
    assert 'siemgate_ingest_lone_surrogate_events_total{integration="appsec"} 1.0' in metrics
    assert len({r.key for r in records}) == 500
    escaped = {"high-raw": b"\\ud83d", "low-raw": b"\\ude00"}.get(lone, _LONE[lone])
    sent = damaged.replace(_LONE[lone], escaped)
    (kept,) = [r for r in records if r.value.endswith(b',"event":' + sent + b"}")]
    value = decode(kept.value)
    read = orjson.loads(sent.replace(escaped, b"\\ufffd"))
    assert value["event"] == read
    expected_severity = {"id": "high", "severity": "unknown", "nested": "low", "message": "medium"}[place]
    assert value["severity"] == expected_severity
    assert kept.topic == f"{ingest.prefix}.events.{expected_severity}"
    # An id that held a lone surrogate is no key (two ids could read alike): the content hash is.
    assert value["id"] == ("evt-x" if place != "id" else kept.key.decode())
    assert place != "id" or len(value["id"]) == 32
    others_kept = {decode(r.value)["id"] for r in records if r is not kept}
    assert others_kept == {orjson.loads(o)["id"] for o in others}


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b'[{"a":"x\\\xed\xa0\xbd"}]', "not UTF-8"),  # its escape would make the backslash an escaped one
        (b'[{"a":"x"}\xed\xa0\xbd]', "not JSON"),  # a surrogate outside a string
        (b'[{"a":"\\ud83d"}, NaN]', "not JSON"),  # a lone surrogate does not excuse anything else
        (b" " + _BOM + b"[]", "not JSON"),  # a BOM only counts first
    ],
    ids=["raw-after-backslash", "raw-outside-string", "lone-and-nan", "bom-not-first"],
)
async def test_what_still_is_refused(kafka_broker: Broker, tmp_path: Path, body: bytes, why: str) -> None:
    async with running_ingest(make_config(tmp_path, kafka_broker)) as ingest:
        response = await post(ingest.webhook(), body)
    assert response.status_code == 400
    assert why in response.json()["error"]
    assert (tmp_path / "quarantine" / f"{response.json()['quarantined']}.body").read_bytes() == body
