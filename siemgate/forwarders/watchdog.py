"""The progress watchdog: a forwarder that has work and makes no progress is reported stalled.

A stalled forwarder fails the process's `/healthz` (Kubernetes' liveness probe restarts the
pod: what it had not committed is read again, so nothing is lost), sets
`siemgate_stalled{sink}` to 1 and logs one ERROR naming the sink, what it was waiting on and
since when. The net under bugs that leave a forwarder waiting forever (docs/RELIABILITY.md,
finding 4), not a fix for them.

The rules (`Progress.stall`), each a false positive avoided:

- **Progress** is: records fetched, a send attempt started or ended (successful or not: an
  attempt against a sink that is down is the forwarder doing its job), an answer from the
  sink during a send (HEC's indexer-ack polls), a commit completed. A wait with no attempt
  (a fetch that brings nothing, a backoff, a commit still under way) is not.
- **No work, no stall.** Work is the lag (events not yet read) plus the events read and not
  yet committed. None (nothing left to read, nothing in flight) is never a stall, and neither
  is an unknown lag (no partitions assigned: another member of the group has them). The clock
  starts when work appears, not at the last progress before it.
- **Paused on purpose is not stalled.** A sink that refused our credentials (401/403, HEC's
  token codes, a TLS client certificate refused) is paused until an operator fixes it:
  `siemgate_sink_up` 0 and its ERROR log say so, and a restart would not help.
- **The bus away is not a stall of one forwarder.** While the process cannot reach the bus
  at all (`Watchdog.excuse`), every forwarder's clock starts again: a restart would not
  help either, and after the bus is back each forwarder has the whole timeout to resume.

A single wait longer than `forward.stall_timeout_seconds` reads as a stall: keep it above the
sinks' own timeouts (`retry.max_seconds`, `timeout_seconds`, `write_timeout_seconds`).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

log = logging.getLogger("siemgate.forward")

# What a forwarder can be waiting on (the ERROR log and /healthz name it).
FETCH = "fetch"
SEND = "send"
ACK = "ack"
COMMIT = "commit"
BACKOFF = "backoff"
AUTH_PAUSE = "backoff after an auth refusal"
DEAD_LETTER = "dead-letter write"

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class Stall:
    """Why a forwarder is reported stalled."""

    sink: str
    # The oldest wait under way ("fetch", "send", "commit" ...), or "nothing" when none is.
    waiting_on: str
    # Since when that wait is under way, and since when nothing progressed (wall clock, seconds).
    waiting_since: float
    idle_since: float
    # Events not yet read plus events read and not yet committed.
    pending: int
    # Every wait under way, oldest first (a send waiting on HEC's acks shows both): (what, since).
    waits: tuple[tuple[str, float], ...] = ()

    def describe(self) -> dict[str, object]:
        return {"sink": self.sink, "waiting_on": self.waiting_on, "waiting_since": _iso(self.waiting_since),
                "no_progress_since": _iso(self.idle_since), "pending_events": self.pending,
                "waits": [{"what": what, "since": _iso(since)} for what, since in self.waits]}


class Progress:
    """One forwarder's progress as the watchdog sees it. The forwarder reports; `stall` judges.

    `clock` is monotonic (a fake one in tests); wall-clock times are derived for the log."""

    def __init__(self, sink: str, clock: Clock = time.monotonic, wall: Clock = time.time) -> None:
        self.sink = sink
        self._clock = clock
        self._wall = wall
        self._last_progress = clock()
        self._lag: int | None = None
        self._in_flight = 0
        self._work_since = self._last_progress
        self._waits: dict[int, tuple[str, float]] = {}
        self._tokens = itertools.count()

    @property
    def lag(self) -> int | None:
        return self._lag

    def progressed(self) -> None:
        """Something moved: records fetched, a send attempt made or answered, a commit done."""
        self._last_progress = self._clock()

    def excuse(self) -> None:
        """Not this forwarder's fault (the bus is away): its clock starts again."""
        self._last_progress = self._clock()

    @property
    def pending(self) -> int | None:
        """Events not yet read plus events read and not yet committed; None: lag unknown."""
        return None if self._lag is None else self._lag + self._in_flight

    def set_lag(self, lag: int | None) -> None:
        """The events left to read, as last measured; None when unknown (no partitions)."""
        had_work = bool(self.pending)
        self._lag = lag
        self._note_work(had_work)

    def add_in_flight(self, records: int) -> None:
        """Records read (positive) or committed or given up (negative)."""
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
                # A pause on purpose does not count against the forwarder: its clock starts
                # when the pause ends (the next attempt is due then).
                self._last_progress = self._clock()

    def stall(self, timeout: float) -> Stall | None:
        """The stall, if this forwarder has work and made no progress for `timeout` seconds."""
        pending = self.pending
        if not pending:
            return None  # nothing to do (0), or nothing known to do (None)
        if any(what == AUTH_PAUSE for what, _ in self._waits.values()):
            return None  # paused on purpose: siemgate_sink_up 0 reports it; a restart does not help
        now = self._clock()
        idle_since = max(self._last_progress, self._work_since)
        if now - idle_since < timeout:
            return None
        waits = sorted(self._waits.values(), key=lambda w: w[1])
        waiting_on, since = waits[0] if waits else ("nothing", idle_since)
        offset = self._wall() - now
        return Stall(self.sink, waiting_on, since + offset, idle_since + offset, pending,
                     tuple((what, started + offset) for what, started in waits))


class Watchdog:
    """Judges every forwarder of a process; keeps `siemgate_stalled` and the logs in step.

    `check` is called periodically by the service (and by tests, with a fake clock); /healthz
    reads `stalls`."""

    def __init__(self, set_gauge: Callable[[str, int], None]) -> None:
        self._set_gauge = set_gauge
        self.stalls: dict[str, Stall] = {}

    def excuse(self, forwarders: Mapping[str, Progress]) -> None:
        """The bus cannot be reached: no forwarder is to blame, every clock starts again."""
        for name, progress in forwarders.items():
            progress.excuse()
            self._set_gauge(name, 0)
        self.stalls = {}

    def check(self, forwarders: Mapping[str, Progress], timeout: float) -> dict[str, Stall]:
        found: dict[str, Stall] = {}
        for name, progress in forwarders.items():
            stall = progress.stall(timeout)
            if stall is not None:
                found[name] = stall
                if name not in self.stalls:
                    log.error(f"forwarder of sink {name} is stalled: {stall.pending} events to deliver and no fetch, "
                              f"delivery or commit for {timeout:g} s, waiting on {stall.waiting_on} since "
                              f"{_iso(stall.waiting_since)}; /healthz fails so that the process is restarted "
                              "(nothing committed is lost: what was not committed is read again)",
                              extra={"sink": name, **stall.describe()})
            elif name in self.stalls:
                log.warning(f"forwarder of sink {name} resumed", extra={"sink": name})
            self._set_gauge(name, 1 if stall is not None else 0)
        self.stalls = found
        return found


def _iso(wall: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(wall))
