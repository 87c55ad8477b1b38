"""Kubernetes lifecycle scenarios on Kafka (issue 15): `siemgate ingest` pods with their spool on
a volume, deleted the way the kubelet deletes them, while Kafka is cut off by a real partition
or right after it heals. Each asserts the conservation line: every acked event on Kafka and
at the file sink, lost 0, stranded 0 (stranded only while Kafka is unreachable, then 0 after
the heal and a restart on the claim or `siemgate spool drain`)."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
from pathlib import Path

import pytest

from tests.lifecycle.conftest import ConservationLog
from tests.lifecycle.kubelet import (
    Conservation,
    Pod,
    Sender,
    Service,
    account,
    kafka_config,
    kafka_keys,
    spool_keys,
    stable_port,
    wait_delivered,
    write_config,
)
from tests.lifecycle.netns import PartitionedBroker
from tests.support import siemgate_command

pytestmark = pytest.mark.anyio


class Cluster:
    """The ingest pods of one scenario, their Service, a sender, and the accounting."""

    def __init__(self, tmp_path: Path, processes: list[subprocess.Popen[bytes]], broker: PartitionedBroker,
                 scenario: str) -> None:
        self.tmp_path = tmp_path
        self.processes = processes
        self.broker = broker
        self.scenario = scenario
        self.prefix = f"lc{secrets.token_hex(4)}"
        self.out = tmp_path / "out" / "events.ndjson"
        self.logs = tmp_path / "logs"
        self.logs.mkdir(exist_ok=True)
        self.service = Service()
        self.sender = Sender(self.service, tag=self.prefix)
        self.pods: list[Pod] = []

    def pod(self, name: str, volume: str, *, drain_timeout: float = 60.0) -> Pod:
        port = stable_port()
        volume_dir = self.tmp_path / "volumes" / volume
        config = kafka_config(bootstrap=self.broker.bootstrap_servers, prefix=self.prefix, port=port,
                              volume=volume_dir, out=self.out, forward_port=stable_port(), state=self.tmp_path,
                              drain_timeout=drain_timeout)
        pod = Pod(name, "ingest", write_config(self.tmp_path / f"{name}.json", config), volume_dir, port,
                  self.logs, self.processes)
        self.pods.append(pod)
        return pod

    async def running(self, name: str, volume: str, **options: float) -> Pod:
        pod = self.pod(name, volume, **options)
        await pod.start()
        self.service.add(pod)
        return pod

    async def kept_spools(self, volumes: list[str]) -> set[str]:
        keys: set[str] = set()
        for volume in volumes:
            keys |= await spool_keys(self.tmp_path / "volumes" / volume)
        return keys

    async def snapshot(self, label: str, kept_volumes: list[str]) -> Conservation:
        """The accounting now (Kafka reachable; the kept volumes' ingests stopped), no delivery."""
        on_kafka = await kafka_keys(self.broker.bootstrap_servers, self.prefix)
        return account(f"{self.scenario} ({label})", self.sender.acked, on_kafka=on_kafka, delivered=set(),
                       kept_spools=await self.kept_spools(kept_volumes))

    async def conclude(self, kept_volumes: list[str]) -> Conservation:
        """Delete the pods still running (Kafka reachable: they drain on the way out), read Kafka
        and the kept spools back, deliver everything with a forwarder, account."""
        await self.sender.stop()
        for pod in self.pods:
            if pod.alive():
                self.service.remove(pod)
                deletion = await pod.delete(grace=60, keep_volume=True)
                assert deletion.exit_code == 0 and not deletion.killed, (pod.name, deletion, pod.tail())
        on_kafka = await kafka_keys(self.broker.bootstrap_servers, self.prefix)
        kept = await self.kept_spools(kept_volumes)
        forwarder = Pod("forward", "forward", self.pods[0].config, self.tmp_path / "volumes" / "forward",
                        int(_forward_port(self.pods[0])), self.logs, self.processes)
        await forwarder.start()
        try:
            delivered = await wait_delivered(self.out, set(self.sender.acked) & on_kafka, timeout=90)
        finally:
            await forwarder.delete(grace=20, keep_volume=True)
        return account(self.scenario, self.sender.acked, on_kafka=on_kafka, delivered=delivered, kept_spools=kept)


def _forward_port(pod: Pod) -> int:
    import json

    return int(json.loads(pod.config.read_text())["forward"]["listen"]["port"])


def assert_conserved(result: Conservation, log: ConservationLog) -> None:
    log.record(result)
    assert result.lost == 0, f"{result.line()}; e.g. {result.lost_sample}"
    assert result.stranded == 0, result.line()
    assert result.kafka == result.acked and result.delivered == result.acked, result.line()


async def test_rollout_during_a_kafka_outage(partitioned_broker: PartitionedBroker, tmp_path: Path,
                                             processes: list[subprocess.Popen[bytes]],
                                             conservation_log: ConservationLog) -> None:
    """A rollout while Kafka is cut off: the old pod cannot drain, exits after its drain timeout
    with the spool on its claim (stranded, reported); the new pod starts on the same claim after
    the heal and sends it. The SIGTERM comes while the sender is still posting."""
    cluster = Cluster(tmp_path, processes, partitioned_broker, "rollout during a Kafka outage")
    old = await cluster.running("ingest-0", "claim-0", drain_timeout=3)
    await cluster.sender.send(3)
    partitioned_broker.partition()
    await cluster.sender.send(30)
    cluster.sender.start(interval=0.05)  # batches keep coming while the pod is deleted
    await asyncio.sleep(0.5)
    cluster.service.remove(old)
    deletion = await old.delete(grace=15, keep_volume=True)
    await cluster.sender.stop()
    assert deletion.exit_code == 0 and not deletion.killed, (deletion, old.tail())
    report = old.drain_report()
    assert report is not None and report["outcome"] == "unreachable" and report["level"] == "error", report

    partitioned_broker.heal()
    stranded = await cluster.snapshot("old pod gone, before the new one", ["claim-0"])
    conservation_log.record(stranded)
    # The report counts what the spool holds: the stranded events, and any whose produce reached
    # Kafka as the link went down but whose acknowledgement did not (also on Kafka: sent twice).
    assert stranded.lost == 0 and 0 < stranded.stranded <= report["events_left"], stranded.line()
    assert report["events_left"] == len(await cluster.kept_spools(["claim-0"])), report

    await cluster.running("ingest-0b", "claim-0")  # the StatefulSet's new pod, same claim
    cluster.sender.start(interval=0.05)
    await asyncio.sleep(1.0)
    assert_conserved(await cluster.conclude(["claim-0"]), conservation_log)


@pytest.mark.parametrize("sigterm_after", [0.0, 2.0], ids=["sigterm-at-heal", "sigterm-2s-after-heal"])
async def test_rollout_right_after_the_outage_heals(partitioned_broker: PartitionedBroker, tmp_path: Path,
                                                   processes: list[subprocess.Popen[bytes]],
                                                   conservation_log: ConservationLog, sigterm_after: float) -> None:
    """The issue's case (14,500 of 17,500 acked events lost): Kafka cut off, 30 batches spooled,
    Kafka back and the pod deleted at the same moment (or shortly after), its emptyDir removed
    once it exited. The drain before exit sends the spool first: nothing lost."""
    cluster = Cluster(tmp_path, processes, partitioned_broker, f"rollout right after the heal ({sigterm_after:g} s)")
    cluster.sender.batch = 500  # the vendor's batches: 30 of them are the issue's ~15,000 spooled events
    old = await cluster.running("ingest-0", "empty-0")
    await cluster.sender.send(3)
    partitioned_broker.partition()
    await cluster.sender.send(30)
    new = cluster.pod("ingest-1", "empty-1")  # maxSurge: the new pod is up (spooling) before the old goes
    await new.start()
    cluster.service.add(new)
    cluster.sender.start(interval=0.05)
    partitioned_broker.heal()
    await asyncio.sleep(sigterm_after)
    cluster.service.remove(old)
    deletion = await old.delete(grace=60, keep_volume=False)  # emptyDir: gone with the pod
    assert deletion.exit_code == 0 and not deletion.killed, (deletion, old.tail())
    report = old.drain_report()
    assert report is not None and report["outcome"] in ("drained", "empty") and report["events_left"] == 0, report
    await asyncio.sleep(1.0)
    assert_conserved(await cluster.conclude([]), conservation_log)


async def test_hpa_scale_down_with_spooled_replicas(partitioned_broker: PartitionedBroker, tmp_path: Path,
                                                    processes: list[subprocess.Popen[bytes]],
                                                    conservation_log: ConservationLog) -> None:
    """Three replicas spool during an outage; Kafka heals and the HPA scales 3 -> 1 at once: the two
    removed replicas drain on the way out (their emptyDirs then go), the third keeps serving."""
    cluster = Cluster(tmp_path, processes, partitioned_broker, "HPA scale-down 3 -> 1 after an outage")
    pods = [await cluster.running(f"ingest-{n}", f"empty-{n}") for n in range(3)]
    await cluster.sender.send(3)
    partitioned_broker.partition()
    await cluster.sender.send(30)  # round-robin: ten batches spooled on each replica
    partitioned_broker.heal()
    cluster.sender.start(interval=0.05)
    for pod in pods[1:]:
        cluster.service.remove(pod)
    deletions = await asyncio.gather(*(pod.delete(grace=60, keep_volume=False) for pod in pods[1:]))
    for pod, deletion in zip(pods[1:], deletions, strict=True):
        assert deletion.exit_code == 0 and not deletion.killed, (pod.name, deletion, pod.tail())
        report = pod.drain_report()
        assert report is not None and report["events_left"] == 0, (pod.name, report)
    await asyncio.sleep(1.0)
    assert_conserved(await cluster.conclude(["empty-0"]), conservation_log)


async def test_node_drain_while_kafka_is_away_then_a_spool_drain_job(
        partitioned_broker: PartitionedBroker, tmp_path: Path, processes: list[subprocess.Popen[bytes]],
        conservation_log: ConservationLog) -> None:
    """`kubectl drain --grace-period=3` during an outage: the pod is SIGKILLed in the middle of its
    drain before exit; the claim keeps the spool (stranded while Kafka is away); after the heal, a
    one-off Job runs `siemgate spool drain` on the claim, without scaling back up."""
    cluster = Cluster(tmp_path, processes, partitioned_broker, "node drain (grace 3 s) during an outage")
    pod = await cluster.running("ingest-0", "claim-0", drain_timeout=300)
    await cluster.sender.send(3)
    partitioned_broker.partition()
    await cluster.sender.send(20)
    cluster.service.remove(pod)
    deletion = await pod.delete(grace=3, keep_volume=True)
    assert deletion.killed, deletion  # the drain (Kafka away) outlasted the grace period

    partitioned_broker.heal()
    stranded = await cluster.snapshot("pod gone, spool on the claim", ["claim-0"])
    conservation_log.record(stranded)
    assert stranded.lost == 0 and stranded.stranded == 2000, stranded.line()

    job = await asyncio.to_thread(
        subprocess.run, [*siemgate_command(), "spool", "drain", "-c", str(pod.config), "--timeout", "60"],
        capture_output=True, timeout=120, stdin=subprocess.DEVNULL)
    assert job.returncode == 0, (job.stdout.decode(), job.stderr.decode()[-2000:])
    assert "the spool is empty: 2000 events sent to Kafka" in job.stdout.decode()
    assert_conserved(await cluster.conclude(["claim-0"]), conservation_log)
