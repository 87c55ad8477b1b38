"""Hostile confirmation links (issue 17): links that do not parse are refusals with the reason
recorded (auto mode, the admin page's Confirm, `siemgate confirm`), a huge link reaches neither
logs nor state, and a batch of 2,000 confirmation messages costs one request, not 2,000."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import httpx
import orjson
import pytest

from siemgate.config import ConfirmationConfig
from siemgate.errors import ConfirmationRefused
from siemgate.ingest.confirmation import MAX_LINK_CHARS, screen_links
from siemgate.ingest.confirmation_cli import confirm, list_confirmations
from siemgate.ingest.confirmation_fetch import request_link
from siemgate.ingest.confirmation_store import ConfirmationStore
from siemgate_standins.broker import Broker
from tests.admin.test_app import admin_for, confirm_through_the_page, pending, vendor_config
from tests.ingest.confirmation_https import Reply, make_tls, serve
from tests.support import KEY, consume, make_config, metric_value, running_ingest, wait_until

pytestmark = pytest.mark.anyio

AUTH = {"X-Api-Key": KEY}
IDNA_LINK = "https://xn--a-/x"
REFUSED = "siemgate_confirmation_links_refused_total"

# Each of these made a library raise something other than ConfirmationRefused (IDNAError,
# UnicodeError from the resolver's codec), or was refused for the wrong reason (a port out of range
# sent to the resolver).
UNPARSABLE = {
    IDNA_LINK: "host",
    "https://xn--zz.example/confirm": "host",
    "https://a..example/confirm": "DNS name",
    "https://" + "a" * 64 + ".example/confirm": "DNS name",
    "https://" + ".".join(["a" * 60] * 5) + "/confirm": "DNS name",
    "https://vendor.example:99999/confirm": "port 99999",
    "https://vendor.example:0/confirm": "port 0",
    "https://[::1/confirm": "not a valid URL",
    "https://vendor.example/" + "a" * MAX_LINK_CHARS: "characters long",
}


@pytest.mark.parametrize("link", list(UNPARSABLE), ids=range(len(UNPARSABLE)))
@pytest.mark.parametrize("approved", [True, False], ids=["operator", "auto"])
async def test_a_link_that_does_not_parse_is_a_refusal_with_its_reason(link: str, approved: bool) -> None:
    config = ConfirmationConfig(mode="auto", allowed_hosts=("*.example", "xn--a-", "xn--zz.example"))
    with pytest.raises(ConfirmationRefused) as refused:
        await request_link(link, config, operator_approved=approved)
    assert UNPARSABLE[link] in refused.value.reason
    assert len(refused.value.reason) < 400


def test_screen_links_keeps_the_last_link_of_a_usable_length() -> None:
    huge = "https://vendor.example/" + "x" * (3 << 20)
    screen = screen_links(["https://a.example/1", huge, "https://a.example/2", "https://a.example/1"])
    assert screen.link == "https://a.example/1"
    assert screen.too_long == (len(huge),)
    assert screen.superseded == 1
    assert screen_links([huge]) == type(screen)(None, (len(huge),), 0)
    assert screen_links([]).link is None


def integration(confirmation: str) -> str:
    return f"""
  - name: appsec
    auth: {{header: X-Api-Key, values: ["{KEY}"]}}
    confirmation: {confirmation}
