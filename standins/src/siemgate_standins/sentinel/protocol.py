"""Microsoft Entra ID's token endpoint and the Azure Monitor Logs Ingestion API on the wire:
paths, the registrations and rules the stand-in knows, its error shapes, and client assertions."""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from siemgate_standins.http_server import Response

DEFAULT_TENANT = "00000000-0000-0000-0000-0000000000aa"
API_VERSIONS = frozenset({"2023-01-01", "2021-11-01-preview"})
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# Microsoft: "Maximum size of API call: 1 MB, both compressed and uncompressed data".
MAX_CALL_BYTES = 1_048_576
# The scopes Azure Monitor's ingestion takes tokens for (each cloud; azure-identity sends `//.default`).
MONITOR_SCOPES = frozenset(
    f"https://monitor.{suffix}{slash}.default"
    for suffix in ("azure.com", "azure.us", "azure.cn") for slash in ("/", "//")
)
CLOCK_SKEW_SECONDS = 300
_JSON = [("Content-Type", "application/json; charset=utf-8")]


@dataclass
class AppRegistration:
    """An app registration (service principal) in a tenant, and the credentials it accepts."""

    client_id: str
    tenant_id: str = DEFAULT_TENANT
    secrets: tuple[str, ...] = ()
    # PEM certificates whose keys may sign client assertions (RS256, matched by `x5t`).
    certificates: tuple[bytes, ...] = ()
    # Client assertions accepted as they are: the projected service-account tokens of a
    # federated credential (AKS workload identity). Tests replace them to model rotation.
    federated_tokens: tuple[str, ...] = ()
    # DCR immutable ids it holds `Monitoring Metrics Publisher` on; None: every DCR.
    publisher_on: frozenset[str] | None = None

    def may_ingest(self, dcr: str) -> bool:
        return self.publisher_on is None or dcr in self.publisher_on


@dataclass
class DataCollectionRule:
    """A DCR: its immutable id and its stream declarations (stream -> {column: type})."""

    immutable_id: str
    streams: Mapping[str, Mapping[str, str]] = field(default_factory=dict)


# A stream declaration's column types (Azure Monitor's: string, int, long, real, boolean,
# datetime, dynamic; guid for the tables).
COLUMN_TYPES = frozenset({"string", "int", "long", "real", "boolean", "datetime", "dynamic", "guid"})


def conforms(value: object, column_type: str) -> bool:
    """Whether a JSON value is one of `column_type` as the stream declares it (null always is)."""
    if value is None or column_type == "dynamic":
        return True
    if column_type == "string":
        return isinstance(value, str)
    if column_type == "boolean":
        return isinstance(value, bool)
    if column_type in ("int", "long"):
        bits = 31 if column_type == "int" else 63
        return isinstance(value, int) and not isinstance(value, bool) and -(2 ** bits) <= value < 2 ** bits
    if column_type == "real":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if column_type == "datetime":
        if not isinstance(value, str):
            return False
        try:
            datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            return False
        return True
    if column_type == "guid":
        try:
            uuid.UUID(str(value))
        except ValueError:
            return False
        return isinstance(value, str)
    return False


_INT32, _INT64 = 2 ** 31, 2 ** 63


def _datetime(value: object) -> bool:
    return conforms(value, "datetime")


# Per column type, a fast form of `conforms` for non-null values (None: anything goes).
CHECKERS: dict[str, Callable[[object], bool] | None] = {
    "dynamic": None,
    "string": lambda v: type(v) is str,
    "boolean": lambda v: type(v) is bool,
    "int": lambda v: type(v) is int and -_INT32 <= v < _INT32,
    "long": lambda v: type(v) is int and -_INT64 <= v < _INT64,
    "real": lambda v: type(v) is float or type(v) is int,
    "datetime": _datetime,
    "guid": lambda v: conforms(v, "guid"),
}


