"""The Microsoft Sentinel sink against the Sentinel stand-in (Entra ID token endpoint + Logs
Ingestion API) over loopback: every answer handled deliberately, every credential."""

from __future__ import annotations

import collections
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from siemgate.forwarders.metrics import ForwardMetrics
from siemgate.forwarders.normalize import NormalizedEvent, Normalizer
from siemgate.forwarders.sinks.base import RetryableSinkError, SinkAuthError, SinkError, SinkRefusedError
from siemgate.forwarders.sinks.registry import build_settings
from siemgate.forwarders.sinks.sentinel import COLUMNS, FIELD_MAX_BYTES, SentinelSink, SentinelSinkSettings
from siemgate.record import make_record
from siemgate_standins.http_server import Request, Response
from siemgate_standins.sentinel import (
    DEFAULT_TENANT,
    AppRegistration,
    DataCollectionRule,
    RequestRecord,
    SentinelStandIn,
)
from tests.forwarders.test_runtime import Backend, embedded_config_for, record_for, until

pytestmark = pytest.mark.anyio

CLIENT = "6a1c0b7e-0000-4000-8000-00000000c11e"
SECRET = "sentinel-secret-value-0123"
DCR = "dcr-0123456789abcdef0123456789abcdef"
STREAM = "Custom-SiemgateAlerts"


def rule() -> DataCollectionRule:
    return DataCollectionRule(DCR, {STREAM: dict(COLUMNS)})


def events(n: int, start: int = 0, pad: int = 100, **extra: Any) -> list[NormalizedEvent]:
    normalizer = Normalizer()
    return [
        normalizer.normalize(make_record(
            prefix="p", event={"id": f"e-{i}", "severity": "high", "pad": "x" * pad, "source_ip": "192.0.2.9",
                               "type": "sql_injection", "url": "https://shop.example/login", "method": "POST",
                               "rule": "SQLi", "action": "blocked", "timestamp": "2026-11-28T20:59:59.5Z", **extra},
            kind="event", integration="appsec", severity="high", event_id=f"e-{i}",
            received_at="2026-11-28T21:00:00.000000Z", batch="b", seq=i, peer="127.0.0.1").value)
        for i in range(start, start + n)
    ]


def ids(azure: SentinelStandIn) -> list[str]:
    return [str(r["EventId"]) for r in azure.rows()]


@pytest.fixture
async def azure() -> AsyncIterator[SentinelStandIn]:
    async with SentinelStandIn(apps=[AppRegistration(CLIENT, secrets=(SECRET,))], rules=[rule()]) as server:
        yield server


def sink_for(azure: SentinelStandIn, **options: Any) -> SentinelSink:
    """A sink built as the config loader builds it (nested keys as in YAML)."""
    entry = {"name": "sentinel", "endpoint": azure.url, "dcr_immutable_id": DCR, "tenant_id": DEFAULT_TENANT,
             "client_id": CLIENT, "authority_host": azure.url, **options}
    if not {"certificate", "federated_token_file", "client_secret"} & set(options):
        entry["client_secret"] = SECRET
    settings = build_settings("sentinel", entry, {}, "sinks[0]")
    assert isinstance(settings, SentinelSinkSettings)
    return SentinelSink(settings)


async def test_delivers_asim_rows_gzipped_with_one_token(azure: SentinelStandIn) -> None:
    sink = sink_for(azure, event_vendor="Acme")
    result = await sink.send(events(20))
    again = await sink.send(events(5, start=20))
    await sink.close()
    assert not result.retry and not result.rejected and not again.retry
    assert ids(azure) == [f"e-{i}" for i in range(25)]
    assert len(azure.token_requests()) == 1, "the token is cached"
    calls = azure.calls()
    assert [(c.status, c.gzip, c.client_id) for c in calls] == [(204, True, CLIENT)] * 2
    first = azure.rows()[0]
    assert first == {
        "TimeGenerated": "2026-11-28T20:59:59.500000Z", "EventId": "e-0", "EventSeverity": "High",
        "EventType": "sql_injection", "SrcIpAddr": "192.0.2.9", "Url": "https://shop.example/login",
        "HttpRequestMethod": "POST", "RuleName": "SQLi", "DvcAction": "blocked", "EventVendor": "Acme",
        "EventProduct": "appsec", "AdditionalFields": events(1)[0].event, "SiemgateIntegration": "appsec",
        "SiemgateKind": "event", "SiemgateReceivedTime": "2026-11-28T21:00:00.000000Z",
        "_dcr": DCR, "_stream": STREAM,
    }
    assert set(first) - {"_dcr", "_stream"} <= set(COLUMNS)


