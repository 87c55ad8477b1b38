"""`KafkaPublisher.stop` while it is still connecting (a broker that accepts connections and
never answers: partitioned, frozen) closes the producer it was starting: its connections are
closed, none is left open until the process ends (nor the producer unclosed: aiokafka's
ResourceWarning)."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaProducer

from siemgate.bus import kafka
from siemgate.bus.kafka import KafkaPublisher
from siemgate.config import KafkaConfig

pytestmark = pytest.mark.anyio


async def test_stop_while_connecting_closes_the_producer_being_started(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[AIOKafkaProducer] = []

    class Recorded(AIOKafkaProducer):  # type: ignore[misc]
        def __init__(self, **options: object) -> None:
            super().__init__(**options)
            made.append(self)

    monkeypatch.setattr(kafka, "AIOKafkaProducer", Recorded)
    accepted: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append((reader, writer))  # answers nothing

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        publisher = KafkaPublisher(KafkaConfig(bootstrap_servers=f"127.0.0.1:{port}", idempotence=False))
        await publisher.start()
        deadline = asyncio.get_running_loop().time() + 10
        while not accepted:  # the producer's bootstrap connection is open: it is starting
            assert asyncio.get_running_loop().time() < deadline, "the producer never connected"
            await asyncio.sleep(0.01)
        await publisher.stop()
        # What aiokafka's __del__ checks before its "Unclosed AIOKafkaProducer" warning.
        assert made and all(producer._closed for producer in made)
        for reader, _ in accepted:  # the client's side closed: end of stream (after its request)
            async with asyncio.timeout(5):
                while await reader.read(65536):
                    pass
    finally:
        for _, writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()
