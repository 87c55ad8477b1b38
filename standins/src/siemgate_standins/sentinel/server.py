"""The Sentinel stand-in: Entra ID's token endpoint (client credentials) and the Logs Ingestion
API (DCRs and their streams), the `/_standin/` control API, and what tests inspect."""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import ssl
import time
import uuid
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import orjson

from siemgate_standins.http_server import BadBody, BodyTooLarge, DropConnection, HttpStandIn, Request, Response
from siemgate_standins.sentinel.faults import Faults
from siemgate_standins.sentinel.protocol import (
    API_VERSIONS,
    ASSERTION_TYPE,
    CHECKERS,
    MAX_CALL_BYTES,
    MONITOR_SCOPES,
    AppRegistration,
    AssertionRefused,
    DataCollectionRule,
    Issued,
    aad_error,
    azure_error,
    openid_configuration,
    verify_assertion,
)

_UNDECLARED = object()


def _never(value: object) -> bool:  # a column type Azure does not have: nothing fits
    return False


@dataclass(slots=True)
class RequestRecord:
    """One request, as the stand-in saw and answered it."""

    at: float  # time.time() at arrival
    kind: str  # "token", "ingest", "discovery"
    path: str
    status: int = 0  # 0: dropped before an answer
    code: str | None = None  # Azure's error code, or the OAuth error
    client_id: str | None = None
    gzip: bool = False
    body_bytes: int = 0  # the call's JSON, decompressed
    rows: int = 0  # rows in the call
    ingested: int = 0
    retry_after: str | None = None
    dropped: bool = False
    # Values the stream's declared column type refused (nulled, logged in `log_errors`), and
    # columns the stream does not declare (dropped), over the call's rows.
    type_errors: int = 0
    undeclared: int = 0


@dataclass(frozen=True, slots=True)
class LogError:
    """What Azure Monitor would log in the workspace's DCRLogErrors table (when enabled) for a
    value that does not fit its column's declared type: the row is ingested, the value is null."""

    dcr: str
    stream: str
    column: str
    column_type: str
    value: str  # repr, cut to 200 characters
    row: int  # the row's index in its call


