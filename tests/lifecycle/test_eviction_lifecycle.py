"""Eviction at the volume cap (issue 15): the kubelet evicts a pod whose emptyDir grows past
its `sizeLimit` (SIGKILL, and the volume is deleted with everything on it). The player
(`kubelet.Pod(size_limit=...)`) measures the volume's bytes on disk every 0.1 s while the pod
runs and does the same.

- (a) embedded: `siemgate run` with its sink down and a small `bus.max_bytes`, on a volume
  sized by the chart's rule (`bus.max_bytes` + `quarantine.max_bytes` + headroom): the log
  fills, the sender gets honest `503`s (never another 5xx), the volume never crosses its
  limit; the sink comes back, retention frees space, `200`s again, every acked event delivered.
- (b) the control: `bus.max_bytes` above the volume's limit (the shape the chart refuses to
  render, tests/deploy/test_chart.py `test_chart_refuses_what_could_lose_acknowledged_events`
  [log-cap-over-claim] / [spool-over-emptydir]): the player evicts and the acked events are
  lost, and the accounting says so (the check checks).
- (c) Kafka: the ingest's spool with Kafka cut by a real partition and a small
  `bus.spool.max_bytes`: `503` only when both Kafka and the spool refuse, no eviction; after
  the heal everything acked reaches Kafka.
"""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from siemgate.bus.spool import CHECKPOINT_BYTES
from tests.lifecycle.conftest import ConservationLog
from tests.lifecycle.kubelet import (
    Pod,
    Sender,
    Service,
    account,
    delivered_ids,
    embedded_config,
    kafka_config,
    stable_port,
    volume_bytes,
    wait_delivered,
    write_config,
)
from tests.lifecycle.netns import PartitionedBroker
from tests.lifecycle.test_kafka_lifecycle import Cluster, assert_conserved
from tests.support import wait_until

pytestmark = pytest.mark.anyio

MIB = 1024 * 1024
LOG_BYTES = 8 * MIB
SPOOL_BYTES = 4 * MIB
QUARANTINE_BYTES = 1 * MIB
# helm/siemgate/values.yaml ingest.persistence.headroomPercent.
HEADROOM_PERCENT = 10
# The chart's floor, ingest.persistence.minHeadroom (512Mi by default), would keep a volume for
# caps of a few MiB far from full: the scenarios set it to what the store needs beyond its cap
# and no more. The embedded log's cap counts its bytes on disk (segments, index, WAL): no
# floor. The spool's cap counts logical bytes (keys, values, headers); on disk come SQLite's
# pages and its WAL, which grows up to eight times CHECKPOINT_BYTES before a checkpoint is
# forced (siemgate/bus/spool.py): that bound is the floor.
LOG_MIN_HEADROOM = 0
SPOOL_MIN_HEADROOM = 8 * CHECKPOINT_BYTES


