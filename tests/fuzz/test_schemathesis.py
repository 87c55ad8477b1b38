"""schemathesis against docs/openapi.yaml and the live `siemgate run` process.

Every operation of the description, with bodies, headers and parameters generated from it
(valid ones, and with `mode: all` invalid ones too), sent to the real process; each answer
must pass: not_a_server_error, status_code_conformance (a documented status),
content_type_conformance and response_schema_conformance (the documented body). The webhook's
path parameter is pinned to the `schema` integration (another name is a 404, documented but
not interesting), and the valid key is sent: 401 and 403 are covered by test_bad_input.py and
test_openapi.py. The module's guard then checks the process the same way as every other test
here (up, memory, the 200s' events counted and delivered, no error logged).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.fuzz.support import KEY, OPENAPI, LiveIngest, Tally, fuzz_settings

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]

schema = schemathesis.openapi.from_path(
    OPENAPI,
    config=schemathesis.Config.from_dict({
        "headers": {"X-Api-Key": KEY},
        "parameters": {"path.integration": "schema"},
        "generation": {"mode": "all", "deterministic": True, "database": "none"},
        "phases": {"stateful": {"enabled": False}},
        "request-timeout": 30,
    }),
)


@pytest.fixture(scope="module")
def schema_run(live_ingest: LiveIngest) -> Iterator[tuple[LiveIngest, Tally]]:
    """One guard around all the operations' tests; its checks run at the module's end."""
    with live_ingest.guard("schema") as tally:
        yield live_ingest, tally


@schema.parametrize()
@fuzz_settings(60)
def test_api(case: schemathesis.Case[Any], schema_run: tuple[LiveIngest, Tally]) -> None:
    ingest, tally = schema_run
    response = case.call_and_validate(base_url=ingest.url, checks=CHECKS)
    if case.path == "/webhook/{integration}":
        tally.count(response.status_code, response.json()["accepted"] if response.status_code == 200 else 0)
