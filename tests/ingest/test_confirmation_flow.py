"""Confirmation and test messages through the running ingest, end to end."""

from __future__ import annotations

import asyncio
import io
import logging
from pathlib import Path

import httpx
import orjson
import pytest

from siemgate.ingest.confirmation_cli import confirm, list_confirmations
from siemgate.record import decode
from siemgate_standins.broker import Broker
from tests.ingest.confirmation_https import Reply, make_tls, serve
from tests.support import KEY, consume, event, make_config, running_ingest

pytestmark = pytest.mark.anyio

AUTH = {"X-Api-Key": KEY}


def integration(confirmation: str) -> str:
    return f"""
  - name: appsec
    auth: {{header: X-Api-Key, values: ["{KEY}"]}}
    confirmation: {confirmation}
"""


async def wait_for_metric(client: httpx.AsyncClient, url: str, line: str, timeout: float = 15) -> None:
    async with asyncio.timeout(timeout):
        while line not in (await client.get(url + "/metrics")).text:
            await asyncio.sleep(0.05)


@pytest.mark.parametrize(
    "message",
    [
        {"confirmationLink": "https://vendor.example/confirm?token=abc"},
        [{"type": "confirmation", "url": "https://vendor.example/confirm?token=abc"}],
        {"data": {"confirmUrl": "https://vendor.example/confirm?token=abc"}},
        {"type": "subscription_confirmation",
         "message": "Please confirm by visiting https://vendor.example/confirm?token=abc."},
    ],
    ids=["hinted-field", "typed-array", "nested", "link-in-text"],
)
async def test_manual_confirmation_is_recorded_forwarded_and_listed(
    kafka_broker: Broker, tmp_path: Path, message: object, caplog: pytest.LogCaptureFixture
) -> None:
    config = make_config(tmp_path, kafka_broker, integrations=integration("{mode: manual}"))
    with caplog.at_level(logging.WARNING, logger="siemgate.ingest"):
        async with running_ingest(config) as ingest, httpx.AsyncClient() as client:
            response = await client.post(ingest.webhook(), content=orjson.dumps(message), headers=AUTH)
            assert response.json() == {"accepted": 1}
            metrics = (await client.get(ingest.url + "/metrics")).text
            records = await consume(kafka_broker, ingest.prefix, 1)
    assert 'siemgate_integration_state{integration="appsec",state="pending"} 1.0' in metrics
    assert records[0].topic == f"{ingest.prefix}.control"
    value = decode(records[0].value)
    assert value["kind"] == "confirmation"
    assert dict(records[0].headers)["kind"] == b"confirmation"
    warnings = [r.getMessage() for r in caplog.records if "pending" in r.getMessage()]
    assert len(warnings) == 1
    assert "siemgate confirm -c CONFIG appsec" in warnings[0]
    out = io.StringIO()
    assert list_confirmations(config, out) == 0
    assert "https://vendor.example/confirm?token=abc" in out.getvalue()
    assert "pending" in out.getvalue()


async def test_test_message_goes_to_control_as_kind_test(kafka_broker: Broker, tmp_path: Path) -> None:
    config = make_config(tmp_path, kafka_broker)
    test_message = {"type": "test", "message": "This is a test message from Application Security"}
    async with running_ingest(config) as ingest, httpx.AsyncClient() as client:
        response = await client.post(ingest.webhook(), content=orjson.dumps(test_message), headers=AUTH)
        assert response.json() == {"accepted": 1}
        records = await consume(kafka_broker, ingest.prefix, 1)
    assert records[0].topic == f"{ingest.prefix}.control"
    value = decode(records[0].value)
    assert value["kind"] == "test"
    assert value["event"] == test_message


async def test_security_events_with_links_are_not_control_messages(kafka_broker: Broker, tmp_path: Path) -> None:
    events = [event(0, type="open_redirect", url="https://evil.example/confirm"),
              event(1, description="attacker wrote: please confirm https://evil.example/x")]
    async with running_ingest(make_config(tmp_path, kafka_broker)) as ingest, httpx.AsyncClient() as client:
        await client.post(ingest.webhook(), content=orjson.dumps(events), headers=AUTH)
        records = await consume(kafka_broker, ingest.prefix, 2)
    assert {decode(r.value)["kind"] for r in records} == {"event"}


