"""Hostile clients at the listeners of a real `siemgate run` (the webhook port and the status
page), issue 17: heads that trickle in or stall, giant heads on the status page, login forms
of any number of fields, X-Forwarded-For over several lines.

The process is the suite's LiveIngest (its guard checks memory, counts and error logs after
each test) with short connection timeouts, the admin listener, and loopback as a trusted proxy.
"""

from __future__ import annotations

import ipaddress
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
from hypothesis import example, given, note
from hypothesis import strategies as st

from siemgate_standins.broker import free_port
from tests.fuzz.support import (
    KEY,
    MIB,
    WEBHOOK,
    LiveIngest,
    check_documented,
    fuzz_settings,
    read_answer,
    send_all,
)

HEAD_TIMEOUT = 1.0
ADMIN_TOKEN = "fuzz-admin-token-0123456789"
TRUSTED = ipaddress.ip_network("127.0.0.0/8")
FENCE = ipaddress.ip_network("192.0.2.0/24")  # the `fenced` integration's allowed_cidrs


class ListenerIngest(LiveIngest):
    """LiveIngest with the admin listener, a 1 s head timeout and loopback trusted as a proxy."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.admin_port = free_port()
        self.admin_url = f"http://127.0.0.1:{self.admin_port}"

    def _write_config(self) -> Path:
        path = super()._write_config()
        text = path.read_text()
        listen = f"listen: {{host: 127.0.0.1, port: {self.port}}}"
        assert listen in text
        path.write_text(text.replace(listen, (
            f"listen: {{host: 127.0.0.1, port: {self.port}, head_timeout_seconds: {HEAD_TIMEOUT}, "
            f"trusted_proxies: [{TRUSTED}]}}\n"
            f"admin: {{host: 127.0.0.1, port: {self.admin_port}, token: {ADMIN_TOKEN}, "
            f"head_timeout_seconds: {HEAD_TIMEOUT}, body_timeout_seconds: {HEAD_TIMEOUT}}}")))
        return path


@pytest.fixture(scope="module")
def live_listeners(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ListenerIngest]:
    ingest = ListenerIngest(Path(tmp_path_factory.mktemp("fuzz-listeners")))
    try:
        ingest.start()
        yield ingest
    finally:
        ingest.stop()


@pytest.fixture
def ingest(live_listeners: ListenerIngest) -> ListenerIngest:
    live_listeners.ensure_running()
    return live_listeners


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def refusals(ingest: LiveIngest, listener: str, reason: str) -> int:
    """siemgate_listener_refusals_total on the process's /metrics."""
    return ingest.total(ingest.metrics(), "siemgate_listener_refusals_total", listener=listener, reason=reason)


def head_bytes(key: str = KEY, path: str = "/webhook/fuzz", extra: bytes = b"") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Api-Key: {key}\r\n".encode() + extra
            + b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n[]")


# ------------------------------------------------------------------------------------------
# Heads that trickle in, or stop


@fuzz_settings(8)
@given(cuts=st.lists(st.integers(0, 200), min_size=1, max_size=12), pace=st.sampled_from([None, 0.2, 0.4]))
@example(cuts=[0, 5, 40, 150], pace=0.2)
def test_trickling_and_stalled_heads_are_cut_off(ingest: ListenerIngest, cuts: list[int], pace: float | None) -> None:
    """Connections that send part of a head (nothing, up to most of it), then stop (pace None)
    or send one byte per `pace` s: each is answered 408 or closed within the head timeout
    (from its first byte) plus a margin, while a prompt request on another connection is
    answered at once."""
    full = head_bytes()
    note(f"cuts {cuts}, pace {pace}")
    with ingest.guard() as tally:
        before = refusals(ingest, "webhook", "head_timeout")
        sockets = [connect(ingest.port) for _ in cuts]
        sent = [min(cut, len(full) - 3) for cut in cuts]  # never the whole head
        try:
            for sock, cut in zip(sockets, sent, strict=True):
                if cut:
                    sock.sendall(full[:cut])
            started = time.monotonic()
            with ingest.client() as client:  # the listener still serves the prompt
                tally.record(client.post("/webhook/fuzz", content=b"[]", headers={"X-Api-Key": KEY}), 0)
            open_ = dict(enumerate(sockets))
            answers: dict[int, bytes] = {}
            deadline = started + HEAD_TIMEOUT + 5
            while open_:
                assert time.monotonic() < deadline, f"{len(open_)} connections still open after the head timeout"
                readable, _, _ = select.select(list(open_.values()), [], [], pace or 0.2)
                for sock in readable:
                    index = next(i for i, s in open_.items() if s is sock)
                    try:
                        chunk = sock.recv(65536)
                    except ConnectionResetError:
                        chunk = b""
                    answers[index] = answers.get(index, b"") + chunk
                    if not chunk:
                        del open_[index]
                if pace is not None:  # the slow client's next byte
                    for index, sock in list(open_.items()):
                        if sent[index] < len(full) - 3:
                            try:
                                sock.send(full[sent[index]:sent[index] + 1])
                                sent[index] += 1
                            except OSError:
                                del open_[index]
            for index, answer in answers.items():
                assert answer == b"" or answer.startswith(b"HTTP/1.1 408 "), (index, answer[:200])
                if answer:
                    tally.count(408)
            assert refusals(ingest, "webhook", "head_timeout") == before + len(cuts)
        finally:
            for sock in sockets:
                sock.close()


