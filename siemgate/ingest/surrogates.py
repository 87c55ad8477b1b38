"""Bodies that strict JSON parsers refuse for their text alone, made readable without losing a batch.

A UTF-16 runtime (Java, .NET, JavaScript) that cuts a string in the middle of a surrogate pair
writes a lone surrogate: as an escape (`"\\ud83d"`, valid JSON grammar that strict parsers
refuse: RFC 8259 8.2), or, through a lenient encoder, raw (CESU-8 / WTF-8 bytes `ED A0 BD`,
which are not UTF-8). The sender never resends, so refusing the body would lose all its
events for one damaged character. Instead:

- a raw surrogate inside a string is written as its escape (`raw_surrogates_escaped`), and
  so is a raw control character inside a string (`raw_controls_escaped`: a raw newline or tab
  in JSON built by hand), the only changes made to the sender's bytes: records are UTF-8 JSON;
- each lone surrogate escape stays in the event's bytes as the sender wrote it; siemgate's
  own reading of the event (id, severity, type, confirmation detection, what the sinks
  receive) sees U+FFFD instead (`record.readable`, same length);
- `spans` finds where each event lies in the body, since the events are split from the
  readable copy (byte offsets are the same in both).
"""

from __future__ import annotations

import re
from typing import Final

import msgspec

# A surrogate encoded as if it were a character (ED A0..BF 80..BF): what UTF-8 forbids.
_RAW_SURROGATE: Final = re.compile(rb"\xed[\xa0-\xbf][\x80-\xbf]")
_STRING: Final = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_TOKEN: Final = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)
_SCALAR: Final = re.compile(rb"[^\s,\]}]*")
_WHITESPACE: Final = b" \t\r\n"
_KEY: Final = msgspec.json.Decoder(str)


def raw_surrogates_escaped(body: bytes) -> bytes | None:
    """`body` with each raw surrogate written as its `\\uXXXX` escape, when that is all that
    keeps it from being UTF-8; None when it is not UTF-8 for another reason, or when a raw
    surrogate follows a backslash (its escape would turn that backslash into an escaped one)."""
    try:
        body.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return None
    pieces = []
    done = 0
    for match in _RAW_SURROGATE.finditer(body):
        start = match.start()
        backslashes = 0
        while start - backslashes > 0 and body[start - backslashes - 1] == 0x5C:
            backslashes += 1
        if backslashes % 2:
            return None
        b0, b1, b2 = match.group()
        code = ((b0 & 0x0F) << 12) | ((b1 & 0x3F) << 6) | (b2 & 0x3F)
        pieces += [body[done:start], b"\\u%04x" % code]
        done = match.end()
    pieces.append(body[done:])
    return b"".join(pieces)


_CONTROL: Final = re.compile(rb"[\x00-\x1f]")
_SHORT_ESCAPES: Final = {0x08: b"\\b", 0x09: b"\\t", 0x0A: b"\\n", 0x0C: b"\\f", 0x0D: b"\\r"}


def _escape_control(match: re.Match[bytes]) -> bytes:
    return _SHORT_ESCAPES.get(match.group()[0]) or b"\\u%04x" % match.group()[0]


def _unescapable(string: bytes) -> bool:
    """A control character of `string` right after a backslash: its escape would change what it means."""
    for control in _CONTROL.finditer(string):
        backslashes = 0
        while string[control.start() - backslashes - 1] == 0x5C:
            backslashes += 1
        if backslashes % 2:
            return True
    return False


def raw_controls_escaped(body: bytes) -> bytes | None:
    """`body` with each control character (U+0000-U+001F) that stands raw inside a string written
    as its escape (`\\n`, `\\t`, `\\u0001`): what JSON built by hand holds (a multi-line attack
    sample pasted into a template), which RFC 8259 7 wants escaped and strict parsers refuse.
    None when no string holds one, or one follows a backslash. Blanks between tokens are left."""
    if _CONTROL.search(body) is None:
        return None
    refused = False

    def escaped_string(match: re.Match[bytes]) -> bytes:
        nonlocal refused
        string = match.group()
        if refused or _CONTROL.search(string) is None:
            return string
        if _unescapable(string):
            refused = True
            return string
        return _CONTROL.sub(_escape_control, string)

    escaped = _STRING.sub(escaped_string, body)
    if refused:
        return None
    return escaped if escaped != body else None


def _skip_whitespace(document: bytes, at: int) -> int:
    while document[at] in _WHITESPACE:
        at += 1
    return at


def _value_end(document: bytes, at: int) -> int:
    """Where the JSON value starting at `at` ends (`document` is valid JSON)."""
    first = document[at]
    if first == 0x22:  # "
        match = _STRING.match(document, at)
        assert match is not None
        return match.end()
    if first in b"[{":
        depth = 0
        for token in _TOKEN.finditer(document, at):
            opening = document[token.start()]
            if opening in b"[{":
                depth += 1
            elif opening in b"]}":
                depth -= 1
                if depth == 0:
                    return token.end()
        raise ValueError("unbalanced JSON")
    match = _SCALAR.match(document, at)
    assert match is not None
    return match.end()


def _elements(document: bytes, at: int) -> list[tuple[int, int]]:
    """Start and end of each element of the JSON array at `at`."""
    spans: list[tuple[int, int]] = []
    at = _skip_whitespace(document, at + 1)
    if document[at] == 0x5D:  # ]
        return spans
    while True:
        end = _value_end(document, at)
        spans.append((at, end))
        at = _skip_whitespace(document, end)
        if document[at] == 0x5D:
            return spans
        at = _skip_whitespace(document, at + 1)  # past the comma


def _member(document: bytes, at: int, key: str) -> int | None:
    """Where the value of the object at `at` under `key` starts (the last such member, as
    the JSON decoders read duplicates), or None."""
    found = None
    at = _skip_whitespace(document, at + 1)
    if document[at] == 0x7D:  # }
        return None
    while True:
        key_end = _value_end(document, at)
        name = _KEY.decode(document[at:key_end])
        at = _skip_whitespace(document, _skip_whitespace(document, key_end) + 1)  # past the colon
        if name == key:
            found = at
        end = _value_end(document, at)
        at = _skip_whitespace(document, end)
        if document[at] == 0x7D:
            return found
        at = _skip_whitespace(document, at + 1)


def member_count(document: bytes, key: str) -> int:
    """How many members of the top-level object of `document` (valid JSON) are named `key`
    (JSON decoders keep only the last of them)."""
    at = _skip_whitespace(document, 0)
    count = 0
    at = _skip_whitespace(document, at + 1)
    if document[at] == 0x7D:  # }
        return 0
    while True:
        key_end = _value_end(document, at)
        count += _KEY.decode(document[at:key_end]) == key
        at = _skip_whitespace(document, _skip_whitespace(document, key_end) + 1)  # past the colon
        at = _skip_whitespace(document, _value_end(document, at))
        if document[at] == 0x7D:
            return count
        at = _skip_whitespace(document, at + 1)


def spans(readable_body: bytes, batch_key: str | None) -> list[tuple[int, int]]:
    """Start and end of each event in `readable_body` (valid JSON): the elements of its
    top-level array, or of the array under `batch_key` of its top-level object."""
    at = _skip_whitespace(readable_body, 0)
    if batch_key is not None:
        inner = _member(readable_body, at, batch_key)
        if inner is None:
            raise ValueError(f"no member {batch_key!r}")
        at = inner
    return _elements(readable_body, at)
