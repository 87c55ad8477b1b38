"""A Kafka commit that never completes is given up, not waited for forever.

aiokafka retries a commit without a bound while the group coordinator cannot be found or
answers with a retriable error; a forwarder waiting on it would stop delivering for good
(seen once in fault (f): a commit under way when the broker's connection was cut)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from siemgate.bus.base import Partition
from siemgate.bus.kafka_bus import KafkaConsumer
from siemgate.config import KafkaConfig
from siemgate.errors import CommitRefused

pytestmark = pytest.mark.anyio


async def test_a_commit_that_never_completes_is_refused_after_the_timeout() -> None:
    consumer = KafkaConsumer(KafkaConfig(bootstrap_servers="127.0.0.1:9"), group="g", max_records=10,
                             fetch_max_wait_ms=20)
    consumer.commit_timeout_seconds = 0.05
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def never(offsets: Any) -> None:  # aiokafka's retry loop, with a coordinator that never answers
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()

    consumer._consumer.commit = never  # type: ignore[method-assign]
    try:
        with pytest.raises(CommitRefused, match="did not complete within 0.05 s"):
            await asyncio.wait_for(consumer.commit({Partition("t", 0): 5}), 30)
    finally:
        await consumer.stop()
    assert started.is_set() and cancelled.is_set()  # the stuck commit was abandoned, not left running


async def test_a_commit_timeout_names_a_dead_metadata_task() -> None:
    """Finding 4 (the partition soak's task dump): the consumer's aiokafka metadata task had
    ended, so its coordinator lookup waited forever for a metadata update and every commit
    timed out. The refusal says so (a restart is the only way out), with the task's error."""
    consumer = KafkaConsumer(KafkaConfig(bootstrap_servers="127.0.0.1:9"), group="g", max_records=10,
                             fetch_max_wait_ms=20)
    consumer.commit_timeout_seconds = 0.05
    assert consumer.broken() is None  # not started: no metadata task yet

    async def dies() -> None:
        raise RuntimeError("what ended it")

    dead = asyncio.create_task(dies())
    await asyncio.gather(dead, return_exceptions=True)
    client = consumer._consumer._client
    client._sync_task = dead

    async def never(offsets: Any) -> None:
        await asyncio.Event().wait()

    consumer._consumer.commit = never  # type: ignore[method-assign]
    try:
        with pytest.raises(CommitRefused, match=r"metadata task ended \(RuntimeError\('what ended it'\)\)"):
            await asyncio.wait_for(consumer.commit({Partition("t", 0): 5}), 30)
        running = asyncio.create_task(asyncio.Event().wait())
        client._sync_task = running
        assert consumer.broken() is None
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        assert "was cancelled" in str(consumer.broken())
    finally:
        client._sync_task = None
        await consumer.stop()
