from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from siemgate.config import ConfirmationConfig
from siemgate.errors import ConfirmationRefused
from siemgate.ingest import confirmation_fetch
from siemgate.ingest.confirmation_fetch import IPAddress, forbidden_address, host_allowed, request_link
from tests.ingest.confirmation_https import Reply, Tls, make_tls, serve

pytestmark = pytest.mark.anyio


@pytest.fixture
def tls(tmp_path: Path) -> Tls:
    return make_tls(tmp_path)


def local(tls: Tls, **overrides: object) -> ConfirmationConfig:
    """Settings under which the local test server (on loopback) may be requested."""
    settings: dict[str, object] = {
        "mode": "auto",
        "allowed_hosts": ("localhost",),
        "allow_private_addresses": True,
        "ca_file": str(tls.ca_file),
        "timeout_seconds": 5.0,
    }
    settings.update(overrides)
    return ConfirmationConfig(**settings)  # type: ignore[arg-type]


def fake_resolver(table: dict[str, list[str]]) -> object:
    async def resolve(host: str, port: int) -> list[IPAddress]:
        return [ipaddress.ip_address(a) for a in table[host]]

    return resolve


# --- pure rules -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "allowed", "expected"),
    [
        ("vendor.example.com", ["vendor.example.com"], True),
        ("Vendor.Example.COM", ["vendor.example.com"], True),
        ("vendor.example.com.", ["vendor.example.com"], True),
        ("a.example.com", ["*.example.com"], True),
        ("a.b.example.com", ["*.EXAMPLE.com"], True),
        ("example.com", ["*.example.com"], False),
        ("evilexample.com", ["*.example.com"], False),
        ("example.com.evil.net", ["example.com"], False),
        ("other.com", [], False),
        ("::1", ["[::1]"], True),
    ],
)
def test_host_allow_list(host: str, allowed: list[str], expected: bool) -> None:
    assert host_allowed(host, allowed) is expected


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("192.168.0.1", "private"),
        ("172.16.5.4", "private"),
        ("169.254.169.254", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "non-global"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),
        ("ff02::1", "multicast"),
        ("::ffff:127.0.0.1", "loopback (embedded in ::ffff:7f00:1)"),
        ("::ffff:169.254.169.254", "link-local (embedded in ::ffff:a9fe:a9fe)"),
        ("2002:7f00:1::", "loopback (embedded in 2002:7f00:1::)"),
        ("64:ff9b::a00:1", "private (embedded in 64:ff9b::a00:1)"),
    ],
)
def test_non_public_addresses_are_forbidden(address: str, why: str) -> None:
    assert forbidden_address(ipaddress.ip_address(address)) == why


