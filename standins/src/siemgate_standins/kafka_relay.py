"""A Kafka-protocol TCP relay that lets Debian's librdkafka 2.0.2 talk to Tansu.

Why: librdkafka 2.0.2 skips one byte too few for every tagged field it does not know (fixed
upstream in 2023, confluentinc/librdkafka#4278). Tansu's ApiVersions v3 response ends with
four response-level tagged fields (SupportedFeatures, FinalizedFeaturesEpoch,
FinalizedFeatures, ZkMigrationReady), so librdkafka's parse runs off the end:
`ApiVersionRequest failed: Local: Read underflow`, and `api.version.request=false` does not
help (measured with kcat 1.7.1). rsyslog's `imkafka` and
`omkafka` and `kcat` all use that librdkafka.

What the relay does: it frames both directions (4-byte size; a request header starts with
api_key, api_version, correlation_id; a response header with correlation_id), remembers the
correlation id and version of every ApiVersions request, and rewrites only the matching
response: the response-level tagged fields are emptied (their count becomes 0, the frame
size is fixed up). Every other byte passes through unchanged, streamed in chunks, so large
Fetch and Produce frames are not buffered whole. A response that does not parse as the
expected ApiVersions version is passed through unchanged too.

The advertised address: a Kafka client bootstraps, reads the brokers' addresses from the
Metadata response (and the group coordinator's from FindCoordinator, DescribeCluster ...)
and reconnects to those. Rather than rewriting each of those responses, Tansu is started
with `--listener-url` on its own port and `--advertised-listener-url` set to the relay's
address (`start_tansu_behind_relay`). Every address any response carries is then the
relay's, the relay needs no knowledge of any response but ApiVersions, and every client,
aiokafka included, talks through it. The relay binds its port first, so the address Tansu
advertises is already taken by the relay when Tansu starts. A relay in front of a broker
that advertises its own address only carries the bootstrap connection: clients then leave
it, which is why `KafkaRelay` alone is meant for such a prepared upstream.

    async with KafkaRelay(upstream=("127.0.0.1", tansu_port), port=relay_port) as relay:
        relay.port

    relay = start_relay_thread(("127.0.0.1", tansu_port))     # sync code: relay.port, relay.stop()

    with tansu_behind_relay() as relayed:                     # Tansu + relay, both stopped on exit
        relayed.bootstrap_servers                             # "127.0.0.1:<relay port>"

    python -m siemgate_standins.kafka_relay [--port 9092]      # Tansu behind a relay, for kcat/rsyslog try-outs
    python -m siemgate_standins.kafka_relay --upstream 127.0.0.1:19092 --port 9092   # the relay alone

Loopback only: this is test and benchmark tooling, not a production proxy.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Final, Literal, Protocol, Self

from siemgate_standins.broker import Broker, BrokerUnavailable, free_port, tansu_binary, wait_for_port

log = logging.getLogger("siemgate_standins.kafka_relay")

API_VERSIONS: Final = 18
# ApiVersions is flexible from v3 on, but its response header stays v0 (no header tags).
API_VERSIONS_FIRST_FLEXIBLE: Final = 3
COPY_CHUNK: Final = 256 * 1024
# The relay refuses frames larger than this (Kafka's own socket.request.max.bytes is 100 MiB).
MAX_FRAME: Final = 512 * 1024 * 1024
READY_LINE_PREFIX: Final = "kafka-relay listening on "

Address = tuple[str, int]


# ------------------------------------------------------------------------------------------
# The one rewrite


def _uvarint(data: bytes, offset: int) -> tuple[int, int]:
    """An unsigned varint at `offset`: (value, offset after it). IndexError past the end."""
    value = shift = 0
    while True:
        byte = data[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, offset
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 64 bits")


def _skip_tagged_fields(data: bytes, offset: int) -> int:
    count, offset = _uvarint(data, offset)
    for _ in range(count):
        _tag, offset = _uvarint(data, offset)
        size, offset = _uvarint(data, offset)
        offset += size
    if offset > len(data):
        raise IndexError("tagged field past the end of the frame")
    return offset


def strip_api_versions_tags(frame: bytes, api_version: int) -> bytes | None:
    """`frame` is an ApiVersions response without its size prefix (correlation id first).

    Returns the frame with its response-level tagged fields emptied, or None when there is
    nothing to change: a version before v3 (no tagged fields), no tagged fields, or a frame
    that does not parse as a v3+ response (an error answer in the v0 shape, for example),
    which is then best passed through untouched."""
    if api_version < API_VERSIONS_FIRST_FLEXIBLE:
        return None
    try:
        offset = 4 + 2  # correlation_id, error_code
        entries, offset = _uvarint(frame, offset)  # compact array: N + 1
        for _ in range(max(0, entries - 1)):
            offset += 6  # api_key, min_version, max_version
            offset = _skip_tagged_fields(frame, offset)
        offset += 4  # throttle_time_ms
        tags_at = offset
        count, _ = _uvarint(frame, tags_at)
        end = _skip_tagged_fields(frame, tags_at)
    except (IndexError, ValueError):
        return None
    if end != len(frame) or count == 0:
        return None
    return frame[:tags_at] + b"\x00"


# ------------------------------------------------------------------------------------------
# The relay (asyncio)


class KafkaRelay:
    """Relays Kafka connections from `host:port` to `upstream`, rewriting only ApiVersions
    responses (see the module docstring). `port=0` takes a free port: read `.port`."""

    def __init__(self, upstream: Address, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.upstream = upstream
        self.host = host
        self._requested_port = port
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        # Counters, for tests and logs.
        self.connections_total = 0
        self.api_versions_rewritten = 0

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the relay is not started")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("the relay is already started")
        self._server = await asyncio.start_server(self._serve, self.host, self._requested_port)

    async def stop(self) -> None:
        """Stop listening and close every relayed connection. Idempotent."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        await server.wait_closed()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        self.connections_total += 1
        upstream_writer: asyncio.StreamWriter | None = None
        try:
            try:
                upstream_reader, upstream_writer = await asyncio.open_connection(*self.upstream)
            except OSError as exc:
                log.warning("Kafka relay cannot reach its upstream %s:%s: %s", *self.upstream, exc)
                return
            # correlation id -> api_version of the ApiVersions requests awaiting their answer.
            pending: dict[int, int] = {}
            pumps = {
                asyncio.create_task(self._requests(client_reader, upstream_writer, pending)),
                asyncio.create_task(self._responses(upstream_reader, client_writer, pending)),
            }
            try:
                # Kafka clients and brokers close whole connections: when one side is done,
                # so is the other.
                await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for pump in pumps:
                    pump.cancel()
                await asyncio.gather(*pumps, return_exceptions=True)
        finally:
            for writer in (client_writer, upstream_writer):
                if writer is not None:
                    writer.close()
                    with contextlib.suppress(OSError, asyncio.CancelledError):
                        await writer.wait_closed()
            self._connections.discard(task)

    async def _requests(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, pending: dict[int, int]
    ) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                size = _frame_size(await reader.readexactly(4))
                head = await reader.readexactly(min(size, 8))
                if len(head) == 8:
                    api_key = int.from_bytes(head[0:2], "big", signed=True)
                    if api_key == API_VERSIONS:
                        api_version = int.from_bytes(head[2:4], "big", signed=True)
                        pending[int.from_bytes(head[4:8], "big", signed=True)] = api_version
                writer.write(size.to_bytes(4, "big") + head)
                await _copy(reader, writer, size - len(head))

    async def _responses(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, pending: dict[int, int]
    ) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                size = _frame_size(await reader.readexactly(4))
                head = await reader.readexactly(min(size, 4))
                api_version = pending.pop(int.from_bytes(head, "big", signed=True), None) if len(head) == 4 else None
                if api_version is None:
                    writer.write(size.to_bytes(4, "big") + head)
                    await _copy(reader, writer, size - len(head))
                    continue
                frame = head + await reader.readexactly(size - 4)
                rewritten = strip_api_versions_tags(frame, api_version)
                if rewritten is not None:
                    self.api_versions_rewritten += 1
                    log.debug("ApiVersions v%d response: %d tagged-field bytes removed", api_version,
                              len(frame) - len(rewritten))
                    frame = rewritten
                writer.write(len(frame).to_bytes(4, "big") + frame)
                await writer.drain()


