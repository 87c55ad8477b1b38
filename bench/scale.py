"""The scale-out benchmark (docs/SCALING.md): a spike on one machine, more processes added.

1. **Ingest**: 1, 2 then 3 `siemgate ingest` processes (Kafka mode, acks=all, each with its
   own spool) behind a round-robin TCP balancer (bench/balancer.py, what a Kubernetes Service
   does); `wrk` posts 500-event batches on 8 connections for `--duration` seconds each time.
   Reported: events/s and p50/p99 per replica count, and for comparison 1 ingest without the
   balancer (what the balancer itself costs).
2. **Forwarders**: `--events` records waiting on a 6-partition topic (a spike that already
   happened: the lag is the backlog); 1 `siemgate forward` process (file sink, consumer group
   `<prefix>-archive`) starts, a 2nd joins after `--step` seconds, a 3rd after 2 x `--step`.
   Every 0.5 s the delivered count (the processes' own `siemgate_forward_events_total`) and
   the lag (records - delivered) are sampled. Reported: delivered events/s with 1, 2 and 3
   members (each window starts once the group settled: the new member's first delivery),
   the time the lag took to drain, and that every record was delivered (ids read back from
   the sink files; duplicates from rebalances counted).

    .venv/bin/python bench/scale.py                      # 300,000 records, 20 s per ingest step
    .venv/bin/python bench/scale.py --events 150000 --duration 10 --step 10

Needs wrk (Debian package) for the ingest part. A Tansu broker is started unless
KAFKA_BOOTSTRAP_SERVERS is set. On a 2-core machine, processes compete for the same two
cores with the broker and the load generator: the figures show how far that goes.
Results: a table on stdout, bench/results/scale-<timestamp>.json and scale-latest.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
for _path in (str(ROOT), str(BENCH_DIR)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from forward_peer import prefill_async  # noqa: E402
from ingest import (  # noqa: E402
    EVENTS_PER_BATCH,
    BusEndpoint,
    kafka_broker,
    log,
    machine_info,
    metric_total,
    proc_cpu_seconds,
    run_wrk,
    scrape,
    siemgate_server,
    stop,
    wait_ready,
)

from siemgate.simulate import make_batch_body, make_events  # noqa: E402
from siemgate_standins.broker import free_port  # noqa: E402

PARTITIONS = 6
SINK = "archive"


# ------------------------------------------------------------------------------------------
# 1. Ingest replicas behind a balancer


@contextlib.contextmanager
def balancer(upstreams: list[str], work: Path) -> Any:
    port = free_port()
    command = [sys.executable, str(BENCH_DIR / "balancer.py"), "--port", str(port)]
    for upstream in upstreams:
        command += ["--upstream", upstream]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        assert process.stdout is not None
        if process.stdout.readline().strip() != b"ready":
            raise RuntimeError("the balancer did not start")
        yield port, process.pid
    finally:
        stop(process, "the balancer")
        if process.stdout is not None:
            process.stdout.close()


def measure_ingest(bootstrap: str, work: Path, replicas: int, body: Path, duration: float, *,
                   through_balancer: bool = True) -> dict[str, Any]:
    bus = BusEndpoint("kafka", bootstrap, idempotence=False)
    with contextlib.ExitStack() as stack:
        targets = [stack.enter_context(siemgate_server(work, bus)) for _ in range(replicas)]
        pids = {f"ingest-{i}": t.pid for i, t in enumerate(targets)}
        if through_balancer:
            port, balancer_pid = stack.enter_context(balancer([t.base_url.removeprefix("http://")
                                                               for t in targets], work))
            url = f"http://127.0.0.1:{port}{targets[0].url.removeprefix(targets[0].base_url)}"
            pids["balancer"] = balancer_pid
        else:
            url = targets[0].url
        cpu_before = {name: proc_cpu_seconds(pid) for name, pid in pids.items()}
        result = run_wrk(url, body, connections=8, duration=duration, threads=2)
        cpu = {name: round(proc_cpu_seconds(pid) - cpu_before[name], 2) for name, pid in pids.items()}
    events = result["ok"] * EVENTS_PER_BATCH
    return {
        "replicas": replicas,
        "through_balancer": through_balancer,
        "events_per_second": round(events / result["seconds"]),
        "p50_ms": round(result["latency_ms"]["p50"], 2),
        "p99_ms": round(result["latency_ms"]["p99"], 2),
        "non_200": result["requests"] - result["ok"],
        "errors": result["errors"],
        "cpu_seconds": cpu,
        "seconds": round(result["seconds"], 2),
    }


# ------------------------------------------------------------------------------------------
# 2. Forwarders joining one consumer group


def forward_config(work: Path, bootstrap: str, prefix: str, index: int) -> tuple[Path, int, Path]:
    port = free_port()
    out = work / f"forward-{index}" / "events.ndjson"
    path = work / f"forward-{index}.yaml"
    path.write_text(json.dumps({
        "log_level": "warning",
        "bus": {"type": "kafka", "kafka": {"bootstrap_servers": bootstrap, "topic_prefix": prefix,
                                           "idempotence": False, "topics": {"partitions": PARTITIONS}}},
        # Tansu holds a fetch for its whole max wait even when records are there (Kafka does not).
        "forward": {"listen": {"host": "127.0.0.1", "port": port}, "fetch_max_wait_ms": 20},
        # No rotation: the ids are read back from one file per process.
        "sinks": [{"name": SINK, "type": "file", "path": str(out), "fsync": "never", "rotate_bytes": 1 << 40}],
    }))
    return path, port, out


_LAST: dict[int, float] = {}


def delivered(port: int) -> float:
    """The process's delivered count (the last one seen when a scrape fails: a busy process)."""
    samples = scrape(f"http://127.0.0.1:{port}")
    value = metric_total(samples, "siemgate_forward_events_total", sink=SINK, outcome="delivered")
    if value is not None:
        _LAST[port] = value
    return _LAST.get(port, 0.0)


