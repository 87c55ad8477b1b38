"""Faults (a) and (e): the broker unreachable, killed and restarted, frozen.

Each test has a Tansu of its own behind a TCP proxy (`ProxiedTansu`): every client, the
ingest, the forwarders and the test's own, reaches Kafka through the proxy.

What the guarantee is, and so what (a) tests. siemgate's promise stops at Kafka's: the
ingest answers 200 once Kafka acknowledged a batch with acks=all (or the spool fsync'd it),
and from then on the batch is as durable as Kafka keeps it. A real Kafka keeps it on disk
(and on `min.insync.replicas` brokers): a killed broker comes back with its log and the
consumer groups' offsets, and the forwarders go on from their commits. Tansu, the broker of
these tests, keeps everything in memory: once killed, it comes back EMPTY, and any record
it had acknowledged that a forwarder had not consumed yet is gone, by the broker's doing,
not siemgate's. So:

- (a1) "broker unreachable": the proxy cuts every connection for OUTAGE_SECONDS and refuses
  new ones; the broker keeps its data, as a real one does across a network partition or a
  restart. Tested under the full stream: nothing acked may be lost.
- (a2) "broker killed and restarted": SIGKILL, then a new, empty broker on the same
  address, at the only moment an in-memory broker can be killed without the broker itself
  losing acked data: when it holds nothing the forwarders have not delivered and committed.
  The senders pause until then (spool empty, every group's committed offsets at the end of
  every partition), the proxy cuts, the senders resume (the ingest spools their batches),
  the broker is killed and restarted empty, and the proxy restores. What this tests is
  siemgate's side of a restart: the spool re-creates the topics a restarted broker lacks and
  drains into them; the forwarders, whose groups and offsets are gone, start over from the
  beginning of the new topics; nothing acked while the broker was away is lost.
- (e) "broker frozen": SIGSTOP for OUTAGE_SECONDS, then SIGCONT (a partition, as far as any
  client can tell: connections open, nothing answered). Requests the broker received before
  freezing are processed after it resumes, so batches the ingest gave up on (and spooled)
  may reach Kafka twice: duplicates, counted.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.faults.conftest import FaultTable
from tests.faults.harness import ProxiedTansu, pipeline, poll
from tests.faults.test_processes import warm

pytestmark = pytest.mark.anyio

OUTAGE_SECONDS = 15.0


async def test_broker_unreachable(
    proxied_tansu: ProxiedTansu, tmp_path: Path, processes: list[subprocess.Popen[bytes]], fault_table: FaultTable
) -> None:
    async with pipeline(tmp_path, processes, proxied_tansu.target,
                        fault=f"(a1) broker unreachable {OUTAGE_SECONDS:g} s (proxy cut)") as p:
        await warm(p)
        await proxied_tansu.proxy.cut()
        acked_at_cut = len(p.senders.stats.acked)
        await asyncio.sleep(OUTAGE_SECONDS)  # the outage lasts this long; the senders go on
        proxied_tansu.proxy.restore()
        cleared_at = time.monotonic()
        p.notes.append(f"{len(p.senders.stats.acked) - acked_at_cut} events acked during the outage")
        await p.measure_recovery(cleared_at)
        await p.keep_streaming()
        result = await p.conclude()
    fault_table.record(result)
    assert not result.problems, "\n".join(result.problems)
    assert len(p.senders.stats.acked) > acked_at_cut


async def test_broker_killed_and_restarted_empty(
    proxied_tansu: ProxiedTansu, tmp_path: Path, processes: list[subprocess.Popen[bytes]], fault_table: FaultTable
) -> None:
    async with pipeline(tmp_path, processes, proxied_tansu.target,
                        fault="(a2) broker SIGKILLed + restarted empty, while unreachable") as p:
        await warm(p)
        # Quiesce: the in-memory broker must hold nothing undelivered when it dies.
        await p.senders.pause()
        paused_at = time.monotonic()
        state = await p.wait_quiet()
        assert p.buffers_empty(state), f"the pipeline did not drain before the broker kill: {state}"
        await proxied_tansu.proxy.cut()
        p.senders.resume()
        p.notes.append(f"senders paused {time.monotonic() - paused_at:.1f} s until the broker held nothing "
                       "undelivered")
        assert proxied_tansu.tansu is not None
        killed_pid = proxied_tansu.pid
        await proxied_tansu.tansu.kill()
        await proxied_tansu.tansu.start()  # empty: no topics, no consumer groups

        async def spooled() -> bool:
            return (await p.spool_events() or 0) >= 1_000

        await poll(spooled, "1000 events in the spool", 60)
        proxied_tansu.proxy.restore()
        cleared_at = time.monotonic()
        await p.measure_recovery(cleared_at)
        await p.keep_streaming()
        result = await p.conclude()
        # Tansu keeps everything in memory: a new process is an empty broker. Who re-creates
        # the topics varies (the spool's drainer, the producer, or the consumers' metadata
        # requests, which Tansu answers by creating them); delivery above proves they were.
        restarted = proxied_tansu.pid != killed_pid
    fault_table.record(result)
    assert not result.problems, "\n".join(result.problems)
    assert restarted, "the broker was not restarted: the test proved nothing"


async def test_broker_frozen(
    proxied_tansu: ProxiedTansu, tmp_path: Path, processes: list[subprocess.Popen[bytes]], fault_table: FaultTable
) -> None:
    async with pipeline(tmp_path, processes, proxied_tansu.target,
                        fault=f"(e) broker frozen {OUTAGE_SECONDS:g} s (SIGSTOP, SIGCONT)") as p:
        await warm(p)
        pid = proxied_tansu.pid
        os.kill(pid, signal.SIGSTOP)
        try:
            acked_at_stop = len(p.senders.stats.acked)
            await asyncio.sleep(OUTAGE_SECONDS)  # the freeze lasts this long; the senders go on
        finally:
            os.kill(pid, signal.SIGCONT)
        cleared_at = time.monotonic()
        p.notes.append(f"{len(p.senders.stats.acked) - acked_at_stop} events acked during the freeze")
        await p.measure_recovery(cleared_at)
        await p.keep_streaming()
        result = await p.conclude()
    fault_table.record(result)
    assert not result.problems, "\n".join(result.problems)