@pytest.mark.parametrize(("source_ip", "column"), [
    (" 198.51.100.7\n", "198.51.100.7"), ("fe80::1%eth0", "fe80::1"), ("2001:db8::7", "2001:db8::7"),
    ("evil.example", None), ("198.51.100.7:443", None), ("198.51.100.7, 203.0.113.9", None)])
async def test_src_ip_addr_is_an_ip_address_only(azure: SentinelStandIn, source_ip: str, column: str | None) -> None:
    """Found by the sinks' sweep: ASIM types SrcIpAddr as an IP address, and the row carried the
    vendor's text (a host name, `ip:port`, a zoned or padded address). Now the address alone,
    as ECS source.ip, CIM src_ip and OCSF src_endpoint.ip have it; other text stays in
    AdditionalFields."""
    sink = sink_for(azure)
    result = await sink.send(events(1, source_ip=source_ip))
    await sink.close()
    assert not result.retry and not result.rejected
    (row,) = azure.rows()
    assert row.get("SrcIpAddr") == column and row["AdditionalFields"]["source_ip"] == source_ip


async def test_calls_stay_under_the_per_call_cap(azure: SentinelStandIn) -> None:
    sink = sink_for(azure)  # batch.max_bytes 1,000,000 by default: Microsoft's 1 MB per call
    result = await sink.send(events(300, pad=10_000))  # ~3 MB of rows
    await sink.close()
    assert not result.retry and not result.rejected
    calls = azure.calls()
    assert len(calls) >= 3 and all(c.status == 204 and c.body_bytes <= 1_000_000 for c in calls)
    assert ids(azure) == [f"e-{i}" for i in range(300)], "each once, in order"


async def test_413_halves_and_a_row_too_large_alone_is_dead_lettered() -> None:
    async with SentinelStandIn(apps=[AppRegistration(CLIENT, secrets=(SECRET,))], rules=[rule()],
                               max_call_bytes=20_000) as azure:
        sink = sink_for(azure, gzip=True, batch={"max_bytes": 60_000})
        batch = events(12, pad=2_000)
        batch.insert(5, events(1, start=99, pad=30_000)[0])
        result = await sink.send(batch)
        await sink.close()
        assert [i for i, _ in result.rejected] == [5]
        assert result.rejected[0][1].startswith("azure ContentLengthLimitExceeded: Azure answered 413")
        assert not result.retry
        assert ids(azure) == [f"e-{i}" for i in range(12)]
        assert any(c.status == 413 for c in azure.calls())


async def test_text_columns_over_64_kb_are_cut_so_a_large_row_still_fits_a_call(azure: SentinelStandIn) -> None:
    """Found by the sinks' sweep: a vendor event of ~600 KB whose message is 550 KB made a row
    of 1.15 MB (the message in EventMessage and again in AdditionalFields): over the 1 MB call
    limit, Azure answered 413 and it was dead-lettered, though Azure cuts every field past
    64 KB anyway. A text column over FIELD_MAX_BYTES is now cut to fit (ending with an
    ellipsis, UTF-8 whole); the vendor's event stays whole in AdditionalFields."""
    message = "\u00e9" * 275_000  # 550,000 bytes of UTF-8
    big = events(1, start=50, message=message, rule="R" * 70_000)[0]
    batch = [*events(2), big]
    sink = sink_for(azure)
    result = await sink.send(batch)
    await sink.close()
    assert not result.retry and not result.rejected, result
    row = {r["EventId"]: r for r in azure.rows()}["e-50"]
    assert row["AdditionalFields"] == big.event, "the vendor's event, whole"
    for column, text in (("EventMessage", message), ("RuleName", "R" * 70_000)):
        cut = row[column]
        assert len(cut.encode()) <= FIELD_MAX_BYTES and cut.endswith("\u2026") and text.startswith(cut[:-1])
    assert len(row["EventMessage"].encode()) > FIELD_MAX_BYTES - 8, "cut no shorter than needed"
    assert sink.row(big) == {k: v for k, v in row.items() if k not in ("_dcr", "_stream")}
    assert {r["EventId"]: r for r in azure.rows()}["e-1"]["AdditionalFields"] == batch[1].event


