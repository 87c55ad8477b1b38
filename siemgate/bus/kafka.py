"""Kafka as the bus: topics, client options and the ingest's producer.

The producer builds one record batch per topic and partition directly (aiokafka
`create_batch`/`send_batch`) instead of a future per record: measured on this machine, that
and zstd are what let one process ack a 500-event batch in a few milliseconds with acks=all.

Partitioning: the records of one webhook batch that share a topic go to one partition, and
successive batches rotate over the partitions. Events of a batch therefore stay in order,
one produce request carries them, and the load still spreads over every partition.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import ssl
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, KafkaTimeoutError, MessageSizeTooLargeError, TopicAlreadyExistsError
from aiokafka.helpers import create_ssl_context
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from siemgate.bus import aiokafka_patch  # noqa: F401  (a closed transport under uvloop: finding 4)
from siemgate.bus.kafka_oauth import token_provider
from siemgate.config import KafkaConfig
from siemgate.errors import BusUnavailable, RecordTooLarge
from siemgate.record import Record, all_topics

log = logging.getLogger("siemgate.bus.kafka")

_TOPIC_EXISTS = TopicAlreadyExistsError.errno


def client_options(config: KafkaConfig) -> dict[str, Any]:
    """Connection options every aiokafka client of siemgate shares (producer, consumer, admin)."""
    security = config.security
    options: dict[str, Any] = {
        "bootstrap_servers": list(config.servers),
        "client_id": config.client_id,
        "security_protocol": security.protocol,
    }
    if security.protocol in ("SSL", "SASL_SSL"):
        context = create_ssl_context(
            cafile=security.ca_file, certfile=security.cert_file, keyfile=security.key_file
        )
        if not security.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        options["ssl_context"] = context
    if security.protocol.startswith("SASL") and security.sasl_mechanism == "OAUTHBEARER":
        assert security.oauth is not None  # checked by KafkaSecurityConfig
        options["sasl_mechanism"] = "OAUTHBEARER"
        options["sasl_oauth_token_provider"] = token_provider(security.oauth)
    elif security.protocol.startswith("SASL"):
        assert security.password is not None  # checked by KafkaSecurityConfig
        options["sasl_mechanism"] = security.sasl_mechanism
        options["sasl_plain_username"] = security.username
        options["sasl_plain_password"] = security.password.reveal()
    return options


async def describe_kafka(config: KafkaConfig, timeout: float) -> tuple[set[str], int]:
    """The cluster's topics and broker count, through a fresh admin client (no connection of
    another client reused). Raises BusUnavailable with the reason when Kafka cannot be reached
    within `timeout` seconds."""
    admin = AIOKafkaAdminClient(**client_options(config), request_timeout_ms=int(timeout * 1000))
    try:
        async with asyncio.timeout(timeout):
            await admin.start()
            topics = set(await admin.list_topics())
            cluster = await admin.describe_cluster()
    except (TimeoutError, KafkaError, OSError, BusUnavailable) as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else str(exc) or type(exc).__name__
        raise BusUnavailable(f"cannot reach {','.join(config.servers)}: {reason}") from None
    finally:  # also when the start itself timed out, failed or was cancelled: no client left behind
        with contextlib.suppress(Exception):
            await admin.close()
    return topics, len(cluster.get("brokers", []) or [])


async def probe_kafka(config: KafkaConfig, timeout: float) -> str | None:
    """None when a fresh client reaches Kafka within `timeout` seconds, else why not."""
    try:
        await describe_kafka(config, timeout)
    except BusUnavailable as exc:
        return str(exc)
    return None


async def ensure_topics(config: KafkaConfig, extra: Sequence[str] = ()) -> list[str]:
    """Create the topics siemgate uses (and `extra` ones) that do not exist yet. Returns the
    ones created."""
    admin = AIOKafkaAdminClient(**client_options(config))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in (*all_topics(config.topic_prefix), *extra) if t not in existing]
        if not missing:
            return []
        replication = config.topics.replication_factor
        if replication is None:
            cluster = await admin.describe_cluster()
            replication = max(1, min(3, len(cluster.get("brokers", []) or [1])))
        response = await admin.create_topics(
            [NewTopic(t, config.topics.partitions, replication) for t in missing]
        )
        for topic, code, message in response.topic_errors:
            if code not in (0, _TOPIC_EXISTS):
                raise BusUnavailable(
                    f"Kafka refused to create topic {topic}: {message or code}. Create it yourself "
                    f"or fix bus.kafka.topics (partitions {config.topics.partitions}, "
                    f"replication_factor {replication})"
                )
        log.info("created Kafka topics", extra={"topics": missing, "replication_factor": replication})
        return missing
    finally:
        await admin.close()


class KafkaPublisher:
    """The ingest's producer: acks=all, connects in the background, never blocks startup."""

    def __init__(self, config: KafkaConfig) -> None:
        self._config = config
        self._producer: AIOKafkaProducer | None = None
        self._connected = asyncio.Event()
        self._connector: asyncio.Task[None] | None = None
        self._rotation: dict[str, itertools.count[int]] = {}
        self._last_ok = 0.0
        self._last_failure = 0.0

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def start(self) -> None:
        self._connector = asyncio.create_task(self._connect_forever(), name="kafka-connect")

    async def wait_connected(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._connected.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def _connect_forever(self) -> None:
        delay = 0.5
        while True:
            producer = AIOKafkaProducer(
                **client_options(self._config),
                acks="all",
                enable_idempotence=self._config.idempotence,
                compression_type=None if self._config.compression == "none" else self._config.compression,
                max_batch_size=self._config.max_batch_bytes,
                max_request_size=self._config.max_request_bytes,
                linger_ms=0,
                request_timeout_ms=int(max(self._config.produce_timeout_seconds, 5.0) * 1000),
            )
            try:
                await producer.start()
                if self._config.topics.create:
                    await ensure_topics(self._config)
            except (KafkaError, OSError, BusUnavailable) as exc:
                await producer.stop()
                log.warning(
                    "Kafka is not reachable (retrying); until it is, the ingest spools batches or refuses them",
                    extra={"bootstrap_servers": list(self._config.servers), "error": str(exc)},
                )
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, 15.0)
                continue
            except asyncio.CancelledError:  # `stop` while connecting: close what was opened, then go
                with contextlib.suppress(Exception):
                    await producer.stop()
                raise
            self._producer = producer
            self._connected.set()
            log.info("connected to Kafka", extra={"bootstrap_servers": list(self._config.servers)})
            return

    async def stop(self) -> None:
        if self._connector is not None:
            self._connector.cancel()
            await asyncio.gather(self._connector, return_exceptions=True)
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
        self._connected.clear()

    async def _partition(self, topic: str) -> int:
        assert self._producer is not None
        partitions = await self._producer.partitions_for(topic)
        counter = self._rotation.get(topic)
        if counter is None:
            counter = self._rotation[topic] = itertools.count(random.randrange(1 << 16))
        ordered = sorted(partitions)
        return int(ordered[next(counter) % len(ordered)])

    async def publish(self, records: Sequence[Record]) -> None:
        producer = self._producer
        if producer is None:
            raise BusUnavailable("not connected to Kafka yet")
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[Any]] = []
        try:
            async with asyncio.timeout(self._config.produce_timeout_seconds):
                await self._send(producer, records, futures)
                # Not gather: a caller's deadline must not cancel these (see _enqueue).
                if futures:
                    done, _ = await asyncio.wait(futures, return_when=asyncio.FIRST_EXCEPTION)
                    for future in done:
                        future.result()
        except TimeoutError:
            self._last_failure = loop.time()
            raise BusUnavailable(
                f"Kafka did not acknowledge within {self._config.produce_timeout_seconds:g} s"
            ) from None
        except MessageSizeTooLargeError as exc:
            raise RecordTooLarge(
                "an event is larger than Kafka accepts: raise the broker's message.max.bytes and "
                "bus.kafka.max_request_bytes together"
            ) from exc
        except KafkaError as exc:
            self._last_failure = loop.time()
            raise BusUnavailable(f"Kafka refused the batch: {exc}") from exc
        self._last_ok = loop.time()

    async def _send(self, producer: AIOKafkaProducer, records: Sequence[Record],
                    futures: list[asyncio.Future[Any]]) -> None:
        """Queue the records, one producer batch per topic; each batch's future is added to
        `futures` as soon as it is queued (a deadline may interrupt this in the middle)."""
        by_topic: dict[str, list[Record]] = defaultdict(list)
        for record in records:
            by_topic[record.topic].append(record)
        for topic, group in by_topic.items():
            partition = await self._partition(topic)
            start = 0
            while True:
                batch = producer.create_batch()
                end = _fill(batch, group, start)
                if end == start:  # not even one record fits an empty batch: as aiokafka's append does
                    record = group[start]
                    batch.append(key=record.key, value=record.value, timestamp=None, headers=record.headers)
                    end += 1
                batch.close()
                futures.append(await _enqueue(producer, batch, topic, partition))
                if end >= len(group):
                    break
                start = end

    async def ready(self) -> bool:
        producer = self._producer
        if producer is None:
            return False
        loop = asyncio.get_running_loop()
        if self._last_ok >= self._last_failure and loop.time() - self._last_ok < 5.0:
            return True
        try:
            ok = bool(await asyncio.wait_for(producer.client.force_metadata_update(), 2.0))
        except (TimeoutError, KafkaError, OSError):
            ok = False
        if ok:
            self._last_ok = loop.time()
        return ok


