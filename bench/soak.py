"""The soak (issue 7, item 4): `siemgate run` on the embedded bus with all four sinks (file,
a private rsyslogd over TCP, the Splunk HEC and Elasticsearch stand-ins; the same setup as
bench/pipeline.py's embedded mode) under a fixed rate for N minutes, watching for drift.

Load: `--senders` sequential senders (bench/pipeline_sender.py) posting 500-event batches at
`--rate` events/s in total (default 1,000 events/s: 2 senders, one batch a second each; a
sender never bursts to catch up). Sampled: RSS (VmRSS) and CPU of every process every
`--sample-seconds`; per batch its ack latency; per event its end-to-end latency to each sink
(arrival minus the event's `bench_sent_at`, arrival read as in bench/pipeline.py).

Reported: a per-minute table (events acked, ack latency p50/p99/max, end-to-end p99 per
sink, RSS and CPU cores per process) and the drift between the first and the last
`--window` minutes (default 5; at most half the run): RSS (mean and max), ack p50/p99,
end-to-end p99 per sink. At the end every acked event is checked to have reached every sink
(missing = lost, duplicates counted), siemgate is stopped with SIGTERM (its exit code and
ERROR log lines are reported).

    .venv/bin/python bench/soak.py                    # 30 minutes at 1,000 events/s
    .venv/bin/python bench/soak.py --minutes 2        # a short check that it works

Results: a summary on stdout, bench/results/soak-<ts>.json, soak-latest.json and
soak-<ts>.png. Not run in CI; run the 30-minute soak on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
from array import array
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

import pipeline_lib as lib  # noqa: E402
from pipeline_lib import log  # noqa: E402

RSS_TARGET_MB = 300.0


class StreamLedger:
    """Per sink, which events of each acked batch arrived (a bitmask per batch), duplicates, and
    the end-to-end latencies of the soak's events by the minute they were sent: constant memory
    per event (8 bytes per latency), whatever the length of the soak."""

    def __init__(self, sinks: Sequence[str], origin: float) -> None:
        self.sinks = list(sinks)
        self.origin = origin
        self.masks: dict[str, dict[tuple[str, int, int], int]] = {s: {} for s in sinks}
        self.counts: dict[str, Counter[str]] = defaultdict(Counter)
        self.duplicates: Counter[str] = Counter()
        self.foreign: Counter[str] = Counter()
        self.latency: dict[str, dict[int, array[float]]] = {s: defaultdict(lambda: array("d")) for s in sinks}
        self.arrived_10s: dict[str, Counter[int]] = {s: Counter() for s in sinks}
        self.last_arrival: dict[str, float] = {}

    def add(self, sink: str, arrivals: Iterable[tuple[str, float | None, float]]) -> None:
        masks = self.masks[sink]
        for ident, sent, arrived in arrivals:
            parsed = lib.parse_id(ident)
            if parsed is None:
                self.foreign[sink] += 1
                continue
            tag, key, _ = parsed
            sender, batch = lib.batch_of(key)
            slot = (tag, sender, batch)
            bit = 1 << (key & 0xFFFF)
            mask = masks.get(slot, 0)
            if mask & bit:
                self.duplicates[sink] += 1
                continue
            masks[slot] = mask | bit
            self.counts[tag][sink] += 1
            if tag == "soak":
                self.last_arrival[sink] = max(arrived, self.last_arrival.get(sink, 0.0))
                self.arrived_10s[sink][int((arrived - self.origin) // 10)] += 1
                if sent is not None:
                    self.latency[sink][int((sent - self.origin) // 60)].append(arrived - sent)

    def complete(self, tag: str, events: int) -> bool:
        return all(self.counts[tag][s] >= events for s in self.sinks)

    def check(self, tag: str, batches: Sequence[dict[str, Any]]) -> dict[str, dict[str, int]]:
        acked = {(tag, b["s"], b["b"]): b["n"] for b in batches if b["st"] == 200}
        out = {}
        for sink in self.sinks:
            masks = self.masks[sink]
            missing = sum(max(0, n - masks.get(slot, 0).bit_count()) for slot, n in acked.items())
            unexpected = sum(m.bit_count() for slot, m in masks.items() if slot[0] == tag and slot not in acked)
            out[sink] = {"expected": sum(acked.values()), "missing": missing, "unexpected": unexpected,
                         "duplicates": self.duplicates[sink]}
        return out


def update(readers: Sequence[lib.SinkReader], ledger: StreamLedger) -> None:
    for reader in readers:
        ledger.add(reader.name, reader.read_new())


def wait_for(readers: Sequence[lib.SinkReader], ledger: StreamLedger, tag: str, events: int, timeout: float,
             check: Any) -> tuple[bool, float]:
    started = time.monotonic()
    while True:
        update(readers, ledger)
        if ledger.complete(tag, events):
            return True, time.monotonic() - started
        check()
        if time.monotonic() - started > timeout:
            return False, time.monotonic() - started
        time.sleep(0.5)


# ------------------------------------------------------------------------------------------
# Report


def minute_table(batches: Sequence[dict[str, Any]], ledger: StreamLedger, samples: Sequence[Any], origin: float,
                 minutes: int) -> list[dict[str, Any]]:
    ack_by_minute: dict[int, list[float]] = defaultdict(list)
    events_by_minute: Counter[int] = Counter()
    for b in batches:
        minute = int((b["t"] - origin) // 60)
        if b["st"] == 200:
            ack_by_minute[minute].append(b["lat"])
            events_by_minute[minute] += b["n"]
    rss: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    cpu: dict[int, dict[str, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
    for t, sample in samples:
        minute = int((t - origin) // 60)
        for name, (kb, seconds) in sample.items():
            if name.startswith("sender"):
                continue
            rss[minute][name].append(kb / 1024)
            if seconds is not None:
                cpu[minute][name].append((t, seconds))
    rows = []
    for minute in range(minutes):
        ack = lib.distribution_ms(ack_by_minute.get(minute, []))
        row: dict[str, Any] = {
            "minute": minute + 1,
            "events_acked": events_by_minute.get(minute, 0),
            "ack_ms": {k: ack[k] for k in ("count", "p50", "p99", "max")},
            "e2e_ms": {},
            "rss_mb": {name: {"mean": round(sum(v) / len(v), 1), "max": round(max(v), 1)}
                       for name, v in rss.get(minute, {}).items() if v},
            "cpu_cores": {},
        }
        for sink in ledger.sinks:
            e2e = lib.distribution_ms(ledger.latency[sink].get(minute, []))
            row["e2e_ms"][sink] = {k: e2e[k] for k in ("count", "p50", "p99", "max")}
        for name, points in cpu.get(minute, {}).items():
            if len(points) >= 2 and points[-1][0] > points[0][0]:
                row["cpu_cores"][name] = round((points[-1][1] - points[0][1]) / (points[-1][0] - points[0][0]), 3)
        rows.append(row)
    return rows


def window_figures(batches: Sequence[dict[str, Any]], ledger: StreamLedger, samples: Sequence[Any], origin: float,
                   first: int, last: int) -> dict[str, Any]:
    """Figures over the minutes [first, last)."""
    start, end = origin + first * 60, origin + last * 60
    acks = [b["lat"] for b in batches if b["st"] == 200 and start <= b["t"] < end]
    ack = lib.distribution_ms(acks)
    rss: dict[str, list[float]] = defaultdict(list)
    for t, sample in samples:
        if start <= t < end:
            for name, (kb, _) in sample.items():
                if not name.startswith("sender"):
                    rss[name].append(kb / 1024)
    e2e = {}
    for sink in ledger.sinks:
        values: list[float] = []
        for minute in range(first, last):
            values.extend(ledger.latency[sink].get(minute, []))
        d = lib.distribution_ms(values)
        e2e[sink] = {k: d[k] for k in ("count", "p50", "p99", "max")}
    return {
        "minutes": [first + 1, last],
        "ack_ms": {k: ack[k] for k in ("count", "p50", "p99", "p99.9", "max")},
        "e2e_ms": e2e,
        "rss_mb": {name: {"mean": round(sum(v) / len(v), 1), "max": round(max(v), 1)} for name, v in rss.items() if v},
    }


def drift(first: dict[str, Any], last: dict[str, Any]) -> dict[str, Any]:
    def change(a: float | None, b: float | None) -> dict[str, Any]:
        if a is None or b is None:
            return {"first": a, "last": b}
        return {"first": a, "last": b, "change": round(b - a, 3), "ratio": round(b / a, 3) if a else None}

    out: dict[str, Any] = {"ack_p50_ms": change(first["ack_ms"]["p50"], last["ack_ms"]["p50"]),
                           "ack_p99_ms": change(first["ack_ms"]["p99"], last["ack_ms"]["p99"]),
                           "rss_mean_mb": {}, "e2e_p99_ms": {}}
    for name, values in last["rss_mb"].items():
        before = first["rss_mb"].get(name)
        out["rss_mean_mb"][name] = change(before["mean"] if before else None, values["mean"])
    for sink, values in last["e2e_ms"].items():
        out["e2e_p99_ms"][sink] = change(first["e2e_ms"][sink]["p99"], values["p99"])
    return out


def fmt(value: float | None, spec: str = ",.1f") -> str:
    return "-" if value is None else format(value, spec)


def summary_text(document: dict[str, Any]) -> str:
    lines = [f"siemgate soak {document['timestamp']}: {document['settings']['minutes']} min at "
             f"{document['settings']['rate']:,.0f} events/s ({document['settings']['senders']} sequential senders, "
             f"batches of {document['settings']['batch']}); {document['machine']['nproc']} CPUs, load average at start "
             f"{document['machine']['loadavg_at_start']}"]
    if document.get("error"):
        lines.append(f"ERROR: {document['error']}")
    sender = document.get("sender") or {}
    lines.append(f"acked {sender.get('acked_events', 0):,} events ({fmt(sender.get('acked_events_per_second'), ',.0f')}"
                 f"/s), non-200 {sender.get('non_200') or 0}, connection errors {sender.get('connection_errors')}")
    header = (f"{'min':>3} {'acked':>7} {'ack p50':>8} {'ack p99':>8} {'ack max':>8}  "
              + " ".join(f"{s[:10] + ' p99':>14}" for s in lib.SINKS) + "  RSS MB (mean) per process")
    lines.append(header)
    for row in document.get("per_minute", []):
        rss = ", ".join(f"{lib.display_name(k)} {v['mean']:.0f}" for k, v in row["rss_mb"].items())
        lines.append(f"{row['minute']:>3} {row['events_acked']:>7,} {fmt(row['ack_ms']['p50'], '.2f'):>8} "
                     f"{fmt(row['ack_ms']['p99'], '.2f'):>8} {fmt(row['ack_ms']['max'], '.1f'):>8}  "
                     + " ".join(f"{fmt(row['e2e_ms'][s]['p99'], ',.0f'):>14}" for s in lib.SINKS) + f"  {rss}")
    d = document.get("drift")
    if d:
        first, last = document["windows"]["first"]["minutes"], document["windows"]["last"]["minutes"]
        lines.append(f"drift, minutes {first[0]}-{first[1]} vs {last[0]}-{last[1]}:")
        lines.append(f"  ack p50 {fmt(d['ack_p50_ms'].get('first'), '.2f')} -> "
                     f"{fmt(d['ack_p50_ms'].get('last'), '.2f')} ms; "
                     f"ack p99 {fmt(d['ack_p99_ms'].get('first'), '.2f')} -> "
                     f"{fmt(d['ack_p99_ms'].get('last'), '.2f')} ms")
        lines.append("  RSS mean MB: " + ", ".join(
            f"{lib.display_name(k)} {fmt(v.get('first'), '.0f')} -> {fmt(v.get('last'), '.0f')}"
            for k, v in d["rss_mean_mb"].items()))
        lines.append("  end-to-end p99 ms: " + ", ".join(
            f"{k} {fmt(v.get('first'), ',.0f')} -> {fmt(v.get('last'), ',.0f')}" for k, v in d["e2e_p99_ms"].items()))
    delivery = document.get("delivery") or {}
    lost = {s: v["missing"] for s, v in delivery.items() if v["missing"]}
    dups = {s: v["duplicates"] for s, v in delivery.items() if v["duplicates"]}
    lines.append(f"delivery: every acked event in every sink: {'yes' if not lost else 'NO, missing ' + str(lost)}; "
                 f"duplicates {dups or 0}; drained {fmt(document.get('drain_seconds'), '.1f')} s after the last ack")
    peak = document.get("vmhwm_mb") or {}
    over = [k for k, v in peak.items() if k.startswith("siemgate") and v >= RSS_TARGET_MB]
    lines.append("peak RSS (VmHWM) MB: " + ", ".join(f"{lib.display_name(k)} {v:.0f}" for k, v in peak.items())
                 + f"; siemgate under {RSS_TARGET_MB:.0f} MB: " + ("yes" if not over else "NO"))
    lines.append(f"siemgate exit: {document.get('siemgate_exit')}")
    return "\n".join(lines)


def chart(document: dict[str, Any], ledger: StreamLedger, samples: Sequence[Any], origin: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, middle, bottom) = plt.subplots(3, 1, figsize=(11, 11), sharex=True)
    colors = {"file": "tab:green", "syslog": "tab:orange", "splunk-hec": "tab:purple", "elasticsearch": "tab:blue"}
    rows = document["per_minute"]
    acked: Counter[int] = Counter()
    for b in document["_batches"]:
        if b["st"] == 200:
            acked[int((b["t"] + b["lat"] - origin) // 10)] += b["n"]
    if acked:
        xs = list(range(min(acked), max(acked) + 1))
        top.plot([x * 10 / 60 for x in xs], [acked.get(x, 0) / 10 for x in xs], color="black", lw=1.2,
                 label="acked")
    for sink, counts in ledger.arrived_10s.items():
        if counts:
            xs = list(range(min(counts), max(counts) + 1))
            top.plot([x * 10 / 60 for x in xs], [counts.get(x, 0) / 10 for x in xs], lw=0.8, color=colors.get(sink),
                     label=f"arrived: {sink}")
    top.set_ylabel("events/s (10 s bins)")
    minutes = [r["minute"] - 0.5 for r in rows]
    middle.plot(minutes, [r["ack_ms"]["p50"] for r in rows], "k--", lw=1, label="ack p50")
    middle.plot(minutes, [r["ack_ms"]["p99"] for r in rows], "k-", lw=1.2, label="ack p99")
    for sink in lib.SINKS:
        middle.plot(minutes, [r["e2e_ms"][sink]["p99"] for r in rows], lw=1, color=colors.get(sink),
                    label=f"end to end p99: {sink}")
    middle.set_yscale("log")
    middle.set_ylabel("latency ms per minute (log)")
    series: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for t, sample in samples:
        for name, (kb, _) in sample.items():
            if not name.startswith("sender"):
                series[name].append(((t - origin) / 60, kb / 1024))
    for name, points in series.items():
        xs, ys = zip(*points, strict=True)
        bottom.plot(xs, ys, lw=1, label=lib.display_name(name))
    bottom.axhline(RSS_TARGET_MB, color="red", ls=":", lw=0.8)
    bottom.set_ylabel("RSS MB")
    bottom.set_xlabel("minutes since the soak started")
    for ax in (top, middle, bottom):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper right")
    fig.suptitle(f"siemgate soak {document['timestamp']}: `siemgate run`, embedded, 4 sinks, "
                 f"{document['settings']['rate']:,.0f} events/s, {document['settings']['minutes']} min, "
                 f"{document['machine']['nproc']} CPUs", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="length of the soak (default 30)")
    parser.add_argument("--rate", type=float, default=1000.0, help="events/s over all senders (default 1000)")
    parser.add_argument("--senders", type=int, default=2, help="sequential senders (default 2)")
    parser.add_argument("--batch", type=int, default=500, help="events per batch (default 500)")
    parser.add_argument("--window", type=float, default=5.0, help="minutes compared for drift, first vs last "
                        "(default 5; at most half the run)")
    parser.add_argument("--sample-seconds", type=float, default=1.0, help="RSS/CPU sampling period (default 1)")
    parser.add_argument("--hec-ack", action=argparse.BooleanOptionalAction, default=True,
                        help="the HEC sink with indexer acknowledgement (default on)")
    parser.add_argument("--drain-timeout", type=float, default=600.0)
    parser.add_argument("--results-dir", type=Path, default=BENCH_DIR / "results")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.rate <= 0 or args.senders < 1:
        parser.error("--minutes and --rate must be positive, --senders at least 1")
    return args


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    args.results_dir.mkdir(parents=True, exist_ok=True)
    processes = lib.Processes()
    document: dict[str, Any] = {
        "benchmark": "soak",
        "timestamp": stamp,
        "command": " ".join(["bench/soak.py", *(argv if argv is not None else sys.argv[1:])]),
        "machine": lib.machine_summary(),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "setup": "`siemgate run`, embedded bus; sinks file, syslog (rsyslogd TCP), splunk-hec (stand-in"
                 + (", indexer ack" if args.hec_ack else "") + "), elasticsearch (stand-in)",
        "error": None,
    }
    exit_code = 0
    monitor: lib.Monitor | None = None
    readers: list[lib.SinkReader] = []
    ledger = StreamLedger(lib.SINKS, time.time())
    sender_run: lib.SenderRun | None = None
    minutes = max(1, int(round(args.minutes)))
    with tempfile.TemporaryDirectory(prefix="siemgate-soak-") as tmp:
        work = Path(tmp)
        try:
            log("starting the sinks and `siemgate run` (embedded)")
            pipeline = lib.start_pipeline(processes, work, "embedded", hec_ack=args.hec_ack)
            tail = lib.FileTail(pipeline.sinks.file_path)
            monitor = lib.Monitor(processes, [tail], sample_seconds=args.sample_seconds)
            monitor.start()
            readers = [lib.FileSinkReader(tail), lib.RsyslogReader(pipeline.sinks.rsyslog_received),
                       lib.StandinReader("splunk-hec", pipeline.sinks.hec_url),
                       lib.StandinReader("elasticsearch", pipeline.sinks.es_url)]

            def check() -> None:
                for proc in [*pipeline.siemgate, *pipeline.sinks.procs.values()]:
                    if not proc.alive():
                        raise RuntimeError(f"{proc.name} exited with {proc.process.returncode}:\n{proc.tail()}")
                if monitor is not None and monitor.error is not None:
                    raise RuntimeError(f"the monitor thread failed: {monitor.error!r}")

            warm = lib.start_sender(processes, work, pipeline.url, "warmup", events=1000)
            warm.finish(processes, 120)
            ok, _ = wait_for(readers, ledger, "warmup", 1000, 120, check)
            if not ok:
                raise RuntimeError(f"the warm-up did not reach every sink: {dict(ledger.counts['warmup'])}")
            log(f"soak: {minutes} min at {args.rate:,.0f} events/s from {args.senders} senders")
            origin = time.time()
            ledger.origin = origin
            sender_run = lib.start_sender(processes, work, pipeline.url, "soak", senders=args.senders,
                                          rate=args.rate, duration=minutes * 60, batch=args.batch, seed=21)
            next_report = origin + 60
            while sender_run.proc.alive():
                time.sleep(2)
                update(readers, ledger)
                check()
                if time.time() >= next_report:
                    next_report += 60
                    batches = lib.read_batches(sender_run.log_path)
                    recent = [b["lat"] for b in batches if b["st"] == 200 and b["t"] >= next_report - 120]
                    d = lib.distribution_ms(recent)
                    rss = {lib.display_name(p.name): round(p.last_status.get("VmRSS", 0) / 1024)
                           for p in pipeline.siemgate}
                    total = sum(b["n"] for b in batches if b["st"] == 200)
                    log(f"  minute {int((time.time() - origin) // 60)}: {total:,} acked; last minute ack p50 "
                        f"{fmt(d['p50'], '.2f')} p99 {fmt(d['p99'], '.2f')} ms; "
                        f"delivered {dict(ledger.counts['soak'])}; RSS {rss}")
            sender_run.finish(processes, 60)
            acked = (sender_run.summary or {}).get("acked_events", 0)
            last_ack = max((b["t"] + b["lat"] for b in sender_run.batches), default=time.time())
            ok, _ = wait_for(readers, ledger, "soak", acked, args.drain_timeout, check)
            # From the last ack to the last sink's last arrival.
            last_arrival = max(ledger.last_arrival.values(), default=last_ack)
            document["drain_seconds"] = round(max(0.0, last_arrival - last_ack), 3)
            document["delivery_complete"] = ok
            document["vmhwm_mb"] = lib.hwm_snapshot(processes)
            exits = {}
            for proc in pipeline.siemgate:
                code = processes.stop(proc, grace=60)
                exits[proc.name] = {"exit_code": code, **log_errors(proc)}
            document["siemgate_exit"] = exits
        except KeyboardInterrupt:
            document["error"] = "interrupted"
            exit_code = 130
        except Exception as exc:
            document["error"] = f"{type(exc).__name__}: {exc}"
            log(f"FAILED: {document['error']}")
            exit_code = 1
        finally:
            if monitor is not None:
                monitor.stop()
            for reader in readers:
                if isinstance(reader, lib.StandinReader):
                    reader.close()
            processes.stop_all()
    samples = monitor.samples if monitor is not None else []
    batches = sender_run.batches if sender_run is not None else []
    if sender_run is not None and not batches:
        batches = lib.read_batches(sender_run.log_path) if sender_run.log_path.exists() else []
    if sender_run is not None and sender_run.summary is not None:
        document["sender"] = lib.ack_report(sender_run)
        document["delivery"] = ledger.check("soak", batches)
    document["foreign_ids"] = dict(ledger.foreign)
    origin = ledger.origin
    document["per_minute"] = minute_table(batches, ledger, samples, origin, minutes)
    window = max(1, min(int(args.window), minutes // 2)) if minutes >= 2 else 1
    first = window_figures(batches, ledger, samples, origin, 0, window)
    last = window_figures(batches, ledger, samples, origin, minutes - window, minutes)
    document["windows"] = {"first": first, "last": last}
    document["drift"] = drift(first, last)
    text = json.dumps(document, indent=1, default=str)
    out = args.results_dir / f"soak-{stamp}.json"
    out.write_text(text + "\n")
    (args.results_dir / "soak-latest.json").write_text(text + "\n")
    png = args.results_dir / f"soak-{stamp}.png"
    try:
        chart({**document, "_batches": batches}, ledger, samples, origin, png)
    except ImportError:
        log("matplotlib is not installed (pip install -e '.[bench]'): no chart")
    except Exception as exc:  # the figures are written already
        log(f"the chart failed: {exc!r}")
    print()
    print(summary_text(document))
    log(f"results: {out}, soak-latest.json, {png.name}")
    return exit_code


def log_errors(proc: lib.Proc) -> dict[str, Any]:
    if proc.log_path is None or not proc.log_path.exists():
        return {}
    lines = proc.log_path.read_text(errors="replace").splitlines()
    errors = [line[:500] for line in lines if '"ERROR"' in line or '"CRITICAL"' in line or line.startswith("Trace")]
    return {"log_error_lines": len(errors), "first_errors": errors[:5]}


if __name__ == "__main__":
    sys.exit(main())
