"""Request a confirmation link without letting the link aim siemgate at anything else (SSRF).

The link arrives in a webhook body, so whoever can post to the webhook chooses it. Before and
during the request, every one of these holds or the request is refused:

- the link is https, without credentials in it, at most `MAX_LINK_CHARS` long, with a host
  that is a valid DNS name (IDNA 2008: `https://xn--a-/x` is not) or IP literal and a port in
  1-65535: a link that does not parse is a refusal with the parser's reason, never an
  exception of another kind;
- its host is in `allowed_hosts` (exact, or `*.example.com` for any subdomain of
  example.com), unless an operator approved this very link (`siemgate confirm`);
- every address the host resolves to is public: not private, loopback, link-local,
  multicast, reserved, unspecified or otherwise non-global, IPv4-mapped, 6to4 and NAT64
  forms included, unless `allow_private_addresses`. This rule holds for operators too;
- the connection goes to an address that was checked: the hostname is resolved once per
  hop and the request is sent to that IP, with the hostname kept for TLS (SNI and
  certificate verification) and the Host header, so a second DNS answer (rebinding) cannot
  redirect it;
- redirects are followed by hand, at most 5, only to https on the same host and port, each
  hop checked again;
- the whole exchange, DNS included, ends within `timeout_seconds`;
- at most `max_response_bytes` of the body are read (more is not an error: the body is
  not needed, the request is what confirms).

Environment proxies are ignored on purpose: a proxy would resolve the name itself.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

import httpx

from siemgate import __version__
from siemgate.config import ConfirmationConfig
from siemgate.errors import ConfirmationRefused
from siemgate.ingest.confirmation import MAX_LINK_CHARS

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_REDIRECTS: Final = 5
_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
_NAT64: Final = ipaddress.IPv6Network("64:ff9b::/96")
_USER_AGENT: Final = f"siemgate/{__version__} (webhook confirmation)"


@dataclass(frozen=True, slots=True)
class FetchResult:
    """A successful (2xx) request of a confirmation link."""

    status: int
    final_url: str
    bytes_read: int


async def request_link(url: str, config: ConfirmationConfig, *, operator_approved: bool = False) -> FetchResult:
    """GET `url` under the rules of this module. Raises `ConfirmationRefused` unless the
    final answer is 2xx. `operator_approved` lifts the host allow-list only."""
    try:
        async with asyncio.timeout(config.timeout_seconds):
            return await _request(url, config, operator_approved)
    except (TimeoutError, httpx.TimeoutException):
        raise ConfirmationRefused(f"no answer within {config.timeout_seconds:g} s") from None
    except (ValueError, httpx.HTTPError) as exc:
        # What a hostile link can still make a library raise (UnicodeError and IDNAError are
        # ValueErrors): a refusal with the reason, never an unhandled exception.
        raise ConfirmationRefused(f"not a usable link: {type(exc).__name__}: {exc}") from None


def host_allowed(host: str, allowed_hosts: Iterable[str]) -> bool:
    """`host` matches an entry exactly, or `*.example.com` matches any name below example.com
    (not example.com itself). Case-insensitive; a trailing dot is ignored."""
    name = _bare(host)
    for pattern in allowed_hosts:
        wanted = _bare(pattern)
        if wanted.startswith("*."):
            if name.endswith(wanted[1:]) and len(name) > len(wanted) - 1:
                return True
        elif wanted and name == wanted:
            return True
    return False


def forbidden_address(address: IPAddress) -> str | None:
    """Why a confirmation request may not go to `address` (e.g. "loopback"), or None if it may."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            why = forbidden_address(embedded)
            if why is not None:
                return f"{why} (embedded in {address})"
            if address.ipv4_mapped is not None:
                # ::ffff:a.b.c.d is a.b.c.d on the wire, and that was found public.
                return None
    checks = (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
        # Shared address space (100.64/10), documentation ranges and the like.
        ("non-global", not address.is_global),
    )
    for why, applies in checks:
        if applies:
            return why
    return None


