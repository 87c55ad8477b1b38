"""Helpers for tests that run the real ingest over loopback against a real broker."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from aiokafka import AIOKafkaConsumer, ConsumerRecord

from siemgate.bus.base import Publisher
from siemgate.bus.kafka import KafkaPublisher
from siemgate.config import Config, parse_config
from siemgate.ingest.server import Server, uvicorn_config
from siemgate.record import all_topics
from siemgate.testing.broker import Broker, free_port

KEY = "test-key-0123456789"
NEXT_KEY = "next-key-9876543210"


def make_config(
    tmp_path: Path,
    broker: Broker | None,
    *,
    bootstrap: str | None = None,
    integrations: str | None = None,
    extra: str = "",
    prefix: str | None = None,
    produce_timeout: float = 5.0,
) -> Config:
    """A config for one test: its own topic prefix, so tests never see each other's records."""
    prefix = prefix or f"t{uuid.uuid4().hex[:10]}"
    servers = bootstrap or (broker.bootstrap_servers if broker else "127.0.0.1:1")
    idempotence = "true" if broker and broker.idempotence else "false"
    integrations = integrations or f"""
  - name: appsec
    auth: {{header: X-Api-Key, values: ["{KEY}", "{NEXT_KEY}", ""]}}
"""
    text = f"""
listen: {{host: 127.0.0.1, port: 0}}
state_dir: {tmp_path}/state
quarantine: {{path: {tmp_path}/quarantine}}
integrations:
{integrations}
bus:
  type: kafka
  kafka:
    bootstrap_servers: "{servers}"
    topic_prefix: {prefix}
    idempotence: {idempotence}
    produce_timeout_seconds: {produce_timeout}
    topics: {{partitions: 2}}
{extra}
"""
    return parse_config(text, {})


@dataclass
class RunningIngest:
    url: str
    config: Config
    server: uvicorn.Server
    publisher: Publisher

    def webhook(self, integration: str = "appsec") -> str:
        return self.url + self.config.integration(integration).path

    @property
    def prefix(self) -> str:
        assert self.config.bus.kafka is not None
        return self.config.bus.kafka.topic_prefix


@contextlib.asynccontextmanager
async def running_ingest(
    config: Config, *, wait_ready: bool = True, publisher: Publisher | None = None
) -> AsyncIterator[RunningIngest]:
    """Serve the ingest on a free loopback port (real uvicorn, real HTTP); stop it on exit."""
    assert config.bus.kafka is not None
    publisher = publisher or KafkaPublisher(config.bus.kafka)
    port = free_port()
    uv = uvicorn_config(config, publisher)
    uv.port = port
    uv.loop = "asyncio"
    uv.timeout_graceful_shutdown = 5
    server = Server(uv)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(15):
            while not server.started:
                if task.done():
                    task.result()
                    raise RuntimeError("the ingest stopped during startup")
                await asyncio.sleep(0.01)
            if wait_ready and isinstance(publisher, KafkaPublisher):
                assert await publisher.wait_connected(15), "the ingest did not connect to Kafka"
        yield RunningIngest(f"http://127.0.0.1:{port}", config, server, publisher)
    finally:
        server.should_exit = True
        await task


async def consume(
    broker: Broker, prefix: str, count: int, *, timeout: float = 20.0, topics: list[str] | None = None
) -> list[ConsumerRecord[bytes, bytes]]:
    """Read `count` records from the prefix's topics (no consumer group: no join delay).

    Then keeps reading briefly to catch any extra (duplicated) record."""
    consumer = AIOKafkaConsumer(
        *(topics or all_topics(prefix)),
        bootstrap_servers=broker.bootstrap_servers,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        async with asyncio.timeout(timeout):
            while len(records) < count:
                batch = await consumer.getmany(timeout_ms=200)
                for part in batch.values():
                    records.extend(part)
        extra = await consumer.getmany(timeout_ms=300)
        for part in extra.values():
            records.extend(part)
    except TimeoutError:
        raise AssertionError(f"only {len(records)} of {count} records arrived within {timeout} s") from None
    finally:
        await consumer.stop()
    return records


def headers_of(record: ConsumerRecord[bytes, bytes]) -> Mapping[str, bytes]:
    return dict(record.headers)


def event(i: int = 0, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": f"evt-{uuid.uuid4().hex[:12]}-{i}",
        "severity": "high",
        "type": "sql_injection",
        "timestamp": "2026-11-28T21:00:00Z",
        "source_ip": "203.0.113.7",
        "url": "https://shop.example.com/login",
        "method": "POST",
    }
    base.update(fields)
    return base