def _frame_size(prefix: bytes) -> int:
    size = int.from_bytes(prefix, "big", signed=True)
    if size < 0 or size > MAX_FRAME:
        raise ConnectionError(f"not a Kafka frame (size {size})")
    return size


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, remaining: int) -> None:
    while remaining > 0:
        chunk = await reader.read(min(remaining, COPY_CHUNK))
        if not chunk:
            raise asyncio.IncompleteReadError(b"", remaining)
        writer.write(chunk)
        remaining -= len(chunk)
        await writer.drain()
    await writer.drain()


# ------------------------------------------------------------------------------------------
# Running it from sync code: a thread, or a process


class RelayHandle(Protocol):
    """What both runners offer."""

    host: str

    @property
    def port(self) -> int: ...

    @property
    def bootstrap_servers(self) -> str: ...

    def stop(self) -> None: ...


def _new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


class RelayThread:
    """A `KafkaRelay` on its own event loop in a daemon thread. `stop()` is idempotent."""

    def __init__(self, upstream: Address, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.upstream = upstream
        self.host = host
        self._requested_port = port
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._relay: KafkaRelay | None = None
        self._port = 0
        self._thread = threading.Thread(target=self._run, name=f"kafka-relay->{upstream[1]}", daemon=True)

    @property
    def port(self) -> int:
        return self._port

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self._port}"

    @property
    def api_versions_rewritten(self) -> int:
        return self._relay.api_versions_rewritten if self._relay else 0

    @property
    def connections_total(self) -> int:
        return self._relay.connections_total if self._relay else 0

    def start(self, timeout: float = 10.0) -> Self:
        self._thread.start()
        if not self._ready.wait(timeout):
            self.stop()
            raise RuntimeError(f"the Kafka relay did not start within {timeout:g} s")
        if self._error is not None:
            self._thread.join(timeout)
            raise RuntimeError(f"the Kafka relay did not start: {self._error}") from self._error
        return self

    def stop(self, timeout: float = 10.0) -> None:
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None and self._thread.is_alive():
            with contextlib.suppress(RuntimeError):  # the loop already closed
                loop.call_soon_threadsafe(stopping.set)
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            with asyncio.Runner(loop_factory=_new_event_loop) as runner:
                runner.run(self._main())
        except BaseException as exc:  # reported to start(), or logged
            if not self._ready.is_set():
                self._error = exc
                self._ready.set()
            else:
                log.exception("the Kafka relay thread failed")

    async def _main(self) -> None:
        relay = KafkaRelay(self.upstream, host=self.host, port=self._requested_port)
        await relay.start()
        self._relay = relay
        self._port = relay.port
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            await relay.stop()


