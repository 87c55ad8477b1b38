"""The Splunk add-on (deploy/splunk/TA-siemgate): packaged as Splunk installs it, it passes
Splunk's own validator, splunk-appinspect; and what it reads is what the HEC sink writes.

AppInspect runs offline (its CLI, `--mode precert`: every check, the Splunk Cloud ones among
them); any failure, error or warning fails the test. Under CI=true a missing splunk-appinspect
(or libmagic, which it needs) fails instead of skipping."""

from __future__ import annotations

import configparser
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from siemgate.forwarders.normalize import NormalizedEvent, Normalizer
from siemgate.forwarders.sinks.splunk_hec import SplunkHecSink, SplunkHecSinkSettings
from siemgate.record import make_record
from siemgate.secrets import Secret

ROOT = Path(__file__).resolve().parents[2]
ADDON = ROOT / "deploy" / "splunk" / "TA-siemgate"
APP_ID = "TA-siemgate"
# Fields HEC sets on every event beside the JSON event (the envelope's metadata).
HEC_METADATA = frozenset({"host", "source", "sourcetype", "index", "_time"})
# CIM's prescribed values (Common Information Model 5.x/6.x: Intrusion Detection, Alerts).
CIM_IDS_ACTION = {"allowed", "blocked"}
CIM_IDS_TYPE = {"network", "host", "application", "wireless"}
CIM_SEVERITY = {"critical", "high", "medium", "low", "informational", "unknown"}
CIM_ALERT_TYPE = {"alarm", "alert", "event", "task", "warning"}
# The fields the IDS_Attacks dataset and the Alerts model are searched by.
CIM_IDS_FIELDS = {"action", "category", "dest", "dvc", "ids_type", "severity", "signature", "signature_id", "src",
                  "vendor_product"}
CIM_ALERT_FIELDS = {"app", "description", "dest", "id", "severity", "severity_id", "signature", "signature_id",
                    "src", "type"}


def _require(condition: bool, reason: str) -> None:
    if condition:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (needed under CI=true)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def appinspect() -> str:
    """The splunk-appinspect command (the test extra's), with libmagic usable."""
    _require(importlib.util.find_spec("splunk_appinspect") is not None,
             "splunk-appinspect is not installed: pip install splunk-appinspect (the test extra)")
    try:
        import magic

        magic.from_buffer(b"[install]\n")
    except (ImportError, OSError) as exc:
        _require(False, f"libmagic is not usable ({exc}): apt-get install -y libmagic1")
    sibling = Path(sys.executable).with_name("splunk-appinspect")
    command = str(sibling) if sibling.exists() else shutil.which("splunk-appinspect")
    _require(command is not None, "the splunk-appinspect command is not on PATH")
    assert command is not None
    return command


def package(source: Path, destination: Path) -> Path:
    """The add-on as Splunk installs it: a .tar.gz of one top-level directory named as the
    app's id, owned by root, directories 0755 and files 0644, without hidden files."""
    archive = destination / f"{APP_ID}.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted([source, *source.rglob("*")]):
            relative = path.relative_to(source)
            if any(part.startswith(".") or part == "__pycache__" for part in relative.parts):
                continue
            info = tar.gettarinfo(str(path), arcname=str(Path(APP_ID) / relative))
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mtime = 0
            info.mode = 0o755 if path.is_dir() else 0o644
            if path.is_dir():
                tar.addfile(info)
            else:
                with path.open("rb") as file:
                    tar.addfile(info, file)
    return archive


def inspect(command: str, archive: Path) -> dict[str, Any]:
    """AppInspect's JSON report of the package (every check: `--mode precert`)."""
    report = archive.with_suffix(".report.json")
    done = subprocess.run([command, "inspect", str(archive), "--mode", "precert", "--data-format", "json",
                           "--output-file", str(report)], capture_output=True, text=True, timeout=600,
                          cwd=archive.parent, check=False)
    assert report.exists(), f"appinspect wrote no report (exit {done.returncode}):\n{done.stdout}\n{done.stderr}"
    result: dict[str, Any] = json.loads(report.read_text())
    return result


def problems(report: dict[str, Any]) -> list[str]:
    return [f"{check['result']}: {check['name']}: {[m.get('message') for m in check['messages']]}"
            for app in report["reports"] for group in app["groups"] for check in group["checks"]
            if check["result"] in {"failure", "error", "warning", "future_failure", "manual_check"}]


