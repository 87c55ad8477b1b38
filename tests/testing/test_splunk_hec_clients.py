"""Proof of fidelity: published HEC client libraries from PyPI send through the stand-in.

- `splunk-handler` (zach-taylor/splunk_handler, the most used HEC logging handler on PyPI): a
  batching handler that concatenates JSON envelopes with nothing between them and POSTs them
  to /services/collector/event with `Authorization: Splunk <token>`. Its README: retries use
  urllib3's retry counter and backoff factor (on 500/502/503/504, `status_forcelist` in its
  source); other failures are printed as "Exception in Splunk logging handler" and dropped.
- `splunk-hec-handler` (vavarachen/splunk_hec_handler): one request per record, indexed
  `fields` (values it cannot send as strings or lists it stringifies, because Splunk answers
  code 15 otherwise, says its source), metadata overrides inside `fields`; an HTTP error is
  raised from `emit` as `requests.HTTPError`.

Both are synchronous (requests): they run in a worker thread while the stand-in serves on
the test's event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import requests
from splunk_handler import SplunkHandler
from splunk_hec_handler import SplunkHecHandler

from siemgate_standins.splunk_hec import HecToken, SplunkHecStandIn

pytestmark = pytest.mark.anyio

TOKEN = "8b1c0f5e-3f0a-4c1e-9a6b-2d7e4f1a0c93"


@pytest.fixture
async def hec() -> AsyncIterator[SplunkHecStandIn]:
    tokens = [HecToken(TOKEN, indexes=("security", "edr"), default_index="main")]
    async with SplunkHecStandIn(tokens=tokens) as standin:
        yield standin


@pytest.fixture
def client_logger() -> Iterator[logging.Logger]:
    logger = logging.getLogger("siemgate.tests.hec_client")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger
    for handler in list(logger.handlers):
        logger.removeHandler(handler)


def splunk_handler(hec: SplunkHecStandIn, **kwargs: Any) -> SplunkHandler:
    options: dict[str, Any] = {"hostname": "app-host-1", "source": "billing.py", "sourcetype": "app:log",
                               "protocol": "http", "verify": False, "flush_interval": 60.0, "retry_backoff": 0.0,
                               "timeout": 10}
    options.update(kwargs)
    return SplunkHandler("127.0.0.1", hec.port, TOKEN, "security", **options)


def close_splunk_handler(handler: SplunkHandler) -> None:
    handler.close()
    handler.session.close()


async def in_thread(function: Callable[[], Any]) -> Any:
    return await asyncio.wait_for(asyncio.to_thread(function), 30)


async def test_splunk_handler_batches_arrive_with_the_envelope_it_set(hec: SplunkHecStandIn,
                                                                      client_logger: logging.Logger) -> None:
    handler = splunk_handler(hec, allow_overrides=True)
    client_logger.addHandler(handler)
    before = time.time()
    try:
        for i in range(200):
            client_logger.info("login failed for user %d", i)
        client_logger.warning("routed elsewhere", extra={"_index": "edr", "_sourcetype": "app:audit"})
        after = time.time()
        await in_thread(handler.force_flush)
    finally:
        await in_thread(lambda: close_splunk_handler(handler))

    # One request, 201 envelopes back to back with nothing between them (the library's ''.join).
    assert [(r.path, r.status, r.code, r.event_count, r.indexed) for r in hec.requests] == \
        [("/services/collector/event", 200, 0, 201, 201)]
    events = hec.events()
    assert [e["event"] for e in events] == [f"login failed for user {i}" for i in range(200)] + ["routed elsewhere"]
    assert {(e["host"], e["source"]) for e in events} == {("app-host-1", "billing.py")}
    assert {(e["index"], e["sourcetype"]) for e in events[:200]} == {("security", "app:log")}
    assert (events[200]["index"], events[200]["sourcetype"]) == ("edr", "app:audit")
    assert all(before <= e["time"] <= after for e in events)  # the records' creation times, sub-second


async def test_splunk_handler_retries_busy_answers_as_documented(hec: SplunkHecStandIn,
                                                                 client_logger: logging.Logger) -> None:
    handler = splunk_handler(hec, retry_count=3)
    client_logger.addHandler(handler)
    hec.faults.fail_requests(503, 9, count=1)
    hec.faults.fail_requests(500, 8, count=1)
    try:
        for i in range(3):
            client_logger.info("event %d", i)
        await in_thread(handler.force_flush)
    finally:
        await in_thread(lambda: close_splunk_handler(handler))
    # urllib3's Retry re-sent the same batch after 503/9 and 500/8: delivered once.
    assert [(r.status, r.code) for r in hec.requests] == [(503, 9), (500, 8), (200, 0)]
    assert [e["event"] for e in hec.events()] == ["event 0", "event 1", "event 2"]


async def test_splunk_handler_gives_up_after_its_retries_and_drops(hec: SplunkHecStandIn,
                                                                   client_logger: logging.Logger,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    handler = splunk_handler(hec, retry_count=2)
    client_logger.addHandler(handler)
    hec.faults.fail_requests(503, 9, count=10)
    try:
        client_logger.info("never indexed")
        await in_thread(handler.force_flush)
    finally:
        await in_thread(lambda: close_splunk_handler(handler))
    assert [(r.status, r.code) for r in hec.requests] == [(503, 9)] * 3  # the first try and 2 retries
    assert hec.events() == []
    printed = capsys.readouterr().out
    assert "[SplunkHandler] Exception in Splunk logging handler" in printed
    assert "too many 503 error responses" in printed


@pytest.mark.parametrize(("fault", "status", "code"), [("disable_token", 403, 1), ("bad_event", 400, 6)])
async def test_splunk_handler_does_not_retry_client_errors(fault: str, status: int, code: int,
                                                           hec: SplunkHecStandIn, client_logger: logging.Logger,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    handler = splunk_handler(hec, retry_count=3)
    client_logger.addHandler(handler)
    if fault == "disable_token":
        hec.faults.disable_token(TOKEN)
    else:
        hec.faults.invalid_events(where=lambda _position, envelope: envelope["event"] == "bad")
    try:
        for text in ("good 0", "good 1", "bad", "good 3"):
            client_logger.info(text)
        await in_thread(handler.force_flush)
    finally:
        await in_thread(lambda: close_splunk_handler(handler))
    assert [(r.status, r.code) for r in hec.requests] == [(status, code)]
    # The stand-in indexes the events before an invalid one, as a real Splunk may; the
    # library does not know and drops the whole batch.
    assert [e["event"] for e in hec.events()] == ([] if code == 1 else ["good 0", "good 1"])
    assert f"{status} Client Error" in capsys.readouterr().out


def hec_handler(hec: SplunkHecStandIn, **kwargs: Any) -> SplunkHecHandler:
    options: dict[str, Any] = {"port": hec.port, "proto": "http", "ssl_verify": False, "source": "auth-service",
                               "sourcetype": "_json", "index": "security", "hostname": "app-host-2"}
    options.update(kwargs)
    return SplunkHecHandler("127.0.0.1", TOKEN, **options)


async def test_splunk_hec_handler_sends_fields_and_metadata_overrides(hec: SplunkHecStandIn,
                                                                      client_logger: logging.Logger) -> None:
    handler: SplunkHecHandler = await in_thread(lambda: hec_handler(hec))
    client_logger.addHandler(handler)

    def log() -> None:
        client_logger.warning({"time": 1533530023.25, "user": "alice", "action": "login",
                               "fields": {"color": "yellow", "attempts": 3, "tags": ["mfa", "vpn"]}})
        client_logger.info({"msg": "moved", "fields": {"index": "edr", "host": "override-host", "rule": "R-1"}})
        client_logger.error("plain text")

    try:
        await in_thread(log)
    finally:
        handler.r.close()
    first, second, third = hec.events()
    assert first == {"time": 1533530023.25, "host": "app-host-2", "source": "auth-service", "sourcetype": "_json",
                     "index": "security", "event": {"log_level": "WARNING", "user": "alice", "action": "login",
                                                    "time": 1533530023.25},
                     # 3 is not a string: the library sends "3" (Splunk answers code 15 otherwise).
                     "fields": {"color": "yellow", "attempts": "3", "tags": ["mfa", "vpn"]},
                     "channel": None, "ackId": None}
    assert (second["index"], second["host"], second["fields"]) == ("edr", "override-host", {"rule": "R-1"})
    assert third["event"] == {"log_level": "ERROR", "message": "plain text"}
    assert [r.event_count for r in hec.requests] == [1, 1, 1]


async def test_splunk_hec_handler_raises_the_stand_ins_errors(hec: SplunkHecStandIn,
                                                              client_logger: logging.Logger) -> None:
    handler: SplunkHecHandler = await in_thread(lambda: hec_handler(hec))
    client_logger.addHandler(handler)
    hec.faults.invalid_events(ids={"ev-2"}, id_field="id")
    hec.faults.fail_requests(503, 9)

    def log(value: dict[str, Any]) -> requests.Response:
        with pytest.raises(requests.HTTPError) as raised:
            client_logger.info(value)
        response: requests.Response = raised.value.response
        return response

    try:
        busy = await in_thread(lambda: log({"id": "ev-1"}))
        invalid = await in_thread(lambda: log({"id": "ev-2"}))
        # Not the library's path but the reason for its stringifying: a number in fields is code 15.
        raw = await in_thread(lambda: handler.r.post(handler.url, data=b'{"event":"x","fields":{"n":1}}'))
    finally:
        handler.r.close()
    assert (busy.status_code, busy.json()) == (503, {"text": "Server is busy", "code": 9})
    assert (invalid.status_code, invalid.json()) == \
        (400, {"text": "Invalid data format", "code": 6, "invalid-event-number": 0})
    assert (raw.status_code, raw.json()) == \
        (400, {"text": "Error in handling indexed fields", "code": 15, "invalid-event-number": 0})
    assert hec.events() == []
