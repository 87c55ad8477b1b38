"""Fixtures of the fault suite, and its table: one row per fault, printed at the end of the
session and written as JSON to `<pytest basetemp>/fault-table.json`."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from tests.conftest import session_basetemp, session_summary
from tests.faults.harness import FaultResult, ProxiedTansu, SmallDisk
from tests.ingest.conftest import TansuFactory, private_tansu  # noqa: F401 - a fixture, used here

COLUMNS = ("fault", "events acked", "delivered (of owed)", "lost", "duplicates", "recovery time", "verdict")


class FaultTable:
    current: ClassVar[FaultTable | None] = None

    def __init__(self, path: Path) -> None:
        self.path = path
        self.results: list[FaultResult] = []
        FaultTable.current = self

    def record(self, result: FaultResult) -> None:
        """Print the row now (visible with -s), keep it for the table, rewrite the JSON."""
        print(f"\nFAULT {result.row()}")
        for sink in result.sinks:
            print(f"    {sink.sink:<14} owed {sink.owed:>6}  delivered {sink.delivered:>6}  dead-lettered "
                  f"{sink.dead_lettered:>4}  lost {sink.lost:>4}  duplicates {sink.duplicates:>5}  unacked delivered "
                  f"{sink.unacked_delivered:>4}")
        print(f"    answers {result.codes}; {result.seconds:.0f} s")
        for note in result.notes:
            print(f"    note: {note}")
        for problem in result.problems:
            print(f"    PROBLEM: {problem}")
        self.results.append(result)
        self.path.write_text(json.dumps({"columns": COLUMNS, "results": [r.as_json() for r in self.results]},
                                        indent=1))

    def lines(self) -> list[str]:
        out = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
        for r in self.results:
            out.append(f"| {r.fault} | {r.acked:,} | {r.delivered:,} of {r.owed:,} | {r.lost} | {r.duplicates:,} "
                       f"| {r.recovery_text} | {r.verdict} |")
        out.append("")
        out.append("| fault | sink | owed | delivered | dead-lettered | lost | duplicates | unacked delivered |")
        out.append("|---|---|---|---|---|---|---|---|")
        for r in self.results:
            for s in r.sinks:
                out.append(f"| {r.fault} | {s.sink} | {s.owed:,} | {s.delivered:,} | {s.dead_lettered} | {s.lost} "
                           f"| {s.duplicates:,} | {s.unacked_delivered} |")
        return out


@pytest.fixture(scope="session")
def fault_table(tmp_path_factory: pytest.TempPathFactory) -> FaultTable:
    return FaultTable(session_basetemp(tmp_path_factory) / "fault-table.json")


TITLE = "fault table (tests/faults)"


def pytest_sessionfinish(session: pytest.Session) -> None:
    """In an xdist worker, hand the table to the controller, which prints it at the end."""
    table = FaultTable.current
    if table is not None and table.results:
        session_summary(session.config, TITLE, [*table.lines(), f"JSON: {table.path}"])


def pytest_terminal_summary(terminalreporter: Any) -> None:
    table = FaultTable.current
    if table is None or not table.results or hasattr(terminalreporter.config, "workeroutput"):
        return
    terminalreporter.write_sep("=", TITLE)
    for line in table.lines():
        terminalreporter.write_line(line)
    terminalreporter.write_line(f"JSON: {table.path}")


def needed(reason: str) -> None:
    """A real component is missing: fail under CI=true, skip elsewhere."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"needed under CI=true: {reason}")
    pytest.skip(reason)


@pytest.fixture
async def proxied_tansu(private_tansu: TansuFactory) -> AsyncIterator[ProxiedTansu]:  # noqa: F811
    """A started Tansu of this test behind a proxy the test controls (see ProxiedTansu)."""
    broker = ProxiedTansu(private_tansu)
    await broker.start()
    try:
        yield broker
    finally:
        await broker.stop()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Callable[[str, int], SmallDisk]]:
    """Make size-limited directories (tmpfs mounts), unmounted at the end."""
    reason = SmallDisk.unavailable_reason()
    if reason:
        needed(reason)
    made: list[SmallDisk] = []

    def make(name: str, size_bytes: int) -> SmallDisk:
        disk = SmallDisk(tmp_path / name, size_bytes)
        try:
            disk.mount()
        except Exception as exc:
            needed(f"cannot mount a tmpfs on {disk.path}: {exc}")
        made.append(disk)
        return disk

    yield make
    for disk in made:
        disk.unmount()
