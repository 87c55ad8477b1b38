"""Recognise the sender's confirmation and "Test Integration" messages among security events.

Pure functions, no I/O. The vendor does not document the exact shape of either message, so
detection looks for structure that a real security event does not have, and every name it
relies on is configurable (`ConfirmationConfig`). Shapes recognised as a confirmation:

    {"confirmationLink": "https://..."}                       a field named like the hint
    {"confirmation_url": "https://...", "message": "..."}
    {"data": {"confirmUrl": "https://..."}}                   ... or one level down
    {"confirmation": {"url": "https://..."}}                  a hinted object holding a link
    {"type": "confirmation", "url": "https://..."}            a confirmation type + any https link
    {"messageType": "WebhookConfirmation", "link": "https://..."}
    {"type": "subscription_confirmation",
     "message": "Please confirm by visiting https://x/y?token=..."}   ... also inside text
    {"message": "Please confirm the integration: https://..."}        see below

Text alone (the hint in a message's words, outside its link; or the documented test text)
only counts for a short message (at most 4 fields) without a type field of another value:
attacker-controlled text inside a real security event must not turn it into a control message.

Shapes recognised as a test: a type field whose value is one of `test_types`
(`{"type": "test"}`, `{"eventType": "TestIntegration"}`), a top-level `test_flags` field
(`test`, `isTest`, `is_test` ...) that is `true`, or a short message starting with the vendor's documented test text
("You've completed integrating Application Security with your webhook! ...").

Type values are compared ignoring case and the separators `_`, `-`, `.` and spaces, so
`WebhookConfirmation`, `webhook-confirmation` and `webhook_confirmation` are the same type.

Only https links count: an http link could not be requested safely, and a confirmation
message without a usable link is better forwarded as an ordinary event than swallowed.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

import msgspec

from siemgate.config import ConfirmationConfig
from siemgate.record import Kind

# A longer link is neither recorded nor requested (RFC 9110 asks for at least 8,000 octets; a
# vendor's confirmation link is a few hundred): it would otherwise land in logs and state.
MAX_LINK_CHARS: Final = 8192
# Field names whose value is "the link" of a message, tried before any other https value.
_LINK_FIELDS: Final = frozenset({"url", "link", "href", "uri"})
# Free-text fields in which a link may be embedded ("Please confirm by visiting https://...").
_TEXT_FIELDS: Final = frozenset({"message", "text", "body", "description", "content", "msg", "title", "detail"})
# A message recognised by its text alone must be this small: a real security event carries
# many fields (request, source, rule, severity ...), and attacker-controlled text inside one
# must not be able to turn it into a confirmation or a test.
_MAX_TEXT_ONLY_FIELDS: Final = 4
# The test message's text as the vendor documents it.
_TEST_PHRASES: Final = ("you've completed integrating",)
# What of it the raw-bytes prefilter looks for (the apostrophe may be a typographic one).
_TEST_PHRASE_BYTES: Final = b"completed integrating"
_URL_IN_TEXT: Final = re.compile(r"https://[^\s<>\"'`]+", re.IGNORECASE)
# Punctuation that ends a sentence rather than the link ("... visit https://x/y.").
_TRAILING: Final = ".,;:!?)]}>'\""
_SEPARATORS: Final = re.compile(r"[\s_.\-]+")
_BLANKS: Final = re.compile(rb"[ \t\r\n]*")
_ASCII_SEPARATORS: Final = str.maketrans("", "", " \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f_.-")


# The characters whose lowercase holds an ASCII letter (what `str.lower` does to a key or a
# text before `classify` compares it), and whether they could spell a hint: the Kelvin sign
# (U+212A) is "k" to it, anywhere in the hint; İ (U+0130) is "i" followed by U+0307, so only
# at the hint's end. The test text and "https://" hold neither way. Relevant for few hints
# (not the default "confirm"), so ordinary bodies are not searched for them.
def _ends_with_i(hint: str) -> bool:
    return hint.endswith("i")


def _holds_k(hint: str) -> bool:
    return "k" in hint


_LOWERS_TO_ASCII: Final[dict[str, tuple[bytes, Callable[[str], bool]]]] = {
    "\u0130": (b"i", _ends_with_i), "\u212a": (b"k", _holds_k)}


class ControlPrefilter:
    """A cheap necessary condition for `classify(event) != "event"`, for the ingest's hot path.

    It looks at the event's raw JSON bytes and a few decoded top-level fields only, so that
    ordinary security events are never fully parsed. Built once per integration. False means
    `classify` would say "event", because each of its rules needs one of:

    - a type field whose value names a control type, or a test flag that is `true`;
    - the field hint in a key, or in a text of a message with at most 4 fields, together
      with an https link (every confirmation rule other than the typed one needs a link);
    - the vendor's test text.

    The hint, the test text and `https://` may be written with JSON escapes (`\\u0063onfirm`,
    `https:\\/\\/`): the byte checks read such an event through `_view`, which decodes the
    escapes of the characters they look for (and of the two non-ASCII characters whose
    lowercase is ASCII). Every other escape (`\\u00e9`, `\\"`, `\\\\`: what `json.dumps`, Jackson
    or Go write for non-ASCII text, quotes and `<>&`) hides nothing, so events full of them
    are not sent to classification.
    """

    __slots__ = ("_escapes", "_exact", "_hiding", "_hint", "_needles", "_specials", "_spelled_hex", "_type_memo",
                 "_wanted", "_wanted_hex")

    # Type values repeat from event to event ("sql_injection", "waf_block"): remember verdicts.
    _MEMO_SIZE: Final = 4096
    # Only short values are remembered: the sender chooses them.
    _MEMO_LONGEST: Final = 64

    def __init__(self, config: ConfirmationConfig) -> None:
        hint = config.field_hint.lower()
        self._hint = hint.encode()
        self._wanted = _wanted(config.confirmation_types) | _wanted(config.test_types)
        self._type_memo: dict[str, bool] = {}
        # A hint that is not plain printable ASCII (a quote or backslash is escaped in JSON, a
        # non-ASCII one has many spellings): every event takes the full look.
        self._exact = hint.isascii() and hint.isprintable() and '"' not in hint and "\\" not in hint
        # What the byte checks look for, character by character, in both cases.
        wanted = {c for text in (hint, _TEST_PHRASE_BYTES.decode(), "https://") for c in (*text, *text.upper())}
        # Their \u00XX escapes' last two hex digits, in either case.
        self._wanted_hex = frozenset(b"%02x" % ord(c) for c in wanted) | frozenset(b"%02X" % ord(c) for c in wanted)
        # The characters whose lowercase could spell the hint, raw (UTF-8) and as escapes.
        specials = {c: lowered for c, (lowered, spells) in _LOWERS_TO_ASCII.items() if spells(hint)}
        self._specials = {c.encode(): lowered for c, lowered in specials.items()}
        special_escapes = [e for c in specials for e in (b"%04x" % ord(c), b"%04X" % ord(c))]
        # What else could hide them: the raw characters, their escapes, an escaped slash.
        self._needles = [*self._specials, *(b"\\u" + e for e in special_escapes)]
        escapes = b"|".join([b"00(?:" + b"|".join(sorted(self._wanted_hex)) + b")", *special_escapes])
        self._hiding = re.compile(rb"\\(?:u(?:" + escapes + rb")|/)")
        # Where in a body the byte checks could succeed: where the hint or the test text is
        # spelled, so only the escapes of their characters count there (an event that holds
        # neither fails the checks whatever its link looks like; `https:\/\/` alone is no
        # reason to look closer). Their \u00XX escapes' last two hex digits, in either case:
        spelled = {c for text in (hint, _TEST_PHRASE_BYTES.decode()) for c in (*text, *text.upper())}
        self._spelled_hex = frozenset(b"%02x" % ord(c) for c in spelled) | frozenset(b"%02X" % ord(c) for c in spelled)
        # Where such an escape may start: \u00 and the first hex digit of one of theirs (one C
        # pass; the last digit is looked at for the few matches), or an escaped slash if a slash
        # is one of them.
        firsts = b"".join(re.escape(bytes([b])) for b in sorted({h[0] for h in self._spelled_hex}))
        self._escapes = re.compile(rb"\\u00[" + firsts + rb"]" + (rb"|\\/" if "/" in spelled else b""))

    def suspect_positions(self, body: bytes) -> list[int] | None:
        """Sorted offsets in `body` where the byte checks of `may_be_control` could succeed:
        the hint, the test text, an escape that could spell them. Only events spanning one of
        these need the byte checks, and most bodies have none. None: every event needs them."""
        return self.scan(body)[0]

    def scan(self, body: bytes) -> tuple[list[int] | None, bytes]:
        """`suspect_positions`, and `body.lower()` (made for them), for `span_may_be_control`."""
        if not self._exact:
            return None, b""
        lowered = body.lower()
        positions: list[int] = []
        for needle in (self._hint, _TEST_PHRASE_BYTES):
            at = lowered.find(needle)
            while at != -1:
                positions.append(at)
                at = lowered.find(needle, at + 1)
        # A one-byte search is a memchr: far cheaper than the searches it spares.
        if b"\\" in body:
            # The \u00XX escapes of the characters looked for, and escaped slashes. The pattern
            # stops at the first hex digit, which rules out the escapes json.dumps writes for
            # non-ASCII text (\u0080 and up) in C; only the rest are looked at here. (Measured
            # in CPU time: 1.7-2.2x faster than splitting at every \u00 on escape-heavy bodies.)
            wanted = self._spelled_hex
            for match in self._escapes.finditer(body):
                at = match.start()
                if body[at + 1] == 0x2F or body[at + 4 : at + 6] in wanted:  # 0x2F: "/"
                    positions.append(at)
        for needle in self._needles:
            at = body.find(needle)
            while at != -1:
                positions.append(at)
                at = body.find(needle, at + 1)
        positions.sort()
        return positions, lowered

    def may_be_control(
        self, raw: bytes, type_values: Iterable[object], flag_values: Iterable[object], byte_checks: bool = True
    ) -> bool:
        """`raw` is the event's JSON object; the values are those of `type_fields` and
        `test_flags` (absent ones may be anything but a string or True). `byte_checks` may be
        False for an event that spans none of its body's `suspect_positions`."""
        for value in type_values:
            if isinstance(value, str) and self.control_type(value):
                return True
        # `True in` also matches 1 (1 == True): then check exactly.
        if True in flag_values and any(value is True for value in flag_values):
            return True
        return byte_checks and self.bytes_may_be_control(raw)

    def bytes_may_be_control(self, raw: bytes) -> bool:
        """The byte checks of `may_be_control` alone (its type and flag checks aside)."""
        if not self._exact:
            return True
        lowered = self._view(raw).lower()
        if _TEST_PHRASE_BYTES in lowered:
            return True
        if self._hint not in lowered or b"https://" not in lowered:
            return False
        # The hint and a link: in a key (at any depth), or in the text of a short message?
        return _in_a_key(lowered, self._hint) or _top_level_fields(raw) <= _MAX_TEXT_ONLY_FIELDS

    def span_may_be_control(self, body: bytes, lowered: bytes, start: int, end: int, typed: bool = False) -> bool:
        """`bytes_may_be_control(body[start:end])`, `lowered` being `body.lower()` (`scan`).

        Where the span holds nothing `_view` would change (no escape it decodes, none of the
        characters whose lowercase is ASCII), its view lowercased is `lowered[start:end]`: the
        checks read that in place, with no copy of the event and no lowering of it.

        `typed`: the event has a top-level type field (`type_fields`) holding a string, which no
        rule by text alone accepts (`_text_only_candidate`): then only the hint in a key together
        with an https link can make it a control message, as far as its bytes go (its type and
        flags are checked apart), and neither the test text nor its number of fields is looked at."""
        if not self._exact:
            return True
        if (body.find(b"\\", start, end) != -1 and self._hiding.search(body, start, end) is not None) or (
                self._specials and any(body.find(character, start, end) != -1 for character in self._specials)):
            view = self._view(body[start:end]).lower()
            if typed:
                return self._hint in view and b"https://" in view and _in_a_key(view, self._hint)
            return self.bytes_may_be_control(body[start:end])
        hint = self._hint
        at = lowered.find(hint, start, end)
        if at == -1 or lowered.find(b"https://", start, end) == -1:
            return not typed and lowered.find(_TEST_PHRASE_BYTES, start, end) != -1
        return (_in_a_key(lowered, hint, at, end) or not typed and (
            lowered.find(_TEST_PHRASE_BYTES, start, end) != -1
            or _top_level_fields(body[start:end]) <= _MAX_TEXT_ONLY_FIELDS))

    def _view(self, raw: bytes) -> bytes:
        """`raw` with the escapes that could spell what the byte checks look for decoded, and
        the characters whose lowercase is ASCII written as that (the one change that may
        matter to them). Quotes and backslashes stay as they are: keys are still found."""
        if b"\\" in raw:
            raw = self._hiding.sub(_decoded, raw)
        for character, lowered in self._specials.items():
            raw = raw.replace(character, lowered)
        return raw

    def control_type(self, value: str) -> bool:
        """Whether a type field's value names a control type (confirmation or test)."""
        verdict = self._type_memo.get(value)
        if verdict is None:
            verdict = _normalise(value) in self._wanted
            if len(self._type_memo) < self._MEMO_SIZE and len(value) <= self._MEMO_LONGEST:
                self._type_memo[value] = verdict
        return verdict


