"""The kill soak, short (tests/lifecycle/kill_soak.py; the long run is bench/kill_soak.py):
ingest + a forwarder per sink with every sink, senders posting throughout, four deaths of
seeded random processes (SIGKILL, or SIGTERM with a grace period), each restarted after a
random downtime. Every acked event reaches every sink it is routed to (acked = delivered +
dead-lettered, lost 0), and no process died on its own."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.forwarders.rsyslog import RsyslogUnavailable, unavailable
from tests.lifecycle.kill_soak import run_kill_soak

pytestmark = pytest.mark.anyio

# This seed's plan: the ingest SIGTERMed, Sentinel's forwarder SIGKILLed, the ingest SIGKILLed,
# HEC's forwarder SIGKILLed (printed).
SEED = 2


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
