"""The webhook port's bounded HTTP protocol (siemgate.listeners.BoundedHttpProtocol) with the
bounds of `listen:` and `limits:`.

Its head bound answers 400, not 431: docs/SPEC.md lists the webhook's answers. A body is bounded
by `limits.body_timeout_seconds` in the app (408, counted per integration); the protocol's own
body timeout is that plus `BODY_GRACE_SECONDS`, a backstop for the bodies the app does not
read (those of requests answered early: 401, 403, 413), which are read and dropped meanwhile.
"""

from __future__ import annotations

from typing import Final

from siemgate.config import Config
from siemgate.listeners import BoundedHttpProtocol, ConnectionLimits, ListenerStats, bounded_protocol

BODY_GRACE_SECONDS: Final = 1.0


def webhook_limits(config: Config) -> ConnectionLimits:
    listen = config.listen
    return ConnectionLimits(
        head_timeout=listen.head_timeout_seconds,
        body_timeout=config.limits.body_timeout_seconds + BODY_GRACE_SECONDS,
        idle_timeout=listen.idle_timeout_seconds,
        max_connections=listen.max_connections,
        head_too_large_status=400,
    )


def webhook_protocol(config: Config, stats: ListenerStats) -> type[BoundedHttpProtocol]:
    """uvicorn.Config's `http` for the webhook listener."""
    return bounded_protocol(webhook_limits(config), stats)
