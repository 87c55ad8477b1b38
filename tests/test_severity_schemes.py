"""Severity schemes per integration (issue 18, item 1): each integration names how its
vendor's words and numbers read (`integrations[].severity_scheme`: `default`, a built-in
scale, or one of `normalize.severity_schemes`); the ingest routes and the forwarders level
and format by it; checked at load with errors an operator can act on; hot reload applies a
change to the endpoints and the forwarders' normalizer."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import signal
import subprocess
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from siemgate.config import Config, load_config, parse_config
from siemgate.errors import ConfigError
from siemgate.forwarders.formats.cef import encode_cef
from siemgate.forwarders.formats.leef import encode_leef
from siemgate.forwarders.formats.syslog import SyslogFormatSettings, rfc5424
from siemgate.forwarders.normalize import NormalizedEvent, Normalizer
from siemgate.ingest.batch import BatchParser
from siemgate.record import BUILTIN_SCALES, SeverityScheme, make_record
from siemgate.reload import ConfigReloader

pytestmark = pytest.mark.anyio

INTEGRATIONS = """
integrations:
  - name: waf
    auth: {header: X-Api-Key, values: [k-waf-0123456789]}
  - name: scanner
    auth: {header: X-Api-Key, values: [k-scanner-0123456789]}
    severity_scheme: scores-1-5
  - name: tickets
    auth: {header: X-Api-Key, values: [k-tickets-0123456789]}
    severity_scheme: acme-priority
  - name: ids
    auth: {header: X-Api-Key, values: [k-ids-0123456789]}
    severity_scheme: ids-0-4
"""
SCHEMES = """
normalize:
  severity_map: {P0: critical}
  severity_schemes:
    acme-priority:
      words: {blocker: high, "sev 2": medium}
      scale: priority-1-4
    ids-0-4:
      scale: {min: 0, max: 4, most_severe: max, bands: {critical: 4, high: 3, medium: 2, low: 0}}
