"""The forwarding benchmark: events/s of one `siemgate forward` process draining a pre-filled
topic into each sink, side by side in one run with what bounds or rivals it.

syslog (TCP, RFC 5424, octet counting), next to the peer a SOC would otherwise use, rsyslog's
own Kafka consumer (imkafka -> omfwd), on the same topic and to the same kind of counting
receiver; and syslog over RELP (`relp://`, window 128) into a counting RELP receiver in this
process that answers every `syslog` command `rsp 200 OK` as soon as it parsed it (target:
>= 0.7 of the TCP rate of the same run), next to rsyslog's imkafka -> omrelp into the same
receiver (`--skip-relp`: neither):

    Tansu (in memory) <- relay (librdkafka needs it) <- siemgate forward --TCP, RFC 5424,
                                                        octet counting--> receiver (this process)
                                                     <- rsyslogd imkafka -> omfwd --same--> receiver

splunk_hec (gzip; and with `ack: true`) and elasticsearch (gzip, `create` into a data stream),
each into a protocol stand-in in its own process, next to the stand-in's own ceiling (a
minimal client blasting the same events, pre-built into the sink's own gzip'd requests) and,
for Elasticsearch, next to rsyslog's imkafka -> omelasticsearch on the same topic and the same
kind of stand-in. sentinel (gzip, ASIM rows) and sentinel_ocsf (gzip, `event_format: ocsf`)
likewise: the Logs Ingestion API stand-in (with its Entra ID token endpoint, the DCR declared
by deploy/azure/sentinel.json) in its own process, next to its ceiling. See
bench/forward_http.py for how those are timed and checked.

The records follow the siemgate contract (`bench.forward_peer.prefill`); they sit on
`<prefix>.events.low`, whatever their severity, so that every consumer reads one topic. The
siemgate syslog forwarder uses its RFC 5424 format with facility local0, which the peer's
`siemgate` configuration mirrors (see bench/forward_peer.py). Timing runs from the first
event received to the last expected one: consumer-group joins come before it. CPU is the
forwarder's (or rsyslogd's) over the same window. After each run every id is checked to have
arrived (syslog: with the PRI its severity gives).

Targets: syslog 50,000 events/s per process and at least the peer's rate; splunk_hec and
elasticsearch (issue 5) and sentinel (issue 19) 30,000 events/s per process each, and elasticsearch at least the
peer's rate. The HTTP sinks' figures are bounded by what a Python stand-in can take: read
them next to its ceiling (the "of ceiling" column).

    .venv/bin/python bench/forward.py                 # 300,000 records, every sink
    .venv/bin/python bench/forward.py --events 100000 --skip-peer
    .venv/bin/python bench/forward.py --sinks splunk_hec,elasticsearch --events 30000
    .venv/bin/python bench/forward.py --sinks sentinel,sentinel_ocsf --events 30000
    .venv/bin/python bench/forward.py --sinks elasticsearch --profile bench/results/p.collapsed.txt

Needs `apt-get install -y rsyslog rsyslog-kafka rsyslog-elasticsearch rsyslog-relp` for the peers. Results:
a table on stdout, bench/results/forward-<timestamp>.json and forward-latest.json. Not run
in CI.
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

import forward_http  # noqa: E402
from forward_peer import (  # noqa: E402
    Prefilled,
    Receiver,
    Reception,
    RelpReceiver,
    broker_for_librdkafka,
    check_received,
    check_rsyslog,
    measure_rsyslog_async,
    prefill_async,
)

TARGET_EVENTS_PER_SECOND = 50_000  # syslog
RELP_TARGET_RATIO = 0.7  # syslog over RELP, of the TCP rate in the same run
SINKS = ("syslog", "splunk_hec", "elasticsearch", "sentinel", "sentinel_ocsf")


def log(message: str) -> None:
    print(f"[forward {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def forward_config(work: Path, bootstrap: str, prefix: str, port: int, batch: int, transport: str = "tcp") -> Path:
    path = work / f"siemgate-forward-{transport}.yaml"
    path.write_text(f"""
