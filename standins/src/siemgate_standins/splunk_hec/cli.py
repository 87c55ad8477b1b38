"""The Splunk HEC stand-in as a process (`python -m siemgate_standins.splunk_hec`,
`siemgate standin splunk-hec`)."""

from __future__ import annotations

import argparse
import logging
import ssl
from collections.abc import Sequence

from siemgate_standins.http_server import (
    run_main,
)
from siemgate_standins.splunk_hec.protocol import HecToken
from siemgate_standins.splunk_hec.server import SplunkHecStandIn

log = logging.getLogger("siemgate_standins.splunk_hec")


# Command line


def token_spec(text: str) -> HecToken:
    """`TOKEN[:ack][:qs][:disabled][:index=NAME][:indexes=A,B]` -> HecToken."""
    value, *options = text.split(":")
    if not value:
        raise argparse.ArgumentTypeError(f"{text!r}: no token")
    token = HecToken(value)
    for option in options:
        name, _, argument = option.partition("=")
        if name == "ack" and not argument:
            token.ack = True
        elif name == "qs" and not argument:
            token.query_string_auth = True
        elif name == "disabled" and not argument:
            token.enabled = False
        elif name == "index" and argument:
            token.default_index = argument
        elif name == "indexes" and argument:
            token.indexes = tuple(part for part in argument.split(",") if part)
        else:
            raise argparse.ArgumentTypeError(f"{text!r}: unknown option {option!r} "
                                             "(ack, qs, disabled, index=NAME, indexes=A,B)")
    return token


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8088, help="listen port (default 8088; 0: a free port)")
    parser.add_argument("--token", dest="tokens", type=token_spec, action="append", required=True,
                        metavar="TOKEN[:ack][:qs][:disabled][:index=NAME][:indexes=A,B]",
                        help="a HEC token (repeat for more): with indexer acknowledgement, query-string "
                             "authorization, disabled, its default index, its allowed indexes")
    parser.add_argument("--max-body-bytes", type=int, default=1_000_000,
                        help="HEC max_content_length: larger bodies are answered 413 (default 1000000)")
    parser.add_argument("--ack-delay", type=float, default=0.0, metavar="SECONDS",
                        help="an ackId comes true this long after its request (default 0)")
    parser.add_argument("--index-before-invalid", action=argparse.BooleanOptionalAction, default=True,
                        help="index the events before an invalid one of a batch (default yes)")
    parser.add_argument("--keep-events", action=argparse.BooleanOptionalAction, default=True,
                        help="keep indexed events for inspection, or only count them (default keep)")
    parser.add_argument("--certfile", help="serve HTTPS with this certificate chain (PEM)")
    parser.add_argument("--keyfile", help="the certificate's private key (PEM)")


def from_arguments(args: argparse.Namespace) -> SplunkHecStandIn:
    context: ssl.SSLContext | None = None
    if args.certfile:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.certfile, args.keyfile)
    return SplunkHecStandIn(tokens=args.tokens, host=args.host, port=args.port, ssl_context=context,
                            max_body_bytes=args.max_body_bytes, ack_delay_seconds=args.ack_delay,
                            index_before_invalid=args.index_before_invalid, keep_events=args.keep_events)


async def serve(args: argparse.Namespace) -> None:
    """Serve until SIGTERM or SIGINT; the URL is printed (and flushed) as the first line of stdout."""
    standin = from_arguments(args)
    await standin.serve_until_signalled()
    log.info("stopped after %d requests, %d events indexed", len(standin.requests), standin.indexed_total)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m siemgate_standins.splunk_hec`: a Splunk HEC stand-in in its own process."""
    parser = argparse.ArgumentParser(prog="python -m siemgate_standins.splunk_hec", description=main.__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    return run_main(lambda: serve(args))
