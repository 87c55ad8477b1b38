"""The spool's and the embedded log's append latency, this tree against a baseline commit.

A focused, quick comparison for changes to the SQLite writer engine
(`siemgate/bus/sqlite_writer.py`) and the stores on it (`bus/spool.py`, `bus/embedded.py`),
where bench/ingest.py (the whole HTTP path, minutes, a quiet machine) is too heavy or the
machine is shared: the stores alone, old and new code alternating in one run, so that both
see the same machine.

Each round runs one child process per tree (baseline, then this tree, or the other way round
in every second round), each in fresh temporary directories:

- `Spool.append` and `EmbeddedLog.append` of 500-event batches (~1 KB events, the ingest
  benchmark's shape);
- (a) one sequential writer, (b) 8 concurrent writers, each pausing `--interval-ms` between
  its appends (a sender reading, parsing and answering);
- per round and tree: p50 and p99 of the append latency; at the end the new/old ratio of
  each round's p50 and p99, and their medians over the rounds.

    git worktree add /tmp/sqlite-base d0a308e      # the baseline (remove it afterwards)
    .venv/bin/python bench/sqlite_writer.py --baseline /tmp/sqlite-base
    .venv/bin/python bench/sqlite_writer.py --baseline /tmp/sqlite-base --rounds 3 --batches 200
    .venv/bin/python bench/sqlite_writer.py --baseline /tmp/sqlite-base --new /tmp/sqlite-new  # two commits
    git worktree remove /tmp/sqlite-base

`--interleaved`: one process instead, the baseline's `bus/spool.py` and `bus/embedded.py`
loaded beside this tree's (they must import only modules this tree still has), both stores
open at once, alternating slices of `--slice` appends between old and new: the two see the
same moments of a busy machine (finer pairing than child processes a minute apart).

    .venv/bin/python bench/sqlite_writer.py --baseline /tmp/sqlite-base --interleaved

Results: a table on stdout and bench/results/sqlite_writer-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent.parent
STORES = ("spool", "embedded")
LOADS = (("a", 1), ("b", 8))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def _measure(store: str, writers: int, batches: int, interval: float, directory: Path) -> list[float]:
    batch = _batch()
    if store == "spool":
        from siemgate.bus.spool import Spool

        spool = Spool(directory / "spool", 1 << 40)
        await spool.open()
        append, close = spool.append, spool.close
    else:
        from siemgate.bus.embedded import EmbeddedLog

        log = EmbeddedLog(directory / "siemgate.db", prefix="siemgate")
        await log.open()
        append, close = log.append, log.close
    latencies: list[float] = []

    async def writer(count: int) -> None:
        for _ in range(count):
            started = time.perf_counter()
            await append(batch)
            latencies.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(interval)

    for _ in range(5):  # warm-up, not counted
        await append(batch)
    latencies.clear()
    await asyncio.gather(*(writer(batches // writers) for _ in range(writers)))
    await close()
    return latencies


def _batch() -> list[Any]:
    from siemgate.record import make_record

    pad = "x" * 900
    return [
        make_record(prefix="siemgate", event={"id": f"e-{i}", "message": pad}, kind="event", integration="bench",
                    severity="high", event_id=f"e-{i}", received_at="2026-12-07T00:00:00.000000Z", batch="b",
                    seq=i, peer="127.0.0.1")
        for i in range(500)
    ]


def _load(path: Path, name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


async def _interleaved(baseline: Path, store: str, writers: int, batches: int, slice_size: int,
                       interval: float, directory: Path) -> dict[str, list[float]]:
    """Old and new stores open side by side; slices of appends alternate between them."""
    from siemgate.bus.embedded import EmbeddedLog
    from siemgate.bus.spool import Spool

    stores: dict[str, Any]
    if store == "spool":
        old = _load(baseline / "siemgate" / "bus" / "spool.py", "baseline_spool")
        stores = {"old": old.Spool(directory / "old", 1 << 40), "new": Spool(directory / "new", 1 << 40)}
    else:
        old = _load(baseline / "siemgate" / "bus" / "embedded.py", "baseline_embedded")
        stores = {"old": old.EmbeddedLog(directory / "old" / "siemgate.db", prefix="siemgate"),
                  "new": EmbeddedLog(directory / "new" / "siemgate.db", prefix="siemgate")}
    batch = _batch()
    latencies: dict[str, list[float]] = {"old": [], "new": []}
    for opened in stores.values():
        await opened.open()
        for _ in range(5):  # warm-up, not counted
            await opened.append(batch)

    async def writer(name: str, count: int) -> None:
        for _ in range(count):
            started = time.perf_counter()
            await stores[name].append(batch)
            latencies[name].append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(interval)

    for n in range(max(1, batches // slice_size)):
        for name in (("old", "new") if n % 2 == 0 else ("new", "old")):
            await asyncio.gather(*(writer(name, max(1, slice_size // writers)) for _ in range(writers)))
    for opened in stores.values():
        await opened.close()
    return latencies


def interleaved(args: argparse.Namespace) -> None:
    summary: dict[str, dict[str, float]] = {}
    for store in STORES:
        for load, writers in LOADS:
            with tempfile.TemporaryDirectory(prefix="siemgate-bench-") as directory:
                latencies = asyncio.run(_interleaved(args.baseline.resolve(), store, writers, args.batches,
                                                     args.slice, args.interval_ms / 1000, Path(directory)))
            row = {f"{tree} {q}": percentile(latencies[tree], level)
                   for tree in ("old", "new") for q, level in (("p50", 0.5), ("p99", 0.99))}
            row |= {f"ratio {q}": row[f"new {q}"] / row[f"old {q}"] for q in ("p50", "p99")}
            scenario = f"{store} ({load})"
            summary[scenario] = row
            print(f"{scenario:14} old p50 {row['old p50']:6.2f} p99 {row['old p99']:6.2f} | new p50 "
                  f"{row['new p50']:6.2f} p99 {row['new p99']:6.2f} ms | p50 x{row['ratio p50']:.2f} "
                  f"p99 x{row['ratio p99']:.2f}  ({len(latencies['old'])} + {len(latencies['new'])} appends)",
                  flush=True)
    _save({"mode": "interleaved", "baseline": str(args.baseline.resolve()), "new": str(HERE),
           "args": {k: str(v) for k, v in vars(args).items()}, "summary": summary})


def _save(report: dict[str, Any]) -> None:
    results = HERE / "bench" / "results"
    results.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = results / f"sqlite_writer-{stamp}.json"
    path.write_text(json.dumps(report, indent=2))
    print(f"\nresults: {path}")


def child(batches: int, interval: float) -> None:
    """Measure every store and load with the `siemgate` on sys.path; JSON on stdout."""
    out: dict[str, dict[str, float]] = {}
    for store in STORES:
        for load, writers in LOADS:
            with tempfile.TemporaryDirectory(prefix="siemgate-bench-") as directory:
                latencies = asyncio.run(_measure(store, writers, batches, interval, Path(directory)))
            out[f"{store} ({load})"] = {"p50": percentile(latencies, 0.5), "p99": percentile(latencies, 0.99),
                                        "n": len(latencies)}
    print(json.dumps(out))


def run_child(tree: Path, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    result = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", "--batches", str(args.batches),
         "--interval-ms", str(args.interval_ms)],
        env=env, cwd=tree, capture_output=True, text=True, check=False, timeout=1800,
    )
    if result.returncode != 0:
        raise SystemExit(f"the child for {tree} failed:\n{result.stderr}")
    data: dict[str, dict[str, float]] = json.loads(result.stdout.strip().splitlines()[-1])
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, help="a checkout of the baseline commit (git worktree add)")
    parser.add_argument("--new", type=Path, default=HERE, help="the tree measured against it (default: this one)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batches", type=int, default=400, help="appends per scenario and round")
    parser.add_argument("--interval-ms", type=float, default=2.0, help="each writer's pause between appends")
    parser.add_argument("--interleaved", action="store_true", help="old and new in one process, alternating")
    parser.add_argument("--slice", type=int, default=40, help="--interleaved: appends per slice")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.batches, args.interval_ms / 1000)
        return
    if args.baseline is None:
        parser.error("--baseline is required")
    if args.interleaved:
        interleaved(args)
        return
    trees = {"old": args.baseline.resolve(), "new": args.new.resolve()}
    rounds: list[dict[str, Any]] = []
    for n in range(args.rounds):
        order = ("old", "new") if n % 2 == 0 else ("new", "old")
        measured = {name: run_child(trees[name], args) for name in order}
        rounds.append(measured)
        for scenario in measured["old"]:
            old, new = measured["old"][scenario], measured["new"][scenario]
            print(f"round {n + 1} {scenario:14} old p50 {old['p50']:6.2f} p99 {old['p99']:6.2f} | "
                  f"new p50 {new['p50']:6.2f} p99 {new['p99']:6.2f} ms | "
                  f"p50 x{new['p50'] / old['p50']:.2f} p99 x{new['p99'] / old['p99']:.2f}", flush=True)
    print("\nmedian over the rounds of new / old (below 1: the new code is faster)")
    summary: dict[str, dict[str, float]] = {}
    for scenario in rounds[0]["old"]:
        ratios = {q: statistics.median(r["new"][scenario][q] / r["old"][scenario][q] for r in rounds)
                  for q in ("p50", "p99")}
        medians = {f"{tree} {q}": statistics.median(r[tree][scenario][q] for r in rounds)
                   for tree in ("old", "new") for q in ("p50", "p99")}
        summary[scenario] = {**medians, **{f"ratio {q}": v for q, v in ratios.items()}}
        print(f"{scenario:14} old p50 {medians['old p50']:6.2f} p99 {medians['old p99']:6.2f} | new p50 "
              f"{medians['new p50']:6.2f} p99 {medians['new p99']:6.2f} ms | p50 x{ratios['p50']:.2f} "
              f"p99 x{ratios['p99']:.2f}")
    _save({"mode": "processes", "baseline": str(trees["old"]), "new": str(trees["new"]),
           "args": {k: str(v) for k, v in vars(args).items()}, "rounds": rounds, "summary": summary})


if __name__ == "__main__":
    main()
