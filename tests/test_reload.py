"""Hot reload: validated first, applied atomically, invalid files change nothing; a real
`siemgate run` reloads under a steady stream of sequential senders without failing a batch."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import signal
import subprocess
from pathlib import Path

import httpx
import orjson
import pytest

from siemgate.config import Config, load_config, parse_config
from siemgate.reload import ConfigReloader
from siemgate_standins.broker import free_port
from siemgate_standins.splunk_hec import HecToken, SplunkHecStandIn
from tests.forwarders.test_forward_process import ids_in
from tests.forwarders.test_runtime import until
from tests.test_run import start

pytestmark = pytest.mark.anyio

BASE = """
listen: {{host: 127.0.0.1, port: {port}}}
integrations:
  - name: demo
    auth: {{header: X-Api-Key, values: [{keys}]}}
bus: {{type: embedded, path: {tmp}/data/siemgate.db}}
state_dir: {tmp}/state
quarantine: {{path: {tmp}/quarantine}}
forward: {{drain_timeout_seconds: 10}}
log_level: info
sinks:
{sinks}
"""


class Recorder:
    def __init__(self) -> None:
        self.configs: list[Config] = []

    async def apply_config(self, config: Config) -> None:
        self.configs.append(config)


def write(path: Path, text: str) -> None:
    """Replace the file as Kubernetes does: a new file, then an atomic rename over the old one."""
    temporary = path.with_suffix(".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def config_text(tmp_path: Path, port: int, keys: str, sinks: str) -> str:
    return BASE.format(port=port, keys=keys, tmp=tmp_path, sinks=sinks)


async def test_invalid_restart_only_and_unchanged_files(tmp_path: Path) -> None:
    path = tmp_path / "siemgate.yaml"
    archive = f"  - {{name: archive, type: file, path: {tmp_path}/out.ndjson}}"
    write(path, config_text(tmp_path, 8080, '"k1-0123456789"', archive))
    reloader = ConfigReloader(path, load_config(path))
    recorder = Recorder()
    reloader.add(recorder)
    assert await reloader.reload(force=False) == "unchanged"
    write(path, config_text(tmp_path, 8080, '"k1-0123456789"', archive).replace("type: file", "type: filez"))
    assert await reloader.reload(force=False) == "invalid"
    assert recorder.configs == [] and reloader.config.sinks[0].type == "file"
    # A valid file: the new key applies; the port (restart only) keeps its running value.
    write(path, config_text(tmp_path, 9999, '"k1-0123456789", "k2-0123456789"', archive))
    assert await reloader.reload(force=False) == "restart_required"
    applied = recorder.configs[-1]
    assert [v.reveal() for v in applied.integrations[0].auth.values] == ["k1-0123456789", "k2-0123456789"]
    assert applied.listen.port == 8080
    samples = {s.labels["result"]: s.value for m in reloader.registry.collect() for s in m.samples
               if s.name == "siemgate_config_reload_total"}
    assert samples == {"applied": 0, "invalid": 1, "failed": 0, "restart_required": 1}


async def test_a_file_edited_in_place_and_read_while_truncated_changes_nothing(tmp_path: Path) -> None:
    """An editor (or `cat > siemgate.yaml`) truncates the file before writing it: a reload that
    reads it then must not apply an empty config (every integration 404, every sink stopped)."""
    path = tmp_path / "siemgate.yaml"
    archive = f"  - {{name: archive, type: file, path: {tmp_path}/out.ndjson}}"
    path.write_text(config_text(tmp_path, 8080, '"k1-0123456789"', archive))
    reloader = ConfigReloader(path, load_config(path))
    recorder = Recorder()
    reloader.add(recorder)
    for partial in ("", "# siemgate\n", "\n"):
        with path.open("w") as handle:  # in place: same inode, truncated
            handle.write(partial)
        assert await reloader.reload(force=False) == "invalid"
    assert recorder.configs == []
    assert [i.name for i in reloader.config.integrations] == ["demo"] and reloader.config.sinks[0].name == "archive"
    with path.open("w") as handle:  # the edit completes
        handle.write(config_text(tmp_path, 8080, '"k1-0123456789", "k2-0123456789"', archive))
    assert await reloader.reload(force=False) == "applied"
    assert [v.reveal() for v in recorder.configs[-1].integrations[0].auth.values] == ["k1-0123456789", "k2-0123456789"]


async def test_a_poll_never_applies_a_prefix_of_a_file_being_written(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A file written in place in pieces: a poll that reads it half written sees valid YAML
    holding one integration of two. It applies the file only once it reads the same again."""
    from siemgate import reload as reload_module

    path = tmp_path / "siemgate.yaml"
    archive = f"  - {{name: archive, type: file, path: {tmp_path}/out.ndjson}}"
    whole = config_text(tmp_path, 8080, '"k1-0123456789"', archive).replace(
        "bus:", "  - name: second\n    auth: {header: X-Api-Key, values: [k2-0123456789]}\nbus:")
    prefix = whole[:whole.index("  - name: second")]
    path.write_text(config_text(tmp_path, 8080, '"k0-0123456789"', archive))
    reloader = ConfigReloader(path, load_config(path))
    recorder = Recorder()
    reloader.add(recorder)
    path.write_text(prefix)
    assert parse_config(prefix, {}).integrations[0].name == "demo"  # the prefix alone is a valid config
    real_snapshot = reload_module.snapshot

    def written_meanwhile(read: Path) -> tuple[bytes, str]:  # the writer finishes after the first read
        taken = real_snapshot(read)
        read.write_text(whole)
        return taken

    monkeypatch.setattr(reload_module, "snapshot", written_meanwhile)
    assert await reloader.reload(force=False) == "unchanged"
    monkeypatch.setattr(reload_module, "snapshot", real_snapshot)
    assert recorder.configs == []
    assert await reloader.reload(force=False) == "applied"
    assert [i.name for i in recorder.configs[-1].integrations] == ["demo", "second"]


