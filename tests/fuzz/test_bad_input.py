"""Bad input against a real `siemgate run` process (issue 7, item 3).

Every test sends its requests inside `ingest.guard()`, which then checks that the process is
still up and /healthz answers, that its memory stayed bounded (support.py says which bound and
why), that every 200 really took the events it said (the ingest's metrics, and every one of
them reached the file sink), and that nothing was logged as an error.

Every answer must be one of the SPEC codes (never a 5xx: the bus is available throughout, so
not even 503) and match docs/openapi.yaml; where the outcome is known from the input (the
number of events in a batch, the Content-Encoding, the auth header), it must be exactly that.
"""

from __future__ import annotations

import gzip
import json
import socket
import time
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from hypothesis import example, given, note
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from tests.fuzz.support import (
    ALLOWED_CODES,
    AUTH,
    BATCH_KEYS,
    BODY_TIMEOUT,
    KEY,
    MAX_BODY,
    MAX_EVENTS,
    MIB,
    NEXT_KEY,
    WEBHOOK,
    LiveIngest,
    Tally,
    answered_within,
    check_documented,
    check_webhook_answer,
    expected_events,
    fuzz_settings,
    gzip_bomb,
    read_answer,
    request_head,
    send_all,
    strict_json,
)

PATH = "/webhook/fuzz"

# ------------------------------------------------------------------------------------------
# Strategies

FIELD_NAMES = st.sampled_from([
    "id", "event_id", "eventId", "uuid", "severity", "Severity", "level", "risk", "type",
    "message_type", "eventType", "test", "isTest", "is_test", "confirm", "confirmation_url",
    "url", "message", *BATCH_KEYS,
])
KEYS = FIELD_NAMES | st.text(max_size=12)
TEXTS = st.sampled_from([
    "high", "Critical", "medium", "LOW", "info", "informational", "bogus", "test",
    "test_integration", "confirmation", "Test Integration", "https://confirm.example.com/c/0123",
    "", "\x00", "\u2028", "\U0001f600", "é\u0301",
]) | st.text(max_size=40)
LEAVES = (st.none() | st.booleans() | st.integers(-(2**80), 2**80)
          | st.floats(allow_nan=False, allow_infinity=False) | TEXTS)
JSON = st.recursive(
    LEAVES, lambda children: st.lists(children, max_size=5) | st.dictionaries(KEYS, children, max_size=6),
    max_leaves=30,
)
EVENTS = st.dictionaries(KEYS, JSON, max_size=6) | JSON


def _wrap(key: str, events: list[Any], extra: dict[str, Any]) -> dict[str, Any]:
    return {**extra, key: events}


BATCHES = st.one_of(
    JSON,  # anything: a scalar (400), a single object (1 event), an array
    st.lists(EVENTS, max_size=25),
    st.builds(_wrap, st.sampled_from(BATCH_KEYS), st.lists(EVENTS, max_size=25),
              st.dictionaries(KEYS, JSON, max_size=3)),
)


def _encode(value: object, style: int, pad: str) -> bytes:
    """`value` as JSON text the way various encoders write it."""
    if style == 0:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    elif style == 1:
        text = json.dumps(value)
    else:
        text = json.dumps(value, indent=2, ensure_ascii=False)
    return (pad + text + pad).encode("utf-8")


STYLES = st.integers(0, 2)
PADS = st.sampled_from(["", " ", "\n", "\r\n\t "])

# ------------------------------------------------------------------------------------------
# Helpers


def post(client: httpx.Client, body: bytes, headers: dict[str, str] | None = None,
         path: str = PATH) -> httpx.Response:
    if currently_in_test_context():  # the falsifying example then shows what was sent
        note(f"POST {path} {headers or {}} body ({len(body)} bytes): {body[:300]!r}")
    return client.post(path, content=body, headers={**AUTH, **(headers or {})})


