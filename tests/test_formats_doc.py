"""docs/FORMATS.md shows what siemgate's encoders write today: its generated parts (the
vendor event, each format's output, the severity and timestamp tables) are exactly what
`python -m tools.formats_doc` writes, and README's "Forwarding" links it."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

import siemgate.secrets
from tools import formats_doc

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _forget_doc_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    # Building the Sentinel settings registers its (made-up) client secret for log redaction.
    monkeypatch.setattr(siemgate.secrets._registry, "_values", set(siemgate.secrets._registry._values))


def test_formats_doc_is_what_the_generator_writes() -> None:
    text = formats_doc.DOC.read_text()
    parts = formats_doc.generated()
    stale = formats_doc.stale_parts(text, parts)
    assert not stale, f"docs/FORMATS.md is stale ({', '.join(stale)}): run `{formats_doc.COMMAND}` and commit it"
    assert formats_doc.render(text, parts) == text, f"run `{formats_doc.COMMAND}` and commit docs/FORMATS.md"


def test_generation_is_stable() -> None:
    """Nothing of the run (clock, host, batch id) leaks into the doc: two runs agree."""
    assert formats_doc.generated() == formats_doc.generated()


def test_check_mode_names_the_stale_block_and_the_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    doc = tmp_path / "formats-copy"
    text = formats_doc.DOC.read_text()
    doc.write_text(text.replace('"severity_id": 5', '"severity_id": 4', 1))
    monkeypatch.setattr(formats_doc, "DOC", doc)
    assert formats_doc.main(["--check"]) == 1
    err = capsys.readouterr().err
    assert "splunk_hec" in err and formats_doc.COMMAND in err
    assert formats_doc.main([]) == 0
    assert doc.read_text() == text
    assert formats_doc.main(["--check"]) == 0


def test_a_missing_marker_is_an_error() -> None:
    text = formats_doc.DOC.read_text()
    without = re.sub(r"<!-- generated:cef -->.*?<!-- /generated:cef -->", "", text, flags=re.S)
    with pytest.raises(KeyError, match="cef"):
        formats_doc.render(without, formats_doc.generated())


def test_the_doc_shows_the_event_as_critical_in_every_format() -> None:
    """The generated outputs are the encoders' real output for a critical vendor event."""
    event = formats_doc.normalized()
    assert (event.severity, event.level, event.vendor_severity) == ("high", "critical", "critical")
    parts = formats_doc.generated()
    assert parts["rfc5424"].startswith("```text\n<129>1 2026-12-07T13:58:21.417000Z siemgate-fwd-0.soc.example ")
    assert "|10|" in parts["cef"] and "\tsev=10\t" in parts["leef"]
    hec = orjson.loads(parts["splunk_hec"].split("\n", 1)[1].rsplit("```", 1)[0])
    assert hec["event"]["severity"] == "critical" and hec["event"]["severity_id"] == 5
    document = parts["elasticsearch"].split("\n", 2)[2].rsplit("```", 1)[0]
    assert orjson.loads(document)["event"]["severity"] == 99
    line = orjson.loads(parts["file"].split("\n", 1)[1].rsplit("```", 1)[0])
    assert line["level"] == "critical" and line["event"] == dict(formats_doc.VENDOR_EVENT)


def test_the_doc_shows_valid_ocsf_and_the_sentinel_ocsf_row() -> None:
    """The OCSF records shown are valid OCSF 1.7.0; the Sentinel OCSF row carries the record
    whole, its time and its id: exactly the declared columns (the DCR makes the rest)."""
    from siemgate.forwarders.sinks.sentinel import OCSF_COLUMNS
    from tests.forwarders.ocsf_schema import validate

    parts = formats_doc.generated()

    def shown(name: str) -> Any:
        return orjson.loads(parts[name].split("\n", 1)[1].rsplit("```", 1)[0])

    http_activity, finding, row = shown("ocsf"), shown("ocsf-detection-finding"), shown("sentinel-ocsf")
    for record in (http_activity, finding):
        validate(record)
    assert (http_activity["class_uid"], finding["class_uid"]) == (4002, 2004)
    assert http_activity["severity_id"] == 5 and http_activity["unmapped"] == dict(formats_doc.VENDOR_EVENT)
    assert row["ocsf"] == http_activity and set(row) == set(OCSF_COLUMNS) - {"unmapped"}  # (a small row)
    assert row["metadata_uid"] == "waf-7f3c9a1e" and row["TimeGenerated"] == "2026-12-07T13:58:21.417000Z"
    assert row["ocsf"]["src_endpoint"] == {"ip": "203.0.113.45"}


