"""docs/FORMATS.md shows what siemgate's encoders write today: its generated parts (the
vendor event, each format's output, the severity and timestamp tables) are exactly what
`python -m tools.formats_doc` writes, and README's "Forwarding" links it."""

from __future__ import annotations

import re
from pathlib import Path

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


def test_readme_forwarding_links_the_formats_doc() -> None:
    readme = (ROOT / "README.md").read_text()
    forwarding = readme.split("\n## Forwarding\n", 1)[1].split("\n## ", 1)[0]
    assert "(docs/FORMATS.md)" in forwarding