async def test_a_refused_row_is_isolated_by_halving_and_dead_lettered_with_azures_reason(
        azure: SentinelStandIn) -> None:
    azure.faults.refuse_rows(["e-7", "e-12"], message="Field 'TimeGenerated' cannot be parsed.")
    sink = sink_for(azure)
    result = await sink.send(events(16))
    await sink.close()
    assert sorted(i for i, _ in result.rejected) == [7, 12]
    assert all(reason == "azure InvalidPayload: Azure answered 400: Field 'TimeGenerated' cannot be parsed."
               for _, reason in result.rejected)
    assert not result.retry
    counts = collections.Counter(ids(azure))
    assert set(counts) == {f"e-{i}" for i in range(16) if i not in (7, 12)} and set(counts.values()) == {1}


async def test_a_wrong_stream_or_dcr_pauses_instead_of_dead_lettering(azure: SentinelStandIn) -> None:
    sink = sink_for(azure, stream="Custom-Nope")
    with pytest.raises(SinkRefusedError, match="InvalidStream.*dcr_immutable_id and stream"):
        await sink.send(events(4))
    await sink.close()
    sink = sink_for(azure, dcr_immutable_id="dcr-ffffffffffffffffffffffffffffffff")
    with pytest.raises(SinkRefusedError, match="404"):
        await sink.send(events(4))
    await sink.close()
    assert not azure.rows()


@pytest.mark.parametrize("status", [429, 503, 500, 502])
async def test_busy_answers_are_retryable_with_their_retry_after(azure: SentinelStandIn, status: int) -> None:
    azure.faults.fail_requests(status, retry_after=7 if status in (429, 503) else None)
    sink = sink_for(azure)
    with pytest.raises(RetryableSinkError, match=f"HTTP {status}") as caught:
        await sink.send(events(3))
    assert caught.value.retry_after == (7 if status in (429, 503) else None)
    result = await sink.send(events(3))  # the runtime's retry
    await sink.close()
    assert not result.retry and ids(azure) == ["e-0", "e-1", "e-2"]


async def test_what_was_confirmed_stays_delivered_when_a_later_call_is_throttled() -> None:
    class SecondCallThrottled(SentinelStandIn):
        seen = 0

        async def handle(self, request: Request) -> Response:
            if request.path.startswith("/dataCollectionRules/"):
                self.seen += 1
                if self.seen == 2:
                    return Response.json(429, {"error": {"code": "TooManyRequests", "message": "slow down"}},
                                         [("Retry-After", "3")])
            return await super().handle(request)

    async with SecondCallThrottled(apps=[AppRegistration(CLIENT, secrets=(SECRET,))], rules=[rule()]) as azure:
        sink = sink_for(azure, batch={"max_bytes": 4096})
        batch = events(20)
        result = await sink.send(batch)
        assert result.retry and result.retry_after == 3.0
        delivered = [i for i in range(20) if i not in set(result.retry)]
        assert ids(azure) == [f"e-{i}" for i in delivered]
        again = await sink.send([batch[i] for i in result.retry])
        await sink.close()
        assert not again.retry
        assert sorted(ids(azure)) == sorted(f"e-{i}" for i in range(20))


async def test_retry_after_is_honoured_by_the_runtime(tmp_path: Path) -> None:
    """Measured on the stand-in's clock: the call after a 429 with Retry-After: 2 comes no sooner
    than 2 s later, although the sink's own backoff would have retried after 10 ms."""
    backend = Backend("embedded", embedded_config_for(tmp_path))
    await backend.produce([record_for(backend.prefix, i) for i in range(10)])
    async with SentinelStandIn(apps=[AppRegistration(CLIENT, secrets=(SECRET,))], rules=[rule()]) as azure:
        azure.faults.fail_requests(429, retry_after=2)
        sink = sink_for(azure, retry={"initial_seconds": 0.01, "max_seconds": 0.05})
        async with backend.forwarding(sink):
            await until(lambda: len(azure.rows()) >= 10, timeout=30)
        throttled, retried = azure.calls()[:2]
        assert (throttled.status, throttled.retry_after, retried.status) == (429, "2", 204)
        assert retried.at - throttled.at >= 2.0, retried.at - throttled.at
        assert sorted(ids(azure)) == sorted(f"e-{i}" for i in range(10))


