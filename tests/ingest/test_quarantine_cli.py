"""`siemgate quarantine list|resend` against a real `siemgate run` on the embedded bus: a body
refused for a cause since understood (here: more events than max_events_per_batch) is sent on
once the config takes it, reaches the sink, and is not sent twice; what still does not parse
is refused with its reason (issue 17)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx
import orjson
import pytest

from siemgate_standins.broker import free_port
from tests.forwarders.test_forward_process import ids_in
from tests.support import wait_until
from tests.test_run import KEY, start

pytestmark = pytest.mark.anyio


def write_config(tmp_path: Path, port: int, max_events: int) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(f"""
log_level: info
listen: {{host: 127.0.0.1, port: {port}}}
integrations:
  - name: demo
    auth: {{header: X-Api-Key, values: ["{KEY}"]}}
  - name: other
    auth: {{header: X-Api-Key, values: ["{KEY}-other"]}}
limits: {{max_events_per_batch: {max_events}}}
bus: {{type: embedded, path: {tmp_path}/data/siemgate.db}}
state_dir: {tmp_path}/state
quarantine: {{path: {tmp_path}/quarantine}}
forward: {{drain_timeout_seconds: 10}}
sinks:
  - {{name: archive, type: file, path: {tmp_path}/out/events.ndjson, fsync: never}}