def expect_batch(tally: Tally, response: httpx.Response, body: bytes, *, exact: bool = True) -> None:
    """The answer `body` (plain, as the ingest reads it) must get.

    exact: the body is JSON as Python reads it, so the answer is known exactly; otherwise a 200
    must still have taken exactly what a strict JSON reader finds."""
    tally.record(response)
    valid, value = strict_json(body)
    count = expected_events(value) if valid else None
    if len(body) > MAX_BODY:
        assert response.status_code == 413, response.text
    elif count is None:
        assert response.status_code == 400, f"not a JSON batch, answered {response.status_code} {response.text}"
        assert response.json()["quarantined"], "a refused body must be quarantined"
    elif count > MAX_EVENTS:
        assert response.status_code == 413, response.text
    elif exact:
        assert response.status_code == 200, f"{count} events, answered {response.status_code} {response.text}"
    if response.status_code == 200:
        assert response.json() == {"accepted": count}, f"{count} events sent, answered {response.text}"


# ------------------------------------------------------------------------------------------
# JSON shapes


def test_random_json_shapes(ingest: LiveIngest) -> None:
    """Arrays, wrapped arrays, single objects, scalars, with the fields the ingest reads
    (ids, severities, type and test fields, confirmation links) holding any JSON."""
    with ingest.guard() as tally, ingest.client() as client:

        @fuzz_settings(150)
        @given(value=BATCHES, style=STYLES, pad=PADS)
        def run(value: object, style: int, pad: str) -> None:
            body = _encode(value, style, pad)
            expect_batch(tally, post(client, body), body)

        run()


def _nested(depth: int, container: str) -> bytes:
    if container == "array":
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


PLACEMENTS: dict[str, Callable[[bytes], tuple[bytes, int]]] = {
    # the body, and the number of events in it
    "the batch itself": lambda nested: (nested, 0 if nested == b"[]" else 1),
    "in an event with an id": lambda nested: (b'[{"id":"deep","severity":"high","x":' + nested + b"}]", 1),
    "in an event without an id": lambda nested: (b'[{"severity":"low","x":' + nested + b"}]", 1),
    "an event of the array": lambda nested: (b'{"events":[' + nested + b',{"id":"next"}]}', 2),
}


@pytest.mark.parametrize("container", ["array", "object"])
def test_deep_nesting(ingest: LiveIngest, container: str) -> None:
    """Up to 100,000 nested arrays or objects, at the top, inside an event, as an event.

    Answered 200 (taken, and delivered by the sink) or 400 (refused, quarantined): JSON allows
    a parser to limit nesting (RFC 8259, section 9). Never a 5xx, never a dead process."""
    with ingest.guard() as tally, ingest.client() as client:

        @fuzz_settings(20)
        @given(depth=st.integers(1, 100_000), placement=st.sampled_from(sorted(PLACEMENTS)))
        @example(depth=100_000, placement="the batch itself")
        def run(depth: int, placement: str) -> None:
            body, count = PLACEMENTS[placement](_nested(depth, container))
            response = post(client, body)
            tally.record(response)
            assert response.status_code in (200, 400), f"depth {depth} {placement}: {response.status_code}"
            if response.status_code == 200:
                assert response.json() == {"accepted": count}

        run()


# ------------------------------------------------------------------------------------------
# Numbers and strings

BIG_INTEGERS = st.builds(
    lambda sign, first, rest: sign + first + rest,
    st.sampled_from(["", "-"]), st.sampled_from("123456789"), st.text("0123456789", min_size=18, max_size=6000),
)
BIG_FLOATS = st.sampled_from([
    "1e400", "-1e400", "1e-400", "1.7976931348623157e308", "1.8e308", "4.9e-324", "2e-324",
    "123456789012345678901234567890.123456789e300", "0.000000000000000000000000000000000001",
    "-0.0", "1E+400", "9" * 400 + ".5",
])
NUMBER_PLACES = st.sampled_from([
    '[{n}]', '[{{"id":{n}}}]', '[{{"severity":{n}}}]', '[{{"type":{n}}}]', '[{{"test":{n}}}]',
    '[{{"id":"num","x":{{"y":[{n}]}}}}]', '[{{"x":{n}}}]', '{{"events":[{{"n":{n}}},{n}]}}', '{{"n":{n}}}',
])


def test_huge_numbers(ingest: LiveIngest) -> None:
    """Integers far beyond 64 bits (up to 6,000 digits) and floats beyond a double (1e400),
    as an event, as its id, its severity, its type, deep inside it. JSON puts no limit on
    numbers: the answer is 200 with every event taken and delivered, or 400."""
    with ingest.guard() as tally, ingest.client() as client:

        @fuzz_settings(60)
        @given(number=BIG_INTEGERS | BIG_FLOATS, place=NUMBER_PLACES)
        @example(number="1e400", place="[{n}]")
        def run(number: str, place: str) -> None:
            body = place.format(n=number).encode()
            response = post(client, body)
            tally.record(response)
            assert response.status_code in (200, 400), f"{body[:80]!r}: {response.status_code} {response.text}"
            if response.status_code == 200:
                value = json.loads(body, parse_int=lambda _: 0, parse_float=lambda _: 0.0)
                assert response.json() == {"accepted": expected_events(value)}

        run()


