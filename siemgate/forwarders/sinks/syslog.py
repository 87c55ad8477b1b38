"""The syslog sink: events as syslog messages over RELP, TCP, TLS or UDP.

Wire formats (`format:`), built by `siemgate.forwarders.formats`:

- `rfc5424` (default): RFC 5424 header, one structured-data element, BOM, the event as JSON.
- `rfc3164`: the legacy BSD header, `TAG:`, the event as JSON.
- `cef`: ArcSight CEF:0; `leef`: QRadar LEEF:2.0. Both are carried in a syslog header
  (`cef_leef_header:` rfc5424 with MSGID `CEF`/`LEEF` and no structured data, or rfc3164
  without TAG), with no BOM so that the receiver's parser sees `CEF:`/`LEEF:` first. LEEF's
  default header is IBM's documented `<PRI>1 yyyy-MM-ddTHH:mm:ss.SSSZ HOST LEEF:...`
  (`leef_header: ibm`; `rfc5424` the full header siemgate wrote before, `rfc3164`; unset:
  rfc3164 when `cef_leef_header` is, else ibm).

Transports (`address:`):

- `relp://host:port` (default port 2514, the port rsyslog's `imrelp` is conventionally given:
  RELP has no IANA port) and `relp+tls://host:port` (the same port by default, TLS as below):
  RELP, the Reliable Event Logging Protocol (`siemgate.forwarders.sinks.relp`). Each message
  is one `syslog` command that the receiver answers with `rsp 200 OK` once it took it; up to
  `relp.window` (default 128) commands await their answer at once. **The only transport
  where "delivered" means the receiver said so**: use it wherever the receiver speaks RELP
  (rsyslog `imrelp`, syslog-ng `syslog-ng-relp`, ...).
- `tcp://host:port` (default port 514): RFC 6587 octet counting (`LEN SP MSG`, default), or
  `framing: lf` (`MSG LF`). No message ever contains an LF (the encoders guarantee it and
  the LF framer replaces any LF by a space besides), so LF framing cannot split a message.
- `tls://host:port` (default port 6514): RFC 5425, always octet counting. The server
  certificate is verified by default (`tls.ca_file`, else the system's CAs); `tls.cert` /
  `tls.key` present a client certificate. Certificate files are read at each (re)connect,
  so a rotated certificate is picked up. `close()` sends TLS close_notify.
- `udp://host:port` (default port 514): RFC 5426, one message per datagram, no framing. A
  message longer than `max_datagram_bytes` (default 2048, the size RFC 5426 says receivers
  should accept) is cut to that many bytes at a UTF-8 character boundary (its header and
  structured data come first and survive). **UDP is best-effort**: nothing tells the sender
  that a datagram was lost; it must not be the only path for events that must arrive.

What "delivered" means over RELP: the receiver answered the message's command `rsp 200`.
`send()` returns once every message of the batch is answered; a message answered 5xx (or an
unknown code) is handed back to be sent again, 4xx is a refusal (dead-lettered with the
answer). If the connection ends first (the receiver stopped, SIGKILLed, said `serverclose`,
answered nothing within `write_timeout_seconds`, or broke the protocol), the messages not
answered yet are handed back too (the runtime sends them again, on a new connection, after
its backoff): a receiver that took one but could not answer makes a duplicate, at most
`relp.window` per connection lost; nothing is lost. A clean `close()` sends `close` and waits
for its answer. Between batches a session that the receiver spoke on (`serverclose`) or
closed is replaced before sending.

What "delivered" means over TCP, TLS and UDP: `send()` returns only after every byte of every message of the
batch was handed to the kernel (`loop.sock_sendall` on the socket; with TLS, every record
that `ssl.SSLObject` produced; UDP: each datagram accepted by the kernel). There is no
buffer in the process left to flush, which asyncio streams cannot promise: their `drain()`
waits only until the buffer is below a high-water mark, and their TLS layer keeps a second
buffer underneath. Syslog has no application-level acknowledgment, so bytes in flight when
the receiver dies are lost to TCP; to narrow that window the sink checks before each batch
that the receiver has not closed the connection (then it reconnects at once), and after
each connect it waits up to `accept_check_seconds` for a receiver that accepts and then
drops the session (rsyslog does that when it refuses a client certificate or a sender), so
that a refused sender is reported instead of every batch vanishing.

One connection is kept open across batches; after any failure it is dropped and the next
`send` connects again (lazily: the runtime's backoff decides when).

Errors: connection refused/reset, timeouts, a receiver closing the connection ->
`RetryableSinkError` (the connection is dropped; the next `send` reconnects; the sink never
sleeps or retries itself). A server certificate that fails verification, or a TLS session
refused because of our client certificate (a certificate alert, or the server hanging up
right after the handshake), or certificate files that cannot be loaded -> `SinkAuthError`:
an operator has to act; the runtime keeps the events and retries. RELP: a receiver that
does not open a session we can use (no `relp_version`, no `syslog` command, open refused)
-> `SinkRefusedError`; one that closes a `relp+tls://` session before answering `open` is
taken for a client-certificate refusal (`SinkAuthError`); one that never answers `open`
(not a RELP port) or breaks the protocol -> `RetryableSinkError`. A connection lost
mid-batch after some messages were acknowledged is not an error: `send` returns those as
delivered and the rest in `SendResult.retry`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import select
import socket
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Final, Literal, NamedTuple
from urllib.parse import urlsplit

from siemgate.errors import (
    ConfigError,
    RelpProtocolError,
    RetryableSinkError,
    ServerRefused,
    SinkAuthError,
    SinkRefusedError,
)
from siemgate.forwarders.formats import syslog as fmt
from siemgate.forwarders.formats.cef import encode_cef
from siemgate.forwarders.formats.leef import encode_leef
from siemgate.forwarders.normalize import NormalizedEvent
from siemgate.forwarders.sinks.base import SendResult, Sink, SinkSettings, TlsSettings
from siemgate.forwarders.sinks.relp import RelpSession
from siemgate.forwarders.sinks.tls import client_context, connection_failure

log = logging.getLogger("siemgate.forward.syslog")

Transport = Literal["tcp", "tls", "udp", "relp", "relp+tls"]
Format = Literal["rfc5424", "rfc3164", "cef", "leef"]
Framing = Literal["octet-counting", "lf"]
Encoder = Callable[[NormalizedEvent], bytes]

# Where this sink connects, for the Helm chart's NetworkPolicy (`make helm-schema` reads it): the
# settings key holding its destination URL, and each URL scheme's port when the URL gives none.
DESTINATION_KEY: Final = "address"
# RELP has no IANA port: 2514 is the one rsyslog's imrelp documentation and most deployments use.
DEFAULT_PORTS: Final[dict[str, int]] = {"tcp": 514, "tls": 6514, "udp": 514, "relp": 2514, "relp+tls": 2514}
TLS_TRANSPORTS: Final = frozenset({"tls", "relp+tls"})
RELP_TRANSPORTS: Final = frozenset({"relp", "relp+tls"})
MAX_WINDOW: Final = 4096
MIN_DATAGRAM: Final = 480  # RFC 5426: every IPv4 receiver must accept this much
MAX_DATAGRAM: Final = 65507  # the UDP payload limit over IPv4
_HUNG_UP: Final = select.POLLHUP | select.POLLERR | getattr(select, "POLLRDHUP", 0)


class Address(NamedTuple):
    transport: Transport
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}://{host}:{self.port}"


def parse_address(text: str) -> Address:
    """`tcp://host:port`, `tls://host:port`, `udp://host:port`, `relp://host:port` or
    `relp+tls://host:port` (IPv6 as `[::1]`); the port defaults to 514 (tcp, udp), 6514 (tls)
    or 2514 (relp, relp+tls). Raises ValueError saying what is wrong."""
    parts = urlsplit(text.strip())
    transport = parts.scheme.lower()
    if transport not in DEFAULT_PORTS:
        raise ValueError("must start with relp://, relp+tls://, tcp://, tls:// or udp://")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError("must be only scheme://host:port")
    if not parts.hostname:
        raise ValueError("has no host")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("has an invalid port (1-65535)") from None
    if port == 0:
        raise ValueError("has an invalid port (1-65535)")
    return Address(transport, parts.hostname, port or DEFAULT_PORTS[transport])  # type: ignore[arg-type]


@dataclass(frozen=True, kw_only=True)
class RelpSettings:
    """`relp:` (relp:// and relp+tls:// only)."""

    # Commands sent and not answered yet, at most (librelp's default). Also the most
    # duplicates one lost connection can make.
    window: int = 128


@dataclass(frozen=True, kw_only=True)
class SyslogSinkSettings(SinkSettings, fmt.SyslogFormatSettings):
    """`type: syslog`. The format keys (facility, hostname, app_name ...) are those of
    `SyslogFormatSettings`."""

    type: ClassVar[str] = "syslog"
    address: str
    format: Format = "rfc5424"
    # TCP only: TLS always counts octets (RFC 5425), UDP has no framing.
    framing: Framing = "octet-counting"
    tls: TlsSettings = field(default_factory=TlsSettings)
    relp: RelpSettings = field(default_factory=RelpSettings)
    max_datagram_bytes: int = 2048
    connect_timeout_seconds: float = 10.0
    write_timeout_seconds: float = 30.0
    # After connecting, how long to watch for a receiver that hangs up on us (0: not at all).
    accept_check_seconds: float = 0.2

    def __post_init__(self) -> None:
        fmt.SyslogFormatSettings.__post_init__(self)
        try:
            address = parse_address(self.address)
        except ValueError as exc:
            raise ConfigError(
                "address", f"{self.address!r} {exc}: write relp://host:port, relp+tls://host:port, "
                "tcp://host:port, tls://host:port or udp://host:port"
            ) from None
        if self.framing == "lf" and address.transport != "tcp":
            raise ConfigError("framing", f"lf applies to tcp:// only ({address.transport}:// has its own framing)")
        if address.transport not in TLS_TRANSPORTS and self.tls != TlsSettings():
            raise ConfigError("tls", "applies to tls:// and relp+tls:// addresses only")
        if address.transport not in RELP_TRANSPORTS and self.relp != RelpSettings():
            raise ConfigError("relp", "applies to relp:// and relp+tls:// addresses only")
        if not 1 <= self.relp.window <= MAX_WINDOW:
            raise ConfigError("relp.window", f"must be 1-{MAX_WINDOW}")
        if self.tls.key is not None and self.tls.cert is None:
            raise ConfigError("tls.cert", "is required with tls.key (the client certificate)")
        if not MIN_DATAGRAM <= self.max_datagram_bytes <= MAX_DATAGRAM:
            raise ConfigError("max_datagram_bytes", f"must be {MIN_DATAGRAM}-{MAX_DATAGRAM}")
        for key in ("connect_timeout_seconds", "write_timeout_seconds"):
            if getattr(self, key) <= 0:
                raise ConfigError(key, "must be positive")
        if self.accept_check_seconds < 0:
            raise ConfigError("accept_check_seconds", "must be 0 or more")

    @property
    def target(self) -> Address:
        return parse_address(self.address)


SYSLOG_FIELDS: Final = frozenset({"timestamp", "event_type", "rule", "rule_id", "source_ip"})


def build_encoder(settings: fmt.SyslogFormatSettings, wire_format: Format) -> Encoder:
    """The function that turns one event into one message of `wire_format` (no framing)."""
    if wire_format == "rfc5424":
        return fmt.Rfc5424Encoder(settings)
    if wire_format == "rfc3164":
        return lambda event: fmt.rfc3164(event, settings)
    host = fmt.resolved_hostname(settings)
    product = {"vendor": settings.vendor, "product": settings.product, "version": settings.product_version}

    def payload(event: NormalizedEvent) -> bytes:
        if wire_format == "cef":
            return encode_cef(event, device_host=host, **product)
        return encode_leef(event, **product)

    header = settings.cef_leef_header if wire_format == "cef" else settings.leef_wrapper
    if header == "ibm":
        return lambda event: b"".join((fmt.utf8(fmt.ibm_header(event, settings)), b" ", payload(event)))
    if header == "rfc3164":
        return lambda event: b"".join((fmt.utf8(fmt.rfc3164_header(event, settings)), b" ", payload(event)))
    message_id = "CEF" if wire_format == "cef" else "LEEF"
    return lambda event: b"".join(
        (fmt.utf8(fmt.rfc5424_header(event, settings, message_id=message_id)), b" - ", payload(event))
    )


def octet_counted(message: bytes) -> bytes:
    """RFC 6587 3.4.1 / RFC 5425: `MSG-LEN SP SYSLOG-MSG`."""
    return b"%d %b" % (len(message), message)


def lf_terminated(message: bytes) -> bytes:
    """RFC 6587 3.4.2 with LF as trailer; an LF inside the message becomes a space."""
    return message.replace(b"\n", b" ") + b"\n"


def octet_counted_stream(messages: Sequence[bytes]) -> bytes:
    """The messages framed by `octet_counted`, one after the other (each copied once)."""
    parts: list[bytes] = []
    for message in messages:
        parts += (b"%d " % len(message), message)
    return b"".join(parts)


def lf_terminated_stream(messages: Sequence[bytes]) -> bytes:
    """The messages framed by `lf_terminated`, one after the other."""
    return b"".join([lf_terminated(message) for message in messages])


class _Channel:
    """One TCP connection, TLS optional, on a non-blocking socket driven by the event loop.

    TLS runs through an `ssl.SSLObject` over memory BIOs rather than an asyncio transport,
    so that `write()` returns exactly when every byte (every TLS record) is in the kernel:
    asyncio's stream `drain()` only waits for its buffers to drop below a high-water mark,
    and its TLS layer keeps a second buffer underneath that `drain()` does not cover."""

    def __init__(self, sock: socket.socket, tls: ssl.SSLObject | None = None) -> None:
        self.sock = sock
        self.tls = tls
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._loop = asyncio.get_running_loop()

    @classmethod
    async def open(cls, target: Address, context: ssl.SSLContext | None) -> _Channel:
        """Connect (each resolved address in turn) and, with a context, do the TLS handshake."""
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
        error: OSError = OSError(f"{target.host} resolves to no address")
        for family, kind, proto, _, address in infos:
            sock = socket.socket(family, kind, proto)
            try:
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
                await loop.sock_connect(sock, address)
            except OSError as exc:
                sock.close()
                error = exc
                continue
            except BaseException:
                sock.close()
                raise
            channel = cls(sock)
            if context is not None:
                try:
                    await channel._handshake(context, target.host)
                except BaseException:
                    channel.abort()
                    raise
            return channel
        raise error

    async def _handshake(self, context: ssl.SSLContext, host: str) -> None:
        self.tls = tls = context.wrap_bio(self._incoming, self._outgoing, server_side=False, server_hostname=host)
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                pass
            await self._flush()
            data = await self._loop.sock_recv(self.sock, 65536)
            if not data:
                raise ConnectionResetError("the server closed the connection during the TLS handshake")
            self._incoming.write(data)
        await self._flush()  # our Finished (and certificate, with TLS 1.3)

    async def _flush(self) -> None:
        data = self._outgoing.read()
        if data:
            await self._loop.sock_sendall(self.sock, data)

    async def write(self, data: bytes) -> None:
        """Returns once all of `data` is handed to the kernel."""
        if self.tls is None:
            await self._loop.sock_sendall(self.sock, data)
            return
        self.tls.write(data)
        await self._flush()

    async def read(self) -> bytes:
        """What the peer sends next: b"" when it closes. TLS alerts raise ssl.SSLError.

        With TLS, plaintext already decrypted (or records already received) is returned
        before the socket is read again: one recv can bring several records."""
        if self.tls is None:
            return await self._loop.sock_recv(self.sock, 65536)
        while True:
            try:
                return self.tls.read(65536)
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return b""
            except ssl.SSLWantReadError:
                if self._incoming.eof:
                    return b""
            await self._flush()  # what reading produced (a TLS 1.3 key update answer)
            data = await self._loop.sock_recv(self.sock, 65536)
            if data:
                self._incoming.write(data)
            else:
                self._incoming.write_eof()

    def hung_up(self) -> bool:
        """Whether the receiver closed or reset the connection (a syslog receiver never sends
        anything, so this looks at the socket's state only, without reading)."""
        if self.sock.fileno() < 0:
            return True
        poller = select.poll()
        poller.register(self.sock, select.POLLIN | _HUNG_UP)
        return any(events & _HUNG_UP for _, events in poller.poll(0))

    def has_news(self) -> bool:
        """Whether the peer closed the connection or sent something (RELP between batches:
        a `serverclose`, or bytes where nothing was due)."""
        if self.sock.fileno() < 0 or (self.tls is not None and (self.tls.pending() or self._incoming.pending)):
            return True
        poller = select.poll()
        poller.register(self.sock, select.POLLIN | _HUNG_UP)
        return bool(poller.poll(0))

    async def close(self, timeout: float) -> None:
        """TLS: send close_notify (without waiting for the peer's); then close the socket."""
        try:
            if self.tls is not None and self.sock.fileno() >= 0:
                with contextlib.suppress(ssl.SSLError):
                    self.tls.unwrap()
                async with asyncio.timeout(timeout):
                    await self._flush()
        except (OSError, TimeoutError):
            pass
        finally:
            self.abort()

    def abort(self) -> None:
        self.sock.close()


class SyslogSink(Sink[SyslogSinkSettings]):
    def __init__(self, settings: SyslogSinkSettings) -> None:
        super().__init__(settings)
        self._target = settings.target
        self._encode = build_encoder(settings, settings.format)
        if settings.format in ("rfc5424", "rfc3164"):
            # What these formats read besides the record's own fields; CEF and LEEF use all.
            self.normalized_fields = SYSLOG_FIELDS
        lf = settings.framing == "lf" and self._target.transport == "tcp"
        self._stream: Callable[[Sequence[bytes]], bytes] = lf_terminated_stream if lf else octet_counted_stream
        self._channel: _Channel | None = None
        self._relp: RelpSession | None = None
        self._udp: socket.socket | None = None
        self._lock = asyncio.Lock()
        # RELP: events handed back to be sent again because the connection ended before their
        # answer came (each one a possible duplicate at the receiver).
        self.resent = 0

    async def send(self, events: Sequence[NormalizedEvent]) -> SendResult:
        if not events:
            return SendResult()
        messages = [self._encode(event) for event in events]
        async with self._lock:
            if self._target.transport in RELP_TRANSPORTS:
                return await self._send_relp(messages)
            if self._target.transport == "udp":
                await self._send_datagrams(messages)
            else:
                await self._send_stream(self._stream(messages))
        return SendResult()

    # -- RELP -------------------------------------------------------------------------------

    async def _send_relp(self, messages: list[bytes]) -> SendResult:
        session = self._relp
        if session is not None and self._channel is not None and self._channel.has_news():
            # Between batches nothing is due from the receiver: it said serverclose, hung up,
            # or sent garbage. A new session, before anything is sent on the old one.
            log.info("the RELP receiver closed the session between batches: reconnecting",
                     extra={"sink": self.name, "target": str(self._target)})
            self._drop()
            session = None
        if session is None:
            session = await self._open_relp()
        delivery = await session.deliver(messages)
        if delivery.broken is not None:
            self._relp = self._channel = None  # the session closed its connection
        retry: list[int] = []
        rejected: list[tuple[int, str]] = []
        for index, code in enumerate(delivery.codes):
            if code == 200:
                continue
            if code is not None and 400 <= code < 500:
                text = delivery.texts.get(index, "")
                rejected.append((index, f"relp_refused: the receiver answered {code} {text}".rstrip()))
            else:
                retry.append(index)  # no answer, 5xx, or a code RELP does not define: again
        acked = len(messages) - len(retry) - len(rejected)
        if delivery.broken is not None:
            self.resent += delivery.unanswered
            if acked == 0 and not rejected:
                raise RetryableSinkError(
                    f"{self._target}: {delivery.broken}; none of the {len(messages)} messages was acknowledged "
                    f"({delivery.unanswered} were unanswered): all are sent again"
                )
            log.warning(
                "RELP connection lost mid-batch: the unacknowledged events are sent again on a new connection",
                extra={"sink": self.name, "target": str(self._target), "reason": delivery.broken,
                       "acknowledged": acked, "resent": len(retry), "unanswered": delivery.unanswered},
            )
        elif retry:
            codes = sorted({str(delivery.codes[i]) for i in retry})
            log.warning("the RELP receiver answered errors: those events are sent again",
                        extra={"sink": self.name, "count": len(retry), "codes": codes})
        return SendResult(retry=tuple(retry), rejected=tuple(rejected))

    async def _open_relp(self) -> RelpSession:
        """Connect and open a RELP session (the `open` answer is the receiver's acceptance)."""
        channel = await self._connect()
        session = RelpSession(channel, window=self.settings.relp.window, timeout=self.settings.write_timeout_seconds)
        target = self._target
        try:
            await session.open()
        except ServerRefused as exc:
            session.abort()
            raise SinkRefusedError(f"{target}: {exc}") from None
        except TimeoutError:
            session.abort()
            raise RetryableSinkError(
                f"{target}: no answer to RELP open within {self.settings.write_timeout_seconds}s "
                "(is this a RELP port? rsyslog: imrelp)"
            ) from None
        except RelpProtocolError as exc:
            session.abort()
            raise RetryableSinkError(f"{target}: the receiver does not speak RELP: {exc}") from None
        except (ConnectionResetError, BrokenPipeError) as exc:
            # A reset, or our `open` written after the server had closed (EPIPE): which one
            # comes depends on timing.
            session.abort()
            if target.transport == "relp+tls":
                raise SinkAuthError(
                    f"{target}: the server closed the TLS session before answering RELP open: it most likely "
                    "refused our client certificate (tls.cert/tls.key: missing, untrusted or the wrong name)"
                ) from None
            raise RetryableSinkError(f"{target}: the receiver closed the connection before answering RELP open: "
                                     f"{exc}") from None
        except (OSError, ssl.SSLError) as exc:
            session.abort()
            raise self._error("RELP open failed", exc) from exc
        except BaseException:
            session.abort()
            raise
        self._channel, self._relp = channel, session
        return session

    # -- TCP and TLS ------------------------------------------------------------------------

    async def _send_stream(self, data: bytes) -> None:
        channel = self._channel
        if channel is not None and channel.hung_up():
            self._drop()
            channel = None
        if channel is None:
            channel = self._channel = await self._connect()
        try:
            async with asyncio.timeout(self.settings.write_timeout_seconds):
                await channel.write(data)
        except TimeoutError:
            self._drop()
            raise RetryableSinkError(
                f"{self._target}: could not write within {self.settings.write_timeout_seconds}s"
            ) from None
        except (OSError, ssl.SSLError) as exc:
            self._drop()
            raise self._error("write failed", exc) from exc
        except BaseException:
            self._drop()  # cancelled mid-write: the stream may hold half a frame
            raise

    async def _connect(self) -> _Channel:
        target = self._target
        context = self._tls_context() if target.transport in TLS_TRANSPORTS else None
        timeout = self.settings.connect_timeout_seconds
        try:
            async with asyncio.timeout(timeout):
                channel = await _Channel.open(target, context)
        except TimeoutError:
            raise RetryableSinkError(f"{target}: no connection within {timeout}s") from None
        except (OSError, ssl.SSLError) as exc:
            raise self._error("cannot connect", exc) from exc
        if target.transport in RELP_TRANSPORTS:
            return channel  # the answer to RELP open says whether the receiver accepted us
        try:
            await self._accept_check(channel)
        except BaseException:
            channel.abort()
            raise
        return channel

    async def _accept_check(self, channel: _Channel) -> None:
        """Give the receiver `accept_check_seconds` to hang up on the session it accepted."""
        wait = self.settings.accept_check_seconds
        if wait <= 0:
            return
        try:
            async with asyncio.timeout(wait):
                data = await channel.read()
        except TimeoutError:
            return  # still open: accepted
        except (OSError, ssl.SSLError) as exc:
            raise self._error("the receiver dropped the new connection", exc) from exc
        if data:
            return  # a receiver that talks: unusual, but not a refusal
        if self._target.transport == "tls":
            raise SinkAuthError(
                f"{self._target}: the server closed the TLS session right after the handshake: it most likely "
                "refused our client certificate (tls.cert/tls.key: missing, untrusted or the wrong name)"
            )
        raise RetryableSinkError(
            f"{self._target}: the receiver closed the connection right after accepting it "
            "(is this sender allowed? too many sessions?)"
        )

    def _tls_context(self) -> ssl.SSLContext:
        return client_context(self.settings.tls, str(self._target))

    def _error(self, what: str, exc: BaseException) -> RetryableSinkError | SinkAuthError:
        return connection_failure(str(self._target), self._target.host, what, exc)

    def _drop(self) -> None:
        channel, self._channel = self._channel, None
        self._relp = None
        if channel is not None:
            channel.abort()

    # -- UDP --------------------------------------------------------------------------------

    async def _send_datagrams(self, messages: list[bytes]) -> None:
        limit = self.settings.max_datagram_bytes
        datagrams = [fmt.truncate_utf8(m, limit) for m in messages]
        cut = sum(len(d) < len(m) for d, m in zip(datagrams, messages, strict=True))
        if cut:
            log.warning(
                "syslog messages cut to max_datagram_bytes",
                extra={"sink": self.name, "count": cut, "max_datagram_bytes": limit},
            )
        loop = asyncio.get_running_loop()
        try:
            sock = self._udp or await self._udp_socket()
            async with asyncio.timeout(self.settings.write_timeout_seconds):
                for datagram in datagrams:
                    await loop.sock_sendall(sock, datagram)
        except TimeoutError:
            self._close_udp()
            raise RetryableSinkError(
                f"{self._target}: could not send within {self.settings.write_timeout_seconds}s"
            ) from None
        except OSError as exc:
            self._close_udp()
            raise self._error("send failed", exc) from exc

    async def _udp_socket(self) -> socket.socket:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(self._target.host, self._target.port, type=socket.SOCK_DGRAM)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            # A connected UDP socket: the kernel reports an ICMP "port unreachable" on a later send.
            await loop.sock_connect(sock, address)
        except BaseException:
            sock.close()
            raise
        self._udp = sock
        return sock

    def _close_udp(self) -> None:
        sock, self._udp = self._udp, None
        if sock is not None:
            sock.close()

    # -- lifecycle --------------------------------------------------------------------------

    async def healthcheck(self) -> str:
        target = self._target
        if target.transport == "udp":
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(target.host, target.port, type=socket.SOCK_DGRAM)
            except OSError as exc:
                raise RetryableSinkError(f"{target}: cannot resolve {target.host}: {exc}") from exc
            return f"{target}: resolves to {infos[0][4][0]} (UDP is best-effort: delivery cannot be checked)"
        if target.transport in RELP_TRANSPORTS:
            async with self._lock:
                session = self._relp or await self._open_relp()
                self._relp = self._channel = None
                try:
                    software = session.server_offers.get("relp_software", "unnamed").split(",")[0]
                    return f"{target}: connected, RELP session open (receiver: {software}){self._tls_text(session)}"
                finally:
                    await session.close(self.settings.connect_timeout_seconds)
        channel = await self._connect()
        try:
            if channel.tls is not None:
                verified = "server certificate verified" if self.settings.tls.verify else "server NOT verified"
                return f"{target}: connected, {channel.tls.version()}, {verified}"
            return f"{target}: connected"
        finally:
            await channel.close(self.settings.connect_timeout_seconds)

    def _tls_text(self, session: RelpSession) -> str:
        channel = session.channel
        if not isinstance(channel, _Channel) or channel.tls is None:
            return ""
        verified = "server certificate verified" if self.settings.tls.verify else "server NOT verified"
        return f", {channel.tls.version()}, {verified}"

    async def close(self) -> None:
        """Close the connection (RELP: `close` and its answer first; TLS: with close_notify)
        or the UDP socket; idempotent."""
        channel, self._channel = self._channel, None
        session, self._relp = self._relp, None
        if session is not None:
            await session.close(self.settings.connect_timeout_seconds)
        elif channel is not None:
            await channel.close(self.settings.connect_timeout_seconds)
        self._close_udp()


__all__: Sequence[str] = (
    "DEFAULT_PORTS", "DESTINATION_KEY", "RelpSettings", "SyslogSink",
    "SyslogSinkSettings", "build_encoder", "parse_address",
)
