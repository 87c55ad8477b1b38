"""`siemgate dlq -c FILE list|replay --sink NAME`: read back and re-deliver dead letters.

`list` prints every dead letter of a sink (from the beginning of its topic). `replay`
sends them to the sink again through a consumer group of its own
(`<group>-dlq-replay`), so a dead letter is replayed once; one the sink refuses again is
written back to the dead-letter topic with its attempt count raised (and not replayed again
in the same run). Both stop when the topic has nothing more to give.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import TextIO

import msgspec

from siemgate.bus.base import Bus, Consumer, Message, Partition
from siemgate.bus.open import open_bus
from siemgate.config import Config
from siemgate.errors import BusError, RetryableSinkError, SinkAuthError
from siemgate.forwarders.deadletter import DeadLetter, DeadLetterWriter, dlq_topic
from siemgate.forwarders.normalize import Normalizer
from siemgate.forwarders.runtime import group_id
from siemgate.forwarders.service import selected_sinks
from siemgate.forwarders.sinks.registry import create_sink
from siemgate.record import dead_letter_decoder
from siemgate.terminal import printable

IDLE_SECONDS = 2.0
_RUN_HEADER = "replay-run"


async def _drain(consumer: Consumer) -> AsyncIterator[Mapping[Partition, Sequence[Message]]]:
    """Yield batches of records until the topic has been idle for IDLE_SECONDS."""
    idle_since = asyncio.get_running_loop().time()
    while True:
        fetched = await consumer.getmany(timeout_ms=200, max_records=500)
        records = [r for part in fetched.values() for r in part]
        now = asyncio.get_running_loop().time()
        if records:
            idle_since = now
            yield fetched
        elif now - idle_since >= IDLE_SECONDS:
            return


async def list_dead_letters(config: Config, sink: str, out: TextIO) -> int:
    selected_sinks(config, [sink])
    async with open_bus(config, role="tool") as opened:
        return await _list(opened.bus, dlq_topic(config.bus.topic_prefix, sink), sink, out)


async def _list(bus: Bus, topic: str, sink: str, out: TextIO) -> int:
    consumer = bus.consumer(group=None, max_records=500, fetch_max_wait_ms=100)
    try:
        await consumer.start()
    except BusError as exc:
        out.write(f"cannot reach the bus: {printable(exc)}\n")
        return 1
    consumer.subscribe([topic])
    count = 0
    try:
        out.write(f"{'partition:offset':<18} {'failed_at':<21} {'attempts':>8}  {'id':<36} reason\n")
        async for fetched in _drain(consumer):
            for tp, records in sorted(fetched.items()):
                for record in records:
                    count += 1
                    where = f"{tp.partition}:{record.offset}"
                    try:
                        letter = dead_letter_decoder.decode(record.value or b"")
                    except (msgspec.DecodeError, RecursionError) as exc:
                        out.write(f"{where:<18} {'':<21} {'':>8}  {'':<36} "
                                  f"not a siemgate dead letter: {printable(exc)}\n")
                        continue
                    # The id is the vendor's, the reason often quotes the sink's answer: escaped.
                    out.write(f"{where:<18} {printable(letter.failed_at):<21} {letter.attempts:>8}  "
                              f"{printable(letter.id):<36} {printable(letter.reason)}\n")
    finally:
        await consumer.stop()
    out.write(f"\n{count} dead letter(s) for sink {sink}\n")
    return 0


async def replay_dead_letters(config: Config, sink_name: str, out: TextIO) -> int:
    selected_sinks(config, [sink_name])
    async with open_bus(config, role="tool") as opened:
        return await _replay(config, opened.bus, sink_name, out)


async def _replay(config: Config, bus: Bus, sink_name: str, out: TextIO) -> int:
    (sink_config,) = selected_sinks(config, [sink_name])
    sink = create_sink(sink_config.settings)
    normalizer = Normalizer(config.normalize)
    run_id = uuid.uuid4().hex.encode()
    prefix = config.bus.topic_prefix
    consumer = bus.consumer(group=f"{group_id(config, sink_name)}-dlq-replay", max_records=500, fetch_max_wait_ms=100)
    publisher = bus.publisher()
    try:
        await consumer.start()
        await publisher.start()
        if not await _wait_ready(publisher.ready):
            raise BusError("the bus does not accept writes")
    except BusError as exc:
        await consumer.stop()
        await publisher.stop()
        out.write(f"cannot reach the bus: {printable(exc)}\n")
        return 1
    consumer.subscribe([dlq_topic(prefix, sink_name)])
    writer = DeadLetterWriter(publisher, prefix, sink_name)
    delivered = refused = 0
    await sink.start()
    try:
        async for fetched in _drain(consumer):
            letters = [
                dead_letter_decoder.decode(record.value or b"")
                for records in fetched.values()
                for record in records
                if dict(record.headers).get(_RUN_HEADER) != run_id
            ]
            if letters:
                # The record exactly as it was on the bus.
                events = [normalizer.normalize(bytes(letter.record)) for letter in letters]
                try:
                    result = await sink.send(events)
                except (RetryableSinkError, SinkAuthError) as exc:
                    out.write(f"the sink is not accepting events ({printable(exc)}); nothing more replayed\n")
                    return 1
                rejected = dict(result.rejected)
                again = [DeadLetter(events[i], reason, letters[i].attempts + 1)
                         for i, reason in rejected.items()]
                if again:
                    await writer.write(again, extra_headers=[(_RUN_HEADER, run_id)])
                refused += len(again)
                delivered += len(events) - len(again) - len(result.retry)
                if result.retry:
                    out.write(f"{len(result.retry)} event(s) refused for now; run replay again later\n")
                    return 1
            await consumer.commit({tp: records[-1].offset + 1 for tp, records in fetched.items()})
    finally:
        await sink.close()
        await consumer.stop()
        await publisher.stop()
    out.write(f"replayed to {sink_name}: {delivered} delivered, {refused} refused again "
              f"(written back to {dlq_topic(prefix, sink_name)})\n")
    return 0


async def _wait_ready(ready: Callable[[], Awaitable[bool]], timeout: float = 15.0) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await ready():
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(0.1)
    return True