# ------------------------------------------------------------------------------------------
# Giant heads on the status page


@fuzz_settings(10)
@given(
    where=st.sampled_from(["request line", "header value", "header name", "many lines"]),
    size=st.integers(65 * 1024, 8 * MIB),  # past the 64 KiB bound (below it: a 408 when it stalls)
)
@example(where="header value", size=200 * MIB)
def test_giant_admin_heads_are_431_before_they_end(ingest: ListenerIngest, where: str, size: int) -> None:
    """The status page answers 431 (or closes) once a head passes 64 KiB: the process never
    holds it (the guard's peak RSS bound is 64 MiB: a 200 MiB header line would break it) and
    most of it is never read."""
    block = b"a" * MIB
    start = {
        "request line": b"GET /?",
        "header value": b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ",
        "header name": b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-",
        "many lines": b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n",
    }[where]
    if where == "many lines":
        block = b"".join(b"X-%06d: v\r\n" % i for i in range(MIB // 12))
    parts = [start] + [block[: min(len(block), size - i)] for i in range(0, size, len(block))]
    with ingest.guard():
        before = refusals(ingest, "admin", "head_too_large")
        with connect(ingest.admin_port) as sock:
            whole = send_all(sock, parts)
            answer = read_answer(sock, time.monotonic() + 30)
        if size >= 16 * MIB:
            assert not whole, f"all {size} bytes of the head were read"
        if answer is not None:
            assert answer.status == 431, answer
        assert refusals(ingest, "admin", "head_too_large") == before + 1


# ------------------------------------------------------------------------------------------
# Login forms of any shape


FIELD = st.text(st.characters(codec="utf-8"), max_size=12)


@fuzz_settings(40)
@given(fields=st.lists(st.tuples(FIELD, FIELD), max_size=80), with_token=st.booleans())
@example(fields=[(f"f{i}", "v") for i in range(21)], with_token=True)
@example(fields=[("token", ADMIN_TOKEN)] * 25, with_token=False)
def test_login_forms_of_any_number_of_fields(ingest: ListenerIngest, fields: list[tuple[str, str]],
                                             with_token: bool) -> None:
    """More than 20 fields: 400, whatever they hold (never a 500, nothing logged as an error:
    the guard); otherwise the token decides (303, 401, or 429 once wrong tokens are throttled)."""
    form = [*fields, *([("token", ADMIN_TOKEN)] if with_token else [])]
    with ingest.guard(), httpx.Client(base_url=ingest.admin_url, timeout=30) as client:
        response = client.post("/login", content=urlencode(form).encode(),
                               headers={"Origin": ingest.admin_url,
                                        "Content-Type": "application/x-www-form-urlencoded"})
        note(f"{len(form)} fields: {response.status_code}")
        if len(form) > 20:
            assert response.status_code == 400, response.text[:300]
        else:
            assert response.status_code in (303, 401, 429), response.text[:300]


# ------------------------------------------------------------------------------------------
# X-Forwarded-For over several lines


HOPS = (st.sampled_from(["192.0.2.7", "192.0.2.200", "198.51.100.9", "127.0.0.1", "127.9.9.9", "10.0.0.1",
                         "garbage", "", "[2001:db8::1]:443", "192.0.2.9:4711"])
        | st.ip_addresses(v=4).map(str))
LINES = st.lists(st.lists(HOPS, min_size=1, max_size=4).map(", ".join), min_size=1, max_size=5)


def expected_client(lines: list[str]) -> str:
    """The reference: all lines joined, walked from the right past trusted proxies (the peer
    is loopback, trusted)."""
    client = "127.0.0.1"
    for hop in reversed(",".join(lines).split(",")):
        text = hop.strip()
        if text.startswith("[") and "]" in text:
            text = text[1:text.index("]")]
        elif text.count(":") == 1:
            text = text.split(":", 1)[0]
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            break
        client = str(address)
        if address not in TRUSTED:
            break
    return client


@fuzz_settings(40)
@given(lines=LINES)
@example(lines=["192.0.2.7", "198.51.100.9"])  # forged first line, the proxy's own appended: 403
@example(lines=["198.51.100.9", "192.0.2.7"])
def test_forwarded_for_lines_are_one_list(ingest: ListenerIngest, lines: list[str]) -> None:
    client = expected_client(lines)
    address = ipaddress.ip_address(client)
    allowed = address.version == 4 and address in FENCE
    note(f"X-Forwarded-For lines {lines}: client {client}, allowed {allowed}")
    xff = b"".join(b"X-Forwarded-For: " + line.encode() + b"\r\n" for line in lines)
    with ingest.guard("fenced") as tally, connect(ingest.port) as sock:
        sock.sendall(head_bytes(path="/webhook/fenced", extra=xff))
        answer = read_answer(sock, time.monotonic() + 30)
        assert answer is not None
        check_documented(WEBHOOK, "post", answer.status, answer.headers, answer.body)
        assert answer.status == (200 if allowed else 403), (lines, answer)
        tally.count(answer.status, 0)  # `[]`: no events


def test_four_hundred_slow_heads_hold_little_and_are_all_closed(ingest: ListenerIngest) -> None:
    """Issue 17's reproduction: 400 connections each send 60 KiB of a head (under the 64 KiB
    bound) and stall. The process holds at most that (the guard's peak RSS bound: 64 MiB over
    the start; it grew by 240 MiB before), and every one is closed by the head timeout."""
    part = b"POST /webhook/fuzz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + b"p" * (60 * 1024)
    with ingest.guard():
        before = refusals(ingest, "webhook", "head_timeout")
        sockets: list[socket.socket] = []
        try:
            for _ in range(400):
                sock = connect(ingest.port)
                sockets.append(sock)
                sock.sendall(part)
            deadline = time.monotonic() + HEAD_TIMEOUT + 30
            open_ = set(sockets)
            while open_:
                assert time.monotonic() < deadline, f"{len(open_)} of 400 stalled heads still open"
                readable, _, _ = select.select(list(open_), [], [], 1.0)
                for sock in readable:
                    try:
                        chunk = sock.recv(65536)
                    except ConnectionResetError:
                        chunk = b""
                    assert chunk == b"" or chunk.startswith(b"HTTP/1.1 408 ") or b"HTTP" not in chunk, chunk[:100]
                    if not chunk:
                        open_.discard(sock)
        finally:
            for sock in sockets:
                sock.close()
        assert refusals(ingest, "webhook", "head_timeout") == before + 400


def test_a_wrong_token_flood_is_throttled_and_its_warnings_summarized(ingest: ListenerIngest) -> None:
    """300 wrong admin tokens as fast as one client sends them: at most the throttle's burst
    (5, one more per 6 s) is checked and answered 401, the rest 429; the log gets the
    WARNINGs once each (then a count a minute later), not 300 lines."""
    with ingest.guard():
        offset = ingest.log_path.stat().st_size
        codes: dict[int, int] = {}
        started = time.monotonic()
        with httpx.Client(base_url=ingest.admin_url, timeout=30) as client:
            for i in range(300):
                response = client.post("/login", data={"token": f"wrong-token-{i:012d}"},
                                       headers={"Origin": ingest.admin_url})
                codes[response.status_code] = codes.get(response.status_code, 0) + 1
        elapsed = time.monotonic() - started
        assert set(codes) <= {401, 429}, codes
        assert codes.get(401, 0) <= 5 + int(elapsed / 6) + 1, codes
        lines = ingest.log_lines(offset, "admin")
        assert len(lines) <= 4, "\n".join(lines[:10])  # (none when an earlier test logged them this minute)
