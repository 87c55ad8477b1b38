"""The ingest's per-integration activity tracker: the last hour, per minute, bounded."""

from __future__ import annotations

from siemgate.ingest.metrics import WINDOW_MINUTES, ActivityTracker


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_counts_batches_events_and_rejections_by_code() -> None:
    clock = Clock()
    tracker = ActivityTracker(clock)
    tracker.accepted("prod", 500)
    clock.now += 10
    tracker.accepted("prod", 20)
    tracker.rejected("prod", 401)
    tracker.rejected("prod", 401)
    tracker.rejected("prod", 400)
    summary = tracker.summary("prod")
    assert (summary.batches, summary.events, summary.rejections) == (2, 520, 3)
    assert summary.rejections_by_code == {"400": 1, "401": 2}
    assert summary.last_batch_at == clock.now
    assert summary.last_rejection_at == clock.now
    assert tracker.summary("staging").events == 0
    assert tracker.summary("staging").last_batch_at is None


def test_only_the_last_hour_counts() -> None:
    clock = Clock(1_800_000_000.0)  # a minute boundary
    tracker = ActivityTracker(clock)
    tracker.accepted("prod", 100)
    tracker.rejected("prod", 503)
    clock.now += 30 * 60
    tracker.accepted("prod", 10)
    assert tracker.summary("prod").events == 110
    clock.now += 29 * 60 + 59  # the first minute is still the 60th minute back
    assert tracker.summary("prod").events == 110
    assert tracker.summary("prod").rejections == 1
    clock.now += 1  # now it is 61 minutes old
    summary = tracker.summary("prod")
    assert (summary.events, summary.batches, summary.rejections) == (10, 1, 0)
    assert summary.rejections_by_code == {}
    clock.now += 3 * 3600
    summary = tracker.summary("prod")
    assert (summary.events, summary.batches) == (0, 0)
    assert summary.last_batch_at is not None  # the last batch's time is kept, however old


def test_memory_is_bounded_whatever_the_traffic() -> None:
    clock = Clock()
    tracker = ActivityTracker(clock)
    for _ in range(5 * WINDOW_MINUTES):
        clock.now += 60
        tracker.accepted("prod", 1)
        tracker.rejected("prod", 401)
    ring = tracker._rings["prod"]
    assert len(ring.buckets) == WINDOW_MINUTES
    # A stale bucket is reused for its new minute: the hour holds exactly 60 minutes' worth.
    assert tracker.summary("prod").events == WINDOW_MINUTES
    assert tracker.summary("prod").rejections == WINDOW_MINUTES


def test_retain_forgets_integrations_removed_by_a_reload() -> None:
    tracker = ActivityTracker(Clock())
    tracker.accepted("old", 1)
    tracker.accepted("kept", 1)
    tracker.retain(["kept", "new"])
    assert set(tracker._rings) == {"kept"}
    assert tracker.summary("old").events == 0
