"""The Sentinel stand-in on the wire: the token endpoint's grants and refusals, client
assertions, the Logs Ingestion API's checks in their order, gzip and the cap, fault injection,
the HTTP control endpoints and the process entry point (`siemgate standin sentinel`)."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import trustme

from siemgate_standins.sentinel import (
    ASSERTION_TYPE,
    DEFAULT_TENANT,
    AppRegistration,
    DataCollectionRule,
    SentinelStandIn,
)

pytestmark = pytest.mark.anyio

CLIENT = "c1c1c1c1-0000-4000-8000-000000000001"
LIMITED = "c2c2c2c2-0000-4000-8000-000000000002"  # no role on any DCR
SECRET = "standin-secret-0001"
DCR = "dcr-aaaabbbbccccddddeeeeffff00001111"
STREAM = "Custom-Test"
TOKEN_PATH = f"/{DEFAULT_TENANT}/oauth2/v2.0/token"
SCOPE = "https://monitor.azure.com/.default"


@pytest.fixture
async def azure() -> AsyncIterator[SentinelStandIn]:
    apps = [AppRegistration(CLIENT, secrets=(SECRET,)),
            AppRegistration(LIMITED, secrets=(SECRET,), publisher_on=frozenset())]
    rules = [DataCollectionRule(DCR, {STREAM: {"TimeGenerated": "datetime", "EventId": "string"}})]
    async with SentinelStandIn(apps=apps, rules=rules) as server:
        yield server


@pytest.fixture
async def client(azure: SentinelStandIn) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=azure.url) as http:
        yield http


async def token(client: httpx.AsyncClient, client_id: str = CLIENT, **form: str) -> httpx.Response:
    fields = {"grant_type": "client_credentials", "client_id": client_id, "scope": SCOPE, **form}
    if not {"client_secret", "client_assertion"} & set(form):
        fields["client_secret"] = SECRET
    return await client.post(TOKEN_PATH, data=fields)


async def bearer(client: httpx.AsyncClient, client_id: str = CLIENT) -> dict[str, str]:
    answer = await token(client, client_id)
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def ingest_path(dcr: str = DCR, stream: str = STREAM) -> str:
    return f"/dataCollectionRules/{dcr}/streams/{stream}"


PARAMS = {"api-version": "2023-01-01"}


async def test_a_token_for_a_client_secret(client: httpx.AsyncClient, azure: SentinelStandIn) -> None:
    answer = await token(client)
    body = answer.json()
    assert answer.status_code == 200 and body["token_type"] == "Bearer" and body["expires_in"] == 3599
    assert body["access_token"] in azure.issued


@pytest.mark.parametrize(("form", "client_id", "status", "error", "number"), [
    ({"client_secret": "wrong"}, CLIENT, 401, "invalid_client", 7000215),
    ({}, "unknown-client", 400, "unauthorized_client", 700016),
    ({"scope": "https://graph.microsoft.com/.default"}, CLIENT, 400, "invalid_scope", 1002012),
    ({"grant_type": "password"}, CLIENT, 400, "unsupported_grant_type", 70003),
    ({"client_assertion": "a.b.c", "client_assertion_type": ASSERTION_TYPE}, CLIENT, 401, "invalid_client", 50027),
])
async def test_token_refusals_in_entras_shape(client: httpx.AsyncClient, form: dict[str, str], client_id: str,
                                              status: int, error: str, number: int) -> None:
    answer = await token(client, client_id, **form)
    body = answer.json()
    assert (answer.status_code, body["error"], body["error_codes"]) == (status, error, [number])
    assert body["error_description"].startswith(f"AADSTS{number}: ")


async def test_an_unknown_tenant(client: httpx.AsyncClient) -> None:
    answer = await client.post("/not-a-tenant/oauth2/v2.0/token", data={"grant_type": "client_credentials"})
    assert answer.status_code == 400 and answer.json()["error_codes"] == [90002]


async def test_certificate_assertions_are_verified(tmp_path: Path) -> None:
    from siemgate.forwarders.sinks.entra import certificate_assertion

    ca = trustme.CA(key_type=trustme.KeyType.RSA)
    issued = ca.issue_cert("app.example", key_type=trustme.KeyType.RSA)
    pem = issued.private_key_pem.bytes() + issued.cert_chain_pems[0].bytes()
    app = AppRegistration(CLIENT, certificates=(issued.cert_chain_pems[0].bytes(),))
    async with SentinelStandIn(apps=[app], rules=[]) as azure, httpx.AsyncClient(base_url=azure.url) as http:
        audience = azure.url + TOKEN_PATH

        async def with_assertion(assertion: str) -> httpx.Response:
            return await token(http, client_assertion=assertion, client_assertion_type=ASSERTION_TYPE)

        assert (await with_assertion(certificate_assertion(pem, None, CLIENT, audience))).status_code == 200
        stale = certificate_assertion(pem, None, CLIENT, audience, now=time.time() - 3600)
        assert (await with_assertion(stale)).json()["error_codes"] == [700024]
        wrong_client = certificate_assertion(pem, None, "someone-else", audience)
        assert (await with_assertion(wrong_client)).json()["error_codes"] == [700021]
        wrong_audience = certificate_assertion(pem, None, CLIENT, "https://elsewhere.example/t/oauth2/v2.0/authorize")
        assert (await with_assertion(wrong_audience)).json()["error_codes"] == [700212]
        header, claims, signature = certificate_assertion(pem, None, CLIENT, audience).split(".")
        forged = json.loads(base64.urlsafe_b64decode(claims + "=="))
        forged["sub"] = forged["iss"] = CLIENT + "x"
        tampered = base64.urlsafe_b64encode(orjson.dumps(forged)).rstrip(b"=").decode()
        assert (await with_assertion(f"{header}.{tampered}.{signature}")).json()["error_codes"] == [700027]


async def test_ingestion_checks_in_order(client: httpx.AsyncClient, azure: SentinelStandIn) -> None:
    rows = orjson.dumps([{"TimeGenerated": "2026-11-28T21:00:00Z", "EventId": "e-1", "Extra": 1}])
    auth = await bearer(client)

    async def post(path: str = ingest_path(), params: dict[str, str] | None = PARAMS,
                   headers: dict[str, str] | None = None, body: bytes = rows) -> tuple[int, str]:
        answer = await client.post(path, params=params, headers=auth if headers is None else headers, content=body)
        code = answer.json()["error"]["code"] if answer.content else ""
        return answer.status_code, code

    assert await post(params={}) == (400, "MissingApiVersionParameter")
    assert await post(params={"api-version": "2020-01-01"}) == (400, "UnsupportedApiVersion")
    assert await post(headers={}) == (401, "InvalidToken")
    assert await post(path=ingest_path(dcr="dcr-0000")) == (404, "NotFound")
    assert await post(headers=await bearer(client, LIMITED)) == (403, "OperationFailed")
    assert await post(path=ingest_path(stream="Custom-Other")) == (400, "InvalidStream")
    assert await post(body=b"[{") == (400, "InvalidJson")
    assert await post(body=b"[1, 2]") == (400, "InvalidPayload")
    assert await post(body=b'{"EventId": "alone"}') == (204, ""), "an object: 204, nothing ingested (as Azure)"
    assert not azure.rows()
    assert await post(body=b"[]") == (204, ""), "an empty call: the checks, no row"
    assert await post() == (204, "")
    assert azure.rows() == [{"TimeGenerated": "2026-11-28T21:00:00Z", "EventId": "e-1", "_dcr": DCR,
                             "_stream": STREAM}], "undeclared columns dropped"
    azure.expire_tokens()
    assert await post() == (401, "InvalidToken")


async def test_gzip_and_the_cap(client: httpx.AsyncClient, azure: SentinelStandIn) -> None:
    auth = await bearer(client)
    headers = {**auth, "Content-Encoding": "gzip"}
    small = orjson.dumps([{"EventId": f"e-{i}"} for i in range(10)])
    answer = await client.post(ingest_path(), params=PARAMS, headers=headers, content=gzip.compress(small))
    assert answer.status_code == 204 and len(azure.rows()) == 10
    big = orjson.dumps([{"EventId": "x" * 1_048_600}])  # compresses to a few KB, over 1 MB unpacked
    answer = await client.post(ingest_path(), params=PARAMS, headers=headers, content=gzip.compress(big))
    assert answer.status_code == 413 and answer.json()["error"]["code"] == "ContentLengthLimitExceeded"
    answer = await client.post(ingest_path(), params=PARAMS, headers=headers, content=b"not gzip")
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "InvalidContentEncoding"
    answer = await client.post(ingest_path(), params=PARAMS, headers=auth, content=big)
    assert answer.status_code == 413 and not answer.content, "over the cap as sent: refused unread"
    assert len(azure.rows()) == 10


async def test_faults_in_process_and_over_http(client: httpx.AsyncClient, azure: SentinelStandIn) -> None:
    auth = await bearer(client)
    rows = orjson.dumps([{"EventId": "e-1"}, {"EventId": "bad"}])
    applied = await client.post("/_standin/faults", json={
        "fail_requests": {"status": 429, "retry_after": 5}, "refuse_rows": {"values": ["bad"]},
        "fail_tokens": {"status": 503}})
    assert applied.status_code == 200 and applied.json()["faults"]["refuse_rows"][0]["values"] == ["bad"]
    answer = await client.post(ingest_path(), params=PARAMS, headers=auth, content=rows)
    assert (answer.status_code, answer.headers["retry-after"]) == (429, "5")
    assert answer.json()["error"]["code"] == "TooManyRequests"
    answer = await client.post(ingest_path(), params=PARAMS, headers=auth, content=rows)
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "InvalidPayload"
    assert (await token(client)).status_code == 503
    assert (await token(client)).status_code == 200
    azure.faults.drop_connections(1)
    with pytest.raises(httpx.RemoteProtocolError):
        await client.post(ingest_path(), params=PARAMS, headers=auth, content=b"[]")
    bad = await client.post("/_standin/faults", json={"nope": 1})
    assert bad.status_code == 400
    state = (await client.get("/_standin/state")).json()
    assert [r["status"] for r in state["requests"] if r["kind"] == "ingest"] == [429, 400, 0]
    assert (await client.post("/_standin/expire_tokens")).status_code == 200
    assert (await client.post(ingest_path(), params=PARAMS, headers=auth, content=b"[]")).status_code == 401
    assert (await client.post("/_standin/reset")).json() == {"reset": True}
    assert azure.requests == [] and not azure.issued


async def test_siemgate_standin_sentinel_runs_it_as_a_process(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "siemgate", "standin", "sentinel", "--port", "0", "--client", f"{CLIENT}:{SECRET}",
         "--dcr", DCR], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert process.stdout is not None
        url = (await asyncio.to_thread(process.stdout.readline)).decode().strip()
        assert url.startswith("http://127.0.0.1:")
        async with httpx.AsyncClient(base_url=url) as http:
            auth = await bearer(http)
            rows: Any = [{"EventId": "e-1", "Anything": True}]
            answer = await http.post(ingest_path(stream="Custom-SiemgateAlerts"), params=PARAMS, headers=auth,
                                     json=rows)
            assert answer.status_code == 204
            state = (await http.get("/_standin/state")).json()
        assert [r["EventId"] for r in state["rows"]] == ["e-1"]
    finally:
        process.terminate()
        assert await asyncio.to_thread(process.wait, 10) == 0
        if process.stdout is not None:
            process.stdout.close()


async def test_the_process_takes_its_streams_from_the_arm_template(tmp_path: Path) -> None:
    """`--dcr-template deploy/azure/sentinel.json`: each DCR declares the template's streams with
    their columns, checked as Azure does (undeclared dropped, a mistyped value nulled and logged)."""
    template = Path(__file__).resolve().parents[2] / "deploy" / "azure" / "sentinel.json"
    process = subprocess.Popen(
        [sys.executable, "-m", "siemgate", "standin", "sentinel", "--port", "0", "--client", f"{CLIENT}:{SECRET}",
         "--dcr", DCR, "--dcr-template", str(template)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert process.stdout is not None
        url = (await asyncio.to_thread(process.stdout.readline)).decode().strip()
        async with httpx.AsyncClient(base_url=url) as http:
            auth = await bearer(http)
            rows: Any = [{"metadata_uid": "o-1", "ocsf": {"class_uid": 4002}, "TimeGenerated": "high",
                          "Anything": True}]
            answer = await http.post(ingest_path(stream="Custom-SiemgateOcsf"), params=PARAMS, headers=auth,
                                     json=rows)
            assert answer.status_code == 204
            unknown = await http.post(ingest_path(stream="Custom-Test"), params=PARAMS, headers=auth, json=[])
            assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "InvalidStream"
            state = (await http.get("/_standin/state")).json()
        assert [{k: v for k, v in r.items() if not k.startswith("_")} for r in state["rows"]] == [
            {"metadata_uid": "o-1", "ocsf": {"class_uid": 4002}}]
        assert [(e["column"], e["column_type"]) for e in state["log_errors"]] == [("TimeGenerated", "datetime")]
        (streams,) = [r["streams"] for r in state["rules"]]
        assert sorted(streams) == ["Custom-SiemgateAlerts", "Custom-SiemgateOcsf"]
        assert streams["Custom-SiemgateAlerts"]["EventId"] == "string"
    finally:
        process.terminate()
        assert await asyncio.to_thread(process.wait, 10) == 0
        if process.stdout is not None:
            process.stdout.close()


def test_values_are_checked_against_each_declared_type_as_azure_does() -> None:
    """`conforms`, the check behind the nulled values (the OCSF stream now declares only
    datetime, string and dynamic: the other types are held to their ranges here)."""
    from siemgate_standins.sentinel import conforms

    assert conforms(4002, "int") and conforms(-(2 ** 31), "int") and not conforms(2 ** 31, "int")
    assert not conforms("4002", "int") and not conforms(True, "int") and not conforms(1.5, "int")
    assert conforms(2 ** 40, "long") and not conforms(2 ** 63, "long")
    assert conforms(True, "boolean") and not conforms(1, "boolean")
    assert conforms(1.5, "real") and conforms(2, "real") and not conforms(False, "real")
    assert conforms("x", "string") and not conforms({"a": 1}, "string")
    assert conforms(None, "int") and conforms({"a": [1]}, "dynamic") and conforms("s", "dynamic")