def test_the_addon_passes_appinspect(appinspect: str, tmp_path: Path) -> None:
    archive = package(ADDON, tmp_path)
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert all(name == APP_ID or name.startswith(f"{APP_ID}/") for name in names)
    assert f"{APP_ID}/default/app.conf" in names and f"{APP_ID}/metadata/default.meta" in names
    report = inspect(appinspect, archive)
    summary = report["summary"]
    assert not problems(report), "AppInspect:\n" + "\n".join(problems(report))
    assert summary["failure"] == summary["error"] == summary["warning"] == summary["future_failure"] == 0
    assert summary["success"] >= 60, f"too few checks ran: {summary}"
    (app,) = report["reports"]
    assert app["app_package_id"] == APP_ID and app["app_version"] == "1.0.0"


def test_appinspect_refuses_a_broken_addon(appinspect: str, tmp_path: Path) -> None:
    """The check bites: the add-on with a Splunk-defined conf in app.conf's [triggers] (a
    mistake AppInspect fails) is refused."""
    broken = tmp_path / APP_ID
    shutil.copytree(ADDON, broken)
    with (broken / "default" / "app.conf").open("a") as conf:
        conf.write("\n[triggers]\nreload.tags = simple\n")
    out = tmp_path / "out"
    out.mkdir()
    report = inspect(appinspect, package(broken, out))
    assert report["summary"]["failure"] >= 1
    assert any("tags.conf" in line and "trigger" in line for line in problems(report)), problems(report)


# ------------------------------------------------------------------------------------------
# What the add-on reads against what the HEC encoder writes


def read_conf(path: Path) -> configparser.RawConfigParser:
    """A Splunk .conf file: [stanzas], `key = value`, `#` comments; names keep their case."""
    conf = configparser.RawConfigParser(delimiters=("=",), comment_prefixes=("#",), inline_comment_prefixes=None,
                                        strict=True, empty_lines_in_values=False, interpolation=None)
    conf.optionxform = str  # type: ignore[assignment,method-assign]
    conf.read_string(path.read_text(), source=str(path))
    return conf


def record(**fields: Any) -> NormalizedEvent:
    kind = fields.pop("kind", "event")
    event = {"id": "evt-1", "timestamp": "2026-11-28T21:00:00.123Z", "severity": "critical",
             "source_ip": "203.0.113.9", "url": "https://shop.example/login?q=1", "method": "POST",
             "rule_name": "SQL injection", "rule_id": "942100", "action": "deny", "asset": "shop-frontend",
             "type": "sqli", "message": "SQL injection blocked", **fields}
    event = {key: value for key, value in event.items() if value is not None}
    value = make_record(prefix="p", event=event, kind=kind, integration="appsec-prod", severity="high",
                        event_id="evt-1", received_at="2026-11-28T21:00:01.000000Z", batch="b", seq=0,
                        peer="127.0.0.1").value
    return Normalizer().normalize(value)


def sink(**options: Any) -> SplunkHecSink:
    return SplunkHecSink(SplunkHecSinkSettings(name="splunk", url="http://127.0.0.1:8088", token=Secret("t"),
                                               **options))


# Events of every shape the encoder has: all fields, none of the optional ones, an invalid
# time, a non-IP source, a test message.
SAMPLES = (record(), record(source_ip=None, url=None, method=None, rule_name=None, rule_id=None, action=None,
                            asset=None, type=None, message=None),
           record(timestamp="2025-02-30T10:00:00Z"), record(source_ip="not-an-ip"), record(kind="test"))


def written(events: Iterable[NormalizedEvent] = SAMPLES) -> set[str]:
    """Every field name the HEC sink writes (the event's keys; the vendor's as vendor_event.*)."""
    names: set[str] = set()
    for event in events:
        line = orjson.loads(sink().encode(event))
        names |= set(line["event"])
    return names


def _read_fields(expression: str) -> set[str]:
    """The field names an eval expression reads: its identifiers, without string literals,
    function names and eval's keywords."""
    without_strings = re.sub(r'"(?:[^"\\]|\\.)*"', "", expression)
    names = set()
    for match in re.finditer(r"'([^']+)'|\b([A-Za-z_][\w.]*)\b(\s*\()?", without_strings):
        quoted, name, call = match.groups()
        if quoted:
            names.add(quoted)
        elif not call and name.upper() not in {"AND", "OR", "NOT", "XOR", "LIKE", "IN", "TRUE", "FALSE", "NULL"}:
            names.add(name)
    return names


