"""The whole-pipeline benchmark (issue 7, item 1): sender(s) -> ingest -> bus -> forwarders ->
all four sinks at once, in Kafka mode and in embedded mode, with the ceilings measured in the
same run.

    senders (bench/pipeline_sender.py) --HTTP--> siemgate --> file sink (NDJSON, fsync per batch)
                                                          --> rsyslogd (TCP, RFC 5424, octet counting)
                                                          --> Splunk HEC stand-in (gzip, indexer ack)
                                                          --> Elasticsearch stand-in (gzip, _bulk create)

Modes (`--modes`, default both):
- kafka: a Tansu broker (in memory), `siemgate ingest`, and one `siemgate forward --sink NAME`
  process per sink (`--kafka-forwarders per-sink`, the Helm chart's shape: each sink its own
  consumer group and Deployment, the ingest's ack path not sharing a process with any
  forwarder); `--kafka-forwarders one` runs one `siemgate forward` for all four. Not `siemgate
  run` on Kafka: that puts the forwarders on the ingest's event loop, which is what the
  embedded mode measures already. `forward.fetch_max_wait_ms: 20` (Tansu holds fetches).
- embedded: `siemgate run` (ingest and the four forwarders in one process on the SQLite log).

Each mode starts fresh sinks and siemgate, then runs these phases, each ending only when every
sink has every acked event (checked per event id; missing events are reported as LOST):
1. warmup: 1,000 events (consumer-group joins happen here);
2. sequential: one sequential sender, back to back, for `--duration` s: ack latency
   p50/p99/p99.9 (next to the bare-endpoint ceiling's under the same sender);
3. paced: one sequential sender at `--paced-rate` events/s for `--duration` s: end-to-end
   latency per severity at a load the sinks keep up with;
4. saturation: `--senders` concurrent senders, `--events` events: events/s end to end
   (first send to the last arrival in the last sink), per sink, CPU s per 10,000 events and
   peak RSS per process;
5. flood: `--flood-events` low events (default `--events`; 100,000 is the target's size) from
   `--senders` senders while one more sender posts `--probe-batch` high events every
   `--probe-interval` s until the flood has reached every sink: high-severity end-to-end
   latency during a low flood.

End-to-end latency = arrival in a sink minus the event's `bench_sent_at` (the sender's clock
when it sent the batch, inside every event). Arrival: rsyslogd's own receive time, the
stand-ins' indexing time (bench/pipeline_standins.py), the file sink's line seen by a 10 ms
tail (see bench/pipeline_lib.py); "all sinks" = the last of an event's four arrivals.

Ceilings, in the same run, before the modes: bench/ceiling.py (a bare Starlette endpoint on
siemgate's uvicorn settings) under the same senders (ack latency, events/s); and each sink's
own intake from a minimal client sending what siemgate's sink code encodes
(`--ceiling-events`).

    .venv/bin/python bench/pipeline.py                              # both modes, 100,000-event phases
    .venv/bin/python bench/pipeline.py --events 20000 --duration 5  # a small run
    .venv/bin/python bench/pipeline.py --modes embedded --profile   # py-spy on siemgate during saturation

Targets (reported, not asserted): high-severity end-to-end p99 under 2 s during the
100,000-event low flood; RSS of every siemgate process under 300 MB at saturation.
Results: a summary on stdout, bench/results/pipeline-<ts>.json, pipeline-latest.json and
pipeline-<ts>.png (throughput, latency and RSS over time). Needs rsyslog (apt-get install -y
rsyslog), siemgate[test] (Tansu) and the `bench` extra (matplotlib). Not run in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

import pipeline_lib as lib  # noqa: E402
from pipeline_lib import log  # noqa: E402

HIGH_P99_TARGET_S = 2.0
RSS_TARGET_MB = 300.0
MODE_LABELS = {
    "kafka": "Tansu + `siemgate ingest` + `siemgate forward` ({forwarders})",
    "embedded": "`siemgate run` (ingest + 4 forwarders in one process, embedded log)",
}


class Mode:
    """One mode's pipeline, observers and phase reports."""

    def __init__(self, name: str, args: argparse.Namespace, processes: lib.Processes, work: Path) -> None:
        self.name = name
        self.args = args
        self.processes = processes
        self.work = work / name
        self.work.mkdir(parents=True, exist_ok=True)
        self.pipeline: lib.Pipeline | None = None
        self.monitor: lib.Monitor | None = None
        self.readers: lib.Readers | None = None
        self.origin = time.time()
        self.phases: dict[str, dict[str, Any]] = {}
        self.senders: dict[str, lib.SenderRun] = {}
        self.series: dict[str, Any] = {}
        self.profile: dict[str, Any] | None = None
        self.arrived_bins: dict[str, dict[int, int]] = {}
        self.e2e_bins: dict[str, list[tuple[float, float]]] = {}
        self.probe_points: list[tuple[float, float]] = []

    # -- lifecycle

    def start(self) -> None:
        log(f"{self.name}: starting sinks, {'Tansu, ' if self.name == 'kafka' else ''}siemgate")
        self.origin = time.time()
        self.pipeline = lib.start_pipeline(self.processes, self.work, self.name, hec_ack=self.args.hec_ack,
                                           kafka_forwarders=self.args.kafka_forwarders)
        tail = lib.FileTail(self.pipeline.sinks.file_path)
        self.monitor = lib.Monitor(self.processes, [tail])
        self.monitor.start()
        self.readers = lib.Readers(
            [lib.FileSinkReader(tail), lib.RsyslogReader(self.pipeline.sinks.rsyslog_received),
             lib.StandinReader("splunk-hec", self.pipeline.sinks.hec_url),
             lib.StandinReader("elasticsearch", self.pipeline.sinks.es_url)],
            lib.Ledger(lib.SINKS),
        )

    def check_alive(self) -> None:
        assert self.pipeline is not None
        watched = [*self.pipeline.siemgate, *self.pipeline.sinks.procs.values()]
        if self.pipeline.broker is not None:
            watched.append(self.pipeline.broker)
        for proc in watched:
            if not proc.alive():
                raise RuntimeError(f"{proc.name} (pid {proc.pid}) exited with {proc.process.returncode} during the "
                                   f"{self.name} run:\n{proc.tail()}")
        if self.monitor is not None and self.monitor.error is not None:
            raise RuntimeError(f"the monitor thread failed: {self.monitor.error!r}")

    def stop(self) -> dict[str, Any]:
        """Stop siemgate (SIGTERM: graceful), then the broker and the sinks; what siemgate logged."""
        outcome: dict[str, Any] = {}
        if self.pipeline is not None:
            for proc in self.pipeline.siemgate:
                hwm = proc_hwm(proc)
                code = self.processes.stop(proc, grace=60)
                outcome[proc.name] = {"exit_code": code, "vmhwm_mb_at_stop": hwm, **log_findings(proc)}
            if self.pipeline.broker is not None:
                self.processes.stop(self.pipeline.broker)
            for proc in self.pipeline.sinks.procs.values():
                self.processes.stop(proc)
        if self.monitor is not None:
            self.monitor.stop()
        if self.readers is not None:
            self.readers.close()
        return outcome

    # -- phases

    def run_phase(self, name: str, description: str, *, timeout: float, profile: bool = False,
                  **sender: Any) -> dict[str, Any]:
        assert self.pipeline is not None and self.readers is not None and self.monitor is not None
        log(f"{self.name}: {name}: {description}")
        self.check_alive()
        t0 = time.time()
        cpu0, busy0 = lib.cpu_snapshot(self.processes), lib.machine_busy()
        samplers = []
        if profile:
            samplers = lib.start_profiles(self.processes, self.pipeline.siemgate, self.args.results_dir,
                                          self.args.stamp, self.name)
        run = lib.start_sender(self.processes, self.work, self.pipeline.url, name, **sender)
        self.senders[name] = run
        try:
            run.finish(self.processes, timeout)
            acked = run.summary["acked_events"] if run.summary else 0
            complete, waited = lib.wait_delivered(self.readers, {name: acked}, timeout, self.check_alive)
        finally:
            if samplers:
                self.profile = lib.stop_profiles(samplers)
        report = self.phase_report(name, description, run, t0, cpu0, busy0, complete, waited)
        self.collect([name])
        return report

    def run_flood(self, timeout: float) -> dict[str, Any]:
        assert self.pipeline is not None and self.readers is not None
        args = self.args
        description = (f"{args.flood_events:,} low events from {args.senders} senders; meanwhile one sender posts "
                       f"{args.probe_batch} high events every {args.probe_interval:g} s until the flood reached "
                       "every sink")
        log(f"{self.name}: flood: {description}")
        self.check_alive()
        stop_file = self.work / "stop-probe"
        t0 = time.time()
        cpu0, busy0 = lib.cpu_snapshot(self.processes), lib.machine_busy()
        probe = lib.start_sender(self.processes, self.work, self.pipeline.url, "probe", stop_file=stop_file,
                                 batch=args.probe_batch, mix="high=1", interval=args.probe_interval, seed=11)
        flood = lib.start_sender(self.processes, self.work, self.pipeline.url, "flood", senders=args.senders,
                                 events=args.flood_events, mix="low=1", seed=13)
        self.senders["flood"], self.senders["probe"] = flood, probe
        try:
            flood.finish(self.processes, timeout)
            acked = flood.summary["acked_events"] if flood.summary else 0
            complete, waited = lib.wait_delivered(self.readers, {"flood": acked}, timeout, self.check_alive)
        finally:
            stop_file.touch()
        probe.finish(self.processes, 120)
        probe_acked = probe.summary["acked_events"] if probe.summary else 0
        probe_complete, _ = lib.wait_delivered(self.readers, {"probe": probe_acked}, 120, self.check_alive)
        report = self.phase_report("flood", description, flood, t0, cpu0, busy0, complete, waited)
        report["probe"] = self.probe_report(probe, probe_complete)
        self.collect(["flood", "probe"])
        return report

    def probe_report(self, probe: lib.SenderRun, complete: bool) -> dict[str, Any]:
        """High events' end-to-end latency, those sent while the flood was not yet in every sink."""
        assert self.readers is not None
        ledger = self.readers.ledger
        flood_done = ledger.last_arrival("flood")
        sent = ledger.sent["probe"]
        during = {k for k, s in sent.items() if flood_done is None or s <= flood_done}
        out: dict[str, Any] = {"ack": lib.ack_report(probe), "delivery": ledger.check("probe", probe.batches),
                               "complete": complete, "events_sent_during_flood": len(during),
                               "latency_ms_during_flood": {}, "latency_ms_all_probes": {}}
        for sink in [*lib.SINKS, None]:
            label = sink or "all_sinks"
            lat = ledger.latencies("probe", sink)["all"]
            out["latency_ms_all_probes"][label] = lib.distribution_ms(lat)
        # During the flood only (per event: the last of its arrivals, or per sink).
        for sink in [*lib.SINKS, None]:
            label = sink or "all_sinks"
            values = []
            maps = [ledger.arrived["probe"][s] for s in ([sink] if sink else lib.SINKS)]
            for key in during:
                arrivals = [m.get(key) for m in maps]
                if all(a is not None for a in arrivals):
                    values.append(max(arrivals) - sent[key])  # type: ignore[type-var]
            out["latency_ms_during_flood"][label] = lib.distribution_ms(values)
        p99 = out["latency_ms_during_flood"]["all_sinks"]["p99"]
        out["target_high_p99_under_2s"] = {"value_ms": p99, "met": p99 is not None and p99 < HIGH_P99_TARGET_S * 1000}
        return out

    def phase_report(self, name: str, description: str, run: lib.SenderRun, t0: float, cpu0: dict[str, float],
                     busy0: tuple[float, float], complete: bool, waited: float) -> dict[str, Any]:
        assert self.readers is not None and self.monitor is not None
        t1 = time.time()
        cpu1, busy1 = lib.cpu_snapshot(self.processes), lib.machine_busy()
        ledger = self.readers.ledger
        ack = lib.ack_report(run)
        acked = ack["acked_events"] or 0
        first_send = min((b["t"] for b in run.batches), default=t0)
        last = ledger.last_arrival(name)
        e2e: dict[str, Any] = {"events": acked}
        if last is not None and complete:
            e2e["seconds"] = round(last - first_send, 3)
            e2e["events_per_second"] = round(acked / (last - first_send), 1) if last > first_send else None
        per_sink: dict[str, Any] = {}
        for sink in lib.SINKS:
            latencies = ledger.latencies(name, sink)
            sink_last = ledger.last_arrival(name, sink)
            per_sink[sink] = {
                "events_per_second": (round(len(ledger.arrived[name][sink]) / (sink_last - first_send), 1)
                                      if sink_last and sink_last > first_send else None),
                "latency_ms": {sev: lib.distribution_ms(v) for sev, v in sorted(latencies.items())},
            }
        all_latencies = ledger.latencies(name, None)
        cpu = {k: round(cpu1[k] - cpu0[k], 3) for k in cpu1 if k in cpu0}
        if run.summary:
            cpu[f"{run.proc.name}#{run.proc.pid}"] = run.summary.get("cpu_seconds", 0.0)
        per_10k = {k: round(v / acked * 10_000, 4) for k, v in cpu.items()} if acked else {}
        siemgate_cpu = sum(v for k, v in cpu.items() if k.startswith("siemgate"))
        report = {
            "description": description,
            "window_seconds": [round(t0 - self.origin, 3), round(t1 - self.origin, 3)],
            "ack": ack,
            "complete": complete,
            "wait_after_last_ack_seconds": round(waited, 2),
            "delivery": ledger.check(name, run.batches),
            "end_to_end": {**e2e, "per_sink": per_sink,
                           "all_sinks_latency_ms": {sev: lib.distribution_ms(v)
                                                    for sev, v in sorted(all_latencies.items())}},
            "cpu_seconds": {lib.display_name(k) + f"#{k.split('#')[1]}": v for k, v in cpu.items()},
            "cpu_seconds_per_10k_events": per_10k,
            "siemgate_cpu_seconds_per_10k_events": round(siemgate_cpu / acked * 10_000, 4) if acked else None,
            "machine_cpu_busy": round((busy1[0] - busy0[0]) / max(1.0, busy1[1] - busy0[1]), 3),
            "peak_rss_mb_sampled": lib.peak_rss_between(self.monitor.samples, t0, t1),
            "vmhwm_mb_at_end": lib.hwm_snapshot(self.processes),
        }
        lost = {s: d["missing"] for s, d in report["delivery"].items() if d["missing"]}
        if lost:
            log(f"{self.name}: {name}: EVENTS MISSING (acked, not delivered within the timeout): {lost}")
        self.phases[name] = report
        return report

    # -- the run

    def run(self) -> dict[str, Any]:
        args = self.args
        outcome: dict[str, Any] = {}
        error = None
        try:
            self.start()
            self.run_phase("warmup", "1,000 events, one sender (consumer groups join)", timeout=args.drain_timeout,
                           events=1000)
            self.run_phase("sequential", f"one sequential sender, back to back, {args.duration:g} s",
                           timeout=args.drain_timeout, duration=args.duration)
            self.run_phase("paced", f"one sequential sender at {args.paced_rate:,.0f} events/s, {args.duration:g} s",
                           timeout=args.drain_timeout, duration=args.duration, rate=args.paced_rate)
            self.run_phase("saturation", f"{args.senders} concurrent senders, {args.events:,} events",
                           timeout=args.drain_timeout, profile=args.profile, senders=args.senders, events=args.events)
            self.phases["flood"] = self.run_flood(args.drain_timeout)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            log(f"{self.name}: FAILED: {error}")
        finally:
            self.series = self.chart_series()
            outcome = self.stop()
        result = {
            "label": MODE_LABELS[self.name].format(forwarders=args.kafka_forwarders),
            "processes": [p.name for p in (self.pipeline.siemgate if self.pipeline else [])],
            "phases": self.phases,
            "siemgate_exit": outcome,
            "error": error,
            "profile": self.profile,
            "loadavg_at_end": os.getloadavg(),
        }
        if self.readers is not None:
            result["foreign_ids"] = dict(self.readers.ledger.foreign)
            result["events_without_bench_sent_at"] = dict(self.readers.ledger.no_sent_at)
            result["elasticsearch_409_duplicates"] = next(
                (r.duplicates for r in self.readers.readers if r.name == "elasticsearch"), None)
        return result

    def collect(self, tags: list[str]) -> None:
        """Add these tags' arrivals to the chart's per-second series, then forget their events
        (the ledger holds one phase at a time)."""
        assert self.readers is not None
        ledger = self.readers.ledger
        origin = self.origin
        for tag in tags:
            for sink in lib.SINKS:
                counts = self.arrived_bins.setdefault(sink, {})
                for second, n in lib.bins(ledger.arrived[tag][sink].values(), origin, 1.0).items():
                    counts[second] = counts.get(second, 0) + n
                if tag == "probe":
                    continue
                pairs = ((t, lat * 1000) for t, lat, _ in lib.iter_pairs(ledger, tag, sink))
                xs, ys = lib.binned_percentile(pairs, origin, 1.0, 99.0)
                self.e2e_bins.setdefault(sink, []).extend(zip(xs, (round(y, 1) for y in ys), strict=True))
            if tag == "probe":
                sent = ledger.sent["probe"]
                maps = [ledger.arrived["probe"][s] for s in lib.SINKS]
                for key, moment in sent.items():
                    arrivals = [m.get(key) for m in maps]
                    if all(a is not None for a in arrivals):
                        last = max(a for a in arrivals if a is not None)
                        self.probe_points.append((round(moment - origin, 3), round((last - moment) * 1000, 1)))
        for tag in tags:
            ledger.drop(tag)

    def chart_series(self) -> dict[str, Any]:
        """Per-second series for the chart (and the JSON): acked events, arrivals per sink, ack
        latency p99, end-to-end p99 per sink (by arrival second), probe latencies, RSS per process."""
        if self.monitor is None:
            return {}
        origin = self.origin
        series: dict[str, Any] = {"acked_per_s": [], "arrived_per_s": {}, "ack_p99_ms": [], "e2e_p99_ms": {},
                                  "probe_e2e_ms": self.probe_points, "rss_mb": {}, "phases": {}}
        acked: dict[int, int] = {}
        ack_pairs = []
        for run in self.senders.values():
            for b in run.batches:
                if b["st"] == 200:
                    done = b["t"] + b["lat"]
                    second = int((done - origin) // 1)
                    acked[second] = acked.get(second, 0) + b["n"]
                    if run.tag != "probe":
                        ack_pairs.append((done, b["lat"] * 1000))
        series["acked_per_s"] = filled(acked)
        xs, ys = lib.binned_percentile(ack_pairs, origin, 1.0, 99.0)
        series["ack_p99_ms"] = list(zip(xs, (round(y, 2) for y in ys), strict=True))
        for sink in lib.SINKS:
            series["arrived_per_s"][sink] = filled(self.arrived_bins.get(sink, {}))
            series["e2e_p99_ms"][sink] = sorted(self.e2e_bins.get(sink, []))
        for t, sample in self.monitor.samples:
            for name, (rss, _) in sample.items():
                if name.startswith("sender") or name.startswith("ceiling"):
                    continue
                series["rss_mb"].setdefault(name, []).append((round(t - origin, 2), round(rss / 1024, 1)))
        series["phases"] = {name: p["window_seconds"] for name, p in self.phases.items()}
        return series


def filled(counts: dict[int, int]) -> list[tuple[int, int]]:
    """Per-second counts with the empty seconds in between as zeros."""
    if not counts:
        return []
    return [(second, counts.get(second, 0)) for second in range(min(counts), max(counts) + 1)]


def proc_hwm(proc: lib.Proc) -> float | None:
    status = lib.proc_status(proc.pid)
    return round(status["VmHWM"] / 1024, 1) if status.get("VmHWM") else None


def log_findings(proc: lib.Proc) -> dict[str, Any]:
    """ERROR/CRITICAL lines and tracebacks in a siemgate process's log (JSON lines on stderr)."""
    if proc.log_path is None or not proc.log_path.exists():
        return {}
    errors, tracebacks, warnings = [], 0, 0
    for line in proc.log_path.read_text(errors="replace").splitlines():
        if line.startswith("Traceback"):
            tracebacks += 1
        if '"level": "ERROR"' in line or '"level":"ERROR"' in line or '"CRITICAL"' in line:
            errors.append(line[:500])
        elif '"WARNING"' in line:
            warnings += 1
    return {"log_errors": len(errors), "log_error_lines": errors[:5], "log_warnings": warnings,
            "log_tracebacks": tracebacks}


# ------------------------------------------------------------------------------------------
# Report


def fmt(value: float | None, spec: str = ",.0f") -> str:
    return "-" if value is None else format(value, spec)


def summarize(document: dict[str, Any]) -> str:
    lines = []
    ceilings = document.get("ceilings") or {}
    ingest = ceilings.get("ingest") or {}
    seq_ceiling = (ingest.get("sequential") or {}).get("ack_latency_ms") or {}
    conc_ceiling = next((v for k, v in ingest.items() if k.startswith("concurrent")), None) or {}
    sinks = ceilings.get("sinks") or {}
    for mode, result in document["modes"].items():
        phases = result["phases"]
        lines.append(f"== {mode}: {result['label']}" + (f"  [ERROR: {result['error']}]" if result["error"] else ""))
        seq = phases.get("sequential")
        if seq:
            lat = seq["ack"]["ack_latency_ms"]
            lines.append(
                f"  ack latency, one sequential sender, back to back ({lat['count']} batches of 500): "
                f"p50 {fmt(lat['p50'], '.2f')} / p99 {fmt(lat['p99'], '.2f')} / p99.9 {fmt(lat['p99.9'], '.2f')} / "
                f"max {fmt(lat['max'], '.1f')} ms, {fmt(seq['ack']['acked_events_per_second'])} events/s acked"
                f"   [ceiling: p50 {fmt(seq_ceiling.get('p50'), '.2f')} / p99 {fmt(seq_ceiling.get('p99'), '.2f')} / "
                f"p99.9 {fmt(seq_ceiling.get('p99.9'), '.2f')} ms]")
        paced = phases.get("paced")
        if paced:
            lat = paced["ack"]["ack_latency_ms"]
            lines.append(f"  ack latency, paced sender: p50 {fmt(lat['p50'], '.2f')} / p99 {fmt(lat['p99'], '.2f')} / "
                         f"p99.9 {fmt(lat['p99.9'], '.2f')} ms")
        sat = phases.get("saturation")
        if sat:
            e2e = sat["end_to_end"]
            per_sink = ", ".join(f"{s} {fmt(v['events_per_second'])}" for s, v in e2e["per_sink"].items())
            ceil = ", ".join(f"{s} {fmt(v.get('events_per_second'))}" for s, v in sinks.items())
            lines.append(f"  end to end at saturation ({e2e['events']:,} events, {document['settings']['senders']} "
                         f"senders): {fmt(e2e.get('events_per_second'))} events/s in every sink "
                         f"({fmt(e2e.get('seconds'), '.1f')} s); acked at {fmt(sat['ack']['acked_events_per_second'])} "
                         f"events/s [ingest ceiling {fmt(conc_ceiling.get('acked_events_per_second'))}]")
            lines.append(f"    per sink events/s: {per_sink}   [sinks' own ceilings: {ceil}]")
        for name in ("paced", "saturation"):
            phase = phases.get(name)
            if not phase:
                continue
            lines.append(f"  end-to-end latency, {name} (ms, p50 / p99 / max):")
            rows = {**{s: v["latency_ms"] for s, v in phase["end_to_end"]["per_sink"].items()},
                    "all sinks": phase["end_to_end"]["all_sinks_latency_ms"]}
            for sink, by_sev in rows.items():
                cells = "  ".join(
                    f"{sev} {fmt(d['p50'], '.0f')}/{fmt(d['p99'], '.0f')}/{fmt(d['max'], '.0f')}"
                    for sev, d in by_sev.items() if sev != "all")
                lines.append(f"    {sink:<14} {cells}")
        flood = phases.get("flood")
        if flood and flood.get("probe"):
            probe = flood["probe"]
            d = probe["latency_ms_during_flood"]
            cells = "  ".join(f"{s} {fmt(v['p50'], '.0f')}/{fmt(v['p99'], '.0f')}/{fmt(v['max'], '.0f')}"
                              for s, v in d.items())
            target = probe["target_high_p99_under_2s"]
            lines.append(f"  high events during a {flood['ack']['acked_events'] or 0:,}-event low flood "
                         f"({probe['events_sent_during_flood']} high events; ms p50/p99/max): {cells}")
            lines.append(f"    target high p99 < 2 s (all sinks): {'met' if target['met'] else 'NOT MET'} "
                         f"({fmt(target['value_ms'], ',.0f')} ms); the flood took "
                         f"{fmt(flood['end_to_end'].get('seconds'), '.1f')} s to reach every sink")
        if sat:
            cpu = ", ".join(f"{k.split('#')[0]} {v:.3f}" for k, v in sat["cpu_seconds_per_10k_events"].items())
            lines.append(f"  CPU s per 10,000 events (saturation): {cpu}; siemgate total "
                         f"{fmt(sat['siemgate_cpu_seconds_per_10k_events'], '.3f')}; machine busy "
                         f"{sat['machine_cpu_busy']:.0%}")
            hwm = sat["vmhwm_mb_at_end"]
            rss = ", ".join(f"{k.split('#')[0]} {v:.0f}" for k, v in hwm.items() if not k.startswith("sender"))
            over = [k.split("#")[0] for k, v in hwm.items() if k.startswith("siemgate") and v >= RSS_TARGET_MB]
            lines.append(f"  peak RSS MB (VmHWM after saturation): {rss}")
            lines.append(f"    target siemgate RSS < {RSS_TARGET_MB:.0f} MB at saturation: "
                         + ("met" if not over else f"NOT MET ({', '.join(over)})"))
        lost = {p: {s: d["missing"] for s, d in ph["delivery"].items() if d["missing"]} for p, ph in phases.items()}
        lost = {p: v for p, v in lost.items() if v}
        dups = {p: {s: d["duplicates"] for s, d in ph["delivery"].items() if d["duplicates"]} for p, ph in
                phases.items()}
        dups = {p: v for p, v in dups.items() if v}
        non200 = {p: ph["ack"]["non_200"] for p, ph in phases.items() if ph["ack"]["non_200"]}
        lines.append(f"  delivery: lost {lost or 0}; duplicates {dups or 0}; non-200 answers {non200 or 0}; "
                     f"siemgate exits {({k: v['exit_code'] for k, v in result['siemgate_exit'].items()})}, "
                     f"ERROR log lines {sum(v.get('log_errors', 0) for v in result['siemgate_exit'].values())}")
        if result.get("profile"):
            for proc, prof in result["profile"].items():
                if "top_self" in prof:
                    top = ", ".join(f"{r['function']} {r['percent']}%" for r in prof["top_self"][:6])
                    areas = ", ".join(f"{r['area']} {r['percent']}%" for r in prof["self_by_area"][:6])
                    lines.append(f"  profile {proc}: {prof['python_samples']} Python samples "
                                 f"(+{prof['event_loop_c_samples']} in the event loop's C code, "
                                 f"{prof['idle_executor_samples']} idle executor); by "
                                 f"self time: {top}; by area: {areas}")
        lines.append("")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------
# Chart


def gapped(points: list[tuple[float, float]], gap: float = 1.5) -> tuple[list[float], list[float]]:
    """xs, ys with a NaN wherever consecutive points are more than `gap` apart (no line drawn
    across seconds without data, e.g. between phases)."""
    xs: list[float] = []
    ys: list[float] = []
    for x, y in sorted(points):
        if xs and x - xs[-1] > gap:
            xs.append(xs[-1] + gap / 2)
            ys.append(float("nan"))
        xs.append(x)
        ys.append(y)
    return xs, ys


def chart(document: dict[str, Any], series: dict[str, dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = list(series)
    if not modes:
        return
    fig, axes = plt.subplots(3, len(modes), figsize=(9 * len(modes), 12), squeeze=False, sharex="col")
    colors = {"file": "tab:green", "syslog": "tab:orange", "splunk-hec": "tab:purple", "elasticsearch": "tab:blue"}
    for column, mode in enumerate(modes):
        s = series[mode]
        top, middle, bottom = axes[0][column], axes[1][column], axes[2][column]
        if s.get("acked_per_s"):
            xs, ys = zip(*s["acked_per_s"], strict=True)
            top.plot(xs, ys, color="black", lw=1.2, label="acked (senders)")
        for sink, points in s.get("arrived_per_s", {}).items():
            if points:
                xs, ys = zip(*points, strict=True)
                top.plot(xs, ys, lw=1, color=colors.get(sink), label=f"arrived: {sink}")
        top.set_ylabel("events/s (1 s bins)")
        top.set_title(f"{mode}: {document['modes'][mode]['label']}", fontsize=9)
        if s.get("ack_p99_ms"):
            xs, ys = gapped(s["ack_p99_ms"])
            middle.plot(xs, ys, color="black", lw=1, label="ack latency p99 (per s)")
        for sink, points in s.get("e2e_p99_ms", {}).items():
            if points:
                xs, ys = gapped(points)
                middle.plot(xs, ys, lw=1, color=colors.get(sink), label=f"end to end p99: {sink}")
        if s.get("probe_e2e_ms"):
            xs, ys = zip(*s["probe_e2e_ms"], strict=True)
            middle.scatter(xs, ys, s=4, color="red", label="high events during the flood (all sinks)", zorder=3)
        middle.axhline(HIGH_P99_TARGET_S * 1000, color="red", ls=":", lw=0.8)
        middle.set_yscale("log")
        middle.set_ylabel("latency ms (log)")
        for name, points in s.get("rss_mb", {}).items():
            if points:
                xs, ys = zip(*points, strict=True)
                bottom.plot(xs, ys, lw=1, label=name.split("#")[0])
        bottom.axhline(RSS_TARGET_MB, color="red", ls=":", lw=0.8)
        bottom.set_ylabel("RSS MB")
        bottom.set_xlabel("seconds since the mode started")
        for ax in (top, middle, bottom):
            for index, (name, (start, end)) in enumerate(s.get("phases", {}).items()):
                ax.axvspan(start, end, color="0.9" if index % 2 else "0.96", zorder=0)
                if ax is top:
                    ax.text(start, 1.0, name, transform=ax.get_xaxis_transform(), fontsize=7, va="bottom")
            ax.legend(fontsize=6, loc="upper right")
            ax.grid(alpha=0.3)
    fig.suptitle(f"siemgate pipeline benchmark {document['timestamp']}, {document['machine']['nproc']} CPUs\n"
                 f"{document['command']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--modes", default="kafka,embedded", help="kafka,embedded (default both)")
    parser.add_argument("--events", type=int, default=100_000, help="events of the saturation phase (and of the "
                        "flood unless --flood-events) (default 100,000)")
    parser.add_argument("--flood-events", type=int, default=None, help="low events of the flood (default --events)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of the sequential and the paced "
                        "phases (default 10)")
    parser.add_argument("--senders", type=int, default=4, help="concurrent senders at saturation and in the flood "
                        "(default 4)")
    parser.add_argument("--paced-rate", type=float, default=2000.0, help="events/s of the paced phase (default 2000)")
    parser.add_argument("--probe-batch", type=int, default=10, help="high events per probe batch (default 10)")
    parser.add_argument("--probe-interval", type=float, default=0.2, help="seconds between probe batches (0.2)")
    parser.add_argument("--kafka-forwarders", choices=("per-sink", "one"), default="per-sink",
                        help="Kafka mode: one `siemgate forward` per sink (default), or one for all four")
    parser.add_argument("--hec-ack", action=argparse.BooleanOptionalAction, default=True,
                        help="the HEC sink with indexer acknowledgement (default on, as in production)")
    parser.add_argument("--ceiling-events", type=int, default=None,
                        help="events per sink ceiling (default min(--events, 50,000))")
    parser.add_argument("--skip-ceilings", action="store_true")
    parser.add_argument("--drain-timeout", type=float, default=600.0,
                        help="seconds a phase may take to reach every sink after its last ack (default 600)")
    parser.add_argument("--profile", action="store_true", help="py-spy on every siemgate process during saturation "
                        "(perturbs that phase's figures)")
    parser.add_argument("--results-dir", type=Path, default=BENCH_DIR / "results")
    parser.add_argument("--keep-work", type=Path, help="copy the work directory (logs, configs) here at the end")
    args = parser.parse_args(argv)
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not args.modes or any(m not in ("kafka", "embedded") for m in args.modes):
        parser.error("--modes: a comma-separated subset of kafka,embedded")
    if args.flood_events is None:
        args.flood_events = args.events
    if args.ceiling_events is None:
        args.ceiling_events = min(args.events, 50_000)
    return args


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    args.stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    args.results_dir.mkdir(parents=True, exist_ok=True)
    processes = lib.Processes()
    document: dict[str, Any] = {
        "benchmark": "pipeline",
        "timestamp": args.stamp,
        "command": " ".join(["bench/pipeline.py", *(argv if argv is not None else sys.argv[1:])]),
        "machine": lib.machine_summary(),
        "versions": lib.versions(),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "targets": {"high_e2e_p99_during_low_flood_seconds": HIGH_P99_TARGET_S, "siemgate_rss_mb": RSS_TARGET_MB},
        "ceilings": {},
        "modes": {},
        "notes": [
            "figures from a shared 2-core VM unless said otherwise: read them with the machine_cpu_busy fields",
            "arrival times: rsyslogd's timegenerated; the stand-ins' indexing time; the file sink's line seen by a "
            "10 ms tail (upper bound)",
            "the HEC and Elasticsearch stand-ins are Python processes: the HTTP sinks' rates are bounded by them "
            "(see ceilings.sinks)",
        ],
    }
    series: dict[str, dict[str, Any]] = {}
    exit_code = 0
    with tempfile.TemporaryDirectory(prefix="siemgate-pipeline-") as tmp:
        work = Path(tmp)
        try:
            if not args.skip_ceilings:
                log("ceilings: bench/ceiling.py under the same senders")
                document["ceilings"]["ingest"] = lib.measure_ingest_ceiling(processes, work, duration=args.duration,
                                                                           senders=args.senders)
                log(f"ceilings: each sink's own intake, {args.ceiling_events:,} events")
                document["ceilings"]["sinks"] = lib.measure_sink_ceilings(processes, work, args.ceiling_events,
                                                                         hec_ack=args.hec_ack)
            for name in args.modes:
                mode = Mode(name, args, processes, work)
                document["modes"][name] = mode.run()
                series[name] = mode.series
                if document["modes"][name]["error"]:
                    exit_code = 1
                del mode
        except KeyboardInterrupt:
            log("interrupted: stopping every process")
            exit_code = 130
        finally:
            processes.stop_all()
            if args.keep_work:
                shutil.copytree(work, args.keep_work, dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns("*.db*", "*.ndjson", "received.log"))
    document["timeseries"] = series
    text = json.dumps(document, indent=1, default=str)
    out = args.results_dir / f"pipeline-{args.stamp}.json"
    out.write_text(text + "\n")
    (args.results_dir / "pipeline-latest.json").write_text(text + "\n")
    png = args.results_dir / f"pipeline-{args.stamp}.png"
    try:
        chart(document, series, png)
    except ImportError:
        log("matplotlib is not installed (pip install -e '.[bench]'): no chart")
    except Exception as exc:  # the figures are written already
        log(f"the chart failed: {exc!r}")
    print()
    print(f"siemgate pipeline benchmark {args.stamp}: {document['machine']['nproc']} CPUs "
          f"({document['machine']['cpu_model']}), load average at start {document['machine']['loadavg_at_start']}")
    ingest = document["ceilings"].get("ingest")
    if ingest:
        lat = ingest["sequential"]["ack_latency_ms"]
        conc = next(v for k, v in ingest.items() if k.startswith("concurrent"))
        print(f"ceiling (bare endpoint, same senders): sequential p50 {fmt(lat['p50'], '.2f')} / p99 "
              f"{fmt(lat['p99'], '.2f')} / p99.9 {fmt(lat['p99.9'], '.2f')} ms; {args.senders} senders "
              f"{fmt(conc['acked_events_per_second'])} events/s")
    if document["ceilings"].get("sinks"):
        print("sinks' own intake (events/s): " + ", ".join(
            f"{s} {fmt(v.get('events_per_second'))}" for s, v in document["ceilings"]["sinks"].items()))
    print()
    print(summarize(document))
    log(f"results: {out.relative_to(lib.ROOT) if out.is_relative_to(lib.ROOT) else out}, pipeline-latest.json"
        + (f", {png.name}" if png.exists() else " (no chart)"))
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
