"""The record envelope on the hot path, in ns per event (one process, no I/O).

    python bench/envelope.py [--events 500] [--rounds 200] [--repeat 7]

- `encode`: the ingest's `BatchEncoder.encode` for a 500-event batch (one encoder per batch,
  as `BatchParser.parse` does); the events are already serialized (the ingest has their raw
  bytes).
- `normalize`: the forwarder's `Normalizer.normalize` of each record value (decode the
  envelope, decode the event, look up the normalized fields).
- `event_bytes`: `NormalizedEvent.event_bytes()`, the vendor's bytes the file and syslog
  sinks write.
- `dead_letter`: `deadletter.encode` of a normalized event.

The events are realistic AppSec alerts: nested request objects, headers, escapes (quotes,
backslashes, line breaks in payloads), non-ASCII text and emoji. Each figure is the best of
`--repeat` runs of `--rounds` batches (the least disturbed by other processes). Compare two
commits by running this file against each, alternately, on the same machine.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable

from siemgate.forwarders.deadletter import DeadLetter, encode
from siemgate.forwarders.normalize import Normalizer
from siemgate.record import BatchEncoder, canonical_severity, dumps

_PAYLOADS = (
    "' OR '1'='1' --",
    '<script>alert("x")</script>',
    "..\\..\\windows\\system32\\drivers\\etc\\hosts",
    "admin'/*\n*/UNION SELECT password FROM users",
    "Ünïcödé ☃ 日本語 🔥 \u2028 tab\there",
)


def make_events(count: int, seed: int = 14) -> list[dict[str, object]]:
    rng = random.Random(seed)
    events: list[dict[str, object]] = []
    for i in range(count):
        severity = rng.choice(("High", "medium", "LOW", "critical", "info", None))
        events.append({
            "id": f"evt-{seed}-{i:06d}",
            "timestamp": f"2026-11-28T21:{i % 60:02d}:{rng.randrange(60):02d}.{rng.randrange(10**6):06d}Z",
            "severity": severity,
            "type": rng.choice(("sql_injection", "xss", "path_traversal", "bot")),
            "rule": {"id": f"942{rng.randrange(1000):03d}", "name": "SQL Injection Attack Detected via libinjection"},
            "action": rng.choice(("blocked", "detected", "allowed")),
            "source_ip": f"203.0.113.{rng.randrange(256)}",
            "request": {
                "method": rng.choice(("GET", "POST")),
                "url": f"https://shop.example/login?q={i}&next=%2Fcart",
                "headers": {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64)", "Accept-Language": "de-CH,fr;q=0.8"},
                "body": rng.choice(_PAYLOADS),
            },
            "asset": {"name": "shop-frontend", "host": "shop.example", "tags": ["pci", "prod", f"zone-{i % 4}"]},
            "score": rng.random() * 10,
            "count": rng.randrange(1, 10**6),
            "message": f"Request blocked: {rng.choice(_PAYLOADS)}",
        })
    return events


def best_ns_per_event(run: Callable[[], object], events: int, rounds: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter_ns()
        for _ in range(rounds):
            run()
        best = min(best, (time.perf_counter_ns() - start) / (rounds * events))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    events = make_events(args.events)
    datas = [dumps(event) for event in events]
    ids = [str(event["id"]) for event in events]
    severities = [canonical_severity(event["severity"]) for event in events]

    def encode_batch() -> list[bytes]:
        encoder = BatchEncoder(prefix="siemgate", integration="appsec-prod",
                               received_at="2026-11-28T21:00:00.123456Z", batch="5f1c0e4b9a2d4c7e8f60a1b2c3d4e5f6",
                               peer="203.0.113.7")
        return [encoder.encode(event_id=ids[seq], kind="event", severity=severities[seq], seq=seq,
                               event_bytes=datas[seq]).value
                for seq in range(len(datas))]

    values = encode_batch()
    normalizer = Normalizer()
    normalized = [normalizer.normalize(value) for value in values]
    letters = [DeadLetter(event, "mapper_parsing_exception: failed to parse field [count]", 1)
               for event in normalized]

    figures = {
        "encode": best_ns_per_event(encode_batch, len(values), args.rounds, args.repeat),
        "normalize": best_ns_per_event(lambda: [normalizer.normalize(v) for v in values],
                                       len(values), args.rounds, args.repeat),
        "event_bytes": best_ns_per_event(lambda: [e.event_bytes() for e in normalized],
                                         len(values), args.rounds, args.repeat),
        "dead_letter": best_ns_per_event(lambda: [encode("elastic", letter) for letter in letters],
                                         len(values), args.rounds, args.repeat),
    }
    size = sum(map(len, values)) / len(values)
    print(f"{len(values)} events, {size:.0f} bytes per record value; best of {args.repeat} x {args.rounds} batches")
    for name, ns in figures.items():
        print(f"{name:<12} {ns:8.0f} ns/event")


if __name__ == "__main__":
    main()
