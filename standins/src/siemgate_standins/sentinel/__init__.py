"""A Microsoft Sentinel stand-in: Microsoft Entra ID's token endpoint (client credentials) and
the Azure Monitor Logs Ingestion API, answering like them on the wire.

The `sentinel` sink's tests run against it; `tests/testing/test_sentinel_clients.py` proves it
against Microsoft's own clients (azure-identity's ClientSecretCredential, azure-monitor-
ingestion's LogsIngestionClient.upload), over TLS since they insist on https.

    app = AppRegistration("client-id", secrets=("s3cret",))           # or certificates=, federated_tokens=
    dcr = DataCollectionRule("dcr-0123...", {"Custom-SiemgateAlerts": {"TimeGenerated": "datetime", ...}})
    async with SentinelStandIn(apps=[app], rules=[dcr], ssl_context=ctx) as azure:
        ...tokens from azure.url + f"/{DEFAULT_TENANT}/oauth2/v2.0/token"...
        ...calls to azure.url + "/dataCollectionRules/dcr-0123.../streams/Custom-SiemgateAlerts?api-version=2023-01-01"
        azure.faults.fail_requests(429, retry_after=2)     # the next call: 429 with Retry-After: 2
        azure.faults.refuse_rows(["evt-3"])                 # a call holding EventId evt-3: 400, nothing ingested
        azure.expire_tokens()                               # every token issued so far: 401 from now on
        azure.rows(), azure.calls(), azure.token_requests()

Or its own process: `python -m siemgate_standins.sentinel --client ID:SECRET --dcr dcr-... [--certfile
...]` (prints its URL as its first line). Faults and inspection over HTTP: `GET /_standin/state`,
`POST /_standin/faults` (JSON, see `Faults.apply`), `POST /_standin/expire_tokens`,
`POST /_standin/reset`.

Token endpoint (`POST /{tenant}/oauth2/v2.0/token`, form-encoded; `GET /{tenant}/v2.0/.well-known/
openid-configuration` for MSAL): `grant_type=client_credentials`, `client_id`, `scope` (Azure
Monitor's, any cloud, `/.default` or `//.default`), and `client_secret` or `client_assertion`
(+ `client_assertion_type` jwt-bearer): a JWT signed RS256 by a registered certificate (found
by `x5t`; `aud` the token endpoint, `iss` = `sub` = the client id, within `nbf`..`exp` with
5 minutes' skew), or a registered federated token as it is. Answers `{"token_type": "Bearer",
"expires_in": N, "ext_expires_in": N, "access_token": ...}`, or Entra's error shape
`{"error": "invalid_client", "error_description": "AADSTS7000215: ...", "error_codes": [...]}`
(unknown tenant 400/90002, unknown client 400/700016, bad scope 400, bad secret 401/7000215,
bad assertion 401/700027, 700024 ...).

Logs Ingestion API (`POST /dataCollectionRules/{dcr}/streams/{stream}?api-version=2023-01-01`),
in this order: api-version (400 `MissingApiVersionParameter` / `UnsupportedApiVersion`); the
bearer token, issued here and not expired (401 `InvalidToken`); the DCR (404 `NotFound`); the
client's role on it (403 `OperationFailed`, Microsoft's documented message); the stream (400
`InvalidStream`); gzip (`Content-Encoding: gzip`); the cap, 1 MB (`max_call_bytes`) as sent and
after gunzip (413 `ContentLengthLimitExceeded`; a body over the cap as sent is refused unread,
bare); JSON (400 `InvalidJson`); an array of objects (400 `InvalidPayload`). Success: 204, empty.
Rows are checked against the stream's declaration as Azure does: a column it does not declare
is dropped; a value that does not fit its column's declared type (string, int (32-bit), long,
real, boolean, datetime (ISO 8601 text), dynamic, guid) is null in the row and logged,
`log_errors()`, as Azure's DCRLogErrors table would show it; the call is answered 204 either
way (`RequestRecord.type_errors`, `.undeclared`). A stream declared without columns keeps
all. `stream_declarations(template)` reads the declarations of an ARM template
(deploy/azure/sentinel.json); the process takes one with `--dcr-template`.

Choices where Microsoft's documentation leaves a gap (clients branch on the HTTP status; the
error codes other than `OperationFailed` are this stand-in's words):
- A JSON object instead of an array is answered 204 and nothing is ingested, as Azure does
  (MicrosoftDocs/azure-docs issues #106266, #118163).
- An empty array is answered 204 after the token, role, DCR and stream checks: `siemgate
  check` uses it to reach the DCR without writing a row.
- A call Azure refuses for one row is refused whole, without saying which (`refuse_rows`).
- The cap is Microsoft's "1 MB", taken as 1,048,576 bytes of the array's JSON and enforced to
  the byte. azure-monitor-ingestion sums its logs' JSON sizes up to that and does not count the
  array's `, ` separators, so its calls can be 2 bytes a log larger (Azure seems to allow that
  slack; the stand-in does not, and siemgate's sink counts the separators).
- Injected failures (`fail_requests`, `drop_connections`, `delay_seconds`) apply to ingestion
  calls before authentication; `fail_tokens` to token requests.

Loopback test tooling, not a production server.
"""

from __future__ import annotations

from siemgate_standins.sentinel.cli import add_arguments, from_arguments, main, serve
from siemgate_standins.sentinel.faults import Failure, Faults, RowRule
from siemgate_standins.sentinel.protocol import (
    API_VERSIONS,
    ASSERTION_TYPE,
    COLUMN_TYPES,
    DEFAULT_TENANT,
    MAX_CALL_BYTES,
    MONITOR_SCOPES,
    AppRegistration,
    DataCollectionRule,
    conforms,
    stream_declarations,
    thumbprint,
    verify_assertion,
)
from siemgate_standins.sentinel.server import LogError, RequestRecord, SentinelStandIn

__all__ = [
    "API_VERSIONS",
    "ASSERTION_TYPE",
    "AppRegistration",
    "COLUMN_TYPES",
    "DEFAULT_TENANT",
    "DataCollectionRule",
    "Failure",
    "Faults",
    "LogError",
    "MAX_CALL_BYTES",
    "MONITOR_SCOPES",
    "RequestRecord",
    "RowRule",
    "SentinelStandIn",
    "add_arguments",
    "from_arguments",
    "main",
    "conforms",
    "serve",
    "stream_declarations",
    "thumbprint",
    "verify_assertion",
]