"""


async def last_error(config_state_dir: str) -> str | None:
    store = ConfirmationStore(config_state_dir)
    await store.load()
    entry = store.entry("appsec")
    return entry.last_error if entry else None


async def test_auto_mode_records_an_idna_refusal(
    kafka_broker: Broker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = make_config(tmp_path, kafka_broker,
                         integrations=integration("{mode: auto, allowed_hosts: [xn--a-]}"))
    with caplog.at_level(logging.ERROR):
        async with running_ingest(config) as ingest, httpx.AsyncClient() as client:
            response = await client.post(ingest.webhook(), content=orjson.dumps({"confirmationLink": IDNA_LINK}),
                                         headers=AUTH)
            assert response.json() == {"accepted": 1}
            errors: list[str | None] = []

            async def recorded() -> bool:
                errors[:] = [await last_error(config.state_dir)]
                return errors[0] is not None

            await wait_until(recorded, "the refusal recorded in the state", timeout=15)
    assert "not a valid name" in str(errors[0]) and "hyphen" in str(errors[0])
    messages = [r.getMessage() for r in caplog.records]
    assert any("could not confirm integration appsec automatically" in m for m in messages)
    assert not any("never retrieved" in m or "Traceback" in m for m in messages)
    out = io.StringIO()
    assert list_confirmations(config, out) == 0
    assert "not a valid name" in out.getvalue()


async def test_siemgate_confirm_says_why_instead_of_a_traceback(tmp_path: Path) -> None:
    config = make_config(tmp_path, None, integrations=integration("{mode: manual}"))
    await ConfirmationStore(config.state_dir).record_link("appsec", IDNA_LINK, "2026-12-07T15:00:00Z")
    out = io.StringIO()
    assert await confirm(config, "appsec", out) == 1
    assert out.getvalue().startswith("error: confirmation of appsec failed: the link's host is not a valid name")
    assert "not a valid name" in str(await last_error(config.state_dir))


async def test_the_admin_confirm_button_answers_a_refusal_not_a_500(tmp_path: Path) -> None:
    tls = make_tls(tmp_path)
    async with admin_for(vendor_config(tmp_path, tls.ca_file)) as admin:
        await pending(admin, IDNA_LINK)
        response, page = await confirm_through_the_page(admin)
        assert "outcome=failed" in response.headers["location"]
        assert "Confirming appsec-prod failed: the link&#x27;s host is not a valid name" in page.text
        store = ConfirmationStore(admin.config.state_dir)
        await store.load()
        entry = store.entry("appsec-prod")
        assert entry is not None and entry.state == "pending"
        assert "not a valid name" in str(entry.last_error)


async def test_a_3_mib_link_reaches_neither_logs_nor_state(
    kafka_broker: Broker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    huge = "https://vendor.example/confirm?token=" + "a" * (3 << 20)
    config = make_config(tmp_path, kafka_broker, integrations=integration("{mode: manual}"))
    with caplog.at_level(logging.DEBUG):
        async with running_ingest(config) as ingest, httpx.AsyncClient() as client:
            response = await client.post(ingest.webhook(), content=orjson.dumps({"confirmationLink": huge}),
                                         headers=AUTH, timeout=30)
            assert response.json() == {"accepted": 1}
            records = await consume(kafka_broker, ingest.prefix, 1)
            metrics = (await client.get(ingest.url + "/metrics")).text
    # The message itself is kept (the vendor's bytes, on the control topic) ...
    assert len(records[0].value) > 3 << 20
    # ... but the link is neither recorded nor logged.
    assert metric_value(metrics, REFUSED + '{integration="appsec",reason="too_long"}') == 1
    assert ConfirmationStore(config.state_dir).path.exists() is False
    # (No record holds a piece of the link. siemgate's own records stay short; a library's may
    # not: aiokafka's DEBUG metadata line lists every topic earlier tests left on the broker.)
    piece = "a" * 1_000
    assert [r.name for r in caplog.records if piece in r.getMessage() or piece in str(r.__dict__)] == []
    assert max(len(r.getMessage()) + len(str(r.__dict__)) for r in caplog.records if r.name.startswith("siemgate")) \
        < 10_000
    assert any("longer than 8,192 characters" in r.getMessage() for r in caplog.records)


async def test_2000_confirmation_messages_in_one_batch_make_one_request(kafka_broker: Broker, tmp_path: Path) -> None:
    tls = make_tls(tmp_path)
    async with serve(tls, {"/confirm": Reply(body=b"ok")}) as vendor:
        confirmation = (f"{{mode: auto, allowed_hosts: [localhost], allow_private_addresses: true, "
                        f"ca_file: {tls.ca_file}}}")
        config = make_config(tmp_path, kafka_broker, integrations=integration(confirmation))
        batch = [{"type": "confirmation", "url": vendor.url(f"/confirm?token={i}")} for i in range(2000)]
        async with running_ingest(config) as ingest, httpx.AsyncClient() as client:
            response = await client.post(ingest.webhook(), content=orjson.dumps(batch), headers=AUTH, timeout=60)
            assert response.json() == {"accepted": 2000}

            async def confirmed() -> bool:
                text = (await client.get(ingest.url + "/metrics")).text
                return 'siemgate_integration_state{integration="appsec",state="confirmed"} 1.0' in text

            await wait_until(confirmed, "the last link requested", timeout=15)
            metrics = (await client.get(ingest.url + "/metrics")).text
            # Every message is on the control topic.
            assert len(await consume(kafka_broker, ingest.prefix, 2000)) == 2000
        assert [seen.path for seen in vendor.requests] == ["/confirm?token=1999"]
    assert metric_value(metrics, REFUSED + '{integration="appsec",reason="superseded"}') == 1999

