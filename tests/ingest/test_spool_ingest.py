"""The ingest with its local spool (what `siemgate ingest` runs on Kafka), over real HTTP,
against a Tansu broker of the test's own that it stops, restarts, cuts off or slows down.

Every acked event must reach Kafka once it is back (the record contract), with the order of
first occurrences within a severity kept (topics have one partition here; duplicates are
allowed). 503 only when Kafka is away AND the spool is full or unwritable.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from siemgate.bus.spooling import SpoolingPublisher
from siemgate.config import Config
from siemgate.record import all_topics
from siemgate_standins.broker import free_port
from siemgate_standins.tcp_proxy import TcpProxy
from tests.ingest.conftest import TansuFactory
from tests.support import (
    PrivateTansu,
    RunningIngest,
    Sender,
    consume_keys,
    make_config,
    metric_value,
    spooling_ingest,
    wait_until,
)

pytestmark = pytest.mark.anyio

PRODUCE_TIMEOUT = 4.0
ACK_DEADLINE = 1.0


def config_for(tmp_path: Path, tansu: PrivateTansu, bootstrap: str | None = None, **spool: object) -> Config:
    return make_config(tmp_path, tansu.broker, bootstrap=bootstrap, partitions=1, produce_timeout=PRODUCE_TIMEOUT,
                       spool={"ack_deadline_seconds": ACK_DEADLINE, **spool})


def publisher_of(ingest: RunningIngest) -> SpoolingPublisher:
    assert isinstance(ingest.publisher, SpoolingPublisher)
    return ingest.publisher


async def drained(ingest: RunningIngest, timeout: float = 90.0) -> None:
    publisher = publisher_of(ingest)
    await wait_until(lambda: not publisher.spooling and publisher.spool.events == 0,
                     "the spool to drain to Kafka", timeout)


async def metrics(client: httpx.AsyncClient, ingest: RunningIngest) -> str:
    return (await client.get(ingest.url + "/metrics")).text


async def check_delivered(tansu: PrivateTansu, ingest: RunningIngest, sender: Sender,
                          only: set[str] | None = None) -> None:
    expected = set(sender.acked_ids) if only is None else only
    by_topic = await consume_keys(tansu.broker, all_topics(ingest.prefix), expected)
    sender.assert_in_order(by_topic, ingest.prefix, only=only)


@pytest.fixture
async def proxied(private_tansu: TansuFactory) -> AsyncIterator[tuple[PrivateTansu, TcpProxy]]:
    """A private Tansu whose clients all go through a TcpProxy (its advertised address)."""
    port = free_port()
    async with TcpProxy(("127.0.0.1", port)) as proxy:
        tansu = private_tansu(port=port, advertised=proxy.address)
        await tansu.start()
        yield tansu, proxy


async def test_kafka_down_before_the_first_batch(private_tansu: TansuFactory, tmp_path: Path) -> None:
    tansu = private_tansu()  # not started: nothing listens on its port yet
    config = config_for(tmp_path, tansu)
    async with spooling_ingest(config) as ingest, httpx.AsyncClient(timeout=30) as client:
        sender = Sender(ingest.webhook())
        assert (await client.get(ingest.url + "/readyz")).status_code == 200  # the spool takes writes
        for _ in range(5):
            assert await sender.send(client) == 200
        assert max(sender.seconds) < PRODUCE_TIMEOUT
        publisher = publisher_of(ingest)
        assert publisher.spooling and publisher.spool.events == 100
        text = await metrics(client, ingest)
        assert metric_value(text, "siemgate_spool_events") == 100
        assert metric_value(text, "siemgate_spool_bytes") == publisher.spool.bytes > 0
        assert metric_value(text, "siemgate_spool_active") == 1
        assert metric_value(text, "siemgate_spool_batches_total") == 5

        await tansu.start()
        await drained(ingest)
        for _ in range(2):
            assert await sender.send(client) == 200  # direct again
        await check_delivered(tansu, ingest, sender)
        text = await metrics(client, ingest)
        assert metric_value(text, "siemgate_spool_events") == 0
        assert metric_value(text, "siemgate_spool_active") == 0
        assert metric_value(text, "siemgate_spool_drained_events_total") == 100
        assert metric_value(text, "siemgate_spool_batches_total") == 5


async def test_outage_during_a_stream_of_sequential_batches(
    proxied: tuple[PrivateTansu, TcpProxy], tmp_path: Path
) -> None:
    tansu, proxy = proxied
    config = config_for(tmp_path, tansu, bootstrap=proxy.address)
    async with spooling_ingest(config, wait_ready=True) as ingest, httpx.AsyncClient(timeout=30) as client:
        sender = Sender(ingest.webhook())
        publisher = publisher_of(ingest)
        for _ in range(5):
            assert await sender.send(client) == 200
        assert not publisher.spooling
        await proxy.cut()
        for _ in range(8):
            assert await sender.send(client) == 200
        assert publisher.spooling
        assert max(sender.seconds) < PRODUCE_TIMEOUT
        proxy.restore()
        deadline = time.monotonic() + 90
        while publisher.spooling:  # the stream goes on while the spool drains
            assert await sender.send(client) == 200
            assert time.monotonic() < deadline, "the spool never drained"
        for _ in range(3):
            assert await sender.send(client) == 200
        await check_delivered(tansu, ingest, sender)


async def test_flapping_broker_loses_nothing(proxied: tuple[PrivateTansu, TcpProxy], tmp_path: Path) -> None:
    tansu, proxy = proxied
    config = config_for(tmp_path, tansu, bootstrap=proxy.address)
    async with spooling_ingest(config, wait_ready=True) as ingest, httpx.AsyncClient(timeout=30) as client:
        sender = Sender(ingest.webhook())
        publisher = publisher_of(ingest)
        stop = asyncio.Event()

        async def stream() -> None:
            while not stop.is_set():
                await sender.send(client, size=10)

        streaming = asyncio.create_task(stream())
        try:
            for _ in range(3):  # down: batches go to the spool; up: it drains, batches go direct again
                cut_at = sender.batches
                await proxy.cut()
                await wait_until(lambda n=cut_at: publisher.spooling and sender.batches >= n + 3,  # type: ignore[misc]
                                 "batches during the cut")
                restored_at = sender.batches
                proxy.restore()
                await wait_until(lambda n=restored_at: not publisher.spooling and sender.batches >= n + 3,  # type: ignore[misc]
                                 "direct mode again after the cut")
        finally:
            stop.set()
            await streaming
        assert set(sender.codes) == {200}
        await drained(ingest)
        await check_delivered(tansu, ingest, sender)
        assert publisher.spool_stats().batches_spooled >= 9


async def test_slow_broker_spools_instead_of_stalling_the_sender(
    proxied: tuple[PrivateTansu, TcpProxy], tmp_path: Path
) -> None:
    tansu, proxy = proxied
    config = config_for(tmp_path, tansu, bootstrap=proxy.address)
    async with spooling_ingest(config, wait_ready=True) as ingest, httpx.AsyncClient(timeout=30) as client:
        sender = Sender(ingest.webhook())
        publisher = publisher_of(ingest)
        assert await sender.send(client) == 200
        proxy.delay = PRODUCE_TIMEOUT - ACK_DEADLINE  # acks come back well after the deadline
        for _ in range(3):
            assert await sender.send(client) == 200
        slow = sender.seconds[1:]
        assert max(slow) < PRODUCE_TIMEOUT, f"answers took {slow}"
        assert publisher.spool_stats().batches_spooled >= 1
        proxy.delay = 0.0
        await drained(ingest)
        assert await sender.send(client) == 200
        await check_delivered(tansu, ingest, sender)


async def test_broker_restarted_empty_gets_its_topics_back(private_tansu: TansuFactory, tmp_path: Path) -> None:
    tansu = private_tansu()
    await tansu.start()
    config = config_for(tmp_path, tansu)
    async with spooling_ingest(config, wait_ready=True) as ingest, httpx.AsyncClient(timeout=30) as client:
        sender = Sender(ingest.webhook())
        for _ in range(3):
            assert await sender.send(client) == 200
        await tansu.kill()  # what it held is gone with it: Tansu keeps everything in memory
        before = set(sender.acked_ids)
        for _ in range(5):
            assert await sender.send(client) == 200
        await tansu.start()
        await drained(ingest)
        assert await sender.send(client) == 200
        await check_delivered(tansu, ingest, sender, only=set(sender.acked_ids) - before)


async def test_full_spool_is_503_and_loses_nothing_already_acked(
    private_tansu: TansuFactory, tmp_path: Path
) -> None:
    tansu = private_tansu()  # down until the spool is full
    config = config_for(tmp_path, tansu, max_bytes=40_000)
    async with spooling_ingest(config) as ingest, httpx.AsyncClient(timeout=30) as client:
        sender = Sender(ingest.webhook())
        while await sender.send(client) == 200:
            assert sender.batches < 100, "the spool never filled"
        assert sender.codes[-1] == 503
        assert len(sender.acked_ids) > 20
        assert (await client.get(ingest.url + "/readyz")).status_code == 503
        text = await metrics(client, ingest)
        assert 'siemgate_spool_refusals_total{reason="full"} 1.0' in text
        assert 'siemgate_ingest_requests_total{code="503",integration="appsec"} 1.0' in text

        await tansu.start()
        await drained(ingest)
        assert (await client.get(ingest.url + "/readyz")).status_code == 200
        assert await sender.send(client) == 200
        await check_delivered(tansu, ingest, sender)


async def test_the_spool_reports_its_storage_against_its_cap(private_tansu: TansuFactory, tmp_path: Path) -> None:
    tansu = private_tansu()  # down: batches go to the spool
    config = config_for(tmp_path, tansu, max_bytes=40_000)
    async with spooling_ingest(config) as ingest, httpx.AsyncClient(timeout=30) as client:
        sender = Sender(ingest.webhook())
        while await sender.send(client) == 200:
            assert sender.batches < 100, "the spool never filled"
        text = await metrics(client, ingest)
        spool = publisher_of(ingest).spool
        assert metric_value(text, 'siemgate_storage_bytes{store="spool"}') == spool.bytes > 30_000
        assert metric_value(text, 'siemgate_storage_limit_bytes{store="spool"}') == 40_000
        assert metric_value(text, 'siemgate_storage_refusals_total{store="spool"}') == 1
        volume = os.statvfs(spool.directory)
        free = metric_value(text, 'siemgate_storage_free_bytes{store="spool"}')
        assert abs(free - volume.f_bavail * volume.f_frsize) < 1 << 30  # a few seconds old on a shared disk

        await tansu.start()
        await drained(ingest)
        text = await metrics(client, ingest)
        assert metric_value(text, 'siemgate_storage_bytes{store="spool"}') == 0


async def test_full_spool_with_kafka_back_sends_to_kafka_directly(
    private_tansu: TansuFactory, tmp_path: Path
) -> None:
    tansu = private_tansu()
    config = config_for(tmp_path, tansu, max_bytes=40_000)
    async with spooling_ingest(config) as ingest, httpx.AsyncClient(timeout=30) as client:
        sender = Sender(ingest.webhook())
        publisher = publisher_of(ingest)
        while await sender.send(client) == 200:
            assert sender.batches < 100, "the spool never filled"
        sender.codes.clear()
        await tansu.start()
        await wait_until(lambda: publisher.kafka.connected, "the ingest to connect to Kafka")
        # Whether the drainer has made room yet or not, every batch is answered 200 (a batch Kafka
        # takes directly while the spool is full may overtake spooled ones: order is not checked).
        for _ in range(5):
            assert await sender.send(client) == 200
        await drained(ingest)
        by_topic = await consume_keys(tansu.broker, all_topics(ingest.prefix), sender.acked_ids)
        sender.assert_all_delivered(by_topic, ingest.prefix)


async def test_unwritable_spool_with_kafka_down_is_503(private_tansu: TansuFactory, tmp_path: Path) -> None:
    tansu = private_tansu()
    # Kafka stays down to the end: no drain before exit (it would wait for Kafka until the timeout).
    config = config_for(tmp_path, tansu, drain_timeout_seconds=0)
    async with spooling_ingest(config) as ingest, httpx.AsyncClient(timeout=30) as client:
        sender = Sender(ingest.webhook())
        assert await sender.send(client) == 200
        spool = publisher_of(ingest).spool
        # A full disk: SQLite may not grow the file any further.
        await spool.engine.call(lambda: spool.engine.connection.execute("PRAGMA max_page_count = 1").fetchone())
        assert await sender.send(client, size=200, pad="x" * 2000) == 503
        text = await metrics(client, ingest)
        assert 'siemgate_spool_refusals_total{reason="error"} 1.0' in text
        assert (await client.get(ingest.url + "/readyz")).status_code == 503
