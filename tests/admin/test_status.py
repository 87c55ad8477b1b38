"""The status snapshot: integrations, sinks and spool as the process knows them."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from siemgate.admin.page import _bytes, status_page
from siemgate.admin.status import RateMeter, build_status, link_id
from siemgate.bus.embedded import EmbeddedLog, EmbeddedPublisher
from siemgate.bus.spool import SpoolStats
from siemgate.bus.sqlite_writer import StorageStats
from siemgate.config import MIN_LOG_BYTES
from siemgate.errors import LogFull
from siemgate.record import Record, topic_for
from tests.admin.support import KEY, SpoolingStub, make_config, mark_running, sources

pytestmark = pytest.mark.anyio

LINK = "https://vendor.example/confirm?token=abc"
TWO_INTEGRATIONS = f"""  - name: appsec-prod
    auth: {{header: X-Api-Key, values: ["{KEY}"]}}
  - name: appsec-staging
    path: /hooks/staging
    auth: {{header: X-Api-Key, values: ["{KEY}"]}}
    confirmation: {{mode: auto, allowed_hosts: [vendor.example]}}
  - name: appsec-new
    auth: {{header: X-Api-Key, values: ["{KEY}"]}}"""


class Clock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_rate_meter_covers_the_last_minute_and_stays_bounded() -> None:
    clock = Clock(1000.0)
    meter = RateMeter(60.0, clock)
    assert meter.rate("a", 0) is None
    meter.observe({"a": 0})
    assert meter.rate("a", 0) is None  # less than a second of history
    clock.now += 30
    meter.observe({"a": 300})
    clock.now += 31
    meter.observe({"a": 610})
    assert meter.rate("a", 610) == pytest.approx(10.0)
    clock.now += 34
    meter.observe({"a": 950})  # the sample at 1000 s is now older than the window start by more than a sample
    assert meter.rate("a", 950) == pytest.approx((950 - 300) / 65)
    assert meter.rate("new-sink", 130) == pytest.approx(130 / 65)  # not sampled yet: it started from 0
    for _ in range(1000):  # sampled far more often than once a second: at most one a second is kept
        clock.now += 0.25
        meter.observe({"a": 950})
    assert len(meter) <= 62
    assert meter.rate("a", 950) == pytest.approx(0.0)


async def test_integrations_states_links_and_activity(tmp_path: Path) -> None:
    config = make_config(tmp_path, integrations=TWO_INTEGRATIONS)
    source = sources(config)
    assert source.ingest is not None
    store = source.ingest.store
    await store.record_link("appsec-prod", LINK, "2026-11-29T10:00:00Z")
    await store.record_link("appsec-staging", LINK + "2", "2026-11-29T09:00:00Z")
    await store.mark_confirmed("appsec-staging", LINK + "2", "cli")
    activity = source.ingest.metrics.activity
    activity.accepted("appsec-prod", 500)
    activity.accepted("appsec-prod", 250)
    activity.rejected("appsec-prod", 401)
    status = await build_status(source)
    assert status.process == "run"
    assert status.integrations is not None
    prod, staging, new = status.integrations
    assert (prod.name, prod.state, prod.link, prod.link_id) == ("appsec-prod", "pending", LINK, link_id(LINK))
    assert (prod.batches_last_hour, prod.events_last_hour, prod.rejections_last_hour) == (2, 750, 1)
    assert prod.rejections_by_code == {"401": 1}
    assert prod.last_batch_at is not None and prod.last_batch_at.endswith("Z")
    assert prod.last_batch_age_seconds is not None and 0 <= prod.last_batch_age_seconds < 60
    assert (staging.state, staging.confirmed_via, staging.path, staging.confirmation_mode) == (
        "confirmed", "cli", "/hooks/staging", "auto")
    assert staging.last_batch_at is None and staging.events_last_hour == 0
    assert (new.state, new.link, new.link_id) == ("no_link", None, None)
    assert status.state_error is None


async def test_a_confirmation_made_by_another_process_shows_at_once(tmp_path: Path) -> None:
    from siemgate.ingest.confirmation_store import ConfirmationStore

    config = make_config(tmp_path)
    source = sources(config)
    other = ConfirmationStore(config.state_dir)  # `siemgate confirm`, say
    await other.record_link("appsec-prod", LINK, "2026-11-29T10:00:00Z")
    status = await build_status(source)
    assert status.integrations is not None and status.integrations[0].state == "pending"
    await other.mark_confirmed("appsec-prod", LINK, "cli")
    status = await build_status(source)
    assert status.integrations is not None and status.integrations[0].state == "confirmed"


async def test_an_unreadable_state_file_is_reported_not_fatal(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "confirmations.json").write_text("{not json")
    status = await build_status(sources(config))
    assert status.state_error is not None and "confirmations.json" in status.state_error
    assert status.integrations is not None and status.integrations[0].name == "appsec-prod"


async def test_sinks_up_down_starting_lag_dead_letters_and_rate(tmp_path: Path) -> None:
    sinks = f"""  - {{name: archive, type: file, path: {tmp_path}/out.ndjson}}
  - {{name: soc, type: syslog, address: "tcp://127.0.0.1:1"}}
  - {{name: splunk, type: splunk_hec, url: "https://127.0.0.1:1", token: "hec-token-000000"}}"""
    clock = Clock(500.0)
    source = sources(make_config(tmp_path, sinks=sinks), meter=RateMeter(60.0, clock))
    service = source.forward
    assert service is not None
    mark_running(service, "archive", "soc")  # splunk has not started yet
    metrics = service.metrics
    metrics.up.labels("soc").set(0)
    metrics.events.labels("archive", "delivered").inc(1000)
    metrics.events.labels("archive", "duplicate").inc(20)
    metrics.events.labels("archive", "filtered").inc(7)
    metrics.events.labels("soc", "dead_lettered").inc(3)
    for severity, lag in (("high", 5), ("medium", 50), ("low", 500)):
        metrics.lag.labels("soc", severity).set(lag)
    source.sample_rates()
    clock.now += 60
    metrics.events.labels("archive", "delivered").inc(600)
    status = await build_status(source)
    assert status.sinks is not None
    archive, soc, splunk = status.sinks
    assert (archive.state, archive.delivered, archive.filtered, archive.dead_lettered) == ("up", 1620, 7, 0)
    assert archive.rate_per_second == pytest.approx(10.0)
    assert (soc.state, soc.dead_lettered, soc.lag_total) == ("down", 3, 555)
    assert soc.lag == {"high": 5, "medium": 50, "low": 500, "unknown": 0}
    assert soc.rate_per_second == pytest.approx(0.0)
    assert (splunk.state, splunk.type, splunk.lag_total) == ("starting", "splunk_hec", 0)


async def test_each_process_shows_its_own_parts(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    forward_only = await build_status(sources(config, process="forward", ingest=False))
    assert forward_only.integrations is None and forward_only.sinks is not None
    assert forward_only.spool is None
    stats = SpoolStats(events=1200, bytes=3_000_000, active=True)
    ingest_only = await build_status(sources(config, process="ingest", forward=False, publisher=SpoolingStub(stats)))
    assert ingest_only.sinks is None and ingest_only.integrations is not None
    assert ingest_only.spool is not None
    assert (ingest_only.spool.kind, ingest_only.spool.events, ingest_only.spool.bytes, ingest_only.spool.active) == (
        "spool", 1200, 3_000_000, True)
    assert ingest_only.spool.max_bytes == config.bus.spool.max_bytes
    (tmp_path / "bus.db").write_bytes(b"x" * 4096)
    embedded = await build_status(sources(config))
    assert embedded.spool is not None
    assert (embedded.spool.kind, embedded.spool.bytes, embedded.spool.events) == ("embedded_log", 4096, None)


def _records(prefix: str, batch: int, n: int = 50) -> list[Record]:
    return [Record(topic_for(prefix, "event", "high"), f"e-{batch}-{i}".encode(), b"x" * 400, [], "high", "event")
            for i in range(n)]


async def test_the_embedded_log_against_its_cap_and_the_free_space(tmp_path: Path) -> None:
    """The live log's storage stats (what `siemgate_storage_*` exports): its bytes on disk against
    bus.max_bytes, the file system's free space, and the batches refused once full, on the page too."""
    config = make_config(tmp_path, extra="")
    log = EmbeddedLog(tmp_path / "bus.db", prefix=config.bus.topic_prefix, max_bytes=MIN_LOG_BYTES)
    publisher = EmbeddedPublisher(log)
    await publisher.start()
    try:
        await publisher.publish(_records(config.bus.topic_prefix, 0))
        await log._engine.measure_storage()
        status = await build_status(sources(config, publisher=publisher))
        spool = status.spool
        assert spool is not None and spool.kind == "embedded_log"
        stats = publisher.storage_stats()
        assert spool.bytes == stats.bytes > 20_000 and spool.max_bytes == MIN_LOG_BYTES
        assert stats.free_bytes is not None and spool.free_bytes == stats.free_bytes
        assert abs(spool.free_bytes - shutil.disk_usage(tmp_path).free) < 64 * 1024**2
        assert spool.refused_full == 0
        page = status_page(status, "nonce", None)
        assert f"of {_bytes(MIN_LOG_BYTES)}" in page and _bytes(spool.free_bytes) in page
        assert "answered 503" not in page

        with pytest.raises(LogFull):
            for batch in range(1, 200):
                await publisher.publish(_records(config.bus.topic_prefix, batch))
        full = await build_status(sources(config, publisher=publisher))
        assert full.spool is not None and full.spool.refused_full == 1
        assert full.spool.bytes <= MIN_LOG_BYTES and full.spool.bytes >= 0.8 * MIN_LOG_BYTES
        page = status_page(full, "nonce", None)
        assert "Batches refused (full)" in page and '<span class="bad-text">1</span>' in page
    finally:
        await publisher.stop()