""")
    return path


def quarantine(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "siemgate", "quarantine", "-c", str(config), *args],
                          capture_output=True, text=True, timeout=60)


async def test_list_and_resend_through_the_running_pipeline(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    port = free_port()
    config = write_config(tmp_path, port, max_events=3)
    process = await start(config, port, tmp_path / "run.log", processes)
    events = [{"id": f"q-{i}", "severity": "high", "msg": "\x1b[31mred\x1b[0m"} for i in range(5)]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers={"X-Api-Key": KEY}) as client:
        too_many = await client.post("/webhook/demo", content=orjson.dumps(events))
        broken = await client.post("/webhook/demo", content=b'[{"id": "x", "m": "\x1b]0;pwned\x07"}')
    assert too_many.status_code == 413 and broken.status_code == 400
    many_id, broken_id = too_many.json()["quarantined"], broken.json()["quarantined"]

    listed = quarantine(config, "list")
    assert listed.returncode == 0, listed.stderr
    assert many_id in listed.stdout and broken_id in listed.stdout
    assert "5 events in one batch; the limit is 3" in listed.stdout and "413" in listed.stdout
    assert "\x1b" not in listed.stdout and "\x07" not in listed.stdout  # no terminal escapes

    # The cause is still there: refused, saying why; nothing published.
    refused = quarantine(config, "resend", many_id)
    assert refused.returncode == 1 and "the limit is 3" in refused.stdout, refused.stdout + refused.stderr
    # The operator raises the limit (the running process reloads it too), then resends.
    write_config(tmp_path, port, max_events=10)
    sent = quarantine(config, "resend", many_id)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert "5 events published for demo" in sent.stdout
    out = tmp_path / "out" / "events.ndjson"
    await wait_until(lambda: len(ids_in(out)) >= 5, "the resent events reach the file sink", timeout=30)
    assert sorted(ids_in(out)) == [f"q-{i}" for i in range(5)]
    lines = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert [line["event"] for line in sorted(lines, key=lambda line: line["id"])] == events

    # Not twice unless asked; the listing says it was sent on.
    twice = quarantine(config, "resend", many_id)
    assert twice.returncode == 1 and "already sent on" in twice.stdout
    assert "resent" in quarantine(config, "list").stdout
    # Still not JSON: refused with the parser's reason, escapes and all kept off the terminal.
    still = quarantine(config, "resend", broken_id)
    assert still.returncode == 1 and "not JSON" in still.stdout and "\x1b" not in still.stdout
    unknown = quarantine(config, "resend", "../../etc/passwd")
    assert unknown.returncode == 1 and "no quarantined body" in unknown.stdout
    elsewhere = quarantine(config, "resend", many_id, "--again", "--integration", "nope")
    assert elsewhere.returncode == 1 and "not in the config" in elsewhere.stdout
    again = quarantine(config, "resend", many_id, "--again", "--integration", "other")
    assert again.returncode == 0 and "5 events published for other" in again.stdout

    await wait_until(lambda: len(ids_in(out)) >= 10, "the second resend reaches the sink", timeout=30)
    integrations = sorted(orjson.loads(line)["integration"] for line in out.read_bytes().splitlines())
    assert integrations == ["demo"] * 5 + ["other"] * 5
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0


async def test_show_then_replay_once_by_event_id(tmp_path: Path, processes: list[subprocess.Popen[bytes]]) -> None:
    port = free_port()
    config = write_config(tmp_path, port, max_events=3)
    process = await start(config, port, tmp_path / "run.log", processes)
    # Two with a vendor id, two without (their key is a content hash), one duplicate id.
    events = [{"id": "r-1", "severity": "high", "m": "\x1b]8;;https://evil.example\x07click\u202e"},
              {"id": "r-2", "severity": "low"}, {"severity": "medium", "n": 1}, {"severity": "medium", "n": 2}]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers={"X-Api-Key": KEY}) as client:
        refused = await client.post("/webhook/demo", content=orjson.dumps(events))
    assert refused.status_code == 413
    ident = refused.json()["quarantined"]

    shown = quarantine(config, "show", ident)
    assert shown.returncode == 0, shown.stderr
    assert "4 events in one batch; the limit is 3" in shown.stdout and "authenticated: yes" in shown.stdout
    # The body as sent (JSON escapes stay), the raw U+202E (bidi override) escaped.
    assert '"id":"r-1"' in shown.stdout and "\\u001b]8;;https://evil.example\\u0007click\\u202e" in shown.stdout
    assert "\x1b" not in shown.stdout and "\x07" not in shown.stdout and "\u202e" not in shown.stdout
    assert quarantine(config, "show", "../nope").returncode == 1

    write_config(tmp_path, port, max_events=10)
    sent = quarantine(config, "replay", ident)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert "4 events published for demo" in sent.stdout
    out = tmp_path / "out" / "events.ndjson"
    await wait_until(lambda: len(out.read_bytes().splitlines()) >= 4 if out.exists() else False,
                     "the replayed events reach the file sink", timeout=30)
    # A second replay, under either name, delivers nothing new.
    for action in ("replay", "resend"):
        again = quarantine(config, action, ident)
        assert again.returncode == 1 and "nothing new" in again.stdout and "already sent on" in again.stdout, \
            again.stdout + again.stderr
    assert "replayed:" in quarantine(config, "show", ident).stdout
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0
    # Every event once: the second replay published nothing (the forwarder drained before exit).
    lines = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert sorted(str(line["event"]) for line in lines) == sorted(str(e) for e in events)


@pytest.mark.parametrize("authenticated", [False, None], ids=["failed-auth", "not-recorded"])
def test_a_body_not_known_to_have_passed_auth_is_never_replayed(tmp_path: Path, authenticated: bool | None) -> None:
    config = write_config(tmp_path, free_port(), max_events=10)
    kept = tmp_path / "quarantine"
    kept.mkdir()
    ident = "20261207T150000Z-demo-0123456789ab"
    (kept / f"{ident}.body").write_bytes(b'[{"id": "x-1"}]')
    meta: dict[str, object] = {"integration": "demo", "reason": "r", "peer": "198.18.0.1", "status": 400,
                               "bytes": 15, "received_at": 1.0}
    if authenticated is not None:
        meta["authenticated"] = authenticated
    (kept / f"{ident}.json").write_bytes(orjson.dumps(meta))
    for action in ("replay", "resend"):
        refused = quarantine(config, action, ident, "--again")
        assert refused.returncode == 1 and "passed authentication" in refused.stdout, refused.stdout + refused.stderr
    assert "never replayed" in quarantine(config, "show", ident).stdout


async def test_a_body_in_its_declared_charset_is_replayed_in_it(
        tmp_path: Path, processes: list[subprocess.Popen[bytes]]) -> None:
    """A windows-1252 body (declared in its Content-Type), refused for another cause, keeps its
    charset in the quarantine: the replay reads it in that charset, as the ingest would have."""
    port = free_port()
    config = write_config(tmp_path, port, max_events=2)
    process = await start(config, port, tmp_path / "run.log", processes)
    events = [{"id": f"cp-{i}", "severity": "high", "m": "caf\u00e9 \u20ac"} for i in range(3)]
    body = orjson.dumps(events).decode().encode("cp1252")
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers={"X-Api-Key": KEY}) as client:
        refused = await client.post("/webhook/demo", content=body,
                                    headers={"Content-Type": "application/json; charset=windows-1252"})
    assert refused.status_code == 413, refused.text
    ident = refused.json()["quarantined"]
    assert "charset:       windows-1252" in quarantine(config, "show", ident).stdout

    write_config(tmp_path, port, max_events=10)
    sent = quarantine(config, "replay", ident)
    assert sent.returncode == 0 and "3 events published for demo" in sent.stdout, sent.stdout + sent.stderr
    out = tmp_path / "out" / "events.ndjson"
    await wait_until(lambda: len(out.read_bytes().splitlines()) >= 3 if out.exists() else False,
                     "the replayed events reach the file sink", timeout=30)
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0
    texts = [orjson.loads(line)["event"]["m"] for line in out.read_bytes().splitlines()]
    assert texts == ["caf\u00e9 \u20ac"] * 3


def test_a_body_kept_without_its_charset_is_replayed_with_the_one_named(tmp_path: Path) -> None:
    """A body kept before the charset was recorded (or whose request declared none): the replay
    says it is not UTF-8; `--charset` names the one to read it in."""
    config = write_config(tmp_path, free_port(), max_events=10)
    kept = tmp_path / "quarantine"
    kept.mkdir()
    ident = "20261207T150000Z-demo-00000000cafe"
    body = '[{"id": "l-1", "m": "na\u00efve"}]'.encode("latin-1")
    (kept / f"{ident}.body").write_bytes(body)
    (kept / f"{ident}.json").write_bytes(orjson.dumps({
        "integration": "demo", "reason": "the body is not UTF-8", "peer": "198.18.0.1", "status": 400,
        "bytes": len(body), "received_at": 1.0, "authenticated": True}))
    refused = quarantine(config, "replay", ident)
    assert refused.returncode == 1 and "not UTF-8" in refused.stdout, refused.stdout + refused.stderr
    sent = quarantine(config, "replay", ident, "--charset", "latin-1")
    assert sent.returncode == 0 and "1 events published for demo" in sent.stdout, sent.stdout + sent.stderr