def ids_in(path: Path) -> list[str]:
    if not path.exists():
        return []
    ids = []
    for line in path.read_bytes().splitlines():
        if line.strip():
            ids.append(json.loads(line)["id"])
    return ids


async def measure_forwarders(bootstrap: str, work: Path, events: int, step: float, timeout: float) -> dict[str, Any]:
    prefix = f"scale{uuid.uuid4().hex[:8]}"
    log(f"prefilling {events:,} records on {prefix}.events.low ({PARTITIONS} partitions)")
    prefilled = await prefill_async(bootstrap, f"{prefix}.events.low", events, partitions=PARTITIONS)
    log(f"prefilled at {prefilled.events_per_second:,.0f} records/s")
    processes: list[tuple[subprocess.Popen[bytes], int, Path]] = []
    samples: list[dict[str, Any]] = []
    joined_at: list[float | None] = []
    started = time.monotonic()
    try:
        next_start = 0.0
        while True:
            now = time.monotonic() - started
            if len(processes) < 3 and now >= next_start:
                config, port, out = forward_config(work, bootstrap, prefix, len(processes))
                log_path = work / f"forward-{len(processes)}.log"
                with open(log_path, "wb") as handle:
                    process = subprocess.Popen([sys.executable, "-m", "siemgate", "forward", "-c", str(config)],
                                               stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
                wait_ready(f"forwarder {len(processes)}", f"http://127.0.0.1:{port}/healthz", process, log_path, 60)
                processes.append((process, port, out))
                joined_at.append(None)
                log(f"forwarder {len(processes)} started at {now:.1f} s")
                next_start = float("inf")
            counts = [await asyncio.to_thread(delivered, port) for _, port, _ in processes]
            total = sum(counts)
            now = time.monotonic() - started
            for index, count in enumerate(counts):
                if joined_at[index] is None and count > 0:
                    joined_at[index] = now
                    log(f"forwarder {index + 1} delivering at {now:.1f} s")
                    if len(processes) < 3:
                        next_start = now + step
            samples.append({"t": round(now, 2), "members": len(processes), "delivered": total,
                            "lag": max(0, events - total),
                            "cpu": [round(proc_cpu_seconds(p.pid), 2) for p, _, _ in processes]})
            if total >= events or now > timeout:
                break
            await asyncio.sleep(0.5)
    finally:
        for index, (process, _, _) in enumerate(processes):
            stop(process, f"forwarder {index + 1}")
    counts_by_id = Counter(i for _, _, out in processes for i in ids_in(out))
    missing = events - len(counts_by_id)
    windows = rates_by_members(samples, joined_at)
    drained = next((s["t"] for s in samples if s["lag"] == 0), None)
    return {
        "records": events,
        "prefill": prefilled.summary(),
        "step_seconds": step,
        "joined_at": joined_at,
        "windows": windows,
        "drained_after_seconds": drained,
        "missing": missing,
        "duplicates": sum(n - 1 for n in counts_by_id.values()),
        "samples": samples,
    }


def rates_by_members(samples: list[dict[str, Any]], joined_at: list[float | None]) -> list[dict[str, Any]]:
    """Delivered events/s while 1, 2, 3 members delivered: from a member's first delivery to the
    next one's (the last window ends when the backlog is gone)."""
    windows = []
    starts = [t for t in joined_at if t is not None]
    for index, start in enumerate(starts):
        end = starts[index + 1] if index + 1 < len(starts) else None
        inside = [s for s in samples if s["t"] >= start and (end is None or s["t"] <= end) and s["lag"] > 0]
        if len(inside) < 2:
            continue
        first, last = inside[0], inside[-1]
        seconds = last["t"] - first["t"]
        if seconds <= 0:
            continue
        windows.append({"members": index + 1, "from_s": first["t"], "to_s": last["t"],
                        "events_per_second": round((last["delivered"] - first["delivered"]) / seconds)})
    return windows


# ------------------------------------------------------------------------------------------


def table(result: dict[str, Any]) -> str:
    lines = ["", "Ingest (Kafka mode, 8 sequential senders via wrk, 500-event batches)",
             f"{'replicas':>8} {'balancer':>8} {'events/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'non-200':>8}"]
    for row in result["ingest"]:
        lines.append(f"{row['replicas']:>8} {'yes' if row['through_balancer'] else 'no':>8} "
                     f"{row['events_per_second']:>10,} {row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f} {row['non_200']:>8}")
    forward = result["forward"]
    lines += ["", f"Forwarders ({forward['records']:,} records waiting, one consumer group, file sink)",
              f"{'members':>8} {'from s':>8} {'to s':>8} {'events/s':>10}"]
    for window in forward["windows"]:
        lines.append(f"{window['members']:>8} {window['from_s']:>8.1f} {window['to_s']:>8.1f} "
                     f"{window['events_per_second']:>10,}")
    lines.append(f"lag drained after {forward['drained_after_seconds']} s; missing {forward['missing']}, "
                 f"duplicates {forward['duplicates']}")
    return "\n".join(lines)


async def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    result: dict[str, Any] = {"machine": machine_info("scale"), "command": " ".join(sys.argv),
                              "started": datetime.now(UTC).isoformat(timespec="seconds")}
    with kafka_broker(work) as broker:
        body = work / "batch.json"
        body.write_bytes(make_batch_body(make_events(EVENTS_PER_BATCH, "high=1,medium=3,low=6", args.seed)))
        rows = []
        if not args.skip_ingest:
            rows.append(measure_ingest(broker.bootstrap_servers, work, 1, body, args.duration, through_balancer=False))
            for replicas in (1, 2, 3):
                log(f"ingest: {replicas} replica(s) behind the balancer")
                rows.append(measure_ingest(broker.bootstrap_servers, work, replicas, body, args.duration))
        result["ingest"] = rows
        result["forward"] = await measure_forwarders(broker.bootstrap_servers, work, args.events, args.step,
                                                     args.timeout)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="siemgate scale-out benchmark (docs/SCALING.md)")
    parser.add_argument("--events", type=int, default=300_000, help="records waiting for the forwarders")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of load per ingest step")
    parser.add_argument("--step", type=float, default=15.0, help="seconds between two forwarders joining")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--skip-ingest", action="store_true")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--results-dir", type=Path, default=BENCH_DIR / "results")
    parser.add_argument("--work", type=Path, help="keep configs and logs here (default: a temporary directory)")
    args = parser.parse_args(argv)
    if args.work is not None:
        args.work.mkdir(parents=True, exist_ok=True)
        result = asyncio.run(run(args, args.work))
    else:
        with tempfile.TemporaryDirectory(prefix="siemgate-scale-") as tmp:
            result = asyncio.run(run(args, Path(tmp)))
    print(table(result))
    args.results_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    text = json.dumps(result, indent=2)
    (args.results_dir / f"scale-{stamp}.json").write_text(text)
    (args.results_dir / "scale-latest.json").write_text(text)
    log(f"results: {args.results_dir / f'scale-{stamp}.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
