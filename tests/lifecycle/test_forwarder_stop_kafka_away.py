"""A forwarder deleted while Kafka is partitioned away (a rollout or a drain during an outage)
exits by itself within its grace period (`forward.drain_timeout_seconds` + 5, the chart's
shortest): closing its consumer (the group leave) and its producer waits on no broker that
cannot answer. Before, it waited for aiokafka's request timeouts and the kubelet SIGKILLed it."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import pytest

from tests.lifecycle.kubelet import Pod, kafka_config, stable_port, write_config
from tests.lifecycle.netns import PartitionedBroker

pytestmark = pytest.mark.anyio

DRAIN = 4.0


async def test_a_forwarder_sigtermed_with_kafka_partitioned_exits_within_its_grace(
        partitioned_broker: PartitionedBroker, tmp_path: Path, processes: list[subprocess.Popen[bytes]]) -> None:
    settings = kafka_config(bootstrap=partitioned_broker.bootstrap_servers, prefix=f"fs{stable_port()}",
                            port=stable_port(), volume=tmp_path / "volume", out=tmp_path / "out" / "events.ndjson",
                            forward_port=stable_port(), state=tmp_path)
    settings["forward"]["drain_timeout_seconds"] = DRAIN
    config = write_config(tmp_path / "siemgate.json", settings)
    logs = tmp_path / "logs"
    logs.mkdir()
    forwarder = Pod("forward-0", "forward", config, tmp_path / "volume", settings["forward"]["listen"]["port"],
                    logs, processes)
    await forwarder.start()
    await asyncio.sleep(1.0)  # joined its group and fetching (no synchronisation depends on it)
    partitioned_broker.partition()
    started = time.monotonic()
    deletion = await forwarder.delete(grace=DRAIN + 5, keep_volume=True)
    assert not deletion.killed and deletion.exit_code == 0, (deletion, forwarder.tail(40))
    assert time.monotonic() - started <= DRAIN + 5