@pytest.mark.parametrize("address", ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111", "::ffff:1.1.1.1"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert forbidden_address(ipaddress.ip_address(address)) is None


# --- refusals before any connection ------------------------------------------------------


async def test_http_link_is_refused(tls: Tls) -> None:
    with pytest.raises(ConfirmationRefused, match="only https"):
        await request_link("http://localhost/confirm", local(tls))


async def test_link_with_credentials_is_refused(tls: Tls) -> None:
    with pytest.raises(ConfirmationRefused, match="credentials"):
        await request_link("https://user:pw@localhost/confirm", local(tls))


async def test_host_not_in_allow_list_is_refused(tls: Tls) -> None:
    with pytest.raises(ConfirmationRefused, match="not in allowed_hosts"):
        await request_link("https://vendor.example.net/confirm", local(tls, allowed_hosts=("*.example.com",)))


async def test_empty_allow_list_allows_nothing_in_auto_mode(tls: Tls) -> None:
    with pytest.raises(ConfirmationRefused, match="no allowed_hosts"):
        await request_link("https://localhost/confirm", local(tls, allowed_hosts=()))


async def test_ip_literal_on_loopback_is_refused_by_default() -> None:
    settings = ConfirmationConfig(mode="auto", allowed_hosts=("127.0.0.1",))
    with pytest.raises(ConfirmationRefused, match=r"127\.0\.0\.1, a loopback address"):
        await request_link("https://127.0.0.1/confirm", settings)


async def test_name_resolving_to_loopback_is_refused_by_default() -> None:
    settings = ConfirmationConfig(mode="auto", allowed_hosts=("localhost",))
    with pytest.raises(ConfirmationRefused, match="loopback address"):
        await request_link("https://localhost/confirm", settings)


async def test_one_private_address_among_public_ones_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # A name answering with a public and a private address must not get a chance to use the latter.
    monkeypatch.setattr(
        confirmation_fetch, "resolve", fake_resolver({"vendor.example.com": ["93.184.216.34", "10.0.0.7"]})
    )
    settings = ConfirmationConfig(mode="auto", allowed_hosts=("vendor.example.com",))
    with pytest.raises(ConfirmationRefused, match=r"10\.0\.0\.7, a private address"):
        await request_link("https://vendor.example.com/confirm", settings)


async def test_operator_approval_lifts_the_allow_list_but_not_the_private_rule(tls: Tls) -> None:
    settings = ConfirmationConfig(allowed_hosts=())
    with pytest.raises(ConfirmationRefused, match="loopback address"):
        await request_link("https://localhost/confirm", settings, operator_approved=True)


# --- against a real local https server ---------------------------------------------------


async def test_auto_request_succeeds_on_an_allowed_host(tls: Tls) -> None:
    async with serve(tls, {"/confirm": Reply(body=b"thanks")}) as server:
        result = await request_link(server.url("/confirm?token=abc"), local(tls))
    assert result.status == 200
    assert result.final_url == server.url("/confirm?token=abc")
    assert result.bytes_read == len(b"thanks")
    assert [r.path for r in server.requests] == ["/confirm?token=abc"]
    assert server.requests[0].headers["host"] == f"localhost:{server.port}"


async def test_operator_approved_request_ignores_the_allow_list(tls: Tls) -> None:
    async with serve(tls, {"/confirm": Reply()}) as server:
        result = await request_link(server.url("/confirm"), local(tls, allowed_hosts=()), operator_approved=True)
    assert result.status == 200


async def test_connection_is_pinned_to_the_checked_address(tls: Tls, monkeypatch: pytest.MonkeyPatch) -> None:
    # confirm.example exists only in this resolver: the request can only have reached the
    # server through the address that was checked, while TLS and Host used the name.
    monkeypatch.setattr(confirmation_fetch, "resolve", fake_resolver({"confirm.example": ["127.0.0.1"]}))
    async with serve(tls, {"/confirm": Reply()}) as server:
        result = await request_link(
            server.url("/confirm", host="confirm.example"), local(tls, allowed_hosts=("confirm.example",))
        )
    assert result.status == 200
    assert server.sni_names == ["confirm.example"]
    assert server.requests[0].headers["host"] == f"confirm.example:{server.port}"


async def test_unreachable_address_falls_back_to_the_next(tls: Tls, monkeypatch: pytest.MonkeyPatch) -> None:
    # The server listens on 127.0.0.1 only, so ::1 (first, as IPv6 usually is) cannot connect.
    monkeypatch.setattr(confirmation_fetch, "resolve", fake_resolver({"confirm.example": ["::1", "127.0.0.1"]}))
    async with serve(tls, {"/confirm": Reply()}) as server:
        result = await request_link(
            server.url("/confirm", host="confirm.example"), local(tls, allowed_hosts=("confirm.example",))
        )
    assert result.status == 200
    assert len(server.requests) == 1


async def test_certificate_is_verified_against_the_hostname(tls: Tls, monkeypatch: pytest.MonkeyPatch) -> None:
    # The server's certificate names localhost and confirm.example, not wrong.example.
    monkeypatch.setattr(confirmation_fetch, "resolve", fake_resolver({"wrong.example": ["127.0.0.1"]}))
    async with serve(tls, {"/confirm": Reply()}) as server:
        with pytest.raises(ConfirmationRefused, match="cannot connect to wrong.example"):
            await request_link(server.url("/confirm", host="wrong.example"), local(tls, allowed_hosts=("*.example",)))
    assert server.requests == []


async def test_untrusted_certificate_is_refused(tls: Tls) -> None:
    # Without the test CA as ca_file, the default trust store does not know the server.
    async with serve(tls, {"/confirm": Reply()}) as server:
        with pytest.raises(ConfirmationRefused, match="certificate"):
            await request_link(server.url("/confirm"), local(tls, ca_file=None))


async def test_same_host_redirects_are_followed(tls: Tls) -> None:
    routes = {"/a": Reply(status=302, headers=(("Location", "/b"),)), "/c": Reply(body=b"ok")}
    async with serve(tls, routes) as server:
        # An absolute redirect, in another case: still the same host.
        routes["/b"] = Reply(status=301, headers=(("Location", f"https://LOCALHOST:{server.port}/c"),))
        result = await request_link(server.url("/a"), local(tls))
    assert result.status == 200
    assert result.final_url == f"https://localhost:{server.port}/c"
    assert [r.path for r in server.requests] == ["/a", "/b", "/c"]


async def test_redirect_to_another_host_is_refused(tls: Tls) -> None:
    routes = {"/c": Reply()}
    async with serve(tls, routes) as server:
        # 127.0.0.1 is the very same server, and allowed: only the change of host is refused.
        routes["/a"] = Reply(status=302, headers=(("Location", f"https://127.0.0.1:{server.port}/c"),))
        settings = local(tls, allowed_hosts=("localhost", "127.0.0.1"))
        with pytest.raises(ConfirmationRefused, match="redirect off the link's host"):
            await request_link(server.url("/a"), settings)
    assert [r.path for r in server.requests] == ["/a"]


async def test_redirect_to_another_port_is_refused(tls: Tls) -> None:
    routes = {"/a": Reply(status=307, headers=(("Location", "https://localhost:1/c"),))}
    async with serve(tls, routes) as server:
        with pytest.raises(ConfirmationRefused, match="redirect off the link's host"):
            await request_link(server.url("/a"), local(tls))


async def test_redirect_to_http_is_refused(tls: Tls) -> None:
    routes: dict[str, Reply] = {}
    async with serve(tls, routes) as server:
        routes["/a"] = Reply(status=302, headers=(("Location", f"http://localhost:{server.port}/c"),))
        with pytest.raises(ConfirmationRefused, match="non-https"):
            await request_link(server.url("/a"), local(tls))
    assert [r.path for r in server.requests] == ["/a"]


async def test_redirect_loop_stops_after_five_hops(tls: Tls) -> None:
    async with serve(tls, {"/loop": Reply(status=302, headers=(("Location", "/loop"),))}) as server:
        with pytest.raises(ConfirmationRefused, match="more than 5 redirects"):
            await request_link(server.url("/loop"), local(tls))
    assert len(server.requests) == 6


async def test_non_2xx_answer_is_refused_with_its_status(tls: Tls) -> None:
    async with serve(tls, {"/gone": Reply(status=410, body=b"expired")}) as server:
        with pytest.raises(ConfirmationRefused, match="HTTP 410"):
            await request_link(server.url("/gone"), local(tls))
        with pytest.raises(ConfirmationRefused, match="HTTP 404"):
            await request_link(server.url("/unknown"), local(tls))


async def test_body_is_read_only_up_to_the_cap(tls: Tls) -> None:
    big = b"y" * 200_000
    async with serve(tls, {"/big": Reply(body=big), "/endless": Reply(endless=True)}) as server:
        result = await request_link(server.url("/big"), local(tls, max_response_bytes=1000))
        assert (result.status, result.bytes_read) == (200, 1000)
        # An endless body only ends because the client stops reading it.
        endless = await request_link(server.url("/endless"), local(tls, max_response_bytes=50_000))
        assert (endless.status, endless.bytes_read) == (200, 50_000)
    assert [r.path for r in server.requests] == ["/big", "/endless"]


async def test_server_that_never_answers_times_out(tls: Tls) -> None:
    async with serve(tls, {"/hang": Reply(hang=True)}) as server:
        with pytest.raises(ConfirmationRefused, match=r"no answer within 0\.3 s"):
            await request_link(server.url("/hang"), local(tls, timeout_seconds=0.3))
    assert [r.path for r in server.requests] == ["/hang"]


async def test_unreadable_ca_file_is_refused(tls: Tls, tmp_path: Path) -> None:
    with pytest.raises(ConfirmationRefused, match="cannot use ca_file"):
        await request_link("https://localhost/confirm", local(tls, ca_file=str(tmp_path / "missing.pem")))
