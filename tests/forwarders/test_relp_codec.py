"""The RELP frame codec and session against hostile input: frames split anywhere across reads,
garbage, DATALEN too large, answers for txnrs that await none, a server that goes silent or
away. A broken peer ends the connection (the batch's unanswered messages are given back to be
sent again), never the process."""

from __future__ import annotations

import asyncio
import random

import pytest

from siemgate.errors import RelpProtocolError, ServerRefused
from siemgate.forwarders.sinks.relp import (
    MAX_TXNR,
    OFFERS,
    Frame,
    FrameDecoder,
    RelpSession,
    encode_frame,
    next_txnr,
    parse_offers,
    parse_response,
)

pytestmark = pytest.mark.anyio

OPEN_OK = b"200 OK\nrelp_version=0\nrelp_software=librelp,1.11.0,http://librelp.adiscon.com\ncommands=syslog"


def test_encode() -> None:
    assert encode_frame(1, "syslog", b"<13>hello") == b"1 syslog 9 <13>hello\n"
    assert encode_frame(7, "close") == b"7 close 0\n"
    assert encode_frame(0, "serverclose") == b"0 serverclose 0\n"
    assert encode_frame(2, "syslog", "é\n".encode()) == b"2 syslog 3 \xc3\xa9\n\n"  # DATALEN counts octets
    with pytest.raises(ValueError):
        encode_frame(MAX_TXNR + 1, "syslog", b"x")


def test_txnr_wraps_to_1_never_0() -> None:
    assert next_txnr(0) == 1
    assert next_txnr(41) == 42
    assert next_txnr(MAX_TXNR) == 1


def test_the_open_offers() -> None:
    offers = parse_offers(OFFERS)
    assert offers["relp_version"] == "0"
    assert offers["commands"] == "syslog"
    assert offers["relp_software"].startswith("siemgate,")


def test_decode_round_trip_split_at_every_byte() -> None:
    frames = [Frame(1, "rsp", OPEN_OK), Frame(2, "rsp", b"200 OK"), Frame(0, "serverclose", b""),
              Frame(3, "rsp", b"500 error\nmore\ndata"), Frame(MAX_TXNR, "rsp", b"200 OK")]
    stream = b"".join(encode_frame(*f) for f in frames)
    for cut in range(len(stream) + 1):  # every split point of two reads
        decoder = FrameDecoder()
        assert decoder.feed(stream[:cut]) + decoder.feed(stream[cut:]) == frames
    decoder = FrameDecoder()
    got = [f for byte in range(len(stream)) for f in decoder.feed(stream[byte : byte + 1])]  # one byte per read
    assert got == frames
    rng = random.Random(20)
    for _ in range(200):  # random reads
        decoder, got, position = FrameDecoder(), [], 0
        while position < len(stream):
            step = rng.randint(1, 40)
            got += decoder.feed(stream[position : position + step])
            position += step
        assert got == frames


def test_data_containing_lf_and_frame_lookalikes() -> None:
    tricky = b"1 rsp 6 200 OK\n2 rsp"
    assert FrameDecoder().feed(encode_frame(5, "syslog", tricky)) == [Frame(5, "syslog", tricky)]


@pytest.mark.parametrize("garbage", [
    b"HTTP/1.1 400 Bad Request\r\n",
    b"hello\n",
    b"1 rsp x\n",
    b"1  rsp 6 200 OK\n",
    b"-1 rsp 6 200 OK\n",
    b"1234567890 rsp 6 200 OK\n",          # txnr of 10 digits
    b"1 rsp 1234567890 ",                   # DATALEN of 10 digits
    b"1 " + b"r" * 33 + b" 0\n",            # command longer than 32
    b"1 rsp 6 200 OKX",                     # no LF after DATALEN bytes
    b"1 rsp 0 \n",                          # DATALEN 0 followed by SP
    b"1 rsp 6\n200 OK\n",                   # DATALEN 6 but LF instead of SP
    b"1 rs\xffp 0\n",
    b"\x16\x03\x01\x02\x00",                # a TLS ClientHello where RELP was expected
    b"9" * 100,                             # digits forever
])  # fmt: skip
def test_garbage_is_a_protocol_error(garbage: bytes) -> None:
    decoder = FrameDecoder()
    with pytest.raises(RelpProtocolError):
        # Garbage is seen as soon as it cannot be the start of a frame, or at the latest
        # when enough arrived to tell.
        decoder.feed(garbage)
        decoder.feed(b"\n" * 60)