@dataclass(frozen=True, slots=True)
class LinkScreen:
    """What to do with the confirmation links of one batch (`screen_links`)."""

    # The one link to record (and, in auto mode, request), or None.
    link: str | None
    # The lengths of the links refused for their length.
    too_long: tuple[int, ...]
    # How many other (distinct) links of the batch were not recorded: the store keeps one
    # link per integration, so a later link of the same batch replaces them anyway.
    superseded: int


def screen_links(links: Sequence[str]) -> LinkScreen:
    """The per-batch cap on confirmation links: of a batch's links (in order), at most one is
    recorded, the last of at most `MAX_LINK_CHARS` characters; every other is refused, as a
    count, never as work: a batch of 2,000 confirmation messages costs one state write and at
    most one request. The messages themselves are records on the control topic either way."""
    usable = [link for link in links if len(link) <= MAX_LINK_CHARS]
    too_long = tuple(len(link) for link in links if len(link) > MAX_LINK_CHARS)
    if not usable:
        return LinkScreen(None, too_long, 0)
    chosen = usable[-1]
    return LinkScreen(chosen, too_long, len(set(usable) - {chosen}))


def _decoded(match: re.Match[bytes]) -> bytes:
    found = match.group()
    if found == b"\\/":
        return b"/"
    character = chr(int(found[2:], 16))
    special = _LOWERS_TO_ASCII.get(character)
    return special[0] if special is not None else character.encode()


