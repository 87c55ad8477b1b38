"""A Kafka broker behind a real network partition: Tansu in a network namespace of its own.

    host (siemgate, the test)  198.18.x.1 ──veth──▶ 198.18.x.2  namespace: Tansu :9092

`partition()` takes the namespace's end of the veth pair down: the link is gone, packets to
the broker vanish (no RST, no ICMP), connections already open stay half-open, as when a
switch or a node's network fails; new connections time out. `heal()` brings it back: the
half-open connections resume or time out on the client's own schedule, as they would.

Addresses come from 198.18.0.0/15 (RFC 2544, benchmarking) only, one random /30 per broker,
so that tests running side by side do not collide. Needs root and `ip` (iproute2). Every
namespace, link and process made here is removed by `close()`, also after a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import secrets
import shutil
import signal
import subprocess
import time
from pathlib import Path

from siemgate_standins.broker import Broker, tansu_binary, wait_for_port

NETWORK = ipaddress.ip_network("198.18.0.0/15")
PORT = 9092


def unavailable_reason() -> str | None:
    """Why a partitioned broker cannot be made here (None: it can)."""
    if os.geteuid() != 0:
        return "a network namespace needs root (os.geteuid() != 0)"
    if shutil.which("ip") is None:
        return "`ip` (iproute2) is not installed"
    return None


def require() -> None:
    """Skip the test when a partitioned broker cannot be made here; under CI=true, fail."""
    import pytest

    from siemgate_standins.broker import BrokerUnavailable

    reason = unavailable_reason()
    if reason is None:
        try:
            tansu_binary()
        except BrokerUnavailable as exc:
            reason = f"no Tansu broker: {exc}"
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"needed under CI=true: {reason}")
    pytest.skip(reason)


def _ip(*args: str, namespace: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    command = ["ip", *args] if namespace is None else ["ip", "netns", "exec", namespace, "ip", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


class PartitionedBroker:
    """Tansu inside a namespace of its own, reachable from the host over a veth pair that the
    test can cut (`partition`) and restore (`heal`). Tansu keeps its data in memory."""

    def __init__(self, log_path: Path) -> None:
        tag = secrets.token_hex(4)
        self.namespace = f"sg-lc-{tag}"
        self.host_link = f"sgh{tag}"  # interface names: at most 15 characters
        self.ns_link = f"sgn{tag}"
        block = secrets.randbelow(NETWORK.num_addresses // 4) * 4
        self.host_address = str(NETWORK.network_address + block + 1)
        self.address = str(NETWORK.network_address + block + 2)
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.partitioned = False
        self._made: list[str] = []

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.address}:{PORT}"

    @property
    def broker(self) -> Broker:
        return Broker(self.bootstrap_servers, embedded=True)

    # -- lifecycle

    def create(self) -> None:
        _ip("netns", "add", self.namespace)
        self._made.append("netns")
        _ip("link", "add", self.host_link, "type", "veth", "peer", "name", self.ns_link, "netns", self.namespace)
        self._made.append("link")
        _ip("addr", "add", f"{self.host_address}/30", "dev", self.host_link)
        _ip("link", "set", self.host_link, "up")
        _ip("addr", "add", f"{self.address}/30", "dev", self.ns_link, namespace=self.namespace)
        _ip("link", "set", self.ns_link, "up", namespace=self.namespace)
        _ip("link", "set", "lo", "up", namespace=self.namespace)

    async def start(self) -> None:
        """Start Tansu in the namespace, listening on (and advertising) the namespace's address."""
        await asyncio.to_thread(self._start)

    def _start(self) -> None:
        assert self.process is None or self.process.poll() is not None
        url = f"tcp://{self.address}:{PORT}"
        with open(self.log_path, "ab") as log:
            # `ip netns exec` enters the namespace and execs Tansu: the process is Tansu's.
            self.process = subprocess.Popen(
                ["ip", "netns", "exec", self.namespace, tansu_binary(), "broker", "--listener-url", url,
                 "--advertised-listener-url", url],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL,
            )
        wait_for_port(self.address, PORT, 20)

    def partition(self) -> None:
        """Cut the link: the namespace's end goes down; packets to the broker are dropped silently."""
        _ip("link", "set", self.ns_link, "down", namespace=self.namespace)
        self.partitioned = True

    def heal(self, timeout: float = 15.0) -> None:
        """Bring the link back; return once a new connection to the broker succeeds (the host's
        neighbour entry for the broker failed during the partition and is resolved again)."""
        _ip("link", "set", self.ns_link, "up", namespace=self.namespace)
        _ip("neigh", "flush", "dev", self.host_link, check=False)
        self.partitioned = False
        deadline = time.monotonic() + timeout
        while not self.reachable():
            if time.monotonic() > deadline:
                raise RuntimeError(f"the broker at {self.bootstrap_servers} is unreachable {timeout:g} s after heal()")
            time.sleep(0.05)

    def reachable(self, timeout: float = 0.5) -> bool:
        import socket

        try:
            with socket.create_connection((self.address, PORT), timeout=timeout):
                return True
        except OSError:
            return False

    def kill_broker(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait(10)

    def close(self) -> None:
        """Remove everything made here (safe to call after any failure, and twice)."""
        self.kill_broker()
        if "netns" in self._made:
            pids = _ip("netns", "pids", self.namespace, check=False).stdout.split()
            for pid in pids:  # anything else a test started in the namespace
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
        if "link" in self._made:
            _ip("link", "del", self.host_link, check=False)  # removes both ends
        if "netns" in self._made:
            _ip("netns", "del", self.namespace, check=False)
        self._made.clear()

    def leftovers(self) -> list[str]:
        """What of this broker still exists (for the fixture's own check)."""
        left = []
        if self.namespace in _ip("netns", "list", check=False).stdout:
            left.append(f"namespace {self.namespace}")
        if _ip("link", "show", self.host_link, check=False).returncode == 0:
            left.append(f"link {self.host_link}")
        return left
