"""The progress watchdog: a worker that has work and makes no progress is reported stalled.

Shared by the forwarders (`siemgate.forwarders.watchdog`: one `Progress` per sink) and the
ingest's spool drainer (`siemgate.bus.spooling`: `component="spool_drainer"`). A stalled
worker fails the process's `/healthz` (Kubernetes' liveness probe restarts the pod), sets
`siemgate_stalled` to 1 and logs one ERROR naming what it was waiting on and since when. The
net under bugs that leave a worker waiting forever (docs/RELIABILITY.md, finding 4), not a fix
for them. What counts as progress, as work and as an excuse is the worker's to say (see the
users' docstrings); the rules common to all:

- **No work, no stall.** Work is the lag (`set_lag`: events not yet taken) plus the events
  taken and not yet done (`add_in_flight`). None (nothing left, nothing in flight) is never
  a stall, and neither is an unknown lag. The clock starts when work appears, not at the
  last progress before it.
- **Paused on purpose is not stalled.** A wait marked AUTH_PAUSE is never a stall, and the
  clock starts again when it ends.
- **Excused.** `Watchdog.excuse` starts every clock again (the worker's cause is elsewhere).
- **Owed outcomes.** `expect(what)` ... `fulfilled(what)`: an outcome owed longer than the
  timeout is a stall even while other things progress (a forwarder whose every commit fails
  while it fetches and sends: finding 4's crawl).

A single wait longer than the timeout reads as a stall: keep the timeout above the worker's
own timeouts.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

# A pause on purpose (an auth refusal): never a stall (see the module docstring).
AUTH_PAUSE = "backoff after an auth refusal"

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class Stall:
    """Why a worker is reported stalled."""

    # The worker: a sink's name (subject "sink"), or a component ("component": spool_drainer).
    name: str
    # The oldest wait under way ("fetch", "send", "commit" ...), or "nothing" when none is.
    waiting_on: str
    # Since when that wait is under way, and since when nothing progressed (wall clock, seconds).
    waiting_since: float
    idle_since: float
    # Events not yet taken plus events taken and not yet done.
    pending: int
    # Every wait under way, oldest first (a send waiting on HEC's acks shows both): (what, since).
    waits: tuple[tuple[str, float], ...] = ()
    # The key naming the worker in `describe()` (and the metric's label): "sink" or "component".
    subject: str = "sink"
    # More for the operator (the spool drainer: the last problem Kafka reported).
    detail: tuple[tuple[str, object], ...] = ()

    @property
    def sink(self) -> str:
        return self.name

    def describe(self) -> dict[str, object]:
        return {self.subject: self.name, "waiting_on": self.waiting_on, "waiting_since": iso(self.waiting_since),
                "no_progress_since": iso(self.idle_since), "pending_events": self.pending,
                "waits": [{"what": what, "since": iso(since)} for what, since in self.waits], **dict(self.detail)}


class Progress:
    """One worker's progress as the watchdog sees it. The worker reports; `stall` judges.

    `clock` is monotonic (a fake one in tests); wall-clock times are derived for the log.
    `subject`: what `name` is ("sink", "component")."""

    def __init__(self, name: str, clock: Clock = time.monotonic, wall: Clock = time.time, *,
                 subject: str = "sink") -> None:
        self.name = name
        self.subject = subject
        self.detail: dict[str, object] = {}  # added to a stall's description (and its ERROR log)
        self._clock = clock
        self._wall = wall
        self._last_progress = clock()
        self._lag: int | None = None
        self._in_flight = 0
        self._work_since = self._last_progress
        self._waits: dict[int, tuple[str, float]] = {}
        self._tokens = itertools.count()
        self._expected: dict[str, float] = {}

    @property
    def sink(self) -> str:
        return self.name

    @property
    def lag(self) -> int | None:
        return self._lag

    def progressed(self) -> None:
        """Something moved (what counts is the worker's to say)."""
        self._last_progress = self._clock()

    def excuse(self) -> None:
        """Not this worker's fault: its clock starts again (and every expectation's)."""
        self._last_progress = self._clock()
        self._expected = dict.fromkeys(self._expected, self._last_progress)

    def expect(self, what: str) -> None:
        """An outcome is owed from now on (if not owed already): until `fulfilled(what)`, the
        worker is stalled once it is owed longer than the timeout, whatever else progresses
        (the forwarders: a commit, while fetches and sends go on but every commit fails)."""
        self._expected.setdefault(what, self._clock())

    def fulfilled(self, what: str) -> None:
        self._expected.pop(what, None)

    @property
    def pending(self) -> int | None:
        """Events not yet taken plus events taken and not yet done; None: lag unknown."""
        return None if self._lag is None else self._lag + self._in_flight

    def set_lag(self, lag: int | None) -> None:
        """The events left to take, as last measured; None when unknown (no partitions)."""
        had_work = bool(self.pending)
        self._lag = lag
        self._note_work(had_work)

    def add_in_flight(self, records: int) -> None:
        """Records taken (positive) or done or given up (negative)."""
        had_work = bool(self.pending)
        self._in_flight = max(0, self._in_flight + records)
        self._note_work(had_work)

    def _note_work(self, had_work: bool) -> None:
        if self.pending and not had_work:
            self._work_since = self._clock()

    @contextlib.contextmanager
    def waiting(self, what: str) -> Iterator[None]:
        """Mark a wait under way (several may be at once: the deliveries in flight, the fetch)."""
        token = next(self._tokens)
        self._waits[token] = (what, self._clock())
        try:
            yield
        finally:
            del self._waits[token]
            if what == AUTH_PAUSE:
                # A pause on purpose does not count against the worker: its clock starts
                # when the pause ends (the next attempt is due then).
                self._last_progress = self._clock()

    def stall(self, timeout: float) -> Stall | None:
        """The stall, if this worker has work and made no progress for `timeout` seconds."""
        pending = self.pending
        if not pending:
            return None  # nothing to do (0), or nothing known to do (None)
        if any(what == AUTH_PAUSE for what, _ in self._waits.values()):
            return None  # paused on purpose: siemgate_sink_up 0 reports it; a restart does not help
        now = self._clock()
        idle_since = max(self._last_progress, self._work_since)
        overdue = sorted((max(since, self._work_since), what) for what, since in self._expected.items())
        waits = sorted(self._waits.values(), key=lambda w: w[1])
        if now - idle_since >= timeout:
            waiting_on, since = waits[0] if waits else ("nothing", idle_since)
        elif overdue and now - overdue[0][0] >= timeout:
            since, waiting_on = overdue[0]
            idle_since = since  # progress elsewhere, but not the outcome owed since then
        else:
            return None
        offset = self._wall() - now
        return Stall(self.name, waiting_on, since + offset, idle_since + offset, pending,
                     tuple((what, started + offset) for what, started in waits), self.subject,
                     tuple(self.detail.items()))


class Watchdog:
    """Judges the workers of a process; keeps `siemgate_stalled` and the logs in step.

    `check` is called periodically (by the worker's owner, and by tests with a fake clock);
    /healthz reads `stalls`. `stalled_message(name, stall, timeout)` and
    `resumed_message(name)` word the ERROR and WARNING logs, on `logger`."""

    def __init__(self, set_gauge: Callable[[str, int], None], *, logger: logging.Logger,
                 stalled_message: Callable[[str, Stall, float], str],
                 resumed_message: Callable[[str], str]) -> None:
        self._set_gauge = set_gauge
        self._log = logger
        self._stalled_message = stalled_message
        self._resumed_message = resumed_message
        self.stalls: dict[str, Stall] = {}

    def excuse(self, workers: Mapping[str, Progress]) -> None:
        """No worker is to blame (e.g. the bus cannot be reached): every clock starts again."""
        for name, progress in workers.items():
            progress.excuse()
            self._set_gauge(name, 0)
        self.stalls = {}

    def check(self, workers: Mapping[str, Progress], timeout: float) -> dict[str, Stall]:
        found: dict[str, Stall] = {}
        for name, progress in workers.items():
            stall = progress.stall(timeout)
            if stall is not None:
                found[name] = stall
                if name not in self.stalls:
                    self._log.error(self._stalled_message(name, stall, timeout),
                                    extra={**stall.describe(), stall.subject: name})
            elif name in self.stalls:
                self._log.warning(self._resumed_message(name), extra={progress.subject: name})
            self._set_gauge(name, 1 if stall is not None else 0)
        self.stalls = found
        return found


def iso(wall: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(wall))