def _in_a_key(document: bytes, needle: bytes, start: int = 0, end: int | None = None) -> bool:
    """Whether `needle` occurs inside an object key of JSON `document` (of `document[start:end]`,
    read in place).

    Outside string literals JSON has no letters but true/false/null, so every occurrence is
    inside a string; the string is a key when its closing (unescaped) quote is followed,
    after optional whitespace, by a colon. An empty needle is in every key.
    """
    if not needle:
        return True
    stop = len(document) if end is None else end
    at = document.find(needle, start, stop)
    while at != -1:
        after = at + len(needle)
        while True:
            quote = document.find(b'"', after, stop)
            if quote == -1:
                return True  # not JSON after all: be safe, look closer
            backslashes = 0
            while document[quote - 1 - backslashes] == 0x5C:  # stops at the needle: it holds no backslash
                backslashes += 1
            if backslashes % 2 == 0:
                break
            after = quote + 1
        colon = _BLANKS.match(document, quote + 1, stop).end()  # type: ignore[union-attr]  # always matches
        if document[colon : colon + 1] == b":" and colon < stop:
            return True
        at = document.find(needle, quote + 1, stop)
    return False


_TOP_LEVEL = msgspec.json.Decoder(dict[str, msgspec.Raw])


def _top_level_fields(raw: bytes) -> int:
    try:
        return len(_TOP_LEVEL.decode(raw))
    except msgspec.DecodeError:
        return 0