async def test_retry_after_of_a_call_after_confirmed_ones_is_honoured_by_the_runtime(tmp_path: Path) -> None:
    """The batch's first calls are delivered, the next is throttled: the runtime sends only the
    rest again, and not before the Retry-After (stand-in timestamps)."""
    backend = Backend("embedded", embedded_config_for(tmp_path))
    await backend.produce([record_for(backend.prefix, i) for i in range(40)])

    class ThirdCallThrottled(SentinelStandIn):
        seen = 0

        async def handle(self, request: Request) -> Response:
            if request.path.startswith("/dataCollectionRules/"):
                self.seen += 1
                if self.seen == 3:
                    self._requests.append(RequestRecord(at=time.time(), kind="ingest", path=request.path,
                                                        status=429, retry_after="2"))
                    return Response.json(429, {"error": {"code": "TooManyRequests", "message": "slow down"}},
                                         [("Retry-After", "2")])
            return await super().handle(request)

    async with ThirdCallThrottled(apps=[AppRegistration(CLIENT, secrets=(SECRET,))], rules=[rule()]) as azure:
        sink = sink_for(azure, batch={"max_bytes": 4096, "max_events": 500},
                        retry={"initial_seconds": 0.01, "max_seconds": 0.05})
        async with backend.forwarding(sink):
            await until(lambda: len(azure.rows()) >= 40, timeout=30)
        calls = azure.calls()
        throttled = next(i for i, c in enumerate(calls) if c.status == 429)
        assert throttled == 2 and all(c.status == 204 for c in calls[:2])
        assert calls[throttled + 1].at - calls[throttled].at >= 2.0
        counts = collections.Counter(ids(azure))
        assert set(counts) == {f"e-{i}" for i in range(40)} and set(counts.values()) == {1}, "the confirmed not resent"


async def test_a_refused_token_is_refreshed_once_then_the_call_succeeds(azure: SentinelStandIn) -> None:
    sink = sink_for(azure)
    assert not (await sink.send(events(2))).retry
    azure.expire_tokens()  # revoked, or expired early: Azure answers 401
    result = await sink.send(events(2, start=2))
    await sink.close()
    assert not result.retry and ids(azure) == ["e-0", "e-1", "e-2", "e-3"]
    assert [c.status for c in azure.calls()] == [204, 401, 204]
    assert len(azure.token_requests()) == 2


async def test_401_after_a_refresh_pauses_the_sink() -> None:
    class AlwaysUnauthorized(SentinelStandIn):
        async def handle(self, request: Request) -> Response:
            if request.path.startswith("/dataCollectionRules/"):
                self.expire_tokens()  # e.g. a token for another tenant than the DCR's
            return await super().handle(request)

    async with AlwaysUnauthorized(apps=[AppRegistration(CLIENT, secrets=(SECRET,))], rules=[rule()]) as azure:
        sink = sink_for(azure)
        with pytest.raises(SinkAuthError, match="refused a fresh access token too"):
            await sink.send(events(2))
        await sink.close()
        assert [c.status for c in azure.calls()] == [401, 401], "one refresh, not a loop"
        assert len(azure.token_requests()) == 2 and not azure.rows()


async def test_403_without_the_role_pauses_the_sink_and_drops_nothing(tmp_path: Path) -> None:
    backend = Backend("embedded", embedded_config_for(tmp_path))
    await backend.produce([record_for(backend.prefix, i) for i in range(20)])
    app = AppRegistration(CLIENT, secrets=(SECRET,), publisher_on=frozenset())
    metrics = ForwardMetrics()
    async with SentinelStandIn(apps=[app], rules=[rule()]) as azure:
        sink = sink_for(azure, retry={"initial_seconds": 0.05, "max_seconds": 0.2})
        with pytest.raises(SinkAuthError, match="Monitoring Metrics Publisher"):
            await sink.send(events(1))
        async with backend.forwarding(sink, metrics) as forwarder:
            await until(lambda: forwarder.waiting and len(azure.calls()) >= 3)
            assert metrics.up.labels("sentinel")._value.get() == 0
            assert metrics.retries.labels("sentinel", "auth")._value.get() >= 2
            assert not azure.rows()
            app.publisher_on = None  # the operator assigns the role
            # The rows land before the forwarder reads the 204 and marks the sink up: wait for both.
            await until(lambda: len(azure.rows()) >= 20 and metrics.up.labels("sentinel")._value.get() == 1,
                        timeout=30)
        assert sorted(ids(azure)) == sorted(f"e-{i}" for i in range(20))
        assert metrics.events.labels("sentinel", "dead_lettered")._value.get() == 0


