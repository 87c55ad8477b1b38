"""The partition soak (issue 16): ingest + one `siemgate forward` per sink (as the chart runs
them) with all four sinks, Kafka (Tansu) in a network namespace of its own, a steady stream
of senders, and N cuts of the broker's link (link down: half-open connections, no RST) of
varied length, random but seeded (the plan is printed and kept in the result).

    senders ──▶ siemgate ingest (spool) ──▶ Tansu (netns, link cut N times) ──▶ siemgate forward × 4
        ──▶ file │ rsyslogd (TCP, RFC 5424, min_severity medium) │ HEC stand-in (indexer acks) │ ES stand-in

After the last heal the senders stop and the soak measures the **catch-up time**: from the
heal until every acked event is at every sink it is routed to. Then `Pipeline.conclude`
(tests/faults/harness.py) drains, sends a fresh batch and accounts; the result has one
**conservation line per sink**: acked (owed to that sink) = delivered + dead-lettered, lost
(neither), duplicates (deliveries beyond the first).

The **liveness player** does what the kubelet's liveness probe does to each siemgate process:
/healthz every PROBE_SECONDS, FAILURES in a row answered 503 (or not answered) and the
process is restarted. Before the restart it keeps the stall's /healthz body and the
process's Python stacks (`py-spy dump`), the evidence for docs/RELIABILITY.md finding 4 (a
forwarder that never resumed after a broker cut). A forwarder the watchdog never flagged
but that has not caught up by the catch-up bound is dumped too.

Used by bench/partition_soak.py (20 cuts, a correctness run) and by
tests/lifecycle/test_partition_soak.py (3 short cuts, in the suite). Needs root, `ip`, Tansu
and rsyslogd; every namespace, link and process is removed at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition

from tests.faults.harness import SINKS, FaultResult, KafkaTarget, Pipeline, Process, ProxiedTansu, routed
from tests.lifecycle.netns import PartitionedBroker
from tests.support import PrivateTansu

# The liveness probe, as the chart sets it up (periodSeconds 10, failureThreshold 3), faster.
PROBE_SECONDS = 2.0
FAILURES = 3
# Forwarders' and the drainer's watchdog in the soak (the defaults are 300 and 600 s; shorter
# here so that a stall is restarted within a run, longer than a half-open request's 40 s).
STALL_TIMEOUT = 120.0


@dataclass(frozen=True)
class Cut:
    after: float  # seconds of link up before the cut
    length: float  # seconds of link down


def plan(seed: int, cuts: int, *, min_cut: float, max_cut: float, min_gap: float, max_gap: float) -> list[Cut]:
    """`cuts` cuts of a length drawn between min_cut and max_cut, each after a gap drawn
    between min_gap and max_gap: the same seed, the same plan."""
    rng = random.Random(seed)
    return [Cut(round(rng.uniform(min_gap, max_gap), 1), round(rng.uniform(min_cut, max_cut), 1))
            for _ in range(cuts)]


class Link:
    """The broker and the link the soak cuts. "netns" (the default, a real partition): Tansu in
    a network namespace, link down, half-open connections, no RST. "proxy": Tansu behind the
    fault suite's TcpProxy on loopback, whose cut closes every connection (FIN) and accepts
    then closes new ones: the cut of the fault suite's (f), under which finding 4 showed."""

    def __init__(self, style: str, tmp_path: Path) -> None:
        assert style in ("netns", "proxy"), style
        self.style = style
        self.netns = PartitionedBroker(tmp_path / "tansu.log") if style == "netns" else None
        self.proxy = (ProxiedTansu(lambda **kw: PrivateTansu(tmp_path / "tansu.log", **kw))
                      if style == "proxy" else None)

    async def start(self) -> KafkaTarget:
        if self.netns is not None:
            self.netns.create()
            await self.netns.start()
            return KafkaTarget(self.netns.bootstrap_servers, idempotence=False)
        assert self.proxy is not None
        await self.proxy.start()
        return self.proxy.target

    def describe(self) -> str:
        if self.netns is not None:
            return f"broker {self.netns.bootstrap_servers} in namespace {self.netns.namespace} (link down = cut)"
        assert self.proxy is not None
        return f"broker behind the proxy {self.proxy.proxy.address} (connections closed = cut)"

    async def cut(self) -> None:
        if self.netns is not None:
            self.netns.partition()
        else:
            assert self.proxy is not None
            await self.proxy.proxy.cut()

    async def heal(self) -> None:
        if self.netns is not None:
            await asyncio.to_thread(self.netns.heal)
        else:
            assert self.proxy is not None
            self.proxy.proxy.restore()

    async def close(self) -> None:
        if self.netns is not None:
            self.netns.close()
        elif self.proxy is not None:
            await self.proxy.stop()


