"""The side listeners a process serves beside its main one (the status page, the ingest's
/metrics): a socket bound before the process starts serving, and a uvicorn server that leaves
SIGTERM/SIGINT to the process's main server."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

import uvicorn

from siemgate.errors import SiemgateError


class SideServer(uvicorn.Server):
    """uvicorn without its signal handlers: the process's main server owns SIGTERM/SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind_listener(host: str, port: int, *, key: str, error: type[SiemgateError], backlog: int = 128) -> socket.socket:
    """A listening, non-blocking socket on host:port. `key` is the config block that names them
    (`admin`, `metrics`): a failure raises `error` saying which keys to change."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise error(f"{key}.host {host}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise error(f"cannot listen on {key}.host {host} {key}.port {port}: {exc.strerror or exc}") from None
    return sock
