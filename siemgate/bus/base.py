"""The bus interface: what the ingest and the forwarders need from a bus.

Two implementations: Kafka (`siemgate.bus.kafka`, a cluster) and the embedded SQLite log
(`siemgate.bus.embedded`, one machine). Both keep the record contract (`siemgate.record`),
order within a partition, and at-least-once delivery: a record is durable when `publish`
returns, and a consumer group reads it again unless its offset was committed.

The consumer side is shaped like the part of aiokafka's consumer the forwarder runtime uses
(`getmany`, `pause`, `seek`, `commit`, ...), so that the Kafka backend adds no work per record.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, NamedTuple, Protocol, runtime_checkable

from siemgate.record import Record

if TYPE_CHECKING:
    from siemgate.bus.spool import SpoolStats


class Partition(NamedTuple):
    """A topic's partition. (Equal to aiokafka's `TopicPartition`: both are plain tuples.)"""

    topic: str
    partition: int


class Message(Protocol):
    """A record read from the bus (aiokafka's `ConsumerRecord` is one)."""

    @property
    def offset(self) -> int: ...

    @property
    def key(self) -> bytes | None: ...

    @property
    def value(self) -> bytes | None: ...

    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...


class Publisher(Protocol):
    """Produces records durably. Owned by its user's lifespan: start, then stop."""

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


class RebalanceListener(Protocol):
    """Told when a consumer group hands partitions to this consumer or takes them away."""

    async def on_partitions_revoked(self, revoked: Iterable[Partition]) -> None: ...

    async def on_partitions_assigned(self, assigned: Iterable[Partition]) -> None: ...


class Consumer(Protocol):
    """Reads topics as a member of a consumer group; offsets are committed explicitly.

    A consumer without a group (`group=None`) reads from the beginning and cannot commit.
    """

    async def start(self) -> None:
        """Connect; raises BusUnavailable when the bus cannot be reached."""

    async def stop(self) -> None: ...

    def subscribe(self, topics: Sequence[str], listener: RebalanceListener | None = None) -> None: ...

    def assignment(self) -> set[Partition]: ...

    async def getmany(
        self, *partitions: Partition, timeout_ms: int = 0, max_records: int | None = None
    ) -> Mapping[Partition, Sequence[Message]]:
        """Records of the given partitions (default: every assigned, unpaused one), waiting up to
        `timeout_ms` for some to arrive."""
        ...

    def pause(self, *partitions: Partition) -> None: ...

    def resume(self, *partitions: Partition) -> None: ...

    def seek(self, partition: Partition, offset: int) -> None:
        """Read `partition` from `offset` on next."""

    def highwater(self, partition: Partition) -> int | None:
        """The offset after the partition's last record, as last seen (None: not known yet)."""

    async def commit(self, offsets: Mapping[Partition, int]) -> None:
        """Commit the group's next offsets. Raises CommitRefused if the group moved on."""

    async def end_offsets(self, partitions: Sequence[Partition]) -> dict[Partition, int]:
        """The partitions' end offsets, asked of the bus now. Raises BusUnavailable."""

    async def position(self, partition: Partition) -> int:
        """The offset this consumer reads next."""


class Bus(Protocol):
    """Makes the publishers and consumers of one bus."""

    def publisher(self) -> Publisher:
        """A publisher for dead letters and replays (the ingest may have its own, e.g. spooling)."""

    def consumer(self, *, group: str | None, max_records: int, fetch_max_wait_ms: int) -> Consumer: ...

    async def ensure_topics(self, extra: Sequence[str] = ()) -> None:
        """Make sure siemgate's topics (and `extra` ones) exist. Raises BusUnavailable."""


@runtime_checkable
class SpoolReporter(Protocol):
    """A publisher with a local spool (`siemgate.bus.spooling.SpoolingPublisher`): the ingest
    exports its metrics, the status page shows it."""

    def spool_stats(self) -> SpoolStats: ...


@runtime_checkable
class StallReporter(Protocol):
    """A publisher with a worker of its own that the progress watchdog judges (the spool's
    drainer, `siemgate.bus.spooling`): the ingest's /healthz fails while `stalls()` lists
    anything, and `stalled()` is exported as `siemgate_stalled{component}`."""

    def stalls(self) -> list[dict[str, object]]: ...

    def stalled(self) -> Mapping[str, int]: ...


@runtime_checkable
class DrainingPublisher(Protocol):
    """A publisher that sends what it holds before exit (`siemgate.bus.spooling.SpoolingPublisher`):
    told at the first stop signal, and to give up at the second."""

    def begin_stopping(self) -> None: ...

    def abandon_drain(self) -> None: ...

    def shutdown_drains(self) -> Mapping[str, int]: ...
