"""The Splunk HEC and Elasticsearch stand-ins as bench/pipeline.py and bench/soak.py run them:
the stock stand-ins (siemgate_standins.splunk_hec / .elasticsearch, same options as `siemgate
standin`), each in its own process, plus a compact record of every event they take in:

    GET /_bench/progress                    {"count": N, "duplicates": D}
    GET /_bench/arrivals?from=K[&forget=1]  {"from": K, "arrivals": [[id, sent_at, arrived_at], ...]}

(`forget=1`: the stand-in then drops what it answered and everything before it, so that a
long soak does not grow the stand-in; `from` keeps counting from the start.)

`id` is the vendor event's id (HEC: the CIM event's `id`; Elasticsearch: the document `_id`),
`sent_at` the event's `bench_sent_at` field (the benchmark sender's time.time() when it sent
the batch, carried through siemgate inside the event), `arrived_at` the stand-in's
time.time() when it indexed the event (HEC: on the event request, with no ack delay;
Elasticsearch: when the `_bulk` request that created the document was processed). Documents
answered 409 (a redelivered `create`) count as duplicates and are not recorded again.

Why not `GET /_standin/state`: it carries whole events (HEC) or no times at all
(Elasticsearch), and serializing 100,000+ events to poll them would load the stand-in more
than the pipeline does. Recording costs one tuple per event (~0.3 us next to the ~30 us a
stand-in spends per event). Run with `--no-keep-events` / `--no-keep-sources` so that the
stand-ins keep only this record and what the protocol needs (`_id`s for 409s, pending acks).

    .venv/bin/python bench/pipeline_standins.py splunk-hec --port 0 --token TOKEN:ack --no-keep-events
    .venv/bin/python bench/pipeline_standins.py elasticsearch --port 0 --no-keep-sources

The URL is printed as the first line of stdout; SIGTERM/SIGINT stop it.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from siemgate_standins import elasticsearch as es_module  # noqa: E402
from siemgate_standins import splunk_hec as hec_module  # noqa: E402
from siemgate_standins.http_server import Request, Response, run_main  # noqa: E402

_SENT = re.compile(rb'"bench_sent_at":([0-9.eE+-]+)')


class Arrivals:
    """(id, sent_at, arrived_at) per event, numbered from the start; a prefix may be forgotten."""

    def __init__(self) -> None:
        self.items: list[tuple[Any, Any, float]] = []
        self.base = 0  # the number of the first item kept

    @property
    def count(self) -> int:
        return self.base + len(self.items)

    def answer(self, request: Request) -> Response:
        try:
            start = max(0, int(request.param("from") or 0))
        except ValueError:
            return Response.json(400, {"error": "from: an integer"})
        if start < self.base:
            return Response.json(410, {"error": f"arrivals before {self.base} were forgotten"})
        body = {"from": start, "arrivals": self.items[start - self.base:]}
        if request.param("forget") == "1":
            self.base = self.count
            self.items = []
        return Response.json(200, body)


class RecordingHecStandIn(hec_module.SplunkHecStandIn):
    """The HEC stand-in, recording (id, sent_at, arrived_at) per indexed event."""

    def __init__(self, **options: Any) -> None:
        self.bench_arrivals = Arrivals()
        super().__init__(**options)

    def reset(self) -> None:
        super().reset()
        self.bench_arrivals = Arrivals()

    def _index(self, events: list[dict[str, Any]]) -> None:
        super()._index(events)
        now = time.time()
        append = self.bench_arrivals.items.append
        for envelope in events:
            event = envelope.get("event")
            if type(event) is not dict:
                append((None, None, now))
                continue
            vendor = event.get("vendor_event", event)  # event_format cim, or original
            sent = vendor.get("bench_sent_at") if type(vendor) is dict else None
            append((event.get("id", vendor.get("id") if type(vendor) is dict else None), sent, now))

    async def handle(self, request: Request) -> Response:
        if request.path == "/_bench/progress":
            return Response.json(200, {"count": self.bench_arrivals.count, "duplicates": 0})
        if request.path == "/_bench/arrivals":
            return self.bench_arrivals.answer(request)
        return await super().handle(request)


class RecordingElasticsearchStandIn(es_module.ElasticsearchStandIn):
    """The Elasticsearch stand-in, recording (_id, sent_at, arrived_at) per created document."""

    def __init__(self, **options: Any) -> None:
        self.bench_arrivals = Arrivals()
        self.bench_duplicates = 0
        self._bench_now = 0.0
        super().__init__(**options)

    def reset(self) -> None:
        super().reset()
        self.bench_arrivals = Arrivals()
        self.bench_duplicates = 0

    def _bulk(self, request: Request, default_index: str | None, principal: Any) -> Any:
        self._bench_now = time.time()
        return super()._bulk(request, default_index, principal)

    def _execute(self, op: Any, cache: Any, forced: bool) -> tuple[dict[str, Any], int]:
        item, status = super()._execute(op, cache, forced)
        if status == 201:
            match = _SENT.search(op.source or b"")
            self.bench_arrivals.items.append((op.doc_id, float(match.group(1)) if match else None, self._bench_now))
        elif status == 409:
            self.bench_duplicates += 1
        return item, status

    async def handle(self, request: Request) -> Response:
        if request.path == "/_bench/progress":
            return Response.json(200, {"count": self.bench_arrivals.count, "duplicates": self.bench_duplicates})
        if request.path == "/_bench/arrivals":
            return self.bench_arrivals.answer(request)
        return await super().handle(request)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    kinds = parser.add_subparsers(dest="kind", required=True)
    hec_module.add_arguments(kinds.add_parser("splunk-hec"))
    es_module.add_arguments(kinds.add_parser("elasticsearch"))
    args = parser.parse_args(argv)
    if args.certfile:
        parser.error("TLS is not supported here (use `siemgate standin`)")

    async def serve() -> None:
        standin: hec_module.SplunkHecStandIn | es_module.ElasticsearchStandIn
        if args.kind == "splunk-hec":
            standin = RecordingHecStandIn(
                tokens=args.tokens, host=args.host, port=args.port, max_body_bytes=args.max_body_bytes,
                ack_delay_seconds=args.ack_delay, index_before_invalid=args.index_before_invalid,
                keep_events=args.keep_events,
            )
        else:
            standin = RecordingElasticsearchStandIn(
                host=args.host, port=args.port, api_keys=dict(args.api_keys), users=dict(args.users),
                max_body_bytes=args.max_body_bytes, version=args.es_version, keep_sources=args.keep_sources,
                builtin_templates=args.builtin_templates,
            )
        await standin.serve_until_signalled()

    return run_main(serve)


if __name__ == "__main__":
    sys.exit(main())
