"""A small HTTP/1.1 server for the protocol stand-ins (Splunk HEC, Elasticsearch).

Why not uvicorn: a stand-in must misbehave on purpose, and an ASGI app cannot drop a
connection without answering, stall before the status line, or answer before it has read
the body. This server is plain asyncio + h11 (already installed with uvicorn), keeps
connections alive, answers `Expect: 100-continue` at once (libcurl, i.e. rsyslog, waits a
second for it otherwise), serves TLS when given a context, and hands each request to one
coroutine:

    class Echo(HttpStandIn):
        async def handle(self, request: Request) -> Response:
            return Response.json(200, {"path": request.path})

    async with Echo() as server:      # port 0: a free loopback port
        ...server.url...

A handler raises `DropConnection` to close the socket without an answer. Bodies larger than
`max_body_bytes` are answered 413 without reading them to the end (and the connection is
closed), as a real server's front end would.

Loopback test tooling, not a production web server.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import gc
import gzip
import logging
import signal
import ssl
import sys
import zlib
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self
from urllib.parse import parse_qs, unquote, urlsplit

import h11
import orjson

log = logging.getLogger("siemgate_standins.http_server")

_READ = 256 * 1024


class DropConnection(Exception):  # a control-flow signal, not an error
    """Raised by a handler: close the connection without answering."""


class BadBody(Exception):
    """The body cannot be decoded (bad gzip)."""


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    # The path, percent-decoded, without the query string.
    path: str
    query: Mapping[str, list[str]]
    # Header names lower-cased; repeated headers joined with ", ".
    headers: Mapping[str, str]
    # The body as received (still gzip'd when Content-Encoding says so).
    body: bytes
    peer: str

    def param(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default

    @property
    def gzipped(self) -> bool:
        return self.headers.get("content-encoding", "").strip().lower() == "gzip"

    def decoded_body(self, limit: int | None = None) -> bytes:
        """The body, gunzipped when Content-Encoding is gzip. Raises BadBody, or
        BodyTooLarge when it decompresses to more than `limit` bytes."""
        if not self.gzipped:
            return self.body
        try:
            if limit is None:
                return gzip.decompress(self.body)
            inflater = zlib.decompressobj(wbits=31)
            data = inflater.decompress(self.body, limit + 1)
            if len(data) > limit:
                raise BodyTooLarge(limit)
            return data
        except (OSError, EOFError, zlib.error) as exc:
            raise BadBody(f"cannot gunzip the body: {exc}") from exc


class BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"the body is larger than {limit} bytes")
        self.limit = limit


@dataclass(slots=True)
class Response:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def json(cls, status: int, value: object, headers: list[tuple[str, str]] | None = None,
             content_type: str = "application/json") -> Response:
        return cls(status, orjson.dumps(value), [("Content-Type", content_type), *(headers or [])])


class HttpStandIn(abc.ABC):
    """Subclasses implement `handle`. Lifecycle: `start`, `stop` (or `async with`)."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, ssl_context: ssl.SSLContext | None = None,
                 max_body_bytes: int = 100 * 1024 * 1024) -> None:
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self.max_body_bytes = max_body_bytes
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"

    @abc.abstractmethod
    async def handle(self, request: Request) -> Response:
        """Answer one request (or raise DropConnection)."""

    async def start(self) -> None:
        # A TLS connection closes with a close_notify exchange: a client idling in its pool never
        # answers it, which would hold `stop` for asyncio's default 30 s per connection.
        if self.ssl_context is not None:
            self._server = await asyncio.start_server(self._accept, self.host, self.port, limit=_READ,
                                                      ssl=self.ssl_context, ssl_shutdown_timeout=1.0)
        else:
            self._server = await asyncio.start_server(self._accept, self.host, self.port, limit=_READ)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        tasks = list(self._connections)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._server.wait_closed(), 5)
        self._server = None

    async def drop_connections(self) -> None:
        """Close every open connection now (answers in progress are lost)."""
        tasks = list(self._connections)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    async def serve_until_signalled(self) -> None:
        """For a stand-in run as its own process: serve until SIGTERM or SIGINT, with the URL
        printed (and flushed) as the first line of stdout, for whoever started the process."""
        tune_gc()  # a process of its own: keep the collector off the hot path, as the forwarders do
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        handled: list[signal.Signals] = []
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread
                loop.add_signal_handler(signum, stop.set)
                handled.append(signum)
        try:
            async with self:
                print(self.url, flush=True)
                await stop.wait()
        finally:
            for signum in handled:
                loop.remove_signal_handler(signum)

    # -- connections

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(self._connection(reader, writer))
        self._connections.add(task)
        task.add_done_callback(self._connections.discard)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        peer_host = str(peer[0]) if isinstance(peer, tuple) else ""
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=64 * 1024)
        try:
            while True:
                keep = await self._one_exchange(conn, reader, writer, peer_host)
                if not keep or conn.our_state is not h11.DONE:
                    break
                conn.start_next_cycle()
        except (ConnectionError, asyncio.IncompleteReadError, h11.ProtocolError, DropConnection, ssl.SSLError,
                OSError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _one_exchange(self, conn: h11.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                            peer: str) -> bool:
        head = await _next_event(conn, reader)
        if isinstance(head, h11.ConnectionClosed):
            return False
        if not isinstance(head, h11.Request):
            raise h11.RemoteProtocolError("expected a request")
        headers: dict[str, str] = {}
        for name, value in head.headers:
            key = name.decode("latin-1").lower()
            text = value.decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await _send(conn, writer, Response(413, b""), close=True)
            return False
        if conn.they_are_waiting_for_100_continue:
            writer.write(conn.send(h11.InformationalResponse(status_code=100, headers=[])) or b"")
        chunks: list[bytes] = []
        size = 0
        while True:
            event = await _next_event(conn, reader)
            if isinstance(event, h11.Data):
                size += len(event.data)
                if size > self.max_body_bytes:
                    await _send(conn, writer, Response(413, b""), close=True)
                    return False
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                break
            else:
                return False
        raw = urlsplit(head.target.decode("latin-1"))
        request = Request(method=head.method.decode("latin-1"), path=unquote(raw.path),
                          query=parse_qs(raw.query, keep_blank_values=True), headers=headers, body=b"".join(chunks),
                          peer=peer)
        try:
            response = await self.handle(request)
        except DropConnection:
            writer.transport.abort()
            raise
        except Exception:
            log.exception("stand-in handler failed", extra={"path": request.path})
            response = Response.json(500, {"error": "stand-in handler failed"})
        close = headers.get("connection", "").lower() == "close"
        await _send(conn, writer, response, close=close)
        return not close


async def _next_event(conn: h11.Connection, reader: asyncio.StreamReader) -> object:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        conn.receive_data(await reader.read(_READ))


async def _send(conn: h11.Connection, writer: asyncio.StreamWriter, response: Response, *, close: bool) -> None:
    headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in response.headers]
    headers.append((b"Content-Length", str(len(response.body)).encode()))
    if close:
        headers.append((b"Connection", b"close"))
    data = conn.send(h11.Response(status_code=response.status, headers=headers)) or b""
    if response.body:
        data += conn.send(h11.Data(data=response.body)) or b""
    data += conn.send(h11.EndOfMessage()) or b""
    writer.write(data)
    await writer.drain()


def tune_gc() -> None:
    """As siemgate.gc_tuning.tune_gc (copied: the stand-ins do not import siemgate): move what
    exists after startup out of the cyclic collector's sight and collect the young generation
    only after many more allocations, so a collection does not land in a measured answer."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 20, 10)


def run_main(serve: Callable[[], Coroutine[object, object, None]]) -> int:
    """A stand-in module's `main`: INFO logs on stderr, uvloop when installed."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve())
    else:
        uvloop.run(serve())
    return 0