STRING_PIECES = st.sampled_from([
    "a", "é", "\U0001f600", "\\n", "\\u0000", "\\\\", '\\"', "\\ud83d\\ude00", "\\u00e9", " ", "\\/",
])


def test_huge_strings(ingest: LiveIngest) -> None:
    """Strings up to the body limit, as values, keys, ids, severities and types, with escapes
    and multi-byte characters; and one byte over the limit (413)."""
    with ingest.guard() as tally, ingest.client() as client:

        @fuzz_settings(30)
        @given(piece=STRING_PIECES, size=st.integers(1, MAX_BODY + 16), where=st.sampled_from(
            ['[{{"id":"s","v":"{s}"}}]', '[{{"{s}":1}}]', '[{{"id":"{s}"}}]', '[{{"severity":"{s}"}}]',
             '[{{"type":"{s}"}}]', '["{s}"]', '{{"events":["{s}"]}}', '{{"message":"{s}"}}']))
        @example(piece="a", size=MAX_BODY, where='[{{"id":"s","v":"{s}"}}]')
        @example(piece="a", size=MAX_BODY + 1, where='[{{"id":"s","v":"{s}"}}]')
        def run(piece: str, size: int, where: str) -> None:
            # As long as `size` allows: exactly `size` bytes with a one-byte piece.
            text = piece * max(1, (size - len(where) + 3) // len(piece.encode()))
            body = where.format(s=text).encode()
            expect_batch(tally, post(client, body), body)

        run()


def test_large_bodies_at_the_limit_are_taken(ingest: LiveIngest) -> None:
    """The limits are where they are said to be: a body of exactly max_body_bytes is taken,
    one byte more is 413 (also when declared by Content-Length before any byte is read);
    max_events_per_batch events are taken, one more is 413."""
    exact = b'["' + b"a" * (MAX_BODY - 4) + b'"]'
    assert len(exact) == MAX_BODY
    with ingest.guard() as tally, ingest.client() as client:
        for body in (exact, exact[:-2] + b'a"]', b"[" + b"1," * (MAX_EVENTS - 1) + b"1]",
                     b"[" + b"1," * MAX_EVENTS + b"1]"):
            expect_batch(tally, post(client, body), body)
        # A Content-Length over the limit is refused without reading the body.
        with socket.create_connection(("127.0.0.1", ingest.port), timeout=10) as sock:
            sock.sendall(request_head(PATH, AUTH, length=MAX_BODY * 100))
            answer = read_answer(sock, time.monotonic() + 10)
        assert answer is not None and answer.status == 413
        tally.count(413)


# ------------------------------------------------------------------------------------------
# Bytes that are not UTF-8, or not JSON at all

BAD_UTF8 = st.sampled_from([
    b"\xff", b"\xfe", b"\xc3", b"\x80", b"\xed\xa0\x80", b"\xc0\xaf", b"\xe0\x80\xaf",
    b"\xf4\x90\x80\x80", b"\xf8\x88\x80\x80\x80", b"\xef\xbb\xbf", b"\x00",
])


def test_invalid_utf8(ingest: LiveIngest) -> None:
    """Valid batches with invalid UTF-8 (lone continuation bytes, overlong forms, encoded
    surrogates, code points past U+10FFFF) put anywhere: 400 and quarantined, unless what
    was put in still is valid (a BOM inside a string)."""
    with ingest.guard() as tally, ingest.client() as client:

        @fuzz_settings(60)
        @given(value=BATCHES, bad=BAD_UTF8, where=st.floats(0, 1), inside_string=st.booleans())
        @example(value=[{"id": "u", "m": "x"}], bad=b"\xff", where=0.9, inside_string=True)
        def run(value: object, bad: bytes, where: float, inside_string: bool) -> None:
            body = _encode(value, 0, "")
            at = body.find(b'"', int(len(body) * where)) + 1 if inside_string else int(len(body) * where)
            body = body[:at] + bad + body[at:]
            expect_batch(tally, post(client, body), body)

        run()


def test_random_bytes(ingest: LiveIngest) -> None:
    with ingest.guard() as tally, ingest.client() as client:

        @fuzz_settings(60)
        @given(body=st.binary(max_size=4096))
        @example(body=b"")
        @example(body=b"[]")
        @example(body=b"\xef\xbb\xbf[]")
        @example(body=b"[NaN]")
        @example(body=b"[Infinity]")
        @example(body=b'[{"a":"\\ud800"}]')
        @example(body=b"[1,]")
        @example(body=b"[] []")
        def run(body: bytes) -> None:
            expect_batch(tally, post(client, body), body, exact=False)

        run()


# ------------------------------------------------------------------------------------------
# Headers: Content-Type, Content-Encoding, auth, size

CONTENT_TYPES = st.sampled_from([
    "application/json", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
    "application/xml", "application/octet-stream", "application/json; charset=latin-1", "", "*/*", ";;;",
]) | st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=30)


