"""A URL's parts as the structured formats (ECS `url.*`, OCSF `url`) carry them: one split,
each format naming the parts its own way."""

from __future__ import annotations

from typing import NamedTuple
from urllib.parse import urlsplit


class UrlParts(NamedTuple):
    scheme: str
    hostname: str | None
    port: int | None
    path: str
    query: str
    netloc: str


def split_url(url: str) -> UrlParts | None:
    """The parts of `url`, or None when it does not parse (a bad port, a bad IPv6 literal):
    the formats then carry the URL as a string only."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    return UrlParts(parts.scheme, parts.hostname, port, parts.path, parts.query, parts.netloc)
