"""Terminal escapes from vendor data never reach the operator's terminal (issue 17): every CLI
output that prints vendor data (`siemgate confirmations`, `confirm`, `dlq list`, `quarantine
list|show`, `check`'s details) escapes C0/C1 controls, DEL and bidi/format characters."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from siemgate.config import parse_config
from siemgate.forwarders.deadletter import dlq_topic
from siemgate.forwarders.dlq_cli import list_dead_letters
from siemgate.ingest.confirmation_cli import list_confirmations
from siemgate.ingest.confirmation_store import ConfirmationStore
from siemgate.ingest.quarantine import Quarantine
from siemgate.ingest.quarantine_cli import list_quarantine
from siemgate.record import DeadLetterValue, Record, encode_value
from siemgate.terminal import printable
from tests.forwarders.test_runtime import embedded_config_for, publish

pytestmark = pytest.mark.anyio

# What a hostile sender writes: clear the screen, set the window title (OSC, BEL), a carriage
# return that overwrites the line, a C1 CSI, DEL, a bidi override and a zero-width space.
HOSTILE = "a\x1b[2J\x1b]0;pwned\x07\rb\x9b31m\x7f\u202eoc.elpmaxe\u2066\u200bz"
# Anything a terminal acts on: C0 (but the newline the tool itself writes), DEL, C1, and the
# format characters that reorder or hide text.
ACTIVE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")


def test_printable_escapes_what_a_terminal_acts_on_and_keeps_the_rest() -> None:
    assert printable(HOSTILE) == "a\\x1b[2J\\x1b]0;pwned\\x07\\rb\\x9b31m\\x7f\\u202eoc.elpmaxe\\u2066\\u200bz"
    assert printable("Grüße, 東京 https://vendor.example/x?a=1") == "Grüße, 東京 https://vendor.example/x?a=1"
    assert printable("\ud83d lone") == "\\ud83d lone"
    assert not ACTIVE.search(printable("".join(map(chr, range(0x2100)))))


def assert_inert(output: str) -> None:
    assert output, "nothing printed"
    assert not ACTIVE.search(output), repr(output)


async def test_confirmations_escape_the_link_and_the_error(tmp_path: Path) -> None:
    config = embedded_config_for(tmp_path, extra="""integrations:
  - name: appsec
    auth: {header: X-Api-Key, values: [k-0123456789]}""")
    store = ConfirmationStore(config.state_dir)
    link = f"https://vendor.example/confirm?t={HOSTILE}"
    await store.record_link("appsec", link, "2026-12-07T15:00:00Z")
    await store.record_failure("appsec", link, f"vendor answered: {HOSTILE}")
    # A name only the state holds (another config's integration): printed too.
    await store.record_link(f"old{HOSTILE}", "https://vendor.example/x", "2026-12-07T15:00:00Z")
    out = io.StringIO()
    assert list_confirmations(config, out) == 0
    assert_inert(out.getvalue())
    assert "\\x1b[2J" in out.getvalue() and "\\u202e" in out.getvalue()


async def test_dlq_list_escapes_the_id_and_the_reason(tmp_path: Path) -> None:
    config = embedded_config_for(tmp_path)
    letter = DeadLetterValue("archive", f"mapping error: {HOSTILE}", 1, "2026-12-07T15:00:00Z", f"e-{HOSTILE}",
                             b'{"event": {}}')  # type: ignore[arg-type]
    topic = dlq_topic(config.bus.topic_prefix, "archive")
    await publish(config, [Record(topic, b"k", encode_value(letter), [], "high", "event")])
    out = io.StringIO()
    assert await list_dead_letters(config, "archive", out) == 0
    assert_inert(out.getvalue())
    assert "1 dead letter(s)" in out.getvalue() and "e-a\\x1b[2J" in out.getvalue()


async def test_quarantine_list_escapes_every_field(tmp_path: Path) -> None:
    config = parse_config(f"""
state_dir: {tmp_path}/state
quarantine: {{path: {tmp_path}/quarantine}}
integrations:
  - name: appsec
    auth: {{header: X-Api-Key, values: [k-0123456789]}}
bus: {{type: embedded, path: {tmp_path}/bus.db}}
""", {})
    quarantine = Quarantine(config.quarantine.path, config.quarantine.max_bytes)
    ident = await quarantine.save(integration="appsec", body=HOSTILE.encode(), reason=f"invalid JSON: {HOSTILE}",
                                  peer=f"10.0.0.1{HOSTILE}", status=400, authenticated=True)
    assert ident is not None
    out = io.StringIO()
    assert list_quarantine(config, out) == 0
    assert_inert(out.getvalue())
    assert ident in out.getvalue()
