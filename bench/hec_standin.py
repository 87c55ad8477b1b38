"""The Splunk HEC stand-in (siemgate_standins.splunk_hec) as bench/forward.py runs it: its own
process, the same options as `siemgate standin splunk-hec`, plus two cheap inspection
endpoints the stock one does not have, so that a benchmark can check every id without the
stand-in keeping whole events (`--no-keep-events`):

    GET /_bench/progress   {"indexed": N, "first_at": epoch, "last_at": epoch}   (no per-request list)
    GET /_bench/ids        every indexed event's `event.id`, one per line, in indexing order

The stock `GET /_standin/state?events=false` serializes every request record it keeps (up to
100,000), too costly to poll during a measurement. Recording the ids costs one list append
per event (~0.1 us next to the ~30 us the stand-in spends per event).

    .venv/bin/python bench/hec_standin.py --port 0 --token TOKEN[:ack] --no-keep-events
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from siemgate_standins.http_server import Request, Response, run_main  # noqa: E402
from siemgate_standins.splunk_hec import SplunkHecStandIn, add_arguments  # noqa: E402

log = logging.getLogger("bench.hec_standin")


class IdRecordingHecStandIn(SplunkHecStandIn):
    """Keeps only the indexed events' ids (and when indexing started and last happened)."""

    def __init__(self, **options: Any) -> None:
        self.bench_ids: list[str] = []
        self.first_at: float | None = None
        self.last_at: float | None = None
        super().__init__(**options)

    def reset(self) -> None:
        super().reset()
        self.bench_ids = []
        self.first_at = self.last_at = None

    def _index(self, events: list[dict[str, Any]]) -> None:
        super()._index(events)
        now = time.time()
        if self.first_at is None:
            self.first_at = now
        self.last_at = now
        self.bench_ids.extend(str(e["event"].get("id")) if type(e["event"]) is dict else "" for e in events)

    async def handle(self, request: Request) -> Response:
        if request.path == "/_bench/progress":
            return Response.json(200, {"indexed": self.indexed_total, "first_at": self.first_at,
                                       "last_at": self.last_at})
        if request.path == "/_bench/ids":
            return Response(200, "\n".join(self.bench_ids).encode(), [("Content-Type", "text/plain")])
        return await super().handle(request)


async def serve(args: argparse.Namespace) -> None:
    """As siemgate_standins.splunk_hec.serve, with the id-recording stand-in."""
    standin = IdRecordingHecStandIn(tokens=args.tokens, host=args.host, port=args.port,
                                    max_body_bytes=args.max_body_bytes, ack_delay_seconds=args.ack_delay,
                                    index_before_invalid=args.index_before_invalid, keep_events=args.keep_events)
    await standin.serve_until_signalled()
    log.info("stopped: %d events indexed", standin.indexed_total)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    if args.certfile:
        parser.error("TLS is not supported here (use `siemgate standin splunk-hec`)")
    return run_main(lambda: serve(args))


if __name__ == "__main__":
    sys.exit(main())
