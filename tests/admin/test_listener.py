"""The admin listener over loopback (running_admin, real uvicorn, raw TCP clients): the bounded
protocol (heads, timeouts, the connection cap), the login form's field bound, login throttling
and its WARNINGs, and logout ending the session in the server."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from siemgate.admin.auth import SESSION_COOKIE, LoginThrottle
from siemgate.admin.server import AdminListener, running_admin
from siemgate.config import Config
from siemgate.listeners import ListenerCollector
from tests.admin.support import TOKEN, make_config, sources
from tests.support import metric_value, wait_until

pytestmark = pytest.mark.anyio

HEAD_TIMEOUT = 0.5
BODY_TIMEOUT = 0.5
IDLE_TIMEOUT = 0.5
MAX_CONNECTIONS = 4
MIB = 1024 * 1024


@dataclasses.dataclass
class Running:
    listener: AdminListener
    registry: CollectorRegistry
    config: Config

    @property
    def url(self) -> str:
        return self.listener.url

    def refusals(self, reason: str) -> float:
        text = generate_latest(self.registry).decode()
        return metric_value(text, f'siemgate_listener_refusals_total{{listener="admin",reason="{reason}"}}')

    def open_connections(self) -> float:
        return metric_value(generate_latest(self.registry).decode(), 'siemgate_listener_connections{listener="admin"}')

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(self.listener.host, self.listener.port)


@pytest.fixture
async def admin(tmp_path: Path) -> AsyncIterator[Running]:
    config = make_config(tmp_path)
    assert config.admin is not None
    config = dataclasses.replace(config, admin=dataclasses.replace(
        config.admin, head_timeout_seconds=HEAD_TIMEOUT, body_timeout_seconds=BODY_TIMEOUT,
        idle_timeout_seconds=IDLE_TIMEOUT, max_connections=MAX_CONNECTIONS))
    registry = CollectorRegistry()
    listeners = ListenerCollector()
    registry.register(listeners)
    async with running_admin(config.admin, sources(config), listeners) as listener:
        assert listener is not None
        yield Running(listener, registry, config)


async def read_until_closed(reader: asyncio.StreamReader, timeout: float) -> bytes:
    data = b""
    async with asyncio.timeout(timeout):
        with contextlib.suppress(ConnectionResetError):
            while chunk := await reader.read(65536):
                data += chunk
    return data


async def trickle(writer: asyncio.StreamWriter, data: bytes, pace: float) -> None:
    """One byte per `pace` seconds: the slow client's pace, not synchronisation."""
    with contextlib.suppress(ConnectionError):
        for byte in data:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(pace)


def rss() -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


# --- the bounded protocol ---------------------------------------------------------------------


async def test_a_200_mib_header_line_is_refused_431_early_without_holding_it(admin: Running) -> None:
    """stock uvicorn held the whole line (RSS +283 MiB) and answered 401 after it; now 431 once
    the head passes 64 KiB, and the rest is never read."""
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")  # VmHWM from now on
    before = rss()
    reader, writer = await admin.connect()
    block = b"a" * MIB
    sent = 0
    try:
        writer.write(b"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
        with contextlib.suppress(ConnectionError):
            for _ in range(200):
                writer.write(block)
                await writer.drain()
                sent += len(block)
        answer = await read_until_closed(reader, 10)
    finally:
        writer.close()
    assert sent < 32 * MIB, f"{sent / MIB:.0f} MiB of the header were read"
    if answer:  # else the close reset the connection before the client read the answer
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert rss() - before < 24 * MIB, f"peak RSS grew by {(rss() - before) / MIB:.0f} MiB"
    assert admin.refusals("head_too_large") == 1


async def test_too_many_header_lines_are_431(admin: Running) -> None:
    reader, writer = await admin.connect()
    lines = b"".join(b"X-H%04d: v\r\n" % i for i in range(300))
    writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n" + lines + b"\r\n")
    answer = await read_until_closed(reader, 10)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]


async def test_a_trickling_head_is_408(admin: Running) -> None:
    reader, writer = await admin.connect()
    started = time.monotonic()
    sending = asyncio.create_task(trickle(writer, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 0.1))
    try:
        answer = await read_until_closed(reader, 10)
    finally:
        sending.cancel()
        writer.close()
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert time.monotonic() - started < HEAD_TIMEOUT + 3
    assert admin.refusals("head_timeout") == 1


async def test_a_trickling_login_form_is_408(admin: Running) -> None:
    reader, writer = await admin.connect()
    body = b"token=" + b"x" * 100
    writer.write(b"POST /login HTTP/1.1\r\nHost: " + f"{admin.listener.host}:{admin.listener.port}".encode()
                 + b"\r\nOrigin: " + admin.url.encode() + b"\r\nContent-Type: application/x-www-form-urlencoded"
                 + b"\r\nContent-Length: %d\r\n\r\n" % len(body))
    await writer.drain()
    sending = asyncio.create_task(trickle(writer, body, 0.1))
    try:
        answer = await read_until_closed(reader, 10)
    finally:
        sending.cancel()
        writer.close()
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert admin.refusals("body_timeout") == 1


