"""The Microsoft Sentinel stand-in (siemgate_standins.sentinel) as bench/forward.py runs it: its
own process, the same options as `siemgate standin sentinel` (with `--dcr-template
deploy/azure/sentinel.json` every row is checked against its stream's declared columns, as
Azure does), plus two cheap inspection endpoints, so that a benchmark can check every id
without the stand-in keeping whole rows (`--no-keep-rows`):

    GET /_bench/progress   {"indexed": N, "type_errors": N, "first_at": epoch, "last_at": epoch}
    GET /_bench/ids        every ingested row's `EventId` (or OCSF `metadata_uid`), one per line

    .venv/bin/python bench/sentinel_standin.py --port 0 --client ID:SECRET --dcr dcr-... \\
        --dcr-template deploy/azure/sentinel.json --no-keep-rows
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
from siemgate_standins.sentinel import SentinelStandIn, add_arguments, from_arguments  # noqa: E402

log = logging.getLogger("bench.sentinel_standin")


class IdRecordingSentinelStandIn(SentinelStandIn):
    """Keeps the ingested rows' ids only (and when ingestion started and last happened)."""

    def __init__(self, **options: Any) -> None:
        self.bench_ids: list[str] = []
        self.first_at: float | None = None
        self.last_at: float | None = None
        super().__init__(**options)

    def _ingested(self, rows: list[dict[str, Any]], dcr_id: str, stream: str) -> None:
        super()._ingested(rows, dcr_id, stream)
        now = time.time()
        if self.first_at is None:
            self.first_at = now
        self.last_at = now
        self.bench_ids.extend(str(r.get("EventId", r.get("metadata_uid", ""))) for r in rows)

    async def handle(self, request: Request) -> Response:
        if request.path == "/_bench/progress":
            return Response.json(200, {"indexed": self.ingested_total, "type_errors": self.type_errors_total,
                                       "first_at": self.first_at, "last_at": self.last_at})
        if request.path == "/_bench/ids":
            return Response(200, "\n".join(self.bench_ids).encode(), [("Content-Type", "text/plain")])
        return await super().handle(request)


async def serve(args: argparse.Namespace) -> None:
    standin = from_arguments(args, IdRecordingSentinelStandIn)
    await standin.serve_until_signalled()
    log.info("stopped: %d rows ingested", standin.ingested_total)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    if args.certfile:
        parser.error("TLS is not supported here (use `siemgate standin sentinel`)")
    return run_main(lambda: serve(args))


if __name__ == "__main__":
    sys.exit(main())
