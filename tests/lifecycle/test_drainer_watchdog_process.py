"""The spool drainer's watchdog in a real `siemgate ingest`, with Kafka behind a real partition
(Tansu in its own network namespace, link down: half-open connections, no RST): the drainer
holds spooled events and Kafka acknowledges nothing, so after bus.spool.stall_timeout_seconds
/healthz answers 503 naming the spool drainer (the liveness probe would restart the pod),
`siemgate_stalled{component="spool_drainer"}` is 1 and one ERROR log says what it waits on.
Healed: the spool drains, /healthz is 200 again, the gauge 0, every acked event on Kafka."""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

import httpx
import pytest
from jsonschema import Draft202012Validator

from tests.forwarders.test_stall import stalled_schema
from tests.lifecycle.kubelet import Pod, Sender, Service, kafka_config, kafka_keys, stable_port, write_config
from tests.lifecycle.netns import PartitionedBroker
from tests.support import wait_until

pytestmark = pytest.mark.anyio

STALL_TIMEOUT = 6.0


async def test_the_drainer_watchdog_fails_healthz_while_kafka_is_cut_off_and_clears_after_the_heal(
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

            async def stalled() -> bool:
                response = await client.get("/healthz")
                return response.status_code == 503

            await wait_until(stalled, "/healthz 503 once the drainer made no progress for the stall timeout",
                             STALL_TIMEOUT + 30, interval=0.25)
            body = (await client.get("/healthz")).json()
            assert body["status"] == "stalled", body
            Draft202012Validator(stalled_schema()).validate(body)  # as docs/openapi.yaml says
            [stall] = body["stalled"]
            assert stall["component"] == "spool_drainer" and stall["pending_events"] >= 200, stall
            assert stall["waiting_on"] in ("produce to Kafka", "backoff after a failed drain",
                                           "topic check on Kafka"), stall
            metrics = (await client.get("/metrics")).text
            assert 'siemgate_stalled{component="spool_drainer"} 1.0' in metrics
            errors = [e for e in pod.log_entries()
                      if e.get("level") == "error" and "spool drainer is stalled" in str(e.get("message"))]
            assert len(errors) == 1, pod.tail()
            assert "Check that Kafka is reachable" in errors[0]["message"]
            # The ingest still takes batches meanwhile (the spool does).
            await sender.send(1)

            partitioned_broker.heal()

            async def healthy() -> bool:
                response = await client.get("/healthz")
                text = (await client.get("/metrics")).text
                return response.status_code == 200 and 'siemgate_stalled{component="spool_drainer"} 0.0' in text

            await wait_until(healthy, "/healthz 200 and siemgate_stalled 0 once the spool drains", 90,
                             interval=0.25)
        assert any("spool drainer resumed" in str(e.get("message")) for e in pod.log_entries())
        on_kafka = await kafka_keys(partitioned_broker.bootstrap_servers, prefix)
        assert set(sender.acked) <= on_kafka, f"{len(set(sender.acked) - on_kafka)} acked events not on Kafka"
        assert len(sender.acked) == 7 * 50
    finally:
        service.remove(pod)
        deletion = await pod.delete(grace=30, keep_volume=False)
    assert deletion.exit_code == 0 and not deletion.killed, (deletion, pod.tail())