async def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to, in the resolver's order, without duplicates."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise ConfirmationRefused(f"cannot resolve {host}: {exc.strerror}") from None
    except UnicodeError as exc:
        raise ConfirmationRefused(f"cannot resolve {host}: not a valid DNS name ({exc})") from None
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]))
        if address not in addresses:
            addresses.append(address)
    return addresses


async def _request(url: str, config: ConfirmationConfig, operator_approved: bool) -> FetchResult:
    target = _parse(url)
    if not operator_approved:
        if not config.allowed_hosts:
            raise ConfirmationRefused(
                "no allowed_hosts are configured for confirmation links; request it with `siemgate confirm`"
            )
        # The allow-list may spell an internationalised name either way.
        if not any(host_allowed(name, config.allowed_hosts) for name in (target.host, _ascii_host(target))):
            raise ConfirmationRefused(f"host {target.host} is not in allowed_hosts")
    # Reading the CA file is disk I/O: keep it off the event loop.
    verify = await asyncio.to_thread(_ssl_context, config)
    async with httpx.AsyncClient(
        verify=verify, follow_redirects=False, trust_env=False, timeout=config.timeout_seconds
    ) as client:
        for hop in range(MAX_REDIRECTS + 1):
            status, location, bytes_read = await _fetch_pinned(client, target, config)
            if 200 <= status < 300:
                return FetchResult(status=status, final_url=str(target), bytes_read=bytes_read)
            if status not in _REDIRECTS:
                raise ConfirmationRefused(f"{_ascii_host(target)} answered HTTP {status}")
            if hop == MAX_REDIRECTS:
                raise ConfirmationRefused(f"more than {MAX_REDIRECTS} redirects")
            if not location:
                raise ConfirmationRefused(f"{_ascii_host(target)} answered HTTP {status} without a Location")
            target = _redirect_target(target, location)
    raise AssertionError("unreachable")  # pragma: no cover


def _parse(url: str) -> httpx.URL:
    if len(url) > MAX_LINK_CHARS:
        raise ConfirmationRefused(f"the link is {len(url):,} characters long, more than {MAX_LINK_CHARS:,}")
    try:
        target = httpx.URL(url)
    except (httpx.InvalidURL, ValueError) as exc:
        raise ConfirmationRefused(f"not a valid URL: {exc}") from None
    if target.scheme != "https":
        raise ConfirmationRefused(f"only https links are requested, not {target.scheme or 'a relative'} ones")
    try:
        host = target.host  # decodes an IDNA (xn--) name: may raise
    except (UnicodeError, ValueError) as exc:
        raise ConfirmationRefused(f"the link's host is not a valid name: {exc}") from None
    if not host:
        raise ConfirmationRefused("the link has no host")
    if target.userinfo:
        raise ConfirmationRefused("the link carries credentials")
    _check_host_and_port(target)
    return target


def _check_host_and_port(target: httpx.URL) -> None:
    """Refuse what the resolver or the TLS layer would otherwise fail on with another exception."""
    if target.port is not None and not 0 < target.port < 65536:
        raise ConfirmationRefused(f"the link's port {target.port} is not in 1-65535")
    try:
        host = _ascii_host(target)
    except (UnicodeError, ValueError) as exc:
        raise ConfirmationRefused(f"the link's host is not a valid name: {exc}") from None
    if _literal(_bare(host)) is not None:
        return
    name = host.rstrip(".")
    labels = name.split(".")
    if len(name) > 253 or any(not 0 < len(label) <= 63 for label in labels):
        raise ConfirmationRefused(f"the link's host is not a valid DNS name ({len(name)} characters, "
                                  "labels of 1-63 required, at most 253 in all)")
    try:
        # What the resolver does with the name (IDNA 2003 in the codec): fail here, as a refusal.
        name.encode("idna")
    except UnicodeError as exc:
        raise ConfirmationRefused(f"the link's host is not a valid DNS name: {exc}") from None


