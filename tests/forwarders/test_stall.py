"""The progress watchdog in the service, on both buses: a sink that never answers fails
/healthz (the forwarders' and, in `siemgate run`, the ingest's), and a forwarder without
partitions exports no lag."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from jsonschema import Draft202012Validator
from prometheus_client import generate_latest

from siemgate.config import parse_config
from siemgate.forwarders.runtime import SinkForwarder, _Rebalance, group_id
from siemgate.forwarders.service import ForwardService
from siemgate.forwarders.sinks.base import BatchSettings, RetrySettings, SinkSettings
from siemgate.ingest.app import create_app
from tests.forwarders.test_runtime import Backend, MemorySink, backend, forwarding, record_for, settings, until

__all__ = ["backend"]  # the parametrized fixture, used by name

pytestmark = pytest.mark.anyio


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[int]:
    """A TCP server that accepts connections and never answers (an HTTP sink's request hangs)."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for writer in held:
            writer.close()
        await server.wait_closed()


def stalled_schema() -> dict[str, Any]:
    document = yaml.safe_load((Path(__file__).parents[2] / "docs" / "openapi.yaml").read_text())
    schema: dict[str, Any] = document["components"]["schemas"]["Stalled"]
    return schema


def bus_yaml(backend: Backend) -> str:
    bus = backend.config.bus
    if bus.type == "embedded":
        return f"bus: {{type: embedded, path: {bus.path}}}"
    assert bus.kafka is not None
    return (f"bus: {{type: kafka, kafka: {{bootstrap_servers: \"{','.join(bus.kafka.servers)}\", "
            f"topic_prefix: {bus.topic_prefix}, idempotence: {str(bus.kafka.idempotence).lower()}, "
            "topics: {partitions: 2}}}")


async def test_a_sink_that_never_answers_fails_healthz_with_the_reason(backend: Backend) -> None:
    async with silent_server() as port:
        config = parse_config(f"""
{bus_yaml(backend)}
forward: {{drain_timeout_seconds: 1, lag_interval_seconds: 0.2, stall_timeout_seconds: 1.5,
          listen: {{host: 127.0.0.1, port: 0}}}}
sinks:
  - name: frozen
    type: splunk_hec
    url: http://127.0.0.1:{port}
    token: t0ken
    ack: false
    timeout_seconds: 600
""", {})
        await backend.produce([record_for(backend.prefix, i) for i in range(20)])
        async with backend.bus([group_id(config, "frozen")]) as bus:
            service = ForwardService(config, bus=bus)
            task = asyncio.create_task(service.run())
            transport = httpx.ASGITransport(app=service.app())
            try:
                async with httpx.AsyncClient(transport=transport, base_url="http://forward") as client:
                    await until(lambda: service.health(), timeout=60)
                    answer = await client.get("/healthz")
                    assert answer.status_code == 503
                    body: dict[str, Any] = answer.json()
                    assert body["status"] == "stalled"
                    [stall] = body["stalled"]
                    assert stall["sink"] == "frozen" and stall["waiting_on"] == "send" and stall["pending_events"] > 0
                    assert {"waiting_since", "no_progress_since"} <= set(stall)
                    assert stall["waits"][0]["what"] == "send"  # the fetch loop may be polling too
                    Draft202012Validator(stalled_schema()).validate(body)  # as docs/openapi.yaml says
                    text = generate_latest(service.metrics.registry).decode()
                    assert 'siemgate_stalled{sink="frozen"} 1.0' in text

                    # `siemgate run`: the ingest's /healthz carries the same verdict.
                    ingest = create_app(config, bus.publisher(), health=service.health)
                    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=ingest),
                                                 base_url="http://ingest") as run_client:
                        answer = await run_client.get("/healthz")
                        assert answer.status_code == 503 and answer.json()["stalled"][0]["sink"] == "frozen"
            finally:
                service.request_stop()
                await asyncio.wait_for(task, 30)


async def test_a_forwarder_without_partitions_exports_no_lag(backend: Backend) -> None:
    await backend.produce([record_for(backend.prefix, i) for i in range(5)])
    sink = MemorySink(settings())
    async with forwarding(backend.config, sink) as forwarder:
        await until(lambda: len(sink.received) >= 5)
        lag_line = 'siemgate_forward_lag_events{severity="high",sink="mem"}'
        await until(lambda: forwarder.progress.lag == 0)  # measured after everything was read
        assert lag_line in generate_latest(forwarder.metrics.registry).decode()
        # A rebalance leaves this member without partitions (another member has them all).
        await _Rebalance(forwarder).on_partitions_assigned([])
        assert lag_line not in generate_latest(forwarder.metrics.registry).decode()
        assert forwarder.progress.lag is None


def slow_retry_settings() -> SinkSettings:
    return SinkSettings(name="mem", batch=BatchSettings(max_events=100),
                        retry=RetrySettings(initial_seconds=1.0, max_seconds=1.0))


async def judged(forwarder: SinkForwarder, timeout: float, seconds: float) -> list[str]:
    """Judge the forwarder every 20 ms for `seconds`: what each stall found waited on."""
    found = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        stall = forwarder.progress.stall(timeout)
        if stall is not None:
            found.append(stall.waiting_on)
        await asyncio.sleep(0.02)
    return found


async def test_a_sink_refusing_credentials_is_paused_not_stalled_but_a_backoff_without_attempt_is(
    backend: Backend
) -> None:
    await backend.produce([record_for(backend.prefix, i) for i in range(10)])
    refusing = MemorySink(slow_retry_settings())
    refusing.auth_fail_next = 10**6
    # The sinks never take a batch: the drain at the end can only run out (1 s is as good as 5).
    async with forwarding(backend.config, refusing, drain_seconds=1) as forwarder:
        await until(lambda: refusing.calls >= 1 and forwarder.progress.pending)
        # Backoffs of up to 1 s between attempts, judged against a 0.1 s timeout: never stalled.
        assert await judged(forwarder, 0.1, 3.0) == []
        assert refusing.calls >= 2  # attempts went on
    await backend.produce([record_for(backend.prefix, i) for i in range(10, 20)])
    failing = MemorySink(slow_retry_settings())
    failing.fail_next = 10**6
    async with forwarding(backend.config, failing, drain_seconds=1) as forwarder:
        await until(lambda: failing.calls >= 1 and forwarder.progress.pending)
        # The same backoffs after a connection error are waits without an attempt.
        assert "backoff" in await judged(forwarder, 0.1, 3.0)
