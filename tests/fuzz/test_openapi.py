"""docs/openapi.yaml stays the description of what the ingest really does.

- It is a valid OpenAPI 3.1 document.
- Every status code of the HTTP contract (docs/SPEC.md, "HTTP", and README's "HTTP answers" table,
  the repository's copy of it) is documented, and so is every code the app counts.
- Its paths and methods are the app's routes (create_app's), no more, no fewer.
- Every documented answer of the webhook can be produced, and what comes back is what is
  documented (status, media type, body schema): against the live `siemgate run` process, and
  503 against an in-process ingest whose bus refuses writes.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from schemathesis.specs.openapi.definitions import OPENAPI_31

from siemgate.errors import BusUnavailable
from siemgate.ingest.app import create_app
from siemgate.record import Record
from tests.fuzz.support import (
    AUTH,
    MAX_BODY,
    MAX_EVENTS,
    ROOT,
    SPEC_CODES,
    WEBHOOK,
    LiveIngest,
    check_documented,
    openapi,
    read_answer,
    request_head,
)
from tests.support import make_config, running_ingest


def readme_codes() -> tuple[set[int], set[int]]:
    """The status codes of README's "HTTP answers" table: (the webhook's, the probes')."""
    text = (ROOT / "README.md").read_text()
    table = text.split("## HTTP answers", 1)[1].split("\n\n", 2)[1]
    webhook: set[int] = set()
    probes: set[int] = set()
    for row in table.splitlines()[2:]:
        request, answer = row.strip("|").split(" | ", 1)
        codes = {int(code) for code in re.findall(r"`(\d{3})\b", answer)}
        (probes if request.strip().startswith("`GET") else webhook).update(codes)
    return webhook, probes


def documented_codes(path: str, method: str) -> set[int]:
    return {int(code) for code in openapi()["paths"][path][method]["responses"]}


def test_it_is_a_valid_openapi_3_1_document() -> None:
    document = openapi()
    assert document["openapi"].startswith("3.1.")
    errors = sorted(Draft202012Validator(OPENAPI_31).iter_errors(document), key=str)
    assert not errors, errors[0]
    for name, schema in document["components"]["schemas"].items():
        try:
            Draft202012Validator.check_schema(schema)
        except Exception as exc:
            raise AssertionError(f"components.schemas.{name}: {exc}") from exc
    refs = re.findall(r'\$ref: "#/([^"]+)"', (ROOT / "docs" / "openapi.yaml").read_text())
    for ref in refs:
        node: Any = document
        for part in ref.split("/"):
            assert part in node, f"$ref #/{ref} does not resolve"
            node = node[part]


def test_every_answer_of_the_contract_is_documented() -> None:
    webhook, probes = readme_codes()
    assert webhook >= {200, 400, 401, 403, 413, 415, 503}, f"README's table changed shape: {webhook}"
    documented = documented_codes(WEBHOOK, "post")
    assert documented >= SPEC_CODES, f"docs/SPEC.md codes not documented: {SPEC_CODES - documented}"
    assert webhook <= documented, f"README codes not documented: {webhook - documented}"
    assert documented_codes("/healthz", "get") == {200, 503}  # 503: `siemgate run` with a stalled forwarder
    assert documented_codes("/readyz", "get") == {200, 503}
    assert documented_codes("/metrics", "get") == {200}
    assert probes <= {200, 503}


class _Refusing:
    """A bus that takes nothing: publish raises BusUnavailable, ready is False."""

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def publish(self, records: Sequence[Record]) -> None:
        raise BusUnavailable("refused by the test")

    async def ready(self) -> bool:
        return False


def test_paths_and_methods_are_the_apps(tmp_path: Path) -> None:
    config = make_config(tmp_path, None, integrations="""
  - name: appsec-prod
    auth: {header: X-Api-Key, values: ["k-0123456789"]}
  - name: other-1
    auth: {header: X-Api-Key, values: ["k-0123456789"]}
""")
    app = create_app(config, _Refusing())
    paths = openapi()["paths"]
    template = re.compile("^" + re.escape(WEBHOOK).replace(r"\{integration\}", "([a-z0-9-]+)") + "$")
    seen = set()
    for route in app.routes:
        path: str = route.path  # type: ignore[attr-defined]
        methods = {m.lower() for m in route.methods or ()} - {"head"}  # type: ignore[attr-defined]
        # A webhook's path with a trailing slash is the same webhook (its slash twin).
        documented_path = WEBHOOK if template.match(path) or template.match(path.removesuffix("/")) else path
        assert documented_path in paths, f"the app serves {path}, docs/openapi.yaml does not describe it"
        assert methods == set(paths[documented_path]) - {"parameters"}, f"{path}: {methods}"
        seen.add(documented_path)
        if documented_path == WEBHOOK:
            # Every answer the app counts for the webhook is documented.
            endpoint: Any = route.endpoint  # type: ignore[attr-defined]
            counted = set(endpoint.__self__._requests)
            assert counted <= documented_codes(WEBHOOK, "post"), counted
    assert seen == set(paths), f"documented but not served: {set(paths) - seen}"
    scheme = openapi()["components"]["securitySchemes"]["apiKey"]
    assert (scheme["type"], scheme["in"], scheme["name"]) == ("apiKey", "header", "X-Api-Key")
    assert openapi()["security"] == [{"apiKey": []}]
    for probe in ("/healthz", "/readyz", "/metrics"):
        assert paths[probe]["get"]["security"] == [], f"{probe} takes no auth"


