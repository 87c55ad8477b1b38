"""The Sentinel stand-in against Microsoft's own clients: azure-identity's ClientSecretCredential
(MSAL: the OpenID configuration, then the client-credentials token request) and
azure-monitor-ingestion's LogsIngestionClient.upload (its 1 MiB chunking, gzip, azure-core's
retry on 429 with Retry-After, its on_error path). Both insist on https: the stand-in serves
TLS with a trustme CA, which the clients trust through `connection_verify`."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trustme
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.identity import ClientSecretCredential
from azure.monitor.ingestion import LogsIngestionClient, LogsUploadError

from siemgate_standins.sentinel import (
    DEFAULT_TENANT,
    MAX_CALL_BYTES,
    AppRegistration,
    DataCollectionRule,
    SentinelStandIn,
)

pytestmark = pytest.mark.anyio

CLIENT = "0f0e0d0c-0000-4000-8000-0000000000a1"
SECRET = "client-secret-for-the-sdk"
DCR = "dcr-00112233445566778899aabbccddeeff"
STREAM = "Custom-SdkAlerts"
T = TypeVar("T")


@dataclass
class Lab:
    azure: SentinelStandIn
    ca_file: str
    app: AppRegistration
    opened: list[Any] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.azure.url.replace("127.0.0.1", "localhost")

    def credential(self, secret: str = SECRET) -> ClientSecretCredential:
        credential = ClientSecretCredential(DEFAULT_TENANT, CLIENT, secret, authority=self.url,
                                            disable_instance_discovery=True, connection_verify=self.ca_file)
        self.opened.append(credential)
        return credential

    def client(self, secret: str = SECRET) -> LogsIngestionClient:
        client = LogsIngestionClient(self.url, self.credential(secret), connection_verify=self.ca_file,
                                     retry_backoff_factor=0.01)
        self.opened.append(client)
        return client

    def close(self) -> None:
        """Close the clients' connections (a TLS connection left open holds the server's stop
        for its 30 s shutdown timeout)."""
        for opened in reversed(self.opened):
            opened.close()


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[Lab]:
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    app = AppRegistration(CLIENT, secrets=(SECRET,))
    rule = DataCollectionRule(DCR, {STREAM: {"TimeGenerated": "datetime", "EventId": "string", "Pad": "string"}})
    async with SentinelStandIn(apps=[app], rules=[rule], ssl_context=context, host="127.0.0.1") as azure:
        lab = Lab(azure, str(ca_file), app)
        try:
            yield lab
        finally:
            await in_thread(lab.close)


async def in_thread(call: Callable[[], T]) -> T:
    """The clients are synchronous: run them off the loop that serves the stand-in."""
    return await asyncio.to_thread(call)


def logs(n: int, pad: int = 3_950, start: int = 0) -> list[dict[str, Any]]:
    # ~4 KB a log. The SDK fills a chunk up to 1 MiB of json.dumps(log) sizes and does not
    # count the array's ", " separators (2 bytes a log): with logs this size its calls stay
    # within Microsoft's 1 MB, which the stand-in enforces to the byte.
    return [{"TimeGenerated": "2026-11-28T21:00:00Z", "EventId": f"e-{i}", "Pad": "x" * pad}
            for i in range(start, start + n)]


async def test_client_secret_credential_gets_a_token_from_the_stand_in(lab: Lab) -> None:
    token = await in_thread(lambda: lab.credential().get_token("https://monitor.azure.com//.default"))
    assert token.token.startswith("standin.") and token.expires_on > 0
    (request,) = lab.azure.token_requests()
    assert (request.status, request.client_id) == (200, CLIENT)
    with pytest.raises(ClientAuthenticationError, match="AADSTS7000215"):
        await in_thread(lambda: lab.credential("wrong").get_token("https://monitor.azure.com//.default"))


async def test_upload_is_chunked_under_the_cap_gzipped_and_ingested_in_order(lab: Lab) -> None:
    sent = logs(800)  # ~3.2 MB: the SDK's chunking makes several calls
    await in_thread(lambda: lab.client().upload(DCR, STREAM, sent))
    calls = lab.azure.calls()
    assert len(calls) >= 3
    assert all(c.status == 204 and c.gzip and c.body_bytes <= MAX_CALL_BYTES for c in calls)
    assert [r["EventId"] for r in lab.azure.rows()] == [f"e-{i}" for i in range(800)]
    assert lab.azure.rows()[0]["Pad"] == "x" * 3_950


async def test_upload_error_paths_reach_on_error_with_the_failed_logs(lab: Lab) -> None:
    lab.azure.faults.refuse_rows(["e-3"], message="Record cannot be processed.")
    too_large = {"TimeGenerated": "2026-11-28T21:00:00Z", "EventId": "big", "Pad": "y" * (MAX_CALL_BYTES + 10)}
    failures: list[LogsUploadError] = []
    await in_thread(lambda: lab.client().upload(DCR, STREAM, [*logs(5), too_large, *logs(3, start=5)],
                                                on_error=failures.append))
    refused = {str(f.error.status_code): [log["EventId"] for log in f.failed_logs] for f in failures}  # type: ignore[attr-defined]
    assert refused["400"] == ["e-0", "e-1", "e-2", "e-3", "e-4"], "Azure refuses the whole call"
    assert refused["413"] == ["big"], "the SDK sends a log over 1 MiB alone; the stand-in refuses it"
    codes = {f.error.error.code for f in failures if isinstance(f.error, HttpResponseError) and f.error.error}
    assert codes == {"InvalidPayload", "ContentLengthLimitExceeded"}, "Azure's {error: {code, message}} shape"
    assert [r["EventId"] for r in lab.azure.rows()] == ["e-5", "e-6", "e-7"]


async def test_a_missing_role_is_azures_403(lab: Lab) -> None:
    lab.app.publisher_on = frozenset()
    with pytest.raises(HttpResponseError) as caught:
        await in_thread(lambda: lab.client().upload(DCR, STREAM, logs(2)))
    assert caught.value.status_code == 403
    assert caught.value.error is not None and caught.value.error.code == "OperationFailed"
    assert "does not have access to ingest data" in str(caught.value)


async def test_azure_core_honours_the_stand_ins_retry_after(lab: Lab) -> None:
    lab.azure.faults.fail_requests(429, retry_after=1)
    await in_thread(lambda: lab.client().upload(DCR, STREAM, logs(2)))
    throttled, retried = lab.azure.calls()
    assert (throttled.status, throttled.retry_after, retried.status) == (429, "1", 204)
    assert retried.at - throttled.at >= 1.0
    assert [r["EventId"] for r in lab.azure.rows()] == ["e-0", "e-1"]
