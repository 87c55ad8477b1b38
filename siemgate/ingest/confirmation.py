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
(`{"type": "test"}`, `{"eventType": "TestIntegration"}`), a boolean `test` / `isTest` /
`is_test` that is `true`, or a short message starting with the vendor's documented test text
("You've completed integrating Application Security with your webhook! ...").

Type values are compared ignoring case and the separators `_`, `-`, `.` and spaces, so
`WebhookConfirmation`, `webhook-confirmation` and `webhook_confirmation` are the same type.

Only https links count: an http link could not be requested safely, and a confirmation
message without a usable link is better forwarded as an ordinary event than swallowed.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Final
from urllib.parse import urlsplit

from siemgate.config import ConfirmationConfig
from siemgate.record import Kind

# Field names whose value is "the link" of a message, tried before any other https value.
_LINK_FIELDS: Final = frozenset({"url", "link", "href", "uri"})
# Free-text fields in which a link may be embedded ("Please confirm by visiting https://...").
_TEXT_FIELDS: Final = frozenset({"message", "text", "body", "description", "content", "msg", "title", "detail"})
# Boolean fields that flag a test message.
_TEST_FLAGS: Final = frozenset({"test", "istest"})
# A message recognised by its text alone must be this small: a real security event carries
# many fields (request, source, rule, severity ...), and attacker-controlled text inside one
# must not be able to turn it into a confirmation or a test.
_MAX_TEXT_ONLY_FIELDS: Final = 4
# The test message's text as the vendor documents it.
_TEST_PHRASES: Final = ("you've completed integrating",)
_URL_IN_TEXT: Final = re.compile(r"https://[^\s<>\"'`]+", re.IGNORECASE)
# Punctuation that ends a sentence rather than the link ("... visit https://x/y.").
_TRAILING: Final = ".,;:!?)]}>'\""
_SEPARATORS: Final = re.compile(r"[\s_.\-]+")
_ASCII_SEPARATORS: Final = str.maketrans("", "", " \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f_.-")


class ControlPrefilter:
    """A cheap necessary condition for `classify(event) != "event"`, for the ingest's hot path.

    Built once per integration. False means `classify` would say "event": every rule of
    `classify` needs a small message, a type field naming a control type, the hint somewhere
    in the serialized event (a hinted key is in it), or a JSON `true` under a test-flag key.
    Most security events have none of these and skip the deep, per-field look.
    """

    __slots__ = ("_hint", "_type_fields", "_type_memo", "_wanted")

    # Type values repeat from event to event ("sql_injection", "waf_block"): remember verdicts.
    _MEMO_SIZE: Final = 4096

    def __init__(self, config: ConfirmationConfig) -> None:
        hint = config.field_hint.lower().encode()
        # A non-ASCII hint cannot be matched on bytes lowered as ASCII: always look.
        self._hint = hint if hint.isascii() else b""
        self._type_fields = config.type_fields
        self._wanted = _wanted(config.confirmation_types) | _wanted(config.test_types)
        self._type_memo: dict[str, bool] = {}

    def may_be_control(self, event: object, event_bytes: bytes) -> bool:
        """`event_bytes` is `event` serialized as JSON."""
        if not isinstance(event, dict):
            return False
        if len(event) <= _MAX_TEXT_ONLY_FIELDS:
            return True
        lowered = event_bytes.lower()
        if self._hint in lowered and _in_a_key(lowered, self._hint):
            return True
        for name in self._type_fields:
            value = event.get(name)
            if isinstance(value, str) and self._control_type(value):
                return True
        # `True in values()` also matches 1 (1 == True): the keys are then checked exactly.
        return True in event.values() and any(
            value is True and _normalise(key) in _TEST_FLAGS for key, value in event.items()
        )

    def _control_type(self, value: str) -> bool:
        verdict = self._type_memo.get(value)
        if verdict is None:
            verdict = _normalise(value) in self._wanted
            if len(self._type_memo) < self._MEMO_SIZE:
                self._type_memo[value] = verdict
        return verdict


def _in_a_key(document: bytes, needle: bytes) -> bool:
    """Whether `needle` occurs inside an object key of compact JSON `document`.

    Outside string literals JSON has no letters but true/false/null, so every occurrence is
    inside a string; the string is a key when its closing (unescaped) quote is followed by
    a colon. An empty needle is in every key.
    """
    if not needle:
        return True
    start = document.find(needle)
    while start != -1:
        end = start + len(needle)
        while True:
            quote = document.find(b'"', end)
            if quote == -1:
                return True  # not compact JSON after all: be safe, look closer
            backslashes = 0
            while document[quote - 1 - backslashes] == 0x5C:
                backslashes += 1
            if backslashes % 2 == 0:
                break
            end = quote + 1
        if document[quote + 1 : quote + 2] == b":":
            return True
        start = document.find(needle, quote + 1)
    return False


def may_be_control(event: object, event_bytes: bytes, config: ConfirmationConfig) -> bool:
    """`ControlPrefilter(config).may_be_control(...)`, for one-off use."""
    return ControlPrefilter(config).may_be_control(event, event_bytes)


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
    for key, value in event.items():
        # Only a real JSON boolean: `"test": "false"` or `"test": 1` are not a statement.
        if value is True and _normalise(key) in _TEST_FLAGS:
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
