"""Fixtures of the bad-input suite: one real `siemgate run` process (embedded bus, file sink)
shared by the session, and the hypothesis profiles.

Profiles (`SIEMGATE_FUZZ_PROFILE`):
- `siemgate-fuzz` (default, CI): derandomized (the same examples on every run, so a failure
  reproduces), no example database, no deadline (a request's time is the ingest's, not a bug),
  example counts bounded so that the whole of tests/fuzz runs in well under two minutes.
- `siemgate-fuzz-long`: random seeds and 20 times the examples, for a local hunt. A failure
  prints the `@reproduce_failure` blob to pin it down.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, settings

from tests.fuzz.support import LiveIngest

_SLOW = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example,
         HealthCheck.function_scoped_fixture]
# No `explain` phase: its report of which lines failing examples ran is noise here.
_PHASES = [Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink]

settings.register_profile(
    "siemgate-fuzz",
    max_examples=50,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=False,
    report_multiple_bugs=False,
    suppress_health_check=_SLOW,
    phases=_PHASES,
)
settings.register_profile(
    "siemgate-fuzz-long",
    max_examples=1000,
    deadline=None,
    derandomize=False,
    database=None,
    print_blob=True,
    report_multiple_bugs=False,
    suppress_health_check=_SLOW,
    phases=_PHASES,
)


@pytest.fixture(scope="session")
def live_ingest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveIngest]:
    """One `siemgate run` process for the session; stopped (SIGTERM, then SIGKILL) at its end.

    A test whose input killed it fails (its guard says so); the next test gets a new process
    on a fresh data directory, so one poisonous record does not fail everything after it."""
    ingest = LiveIngest(Path(tmp_path_factory.mktemp("fuzz-ingest")))
    try:
        ingest.start()
        yield ingest
    finally:
        ingest.stop()


@pytest.fixture
def ingest(live_ingest: LiveIngest) -> LiveIngest:
    live_ingest.ensure_running()
    return live_ingest