def test_wrong_content_types(ingest: LiveIngest) -> None:
    """Content-Type is not checked (docs/openapi.yaml): any of them, or none, gives the same
    answer as the body alone."""
    with ingest.guard() as tally, ingest.client() as client:

        @fuzz_settings(40)
        @given(value=BATCHES, content_type=st.none() | CONTENT_TYPES)
        def run(value: object, content_type: str | None) -> None:
            body = _encode(value, 0, "")
            headers = {} if content_type is None else {"Content-Type": content_type}
            expect_batch(tally, post(client, body, headers), body)

        run()


ENCODINGS = st.sampled_from([
    "gzip", "GZIP", "x-gzip", "identity", "Identity", "", "deflate", "br", "compress", "zstd",
    "gzip, identity", "gzip, gzip", "identity, gzip", "*", "gzip;q=1",
]) | st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=20)


def test_content_encodings(ingest: LiveIngest) -> None:
    """identity/none and gzip/x-gzip (any case) are read; a list of codings is the codings
    applied, identity changing nothing (`identity, gzip` is gzip); anything else is 415; a body
    not encoded as declared is 400."""
    with ingest.guard() as tally, ingest.client() as client:

        @fuzz_settings(60)
        @given(value=BATCHES, coding=ENCODINGS, compress=st.booleans())
        def run(value: object, coding: str, compress: bool) -> None:
            plain = _encode(value, 0, "")
            body = gzip.compress(plain) if compress else plain
            response = post(client, body, {"Content-Encoding": coding})
            codings = [c for c in (item.strip().lower() for item in coding.split(",")) if c not in ("", "identity")]
            declared = "".join(codings) if len(codings) <= 1 else coding
            if declared not in ("", "gzip", "x-gzip"):
                tally.record(response)
                assert response.status_code == 415, f"Content-Encoding {coding!r}: {response.status_code}"
                return
            if compress == (declared in ("gzip", "x-gzip")):
                expect_batch(tally, response, plain)
            else:
                tally.record(response)
                assert response.status_code == 400, f"{coding!r} declared, gzip={compress}: {response.status_code}"

        run()


HEADER_VALUES = (
    st.sampled_from([KEY, NEXT_KEY, KEY.upper(), KEY + " x", "x" + KEY, KEY[:-1], "", "Bearer " + KEY])
    | st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=40)
    | st.binary(max_size=40).map(lambda b: bytes(c for c in b if c >= 0x80 or 0x21 <= c <= 0x7E))
)
HEADER_NAMES = st.sampled_from(["X-Api-Key", "x-api-key", "X-API-KEY", "X-Api-Key2", "Authorization", "Api-Key"])


