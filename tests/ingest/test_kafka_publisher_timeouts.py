"""KafkaPublisher against a broker that does not answer (SIGSTOPped Tansu, as fault (e)):
a publish given up by its caller's deadline leaves no future behind whose exception nobody
retrieves (once logged by asyncio as "Future exception was never retrieved
(RequestTimedOutError)" on the ingest after Kafka timeouts)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from siemgate.bus.kafka import KafkaPublisher
from siemgate.config import KafkaConfig, TopicsConfig
from siemgate.errors import BusUnavailable
from siemgate.record import make_record
from tests.ingest.conftest import TansuFactory
from tests.support import wait_until

pytestmark = pytest.mark.anyio


def records(n: int, severities: tuple[str, ...] = ("high", "low")) -> list[Any]:
    # One producer batch per topic (and partition) a publish covers.
    return [make_record(prefix="t", event={"id": f"e-{n}-{i}", "severity": sev}, kind="event",
                        integration="appsec", severity=sev, event_id=f"e-{n}-{i}",  # type: ignore[arg-type]
                        received_at="2026-12-07T12:00:00.000000Z", batch=str(n), seq=i, peer="127.0.0.1")
            for i, sev in enumerate(severities * 5)]


async def test_publishes_given_up_while_the_broker_is_frozen_leave_no_unretrieved_future(
    private_tansu: TansuFactory, tmp_path: Path
) -> None:
    tansu = private_tansu()
    await tansu.start()
    config = KafkaConfig(bootstrap_servers=f"127.0.0.1:{tansu.port}", topic_prefix="t", idempotence=False,
                         produce_timeout_seconds=5,
                         topics=TopicsConfig(partitions=1))
    publisher = KafkaPublisher(config)
    loop = asyncio.get_running_loop()
    unretrieved: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: unretrieved.append(context))
    await publisher.start()
    try:
        assert await publisher.wait_connected(30)
        await publisher.publish(records(-1))  # topics created, metadata known
        # Each producer batch aiokafka queues from now on: the test waits for their outcome.
        batches: list[Any] = []
        assert publisher._producer is not None
        accumulator = publisher._producer._message_accumulator
        append_batch = accumulator._append_batch

        def recorded(*args: Any) -> Any:
            batch = append_batch(*args)
            batches.append(batch)
            return batch

        accumulator._append_batch = recorded
        assert tansu.process is not None
        os.kill(tansu.process.pid, signal.SIGSTOP)
        try:
            async def given_up(batch: list[Any]) -> None:
                # The spool's ack deadline: the caller stops waiting long before Kafka's timeout.
                with contextlib.suppress(TimeoutError, BusUnavailable):
                    async with asyncio.timeout(0.5):
                        await publisher.publish(batch)

            # 1: high + low, taken by the producer into a request the broker never answers;
            # 2: low only, queued behind it; 3: high + low: its high batch is queued at once,
            # its low one waits for room behind 2's and is given up there, in the middle of
            # the publish.
            await given_up(records(1))
            await given_up(records(2, ("low",)))
            await given_up(records(3))
            # aiokafka fails the batches once its request timeout passes, the broker still frozen.
            assert batches
            await wait_until(lambda: all(b.future.done() for b in batches), "the producer's batches failed",
                             timeout=60)
        finally:
            os.kill(tansu.process.pid, signal.SIGCONT)
        for _ in range(3):
            gc.collect()
            await asyncio.sleep(0.1)
    finally:
        await publisher.stop()
        loop.set_exception_handler(previous)
    never_retrieved = [c for c in unretrieved if "never retrieved" in str(c.get("message"))]
    assert not never_retrieved, [(c["message"], repr(c.get("exception"))) for c in never_retrieved]