@dataclass
class Stall:
    """A process the liveness player found unhealthy."""

    process: str
    at: float  # seconds since the soak started
    body: Any  # the /healthz answer (None: no answer)
    restarted: bool = False
    stack_file: str | None = None
    stack_head: str = ""


@dataclass
class SinkLine:
    sink: str
    acked: int
    delivered: int
    dead_lettered: int
    lost: int
    duplicates: int

    def line(self) -> str:
        return (f"conservation {self.sink}: acked={self.acked} delivered={self.delivered} "
                f"dead_lettered={self.dead_lettered} lost={self.lost} duplicates={self.duplicates}")


@dataclass
class SoakResult:
    seed: int
    cuts: list[Cut]
    acked: int
    catch_up_seconds: float | None  # None: not caught up within the bound
    sinks: list[SinkLine]
    stalls: list[Stall]
    watchdog_logs: list[str]  # the watchdogs' ERROR lines, from every process's log
    problems: list[str]
    notes: list[str]
    backlog_at_heal: list[dict[str, int]]  # per cut: acked events not yet at each sink, at the heal
    codes: dict[str, int]
    seconds: float
    load: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return (not self.problems and self.catch_up_seconds is not None
                and all(s.lost == 0 and s.acked == s.delivered + s.dead_lettered for s in self.sinks))

    def summary(self) -> str:
        catch_up = "NOT caught up" if self.catch_up_seconds is None else f"{self.catch_up_seconds:.1f} s"
        lines = [f"partition soak: seed {self.seed}, {len(self.cuts)} cuts "
                 f"({', '.join(f'{c.length:g}s' for c in self.cuts)}), {self.acked} events acked, "
                 f"catch-up after the last heal {catch_up}, {self.seconds:.0f} s in all",
                 *(s.line() for s in self.sinks),
                 f"watchdog: {len(self.stalls)} unhealthy /healthz episodes, "
                 f"{sum(1 for s in self.stalls if s.restarted)} restarts, {len(self.watchdog_logs)} stall ERROR logs",
                 f"answers: {self.codes}"]
        lines += [f"problem: {p}" for p in self.problems] + [f"note: {n}" for n in self.notes]
        if self.load:
            lines.append(f"load: {self.load}")
        return "\n".join(lines)

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        data["summary"] = self.summary()
        return data


class SoakPipeline(Pipeline):
    """The faults harness's pipeline with the watchdogs' timeouts of the soak."""

    stall_timeout = STALL_TIMEOUT

    def write_config(self) -> None:
        super().write_config()
        for path in [self.config, *(slot.config for slot in self.slots.values())]:
            config = json.loads(path.read_text())
            config["forward"]["stall_timeout_seconds"] = self.stall_timeout
            config["bus"]["spool"]["stall_timeout_seconds"] = self.stall_timeout
            path.write_text(json.dumps(config, indent=1))


def py_spy() -> str | None:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return found if os.access(found, os.X_OK) else None


async def dump_stacks(process: Process, out: Path) -> tuple[str | None, str]:
    """py-spy's dump of the process's Python stacks (every thread, async frames included as
    far as py-spy sees them), into `out`; (path, first lines)."""
    spy = py_spy()
    if spy is None or not process.alive():
        return None, "no py-spy" if spy is None else "process gone"
    result = await asyncio.to_thread(subprocess.run, [spy, "dump", "--pid", str(process.process.pid), "--locals"],
                                     capture_output=True, text=True, timeout=60)
    out.write_text(result.stdout + result.stderr)
    return str(out), "\n".join((result.stdout or result.stderr).splitlines()[:30])