def test_readme_forwarding_links_the_formats_doc() -> None:
    readme = (ROOT / "README.md").read_text()
    forwarding = readme.split("\n## Forwarding\n", 1)[1].split("\n## ", 1)[0]
    assert "(docs/FORMATS.md)" in forwarding


def _field_table() -> tuple[list[str], list[list[str]]]:
    """docs/FORMATS.md's hand-written table "Where each normalized field lands": header, rows."""
    text = formats_doc.DOC.read_text().split("## Where each normalized field lands", 1)[1].split("\n### ", 1)[0]
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    cells = [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines]
    return cells[0], cells[1:]


def _resolvers(event: formats_doc.NormalizedEvent) -> dict[str, Callable[[str], object]]:
    """Per format column, how a field name of the table is read from that format's output
    (KeyError: the output has no such field)."""
    encode = formats_doc.encoders()
    rfc5424 = encode["rfc5424"](event).decode("utf-8", "replace")
    sd = dict(re.findall(r' (\w+)="((?:[^"\\]|\\.)*)"', rfc5424.split("] ", 1)[0]))
    _, cef = formats_doc._cef_fields(encode["cef"](event))
    cef = {key: value.replace("\\=", "=") for key, value in cef.items()}
    leef = formats_doc._leef_fields(encode["leef"](event))
    action, document, _ = encode["elasticsearch"](event).split(b"\n")
    es = {**orjson.loads(document), "_id": orjson.loads(action)["create"]["_id"]}

    def path(root: Any) -> Callable[[str], object]:
        def read(name: str) -> object:
            value = root
            for part in name.split("."):
                value = value.get(part) if isinstance(value, dict) else None
                if value is None:
                    raise KeyError(name)
            return value
        return read

    return {
        "RFC 5424": sd.__getitem__, "CEF": cef.__getitem__, "LEEF 2.0": leef.__getitem__,
        "Splunk HEC (CIM)": path(orjson.loads(encode["splunk_hec"](event))),
        "Elasticsearch (ECS)": path(es),
        "Sentinel (ASIM)": path(orjson.loads(encode["sentinel"](event))),
        "OCSF": path(orjson.loads(encode["ocsf"](event))),
        "file": path(orjson.loads(encode["file"](event))),
    }


# Cells where no named field holds the normalized value as text, on purpose: a derived form.
_DERIVED = {
    ("timestamp", "CEF"): "rt: epoch milliseconds",
    ("timestamp", "LEEF 2.0"): "devTime: devTimeFormat's form",
    ("timestamp", "Splunk HEC (CIM)"): "time: epoch seconds",
    ("kind", "Elasticsearch (ECS)"): "event.kind: ECS's alert/event; labels.kind only when not event",
    ("level", "Sentinel (ASIM)"): "EventSeverity: ASIM's High/Medium/Low/Informational (critical is High)",
    ("timestamp", "OCSF"): "time: epoch milliseconds",
    ("received_at", "OCSF"): "metadata.logged_time: epoch milliseconds",
    ("level", "OCSF"): "severity_id: OCSF's 0-5, severity its caption (Critical)",
    ("kind", "OCSF"): "is_alert: a boolean; the label only when not event",
    ("event_type", "OCSF"): "only a Detection Finding's title fallback",
    ("action", "OCSF"): "disposition_id/disposition: OCSF's enum read from the vendor's word (Blocked)",
}


def test_the_field_table_names_fields_that_carry_the_value() -> None:
    """Each cell of the hand-written field table that names fields (in backticks) names one
    that holds the normalized field's value in that format's real output: a renamed or
    misspelt field name in the doc fails here."""
    header, rows = _field_table()
    sample = formats_doc.normalized()
    invalid = formats_doc.normalized(timestamp=formats_doc.IMPOSSIBLE_TIME)
    readers = {"sample": _resolvers(sample), "invalid": _resolvers(invalid)}
    wrong = []
    checked = 0
    for row in rows:
        field = row[0].split(" ")[0]
        event, which = (invalid, "invalid") if field == "timestamp_invalid" else (sample, "sample")
        expected = getattr(event, field)
        assert expected is not None, f"the doc's event has no {field}: the table row cannot be checked"
        for column, cell in zip(header[1:], row[1:], strict=True):
            read = readers[which].get(column)
            names = re.findall(r"`([^`]+)`", cell)
            if read is None or not names or (field, column) in _DERIVED:
                continue
            found = {}
            for name in names:
                with contextlib.suppress(KeyError):  # a name for another case (IPv6, a test message)
                    found[name] = read(name)
            checked += 1
            if str(expected) not in {str(value) for value in found.values()}:
                wrong.append(f"{field} / {column}: {cell!r} -> {found} (expected {expected!r})")
    assert checked > 60
    assert not wrong, "docs/FORMATS.md's field table names fields that do not hold the value:\n" + "\n".join(wrong)
