"""What the command-line tools print: text from outside (vendor events, links, reasons a sink
or the vendor gave, ids, peers) escaped so that it cannot act on the operator's terminal.

A webhook body is written by whoever can post to the webhook; an escape sequence in an event id
or a confirmation link (ESC [ ... to move the cursor, rewrite earlier lines or set the window
title, OSC 8 to disguise a link), a carriage return that overwrites a line, or a bidi override
(U+202E) that shows `moc.elpmaxe` as `example.com` must reach the terminal as visible text.
`printable` writes every character that `str.isprintable` refuses (C0 and C1 controls, DEL,
format characters such as bidi overrides and zero-width ones, line and paragraph separators,
surrogates, unassigned code points, and blanks other than the space) as its Python escape
(`\\x1b`, `\\r`, `\\u202e`); everything else, non-ASCII letters included, is left as it is.
A backslash is not escaped: what the operator reads may be ambiguous, never active.
"""

from __future__ import annotations


def printable(text: object) -> str:
    """`str(text)` with every unprintable character escaped (see the module)."""
    value = str(text)
    if value.isprintable():
        return value
    return "".join(c if c.isprintable() else c.encode("unicode_escape", "backslashreplace").decode("ascii")
                   for c in value)