def _raw(ingest: LiveIngest, head: bytes, body: bytes = b"", *, wait: float = 10) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", ingest.port), timeout=wait) as sock:
        sock.sendall(head + body)
        answer = read_answer(sock, time.monotonic() + wait)
    assert answer is not None, "no answer"
    return answer.status, answer.headers, answer.body


def test_every_documented_webhook_answer_is_real(ingest: LiveIngest) -> None:
    """Each documented answer of POST /webhook/{integration} but 503 (next test), produced
    against the live process and checked against its description."""
    produced: set[int] = set()

    def check(status: int, headers: Any, body: bytes, expected: int) -> None:
        assert status == expected, f"expected {expected}, got {status} {body[:200]!r}"
        check_documented(WEBHOOK, "post", status, headers, body)
        produced.add(status)

    with ingest.guard() as tally, ingest.client() as client:
        def post(body: bytes, path: str = "/webhook/fuzz", **headers: str) -> httpx.Response:
            return client.post(path, content=body, headers={**AUTH, **headers})

        response = post(b'[{"id":"doc-1","severity":"high"},{"id":"doc-2"}]')
        check(response.status_code, response.headers, response.content, 200)
        tally.count(200, 2)
        for body in (b"42", b"{", b"\xff[]", b""):
            response = post(body)
            check(response.status_code, response.headers, response.content, 400)
            assert response.json()["quarantined"]
        response = post(b"[]", **{"Content-Encoding": "gzip"})
        check(response.status_code, response.headers, response.content, 400)
        # Not HTTP: the server's own plain-text 400.
        status, headers, body = _raw(ingest, b"POST /webhook/fuzz HTTP/1.1\r\nHost: x\r\nContent-Length: x\r\n\r\n")
        check(status, headers, body, 400)
        assert headers["content-type"].startswith("text/plain")
        response = client.post("/webhook/fuzz", content=b"[]", headers={"X-Api-Key": "wrong"})
        check(response.status_code, response.headers, response.content, 401)
        response = client.post("/webhook/fuzz", content=b"[]")
        check(response.status_code, response.headers, response.content, 401)
        response = post(b"[]", path="/webhook/fenced")
        check(response.status_code, response.headers, response.content, 403)
        response = post(b"[]", path="/webhook/no-such-integration")
        check(response.status_code, response.headers, response.content, 404)
        status, headers, body = _raw(ingest, request_head("/webhook/fuzz", {**AUTH, "Content-Length": "100"}), b"[")
        check(status, headers, body, 408)
        status, headers, body = _raw(ingest, request_head("/webhook/fuzz", AUTH, length=MAX_BODY + 1))
        check(status, headers, body, 413)
        response = post(b"[" + b"0," * MAX_EVENTS + b"0]")
        check(response.status_code, response.headers, response.content, 413)
        assert response.json()["quarantined"], "too many events: the body is quarantined"
        response = post(b"[]", **{"Content-Encoding": "br"})
        check(response.status_code, response.headers, response.content, 415)
    assert produced == documented_codes(WEBHOOK, "post") - {503}


@pytest.mark.anyio
async def test_503_and_not_ready_are_as_documented(tmp_path: Path) -> None:
    """A bus that takes no writes: the webhook answers 503, /readyz 503; as documented."""
    config = make_config(tmp_path, None, integrations="""
  - name: appsec
    auth: {header: X-Api-Key, values: ["k-0123456789"]}
""")
    async with running_ingest(config, publisher=_Refusing()) as ingest, httpx.AsyncClient(timeout=30) as client:
        response = await client.post(ingest.webhook(), content=b'[{"id":"x"}]', headers={"X-Api-Key": "k-0123456789"})
        assert response.status_code == 503
        check_documented(WEBHOOK, "post", 503, response.headers, response.content)
        for path, status in (("/readyz", 503), ("/healthz", 200), ("/metrics", 200)):
            response = await client.get(ingest.url + path)
            assert response.status_code == status, path
            check_documented(path, "get", status, response.headers, response.content)
