from __future__ import annotations

import pytest

from siemgate.config import ConfirmationConfig
from siemgate.ingest.confirmation import classify, confirmation_link, is_https_url, may_be_control

DEFAULTS = ConfirmationConfig()
LINK = "https://appsec.vendor.example/api/webhooks/confirm?token=Zm9v-YmFy_42"


@pytest.mark.parametrize(
    "message",
    [
        {"confirmationLink": LINK},
        {"confirmation_url": LINK, "message": "Confirm this webhook integration"},
        {"ConfirmURL": f"  {LINK}  "},
        {"data": {"confirmUrl": LINK}},
        {"integration": "appsec", "details": {"confirmation_link": LINK, "expires": "2026-12-01"}},
        {"confirmation": {"url": LINK}},
        {"type": "confirmation", "url": LINK},
        {"type": "CONFIRMATION", "link": LINK},
        {"messageType": "WebhookConfirmation", "href": LINK, "integration": "x"},
        {"event_type": "integration-confirmation", "payload": {"link": LINK}},
        {"eventType": "webhook.confirmation", "target": LINK},
        {"type": "subscription_confirmation", "message": f"Please confirm by visiting {LINK}."},
        {"message_type": "confirm", "text": f"Open ({LINK}) to activate the integration"},
        {"message": f"Please confirm the webhook integration link: {LINK}"},
    ],
)
def test_confirmation_shapes(message: dict[str, object]) -> None:
    assert classify(message, DEFAULTS) == "confirmation"
    assert confirmation_link(message, DEFAULTS) == LINK


def test_hinted_field_wins_over_other_links() -> None:
    message = {"type": "confirmation", "docs": "https://docs.vendor.example/", "confirmLink": LINK}
    assert confirmation_link(message, DEFAULTS) == LINK


def test_link_named_field_wins_for_typed_messages() -> None:
    message = {"type": "confirmation", "logo": "https://cdn.vendor.example/logo.png", "url": LINK}
    assert confirmation_link(message, DEFAULTS) == LINK


@pytest.mark.parametrize(
    "event",
    [
        # Real security events: a URL is what an attack is about, a type is its category.
        {"type": "sql_injection", "url": "https://shop.example/login?id=1%27%20or%201=1", "severity": "high"},
        {"type": "xss", "request": {"url": "https://shop.example/confirm?x=<script>"}, "severity": "medium"},
        {"confirmed": False, "type": "bot", "severity": "low"},
        {"confirmed": True, "attack": "credential stuffing"},
        {"event_type": "waf_block", "message": "Blocked request to https://shop.example/confirm-order"},
        {"message": "Blocked request to https://shop.example/confirm-order"},
        # Declared as something else: its text cannot make it a confirmation.
        {"event_type": "waf_block", "message": f"Please confirm by visiting {LINK}"},
        {
            "id": "e-1",
            "severity": "high",
            "rule": "lfi",
            "source_ip": "203.0.113.9",
            "message": "Please confirm by visiting https://phish.example/confirm (payload)",
        },
        # A confirmation-like field without an https link is not actionable.
        {"confirmationLink": "http://appsec.vendor.example/confirm?token=1"},
        {"type": "confirmation", "url": "http://appsec.vendor.example/confirm"},
        {"type": "confirmation", "message": "Confirmed."},
        {"confirmation_code": "123456"},
        {"confirm": "https://"},
        {"nested": {"deeper": {"confirmUrl": LINK}}},
        {"test": "true"},
        {"isTest": 1},
        {"test": False},
        {},
    ],
)
def test_security_events_are_not_misclassified(event: dict[str, object]) -> None:
    assert classify(event, DEFAULTS) == "event"
    assert confirmation_link(event, DEFAULTS) is None


@pytest.mark.parametrize("event", [[{"confirmationLink": LINK}], "confirm " + LINK, 42, None, True])
def test_non_objects_are_events(event: object) -> None:
    assert classify(event, DEFAULTS) == "event"
    assert confirmation_link(event, DEFAULTS) is None


