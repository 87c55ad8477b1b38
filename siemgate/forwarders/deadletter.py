"""Dead letters: events a sink refused for good go to `<prefix>.dlq.<sink>`, never vanish.

A dead letter's value is JSON: the sink, the reason, the attempt count, when, and the
original record spliced in byte for byte. Its key is the event id; its headers carry
`sink`, `reason`, `kind` and `severity`. `siemgate dlq list|replay` reads them back.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import orjson
from aiokafka import AIOKafkaProducer

from siemgate.config import KafkaConfig
from siemgate.forwarders.normalize import NormalizedEvent


def dlq_topic(prefix: str, sink: str) -> str:
    return f"{prefix}.dlq.{sink}"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    event: NormalizedEvent
    reason: str
    attempts: int


def encode(sink: str, letter: DeadLetter) -> bytes:
    head = orjson.dumps(
        {
            "sink": sink,
            "reason": letter.reason,
            "attempts": letter.attempts,
            "failed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "id": letter.event.id,
        }
    )
    # The original record last, spliced in: it is kept exactly as it was on the bus.
    return head[:-1] + b',"record":' + letter.event.record + b"}"


class DeadLetterWriter:
    """Produces dead letters with acks=all; `write` returns once Kafka has them."""

    def __init__(self, producer: AIOKafkaProducer, config: KafkaConfig, sink: str) -> None:
        self._producer = producer
        self._topic = dlq_topic(config.topic_prefix, sink)
        self._sink = sink

    @property
    def topic(self) -> str:
        return self._topic

    async def write(
        self, letters: Sequence[DeadLetter], extra_headers: Sequence[tuple[str, bytes]] = ()
    ) -> None:
        futures = []
        for letter in letters:
            event = letter.event
            futures.append(
                await self._producer.send(
                    self._topic,
                    value=encode(self._sink, letter),
                    key=event.id.encode(),
                    headers=[
                        ("sink", self._sink.encode()),
                        ("reason", reason_label(letter.reason).encode()),
                        ("kind", event.kind.encode()),
                        ("severity", event.severity.encode()),
                        *extra_headers,
                    ],
                )
            )
        for future in futures:
            await future


def reason_label(reason: str) -> str:
    """A short, bounded label for a reason (metrics and headers): its first words."""
    label = reason.split(":", 1)[0].strip().lower().replace(" ", "_")
    return label[:48] or "refused"

