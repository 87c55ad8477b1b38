"""One fix to aiokafka 0.14 under uvloop, applied when the bus is imported (docs/RELIABILITY.md,
finding 4).

`AIOKafkaConnection.send` writes the request and turns an `OSError` from the write into
`KafkaConnectionError`, which every caller handles (a broken connection: the next request
opens a new one). Under uvloop, writing to a transport that the peer has already closed
(a broker, proxy or load balancer that closed the connection a moment before aiokafka's
reader noticed) raises `RuntimeError("unable to perform operation on <TCPTransport
closed=True ...>; the handler is closed")` instead. Nothing in aiokafka catches it: when it
happens in the client's metadata task (`_md_synchronizer`) that task ends for good, every
later wait for a metadata update waits forever, and the consumer's group coordinator lookup
(holding its lock) with it: no commit completes again, while fetches go on. The partition
soak with closed connections showed it in 2 runs of 2; the task's error was this one.

The patch: such a `RuntimeError` from the write closes the connection and raises
`KafkaConnectionError`, exactly as an `OSError` does. Nothing else changes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiokafka import conn as _conn
from aiokafka.errors import KafkaConnectionError

_PATCHED = "_siemgate_closed_transport_patch"


def _guard(send: Callable[..., Any]) -> Callable[..., Any]:
    def guarded(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return send(self, *args, **kwargs)
        except RuntimeError as exc:  # uvloop: a write on a closed transport
            self.close(reason=_conn.CloseReason.CONNECTION_BROKEN, exc=exc)
            raise KafkaConnectionError(f"Connection at {self.host}:{self.port} broken: {exc}") from exc

    setattr(guarded, _PATCHED, True)
    guarded.__doc__ = send.__doc__
    return guarded


def apply() -> None:
    """Patch `AIOKafkaConnection.send` and `_send_sasl_token` (once)."""
    cls = _conn.AIOKafkaConnection
    for name in ("send", "_send_sasl_token"):
        method = getattr(cls, name)
        if not getattr(method, _PATCHED, False):
            setattr(cls, name, _guard(method))


apply()