log_level: warning
bus:
  type: kafka
  kafka: {{bootstrap_servers: "{bootstrap}", topic_prefix: {prefix}, idempotence: false,
          topics: {{partitions: 1}}}}
# Tansu holds a fetch for its whole max wait even when records are there (Kafka does not).
forward: {{listen: {{host: 127.0.0.1, port: 0}}, fetch_max_wait_ms: 20}}
sinks:
  - name: {"soc" if transport == "tcp" else "soc-" + transport}
    type: syslog
    address: {transport}://127.0.0.1:{port}
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
                           timeout: float, extra_pids: dict[str, int], profile: Path | None = None,
                           transport: str = "tcp") -> dict[str, Any]:
    reception = Reception(expected=prefilled.count, pids=dict(extra_pids))
    loop = asyncio.get_running_loop()
    protocol = RelpReceiver if transport == "relp" else Receiver
    server = await loop.create_server(lambda: protocol(reception), "127.0.0.1", 0)
    port = int(server.sockets[0].getsockname()[1])
    config = forward_config(work, bootstrap, prefix, port, batch, transport)
    log_path = work / f"siemgate-forward-{transport}.log"
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
        "transport": transport,
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
        log(f"prefilled in {prefilled.seconds:.1f} s")
        siemgate: dict[str, Any] | None = None
        siemgate_relp: dict[str, Any] | None = None
        peer: dict[str, Any] | None = None
        peer_relp: dict[str, Any] | None = None
        priority = None
        if "syslog" in args.sinks:
            log("syslog: measuring siemgate forward")
            siemgate = await measure_siemgate(prefilled, bootstrap=bootstrap, prefix=prefix, work=work,
                                              batch=args.batch, timeout=args.timeout, extra_pids=pids,
                                              profile=args.profile)
            if not args.skip_relp:
                log("syslog: measuring siemgate forward over RELP")
                # Sink soc-relp: a consumer group of its own, reading every record from the start.
                siemgate_relp = await measure_siemgate(prefilled, bootstrap=bootstrap, prefix=prefix, work=work,
                                                       batch=args.batch, timeout=args.timeout, extra_pids=pids,
                                                       transport="relp")
            if not args.skip_peer:
                missing = check_rsyslog()
                if missing:
                    log(f"peer skipped: {missing}")
                else:
                    log("syslog: measuring the peer: rsyslog imkafka -> omfwd")
                    result = await measure_rsyslog_async(prefilled, mode="siemgate", bootstrap=bootstrap,
                                                         work=work, timeout=args.timeout, extra_pids=pids)
                    peer = asdict(result)
                    peer.pop("config", None)
                    if not args.skip_relp:
                        log("syslog: measuring the RELP peer: rsyslog imkafka -> omrelp")
                        result = await measure_rsyslog_async(prefilled, mode="siemgate", bootstrap=bootstrap,
                                                             work=work, timeout=args.timeout, extra_pids=pids,
                                                             transport="relp")
                        peer_relp = asdict(result)
                        peer_relp.pop("config", None)
            if args.priority_backlog:
                log(f"priority: {args.priority_backlog:,} low events queued, then 100 high ones")
                priority = await measure_priority(bootstrap, work, backlog=args.priority_backlog, probes=100,
                                                  partitions=args.partitions, batch=args.batch,
                                                  timeout=args.timeout)
        http_sinks: dict[str, Any] = {}
        kinds = [kind for kind in args.sinks if kind != "syslog"]
        if kinds:
            try:
                http_sinks = await asyncio.to_thread(
                    forward_http.measure_all, kinds, prefilled, bootstrap=bootstrap, prefix=prefix, work=work,
                    batch=args.batch, timeout=args.timeout, extra_pids=pids, seed=args.seed,
                    skip_peer=args.skip_peer, skip_ceiling=args.skip_ceiling, profile=args.profile,
                    rsyslog_workers=args.rsyslog_workers)
            except BaseException:
                forward_http.STOP.set()  # the thread stops its processes and returns
                raise
        return {"prefill": prefilled.summary(), "sinks": args.sinks, "siemgate": siemgate,
                "siemgate_relp": siemgate_relp, "peer": peer, "peer_relp": peer_relp,
                "priority": priority, "http_sinks": http_sinks}