async def test_the_token_is_refreshed_before_it_expires() -> None:
    async with SentinelStandIn(apps=[AppRegistration(CLIENT, secrets=(SECRET,))], rules=[rule()],
                               token_lifetime_seconds=3) as azure:
        sink = sink_for(azure, token_refresh_seconds=1)  # production: 300 s before expiry
        assert not (await sink.send(events(1))).retry
        first = azure.token_requests()[0].at
        await until(lambda: sink.tokens.expires_in < 0.9, timeout=10)  # inside the refresh window
        assert not (await sink.send(events(1, start=1))).retry
        await sink.close()
        assert [c.status for c in azure.calls()] == [204, 204], "never a call with an expired token"
        second = azure.token_requests()[1].at
        assert 2.0 <= second - first < 3.0, "refreshed 1 s before expiry, not at expiry"
        assert len(azure.token_requests()) == 2


async def test_a_token_endpoint_that_is_down_is_retryable_and_a_valid_token_carries_on(
        azure: SentinelStandIn) -> None:
    azure.faults.fail_tokens(503, retry_after=4)
    sink = sink_for(azure)
    with pytest.raises(RetryableSinkError, match="token endpoint answered 503") as caught:
        await sink.send(events(1))
    assert caught.value.retry_after == 4
    assert not (await sink.send(events(1))).retry
    await sink.close()


async def test_a_wrong_secret_pauses_the_sink_and_never_shows_the_secret(azure: SentinelStandIn) -> None:
    wrong = "not-the-secret-4567"
    sink = sink_for(azure, client_secret=wrong)
    with pytest.raises(SinkAuthError, match="AADSTS7000215") as caught:
        await sink.send(events(1))
    await sink.close()
    assert wrong not in str(caught.value) and SECRET not in str(caught.value)
    assert "check sinks[sentinel].tenant_id, client_id" in str(caught.value)


def rsa_certificate(tmp_path: Path, name: str) -> tuple[Path, bytes]:
    """A PEM file with an RSA certificate and its key (what an app registration's certificate
    credential holds), and the certificate alone (what Entra ID knows)."""
    ca = trustme.CA(key_type=trustme.KeyType.RSA)
    issued = ca.issue_cert(f"{name}.example", key_type=trustme.KeyType.RSA)
    path = tmp_path / f"{name}.pem"
    certificate = issued.cert_chain_pems[0].bytes()
    path.write_bytes(issued.private_key_pem.bytes() + certificate)
    return path, certificate


async def test_a_certificate_credential_signs_client_assertions(tmp_path: Path) -> None:
    path, certificate = rsa_certificate(tmp_path, "app")
    other, _ = rsa_certificate(tmp_path, "other")
    app = AppRegistration(CLIENT, certificates=(certificate,))
    async with SentinelStandIn(apps=[app], rules=[rule()]) as azure:
        sink = sink_for(azure, certificate=str(path))
        assert not (await sink.send(events(3))).retry
        await sink.close()
        assert ids(azure) == ["e-0", "e-1", "e-2"] and azure.token_requests()[0].status == 200
        unregistered = sink_for(azure, certificate=str(other))
        with pytest.raises(SinkAuthError, match="AADSTS700027"):
            await unregistered.send(events(1))
        await unregistered.close()
        missing = sink_for(azure, certificate=str(tmp_path / "gone.pem"))
        with pytest.raises(SinkAuthError, match="cannot sign a client assertion"):
            await missing.send(events(1))
        await missing.close()


async def test_a_federated_token_file_is_read_again_at_each_refresh(tmp_path: Path) -> None:
    token_file = tmp_path / "azure-identity-token"
    token_file.write_text("projected-sa-token-1\n")
    app = AppRegistration(CLIENT, federated_tokens=("projected-sa-token-1",))
    async with SentinelStandIn(apps=[app], rules=[rule()]) as azure:
        sink = sink_for(azure, federated_token_file=str(token_file))
        assert not (await sink.send(events(1))).retry
        # The kubelet rotates the projected token; Entra ID accepts only the new one.
        token_file.write_text("projected-sa-token-2\n")
        app.federated_tokens = ("projected-sa-token-2",)
        azure.expire_tokens()
        assert not (await sink.send(events(1, start=1))).retry
        assert ids(azure) == ["e-0", "e-1"] and len(azure.token_requests()) == 2
        # A file the kubelet stopped rotating: Entra ID refuses it, the sink pauses.
        app.federated_tokens = ("projected-sa-token-3",)
        azure.expire_tokens()
        with pytest.raises(SinkAuthError, match="AADSTS700024"):
            await sink.send(events(1, start=2))
        await sink.close()


