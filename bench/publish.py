"""The bus alone: the cost of putting one webhook batch on Kafka and of reading records back.

    python bench/publish.py [--rounds 100] [--shape tiny,simulator,large]
                            [--compression zstd,lz4,snappy,none] [--base DIR] [--consume 200]

Against a Tansu broker it starts (or KAFKA_BOOTSTRAP_SERVERS), under uvloop and with the GC
tuned as `siemgate` runs, for each payload shape (`bench/ingest.py --shapes`'s bodies through
the ingest's `BatchParser`: 500 records as the ingest makes them) and compression, round
after round (so that the machine's load falls on all alike):

- `publisher`: `KafkaPublisher.publish` of one batch, acks=all, until every record is acked;
- `base`: the same with the `siemgate` of another checkout (`--base DIR`, e.g. `git archive
  HEAD siemgate | tar -x -C DIR` before a change), in the same process;
- `per-record`: the same records through aiokafka's `send()`, one future per record, all
  awaited (a producer written the obvious way);
- `bare`: one produce of one 1-byte record, uncompressed: the broker's round trip;
- `embedded`: the embedded bus's publish (`siemgate run`): the batch in a segment, fsync'd,
  indexed in SQLite (`--work DIR`: where; default a temporary directory; fsync costs what
  that file system's costs); `emb. base`: the same with `--base`'s.

Then (`--consume N`, default 200 batches of each shape) a consumer without a group reads the
records back through `getmany` (what the forwarder calls), touching each record's offset,
value and headers: CPU per record, for Kafka (and `--base`'s) and the embedded bus.

Prints wall time per batch (p50 / p90 ms) and this process's CPU time per batch (ms, median),
the broker's CPU when it was started here (mean, ms: /proc ticks, coarse) and the load average.
Tansu keeps data in memory on one node: a real cluster adds network and replication to every
round trip.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "standins" / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from aiokafka import AIOKafkaProducer  # noqa: E402

from siemgate.bus.embedded import EmbeddedBus, EmbeddedLog  # noqa: E402
from siemgate.bus.kafka import KafkaPublisher, client_options, ensure_topics  # noqa: E402
from siemgate.bus.kafka_bus import KafkaConsumer  # noqa: E402
from siemgate.config import KafkaConfig  # noqa: E402
from siemgate.gc_tuning import tune_gc  # noqa: E402
from siemgate.record import Record, all_topics  # noqa: E402
from siemgate_standins.broker import Broker, start_tansu  # noqa: E402

PREFIX = "bench"


def shape_records(shapes: list[str], prefix: str) -> dict[str, list[list[Record]]]:
    """Per shape, four batches of records as the ingest makes them: `bench/ingest.py --shapes`'s
    bodies (`bench/parse_shapes.py`) through the ingest's `BatchParser`, each of another seed."""
    from parse_shapes import ingest_shapes

    from siemgate.config import parse_config
    from siemgate.ingest.batch import BatchParser

    config = parse_config("integrations: [{name: appsec, auth: {header: X-K, values: [vvvv]}}]", {})
    parser = BatchParser(config.integrations[0], prefix)
    bodies = [ingest_shapes(seed) for seed in (17, 18, 19, 20)]
    return {shape: [parser.parse(b[shape], peer="127.0.0.1", max_events=10_000).records for b in bodies]
            for shape in shapes}


def base_modules(root: str) -> tuple[Any, Any, Any, Any]:
    """(KafkaPublisher, KafkaConsumer, EmbeddedBus, EmbeddedLog) of the `siemgate` under `root`,
    imported beside this one."""
    from parse_shapes import other_siemgate

    with other_siemgate(root) as load:
        kafka, kafka_bus = load("siemgate.bus.kafka"), load("siemgate.bus.kafka_bus")
        embedded = load("siemgate.bus.embedded")
        return kafka.KafkaPublisher, kafka_bus.KafkaConsumer, embedded.EmbeddedBus, embedded.EmbeddedLog