class StorageSpoolStub(SpoolingStub):
    def __init__(self, stats: SpoolStats, storage: StorageStats) -> None:
        super().__init__(stats)
        self.storage = storage

    def storage_stats(self) -> StorageStats:
        return self.storage


async def test_the_spool_against_its_cap_free_space_and_refusals(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    stats = SpoolStats(events=9000, bytes=950_000, active=True)
    storage = StorageStats(store="spool", bytes=950_000, limit_bytes=1_000_000, free_bytes=3 * 1024**3,
                           refused_full=4)
    status = await build_status(sources(config, process="ingest", forward=False,
                                        publisher=StorageSpoolStub(stats, storage)))
    spool = status.spool
    assert spool is not None
    assert (spool.kind, spool.bytes, spool.max_bytes, spool.free_bytes, spool.refused_full) == (
        "spool", 950_000, 1_000_000, 3 * 1024**3, 4)
    page = status_page(status, "nonce", None)
    assert f"{_bytes(950_000)} of {_bytes(1_000_000)} (95%)" in page
    assert "3.0 GiB" in page and '<span class="bad-text">4</span>' in page
    # Not measured yet: said so, not shown as 0.
    unmeasured = dataclasses.replace(storage, free_bytes=None, bytes=1_000_000, refused_full=0)
    status = await build_status(sources(config, process="ingest", forward=False,
                                        publisher=StorageSpoolStub(stats, unmeasured)))
    page = status_page(status, "nonce", None)
    assert "not measured yet" in page and "answered 503 until space is freed" not in page
    full = dataclasses.replace(stats, bytes=1_000_000)
    status = await build_status(sources(config, process="ingest", forward=False,
                                        publisher=StorageSpoolStub(full, unmeasured)))
    assert "answered 503 until space is freed" in status_page(status, "nonce", None)
