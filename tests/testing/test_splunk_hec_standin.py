"""The Splunk HEC stand-in against docs/PROTOCOLS.md section 1: every code of the table, batching,
gzip, authentication, indexer acknowledgement, health, fault injection, the HTTP control
endpoints and the process entry point."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import selectors
import signal
import ssl
import subprocess
import sys
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import httpx
import orjson
import pytest
import trustme

from siemgate_standins.splunk_hec import (
    CODES,
    HecToken,
    SplunkHecStandIn,
    parse_envelopes,
)

pytestmark = pytest.mark.anyio

PLAIN = "00000000-0000-4000-8000-000000000001"
ACK = "00000000-0000-4000-8000-000000000002"
QS = "00000000-0000-4000-8000-000000000003"
DISABLED = "00000000-0000-4000-8000-000000000004"
SECURITY = "00000000-0000-4000-8000-000000000005"  # may write to "security" (its default) and "edr" only
UNKNOWN = "00000000-0000-4000-8000-0000000000ff"
CHANNEL = "6d0c1f2a-3b4c-4d5e-8f90-a1b2c3d4e5f6"
OTHER_CHANNEL = "0b8f6c52-6f0e-4a59-9c3e-1f2d3c4b5a69"
EVENT = "/services/collector/event"
RAW = "/services/collector/raw"
ACK_PATH = "/services/collector/ack"
HEALTH = "/services/collector/health"
DEADLINE = 10.0

# docs/PROTOCOLS.md 1.5, copied: code -> (HTTP status, text).
TABLE: dict[int, tuple[int, str]] = {
    0: (200, "Success"),
    1: (403, "Token disabled"),
    2: (401, "Token is required"),
    3: (401, "Invalid authorization"),
    4: (403, "Invalid token"),
    5: (400, "No data"),
    6: (400, "Invalid data format"),
    7: (400, "Incorrect index"),
    8: (500, "Internal server error"),
    9: (503, "Server is busy"),
    10: (400, "Data channel is missing"),
    11: (400, "Invalid data channel"),
    12: (400, "Event field is required"),
    13: (400, "Event field cannot be blank"),
    14: (400, "ACK is disabled"),
    15: (400, "Error in handling indexed fields"),
    16: (400, "Query string authorization is not enabled"),
    17: (200, "HEC is healthy"),
    18: (503, "HEC is unhealthy, queues are full"),
    19: (503, "HEC is unhealthy, ack service unavailable"),
    20: (503, "HEC is unhealthy, queues are full, ack service unavailable"),
    21: (400, "Invalid token"),
    22: (400, "Token disabled"),
    23: (503, "Server is shutting down"),
    24: (200, "HEC queue is approaching its capacity limit"),
    25: (200, "HEC ACK is approaching its capacity limit"),
    26: (429, "HEC queue is at capacity"),
    27: (429, "HEC ACK channel is at capacity"),
}


def tokens() -> list[HecToken]:
    return [
        HecToken(PLAIN),
        HecToken(ACK, ack=True),
        HecToken(QS, query_string_auth=True),
        HecToken(DISABLED, enabled=False),
        HecToken(SECURITY, indexes=("edr",), default_index="security"),
    ]


@pytest.fixture
async def hec() -> AsyncIterator[SplunkHecStandIn]:
    async with SplunkHecStandIn(tokens=tokens()) as standin:
        yield standin


@pytest.fixture
async def client(hec: SplunkHecStandIn) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=hec.url, timeout=DEADLINE) as http:
        yield http


def envelopes(*values: Mapping[str, Any], separator: bytes = b"\n") -> bytes:
    return separator.join(orjson.dumps(value) for value in values)


async def post(client: httpx.AsyncClient, body: bytes = b'{"event":"hello"}', *, token: str | None = PLAIN,
               path: str = EVENT, headers: Mapping[str, str] | None = None,
               params: Mapping[str, str] | None = None) -> httpx.Response:
    sent = {"Authorization": f"Splunk {token}"} if token is not None else {}
    sent.update(headers or {})
    return await client.post(path, content=body, headers=sent, params=params)


async def ack_query(client: httpx.AsyncClient, ids: list[int], *, token: str = ACK,
                    channel: str = CHANNEL) -> dict[str, bool]:
    response = await client.post(ACK_PATH, json={"acks": ids},
                                 headers={"Authorization": f"Splunk {token}", "X-Splunk-Request-Channel": channel})
    assert response.status_code == 200, response.text
    acks: dict[str, bool] = response.json()["acks"]
    return acks


async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        await asyncio.sleep(0.02)


def hec_answer(response: httpx.Response) -> tuple[int, int, str]:
    body = response.json()
    return response.status_code, body["code"], body["text"]


# ------------------------------------------------------------------------------------------
# The table, row by row


async def _limit_pending_acks(hec: SplunkHecStandIn, client: httpx.AsyncClient) -> httpx.Response:
    hec.max_pending_acks_per_channel = 1
    first = await post(client, token=ACK, headers={"X-Splunk-Request-Channel": CHANNEL})
    assert first.json() == {"text": "Success", "code": 0, "ackId": 0}
    return await post(client, token=ACK, headers={"X-Splunk-Request-Channel": CHANNEL})


async def _fault(hec: SplunkHecStandIn, client: httpx.AsyncClient, status: int, code: int) -> httpx.Response:
    hec.faults.fail_requests(status, code)
    return await post(client)


async def _queue_full(hec: SplunkHecStandIn, client: httpx.AsyncClient, path: str) -> httpx.Response:
    hec.faults.queue_full = True
    return await post(client) if path == EVENT else await client.get(path)


async def _health_ack(hec: SplunkHecStandIn, client: httpx.AsyncClient, queue_full: bool) -> httpx.Response:
    hec.faults.ack_unavailable = True
    hec.faults.queue_full = queue_full
    return await client.get(HEALTH, params={"ack": "true"})


Trigger = Callable[[SplunkHecStandIn, httpx.AsyncClient], Awaitable[httpx.Response]]

TRIGGERS: dict[int, Trigger] = {
    0: lambda hec, c: post(c),
    1: lambda hec, c: post(c, token=DISABLED),
    2: lambda hec, c: post(c, token=None),
    3: lambda hec, c: post(c, token=None, headers={"Authorization": PLAIN}),  # no "Splunk " prefix
    4: lambda hec, c: post(c, token=UNKNOWN),
    5: lambda hec, c: post(c, b""),
    6: lambda hec, c: post(c, b'{"event": "unterminated'),
    7: lambda hec, c: post(c, b'{"event":"x","index":"main"}', token=SECURITY),
    8: lambda hec, c: _fault(hec, c, 500, 8),
    9: lambda hec, c: _queue_full(hec, c, EVENT),
    10: lambda hec, c: post(c, token=ACK),
    11: lambda hec, c: post(c, headers={"X-Splunk-Request-Channel": "not-a-guid"}),
    12: lambda hec, c: post(c, b'{"host":"h","fields":{"a":"b"}}'),
    13: lambda hec, c: post(c, b'{"event":""}'),
    14: lambda hec, c: c.post(ACK_PATH, json={"acks": [0]},
                              headers={"Authorization": f"Splunk {PLAIN}", "X-Splunk-Request-Channel": CHANNEL}),
    15: lambda hec, c: post(c, b'{"event":"x","fields":{"nested":{"a":"b"}}}'),
    16: lambda hec, c: post(c, token=None, params={"token": PLAIN}),
    17: lambda hec, c: c.get(HEALTH),
    18: lambda hec, c: _queue_full(hec, c, HEALTH),
    19: lambda hec, c: _health_ack(hec, c, queue_full=False),
    20: lambda hec, c: _health_ack(hec, c, queue_full=True),
    21: lambda hec, c: c.get(HEALTH, headers={"Authorization": f"Splunk {UNKNOWN}"}),
    22: lambda hec, c: c.get(HEALTH, headers={"Authorization": f"Splunk {DISABLED}"}),
    23: lambda hec, c: _fault(hec, c, 503, 23),
    24: lambda hec, c: _fault(hec, c, 200, 24),
    25: lambda hec, c: _fault(hec, c, 200, 25),
    26: lambda hec, c: _fault(hec, c, 429, 26),
    27: _limit_pending_acks,
}


def test_the_stand_ins_table_is_the_reference_table() -> None:
    assert CODES == TABLE
    assert sorted(TRIGGERS) == list(range(28))


@pytest.mark.parametrize("code", sorted(TABLE), ids=lambda code: f"code-{code}")
async def test_every_code_of_the_table(code: int, hec: SplunkHecStandIn, client: httpx.AsyncClient) -> None:
    response = await TRIGGERS[code](hec, client)
    status, text = TABLE[code]
    assert hec_answer(response) == (status, code, text)
    assert response.headers["content-type"] == "application/json"
    record = hec.requests[-1]
    assert (record.status, record.code) == (status, code)
    # Only success (and the capacity warnings, which accept the data) indexes anything.
    assert len(hec.events()) == (1 if code in (0, 24, 25, 27) else 0)  # 27: the request before it


ROW_VARIANTS: list[tuple[int, dict[str, Any]]] = [
    (2, {"token": None, "headers": {"Authorization": "Splunk"}}),
    (2, {"token": None, "headers": {"Authorization": "Basic " + base64.b64encode(b"user:").decode()}}),
    (3, {"token": None, "headers": {"Authorization": f"Bearer {PLAIN}"}}),
    (3, {"token": None, "headers": {"Authorization": "Basic " + base64.b64encode(PLAIN.encode()).decode()}}),
    (3, {"token": None, "headers": {"Authorization": "Basic not*base64"}}),
    (4, {"token": None, "headers": {"Authorization": "Basic " + base64.b64encode(f"x:{UNKNOWN}".encode()).decode()}}),
    (4, {"token": None, "params": {"token": UNKNOWN}}),
    (1, {"token": None, "params": {"token": DISABLED}}),
    (5, {"body": b"  \r\n\t "}),
    (5, {"body": gzip.compress(b""), "headers": {"Content-Encoding": "gzip"}}),
    (6, {"body": b"[" + envelopes({"event": "a"}, {"event": "b"}, separator=b",") + b"]"}),  # not the documented form
    (6, {"body": b'"just a string"'}),
    (6, {"body": b'{"event":"x","time":"yesterday"}'}),
    (6, {"body": b'{"event":"x","time":true}'}),
    (6, {"body": b'{"event":"x","time":null}'}),
    (6, {"body": b'{"event":"x","host":42}'}),
    (6, {"body": b'{"event":"x","index":["main"]}'}),
    (6, {"body": b'{"event":NaN}'}),
    (6, {"body": b"not json at all"}),
    (6, {"body": b'{"event":"x"}', "headers": {"Content-Encoding": "gzip"}}),  # says gzip, is not
    (6, {"body": zlib.compress(b'{"event":"x"}'), "headers": {"Content-Encoding": "deflate"}}),  # unsupported
    (7, {"body": b'{"event":"x"}', "token": SECURITY, "params": {"index": "main"}}),
    (11, {"headers": {"X-Splunk-Request-Channel": "6d0c1f2a3b4c4d5e8f90a1b2c3d4e5f6"}}),  # not 8-4-4-4-12
    (11, {"params": {"channel": "nope"}}),
    (11, {"token": ACK, "params": {"channel": "nope"}}),
    (13, {"body": b'{"event":null}'}),
    (15, {"body": b'{"event":"x","fields":{"n":5}}'}),
    (15, {"body": b'{"event":"x","fields":{"l":["a",1]}}'}),
    (15, {"body": b'{"event":"x","fields":["a"]}'}),
    (16, {"token": None, "path": "/services/collector/raw", "params": {"token": PLAIN}}),
]


@pytest.mark.parametrize(("code", "request_args"), ROW_VARIANTS,
                         ids=[f"code-{code}-{i}" for i, (code, _) in enumerate(ROW_VARIANTS)])
async def test_other_triggers_of_the_same_rows(code: int, request_args: dict[str, Any], client: httpx.AsyncClient,
                                               hec: SplunkHecStandIn) -> None:
    args = dict(request_args)
    body = args.pop("body", b'{"event":"hello"}')
    response = await post(client, body, **args)
    status, text = TABLE[code]
    assert hec_answer(response) == (status, code, text)
    assert hec.events() == []


@pytest.mark.parametrize("path", [ACK_PATH, EVENT, RAW])
async def test_the_ack_endpoint_and_event_endpoints_check_the_same_things(path: str, client: httpx.AsyncClient) -> None:
    async def ask(body: bytes, **kwargs: Any) -> tuple[int, int, str]:
        return hec_answer(await post(client, body, path=path, **kwargs))

    assert await ask(b'{"acks":[0]}', token=None) == (401, 2, "Token is required")
    assert await ask(b'{"acks":[0]}', token=UNKNOWN) == (403, 4, "Invalid token")
    assert await ask(b'{"acks":[0]}', token=DISABLED) == (403, 1, "Token disabled")
    assert await ask(b'{"acks":[0]}', token=ACK) == (400, 10, "Data channel is missing")
    assert await ask(b'{"acks":[0]}', token=ACK, headers={"X-Splunk-Request-Channel": "x"}) == \
        (400, 11, "Invalid data channel")
    if path == ACK_PATH:
        with_channel = {"token": ACK, "headers": {"X-Splunk-Request-Channel": CHANNEL}}
        assert await ask(b"", **with_channel) == (400, 5, "No data")
        assert await ask(b'{"acks":"0"}', **with_channel) == (400, 6, "Invalid data format")
        assert await ask(b'{"acks":[0', **with_channel) == (400, 6, "Invalid data format")
        assert await ask(b'{"acks":[0]}', token=PLAIN) == (400, 14, "ACK is disabled")


# ------------------------------------------------------------------------------------------
# Envelopes and batching


async def test_a_batch_of_envelopes_is_indexed_in_order_with_its_metadata(hec: SplunkHecStandIn,
                                                                           client: httpx.AsyncClient) -> None:
    batch = envelopes(
        {"time": 1736936430.123, "host": "waf-01", "source": "siem-forwarder", "sourcetype": "acme:waf:alert",
         "index": "security", "event": {"signature": "SQLi", "severity_id": 4}, "fields": {"tenant": "acme",
                                                                                           "tags": ["a", "b"]}},
        {"time": "1736936431.5", "event": "raw text event is also fine"},
        {"time": 1736936432, "event": 42, "index": "edr"},
    )
    before = time.time()
    response = await post(client, batch, token=SECURITY, headers={"X-Splunk-Request-Channel": CHANNEL})
    assert response.status_code == 200
    assert response.json() == {"text": "Success", "code": 0}  # no ackId without ack
    first, second, third = hec.events()
    assert first == {"time": 1736936430.123, "host": "waf-01", "source": "siem-forwarder",
                     "sourcetype": "acme:waf:alert", "index": "security",
                     "event": {"signature": "SQLi", "severity_id": 4},
                     "fields": {"tenant": "acme", "tags": ["a", "b"]}, "channel": CHANNEL, "ackId": None}
    assert second["time"] == 1736936431.5 and second["index"] == "security"  # the token's default index
    assert (second["host"], second["source"], second["sourcetype"]) == ("splunk-standin", "http:standin", "httpevent")
    assert third["event"] == 42 and third["index"] == "edr" and third["time"] == 1736936432.0
    assert hec.events(index="edr") == [third]
    record = hec.requests[-1]
    assert (record.path, record.event_count, record.indexed, record.channel, record.gzip) == \
        (EVENT, 3, 3, CHANNEL, False)
    assert record.at >= before


@pytest.mark.parametrize("separator", [b"", b" ", b"\n", b"\r\n", b"\n\n  \t", b"\t"])
async def test_envelopes_one_after_another_with_any_whitespace_between(separator: bytes, hec: SplunkHecStandIn,
                                                                        client: httpx.AsyncClient) -> None:
    values = [{"event": {"id": i, "text": "a}{b\n"}} for i in range(5)]
    response = await post(client, b"\n " + envelopes(*values, separator=separator) + b"\n")
    assert hec_answer(response) == (200, 0, "Success")
    assert [event["event"] for event in hec.events()] == [value["event"] for value in values]


async def test_pretty_printed_envelopes_spanning_lines(hec: SplunkHecStandIn, client: httpx.AsyncClient) -> None:
    body = "".join(json.dumps({"event": {"id": i}, "fields": {"k": "v"}}, indent=2) for i in range(3)).encode()
    assert (await post(client, body)).status_code == 200
    assert [event["event"]["id"] for event in hec.events()] == [0, 1, 2]


async def test_the_aliases_of_the_event_endpoint(hec: SplunkHecStandIn, client: httpx.AsyncClient) -> None:
    for path in ("/services/collector", "/services/collector/event", "/services/collector/event/1.0"):
        assert hec_answer(await post(client, path=path)) == (200, 0, "Success")
    assert len(hec.events()) == 3


async def test_query_string_metadata_is_the_default_of_every_envelope(hec: SplunkHecStandIn,
                                                                       client: httpx.AsyncClient) -> None:
    batch = envelopes({"event": "a"}, {"event": "b", "host": "own", "index": "security", "time": 5})
    params = {"host": "q-host", "source": "q-source", "sourcetype": "q-type", "index": "edr", "time": "1700000000.25"}
    assert (await post(client, batch, token=SECURITY, params=params)).status_code == 200
    a, b = hec.events()
    assert (a["host"], a["source"], a["sourcetype"], a["index"], a["time"]) == \
        ("q-host", "q-source", "q-type", "edr", 1700000000.25)
    assert (b["host"], b["source"], b["sourcetype"], b["index"], b["time"]) == \
        ("own", "q-source", "q-type", "security", 5.0)


async def test_an_event_without_time_gets_its_arrival_time(hec: SplunkHecStandIn, client: httpx.AsyncClient) -> None:
    before = time.time()
    await post(client)
    after = time.time()
    assert before <= hec.events()[0]["time"] <= after


@pytest.mark.parametrize(("index_before_invalid", "indexed"), [(True, ["e0", "e1"]), (False, [])])
@pytest.mark.parametrize(("bad", "code"), [({"id": "bad"}, 6), ({"event": ""}, 13), ({"host": "no event"}, 12),
                                            ({"event": "x", "fields": {"a": {"b": "c"}}}, 15),
                                            ({"event": "x", "index": "main"}, 7)])
async def test_the_first_invalid_event_of_a_batch_is_named(index_before_invalid: bool, indexed: list[str],
                                                           bad: dict[str, Any], code: int) -> None:
    async with SplunkHecStandIn(tokens=tokens(), index_before_invalid=index_before_invalid) as hec, \
            httpx.AsyncClient(base_url=hec.url) as client:
        values: list[Any] = [{"event": "e0"}, {"event": "e1"}, bad, {"event": "e3"}, {"event": ""}]
        if bad == {"id": "bad"}:
            hec.faults.invalid_events(ids={"bad"})
            values[2] = {"event": {"id": "bad"}}
        response = await post(client, envelopes(*values), token=SECURITY)
        status, text = TABLE[code]
        assert response.status_code == status
        # Code 7 counts one more, as a real Splunk does (see test_incorrect_index_numbers_one_more).
        assert response.json() == {"text": text, "code": code, "invalid-event-number": 3 if code == 7 else 2}
        assert [event["event"] for event in hec.events()] == indexed
        assert hec.requests[-1].indexed == len(indexed)


@pytest.mark.parametrize(("body", "position"), [
    (b'{"event":1}{"event":2}{"event":', 2),
    (b'{"event":1}\n{"event":2}\n{"event":3}}', 3),
    (b'{"event":1} garbage {"event":2}', 1),
    (b'{"event":1}\n{"event":"caf\xc3\xa9"}\n{"event":"\xff"}', 2),  # not UTF-8
    (b'{"event":1}\n{"event":2}\xff', 2),
    (b'[{"event":1}]', 0),
])
async def test_a_parse_error_is_code_6_at_the_first_value_that_does_not_parse(
        body: bytes, position: int, hec: SplunkHecStandIn, client: httpx.AsyncClient) -> None:
    response = await post(client, body)
    assert response.status_code == 400
    assert response.json() == {"text": "Invalid data format", "code": 6, "invalid-event-number": position}
    assert len(hec.events()) == position  # the ones before it are in (index_before_invalid)


@pytest.mark.parametrize(("offset", "numbers"), [(1, [1, 3]), (0, [0, 2])])
async def test_incorrect_index_numbers_one_more(offset: int, numbers: list[int]) -> None:
    # Splunk's SC4S docs show a real Splunk answering ONE event with a disallowed index
    # {"text":"Incorrect index","code":7,"invalid-event-number":1}; the switch gives zero-based.
    async with SplunkHecStandIn(tokens=tokens(), incorrect_index_number_offset=offset) as hec, \
            httpx.AsyncClient(base_url=hec.url) as client:
        single = await post(client, b'{"event":"HEC TEST EVENT","sourcetype":"SC4S:PROBE"}', token=SECURITY,
                            params={"index": "email"})
        third = await post(client, envelopes({"event": 0}, {"event": 1}, {"event": 2, "index": "email"}),
                           token=SECURITY)
        for response, number in zip((single, third), numbers, strict=True):
            assert (response.status_code, response.json()) == \
                (400, {"text": "Incorrect index", "code": 7, "invalid-event-number": number})
        assert [e["event"] for e in hec.events()] == [0, 1]  # the position itself is what counts


def test_parse_envelopes_fast_and_slow_paths_agree_on_large_batches() -> None:
    values = [{"event": {"id": i, "msg": "x" * (i % 50)}, "time": i + 0.5} for i in range(20_000)]
    one_per_line = envelopes(*values)
    concatenated = envelopes(*values, separator=b"")
    assert parse_envelopes(one_per_line) == (values, None)
    assert parse_envelopes(concatenated) == (values, None)
    broken = concatenated + b'{"event":'
    assert parse_envelopes(broken) == (values, 20_000)


async def test_raw_endpoint_lines_are_events_with_metadata_from_the_query(hec: SplunkHecStandIn,
                                                                           client: httpx.AsyncClient) -> None:
    body = b"first line\r\n\n  \nsecond {\"json\": 1}\nthird"
    params = {"host": "fw-1", "source": "syslog", "sourcetype": "pan:traffic", "index": "edr", "time": "1700000000"}
    for path in (RAW, RAW + "/1.0"):
        response = await post(client, body, token=SECURITY, path=path, params=params)
        assert hec_answer(response) == (200, 0, "Success")
    events = hec.events()
    assert [event["event"] for event in events] == ["first line", 'second {"json": 1}', "third"] * 2
    assert {(e["host"], e["source"], e["sourcetype"], e["index"], e["time"], str(e["fields"])) for e in events} == \
        {("fw-1", "syslog", "pan:traffic", "edr", 1700000000.0, "{}")}
    assert hec_answer(await post(client, body, token=SECURITY, path=RAW, params={"index": "main"})) == \
        (400, 7, "Incorrect index")
    assert hec_answer(await post(client, b"", path=RAW)) == (400, 5, "No data")


# ------------------------------------------------------------------------------------------
# gzip and sizes


async def test_gzip_bodies_are_decoded(hec: SplunkHecStandIn, client: httpx.AsyncClient) -> None:
    values = [{"event": {"id": i}} for i in range(500)]
    response = await post(client, gzip.compress(envelopes(*values)), headers={"Content-Encoding": "gzip"})
    assert hec_answer(response) == (200, 0, "Success")
    assert [event["event"] for event in hec.events()] == [value["event"] for value in values]
    assert hec.requests[-1].gzip is True
    raw = await post(client, gzip.compress(b"a\nb\n"), path=RAW, headers={"Content-Encoding": "GZIP"})
    assert raw.status_code == 200 and [e["event"] for e in hec.events()[-2:]] == ["a", "b"]


async def test_a_gzip_body_that_inflates_past_the_limit_is_413() -> None:
    async with SplunkHecStandIn(tokens=tokens(), max_body_bytes=10_000, max_decompressed_bytes=100_000) as hec, \
            httpx.AsyncClient(base_url=hec.url) as client:
        bomb = gzip.compress(b'{"event":"' + b"a" * 200_000 + b'"}')
        assert len(bomb) < 10_000
        response = await post(client, bomb, headers={"Content-Encoding": "gzip"})
        assert response.status_code == 413
        assert response.json() == {"text": "Request entity too large", "code": 6}
        fits = gzip.compress(b'{"event":"' + b"a" * 50_000 + b'"}')
        assert (await post(client, fits, headers={"Content-Encoding": "gzip"})).status_code == 200


async def test_a_body_over_max_body_bytes_is_refused_413_before_it_is_sent() -> None:
    async with SplunkHecStandIn(tokens=tokens(), max_body_bytes=1_000) as hec:
        reader, writer = await asyncio.open_connection("127.0.0.1", hec.port)
        try:
            writer.write(f"POST {EVENT} HTTP/1.1\r\nHost: x\r\nAuthorization: Splunk {PLAIN}\r\n"
                         "Content-Length: 1001\r\nExpect: 100-continue\r\n\r\n".encode())
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), DEADLINE)
        finally:
            writer.close()
            await writer.wait_closed()
        assert head.startswith(b"HTTP/1.1 413 ")
        async with httpx.AsyncClient(base_url=hec.url) as client:
            assert (await post(client, b'{"event":"' + b"a" * 900 + b'"}')).status_code == 200


# ------------------------------------------------------------------------------------------
# Authentication


@pytest.mark.parametrize("headers", [
    {"Authorization": f"Splunk {PLAIN}"},
    {"Authorization": f"splunk   {PLAIN}"},
    {"Authorization": "Basic " + base64.b64encode(f"x:{PLAIN}".encode()).decode()},
    {"Authorization": "Basic " + base64.b64encode(f"anyone-at-all:{PLAIN}".encode()).decode()},
], ids=["splunk", "scheme-case", "basic", "basic-any-user"])
async def test_header_authentication(headers: dict[str, str], hec: SplunkHecStandIn, client: httpx.AsyncClient) -> None:
    assert hec_answer(await post(client, token=None, headers=headers)) == (200, 0, "Success")
    assert len(hec.events()) == 1


async def test_query_string_authentication_only_where_enabled(hec: SplunkHecStandIn,
                                                              client: httpx.AsyncClient) -> None:
    assert hec_answer(await post(client, token=None, params={"token": QS})) == (200, 0, "Success")
    assert hec_answer(await post(client, token=None, params={"token": PLAIN})) == \
        (400, 16, "Query string authorization is not enabled")
    # The header wins over the query string.
    assert hec_answer(await post(client, token=PLAIN, params={"token": UNKNOWN})) == (200, 0, "Success")
    assert len(hec.events()) == 2


# ------------------------------------------------------------------------------------------
# Indexer acknowledgement


async def test_ack_ids_count_from_zero_per_channel_and_token(hec: SplunkHecStandIn, client: httpx.AsyncClient) -> None:
    hec.tokens["other-ack"] = HecToken("other-ack", ack=True)

    async def send(*, header: str | None = None, query: str | None = None, token: str = ACK, path: str = EVENT) -> int:
        response = await post(client, envelopes({"event": 1}, {"event": 2}), token=token, path=path,
                              headers={"X-Splunk-Request-Channel": header} if header else {},
                              params={"channel": query} if query else {})
        assert response.status_code == 200, response.text
        ack_id: int = response.json()["ackId"]
        return ack_id

    assert [await send(header=CHANNEL), await send(header=CHANNEL), await send(header=OTHER_CHANNEL),
            await send(header=CHANNEL)] == [0, 1, 0, 2]
    assert await send(query=CHANNEL, token="other-ack") == 0  # per token; the channel from the query string
    assert await send(query=OTHER_CHANNEL) == 1
    assert await send(header=CHANNEL, path=RAW) == 3
    # One ackId covers the whole request: every event of it carries it.
    assert [(e["channel"], e["ackId"]) for e in hec.events() if e["channel"] == OTHER_CHANNEL] == \
        [(OTHER_CHANNEL, 0), (OTHER_CHANNEL, 0), (OTHER_CHANNEL, 1), (OTHER_CHANNEL, 1)]
    assert hec.pending_acks == {CHANNEL: [0, 0, 1, 2, 3], OTHER_CHANNEL: [0, 1]}


async def test_an_ack_is_true_once_then_forgotten(hec: SplunkHecStandIn, client: httpx.AsyncClient) -> None:
    for _ in range(2):
        assert (await post(client, token=ACK, headers={"X-Splunk-Request-Channel": CHANNEL})).status_code == 200
    assert hec.pending_acks == {CHANNEL: [0, 1]}
    assert await ack_query(client, [0, 7]) == {"0": True, "7": False}  # string keys; unknown ids false
    assert hec.pending_acks == {CHANNEL: [1]}
    assert await ack_query(client, [0, 1]) == {"0": False, "1": True}
    assert await ack_query(client, [0, 1]) == {"0": False, "1": False}
    assert await ack_query(client, [0, 1], channel=OTHER_CHANNEL) == {"0": False, "1": False}
    assert hec.pending_acks == {}
    assert len(hec.events()) == 2


async def test_acks_come_true_after_the_ack_delay_and_only_then_is_the_data_indexed() -> None:
    async with SplunkHecStandIn(tokens=tokens(), ack_delay_seconds=1.0) as hec, \
            httpx.AsyncClient(base_url=hec.url) as client:
        sent = time.monotonic()
        response = await post(client, envelopes({"event": "a"}, {"event": "b"}), token=ACK,
                              headers={"X-Splunk-Request-Channel": CHANNEL})
        assert response.json() == {"text": "Success", "code": 0, "ackId": 0}
        assert await ack_query(client, [0]) == {"0": False}
        assert hec.events() == [] and hec.requests[0].indexed == 2

        async def acked() -> bool:
            return (await ack_query(client, [0]))["0"]

        await eventually(acked, "ackId 0 true")
        assert time.monotonic() - sent >= 1.0
        assert [event["event"] for event in hec.events()] == ["a", "b"]
        assert await ack_query(client, [0]) == {"0": False}


async def test_a_lost_ack_never_comes_true_and_its_data_is_never_indexed() -> None:
    async with SplunkHecStandIn(tokens=tokens(), ack_delay_seconds=0.2) as hec, \
            httpx.AsyncClient(base_url=hec.url) as client:
        hec.faults.lose_acks(1)
        for name in ("lost", "kept"):
            response = await post(client, orjson.dumps({"event": name}), token=ACK,
                                  headers={"X-Splunk-Request-Channel": CHANNEL})
            assert response.status_code == 200

        async def second_acked() -> bool:
            return (await ack_query(client, [1]))["1"]

        await eventually(second_acked, "ackId 1 true")
        # ackId 0 had the same delay: it would be true by now, but it was lost.
        assert await ack_query(client, [0]) == {"0": False}
        assert [event["event"] for event in hec.events()] == ["kept"]
        assert hec.pending_acks == {CHANNEL: [0]}
        # The client resends the lost data: a new ackId, and this time it arrives.
        resent = await post(client, orjson.dumps({"event": "lost"}), token=ACK,
                            headers={"X-Splunk-Request-Channel": CHANNEL})
        assert resent.json()["ackId"] == 2

        async def resent_acked() -> bool:
            return (await ack_query(client, [2]))["2"]

        await eventually(resent_acked, "ackId 2 true")
        assert [event["event"] for event in hec.events()] == ["kept", "lost"]


async def test_too_many_pending_acks_on_a_channel_is_429_27_until_they_are_polled() -> None:
    async with SplunkHecStandIn(tokens=tokens(), max_pending_acks_per_channel=2) as hec, \
            httpx.AsyncClient(base_url=hec.url) as client:
        def send() -> Awaitable[httpx.Response]:
            return post(client, token=ACK, headers={"X-Splunk-Request-Channel": CHANNEL})

        assert [(await send()).status_code for _ in range(2)] == [200, 200]
        assert hec_answer(await send()) == (429, 27, "HEC ACK channel is at capacity")
        assert (await post(client, token=ACK, headers={"X-Splunk-Request-Channel": OTHER_CHANNEL})).status_code == 200
        assert await ack_query(client, [0]) == {"0": True}
        assert (await send()).json() == {"text": "Success", "code": 0, "ackId": 2}
        assert len(hec.events()) == 4


# ------------------------------------------------------------------------------------------
# Health


async def test_health_needs_no_token_and_checks_one_that_is_sent(hec: SplunkHecStandIn,
                                                                 client: httpx.AsyncClient) -> None:
    for path in (HEALTH, HEALTH + "/1.0"):
        for method in ("GET", "POST"):
            assert hec_answer(await client.request(method, path)) == (200, 17, "HEC is healthy")
    assert hec_answer(await client.get(HEALTH, params={"ack": "true"})) == (200, 17, "HEC is healthy")
    assert hec_answer(await client.get(HEALTH, headers={"Authorization": f"Splunk {PLAIN}"})) == \
        (200, 17, "HEC is healthy")
    assert hec_answer(await client.get(HEALTH, params={"token": UNKNOWN})) == (400, 21, "Invalid token")
    assert hec_answer(await client.get(HEALTH, params={"token": DISABLED})) == (400, 22, "Token disabled")
    hec.faults.disable_token(PLAIN)
    assert hec_answer(await client.get(HEALTH, headers={"Authorization": f"Splunk {PLAIN}"})) == \
        (400, 22, "Token disabled")
    hec.faults.queue_full = True
    assert hec_answer(await client.get(HEALTH)) == (503, 18, "HEC is unhealthy, queues are full")
    hec.faults.ack_unavailable = True
    assert hec_answer(await client.get(HEALTH)) == (503, 18, "HEC is unhealthy, queues are full")
    assert hec_answer(await client.get(HEALTH, params={"ack": "true"}))[:2] == (503, 20)
    hec.faults.queue_full = False
    assert hec_answer(await client.get(HEALTH)) == (200, 17, "HEC is healthy")
    assert hec_answer(await client.get(HEALTH, params={"ack": "true"}))[:2] == (503, 19)
    assert hec.events() == []


# ------------------------------------------------------------------------------------------
# Fault injection


async def test_fail_requests_answers_the_next_n_event_requests_then_recovers(hec: SplunkHecStandIn,
                                                                             client: httpx.AsyncClient) -> None:
    hec.faults.fail_requests(503, 9, count=2, retry_after=3)
    hec.faults.fail_requests(500, 8)
    answers = [await post(client, orjson.dumps({"event": i})) for i in range(4)]
    assert [hec_answer(a) for a in answers] == [(503, 9, "Server is busy"), (503, 9, "Server is busy"),
                                                (500, 8, "Internal server error"), (200, 0, "Success")]
    assert answers[0].headers["retry-after"] == "3" and "retry-after" not in answers[2].headers
    assert [event["event"] for event in hec.events()] == [3]
    # Before authentication, and for raw as well; health is not an event request.
    hec.faults.fail_requests(401, 2)
    assert hec_answer(await client.get(HEALTH))[:2] == (200, 17)
    assert hec_answer(await post(client, b"line", path=RAW, token=UNKNOWN)) == (401, 2, "Token is required")
    assert [(r.status, r.code) for r in hec.requests] == [(503, 9), (503, 9), (500, 8), (200, 0), (200, 17), (401, 2)]


async def test_injected_413_and_a_proxys_non_json_502(hec: SplunkHecStandIn, client: httpx.AsyncClient) -> None:
    hec.faults.fail_requests(413)
    hec.faults.fail_requests(502, text="<html>Bad Gateway</html>")
    too_large = await post(client)
    assert too_large.status_code == 413
    assert too_large.json() == {"text": "Request entity too large", "code": 6}
    proxy = await post(client)
    assert proxy.status_code == 502 and proxy.text == "<html>Bad Gateway</html>"
    assert proxy.headers["content-type"] == "text/html"
    assert hec.events() == []


async def test_capacity_warnings_accept_the_data_with_their_ack_id(hec: SplunkHecStandIn,
                                                                   client: httpx.AsyncClient) -> None:
    hec.faults.fail_requests(200, 25)
    response = await post(client, token=ACK, headers={"X-Splunk-Request-Channel": CHANNEL})
    assert response.json() == {"text": "HEC ACK is approaching its capacity limit", "code": 25, "ackId": 0}
    assert await ack_query(client, [0]) == {"0": True}
    assert len(hec.events()) == 1


async def test_invalid_events_by_id_are_refused_each_time_they_are_resent(hec: SplunkHecStandIn,
                                                                          client: httpx.AsyncClient) -> None:
    hec.faults.invalid_events(ids={"e3"})
    batch = [{"event": {"id": f"e{i}"}} for i in range(5)]
    first = await post(client, envelopes(*batch))
    assert first.status_code == 400
    assert first.json() == {"text": "Invalid data format", "code": 6, "invalid-event-number": 3}
    assert [e["event"]["id"] for e in hec.events()] == ["e0", "e1", "e2"]
    # The client resends from the bad one on: refused again, at its new position.
    again = await post(client, envelopes(*batch[3:]))
    assert again.json() == {"text": "Invalid data format", "code": 6, "invalid-event-number": 0}
    # It dead-letters e3 and sends the rest.
    assert (await post(client, envelopes(*batch[4:]))).status_code == 200
    assert [e["event"]["id"] for e in hec.events()] == ["e0", "e1", "e2", "e4"]


@pytest.mark.parametrize("code", [6, 7, 12, 13, 15])
async def test_invalid_events_by_position_with_each_event_code(code: int, hec: SplunkHecStandIn,
                                                               client: httpx.AsyncClient) -> None:
    hec.faults.invalid_events(indexes={1}, code=code, count=1)
    batch = envelopes(*[{"event": i} for i in range(3)])
    refused = await post(client, batch)
    assert refused.status_code == 400
    assert refused.json() == {"text": TABLE[code][1], "code": code, "invalid-event-number": 2 if code == 7 else 1}
    assert (await post(client, batch)).status_code == 200  # the rule fired its one time
    assert [e["event"] for e in hec.events()] == [0, 0, 1, 2]


async def test_invalid_events_by_predicate_and_nested_id_field(hec: SplunkHecStandIn,
                                                               client: httpx.AsyncClient) -> None:
    hec.faults.invalid_events(ids={7}, id_field="meta.seq", code=15)
    hec.faults.invalid_events(where=lambda position, envelope: envelope.get("sourcetype") == "bad", code=12)
    batch = envelopes({"event": {"meta": {"seq": 1}}}, {"event": {"meta": {"seq": 7}}})
    assert (await post(client, batch)).json() == \
        {"text": "Error in handling indexed fields", "code": 15, "invalid-event-number": 1}
    batch = envelopes({"event": "fine"}, {"event": "x", "sourcetype": "ok"}, {"event": "y", "sourcetype": "bad"})
    assert (await post(client, batch)).json() == \
        {"text": "Event field is required", "code": 12, "invalid-event-number": 2}
    with pytest.raises(ValueError, match="codes"):
        hec.faults.invalid_events(indexes={0}, code=9)


async def test_slow_answers(hec: SplunkHecStandIn, client: httpx.AsyncClient) -> None:
    hec.faults.delay_seconds = 0.5
    started = time.monotonic()
    response = await post(client)
    assert time.monotonic() - started >= 0.5
    assert response.status_code == 200
    with pytest.raises(httpx.ReadTimeout):
        await client.post(EVENT, content=b'{"event":"timed out"}', headers={"Authorization": f"Splunk {PLAIN}"},
                          timeout=0.1)
    # A slow answer is still an accepted request: the data is in, whatever the client saw.
    await eventually(lambda: _has_events(hec, 2), "the timed-out request indexed")


async def _has_events(hec: SplunkHecStandIn, count: int) -> bool:
    return len(hec.events()) >= count


async def test_dropped_connections(hec: SplunkHecStandIn, client: httpx.AsyncClient) -> None:
    hec.faults.drop_connections(1)
    hec.faults.drop_connections(1, after_indexing=True)
    with pytest.raises(httpx.TransportError):
        await post(client, b'{"event":"never arrives"}')
    assert hec.events() == []
    with pytest.raises(httpx.TransportError):
        await post(client, b'{"event":"arrives, answer lost"}')
    assert [e["event"] for e in hec.events()] == ["arrives, answer lost"]
    assert hec_answer(await post(client, b'{"event":"fine"}')) == (200, 0, "Success")
    assert [(r.dropped, r.status) for r in hec.requests] == [(True, 0), (True, 200), (False, 200)]


async def test_queue_full_and_disabled_tokens(hec: SplunkHecStandIn, client: httpx.AsyncClient) -> None:
    hec.faults.queue_full = True
    assert hec_answer(await post(client)) == (503, 9, "Server is busy")
    assert hec_answer(await post(client, token=UNKNOWN)) == (403, 4, "Invalid token")  # auth comes first
    hec.faults.queue_full = False
    hec.faults.disable_token(PLAIN)
    assert hec_answer(await post(client)) == (403, 1, "Token disabled")
    hec.faults.enable_token(PLAIN)
    assert hec_answer(await post(client)) == (200, 0, "Success")
    with pytest.raises(ValueError, match="no token"):
        hec.faults.disable_token(UNKNOWN)


async def test_reset_forgets_everything_and_restores_the_tokens(hec: SplunkHecStandIn,
                                                                client: httpx.AsyncClient) -> None:
    await post(client, token=ACK, headers={"X-Splunk-Request-Channel": CHANNEL})
    hec.faults.disable_token(PLAIN)
    hec.faults.fail_requests(503, 9, count=5)
    hec.faults.lose_acks(3)
    hec.faults.delay_seconds = 1
    hec.reset()
    assert (hec.events(), hec.requests, hec.pending_acks, hec.indexed_total) == ([], [], {}, 0)
    assert hec.faults.snapshot() == {"delay_seconds": 0.0, "ack_delay_seconds": 0.0, "queue_full": False,
                                     "ack_unavailable": False, "fail_requests": [], "invalid_events": [],
                                     "drop_connections": [], "lose_acks": 0, "disabled_tokens": [DISABLED]}
    response = await post(client, token=ACK, headers={"X-Splunk-Request-Channel": CHANNEL})
    assert response.json()["ackId"] == 0


async def test_keep_events_false_only_counts() -> None:
    async with SplunkHecStandIn(tokens=tokens(), keep_events=False) as hec, \
            httpx.AsyncClient(base_url=hec.url) as client:
        await post(client, envelopes({"event": 1}, {"event": 2}))
        assert hec.events() == [] and hec.indexed_total == 2


# ------------------------------------------------------------------------------------------
# The HTTP control endpoints


async def test_faults_and_inspection_over_http(hec: SplunkHecStandIn, client: httpx.AsyncClient) -> None:
    spec = {
        "fail_requests": [{"status": 503, "code": 9, "count": 1, "retry_after": 2}, {"status": 429, "code": 26}],
        "invalid_events": {"ids": ["bad"], "code": 13},
        "drop_connections": {"count": 1, "after_indexing": False},
        "lose_acks": 1,
        "ack_delay_seconds": 0,
        "disable_token": QS,
    }
    response = await client.post("/_standin/faults", json=spec)
    assert response.status_code == 200
    faults = response.json()["faults"]
    assert [f["status"] for f in faults["fail_requests"]] == [503, 429]
    assert faults["invalid_events"][0]["ids"] == ["bad"] and faults["lose_acks"] == 1
    assert faults["disabled_tokens"] == sorted([QS, DISABLED])

    with pytest.raises(httpx.TransportError):
        await post(client)
    assert hec_answer(await post(client)) == (503, 9, "Server is busy")
    assert hec_answer(await post(client)) == (429, 26, "HEC queue is at capacity")
    bad = await post(client, envelopes({"event": {"id": "ok"}}, {"event": {"id": "bad"}}))
    assert bad.json() == {"text": "Event field cannot be blank", "code": 13, "invalid-event-number": 1}
    assert hec_answer(await post(client, token=None, params={"token": QS})) == (403, 1, "Token disabled")
    lost = await post(client, token=ACK, headers={"X-Splunk-Request-Channel": CHANNEL})
    assert lost.json()["ackId"] == 0

    await client.post("/_standin/faults", json={"queue_full": True, "ack_unavailable": True, "delay_seconds": 0.0})
    assert hec_answer(await client.get(HEALTH, params={"ack": "true"}))[:2] == (503, 20)
    await client.post("/_standin/faults", json={"clear": True, "enable_token": [QS]})
    assert hec_answer(await post(client, token=None, params={"token": QS})) == (200, 0, "Success")

    state = (await client.get("/_standin/state")).json()
    assert state["url"] == hec.url and state["indexed_total"] == 2
    assert [e["event"] for e in state["events"]] == [{"id": "ok"}, "hello"]
    assert state["pending_acks"] == {CHANNEL: [0]}
    assert [(r["status"], r["code"]) for r in state["requests"]] == \
        [(0, None), (503, 9), (429, 26), (400, 13), (403, 1), (200, 0), (503, 20), (200, 0)]
    assert {t["value"]: t["ack"] for t in state["tokens"]}[ACK] is True
    only_main = (await client.get("/_standin/state", params={"index": "main", "events": "false"})).json()
    assert "events" not in only_main and only_main["indexed_total"] == 2
    assert (await client.get("/_standin/state", params={"index": "nope"})).json()["events"] == []

    assert (await client.post("/_standin/reset")).json() == {"reset": True}
    assert (await client.get("/_standin/state")).json()["events"] == []


@pytest.mark.parametrize("spec", [
    b"not json", b"[1, 2]", b'{"fail_requests": {"status": "503"}}', b'{"fail_requests": {"status": 503, "code": 99}}',
    b'{"invalid_events": {"ids": [["x"]]}}', b'{"invalid_events": {"indexes": 1}}', b'{"invalid_events": {"code": 9}}',
    b'{"delay_seconds": -1}', b'{"queue_full": "yes"}', b'{"disable_token": "nobody"}', b'{"explode": true}',
    b'{"fail_requests": {"status": 503, "count": 0}}',
])
async def test_bad_fault_specs_are_400(spec: bytes, client: httpx.AsyncClient, hec: SplunkHecStandIn) -> None:
    response = await client.post("/_standin/faults", content=spec)
    assert response.status_code == 400 and response.json()["error"]


async def test_unknown_paths_and_methods(client: httpx.AsyncClient) -> None:
    missing = await client.post("/services/collector/nope", headers={"Authorization": f"Splunk {PLAIN}"})
    assert missing.status_code == 404
    assert missing.json() == {"text": "The requested URL was not found on this server.", "code": 404}
    for method, path, allow in [("GET", EVENT, "POST"), ("GET", RAW, "POST"), ("GET", ACK_PATH, "POST"),
                                ("DELETE", HEALTH, "GET, POST"), ("POST", "/_standin/state", "GET"),
                                ("GET", "/_standin/reset", "POST")]:
        response = await client.request(method, path)
        assert (response.status_code, response.headers["allow"]) == (405, allow)
    assert (await client.get("/_standin/nope")).status_code == 404


# ------------------------------------------------------------------------------------------
# TLS, and the stand-in as its own process


async def test_https() -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    async with SplunkHecStandIn(tokens=tokens(), ssl_context=server_context) as hec, \
            httpx.AsyncClient(base_url=hec.url, verify=client_context) as client:
        assert hec.url.startswith("https://127.0.0.1:")
        assert hec_answer(await post(client)) == (200, 0, "Success")


def read_line(process: subprocess.Popen[bytes], timeout: float = DEADLINE) -> str:
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise AssertionError(f"no line from the process within {timeout}s")
    return process.stdout.readline().decode().strip()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_the_process_entry_point(signum: signal.Signals, processes: list[subprocess.Popen[bytes]]) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "siemgate_standins.splunk_hec", "--port", "0", "--token", f"{ACK}:ack",
         "--token", f"{SECURITY}:indexes=edr:index=security", "--token", f"{QS}:qs:disabled", "--ack-delay", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    processes.append(process)
    url = read_line(process)
    assert url.startswith("http://127.0.0.1:")
    with httpx.Client(base_url=url, timeout=DEADLINE) as client:
        auth = {"Authorization": f"Splunk {ACK}"}
        assert client.post(EVENT, content=b'{"event":1}', headers=auth).json()["code"] == 10
        sent = client.post(EVENT, content=b'{"event":1}', headers={**auth, "X-Splunk-Request-Channel": CHANNEL})
        assert sent.json() == {"text": "Success", "code": 0, "ackId": 0}
        restricted = client.post(EVENT, content=b'{"event":1,"index":"main"}',
                                 headers={"Authorization": f"Splunk {SECURITY}"})
        assert restricted.json()["code"] == 7
        assert client.post(EVENT, content=b'{"event":1}', params={"token": QS}).json()["code"] == 1
        state = client.get("/_standin/state").json()
        assert [e["index"] for e in state["events"]] == ["main"]
    process.send_signal(signum)
    process.communicate(timeout=DEADLINE)
    assert process.returncode == 0


def test_the_process_refuses_bad_arguments(processes: list[subprocess.Popen[bytes]]) -> None:
    for args in (["--token", "t:bogus"], [], ["--token", ":ack"]):
        process = subprocess.Popen([sys.executable, "-m", "siemgate_standins.splunk_hec", "--port", "0", *args],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        processes.append(process)
        _out, err = process.communicate(timeout=DEADLINE)
        assert process.returncode == 2, err
