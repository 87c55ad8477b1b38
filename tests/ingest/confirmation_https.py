"""A small HTTPS server on 127.0.0.1 for the confirmation-link tests.

The standard library's threading HTTP server, run in its own thread: a server independent of
the event loop under test, like a real one, whose failed TLS handshakes (some tests expect
the client to reject the certificate) end in its own threads. It answers from a route table,
records every request and the SNI name the client sent, and can redirect, stream an endless
body or never answer. `serve()` stops it, and every connection it holds, when the test's
`async with` ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import trustme

# Names the server's certificate is valid for; deliberately not 127.0.0.1, so that a
# request connected to the IP only verifies if TLS uses the hostname.
CERT_NAMES = ("localhost", "confirm.example")


@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b"confirmed"
    endless: bool = False  # stream a chunked body until the client goes away
    hang: bool = False  # accept the request and never answer


@dataclass(frozen=True)
class Seen:
    path: str
    headers: dict[str, str]


@dataclass
class Server:
    port: int
    requests: list[Seen] = field(default_factory=list)
    sni_names: list[str | None] = field(default_factory=list)

    def url(self, path: str, host: str = "localhost") -> str:
        return f"https://{host}:{self.port}{path}"


@dataclass(frozen=True)
class Tls:
    ca_file: Path
    server_context: ssl.SSLContext


def make_tls(directory: Path) -> Tls:
    ca = trustme.CA()
    ca_file = directory / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*CERT_NAMES).configure_cert(context)
    return Tls(ca_file=ca_file, server_context=context)


class _HttpsServer(ThreadingHTTPServer):
    daemon_threads = False
    # server_close() joins every request thread: nothing outlives the test.
    block_on_close = True

    def __init__(self, tls: Tls, routes: Mapping[str, Reply], state: Server) -> None:
        self.tls = tls
        self.routes = routes
        self.state = state
        self.stop = threading.Event()
        super().__init__(("127.0.0.1", 0), _Handler)

    def get_request(self) -> tuple[Any, Any]:
        sock, address = super().get_request()
        # The handshake happens in the request's thread (first read), not in the accept loop.
        return self.tls.server_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), address

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that rejected the certificate, stopped reading at its cap, or timed out.
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # A safety net: a connection that goes silent cannot keep the test's teardown waiting.
    timeout = 10
    server: _HttpsServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        state = self.server.state
        state.requests.append(Seen(path=self.path, headers={k.lower(): v for k, v in self.headers.items()}))
        reply = self.server.routes.get(self.path.split("?", 1)[0], Reply(status=404, body=b"not found"))
        if reply.hang:
            self.server.stop.wait()
            return
        self.send_response(reply.status)
        for name, value in reply.headers:
            self.send_header(name, value)
        self.send_header("Connection", "close")
        self.close_connection = True
        if reply.endless:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b"x" * 16384
            framed = b"%x\r\n%s\r\n" % (len(chunk), chunk)
            # Ends when the client goes away (a broken pipe) or the test stops the server.
            while not self.server.stop.is_set():
                self.wfile.write(framed)
            return
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)


@contextlib.asynccontextmanager
async def serve(tls: Tls, routes: Mapping[str, Reply]) -> AsyncIterator[Server]:
    state = Server(port=0)

    def on_sni(_sslobj: ssl.SSLObject, name: str | None, _context: ssl.SSLContext) -> None:
        state.sni_names.append(name)

    tls.server_context.sni_callback = on_sni
    server = _HttpsServer(tls, routes, state)
    state.port = server.server_address[1]
    # A short poll interval only makes shutdown() return sooner; nothing waits on it.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.stop.set()
        await asyncio.to_thread(server.shutdown)
        await asyncio.to_thread(server.server_close)
        await asyncio.to_thread(thread.join)