def stream_declarations(template: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """The stream declarations (stream -> {column: type}) of the data collection rules in an ARM
    template (deploy/azure/sentinel.json)."""
    streams: dict[str, dict[str, str]] = {}
    for resource in template.get("resources", ()):
        if resource.get("type") != "Microsoft.Insights/dataCollectionRules":
            continue
        for stream, declaration in resource.get("properties", {}).get("streamDeclarations", {}).items():
            columns = {str(c["name"]): str(c["type"]).lower() for c in declaration.get("columns", ())}
            unknown = sorted(set(columns.values()) - COLUMN_TYPES)
            if unknown:
                raise ValueError(f"stream {stream}: unknown column types {unknown}")
            streams[str(stream)] = columns
    return streams


@dataclass
class Issued:
    """An access token the stand-in issued."""

    client_id: str
    tenant_id: str
    scope: str
    expires_at: float  # time.time()


def azure_error(status: int, code: str, message: str, headers: list[tuple[str, str]] | None = None) -> Response:
    """The Logs Ingestion API's error answer: `{"error": {"code": ..., "message": ...}}`."""
    return Response(status, orjson.dumps({"error": {"code": code, "message": message}}),
                    [*_JSON, ("x-ms-request-id", str(uuid.uuid4())), *(headers or [])])


def aad_error(status: int, error: str, number: int, text: str,
              headers: list[tuple[str, str]] | None = None) -> Response:
    """Entra ID's OAuth error answer, `error_description` starting with the AADSTS number."""
    trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
    moment = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime())
    body = {"error": error,
            "error_description": f"AADSTS{number}: {text} Trace ID: {trace} Correlation ID: {correlation} "
                                 f"Timestamp: {moment}",
            "error_codes": [number], "timestamp": moment, "trace_id": trace, "correlation_id": correlation}
    return Response(status, orjson.dumps(body), [*_JSON, *(headers or [])])


def thumbprint(pem: bytes) -> str:
    """A certificate's `x5t`: the base64url SHA-1 of its DER form."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    return _b64url(hashlib.sha1(der, usedforsecurity=False).digest())


class AssertionRefused(Exception):
    def __init__(self, number: int, text: str) -> None:
        super().__init__(text)
        self.number = number
        self.text = text


def verify_assertion(assertion: str, certificates: Iterable[bytes], *, client_id: str, token_path: str,
                     now: float | None = None) -> None:
    """Check a JWT client assertion as Entra ID does: RS256 signed by one of `certificates`
    (found by its `x5t`), `aud` the token endpoint, `iss` = `sub` = the client id, within its
    validity (with clock skew). Raises AssertionRefused."""
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    parts = assertion.split(".")
    if len(parts) != 3:
        raise AssertionRefused(50027, "JWT token is invalid or malformed.")
    try:
        header = json.loads(_unb64url(parts[0]))
        claims = json.loads(_unb64url(parts[1]))
        signature = _unb64url(parts[2])
    except (ValueError, UnicodeDecodeError):
        raise AssertionRefused(50027, "JWT token is invalid or malformed.") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise AssertionRefused(50027, "JWT token is invalid or malformed.")
    if header.get("alg") != "RS256":
        raise AssertionRefused(5002738, f"Invalid JWT token. '{header.get('alg')}' is not a supported signature "
                                        "algorithm.")
    wanted = header.get("x5t")
    key = None
    for pem in certificates:
        if thumbprint(pem) == wanted:
            key = x509.load_pem_x509_certificate(pem).public_key()
            break
    if key is None or not isinstance(key, rsa.RSAPublicKey):
        raise AssertionRefused(700027, f"The certificate with identifier used to sign the client assertion is not "
                                       f"registered on application. [Reason - The key was not found., Thumbprint "
                                       f"of key used by client: '{wanted}']")
    try:
        key.verify(signature, f"{parts[0]}.{parts[1]}".encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        raise AssertionRefused(700027, "Client assertion failed signature validation.") from None
    audience = str(claims.get("aud") or "")
    if not audience.endswith(token_path):
        raise AssertionRefused(700212, f"No matching federated identity record found for presented assertion "
                                       f"audience '{audience}'.")
    if claims.get("iss") != client_id or claims.get("sub") != client_id:
        raise AssertionRefused(700021, "Client assertion application identifier doesn't match 'client_id' "
                                       "parameter.")
    moment = now if now is not None else time.time()
    exp, nbf = claims.get("exp"), claims.get("nbf", 0)
    if not isinstance(exp, int | float) or not isinstance(nbf, int | float) \
            or exp + CLOCK_SKEW_SECONDS < moment or nbf - CLOCK_SKEW_SECONDS > moment:
        raise AssertionRefused(700024, "Client assertion is not within its valid time range.")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def openid_configuration(base: str, tenant: str) -> dict[str, Any]:
    """What MSAL reads before its first token request (`/{tenant}/v2.0/.well-known/openid-configuration`)."""
    root = f"{base}/{tenant}"
    return {
        "token_endpoint": f"{root}/oauth2/v2.0/token",
        "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
        "device_authorization_endpoint": f"{root}/oauth2/v2.0/devicecode",
        "issuer": f"{base}/{tenant}/v2.0",
        "jwks_uri": f"{base}/{tenant}/discovery/v2.0/keys",
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "tenant_region_scope": "WW",
        "cloud_instance_name": "standin",
    }
