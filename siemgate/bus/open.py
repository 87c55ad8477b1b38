"""`open_bus(config, role=...)`: the one place that decides Kafka or the embedded log and
builds the bus a process uses.

    role      Kafka                                          embedded (bus.type: embedded)
    run       KafkaBus + the ingest's spooling publisher     the log (retention: the sinks' groups),
                                                              its publisher for the ingest
    ingest    KafkaBus + the ingest's spooling publisher     refused: `siemgate run` does it
    forward   KafkaBus                                        refused: `siemgate run` does it
    tool      KafkaBus                                        the log, no retention (`siemgate dlq`:
                                                              safe beside a running `siemgate run`)

What is opened here (the spool, the log) is open before the block runs, so that a spool or
log that cannot be opened stops the start with its reason, and closed when it ends. Kafka
clients (publishers, consumers) are started and stopped by their users.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from siemgate.bus.base import Bus, Publisher
from siemgate.bus.embedded import EmbeddedBus, EmbeddedLog
from siemgate.config import Config, KafkaConfig
from siemgate.errors import ConfigError, StoreError
from siemgate.private_files import open_private, private_dir

Role = Literal["run", "ingest", "forward", "tool"]

# The commands that run against Kafka only, and what they do there.
_KAFKA_ONLY: dict[Role, str] = {"ingest": "produces to Kafka", "forward": "runs against Kafka"}


@dataclass(frozen=True, slots=True)
class OpenedBus:
    # Consumers, topics, and a plain publisher (the forwarders' dead letters).
    bus: Bus
    # What the ingest publishes with (roles run and ingest): the embedded log's publisher, or
    # Kafka behind the local spool. None for the other roles.
    ingest_publisher: Publisher | None
    # The embedded log when it is the bus: its retention follows the configured sinks.
    log: EmbeddedLog | None


@contextlib.contextmanager
def _only_run(path: str) -> Iterator[None]:
    """One `siemgate run` per embedded log: two would each forward every record (every event
    delivered twice, two writers on one file sink) and each run retention on the other's reads.
    An flock on `<path>.run-lock`, released by the kernel however the process ends."""
    lock = Path(f"{path}.run-lock")
    try:
        private_dir(lock.parent)
        fd = open_private(lock, os.O_RDWR | os.O_CREAT)
    except OSError as exc:
        raise StoreError(f"cannot use the embedded log {path}: {exc.strerror or exc}. Fix bus.path (a file "
                         "siemgate can write) or its directory's permissions") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):  # e.g. ENOLCK: a file system without locks
            raise StoreError(f"cannot lock {lock}: {exc.strerror or exc}. Keep bus.path on a local volume") from exc
        raise StoreError(f"the embedded log {path} is in use by another `siemgate run`: stop it first, or give "
                         "this one its own bus.path (each run forwards every record of its log)") from exc
    try:
        yield
    finally:
        os.close(fd)  # releases the flock


@contextlib.asynccontextmanager
async def _embedded(config: Config, role: Role, retention_groups: Sequence[str]) -> AsyncIterator[OpenedBus]:
    groups = retention_groups if role == "run" else ()
    # The cap (bus.max_bytes) bounds what the ingest appends; `siemgate dlq` (role tool) may
    # still write dead letters back past it, as before.
    log = EmbeddedLog(config.bus.path, prefix=config.bus.topic_prefix, retention_groups=groups,
                      max_bytes=config.bus.max_bytes if role == "run" else None)
    await log.open()
    try:
        bus = EmbeddedBus(log)
        yield OpenedBus(bus, bus.publisher() if role == "run" else None, log)
    finally:
        await log.close()


def kafka_config(config: Config, role: Role) -> KafkaConfig:
    """The Kafka settings; a ConfigError naming `siemgate run` when a Kafka-only command
    is given an embedded-bus config."""
    if config.bus.type != "kafka" or config.bus.kafka is None:
        raise ConfigError("bus.type", f"`siemgate {role}` {_KAFKA_ONLY.get(role, 'runs against Kafka')}; with "
                                      "bus.type: embedded, `siemgate run` runs the ingest and the forwarders in one "
                                      "process")
    return config.bus.kafka


@contextlib.asynccontextmanager
async def open_bus(config: Config, *, role: Role, retention_groups: Sequence[str] = ()) -> AsyncIterator[OpenedBus]:
    """The configured bus, open for the block. `retention_groups`: on the embedded bus in role
    `run`, the consumer groups whose progress lets records be deleted (every sink's)."""
    if config.bus.type == "embedded" and role not in _KAFKA_ONLY:
        if role == "run":
            with _only_run(config.bus.path):
                async with _embedded(config, role, retention_groups) as opened:
                    yield opened
        else:
            async with _embedded(config, role, ()) as opened:
                yield opened
        return
    kafka = kafka_config(config, role)
    from siemgate.bus.kafka_bus import KafkaBus

    if role not in ("run", "ingest"):
        yield OpenedBus(KafkaBus(kafka), None, None)
        return
    from siemgate.bus.spooling import opened_spooling_publisher

    async with opened_spooling_publisher(kafka, config.bus.spool) as spooling:
        yield OpenedBus(KafkaBus(kafka), spooling, None)
