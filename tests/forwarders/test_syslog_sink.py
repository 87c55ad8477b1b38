"""The syslog sink against a real rsyslogd (tests/forwarders/rsyslog.py), on loopback only:
every format over TCP (octet counting and LF), UDP and TLS, as rsyslog parsed it; TLS
verification and client certificates; reconnecting after rsyslog restarts; fast failures."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import ssl
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import trustme

from siemgate.errors import RetryableSinkError, SinkAuthError
from siemgate.forwarders.formats.syslog import BOM
from siemgate.forwarders.normalize import NormalizedEvent
from siemgate.forwarders.sinks.base import SendResult
from siemgate.forwarders.sinks.registry import build_settings, create_sink
from siemgate.forwarders.sinks.syslog import SyslogSink
from siemgate.record import Severity
from siemgate_standins.broker import free_port
from tests.forwarders.rsyslog import AWKWARD, Rsyslog, make_event, running_rsyslog
from tests.forwarders.test_syslog_formats import one_line, parse_cef, parse_leef, parse_sd

pytestmark = pytest.mark.anyio

SEVERITY_CODES: dict[Severity, int] = {"high": 2, "medium": 4, "low": 5, "unknown": 6}  # critical 1 (issue 18)
TRANSPORTS = ["tcp", "tcp-lf", "udp", "tls"]
FORMATS = ["rfc5424", "rfc3164", "cef", "leef"]


@pytest.fixture
def rsyslog(tmp_path: Path) -> Iterator[Rsyslog]:
    with running_rsyslog(tmp_path / "rsyslog") as server:
        yield server


def transport_options(rsyslog: Rsyslog, transport: str) -> dict[str, Any]:
    if transport == "tcp":
        return {"address": f"tcp://127.0.0.1:{rsyslog.tcp_port}"}
    if transport == "tcp-lf":
        return {"address": f"tcp://127.0.0.1:{rsyslog.tcp_port}", "framing": "lf"}
    if transport == "udp":
        return {"address": f"udp://127.0.0.1:{rsyslog.udp_port}"}
    assert transport == "tls"
    return {"address": f"tls://localhost:{rsyslog.tls_port}", "tls": {"ca_file": str(rsyslog.ca_file)}}


@contextlib.asynccontextmanager
async def open_sink(**options: Any) -> AsyncIterator[SyslogSink]:
    options = {"name": "soc", "hostname": "fwd-01.example.net", "accept_check_seconds": 0.05, **options}
    sink = create_sink(build_settings("syslog", options, {}, "sinks[0]"))
    assert isinstance(sink, SyslogSink)
    try:
        yield sink
    finally:
        await sink.close()


def awkward_events(tag: str) -> list[NormalizedEvent]:
    """One event per severity, with every awkward character in the fields formats carry."""
    events = []
    for n, severity in enumerate(SEVERITY_CODES):
        body = {
            "id": f"{tag}-{n}",
            "timestamp": "2025-01-05T10:20:30.123456Z",
            "severity": severity,
            "type": "sql_injection",
            "rule_name": AWKWARD,
            "rule_id": f"942{n}",
            "source_ip": "203.0.113.9",
            "url": "https://shop.example.com/item?id=1 OR 1=1|x",
            "message": AWKWARD,
            "nested": {"payload": AWKWARD},
        }
        events.append(make_event(body, severity=severity, event_id=f"{tag}-{n}", integration="appsec-prod"))
    return events


def check_received(wire_format: str, received: dict[str, Any], event: NormalizedEvent) -> None:
    """What rsyslog parsed from one message is what the event says."""
    code = SEVERITY_CODES[event.severity]
    assert (received["facility"], received["severity"]) == ("4", str(code))  # facility auth
    assert received["pri"] == str(4 * 8 + code)
    if wire_format == "rfc3164":
        assert received["hostname"] == "fwd-01"
        assert (received["tag"], received["app_name"]) == ("siemgate:", "siemgate")
        assert orjson.loads(received["msg"].strip()) == event.event
        return
    assert received["version"] == "1"
    assert received["hostname"] == "fwd-01.example.net"
    if wire_format == "leef":
        # IBM's header (the default): `<PRI>1 TIMESTAMP.mmmZ HOST LEEF:...`, no APP-NAME or
        # MSGID: rsyslog reads the version and host, and the rest is the raw message's.
        raw = received["raw"]
        assert raw.startswith(f"<{4 * 8 + code}>1 ")
        assert re.match(r"<\d+>1 \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z fwd-01\.example\.net LEEF:2\.0\|", raw)
        header, attributes = parse_leef(raw[raw.index("LEEF:"):])
        assert header == ["siemgate", "siemgate", "0.1.0", event.rule_id]
        assert attributes["msg"] == attributes["policy"] == one_line(AWKWARD)
        assert attributes["sev"] == {"high": "8", "medium": "5", "low": "3", "unknown": "5"}[event.severity]
        assert attributes["url"] == "https://shop.example.com/item?id=1 OR 1=1|x"
        assert (attributes["eventId"], attributes["src"]) == (event.id, "203.0.113.9")
        return
    assert received["app_name"] == "siemgate"
    if wire_format == "rfc5424":
        assert received["msgid"] == "sql_injection"
        sd, rest = parse_sd(received["sd"])
        assert rest == ""
        assert sd == {
            "siemgate@32473": {
                "id": event.id, "kind": "event", "integration": "appsec-prod", "severity": event.severity,
                "rule": one_line(AWKWARD), "rule_id": event.rule_id, "source_ip": "203.0.113.9",
            }
        }  # fmt: skip
        assert received["msg"].startswith(BOM.decode())
        assert orjson.loads(received["msg"][1:]) == event.event
    elif wire_format == "cef":
        assert (received["msgid"], received["sd"]) == ("CEF", "-")
        header, ext = parse_cef(received["msg"])
        assert header == ["siemgate", "siemgate", "0.1.0", event.rule_id, one_line(AWKWARD),
                          {"high": "8", "medium": "5", "low": "3", "unknown": "5"}[event.severity]]  # fmt: skip
        assert ext["msg"] == ext["cs2"] == AWKWARD.replace("\t", " ")
        assert ext["request"] == "https://shop.example.com/item?id=1 OR 1=1|x"
        assert (ext["externalId"], ext["src"], ext["cs1"]) == (event.id, "203.0.113.9", "appsec-prod")
    else:  # the full RFC 5424 header siemgate wrote before (`leef_header: rfc5424`)
        assert (received["msgid"], received["sd"]) == ("LEEF", "-")
        header, attributes = parse_leef(received["msg"])
        assert header == ["siemgate", "siemgate", "0.1.0", event.rule_id]
        assert attributes["msg"] == attributes["policy"] == one_line(AWKWARD)
        assert attributes["sev"] == {"high": "8", "medium": "5", "low": "3", "unknown": "5"}[event.severity]
        assert attributes["url"] == "https://shop.example.com/item?id=1 OR 1=1|x"
        assert (attributes["eventId"], attributes["src"]) == (event.id, "203.0.113.9")


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("wire_format", FORMATS)
async def test_every_format_over_every_transport(rsyslog: Rsyslog, wire_format: str, transport: str) -> None:
    events = awkward_events(f"{wire_format}-{transport}")
    async with open_sink(**transport_options(rsyslog, transport), format=wire_format, facility="auth") as sink:
        assert await sink.send(events) == SendResult()
    received = await rsyslog.wait_for(len(events))
    assert len(received) == len(events)
    expected_input = {"tcp": "tcp", "tcp-lf": "tcp", "udp": "udp", "tls": "tls"}[transport]
    # Order across UDP datagrams is not guaranteed: match messages to events by id.
    by_id = {event.id: event for event in events}
    for message in received:
        assert message["input"] == expected_input
        event = next(by_id[i] for i in by_id if i in message["raw"])
        check_received(wire_format, message, event)


async def test_leef_in_the_full_rfc5424_header_it_had_before(rsyslog: Rsyslog) -> None:
    """`leef_header: rfc5424`: APP-NAME, MSGID `LEEF` and `-` before LEEF, as rsyslog reads them."""
    events = awkward_events("leef-rfc5424")
    async with open_sink(**transport_options(rsyslog, "tcp"), format="leef", leef_header="rfc5424",
                         facility="auth") as sink:
        assert await sink.send(events) == SendResult()
    received = await rsyslog.wait_for(len(events))
    by_id = {event.id: event for event in events}
    for message in received:
        event = next(by_id[i] for i in by_id if i in message["raw"])
        check_received("leef-rfc5424", message, event)


@pytest.mark.parametrize("wire_format", ["cef", "leef"])
async def test_cef_and_leef_in_an_rfc3164_header(rsyslog: Rsyslog, wire_format: str) -> None:
    events = awkward_events("bsd")[:1]
    options = transport_options(rsyslog, "tcp")
    async with open_sink(**options, format=wire_format, cef_leef_header="rfc3164", facility="auth") as sink:
        await sink.send(events)
    (received,) = await rsyslog.wait_for(1)
    header = "<34>Jan  5 10:20:30 fwd-01 "
    assert received["raw"].startswith(header + wire_format.upper() + ":")
    payload = received["raw"][len(header) :]
    if wire_format == "cef":
        assert parse_cef(payload)[1]["msg"] == AWKWARD.replace("\t", " ")
    else:
        assert parse_leef(payload)[1]["msg"] == one_line(AWKWARD)


async def test_lf_framing_replaces_a_stray_newline(rsyslog: Rsyslog) -> None:
    """Even a message with an LF (no encoder makes one) stays one frame with LF framing."""
    async with open_sink(**transport_options(rsyslog, "tcp-lf")) as sink:
        sink._encode = lambda event: b"<13>1 - host app - ID - one\ntwo " + event.id.encode()
        await sink.send([make_event(event_id="a"), make_event(event_id="b")])
    received = await rsyslog.wait_for(2)
    assert sorted(m["msg"] for m in received) == ["one two a", "one two b"]


async def test_octet_counting_carries_a_newline_inside_one_message(rsyslog: Rsyslog) -> None:
    async with open_sink(**transport_options(rsyslog, "tcp")) as sink:
        sink._encode = lambda event: b"<13>1 - host app - ID - one\ntwo " + event.id.encode()
        await sink.send([make_event(event_id="a"), make_event(event_id="b")])
    received = await rsyslog.wait_for(2)
    assert sorted(m["msg"] for m in received) == ["one\ntwo a", "one\ntwo b"]


@pytest.mark.parametrize("transport", ["tcp", "tls"])
async def test_a_large_batch_is_delivered_whole(rsyslog: Rsyslog, transport: str) -> None:
    events = [make_event({"n": n, "pad": "x" * 500}, event_id=f"big-{n}") for n in range(500)]
    async with open_sink(**transport_options(rsyslog, transport)) as sink:
        await sink.send(events)
        await sink.send(events[:10])
    received = await rsyslog.wait_for(510)
    assert len(received) == 510
    assert sorted(orjson.loads(m["msg"][1:])["n"] for m in received) == sorted([*range(500), *range(10)])


@pytest.mark.parametrize("wire_format", FORMATS)
async def test_a_vendor_critical_reaches_rsyslog_as_critical(rsyslog: Rsyslog, wire_format: str) -> None:
    event = make_event({"id": "crit-1", "severity": "Very-High"}, event_id="crit-1", severity="high")
    async with open_sink(**transport_options(rsyslog, "tcp"), format=wire_format, facility="auth") as sink:
        assert await sink.send([event]) == SendResult()
    (received,) = await rsyslog.wait_for(1)
    assert (received["facility"], received["severity"], received["pri"]) == ("4", "1", "33")  # 1 alert


async def test_udp_truncates_at_max_datagram_bytes(rsyslog: Rsyslog) -> None:
    event = make_event({"blob": "日本語" * 1000}, event_id="big-udp", severity="low")
    async with open_sink(**transport_options(rsyslog, "udp"), max_datagram_bytes=1024) as sink:
        await sink.send([event])
    (received,) = await rsyslog.wait_for(1)
    raw = received["raw"].encode()
    assert 1021 <= len(raw) <= 1024  # cut at a character boundary (3-byte characters)
    sd, _ = parse_sd(received["sd"])
    assert sd["siemgate@32473"]["id"] == "big-udp"  # header and structured data survive
    assert received["severity"] == "5"


# -- TLS -------------------------------------------------------------------------------------


async def test_tls_verifies_the_server_by_default(rsyslog: Rsyslog) -> None:
    async with open_sink(address=f"tls://localhost:{rsyslog.tls_port}") as sink:
        with pytest.raises(SinkAuthError, match="not trusted"):
            await sink.send([make_event()])


async def test_tls_checks_the_server_name(rsyslog: Rsyslog) -> None:
    # The server's certificate is for localhost only.
    options = {"address": f"tls://127.0.0.1:{rsyslog.tls_port}", "tls": {"ca_file": str(rsyslog.ca_file)}}
    async with open_sink(**options) as sink:
        with pytest.raises(SinkAuthError, match="mismatch.*valid for 127.0.0.1"):
            await sink.send([make_event()])


async def test_tls_without_verification_when_asked(rsyslog: Rsyslog) -> None:
    async with open_sink(address=f"tls://127.0.0.1:{rsyslog.tls_port}", tls={"verify": False}) as sink:
        await sink.send([make_event(event_id="unverified")])
    (received,) = await rsyslog.wait_for(1)
    assert "unverified" in received["raw"]


async def test_tls_client_certificate(rsyslog: Rsyslog, tmp_path: Path) -> None:
    address = f"tls://localhost:{rsyslog.mtls_port}"
    tls = {"ca_file": str(rsyslog.ca_file), "cert": str(rsyslog.client_cert), "key": str(rsyslog.client_key)}
    async with open_sink(address=address, tls=tls) as sink:
        await sink.send([make_event(event_id="with-client-cert")])
    (received,) = await rsyslog.wait_for(1)
    assert received["input"] == "mtls"
    assert "with-client-cert" in received["raw"]


async def test_tls_refused_client_certificate_is_an_auth_error(rsyslog: Rsyslog, tmp_path: Path) -> None:
    """rsyslog checks the client after the handshake and hangs up: the sink must not count
    the batch as delivered, and says it is about the certificate."""
    stranger = trustme.CA().issue_cert("stranger.siemgate.test")
    stranger.cert_chain_pems[0].write_to_path(str(tmp_path / "stranger.pem"))
    stranger.private_key_pem.write_to_path(str(tmp_path / "stranger.key"))
    address = f"tls://localhost:{rsyslog.mtls_port}"
    ca_file = str(rsyslog.ca_file)
    for tls in (
        {"ca_file": ca_file},  # no client certificate at all
        {"ca_file": ca_file, "cert": str(tmp_path / "stranger.pem"), "key": str(tmp_path / "stranger.key")},
    ):
        async with open_sink(address=address, tls=tls, accept_check_seconds=10) as sink:
            started = time.monotonic()
            with pytest.raises(SinkAuthError, match="client certificate"):
                await sink.send([make_event(event_id="refused")])
            assert time.monotonic() - started < 5  # the hang-up ends the wait, not the timeout
            with pytest.raises(SinkAuthError):
                await sink.healthcheck()
    assert rsyslog.messages() == []


async def test_tls_certificate_alert_is_an_auth_error(tmp_path: Path) -> None:
    """A server that refuses the client in the handshake with an alert (OpenSSL, TLS 1.3: the
    alert arrives after the client's side of the handshake is done) is told apart from a
    network error. The server is a blocking OpenSSL socket in a thread: it sends the alert."""
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)
    ca.configure_trust(context)
    context.verify_mode = ssl.CERT_REQUIRED
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)
    refusals: list[str] = []

    def serve() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.settimeout(10)
            try:
                context.wrap_socket(connection, server_side=True).close()
            except ssl.SSLError as exc:
                refusals.append(exc.reason or "")

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        port = listener.getsockname()[1]
        options = {"address": f"tls://localhost:{port}", "tls": {"ca_file": str(tmp_path / "ca.pem")}}
        async with open_sink(**options, accept_check_seconds=10) as sink:
            with pytest.raises(SinkAuthError, match=r"refused our client certificate \(\w+_ALERT_\w+\)"):
                await sink.send([make_event()])
    finally:
        thread.join()
        listener.close()
    assert refusals == ["PEER_DID_NOT_RETURN_A_CERTIFICATE"]


async def test_tls_close_sends_close_notify(rsyslog: Rsyslog) -> None:
    async with open_sink(**transport_options(rsyslog, "tls")) as sink:
        await sink.send([make_event(event_id="graceful")])
        await sink.close()
        await rsyslog.wait_for(1)
    async with open_sink(**transport_options(rsyslog, "tls")) as sink:
        await sink.send([make_event(event_id="aborted")])
        sink._drop()  # what a broken connection gets: no close_notify
        await rsyslog.wait_for(2)
    rsyslog.stop()  # rsyslog has now logged everything about both sessions
    assert rsyslog.log.read_text().count("non-properly terminated") == 1


async def test_tls_files_that_cannot_be_loaded(rsyslog: Rsyslog, tmp_path: Path) -> None:
    options = {"address": f"tls://localhost:{rsyslog.tls_port}", "tls": {"ca_file": str(tmp_path / "missing.pem")}}
    async with open_sink(**options) as sink:
        with pytest.raises(SinkAuthError, match="tls.ca_file"):
            await sink.send([make_event()])


# -- failures, reconnecting, lifecycle -------------------------------------------------------


@pytest.mark.parametrize("transport", ["tcp", "tls"])
async def test_reconnects_after_rsyslog_restarts(rsyslog: Rsyslog, transport: str) -> None:
    async with open_sink(**transport_options(rsyslog, transport)) as sink:
        await sink.send([make_event(event_id="before")])
        await rsyslog.wait_for(1)
        # Restarted while idle: the next send notices the closed connection and reconnects.
        rsyslog.stop()
        rsyslog.start()
        await sink.send([make_event(event_id="after-restart")])
        # Received before rsyslog stops again: a SIGTERM'd rsyslogd drops what is still unread
        # in its socket buffer (TCP syslog has no acknowledgement; see the sink's docstring).
        await rsyslog.wait_for(2)
        # Down: the send fails (nothing is reported delivered), and up again it works.
        rsyslog.stop()
        with pytest.raises(RetryableSinkError):
            await sink.send([make_event(event_id="while-down")])
        rsyslog.start()
        await sink.send([make_event(event_id="after-outage")])
    received = await rsyslog.wait_for(3)
    ids = sorted(orjson.loads(m["msg"][1:])["id"] for m in received)
    assert ids == ["after-outage", "after-restart", "before"]


@pytest.mark.parametrize("scheme", ["tcp", "tls"])
async def test_closed_port_fails_fast(scheme: str) -> None:
    tls = {"verify": False} if scheme == "tls" else {}
    async with open_sink(address=f"{scheme}://127.0.0.1:{free_port()}", tls=tls) as sink:
        started = time.monotonic()
        with pytest.raises(RetryableSinkError, match="cannot connect"):
            await sink.send([make_event()])
        with pytest.raises(RetryableSinkError):
            await sink.healthcheck()
        assert time.monotonic() - started < 2


async def test_a_receiver_that_hangs_up_at_once() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with open_sink(address=f"tcp://127.0.0.1:{port}", accept_check_seconds=10) as sink:
            with pytest.raises(RetryableSinkError, match="closed the connection right after"):
                await sink.send([make_event()])
    finally:
        server.close()
        await server.wait_closed()


async def test_healthcheck(rsyslog: Rsyslog) -> None:
    async with open_sink(**transport_options(rsyslog, "tcp")) as sink:
        assert await sink.healthcheck() == f"tcp://127.0.0.1:{rsyslog.tcp_port}: connected"
    async with open_sink(**transport_options(rsyslog, "tls")) as sink:
        description = await sink.healthcheck()
        assert description.startswith(f"tls://localhost:{rsyslog.tls_port}: connected, TLSv1.")
        assert "server certificate verified" in description
    async with open_sink(**transport_options(rsyslog, "udp")) as sink:
        assert "best-effort" in await sink.healthcheck()
    assert rsyslog.messages() == []


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_close_is_idempotent(rsyslog: Rsyslog, transport: str) -> None:
    async with open_sink(**transport_options(rsyslog, transport)) as sink:
        await sink.close()  # never connected
        await sink.send([make_event(event_id="one")])
        assert await sink.send([]) == SendResult()
        await sink.close()
        await sink.close()
    await rsyslog.wait_for(1)