async def test_healthcheck_reaches_the_token_endpoint_and_the_dcr_without_writing(azure: SentinelStandIn) -> None:
    sink = sink_for(azure)
    detail = await sink.healthcheck()
    await sink.close()
    assert "no row written" in detail and DCR in detail and "client secret" in detail
    assert [c.status for c in azure.calls()] == [204] and not azure.rows()
    sink = sink_for(azure, stream="Custom-Other")
    with pytest.raises(SinkError, match="InvalidStream"):
        await sink.healthcheck()
    await sink.close()
    next(iter(azure.apps.values())).publisher_on = frozenset()
    sink = sink_for(azure)
    with pytest.raises(SinkAuthError, match="Monitoring Metrics Publisher"):
        await sink.healthcheck()
    await sink.close()


async def test_through_the_runtime_refused_rows_reach_the_dlq_with_azures_reason(tmp_path: Path) -> None:
    backend = Backend("embedded", embedded_config_for(tmp_path))
    await backend.produce([record_for(backend.prefix, i) for i in range(10)])
    metrics = ForwardMetrics()
    async with SentinelStandIn(apps=[AppRegistration(CLIENT, secrets=(SECRET,))], rules=[rule()]) as azure:
        azure.faults.refuse_rows(["e-4"], code="InvalidPayload", message="Record cannot be processed.")
        sink = sink_for(azure)
        async with backend.forwarding(sink, metrics):
            await until(lambda: len(azure.rows()) >= 9)
            await until(lambda: metrics.dlq.labels("sentinel", "azure_invalidpayload")._value.get() >= 1)
        assert sorted(ids(azure)) == sorted(f"e-{i}" for i in range(10) if i != 4)
    letters = await backend.dead_letters("sentinel", 1)
    assert [letter["id"] for letter in letters] == ["e-4"]
    assert letters[0]["reason"] == "azure InvalidPayload: Azure answered 400: Record cannot be processed."
    assert letters[0]["record"]["event"]["id"] == "e-4"


def test_settings_refuse_what_azure_would() -> None:
    base = {"name": "s", "endpoint": "https://dce.example", "dcr_immutable_id": DCR, "tenant_id": "t",
            "client_id": "c"}
    cases = [
        ({}, "exactly one of client_secret, certificate, federated_token_file"),
        ({"client_secret": "x", "certificate": "/c.pem"}, "not client_secret, certificate"),
        ({"client_secret": "x", "dcr_immutable_id": "my-dcr"}, "dcr_immutable_id"),
        ({"client_secret": "x", "stream": "SiemgateAlerts"}, "stream"),
        ({"client_secret": "x", "authority_host": "http://login.example"}, "must be https"),
        ({"client_secret": "x", "batch": {"max_bytes": 2_000_000}}, "at most 1048576"),
    ]
    for host, scope in (("https://login.microsoftonline.us", "https://monitor.azure.us/.default"),
                        ("https://login.chinacloudapi.cn", "https://monitor.azure.cn/.default"),
                        ("https://login.microsoftonline.com", "https://monitor.azure.com/.default")):
        cloud = build_settings("sentinel", {**base, "client_secret": "x", "authority_host": host}, {}, "s")
        assert isinstance(cloud, SentinelSinkSettings) and cloud.app().scope == scope
        assert cloud.app().token_url == f"{host}/t/oauth2/v2.0/token"
    partial = build_settings("sentinel", {**base, "client_secret": "x", "batch": {"max_events": 50}}, {}, "s")
    assert isinstance(partial, SentinelSinkSettings) and partial.batch.max_bytes == 1_000_000
    from siemgate.errors import ConfigError

    for extra, complaint in cases:
        with pytest.raises(ConfigError, match=complaint):
            build_settings("sentinel", {**base, **extra}, {}, "sinks[0]")