class Liveness:
    """The kubelet's liveness probe on the ingest and every forwarder (see the module)."""

    def __init__(self, pipeline: SoakPipeline, started: float, log: Callable[[str], None]) -> None:
        self.p = pipeline
        self.started = started
        self.log = log
        self.stalls: list[Stall] = []
        # Task dumps asked for (SIGUSR1, siemgate.diagnostics): a forwarder whose commit timed
        # out while Kafka was back is what finding 4 looked like; its tasks say where it waits.
        self.dumps: list[str] = []
        self._log_offsets: dict[Path, int] = {}
        self._failures: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="liveness")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def targets(self) -> dict[str, tuple[Process | None, str]]:
        found: dict[str, tuple[Process | None, str]] = {"ingest": (self.p.ingest, self.p.ingest_url)}
        for name, slot in self.p.slots.items():
            found[name] = (slot.process, slot.url)
        return found

    async def _run(self) -> None:
        # A new connection per probe, as the kubelet's: a kept-alive one that the server closed
        # while idle reads as "disconnected without a response", which is no stall.
        async with httpx.AsyncClient(timeout=5, limits=httpx.Limits(max_keepalive_connections=0)) as client:
            while True:
                await self.p.supervise()  # a crash is a problem, restarted (only this task restarts)
                self._dump_on_commit_timeouts()
                for name, (process, url) in self.targets().items():
                    if process is None or not process.alive():
                        continue
                    try:
                        response = await client.get(url + "/healthz")
                        healthy, body = response.status_code == 200, response.json()
                    except (httpx.TransportError, ValueError) as exc:
                        healthy, body = False, repr(exc)
                    if healthy:
                        self._failures[name] = 0
                        continue
                    self._failures[name] = self._failures.get(name, 0) + 1
                    if self._failures[name] == 1:
                        self.stalls.append(Stall(name, round(time.monotonic() - self.started, 1), body))
                        self.log(f"  /healthz of {name} unhealthy: {body}")
                    if self._failures[name] >= FAILURES:
                        await self._restart(name, process)
                await asyncio.sleep(PROBE_SECONDS)

    def _dump_on_commit_timeouts(self) -> None:
        for name, slot in self.p.slots.items():
            process = slot.process
            if process is None or not process.alive() or len(self.dumps) >= 10:
                continue
            offset = self._log_offsets.get(process.log, 0)
            with open(process.log, "rb") as handle:
                handle.seek(offset)
                new = handle.read()
            self._log_offsets[process.log] = offset + len(new)
            if b"the commit did not complete within" in new:
                process.signal(signal.SIGUSR1)
                self.dumps.append(f"{name} at {time.monotonic() - self.started:.0f} s: task dump in {process.log}")
                self.log(f"  {name}: a commit timed out; its tasks dumped (SIGUSR1) into {process.log}")

    async def _restart(self, name: str, process: Process) -> None:
        stall = next(s for s in reversed(self.stalls) if s.process == name)
        stall.stack_file, stall.stack_head = await dump_stacks(
            process, self.p.logs / f"stack-{name}-{len(self.stalls)}.txt")
        self.log(f"  liveness: restarting {name} (stacks: {stall.stack_file})")
        await process.terminate(timeout=30)
        if name == "ingest":
            await self.p.start_ingest()
        else:
            await self.p.start_forwarder(name)
        stall.restarted = True
        self._failures[name] = 0


async def dead_letter_keys(kafka: KafkaTarget, prefix: str) -> dict[str, set[str]]:
    """Per sink, the keys (event ids) of its dead-letter topic."""
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap_servers, group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest", request_timeout_ms=10_000)
    await consumer.start()
    found: dict[str, set[str]] = {sink: set() for sink in SINKS}
    try:
        topics = await consumer.topics()
        by_topic = {f"{prefix}.dlq.{sink}": sink for sink in SINKS if f"{prefix}.dlq.{sink}" in topics}
        partitions = [TopicPartition(t, p) for t in by_topic for p in sorted(consumer.partitions_for_topic(t) or ())]
        if not partitions:
            return found
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        async with asyncio.timeout(60):
            while any([await consumer.position(tp) < end for tp, end in ends.items()]):
                for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                    found[by_topic[tp.topic]].update(r.key.decode() for r in records if r.key is not None)
    finally:
        await consumer.stop()
    return found


def sink_lines(pipeline: Pipeline, result: FaultResult, dead: dict[str, set[str]]) -> list[SinkLine]:
    """One conservation line per sink: the acked events routed to it, those it received, those
    on its dead-letter topic (`dead`, by `dead_letter_keys`), the rest lost."""
    acked = pipeline.senders.stats.acked
    lines = []
    for account in result.sinks:
        received = next(r for r in pipeline.received if r.name == account.sink)
        owed = {i for i, severity in acked.items() if routed(account.sink, severity)}
        delivered = owed & set(received.counts)
        dead_lettered = (owed - delivered) & dead.get(account.sink, set())
        lines.append(SinkLine(account.sink, len(owed), len(delivered), len(dead_lettered),
                              len(owed - delivered - dead_lettered), account.duplicates))
    return lines


