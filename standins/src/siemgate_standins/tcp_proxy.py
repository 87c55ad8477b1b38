"""A TCP proxy on loopback that a test controls: slow responses, outages, flapping.

    proxy = TcpProxy(("127.0.0.1", broker_port))
    await proxy.start()            # proxy.port: point the client (and the broker's advertised address) here
    proxy.delay = 3.0              # every byte from the upstream reaches the client 3 s late
    await proxy.cut()              # drop every connection; new ones are accepted and closed at once
    proxy.restore()                # connections pass again
    await proxy.stop()

For a Kafka broker, start the broker with its advertised listener set to the proxy's address
(the clients reconnect to what Metadata advertises; see `siemgate_standins.kafka_relay`).

`delay` holds back what the upstream sends (the broker's responses), not what the client
sends: a produce request reaches the broker at once and its acknowledgement arrives late,
which is what a slow broker looks like to a producer. Bytes keep their order; each chunk is
released `delay` seconds after it arrived (the delay in force when it arrived).

Loopback test tooling, not a production proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from types import TracebackType
from typing import Self

log = logging.getLogger("siemgate_standins.tcp_proxy")

Address = tuple[str, int]
CHUNK = 256 * 1024


class TcpProxy:
    def __init__(self, upstream: Address, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.upstream = upstream
        self.host = host
        self.port = port
        self.delay = 0.0
        self.connections_total = 0
        self._passing = True
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self.cut()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    async def cut(self) -> None:
        """An outage: drop every open connection, and refuse new ones until `restore`."""
        self._passing = False
        tasks = list(self._connections)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def restore(self) -> None:
        self._passing = True

    @property
    def passing(self) -> bool:
        return self._passing

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self._passing:
            writer.close()
            return
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        self.connections_total += 1
        try:
            await self._relay(reader, writer)
        except asyncio.CancelledError:
            pass  # cut: the connection goes down with its peers
        finally:
            self._connections.discard(task)
            writer.close()

    async def _relay(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.upstream)
        except OSError as exc:
            log.info("upstream %s:%d refused: %s", *self.upstream, exc)
            return
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(_pump(client_reader, upstream_writer, lambda: 0.0))
                group.create_task(_pump(upstream_reader, client_writer, lambda: self.delay))
        except* (OSError, EOFError):
            pass
        finally:
            upstream_writer.close()


class _Closed(EOFError):
    """One side closed: the whole connection ends."""


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: Callable[[], float]) -> None:
    """Copy `reader` to `writer`, each chunk released `delay()` seconds after it arrived."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def release() -> None:
        while True:
            due, chunk = await queue.get()
            if not chunk:
                raise _Closed
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(chunk)
            await writer.drain()

    releaser = asyncio.create_task(release())
    try:
        while True:
            chunk = await reader.read(CHUNK)
            queue.put_nowait((loop.time() + delay(), chunk))
            if not chunk:
                break
        await releaser
    finally:
        releaser.cancel()
        with contextlib.suppress(asyncio.CancelledError, OSError, EOFError):
            await releaser