def may_be_control(event: object, config: ConfirmationConfig) -> bool:
    """`ControlPrefilter` for an already parsed event (tests, one-off use)."""
    import orjson

    if not isinstance(event, dict):
        return False
    prefilter = ControlPrefilter(config)
    return prefilter.may_be_control(
        orjson.dumps(event),
        [event.get(name) for name in config.type_fields],
        [event.get(name) for name in config.test_flags],
    )


def classify(event: object, config: ConfirmationConfig) -> Kind:
    """`confirmation`, `test` or `event`. Anything not clearly one of the first two is an event."""
    if not isinstance(event, dict):
        return "event"
    if confirmation_link(event, config) is not None:
        return "confirmation"
    if _is_test(event, config):
        return "test"
    return "event"


def confirmation_link(event: object, config: ConfirmationConfig) -> str | None:
    """The https link to request to confirm the integration, or None if `event` is not a confirmation."""
    if not isinstance(event, dict):
        return None
    hinted = _hinted_link(event, config.field_hint.lower())
    if hinted is not None:
        return hinted
    if _type_matches(event, config.type_fields, config.confirmation_types):
        return _any_link(event)
    if _text_only_candidate(event, config):
        return _link_in_text(event, config.field_hint.lower())
    return None


def is_https_url(value: object) -> bool:
    """True for a string that is an absolute https URL with a host (surrounding blanks aside)."""
    return _https(value) is not None


