"""What the ingest needs from a bus: `publish` returns only once every record is durable."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from siemgate.record import Record


class Publisher(Protocol):
    """Produces records durably. Owned by the ingest's lifespan: start, then stop."""

    async def start(self) -> None:
        """Begin connecting. Must not fail because the bus is down: `ready` tells."""

    async def stop(self) -> None:
        """Flush what is in flight and release connections."""

    async def publish(self, records: Sequence[Record]) -> None:
        """Return once every record is acknowledged by the bus.

        Raises:
            BusUnavailable: not connected, or not acknowledged within the deadline.
            RecordTooLarge: a record exceeds what the bus accepts; retrying cannot help.
        """

    async def ready(self) -> bool:
        """Whether the bus accepts writes now."""
