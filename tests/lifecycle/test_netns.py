"""The partition fixture does what the scenarios rely on: the broker is reachable, a partition
drops packets silently (an open connection neither errors nor gets an answer; a new one times
out instead of being refused), a heal restores it, and nothing is left behind."""

from __future__ import annotations

import ipaddress
import socket
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from tests.lifecycle.netns import NETWORK, PORT, PartitionedBroker, require

pytestmark = pytest.mark.anyio


async def test_partition_is_silent_and_heal_restores_the_broker(partitioned_broker: PartitionedBroker) -> None:
    broker = partitioned_broker
    assert ipaddress.ip_address(broker.address) in NETWORK and ipaddress.ip_address(broker.host_address) in NETWORK
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers, enable_idempotence=False,
                                request_timeout_ms=3000)
    await producer.start()
    try:
        await producer.send_and_wait("netns-probe", b"before")
        held = socket.create_connection((broker.address, PORT), timeout=2)
        broker.partition()
        try:
            # An open connection: a write is accepted by the kernel, no answer, no reset.
            held.settimeout(1.0)
            held.sendall(b"\x00\x00\x00\x01")
            with pytest.raises(TimeoutError):
                held.recv(1)
            # A new connection is not refused: it times out.
            started = time.monotonic()
            assert not broker.reachable(timeout=1.0)
            assert time.monotonic() - started >= 0.9
        finally:
            held.close()
        broker.heal()
        await producer.send_and_wait("netns-probe", b"after")
    finally:
        await producer.stop()


def test_close_removes_everything_even_after_a_failure(tmp_path: Path) -> None:
    require()
    broker = PartitionedBroker(tmp_path / "tansu.log")
    broker.create()
    try:
        broker._start()
        broker.partition()
        raise RuntimeError("a test failing mid-way")
    except RuntimeError:
        pass
    finally:
        broker.close()
    assert broker.leftovers() == []
    assert broker.process is None
