"""The kill soaks, short (tests/lifecycle/kill_soak.py; the long runs are bench/kill_soak.py):
ingest + a forwarder per sink with every sink, senders posting throughout, four deaths of
seeded random processes (SIGKILL, or SIGTERM with a grace period), each restarted after a
random downtime. Every acked event reaches every sink it is routed to (acked = delivered +
dead-lettered, lost 0), and no process died on its own."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.forwarders.rsyslog import RsyslogUnavailable, unavailable
from tests.lifecycle.conftest import ConservationLog
from tests.lifecycle.kill_soak import run_embedded_kill_soak, run_kill_soak

pytestmark = pytest.mark.anyio

# This seed's plan: the ingest SIGTERMed, Sentinel's forwarder SIGKILLed, the ingest SIGKILLed,
# HEC's forwarder SIGKILLed (printed).
SEED = 2
# The embedded run's plan: SIGKILL x3, SIGTERM cut short x3, clean x2 (printed).
EMBEDDED_SEED = 6


async def test_random_deaths_lose_nothing(tmp_path: Path, processes: list[subprocess.Popen[bytes]]) -> None:
    try:
        result = await run_kill_soak(tmp_path, processes, seed=SEED, kills=4, min_gap=1.5, max_gap=4,
                                     max_down=1.5, sigterm_share=0.5)
    except RsyslogUnavailable as exc:
        unavailable(str(exc))
    print("\n" + result.summary())
    assert not result.problems, result.summary()
    assert {k.signal for k in result.kills} == {"SIGKILL", "SIGTERM"}, result.summary()
    assert "ingest" in {k.target for k in result.kills}, result.summary()
    for line in result.sinks:
        assert line.lost == 0 and line.acked == line.delivered + line.dead_lettered > 0, line.line()


async def test_embedded_random_deaths_lose_nothing_and_tear_no_line(
        tmp_path: Path, processes: list[subprocess.Popen[bytes]], conservation_log: ConservationLog) -> None:
    """`siemgate run` on the embedded bus (the default chart's pod), killed 8 times by this
    seed's plan (SIGKILL x3 with requests in flight, SIGTERM cut short x3, clean x2), each
    replacement on the same volume: every acked event is at the file sink, and every line of
    its output is one whole JSON document (`_file_lines`)."""
    result = await run_embedded_kill_soak(tmp_path, processes, seed=EMBEDDED_SEED, deaths=8)
    print("\n" + result.summary())
    conservation_log.record(result.conservation)
    assert {d.how for d in result.deaths} == {"SIGKILL", "SIGTERM, short grace", "SIGTERM, clean"}, result.summary()
    assert result.ok, result.summary()
    assert result.lines == result.conservation.delivered + result.unowed + result.duplicates, result.summary()
