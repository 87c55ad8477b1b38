"""Fault (f): the spool's disk full while Kafka is away.

The spool lives on a tmpfs of its own (SmallDisk: mounting one needs root, which every
machine of this project, CI included, has; elsewhere the test skips, and fails under
CI=true). A ballast file takes all but SPOOL_ROOM_BYTES of it, then Kafka becomes
unreachable (the proxy cuts): batches go to the spool until SQLite cannot write any more
(SQLITE_FULL), and from then on the ingest, having neither Kafka nor the spool, answers 503:
the only answer that loses data (the sender does not resend it), and the honest one, since
no 200 may be given for a batch that is not durable. The ballast is deleted (space returns):
the spool takes batches again (200s) while Kafka is still away; Kafka comes back: the spool
drains, every event answered 200 reaches every sink.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.faults.conftest import FaultTable
from tests.faults.harness import ProxiedTansu, SmallDisk, metrics_text, pipeline, poll
from tests.faults.test_processes import warm

pytestmark = pytest.mark.anyio

SPOOL_DISK_BYTES = 64 * 1024 * 1024
SPOOL_ROOM_BYTES = 3 * 1024 * 1024
# 503 answers to see while the disk is full (each comes after the ack deadline: ~1 s per sender).
REFUSALS = 15


async def test_spool_disk_full_while_kafka_is_away(
    proxied_tansu: ProxiedTansu, tmp_path: Path, processes: list[subprocess.Popen[bytes]], fault_table: FaultTable,
    small_disk: Callable[[str, int], SmallDisk],
) -> None:
    disk = small_disk("spool", SPOOL_DISK_BYTES)
    async with pipeline(tmp_path, processes, proxied_tansu.target, spool_dir=disk.path,
                        fault="(f) spool disk full (tmpfs) while Kafka is away") as p:
        await warm(p)
        disk.fill(leave_bytes=SPOOL_ROOM_BYTES)
        await proxied_tansu.proxy.cut()
        cut_at = time.monotonic()
        acked_at_cut = len(p.senders.stats.acked)
        codes = p.senders.stats.codes
        await poll(lambda: codes["503"] >= REFUSALS, f"{REFUSALS} answers 503 (the spool's disk full)", 120)
        full_at = time.monotonic()
        p.notes.append(f"{len(p.senders.stats.acked) - acked_at_cut} events spooled (200) in "
                       f"{full_at - cut_at:.1f} s before the disk was full; then {codes['503']} batches answered "
                       "503 (not owed)")
        disk.free()
        freed_at = time.monotonic()
        await p.first_200_after(freed_at, "space back: 200s from the spool")
        spooled = await p.spool_events() or 0

        async def spool_grew() -> bool:
            return (await p.spool_events() or 0) >= spooled + 300

        await poll(spool_grew, "the spool to take 300 more events", 60)
        proxied_tansu.proxy.restore()
        cleared_at = time.monotonic()
        await p.measure_recovery(cleared_at, "Kafka back: spool drained to every sink")
        await p.keep_streaming()
        metrics = await metrics_text(p.client, p.ingest_url) or ""
        refusals = {line.split("{")[1].split("}")[0]: line.rsplit(" ", 1)[1] for line in metrics.splitlines()
                    if line.startswith("siemgate_spool_refusals_total{")}
        p.notes.append(f"the ingest's siemgate_spool_refusals_total: {refusals}")
        result = await p.conclude()
    fault_table.record(result)
    assert not result.problems, "\n".join(result.problems)
    unexpected = set(result.codes) - {"200", "503"}
    assert not unexpected, f"answers other than 200 and 503: {result.codes}"