def broker_cpu(pid: int | None) -> float:
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclasses.dataclass
class Timings:
    wall: list[float] = dataclasses.field(default_factory=list)
    cpu: list[float] = dataclasses.field(default_factory=list)
    broker: list[float] = dataclasses.field(default_factory=list)

    def row(self, name: str) -> str:
        wall = sorted(self.wall)
        p50, p90 = statistics.median(wall) * 1e3, wall[int(len(wall) * 0.9)] * 1e3
        cpu, broker = statistics.median(self.cpu) * 1e3, statistics.mean(self.broker) * 1e3
        return f"  {name:<11} wall p50 {p50:7.2f}  p90 {p90:7.2f} ms   cpu {cpu:7.3f} ms   broker cpu {broker:5.2f} ms"


async def timed(into: Timings, pid: int | None, work: Callable[[], Awaitable[None]]) -> None:
    b0, c0, w0 = broker_cpu(pid), time.process_time(), time.perf_counter()
    await work()
    into.wall.append(time.perf_counter() - w0)
    into.cpu.append(time.process_time() - c0)
    into.broker.append(broker_cpu(pid) - b0)


async def publishing(args: argparse.Namespace, broker: Broker, batches: dict[str, list[list[Record]]],
                     base: tuple[Any, Any, Any, Any] | None, work: Path) -> None:
    pid = broker.process.pid if broker.process else None
    logs = [EmbeddedLog(work / "bus.db", prefix=PREFIX)]
    embedded = {"embedded": EmbeddedBus(logs[0]).publisher()}
    if base is not None:
        logs.append(base[3](work / "base-bus.db", prefix=PREFIX))
        embedded["emb. base"] = base[2](logs[1]).publisher()
    for log in logs:
        await log.open()
    for publisher in embedded.values():
        await publisher.start()
    config = KafkaConfig(bootstrap_servers=broker.bootstrap_servers, topic_prefix=PREFIX,
                         idempotence=broker.idempotence)
    await ensure_topics(config)
    bare = AIOKafkaProducer(**client_options(config), acks="all", linger_ms=0)
    await bare.start()
    try:
        for compression in args.compression:
            configured = dataclasses.replace(config, compression=compression)
            publishers: dict[str, Any] = {"publisher": KafkaPublisher(configured)}
            if base is not None:
                publishers["base"] = base[0](configured)
            for publisher in publishers.values():
                await publisher.start()
                assert await publisher.wait_connected(30), "Kafka not reachable"
            publishers.update(embedded)
            per_record = AIOKafkaProducer(**client_options(configured), acks="all", linger_ms=0,
                                          enable_idempotence=configured.idempotence,
                                          compression_type=None if compression == "none" else compression,
                                          max_batch_size=configured.max_batch_bytes,
                                          max_request_size=configured.max_request_bytes)
            await per_record.start()
            try:
                for shape in args.shape:
                    await _round_robin(args, pid, shape, compression, batches[shape], publishers, per_record, bare)
            finally:
                await per_record.stop()
                for name, publisher in publishers.items():
                    if name not in embedded:
                        await publisher.stop()
    finally:
        await bare.stop()
        for publisher in embedded.values():
            await publisher.stop()
        for log in logs:
            await log.close()


async def _round_robin(args: argparse.Namespace, pid: int | None, shape: str, compression: str,
                       batches: list[list[Record]], publishers: dict[str, Any], per_record: AIOKafkaProducer,
                       bare: AIOKafkaProducer) -> None:
    turn = 0

    def next_batch() -> list[Record]:
        nonlocal turn
        turn += 1
        return batches[turn % len(batches)]

    async def send_each() -> None:
        futures = [await per_record.send(r.topic, r.value, key=r.key, headers=r.headers) for r in next_batch()]
        await asyncio.gather(*futures)

    async def one_bare() -> None:
        await bare.send_and_wait(all_topics(PREFIX)[0], b"x")

    work: dict[str, Callable[[], Awaitable[None]]] = {
        name: (lambda p=publisher: p.publish(next_batch())) for name, publisher in publishers.items()}
    if not args.no_per_record:
        work["per-record"] = send_each
    work["bare"] = one_bare
    timings = {name: Timings() for name in work}
    for fn in work.values():
        for _ in range(3):
            await fn()
    for _ in range(args.rounds):
        for name, fn in work.items():
            await timed(timings[name], pid, fn)
    values = sum(len(r.value) for r in batches[0])
    print(f"{shape} ({len(batches[0])} records, {values / 1024:,.0f} KiB of values), {compression}:", flush=True)
    for name, t in timings.items():
        print(t.row(name), flush=True)