def test_wrong_or_missing_auth(ingest: LiveIngest) -> None:
    """Missing, wrong, near-miss (prefix, case, a truncated key), non-ASCII and repeated auth
    headers: 401 with an empty body, whatever the body and Content-Encoding; the right key
    (either of the two rotated ones) in the first auth header: the body decides. The source
    check comes first: the fenced integration answers 403 to everything from loopback."""
    with ingest.guard() as tally, ingest.client() as client:

        @fuzz_settings(80)
        @given(pairs=st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=3), value=BATCHES,
               coding=st.sampled_from([None, "gzip", "br"]), fenced=st.booleans())
        def run(pairs: list[tuple[str, str | bytes]], value: object, coding: str | None, fenced: bool) -> None:
            body = _encode(value, 0, "")
            headers = [(name.encode(), value if isinstance(value, bytes) else value.encode("latin-1"))
                       for name, value in pairs]
            if coding:
                headers.append((b"Content-Encoding", coding.encode()))
            path = "/webhook/fenced" if fenced else PATH
            response = client.post(path, content=body, headers=headers)
            check_webhook_answer(response)
            if fenced:
                assert response.status_code == 403 and response.content == b""
                return
            tally.count(response.status_code, response.json()["accepted"] if response.status_code == 200 else 0)
            presented = next((v for n, v in pairs if n.lower() == "x-api-key"), None)
            if isinstance(presented, bytes):
                presented = presented.decode("latin-1")
            if presented is None or presented.strip(" \t") not in (KEY, NEXT_KEY):
                assert response.status_code == 401, f"auth {pairs!r}: {response.status_code}"
                assert response.content == b""
            elif coding == "br":
                assert response.status_code == 415
            elif coding is None:
                assert response.status_code == (200 if expected_events(value) is not None else 400)
            else:
                assert response.status_code == 400  # declared gzip, sent plain

        run()


def test_oversized_headers(ingest: LiveIngest) -> None:
    """Many and long headers (up to 1.8 MB in all): answered with a SPEC code (a 200 still took
    the batch), or, past 16 KiB of headers (h11's default limit; nginx's is 8 KiB), refused
    by closing the connection."""
    with ingest.guard() as tally, httpx.Client(base_url=ingest.url, timeout=60) as client:

        @fuzz_settings(25)
        @given(count=st.integers(0, 400), size=st.integers(0, 2048), big=st.sampled_from([0, 64 * 1024, MIB]),
               authorized=st.booleans())
        def run(count: int, size: int, big: int, authorized: bool) -> None:
            headers = [(f"X-Filler-{i}", "v" * size) for i in range(count)]
            if big:
                headers.append(("X-Big", "b" * big))
            if authorized:
                headers.append(("X-Api-Key", KEY))
            total = sum(len(name) + len(value) + 4 for name, value in headers)
            note(f"{count} headers of {size} bytes, one of {big}: {total} bytes; authorized: {authorized}")
            body = b'[{"id":"h1"},{"id":"h2"}]'
            try:
                response = client.post(PATH, content=body, headers=headers)
            except httpx.TransportError as exc:
                if total > 16 * 1024 and ingest.alive():
                    return
                raise ingest.died(exc) from exc
            tally.record(response, 2)
            assert response.status_code in ((200, 400, 413) if authorized else (401, 400, 413))

        run()


@pytest.mark.parametrize("shape", ["one 64 MiB header", "a million headers"])
def test_huge_headers_do_not_take_memory(ingest: LiveIngest, shape: str) -> None:
    """An unauthenticated client sends headers far beyond any sane size. Whatever the answer
    (a SPEC code, or the connection closed), the process must not hold them: the guard's
    peak RSS bound is 64 MiB over the start."""
    if shape == "one 64 MiB header":
        block = b"a" * MIB
        parts = [b"POST /webhook/fuzz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ", *([block] * 64),
                 b"\r\nContent-Length: 2\r\n\r\n[]"]
    else:
        lines = b"".join(b"X-%06d: v\r\n" % i for i in range(1000))
        parts = [b"POST /webhook/fuzz HTTP/1.1\r\nHost: 127.0.0.1\r\n", *([lines] * 1000),
                 b"Content-Length: 2\r\n\r\n[]"]
    with ingest.guard() as tally, socket.create_connection(("127.0.0.1", ingest.port), timeout=60) as sock:
        send_all(sock, parts)
        answer = read_answer(sock, time.monotonic() + 60)
        if answer is not None:
            assert answer.status in ALLOWED_CODES, f"{shape}: answered {answer.status}"
            check_documented(WEBHOOK, "post", answer.status, answer.headers, answer.body)
            assert answer.status != 200, "unauthenticated"
            tally.count(answer.status)


