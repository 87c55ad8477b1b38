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
the signal and the downtime, many times in one run. With `partition_share`, Tansu runs in a
network namespace of its own and that share of the steps cut its link for a while instead
(half-open connections, no RST: tests/lifecycle/netns.py); the deaths that come while a cut
lasts happen with Kafka away (the ingest's spool holding acked events, the forwarders'
commits failing). After the last restart the senders stop
and `Pipeline.conclude` (tests/faults/harness.py) drains, sends a fresh batch and accounts:
one **conservation line per sink**, acked (owed to that sink) = delivered + dead-lettered,
lost (neither), duplicates (deliveries beyond the first: at least once, expected after kills).

Used by bench/kill_soak.py (many kills, a correctness run) and tests/lifecycle/test_kill_soak.py
(a few, in the suite). Needs Tansu and rsyslogd; every process is stopped at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson

from tests.faults.harness import SINKS, KafkaTarget, Pipeline, Process, Stuck
from tests.lifecycle.kubelet import (
    Conservation,
    Pod,
    Sender,
    Service,
    account,
    delivered_ids,
    embedded_config,
    sink_outputs,
    stable_port,
    write_config,
)
from tests.lifecycle.soak import Link, SinkLine, dead_letter_keys, load_note, sink_lines
from tests.support import PrivateTansu, wait_until

# How a step of the plan strikes: a process killed or terminated, or (`partitions`) Kafka's
# link cut (Tansu in a network namespace: half-open connections, no RST) for `down` seconds.
Signal = Literal["SIGKILL", "SIGTERM", "cut"]
KAFKA_LINK = "kafka link"
# A SIGTERMed process has this long to exit (the chart's terminationGracePeriodSeconds is
# longer; a drain that needs more is cut by SIGKILL, as the kubelet would).
GRACE_SECONDS = 15.0


@dataclass(frozen=True)
class Kill:
    after: float  # seconds of running before the death
    target: str  # "ingest", a forwarder's name (its sink), or KAFKA_LINK
    signal: Signal
    down: float  # seconds dead before the replacement starts (a cut: the link's seconds down)


def plan(seed: int, kills: int, targets: tuple[str, ...], *, min_gap: float, max_gap: float,
         max_down: float, sigterm_share: float = 0.3, partition_share: float = 0.0,
         max_cut: float = 15.0) -> list[Kill]:
    """`kills` steps, each after a gap drawn between min_gap and max_gap: with probability
    `partition_share` a cut of Kafka's link for 1-max_cut s (the steps after it go on while
    it lasts), else a death of a target drawn from `targets`, by SIGTERM with probability
    `sigterm_share` (else SIGKILL), down for a time drawn between 0 and max_down. The same seed,
    the same plan."""
    rng = random.Random(seed)
    steps = []
    for _ in range(kills):
        after = round(rng.uniform(min_gap, max_gap), 2)
        if partition_share and rng.random() < partition_share:
            steps.append(Kill(after, KAFKA_LINK, "cut", round(rng.uniform(1.0, max_cut), 2)))
            continue
        steps.append(Kill(after, rng.choice(targets), "SIGTERM" if rng.random() < sigterm_share else "SIGKILL",
                          round(rng.uniform(0, max_down), 2)))
    return steps


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
        lines = [f"kill soak: seed {self.seed}, {len(self.kills)} steps ({deaths}), "
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
                        sigterm_share: float = 0.3, partition_share: float = 0.0, max_cut: float = 15.0,
                        log: Callable[[str], None] = print) -> KillSoakResult:
    """The soak (see the module). `partition_share` > 0: Tansu in a network namespace of its own
    (root and `ip` needed), and that share of the steps cut its link instead of killing a
    process; the deaths that follow a cut, while it lasts, happen with Kafka away."""
    started = time.monotonic()
    link: Link | None = None
    tansu: PrivateTansu | None = None
    if partition_share:
        link = Link("netns", tmp_path)
        kafka = await link.start()
    else:
        tansu = PrivateTansu(tmp_path / "tansu.log")
        await tansu.start()
        kafka = KafkaTarget(f"127.0.0.1:{tansu.port}", idempotence=False)
    exits: list[str] = []
    schedule: list[Kill] = []
    heal: asyncio.Task[None] | None = None

    async def cut_for(seconds: float) -> None:
        assert link is not None
        try:
            await asyncio.sleep(seconds)  # the plan's cut length
        finally:
            await link.heal()

    try:
        pipeline = Pipeline(tmp_path, processes, kafka, fault="kill soak",
                            forwarders=[(sink,) for sink in SINKS])
        try:
            await pipeline.start()
            schedule = plan(seed, kills, targets(pipeline), min_gap=min_gap, max_gap=max_gap, max_down=max_down,
                            sigterm_share=sigterm_share, partition_share=partition_share, max_cut=max_cut)
            log(f"kill soak: seed {seed}, steps (after s, process, signal or cut, down s): "
                f"{[(k.after, k.target, k.signal, k.down) for k in schedule]}")
            await pipeline.start_stream()
            log("  events flow to every sink")
            for n, kill in enumerate(schedule, 1):
                await asyncio.sleep(kill.after)  # the plan's timeline, not a synchronisation
                await pipeline.supervise()  # a process that died on its own is a problem (and restarted)
                if kill.signal == "cut":
                    assert link is not None
                    if heal is not None:  # one cut at a time: the last one heals first
                        await heal
                    await link.cut()
                    heal = asyncio.create_task(cut_for(kill.down), name="heal")
                    log(f"  step {n}/{len(schedule)}: Kafka's link cut for {kill.down:g} s "
                        f"({len(pipeline.senders.stats.acked)} acked so far)")
                    continue
                process = _process(pipeline, kill.target)
                acked = len(pipeline.senders.stats.acked)
                if kill.signal == "SIGKILL":
                    await process.kill()
                    outcome = "killed"
                else:
                    code = await process.terminate(timeout=GRACE_SECONDS)
                    outcome = f"exit {code}" if code != -signal.SIGKILL else f"SIGKILLed after {GRACE_SECONDS:g} s"
                    exits.append(f"{kill.target}: {outcome}")
                away = " (Kafka away)" if heal is not None and not heal.done() else ""
                log(f"  step {n}/{len(schedule)}: {kill.target} {kill.signal}{away} ({outcome}; {acked} acked so far), "
                    f"down {kill.down:g} s")
                await asyncio.sleep(kill.down)  # the plan's downtime
                if kill.target == "ingest":
                    await pipeline.start_ingest()
                else:
                    await pipeline.start_forwarder(kill.target)
            if heal is not None:
                await heal
            await pipeline.supervise()
            await pipeline.keep_streaming(500)  # the stream goes on after the last restart
            result = await pipeline.conclude()
            dead = await dead_letter_keys(kafka, pipeline.prefix)
        except Stuck as exc:
            pipeline.problems.append(str(exc))
            raise
        finally:
            if heal is not None and not heal.done():
                heal.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await heal
            await pipeline.close()
    finally:
        if tansu is not None:
            await tansu.kill()
        if link is not None:
            await link.close()
    return KillSoakResult(seed=seed, kills=schedule, acked=len(pipeline.senders.stats.acked),
                          sinks=sink_lines(pipeline, result, dead),
                          problems=list(result.problems), notes=list(result.notes), codes=result.codes,
                          exits=exits, seconds=round(time.monotonic() - started, 1), load=load_note(),
                          extra={"logs": str(pipeline.logs)})


