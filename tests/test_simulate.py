"""`siemgate simulate` against a real local HTTP server that records what it receives."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import json
import socket
import threading
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import orjson
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from siemgate import simulate as sim
from siemgate.simulate import SimulateOptions, make_batch_body, make_events, parse_header, parse_mix


@dataclass
class Received:
    peer: tuple[str, int]
    headers: dict[str, str]
    body: object  # the decoded JSON


@dataclass
class Recorder:
    """Records every post; answers `codes[index]` (default 200) after `delay` seconds."""

    codes: Mapping[int, int] = field(default_factory=dict)
    delay: float = 0.003
    received: list[Received] = field(default_factory=list)
    inflight: dict[tuple[str, int], int] = field(default_factory=lambda: defaultdict(int))
    max_inflight_per_peer: int = 0
    total_inflight: int = 0
    max_inflight_total: int = 0

    async def hook(self, request: Request) -> Response:
        assert request.client is not None
        peer = (request.client.host, request.client.port)
        self.inflight[peer] += 1
        self.total_inflight += 1
        self.max_inflight_per_peer = max(self.max_inflight_per_peer, self.inflight[peer])
        self.max_inflight_total = max(self.max_inflight_total, self.total_inflight)
        try:
            raw = await request.body()
            if request.headers.get("content-encoding") == "gzip":
                raw = gzip.decompress(raw)
            index = len(self.received)
            self.received.append(Received(peer, dict(request.headers), orjson.loads(raw)))
            # Simulated work, so that overlapping requests would be seen if there were any.
            await asyncio.sleep(self.delay)
        finally:
            self.inflight[peer] -= 1
            self.total_inflight -= 1
        return Response(b'{"accepted": 1}', status_code=self.codes.get(index, 200))

    @property
    def batches(self) -> list[list[dict[str, object]]]:
        out = []
        for item in self.received:
            body = item.body
            if isinstance(body, dict) and "events" in body:
                body = body["events"]
            if isinstance(body, list):
                out.append(body)
        return out


@contextlib.contextmanager
def running_server(recorder: Recorder) -> Iterator[str]:
    """Serve `recorder` on 127.0.0.1 (a free port) in a thread; yield the webhook URL; stop it."""
    app = Starlette(routes=[Route("/webhook/sim", recorder.hook, methods=["POST"])])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    # Listening before the server starts: a client's connection waits in the backlog, so no
    # readiness wait is needed.
    sock.listen(128)
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, lifespan="off", ws="none", access_log=False, log_config=None, loop="asyncio")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}/webhook/sim"
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()
        assert not thread.is_alive(), "the test server did not stop"


def options(url: str, **kwargs: object) -> SimulateOptions:
    return SimulateOptions(url=url, headers=(("X-Api-Key", "k1"),), **kwargs)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_batches_are_sequential_and_sized() -> None:
    recorder = Recorder()
    with running_server(recorder) as url:
        report = await sim.simulate(options(url, events=1234, batch=500))
    assert [len(b) for b in recorder.batches] == [500, 500, 234]
    assert recorder.max_inflight_total == 1
    assert len({r.peer for r in recorder.received}) == 1, "one persistent connection"
    assert all(r.headers["x-api-key"] == "k1" for r in recorder.received)
    assert all(r.headers["content-type"] == "application/json" for r in recorder.received)
    assert report.ok
    assert (report.batches_acked, report.events_acked, report.events_lost) == (3, 1234, 0)
    assert len(report.ack_latencies) == 3
    assert report.latency_ms()["p50"] > 0
    ids = [e["id"] for b in recorder.batches for e in b]
    assert len(set(ids)) == 1234


@pytest.mark.anyio
async def test_concurrent_senders_are_each_sequential() -> None:
    recorder = Recorder(delay=0.005)
    with running_server(recorder) as url:
        report = await sim.simulate(options(url, events=4000, batch=100, concurrency=4))
    assert report.ok and report.events_acked == 4000 and report.batches_acked == 40
    assert len({r.peer for r in recorder.received}) == 4, "one connection per sender"
    assert recorder.max_inflight_per_peer == 1
    assert recorder.max_inflight_total <= 4
    assert sum(len(b) for b in recorder.batches) == 4000
    assert len({e["id"] for b in recorder.batches for e in b}) == 4000


@pytest.mark.anyio
async def test_mix_proportions_follow_the_weights() -> None:
    recorder = Recorder(delay=0)
    with running_server(recorder) as url:
        report = await sim.simulate(options(url, events=5000, mix=parse_mix("high=1,medium=3,low=6"), seed=7))
    seen = Counter(e.get("severity") for b in recorder.batches for e in b)
    assert set(seen) == {"high", "medium", "low"}
    assert seen["high"] / 5000 == pytest.approx(0.1, abs=0.03)
    assert seen["medium"] / 5000 == pytest.approx(0.3, abs=0.03)
    assert seen["low"] / 5000 == pytest.approx(0.6, abs=0.03)
    assert report.severities_acked == dict(seen)


@pytest.mark.anyio
async def test_mix_names_casing_variants_and_missing_severity() -> None:
    recorder = Recorder(delay=0)
    with running_server(recorder) as url:
        await sim.simulate(options(url, events=600, batch=200, mix=parse_mix("Critical=1,info=1,unknown=1"), seed=3))
    events = [e for b in recorder.batches for e in b]
    values = Counter(e.get("severity", "<missing>") for e in events)
    assert set(values) == {"Critical", "info", "<missing>"}
    assert all(v > 100 for v in values.values())


@pytest.mark.anyio
async def test_seed_makes_contents_reproducible_but_ids_unique() -> None:
    recorder = Recorder(delay=0)
    with running_server(recorder) as url:
        await sim.simulate(options(url, events=300, batch=300, seed=11))
        await sim.simulate(options(url, events=300, batch=300, seed=11))
    first, second = recorder.batches

    def strip(events: list[dict[str, object]]) -> list[dict[str, object]]:
        return [{k: v for k, v in e.items() if k not in ("id", "timestamp")} for e in events]

    assert strip(first) == strip(second)
    assert not {e["id"] for e in first} & {e["id"] for e in second}


@pytest.mark.anyio
async def test_confirmation_and_test_messages_come_first() -> None:
    recorder = Recorder(delay=0)
    link = "https://vendor.example.com/confirm?token=abc123"
    with running_server(recorder) as url:
        report = await sim.simulate(options(url, events=1000, confirm=True, confirm_link=link, test=True))
    first, second, *rest = [r.body for r in recorder.received]
    assert first == {"type": "confirmation", "confirmationLink": link}
    assert second == {"type": "test", "message": "This is a test message from Application Security"}
    assert [len(b) for b in rest] == [500, 500]  # type: ignore[arg-type]
    assert [(c.kind, c.status) for c in report.control] == [("confirmation", 200), ("test", 200)]
    assert report.ok


@pytest.mark.anyio
async def test_default_confirmation_link_is_https_with_a_token() -> None:
    recorder = Recorder(delay=0)
    with running_server(recorder) as url:
        await sim.simulate(options(url, events=0, confirm=True))
    (message,) = [r.body for r in recorder.received]
    assert isinstance(message, dict) and message["type"] == "confirmation"
    assert str(message["confirmationLink"]).startswith("https://") and "token=" in str(message["confirmationLink"])


@pytest.mark.anyio
async def test_rejected_batches_are_counted_as_lost() -> None:
    # Requests 1 and 3 (0-based) are answered 503, request 4 is answered 400.
    recorder = Recorder(codes={1: 503, 3: 503, 4: 400}, delay=0)
    with running_server(recorder) as url:
        report = await sim.simulate(options(url, events=600, batch=100))
    assert len(recorder.received) == 6, "the sender goes on, and never resends"
    assert report.batches_acked == 3 and report.events_acked == 300
    assert report.batches_rejected == 3 and report.events_rejected == 300
    assert report.rejected_by_status == {503: 2, 400: 1}
    assert report.events_lost == 300 and not report.ok
    data = report.to_dict()
    assert data["rejected_by_status"] == {"400": 1, "503": 2} and data["ok"] is False
    assert "300 events LOST" in report.format()


@pytest.mark.anyio
async def test_401_disables_the_integration_and_stops_every_sender() -> None:
    recorder = Recorder(codes={0: 401}, delay=0)
    with running_server(recorder) as url:
        report = await sim.simulate(options(url, events=5000, batch=500))
    assert len(recorder.received) == 1
    assert report.disabled_by == 401 and not report.ok
    assert report.rejected_by_status == {401: 1}
    assert report.events_rejected == 500 and report.events_unsent == 4500
    assert "4500 events never sent" in report.format()


@pytest.mark.anyio
async def test_connection_errors_are_lost_batches() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens on the port any more.
    report = await sim.simulate(options(f"http://127.0.0.1:{port}/webhook/sim", events=1000, timeout=2))
    assert report.connection_errors == 2 and report.events_errored == 1000
    assert report.events_acked == 0 and not report.ok
    assert report.errors_by_kind == {"ConnectError": 2}


@pytest.mark.anyio
async def test_gzip_and_wrapped_bodies() -> None:
    recorder = Recorder(delay=0)
    with running_server(recorder) as url:
        report = await sim.simulate(options(url, events=700, gzip=True, wrap="events"))
    assert report.ok
    assert all(r.headers["content-encoding"] == "gzip" for r in recorder.received)
    assert all(isinstance(r.body, dict) and set(r.body) == {"events"} for r in recorder.received)
    assert [len(b) for b in recorder.batches] == [500, 200]


@pytest.mark.anyio
async def test_duration_mode_keeps_sending_until_the_deadline() -> None:
    # 1.5 s: a loaded CI machine once took 0.41 s for the first batch of a 0.3 s run.
    recorder = Recorder(delay=0)
    with running_server(recorder) as url:
        report = await sim.simulate(options(url, events=None, duration=1.5, batch=50))
    assert report.ok and report.batches_acked >= 2
    assert report.elapsed >= 1.5
    assert report.events_acked == 50 * report.batches_acked == sum(len(b) for b in recorder.batches)


@pytest.mark.anyio
async def test_interval_spaces_the_batches() -> None:
    recorder = Recorder(delay=0)
    with running_server(recorder) as url:
        report = await sim.simulate(options(url, events=300, batch=100, interval=0.05))
    assert report.batches_acked == 3
    assert report.elapsed >= 0.1  # at least two pauses between three batches


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    sim.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_main_exit_code_and_json_report(capsys: pytest.CaptureFixture[str]) -> None:
    recorder = Recorder(codes={1: 503}, delay=0)
    with running_server(recorder) as url:
        code = sim.main(_args("--url", url, "-H", "X-Api-Key: k1", "--events", "1500", "--test", "--json"))
    assert code == 1
    report = json.loads(capsys.readouterr().out)
    assert report["events_acked"] == 1000 and report["events_rejected"] == 500
    assert report["rejected_by_status"] == {"503": 1}
    assert report["control"][0]["kind"] == "test" and report["control"][0]["status"] == 200
    assert set(report["ack_latency_ms"]) == {"p50", "p90", "p99", "p99.9", "max", "mean"}


def test_main_exits_zero_when_everything_is_acked(capsys: pytest.CaptureFixture[str]) -> None:
    recorder = Recorder(delay=0)
    with running_server(recorder) as url:
        code = sim.main(_args("--url", url, "--header", "X-Api-Key: k1", "--confirm", "--events", "10"))
    assert code == 0
    out = capsys.readouterr().out
    assert "acked (200):      1 batches, 10 events" in out and "OK, nothing lost" in out


def test_main_rejects_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert sim.main(_args("--url", "http://127.0.0.1:9/x", "--mix", "high=-1")) == 2
    assert sim.main(_args("--url", "ftp://x", "--events", "1")) == 2
    assert sim.main(_args("--url", "http://127.0.0.1:9/x", "--batch", "0")) == 2
    assert sim.main(_args("--url", "http://127.0.0.1:9/x", "-H", "no colon")) == 2
    assert "siemgate simulate:" in capsys.readouterr().err


def test_parse_mix_and_header() -> None:
    assert parse_mix("high=1, medium=3,low=6") == {"high": 1.0, "medium": 3.0, "low": 6.0}
    assert parse_mix("Critical=2,unknown=1") == {"Critical": 2.0, "unknown": 1.0}
    for bad in ("", "high", "high=x", "high=0", "high=inf"):
        with pytest.raises(ValueError):
            parse_mix(bad)
    assert parse_header("X-Api-Key: a: b ") == ("X-Api-Key", "a: b")
    with pytest.raises(ValueError):
        parse_header("X Api: v")


def test_make_events_look_like_appsec_events() -> None:
    events = make_events(500, "high=1,medium=1,low=1", seed=5)
    body = make_batch_body(events)
    assert 300_000 < len(body) < 500_000, "about 800 bytes per event"
    assert len({e["id"] for e in events}) == 500
    for event in events:
        assert {"id", "timestamp", "severity", "ruleName", "description", "source", "request", "application"} <= set(
            event
        )
        assert str(event["timestamp"]).endswith("Z")
    assert orjson.loads(body) == events
    assert orjson.loads(make_batch_body(events[:2], wrap="alerts")) == {"alerts": events[:2]}
    again = make_events(500, "high=1,medium=1,low=1", seed=5)
    assert [e["severity"] for e in again] == [e["severity"] for e in events]


@pytest.mark.anyio
async def test_403_on_the_confirmation_message_sends_no_events() -> None:
    recorder = Recorder(codes={0: 403}, delay=0)
    with running_server(recorder) as url:
        report = await sim.simulate(options(url, events=1000, confirm=True, test=True))
    assert len(recorder.received) == 1
    assert isinstance(recorder.received[0].body, dict) and recorder.received[0].body["type"] == "confirmation"
    assert [(c.kind, c.status) for c in report.control] == [("confirmation", 403)]
    assert report.disabled_by == 403 and report.events_unsent == 1000 and not report.ok
