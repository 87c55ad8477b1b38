"""siemgate.bus.kafka's record batches: `_fill` (records appended straight to aiokafka's C
record builder) builds the batches aiokafka's own `BatchBuilder.append` builds, record for
record, split at the same places, with the record count aiokafka's idempotent producer
numbers its sequences by. Read back with aiokafka's own record parser."""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.memory_records import MemoryRecords

from siemgate.bus.kafka import _fill
from siemgate.record import Record

CODECS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


def _records(count: int, size: int) -> list[Record]:
    headers = [("kind", b"event"), ("severity", b"high"), ("integration", "appsëc".encode())]
    return [Record("p.events.high", f"id-{i}".encode(), (b'{"seq":%d,"pad":"' % i) + b"x" * (size + i % 7) + b'"}',
                   headers, "high", "event") for i in range(count)]


def _batches(records: list[Record], batch_size: int, codec: int, *, fast: bool) -> list[BatchBuilder]:
    """The batches `KafkaPublisher._send` builds (fast) or aiokafka's append alone builds."""
    out: list[BatchBuilder] = []
    start = 0
    while start < len(records):
        batch = BatchBuilder(batch_size, codec)
        if fast:
            end = _fill(batch, records, start)
        else:
            end = start
            while end < len(records) and batch.append(
                    key=records[end].key, value=records[end].value, timestamp=None, headers=records[end].headers):
                end += 1
        assert end > start
        batch.close()
        out.append(batch)
        start = end
    return out


def _read(batch: BatchBuilder) -> list[tuple[Any, ...]]:
    parsed = MemoryRecords(bytes(batch._build()))
    rows = []
    while parsed.has_next():
        one = parsed.next_batch()
        assert one.validate_crc()
        rows += [(r.offset, r.key, r.value, tuple(r.headers)) for r in one]
    return rows


@pytest.mark.parametrize("codec", sorted(CODECS))
@pytest.mark.parametrize(("count", "size", "batch_size"), [(500, 40, 1 << 20), (300, 800, 16 * 1024),
                                                            (40, 8000, 30 * 1024)])
def test_fill_builds_what_aiokafkas_append_builds(codec: str, count: int, size: int, batch_size: int) -> None:
    records = _records(count, size)
    fast = _batches(records, batch_size, CODECS[codec], fast=True)
    slow = _batches(records, batch_size, CODECS[codec], fast=False)
    assert [b.record_count() for b in fast] == [b.record_count() for b in slow]
    assert sum(b.record_count() for b in fast) == count
    assert [_read(b) for b in fast] == [_read(b) for b in slow]
    every = [row for b in fast for row in _read(b)]
    assert [(key, value, headers) for _, key, value, headers in every] == \
        [(r.key, r.value, tuple(r.headers)) for r in records]
    if batch_size < count * size:
        assert len(fast) > 1  # the split itself was exercised


def test_a_record_larger_than_a_batch_goes_alone_into_an_empty_batch() -> None:
    records = _records(3, 5000)
    batches = _batches(records, 1024, 0, fast=True)
    assert [b.record_count() for b in batches] == [1, 1, 1]
    assert [row[2] for b in batches for row in _read(b)] == [r.value for r in records]


def test_fill_continues_a_batch_and_stops_at_a_closed_one() -> None:
    records = _records(10, 40)
    batch = BatchBuilder(1 << 20, 0)
    assert _fill(batch, records, 0) == 10
    assert _fill(batch, records, 0) == 10  # appended again after the first ten
    assert batch.record_count() == 20
    assert [row[0] for row in _read(batch)] == list(range(20))
    closed = BatchBuilder(1 << 20, 0)
    closed.close()
    assert _fill(closed, records, 0) == 0
    assert closed.record_count() == 0


def test_a_batch_with_serializers_takes_aiokafkas_append() -> None:
    records = _records(5, 40)
    batch = BatchBuilder(1 << 20, 0, value_serializer=lambda value: b"<" + value + b">")
    assert _fill(batch, records, 1) == 5
    assert [row[2] for row in _read(batch)] == [b"<" + r.value + b">" for r in records[1:]]