class SentinelStandIn(HttpStandIn):
    """`tokens` for `token_lifetime_seconds`; rows kept per (DCR, stream) in arrival order."""

    def __init__(self, *, apps: Iterable[AppRegistration], rules: Iterable[DataCollectionRule],
                 host: str = "127.0.0.1", port: int = 0, ssl_context: ssl.SSLContext | None = None,
                 max_call_bytes: int = MAX_CALL_BYTES, token_lifetime_seconds: float = 3599.0,
                 keep_rows: bool = True, max_requests_kept: int = 100_000) -> None:
        # Microsoft's 1 MB applies to the call as sent too: a larger body is refused unread (bare 413).
        super().__init__(host=host, port=port, ssl_context=ssl_context, max_body_bytes=max_call_bytes)
        self.apps = {(app.tenant_id, app.client_id): app for app in apps}
        self.rules = {rule.immutable_id: rule for rule in rules}
        self.max_call_bytes = max_call_bytes
        self.token_lifetime_seconds = token_lifetime_seconds
        self.keep_rows = keep_rows
        self.faults = Faults()
        self.issued: dict[str, Issued] = {}
        self._rows: list[dict[str, Any]] = []
        self._requests: deque[RequestRecord] = deque(maxlen=max_requests_kept)
        self._log_errors: deque[LogError] = deque(maxlen=max_requests_kept)
        self.ingested_total = 0
        self.type_errors_total = 0
        self._checker_cache: dict[int, tuple[Mapping[str, str], dict[str, Any]]] = {}

    # -- inspection

    def reset(self) -> None:
        """Forget rows, requests and tokens; clear every fault."""
        self.faults.clear()
        self.issued.clear()
        self._rows = []
        self._requests.clear()
        self._log_errors.clear()
        self.ingested_total = 0
        self.type_errors_total = 0

    def rows(self, stream: str | None = None) -> list[dict[str, Any]]:
        """Ingested rows in arrival order (each with `_dcr` and `_stream`)."""
        return [r for r in self._rows if stream is None or r["_stream"] == stream]

    def log_errors(self) -> list[LogError]:
        """Values nulled because they did not fit their column's declared type (DCRLogErrors)."""
        return list(self._log_errors)

    @property
    def requests(self) -> list[RequestRecord]:
        return list(self._requests)

    def calls(self) -> list[RequestRecord]:
        return [r for r in self._requests if r.kind == "ingest"]

    def token_requests(self) -> list[RequestRecord]:
        return [r for r in self._requests if r.kind == "token"]

    def expire_tokens(self) -> None:
        """Every access token issued so far stops being valid (the next call with one: 401)."""
        for issued in self.issued.values():
            issued.expires_at = 0.0

    def state(self, *, with_rows: bool = True) -> dict[str, Any]:
        state: dict[str, Any] = {
            "url": self.url,
            "ingested_total": self.ingested_total,
            "type_errors_total": self.type_errors_total,
            "log_errors": [dataclasses.asdict(e) for e in self._log_errors],
            "requests": [dataclasses.asdict(r) for r in self._requests],
            "faults": self.faults.snapshot(),
            "apps": [{"tenant_id": a.tenant_id, "client_id": a.client_id,
                      "publisher_on": None if a.publisher_on is None else sorted(a.publisher_on)}
                     for a in self.apps.values()],
            "rules": [{"immutable_id": r.immutable_id, "streams": {s: dict(c) for s, c in r.streams.items()}}
                      for r in self.rules.values()],
        }
        if with_rows:
            state["rows"] = self.rows()
        return state

    async def wait_for_rows(self, count: int, *, timeout: float = 10.0, interval: float = 0.01) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self._rows) < count:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{len(self._rows)} rows ingested, {count} awaited")
            await asyncio.sleep(interval)
        return self.rows()

    # -- HTTP

    async def handle(self, request: Request) -> Response:
        path = request.path
        parts = path.strip("/").split("/")
        if len(parts) == 4 and parts[0] == "dataCollectionRules" and parts[2] == "streams":
            if request.method != "POST":
                return azure_error(405, "MethodNotAllowed", f"The requested resource does not support http method "
                                                            f"'{request.method}'.", [("Allow", "POST")])
            return await self._ingest(request, parts[1], parts[3])
        if len(parts) == 4 and parts[1:] == ["oauth2", "v2.0", "token"]:
            return self._token(request, parts[0])
        if len(parts) == 4 and parts[1:] == ["v2.0", ".well-known", "openid-configuration"]:
            self._requests.append(RequestRecord(at=time.time(), kind="discovery", path=path, status=200))
            # The endpoints under the host the client asked for (its certificate names that one).
            host = request.headers.get("host")
            base = f"{self.url.split('://')[0]}://{host}" if host else self.url
            return Response.json(200, openid_configuration(base, parts[0]))
        if path.startswith("/_standin/"):
            return self._control(request)
        return azure_error(404, "NotFound", f"The resource '{path}' was not found.")

    # -- token endpoint

    def _token(self, request: Request, tenant: str) -> Response:
        record = RequestRecord(at=time.time(), kind="token", path=request.path)
        self._requests.append(record)
        response = self._token_answer(request, tenant, record)
        record.status = response.status
        return response

    def _token_answer(self, request: Request, tenant: str, record: RequestRecord) -> Response:
        if request.method != "POST":
            return aad_error(405, "invalid_request", 900561, "The endpoint only accepts POST requests.")
        failure = self.faults._take(self.faults.token_failures)
        if failure is not None:
            record.code = "injected"
            return failure.token_response()
        try:
            text = request.decoded_body().decode("utf-8")
            form = {k: v[-1] for k, v in parse_qs(text, keep_blank_values=True).items()}
        except (BadBody, UnicodeDecodeError):
            return aad_error(400, "invalid_request", 900144, "The request body must contain the following parameter: "
                                                            "'grant_type'.")
        if form.get("grant_type") != "client_credentials":
            record.code = "unsupported_grant_type"
            return aad_error(400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type "
                                                                   f"'{form.get('grant_type', '')}'.")
        if not any(key[0] == tenant for key in self.apps):
            record.code = "invalid_request"
            return aad_error(400, "invalid_request", 90002, f"Tenant '{tenant}' not found.")
        client_id = form.get("client_id", "")
        record.client_id = client_id
        app = self.apps.get((tenant, client_id))
        if app is None:
            record.code = "unauthorized_client"
            return aad_error(400, "unauthorized_client", 700016, f"Application with identifier '{client_id}' was not "
                                                                 f"found in the directory '{tenant}'.")
        scope = form.get("scope", "")
        if not scope:
            record.code = "invalid_scope"
            return aad_error(400, "invalid_request", 90014, "The required field 'scope' is missing from the "
                                                           "credential.")
        if scope not in MONITOR_SCOPES:
            record.code = "invalid_scope"
            return aad_error(400, "invalid_scope", 1002012, f"The provided value for scope {scope} is not valid.")
        refused = self._credential_refused(app, form, request.path)
        if refused is not None:
            record.code = "invalid_client"
            return refused
        token = "standin." + secrets.token_urlsafe(32)
        lifetime = int(self.token_lifetime_seconds)
        self.issued[token] = Issued(client_id, tenant, scope, time.time() + self.token_lifetime_seconds)
        return Response.json(200, {"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime,
                                   "access_token": token})

    @staticmethod
    def _credential_refused(app: AppRegistration, form: dict[str, str], path: str) -> Response | None:
        if "client_secret" in form:
            if form["client_secret"] in app.secrets:
                return None
            return aad_error(401, "invalid_client", 7000215, "Invalid client secret provided. Ensure the secret being "
                                                             "sent in the request is the client secret value, not "
                                                             "the client secret ID.")
        assertion = form.get("client_assertion")
        if assertion is None:
            return aad_error(401, "invalid_client", 7000218, "The request body must contain the following parameter: "
                                                             "'client_assertion' or 'client_secret'.")
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            return aad_error(400, "invalid_request", 50027, "Invalid client_assertion_type.")
        if assertion in app.federated_tokens:
            return None
        if app.federated_tokens and not app.certificates:  # a projected token that is no longer current
            return aad_error(401, "invalid_client", 700024, "Client assertion is not within its valid time range.")
        try:
            verify_assertion(assertion, app.certificates, client_id=app.client_id, token_path=path)
        except AssertionRefused as refused:
            return aad_error(401, "invalid_client", refused.number, refused.text)
        return None

    # -- the Logs Ingestion API

    async def _ingest(self, request: Request, dcr_id: str, stream: str) -> Response:
        record = RequestRecord(at=time.time(), kind="ingest", path=request.path, gzip=request.gzipped)
        self._requests.append(record)
        faults = self.faults
        drop_after = False
        if faults.drops:
            drop_after = faults.drops.popleft()
            record.dropped = True
            if not drop_after:
                raise DropConnection
        failure = faults._take(faults.failures)
        if failure is not None:
            response = failure.ingestion_response()
            record.code = failure.code or "injected"
            record.retry_after = None if failure.retry_after is None else str(failure.retry_after)
        else:
            response = self._ingest_answer(request, dcr_id, stream, record)
        record.status = response.status
        if faults.delay_seconds > 0:
            await asyncio.sleep(faults.delay_seconds)
        if drop_after:
            raise DropConnection
        return response

    def _ingest_answer(self, request: Request, dcr_id: str, stream: str, record: RequestRecord) -> Response:
        version = request.param("api-version")
        if not version:
            record.code = "MissingApiVersionParameter"
            return azure_error(400, "MissingApiVersionParameter", "The api-version query parameter (?api-version=) "
                                                                  "is required for all requests.")
        if version not in API_VERSIONS:
            record.code = "UnsupportedApiVersion"
            supported = ", ".join(sorted(API_VERSIONS))
            return azure_error(400, "UnsupportedApiVersion", f"The HTTP resource does not support the API version "
                                                             f"'{version}'. Supported: {supported}.")
        scheme, _, token = request.headers.get("authorization", "").strip().partition(" ")
        issued = self.issued.get(token.strip()) if scheme.lower() == "bearer" else None
        if issued is None or issued.expires_at <= time.time():
            record.code = "InvalidToken"
            return azure_error(401, "InvalidToken", "The access token is missing, invalid or expired.",
                               [("WWW-Authenticate", 'Bearer authorization_uri="https://login.microsoftonline.com/", '
                                                     'error="invalid_token"')])
        record.client_id = issued.client_id
        rule = self.rules.get(dcr_id)
        if rule is None:
            record.code = "NotFound"
            return azure_error(404, "NotFound", f"Data collection rule with immutable Id '{dcr_id}' not found.")
        app = self.apps.get((issued.tenant_id, issued.client_id))
        if app is None or not app.may_ingest(dcr_id):
            record.code = "OperationFailed"
            return azure_error(403, "OperationFailed", f"The authentication token provided does not have access to "
                                                       f"ingest data for the data collection rule with immutable Id "
                                                       f"'{dcr_id}'.")
        columns = rule.streams.get(stream)
        if columns is None:
            record.code = "InvalidStream"
            return azure_error(400, "InvalidStream", f"Stream '{stream}' is not declared in the data collection rule "
                                                     f"with immutable Id '{dcr_id}'.")
        try:
            body = request.decoded_body(self.max_call_bytes)
        except BodyTooLarge:
            record.code = "ContentLengthLimitExceeded"
            return self._too_large(None)
        except BadBody:
            record.code = "InvalidContentEncoding"
            return azure_error(400, "InvalidContentEncoding", "The request body could not be decompressed as gzip.")
        record.body_bytes = len(body)
        if len(body) > self.max_call_bytes:
            record.code = "ContentLengthLimitExceeded"
            return self._too_large(len(body))
        try:
            value = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            record.code = "InvalidJson"
            return azure_error(400, "InvalidJson", f"The request body is not valid JSON: {exc}")
        if not isinstance(value, list):
            # Azure answers 204 to a JSON object and ingests nothing (MicrosoftDocs/azure-docs #106266).
            return Response(204, b"", [("x-ms-request-id", str(uuid.uuid4()))])
        record.rows = len(value)
        if not all(isinstance(row, dict) for row in value):
            record.code = "InvalidPayload"
            return azure_error(400, "InvalidPayload", "Each element of the request body's array must be a JSON "
                                                      "object.")
        rule_hit = self.faults._refused(value)
        if rule_hit is not None:
            record.code = rule_hit.code
            return azure_error(400, rule_hit.code, rule_hit.message)
        self.ingested_total += len(value)
        record.ingested = len(value)
        self._ingested(self._conform(value, columns, dcr_id, stream, record) if columns else value, dcr_id, stream)
        return Response(204, b"", [("x-ms-request-id", str(uuid.uuid4()))])

    def _ingested(self, rows: list[dict[str, Any]], dcr_id: str, stream: str) -> None:
        """Rows as the table gets them (a subclass may keep less: bench/sentinel_standin.py)."""
        if self.keep_rows:
            self._rows.extend({**row, "_dcr": dcr_id, "_stream": stream} for row in rows)

    def _conform(self, rows: list[dict[str, Any]], columns: Mapping[str, str], dcr_id: str, stream: str,
                 record: RequestRecord) -> list[dict[str, Any]]:
        """The rows as the stream declaration lets them through, as Azure does: a column the
        stream does not declare is dropped; a value that does not fit its declared type is
        null (left out here) and logged (`log_errors`, Azure's DCRLogErrors); the call is
        answered 204 either way. (Azure may convert some values instead, e.g. a number sent
        as text: the stand-in is stricter, so that a sink whose rows drift from the
        declaration fails its tests.)"""
        checkers = self._checkers(columns)
        conformed = []
        for index, row in enumerate(rows):
            kept: dict[str, Any] = {}
            for name, item in row.items():
                check = checkers.get(name, _UNDECLARED)
                if check is _UNDECLARED:
                    record.undeclared += 1
                elif item is None or check is None or check(item):
                    kept[name] = item
                else:
                    record.type_errors += 1
                    self.type_errors_total += 1
                    self._log_errors.append(LogError(dcr_id, stream, name, columns[name], repr(item)[:200], index))
            conformed.append(kept)
        return conformed

    def _checkers(self, columns: Mapping[str, str]) -> dict[str, Any]:
        """Per declared column, its type's checker (CHECKERS), built once per declaration."""
        key = id(columns)
        found = self._checker_cache.get(key)
        if found is None or found[0] is not columns:
            found = (columns, {name: CHECKERS.get(kind, _never) for name, kind in columns.items()})
            self._checker_cache[key] = found
        return found[1]

    def _too_large(self, size: int | None) -> Response:
        provided = f" Provided: {size} bytes." if size is not None else ""
        return azure_error(413, "ContentLengthLimitExceeded",
                           f"Maximum allowed content length: {self.max_call_bytes} bytes (1 MB).{provided}")

    # -- control

    def _control(self, request: Request) -> Response:
        path = request.path
        if path == "/_standin/state" and request.method == "GET":
            with_rows = (request.param("rows") or "true").lower() not in ("false", "0", "no")
            return Response.json(200, self.state(with_rows=with_rows))
        if path == "/_standin/reset" and request.method == "POST":
            self.reset()
            return Response.json(200, {"reset": True})
        if path == "/_standin/expire_tokens" and request.method == "POST":
            self.expire_tokens()
            return Response.json(200, {"expired": len(self.issued)})
        if path == "/_standin/faults" and request.method == "POST":
            try:
                spec = orjson.loads(request.decoded_body()) if request.body.strip() else {}
                self.faults.apply(spec)
            except (ValueError, BadBody) as exc:
                return Response.json(400, {"error": str(exc)})
            return Response.json(200, {"faults": self.faults.snapshot()})
        return Response.json(404, {"error": f"no {request.method} {path}"})
