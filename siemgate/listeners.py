"""Every HTTP listener siemgate serves (the webhook port, the status page, the ingest's /metrics):
the socket, the side servers, and the bounded HTTP/1.1 protocol they all speak.

`BoundedHttpProtocol` is uvicorn's httptools protocol with what uvicorn leaves unbounded, all
enforced per connection before any request reaches the app (so before authentication):

- a connection cap: a connection over `max_connections` is answered 503 and closed as soon as
  it is accepted, before a byte of it is read;
- the request head: at most `max_head_bytes` and `max_headers` (httptools keeps every header
  byte until the head ends: one 200 MB header line would be held whole), refused with
  `head_too_large_status` as soon as the bytes received go past the bound; and complete within
  `head_timeout` of its first byte (of the connection's accept for its first request), else 408
  (a silent new connection is just closed);
- the request body: complete within `body_timeout` of the head, counting only the time the
  server is waiting for the client (not while the app has stopped reading: uvicorn's flow
  control, or a request waiting for its turn), else 408 (or the connection closed, when the
  answer has begun). The body of a request answered early (401, 413) is read and dropped,
  under the same timeout;
- between requests, `idle_timeout` (uvicorn's keep-alive timeout).

Each closed connection is counted by reason in the listener's `ListenerStats`, exported by
`ListenerCollector` as `siemgate_listener_refusals_total{listener,reason}` beside
`siemgate_listener_connections{listener}` (open now).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

import httptools
import uvicorn
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT, FlowControl
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from siemgate.errors import SiemgateError

log = logging.getLogger("siemgate.listeners")

# Far above any real request head (the sender's are < 1 KiB, a browser's with its cookies a few).
MAX_HEAD_BYTES: Final = 64 * 1024
MAX_HEADERS: Final = 256

_OVER_CAP_TEXT: Final = b"Too many connections: try again later."
_OVER_CAP: Final = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
                    b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_OVER_CAP_TEXT), _OVER_CAP_TEXT))

REASONS: Final = ("max_connections", "head_timeout", "body_timeout", "head_too_large")


class SideServer(uvicorn.Server):
    """uvicorn without its signal handlers: the process's main server owns SIGTERM/SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind_listener(host: str, port: int, *, key: str, error: type[SiemgateError], backlog: int = 128) -> socket.socket:
    """A listening, non-blocking socket on host:port. `key` is the config block that names them
    (`admin`, `metrics`): a failure raises `error` saying which keys to change."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise error(f"{key}.host {host}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise error(f"cannot listen on {key}.host {host} {key}.port {port}: {exc.strerror or exc}") from None
    return sock


# -- the bounds and their counts


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """What one listener allows a connection (see the module's docstring)."""

    head_timeout: float = 10.0
    body_timeout: float = 30.0
    idle_timeout: float = 5.0
    max_connections: int = 256
    max_head_bytes: int = MAX_HEAD_BYTES
    max_headers: int = MAX_HEADERS
    # The webhook answers 400 (docs/SPEC.md lists its codes); elsewhere 431 (RFC 6585).
    head_too_large_status: int = 431


@dataclass(slots=True)
class ListenerStats:
    """One listener's connections: open now, and closed by siemgate by reason (`REASONS`)."""

    name: str
    open: int = 0
    refused: Counter[str] = field(default_factory=Counter)


class ListenerCollector(Collector):
    """`siemgate_listener_connections` and `siemgate_listener_refusals_total` of some listeners."""

    def __init__(self, stats: Iterable[ListenerStats] = ()) -> None:
        self._stats = list(stats)

    def add(self, stats: ListenerStats) -> None:
        """Count another listener too (one collector per registry: the names are its own)."""
        self._stats.append(stats)

    def collect(self) -> Iterator[Metric]:
        connections = GaugeMetricFamily("siemgate_listener_connections", "Connections open now, by listener.",
                                        labels=["listener"])
        refusals = CounterMetricFamily(
            "siemgate_listener_refusals",
            "Connections siemgate closed before an answer from the app, by listener and reason: max_connections "
            "(over the cap, closed at accept), head_timeout, body_timeout, head_too_large.",
            labels=["listener", "reason"])
        for stats in self._stats:
            connections.add_metric([stats.name], stats.open)
            for reason in REASONS:
                refusals.add_metric([stats.name, reason], stats.refused[reason])
        yield connections
        yield refusals


# -- the protocol


class _Refused(SiemgateError):
    """Raised in a parser callback: the request is answered `status` and the connection closed."""

    def __init__(self, status: int, reason: str, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.reason = reason


class _TimedFlow(FlowControl):
    """uvicorn's flow control, telling the protocol when reading stops and starts again: the
    body timeout counts only the time the server reads."""

    def __init__(self, transport: asyncio.Transport, protocol: BoundedHttpProtocol) -> None:
        super().__init__(transport)
        self._protocol = protocol

    def pause_reading(self) -> None:
        if not self.read_paused:
            self._protocol._body_clock_stop()
        super().pause_reading()

    def resume_reading(self) -> None:
        if self.read_paused:
            super().resume_reading()
            self._protocol._body_clock_start()


class BoundedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, bounded (the module's docstring). A listener uses a
    subclass made by `bounded_protocol` (its limits and stats as class attributes)."""

    limits: ClassVar[ConnectionLimits] = ConnectionLimits()
    stats: ClassVar[ListenerStats] = ListenerStats("unnamed")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.timeout_keep_alive = self.limits.idle_timeout  # type: ignore[assignment]  # uvicorn's is an int
        self._accepted = False
        self._in_head = True  # waiting for (the rest of) a request head
        self._head_bytes = 0
        self._header_count = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._in_body = False
        self._body_left = 0.0
        self._body_since: float | None = None  # the body clock runs since then
        self._body_timer: asyncio.TimerHandle | None = None
        self._client_done = False  # the client closed its side (half-close) after whole requests
        # A request asking for an upgrade has a body (its framing header), which httptools skips:
        # it is read by a second parser (`_read_upgrade_body`); `_synthetic` while that parser
        # reads the head made for it.
        self._upgrade_body: bytes | None = None
        self._synthetic = False

    # -- the connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        stats = self.stats
        if stats.open >= self.limits.max_connections:
            stats.refused["max_connections"] += 1
            # Not read, not parsed: one answer and the connection closed.
            transport.write(_OVER_CAP)
            transport.close()
            return
        self._accepted = True
        stats.open += 1
        super().connection_made(transport)
        self.flow = _TimedFlow(transport, self)
        self._head_timer = self.loop.call_later(self.limits.head_timeout, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._accepted:
            return
        self._accepted = False
        self.stats.open -= 1
        self._cancel_head_timer()
        self._body_clock_stop()
        self._in_body = False
        super().connection_lost(exc)

    def eof_received(self) -> bool | None:  # type: ignore[override]  # asyncio.Protocol's: True keeps it open
        """The client closed its sending side (TCP half-close: `shutdown(SHUT_WR)`, HTTP/1.0
        clients, `nc -N`) after sending its request. asyncio's default closes the connection,
        so a whole request was answered into the void: its batch durable, the sender told
        nothing. The connection now stays open for the answers to the requests received whole,
        then closes. A request still missing body bytes can never be completed: closed (the
        app sees the client gone)."""
        cycle = self.cycle
        if not self._accepted or cycle is None or cycle.more_body or (cycle.response_complete and not self.pipeline):
            return None
        self._client_done = True
        self._cancel_head_timer()
        return True

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._client_done and not self.pipeline and not self.transport.is_closing():
            self.transport.close()  # every request the client sent is answered

    def data_received(self, data: bytes) -> None:
        if not self._accepted or self.transport.is_closing():
            return
        self._unset_keepalive_if_required()
        if self._in_head:
            if self._head_timer is None:  # the first byte of the next request
                self._head_timer = self.loop.call_later(self.limits.head_timeout, self._head_timed_out)
            self._head_bytes += len(data)
        if not self._feed(data):
            return
        # Past the bound with the head still incomplete: the parser holds it, so no further.
        if self._in_head and self._head_bytes > self.limits.max_head_bytes:
            self._refuse_large_head(f"a request head over {self.limits.max_head_bytes} bytes")

    def _feed(self, data: bytes) -> bool:
        """Feed the parser; False when the connection is refused or the rest is not HTTP."""
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            # No websockets, no h2c here: the request is answered as any other, over HTTP/1.1;
            # the connection is closed after the answer.
            if self.cycle is not None:
                self.cycle.keep_alive = False
            if self._upgrade_body is not None:
                self._read_upgrade_body(data[upgrade.args[0]:])
            return False
        except httptools.HttpParserError as exc:
            refused = exc.__context__
            if isinstance(refused, _Refused):
                self._refuse(refused.status, refused.reason, str(refused))
            else:
                # The parser's reason ("Duplicate Content-Length", "Invalid character in chunk
                # size" ...): the sender's operator learns what to fix, not just that it failed.
                self._refuse(400, "", f"Invalid HTTP request received: {exc}.")
            return False
        return True

    def _read_upgrade_body(self, rest: bytes) -> None:
        """The body of a request that asked for an upgrade (`Connection: Upgrade`, `Upgrade: h2c`:
        `curl --http2` on http://, any h2c-capable client): httptools tells llhttp to skip it and ends
        the request after its head, so the app read an empty body (400, the batch lost). A new
        parser reads it: fed a head of the same framing, whose callbacks are skipped, then the
        bytes that followed the real head; the request's cycle gets the body as usual."""
        framing, self._upgrade_body = self._upgrade_body, None
        self.parser = httptools.HttpRequestParser(self)
        self._synthetic = True
        self._feed(b"POST / HTTP/1.1\r\n" + (framing or b"") + b"\r\n\r\n" + rest)

    # -- parser callbacks

    def on_message_begin(self) -> None:
        if self._synthetic:
            return
        self._in_head = True
        self._header_count = 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        if self._synthetic:
            return
        super().on_url(url)
        if len(self.url) > self.limits.max_head_bytes:
            raise self._large_head(f"a request line over {self.limits.max_head_bytes} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._synthetic:
            return
        self._header_count += 1
        if self._header_count > self.limits.max_headers:
            raise self._large_head(f"more than {self.limits.max_headers} header lines")
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._synthetic:  # the head made for an upgrade request's body: the body follows
            self._synthetic = False
            return
        # What arrived in the head's last chunk may be body: the head itself, counted exactly.
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > self.limits.max_head_bytes:
            raise self._large_head(f"a request head over {self.limits.max_head_bytes} bytes")
        self._in_head = False
        self._head_bytes = 0
        self._cancel_head_timer()
        self._in_body = True
        self._body_left = self.limits.body_timeout
        super().on_headers_complete()
        if self._in_body and not self.flow.read_paused:
            self._body_clock_start()

    def on_message_complete(self) -> None:
        if self.parser.should_upgrade():
            framing = _body_framing(self.headers)
            if framing is not None:  # its body is still to come (`_read_upgrade_body`)
                self._upgrade_body = framing
                return
        self._in_body = False
        self._body_clock_stop()
        self._in_head = True
        super().on_message_complete()

    def on_body(self, body: bytes) -> None:
        """uvicorn's, without copying a chunk that arrives while nothing is buffered: it copies
        every chunk into the cycle's bytearray, and `receive` copies that into bytes again. A
        chunk alone is kept as the bytes it is (`bytes()` of bytes is the same object, so it
        reaches the app uncopied); a second one before the app reads goes into a bytearray, as
        uvicorn's do. Reading still pauses past uvicorn's high-water mark."""
        cycle = self.cycle
        if (self.parser.should_upgrade() and self._should_upgrade()) or cycle.response_complete:
            return
        buffered = cycle.body
        if not buffered:
            cycle.body = body  # type: ignore[assignment]  # read by `bytes(cycle.body)` only
        elif type(buffered) is bytearray:
            buffered += body
        else:
            cycle.body = bytearray(buffered) + body
        if len(cycle.body) > HIGH_WATER_LIMIT:
            self.flow.pause_reading()
        cycle.message_event.set()

    # -- timeouts and refusals

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or not self._in_head:
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # A request pipelined behind one being answered: its answer first.
            self._head_timer = self.loop.call_later(self.limits.head_timeout, self._head_timed_out)
            return
        if self._head_bytes == 0:
            self.transport.close()  # a new connection that never spoke: nothing to answer
            self.stats.refused["head_timeout"] += 1
            return
        self._refuse(408, "head_timeout", f"Request head not complete within {self.limits.head_timeout:g} s.")

    def _body_clock_start(self) -> None:
        if not self._in_body or self._body_since is not None or not self._accepted:
            return
        self._body_since = time.monotonic()
        self._body_timer = self.loop.call_later(max(self._body_left, 0.0), self._body_timed_out)

    def _body_clock_stop(self) -> None:
        if self._body_since is not None:
            self._body_left -= time.monotonic() - self._body_since
            self._body_since = None
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _body_timed_out(self) -> None:
        self._body_timer = None
        self._body_since = None
        if self.transport.is_closing() or not self._in_body:
            return
        self._in_body = False
        if self.cycle is not None and self.cycle.response_started:
            self.stats.refused["body_timeout"] += 1
            self.transport.close()
            return
        self._refuse(408, "body_timeout", f"Request body not complete within {self.limits.body_timeout:g} s.")

    def _large_head(self, what: str) -> _Refused:
        status = self.limits.head_too_large_status
        return _Refused(status, "head_too_large", f"Request head too large: {what}.")

    def _refuse_large_head(self, what: str) -> None:
        refused = self._large_head(what)
        self._refuse(refused.status, refused.reason, str(refused))

    def _refuse(self, status: int, reason: str, text: str) -> None:
        """Answer `status` with `text` and close (what the app would have answered is moot)."""
        if reason:
            self.stats.refused[reason] += 1
        self._cancel_head_timer()
        self._body_clock_stop()
        self._in_head = self._in_body = False
        if self.transport.is_closing():
            return
        client = f"{self.client[0]}" if self.client else "unknown"
        log.debug(f"{self.stats.name}: refused a connection ({status}): {text}", extra={"client": client})
        body = text.encode("ascii", "backslashreplace")
        self.transport.write(b"".join([
            STATUS_LINE[status],
            b"content-type: text/plain; charset=utf-8\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
            body,
        ]))
        self.transport.close()


def _body_framing(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """The header that frames a request's body (names lowercase, as uvicorn keeps them), None
    for a request without one."""
    for name, value in headers:
        if name == b"transfer-encoding" and b"chunked" in value.lower():
            return b"Transfer-Encoding: chunked"
    for name, value in headers:
        if name == b"content-length" and value.strip().isdigit() and int(value) > 0:
            return b"Content-Length: " + value.strip()
    return None


def bounded_protocol(limits: ConnectionLimits, stats: ListenerStats) -> type[BoundedHttpProtocol]:
    """The protocol class of one listener (uvicorn.Config's `http`)."""
    return type(f"Bounded{stats.name.title()}Protocol", (BoundedHttpProtocol,), {"limits": limits, "stats": stats})


def side_config(app: Callable[..., Any], limits: ConnectionLimits, stats: ListenerStats,
                graceful_shutdown: int) -> uvicorn.Config:
    """uvicorn's config of a side listener (the status page, /metrics): bounded protocol, no
    websockets, no lifespan, no access log, proxy headers ignored."""
    return uvicorn.Config(
        app, http=bounded_protocol(limits, stats), ws="none", lifespan="off", access_log=False, log_config=None,
        server_header=False, proxy_headers=False, timeout_graceful_shutdown=graceful_shutdown,
    )
