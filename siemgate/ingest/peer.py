"""Who sent a request: the TCP peer, or the client named by X-Forwarded-For when (and only
when) the peer is a configured trusted proxy; and whether that client may send at all."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _parse(text: str) -> Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _within(address: Address, networks: Sequence[Network]) -> bool:
    return any(address in network for network in networks)


def client_address(peer: str | None, forwarded_for: str | Sequence[str] | None, trusted: Sequence[Network]) -> str:
    """The client's address. X-Forwarded-For is walked from the right, past trusted proxies:
    the first hop not trusted is the client (entries left of it could be forged). Several
    X-Forwarded-For lines are one list, in their order (RFC 9110 5.3): a proxy that appends a
    line of its own (HAProxy's `option forwardfor`) puts the hop it saw last."""
    address = _parse(peer) if peer else None
    if address is None:
        return peer or "unknown"
    if not isinstance(forwarded_for, str):
        forwarded_for = ",".join(forwarded_for or ())
    if not forwarded_for or not trusted or not _within(address, trusted):
        return str(address)
    for hop in reversed(forwarded_for.split(",")):
        hop_address = _parse(hop)
        if hop_address is None:
            break
        address = hop_address
        if not _within(hop_address, trusted):
            break
    return str(address)


def allowed(client: str, cidrs: Sequence[Network]) -> bool:
    """An empty list allows everyone; an unparsable address is allowed by no list."""
    if not cidrs:
        return True
    address = _parse(client)
    return address is not None and _within(address, cidrs)