def test_malformed_http(ingest: LiveIngest) -> None:
    """Framing the HTTP server must refuse (bad or conflicting Content-Length, both
    Content-Length and chunked, bad chunks): a SPEC code (400 from the server), never a hang."""
    body = b'[{"id":"m1"}]'
    head = b"POST /webhook/fuzz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Api-Key: " + KEY.encode() + b"\r\n"
    requests = [
        head + b"Content-Length: abc\r\n\r\n" + body,
        head + b"Content-Length: -1\r\n\r\n" + body,
        head + b"Content-Length: 99999999999999999999999999\r\n\r\n" + body,
        head + b"Content-Length: 13\r\nContent-Length: 5\r\n\r\n" + body,
        head + b"Content-Length: 13\r\nTransfer-Encoding: chunked\r\n\r\nd\r\n" + body + b"\r\n0\r\n\r\n",
        head + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n" + body + b"\r\n0\r\n\r\n",
        head + b"Transfer-Encoding: gzip, chunked\r\n\r\n" + body,
        head + b"X-Bad\x00Name: v\r\nContent-Length: 13\r\n\r\n" + body,
        b"POST /webhook/fuzz HTTP/9.9\r\nHost: x\r\nContent-Length: 13\r\n\r\n" + body,
    ]
    with ingest.guard() as tally:
        for raw in requests:
            with socket.create_connection(("127.0.0.1", ingest.port), timeout=10) as sock:
                send_all(sock, [raw])
                answer = read_answer(sock, time.monotonic() + 10)
            if answer is None:
                continue  # the server closed the connection: also a refusal
            assert answer.status in ALLOWED_CODES, f"{raw[:120]!r}: answered {answer.status} {answer.body[:200]!r}"
            check_documented(WEBHOOK, "post", answer.status, answer.headers, answer.body)
            tally.count(answer.status, json.loads(answer.body)["accepted"] if answer.status == 200 else 0)


# ------------------------------------------------------------------------------------------
# Gzip


@pytest.fixture(scope="module")
def bombs() -> dict[tuple[int, bool], bytes]:
    """Inflated size, JSON-looking content or zeros -> gzip. The 1 GiB one is 1,043,656 bytes:
    under the 1 MiB body limit, so only the inflated size can refuse it."""
    wanted = [(size, prefix) for size in (MAX_BODY + 1, 2 * MAX_BODY, 16 * MIB, 128 * MIB) for prefix in (False, True)]
    wanted.append((1024 * MIB, False))
    return {(size, prefix): gzip_bomb(size, json_prefix=prefix) for size, prefix in wanted}


