"""Bad input, issue 17: hostile confirmation links and terminal escapes.

Links: every string a sender can put where a link goes is either refused by `request_link`
with a `ConfirmationRefused` (the reason recorded), or would be requested; no other exception,
and no network (no allow-list entry matches a fuzzed name, the resolver is stubbed, literals
are never allowed). Through the real `siemgate run`: confirmation messages with such links
are taken (200, the right count, nothing logged as an error), and `siemgate confirmations`
prints what was recorded without a character a terminal acts on.

Escapes: `printable` of any text is printable; `siemgate quarantine list/show` of any body
the ingest kept prints nothing a terminal acts on.
"""

from __future__ import annotations

import asyncio
import io
import json
import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from siemgate.config import ConfirmationConfig, load_config
from siemgate.errors import ConfirmationRefused
from siemgate.ingest import confirmation_fetch
from siemgate.ingest.confirmation import MAX_LINK_CHARS, confirmation_link, screen_links
from siemgate.ingest.confirmation_cli import list_confirmations
from siemgate.ingest.quarantine import kept_bodies
from siemgate.ingest.quarantine_cli import list_quarantine, show_quarantined
from siemgate.terminal import printable
from tests.fuzz.support import LiveIngest, fuzz_settings
from tests.fuzz.test_bad_input import expect_batch, post

# Characters a terminal acts on (C0 but the newline the tools write, DEL, C1, bidi and
# zero-width format characters, line/paragraph separators).
ACTIVE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")

HOST_PARTS = st.sampled_from([
    "a", "vendor", "example", "com", "xn--", "xn--a-", "xn--zz", "-", "--", ".", "..", "_", "%", "%25", "@",
    ":", "[", "]", "::1", "1.2.3.4", "999", "é", "ß", "\u2603", "\u202e", "\x00", "\x1b", " ", "\t",
    "a" * 63, "b" * 64, "\ud83d", "０", "Ⅸ",
])
HOSTS = st.lists(HOST_PARTS, max_size=8).map("".join) | st.text(max_size=20)
PORTS = st.none() | st.integers(-5, 70_000).map(str) | st.sampled_from(["", "x", "443a", "9" * 30, "0x1bb"])
PATHS = st.text(max_size=30)


def _link(host: str, port: str | None, path: str) -> str:
    return f"https://{host}{'' if port is None else ':' + port}/{path}"


LINKS = st.builds(_link, HOSTS, PORTS, PATHS) | st.text(max_size=60).map(lambda t: "https://" + t) | st.sampled_from([
    "https://xn--a-/x", "https://[::1/x", "https://a..example/x", "https://vendor.example:99999/x",
    "https://" + "a." * 130 + "example/x", "https://vendor.example/" + "a" * MAX_LINK_CHARS,
])


def _no_dns(host: str, port: int) -> list[confirmation_fetch.IPAddress]:
    raise AssertionError(f"a fuzzed link reached the resolver ({host!r}): the allow-list must refuse it first")


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    async def resolve(host: str, port: int) -> list[confirmation_fetch.IPAddress]:
        return _no_dns(host, port)

    monkeypatch.setattr(confirmation_fetch, "resolve", resolve)


def test_request_link_refuses_every_hostile_link_with_a_reason(no_network: None) -> None:
    # allowed_hosts names only what no fuzzed host is: every link that parses stops at the
    # allow-list; every one that does not, earlier. Either way a ConfirmationRefused.
    config = ConfirmationConfig(mode="auto", allowed_hosts=("only.vendor.test",))

    @fuzz_settings(400)
    @given(link=LINKS)
    @example(link="https://xn--a-/x")
    @example(link="https://only.vendor.test:0/x")
    @example(link="https://only.vendor.test:99999/x")
    def run(link: str) -> None:
        try:
            asyncio.run(confirmation_fetch.request_link(link, config))
        except ConfirmationRefused as refused:
            assert refused.reason and len(refused.reason) < 1000
        else:  # pragma: no cover - nothing may be requested
            raise AssertionError(f"{link!r} was requested")

    run()


def test_classification_and_the_batch_cap_take_any_link() -> None:
    config = ConfirmationConfig()

    @fuzz_settings(300)
    @given(links=st.lists(LINKS, max_size=20))
    def run(links: list[str]) -> None:
        found = [confirmation_link({"confirmationLink": link}, config) for link in links]
        screen = screen_links([link for link in found if link is not None])
        assert screen.link is None or len(screen.link) <= MAX_LINK_CHARS
        assert screen.superseded + len(screen.too_long) + (screen.link is not None) <= len(links)

    run()


def test_printable_of_any_text_is_printable() -> None:
    @fuzz_settings(500)
    @given(text=st.text() | st.binary().map(lambda b: b.decode("utf-8", "surrogateescape")))
    @example(text="\x1b]0;title\x07\r\u202e\u2066\u200b\x9b\x85")
    def run(text: str) -> None:
        shown = printable(text)
        assert shown.isprintable() and not ACTIVE.search(shown)
        if text.isprintable():
            assert shown == text

    run()


def test_hostile_links_through_the_ingest_and_siemgate_confirmations(ingest: LiveIngest) -> None:
    config = load_config(str(ingest.root / "run.yaml"))
    with ingest.guard() as tally, ingest.client() as client:

        @fuzz_settings(60)
        @given(links=st.lists(LINKS, min_size=1, max_size=5), typed=st.booleans())
        @example(links=["https://xn--a-/x"], typed=False)
        @example(links=["https://vendor.example/" + "a" * (MAX_LINK_CHARS * 2)], typed=True)
        def run(links: list[str], typed: bool) -> None:
            messages = [{"type": "confirmation", "url": link} if typed else {"confirmationLink": link}
                        for link in links]
            body = json.dumps(messages).encode()  # ASCII: a lone surrogate as its escape
            expect_batch(tally, post(client, body), body, exact=False)
            out = io.StringIO()
            assert list_confirmations(config, out) == 0
            assert not ACTIVE.search(out.getvalue()), out.getvalue()[:500]
            assert all(len(line) < MAX_LINK_CHARS * 7 for line in out.getvalue().splitlines())

        run()


def test_quarantine_list_and_show_print_no_escapes(ingest: LiveIngest) -> None:
    config = load_config(str(ingest.root / "run.yaml"))
    with ingest.guard() as tally, ingest.client() as client:

        @fuzz_settings(40)
        @given(body=st.binary(max_size=200).map(lambda b: "[{\x1b]0;t\x07\r\u202e".encode() + b))
        def run(body: bytes) -> None:
            response = post(client, body)
            tally.record(response)
            assert response.status_code == 400, response.text
            ident = response.json()["quarantined"]
            shown = io.StringIO()
            assert show_quarantined(config, ident, shown) == 0
            assert not ACTIVE.search(shown.getvalue()), shown.getvalue()[:500]

        run()
        listed = io.StringIO()
        assert list_quarantine(config, listed) == 0
        assert not ACTIVE.search(listed.getvalue())
        assert kept_bodies(config.quarantine.path)