async def test_sighup_reloads_and_a_symlink_swap_is_seen(tmp_path: Path) -> None:
    # Kubernetes mounts: siemgate.yaml -> ..data/siemgate.yaml, ..data -> ..<timestamp>/
    first, second = tmp_path / "..2026_01", tmp_path / "..2026_02"
    archive = f"  - {{name: archive, type: file, path: {tmp_path}/out.ndjson}}"
    for directory, key in ((first, "k1-0123456789"), (second, "k2-0123456789")):
        directory.mkdir()
        (directory / "siemgate.yaml").write_text(config_text(tmp_path, 8080, f'"{key}"', archive))
    (tmp_path / "..data").symlink_to(first.name)
    path = tmp_path / "siemgate.yaml"
    path.symlink_to("..data/siemgate.yaml")
    reloader = ConfigReloader(path, load_config(path), poll_seconds=0.05)
    recorder = Recorder()
    reloader.add(recorder)
    watching = reloader.watch()
    try:
        os.kill(os.getpid(), signal.SIGHUP)
        await until(lambda: len(recorder.configs) == 1, timeout=10)
        assert reloader.metrics.reloads.labels("applied")._value.get() == 1
        link = tmp_path / "..data_tmp"
        link.symlink_to(second.name)
        os.replace(link, tmp_path / "..data")  # the atomic swap
        await until(lambda: len(recorder.configs) == 2, timeout=10)
        assert recorder.configs[-1].integrations[0].auth.values[0].reveal() == "k2-0123456789"
    finally:
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching


async def reloads(client: httpx.AsyncClient, result: str) -> float:
    text = (await client.get("/metrics")).text
    for line in text.splitlines():
        if line.startswith(f'siemgate_config_reload_total{{result="{result}"}}'):
            return float(line.split()[1])
    raise AssertionError("no siemgate_config_reload_total in /metrics")


async def test_reload_under_a_steady_stream(tmp_path: Path, processes: list[subprocess.Popen[bytes]]) -> None:
    old_key, new_key = "old-key-0123456789", "new-key-0123456789"
    hec_old, hec_new = "0d6f2b5e-0000-4c51-9b1e-2f8c1d3a4b5c", "0d6f2b5e-1111-4c51-9b1e-2f8c1d3a4b5c"
    port = free_port()
    path = tmp_path / "siemgate.yaml"
    extra_out = tmp_path / "extra.ndjson"
    async with SplunkHecStandIn(tokens=[HecToken(hec_old), HecToken(hec_new)]) as hec:
        def splunk(token: str) -> str:
            return (f"  - {{name: splunk, type: splunk_hec, url: '{hec.url}', token: '{token}', "
                    "batch: {max_events: 100, max_wait_seconds: 0.05}}")

        extra = f"  - {{name: extra, type: file, path: {extra_out}, fsync: never}}"
        write(path, config_text(tmp_path, port, f'"{old_key}"', splunk(hec_old)))
        process = await start(path, port, tmp_path / "run.log", processes)
        answers: list[tuple[str, int]] = []  # (key used, status)
        acked: list[str] = []
        key = old_key
        stop = asyncio.Event()

        async def sender(name: str) -> None:
            n = 0
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=15) as client:
                while not stop.is_set():
                    used = key
                    batch = [{"id": f"{name}-{n}-{i}", "severity": "high"} for i in range(20)]
                    n += 1
                    response = await client.post("/webhook/demo", content=orjson.dumps(batch),
                                                 headers={"X-Api-Key": used})
                    answers.append((used, response.status_code))
                    if response.status_code == 200:
                        acked.extend(e["id"] for e in batch)

        senders = [asyncio.create_task(sender(f"s{i}")) for i in range(2)]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as admin:
            async def reload_to(text: str, result: str = "applied") -> None:
                before = await reloads(admin, result)
                write(path, text)
                process.send_signal(signal.SIGHUP)
                async with asyncio.timeout(20):
                    while await reloads(admin, result) <= before:
                        await asyncio.sleep(0.05)

            await until(lambda: len(acked) >= 200, timeout=30)
            # 1. Rotate the webhook key: both valid, senders move to the new one, then the old goes.
            await reload_to(config_text(tmp_path, port, f'"{old_key}", "{new_key}"', splunk(hec_old)))
            key = new_key
            await until(lambda: sum(1 for k, _ in answers[-10:] if k == new_key) >= 6, timeout=20)
            await reload_to(config_text(tmp_path, port, f'"{new_key}"', splunk(hec_old)))
            removed = await admin.post("/webhook/demo", content=b"[]", headers={"X-Api-Key": old_key})
            assert removed.status_code == 401, "the removed key is refused at once"
            # 2. Change the sink token; the old one is then disabled on the HEC side.
            await reload_to(config_text(tmp_path, port, f'"{new_key}"', splunk(hec_new)))
            sent = len(hec.requests)  # the forwarder swaps its sink between two sends
            await until(lambda: len(hec.requests) >= sent + 2, timeout=20)
            hec.faults.disable_token(hec_old)
            # 3. Add a sink, let it receive, then remove it.
            await reload_to(config_text(tmp_path, port, f'"{new_key}"', splunk(hec_new) + "\n" + extra))
            await until(lambda: len(ids_in(extra_out)) >= 100, timeout=30)
            await reload_to(config_text(tmp_path, port, f'"{new_key}"', splunk(hec_new)))
            # 4. An invalid file changes nothing.
            await reload_to("sinks: [{name: splunk, type: nope}]", result="invalid")
            count = len(acked)
            await until(lambda: len(acked) >= count + 200, timeout=30)
            stop.set()
            await asyncio.gather(*senders)
            metrics = (await admin.get("/metrics")).text
        await until(lambda: len({str(e["event"]["vendor_event"]["id"]) for e in hec.events()}) >= len(set(acked)),
                    timeout=60)
        delivered = collections.Counter(str(e["event"]["vendor_event"]["id"]) for e in hec.events())
        refused_tokens = [r for r in hec.requests if r.status in (401, 403)]
    refused = [(k, s) for k, s in answers if s != 200]
    assert all(k == old_key and s == 401 for k, s in refused), refused
    assert len(acked) >= 600
    assert set(acked) <= set(delivered), "every acked event reached the sink"
    assert not refused_tokens, "the sink never used the disabled token after the reload"
    assert 'siemgate_config_reload_total{result="invalid"} 1.0' in metrics
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0


