"""The forwarding benchmark: events/s of one `siemgate forward` process draining a pre-filled
topic to syslog over TCP, side by side in one run with the peer a SOC would otherwise use,
rsyslog's own Kafka consumer (imkafka -> omfwd), on the same topic and to the same kind of
counting receiver.

    Tansu (in memory) <- relay (librdkafka needs it) <- siemgate forward --TCP, RFC 5424,
                                                        octet counting--> receiver (this process)
                                                     <- rsyslogd imkafka -> omfwd --same--> receiver

The records follow the siemgate contract (`bench.forward_peer.prefill`); they sit on
`<prefix>.events.low`, whatever their severity, so that both consumers read one topic. The
siemgate forwarder uses its RFC 5424 format with facility local0, which the peer's
`siemgate` configuration mirrors (see bench/forward_peer.py). Timing runs from the first
frame received to the last expected one: consumer-group joins come before it. CPU is the
forwarder's (or rsyslogd's) over the same window. After each run every id is checked to have
arrived with the PRI its severity gives.

    .venv/bin/python bench/forward.py                 # 300,000 records
    .venv/bin/python bench/forward.py --events 100000 --skip-peer

Needs `apt-get install -y rsyslog rsyslog-kafka` for the peer. Results: a table on stdout,
bench/results/forward-<timestamp>.json and forward-latest.json. Not run in CI.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
for _path in (str(ROOT), str(BENCH_DIR)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from forward_peer import (  # noqa: E402
    Prefilled,
    Receiver,
    Reception,
    broker_for_librdkafka,
    check_received,
    check_rsyslog,
    measure_rsyslog_async,
    prefill_async,
)

TARGET_EVENTS_PER_SECOND = 50_000


def log(message: str) -> None:
    print(f"[forward {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def forward_config(work: Path, bootstrap: str, prefix: str, port: int, batch: int) -> Path:
    path = work / "siemgate-forward.yaml"
    path.write_text(f"""
log_level: warning
bus:
  type: kafka
  kafka: {{bootstrap_servers: "{bootstrap}", topic_prefix: {prefix}, idempotence: false,
          topics: {{partitions: 1}}}}
# Tansu holds a fetch for its whole max wait even when records are there (Kafka does not).
forward: {{listen: {{host: 127.0.0.1, port: 0}}, fetch_max_wait_ms: 20}}
sinks:
  - name: soc
    type: syslog
    address: tcp://127.0.0.1:{port}
    format: rfc5424
    facility: local0
    batch: {{max_events: {batch}}}
""")
    return path


def py_spy() -> str:
    """py-spy from PATH, else the one installed next to this interpreter (the venv's)."""
    return shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))