async def test_auto_mode_confirms_through_the_guarded_fetch(kafka_broker: Broker, tmp_path: Path) -> None:
    tls = make_tls(tmp_path)
    async with serve(tls, {"/confirm": Reply(body=b"Integration confirmed")}) as vendor:
        link = vendor.url("/confirm?token=abc")
        confirmation = (f"{{mode: auto, allowed_hosts: [localhost], allow_private_addresses: true, "
                        f"ca_file: {tls.ca_file}}}")
        config = make_config(tmp_path, kafka_broker, integrations=integration(confirmation))
        async with running_ingest(config) as ingest, httpx.AsyncClient() as client:
            response = await client.post(ingest.webhook(), content=orjson.dumps({"confirmationLink": link}),
                                         headers=AUTH)
            assert response.status_code == 200
            await wait_for_metric(client, ingest.url,
                                  'siemgate_integration_state{integration="appsec",state="confirmed"} 1.0')
        assert [seen.path for seen in vendor.requests] == ["/confirm?token=abc"]
    out = io.StringIO()
    list_confirmations(config, out)
    assert "confirmed" in out.getvalue()


async def test_auto_mode_refuses_a_link_to_a_disallowed_host_and_the_operator_confirms(
    kafka_broker: Broker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tls = make_tls(tmp_path)
    async with serve(tls, {"/confirm": Reply()}) as vendor:
        # Not in allowed_hosts, and loopback without allow_private_addresses: both refuse.
        confirmation = f"{{mode: auto, allowed_hosts: [vendor.example], ca_file: {tls.ca_file}}}"
        config = make_config(tmp_path, kafka_broker, integrations=integration(confirmation))
        with caplog.at_level(logging.ERROR, logger="siemgate.ingest"):
            async with running_ingest(config) as ingest, httpx.AsyncClient() as client:
                link = vendor.url("/confirm?token=abc")
                await client.post(ingest.webhook(), content=orjson.dumps({"confirmationLink": link}), headers=AUTH)
                async with asyncio.timeout(15):
                    while not any("could not confirm" in r.getMessage() for r in caplog.records):
                        await asyncio.sleep(0.05)
                metrics = (await client.get(ingest.url + "/metrics")).text
        assert vendor.requests == []
        assert 'siemgate_integration_state{integration="appsec",state="pending"} 1.0' in metrics
        # The operator may not reach loopback either, unless the config allows private addresses.
        out = io.StringIO()
        assert await confirm(config, "appsec", out) != 0
        assert vendor.requests == []


async def test_operator_confirmation_shows_in_the_running_ingest(kafka_broker: Broker, tmp_path: Path) -> None:
    tls = make_tls(tmp_path)
    async with serve(tls, {"/confirm": Reply()}) as vendor:
        confirmation = f"{{mode: manual, allow_private_addresses: true, ca_file: {tls.ca_file}}}"
        config = make_config(tmp_path, kafka_broker, integrations=integration(confirmation))
        async with running_ingest(config) as ingest, httpx.AsyncClient() as client:
            link = vendor.url("/confirm?token=abc")
            await client.post(ingest.webhook(), content=orjson.dumps({"confirmationLink": link}), headers=AUTH)
            assert vendor.requests == []  # manual: siemgate does not request it by itself
            out = io.StringIO()
            assert await confirm(config, "appsec", out) == 0, out.getvalue()
            metrics = (await client.get(ingest.url + "/metrics")).text
        assert [seen.path for seen in vendor.requests] == ["/confirm?token=abc"]
    assert 'siemgate_integration_state{integration="appsec",state="confirmed"} 1.0' in metrics
    assert 'siemgate_integration_state{integration="appsec",state="pending"} 0.0' in metrics