# ------------------------------------------------------------------------------------------
# The embedded bus: `siemgate run`, the default chart's one pod


EmbeddedDeath = Literal["SIGKILL", "SIGTERM, short grace", "SIGTERM, clean"]


@dataclass(frozen=True)
class PodDeath:
    after: float  # seconds the pod serves before it dies
    how: EmbeddedDeath
    grace: float  # SIGTERM's grace (0 for SIGKILL)


def embedded_plan(seed: int, deaths: int, *, min_gap: float, max_gap: float) -> list[PodDeath]:
    """`deaths` deaths of the pod: 40% SIGKILL (a node lost: the endpoint is still in the
    Service, requests in flight die with it), 30% SIGTERM with a grace of 0.02-0.3 s (a clean
    shutdown takes ~0.3 s here: most are cut by SIGKILL in its middle), 30% SIGTERM with 20 s
    (a clean exit). Seeded."""
    rng = random.Random(seed)
    plan: list[PodDeath] = []
    for _ in range(deaths):
        after, draw = round(rng.uniform(min_gap, max_gap), 2), rng.random()
        if draw < 0.4:
            plan.append(PodDeath(after, "SIGKILL", 0.0))
        elif draw < 0.7:
            plan.append(PodDeath(after, "SIGTERM, short grace", round(rng.uniform(0.02, 0.3), 2)))
        else:
            plan.append(PodDeath(after, "SIGTERM, clean", 20.0))
    return plan


@dataclass
class EmbeddedKillSoakResult:
    seed: int
    deaths: list[PodDeath]
    outcomes: list[str]  # per death: how the process ended
    conservation: Conservation
    lines: int  # lines in the file sink's output, each one whole JSON document
    duplicates: int  # lines beyond the first of an id
    unowed: int  # events delivered that were never acked (a request cut by a death after the log had it)
    refused: dict[str, int]  # the sender's posts not answered 200, by reason (not owed)
    seconds: float

    @property
    def ok(self) -> bool:
        c = self.conservation
        return c.lost == 0 and c.stranded == 0 and c.delivered == c.acked > 0

    def summary(self) -> str:
        kinds = Counter(d.how for d in self.deaths)
        return "\n".join([
            f"embedded kill soak: seed {self.seed}, {len(self.deaths)} deaths of `siemgate run` "
            f"({'; '.join(f'{how} x{n}' for how, n in sorted(kinds.items()))}), {self.seconds:.0f} s in all",
            self.conservation.line(),
            f"file sink: {self.lines} lines, each whole JSON; {self.duplicates} duplicates; "
            f"{self.unowed} events delivered though never acked (not owed)",
            f"posts not answered 200 (not owed): {self.refused}",
        ])

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        data["summary"] = self.summary()
        return data