def start_profiler(profile: Path, pid: int, work: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling `pid` into `profile` (collapsed stacks, idle excluded) until stopped."""
    command = [py_spy(), "record", "--format", "raw", "--rate", "250", "-o", str(profile), "-p", str(pid)]
    with open(work / "py-spy.log", "wb") as log_file:
        return subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


async def stop_profiler(sampler: subprocess.Popen[bytes], profile: Path | None) -> None:
    """SIGINT: py-spy writes its samples and exits (SIGTERM would lose them)."""
    sampler.send_signal(signal.SIGINT)
    try:
        await asyncio.to_thread(sampler.wait, 30)
    except subprocess.TimeoutExpired:
        sampler.kill()
        sampler.wait()
    log(f"profile written to {profile}")


async def measure_siemgate(prefilled: Prefilled, *, bootstrap: str, prefix: str, work: Path, batch: int,
                           timeout: float, extra_pids: dict[str, int], profile: Path | None = None) -> dict[str, Any]:
    reception = Reception(expected=prefilled.count, pids=dict(extra_pids))
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Receiver(reception), "127.0.0.1", 0)
    port = int(server.sockets[0].getsockname()[1])
    config = forward_config(work, bootstrap, prefix, port, batch)
    log_path = work / "siemgate-forward.log"
    started = time.perf_counter()
    with open(log_path, "wb") as log_file:
        command = [sys.executable, "-m", "siemgate", "forward", "-c", str(config)]
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    reception.pids["siemgate"] = process.pid
    # py-spy samples the forwarder from outside (the figures of a profiled run do not count).
    sampler = start_profiler(profile, process.pid, work) if profile is not None else None
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(reception.done.wait(), timeout)
        if not reception.done.is_set():
            log(f"siemgate: timeout with {reception.frames:,} of {reception.expected:,} frames")
            reception.finish()
        await asyncio.sleep(1.0)  # catch duplicates, if any
    finally:
        if sampler is not None:
            await stop_profiler(sampler, profile)
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(process.wait, 30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        server.close()
        await server.wait_closed()
    check = check_received(reception.streams, prefilled, "siemgate")
    first, last = reception.first_at, reception.complete_at or reception.last_at
    elapsed = (last - first) if first is not None and last is not None else 0.0
    cpu = {name: round(reception.cpu_complete[name] - reception.cpu_first[name], 3)
           for name in reception.cpu_complete if name in reception.cpu_first}
    return {
        "target": "siemgate forward",
        "records": prefilled.count,
        "events_per_second": round(prefilled.count / elapsed, 1) if elapsed and reception.complete_at else 0.0,
        "elapsed_seconds": round(elapsed, 3),
        "cpu_seconds": cpu,
        "startup_seconds": round(first - started, 3) if first is not None else None,
        "complete": reception.complete_at is not None,
        "exit_code": process.returncode,
        "check": check,
    }


class PriorityReceiver(Receiver):
    """Also notes when each high-severity probe (id `hi-N`) arrives, and how many frames
    came before it."""

    def __init__(self, reception: Reception, arrivals: dict[str, tuple[float, int]]) -> None:
        super().__init__(reception)
        self.arrivals = arrivals
        self.tail = b""

    def data_received(self, data: bytes) -> None:
        window = self.tail + data
        start = 0
        while (at := window.find(b' id="hi-', start)) != -1:
            end = window.find(b'"', at + 6)
            if end == -1:
                break
            probe = window[at + 5 : end].decode()
            self.arrivals.setdefault(probe, (time.perf_counter(), self.reception.frames))
            start = end
        self.tail = window[-64:]
        super().data_received(data)


async def measure_priority(bootstrap: str, work: Path, *, backlog: int, probes: int, partitions: int,
                           batch: int, timeout: float) -> dict[str, Any]:
    """`backlog` low events queued, then `probes` high ones produced once the forwarder is
    busy with the backlog: when does each high event reach the sink?"""
    from aiokafka import AIOKafkaProducer

    from siemgate.record import make_record

    prefix = f"prio{uuid.uuid4().hex[:8]}"
    await prefill_async(bootstrap, f"{prefix}.events.low", backlog, partitions=partitions, seed=2,
                        mix={"low": 1.0})
    arrivals: dict[str, tuple[float, int]] = {}
    reception = Reception(expected=backlog + probes, pids={})
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: PriorityReceiver(reception, arrivals), "127.0.0.1", 0)
    config = forward_config(work, bootstrap, prefix, int(server.sockets[0].getsockname()[1]), batch)
    with open(work / "priority-forward.log", "wb") as log_file:
        process = subprocess.Popen([sys.executable, "-m", "siemgate", "forward", "-c", str(config)],
                                   stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    sent: dict[str, float] = {}
    try:
        async with asyncio.timeout(timeout):
            while reception.frames < min(5_000, backlog // 10):
                await asyncio.sleep(0.01)
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False)
        await producer.start()
        try:
            for i in range(probes):
                probe = f"hi-{i}"
                record = make_record(prefix=prefix, event={"id": probe, "severity": "high", "type": "probe"},
                                     kind="event", integration="bench", severity="high", event_id=probe,
                                     received_at="2026-11-28T00:00:00.000000Z", batch="probe", seq=i, peer="127.0.0.1")
                sent[probe] = time.perf_counter()
                await producer.send(record.topic, record.value, key=record.key, headers=record.headers)
            await producer.flush()
        finally:
            await producer.stop()
        frames_when_sent = reception.frames
        async with asyncio.timeout(timeout):
            while len(arrivals) < probes:
                await asyncio.sleep(0.01)
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(process.wait, 30)
        server.close()
        await server.wait_closed()
    latencies = sorted(arrivals[p][0] - sent[p] for p in sent)
    low_before_last = max(frames for _, frames in arrivals.values()) - frames_when_sent
    return {
        "backlog_low_events": backlog,
        "high_probes": probes,
        "low_delivered_when_probes_sent": frames_when_sent,
        "low_delivered_after_probes_before_last_high": max(0, low_before_last),
        "high_latency_ms": {
            "p50": round(latencies[len(latencies) // 2] * 1000, 1),
            "p99": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 1),
            "max": round(latencies[-1] * 1000, 1),
        },
    }


async def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    with broker_for_librdkafka(work, args.bootstrap) as (bootstrap, pids):
        prefix = f"fwd{uuid.uuid4().hex[:8]}"
        topic = f"{prefix}.events.low"
        log(f"prefilling {args.events:,} records on {topic}")
        prefilled = await prefill_async(bootstrap, topic, args.events, partitions=args.partitions, seed=args.seed)
        log(f"prefilled in {prefilled.seconds:.1f} s; measuring siemgate forward")
        siemgate = await measure_siemgate(prefilled, bootstrap=bootstrap, prefix=prefix, work=work,
                                          batch=args.batch, timeout=args.timeout, extra_pids=pids,
                                          profile=args.profile)
        peer: dict[str, Any] | None = None
        if not args.skip_peer:
            missing = check_rsyslog()
            if missing:
                log(f"peer skipped: {missing}")
            else:
                log("measuring the peer: rsyslog imkafka -> omfwd")
                result = await measure_rsyslog_async(prefilled, mode="siemgate", bootstrap=bootstrap,
                                                     work=work, timeout=args.timeout, extra_pids=pids)
                peer = asdict(result)
                peer.pop("config", None)
        priority = None
        if args.priority_backlog:
            log(f"priority: {args.priority_backlog:,} low events queued, then 100 high ones")
            priority = await measure_priority(bootstrap, work, backlog=args.priority_backlog, probes=100,
                                              partitions=args.partitions, batch=args.batch, timeout=args.timeout)
        return {"prefill": prefilled.summary(), "siemgate": siemgate, "peer": peer, "priority": priority}


def table(result: dict[str, Any]) -> str:
    rows = [("siemgate forward (1 process)", result["siemgate"]["events_per_second"],
             result["siemgate"]["cpu_seconds"].get("siemgate", 0.0), result["siemgate"]["elapsed_seconds"],
             result["siemgate"]["check"]["all_arrived"], result["siemgate"]["check"]["duplicates"])]
    if result["peer"]:
        peer = result["peer"]
        rows.append(("rsyslog imkafka -> omfwd", peer["events_per_second"], peer["rsyslog_cpu_seconds"],
                     peer["elapsed_seconds"], peer["check"]["all_arrived"], peer["check"]["duplicates"]))
    header = f"{'forwarder':<30} {'events/s':>10} {'CPU s':>7} {'elapsed s':>10}  all arrived  duplicates"
    lines = [header, "-" * len(header)]
    for name, rate, cpu, elapsed, ok, dups in rows:
        lines.append(f"{name:<30} {rate:>10,.0f} {cpu:>7.2f} {elapsed:>10.2f}  {'yes' if ok else 'NO':<11}  {dups}")
    if result["peer"] and result["peer"]["events_per_second"]:
        ratio = result["siemgate"]["events_per_second"] / result["peer"]["events_per_second"]
        lines.append(f"\nsiemgate/peer: {ratio:.2f}x")
    if result.get("priority"):
        p = result["priority"]
        lines.append(f"\npriority: {p['high_probes']} high events posted behind {p['backlog_low_events']:,} queued low "
                     f"ones: delivered after {p['low_delivered_after_probes_before_last_high']:,} more low events; "
                     f"latency p50 {p['high_latency_ms']['p50']} ms, max {p['high_latency_ms']['max']} ms")
    rate = result["siemgate"]["events_per_second"]
    lines.append(f"target >= {TARGET_EVENTS_PER_SECOND:,} events/s per process: "
                 f"{'MET' if rate >= TARGET_EVENTS_PER_SECOND else 'NOT MET'} ({rate:,.0f})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--batch", type=int, default=500, help="the sink's batch.max_events (default 500)")
    parser.add_argument("--partitions", type=int, default=6,
                        help="partitions of the topic (default 6, siemgate's default topic layout)")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--skip-peer", action="store_true", help="measure siemgate only")
    parser.add_argument("--priority-backlog", type=int, default=200_000,
                        help="low events queued before 100 high ones in the priority run (0: skip it)")
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile", type=Path, metavar="FILE",
                        help="sample the forwarder with py-spy, collapsed stacks to FILE (figures then do not count)")
    parser.add_argument("--results-dir", type=Path, default=BENCH_DIR / "results")
    args = parser.parse_args(argv)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    with tempfile.TemporaryDirectory(prefix="siemgate-forward-") as tmp:
        result = asyncio.run(run(args, Path(tmp)))
    result.update({
        "benchmark": "forward",
        "timestamp": stamp,
        "command": "python bench/forward.py " + " ".join(argv or sys.argv[1:]),
        "machine": {"nproc": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release()},
        "target_events_per_second": TARGET_EVENTS_PER_SECOND,
    })
    print(table(result))
    args.results_dir.mkdir(parents=True, exist_ok=True)
    for name in (f"forward-{stamp}.json", "forward-latest.json"):
        (args.results_dir / name).write_text(json.dumps(result, indent=2, default=str) + "\n")
    log(f"results written to {args.results_dir}/forward-{stamp}.json")
    ok = result["siemgate"]["check"]["all_arrived"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