def _fill(batch: BatchBuilder, records: Sequence[Record], start: int) -> int:
    """Append `records[start:]` to `batch` until it is full; returns the index of the first
    record not appended.

    The same records, bytes and timestamps as `batch.append` one record at a time, without its
    Python layer around the C record builder (keyword call, serializers, checks): ~0.6 µs a
    record less, a third of the append's cost (bench/publish.py). Used only when the batch is
    the plain one siemgate's producer makes (aiokafka's DefaultRecordBatchBuilder inside, no
    serializers); otherwise the public `append`.
    """
    builder = getattr(batch, "_builder", None)
    offset = getattr(batch, "_relative_offset", None)
    end = len(records)
    if (not isinstance(builder, DefaultRecordBatchBuilder) or type(offset) is not int or batch.closed()
            or getattr(batch, "_key_serializer", True) is not None
            or getattr(batch, "_value_serializer", True) is not None):
        for index in range(start, end):
            record = records[index]
            if batch.append(key=record.key, value=record.value, timestamp=None, headers=record.headers) is None:
                return index
        return end
    append = builder.append
    index = start
    try:
        while index < end:
            record = records[index]
            if append(offset, None, record.key, record.value, record.headers) is None:
                batch.close()  # full: as `BatchBuilder.append` does
                break
            offset += 1
            index += 1
    finally:
        batch._relative_offset = offset  # what `record_count()` reports
    return index


async def _enqueue(producer: AIOKafkaProducer, batch: Any, topic: str, partition: int) -> asyncio.Future[Any]:
    """`send_batch`, waiting as long as the caller's deadline allows.

    aiokafka queues one unsent batch per partition; concurrent requests wait for it to drain,
    and its wait subtracts the *total* elapsed time on every wake-up, so under contention it
    gives up long before its timeout. The caller's `asyncio.timeout` is the real deadline.

    The future returned is `asyncio.shield(batch.future)`. Cancelling it (a deadline passing
    in `gather`) detaches it from aiokafka's future, whose failure (RequestTimedOutError,
    NodeNotReadyError, an expired batch...) aiokafka then leaves for the batch API's caller to
    read: nobody did, and asyncio logged "Future exception was never retrieved" on the ingest
    after every Kafka timeout. So the future is never cancelled (`publish` waits with
    `asyncio.wait`), and its outcome is read whenever it comes, even after the caller left.
    """
    while True:
        try:
            future: asyncio.Future[Any] = await producer.send_batch(batch, topic, partition=partition)
        except KafkaTimeoutError:
            continue
        future.add_done_callback(_read_outcome)
        return future


def _read_outcome(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # read: Kafka's answer reached a caller, or the caller had left
