"""Kafka as a `Bus`: aiokafka's consumer behind the bus interface, and the bus's publishers.

The consumer passes aiokafka's fetches through untouched (no work per record); it only turns
aiokafka's exceptions into siemgate's (`CommitRefused`, `BusUnavailable`) and ignores pause
and resume requests for partitions no longer assigned.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalOperation, IllegalStateError, KafkaError

from siemgate.bus.base import Consumer, Message, Partition, Publisher, RebalanceListener
from siemgate.bus.kafka import KafkaPublisher, client_options, ensure_topics
from siemgate.config import KafkaConfig
from siemgate.errors import BusError, BusUnavailable, CommitRefused


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, listener: RebalanceListener) -> None:
        self._listener = listener

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self._listener.on_partitions_revoked([Partition(tp.topic, tp.partition) for tp in revoked])

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        await self._listener.on_partitions_assigned([Partition(tp.topic, tp.partition) for tp in assigned])


# aiokafka retries a commit without a bound while the group coordinator cannot be found or
# answers with a retriable error. Past this, the commit is given up (CommitRefused: the
# events since the last commit are delivered again after a restart or a rebalance) rather
# than stalling the forwarder for good. Longer than a request's own timeout (40 s).
COMMIT_TIMEOUT_SECONDS = 60.0


class KafkaConsumer:
    """A consumer group member on Kafka (group None: reads every partition, commits nothing)."""

    commit_timeout_seconds = COMMIT_TIMEOUT_SECONDS

    def __init__(self, config: KafkaConfig, *, group: str | None, max_records: int, fetch_max_wait_ms: int) -> None:
        self._consumer = AIOKafkaConsumer(
            **client_options(config),
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=max_records,
            fetch_max_wait_ms=fetch_max_wait_ms,
        )

    async def start(self) -> None:
        try:
            await self._consumer.start()
        except (KafkaError, OSError) as exc:
            await self._consumer.stop()
            raise BusUnavailable(f"cannot reach Kafka: {exc}") from exc

    async def stop(self) -> None:
        await self._consumer.stop()

    def subscribe(self, topics: Sequence[str], listener: RebalanceListener | None = None) -> None:
        if listener is None:
            self._consumer.subscribe(list(topics))
        else:
            self._consumer.subscribe(list(topics), listener=_Listener(listener))

    def assignment(self) -> set[Partition]:
        return cast(set[Partition], self._consumer.assignment())

    async def getmany(
        self, *partitions: Partition, timeout_ms: int = 0, max_records: int | None = None
    ) -> Mapping[Partition, Sequence[Message]]:
        fetched = await self._consumer.getmany(*map(_tp, partitions), timeout_ms=timeout_ms, max_records=max_records)
        return cast(Mapping[Partition, Sequence[Message]], fetched)

    def pause(self, *partitions: Partition) -> None:
        assigned = self._consumer.assignment()
        self._consumer.pause(*(_tp(tp) for tp in partitions if tp in assigned))

    def resume(self, *partitions: Partition) -> None:
        assigned = self._consumer.assignment()
        self._consumer.resume(*(_tp(tp) for tp in partitions if tp in assigned))

    def seek(self, partition: Partition, offset: int) -> None:
        with contextlib.suppress(IllegalStateError):  # revoked meanwhile: the new owner reads from the commit
            self._consumer.seek(_tp(partition), offset)

    def highwater(self, partition: Partition) -> int | None:
        tp = _tp(partition)
        # Revoked by a rebalance meanwhile: aiokafka asserts (AssertionError) rather than raise.
        if tp not in self._consumer.assignment():
            return None
        try:
            value = self._consumer.highwater(tp)
        except IllegalStateError:
            return None
        return None if value is None else int(value)

    async def commit(self, offsets: Mapping[Partition, int]) -> None:
        try:
            async with asyncio.timeout(self.commit_timeout_seconds):
                await self._consumer.commit({_tp(tp): offset for tp, offset in offsets.items()})
        except TimeoutError as exc:
            broken = self.broken()
            if broken is not None:
                raise CommitRefused(f"the commit did not complete within {self.commit_timeout_seconds:g} s: "
                                    f"{broken}") from exc
            raise CommitRefused(
                f"the commit did not complete within {self.commit_timeout_seconds:g} s (Kafka or its group "
                "coordinator unreachable)"
            ) from exc
        except (CommitFailedError, IllegalStateError, IllegalOperation) as exc:
            raise CommitRefused(f"Kafka refused the commit: {exc!r}") from exc
        except KafkaError as exc:
            raise CommitRefused(f"the commit did not reach Kafka: {exc}") from exc

    def broken(self) -> str | None:
        """Why this consumer can no longer find its group coordinator, if it cannot (None: no
        known reason). aiokafka keeps the cluster metadata fresh in one background task per
        client (`_md_synchronizer`); if that task ends, every wait for a metadata update (the
        coordinator lookup holds its lock meanwhile) waits forever and every commit times out,
        while fetches go on: docs/RELIABILITY.md, finding 4. Only a new consumer (a restart)
        recovers from that."""
        task = getattr(getattr(self._consumer, "_client", None), "_sync_task", None)
        if not isinstance(task, asyncio.Task) or not task.done():
            return None
        if task.cancelled():
            return "aiokafka's metadata task was cancelled: this consumer cannot find its group coordinator any more"
        return (f"aiokafka's metadata task ended ({task.exception()!r}): this consumer cannot find its group "
                "coordinator any more")

    async def end_offsets(self, partitions: Sequence[Partition]) -> dict[Partition, int]:
        try:
            ends: dict[Any, int] = await self._consumer.end_offsets([_tp(tp) for tp in partitions])
        except (KafkaError, OSError) as exc:
            raise BusUnavailable(f"cannot read end offsets from Kafka: {exc}") from exc
        return {Partition(tp.topic, tp.partition): int(end) for tp, end in ends.items()}

    async def position(self, partition: Partition) -> int:
        try:
            return int(await self._consumer.position(_tp(partition)))
        except IllegalStateError as exc:
            raise BusError(f"{partition.topic}[{partition.partition}] is not assigned to this consumer") from exc


def _tp(partition: Partition) -> TopicPartition:
    return partition if isinstance(partition, TopicPartition) else TopicPartition(partition.topic, partition.partition)


class KafkaBus:
    """The `Bus` on a Kafka cluster."""

    def __init__(self, config: KafkaConfig) -> None:
        self.config = config

    def publisher(self) -> Publisher:
        return KafkaPublisher(self.config)

    def consumer(self, *, group: str | None, max_records: int, fetch_max_wait_ms: int) -> Consumer:
        return KafkaConsumer(self.config, group=group, max_records=max_records, fetch_max_wait_ms=fetch_max_wait_ms)

    async def ensure_topics(self, extra: Sequence[str] = ()) -> None:
        if not self.config.topics.create:
            return
        try:
            await ensure_topics(self.config, extra)
        except (KafkaError, OSError) as exc:
            raise BusUnavailable(f"cannot create topics on Kafka: {exc}") from exc
