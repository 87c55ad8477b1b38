"""The partition soak, short (tests/lifecycle/soak.py; the 20-cut run is bench/partition_soak.py):
ingest + a forwarder per sink with all four sinks, Tansu in its own network namespace, three
cuts of its link (1-4 s, seeded) while senders post throughout. Every acked event reaches every
sink it is routed to (acked = delivered + dead-lettered, lost 0), the catch-up after the last
heal is bounded, and no process needed the watchdog (a restart would be finding 4 again)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.forwarders.rsyslog import RsyslogUnavailable, unavailable
from tests.lifecycle import netns
from tests.lifecycle.soak import plan, run_soak

pytestmark = pytest.mark.anyio

SEED = 16


async def test_three_cuts_lose_nothing_and_every_sink_catches_up(
        tmp_path: Path, processes: list[subprocess.Popen[bytes]]) -> None:
    netns.require()
    cuts = plan(SEED, 3, min_cut=1, max_cut=4, min_gap=2, max_gap=5)
    try:
        result = await run_soak(tmp_path, processes, seed=SEED, cuts=cuts, catch_up_timeout=180)
    except RsyslogUnavailable as exc:
        unavailable(str(exc))
    print("\n" + result.summary())
    assert not result.problems, result.summary()
    assert result.catch_up_seconds is not None, result.summary()
    for line in result.sinks:
        assert line.lost == 0 and line.acked == line.delivered + line.dead_lettered > 0, line.line()
    assert not [s for s in result.stalls if s.restarted], result.summary()