def syslog_table(result: dict[str, Any]) -> str:
    rows = [("siemgate forward (1 process)", result["siemgate"]["events_per_second"],
             result["siemgate"]["cpu_seconds"].get("siemgate", 0.0), result["siemgate"]["elapsed_seconds"],
             result["siemgate"]["check"]["all_arrived"], result["siemgate"]["check"]["duplicates"])]
    relp = result.get("siemgate_relp")
    if relp:
        rows.append(("siemgate forward, RELP", relp["events_per_second"], relp["cpu_seconds"].get("siemgate", 0.0),
                     relp["elapsed_seconds"], relp["check"]["all_arrived"], relp["check"]["duplicates"]))
    if result["peer"]:
        peer = result["peer"]
        rows.append(("rsyslog imkafka -> omfwd", peer["events_per_second"], peer["rsyslog_cpu_seconds"],
                     peer["elapsed_seconds"], peer["check"]["all_arrived"], peer["check"]["duplicates"]))
    if result.get("peer_relp"):
        peer = result["peer_relp"]
        rows.append(("rsyslog imkafka -> omrelp", peer["events_per_second"], peer["rsyslog_cpu_seconds"],
                     peer["elapsed_seconds"], peer["check"]["all_arrived"], peer["check"]["duplicates"]))
    header = f"{'syslog forwarder':<30} {'events/s':>10} {'CPU s':>7} {'elapsed s':>10}  all arrived  duplicates"
    lines = [header, "-" * len(header)]
    for name, rate, cpu, elapsed, ok, dups in rows:
        lines.append(f"{name:<30} {rate:>10,.0f} {cpu:>7.2f} {elapsed:>10.2f}  {'yes' if ok else 'NO':<11}  {dups}")
    if result["peer"] and result["peer"]["events_per_second"]:
        ratio = result["siemgate"]["events_per_second"] / result["peer"]["events_per_second"]
        lines.append(f"\nsiemgate/peer: {ratio:.2f}x")
    if relp and result["siemgate"]["events_per_second"]:
        ratio = relp["events_per_second"] / result["siemgate"]["events_per_second"]
        met = "MET" if ratio >= RELP_TARGET_RATIO else "NOT MET"
        lines.append(f"RELP/TCP: {ratio:.2f} (target >= {RELP_TARGET_RATIO}: {met})")
    if relp and result.get("peer_relp") and result["peer_relp"]["events_per_second"]:
        ratio = relp["events_per_second"] / result["peer_relp"]["events_per_second"]
        lines.append(f"siemgate RELP/omrelp: {ratio:.2f}x")
    if result.get("priority"):
        p = result["priority"]
        lines.append(f"\npriority: {p['high_probes']} high events posted behind {p['backlog_low_events']:,} queued low "
                     f"ones: delivered after {p['low_delivered_after_probes_before_last_high']:,} more low events; "
                     f"latency p50 {p['high_latency_ms']['p50']} ms, max {p['high_latency_ms']['max']} ms")
    rate = result["siemgate"]["events_per_second"]
    lines.append(f"syslog target >= {TARGET_EVENTS_PER_SECOND:,} events/s per process: "
                 f"{'MET' if rate >= TARGET_EVENTS_PER_SECOND else 'NOT MET'} ({rate:,.0f})")
    return "\n".join(lines)


