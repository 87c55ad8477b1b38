"""`siemgate spool drain -c FILE [--timeout S]`: send a spool left behind to Kafka, and exit.

A replica removed while Kafka was unreachable (scale-down, node drain, a drain before exit
that ran out of time) leaves its acknowledged events in `<bus.spool.path>/spool.db` on its
volume. Nothing serves that volume until a replica starts on it again; this command picks
them up without one: mount the volume where the config's `bus.spool.path` points (e.g. a
one-off Kubernetes Job on the replica's claim) and run it. It opens the spool (refused while
an ingest runs on it: the lock), sends everything to Kafka in arrival order, deleting only
what Kafka acknowledged, the same way the ingest's drainer does, and exits 0 once the spool
is empty; 1 with what is left (Kafka unreachable, `--timeout` ran out, or SIGTERM/SIGINT),
which stays in the file, fsync'd, for the next try.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from dataclasses import replace
from pathlib import Path
from typing import TextIO

from siemgate.bus.spool import FILE_NAME
from siemgate.bus.spooling import SpoolingPublisher
from siemgate.config import Config
from siemgate.errors import ConfigError, SpoolError
from siemgate.terminal import printable


async def drain_spool(config: Config, timeout: float | None, out: TextIO) -> int:
    """Drain the configured spool to Kafka; 0 once it is empty, 1 with events left."""
    if config.bus.type != "kafka" or config.bus.kafka is None:
        raise ConfigError("bus.type", "`siemgate spool drain` sends the Kafka ingest's spool to Kafka; the "
                                      "embedded bus has no spool (its log is read by `siemgate run`)")
    if timeout is not None and timeout < 0:
        raise ConfigError("--timeout", "must be 0 or more seconds")
    spool_config = config.bus.spool
    if timeout is not None:
        spool_config = replace(spool_config, drain_timeout_seconds=timeout)
    path = Path(spool_config.path) / FILE_NAME
    if not path.exists():
        print(f"no spool at {path}: check bus.spool.path, and that the replica's volume is mounted there",
              file=out)
        return 1
    publisher = SpoolingPublisher(config.bus.kafka, spool_config)
    try:
        await publisher.open()
    except SpoolError as exc:
        print(f"cannot open the spool: {printable(exc)}", file=out)
        return 1
    held = publisher.spool.events
    print(f"{held} events in {path}; sending them to Kafka (at most {spool_config.drain_timeout_seconds:g} s; "
          "SIGTERM/SIGINT stops, keeping the rest in the spool)", file=out, flush=True)
    loop = asyncio.get_running_loop()
    handled = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, publisher.abandon_drain)
            handled.append(sig)
    try:
        await publisher.start()
        await publisher.stop()
    finally:
        await publisher.stop()  # (a second call does nothing; this one closes the spool after a failure)
        for sig in handled:
            loop.remove_signal_handler(sig)
    report = publisher.last_drain
    left = publisher.spool.events
    if report is None or left:
        why = "" if report is None else {
            "signal": "stopped by a signal", "timeout": "the timeout ran out",
        }.get(report.ended_by, report.ended_by)
        if report is not None and report.outcome == "unreachable":
            why += f"; Kafka did not take the last attempt: {printable(report.kafka_problem or 'not connected')}"
        print(f"{left} events left in {path} ({why.strip('; ')}); they stay there: run this again once Kafka "
              "is reachable, or start an ingest on this volume", file=out)
        return 1
    print(f"the spool is empty: {held} events sent to Kafka in {report.seconds:g} s", file=out)
    return 0
