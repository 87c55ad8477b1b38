"""Sequential webhook senders for bench/pipeline.py and bench/soak.py: the vendor's way of
sending (one batch at a time per sender, the next only after the answer), cheap enough not to
be the bottleneck on a 2-core machine (a raw HTTP/1.1 keep-alive client on asyncio/uvloop, no
httpx: ~0.5 ms of CPU per 500-event batch).

Every event carries:
- `id`: `pl.<tag>.<sender>.<batch>.<index>.<h|m|l|u>` (the benchmark recovers which batch and
  severity an event was from any sink that shows the id);
- `bench_sent_at`: time.time() when its batch was sent (epoch seconds, microseconds), which
  travels through siemgate inside the vendor's event to every sink;
- `timestamp` (ISO 8601, the send time) and a realistic body from siemgate.simulate's
  generator (~800 bytes), severities drawn by `--mix`.

Load shapes: `--events N` in total over `--senders` (or until `--duration` seconds passed, or
until `--stop-file` exists), back to back, or paced: `--rate R` events/s in total (each sender
sends a batch every `senders * batch / R` seconds, never bursting to catch up), or a fixed
`--interval` between a sender's batches.

Output: one JSON line per batch in `--log` (sender, batch, events, sent time, latency in
seconds, HTTP status or null on a connection error, severities), written as it goes; a summary
JSON object on stdout at the end.

    .venv/bin/python bench/pipeline_sender.py --url http://127.0.0.1:8080/webhook/bench \\
        --header 'X-Api-Key: k' --tag sat --senders 4 --events 100000 --log sat.jsonl
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

from siemgate.simulate import make_events, parse_mix  # noqa: E402

POOL = 2000
SEVERITY_LETTER = {"high": "h", "medium": "m", "low": "l"}


class Pool:
    """Pre-serialized event bodies; `body()` assembles a batch with fresh ids and send time."""

    def __init__(self, mix: str, seed: int) -> None:
        events = make_events(POOL, parse_mix(mix), seed)
        self.fragments: list[bytes] = []
        self.letters: list[str] = []
        for event in events:
            rest = {k: v for k, v in event.items() if k not in ("id", "timestamp")}
            self.fragments.append(orjson.dumps(rest)[1:])  # without the opening brace
            self.letters.append(SEVERITY_LETTER.get(str(event.get("severity", "")).lower(), "u"))
        self.cursor = 0

    def body(self, prefix: str, n: int, sent_at: float) -> tuple[bytes, dict[str, int]]:
        stamp = datetime.fromtimestamp(sent_at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        head = b'{"id":"%s.%d.%s","timestamp":"' + stamp.encode() + b'","bench_sent_at":%.6f,'
        counts: dict[str, int] = {}
        parts = []
        size = len(self.fragments)
        prefix_bytes = prefix.encode()
        for i in range(n):
            index = self.cursor
            self.cursor = (index + 1) % size
            letter = self.letters[index]
            counts[letter] = counts.get(letter, 0) + 1
            parts.append(head % (prefix_bytes, i, letter.encode(), sent_at) + self.fragments[index])
        return b"[" + b",".join(parts) + b"]", counts


class Connection:
    """One keep-alive HTTP/1.1 connection: POST a body, read the answer."""

    def __init__(self, url: str, headers: list[tuple[str, str]], timeout: float) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        lines = [f"POST {self.path} HTTP/1.1", f"Host: {self.host}:{self.port}", "Content-Type: application/json",
                 "User-Agent: siemgate-bench-sender"]
        lines += [f"{name}: {value}" for name, value in headers]
        self.head = ("\r\n".join(lines) + "\r\nContent-Length: ").encode()
        self.timeout = timeout
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, body: bytes) -> int:
        return await asyncio.wait_for(self._post(body), self.timeout)

    async def _post(self, body: bytes) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(self.head + b"%d\r\n\r\n" % len(body))
        self.writer.write(body)
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        close = False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
            elif name == b"transfer-encoding":
                raise RuntimeError("chunked answers are not supported by this client")
        if length:
            await self.reader.readexactly(length)
        if close:
            self.close()
        return status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


class Run:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.remaining = args.events
        self.started = time.monotonic()
        self.deadline = self.started + args.duration if args.duration else None
        self.stop_file = Path(args.stop_file) if args.stop_file else None
        self.stopped = False
        self.log = open(args.log, "w", buffering=1) if args.log else None  # noqa: SIM115 - closed in main
        self.summary: dict[str, Any] = {"batches": 0, "acked_batches": 0, "acked_events": 0, "errors": 0,
                                        "statuses": {}, "error_kinds": {}}
        headers = [tuple(part.strip() for part in h.split(":", 1)) for h in args.header]
        self.headers: list[tuple[str, str]] = [(h[0], h[1]) for h in headers]
        self.period = args.interval
        if args.rate:
            self.period = args.senders * args.batch / args.rate

    def take(self) -> int:
        if self.stopped:
            return 0
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return 0
        if self.stop_file is not None and self.stop_file.exists():
            return 0
        if self.remaining is None:
            return self.args.batch
        n = min(self.args.batch, self.remaining)
        self.remaining -= n
        return n

    async def sender(self, number: int) -> None:
        args = self.args
        pool = Pool(args.mix, args.seed + number)
        connection = Connection(args.url, self.headers, args.timeout)
        batch = 0
        # Paced senders start spread over one period.
        next_at = time.monotonic() + (self.period * number / args.senders if self.period else 0.0)
        try:
            while True:
                if self.period:
                    delay = next_at - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                n = self.take()
                if n == 0:
                    return
                sent_at = time.time()
                body, counts = pool.body(f"pl.{args.tag}.{number}.{batch}", n, sent_at)
                started = time.perf_counter()
                status: int | None
                error = None
                try:
                    status = await connection.post(body)
                except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError,
                        ValueError) as exc:
                    status, error = None, type(exc).__name__
                    connection.close()
                latency = time.perf_counter() - started
                self.record(number, batch, n, sent_at, latency, status, error, counts)
                batch += 1
                if status is None:
                    await asyncio.sleep(0.05)  # no spinning on a dead server
                if self.period:
                    next_at = max(next_at + self.period, time.monotonic())
        finally:
            connection.close()

    def record(self, number: int, batch: int, n: int, sent_at: float, latency: float, status: int | None,
               error: str | None, counts: dict[str, int]) -> None:
        summary = self.summary
        summary["batches"] += 1
        if status == 200:
            summary["acked_batches"] += 1
            summary["acked_events"] += n
        if status is None:
            summary["errors"] += 1
            summary["error_kinds"][error] = summary["error_kinds"].get(error, 0) + 1
        else:
            key = str(status)
            summary["statuses"][key] = summary["statuses"].get(key, 0) + 1
        if self.log is not None:
            self.log.write(json.dumps({"s": number, "b": batch, "n": n, "t": round(sent_at, 6),
                                       "lat": round(latency, 7), "st": status, "sev": counts}) + "\n")


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    run = Run(args)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, lambda: setattr(run, "stopped", True))
    cpu0 = time.process_time()
    try:
        await asyncio.gather(*(run.sender(i) for i in range(args.senders)))
    finally:
        if run.log is not None:
            run.log.close()
    run.summary["elapsed_seconds"] = round(time.monotonic() - run.started, 3)
    run.summary["cpu_seconds"] = round(time.process_time() - cpu0, 3)
    return run.summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--header", action="append", default=[], metavar="'NAME: VALUE'")
    parser.add_argument("--tag", required=True, help="goes into every id: pl.<tag>.<sender>.<batch>.<i>.<sev>")
    parser.add_argument("--senders", type=int, default=1)
    parser.add_argument("--events", type=int, default=None, help="events in total (default: no limit)")
    parser.add_argument("--duration", type=float, default=None, help="stop starting batches after S seconds")
    parser.add_argument("--stop-file", help="stop starting batches once this file exists")
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--mix", default="high=1,medium=3,low=6")
    parser.add_argument("--rate", type=float, default=0.0, help="events/s over all senders (0: back to back)")
    parser.add_argument("--interval", type=float, default=0.0, help="seconds between a sender's batches")
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--log", help="JSON lines, one per batch")
    args = parser.parse_args(argv)
    if args.events is None and args.duration is None and args.stop_file is None:
        parser.error("give --events, --duration or --stop-file")
    try:
        import uvloop
    except ImportError:
        summary = asyncio.run(main_async(args))
    else:
        summary = uvloop.run(main_async(args))
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
