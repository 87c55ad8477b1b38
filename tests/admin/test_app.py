"""The admin app in-process: the token on the API and the page, sessions, CSRF and the origin
check, security headers, escaping, and the Confirm button against a local https server."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from siemgate.admin.app import create_admin_app
from siemgate.admin.auth import SESSION_COOKIE, AdminAuth
from siemgate.admin.status import StatusSources, link_id
from siemgate.config import Config
from siemgate.ingest.confirmation_store import ConfirmationStore
from siemgate.secrets import Secret
from tests.admin.support import KEY, TOKEN, make_config, sources
from tests.ingest.confirmation_https import Reply, make_tls, serve

pytestmark = pytest.mark.anyio

ORIGIN = "http://admin.test"
LINK = "https://vendor.example/confirm?token=abc"
CONFIRMED_LINK = "https://vendor.example/confirm?token=old"


def integrations(confirmation: str = "{mode: manual}") -> str:
    return f"""  - name: appsec-prod
    auth: {{header: X-Api-Key, values: ["{KEY}"]}}
    confirmation: {confirmation}
  - name: appsec-staging
    auth: {{header: X-Api-Key, values: ["{KEY}"]}}"""


@dataclass
class Admin:
    client: httpx.AsyncClient
    config: Config
    sources: StatusSources

    @property
    def store(self) -> ConfirmationStore:
        assert self.sources.ingest is not None
        return self.sources.ingest.store

    async def login(self) -> None:
        response = await self.client.post("/login", data={"token": TOKEN}, headers={"Origin": ORIGIN})
        assert response.status_code == 303, response.text
        assert SESSION_COOKIE in self.client.cookies

    async def form(self) -> dict[str, str]:
        """The Confirm form's hidden fields, as the page draws them."""
        page = await self.client.get("/")
        assert page.status_code == 200
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        link = re.search(r'name="link" value="([^"]+)"', page.text)
        assert csrf and link, "no Confirm form on the page"
        return {"csrf": csrf.group(1), "link": link.group(1)}

    async def confirm(self, fields: dict[str, str], headers: dict[str, str] | None = None,
                      name: str = "appsec-prod") -> httpx.Response:
        return await self.client.post(f"/integrations/{name}/confirm", data=fields,
                                      headers={"Origin": ORIGIN} if headers is None else headers)

    async def state(self, name: str = "appsec-prod") -> tuple[str | None, str | None, str | None]:
        store = ConfirmationStore(self.config.state_dir)
        await store.load()
        entry = store.entry(name)
        assert entry is not None
        return entry.state, entry.confirmed_via, entry.last_attempt_at


@pytest.fixture
async def admin(tmp_path: Path) -> AsyncIterator[Admin]:
    async with admin_for(make_config(tmp_path, integrations=integrations())) as running:
        yield running


@contextlib.asynccontextmanager
async def admin_for(config: Config, **kwargs: Any) -> AsyncIterator[Admin]:
    """The admin app of a process with `config`; appsec-staging confirmed earlier."""
    assert config.admin is not None
    parts = sources(config, **kwargs)
    store = ConfirmationStore(config.state_dir)
    await store.record_link("appsec-staging", CONFIRMED_LINK, "2026-11-29T08:00:00Z")
    await store.mark_confirmed("appsec-staging", CONFIRMED_LINK, "cli")
    app = create_admin_app(config.admin, parts)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ORIGIN) as client:
        yield Admin(client, config, parts)


async def pending(admin: Admin, link: str = LINK) -> None:
    await admin.store.record_link("appsec-prod", link, "2026-11-29T10:00:00Z")


def shows_no_data(text: str) -> bool:
    return not any(secret in text for secret in ("appsec-prod", "appsec-staging", LINK, CONFIRMED_LINK, "archive"))


