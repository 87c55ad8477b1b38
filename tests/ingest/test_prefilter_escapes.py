"""The confirmation prefilter's escape scan (ControlPrefilter.suspect_positions): every escape
that could spell what it looks for is reported, whatever surrounds it."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from siemgate.config import parse_config
from siemgate.ingest.confirmation import ControlPrefilter

CONFIG = "integrations: [{name: appsec, auth: {header: X-K, values: [vvvv]}}]"
PREFILTER = ControlPrefilter(parse_config(CONFIG, {}).integrations[0].confirmation)
# Pieces of escapes, none of which can spell the hint or the test text.
PIECES = [b"\\", b"u", b"0", b"00", b"/", b"2", b"3", b"6", b"7", b"8", b"A", b"F", b"f", b"e", b"x", b'"',
          b"\\u00", b"\\u006", b"\\u003A", b"\\u00e9", b"\\u0063", b"\\/", b"\\\\"]


def reference(body: bytes) -> list[int]:
    """Every backslash followed by `/`, or by u00 and two hex digits of a character looked for."""
    return [at for at in range(len(body)) if body[at : at + 1] == b"\\"
            and (body[at + 1 : at + 2] == b"/"
                 or (body[at + 1 : at + 4] == b"u00" and body[at + 4 : at + 6].lower() in PREFILTER._wanted_hex))]


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=40))
def test_every_escape_that_could_spell_the_hint_is_suspect(pieces: list[bytes]) -> None:
    body = b"".join(pieces)
    assert PREFILTER.suspect_positions(body) == reference(body)


def test_escapes_of_other_characters_are_not_suspect() -> None:
    body = b'[{"m": "caf\\u00e9 \\u00fc\\u00df \\u003c \\"q\\" \\\\ \\ud83d\\udd25"}]'
    assert PREFILTER.suspect_positions(body) == []
    assert PREFILTER.suspect_positions(b'"\\u0063onfirm"') == [1]  # c, escaped: the hint