def chart_size_limit(cap: int, *, min_headroom: int, quarantine: int = QUARANTINE_BYTES) -> int:
    """What the chart requires of /data (templates/_helpers.tpl, siemgate.ingestPlan): the caps
    siemgate keeps to plus headroom, `headroomPercent` of them and at least `minHeadroom`."""
    caps = cap + quarantine
    return caps + max(caps * HEADROOM_PERCENT // 100, min_headroom)


def blocked_sink(tmp_path: Path) -> Path:
    """The file sink's path, down: its directory is a regular file (root ignores permissions, so
    an unwritable directory would not stop it); `unblock` makes it a directory again."""
    siem = tmp_path / "siem"
    siem.write_text("the SIEM is down\n")
    return siem / "events.ndjson"


def unblock(out: Path) -> None:
    out.parent.unlink()
    out.parent.mkdir()


def embedded_capped(*, port: int, volume: Path, out: Path, state: Path, max_bytes: int) -> dict[str, Any]:
    """`siemgate run` as the chart renders it: the log, the state and the quarantine on /data."""
    config = embedded_config(port=port, volume=volume, out=out, state=state)
    config["bus"]["max_bytes"] = max_bytes
    config["quarantine"] = {"path": str(volume / "quarantine"), "max_bytes": QUARANTINE_BYTES}
    return config


async def metric(url: str, name: str) -> float:
    async with httpx.AsyncClient(timeout=5) as client:
        text = (await client.get(url + "/metrics")).text
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


async def test_embedded_log_full_answers_503_and_is_never_evicted(
        tmp_path: Path, processes: list[subprocess.Popen[bytes]], conservation_log: ConservationLog) -> None:
    port = stable_port()
    volume = tmp_path / "volumes" / "data"
    out = blocked_sink(tmp_path)
    logs = tmp_path / "logs"
    logs.mkdir()
    limit = chart_size_limit(LOG_BYTES, min_headroom=LOG_MIN_HEADROOM)
    config = write_config(tmp_path / "siemgate.json", embedded_capped(port=port, volume=volume, out=out,
                                                                     state=tmp_path, max_bytes=LOG_BYTES))
    service = Service()
    sender = Sender(service, tag=f"full{port}", batch=200)
    pod = Pod("run-0", "run", config, volume, port, logs, processes, size_limit=limit)
    await pod.start()
    service.add(pod)
    sender.start(interval=0.01)
    # The sink is down: the log fills up to bus.max_bytes, then the batches are refused.
    await wait_until(lambda: sender.history.count(503) >= 20, "20 batches answered 503 (the log full)", 40,
                     interval=0.1)
    assert pod.eviction is None, pod.eviction
    first_503 = sender.history.index(503)
    acked_before_full = len(sender.acked)
    assert set(sender.history[:first_503]) == {200} and first_503 >= 20, sender.history[:first_503 + 1]
    refusals = await metric(pod.url, 'siemgate_storage_refusals_total{store="log"}')
    held = await metric(pod.url, 'siemgate_storage_bytes{store="log"}')
    assert held <= LOG_BYTES and held > LOG_BYTES - 2 * MIB, held  # full: within a segment of the cap

    unblock(out)  # the SIEM is back: the forwarder catches up, retention removes segments
    back = len(sender.history)
    await wait_until(lambda: sender.history[back:].count(200) >= 50, "50 batches answered 200 again", 40,
                     interval=0.1)
    await sender.stop()
    assert pod.eviction is None, pod.eviction
    assert set(sender.history) == {200, 503}, sender.refused  # no other 5xx, no connection error
    assert len(sender.acked) > acked_before_full
    assert refusals >= 20 and await metric(
        pod.url, 'siemgate_storage_refusals_total{store="log"}') == sender.history.count(503)
    assert "DATA LOSS RISK: the embedded bus is full" in pod.log.read_text()
    delivered = await wait_delivered(out, sender.acked, timeout=60)
    deletion = await pod.delete(grace=30, keep_volume=False)  # emptyDir: gone with the pod
    assert deletion.exit_code == 0 and not deletion.killed, (deletion, pod.tail())
    assert pod.eviction is None and 0 < pod.peak_bytes <= limit, (pod.peak_bytes, limit)
    result = account(f"embedded log full at the volume cap (bus.max_bytes 8 MiB, sizeLimit {limit / MIB:.1f} MiB, "
                     f"peak {pod.peak_bytes / MIB:.1f} MiB, {sender.history.count(503)} x 503)",
                     sender.acked, on_kafka=None, delivered=delivered)
    conservation_log.record(result)
    assert result.lost == 0 and result.stranded == 0 and result.delivered == result.acked, result.line()


async def test_control_a_log_cap_above_the_volume_limit_is_evicted_and_loses_acked_events(
        tmp_path: Path, processes: list[subprocess.Popen[bytes]], conservation_log: ConservationLog) -> None:
    """The shape the chart refuses (tests/deploy/test_chart.py, [log-cap-over-claim]): the log's
    cap does not protect the volume, the kubelet evicts, the emptyDir goes with every acked
    event in it. The accounting must see the loss."""
    port = stable_port()
    volume = tmp_path / "volumes" / "data"
    out = blocked_sink(tmp_path)
    logs = tmp_path / "logs"
    logs.mkdir()
    # The volume of (a); the log may grow to 32 MiB on it.
    limit = chart_size_limit(LOG_BYTES, min_headroom=LOG_MIN_HEADROOM)
    config = write_config(tmp_path / "siemgate.json", embedded_capped(port=port, volume=volume, out=out,
                                                                     state=tmp_path, max_bytes=4 * LOG_BYTES))
    service = Service()
    sender = Sender(service, tag=f"evict{port}", batch=200)
    pod = Pod("run-0", "run", config, volume, port, logs, processes, size_limit=limit)
    await pod.start()
    service.add(pod)
    sender.start(interval=0.01)
    eviction = await pod.evicted(timeout=40)
    service.remove(pod)  # the endpoints controller drops the failed pod
    await sender.stop()
    assert not volume.exists()
    acked_before = set(sender.acked)
    assert acked_before and 503 not in sender.history, sender.refused  # no honest 503: the cap never bit
    assert eviction.bytes > limit

    # The Deployment's replacement: a new pod on a new, empty emptyDir; the SIEM back.
    unblock(out)
    new = Pod("run-1", "run", config, volume, port, logs, processes, size_limit=limit)
    await new.start()
    service.add(new)
    await sender.send(5)
    delivered = await wait_delivered(out, set(sender.acked) - acked_before, timeout=60)
    deletion = await new.delete(grace=30, keep_volume=False)
    assert deletion.exit_code == 0 and new.eviction is None, (deletion, new.tail())
    delivered = delivered_ids(out)
    result = account(f"control: bus.max_bytes 32 MiB over a {limit / MIB:.1f} MiB sizeLimit, evicted at "
                     f"{eviction.bytes / MIB:.1f} MiB after {eviction.after_seconds:g} s",
                     sender.acked, on_kafka=None, delivered=delivered)
    conservation_log.record(result)
    # The check checks: every event acked before the eviction is counted lost, none after.
    assert result.lost == len(acked_before - delivered) == len(acked_before) > 0, result.line()
    assert result.delivered == result.acked - result.lost, result.line()


async def test_kafka_spool_full_while_partitioned_answers_503_and_is_never_evicted(
        partitioned_broker: PartitionedBroker, tmp_path: Path, processes: list[subprocess.Popen[bytes]],
        conservation_log: ConservationLog) -> None:
    limit = chart_size_limit(SPOOL_BYTES, min_headroom=SPOOL_MIN_HEADROOM)
    cluster = Cluster(tmp_path, processes, partitioned_broker,
                      "spool full while Kafka is partitioned (bus.spool.max_bytes 4 MiB, "
                      f"sizeLimit {limit / MIB:.1f} MiB)")
    cluster.sender.batch = 200
    port = stable_port()
    volume = tmp_path / "volumes" / "empty-0"
    settings = kafka_config(bootstrap=partitioned_broker.bootstrap_servers, prefix=cluster.prefix, port=port,
                            volume=volume, out=cluster.out, forward_port=stable_port(), state=tmp_path)
    settings["bus"]["spool"]["max_bytes"] = SPOOL_BYTES
    settings["quarantine"] = {"path": str(volume / "quarantine"), "max_bytes": QUARANTINE_BYTES}
    pod = Pod("ingest-0", "ingest", write_config(tmp_path / "ingest-0.json", settings), volume, port,
              cluster.logs, processes, size_limit=limit)
    cluster.pods.append(pod)
    await pod.start()
    cluster.service.add(pod)
    await cluster.sender.send(3)
    partitioned_broker.partition()
    cluster.sender.start(interval=0.01)
    # Each refused batch waits for Kafka first (ack_deadline_seconds): a handful is enough.
    await wait_until(lambda: cluster.sender.history.count(503) >= 5 or pod.eviction is not None,
                     "5 batches answered 503 (spool full, Kafka away)", 40, interval=0.1)
    assert pod.eviction is None, (pod.eviction, len(cluster.sender.acked))
    first_503 = cluster.sender.history.index(503)
    assert set(cluster.sender.history[:first_503]) == {200}, cluster.sender.refused
    spooled = await metric(pod.url, 'siemgate_storage_bytes{store="spool"}')
    on_disk = volume_bytes(volume)
    # 503 only once the spool refuses: it holds all but (at most) a batch of its cap.
    assert spooled > SPOOL_BYTES - 200 * 1024, spooled

    peak_partitioned = pod.peak_bytes
    partitioned_broker.heal()  # the drainer sends the spool; deleting its rows grows the WAL a while
    back = len(cluster.sender.history)
    await wait_until(lambda: cluster.sender.history[back:].count(200) >= 30, "30 batches answered 200 after the heal",
                     60, interval=0.1)
    assert pod.eviction is None, pod.eviction
    assert set(cluster.sender.history) == {200, 503}, cluster.sender.refused
    refusals = await metric(pod.url, 'siemgate_storage_refusals_total{store="spool"}')
    assert refusals == cluster.sender.history.count(503), (refusals, cluster.sender.refused)
    result = await cluster.conclude([])
    assert pod.eviction is None and 0 < pod.peak_bytes <= limit, (pod.peak_bytes, limit)
    result = dataclasses.replace(
        result, scenario=f"{result.scenario}: full at {spooled / MIB:.1f} MiB held = {on_disk / MIB:.1f} MiB on "
                         f"disk, peak {peak_partitioned / MIB:.1f} MiB partitioned, {pod.peak_bytes / MIB:.1f} MiB "
                         f"in all, {cluster.sender.history.count(503)} x 503")
    assert_conserved(result, conservation_log)

