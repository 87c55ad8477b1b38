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