async def test_an_idle_connection_is_closed(admin: Running) -> None:
    reader, writer = await admin.connect()
    writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    await writer.drain()
    answered = time.monotonic()
    answer = await read_until_closed(reader, 10)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 401 ")  # the login form; then idle until closed
    assert time.monotonic() - answered < IDLE_TIMEOUT + 3


async def test_connections_over_the_cap_are_refused_at_accept(admin: Running) -> None:
    held = [await admin.connect() for _ in range(MAX_CONNECTIONS)]
    try:
        await wait_until(lambda: admin.open_connections() == MAX_CONNECTIONS, "the held connections", 10)
        reader, writer = await admin.connect()
        started = time.monotonic()
        answer = await read_until_closed(reader, 5)  # not a byte sent: refused at accept
        writer.close()
        assert answer == b"" or answer.startswith(b"HTTP/1.1 503 "), answer[:200]
        assert time.monotonic() - started < HEAD_TIMEOUT
        assert admin.refusals("max_connections") == 1
    finally:
        for _, held_writer in held:
            held_writer.close()
    await wait_until(lambda: admin.open_connections() == 0, "the held connections to close", 10)
    async with httpx.AsyncClient() as client:
        assert (await client.get(admin.url + "/api/status", headers={"Authorization": f"Bearer {TOKEN}"})
                ).status_code == 200


# --- the login ----------------------------------------------------------------------------------


async def test_a_login_form_of_more_than_20_fields_is_400_without_a_traceback(
        admin: Running, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    fields = {f"f{i}": "v" for i in range(21)} | {"token": TOKEN}
    async with httpx.AsyncClient() as client:
        response = await client.post(admin.url + "/login", data=fields, headers={"Origin": admin.url})
        assert response.status_code == 400, response.text
        assert "more than 20 fields" in response.text
        assert SESSION_COOKIE not in response.cookies
        twenty = {f"f{i}": "v" for i in range(19)} | {"token": TOKEN}
        assert (await client.post(admin.url + "/login", data=twenty, headers={"Origin": admin.url})).status_code == 303
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [r.getMessage() for r in caplog.records]


async def test_wrong_tokens_are_throttled_per_client_and_each_is_a_warning(
        admin: Running, caplog: pytest.LogCaptureFixture) -> None:
    """300 wrong tokens as fast as one client can send them: the first BURST are 401 (and one
    more per REFILL_SECONDS), the rest 429 with Retry-After, unchecked; each wrong one a WARNING."""
    caplog.set_level(logging.WARNING, logger="siemgate.admin")
    codes: dict[int, int] = {}
    started = time.monotonic()
    async with httpx.AsyncClient() as client:
        for i in range(300):
            response = await client.post(admin.url + "/login", data={"token": f"wrong-token-{i:016d}"},
                                         headers={"Origin": admin.url})
            codes[response.status_code] = codes.get(response.status_code, 0) + 1
            if response.status_code == 429:
                assert int(response.headers["retry-after"]) >= 1
        elapsed = time.monotonic() - started
        allowed = LoginThrottle.BURST + int(elapsed / LoginThrottle.REFILL_SECONDS) + 1
        assert set(codes) <= {401, 429}, codes
        assert codes.get(401, 0) <= allowed, codes
        assert codes.get(429, 0) >= 300 - allowed, codes
        # While throttled, even the right token is not checked; a Bearer guess counts the same.
        assert (await client.post(admin.url + "/login", data={"token": TOKEN},
                                  headers={"Origin": admin.url})).status_code == 429
        assert (await client.get(admin.url + "/api/status", headers={"Authorization": f"Bearer {TOKEN}"})
                ).status_code == 429
    wrong = [r for r in caplog.records if r.getMessage() == "refused an admin login: wrong admin token"]
    assert len(wrong) == codes[401]
    assert all(r.levelno == logging.WARNING and r.__dict__["client"] == "127.0.0.1" for r in wrong)


async def test_the_throttle_refills_and_keeps_clients_apart() -> None:
    now = [0.0]
    throttle = LoginThrottle(clock=lambda: now[0])
    for _ in range(LoginThrottle.BURST):
        assert throttle.retry_after("a") == 0
        throttle.failed("a")
    assert throttle.retry_after("a") == LoginThrottle.REFILL_SECONDS
    assert throttle.retry_after("b") == 0  # another client
    now[0] += LoginThrottle.REFILL_SECONDS
    assert throttle.retry_after("a") == 0
    assert LoginThrottle.client_key("2001:db8::1") == LoginThrottle.client_key("2001:db8::ffff") == "2001:db8::/64"
    assert LoginThrottle.client_key("::ffff:192.0.2.1") == "192.0.2.1"


async def test_logout_ends_the_session_in_the_server(admin: Running) -> None:
    async with httpx.AsyncClient(base_url=admin.url) as client:
        assert (await client.post("/login", data={"token": TOKEN}, headers={"Origin": admin.url})).status_code == 303
        cookie = client.cookies[SESSION_COOKIE]
        page = await client.get("/")
        assert page.status_code == 200
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf
        assert (await client.post("/logout", data={"csrf": csrf.group(1)},
                                  headers={"Origin": admin.url})).status_code == 303
    # The copied cookie, replayed from elsewhere: the session is over.
    async with httpx.AsyncClient(base_url=admin.url, cookies={SESSION_COOKIE: cookie}) as thief:
        assert (await thief.get("/")).status_code == 401
