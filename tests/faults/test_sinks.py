"""Fault (b): every sink down for 30 s at once, under a steady stream.

The five outages run concurrently (one test, so the suite stays within its time budget):

- file: its directory is on a tmpfs of its own, filled to the last byte (ENOSPC). Making
  the directory unwritable (chmod) would not do: the tests run as root, whom permissions do
  not stop, and the sink keeps its file open across batches, so a permission change would
  not reach it anyway; a full disk does.
- syslog: rsyslogd stopped (SIGTERM) and started again on the same ports. TCP syslog has no
  acknowledgement: what rsyslogd had not read when it stopped is lost in transit (at most the
  batches in flight); reported apart from "lost" (docs/RELIABILITY.md says so). Over RELP (the
  test below, (b2)) there is no such allowance: lost must be 0.
- Splunk HEC, Elasticsearch and Microsoft Sentinel (its Entra ID token endpoint with it): the
  stand-ins stopped (listening socket closed, every open connection dropped) and started again
  on the same port, their indexed data (and the tokens Entra ID issued) kept.

Each forwarder retries (backoff capped at RETRY_CAP_SECONDS here) without committing, so the
backlog waits in Kafka and is delivered once the sink is back.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from siemgate_standins.broker import Broker
from tests.faults.conftest import FaultTable
from tests.faults.harness import SmallDisk, pipeline
from tests.faults.test_processes import session_kafka, warm

pytestmark = pytest.mark.anyio

SINK_OUTAGE_SECONDS = 30.0
FILE_DISK_BYTES = 256 * 1024 * 1024


async def test_every_sink_down_30_s(
    kafka_broker: Broker, tmp_path: Path, processes: list[subprocess.Popen[bytes]], fault_table: FaultTable,
    small_disk: Callable[[str, int], SmallDisk],
) -> None:
    disk = small_disk("file-sink", FILE_DISK_BYTES)
    # Two forwarder processes (as two Deployments would be): the file sink's, and the others'.
    async with pipeline(tmp_path, processes, session_kafka(kafka_broker), file_dir=disk.path,
                        forwarders=[["file"], ["syslog", "splunk-hec", "elasticsearch", "sentinel"]],
                        fault=f"(b) every sink down {SINK_OUTAGE_SECONDS:g} s at once") as p:
        p.unacknowledged.add("syslog")
        await warm(p)
        disk.fill()  # the file sink's disk is full: ENOSPC
        await asyncio.gather(asyncio.to_thread(p.rsyslog.stop), p.hec.stop(), p.es.stop(), p.azure.stop())
        down_at = time.monotonic()
        acked_at_down = len(p.senders.stats.acked)
        await asyncio.sleep(SINK_OUTAGE_SECONDS)  # the outage lasts this long; the senders go on
        disk.free()
        await asyncio.gather(asyncio.to_thread(p.rsyslog.start), p.hec.start(), p.es.start(), p.azure.start())
        cleared_at = time.monotonic()
        p.notes.append(f"sinks down {cleared_at - down_at:.1f} s; {len(p.senders.stats.acked) - acked_at_down} "
                       "events acked meanwhile")
        await p.measure_recovery(cleared_at)
        await p.keep_streaming()
        result = await p.conclude()
    fault_table.record(result)
    assert not result.problems, "\n".join(result.problems)
    (sentinel,) = [s for s in result.sinks if s.sink == "sentinel"]
    assert sentinel.lost == 0 and sentinel.delivered + sentinel.dead_lettered == sentinel.owed > 0


RELAY_STALL_SECONDS = 2.0


async def test_syslog_over_relp_receiver_stalled_then_killed_twice(
    kafka_broker: Broker, tmp_path: Path, processes: list[subprocess.Popen[bytes]], fault_table: FaultTable,
) -> None:
    """Issue 20's case, the one TCP syslog loses events to (what sat in the socket buffers):
    rsyslogd stalls for 2 s (SIGSTOP: connections open, nothing read or answered), is SIGKILLed
    and started again on the same port, twice, under the stream. Over RELP an event counts as
    delivered only on its `rsp 200`, so the unanswered ones are sent again: lost 0, and no
    in-transit allowance (`unacknowledged` stays empty; the harness refuses it for RELP)."""
    async with pipeline(tmp_path, processes, session_kafka(kafka_broker), syslog="relp",
                        fault=f"(b2) syslog over RELP: rsyslogd stalled {RELAY_STALL_SECONDS:g} s + SIGKILLed x2") as p:
        await warm(p)
        for _ in range(2):
            p.rsyslog.freeze()
            await asyncio.sleep(RELAY_STALL_SECONDS)  # the stall lasts this long; the senders go on
            await asyncio.to_thread(p.rsyslog.kill)
            await asyncio.to_thread(p.rsyslog.start)
            cleared_at = time.monotonic()
            await p.measure_recovery(cleared_at, "rsyslogd back")
        await p.keep_streaming()
        result = await p.conclude()
    fault_table.record(result)
    assert not result.problems, "\n".join(result.problems)
    (syslog,) = [s for s in result.sinks if s.sink == "syslog"]
    assert (syslog.lost, syslog.in_transit) == (0, 0)
    assert syslog.delivered == syslog.owed > 0