def http_table(http_sinks: dict[str, Any]) -> str:
    header = (f"{'sink':<34} {'measured':<36} {'events/s':>9} {'of ceiling':>10} {'CPU s':>6} {'us/event':>8} "
              f"{'stand-in cores':>14} {'elapsed s':>9}  all arrived  dups")
    lines = [header, "-" * len(header)]
    for row in http_sinks.values():
        ceiling = row.get("ceiling")
        label = row["label"]
        if ceiling:
            client = ceiling["client"]
            lines.append(f"{label:<34} {'stand-in ceiling (minimal client)':<36} {ceiling['events_per_second']:>9,.0f} "
                         f"{'':>10} {ceiling['cpu_seconds']['standin']:>6.2f} "
                         f"{_num(ceiling['standin_cpu_us_per_event'], '8.1f')} "
                         f"{_num(ceiling['cores']['standin'], '14.2f')} "
                         f"{ceiling['elapsed_seconds']:>9.2f}  {'yes' if ceiling['ok'] else 'NO':<11}  -"
                         + ("" if ceiling["ok"] else f"  ({client['bad_answers']} bad: {client['first_bad_answer']})"))
            label = ""
        for key, name in (("siemgate", "siemgate forward (1 process)"), ("peer", "rsyslog imkafka -> omelasticsearch")):
            measured = row.get(key)
            if not measured:
                continue
            main = "siemgate" if key == "siemgate" else "rsyslogd"
            ratio = (measured["events_per_second"] / ceiling["events_per_second"]
                     if ceiling and ceiling["events_per_second"] else None)
            check = measured["check"]
            lines.append(f"{label:<34} {name:<36} {measured['events_per_second']:>9,.0f} "
                         f"{f'{ratio:.0%}' if ratio is not None else '-':>10} "
                         f"{measured['cpu_seconds'].get(main, 0.0):>6.2f} {_num(measured['cpu_us_per_event'], '8.1f')} "
                         f"{_num(measured['cores'].get('standin'), '14.2f')} {measured['elapsed_seconds']:>9.2f}  "
                         f"{'yes' if check['all_arrived'] else 'NO':<11}  {check['duplicates']}"
                         + ("" if check["all_arrived"] else f"  ({check['missing']} missing, {check['unexpected']} "
                                                            "unexpected)"))
            label = ""
    lines.append("")
    for case, row in http_sinks.items():
        t = row["targets"]
        per = t["per_process"]
        lines.append(f"{case}: >= {per['target']:,} events/s per process: {'MET' if per['met'] else 'NOT MET'} "
                     f"({per['measured']:,.0f})")
        if "peer" in t:
            peer = t["peer"]
            ratio = f"{peer['ratio']:.2f}x" if peer["ratio"] is not None else "n/a"
            lines.append(f"{case}: >= the peer's rate: {'MET' if peer['met'] else 'NOT MET'} "
                         f"({per['measured']:,.0f} vs {peer['peer']:,.0f}: {ratio})")
    return "\n".join(lines)


def _num(value: float | None, spec: str) -> str:
    width = int(spec.split(".")[0])
    return f"{value:{spec}}" if value is not None else f"{'-':>{width}}"


def profile_summaries(result: dict[str, Any], top: int = 12) -> str:
    lines = []
    for case, row in result.get("http_sinks", {}).items():
        profile = row["siemgate"].get("profile")
        if not profile:
            continue
        lines.append(f"\nprofile of siemgate forward, {case} ({profile['samples']} samples, idle excluded): "
                     f"{profile['file']}")
        lines.append("  self time by area:")
        lines += [f"    {r['percent']:5.1f}%  {r['area']}" for r in profile["self_by_area"][:top]]
        lines.append("  top functions by self time:")
        lines += [f"    {r['percent']:5.1f}%  {r['function']}" for r in profile["top_self"][:top]]
        lines.append("  functions by inclusive time (entry frames left out):")
        lines += [f"    {r['percent']:5.1f}%  {r['function']}" for r in profile["top_inclusive"][:top]]
    return "\n".join(lines)