async def consuming(args: argparse.Namespace, broker: Broker, batches: dict[str, list[list[Record]]],
                    base: tuple[Any, Any, Any, Any] | None, work: Path) -> None:
    for shape in args.shape:
        prefix = f"{PREFIX}-read-{shape}"
        config = KafkaConfig(bootstrap_servers=broker.bootstrap_servers, topic_prefix=prefix,
                             idempotence=broker.idempotence, compression=args.compression[0])
        await ensure_topics(config)
        log = EmbeddedLog(work / f"read-{shape}.db", prefix=prefix)
        await log.open()
        shaped = [[r._replace(topic=r.topic.replace(PREFIX, prefix, 1)) for r in batch] for batch in batches[shape]]
        for publisher in (KafkaPublisher(config), EmbeddedBus(log).publisher()):
            await publisher.start()
            if isinstance(publisher, KafkaPublisher):
                assert await publisher.wait_connected(30)
            for i in range(args.consume):
                await publisher.publish(shaped[i % len(shaped)])
            await publisher.stop()
        expected = sum(len(shaped[i % len(shaped)]) for i in range(args.consume))
        options: dict[str, Any] = {"group": None, "max_records": 2000, "fetch_max_wait_ms": 100}
        consumers: dict[str, Callable[[], Any]] = {
            "consumer": functools.partial(KafkaConsumer, config, **options)}
        if base is not None:
            consumers["base"] = functools.partial(base[1], config, **options)
        consumers["embedded"] = functools.partial(EmbeddedBus(log).consumer, **options)
        results: dict[str, list[float]] = {name: [] for name in consumers}
        for _ in range(args.consume_rounds):
            for name, make in consumers.items():
                results[name].append(await _read_all(make(), prefix, expected))
        await log.close()
        print(f"read back: {shape}, {expected:,} records, {args.compression[0]}, CPU µs per record "
              "(min / median of rounds):", flush=True)
        for name, values in results.items():
            print(f"  {name:<11} {min(values) * 1e6:6.2f} / {statistics.median(values) * 1e6:6.2f}", flush=True)


async def _read_all(consumer: Any, prefix: str, expected: int) -> float:
    await consumer.start()
    try:
        consumer.subscribe(all_topics(prefix))
        total, cpu = 0, 0.0
        deadline = time.monotonic() + 120
        while total < expected and time.monotonic() < deadline:
            c0 = time.process_time()
            fetched = await consumer.getmany(timeout_ms=500, max_records=2000)
            for messages in fetched.values():
                for message in messages:
                    _ = (message.offset, message.value, message.headers)
                total += len(messages)
            cpu += time.process_time() - c0
        assert total == expected, f"read {total} of {expected}"
        return cpu / total
    finally:
        await consumer.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    split = lambda text: [n.strip() for n in text.split(",") if n.strip()]  # noqa: E731
    parser.add_argument("--rounds", type=int, default=100, help="publishes of each kind per shape (default 100)")
    parser.add_argument("--shape", type=split, default=["tiny", "simulator", "large"])
    parser.add_argument("--compression", type=split, default=["zstd", "lz4", "snappy", "none"])
    parser.add_argument("--base", metavar="DIR", help="a checkout (its `siemgate` directory) to compare with")
    parser.add_argument("--no-per-record", action="store_true", help="skip the send()-per-record producer")
    parser.add_argument("--consume", type=int, default=200, help="batches per shape read back (0: none)")
    parser.add_argument("--consume-rounds", type=int, default=3)
    parser.add_argument("--work", type=Path, help="where the embedded bus's files go (default: a temporary directory)")
    args = parser.parse_args()
    import uvloop

    base = base_modules(args.base) if args.base else None
    batches = shape_records(args.shape, PREFIX)
    tune_gc()
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    broker = Broker(external, embedded=False) if external else start_tansu()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; cpus: {os.cpu_count()}", flush=True)
    try:
        with tempfile.TemporaryDirectory(dir=args.work, prefix="bench-publish-") as work:
            if args.rounds:
                uvloop.run(publishing(args, broker, batches, base, Path(work)))
            if args.consume:
                uvloop.run(consuming(args, broker, batches, base, Path(work)))
    finally:
        broker.stop()
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)


if __name__ == "__main__":
    main()