async def test_a_referenced_secret_file_that_changes_is_reloaded(tmp_path: Path) -> None:
    key = tmp_path / "APPSEC_KEY"
    key.write_text("k1-0123456789\n")
    path = tmp_path / "siemgate.yaml"
    archive = f"  - {{name: archive, type: file, path: {tmp_path}/out.ndjson}}"
    write(path, config_text(tmp_path, 8080, f'"${{file:{key}}}"', archive))
    reloader = ConfigReloader(path, load_config(path))
    recorder = Recorder()
    reloader.add(recorder)
    assert await reloader.reload(force=False) == "unchanged"
    write(key, "k2-0123456789\n")  # the config file itself is unchanged
    assert await reloader.reload(force=False) == "applied"
    assert [v.reveal() for v in recorder.configs[-1].integrations[0].auth.values] == ["k2-0123456789"]
    assert await reloader.reload(force=False) == "unchanged"
    key.unlink()  # a secret file gone: refused, the running config (and its key) stays
    assert await reloader.reload(force=False) == "invalid"
    assert [v.reveal() for v in reloader.config.integrations[0].auth.values] == ["k2-0123456789"]


async def test_a_running_process_picks_up_a_rotated_token_file(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    """A Kubernetes Secret mounted as files: the kubelet swaps `..data` to a new directory; the
    process sees the new key within its poll, without SIGHUP or restart."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for stamp, value in (("..2026_01", "old-key-0123456789\n"), ("..2026_02", "new-key-0123456789\n")):
        (secrets / stamp).mkdir()
        (secrets / stamp / "APPSEC_KEY").write_text(value)
    (secrets / "..data").symlink_to("..2026_01")
    (secrets / "APPSEC_KEY").symlink_to("..data/APPSEC_KEY")
    port = free_port()
    path = tmp_path / "siemgate.yaml"
    archive = f"  - {{name: archive, type: file, path: {tmp_path}/out.ndjson}}"
    write(path, config_text(tmp_path, port, f'"${{file:{secrets}/APPSEC_KEY}}"', archive))
    process = await start(path, port, tmp_path / "run.log", processes)
    batch = orjson.dumps([{"id": "e1", "severity": "high"}])
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=15) as client:
        async def status(key: str) -> int:
            response = await client.post("/webhook/demo", content=batch, headers={"X-Api-Key": key})
            return response.status_code

        assert await status("old-key-0123456789") == 200
        assert await status("new-key-0123456789") == 401
        link = secrets / "..data_tmp"
        link.symlink_to("..2026_02")
        os.replace(link, secrets / "..data")  # the kubelet's atomic swap
        async with asyncio.timeout(20):
            while await status("new-key-0123456789") != 200:
                await asyncio.sleep(0.1)
        assert await status("old-key-0123456789") == 401
        assert await reloads(client, "applied") >= 1
    assert process.poll() is None, "no restart"
    log = (tmp_path / "run.log").read_text()
    assert "old-key-0123456789" not in log and "new-key-0123456789" not in log
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0