def drift(addon: Path, fields: set[str], sourcetype: str) -> list[str]:
    """What the add-on reads that the encoder does not write (empty: no drift)."""
    known = fields | HEC_METADATA
    wrong: list[str] = []

    def check(name: str, where: str) -> None:
        if name not in known and not name.startswith("vendor_event."):
            wrong.append(f"{where}: {name!r} is not written by the HEC sink")

    props = read_conf(addon / "default" / "props.conf")
    if not props.has_section(sourcetype):
        wrong.append(f"props.conf: no [{sourcetype}] stanza (the sink's default sourcetype)")
        return wrong
    stanza = props[sourcetype]
    for key, value in stanza.items():
        if key.startswith("FIELDALIAS-"):
            pairs = re.findall(r"(\S+)\s+AS(?:NEW)?\s+(\S+)", value, flags=re.IGNORECASE)
            if not pairs:
                wrong.append(f"props.conf {key}: no `field AS alias` in {value!r}")
            for source, _ in pairs:
                check(source.strip("'\""), f"props.conf {key}")
        elif key.startswith("EVAL-"):
            target = key.removeprefix("EVAL-")
            for name in _read_fields(value) - {target}:
                check(name, f"props.conf {key}")
            # a field the encoder lacks, computed here: it must read something the encoder writes
            if target not in fields and not _read_fields(value) & known:
                wrong.append(f"props.conf {key}: reads nothing the HEC sink writes")
    eventtypes = read_conf(addon / "default" / "eventtypes.conf")
    for name in eventtypes.sections():
        for field, _ in re.findall(r'([\w.]+)\s*=\s*"([^"]*)"', eventtypes[name]["search"]):
            check(field, f"eventtypes.conf [{name}]")
    tags = read_conf(addon / "default" / "tags.conf")
    for stanza_name in tags.sections():
        kind, _, value = stanza_name.partition("=")
        if kind != "eventtype" or not eventtypes.has_section(value):
            wrong.append(f"tags.conf [{stanza_name}]: no such eventtype in eventtypes.conf")
    return wrong


def test_the_addon_reads_only_fields_the_hec_sink_writes() -> None:
    fields = written()
    sourcetype = SplunkHecSinkSettings(name="s", url="http://h:8088", token=Secret("t")).sourcetype
    assert not drift(ADDON, fields, sourcetype), "\n".join(drift(ADDON, fields, sourcetype))
    props = read_conf(ADDON / "default" / "props.conf")
    assert props[sourcetype]["KV_MODE"] == "json"
    assert any(key.startswith(("FIELDALIAS-", "EVAL-")) for key in props[sourcetype]), "nothing checked"
    # A HEC indexed field that is also a field of the JSON event reads as two values unless
    # the add-on keeps one.
    indexed: set[str] = set()
    for event in SAMPLES:
        indexed |= set(orjson.loads(sink().encode(event))["fields"])
    both = indexed & fields
    assert both >= {"integration", "severity", "kind", "timestamp_invalid"}
    assert {name: props[sourcetype].get(f"EVAL-{name}") for name in both} == {
        name: f"mvdedup({name})" for name in both}


def test_drift_is_found(tmp_path: Path) -> None:
    """The drift check bites: a renamed field in an alias, an eval or an eventtype, and a tag
    of a missing eventtype."""
    copy = tmp_path / APP_ID
    shutil.copytree(ADDON, copy)
    props = copy / "default" / "props.conf"
    props.write_text(props.read_text() + "FIELDALIAS-old = product AS app\nEVAL-dvc_name = coalesce(device, \"x\")\n")
    eventtypes = copy / "default" / "eventtypes.conf"
    eventtypes.write_text(eventtypes.read_text().replace('kind="event"', 'event_kind="event"'))
    tags = copy / "default" / "tags.conf"
    tags.write_text(tags.read_text() + "\n[eventtype=siemgate_missing]\nids = enabled\n")
    found = "\n".join(drift(copy, written(), "siemgate:event"))
    assert "'product'" in found and "'device'" in found and "'event_kind'" in found
    assert "siemgate_missing" in found
    assert drift(copy, written(), "other:sourcetype") == [
        "props.conf: no [other:sourcetype] stanza (the sink's default sourcetype)"]


def _matches(search: str, event: dict[str, Any]) -> bool:
    """An eventtype's search (`field="value"` terms, ANDed) against an event's fields."""
    terms = re.findall(r'([\w.]+)\s*=\s*"([^"]*)"', search)
    assert terms and len(terms) == len(search.split()), f"unsupported search: {search!r}"
    return all(str(event.get(field)) == value for field, value in terms)