"""


def config(text: str = SCHEMES + INTEGRATIONS) -> Config:
    return parse_config(text, {})


def routed_and_level(cfg: Config, integration: str, severity: object) -> tuple[str, str]:
    """What the ingest routes an event of `integration` as (the record's severity), and the
    level the forwarders give it, through the real parser and normalizer."""
    chosen = cfg.integration(integration)
    parser = BatchParser(chosen, "p", cfg.normalize.scheme_for(integration))
    record = parser.parse(orjson.dumps([{"id": "e1", "severity": severity}]), peer="198.18.0.1",
                          max_events=5).records[0]
    normalized = Normalizer(cfg.normalize).normalize(record.value)
    assert normalized.integration == integration
    return record.severity, normalized.level


@pytest.mark.parametrize(
    ("severity", "expected"),
    [
        # The same number, four integrations, four readings.
        (5, {"waf": ("medium", "medium"), "scanner": ("high", "critical"), "tickets": ("unknown", "unknown"),
             "ids": ("unknown", "unknown")}),
        ("4", {"waf": ("medium", "medium"), "scanner": ("high", "high"), "tickets": ("low", "low"),
               "ids": ("high", "critical")}),
        (1, {"waf": ("low", "low"), "scanner": ("low", "low"), "tickets": ("high", "critical"),
             "ids": ("low", "low")}),
        (2.5, {"waf": ("low", "low"), "scanner": ("low", "low"), "tickets": ("medium", "medium"),
               "ids": ("medium", "medium")}),
        (9.5, {"waf": ("high", "critical"), "scanner": ("unknown", "unknown"), "tickets": ("unknown", "unknown"),
               "ids": ("unknown", "unknown")}),
        # Words: the defaults everywhere, the global map everywhere, a scheme's own words first.
        ("Severe", {name: ("high", "high") for name in ("waf", "scanner", "tickets", "ids")}),
        ("P0", {name: ("high", "critical") for name in ("waf", "scanner", "tickets", "ids")}),
        ("blocker", {"waf": ("high", "critical"), "scanner": ("high", "critical"), "tickets": ("high", "high"),
                     "ids": ("high", "critical")}),
        # sev2 is high by default; the tickets scheme's own "sev 2" overrides it.
        ("SEV-2", {"waf": ("high", "high"), "scanner": ("high", "high"), "tickets": ("medium", "medium"),
                   "ids": ("high", "high")}),
    ],
)
def test_integrations_with_different_scales_read_the_same_value_differently(
        severity: object, expected: dict[str, tuple[str, str]]) -> None:
    cfg = config()
    assert {name: routed_and_level(cfg, name, severity) for name in expected} == expected


def formatted(cfg: Config, integration: str, severity: object) -> NormalizedEvent:
    record = make_record(prefix="p", event={"id": "e1", "severity": severity, "timestamp": "2026-12-01T10:00:00Z"},
                         kind="event", integration=integration,
                         severity=cfg.normalize.scheme_for(integration).canonical(severity), event_id="e1",
                         received_at="2026-12-01T10:00:01.000000Z", batch="b", seq=0, peer="198.18.0.1")
    return Normalizer(cfg.normalize).normalize(record.value)


def test_the_same_number_reaches_every_format_as_its_integrations_scale_says() -> None:
    """5 from the 1-5 scanner is critical (syslog 1 alert, CEF 10, LEEF sev 10); 5 from the
    WAF on CVSS's 0-10 is medium (syslog 4 warning, CEF 5, LEEF sev 5)."""
    cfg = config()
    settings = SyslogFormatSettings(facility=16, hostname="h")
    scanner, waf = formatted(cfg, "scanner", 5), formatted(cfg, "waf", 5)
    assert rfc5424(scanner, settings).startswith(b"<129>1 ") and rfc5424(waf, settings).startswith(b"<132>1 ")
    assert b"|10|" in encode_cef(scanner, vendor="v", product="p", version="1", device_host="h")
    assert b"|5|" in encode_cef(waf, vendor="v", product="p", version="1", device_host="h")
    assert b"\tsev=10\t" in encode_leef(scanner, vendor="v", product="p", version="1")
    assert b"\tsev=5\t" in encode_leef(waf, vendor="v", product="p", version="1")


def test_an_integration_not_in_the_config_reads_by_the_default_scheme() -> None:
    """A record of an integration since removed (still on the bus) is read by `default`."""
    cfg = config()
    assert cfg.normalize.scheme_for("gone") is cfg.normalize.severity_scheme
    assert formatted(cfg, "gone", "P0").level == "critical"


@pytest.mark.parametrize(
    ("scale", "checks"),
    [
        ("scores-0-10", {0: "low", 3.9: "low", 4: "medium", 7: "high", 9: "critical", 10: "critical", 11: "unknown"}),
        ("scores-1-5", {0: "unknown", 1: "low", 2: "low", 3: "medium", 4: "high", 5: "critical", 6: "unknown"}),
        ("scores-1-4", {1: "low", 2: "medium", 3: "high", 4: "critical", 5: "unknown"}),
        ("priority-1-5", {0: "unknown", 1: "critical", 2: "high", 3: "medium", 4: "low", 5: "low", 6: "unknown"}),
        ("priority-1-4", {1: "critical", 2: "high", 3: "medium", 4: "low", 4.5: "unknown"}),
    ],
)
def test_the_built_in_scales(scale: str, checks: dict[float, str]) -> None:
    scheme = config().normalize.scheme(scale)
    assert {score: scheme.level(score) for score in checks} == checks
    # Words are the same on every scale.
    assert [scheme.level(w) for w in ("critical", "severe", "warning", "error", "informational")] == [
        "critical", "high", "medium", "high", "low"]
    # Spaces are ignored as documented: "sev 3" is sev3, "P 1" p1, "very  high" very high.
    assert [scheme.level(w) for w in ("sev 3", "P 1", "very  high", "Very-High")] == [
        "medium", "critical", "critical", "critical"]


def test_a_position_on_the_scale_whichever_end_is_most_severe() -> None:
    scores = SeverityScheme(bands=BUILTIN_SCALES["scores-1-5"].bands, maximum=5, minimum=1)
    priorities = SeverityScheme(bands=BUILTIN_SCALES["priority-1-5"].bands, maximum=5, minimum=1, most_severe="min")
    assert [scores.position(v) for v in (1, "3", 5, 6, "high", True, None)] == [0.0, 0.5, 1.0, None, None, None, None]
    assert [priorities.position(v) for v in (1, 3, "5")] == [1.0, 0.5, 0.0]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (SCHEMES + INTEGRATIONS.replace("scheme: ids-0-4", "scheme: ids-0-5"),
         re.escape("integrations[3].severity_scheme: 'ids-0-5' is no severity scheme (normalize.severity_schemes "
                   "defines: acme-priority, ids-0-4; built in: default, scores-0-10, scores-1-5, scores-1-4, "
                   "priority-1-5, priority-1-4)")),
        ("normalize: {severity_schemes: {x: {scale: scores-1-6}}}",
         "normalize.severity_schemes.x.scale: 'scores-1-6' is no built-in scale"),
        ("normalize: {severity_schemes: {x: {scale: {min: 1, max: 5, bands: {critical: 5}, top: max}}}}",
         r"normalize.severity_schemes.x.scale.top: unknown key \(known keys here: bands, max, min, most_severe\)"),
        ("normalize: {severity_schemes: {x: {scale: {min: 1, max: 5}}}}",
         "normalize.severity_schemes.x.scale.bands: is required"),
        ("normalize: {severity_schemes: {x: {scale: {min: 5, max: 1, bands: {low: 1}}}}}",
         "normalize.severity_schemes.x.scale.max: must be above min"),
        ("normalize: {severity_schemes: {x: {scale: {min: 1, max: 4, most_severe: min, "
         "bands: {critical: 2, high: 1}}}}}",
         r"normalize.severity_schemes.x.scale.bands.high: must be above critical's 2 \(the lowest score is the most "
         "severe here"),
        ("normalize: {severity_schemes: {x: {scale: {min: 1, max: 4, bands: {critical: 2, high: 3}}}}}",
         "normalize.severity_schemes.x.scale.bands.high: must be below critical's 2"),
        ("normalize: {severity_schemes: {x: {scale: {min: 1, max: 4, bands: {critical: 7}}}}}",
         r"normalize.severity_schemes.x.scale.bands.critical: must be between min and max \(1 and 4\), not 7"),
        ("normalize: {severity_schemes: {x: {scale: {min: 1, max: 4, bands: {unknown: 2}}}}}",
         "normalize.severity_schemes.x.scale.bands.unknown: is not a band"),
        ("normalize: {severity_schemes: {x: {scale: {min: 1, max: 4, most_severe: top, bands: {low: 2}}}}}",
         "normalize.severity_schemes.x.scale.most_severe: must be one of 'max', 'min'"),
        ("normalize: {severity_schemes: {x: {words: {P9: huge}}}}",
         "normalize.severity_schemes.x.words.P9: must be one of"),
        ("normalize: {severity_schemes: {x: {words: {'__': low}}}}", "normalize.severity_schemes.x.words: '__' is no"),
        ("normalize: {severity_schemes: {scores-1-5: {}}}",
         "normalize.severity_schemes.scores-1-5: 'scores-1-5' is a built-in scheme's name"),
        ("normalize: {severity_schemes: {default: {}}}", "normalize.severity_schemes.default: 'default' is a built-in"),
        ("normalize: {severity_schemes: {Bad_Name: {}}}", r"must match \[a-z0-9-\]\+"),
        ("normalize: {integration_schemes: {waf: scores-1-5}}", "normalize.integration_schemes: unknown key"),
    ],
)
def test_schemes_are_validated_with_errors_an_operator_can_act_on(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(text, {})


def test_replacing_the_integrations_keeps_their_schemes_in_step() -> None:
    """`normalize` always carries the integrations' schemes, also for a Config built anew."""
    cfg = config()
    assert cfg.normalize.integration_schemes == {"scanner": "scores-1-5", "tickets": "acme-priority",
                                                 "ids": "ids-0-4"}
    fewer = dataclasses.replace(cfg, integrations=cfg.integrations[:2])
    assert fewer.normalize.integration_schemes == {"scanner": "scores-1-5"}
    assert fewer.normalize.scheme_for("tickets") is fewer.normalize.severity_scheme
    with pytest.raises(ConfigError, match="integrations.0..severity_scheme: 'nope'"):
        dataclasses.replace(cfg, integrations=(dataclasses.replace(cfg.integrations[0], severity_scheme="nope"),))


BASE = """
listen: {{host: 127.0.0.1, port: 0}}
state_dir: {tmp}/state
quarantine: {{path: {tmp}/quarantine}}
bus: {{type: embedded, path: {tmp}/data/siemgate.db}}
integrations:
  - name: scanner
    auth: {{header: X-Api-Key, values: [k-scanner-0123456789]}}
    {scheme}
sinks:
  - {{name: archive, type: file, path: {tmp}/out.ndjson}}
"""


async def test_a_reload_changes_an_integrations_scheme_in_the_ingest_and_the_forwarders(tmp_path: Path) -> None:
    """The reloaded config reaches the webhook endpoint (routing) and gives the forwarders a
    new normalizer (levels); an invalid scheme name changes nothing."""
    from siemgate.ingest.app import create_app
    from tests.ingest.test_drain_on_stop import publisher_for
    from tests.ingest.test_spooling_publisher import ScriptedKafka

    path = tmp_path / "siemgate.yaml"
    path.write_text(BASE.format(tmp=tmp_path, scheme=""))
    reloader = ConfigReloader(path, load_config(path))
    app = create_app(reloader.config, publisher_for(tmp_path, ScriptedKafka()))
    webhooks = app.state.webhooks
    reloader.add(webhooks)
    body = orjson.dumps([{"id": "e1", "severity": 5}])

    def routed() -> str:
        endpoint = next(iter(webhooks._endpoints.values()))
        return str(endpoint._parser.parse(body, peer="p", max_events=5).records[0].severity)

    def level() -> str:
        """The level the forwarders give the record the endpoint makes."""
        endpoint = next(iter(webhooks._endpoints.values()))
        record = endpoint._parser.parse(body, peer="p", max_events=5).records[0]
        return Normalizer(reloader.config.normalize).normalize(record.value).level

    assert (routed(), level()) == ("medium", "medium")
    path.write_text(BASE.format(tmp=tmp_path, scheme="severity_scheme: scores-1-5"))
    assert await reloader.reload(force=False) == "applied"
    assert (routed(), level()) == ("high", "critical")
    path.write_text(BASE.format(tmp=tmp_path, scheme="severity_scheme: scores-1-6"))
    assert await reloader.reload(force=False) == "invalid"
    assert (routed(), level()) == ("high", "critical")
    path.write_text(BASE.format(tmp=tmp_path, scheme="severity_scheme: priority-1-5"))
    assert await reloader.reload(force=False) == "applied"
    assert (routed(), level()) == ("low", "low")


PROCESS_CONFIG = """
listen: {{host: 127.0.0.1, port: {port}}}
state_dir: {tmp}/state
quarantine: {{path: {tmp}/quarantine}}
bus: {{type: embedded, path: {tmp}/data/siemgate.db}}
forward: {{drain_timeout_seconds: 10}}
integrations:
  - name: scanner
    auth: {{header: X-Api-Key, values: [k-scanner-0123456789]}}
    {scheme}
sinks:
  - {{name: archive, type: file, path: {tmp}/out.ndjson}}
"""


async def test_a_running_siemgate_reads_by_the_scheme_a_reload_gives(
        tmp_path: Path, processes: list[subprocess.Popen[bytes]]) -> None:
    """A real `siemgate run`: the scanner's 5 is medium on the default 0-10 scale; after a
    SIGHUP with `severity_scheme: scores-1-5` the next 5 is routed high and written critical."""
    from siemgate_standins.broker import free_port
    from tests.forwarders.test_runtime import until
    from tests.test_reload import reloads
    from tests.test_run import start

    port = free_port()
    path = tmp_path / "siemgate.yaml"
    path.write_text(PROCESS_CONFIG.format(port=port, tmp=tmp_path, scheme=""))
    process = await start(path, port, tmp_path / "siemgate.log", processes)
    out = tmp_path / "out.ndjson"

    def lines() -> dict[str, dict[str, Any]]:
        if not out.exists():
            return {}
        found = (orjson.loads(line) for line in out.read_bytes().splitlines() if line)
        return {line["id"]: line for line in found}

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers={"X-Api-Key": "k-scanner-0123456789"},
                                 timeout=15) as client:
        assert (await client.post("/webhook/scanner", content=b'[{"id": "a", "severity": 5}]')).status_code == 200
        await until(lambda: "a" in lines(), timeout=20)
        path.write_text(PROCESS_CONFIG.format(port=port, tmp=tmp_path, scheme="severity_scheme: scores-1-5"))
        os.kill(process.pid, signal.SIGHUP)
        deadline = asyncio.get_running_loop().time() + 20
        while await reloads(client, "applied") < 1:
            assert asyncio.get_running_loop().time() < deadline, (tmp_path / "siemgate.log").read_text()[-2000:]
            await asyncio.sleep(0.05)
        assert (await client.post("/webhook/scanner", content=b'[{"id": "b", "severity": 5}]')).status_code == 200
        await until(lambda: "b" in lines(), timeout=20)
    found = lines()
    assert (found["a"]["severity"], found["a"]["level"]) == ("medium", "medium")
    assert (found["b"]["severity"], found["b"]["level"]) == ("high", "critical")
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0