def _https(value: object) -> str | None:
    """`value` stripped if it is an https URL with a host, else None."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if text[:8].lower() != "https://" or any(c.isspace() for c in text):
        return None
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018  (raises ValueError for a port that is not a number)
    except ValueError:
        # A malformed IPv6 literal or port.
        return None
    return text if parts.hostname else None


def _hinted_link(event: Mapping[str, object], hint: str) -> str | None:
    if not hint:
        return None
    for key, value in event.items():
        link = _https(value)
        if link is not None and hint in key.lower():
            return link
    for key, value in event.items():
        if not isinstance(value, dict):
            continue
        parent_hinted = hint in key.lower()
        for inner_key, inner_value in value.items():
            link = _https(inner_value)
            if link is None:
                continue
            inner = inner_key.lower()
            # {"data": {"confirmUrl": ...}} or {"confirmation": {"url": ...}}.
            if hint in inner or (parent_hinted and inner in _LINK_FIELDS):
                return link
    return None


def _any_link(event: Mapping[str, object]) -> str | None:
    """A confirmation-typed message's link: a link-named field first, then any https value,
    then one embedded in a text field; top level before one level down."""
    levels = [event, *(v for v in event.values() if isinstance(v, dict))]
    for level in levels:
        for key, value in level.items():
            link = _https(value)
            if link is not None and key.lower() in _LINK_FIELDS:
                return link
    for level in levels:
        for value in level.values():
            link = _https(value)
            if link is not None:
                return link
    for level in levels:
        for text in _texts(level):
            found = _first_url(text)
            if found is not None:
                return found
    return None


def _text_only_candidate(event: Mapping[str, object], config: ConfirmationConfig) -> bool:
    """Whether `event` may be recognised by its text alone: it is short, and it does not
    declare itself to be something else through a type field (`"type": "waf_block"`)."""
    if len(event) > _MAX_TEXT_ONLY_FIELDS:
        return False
    return not any(isinstance(event.get(name), str) for name in config.type_fields)


def _link_in_text(event: Mapping[str, object], hint: str) -> str | None:
    """A short message whose words (not only its link) ask for confirmation, and that holds a link."""
    if not hint:
        return None
    for text in _texts(event):
        found = _first_url(text)
        if found is not None and hint in _URL_IN_TEXT.sub(" ", text).lower():
            return found
    return None


def _is_test(event: Mapping[str, object], config: ConfirmationConfig) -> bool:
    if _type_matches(event, config.type_fields, config.test_types):
        return True
    # Only a real JSON boolean: `"test": "false"` or `"test": 1` are not a statement.
    if any(event.get(name) is True for name in config.test_flags):
        return True
    if _text_only_candidate(event, config):
        for text in _texts(event):
            normalised = text.strip().lower().replace("\u2019", "'")
            if normalised.startswith(_TEST_PHRASES):
                return True
    return False


@functools.lru_cache(maxsize=64)
def _wanted(values: tuple[str, ...]) -> frozenset[str]:
    return frozenset(_normalise(v) for v in values)


def _type_matches(event: Mapping[str, object], fields: Iterable[str], values: tuple[str, ...]) -> bool:
    wanted = _wanted(values)
    for name in fields:
        value = event.get(name)
        if isinstance(value, str) and _normalise(value) in wanted:
            return True
    return False


def _texts(level: Mapping[str, object]) -> Iterator[str]:
    for key, value in level.items():
        if isinstance(value, str) and key.lower() in _TEXT_FIELDS:
            yield value


def _first_url(text: str) -> str | None:
    for match in _URL_IN_TEXT.finditer(text):
        link = _https(match.group(0).rstrip(_TRAILING))
        if link is not None:
            return link
    return None


def _normalise(value: str) -> str:
    if value.isascii():
        # str.translate is several times faster than the regex, and this runs per event.
        return value.translate(_ASCII_SEPARATORS).lower()
    return _SEPARATORS.sub("", value).lower()
