from __future__ import annotations

import io
from pathlib import Path

import pytest

from siemgate.config import Config, parse_config
from siemgate.ingest.confirmation_cli import confirm, list_confirmations
from siemgate.ingest.confirmation_store import ConfirmationStore
from tests.ingest.confirmation_https import Reply, Tls, make_tls, serve

pytestmark = pytest.mark.anyio

AT = "2026-11-28T21:00:00.000000Z"


@pytest.fixture
def tls(tmp_path: Path) -> Tls:
    return make_tls(tmp_path)


def make_config(tmp_path: Path, tls: Tls, *, allow_private: bool = True) -> Config:
    # allowed_hosts is empty on purpose: an operator's `confirm` does not need it.
    text = f"""
state_dir: {tmp_path / "state"}
integrations:
  - name: appsec-prod
    auth: {{header: X-Api-Key, values: ["a-long-enough-key"]}}
    confirmation:
      mode: manual
      allowed_hosts: []
      allow_private_addresses: {"true" if allow_private else "false"}
      ca_file: {tls.ca_file}
      timeout_seconds: 5
  - name: appsec-dev
    auth: {{header: X-Api-Key, values: ["another-long-key"]}}
"""
    return parse_config(text, {})


async def record(config: Config, integration: str, url: str) -> ConfirmationStore:
    store = ConfirmationStore(config.state_dir)
    await store.record_link(integration, url, AT)
    return store


async def test_list_shows_every_integration(tmp_path: Path, tls: Tls) -> None:
    config = make_config(tmp_path, tls)
    store = await record(config, "appsec-prod", "https://vendor.example/confirm?t=1")
    await store.record_failure("appsec-prod", "https://vendor.example/confirm?t=1", "HTTP 410\nexpired")
    await store.record_link("removed", "https://vendor.example/confirm?t=2", AT)
    await store.mark_confirmed("removed", "https://vendor.example/confirm?t=2", "admin")

    out = io.StringIO()
    assert list_confirmations(config, out) == 0
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["INTEGRATION", "STATE", "LINK", "RECEIVED", "LAST", "ERROR"]
    assert lines[1].split() == [
        "appsec-prod",
        "pending",
        "https://vendor.example/confirm?t=1",
        AT,
        "HTTP",
        "410",
        "expired",
    ]
    assert lines[2].split() == ["appsec-dev", "no", "link", "yet", "-", "-", "-"]
    assert lines[3].split() == [
        "removed",
        "(not",
        "configured)",
        "confirmed",
        "(admin)",
        "https://vendor.example/confirm?t=2",
        AT,
        "-",
    ]
    # Columns line up.
    assert len({line.index(AT) for line in (lines[1], lines[3])}) == 1
    assert all(line == line.rstrip() for line in lines)


async def test_list_with_no_state_file(tmp_path: Path, tls: Tls) -> None:
    out = io.StringIO()
    assert list_confirmations(make_config(tmp_path, tls), out) == 0
    assert "appsec-prod  no link yet" in out.getvalue()


async def test_list_reports_a_corrupt_state_file(tmp_path: Path, tls: Tls) -> None:
    config = make_config(tmp_path, tls)
    Path(config.state_dir).mkdir(parents=True)
    (Path(config.state_dir) / "confirmations.json").write_text("{oops")
    out = io.StringIO()
    assert list_confirmations(config, out) == 1
    assert out.getvalue().startswith("error: ")
    assert len(out.getvalue().splitlines()) == 1


async def test_confirm_requests_the_link_and_records_it(tmp_path: Path, tls: Tls) -> None:
    config = make_config(tmp_path, tls)
    async with serve(tls, {"/confirm": Reply()}) as server:
        url = server.url("/confirm?token=xyz")
        await record(config, "appsec-prod", url)
        out = io.StringIO()
        assert await confirm(config, "appsec-prod", out) == 0
    assert [r.path for r in server.requests] == ["/confirm?token=xyz"]
    assert out.getvalue().startswith(f"confirmed appsec-prod: {url} answered HTTP 200")
    entry = _reloaded(config).entry("appsec-prod")
    assert entry is not None
    assert (entry.state, entry.confirmed_via) == ("confirmed", "cli")

    # Nothing is pending any more.
    again = io.StringIO()
    assert await confirm(config, "appsec-prod", again) == 1
    assert again.getvalue().startswith("error: nothing pending: appsec-prod was confirmed")


async def test_confirm_with_nothing_pending(tmp_path: Path, tls: Tls) -> None:
    out = io.StringIO()
    assert await confirm(make_config(tmp_path, tls), "appsec-prod", out) == 1
    assert out.getvalue() == "error: no confirmation link has been received for appsec-prod\n"


async def test_confirm_unknown_integration(tmp_path: Path, tls: Tls) -> None:
    out = io.StringIO()
    assert await confirm(make_config(tmp_path, tls), "nope", out) == 2
    assert out.getvalue().startswith("error: no integration named 'nope'")


async def test_confirm_refused_keeps_it_pending_with_the_reason(tmp_path: Path, tls: Tls) -> None:
    # Operators may bypass the host allow-list, never the private-address rule.
    config = make_config(tmp_path, tls, allow_private=False)
    async with serve(tls, {"/confirm": Reply()}) as server:
        await record(config, "appsec-prod", server.url("/confirm"))
        out = io.StringIO()
        assert await confirm(config, "appsec-prod", out) == 1
    assert server.requests == []
    assert out.getvalue().startswith("error: confirmation of appsec-prod failed: localhost resolves to 127.0.0.1")
    assert len(out.getvalue().splitlines()) == 1
    pending = _reloaded(config).pending()
    assert pending[0].last_error is not None and "loopback" in pending[0].last_error


async def test_confirm_reports_a_non_2xx_answer(tmp_path: Path, tls: Tls) -> None:
    config = make_config(tmp_path, tls)
    async with serve(tls, {"/expired": Reply(status=410)}) as server:
        await record(config, "appsec-prod", server.url("/expired"))
        out = io.StringIO()
        assert await confirm(config, "appsec-prod", out) == 1
    assert out.getvalue() == "error: confirmation of appsec-prod failed: localhost answered HTTP 410\n"
    assert _reloaded(config).state("appsec-prod") == "pending"


def _reloaded(config: Config) -> ConfirmationStore:
    store = ConfirmationStore(config.state_dir)
    store.load_sync()
    return store
