"""The Sentinel stand-in as a process (`python -m siemgate_standins.sentinel`,
`siemgate standin sentinel`)."""

from __future__ import annotations

import argparse
import json
import logging
import ssl
from collections.abc import Sequence

from siemgate_standins.http_server import run_main
from siemgate_standins.sentinel.protocol import (
    DEFAULT_TENANT,
    MAX_CALL_BYTES,
    AppRegistration,
    DataCollectionRule,
    stream_declarations,
)
from siemgate_standins.sentinel.server import SentinelStandIn

log = logging.getLogger("siemgate_standins.sentinel")


def client_spec(text: str) -> tuple[str, str]:
    """`CLIENT_ID:SECRET` -> (client id, secret)."""
    client_id, colon, secret = text.partition(":")
    if not client_id or not colon or not secret:
        raise argparse.ArgumentTypeError(f"{text!r}: expected CLIENT_ID:SECRET")
    return client_id, secret


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8443, help="listen port (default 8443; 0: a free port)")
    parser.add_argument("--tenant", default=DEFAULT_TENANT, help=f"the tenant id (default {DEFAULT_TENANT})")
    parser.add_argument("--client", dest="clients", type=client_spec, action="append", required=True,
                        metavar="CLIENT_ID:SECRET", help="an app registration and its client secret (repeat for more)")
    parser.add_argument("--client-certificate", dest="certificates", action="append", default=[],
                        metavar="CLIENT_ID:CERT.pem",
                        help="a certificate an app's client assertions may be signed with")
    parser.add_argument("--dcr", dest="dcrs", action="append", required=True, metavar="DCR_IMMUTABLE_ID",
                        help="a data collection rule (repeat for more)")
    parser.add_argument("--stream", dest="streams", action="append", default=[],
                        help="a stream each DCR declares, any columns (default Custom-SiemgateAlerts)")
    parser.add_argument("--dcr-template", metavar="TEMPLATE.json",
                        help="an ARM template (deploy/azure/sentinel.json): each DCR declares its streams with their "
                             "columns, checked as Azure does (besides any --stream)")
    parser.add_argument("--max-call-bytes", type=int, default=MAX_CALL_BYTES,
                        help=f"the per-call cap, as sent and after gunzip (default {MAX_CALL_BYTES})")
    parser.add_argument("--token-lifetime", type=float, default=3599.0, metavar="SECONDS",
                        help="access tokens expire this long after issue (default 3599)")
    parser.add_argument("--keep-rows", action=argparse.BooleanOptionalAction, default=True,
                        help="keep ingested rows for inspection, or only count them (default keep)")
    parser.add_argument("--certfile", help="serve HTTPS with this certificate chain (PEM): Azure's clients insist")
    parser.add_argument("--keyfile", help="the certificate's private key (PEM)")


def from_arguments(args: argparse.Namespace, cls: type[SentinelStandIn] = SentinelStandIn) -> SentinelStandIn:
    """The stand-in these arguments describe (`cls`: a subclass, e.g. bench/sentinel_standin.py's)."""
    context: ssl.SSLContext | None = None
    if args.certfile:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.certfile, args.keyfile)
    certificates: dict[str, list[bytes]] = {}
    for spec in args.certificates:
        client_id, _, path = spec.partition(":")
        with open(path, "rb") as file:
            certificates.setdefault(client_id, []).append(file.read())
    apps = [AppRegistration(client_id, args.tenant, secrets=(secret,),
                            certificates=tuple(certificates.get(client_id, ())))
            for client_id, secret in args.clients]
    declared: dict[str, dict[str, str]] = {}
    if args.dcr_template:
        with open(args.dcr_template, "rb") as file:
            declared = stream_declarations(json.load(file))
    streams: dict[str, dict[str, str]] = {
        **dict.fromkeys(args.streams or ([] if declared else ["Custom-SiemgateAlerts"]), {}), **declared}
    rules = [DataCollectionRule(dcr, dict(streams)) for dcr in args.dcrs]
    return cls(apps=apps, rules=rules, host=args.host, port=args.port, ssl_context=context,
                           max_call_bytes=args.max_call_bytes, token_lifetime_seconds=args.token_lifetime,
                           keep_rows=args.keep_rows)


async def serve(args: argparse.Namespace) -> None:
    """Serve until SIGTERM or SIGINT; the URL is printed (and flushed) as the first line of stdout."""
    standin = from_arguments(args)
    await standin.serve_until_signalled()
    log.info("stopped after %d requests, %d rows ingested", len(standin.requests), standin.ingested_total)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m siemgate_standins.sentinel`: a Microsoft Sentinel (Entra ID + Logs Ingestion API) stand-in."""
    parser = argparse.ArgumentParser(prog="python -m siemgate_standins.sentinel", description=main.__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    return run_main(lambda: serve(args))
