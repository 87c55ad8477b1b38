"""Kubernetes lifecycle on the embedded bus (issue 15): the default chart's one pod, `siemgate
run` with its log on `/data`, deleted (SIGTERM, the grace period, SIGKILL) while the sender
posts, the volume kept (a claim); the new pod on the same volume delivers every acked event."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from tests.lifecycle.conftest import ConservationLog
from tests.lifecycle.kubelet import (
    Pod,
    Sender,
    Service,
    account,
    embedded_config,
    stable_port,
    wait_delivered,
    write_config,
)

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(("traffic", "grace"), [(0.5, 0.1), (2.0, 20.0)],
                         ids=["sigkill-after-0.1s-grace", "sigterm-clean-exit"])
async def test_embedded_pod_deletion_delivers_every_acked_event(
        tmp_path: Path, processes: list[subprocess.Popen[bytes]], conservation_log: ConservationLog,
        traffic: float, grace: float) -> None:
    port = stable_port()
    volume = tmp_path / "volumes" / "data"
    out = tmp_path / "out" / "events.ndjson"
    logs = tmp_path / "logs"
    logs.mkdir()
    config = write_config(tmp_path / "siemgate.json",
                          embedded_config(port=port, volume=volume, out=out, state=tmp_path))
    service = Service()
    sender = Sender(service, tag=f"emb{port}")
    old = Pod("run-0", "run", config, volume, port, logs, processes)
    await old.start()
    service.add(old)
    sender.start(interval=0.02)
    await asyncio.sleep(traffic)  # the deletion comes at a different point of the stream per case
    service.remove(old)
    deletion = await old.delete(grace=grace, keep_volume=True)
    # uvicorn's shutdown alone takes more than 0.1 s: the short grace always ends in SIGKILL.
    assert deletion.killed == (grace < 1), deletion
    if not deletion.killed:
        assert deletion.exit_code == 0, (deletion, old.tail())

    new = Pod("run-1", "run", config, volume, port, logs, processes)  # the new pod, same claim
    await new.start()
    service.add(new)
    await asyncio.sleep(0.5)
    await sender.stop()
    assert sender.acked, sender.refused
    assert sender.non_200 == 0, sender.refused
    delivered = await wait_delivered(out, sender.acked, timeout=90)
    service.remove(new)
    final = await new.delete(grace=30, keep_volume=True)
    assert final.exit_code == 0 and not final.killed, (final, new.tail())
    how = "SIGKILL after a 0.1 s grace" if grace < 1 else "SIGTERM, clean exit"
    result = account(f"embedded pod deletion ({how})", sender.acked, on_kafka=None, delivered=delivered)
    conservation_log.record(result)
    assert result.lost == 0 and result.stranded == 0 and result.delivered == result.acked, result.line()
