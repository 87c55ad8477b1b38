"""The kill soak: ingest + one `siemgate forward` per sink (as the chart runs them) with every
sink of the fault suite, a steady stream of senders, and N process deaths at seeded random
moments: a random process (the ingest or one forwarder) is SIGKILLed (a node lost, an OOM
kill, a liveness restart) or sent SIGTERM with a grace period (a rollout, a scale-down, a
drain), stays down for a random while (0-`max_down` s: the senders meanwhile get connection
errors from a dead ingest, which are not owed), and is started again on the same spool and
consumer groups, as a Deployment's replacement pod on its claim would be.

    senders ──▶ siemgate ingest (spool; killed) ──▶ Tansu ──▶ siemgate forward × 5 (killed)
        ──▶ file │ rsyslogd (TCP) │ HEC stand-in (indexer acks) │ ES stand-in │ Sentinel stand-in

The fault suite kills each process once, at one moment; this varies the moment, the process,
the signal and the downtime, many times in one run. After the last restart the senders stop
and `Pipeline.conclude` (tests/faults/harness.py) drains, sends a fresh batch and accounts:
one **conservation line per sink**, acked (owed to that sink) = delivered + dead-lettered,
lost (neither), duplicates (deliveries beyond the first: at least once, expected after kills).

Used by bench/kill_soak.py (many kills, a correctness run) and tests/lifecycle/test_kill_soak.py
(a few, in the suite). Needs Tansu and rsyslogd; every process is stopped at the end.
"""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from tests.faults.harness import SINKS, KafkaTarget, Pipeline, Process, Stuck, routed
from tests.lifecycle.soak import SinkLine, dead_letter_keys, load_note
from tests.support import PrivateTansu

Signal = Literal["SIGKILL", "SIGTERM"]
# A SIGTERMed process has this long to exit (the chart's terminationGracePeriodSeconds is
# longer; a drain that needs more is cut by SIGKILL, as the kubelet would).
GRACE_SECONDS = 15.0


@dataclass(frozen=True)
class Kill:
    after: float  # seconds of running before the death
    target: str  # "ingest" or a forwarder's name (its sink)
    signal: Signal
    down: float  # seconds dead before the replacement starts


def plan(seed: int, kills: int, targets: tuple[str, ...], *, min_gap: float, max_gap: float,
         max_down: float, sigterm_share: float = 0.3) -> list[Kill]:
    """`kills` deaths: each after a gap drawn between min_gap and max_gap, of a target drawn
    from `targets`, by SIGTERM with probability `sigterm_share` (else SIGKILL), down for a
    time drawn between 0 and max_down. The same seed, the same plan."""
    rng = random.Random(seed)
    return [Kill(round(rng.uniform(min_gap, max_gap), 2), rng.choice(targets),
                 "SIGTERM" if rng.random() < sigterm_share else "SIGKILL", round(rng.uniform(0, max_down), 2))
            for _ in range(kills)]


@dataclass
class KillSoakResult:
    seed: int
    kills: list[Kill]
    acked: int
    sinks: list[SinkLine]
    problems: list[str]
    notes: list[str]
    codes: dict[str, int]
    exits: list[str]  # per SIGTERM: the process and its exit code (0: drained and exited in time)
    seconds: float
    load: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return (not self.problems and bool(self.sinks)
                and all(s.lost == 0 and s.acked == s.delivered + s.dead_lettered for s in self.sinks))

    def summary(self) -> str:
        by_target = Counter(f"{kill.target} {kill.signal}" for kill in self.kills)
        deaths = ", ".join(f"{what} x{n}" for what, n in sorted(by_target.items()))
        lines = [f"kill soak: seed {self.seed}, {len(self.kills)} deaths ({deaths}), "
                 f"{self.acked} events acked, {self.seconds:.0f} s in all",
                 *(s.line() for s in self.sinks),
                 f"answers: {self.codes}"]
        if self.exits:
            lines.append(f"SIGTERM exits: {', '.join(self.exits)}")
        lines += [f"problem: {p}" for p in self.problems] + [f"note: {n}" for n in self.notes]
        if self.load:
            lines.append(f"load: {self.load}")
        return "\n".join(lines)

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        data["summary"] = self.summary()
        return data


