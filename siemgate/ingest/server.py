"""Serving the ingest app with uvicorn: one worker, uvloop, httptools, no access log.

uvicorn's graceful shutdown is what SIGTERM gets: stop accepting, let in-flight batches
finish (each is answered only once durable), then the lifespan stops the producer. The
processes that serve it (`siemgate ingest`, `siemgate run`) are built by siemgate.serve.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import signal
import threading
from collections.abc import Iterator

import uvicorn
from starlette.applications import Starlette

from siemgate.bus.base import Publisher
from siemgate.config import Config
from siemgate.ingest.app import create_app

# Long enough for an in-flight batch to reach its produce deadline and be answered.
GRACEFUL_SHUTDOWN_SECONDS = 25


def uvicorn_config(config: Config, publisher: Publisher) -> uvicorn.Config:
    return uvicorn_config_for(config, create_app(config, publisher))


def uvicorn_config_for(config: Config, app: Starlette) -> uvicorn.Config:
    listen = config.listen
    has_uvloop = importlib.util.find_spec("uvloop") is not None
    has_httptools = importlib.util.find_spec("httptools") is not None
    return uvicorn.Config(
        app,
        host=listen.host,
        port=listen.port,
        loop="uvloop" if has_uvloop else "asyncio",
        http=_bounded_httptools() if has_httptools else "h11",
        h11_max_incomplete_event_size=64 * 1024,  # the h11 fallback's bound on a request head
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


def _bounded_httptools() -> type[asyncio.Protocol]:
    from siemgate.ingest.http_protocol import BoundedHttpToolsProtocol

    return BoundedHttpToolsProtocol


class Server(uvicorn.Server):
    """uvicorn's server, but a graceful stop on SIGTERM/SIGINT ends the process with exit 0.

    (uvicorn re-raises the signal after shutting down, so the process would die of it.)
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        signals = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in signals}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

