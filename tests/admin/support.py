"""Helpers of the admin tests: a process's live parts (ingest context, forward service) without
a bus, for the snapshot and the app in-process."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from siemgate.admin.status import RateMeter, StatusSources
from siemgate.bus.base import Bus, Publisher
from siemgate.bus.spool import SpoolStats
from siemgate.config import Config, parse_config
from siemgate.forwarders.service import ForwardService
from siemgate.ingest.app import IngestContext
from siemgate.record import Record
from siemgate.serve import request_confirmation_link

TOKEN = "admin-token-0123456789-abcdef"
KEY = "webhook-key-0123456789"


class StubPublisher:
    """A publisher that is never started: the admin only reads it."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def publish(self, records: Sequence[Record]) -> None: ...

    async def ready(self) -> bool:
        return True


class SpoolingStub(StubPublisher):
    def __init__(self, stats: SpoolStats) -> None:
        self.stats = stats

    def spool_stats(self) -> SpoolStats:
        return self.stats


def config_text(tmp_path: Path, *, integrations: str = "", sinks: str = "", extra: str = "") -> str:
    return f"""
listen: {{host: 127.0.0.1, port: 0}}
admin: {{host: 127.0.0.1, port: 0, token: "{TOKEN}"}}
state_dir: {tmp_path}/state
quarantine: {{path: {tmp_path}/quarantine}}
bus: {{type: embedded, path: {tmp_path}/bus.db}}
integrations:
{integrations or f'''  - name: appsec-prod
    auth: {{header: X-Api-Key, values: ["{KEY}"]}}'''}
sinks:
{sinks or f"  - {{name: archive, type: file, path: {tmp_path}/out.ndjson}}"}
{extra}
"""


def make_config(tmp_path: Path, **kwargs: str) -> Config:
    return parse_config(config_text(tmp_path, **kwargs), {})


def ingest_context(config: Config, publisher: Publisher | None = None) -> IngestContext:
    return IngestContext(config=config, publisher=publisher or StubPublisher(), prefix=config.bus.topic_prefix)


def forward_service(config: Config) -> ForwardService:
    # Never run: the bus is never touched.
    return ForwardService(config, bus=cast(Bus, object()))


def mark_running(service: ForwardService, *names: str) -> None:
    """As if these sinks' forwarders had started (the snapshot only looks the names up)."""
    for name in names:
        service.forwarders[name] = cast(Any, object())
        service.metrics.up.labels(name).set(1)


def sources(config: Config, *, process: str = "run", ingest: bool = True, forward: bool = True,
            publisher: Publisher | None = None, meter: RateMeter | None = None) -> StatusSources:
    return StatusSources(
        cast(Any, process),
        ingest=ingest_context(config, publisher) if ingest else None,
        forward=forward_service(config) if forward else None,
        meter=meter if meter is not None else RateMeter(),
        confirm_link=request_confirmation_link,
    )
