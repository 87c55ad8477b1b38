"""Serving the ingest app with uvicorn: one worker, uvloop, httptools, no access log.

uvicorn's graceful shutdown is what SIGTERM gets: stop accepting, let in-flight batches
finish (each is answered only once durable), then the lifespan stops the producer.
"""

from __future__ import annotations

import importlib.util

import uvicorn

from siemgate.bus.base import Publisher
from siemgate.config import Config
from siemgate.ingest.app import create_app

# Long enough for an in-flight batch to reach its produce deadline and be answered.
GRACEFUL_SHUTDOWN_SECONDS = 25


def uvicorn_config(config: Config, publisher: Publisher) -> uvicorn.Config:
    listen = config.listen
    has_uvloop = importlib.util.find_spec("uvloop") is not None
    has_httptools = importlib.util.find_spec("httptools") is not None
    return uvicorn.Config(
        create_app(config, publisher),
        host=listen.host,
        port=listen.port,
        loop="uvloop" if has_uvloop else "asyncio",
        http="httptools" if has_httptools else "h11",
        lifespan="on",
        access_log=False,
        log_config=None,
        server_header=False,
        proxy_headers=False,  # X-Forwarded-For is honoured by siemgate itself, from trusted proxies only
        timeout_keep_alive=75,  # longer than the sender's 5 s batch interval: keep its connection
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        ssl_certfile=listen.tls.cert if listen.tls else None,
        ssl_keyfile=listen.tls.key if listen.tls else None,
    )


async def serve(config: Config, publisher: Publisher) -> None:
    server = uvicorn.Server(uvicorn_config(config, publisher))
    await server.serve()
