"""Kafka -> forwarder -> real rsyslog: an outage of the receiver loses nothing over TCP."""

from __future__ import annotations

import asyncio
import collections
import time
from pathlib import Path

import orjson
import pytest

from siemgate.config import parse_config
from siemgate.forwarders.metrics import ForwardMetrics
from siemgate.forwarders.sinks.registry import build_settings, create_sink
from siemgate_standins.broker import Broker
from tests.forwarders.rsyslog import running_rsyslog
from tests.forwarders.test_runtime import config_for, forwarding, produce, record_for, until

pytestmark = pytest.mark.anyio

OUTAGE_SECONDS = 30


def ids(messages: list[dict[str, object]]) -> list[str]:
    return [orjson.loads(str(m["msg"]).lstrip("\ufeff"))["id"] for m in messages]


async def test_rsyslog_down_for_30_seconds_loses_nothing(kafka_broker: Broker, tmp_path: Path) -> None:
    config = config_for(kafka_broker, tmp_path)
    prefix = config.bus.kafka.topic_prefix  # type: ignore[union-attr]
    with running_rsyslog(tmp_path / "rsyslog") as rsyslog:
        settings = build_settings("syslog", {
            "name": "soc", "address": f"tcp://127.0.0.1:{rsyslog.tcp_port}", "format": "rfc5424",
            "retry": {"initial_seconds": 0.2, "max_seconds": 2.0}, "batch": {"max_events": 200},
        }, {}, "sinks[0]")
        metrics = ForwardMetrics()
        await produce(config, [record_for(prefix, i, ("high", "medium", "low")[i % 3]) for i in range(1000)])
        async with forwarding(config, create_sink(settings), metrics):
            await rsyslog.wait_for(1000, timeout=60)
            rsyslog.stop()
            await produce(config, [record_for(prefix, i, "high") for i in range(1000, 2000)])
            await until(lambda: metrics.up.labels("soc")._value.get() == 0, timeout=30)
            down_since = time.monotonic()
            await asyncio.sleep(OUTAGE_SECONDS)  # the outage itself, not a synchronisation
            rsyslog.start()
            received = await rsyslog.wait_for(2000, timeout=90)
            back_after = time.monotonic() - down_since
    counts = collections.Counter(ids(received))
    assert set(counts) == {f"e-{i}" for i in range(2000)}
    assert sum(n - 1 for n in counts.values()) == 0
    assert back_after >= OUTAGE_SECONDS
    assert metrics.retries.labels("soc", "retryable")._value.get() > 0


def test_parse_config_accepts_a_syslog_sink() -> None:
    config = parse_config("sinks: [{name: soc, type: syslog, address: 'udp://127.0.0.1:514', format: cef}]", {})
    assert config.sinks[0].settings.format == "cef"
