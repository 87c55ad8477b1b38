"""Hot reload of the config file: on SIGHUP, and when the file changes.

A Kubernetes ConfigMap or Secret mounted as a volume changes by an atomic symlink swap, so
the file is watched by content: it is read (through the path, following the new symlink)
every `poll_seconds` and compared by hash; SIGHUP reloads at once. A change a poll sees is
taken once the file reads the same `settle_seconds` later (a file edited in place is read
whole, not a prefix of it). The files the config refers
to with `${file:/path}` (a Secret's keys mounted as files) are part of that hash: a rotated
Secret reaches a running process the same way, without a restart.

A new file is validated completely first (`parse_config`: every key, every `${VAR}`, every
sink's settings). If it is invalid, the running config stays in force, the error is logged
and `siemgate_config_reload_total{result="invalid"}` counts it. If it is valid, each part of
the process swaps it in (`Reloadable.apply_config`): the ingest's integrations (keys, CIDRs,
confirmation mode, paths, limits, trusted proxies), the forwarders' sinks (tokens, URLs,
batching, severity filters; sinks added or removed), normalization and the log level.
Requests in flight finish under the config they started with; a forwarder swaps its sink
between two sends, in the same consumer group (no rebalance).

Some keys cannot change under a running process: `listen`, `metrics`, `bus`, `state_dir`, `quarantine`,
`admin`, `forward.listen`, `forward.group_prefix`, `forward.fetch_max_wait_ms`. A change to one of
them is logged as needing a restart (and counted, `result="restart_required"`); the rest of
the file is applied and those keys keep their running values.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import os
import signal
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge

from siemgate import logs
from siemgate.config import Config, parse_config, read_config_bytes
from siemgate.config_loader import secret_files
from siemgate.errors import ConfigError, ReloadFailed
from siemgate.metrics import Exposed

log = logging.getLogger("siemgate.reload")


class Reloadable(Protocol):
    async def apply_config(self, config: Config) -> None:
        """Swap the new config in. Raises ReloadFailed (with the old config still in force for
        this part) when it cannot."""


def restart_needed(old: Config, new: Config) -> list[str]:
    """The changed keys that only a restart applies."""
    keys = [key for key in ("listen", "bus", "state_dir", "quarantine", "admin", "metrics")
            if getattr(old, key) != getattr(new, key)]
    keys += [f"forward.{key}" for key in ("listen", "group_prefix", "fetch_max_wait_ms")
             if getattr(old.forward, key) != getattr(new.forward, key)]
    return keys


def keep_running_values(old: Config, new: Config) -> Config:
    """`new` with the restart-only keys of `old`: what a running process applies."""
    forward = dataclasses.replace(new.forward, listen=old.forward.listen, group_prefix=old.forward.group_prefix,
                                  fetch_max_wait_ms=old.forward.fetch_max_wait_ms)
    return dataclasses.replace(new, listen=old.listen, bus=old.bus, state_dir=old.state_dir,
                               quarantine=old.quarantine, admin=old.admin, metrics=old.metrics, forward=forward)


class ReloadMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.reloads = Counter("siemgate_config_reload", "Config reloads by result (applied, invalid, failed, "
                               "restart_required)", ["result"], registry=registry)
        for result in ("applied", "invalid", "failed", "restart_required"):
            self.reloads.labels(result)
        self.last_success = Gauge("siemgate_config_last_reload_success_timestamp_seconds",
                                  "When the running config was last loaded successfully", registry=registry)
        self.last_success.set_to_current_time()


def snapshot(path: Path) -> tuple[bytes, str]:
    """The config file's bytes, and a hash of them and of every `${file:...}` it refers to
    (a missing or unreadable file hashes as such, so its appearance is a change too)."""
    data = read_config_bytes(path)
    digest = hashlib.sha256(data)
    for file in secret_files(data.decode("utf-8", errors="replace")):
        digest.update(b"\0" + file.encode() + b"\0")
        try:
            digest.update(hashlib.sha256(Path(file).read_bytes()).digest())
        except OSError as exc:
            digest.update(f"unreadable {exc.errno}".encode())
    return data, digest.hexdigest()


class ConfigReloader:
    def __init__(self, path: str | Path, config: Config, *, poll_seconds: float = 2.0,
                 environ: Mapping[str, str] | None = None) -> None:
        self.path = Path(path)
        self.config = config
        self.poll_seconds = poll_seconds
        # How long a changed file must stay unchanged before a poll applies it.
        self.settle_seconds = min(0.25, poll_seconds)
        # Its metrics; a process's /metrics exposes them (siemgate.metrics.Exposed).
        self.registry = CollectorRegistry()
        self.metrics = ReloadMetrics(self.registry)
        self._environ = environ
        self._targets: list[Reloadable] = []
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        try:
            self._seen = snapshot(self.path)[1]
        except OSError:
            self._seen = ""

    def add(self, target: Reloadable) -> None:
        self._targets.append(target)

    def request(self) -> None:
        """Reload now (the SIGHUP handler)."""
        self._wake.set()

    def watch(self) -> asyncio.Task[None]:
        """Start watching (until the task is cancelled). SIGHUP is handled from now on, when
        called in the main thread."""
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGHUP, self.request)
        return asyncio.create_task(self._run(loop), name="config-reload")

    async def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            while True:
                forced = False
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
                    forced = True
                self._wake.clear()
                await self.reload(force=forced)
        finally:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(signal.SIGHUP)

    async def reload(self, *, force: bool = True) -> str:
        """Read, validate and apply the file; returns the result (also counted): applied,
        restart_required (applied except those keys), invalid, failed or unchanged."""
        async with self._lock:
            try:
                data, digest = await asyncio.to_thread(snapshot, self.path)
            except OSError as exc:
                return self._refused(f"cannot read {self.path}: {exc}")
            if not force and digest == self._seen:
                return "unchanged"
            if not force:
                # A change seen by polling may be a file being written in place (truncated, then
                # written in several pieces): a prefix of it can be valid YAML holding fewer
                # integrations or sinks. Taken only once it reads the same a moment later.
                await asyncio.sleep(self.settle_seconds)
                try:
                    again = await asyncio.to_thread(snapshot, self.path)
                except OSError as exc:
                    return self._refused(f"cannot read {self.path}: {exc}")
                if again[1] != digest:
                    return "unchanged"  # still being written: the next poll takes it
            environ = os.environ if self._environ is None else self._environ
            try:
                text = data.decode("utf-8")
                new = await asyncio.to_thread(parse_config, text, environ)
            except UnicodeDecodeError as exc:
                self._seen = digest
                return self._refused(f"{self.path}: not UTF-8 ({exc})")
            except ConfigError as exc:
                self._seen = digest
                return self._refused(str(exc.with_source(str(self.path))))
            old = self.config
            restart = restart_needed(old, new)
            applied = keep_running_values(old, new)
            try:
                for target in self._targets:
                    await target.apply_config(applied)
            except ReloadFailed as exc:
                # Not marked as seen: the next poll tries again.
                log.error(f"config reload failed while applying it: {exc}", extra={"path": str(self.path)})
                self.metrics.reloads.labels("failed").inc()
                return "failed"
            self._seen = digest
            self.config = applied
            logs.set_level(applied.log_level)
            self.metrics.last_success.set_to_current_time()
            if restart:
                log.warning(f"config reloaded, except {', '.join(restart)}: those keys keep their running values "
                            "until a restart", extra={"path": str(self.path), "restart_required": restart})
                self.metrics.reloads.labels("restart_required").inc()
                return "restart_required"
            log.info("config reloaded", extra={"path": str(self.path)})
            self.metrics.reloads.labels("applied").inc()
            return "applied"

    def _refused(self, reason: str) -> str:
        log.error(f"config reload refused, the running config stays in force: {reason}",
                  extra={"path": str(self.path)})
        self.metrics.reloads.labels("invalid").inc()
        return "invalid"


@contextlib.asynccontextmanager
async def reloading(reloader: ConfigReloader | None, registry: CollectorRegistry,
                    *targets: Reloadable) -> AsyncIterator[None]:
    """Hot reload while a process serves: `targets` apply each new config, the reloader's
    metrics show on `registry`, SIGHUP is handled. Nothing at all when `reloader` is None."""
    if reloader is None:
        yield
        return
    registry.register(Exposed(reloader.registry))
    for target in targets:
        reloader.add(target)
    task = reloader.watch()
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