def table(result: dict[str, Any]) -> str:
    parts = []
    if result.get("profiled"):
        parts.append("PROFILED RUN (py-spy attached to the forwarder): its figures do not count")
    if result.get("siemgate"):
        parts.append(syslog_table(result))
    if result.get("http_sinks"):
        parts.append(http_table(result["http_sinks"]))
    summaries = profile_summaries(result)
    if summaries:
        parts.append(summaries)
    return "\n\n".join(parts)


def all_arrived(result: dict[str, Any]) -> bool:
    ok = result["siemgate"] is None or result["siemgate"]["check"]["all_arrived"]
    ok = ok and (result.get("siemgate_relp") is None or result["siemgate_relp"]["check"]["all_arrived"])
    ok = ok and (result.get("peer_relp") is None or result["peer_relp"]["check"]["all_arrived"])
    for row in result.get("http_sinks", {}).values():
        ok = ok and row["siemgate"]["check"]["all_arrived"]
        ok = ok and (row.get("ceiling") is None or row["ceiling"]["ok"])
        ok = ok and (row.get("peer") is None or row["peer"]["check"]["all_arrived"])
    return ok


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--batch", type=int, default=500, help="the sink's batch.max_events (default 500)")
    parser.add_argument("--partitions", type=int, default=6,
                        help="partitions of the topic (default 6, siemgate's default topic layout)")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--sinks", default=",".join(SINKS),
                        help="sinks to measure, comma-separated: syslog, splunk_hec, elasticsearch, sentinel, "
                             "sentinel_ocsf (default all)")
    parser.add_argument("--skip-peer", action="store_true", help="no rsyslog peer (syslog and elasticsearch)")
    parser.add_argument("--skip-relp", action="store_true", help="no syslog-over-RELP line")
    parser.add_argument("--skip-ceiling", action="store_true", help="no stand-in ceiling (HTTP sinks)")
    parser.add_argument("--rsyslog-workers", type=int, default=None,
                        help="the elasticsearch peer's main-queue worker threads (default: rsyslog's own, one)")
    parser.add_argument("--priority-backlog", type=int, default=200_000,
                        help="low events queued before 100 high ones in the priority run (syslog; 0: skip it)")
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile", type=Path, metavar="FILE",
                        help="sample the forwarder with py-spy, collapsed stacks to FILE (the HTTP sinks': FILE "
                             "with the case's name before its suffixes); the figures then do not count")
    parser.add_argument("--results-dir", type=Path, default=BENCH_DIR / "results")
    args = parser.parse_args(argv)
    args.sinks = [sink.strip() for sink in args.sinks.split(",") if sink.strip()]
    for sink in args.sinks:
        if sink not in SINKS:
            parser.error(f"--sinks: {sink!r} is not one of {', '.join(SINKS)}")
    if not args.sinks:
        parser.error("--sinks: name at least one")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    signal.signal(signal.SIGTERM, _interrupt)  # clean up (stop every process started) as on Ctrl-C
    load_at_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="siemgate-forward-") as tmp:
        result = asyncio.run(run(args, Path(tmp)))
    result.update({
        "benchmark": "forward",
        "timestamp": stamp,
        "command": "python bench/forward.py " + " ".join(argv or sys.argv[1:]),
        "machine": {"nproc": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release(),
                    "loadavg_at_start": load_at_start, "loadavg_at_end": os.getloadavg()},
        "target_events_per_second": TARGET_EVENTS_PER_SECOND,
        "http_target_events_per_second": forward_http.TARGET_EVENTS_PER_SECOND,
        "profiled": args.profile is not None,
    })
    print(table(result))
    args.results_dir.mkdir(parents=True, exist_ok=True)
    for name in (f"forward-{stamp}.json", "forward-latest.json"):
        (args.results_dir / name).write_text(json.dumps(result, indent=2, default=str) + "\n")
    log(f"results written to {args.results_dir}/forward-{stamp}.json")
    return 0 if all_arrived(result) else 1


if __name__ == "__main__":
    sys.exit(main())
