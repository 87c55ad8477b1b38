"""`siemgate forward` to Microsoft Sentinel (the stand-in's Entra ID and Logs Ingestion API):
through a throttle, a revoked token and a SIGKILL, every acknowledged event lands at least once,
duplicates bounded and recognisable by their EventId; and `siemgate check` reaches the token
endpoint and the DCR without writing a row."""

from __future__ import annotations

import asyncio
import collections
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from siemgate_standins.broker import Broker
from siemgate_standins.sentinel import DEFAULT_TENANT, AppRegistration, SentinelStandIn
from tests.forwarders.test_forward_process import BATCH, setup, start, write_config
from tests.forwarders.test_runtime import produce, record_for, until
from tests.forwarders.test_sentinel_sink import CLIENT, DCR, SECRET, rule

pytestmark = pytest.mark.anyio

HTTP_IN_FLIGHT = 3  # the HTTP sinks' default batch.in_flight


def sentinel_sink(azure: SentinelStandIn, secret: str = SECRET) -> str:
    return (f"{{name: sentinel, type: sentinel, endpoint: '{azure.url}', authority_host: '{azure.url}', "
            f"dcr_immutable_id: {DCR}, tenant_id: '{DEFAULT_TENANT}', client_id: '{CLIENT}', "
            f"client_secret: '{secret}', batch: {{max_events: {BATCH}}}, "
            f"retry: {{initial_seconds: 0.05, max_seconds: 1}}}}")


async def test_sigkill_throttling_and_a_revoked_token_lose_nothing(
    kafka_broker: Broker, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    prefix, config = setup(kafka_broker, tmp_path)
    total = 12_000
    await produce(config, [record_for(prefix, i, ("high", "medium", "low")[i % 3]) for i in range(total)])  # type: ignore[arg-type]
    async with SentinelStandIn(apps=[AppRegistration(CLIENT, secrets=(SECRET,))], rules=[rule()]) as azure:
        cfg = write_config(tmp_path, kafka_broker, prefix, tmp_path / "unused", sink=sentinel_sink(azure))

        def received() -> list[str]:
            return [str(r["EventId"]) for r in azure.rows()]

        azure.faults.fail_requests(429, count=2, retry_after=1)
        first = start(cfg, tmp_path / "first.log")
        processes.append(first)
        await until(lambda: len(azure.rows()) >= 1_000, timeout=90)
        azure.expire_tokens()  # the running process's token is refused: it gets a new one
        await until(lambda: len(azure.rows()) >= 3_000, timeout=90)
        first.send_signal(signal.SIGKILL)
        first.wait()
        assert len(azure.rows()) < total, "the forwarder finished before it could be killed"
        second = start(cfg, tmp_path / "second.log")
        processes.append(second)
        await until(lambda: len(set(received())) >= total, timeout=120)
        second.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(second.wait, 30) == 0
        counts = collections.Counter(received())
        statuses = collections.Counter(c.status for c in azure.calls())
        tokens = list(azure.issued)
    logs = (tmp_path / "first.log").read_text() + (tmp_path / "second.log").read_text()
    assert "refused the access token: requesting a new one" in logs
    assert len(tokens) >= 3 and not [t for t in tokens if t in logs], "an access token in the logs"
    assert SECRET not in logs
    assert set(counts) == {f"e-{i}" for i in range(total)}, "every event at least once"
    duplicates = sum(n - 1 for n in counts.values())
    # Delivered but not yet committed when killed: the batches in flight and the one committing.
    assert duplicates <= (HTTP_IN_FLIGHT + 1) * BATCH, duplicates
    assert statuses[429] == 2 and statuses[401] >= 1 and statuses[204] >= total // BATCH


async def test_siemgate_check_reaches_the_token_endpoint_and_the_dcr(tmp_path: Path) -> None:
    async with SentinelStandIn(apps=[AppRegistration(CLIENT, secrets=(SECRET,))], rules=[rule()]) as azure:
        good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
        for path, secret in ((good, SECRET), (bad, "wrong-secret-0000")):
            path.write_text(f"state_dir: {tmp_path}/state\nbus: {{type: embedded, path: {tmp_path}/bus.db}}\n"
                            f"sinks:\n  - {sentinel_sink(azure, secret)}\n")

        async def check(path: Path) -> tuple[int, str]:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "siemgate", "check", "-c", str(path),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
            out, _ = await process.communicate()
            return process.returncode or 0, out.decode()

        code, out = await check(good)
        assert code == 0, out
        assert "accepted an empty call (no row written)" in out and SECRET not in out
        code, out = await check(bad)
        assert code != 0 and "AADSTS7000215" in out and "wrong-secret-0000" not in out
        assert not azure.rows(), "check writes nothing"
        assert [c.status for c in azure.calls()] == [204]