def test_datalen_too_large_is_refused_before_the_data_arrives() -> None:
    decoder = FrameDecoder(max_data=1024)
    with pytest.raises(RelpProtocolError, match="announces 999999999 bytes"):
        decoder.feed(b"1 rsp 999999999 ")
    assert FrameDecoder(max_data=1024).feed(encode_frame(1, "rsp", b"2" * 1024)) == [Frame(1, "rsp", b"2" * 1024)]


def test_parse_response() -> None:
    assert parse_response(b"200 OK") == (200, "OK", b"")
    assert parse_response(b"500 error: queue full\nx") == (500, "error: queue full", b"x")
    assert parse_response(b"200") == (200, "", b"")
    for bad in (b"", b"OK", b"20 OK", b"2000 OK", b"abc OK"):
        with pytest.raises(RelpProtocolError):
            parse_response(bad)


# -- the session, over a real loopback connection ------------------------------------------


class LoopbackChannel:
    """The session's channel over an asyncio stream (the sink uses its own; same contract)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def write(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def read(self) -> bytes:
        return await self.reader.read(65536)

    def abort(self) -> None:
        self.writer.transport.abort()
        self.writer.close()

    async def close(self, timeout: float) -> None:
        self.writer.close()


class Server:
    """A scripted RELP server: `handler(received_frames, writer)` decides what to send."""

    def __init__(self, answer: object) -> None:
        self.answer = answer
        self.received: list[Frame] = []
        self.connections = 0
        self.writers: list[asyncio.StreamWriter] = []
        self.tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Server:
        self.server = await asyncio.start_server(self.serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        for writer in self.writers:  # each connection ends: its handler returns
            writer.transport.abort()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.server.wait_closed()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        self.tasks.append(asyncio.current_task())  # type: ignore[arg-type]
        decoder = FrameDecoder(max_data=1 << 20)
        try:
            while data := await reader.read(65536):
                for frame in decoder.feed(data):
                    self.received.append(frame)
                    reply = self.answer(frame)  # type: ignore[operator]
                    if reply is None:
                        continue
                    if reply == b"HANGUP":
                        writer.transport.abort()
                        return
                    writer.write(reply)
                await writer.drain()
        except (OSError, RelpProtocolError):
            pass
        finally:
            writer.close()

    async def session(self, window: int = 4, timeout: float = 2.0) -> RelpSession:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        session = RelpSession(LoopbackChannel(reader, writer), window=window, timeout=timeout)
        try:
            await session.open()
        except BaseException:
            session.abort()
            raise
        return session


def well_behaved(frame: Frame) -> bytes | None:
    if frame.command == "open":
        return encode_frame(frame.txnr, "rsp", OPEN_OK)
    return encode_frame(frame.txnr, "rsp", b"200 OK")


async def test_open_syslog_close() -> None:
    async with Server(well_behaved) as server:
        session = await server.session(window=3)
        assert session.server_offers["relp_version"] == "0"
        delivery = await session.deliver([b"m%d" % n for n in range(10)])
        assert delivery.codes == [200] * 10 and delivery.broken is None
        await session.close(2.0)
    assert [f.command for f in server.received] == ["open"] + ["syslog"] * 10 + ["close"]
    assert [f.txnr for f in server.received] == list(range(1, 13))
    assert server.received[0].data == OFFERS
    assert [f.data for f in server.received[1:11]] == [b"m%d" % n for n in range(10)]


async def test_the_window_bounds_unanswered_commands() -> None:
    """The server answers only when 5 commands wait: with a window of 4 it never gets there,
    the session waits for answers that cannot come and gives up after its timeout."""
    held: list[Frame] = []

    def answer_in_fives(frame: Frame) -> bytes | None:
        if frame.command == "open":
            held.clear()  # a new connection: the old one's commands are gone
            return encode_frame(frame.txnr, "rsp", OPEN_OK)
        held.append(frame)
        if len(held) < 5:
            return None
        out = b"".join(encode_frame(f.txnr, "rsp", b"200 OK") for f in held)
        held.clear()
        return out

    async with Server(answer_in_fives) as server:
        session = await server.session(window=4, timeout=0.5)
        delivery = await session.deliver([b"x"] * 10)
        assert delivery.codes == [None] * 10
        assert delivery.broken is not None and "no answer within 0.5s" in delivery.broken
        assert len([f for f in server.received if f.command == "syslog"]) == 4
        session = await server.session(window=5)
        assert (await session.deliver([b"y"] * 10)).codes == [200] * 10
        await session.close(1.0)


async def test_error_codes_are_reported_per_message() -> None:
    def refuse_odd(frame: Frame) -> bytes:
        if frame.command == "open":
            return encode_frame(frame.txnr, "rsp", OPEN_OK)
        code = b"500 busy" if frame.command == "syslog" and int(frame.data) % 2 else b"200 OK"
        return encode_frame(frame.txnr, "rsp", code)

    async with Server(refuse_odd) as server:
        session = await server.session()
        delivery = await session.deliver([b"%d" % n for n in range(6)])
        await session.close(1.0)
    assert delivery.codes == [200, 500, 200, 500, 200, 500]
    assert delivery.texts == {1: "busy", 3: "busy", 5: "busy"}
    assert delivery.broken is None


@pytest.mark.parametrize("hostile", [
    pytest.param(lambda f: encode_frame(f.txnr + 1000, "rsp", b"200 OK"), id="rsp-for-unknown-txnr"),
    pytest.param(lambda f: encode_frame(f.txnr, "rsp", b"200 OK") * 2, id="rsp-twice"),
    pytest.param(lambda f: b"garbage\n", id="garbage"),
    pytest.param(lambda f: b"%d rsp 999999999 " % f.txnr, id="datalen-too-large"),
    pytest.param(lambda f: encode_frame(f.txnr, "syslog", b"x"), id="server-sends-a-command"),
    pytest.param(lambda f: encode_frame(f.txnr, "rsp", b"OK"), id="rsp-without-code"),
    pytest.param(lambda f: b"HANGUP", id="hang-up"),
])  # fmt: skip
async def test_a_hostile_server_breaks_the_connection_and_nothing_more(hostile: object) -> None:
    """Answers the first two syslog commands properly, then misbehaves on the third."""
    def answer(frame: Frame) -> bytes | None:
        if frame.command == "open":
            return encode_frame(frame.txnr, "rsp", OPEN_OK)
        if frame.data == b"bad":
            return hostile(frame)  # type: ignore[operator,no-any-return]
        return encode_frame(frame.txnr, "rsp", b"200 OK")

    async with Server(answer) as server:
        session = await server.session(window=1)
        delivery = await session.deliver([b"a", b"b", b"bad", b"c"])
        assert delivery.codes[:2] == [200, 200]
        assert delivery.codes[3] is None  # never answered: to be sent again
        assert delivery.broken
        assert not session.usable


async def test_serverclose_stops_the_batch_and_gives_back_the_rest() -> None:
    def going_away(frame: Frame) -> bytes | None:
        if frame.command == "open":
            return encode_frame(frame.txnr, "rsp", OPEN_OK)
        if frame.data == b"2":
            # It answers 2, then tells us it is leaving; 3 and after are never answered.
            return encode_frame(frame.txnr, "rsp", b"200 OK") + encode_frame(0, "serverclose")
        if int(frame.data) > 2:
            return None
        return encode_frame(frame.txnr, "rsp", b"200 OK")

    async with Server(going_away) as server:
        session = await server.session(window=8)
        delivery = await session.deliver([b"%d" % n for n in range(6)])
    assert delivery.codes == [200, 200, 200, None, None, None]
    assert delivery.broken is not None and "serverclose" in delivery.broken


@pytest.mark.parametrize(("answer", "match"), [
    (b"500 go away", "refused to open a session: 500 go away"),
    (b"200 OK\ncommands=syslog", "no relp_version"),
    (b"200 OK\nrelp_version=0\ncommands=eventlog", "does not offer the syslog command"),
])  # fmt: skip
async def test_open_checks_the_servers_offers(answer: bytes, match: str) -> None:
    async with Server(lambda f: encode_frame(f.txnr, "rsp", answer)) as server:
        with pytest.raises(ServerRefused, match=match):
            await server.session()


async def test_open_against_a_silent_server_times_out() -> None:
    async with Server(lambda f: None) as server:
        with pytest.raises(TimeoutError):
            await server.session(timeout=0.3)