def watchdog_errors(logs: Path) -> list[str]:
    """The watchdogs' ERROR lines in every siemgate log of the run."""
    lines = []
    for path in sorted(logs.glob("*.log")):
        for line in path.read_text(errors="replace").splitlines():
            if '"error"' in line and ("is stalled" in line):
                with contextlib.suppress(ValueError):
                    lines.append(f"{path.name}: {json.loads(line).get('message')}")
    return lines


def load_note() -> str:
    """The machine's load while the soak ran (it shares its cores)."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


async def run_soak(tmp_path: Path, processes: list[subprocess.Popen[bytes]], *, seed: int, cuts: list[Cut],
                   catch_up_timeout: float = 600.0, stall_timeout: float = STALL_TIMEOUT,
                   one_forwarder: bool = False, cut_style: str = "netns",
                   log: Callable[[str], None] = print) -> SoakResult:
    """The soak (see the module). `one_forwarder`: one `siemgate forward` for the four sinks
    (as the fault suite's (f) ran when finding 4 showed) instead of one per sink (the chart's)."""
    started = time.monotonic()
    link = Link(cut_style, tmp_path)
    log(f"partition soak: seed {seed}, cuts (link up s, link down s): "
        f"{[(c.after, c.length) for c in cuts]}")
    try:
        kafka = await link.start()
        pipeline = SoakPipeline(tmp_path, processes, kafka, fault="partition soak",
                                forwarders=[SINKS] if one_forwarder else [(sink,) for sink in SINKS])
        pipeline.stall_timeout = stall_timeout
        liveness = Liveness(pipeline, started, log)
        try:
            await pipeline.start()
            await pipeline.start_stream()
            log(f"  events flow to every sink; {link.describe()}")
            liveness.start()
            backlog_at_heal: list[dict[str, int]] = []
            heal_at = time.monotonic()
            for n, cut in enumerate(cuts, 1):
                await asyncio.sleep(cut.after)  # the plan's timeline, not a synchronisation
                await link.cut()
                log(f"  cut {n}/{len(cuts)}: link down for {cut.length:g} s "
                    f"({len(pipeline.senders.stats.acked)} acked so far)")
                await asyncio.sleep(cut.length)
                await link.heal()
                heal_at = time.monotonic()
                pipeline.refresh()
                backlog_at_heal.append(pipeline.missing(pipeline.senders.stats.acked))
                log(f"  healed; acked events not yet delivered per sink: {backlog_at_heal[-1]}")
            # The last heal: the senders stop; how long until every acked event is everywhere?
            await pipeline.senders.stop()
            catch_up: float | None = None
            deadline = heal_at + catch_up_timeout
            while time.monotonic() < deadline:
                pipeline.refresh()
                if not any(pipeline.missing(pipeline.senders.stats.acked).values()):
                    catch_up = round(time.monotonic() - heal_at, 1)
                    break
                await asyncio.sleep(0.25)
            log(f"  catch-up after the last heal: {catch_up} s")
            notes: list[str] = []
            if catch_up is None:
                missing = pipeline.missing(pipeline.senders.stats.acked)
                notes.append(f"not caught up {catch_up_timeout:g} s after the last heal: missing {missing}")
                for name, slot in pipeline.slots.items():
                    if slot.process is not None and any(missing.get(sink) for sink in slot.sinks):
                        slot.process.signal(signal.SIGUSR1)  # the asyncio tasks, into its log
                        path, head = await dump_stacks(slot.process, pipeline.logs / f"stack-{name}-behind.txt")
                        notes.append(f"{name} behind at the bound: stacks in {path}:\n{head}")
            await liveness.stop()
            result = await pipeline.conclude()
            dead = await dead_letter_keys(kafka, pipeline.prefix)
        finally:
            await liveness.stop()
            await pipeline.close()
    finally:
        await link.close()
    acked = pipeline.senders.stats.acked
    lines = sink_lines(pipeline, result, dead)
    problems = [p for p in result.problems]
    return SoakResult(seed=seed, cuts=cuts, acked=len(acked), catch_up_seconds=catch_up, sinks=lines,
                      stalls=liveness.stalls, watchdog_logs=watchdog_errors(pipeline.logs), problems=problems,
                      notes=notes + result.notes, backlog_at_heal=backlog_at_heal, codes=result.codes,
                      seconds=round(time.monotonic() - started, 1), load=load_note(),
                      extra={"logs": str(pipeline.logs), "stall_timeout_seconds": stall_timeout,
                             "cut_style": cut_style, "task_dumps": liveness.dumps,
                             "forward_processes": {name: list(slot.sinks) for name, slot in pipeline.slots.items()},
                             "dead_lettered_any": {s: len(k) for s, k in dead.items()}})
