"""The admin listener: a uvicorn server of its own on `admin.host:admin.port`, beside the
process's main work (`siemgate run`, `ingest`, `forward`), never on the webhook port.

The socket is bound before anything else starts, so a port in use stops the start with a
one-line reason (exit 1) instead of a half-started process. The process owns the signals:
its main server's shutdown ends this one too (`running_admin` exits).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from siemgate.admin.app import create_admin_app
from siemgate.admin.status import StatusSources
from siemgate.config import AdminConfig
from siemgate.errors import AdminListenError
from siemgate.listeners import (
    ConnectionLimits,
    ListenerCollector,
    ListenerStats,
    SideServer,
    bind_listener,
    side_config,
)

log = logging.getLogger("siemgate.admin")

# How often the sinks' counters are sampled for the rate over the last minute.
SAMPLE_SECONDS = 5.0
# A Confirm click may be waiting on a slow vendor (confirmation.timeout_seconds); not longer.
GRACEFUL_SHUTDOWN_SECONDS = 5


@dataclass(frozen=True, slots=True)
class AdminListener:
    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


async def _sample(sources: StatusSources) -> None:
    while True:
        sources.sample_rates()
        await asyncio.sleep(SAMPLE_SECONDS)


def _ended(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("the status page's server stopped", exc_info=task.exception())


def admin_limits(admin: AdminConfig) -> ConnectionLimits:
    """The admin listener's connection bounds (siemgate.listeners): heads over 64 KiB are 431."""
    return ConnectionLimits(head_timeout=admin.head_timeout_seconds, body_timeout=admin.body_timeout_seconds,
                            idle_timeout=admin.idle_timeout_seconds, max_connections=admin.max_connections)


@contextlib.asynccontextmanager
async def running_admin(admin: AdminConfig | None, sources: StatusSources,
                        listeners: ListenerCollector | None = None) -> AsyncIterator[AdminListener | None]:
    """Serve the status page while the block runs; nothing when `admin` is None (not configured).
    Its connections are counted by `listeners` (on the process's /metrics), when given."""
    if admin is None:
        yield None
        return
    sock = bind_listener(admin.host, admin.port, key="admin", error=AdminListenError)
    listener = AdminListener(admin.host, int(sock.getsockname()[1]))
    stats = ListenerStats("admin")
    if listeners is not None:
        listeners.add(stats)
    server = SideServer(side_config(create_admin_app(admin, sources), admin_limits(admin), stats,
                                    GRACEFUL_SHUTDOWN_SECONDS))
    serving = asyncio.create_task(server.serve(sockets=[sock]), name="admin-server")
    serving.add_done_callback(_ended)
    sampling = asyncio.create_task(_sample(sources), name="admin-rates") if sources.forward is not None else None
    log.info(f"status page on {listener.url}/ (admin token required)", extra={"url": listener.url})
    try:
        yield listener
    finally:
        if sampling is not None:
            sampling.cancel()
            await asyncio.gather(sampling, return_exceptions=True)
        server.should_exit = True
        await asyncio.gather(serving, return_exceptions=True)
        sock.close()
