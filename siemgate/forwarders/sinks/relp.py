"""RELP, the Reliable Event Logging Protocol: the frame codec and a client session.

Written from the specification (librelp's "RELP - The Reliable Event Logging Protocol";
docs/PROTOCOLS.md, "Syslog", cites it); no code of librelp is used or copied. What it says, and
what this module does with it:

    RELP-FRAME = TXNR SP COMMAND SP DATALEN [SP DATA] TRAILER
    TXNR       = 1*9DIGIT   1 for a session's first command, +1 per command, 999,999,999 is
                            followed by 1; 0 is reserved for hints (the server's `serverclose`)
    COMMAND    = 1*32ALPHA  open, syslog, close (client); rsp (server); serverclose (hint)
    DATALEN    = 1*9DIGIT   the octets of DATA; 0: neither the SP nor DATA
    TRAILER    = LF
    rsp DATA   = 3DIGIT [SP HUMAN-TEXT] [LF CMDDATA]    200 is OK, anything else an error

- **open**: the client's first command carries its offers, one `name=value` per line:
  `relp_version=0` (the version librelp and rsyslog speak), `relp_software=siemgate,<version>,<url>`
  and `commands=syslog`. The server answers `rsp 200 OK` followed by the offers it accepts; the
  session is usable only once that answer came, it names a `relp_version`, and its `commands`
  include `syslog` (a server that does not offer it must not be sent syslog commands).
- **syslog**: one message per command; the server answers each with an `rsp` of the same
  txnr, in the order it received them. Up to `window` commands may await their answer at
  once (librelp's default is 128).
- **serverclose** (txnr 0, a hint, never answered): the server is going away; no answer
  will follow it. The session stops sending and gives back what was not answered.
- **close**: on a clean stop the client sends `close` and waits (briefly) for its `rsp`.
- **Errors**: whoever sees the protocol broken closes the connection without further ado
  (the specification asks for exactly that, so that a hostile peer gets no foothold): a
  frame that does not parse, a DATALEN beyond what an answer can need (`max_data`), a
  command a server may not send, an `rsp` for a txnr that is not awaiting one. Every
  command without an answer then counts as not done: it is sent again on the next
  connection (a duplicate if the server had taken it; never a loss).

`RelpSession.deliver` sends a batch and returns, per message, the code of its answer, or
None when the connection ended first; the syslog sink turns that into "delivered" (200),
"send again" (None, 5xx, anything unknown) or "refused" (4xx).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, NamedTuple, Protocol

from siemgate import __version__
from siemgate.errors import RelpProtocolError, ServerRefused

MAX_TXNR: Final = 999_999_999
MAX_NUMBER_DIGITS: Final = 9
MAX_COMMAND: Final = 32
# An answer's DATA is a status line plus, for `open`, the server's offers: a few hundred
# bytes. A longer one is refused (the specification warns that a large DATALEN is a
# denial-of-service vector).
MAX_RESPONSE_DATA: Final = 64 * 1024
SOFTWARE: Final = f"siemgate,{__version__},https://github.com/siemgate/siemgate"
OFFERS: Final = f"relp_version=0\nrelp_software={SOFTWARE}\ncommands=syslog".encode()

_HEADER: Final = re.compile(rb"(\d{1,9}) ([A-Za-z]{1,32}) (\d{1,9})([ \n])")
# What a header may look like while it is still arriving (a read can end anywhere in it).
_HEADER_PREFIX: Final = re.compile(rb"\d{1,9}(?: (?:[A-Za-z]{1,32}(?: (?:\d{1,9})?)?)?)?\Z")
_HEADER_MAX: Final = 2 * MAX_NUMBER_DIGITS + MAX_COMMAND + 3


class Frame(NamedTuple):
    txnr: int
    command: str
    data: bytes


class Response(NamedTuple):
    code: int
    text: str
    data: bytes


def encode_frame(txnr: int, command: str, data: bytes = b"") -> bytes:
    """`TXNR SP COMMAND SP DATALEN [SP DATA] LF`."""
    if not 0 <= txnr <= MAX_TXNR:
        raise ValueError(f"txnr {txnr} is outside 0-{MAX_TXNR}")
    if not data:
        return b"%d %s 0\n" % (txnr, command.encode("ascii"))
    return b"%d %s %d %b\n" % (txnr, command.encode("ascii"), len(data), data)


def next_txnr(txnr: int) -> int:
    """The txnr after `txnr`: 999,999,999 is followed by 1 (0 is for hints only)."""
    return 1 if txnr >= MAX_TXNR else txnr + 1


class FrameDecoder:
    """Frames out of a byte stream that arrives in pieces of any size. `feed` returns the
    frames completed so far; garbage raises RelpProtocolError (the decoder is then spent)."""

    def __init__(self, max_data: int = MAX_RESPONSE_DATA) -> None:
        self.max_data = max_data
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        buffer = self._buffer
        buffer += data
        frames: list[Frame] = []
        position = 0
        size = len(buffer)
        while position < size:
            header = _HEADER.match(buffer, position)
            if header is None:
                rest = bytes(buffer[position : position + _HEADER_MAX + 1])
                if len(rest) > _HEADER_MAX or not _HEADER_PREFIX.match(rest):
                    raise RelpProtocolError(f"not a RELP frame: {rest[:40]!r}")
                break  # a header still arriving
            txnr_text, command, length_text, separator = header.groups()
            length = int(length_text)
            if length > self.max_data:
                raise RelpProtocolError(f"a frame announces {length} bytes of data (at most {self.max_data} expected)")
            start = header.end()
            if length == 0:
                if separator != b"\n":
                    raise RelpProtocolError(f"a frame with DATALEN 0 must end after it: {bytes(header.group())!r}")
                frames.append(Frame(int(txnr_text), command.decode("ascii"), b""))
                position = start
                continue
            if separator != b" ":
                raise RelpProtocolError(f"DATALEN {length} but no data follows: {bytes(header.group())!r}")
            end = start + length
            if end >= size:
                break  # data or trailer still arriving
            if buffer[end] != 0x0A:
                raise RelpProtocolError(f"the frame of txnr {int(txnr_text)} does not end with LF after {length} bytes")
            frames.append(Frame(int(txnr_text), command.decode("ascii"), bytes(buffer[start:end])))
            position = end + 1
        del buffer[:position]
        return frames


def parse_response(data: bytes) -> Response:
    """An `rsp` frame's DATA: `CODE [SP HUMAN-TEXT] [LF DATA]`."""
    line, _, rest = data.partition(b"\n")
    code, _, text = line.partition(b" ")
    if len(code) != 3 or not code.isdigit():
        raise RelpProtocolError(f"an rsp without a status code: {data[:40]!r}")
    return Response(int(code), text.decode("utf-8", "replace"), rest)


