from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

from siemgate_standins.broker import Broker, BrokerUnavailable, start_tansu


@pytest.fixture
def anyio_backend() -> str:
    # aiokafka is asyncio-only.
    return "asyncio"


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """A real Kafka-protocol broker for the session: KAFKA_BOOTSTRAP_SERVERS, or Tansu.

    Under CI=true a missing broker fails the test; on a laptop it skips with the reason."""
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield Broker(external, embedded=False)
        return
    log = tmp_path_factory.mktemp("tansu") / "tansu.log"
    try:
        broker = start_tansu(log_path=str(log))
    except BrokerUnavailable as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Kafka broker needed under CI=true: {exc}")
        pytest.skip(f"no Kafka broker: {exc}")
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts: whatever is still running at its end is killed."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()
