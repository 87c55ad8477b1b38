"""What the HTTP sinks (Splunk HEC, Elasticsearch) share: the client, gzip, request sizing,
and how transport failures read.

One `httpx.AsyncClient` per sink, kept alive across batches, with the sink's TLS settings.
Connection refused or reset, timeouts and protocol errors are `RetryableSinkError`s; an
untrusted server certificate or a refused client certificate is a `SinkAuthError`.
"""

from __future__ import annotations

import asyncio
import socket
import zlib
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Final
from urllib.parse import urlsplit

import httpx

from siemgate.errors import ConfigError, RetryableSinkError, SinkAuthError, SinkError
from siemgate.forwarders.sinks.base import BatchSettings, TlsSettings
from siemgate.forwarders.sinks.tls import client_context, tls_failure

# The URL schemes an HTTP sink takes, and their ports when the URL gives none.
DEFAULT_PORTS: Final[dict[str, int]] = {"http": 80, "https": 443}
# Bodies larger than this are compressed in a worker thread.
_THREAD_GZIP_BYTES = 64 * 1024
# Paths whose parsed URL an endpoint keeps (a sink posts to one or two; es-setup to a few more).
_URLS_KEPT = 32


def _deflater() -> ModuleType:
    """ISA-L's zlib-compatible module when installed (a dependency of siemgate), else zlib."""
    try:
        from isal import isal_zlib
    except ImportError:  # pragma: no cover - isal is a dependency; a platform without its wheel
        return zlib
    return isal_zlib


_deflate: Final = _deflater()


@dataclass(frozen=True, kw_only=True)
class HttpBatchSettings(BatchSettings):
    """`batch:` of an HTTP sink: a batch of `max_events` is sent in as many requests as
    needed to keep each request body (before gzip) under `max_bytes`; 3 batches in flight."""

    max_bytes: int = 5 * 1024 * 1024
    # One more batch in flight than the other sinks: an HTTP answer is a round trip (measured:
    # Elasticsearch 28k -> 31k events/s, HEC with acks 23k -> 28k, with 3 instead of 2).
    in_flight: int = 3

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_bytes < 1024:
            raise ConfigError("max_bytes", "must be at least 1024")


def check_url(url: str) -> str:
    """The base URL without a trailing slash; raises ConfigError when it is not http(s)://host[:port][/path]."""
    parts = urlsplit(url.strip())
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        raise ConfigError("url", f"must be http(s)://host[:port], not {url!r}")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigError("url", "must not carry a query, a fragment or credentials (use the token/api_key keys)")
    try:
        parts.port  # noqa: B018 - validates the port
    except ValueError:
        raise ConfigError("url", f"has an invalid port: {url!r}") from None
    return url.strip().rstrip("/")


def gzip_bytes(data: bytes) -> bytes:
    """gzip at level 1: SIEM payloads compress ~10x even so, and the CPU is the forwarder's.
    By ISA-L (`isal`) where installed: the same ratio at level 1 as zlib's level 1 on the
    sinks' bodies (~12x), for a fifth of the CPU (measured: 6.6-9.9 -> 1.3-2.0 µs an event
    on this project's 2-core AMD EPYC machine; bench/forward_cpu.py). Without it, zlib."""
    compressor = _deflate.compressobj(1, _deflate.DEFLATED, 31)
    compressed: bytes = compressor.compress(data) + compressor.flush()
    return compressed


def chunks_by_size(sizes: Sequence[int], max_bytes: int) -> Iterator[range]:
    """Consecutive index ranges whose sizes add up to at most `max_bytes` (an item larger
    than that on its own is a range of one)."""
    start, total = 0, 0
    for index, size in enumerate(sizes):
        if index > start and total + size > max_bytes:
            yield range(start, index)
            start, total = index, 0
        total += size
    if start < len(sizes):
        yield range(start, len(sizes))


async def send_in_requests(payloads: Sequence[bytes], max_bytes: int,
                           post: Callable[[list[int]], Awaitable[None]]) -> SinkError | None:
    """`post` the payloads' indexes in requests of at most `max_bytes`, in order, until one
    fails: that failure (a SinkBusy is a RetryableSinkError), or None. What the posts before it
    settled stays settled; the caller retries the rest."""
    try:
        for chunk in chunks_by_size([len(p) for p in payloads], max_bytes):
            await post(list(chunk))
    except (RetryableSinkError, SinkAuthError) as exc:
        return exc
    return None


class HttpEndpoint:
    """A base URL with its client, default headers and compression."""

    def __init__(self, *, name: str, url: str, tls: TlsSettings, timeout_seconds: float, headers: Mapping[str, str],
                 gzip: bool) -> None:
        self.name = name
        self.url = url
        self._tls = tls
        self._timeout = timeout_seconds
        self._headers = dict(headers)
        self.gzip = gzip
        self._client: httpx.AsyncClient | None = None
        # Each path's URL, parsed once (httpx parses a str URL on every request: 46 µs here).
        self._urls: dict[str, httpx.URL] = {}

    def _open(self) -> httpx.AsyncClient:
        if self._client is None:
            verify = client_context(self._tls, self.url) if self.url.startswith("https") else True
            # TCP_NODELAY: a request goes out as headers then body; with Nagle's algorithm the
            # body waits for the peer's (delayed) ACK of the headers, up to 40 ms a request.
            transport = httpx.AsyncHTTPTransport(
                verify=verify, limits=httpx.Limits(max_connections=8, max_keepalive_connections=8),
                socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
            )
            self._client = httpx.AsyncClient(transport=transport, timeout=self._timeout, headers=self._headers)
        return self._client

    async def request(self, method: str, path: str, body: bytes | None = None, *,
                      params: Mapping[str, str] | None = None, headers: Mapping[str, str] | None = None,
                      compress: bool = True) -> httpx.Response:
        """Send one request (gzip'd when the endpoint says so and `compress`). Transport
        failures raise RetryableSinkError or SinkAuthError; HTTP statuses are the caller's."""
        client = self._open()
        url = self._urls.get(path)
        if url is None:
            url = httpx.URL(self.url + path)
            if len(self._urls) < _URLS_KEPT:
                self._urls[path] = url
        send_headers = dict(headers or {})
        if body is not None and self.gzip and compress:
            # zlib and ISA-L let go of the GIL: a large body compresses on another core, off the loop.
            body = await asyncio.to_thread(gzip_bytes, body) if len(body) > _THREAD_GZIP_BYTES else gzip_bytes(body)
            send_headers["Content-Encoding"] = "gzip"
        try:
            return await client.request(method, url, content=body, params=params, headers=send_headers)
        except httpx.TransportError as exc:
            raise self._failure(exc) from exc

    def _failure(self, exc: httpx.TransportError) -> RetryableSinkError | SinkAuthError:
        cause: BaseException | None = exc
        while cause is not None:
            refused = tls_failure(self.url, urlsplit(self.url).hostname or "", cause)
            if refused is not None:
                return refused
            cause = cause.__cause__ or cause.__context__
        if isinstance(exc, httpx.TimeoutException):
            return RetryableSinkError(f"{self.url}: no answer within {self._timeout} s ({type(exc).__name__})")
        return RetryableSinkError(f"{self.url}: {type(exc).__name__}: {exc or 'connection failed'}")

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


def short_body(response: httpx.Response, limit: int = 300) -> str:
    """The start of an answer's body, for error messages."""
    text = response.text.strip().replace("\n", " ")
    return text if len(text) <= limit else text[:limit] + "..."
