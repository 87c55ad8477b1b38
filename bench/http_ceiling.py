"""A minimal HTTP client that blasts pre-built requests at a stand-in: its ceiling, for
bench/forward.py. What a forwarder can reach is bounded by what the stand-in can take;
this measures the latter with as little client work as possible.

The bodies are read from a file built beforehand (bench/forward_http.py `write_bodies`):
each is `>II` (body length, events in it) then the body, already gzip'd. The client opens
keep-alive connections (http.client; `--connections`, default 1, i.e. one request in
flight as the forwarder has), POSTs every body once, in order, and checks each answer:

- `--kind elasticsearch`: 200 and `"errors":false` in the bulk answer;
- `--kind splunk_hec`: 200 and code 0; with `--ack-channel`, the ackIds of the answers are
  then polled on /services/collector/ack (in the timing) until all come back true;
- `--kind sentinel`: 204 (the Logs Ingestion API; pass the bearer token with `--header`).

Prints one JSON object on stdout: requests, events, seconds (first request sent to last
answer, and acks), events_per_second, the client's own CPU seconds, bad answers.

    python bench/http_ceiling.py --url http://127.0.0.1:9200 --path '/logs-x/_bulk' \\
        --header 'Content-Type: application/x-ndjson' --bodies bodies.bin --kind elasticsearch
"""

from __future__ import annotations

import argparse
import http.client
import json
import struct
import sys
import threading
import time
from typing import Any
from urllib.parse import urlencode, urlsplit

HEADER = struct.Struct(">II")


def read_bodies(path: str) -> list[tuple[bytes, int]]:
    bodies: list[tuple[bytes, int]] = []
    with open(path, "rb") as f:
        while head := f.read(HEADER.size):
            length, events = HEADER.unpack(head)
            bodies.append((f.read(length), events))
    return bodies


class Blaster:
    def __init__(self, args: argparse.Namespace, bodies: list[tuple[bytes, int]]) -> None:
        parts = urlsplit(args.url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.path = args.path
        self.kind = args.kind
        self.headers = dict(h.split(":", 1) for h in args.header)
        self.headers = {k.strip(): v.strip() for k, v in self.headers.items()}
        self.headers["Content-Encoding"] = "gzip"
        self.channel = args.ack_channel
        if self.channel:
            self.headers["X-Splunk-Request-Channel"] = self.channel
        self.bodies = bodies
        self.next = 0
        self.lock = threading.Lock()
        self.bad = 0
        self.first_bad: str | None = None
        self.ack_ids: list[int] = []

    def _take(self) -> tuple[bytes, int] | None:
        with self.lock:
            if self.next >= len(self.bodies):
                return None
            body = self.bodies[self.next]
            self.next += 1
            return body

    def _bad(self, status: int, answer: bytes) -> None:
        with self.lock:
            self.bad += 1
            if self.first_bad is None:
                self.first_bad = f"HTTP {status}: {answer[:300]!r}"

    def worker(self) -> None:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=120)
        try:
            while (item := self._take()) is not None:
                body, _events = item
                headers = dict(self.headers)
                connection.request("POST", self.path, body=body, headers=headers)
                response = connection.getresponse()
                answer = response.read()
                if self.kind == "sentinel":
                    if response.status != 204:
                        self._bad(response.status, answer)
                elif self.kind == "elasticsearch":
                    if response.status != 200 or b'"errors":false' not in answer:
                        self._bad(response.status, answer)
                else:
                    if response.status != 200 or b'"code":0' not in answer:
                        self._bad(response.status, answer)
                    elif self.channel:
                        ack_id = json.loads(answer).get("ackId")
                        with self.lock:
                            self.ack_ids.append(ack_id)
        finally:
            connection.close()

    def poll_acks(self, timeout: float = 60.0) -> int:
        """Poll every ackId until all came back true; returns how many never did."""
        waiting = set(self.ack_ids)
        connection = http.client.HTTPConnection(self.host, self.port, timeout=120)
        deadline = time.monotonic() + timeout
        headers = {k: v for k, v in self.headers.items() if k != "Content-Encoding"}
        headers["Content-Type"] = "application/json"
        try:
            while waiting and time.monotonic() < deadline:
                body = json.dumps({"acks": sorted(waiting)}).encode()
                connection.request("POST", "/services/collector/ack?" + urlencode({"channel": self.channel}),
                                   body=body, headers=headers)
                response = connection.getresponse()
                answer = response.read()
                if response.status == 200:
                    acks = json.loads(answer).get("acks", {})
                    waiting -= {int(k) for k, v in acks.items() if v is True}
                if waiting:
                    time.sleep(0.01)
        finally:
            connection.close()
        return len(waiting)

    def run(self, connections: int) -> dict[str, Any]:
        cpu0 = time.process_time()
        started = time.perf_counter()
        threads = [threading.Thread(target=self.worker) for _ in range(connections)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        posted = time.perf_counter()
        acks_missing = self.poll_acks() if self.channel else None
        finished = time.perf_counter()
        events = sum(events for _, events in self.bodies)
        seconds = finished - started
        return {
            "requests": len(self.bodies),
            "events": events,
            "body_bytes": sum(len(body) for body, _ in self.bodies),
            "connections": connections,
            "seconds": round(seconds, 4),
            "post_seconds": round(posted - started, 4),
            "events_per_second": round(events / seconds, 1) if seconds else 0.0,
            "client_cpu_seconds": round(time.process_time() - cpu0, 3),
            "bad_answers": self.bad,
            "first_bad_answer": self.first_bad,
            "ack_ids": len(self.ack_ids) if self.channel else None,
            "acks_missing": acks_missing,
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--url", required=True, help="the stand-in's base URL (http://127.0.0.1:PORT)")
    parser.add_argument("--path", required=True, help="the request path, with its query string")
    parser.add_argument("--header", action="append", default=[], help="NAME: VALUE (repeat)")
    parser.add_argument("--bodies", required=True, help="the pre-built bodies (see write_bodies)")
    parser.add_argument("--kind", choices=("elasticsearch", "splunk_hec", "sentinel"), required=True)
    parser.add_argument("--ack-channel", help="HEC: this channel, and poll the ackIds at the end")
    parser.add_argument("--connections", type=int, default=1, help="requests in flight (default 1)")
    args = parser.parse_args(argv)
    bodies = read_bodies(args.bodies)
    result = Blaster(args, bodies).run(args.connections)
    print(json.dumps(result), flush=True)
    return 0 if result["bad_answers"] == 0 and not result["acks_missing"] else 1


if __name__ == "__main__":
    sys.exit(main())
