"""The syslog sink over RELP (relp://, relp+tls://) against a real rsyslogd `imrelp`
(tests/forwarders/rsyslog.py, `relp=True`), and against scripted hostile servers: every format
parsed as over TCP; the receiver SIGTERMed and SIGKILLed mid-stream and restarted, every event
arriving with duplicates only within the window; error answers, garbage, a clean close."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from siemgate.errors import ConfigError
from siemgate.forwarders.normalize import NormalizedEvent
from siemgate.forwarders.sinks.base import RetryableSinkError, SendResult, SinkAuthError, SinkRefusedError
from siemgate.forwarders.sinks.registry import build_settings
from siemgate.forwarders.sinks.relp import Frame, encode_frame
from siemgate.forwarders.sinks.syslog import SyslogSink
from siemgate_standins.broker import free_port
from tests.forwarders.rsyslog import Rsyslog, make_event, running_rsyslog
from tests.forwarders.test_relp_codec import OPEN_OK, Server
from tests.forwarders.test_syslog_sink import FORMATS, awkward_events, check_received, open_sink

pytestmark = pytest.mark.anyio


@pytest.fixture
def rsyslog(tmp_path: Path) -> Iterator[Rsyslog]:
    with running_rsyslog(tmp_path / "rsyslog", relp=True) as server:
        yield server


def relp_options(rsyslog: Rsyslog, transport: str) -> dict[str, Any]:
    if transport == "relp":
        return {"address": f"relp://127.0.0.1:{rsyslog.relp_port}"}
    assert transport == "relp+tls"
    tls = {"ca_file": str(rsyslog.ca_file), "cert": str(rsyslog.client_cert), "key": str(rsyslog.client_key)}
    return {"address": f"relp+tls://localhost:{rsyslog.relp_tls_port}", "tls": tls}


def received_ids(rsyslog: Rsyslog) -> collections.Counter[str]:
    return collections.Counter(str(orjson.loads(m["msg"].lstrip("\ufeff"))["id"]) for m in rsyslog.messages())


@pytest.mark.parametrize("transport", ["relp", "relp+tls"])
@pytest.mark.parametrize("wire_format", FORMATS)
async def test_every_format_over_relp(rsyslog: Rsyslog, wire_format: str, transport: str) -> None:
    events = awkward_events(f"{wire_format}-{transport}")
    async with open_sink(**relp_options(rsyslog, transport), format=wire_format, facility="auth") as sink:
        assert await sink.send(events) == SendResult()
        assert sink.resent == 0
    received = await rsyslog.wait_for(len(events))
    assert len(received) == len(events)
    by_id = {event.id: event for event in events}
    for message in received:
        assert message["input"] == ("relp" if transport == "relp" else "relp-tls")
        event = next(by_id[i] for i in by_id if i in message["raw"])
        check_received(wire_format, message, event)


@pytest.mark.parametrize("transport", ["relp", "relp+tls"])
async def test_large_batches_through_a_small_window(rsyslog: Rsyslog, transport: str) -> None:
    events = [make_event({"id": f"big-{n}", "n": n, "pad": "x" * 500}, event_id=f"big-{n}") for n in range(500)]
    async with open_sink(**relp_options(rsyslog, transport), relp={"window": 16}) as sink:
        assert await sink.send(events) == SendResult()
        session = sink._relp
        assert await sink.send(events[:10]) == SendResult()
        assert sink._relp is session  # one session across batches
    # send() returned after every rsp 200: rsyslog has written them all (Direct queue)
    ids = received_ids(rsyslog)
    assert sum(ids.values()) == 510
    assert all(ids[f"big-{n}"] == (2 if n < 10 else 1) for n in range(500))


async def test_relp_tls_verifies_the_server_by_default(rsyslog: Rsyslog) -> None:
    async with open_sink(address=f"relp+tls://localhost:{rsyslog.relp_tls_port}") as sink:
        with pytest.raises(SinkAuthError, match="not trusted"):
            await sink.send([make_event()])
    options = {"address": f"relp+tls://127.0.0.1:{rsyslog.relp_tls_port}", "tls": {"ca_file": str(rsyslog.ca_file)}}
    async with open_sink(**options) as sink:
        with pytest.raises(SinkAuthError, match="mismatch"):
            await sink.send([make_event()])
    assert rsyslog.messages() == []


async def test_relp_tls_without_the_client_certificate_imrelp_asks_for(rsyslog: Rsyslog) -> None:
    options = {"address": f"relp+tls://localhost:{rsyslog.relp_tls_port}", "tls": {"ca_file": str(rsyslog.ca_file)}}
    async with open_sink(**options) as sink:
        with pytest.raises(SinkAuthError, match="client certificate"):
            await sink.send([make_event()])
    assert rsyslog.messages() == []


async def test_healthcheck_opens_a_session(rsyslog: Rsyslog) -> None:
    async with open_sink(**relp_options(rsyslog, "relp")) as sink:
        assert await sink.healthcheck() == (f"relp://127.0.0.1:{rsyslog.relp_port}: connected, RELP session open "
                                            "(receiver: librelp)")
    async with open_sink(**relp_options(rsyslog, "relp+tls")) as sink:
        description = await sink.healthcheck()
        assert "RELP session open (receiver: librelp), TLSv1." in description
        assert "server certificate verified" in description
    async with open_sink(address=f"relp://127.0.0.1:{free_port()}") as sink:
        with pytest.raises(RetryableSinkError, match="cannot connect"):
            await sink.healthcheck()


async def test_a_tcp_syslog_port_is_not_relp(rsyslog: Rsyslog) -> None:
    """imtcp reads our `open` as a syslog message and never answers: the sink says so."""
    async with open_sink(address=f"relp://127.0.0.1:{rsyslog.tcp_port}", write_timeout_seconds=0.5) as sink:
        with pytest.raises(RetryableSinkError, match="no answer to RELP open"):
            await sink.send([make_event()])


# -- the receiver stopped and killed mid-stream --------------------------------------------


@dataclass
class Stream:
    """Batches sent one after the other the way the forwarder's runtime does: a batch is done
    when every event is acknowledged; what the sink hands back (or a whole batch after a
    RetryableSinkError) is sent again after a short backoff."""

    sink: SyslogSink
    batches: int
    size: int
    sent: int = 0
    failures: int = 0
    partial: int = 0

    def events(self, batch: int) -> list[NormalizedEvent]:
        return [make_event({"id": f"s{batch}-{n}", "n": n}, event_id=f"s{batch}-{n}") for n in range(self.size)]

    async def run(self) -> None:
        for batch in range(self.batches):
            pending: Sequence[NormalizedEvent] = self.events(batch)
            while pending:
                try:
                    result = await self.sink.send(pending)
                except RetryableSinkError:
                    self.failures += 1
                    await asyncio.sleep(0.05)  # the runtime's backoff
                    continue
                assert not result.rejected
                if result.retry:
                    self.partial += 1
                    await asyncio.sleep(0.05)
                pending = [pending[i] for i in result.retry]
            self.sent += 1


def stop_when_grown(rsyslog: Rsyslog, grow_bytes: int, how: str) -> None:
    """In a thread, so that the stream runs on meanwhile: once the capture file grew by
    `grow_bytes` (the stream is flowing), stop rsyslogd (`how`: SIGTERM or SIGKILL) and start it
    again on the same ports. Polls the file's size only: cheap, and blind to where the sender is
    in its batch, so the stop lands mid-batch."""
    def size() -> int:
        return rsyslog.received.stat().st_size if rsyslog.received.exists() else 0

    target = size() + grow_bytes
    deadline = time.monotonic() + 60
    while size() < target:
        assert time.monotonic() < deadline, f"the capture file did not grow by {grow_bytes} bytes"
        time.sleep(0.001)
    rsyslog.stop() if how == "SIGTERM" else rsyslog.kill()
    rsyslog.start()


@pytest.mark.parametrize("transport", ["relp", "relp+tls"])
async def test_receiver_sigtermed_and_sigkilled_mid_stream(rsyslog: Rsyslog, transport: str) -> None:
    window = 64
    async with open_sink(**relp_options(rsyslog, transport), relp={"window": window}) as sink:
        stream = Stream(sink, batches=40, size=250)
        task = asyncio.create_task(stream.run())
        try:
            for how in ("SIGTERM", "SIGKILL", "SIGKILL"):
                await asyncio.to_thread(stop_when_grown, rsyslog, 500_000, how)  # ~1,500 messages
                assert not task.done(), "the stream ended before the receiver was stopped"
            async with asyncio.timeout(120):
                await task
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    ids = received_ids(rsyslog)
    expected = {e.id for batch in range(stream.batches) for e in stream.events(batch)}
    missing = expected - set(ids)
    duplicates = sum(ids.values()) - len(ids)
    print(f"\n{transport}: {len(expected)} events, missing {len(missing)}, duplicates {duplicates}, "
          f"resent {sink.resent}, failed sends {stream.failures}, partial sends {stream.partial}")
    assert not missing, f"{len(missing)} acknowledged events lost, e.g. {sorted(missing)[:5]}"
    assert set(ids) == expected  # nothing invented
    # Every duplicate is an event sent again after its connection ended unanswered, and at
    # most a window's worth of those per connection lost (three here).
    assert duplicates <= sink.resent <= 3 * window
    # The receiver did go away under the sender: messages were left unanswered, or a send failed
    # (a kill can also land between two batches, when every message sent had been answered).
    assert sink.resent + stream.failures + stream.partial > 0


# -- scripted servers: error answers, garbage, close ---------------------------------------


def relp_server(on_syslog: Any) -> Server:
    def answer(frame: Frame) -> bytes | None:
        if frame.command == "open":
            return encode_frame(frame.txnr, "rsp", OPEN_OK)
        if frame.command == "close":
            return encode_frame(frame.txnr, "rsp", b"200 OK")
        return on_syslog(frame)  # type: ignore[no-any-return]

    return Server(answer)


async def test_error_answers_decide_per_code() -> None:
    answers = {b"ok": b"200 OK", b"busy": b"500 queue full", b"bad": b"400 malformed", b"odd": b"299 what"}

    def by_message(frame: Frame) -> bytes:
        return encode_frame(frame.txnr, "rsp", answers[frame.data.rsplit(b" ", 1)[1]])

    async with relp_server(by_message) as server, open_sink(address=f"relp://127.0.0.1:{server.port}") as sink:
        sink._encode = lambda event: b"<13>1 - h a - - - " + event.id.encode()
        result = await sink.send([make_event(event_id=i) for i in ("ok", "busy", "bad", "odd", "ok")])
    assert result.retry == (1, 3)  # 5xx and unknown codes: sent again
    assert result.rejected == ((2, "relp_refused: the receiver answered 400 malformed"),)
    assert [f.command for f in server.received] == ["open", *["syslog"] * 5, "close"]


async def test_garbage_drops_the_connection_and_the_next_send_reconnects() -> None:
    replies = iter([b"200 OK", b"GARBAGE"])

    def answer(frame: Frame) -> bytes:
        reply = next(replies, b"200 OK")
        return b"garbage\n" if reply == b"GARBAGE" else encode_frame(frame.txnr, "rsp", reply)

    async with relp_server(answer) as server:  # noqa: SIM117 - the sink needs the server's port
        async with open_sink(address=f"relp://127.0.0.1:{server.port}", relp={"window": 1}) as sink:
            result = await sink.send([make_event(event_id="a"), make_event(event_id="b"), make_event(event_id="c")])
            assert result.retry == (1, 2)  # a acknowledged; b unanswered, c never sent
            assert sink.resent == 1
            # The connection that carried the garbage is gone; the next send opens a new one.
            assert await sink.send([make_event(event_id="b"), make_event(event_id="c")]) == SendResult()
    assert server.connections == 2


async def test_serverclose_between_batches_reconnects_before_sending() -> None:
    answered: list[int] = []

    def answer(frame: Frame) -> bytes:
        reply = encode_frame(frame.txnr, "rsp", b"200 OK")
        answered.append(frame.txnr)
        if len(answered) == 1:
            return reply + encode_frame(0, "serverclose")  # answered, then going away
        return reply

    async with relp_server(answer) as server, open_sink(address=f"relp://127.0.0.1:{server.port}") as sink:
        assert await sink.send([make_event(event_id="first")]) == SendResult()
        assert await sink.send([make_event(event_id="second")]) == SendResult()
        assert sink.resent == 0
    assert server.connections == 2
    assert [f.command for f in server.received] == ["open", "syslog", "open", "syslog", "close"]


async def test_a_server_without_the_syslog_command_is_refused() -> None:
    no_syslog = b"200 OK\nrelp_version=0\ncommands="
    async with Server(lambda f: encode_frame(f.txnr, "rsp", no_syslog)) as server:  # noqa: SIM117 - port
        async with open_sink(address=f"relp://127.0.0.1:{server.port}") as sink:
            with pytest.raises(SinkRefusedError, match="does not offer the syslog command"):
                await sink.send([make_event()])


def test_settings() -> None:
    def settings(**options: Any) -> Any:
        return build_settings("syslog", {"name": "s", **options}, {}, "sinks[0]")

    assert settings(address="relp://siem.example").target.port == 2514
    assert settings(address="relp+tls://siem.example", tls={"ca_file": "/ca.pem"}).target.port == 2514
    assert settings(address="relp://siem.example", relp={"window": 1024}).relp.window == 1024
    with pytest.raises(ConfigError, match="relp.window"):
        settings(address="relp://siem.example", relp={"window": 0})
    with pytest.raises(ConfigError, match="applies to relp:// and relp\\+tls://"):
        settings(address="tcp://siem.example", relp={"window": 10})
    with pytest.raises(ConfigError, match="applies to tls:// and relp\\+tls://"):
        settings(address="relp://siem.example", tls={"verify": False})
    with pytest.raises(ConfigError, match="lf applies to tcp:// only"):
        settings(address="relp://siem.example", framing="lf")