@pytest.mark.parametrize(
    "message",
    [
        {"type": "test"},
        {"type": "Test"},
        {"eventType": "TestIntegration", "message": "hello"},
        {"message_type": "test-integration"},
        {"event_type": "webhook_test", "severity": "low"},
        {"test": True},
        {"isTest": True, "id": "t-1"},
        {"is_test": True},
        {
            "message": "You've completed integrating Application Security with your webhook! "
            "When a new alert is generated, it will be posted to your endpoint."
        },
        {"text": "You\u2019ve completed integrating Application Security with your webhook!"},
    ],
)
def test_test_messages(message: dict[str, object]) -> None:
    assert classify(message, DEFAULTS) == "test"


def test_documented_test_text_in_a_typed_event_is_still_an_event() -> None:
    event = {"type": "xss", "message": "You've completed integrating Application Security with your webhook!"}
    assert classify(event, DEFAULTS) == "event"


def test_documented_test_text_inside_a_full_event_is_still_an_event() -> None:
    event = {
        "id": "e-2",
        "severity": "high",
        "rule": "xss",
        "source_ip": "203.0.113.9",
        "message": "You've completed integrating Application Security with your webhook!",
    }
    assert classify(event, DEFAULTS) == "event"


def test_a_test_message_with_a_confirmation_link_is_a_confirmation() -> None:
    # The link is what must not be lost: the integration stays pending until it is requested.
    assert classify({"type": "test", "confirmUrl": LINK}, DEFAULTS) == "confirmation"


def test_detection_is_configurable() -> None:
    config = ConfirmationConfig(
        field_hint="activation",
        type_fields=("kind",),
        confirmation_types=("Activate",),
        test_types=("ping",),
    )
    assert confirmation_link({"activationHref": LINK}, config) == LINK
    assert confirmation_link({"kind": "activate", "url": LINK}, config) == LINK
    assert classify({"kind": "ping"}, config) == "test"
    # The defaults no longer apply.
    assert classify({"confirmationLink": LINK}, config) == "event"
    assert classify({"type": "test"}, config) == "event"


def test_empty_hint_disables_name_based_detection() -> None:
    config = ConfirmationConfig(field_hint="")
    assert classify({"confirmationLink": LINK}, config) == "event"
    assert classify({"type": "confirmation", "url": LINK}, config) == "confirmation"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (LINK, True),
        ("HTTPS://Vendor.Example/confirm", True),
        ("https://[2001:db8::1]:8443/c", True),
        ("http://vendor.example/", False),
        ("https://", False),
        ("https:///path", False),
        ("https://vendor.example:notaport/", False),
        ("https://[::1/", False),
        ("https://vendor.example/a b", False),
        ("ftp://vendor.example/", False),
        (None, False),
        (123, False),
    ],
)
def test_is_https_url(value: object, expected: bool) -> None:
    assert is_https_url(value) is expected


def _cases(test: object) -> list[object]:
    (mark,) = test.pytestmark  # type: ignore[attr-defined]
    return list(mark.args[1])


PADDING = {f"field{i}": i for i in range(6)}


@pytest.mark.parametrize(
    "message",
    [
        *_cases(test_confirmation_shapes),
        *_cases(test_test_messages),
        *_cases(test_security_events_are_not_misclassified),
        *({**m, **PADDING} for m in _cases(test_confirmation_shapes)),  # type: ignore[dict-item]
        *({**m, **PADDING} for m in _cases(test_test_messages)),  # type: ignore[dict-item]
        {"Type": "x", **PADDING, "nested": {"IS-TEST": True}},
        {"severity": "high", **PADDING, "eventType": "Test.Integration"},
        {"message": "You\u2019ve completed integrating Application Security with your webhook!"},
    ],
)
def test_prefilter_never_hides_a_control_message(message: object) -> None:
    """may_be_control is the ingest's shortcut: it must be True wherever classify is not "event"."""
    if classify(message, DEFAULTS) != "event":
        assert may_be_control(message, DEFAULTS)


def test_prefilter_skips_ordinary_security_events() -> None:
    from siemgate.simulate import make_events

    events = make_events(200, {"high": 1, "medium": 1, "low": 1}, seed=7)
    skipped = sum(not may_be_control(e, DEFAULTS) for e in events)
    # Events whose URL holds "confirm" (/checkout/confirm) still take the full look.
    assert skipped >= 0.8 * len(events)