def parse_offers(data: bytes) -> dict[str, str]:
    """The offers of an `open` (or of its answer): `name[=value]` per line."""
    offers = {}
    for line in data.split(b"\n"):
        if line.strip():
            name, _, value = line.decode("utf-8", "replace").partition("=")
            offers[name.strip()] = value.strip()
    return offers


class Channel(Protocol):
    """What a session runs over: the syslog sink's TCP/TLS connection."""

    async def write(self, data: bytes) -> None: ...
    async def read(self) -> bytes: ...
    def abort(self) -> None: ...
    async def close(self, timeout: float) -> None: ...


@dataclass
class Delivery:
    """The outcome of `RelpSession.deliver`: per message, its answer's code (None: none came,
    the connection ended first) and text; `broken`: why the connection ended, if it did."""

    codes: list[int | None]
    texts: dict[int, str]
    broken: str | None = None
    # Sent but not answered when the connection ended (at most the window): the server may
    # have taken them, so sending them again may make duplicates.
    unanswered: int = 0


class RelpSession:
    """One RELP session over an open channel. Not safe for concurrent use (the sink holds a
    lock): `open`, then `deliver` any number of times, then `close`."""

    def __init__(self, channel: Channel, *, window: int, timeout: float) -> None:
        self.channel = channel
        self.window = window
        self.timeout = timeout
        self.server_offers: dict[str, str] = {}
        self.usable = False
        self._txnr = 0
        self._decoder = FrameDecoder()
        self._frames: list[Frame] = []

    def _next(self) -> int:
        self._txnr = next_txnr(self._txnr)
        return self._txnr

    async def _receive(self) -> list[Frame]:
        """The frames that arrive next (at least one). Raises TimeoutError when nothing comes
        within `timeout`, ConnectionResetError when the server closes the connection."""
        while not self._frames:
            async with asyncio.timeout(self.timeout):
                data = await self.channel.read()
            if not data:
                raise ConnectionResetError("the server closed the connection")
            self._frames = self._decoder.feed(data)
        frames, self._frames = self._frames, []
        return frames

    async def open(self) -> dict[str, str]:
        """Send `open` with our offers and check the server's. Returns its offers. Raises
        ServerRefused, RelpProtocolError, OSError, ssl.SSLError or TimeoutError."""
        txnr = self._next()
        async with asyncio.timeout(self.timeout):
            await self.channel.write(encode_frame(txnr, "open", OFFERS))
        while True:
            for frame in await self._receive():
                if frame.txnr == 0 and frame.command == "serverclose":
                    raise ConnectionResetError("the server is closing (serverclose) instead of opening a session")
                if frame.command != "rsp" or frame.txnr != txnr:
                    raise RelpProtocolError(f"expected the answer to open, got {frame.command!r} (txnr {frame.txnr})")
                response = parse_response(frame.data)
                if response.code != 200:
                    raise ServerRefused(f"the server refused to open a session: {response.code} {response.text}")
                offers = parse_offers(response.data)
                if "relp_version" not in offers:
                    raise ServerRefused("the server's answer to open has no relp_version offer")
                commands = {c.strip() for c in offers.get("commands", "").split(",")}
                if "syslog" not in commands:
                    raise ServerRefused(f"the server does not offer the syslog command (it offers {offers})")
                self.server_offers = offers
                self.usable = True
                return offers

    async def deliver(self, messages: Sequence[bytes]) -> Delivery:
        """Send each message as a `syslog` command, at most `window` unanswered at once, and
        collect the answers. Returns when every message is answered or the connection ended
        (then `broken` says why; the channel is closed and the session unusable)."""
        codes: list[int | None] = [None] * len(messages)
        texts: dict[int, str] = {}
        waiting: dict[int, int] = {}  # txnr -> index of its message
        sent = 0
        try:
            while sent < len(messages) or waiting:
                room = self.window - len(waiting)
                if room > 0 and sent < len(messages):
                    frames = []
                    for index in range(sent, min(len(messages), sent + room)):
                        txnr = self._next()
                        waiting[txnr] = index
                        frames.append(encode_frame(txnr, "syslog", messages[index]))
                    sent += len(frames)
                    async with asyncio.timeout(self.timeout):
                        await self.channel.write(b"".join(frames))
                for frame in await self._receive():
                    if frame.txnr == 0:
                        if frame.command == "serverclose":
                            raise ConnectionResetError("the server is going away (serverclose)")
                        continue  # another hint: hints need no answer and may be ignored
                    if frame.command != "rsp":
                        raise RelpProtocolError(f"a server sent the command {frame.command!r} (txnr {frame.txnr})")
                    index = waiting.pop(frame.txnr, -1)
                    if index < 0:
                        raise RelpProtocolError(f"an rsp for txnr {frame.txnr}, which awaits no answer")
                    response = parse_response(frame.data)
                    codes[index] = response.code
                    if response.code != 200:
                        texts[index] = response.text
        except TimeoutError:
            reason = f"no answer within {self.timeout}s (write_timeout_seconds)"
        except RelpProtocolError as exc:
            reason = f"protocol error: {exc}"
        except (OSError, ssl.SSLError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
        except BaseException:
            self.abort()  # cancelled mid-batch: the stream may hold half a frame
            raise
        else:
            return Delivery(codes, texts)
        self.abort()
        return Delivery(codes, texts, reason, unanswered=len(waiting))

    def abort(self) -> None:
        self.usable = False
        self.channel.abort()

    async def close(self, timeout: float) -> None:
        """A clean stop: `close`, its answer awaited up to `timeout`, then the connection closed."""
        if self.usable:
            self.usable = False
            with contextlib.suppress(OSError, ssl.SSLError, TimeoutError, RelpProtocolError):
                async with asyncio.timeout(timeout):
                    txnr = self._next()
                    await self.channel.write(encode_frame(txnr, "close"))
                    self.timeout = timeout
                    while not any(f.txnr == txnr and f.command == "rsp" for f in await self._receive()):
                        pass
        await self.channel.close(timeout)


__all__: Sequence[str] = (
    "Delivery", "Frame", "FrameDecoder", "RelpProtocolError", "RelpSession", "Response", "ServerRefused",
    "encode_frame", "next_txnr", "parse_offers", "parse_response",
)
