"""The progress watchdog's rules, on a fake clock (no sleeps): what is a stall, and what is not."""

from __future__ import annotations

import logging

import pytest

from siemgate.config import parse_config
from siemgate.errors import ConfigError
from siemgate.forwarders.watchdog import ACK, AUTH_PAUSE, BACKOFF, COMMIT, FETCH, SEND, Progress, Watchdog

TIMEOUT = 300.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


def progress_of(clock: Clock, sink: str = "splunk") -> Progress:
    # Wall clock = monotonic + 1.7e9, so the reported times are recognisable.
    return Progress(sink, clock=clock, wall=lambda: clock.now + 1.7e9)


def test_lag_without_progress_for_the_timeout_is_a_stall_naming_the_oldest_wait(clock: Clock) -> None:
    progress = progress_of(clock)
    progress.set_lag(500)
    with progress.waiting(SEND):
        clock.advance(10)
        with progress.waiting(FETCH):
            clock.advance(TIMEOUT - 10 - 1)
            assert progress.stall(TIMEOUT) is None  # one second short
            clock.advance(1)
            stall = progress.stall(TIMEOUT)
    assert stall is not None
    assert (stall.sink, stall.waiting_on, stall.pending) == ("splunk", SEND, 500)
    assert stall.waiting_since == 1000.0 + 1.7e9
    assert stall.idle_since == 1000.0 + 1.7e9
    assert stall.describe()["waiting_on"] == "send"
    assert [w["what"] for w in stall.describe()["waits"]] == ["send", "fetch"]  # type: ignore[attr-defined]


def test_a_send_waiting_on_acks_shows_both(clock: Clock) -> None:
    progress = progress_of(clock)
    progress.set_lag(1)
    with progress.waiting(SEND):
        clock.advance(0.01)
        with progress.waiting(ACK):
            clock.advance(TIMEOUT)
            stall = progress.stall(TIMEOUT)
    assert stall is not None and stall.waiting_on == SEND and [w for w, _ in stall.waits] == [SEND, ACK]


def test_a_commit_that_never_ends_is_named(clock: Clock) -> None:
    progress = progress_of(clock)
    progress.set_lag(3)
    with progress.waiting(COMMIT):
        clock.advance(TIMEOUT)
        stall = progress.stall(TIMEOUT)
    assert stall is not None and stall.waiting_on == COMMIT


def test_no_wait_under_way_is_reported_as_waiting_on_nothing(clock: Clock) -> None:
    progress = progress_of(clock)
    progress.set_lag(3)
    clock.advance(TIMEOUT)
    stall = progress.stall(TIMEOUT)
    assert stall is not None and stall.waiting_on == "nothing"


def test_lag_zero_is_never_a_stall(clock: Clock) -> None:
    progress = progress_of(clock)
    progress.set_lag(0)
    with progress.waiting(FETCH):
        clock.advance(10 * TIMEOUT)
        assert progress.stall(TIMEOUT) is None


def test_events_read_and_not_yet_committed_are_work_too(clock: Clock) -> None:
    progress = progress_of(clock)
    progress.set_lag(0)  # everything read ...
    clock.advance(3600)
    progress.add_in_flight(20)  # ... and a batch of 20 sent, its send never ends
    with progress.waiting(SEND):
        clock.advance(TIMEOUT - 1)
        assert progress.stall(TIMEOUT) is None  # the clock started when the work appeared
        clock.advance(1)
        stall = progress.stall(TIMEOUT)
    assert stall is not None and stall.pending == 20 and stall.waiting_on == SEND
    progress.add_in_flight(-20)  # committed
    assert progress.stall(TIMEOUT) is None
    assert progress.pending == 0


def test_unknown_lag_no_partitions_is_not_lag(clock: Clock) -> None:
    progress = progress_of(clock)
    progress.set_lag(40)
    progress.set_lag(None)  # partitions revoked, none assigned
    clock.advance(10 * TIMEOUT)
    assert progress.stall(TIMEOUT) is None
    assert progress_of(clock).stall(0.001) is None  # never measured


def test_the_clock_starts_when_lag_appears_not_at_the_last_progress(clock: Clock) -> None:
    progress = progress_of(clock)
    progress.set_lag(0)
    clock.advance(3600)  # idle for an hour: nothing to do
    progress.set_lag(10)
    clock.advance(TIMEOUT - 1)
    assert progress.stall(TIMEOUT) is None
    progress.set_lag(12)  # still work: the clock does not restart on each measurement
    clock.advance(1)
    assert progress.stall(TIMEOUT) is not None


def test_each_kind_of_progress_restarts_the_clock(clock: Clock) -> None:
    progress = progress_of(clock)
    progress.set_lag(10)
    for _ in range(5):
        clock.advance(TIMEOUT - 1)
        progress.progressed()
        assert progress.stall(TIMEOUT) is None


def test_retries_against_a_sink_that_is_down_are_progress_but_a_wait_without_attempt_is_not(clock: Clock) -> None:
    progress = progress_of(clock)
    progress.set_lag(10)
    # The runtime marks each attempt (start and end) as progress; backoffs in between are not.
    for _ in range(10):
        progress.progressed()  # attempt made, failed
        with progress.waiting(BACKOFF):
            clock.advance(30)  # retry.max_seconds
            assert progress.stall(TIMEOUT) is None
    progress.progressed()
    with progress.waiting(BACKOFF):
        clock.advance(TIMEOUT)  # a backoff that never ends in an attempt
        stall = progress.stall(TIMEOUT)
    assert stall is not None and stall.waiting_on == BACKOFF


