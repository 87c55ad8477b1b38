"""Fixtures of the lifecycle suite: a broker behind a real partition (netns.py), the kubelet
player (kubelet.py), and the conservation lines, printed as each scenario ends and written to
`<pytest basetemp>/conservation.txt` (the table of docs/RELIABILITY.md, "Kubernetes lifecycle").

Under CI=true a missing piece (root, `ip`, Tansu) fails the test; elsewhere it skips."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import session_basetemp
from tests.lifecycle import netns
from tests.lifecycle.kubelet import Conservation


@pytest.fixture
def partitioned_broker(tmp_path: Path) -> Iterator[netns.PartitionedBroker]:
    """A started Tansu in a network namespace of this test; everything removed at the end."""
    netns.require()
    broker = netns.PartitionedBroker(tmp_path / "tansu.log")
    try:
        broker.create()
        broker._start()
        yield broker
    finally:
        broker.close()
    left = broker.leftovers()
    assert not left, f"the partition fixture left {left} behind"


class ConservationLog:
    def __init__(self, path: Path) -> None:
        self.path = path

    def record(self, conservation: Conservation) -> None:
        line = conservation.line()
        print(f"\n{line}", flush=True)
        with open(self.path, "a") as out:
            out.write(line + "\n")


@pytest.fixture(scope="session")
def conservation_log(tmp_path_factory: pytest.TempPathFactory) -> ConservationLog:
    return ConservationLog(session_basetemp(tmp_path_factory) / "conservation.txt")
