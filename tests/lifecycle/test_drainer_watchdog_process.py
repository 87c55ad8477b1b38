"""The spool drainer's watchdog in a real `siemgate ingest`, with Kafka behind a real partition
(Tansu in its own network namespace, link down: half-open connections, no RST): the drainer
holds spooled events and Kafka acknowledges nothing for longer than
bus.spool.stall_timeout_seconds, but a fresh Kafka client cannot reach Kafka either: a
restart cannot help, so /healthz stays 200 (no liveness restart of every ingest replica in an
outage) and a WARNING says why. Healed: the spool drains, every acked event on Kafka.
(A drainer whose own client is stuck while Kafka answers others is reported stalled:
tests/ingest/test_drainer_watchdog.py.)"""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.lifecycle.kubelet import Pod, Sender, Service, kafka_config, kafka_keys, stable_port, write_config
from tests.lifecycle.netns import PartitionedBroker
from tests.support import wait_until

pytestmark = pytest.mark.anyio

STALL_TIMEOUT = 6.0


async def test_a_partition_from_kafka_is_no_stall_and_the_spool_drains_after_the_heal(
        partitioned_broker: PartitionedBroker, tmp_path: Path, processes: list[subprocess.Popen[bytes]]) -> None:
    prefix = f"dw{secrets.token_hex(4)}"
    port = stable_port()
    config = kafka_config(bootstrap=partitioned_broker.bootstrap_servers, prefix=prefix, port=port,
                          volume=tmp_path / "volume", out=tmp_path / "out.ndjson", forward_port=stable_port(),
                          state=tmp_path, drain_timeout=5, stall_timeout=STALL_TIMEOUT)
    (tmp_path / "logs").mkdir()
    pod = Pod("ingest-0", "ingest", write_config(tmp_path / "ingest.json", config), tmp_path / "volume", port,
              tmp_path / "logs", processes)
    await pod.start()
    service = Service()
    service.add(pod)
    sender = Sender(service, tag=prefix, batch=50)
    try:
        await sender.send(2)  # direct to Kafka
        async with httpx.AsyncClient(base_url=pod.url, timeout=10) as client:
            assert (await client.get("/healthz")).status_code == 200
            partitioned_broker.partition()
            await sender.send(4)  # not acknowledged within the deadline: spooled, answered 200

            def excused() -> bool:
                return any(e.get("level") == "warning" and "fresh client too" in str(e.get("message"))
                           for e in pod.log_entries())

            await wait_until(excused, "the watchdog to find Kafka unreachable for a fresh client too",
                             STALL_TIMEOUT + 60, interval=0.25)
            assert (await client.get("/healthz")).status_code == 200  # no restart for an outage
            metrics = (await client.get("/metrics")).text
            assert 'siemgate_stalled{component="spool_drainer"} 0.0' in metrics
            assert not [e for e in pod.log_entries()
                        if e.get("level") == "error" and "spool drainer is stalled" in str(e.get("message"))]
            # The ingest still takes batches meanwhile (the spool does).
            await sender.send(1)

            partitioned_broker.heal()

            async def healthy() -> bool:
                response = await client.get("/healthz")
                text = (await client.get("/metrics")).text
                return (response.status_code == 200 and 'siemgate_stalled{component="spool_drainer"} 0.0' in text
                        and "siemgate_spool_events 0.0" in text)

            await wait_until(healthy, "/healthz 200, siemgate_stalled 0 and the spool empty after the heal", 90,
                             interval=0.25)
        on_kafka = await kafka_keys(partitioned_broker.bootstrap_servers, prefix)
        assert set(sender.acked) <= on_kafka, f"{len(set(sender.acked) - on_kafka)} acked events not on Kafka"
        assert len(sender.acked) == 7 * 50
    finally:
        service.remove(pod)
        deletion = await pod.delete(grace=30, keep_volume=False)
    assert deletion.exit_code == 0 and not deletion.killed, (deletion, pod.tail())
