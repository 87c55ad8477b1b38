"""The forwarders' progress watchdog: a forwarder that has work and makes no progress is stalled.

The machinery (`Progress`, `Stall`, the judging `Watchdog`) is shared with the ingest's spool
drainer and lives in `siemgate.watchdog`; this module says what progress, work and excuses
are for a forwarder, and words its logs.

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

import logging
from collections.abc import Callable

from siemgate import watchdog as _shared
from siemgate.watchdog import AUTH_PAUSE, Progress, Stall, iso

log = logging.getLogger("siemgate.forward")

# What a forwarder can be waiting on (the ERROR log and /healthz name it).
FETCH = "fetch"
SEND = "send"
ACK = "ack"
COMMIT = "commit"
BACKOFF = "backoff"
DEAD_LETTER = "dead-letter write"


def _stalled(name: str, stall: Stall, timeout: float) -> str:
    return (f"forwarder of sink {name} is stalled: {stall.pending} events to deliver and no fetch, "
            f"delivery or commit for {timeout:g} s, waiting on {stall.waiting_on} since "
            f"{iso(stall.waiting_since)}; /healthz fails so that the process is restarted "
            "(nothing committed is lost: what was not committed is read again)")


class Watchdog(_shared.Watchdog):
    """Judges every forwarder of a process (`siemgate_stalled{sink}`, logs on siemgate.forward)."""

    def __init__(self, set_gauge: Callable[[str, int], None]) -> None:
        super().__init__(set_gauge, logger=log, stalled_message=_stalled,
                         resumed_message=lambda name: f"forwarder of sink {name} resumed")


__all__ = ["ACK", "AUTH_PAUSE", "BACKOFF", "COMMIT", "DEAD_LETTER", "FETCH", "SEND", "Progress", "Stall", "Watchdog"]
