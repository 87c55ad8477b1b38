from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from siemgate_standins.broker import BrokerUnavailable, tansu_binary
from tests.support import PrivateTansu

TansuFactory = Callable[..., PrivateTansu]


@pytest.fixture
def private_tansu(tmp_path: Path) -> Iterator[TansuFactory]:
    """Make Tansu brokers of this test (not started yet): `private_tansu(advertised=...)`.

    Tests that kill and restart a broker need one of their own, so this always uses Tansu,
    even when KAFKA_BOOTSTRAP_SERVERS names a broker. Every broker made is killed at the end.
    Under CI=true a missing Tansu fails the test; elsewhere it skips."""
    try:
        tansu_binary()
    except BrokerUnavailable as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Tansu needed under CI=true: {exc}")
        pytest.skip(f"no Tansu broker: {exc}")
    made: list[PrivateTansu] = []

    def make(*, port: int | None = None, advertised: str | None = None) -> PrivateTansu:
        broker = PrivateTansu(tmp_path / f"tansu-{len(made)}.log", port=port, advertised=advertised)
        made.append(broker)
        return broker

    try:
        yield make
    finally:
        for broker in made:
            broker.stop()