def test_a_sink_paused_by_an_auth_refusal_is_not_stalled(clock: Clock) -> None:
    progress = progress_of(clock)
    progress.set_lag(10)
    with progress.waiting(AUTH_PAUSE):
        clock.advance(10 * TIMEOUT)
        assert progress.stall(TIMEOUT) is None
    # The pause over, the clock starts again: the next attempt is due.
    assert progress.stall(TIMEOUT) is None
    clock.advance(TIMEOUT)
    assert progress.stall(TIMEOUT) is not None  # and still nothing: now it is


def test_excuse_restarts_the_clock(clock: Clock) -> None:
    progress = progress_of(clock)
    progress.set_lag(10)
    clock.advance(TIMEOUT - 1)
    progress.excuse()
    clock.advance(TIMEOUT - 1)
    assert progress.stall(TIMEOUT) is None


def test_watchdog_logs_once_per_stall_sets_the_gauge_and_clears_on_resume(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    gauge: dict[str, int] = {}
    watchdog = Watchdog(lambda sink, value: gauge.__setitem__(sink, value))
    stuck, fine = progress_of(clock, "stuck"), progress_of(clock, "fine")
    forwarders = {"stuck": stuck, "fine": fine}
    stuck.set_lag(7)
    fine.set_lag(0)
    with caplog.at_level(logging.INFO, logger="siemgate.forward"), stuck.waiting(COMMIT):
        assert watchdog.check(forwarders, TIMEOUT) == {}
        assert gauge == {"stuck": 0, "fine": 0}
        clock.advance(TIMEOUT)
        for _ in range(3):
            found = watchdog.check(forwarders, TIMEOUT)
            assert set(found) == {"stuck"}
            clock.advance(5)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    message = errors[0].getMessage()
    assert "stuck" in message and "waiting on commit since" in message and "7 events" in message
    assert errors[0].__dict__["waiting_on"] == "commit"
    assert gauge == {"stuck": 1, "fine": 0}
    stuck.progressed()
    assert watchdog.check(forwarders, TIMEOUT) == {}
    assert gauge == {"stuck": 0, "fine": 0}
    assert any(r.getMessage() == "forwarder of sink stuck resumed" for r in caplog.records)


def test_watchdog_excuse_clears_stalls(clock: Clock) -> None:
    gauge: dict[str, int] = {}
    watchdog = Watchdog(lambda sink, value: gauge.__setitem__(sink, value))
    stuck = progress_of(clock, "stuck")
    stuck.set_lag(7)
    clock.advance(TIMEOUT)
    assert watchdog.check({"stuck": stuck}, TIMEOUT)
    watchdog.excuse({"stuck": stuck})
    assert watchdog.stalls == {} and gauge == {"stuck": 0}
    assert watchdog.check({"stuck": stuck}, TIMEOUT) == {}


def test_stall_timeout_is_configured_and_validated() -> None:
    assert parse_config("{}", {}).forward.stall_timeout_seconds == 300
    assert parse_config("forward: {stall_timeout_seconds: 30}", {}).forward.stall_timeout_seconds == 30
    with pytest.raises(ConfigError, match=r"forward\.stall_timeout_seconds: must be longer than lag_interval"):
        parse_config("forward: {stall_timeout_seconds: 5, lag_interval_seconds: 5}", {})
    with pytest.raises(ConfigError, match=r"forward\.stall_timeout_seconds"):
        parse_config("forward: {stall_timeout_seconds: -1}", {})


def test_fetches_and_sends_going_on_while_every_commit_fails_is_a_stall_on_commit(clock: Clock) -> None:
    """Finding 4's crawl: each batch is fetched and sent, its commit times out (60 s), the
    next batch comes: progress all along, yet nothing is ever committed."""
    progress = progress_of(clock)
    progress.set_lag(20_000)
    started = clock.now
    for _ in range(4):  # 4 x 70 s < TIMEOUT
        progress.progressed()  # a fetch, a send
        progress.expect(COMMIT)
        with progress.waiting(COMMIT):
            clock.advance(60)  # CommitRefused: not fulfilled
        clock.advance(10)
        assert progress.stall(TIMEOUT) is None
    clock.advance(TIMEOUT - 4 * 70)
    progress.progressed()
    stall = progress.stall(TIMEOUT)
    assert stall is not None and stall.waiting_on == COMMIT, stall
    assert stall.idle_since == started + 1.7e9  # owed since the first failed commit
    progress.fulfilled(COMMIT)  # a commit went through
    assert progress.stall(TIMEOUT) is None


def test_an_owed_commit_counts_from_when_work_appears_and_an_excuse_restarts_it(clock: Clock) -> None:
    progress = progress_of(clock)
    progress.set_lag(10)
    progress.expect(COMMIT)  # failed, then nothing left to do
    progress.set_lag(0)
    clock.advance(TIMEOUT * 3)
    assert progress.stall(TIMEOUT) is None  # no work
    progress.set_lag(10)  # work again: the clock starts now
    clock.advance(TIMEOUT - 1)
    progress.progressed()
    assert progress.stall(TIMEOUT) is None
    progress.excuse()  # the bus was away
    clock.advance(TIMEOUT - 1)
    progress.progressed()
    assert progress.stall(TIMEOUT) is None
    clock.advance(1)
    assert progress.stall(TIMEOUT) is not None