# --- the token ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer wrong-token-0123456789", f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}",
     f"Basic {TOKEN}", TOKEN, "Bearer ÿ-not-ascii"],
    ids=["missing", "empty", "no-value", "wrong", "longer", "shorter", "basic", "no-scheme", "non-ascii"],
)
async def test_api_refuses_a_missing_or_wrong_token(admin: Admin, authorization: str | None) -> None:
    await pending(admin)
    headers = {} if authorization is None else {"Authorization": authorization.encode("latin-1")}
    response = await admin.client.get("/api/status", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert shows_no_data(response.text)


async def test_api_answers_the_token_and_only_the_token(admin: Admin) -> None:
    await pending(admin)
    response = await admin.client.get("/api/status", headers={"Authorization": f"bearer {TOKEN}"})
    assert response.status_code == 200
    status = response.json()
    assert status["process"] == "run"
    by_name = {i["name"]: i for i in status["integrations"]}
    assert by_name["appsec-prod"]["state"] == "pending" and by_name["appsec-prod"]["link"] == LINK
    assert by_name["appsec-staging"]["state"] == "confirmed"
    assert [s["name"] for s in status["sinks"]] == ["archive"]
    # A browser session does not open the API: it takes the Bearer token only.
    await admin.login()
    admin.client.headers.pop("Authorization", None)
    assert (await admin.client.get("/api/status")).status_code == 401


async def test_page_without_a_valid_session_is_the_login_form(admin: Admin) -> None:
    await pending(admin)
    # A session lives in the server that started it (logout ends it): this one logged in.
    await admin.login()
    valid = admin.client.cookies[SESSION_COOKIE]
    sid, expires, mac = valid.split(".")
    minted = AdminAuth(Secret(TOKEN)).new_session()  # signed with the right key, never started here
    expired = AdminAuth(Secret(TOKEN), clock=lambda: 0.0).new_session()  # expired in 1970
    other_token = AdminAuth(Secret("another-token-0123456789")).new_session()
    for cookie in (None, "garbage", f"{sid}x.{expires}.{mac}", f"{sid}.{int(expires) + 999}.{mac}", expired,
                   other_token, f"{sid}.{expires}.", valid.replace(".", ""), minted):
        admin.client.cookies.clear()
        if cookie is not None:
            admin.client.cookies.set(SESSION_COOKIE, cookie)
        response = await admin.client.get("/")
        assert response.status_code == 401, cookie
        assert '<form method="post" action="/login">' in response.text
        assert shows_no_data(response.text), cookie
    admin.client.cookies.set(SESSION_COOKIE, valid)
    assert (await admin.client.get("/")).status_code == 200


async def test_login_with_a_wrong_token_or_from_elsewhere_sets_no_session(admin: Admin) -> None:
    await pending(admin)
    wrong = await admin.client.post("/login", data={"token": "wrong-token-0123456789"}, headers={"Origin": ORIGIN})
    assert wrong.status_code == 401
    assert "That is not the admin token." in wrong.text
    assert "set-cookie" not in wrong.headers and shows_no_data(wrong.text)
    empty = await admin.client.post("/login", data={}, headers={"Origin": ORIGIN})
    assert empty.status_code == 401 and "set-cookie" not in empty.headers
    foreign = await admin.client.post("/login", data={"token": TOKEN}, headers={"Origin": "https://evil.example"})
    assert foreign.status_code == 403 and "set-cookie" not in foreign.headers


async def test_login_sets_a_strict_http_only_session_cookie_without_the_token(admin: Admin) -> None:
    await pending(admin)
    response = await admin.client.post("/login", data={"token": TOKEN}, headers={"Origin": ORIGIN})
    assert response.status_code == 303 and response.headers["location"] == "/"
    cookie = response.headers["set-cookie"]
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert {"httponly", "path", "max-age"} <= attributes
    assert "samesite=strict" in cookie.lower()
    assert "secure" not in attributes  # plain http here; set when served over https
    assert TOKEN not in cookie
    page = await admin.client.get("/")
    assert page.status_code == 200
    assert "appsec-prod" in page.text and LINK in page.text
    assert 'data-state="pending"' in page.text and 'data-state="confirmed"' in page.text


async def test_bearer_opens_the_page_without_its_forms(admin: Admin) -> None:
    await pending(admin)
    page = await admin.client.get("/", headers={"Authorization": f"Bearer {TOKEN}"})
    assert page.status_code == 200
    assert LINK in page.text
    assert "<form" not in page.text


async def test_logout_ends_the_browser_session(admin: Admin) -> None:
    await admin.login()
    page = await admin.client.get("/")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf
    refused = await admin.client.post("/logout", data={}, headers={"Origin": ORIGIN})
    assert refused.status_code == 403
    response = await admin.client.post("/logout", data={"csrf": csrf.group(1)}, headers={"Origin": ORIGIN})
    assert response.status_code == 303
    assert (await admin.client.get("/")).status_code == 401


# --- security headers, escaping -----------------------------------------------------------------


async def test_every_answer_carries_the_security_headers(admin: Admin) -> None:
    await pending(admin)
    login = await admin.client.get("/")
    await admin.login()
    answers = {
        "page": await admin.client.get("/"),
        "login": login,
        "api": await admin.client.get("/api/status", headers={"Authorization": f"Bearer {TOKEN}"}),
        "api-401": await admin.client.get("/api/status"),
        "not-found": await admin.client.get("/metrics"),
        "wrong-method": await admin.client.delete("/"),
    }
    for what, response in answers.items():
        headers = response.headers
        assert headers["x-frame-options"] == "DENY", what
        assert headers["cache-control"] == "no-store", what
        assert headers["x-content-type-options"] == "nosniff", what
        csp = headers["content-security-policy"]
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp, what
        assert "unsafe-inline" not in csp and "script-src" not in csp, what
    for what in ("page", "login"):
        text = answers[what].text
        nonce = re.search(r"style-src 'nonce-([^']+)'", answers[what].headers["content-security-policy"])
        assert nonce and f'<style nonce="{nonce.group(1)}">' in text, what
        assert "<script" not in text.lower() and " style=" not in text.lower(), what
    assert answers["page"].headers["content-security-policy"] != answers["login"].headers["content-security-policy"]


async def test_recorded_values_are_escaped(admin: Admin) -> None:
    hostile = 'https://vendor.example/confirm?a="><script>alert(1)</script>&b=<img src=x>'
    await pending(admin, hostile)
    await admin.store.record_failure("appsec-prod", hostile, "<b>HTTP 500</b>")
    await admin.login()
    page = (await admin.client.get("/")).text
    assert "<script>" not in page and "<img" not in page and "<b>HTTP" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "&lt;b&gt;HTTP 500&lt;/b&gt;" in page
    # A message parameter in the URL shows nothing but a configured integration's state.
    flashed = (await admin.client.get("/", params={"outcome": "failed", "integration": "<script>x</script>"})).text
    assert "<script>x" not in flashed and "&lt;script&gt;x" not in flashed


async def test_a_link_cannot_disguise_its_host_on_the_page(admin: Admin) -> None:
    """A bidi override shows `https://evil.example/\u202egro.elpmaxe.rodnev` as if it ended in
    vendor.example.org; an ESC or a zero-width space hides what follows. The page shows each as
    its escape, as `siemgate confirmations` does."""
    disguised = "https://evil.example/\u202egro.elpmaxe.rodnev/\u200b\x1b[8mhidden"
    await pending(admin, disguised)
    await admin.store.record_failure("appsec-prod", disguised, "refused\u202e by the vendor")
    await admin.login()
    page = (await admin.client.get("/")).text
    assert not any(c in page for c in ("\u202e", "\u200b", "\x1b"))
    assert "https://evil.example/\\u202egro.elpmaxe.rodnev/\\u200b\\x1b[8mhidden" in page
    assert "refused\\u202e by the vendor" in page


# --- the Confirm button: CSRF and origin --------------------------------------------------------


@pytest.mark.parametrize(
    "case",
    ["no-csrf", "wrong-csrf", "other-session-csrf", "foreign-origin", "null-origin", "foreign-referer",
     "no-origin-no-referer", "no-session"],
)
async def test_confirm_refuses_a_request_that_is_not_the_pages_own(admin: Admin, case: str) -> None:
    await pending(admin)
    await admin.login()
    fields = await admin.form()
    headers = {"Origin": ORIGIN}
    if case == "no-csrf":
        del fields["csrf"]
    elif case == "wrong-csrf":
        fields["csrf"] = fields["csrf"][:-2] + ("AA" if not fields["csrf"].endswith("AA") else "BB")
    elif case == "other-session-csrf":
        fields["csrf"] = AdminAuth(Secret(TOKEN)).csrf_token("another-session")
    elif case == "foreign-origin":
        headers = {"Origin": "https://evil.example"}
    elif case == "null-origin":
        headers = {"Origin": "null"}
    elif case == "foreign-referer":
        headers = {"Referer": "https://evil.example/page"}
    elif case == "no-origin-no-referer":
        headers = {}
    elif case == "no-session":
        admin.client.cookies.clear()
    response = await admin.confirm(fields, headers)
    assert response.status_code == (401 if case == "no-session" else 403)
    assert "location" not in response.headers
    assert await admin.state() == ("pending", None, None), "the link must not have been requested"


async def test_confirm_takes_the_referer_when_there_is_no_origin(tmp_path: Path) -> None:
    tls = make_tls(tmp_path)
    async with serve(tls, {"/confirm": Reply()}) as vendor, admin_for(vendor_config(tmp_path, tls.ca_file)) as admin:
        await pending(admin, vendor.url("/confirm?token=abc"))
        await admin.login()
        response = await admin.confirm(await admin.form(), {"Referer": ORIGIN + "/?outcome=x"})
        assert response.status_code == 303
    assert len(vendor.requests) == 1


# --- the Confirm button: the guarded request ----------------------------------------------------


def vendor_config(tmp_path: Path, ca_file: Path, *, private: bool = True) -> Config:
    # No allowed_hosts: the operator's click approves the link, as `siemgate confirm` does.
    confirmation = f"{{mode: manual, allow_private_addresses: {str(private).lower()}, ca_file: {ca_file}}}"
    return make_config(tmp_path, integrations=integrations(confirmation))


async def confirm_through_the_page(admin: Admin) -> tuple[httpx.Response, httpx.Response]:
    await admin.login()
    response = await admin.confirm(await admin.form())
    assert response.status_code == 303
    return response, await admin.client.get(response.headers["location"])


async def test_confirm_requests_the_link_records_it_and_says_so(tmp_path: Path) -> None:
    tls = make_tls(tmp_path)
    async with (
        serve(tls, {"/confirm": Reply(body=b"Integration confirmed")}) as vendor,
        admin_for(vendor_config(tmp_path, tls.ca_file)) as admin,
    ):
        link = vendor.url("/confirm?token=abc")
        await pending(admin, link)
        response, page = await confirm_through_the_page(admin)
        assert response.headers["location"] == "/?outcome=confirmed&integration=appsec-prod"
        state, via, attempted = await admin.state()
        assert (state, via) == ("confirmed", "admin") and attempted is not None
        assert "appsec-prod is confirmed" in page.text
        assert 'data-confirm="appsec-prod"' not in page.text  # no Confirm button any more
        assert page.text.count('data-state="confirmed"') == 2
        metrics = admin.sources.ingest.metrics if admin.sources.ingest else None
        assert metrics is not None
        assert metrics.registry.get_sample_value(
            "siemgate_integration_state", {"integration": "appsec-prod", "state": "confirmed"}) == 1
    assert [seen.path for seen in vendor.requests] == ["/confirm?token=abc"]
    assert vendor.sni_names == ["localhost"]  # the pinned request kept the name for TLS


async def test_a_refused_confirmation_is_recorded_and_shown(tmp_path: Path) -> None:
    tls = make_tls(tmp_path)
    async with (
        serve(tls, {"/confirm": Reply(status=500, body=b"oops")}) as vendor,
        admin_for(vendor_config(tmp_path, tls.ca_file)) as admin,
    ):
        await pending(admin, vendor.url("/confirm?token=abc"))
        response, page = await confirm_through_the_page(admin)
        assert "outcome=failed" in response.headers["location"]
        state, via, attempted = await admin.state()
        assert (state, via) == ("pending", None) and attempted is not None
        assert "Confirming appsec-prod failed: localhost answered HTTP 500" in page.text
        assert 'data-confirm="appsec-prod"' in page.text  # it can be tried again
    assert len(vendor.requests) == 1


async def test_the_private_address_rule_of_siemgate_confirm_still_holds(tmp_path: Path) -> None:
    tls = make_tls(tmp_path)
    async with (
        serve(tls, {"/confirm": Reply()}) as vendor,
        admin_for(vendor_config(tmp_path, tls.ca_file, private=False)) as admin,
    ):
        await pending(admin, vendor.url("/confirm?token=abc"))
        _, page = await confirm_through_the_page(admin)
        assert "a loopback address (allow_private_addresses is off)" in page.text
        assert (await admin.state())[0] == "pending"
    assert vendor.requests == []


async def test_a_newer_link_is_never_requested_unseen(tmp_path: Path) -> None:
    tls = make_tls(tmp_path)
    async with serve(tls, {"/confirm": Reply()}) as vendor, admin_for(vendor_config(tmp_path, tls.ca_file)) as admin:
        await pending(admin, vendor.url("/confirm?token=first"))
        await admin.login()
        seen = await admin.form()
        await pending(admin, vendor.url("/confirm?token=second"))  # arrives while the page is open
        response = await admin.confirm(seen)
        assert "outcome=newer-link" in response.headers["location"]
        assert vendor.requests == []
        fresh = await admin.form()
        assert fresh["link"] == link_id(vendor.url("/confirm?token=second"))
        assert "outcome=confirmed" in (await admin.confirm(fresh)).headers["location"]
    assert [seen.path for seen in vendor.requests] == ["/confirm?token=second"]


async def test_confirm_of_an_unknown_integration_or_without_an_ingest(tmp_path: Path, admin: Admin) -> None:
    await pending(admin)
    await admin.login()
    fields = await admin.form()
    assert (await admin.confirm(fields, name="nope")).status_code == 404
    async with admin_for(make_config(tmp_path / "fwd"), process="forward", ingest=False) as forward:
        await forward.login()
        page = await forward.client.get("/")
        assert page.status_code == 200 and "Integrations" not in page.text and "archive" in page.text
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf
        response = await forward.confirm({"csrf": csrf.group(1), "link": "x"})
        assert response.status_code == 404


async def test_an_unexpected_error_still_carries_the_security_headers(tmp_path: Path) -> None:
    config = make_config(tmp_path, integrations=integrations())
    parts = sources(config)
    assert config.admin is not None and parts.forward is not None

    def broken() -> object:
        raise RuntimeError("a bug")

    parts.forward.metrics.read = broken  # type: ignore[method-assign,assignment]
    app = create_admin_app(config.admin, parts)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as client:
        response = await client.get("/api/status", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 500
    assert "a bug" not in response.text
    assert response.headers["x-frame-options"] == "DENY" and response.headers["cache-control"] == "no-store"