def targets(pipeline: Pipeline) -> tuple[str, ...]:
    return ("ingest", *pipeline.slots)


def _process(pipeline: Pipeline, target: str) -> Process:
    if target == "ingest":
        assert pipeline.ingest is not None
        return pipeline.ingest
    return pipeline.forwarder(target)


async def run_kill_soak(tmp_path: Path, processes: list[subprocess.Popen[bytes]], *, seed: int, kills: int,
                        min_gap: float = 2.0, max_gap: float = 10.0, max_down: float = 3.0,
                        sigterm_share: float = 0.3,
                        log: Callable[[str], None] = print) -> KillSoakResult:
    """The soak (see the module)."""
    started = time.monotonic()
    tansu = PrivateTansu(tmp_path / "tansu.log")
    await tansu.start()
    kafka = KafkaTarget(f"127.0.0.1:{tansu.port}", idempotence=False)
    exits: list[str] = []
    schedule: list[Kill] = []
    try:
        pipeline = Pipeline(tmp_path, processes, kafka, fault="kill soak",
                            forwarders=[(sink,) for sink in SINKS])
        try:
            await pipeline.start()
            schedule = plan(seed, kills, targets(pipeline), min_gap=min_gap, max_gap=max_gap, max_down=max_down,
                            sigterm_share=sigterm_share)
            log(f"kill soak: seed {seed}, deaths (after s, process, signal, down s): "
                f"{[(k.after, k.target, k.signal, k.down) for k in schedule]}")
            await pipeline.start_stream()
            log("  events flow to every sink")
            for n, kill in enumerate(schedule, 1):
                await asyncio.sleep(kill.after)  # the plan's timeline, not a synchronisation
                await pipeline.supervise()  # a process that died on its own is a problem (and restarted)
                process = _process(pipeline, kill.target)
                acked = len(pipeline.senders.stats.acked)
                if kill.signal == "SIGKILL":
                    await process.kill()
                    outcome = "killed"
                else:
                    code = await process.terminate(timeout=GRACE_SECONDS)
                    outcome = f"exit {code}" if code != -signal.SIGKILL else f"SIGKILLed after {GRACE_SECONDS:g} s"
                    exits.append(f"{kill.target}: {outcome}")
                log(f"  death {n}/{len(schedule)}: {kill.target} {kill.signal} ({outcome}; {acked} acked so far), "
                    f"down {kill.down:g} s")
                await asyncio.sleep(kill.down)  # the plan's downtime
                if kill.target == "ingest":
                    await pipeline.start_ingest()
                else:
                    await pipeline.start_forwarder(kill.target)
            await pipeline.supervise()
            await pipeline.keep_streaming(500)  # the stream goes on after the last restart
            result = await pipeline.conclude()
            dead = await dead_letter_keys(kafka, pipeline.prefix)
        except Stuck as exc:
            pipeline.problems.append(str(exc))
            raise
        finally:
            await pipeline.close()
    finally:
        await tansu.kill()
    acked_ids = pipeline.senders.stats.acked
    lines = []
    for account in result.sinks:
        received = next(r for r in pipeline.received if r.name == account.sink)
        owed = {i for i, severity in acked_ids.items() if routed(account.sink, severity)}
        delivered = owed & set(received.counts)
        dead_lettered = (owed - delivered) & dead.get(account.sink, set())
        lines.append(SinkLine(account.sink, len(owed), len(delivered), len(dead_lettered),
                              len(owed - delivered - dead_lettered), account.duplicates))
    return KillSoakResult(seed=seed, kills=schedule, acked=len(acked_ids), sinks=lines,
                          problems=list(result.problems), notes=list(result.notes), codes=result.codes,
                          exits=exits, seconds=round(time.monotonic() - started, 1), load=load_note(),
                          extra={"logs": str(pipeline.logs)})