def start_relay_thread(upstream: Address, *, host: str = "127.0.0.1", port: int = 0) -> RelayThread:
    """Start a relay in a background thread; it listens when this returns (`.port`)."""
    return RelayThread(upstream, host=host, port=port).start()


class RelayProcess:
    """The relay as a child process (`python -m siemgate_standins.kafka_relay --upstream ...`):
    for benchmarks, so that its CPU is its own and it does not share a GIL with the bench."""

    def __init__(self, upstream: Address, *, host: str = "127.0.0.1", port: int = 0,
                 log_path: str | None = None) -> None:
        self.upstream = upstream
        self.host = host
        self._requested_port = port
        self._log_path = log_path
        self._port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def port(self) -> int:
        return self._port

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self._port}"

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError("the relay process is not started")
        return self.process.pid

    def start(self, timeout: float = 15.0) -> Self:
        command = [
            sys.executable, "-m", "siemgate_standins.kafka_relay",
            "--upstream", f"{self.upstream[0]}:{self.upstream[1]}",
            "--host", self.host, "--port", str(self._requested_port),
        ]
        log_file = open(self._log_path or os.devnull, "ab")  # noqa: SIM115 - handed to the child
        try:
            self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log_file, stdin=subprocess.DEVNULL)
        finally:
            log_file.close()
        try:
            line = _read_line(self.process, timeout)
            if not line.startswith(READY_LINE_PREFIX):
                raise RuntimeError(f"the relay process did not start (exit {self.process.poll()}): {line!r}")
            self._port = int(line.rsplit(":", 1)[1])
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 10.0) -> None:
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout is not None:
            process.stdout.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _read_line(process: subprocess.Popen[bytes], timeout: float) -> str:
    """The child's first stdout line, waiting at most `timeout` seconds."""
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    buffer = b""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while b"\n" not in buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"the relay process printed no ready line within {timeout:g} s")
            if not selector.select(left):
                continue
            chunk = os.read(process.stdout.fileno(), 4096)
            if not chunk:
                break
            buffer += chunk
    return buffer.decode(errors="replace").split("\n", 1)[0].strip()


