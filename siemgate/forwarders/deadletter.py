"""Dead letters: events a sink refused for good go to `<prefix>.dlq.<sink>`, never vanish.

A dead letter's value is a `siemgate.record.DeadLetterValue`: the sink, the reason, the
attempt count, when, and the original record, byte for byte. Its key is the event id; its headers carry
`sink`, `reason`, `kind` and `severity`. `siemgate dlq list|replay` reads them back.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec

from siemgate.bus.base import Publisher
from siemgate.forwarders.normalize import NormalizedEvent
from siemgate.record import DeadLetterValue, Record, canonical_severity, encode_value


def dlq_topic(prefix: str, sink: str) -> str:
    return f"{prefix}.dlq.{sink}"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    event: NormalizedEvent
    reason: str
    attempts: int


def encode(sink: str, letter: DeadLetter) -> bytes:
    """The dead letter's value; the original record is kept exactly as it was on the bus."""
    return encode_value(DeadLetterValue(
        sink, letter.reason, letter.attempts, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), letter.event.id,
        msgspec.Raw(letter.event.record),
    ))


class DeadLetterWriter:
    """Publishes dead letters; `write` returns once the bus has them (Kafka: acks=all)."""

    def __init__(self, publisher: Publisher, prefix: str, sink: str) -> None:
        self._publisher = publisher
        self._topic = dlq_topic(prefix, sink)
        self._sink = sink

    @property
    def topic(self) -> str:
        return self._topic

    async def write(
        self, letters: Sequence[DeadLetter], extra_headers: Sequence[tuple[str, bytes]] = ()
    ) -> None:
        """Raises BusError (BusUnavailable) when the bus did not take them."""
        records = []
        for letter in letters:
            event = letter.event
            headers = [
                ("sink", self._sink.encode()),
                ("reason", reason_label(letter.reason).encode()),
                ("kind", event.kind.encode()),
                ("severity", event.severity.encode()),
                *extra_headers,
            ]
            records.append(Record(self._topic, event.id.encode(), encode(self._sink, letter), headers,
                                  canonical_severity(event.severity), event.kind))
        await self._publisher.publish(records)


def reason_label(reason: str) -> str:
    """A short, bounded label for a reason (metrics and headers): its first words."""
    label = reason.split(":", 1)[0].strip().lower().replace(" ", "_")
    return label[:48] or "refused"

