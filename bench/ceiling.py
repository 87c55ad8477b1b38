"""The benchmark's ceiling: a bare Starlette endpoint that reads the body and answers 200.

Served by uvicorn with the settings siemgate's ingest uses (siemgate/ingest/server.py): one
worker, uvloop, httptools, no access log, no server header, keep-alive 75 s. What siemgate
adds on top of this (parsing, records, Kafka acks=all) is what the benchmark's ratios show.

    python bench/ceiling.py --port 18080      # POST /webhook/bench, GET /readyz
"""

from __future__ import annotations

import argparse

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

ANSWER = b'{"accepted":500}'


async def webhook(request: Request) -> Response:
    await request.body()
    return Response(ANSWER, media_type="application/json")


async def ok(request: Request) -> Response:
    return Response(b"ok\n", media_type="text/plain")


app = Starlette(
    routes=[
        Route("/webhook/bench", webhook, methods=["POST"]),
        Route("/readyz", ok, methods=["GET"]),
        Route("/healthz", ok, methods=["GET"]),
    ]
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18080)
    args = parser.parse_args()
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_config=None,
        server_header=False,
        proxy_headers=False,
        timeout_keep_alive=75,
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