def _redirect_target(current: httpx.URL, location: str) -> httpx.URL:
    if len(location) > MAX_LINK_CHARS:
        raise ConfirmationRefused(f"redirect to a URL of {len(location):,} characters, more than {MAX_LINK_CHARS:,}")
    try:
        target = current.join(location)
    except (httpx.InvalidURL, ValueError) as exc:
        raise ConfirmationRefused(f"redirect to an invalid URL: {exc}") from None
    if target.scheme != "https":
        raise ConfirmationRefused(f"redirect to a non-https URL ({target.scheme})")
    if target.userinfo:
        raise ConfirmationRefused("redirect to a URL carrying credentials")
    try:
        _check_host_and_port(target)
    except ConfirmationRefused as exc:
        raise ConfirmationRefused(f"redirect to an unusable URL: {exc.reason}") from None
    if _ascii_host(target) != _ascii_host(current) or _port(target) != _port(current):
        raise ConfirmationRefused(
            f"redirect off the link's host, from {_ascii_host(current)}:{_port(current)} "
            f"to {_ascii_host(target)}:{_port(target)}"
        )
    return target


async def _fetch_pinned(
    client: httpx.AsyncClient, target: httpx.URL, config: ConfirmationConfig
) -> tuple[int, str | None, int]:
    """One GET of `target`, connected to an address that passed the checks."""
    host = _ascii_host(target)
    literal = _literal(host)
    addresses = [literal] if literal is not None else await resolve(host, _port(target))
    if not addresses:
        raise ConfirmationRefused(f"{host} resolves to no address")
    if not config.allow_private_addresses:
        for address in addresses:
            why = forbidden_address(address)
            if why is not None:
                raise ConfirmationRefused(
                    f"{host} resolves to {address}, a {why} address (allow_private_addresses is off)"
                )
    headers = {"Host": _host_header(target), "User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
    # TLS must name the host (SNI, certificate check) even though the URL names the IP.
    extensions = {"sni_hostname": host} if literal is None else {}
    failure: Exception | None = None
    for address in addresses:
        pinned = target.copy_with(host=str(address))
        try:
            async with client.stream("GET", pinned, headers=headers, extensions=extensions) as response:
                bytes_read = await _read_capped(response, config.max_response_bytes)
                return response.status_code, response.headers.get("location"), bytes_read
        except httpx.ConnectError as exc:
            # The next address (IPv4 after an unreachable IPv6 one, say) may work.
            failure = exc
        except httpx.TimeoutException:
            raise
        except httpx.HTTPError as exc:
            raise ConfirmationRefused(f"request to {host} failed: {exc or type(exc).__name__}") from None
    raise ConfirmationRefused(f"cannot connect to {host}: {failure or 'no address'}")


async def _read_capped(response: httpx.Response, cap: int) -> int:
    # Raw bytes, and identity encoding was asked for: a compressed body cannot inflate past the cap.
    total = 0
    async for chunk in response.aiter_raw():
        total += len(chunk)
        if total >= cap:
            return cap
    return total


def _ssl_context(config: ConfirmationConfig) -> ssl.SSLContext | bool:
    if config.ca_file is None:
        return True
    try:
        return ssl.create_default_context(cafile=config.ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfirmationRefused(f"cannot use ca_file {config.ca_file}: {exc}") from None


def _ascii_host(url: httpx.URL) -> str:
    # IDNA (punycode) form: what DNS, SNI and the Host header use.
    return url.raw_host.decode("ascii").lower()


def _port(url: httpx.URL) -> int:
    return url.port or 443


def _host_header(url: httpx.URL) -> str:
    host = _ascii_host(url)
    if ":" in host:
        host = f"[{host}]"
    return host if url.port in (None, 443) else f"{host}:{url.port}"


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _bare(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()
