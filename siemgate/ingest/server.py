"""Serving the ingest app with uvicorn: one worker, uvloop, httptools, no access log.

uvicorn's graceful shutdown is what SIGTERM gets: /readyz turns 503, the listener closes,
in-flight batches finish (each is answered only once durable, never with a 5xx because the
process is stopping), then the lifespan stops the publisher, which first sends its spool to
Kafka for up to `bus.spool.drain_timeout_seconds`. A second SIGTERM/SIGINT ends that drain at
once (what is left stays in the spool); it never cuts the answers to requests in flight short.
The processes that serve it (`siemgate ingest`, `siemgate run`) are built by siemgate.serve.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType

import uvicorn
from starlette.applications import Starlette

from siemgate.bus.base import Publisher
from siemgate.config import Config
from siemgate.ingest.app import create_app
from siemgate.ingest.http_protocol import webhook_protocol

# Long enough for an in-flight batch to reach its produce deadline and be answered.
GRACEFUL_SHUTDOWN_SECONDS = 25


def uvicorn_config(config: Config, publisher: Publisher) -> uvicorn.Config:
    return uvicorn_config_for(config, create_app(config, publisher))


def uvicorn_config_for(config: Config, app: Starlette) -> uvicorn.Config:
    listen = config.listen
    has_uvloop = importlib.util.find_spec("uvloop") is not None
    stats = app.state.context.metrics.webhook_listener
    return uvicorn.Config(
        app,
        host=listen.host,
        port=listen.port,
        loop="uvloop" if has_uvloop else "asyncio",
        # Bounded heads, head/body/idle timeouts, the connection cap (listen:, siemgate.listeners).
        http=webhook_protocol(config, stats),
        ws="none",
        lifespan="on",
        access_log=False,
        log_config=None,
        server_header=False,
        proxy_headers=False,  # X-Forwarded-For is honoured by siemgate itself, from trusted proxies only
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        ssl_certfile=listen.tls.cert if listen.tls else None,
        ssl_keyfile=listen.tls.key if listen.tls else None,
    )


class Server(uvicorn.Server):
    """uvicorn's server, but a graceful stop on SIGTERM/SIGINT ends the process with exit 0.

    (uvicorn re-raises the signal after shutting down, so the process would die of it.)
    `exit_hooks` are called on the event loop with the number of stop signals so far; a
    second signal does not force an exit past the requests in flight (uvicorn's would: their
    batches may be durable already, and the sender must get its answer).
    """

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.exit_hooks: list[Callable[[int], None]] = []
        self.exit_signals = 0

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.exit_signals += 1
        count = self.exit_signals
        if count == 1:
            super().handle_exit(sig, frame)
        with contextlib.suppress(RuntimeError):  # no loop running: nothing to tell
            loop = asyncio.get_running_loop()
            for hook in self.exit_hooks:
                loop.call_soon_threadsafe(hook, count)

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


def ingest_server(config: Config, app: Starlette) -> Server:
    """The uvicorn server of the ingest app: stop signals reach the app (`IngestContext.stop_signal`)."""
    server = Server(uvicorn_config_for(config, app))
    server.exit_hooks.append(app.state.context.stop_signal)
    return server

