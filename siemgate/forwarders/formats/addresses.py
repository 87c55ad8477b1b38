"""IP addresses in vendor events, read once the same way for every format.

A vendor's source address may be an IPv4 or IPv6 address, an IPv6 address with a zone
(`fe80::1%eth0`: meaningful on its own host only), a host name, `ip:port`, or garbage. Each
format has an IP field that takes only an address (ECS `source.ip`, CIM `src_ip`, CEF `src` /
`c6a2`, LEEF `src`, OCSF `src_endpoint.ip`) and keeps anything else as text elsewhere.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import NamedTuple

# Longer than any IP address text with a zone: not parsed (nor cached).
_MAX_CHARS = 100


class IpText(NamedTuple):
    address: str  # as the vendor wrote it, without the zone and surrounding white space
    version: int  # 4 or 6
    zone: str | None  # the IPv6 zone (`eth0`), when there was one


@lru_cache(maxsize=4096)
def _parse(value: str) -> IpText | None:
    address, percent, zone = value.strip().partition("%")
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return None
    if percent and (parsed.version != 6 or not zone):
        return None
    return IpText(address, parsed.version, zone if percent else None)


def ip_text(value: str | None) -> IpText | None:
    """`value` as an IP address (the zone apart), or None when it is no IP address (a host
    name, `ip:port`, an IPv4 address with a zone, text over 100 characters)."""
    if not value or len(value) > _MAX_CHARS:
        return None
    return _parse(value)
