"""`siemgate forward` to Splunk HEC (with indexer acks) and Elasticsearch, SIGKILLed mid-stream:
nothing lost; Elasticsearch ends with exactly one document per event."""

from __future__ import annotations

import asyncio
import collections
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from siemgate_standins.broker import Broker
from siemgate_standins.elasticsearch import ElasticsearchStandIn
from siemgate_standins.splunk_hec import HecToken, SplunkHecStandIn
from tests.forwarders.test_forward_process import BATCH, setup, start, write_config
from tests.forwarders.test_runtime import produce, record_for, until

pytestmark = pytest.mark.anyio

TOKEN = "0d6f2b5e-7a39-4c51-9b1e-2f8c1d3a4b5c"
HTTP_IN_FLIGHT = 3  # the HTTP sinks' default batch.in_flight


async def test_sigkill_with_hec_indexer_acks_loses_nothing(
    kafka_broker: Broker, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    prefix, config = setup(kafka_broker, tmp_path)
    total = 12_000
    await produce(config, [record_for(prefix, i, ("high", "medium", "low")[i % 3]) for i in range(total)])  # type: ignore[arg-type]
    async with SplunkHecStandIn(tokens=[HecToken(TOKEN, ack=True)], ack_delay_seconds=0.05) as hec:
        sink = (f"{{name: splunk, type: splunk_hec, url: '{hec.url}', token: '{TOKEN}', ack: true, "
                f"ack_poll_seconds: 0.05, batch: {{max_events: {BATCH}}}}}")
        cfg = write_config(tmp_path, kafka_broker, prefix, tmp_path / "unused", sink=sink)

        def received() -> list[str]:
            return [str(e["event"]["id"]) for e in hec.events()]

        first = start(cfg, tmp_path / "first.log")
        processes.append(first)
        await until(lambda: len(hec.events()) >= 1_500, timeout=90)
        first.send_signal(signal.SIGKILL)
        first.wait()
        assert len(hec.events()) < total, "the forwarder finished before it could be killed"
        second = start(cfg, tmp_path / "second.log")
        processes.append(second)
        await until(lambda: len(set(received())) >= total, timeout=120)
        second.send_signal(signal.SIGTERM)
        # Waited for in a thread: the stand-in on this loop answers its last ack polls meanwhile.
        assert await asyncio.to_thread(second.wait, 30) == 0
        counts = collections.Counter(received())
    assert set(counts) == {f"e-{i}" for i in range(total)}
    duplicates = sum(n - 1 for n in counts.values())
    # Acked by HEC but not yet committed when killed: the batches in flight and the one committing.
    assert duplicates <= (HTTP_IN_FLIGHT + 1) * BATCH, duplicates


async def test_sigkill_with_elasticsearch_ends_with_one_document_per_event(
    kafka_broker: Broker, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    prefix, config = setup(kafka_broker, tmp_path)
    total = 12_000
    await produce(config, [record_for(prefix, i, ("high", "medium", "low")[i % 3]) for i in range(total)])  # type: ignore[arg-type]
    async with ElasticsearchStandIn(keep_sources=False) as es:  # ids only: cheap to poll
        sink = (f"{{name: elastic, type: elasticsearch, url: '{es.url}', data_stream: logs-appsec.alerts-default, "
                f"batch: {{max_events: {BATCH}}}}}")
        cfg = write_config(tmp_path, kafka_broker, prefix, tmp_path / "unused", sink=sink)

        def documents() -> dict[str, dict[str, object]]:
            return es.documents("logs-appsec.alerts-default")

        first = start(cfg, tmp_path / "first.log")
        processes.append(first)
        await until(lambda: len(documents()) >= 1_500, timeout=90)
        first.send_signal(signal.SIGKILL)
        first.wait()
        assert len(documents()) < total, "the forwarder finished before it could be killed"
        second = start(cfg, tmp_path / "second.log")
        processes.append(second)
        await until(lambda: len(documents()) >= total, timeout=120)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port_of(cfg)}") as client:
            await until_metric(client, 'siemgate_forward_events_total{outcome="delivered",sink="elastic"}')
            metrics = (await client.get("/metrics")).text
        second.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(second.wait, 30) == 0
        stored = documents()
        statuses = collections.Counter(s for r in es.bulk_requests for s in r.item_statuses)
    assert set(stored) == {f"e-{i}" for i in range(total)}, "exactly one document per event"
    assert statuses[201] == total
    # What the killed forwarder had written but not committed came back as 409s: counted as duplicates.
    assert statuses[409] <= (HTTP_IN_FLIGHT + 1) * BATCH
    assert 'siemgate_forward_events_total{outcome="duplicate",sink="elastic"}' in metrics


def port_of(config: Path) -> int:
    text = config.read_text()
    return int(text.split("listen: {host: 127.0.0.1, port: ")[1].split("}")[0])


async def until_metric(client: httpx.AsyncClient, name: str) -> None:
    async def present() -> bool:
        return name in (await client.get("/metrics")).text

    async with asyncio.timeout(30):
        while not await present():
            await asyncio.sleep(0.1)