def _file_lines(out: Path) -> list[str]:
    """The id of each line of the file sink's output (every file, oldest first): every line must
    be a whole JSON document ending in a line break (`orjson.loads` raises on a torn one)."""
    ids: list[str] = []
    for path in sink_outputs(out):
        data = path.read_bytes()
        assert not data or data.endswith(b"\n"), f"{path} ends in a line without its line break: {data[-200:]!r}"
        ids += [str(orjson.loads(line)["id"]) for line in data.splitlines()]
    return ids


async def run_embedded_kill_soak(tmp_path: Path, processes: list[subprocess.Popen[bytes]], *, seed: int,
                                 deaths: int, min_gap: float = 0.3, max_gap: float = 2.0,
                                 log: Callable[[str], None] = print) -> EmbeddedKillSoakResult:
    """`siemgate run` (embedded log on the pod's volume, a file sink) under a sequential sender,
    killed `deaths` times (`embedded_plan`), each replacement on the same volume (a claim); at
    the end, every acked event must be in the file sink's output, each line whole."""
    started = time.monotonic()
    port = stable_port()
    volume = tmp_path / "volumes" / "data"
    out = tmp_path / "out" / "events.ndjson"
    logs = tmp_path / "logs"
    logs.mkdir(exist_ok=True)
    settings = embedded_config(port=port, volume=volume, out=out, state=tmp_path)
    settings["sinks"][0]["keep"] = 10_000  # every rotated file kept: each event is looked for
    config = write_config(tmp_path / "siemgate.json", settings)
    schedule = embedded_plan(seed, deaths, min_gap=min_gap, max_gap=max_gap)
    log(f"embedded kill soak: seed {seed}, deaths (after s, how, grace s): "
        f"{[(d.after, d.how, d.grace) for d in schedule]}")
    service = Service()
    sender = Sender(service, tag=f"kill{port}")
    outcomes: list[str] = []
    pod = Pod("run-0", "run", config, volume, port, logs, processes)
    try:
        await pod.start()
        service.add(pod)
        sender.start(interval=0.01)
        for n, death in enumerate(schedule, 1):
            await asyncio.sleep(death.after)  # the plan's timeline, not a synchronisation
            acked = len(sender.acked)
            if death.how == "SIGKILL":  # no warning: the endpoint goes only once the pod is gone
                assert pod.process is not None
                pod.process.send_signal(signal.SIGKILL)
                await asyncio.to_thread(pod.process.wait, 30)
                service.remove(pod)
                outcome = "killed"
            else:  # the kubelet: out of the endpoints, SIGTERM, the grace, SIGKILL
                service.remove(pod)
                deletion = await pod.delete(grace=death.grace, keep_volume=True)
                outcome = (f"SIGKILLed after {death.grace:g} s" if deletion.killed
                           else f"exit {deletion.exit_code} in {deletion.seconds:g} s")
            outcomes.append(outcome)
            log(f"  death {n}/{len(schedule)}: {death.how} ({outcome}; {acked} acked so far)")
            pod = Pod(f"run-{n}", "run", config, volume, port, logs, processes)  # the same claim
            await pod.start()
            service.add(pod)
        await asyncio.sleep(0.5)  # a last stretch of traffic on the last pod
        await sender.stop()
        wanted = set(sender.acked)
        await wait_until(lambda: wanted <= delivered_ids(out), f"{len(wanted)} acked events at the file sink",
                         600, interval=1.0)
        delivered = delivered_ids(out)
        service.remove(pod)
        final = await pod.delete(grace=30, keep_volume=True)
        assert final.exit_code == 0 and not final.killed, (final, pod.tail())
    finally:
        with contextlib.suppress(Exception):
            await sender.stop()
        if pod.alive():
            await pod.delete(grace=5, keep_volume=True)
    ids = _file_lines(out)
    unowed = len(set(ids) - set(sender.acked))
    conservation = account(f"embedded kill soak ({deaths} deaths, seed {seed})", sender.acked, on_kafka=None,
                           delivered=delivered)
    return EmbeddedKillSoakResult(seed=seed, deaths=schedule, outcomes=outcomes, conservation=conservation,
                                  lines=len(ids), duplicates=len(ids) - len(set(ids)), unowed=unowed,
                                  refused=dict(sender.refused),
                                  seconds=round(time.monotonic() - started, 1))
