"""The Elasticsearch stand-in as a process (`python -m siemgate_standins.elasticsearch`,
`siemgate standin elasticsearch`), or in a thread for synchronous clients."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import ssl
import threading
from collections.abc import Iterator, Sequence
from typing import TypeVar

from siemgate_standins.elasticsearch.server import ElasticsearchStandIn
from siemgate_standins.http_server import HttpStandIn, run_main

log = logging.getLogger("siemgate_standins.elasticsearch")


# Running it


_StandIn = TypeVar("_StandIn", bound=HttpStandIn)


@contextlib.contextmanager
def serve_in_thread(stand_in: _StandIn, timeout: float = 10.0) -> Iterator[_StandIn]:
    """Run a stand-in on its own event loop in a background thread, for synchronous clients (the
    official Elasticsearch client); stopped when the block ends."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="standin", daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(stand_in.start(), loop).result(timeout)
        try:
            yield stand_in
        finally:
            asyncio.run_coroutine_threadsafe(stand_in.stop(), loop).result(timeout)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        loop.close()


def _pair(text: str) -> tuple[str, str]:
    name, sep, secret = text.partition(":")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME:SECRET")
    return name, secret


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=9200, help="listen port (default 9200; 0: a free port)")
    parser.add_argument("--api-key", dest="api_keys", type=_pair, action="append", default=[], metavar="ID:KEY",
                        help="accept `Authorization: ApiKey base64(ID:KEY)` (repeat for more; any key or user turns "
                             "security on)")
    parser.add_argument("--user", dest="users", type=_pair, action="append", default=[], metavar="USER:PASSWORD",
                        help="accept `Authorization: Basic base64(USER:PASSWORD)` (repeat for more)")
    parser.add_argument("--es-version", dest="es_version", default="8.15.0",
                        help="the version it reports and the compatible-with versions it accepts (default 8.15.0)")
    parser.add_argument("--max-body-bytes", type=int, default=100 * 1024 * 1024,
                        help="http.max_content_length: larger bodies are answered 413 (default 100 MiB)")
    parser.add_argument("--keep-sources", action=argparse.BooleanOptionalAction, default=True,
                        help="keep document sources for inspection, or only their _id and version (default keep)")
    parser.add_argument("--builtin-templates", action=argparse.BooleanOptionalAction, default=True,
                        help="the logs-*-*, metrics-*-*, synthetics-*-* data stream templates (default yes)")
    parser.add_argument("--certfile", help="serve HTTPS with this certificate chain (PEM)")
    parser.add_argument("--keyfile", help="the certificate's private key (PEM)")


def from_arguments(args: argparse.Namespace) -> ElasticsearchStandIn:
    context: ssl.SSLContext | None = None
    if args.certfile:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.certfile, args.keyfile)
    return ElasticsearchStandIn(host=args.host, port=args.port, api_keys=dict(args.api_keys), users=dict(args.users),
                                ssl_context=context, max_body_bytes=args.max_body_bytes, version=args.es_version,
                                keep_sources=args.keep_sources, builtin_templates=args.builtin_templates)


async def serve(args: argparse.Namespace) -> None:
    """Serve until SIGTERM or SIGINT; the URL is printed (and flushed) as the first line of stdout."""
    stand_in = from_arguments(args)
    await stand_in.serve_until_signalled()
    log.info("stopped after %d requests (%d bulk), %d documents", stand_in.request_count,
             len(stand_in.bulk_requests), sum(stand_in.counts().values()))


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m siemgate_standins.elasticsearch`: an Elasticsearch stand-in in its own process."""
    parser = argparse.ArgumentParser(prog="python -m siemgate_standins.elasticsearch", description=main.__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    return run_main(lambda: serve(args))
