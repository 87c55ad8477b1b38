"""Faults (c) and (d): a siemgate process SIGKILLed under a steady stream, and restarted.

(c) `siemgate forward` (all five sinks in one process, Sentinel's among them) SIGKILLed and started again at once:
    what it had delivered but not committed is delivered again (duplicates), nothing is lost.
(d) `siemgate ingest` SIGKILLed and started again on the same port and spool, twice: once
    while Kafka takes every batch directly, once while Kafka is unreachable and the spool
    holds acked events (restarted with Kafka still away, it drains them once Kafka is back).
    The senders see connection errors meanwhile: those batches were never answered 200, so
    they are not owed; whatever of them reached a sink anyway is counted apart.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from siemgate_standins.broker import Broker
from tests.faults.conftest import FaultTable
from tests.faults.harness import KafkaTarget, Pipeline, ProxiedTansu, pipeline, poll

pytestmark = pytest.mark.anyio

# Events acked before a fault is injected: the stream is steady and every sink is busy.
WARM_EVENTS = 1_500


async def warm(p: Pipeline, events: int = WARM_EVENTS) -> None:
    await p.start_stream()
    await poll(lambda: len(p.senders.stats.acked) >= events, f"{events} acked events", 120)


def session_kafka(broker: Broker) -> KafkaTarget:
    return KafkaTarget(broker.bootstrap_servers, idempotence=broker.idempotence)


async def test_forwarder_sigkilled_and_restarted(
    kafka_broker: Broker, tmp_path: Path, processes: list[subprocess.Popen[bytes]], fault_table: FaultTable
) -> None:
    async with pipeline(tmp_path, processes, session_kafka(kafka_broker),
                        fault="(c) forwarder SIGKILLed, restarted at once") as p:
        await warm(p)
        await p.forwarder().kill()
        cleared_at = time.monotonic()
        await p.start_forwarder()
        await p.measure_recovery(cleared_at)
        await p.keep_streaming()
        result = await p.conclude()
    fault_table.record(result)
    assert not result.problems, "\n".join(result.problems)
    (sentinel,) = [s for s in result.sinks if s.sink == "sentinel"]
    assert sentinel.lost == 0 and sentinel.delivered + sentinel.dead_lettered == sentinel.owed > 0


async def test_ingest_sigkilled_and_restarted(
    proxied_tansu: ProxiedTansu, tmp_path: Path, processes: list[subprocess.Popen[bytes]], fault_table: FaultTable
) -> None:
    async with pipeline(tmp_path, processes, proxied_tansu.target,
                        fault="(d) ingest SIGKILLed + restarted: Kafka up; Kafka away, acked events in its spool") as p:
        await warm(p)
        assert p.ingest is not None
        await p.ingest.kill()
        cleared_at = time.monotonic()
        await p.start_ingest()
        await p.measure_recovery(cleared_at, "Kafka up")
        await p.keep_streaming()

        # Kafka unreachable: batches are spooled; the ingest dies with acked events in its spool.
        await proxied_tansu.proxy.cut()

        async def spooled(events: int) -> bool:
            return (await p.spool_events() or 0) >= events

        await poll(lambda: spooled(600), "600 events in the spool", 60)
        await p.ingest.kill()
        await p.start_ingest()  # Kafka still away: it serves from the spool it found
        spool_at_restart = await p.spool_events()
        await poll(lambda: spooled((spool_at_restart or 0) + 300), "300 more events in the spool", 60)
        proxied_tansu.proxy.restore()
        cleared_at = time.monotonic()
        p.notes.append(f"second kill: {spool_at_restart:.0f} events in the spool when it restarted; the recovery "
                       "is counted from Kafka's return")
        await p.measure_recovery(cleared_at, "spool drained after Kafka came back")
        await p.keep_streaming()
        result = await p.conclude()
    fault_table.record(result)
    assert not result.problems, "\n".join(result.problems)
