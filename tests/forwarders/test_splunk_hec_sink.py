"""The Splunk HEC sink against the HEC stand-in: every answer handled deliberately."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from siemgate.errors import RetryableSinkError, SinkAuthError, SinkError, SinkRefusedError
from siemgate.forwarders.metrics import ForwardMetrics
from siemgate.forwarders.normalize import NormalizedEvent, Normalizer
from siemgate.forwarders.sinks.registry import build_settings
from siemgate.forwarders.sinks.splunk_hec import SplunkHecSink, SplunkHecSinkSettings
from siemgate.record import make_record
from siemgate_standins.http_server import Request, Response
from siemgate_standins.splunk_hec import HecToken, SplunkHecStandIn
from tests.forwarders.test_runtime import Backend, embedded_config_for, record_for, until

pytestmark = pytest.mark.anyio

TOKEN = "11111111-2222-3333-4444-555555555555"
ACK_TOKEN = "aaaaaaaa-2222-3333-4444-555555555555"
LIMITED = "bbbbbbbb-2222-3333-4444-555555555555"
TOKENS = [HecToken(TOKEN), HecToken(ACK_TOKEN, ack=True),
          HecToken(LIMITED, indexes=("appsec",), default_index="appsec")]


def events(n: int, start: int = 0, pad: int = 100) -> list[NormalizedEvent]:
    normalizer = Normalizer()
    return [
        normalizer.normalize(make_record(
            prefix="p", event={"id": f"e-{i}", "severity": "high", "pad": "x" * pad, "source_ip": "192.0.2.9"},
            kind="event", integration="appsec", severity="high", event_id=f"e-{i}",
            received_at="2026-11-28T21:00:00.000000Z", batch="b", seq=i, peer="127.0.0.1").value)
        for i in range(start, start + n)
    ]


def ids(hec: SplunkHecStandIn, index: str | None = None) -> list[str]:
    return [e["event"]["id"] for e in hec.events(index)]


@pytest.fixture
async def hec() -> AsyncIterator[SplunkHecStandIn]:
    async with SplunkHecStandIn(tokens=TOKENS) as server:
        yield server


def sink_for(hec: SplunkHecStandIn | str, token: str = TOKEN, **options: Any) -> SplunkHecSink:
    """A sink built as the config loader builds it (nested keys as in YAML)."""
    url = hec if isinstance(hec, str) else hec.url
    settings = build_settings("splunk_hec", {"name": "splunk", "url": url, "token": token, **options}, {}, "sinks[0]")
    assert isinstance(settings, SplunkHecSinkSettings)
    return SplunkHecSink(settings)


async def test_delivers_a_batch_gzipped_on_one_channel(hec: SplunkHecStandIn) -> None:
    sink = sink_for(hec, index="main", sourcetype="appsec:event")
    result = await sink.send(events(20))
    await sink.close()
    assert not result.retry and not result.rejected
    assert ids(hec, "main") == [f"e-{i}" for i in range(20)]
    first = hec.events()[0]
    assert first["sourcetype"] == "appsec:event" and first["source"] == "appsec"
    assert first["fields"] == {"integration": "appsec", "severity": "high"}
    assert first["time"] == 1795899600.0
    assert first["channel"] == sink.channel
    assert [(r.gzip, r.status, r.code, r.channel) for r in hec.requests] == [(True, 200, 0, sink.channel)]


async def test_hostile_assets_and_boolean_actions_arrive_as_cim(hec: SplunkHecStandIn) -> None:
    """Through HEC: a host with a newline, NUL or nothing printable is indexed clean (or
    under the token's default host); a boolean action is no CIM action, its word kept."""
    normalizer = Normalizer()
    cases = [("shop\nfrontend\x00", True, "shopfrontend"), ("\r\n\x00", "deny", "splunk-standin"),
             ("x" * 300, False, "x" * 255)]
    batch = [normalizer.normalize(make_record(
        prefix="p", event={"id": f"h-{i}", "asset": asset, "action": action, "source_ip": "fe80::1%eth0"},
        kind="event", integration="appsec", severity="high", event_id=f"h-{i}",
        received_at="2026-11-28T21:00:00.000000Z", batch="b", seq=i, peer="127.0.0.1").value)
        for i, (asset, action, _) in enumerate(cases)]
    sink = sink_for(hec)
    result = await sink.send(batch)
    await sink.close()
    assert not result.retry and not result.rejected
    indexed = hec.events()
    assert [e["host"] for e in indexed] == [host for _, _, host in cases]
    assert [e["event"].get("action") for e in indexed] == [None, "blocked", None]
    assert [e["event"]["vendor_action"] for e in indexed] == ["true", "deny", "false"]
    assert {e["event"]["src_ip"] for e in indexed} == {"fe80::1"}
    assert {(e["event"]["vendor_product"], e["event"]["ids_type"], e["event"]["type"]) for e in indexed} == {
        ("appsec", "application", "alert")}


async def test_without_gzip_and_split_by_bytes(hec: SplunkHecStandIn) -> None:
    sink = sink_for(hec, gzip=False, batch={"max_bytes": 4096})
    result = await sink.send(events(30))
    await sink.close()
    assert not result.retry and not result.rejected
    assert ids(hec) == [f"e-{i}" for i in range(30)]
    assert len(hec.requests) >= 4 and not any(r.gzip for r in hec.requests)


@pytest.mark.parametrize("code", [6, 12, 13, 15])
async def test_an_invalid_event_is_dead_lettered_and_the_others_delivered_once(hec: SplunkHecStandIn,
                                                                               code: int) -> None:
    hec.faults.invalid_events(ids=["e-7"], code=code)
    sink = sink_for(hec)
    result = await sink.send(events(20))
    await sink.close()
    assert [i for i, _ in result.rejected] == [7]
    assert f"code {code}" in result.rejected[0][1]
    assert not result.retry
    assert sorted(ids(hec)) == sorted(f"e-{i}" for i in range(20) if i != 7), "nothing twice, nothing missing"


async def test_invalid_events_without_a_number_are_found_by_halving() -> None:
    class NoNumber(SplunkHecStandIn):
        """A HEC front end that reports code 6 without saying which event."""

        async def handle(self, request: Request) -> Response:
            response = await super().handle(request)
            if response.status == 400:
                return Response.json(400, {"text": "Invalid data format", "code": 6})
            return response

    async with NoNumber(tokens=TOKENS, index_before_invalid=False) as hec:
        hec.faults.invalid_events(ids=["e-3", "e-12"])
        sink = sink_for(hec)
        result = await sink.send(events(16))
        await sink.close()
    assert sorted(i for i, _ in result.rejected) == [3, 12]
    assert sorted(ids(hec)) == sorted(f"e-{i}" for i in range(16) if i not in (3, 12))


async def test_413_splits_and_an_event_too_large_alone_is_dead_lettered() -> None:
    async with SplunkHecStandIn(tokens=TOKENS, max_body_bytes=6000) as hec:
        sink = sink_for(hec, gzip=False)
        batch = events(10, pad=300)
        batch.insert(4, events(1, start=99, pad=8000)[0])
        result = await sink.send(batch)
        await sink.close()
    assert [i for i, _ in result.rejected] == [4]
    assert "413" in result.rejected[0][1]
    assert ids(hec) == [f"e-{i}" for i in range(10)]


@pytest.mark.parametrize(("status", "code"), [(503, 9), (500, 8), (429, 26), (503, 23), (502, None)])
async def test_busy_and_server_errors_are_retryable(hec: SplunkHecStandIn, status: int, code: int | None) -> None:
    hec.faults.fail_requests(status, code)
    sink = sink_for(hec)
    with pytest.raises(RetryableSinkError, match=f"HTTP {status}"):
        await sink.send(events(5))
    result = await sink.send(events(5))  # the runtime's retry
    await sink.close()
    assert not result.retry and ids(hec) == [f"e-{i}" for i in range(5)]


async def test_capacity_warnings_are_success(hec: SplunkHecStandIn) -> None:
    hec.faults.fail_requests(200, 24)
    sink = sink_for(hec)
    result = await sink.send(events(3))
    await sink.close()
    assert not result.retry and ids(hec) == ["e-0", "e-1", "e-2"]


async def test_what_was_confirmed_stays_delivered_when_a_later_request_fails() -> None:
    class SecondRequestBusy(SplunkHecStandIn):
        seen = 0

        async def handle(self, request: Request) -> Response:
            if request.path.endswith("/event"):
                self.seen += 1
                if self.seen == 2:
                    return Response.json(503, {"text": "Server is busy", "code": 9})
            return await super().handle(request)

    async with SecondRequestBusy(tokens=TOKENS) as hec:
        sink = sink_for(hec, gzip=False, batch={"max_bytes": 2048})
        batch = events(12)
        result = await sink.send(batch)
        assert result.retry, "the busy request's events and those after it are sent again"
        delivered = [i for i in range(12) if i not in set(result.retry)]
        assert ids(hec) == [f"e-{i}" for i in delivered]
        again = await sink.send([batch[i] for i in result.retry])
        await sink.close()
    assert not again.retry
    assert sorted(ids(hec)) == sorted(f"e-{i}" for i in range(12))


@pytest.mark.parametrize(("status", "code"), [(401, 2), (401, 3), (403, 4), (403, 1)])
async def test_token_refusals_pause_the_sink(hec: SplunkHecStandIn, status: int, code: int) -> None:
    hec.faults.fail_requests(status, code)
    sink = sink_for(hec)
    with pytest.raises(SinkAuthError, match="token"):
        await sink.send(events(2))
    await sink.close()


async def test_an_unknown_or_disabled_token(hec: SplunkHecStandIn) -> None:
    sink = sink_for(hec, token="ffffffff-0000-0000-0000-000000000000")
    with pytest.raises(SinkAuthError, match=r"HTTP 403, code 4"):
        await sink.send(events(1))
    await sink.close()
    hec.faults.disable_token(TOKEN)
    sink = sink_for(hec)
    with pytest.raises(SinkAuthError, match=r"code 1"):
        await sink.send(events(1))
    with pytest.raises(SinkAuthError):
        await sink.healthcheck()
    await sink.close()


async def test_an_index_the_token_may_not_write_is_refused_until_fixed(hec: SplunkHecStandIn) -> None:
    sink = sink_for(hec, token=LIMITED, index="main")
    with pytest.raises(SinkRefusedError, match="code 7.*sinks\\[\\]\\.index"):
        await sink.send(events(2))
    await sink.close()
    assert not hec.events()


async def test_dropped_connections_and_timeouts_are_retryable(hec: SplunkHecStandIn) -> None:
    hec.faults.drop_connections(1)
    sink = sink_for(hec, timeout_seconds=0.5)
    with pytest.raises(RetryableSinkError):
        await sink.send(events(2))
    hec.faults.delay_seconds = 2.0
    with pytest.raises(RetryableSinkError, match="no answer within 0.5 s"):
        await sink.send(events(2))
    hec.faults.delay_seconds = 0.0
    assert not (await sink.send(events(2))).retry
    await sink.close()


async def test_indexer_acks_confirm_before_send_returns() -> None:
    async with SplunkHecStandIn(tokens=TOKENS, ack_delay_seconds=0.3) as hec:
        sink = sink_for(hec, token=ACK_TOKEN, ack=True, ack_poll_seconds=0.1, gzip=False, batch={"max_bytes": 4096})
        result = await sink.send(events(30))
        await sink.close()
        assert not result.retry and not result.rejected
        assert sorted(ids(hec)) == sorted(f"e-{i}" for i in range(30))
        assert hec.pending_acks == {}, "every ackId was asked for and came back true"
        assert all(r.channel == sink.channel for r in hec.requests)


async def test_a_lost_ack_is_sent_again() -> None:
    async with SplunkHecStandIn(tokens=TOKENS) as hec:
        hec.faults.lose_acks(1)
        sink = sink_for(hec, token=ACK_TOKEN, ack=True, ack_poll_seconds=0.05, ack_timeout_seconds=0.5)
        batch = events(5)
        result = await sink.send(batch)
        assert result.retry == [0, 1, 2, 3, 4], "no ack: nothing counts as delivered"
        assert not hec.events(), "the stand-in's indexer lost them"
        again = await sink.send([batch[i] for i in result.retry])
        await sink.close()
        assert not again.retry and ids(hec) == [f"e-{i}" for i in range(5)]


async def test_ack_mode_resends_what_came_before_an_invalid_event() -> None:
    async with SplunkHecStandIn(tokens=TOKENS, index_before_invalid=False) as hec:
        hec.faults.invalid_events(ids=["e-2"])
        sink = sink_for(hec, token=ACK_TOKEN, ack=True, ack_poll_seconds=0.05)
        result = await sink.send(events(5))
        await sink.close()
        assert [i for i, _ in result.rejected] == [2] and not result.retry
        assert sorted(ids(hec)) == ["e-0", "e-1", "e-3", "e-4"]


async def test_ack_configured_on_a_token_without_it_is_refused(hec: SplunkHecStandIn) -> None:
    sink = sink_for(hec, ack=True)
    with pytest.raises(SinkRefusedError, match="ack: false"):
        await sink.send(events(1))
    await sink.close()


async def test_healthcheck(hec: SplunkHecStandIn) -> None:
    sink = sink_for(hec, token=ACK_TOKEN, ack=True)
    assert "code 17" in await sink.healthcheck()
    hec.faults.queue_full = True
    with pytest.raises(SinkError, match="not healthy.*code 18"):
        await sink.healthcheck()
    await sink.close()


async def test_tls_verified_against_the_configured_ca(tmp_path: Path) -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    async with SplunkHecStandIn(tokens=TOKENS, ssl_context=server_context, host="127.0.0.1") as hec:
        url = hec.url.replace("127.0.0.1", "localhost")
        trusted = sink_for(url, tls={"ca_file": str(ca_file)})
        assert not (await trusted.send(events(1))).retry
        await trusted.close()
        untrusted = sink_for(url)
        with pytest.raises(SinkAuthError, match="not trusted"):
            await untrusted.send(events(1))
        await untrusted.close()


async def test_through_the_runtime_refused_events_reach_the_dlq_with_hec_reason(tmp_path: Path) -> None:
    backend = Backend("embedded", embedded_config_for(tmp_path))
    await backend.produce([record_for(backend.prefix, i) for i in range(10)])
    metrics = ForwardMetrics()
    async with SplunkHecStandIn(tokens=TOKENS) as hec:
        hec.faults.invalid_events(ids=["e-4"], code=6)
        sink = sink_for(hec)
        async with backend.forwarding(sink, metrics):
            await until(lambda: len(hec.events()) >= 9)
            await until(lambda: metrics.dlq.labels("splunk", "hec_code_6")._value.get() >= 1)
        assert sorted(ids(hec)) == sorted(f"e-{i}" for i in range(10) if i != 4)
    letters = await backend.dead_letters("splunk", 1)
    assert [letter["id"] for letter in letters] == ["e-4"]
    assert letters[0]["reason"].startswith("hec code 6: ")
    assert letters[0]["record"]["event"]["id"] == "e-4"


async def test_a_refused_token_fixed_by_a_reload_ends_the_backoff(tmp_path: Path) -> None:
    """The token rotation case: HEC refuses the running token, the operator puts the new one in
    the config, the forwarder takes it between two attempts (same consumer group)."""
    backend = Backend("embedded", embedded_config_for(tmp_path))
    await backend.produce([record_for(backend.prefix, i) for i in range(20)])
    async with SplunkHecStandIn(tokens=TOKENS) as hec:
        hec.faults.disable_token(TOKEN)
        old = sink_for(hec, retry={"initial_seconds": 5, "max_seconds": 60})
        async with backend.forwarding(old) as forwarder:
            await until(lambda: forwarder.waiting)
            assert not hec.events()
            new = sink_for(hec, token=LIMITED, index="appsec", retry={"initial_seconds": 5, "max_seconds": 60})
            forwarder.replace(new.settings, new, forwarder.normalizer)
            await until(lambda: len(hec.events("appsec")) >= 20, timeout=30)
            assert forwarder.sink is new
        assert sorted(ids(hec, "appsec")) == sorted(f"e-{i}" for i in range(20))