def test_gzip_bombs(ingest: LiveIngest, bombs: dict[tuple[int, bool], bytes]) -> None:
    """Small gzip bodies that inflate beyond max_body_bytes (up to 1 GiB from 1 MB), sent
    whole or in chunks: 413 without inflating more than the limit. Also a gzip inside the
    gzip, and many concatenated members."""
    nested = gzip.compress(bombs[(1024 * MIB, False)])
    member = gzip.compress(b" " * 1000)
    with ingest.guard() as tally, ingest.client() as client:

        @fuzz_settings(20)
        @given(bomb=st.sampled_from(sorted(bombs)), pieces=st.integers(1, 64))
        @example(bomb=(1024 * MIB, False), pieces=1)
        def run(bomb: tuple[int, bool], pieces: int) -> None:
            data = bombs[bomb]
            step = -(-len(data) // pieces)
            chunks = [data[i:i + step] for i in range(0, len(data), step)]
            content: bytes | Iterator[bytes] = data if pieces == 1 else iter(chunks)
            response = client.post(PATH, content=content, headers={**AUTH, "Content-Encoding": "gzip"})
            tally.record(response)
            assert response.status_code == 413, f"{bomb}: {response.status_code} {response.text}"

        run()
        response = post(client, nested, {"Content-Encoding": "gzip"})
        tally.record(response)
        assert response.status_code in (400, 413)
        many = b"[" + member * 2000 + b"]"  # plain "[" then gzip: not a gzip stream
        response = post(client, many, {"Content-Encoding": "gzip"})
        tally.record(response)
        assert response.status_code == 400
        response = post(client, member * 2000, {"Content-Encoding": "gzip"})  # 2 MB of spaces
        tally.record(response)
        assert response.status_code == 413
        wrapped = gzip.compress(b"[") + member * 500 + gzip.compress(b"]")  # 500 kB of spaces inside []
        response = post(client, wrapped, {"Content-Encoding": "gzip"})
        tally.record(response, 0)
        assert response.status_code == 200


def test_truncated_and_corrupt_gzip(ingest: LiveIngest) -> None:
    """A valid gzip'd batch cut anywhere: 400 and quarantined. One byte flipped anywhere: 400,
    unless the gzip still inflates to a batch (a flipped mtime byte): then that batch."""
    with ingest.guard() as tally, ingest.client() as client:

        @fuzz_settings(60)
        @given(value=BATCHES, where=st.floats(0, 1, exclude_max=True), flip=st.booleans(), mask=st.integers(1, 255))
        def run(value: object, where: float, flip: bool, mask: int) -> None:
            packed = gzip.compress(_encode(value, 0, ""))
            at = int(len(packed) * where)
            body = packed[:at] + bytes([packed[at] ^ mask]) + packed[at + 1:] if flip else packed[:at]
            response = post(client, body, {"Content-Encoding": "gzip"})
            try:
                decoder = zlib.decompressobj(wbits=31)
                plain = decoder.decompress(body)
                complete = decoder.eof and not decoder.unused_data
            except zlib.error:
                complete = False
            if complete:
                expect_batch(tally, response, plain)
            else:
                tally.record(response)
                assert response.status_code == 400, f"broken gzip answered {response.status_code} {response.text}"
                assert response.json()["quarantined"]

        run()


# ------------------------------------------------------------------------------------------
# A client trickling its body


TRICKLES: dict[str, tuple[dict[str, str], Callable[[int], bytes]]] = {
    "Content-Length, a byte at a time": (
        {"Content-Length": "4096"}, lambda i: b"[" if i == 0 else b" "),
    "chunked, a chunk at a time": (
        {"Transfer-Encoding": "chunked"}, lambda i: b"1\r\n[\r\n" if i == 0 else b"1\r\n \r\n"),
    "gzip, a byte at a time": (
        {"Content-Length": "4096", "Content-Encoding": "gzip"},
        lambda i: gzip.compress(b"[" + b" " * 4000 + b"]")[i:i + 1]),
    "stalled after a few bytes": ({"Content-Length": "4096"}, lambda i: b'[{"id":' if i == 0 else b""),
}


@pytest.mark.parametrize("shape", sorted(TRICKLES))
def test_trickling_body_gets_408(ingest: LiveIngest, shape: str) -> None:
    """A client sending its body slowly (or not at all) is answered 408 once
    limits.body_timeout_seconds (1 s here) have passed, not earlier and not much later;
    meanwhile the ingest answers others."""
    headers, piece = TRICKLES[shape]
    with ingest.guard() as tally, socket.create_connection(("127.0.0.1", ingest.port), timeout=30) as sock, \
            ingest.client() as other:
        sock.sendall(request_head(PATH, {**AUTH, **headers}))
        started = time.monotonic()
        sent = 0
        while not answered_within(sock, 0.05):  # the pace of the trickle: 20 pieces a second
            assert time.monotonic() - started < BODY_TIMEOUT + 10, "no answer: the ingest waits for ever"
            if sent == 3:
                assert other.get("/healthz").status_code == 200
                response = post(other, b'[{"id":"meanwhile"}]')
                tally.record(response, 1)
            sock.sendall(piece(sent))
            sent += 1
        answer = read_answer(sock, time.monotonic() + 10)
        elapsed = time.monotonic() - started
        assert answer is not None, "the connection was closed without an answer"
        assert answer.status == 408, f"{shape}: answered {answer.status} {answer.body!r}"
        check_documented(WEBHOOK, "post", answer.status, answer.headers, answer.body)
        tally.count(408)
        assert BODY_TIMEOUT * 0.9 <= elapsed <= BODY_TIMEOUT + 5, f"answered after {elapsed:.2f} s"


def test_trickling_without_auth_gets_401_at_once(ingest: LiveIngest) -> None:
    """Authentication is checked before the body is read: a trickler without the key waits for nothing."""
    with ingest.guard() as tally, socket.create_connection(("127.0.0.1", ingest.port), timeout=30) as sock:
        sock.sendall(request_head(PATH, {"X-Api-Key": "wrong", "Content-Length": "4096"}) + b"[")
        started = time.monotonic()
        answer = read_answer(sock, started + 10)
        elapsed = time.monotonic() - started
        assert answer is not None and answer.status == 401 and answer.body == b""
        tally.count(401)
        assert elapsed < BODY_TIMEOUT, f"401 took {elapsed:.2f} s"


# ------------------------------------------------------------------------------------------
# Memory: nothing a request brings stays


def _distinct(kind: str, i: int) -> tuple[bytes, dict[str, str]]:
    fill = f"{i:06d}" + "x" * (MAX_BODY - 200)
    if kind == "severity":
        return json.dumps([{"id": f"sev-{i}", "severity": fill}]).encode(), {}
    if kind == "type":
        return json.dumps([{"id": f"type-{i}", "type": fill}]).encode(), {}
    if kind == "id":
        return json.dumps([{"id": fill}]).encode(), {}
    if kind == "not json":
        return b"{" + fill.encode(), {}
    if kind == "gzip bomb":
        return gzip_bomb(8 * MIB + i, json_prefix=True), {"Content-Encoding": "gzip"}
    raise AssertionError(kind)


LEAK_BOUND = 24 * MIB


@pytest.mark.parametrize("kind", ["severity", "type", "id", "not json", "gzip bomb"])
def test_large_distinct_bodies_do_not_accumulate(ingest: LiveIngest, kind: str) -> None:
    """Two rounds of 48 near-limit bodies, each different (a 1 MiB severity, type or id; 1 MiB
    of invalid JSON; a gzip bomb). What the first round leaves is allocator slack and caches
    reaching their size; the second must not add more than 24 MiB to it: anything kept per
    request (a cache keyed by what the sender wrote, a buffer) adds 48 MiB a round."""
    with ingest.guard() as tally, ingest.client() as client:
        rss = []
        for round_ in range(2):
            for i in range(48):
                body, headers = _distinct(kind, round_ * 100 + i)
                response = post(client, body, headers)
                tally.record(response, 1)
                assert response.status_code == {"not json": 400, "gzip bomb": 413}.get(kind, 200)
            ingest.wait_delivered()
            rss.append(ingest.rss())
        assert rss[1] - rss[0] <= LEAK_BOUND, (
            f"{kind}: the second 48 MiB grew the RSS from {rss[0] / MIB:.1f} to {rss[1] / MIB:.1f} MiB"
        )


# ------------------------------------------------------------------------------------------
# Inputs these tests found, one test each: a body the ingest answers 5xx, or takes and then
# cannot deliver (the process dies, or the event is dead-lettered). Each must be answered 200
# (every event taken and delivered) or 400 (refused, quarantined).

FOUND = {
    "1,000 nested arrays": b"[" * 1000 + b"]" * 1000,
    "100,000 nested arrays": b"[" * 100_000 + b"]" * 100_000,
    "100,000 nested objects": b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
    "an event 300 arrays deep, with an id": b'[{"id":"deep-300","x":' + b"[" * 300 + b"]" * 300 + b"}]",
    "an event 300 objects deep, without an id": b'[{"x":' + b'{"a":' * 300 + b"1" + b"}" * 300 + b"}]",
    "an event of 1 array 900 deep": b"[" + b"[" * 900 + b"]" * 900 + b"]",
    "an integer of 4,301 digits as an event": b"[" + b"9" * 4301 + b"]",
    "an integer of 5,000 digits in an event without an id": b'[{"n":' + b"9" * 5000 + b"}]",
    "an integer of 5,000 digits in an event with an id": b'[{"id":"big-int","n":' + b"9" * 5000 + b"}]",
    "an id of 5,000 digits": b'[{"id":' + b"9" * 5000 + b"}]",
    "a severity of 1e400": b'[{"severity":1e400}]',
    "an id of 1e400": b'[{"id":1e400}]',
    "a type of 1e400": b'[{"type":1e400}]',
    "a test flag of -1e400": b'{"events":[{"id":"t","test":-1e400}]}',
}


@pytest.mark.parametrize("name", list(FOUND))
def test_found_inputs(ingest: LiveIngest, name: str) -> None:
    body = FOUND[name]
    with ingest.guard() as tally, ingest.client() as client:
        response = post(client, body)
        tally.record(response)
        assert response.status_code in (200, 400), f"{name}: answered {response.status_code} {response.text[:200]}"
        if response.status_code == 200:
            value = json.loads(body, parse_int=lambda _: 0, parse_float=lambda _: 0.0)
            assert response.json() == {"accepted": expected_events(value)}
