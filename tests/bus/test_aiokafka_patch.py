"""siemgate.bus.aiokafka_patch, on uvloop (what siemgate runs on) with a real loopback socket:
aiokafka's send on a connection whose transport is already closed raises the
KafkaConnectionError its callers handle, not uvloop's RuntimeError (which ended a consumer's
metadata task for good: docs/RELIABILITY.md, finding 4)."""

from __future__ import annotations

import asyncio

import pytest
import uvloop
from aiokafka.conn import AIOKafkaConnection
from aiokafka.errors import KafkaConnectionError
from aiokafka.protocol.metadata import MetadataRequest

import siemgate.bus.kafka  # noqa: F401  (applies the patch)
from siemgate.bus import aiokafka_patch


async def _closed_transport_send() -> tuple[BaseException | None, BaseException | None, bool]:
    """(what uvloop's write raises on the closed transport, what conn.send raises, closed?)"""
    accepted: list[asyncio.StreamWriter] = []

    async def accept(_: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        accepted.append(w)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.transport.close()  # closed underneath aiokafka, before its reader noticed
    await asyncio.sleep(0)
    raw: BaseException | None = None
    try:
        writer.write(b"x")
    except BaseException as exc:
        raw = exc
    conn = AIOKafkaConnection("127.0.0.1", port)
    conn._reader, conn._writer = reader, writer
    conn._read_task = asyncio.create_task(asyncio.Event().wait())
    conn._versions = {3: (0, 0)}
    raised: BaseException | None = None
    try:
        await conn.send(MetadataRequest([]))
    except BaseException as exc:
        raised = exc
    closed = conn._writer is None
    conn.close()
    for w in accepted:
        w.close()
    server.close()
    await server.wait_closed()
    await asyncio.sleep(0.05)
    return raw, raised, closed


def test_a_send_on_a_closed_transport_is_a_kafka_connection_error_under_uvloop() -> None:
    raw, raised, closed = uvloop.run(_closed_transport_send())
    assert isinstance(raw, RuntimeError) and "closed" in str(raw), raw  # the premise: uvloop raises this
    assert isinstance(raised, KafkaConnectionError), repr(raised)
    assert "broken" in str(raised) and closed


def test_the_patch_is_applied_once() -> None:
    send = AIOKafkaConnection.send
    aiokafka_patch.apply()
    assert AIOKafkaConnection.send is send


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__])