def searched(event: NormalizedEvent, **options: Any) -> tuple[dict[str, Any], set[str]]:
    """The event's fields as Splunk search sees them with the add-on (HEC metadata, the JSON
    event, the add-on's aliases and evals of the simple forms it uses), and its tags."""
    envelope = orjson.loads(sink(**options).encode(event))
    fields: dict[str, Any] = {**envelope["event"], "sourcetype": envelope["sourcetype"]}
    if "host" in envelope:
        fields["host"] = envelope["host"]
    props = read_conf(ADDON / "default" / "props.conf")[envelope["sourcetype"]]
    for key, value in props.items():
        if key.startswith("FIELDALIAS-"):
            for source, alias in re.findall(r"(\S+)\s+AS\s+(\S+)", value):
                if source in fields:
                    fields[alias] = fields[source]
        elif key.startswith("EVAL-"):
            call = re.fullmatch(r"(?:coalesce|mvdedup)\(([\w, ]+)\)", value)
            assert call, f"props.conf {key}: the test knows coalesce() and mvdedup() only: {value!r}"
            found = [fields[name] for name in (n.strip() for n in call[1].split(",")) if name in fields]
            if found:
                fields[key.removeprefix("EVAL-")] = found[0]
    eventtypes = read_conf(ADDON / "default" / "eventtypes.conf")
    tags_conf = read_conf(ADDON / "default" / "tags.conf")
    tags = set()
    for name in eventtypes.sections():
        if _matches(eventtypes[name]["search"], fields):
            tags |= {tag for tag, state in tags_conf[f"eventtype={name}"].items() if state == "enabled"}
    return fields, tags


def test_a_detection_reaches_intrusion_detection_and_alerts_with_cim_values() -> None:
    fields, tags = searched(record())
    assert tags == {"ids", "attack", "alert"}
    assert fields.keys() >= CIM_IDS_FIELDS | CIM_ALERT_FIELDS
    assert fields["action"] in CIM_IDS_ACTION and fields["vendor_action"] == "deny"
    assert fields["ids_type"] in CIM_IDS_TYPE and fields["severity"] in CIM_SEVERITY
    assert fields["type"] in CIM_ALERT_TYPE
    assert fields["app"] == fields["vendor_product"] == "appsec-prod"
    assert fields["severity"] == "critical" and fields["severity_id"] == 5
    assert fields["dvc"] == fields["host"] == "shop-frontend"
    configured, _ = searched(record(), host="waf-01", vendor_product="Acme WAF")
    assert configured["dvc"] == "waf-01" and configured["app"] == "Acme WAF"


@pytest.mark.parametrize("action", [True, "true", "1", "maybe", "", None])
def test_no_action_outside_cims_values(action: object) -> None:
    fields, tags = searched(record(action=action))
    assert "action" not in fields, "no CIM value fits: no action (the word is in vendor_action)"
    assert tags == {"ids", "attack", "alert"}


def test_test_messages_are_not_tagged() -> None:
    fields, tags = searched(record(kind="test"))
    assert fields["kind"] == "test" and fields["type"] == "event"
    assert tags == set()


def test_time_extraction_agrees_with_hec_time() -> None:
    """When Splunk extracts the timestamp itself (auto_extract_timestamp, a file), props.conf's
    TIME_PREFIX/TIME_FORMAT read the same instant HEC's `time` holds."""
    props = read_conf(ADDON / "default" / "props.conf")["siemgate:event"]
    assert props["TZ"] == "UTC"
    strptime_format = props["TIME_FORMAT"].replace("%6N", "%f")
    lookahead = int(props["MAX_TIMESTAMP_LOOKAHEAD"])
    for event in (*SAMPLES, record(timestamp="2024-02-29T23:59:59.999999+02:00"), record(timestamp=1795899600)):
        envelope = orjson.loads(sink().encode(event))
        raw = orjson.dumps(envelope["event"]).decode()  # _raw: the event as HEC indexes it
        prefix = re.match(props["TIME_PREFIX"], raw)
        assert prefix is not None, raw[:80]
        text = raw[prefix.end():prefix.end() + lookahead]
        moment = datetime.strptime(text[:text.index('"')], strptime_format).replace(tzinfo=UTC)
        assert moment.timestamp() == pytest.approx(envelope["time"], abs=1e-6)


def test_the_manifest_and_app_conf_agree() -> None:
    manifest = json.loads((ADDON / "app.manifest").read_text())
    app = read_conf(ADDON / "default" / "app.conf")
    assert manifest["info"]["id"]["name"] == app["package"]["id"] == app["id"]["name"] == APP_ID
    assert manifest["info"]["id"]["version"] == app["launcher"]["version"] == app["id"]["version"]
    assert (ADDON / manifest["info"]["license"]["text"]).is_file()
    assert set(manifest["info"]["commonInformationModels"]) == {"Intrusion Detection", "Alerts"}
    # default.meta's one stanza, `[]` (the whole app: configparser takes no empty section name)
    meta = [line.strip() for line in (ADDON / "metadata" / "default.meta").read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    assert meta[0] == "[]" and "export = system" in meta[1:]
