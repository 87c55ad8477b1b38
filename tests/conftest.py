from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from siemgate_standins.broker import Broker, BrokerUnavailable, start_tansu

# ------------------------------------------------------------------------------------------
# Parallel runs (pytest-xdist: `make test` passes `-n auto --dist loadgroup`)
#
# The tests that inject faults into processes against the clock (outages, stalls, SIGKILLs,
# network partitions, liveness probes, recovery times) form one unit of work, SERIAL: one
# worker runs them one after the other, as a serial run does, starting with them (the longest
# unit); the other workers take every other test module by module beside it. Nothing is
# shared between tests but the session's broker, of which each worker starts its own (each
# test has its own topic prefix, free ports and tmp_path; network namespaces have random names
# and random /30s of 198.18.0.0/15).
#
# The unit is made here, by the scheduler, rather than with xdist_group marks: xdist 3.8 marks
# a group by rewriting the node ids, which pytest 9.2 no longer lets it do (pytest-xdist issue
# 1386): the marks are silently ignored there.

SERIAL_UNIT = "serial: timing-sensitive process tests"
SERIAL = (  # ~950 s of a serial run's ~1,760 s: the other workers take the rest meanwhile
    "tests/faults/",
    "tests/lifecycle/",
    "tests/forwarders/test_stall_process.py",
    "tests/forwarders/test_stall.py",
    "tests/forwarders/test_forward_process.py",
    "tests/forwarders/test_http_sinks_process.py",
    "tests/forwarders/test_sentinel_process.py",
    "tests/forwarders/test_syslog_pipeline.py",
    "tests/forwarders/test_syslog_relp.py",
    "tests/ingest/test_drain_process.py",
    "tests/ingest/test_spool_process.py",
)
MAX_WORKERS = 4


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`--dist loadgroup`: SERIAL on one worker, first; every other module a unit of its own."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class SerialFirst(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            if nodeid.startswith(SERIAL):
                return SERIAL_UNIT
            return str(super()._split_scope(nodeid))

        def _assign_work_unit(self, node: Any) -> None:
            if SERIAL_UNIT in self.workqueue:
                self.workqueue.move_to_end(SERIAL_UNIT, last=False)
            super()._assign_work_unit(node)

    return SerialFirst(config, log)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto`: one worker per CPU this process may use, at most MAX_WORKERS (the serial
    unit's timing tests share the machine with the others); SIEMGATE_TEST_WORKERS=N: N."""
    override = os.environ.get("SIEMGATE_TEST_WORKERS")
    if override:
        if not override.isdigit() or int(override) < 1:
            raise pytest.UsageError(f"SIEMGATE_TEST_WORKERS={override!r}: a number of workers, 1 or more")
        return int(override)
    return max(1, min(MAX_WORKERS, len(os.sched_getaffinity(0))))


WORKER_SUMMARIES: list[tuple[str, list[str]]] = []


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """The controller of a parallel run: keep what a worker's session left to be printed at the
    end (`session_summary`), e.g. the fault table, which only the worker that ran the faults has."""
    output = getattr(node, "workeroutput", None) or {}
    for title, lines in output.get("summaries", []):
        WORKER_SUMMARIES.append((title, lines))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for title, lines in WORKER_SUMMARIES:
        terminalreporter.write_sep("=", title)
        for line in lines:
            terminalreporter.write_line(line)


def session_summary(config: pytest.Config, title: str, lines: list[str]) -> bool:
    """In an xdist worker: hand `lines` to the controller, which prints them under `title` at the
    end of the run; True. Elsewhere (a serial run, the controller): False, print them yourself."""
    output = getattr(config, "workeroutput", None)
    if output is None:
        return False
    output.setdefault("summaries", []).append((title, lines))
    return True


def session_basetemp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run's basetemp (`/tmp/pytest-of-USER/pytest-N`), also in an xdist worker, whose own is
    a directory of it (`.../pytest-N/popen-gw0`)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


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