# ------------------------------------------------------------------------------------------
# Tansu behind a relay


@dataclass
class RelayedTansu:
    """Tansu advertising the relay's address. `broker.bootstrap_servers` is the relay's
    address, so helpers that take a `Broker` work unchanged; `tansu_address` is Tansu's own
    listener (a client may bootstrap there, but Metadata then sends it to the relay)."""

    broker: Broker
    relay: RelayThread | RelayProcess
    tansu_address: str

    @property
    def bootstrap_servers(self) -> str:
        return self.broker.bootstrap_servers

    def stop(self) -> None:
        try:
            self.broker.stop()
        finally:
            self.relay.stop()


def start_tansu_behind_relay(
    log_path: str | None = None,
    *,
    relay: Literal["thread", "process"] = "thread",
    relay_port: int = 0,
    relay_log_path: str | None = None,
) -> RelayedTansu:
    """Start a relay on 127.0.0.1 (a free port unless given), then Tansu on another free
    port advertising the relay's address. Raises BrokerUnavailable without Tansu."""
    binary = tansu_binary()
    tansu_port = free_port()
    upstream = ("127.0.0.1", tansu_port)
    handle: RelayThread | RelayProcess
    if relay == "thread":
        handle = start_relay_thread(upstream, port=relay_port)
    else:
        handle = RelayProcess(upstream, port=relay_port, log_path=relay_log_path).start()
    try:
        log_file = open(log_path or os.devnull, "ab")  # noqa: SIM115 - handed to the child
        try:
            process = subprocess.Popen(
                [binary, "broker",
                 "--listener-url", f"tcp://127.0.0.1:{tansu_port}",
                 "--advertised-listener-url", f"tcp://{handle.bootstrap_servers}"],
                stdout=log_file, stderr=log_file, stdin=subprocess.DEVNULL,
            )
        finally:
            log_file.close()
        try:
            wait_for_port("127.0.0.1", tansu_port, 15)
        except BrokerUnavailable:
            process.kill()
            process.wait()
            raise
    except BaseException:
        handle.stop()
        raise
    broker = Broker(handle.bootstrap_servers, embedded=True, process=process)
    return RelayedTansu(broker, handle, f"127.0.0.1:{tansu_port}")


@contextlib.contextmanager
def tansu_behind_relay(
    log_path: str | None = None, *, relay: Literal["thread", "process"] = "thread"
) -> Iterator[RelayedTansu]:
    """`start_tansu_behind_relay`, both stopped on exit."""
    started = start_tansu_behind_relay(log_path, relay=relay)
    try:
        yield started
    finally:
        started.stop()


# ------------------------------------------------------------------------------------------
# Command line


def _address(text: str) -> Address:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return host, int(port)


async def _serve_forever(upstream: Address, host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with KafkaRelay(upstream, host=host, port=port) as relay:
        print(f"{READY_LINE_PREFIX}{relay.bootstrap_servers}", flush=True)
        await stop.wait()
        log.info("relayed %d connections, rewrote %d ApiVersions responses",
                 relay.connections_total, relay.api_versions_rewritten)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """`python -m siemgate_standins.kafka_relay`: the relay alone (`--upstream`), or a
    throw-away Tansu behind a relay for local try-outs with kcat or rsyslog."""
    parser = argparse.ArgumentParser(prog="python -m siemgate_standins.kafka_relay", description=main.__doc__)
    parser.add_argument("--upstream", type=_address, help="relay to this broker (HOST:PORT) instead of starting Tansu")
    parser.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="listen port (default: free port; 9092 with Tansu)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.upstream is not None:
        with asyncio.Runner(loop_factory=_new_event_loop) as runner:
            runner.run(_serve_forever(args.upstream, args.host, args.port or 0))
        return 0
    # SIGTERM unwinds like Ctrl-C, so that Tansu and the relay are stopped.
    signal.signal(signal.SIGTERM, _interrupt)
    started = start_tansu_behind_relay(relay_port=9092 if args.port is None else args.port)
    print(f"Tansu behind a Kafka relay: bootstrap {started.bootstrap_servers} (Tansu itself on "
          f"{started.tansu_address}); Ctrl-C stops both", flush=True)
    try:
        assert started.broker.process is not None
        started.broker.process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        started.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
