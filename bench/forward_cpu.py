"""The forwarder's CPU per event by stage, in one process: no Kafka, no HTTP.

    python bench/forward_cpu.py [--events 2000] [--batch 500] [--repeat 5] [--corpus bench|fidelity|both]

The records are those `bench/forward.py` puts on its topic (`forward_peer.iter_records`:
`siemgate.simulate`'s realistic AppSec events, ~1,050 bytes a record), and, with `--corpus
fidelity` or `both`, the hostile vendor events of tests/fidelity (odd times, lone surrogates,
huge numbers, deep nesting, ...) repeated to `--events`. Per stage, in µs per event (the best
of `--repeat` runs, the least disturbed by other processes):

- `normalize`: `Normalizer.normalize` of each record value (what `SinkForwarder._prepare` does);
- per sink format, `body`: the sink's request bodies of the normalized batches (`SplunkHecSink`
  and `SentinelSink` `bodies`, `ElasticsearchSink`'s bulk lines, a syslog encoder's messages),
  cut in `--batch`-event batches as the runtime hands them over; `gzip`: those bodies gzip'd
  (level 1, as `HttpEndpoint` sends them).

The sum of a sink's stages is the forwarder's own per-event work; what `bench/forward.py`
measures on top is aiokafka's fetch and record unpacking, asyncio, httpx and the commits.
Compare two commits by running this file against each, alternately, on the same machine.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
for _path in (str(ROOT), str(BENCH_DIR)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from forward_peer import iter_records  # noqa: E402

from siemgate.forwarders.normalize import NormalizedEvent, Normalizer  # noqa: E402
from siemgate.forwarders.sinks.elasticsearch import ElasticsearchSink  # noqa: E402
from siemgate.forwarders.sinks.http import gzip_bytes  # noqa: E402
from siemgate.forwarders.sinks.registry import build_settings, create_sink  # noqa: E402
from siemgate.forwarders.sinks.sentinel import SentinelSink  # noqa: E402
from siemgate.forwarders.sinks.splunk_hec import SplunkHecSink  # noqa: E402
from siemgate.forwarders.sinks.syslog import build_encoder  # noqa: E402
from siemgate.gc_tuning import tune_gc  # noqa: E402

SENTINEL = {"endpoint": "https://dce.example", "dcr_immutable_id": "dcr-0123456789abcdef", "tenant_id": "t",
            "client_id": "c", "client_secret": "s"}
# The sinks measured: (name, sink type, settings).
SINKS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("splunk_hec cim", "splunk_hec", {"url": "http://127.0.0.1:8088", "token": "x"}),
    ("splunk_hec ocsf", "splunk_hec", {"url": "http://127.0.0.1:8088", "token": "x", "event_format": "ocsf"}),
    ("sentinel asim", "sentinel", SENTINEL),
    ("sentinel ocsf", "sentinel", {**SENTINEL, "event_format": "ocsf"}),
    ("elasticsearch", "elasticsearch", {"url": "http://127.0.0.1:9200"}),
    ("syslog rfc5424", "syslog", {"address": "tcp://127.0.0.1:514"}),
)


def bench_values(count: int) -> list[bytes]:
    return [record.value for record, _ in iter_records(count)]


def fidelity_values(count: int) -> list[bytes]:
    sys.path.insert(0, str(ROOT))
    from tests.fidelity.corpus import records  # the ingest's parser over the hostile corpus

    corpus = [record.value for record in records()]
    return [corpus[i % len(corpus)] for i in range(count)]


def best_us_per_event(run: Callable[[], object], events: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        best = min(best, (time.perf_counter() - start) / events)
    return best * 1e6


def batches(events: Sequence[NormalizedEvent], size: int) -> list[Sequence[NormalizedEvent]]:
    return [events[i:i + size] for i in range(0, len(events), size)]


def body_builder(kind: str, settings: dict[str, Any]) -> Callable[[Sequence[NormalizedEvent]], list[bytes]]:
    built = build_settings(kind, {"name": "bench", **settings}, {}, "sinks[0]")
    sink = create_sink(built)
    if isinstance(sink, SplunkHecSink | SentinelSink):
        return sink.bodies
    if isinstance(sink, ElasticsearchSink):
        es = sink

        def bulk(events: Sequence[NormalizedEvent]) -> list[bytes]:
            return [b"".join(es.encode(e, "2026-12-07T15:00:01.000Z") for e in events)]

        return bulk
    encode = build_encoder(built, "rfc5424")  # type: ignore[arg-type]
    return lambda events: [b"".join(encode(e) + b"\n" for e in events)]


def build_all(build: Callable[[Sequence[NormalizedEvent]], list[bytes]],
              parts: list[Sequence[NormalizedEvent]]) -> list[list[bytes]]:
    return [build(part) for part in parts]


def gzip_all(bodies: list[bytes]) -> list[bytes]:
    return [gzip_bytes(body) for body in bodies]


def measure(name: str, values: list[bytes], batch: int, repeat: int) -> None:
    normalizer = Normalizer()
    count = len(values)
    normalized = [normalizer.normalize(v) for v in values]
    size = sum(map(len, values)) / count
    print(f"{name}: {count} records of {size:.0f} bytes on average, batches of {batch}, best of {repeat}")
    normalize_us = best_us_per_event(lambda: [normalizer.normalize(v) for v in values], count, repeat)
    print(f"  {'normalize':<18} {normalize_us:7.2f} µs/event")
    parts = batches(normalized, batch)
    for label, kind, settings in SINKS:
        build = body_builder(kind, settings)
        bodies = [body for part in parts for body in build(part)]
        body_us = best_us_per_event(partial(build_all, build, parts), count, repeat)
        gzip_us = best_us_per_event(partial(gzip_all, bodies), count, repeat)
        total = normalize_us + body_us + (gzip_us if kind != "syslog" else 0.0)
        print(f"  {label:<18} body {body_us:6.2f}" + (f"  gzip {gzip_us:5.2f}" if kind != "syslog" else " " * 12)
              + f"  with normalize {total:6.2f} µs/event  ({sum(map(len, bodies)) / count:.0f} bytes/event)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--corpus", choices=("bench", "fidelity", "both"), default="both")
    args = parser.parse_args(argv)
    tune_gc()  # as `siemgate forward` does
    if args.corpus in ("bench", "both"):
        measure("bench records (bench/forward.py's)", bench_values(args.events), args.batch, args.repeat)
    if args.corpus in ("fidelity", "both"):
        measure("fidelity corpus (tests/fidelity, repeated)", fidelity_values(args.events), args.batch, args.repeat)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
