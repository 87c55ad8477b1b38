"""Microsoft Entra ID access tokens by the OAuth 2.0 client-credentials grant, for the sinks
that write to Azure (the `sentinel` sink).

    POST {authority_host}/{tenant_id}/oauth2/v2.0/token
    grant_type=client_credentials&client_id=...&scope=https://monitor.azure.com/.default
      &client_secret=...                                          (a client secret), or
      &client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer
      &client_assertion=<JWT>                                     (a certificate, or a federated token)

Three credentials, exactly one per sink:

- **client secret**;
- **certificate**: a PEM file holding the app registration's certificate and its RSA private
  key; each token request carries a fresh JWT client assertion (header `alg: RS256`, `x5t`: the
  certificate's SHA-1 thumbprint, base64url; claims `aud` = the token URL, `iss` = `sub` =
  the client id, `jti`, `nbf`, `iat`, `exp` 10 minutes later) signed with the key;
- **federated workload identity** (AKS): the client assertion is the Kubernetes service
  account token the kubelet projects into the pod (`AZURE_FEDERATED_TOKEN_FILE`), read again
  for every token request, since the kubelet rotates it (it lives about an hour).

Files are read at each token request (in a worker thread), so rotated certificates and tokens
are picked up without a restart.

The access token is cached and refreshed `refresh_before_seconds` (default 300) before it
expires (or at half its life, when it lives less than twice that). If a refresh fails while
the cached token is still valid, the cached one is used and the refresh is tried again on
the next request. Tokens never appear in logs or errors.

Answers of the token endpoint: 200 with `access_token` and `expires_in`; 400/401 with
`{"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret ..."}`
and the like: `SinkAuthError` (an operator must fix the tenant, client id, credential or
scope: the sink pauses, nothing is dropped); 429 and 5xx, timeouts and connection errors:
`RetryableSinkError` (honouring `Retry-After`).

Why not azure-identity (MSAL): the sinks speak HTTP through one client (httpx, async, the
sink's TLS settings); azure-identity's async credentials need aiohttp and bring MSAL, PyJWT
and their own transport, all for one form POST and one JWT signature. The certificate
credential needs `cryptography` for the RS256 signature, imported only when configured.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

import orjson

from siemgate.errors import RetryableSinkError, SinkAuthError
from siemgate.forwarders.sinks.base import TlsSettings
from siemgate.forwarders.sinks.http import HttpEndpoint, short_body
from siemgate.secrets import Secret

log = logging.getLogger("siemgate.forward.entra")

ASSERTION_TYPE: Final = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# How long a certificate's client assertion is valid (Entra accepts up to 10 minutes' skew).
ASSERTION_LIFETIME_SECONDS: Final = 600


@dataclass(frozen=True, slots=True)
class EntraApp:
    """Who asks for tokens: the app registration (or user-assigned identity) and its one credential."""

    authority_host: str  # https://login.microsoftonline.us, without a trailing slash
    tenant_id: str
    client_id: str
    scope: str
    client_secret: Secret | None = None
    certificate: str | None = None  # PEM: the certificate and its RSA private key
    certificate_password: Secret | None = None
    federated_token_file: str | None = None

    @property
    def token_path(self) -> str:
        return f"/{quote(self.tenant_id, safe='')}/oauth2/v2.0/token"

    @property
    def token_url(self) -> str:
        return self.authority_host + self.token_path

    @property
    def credential_kind(self) -> str:
        if self.client_secret is not None:
            return "client secret"
        if self.certificate is not None:
            return "certificate"
        return "federated token"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def certificate_assertion(pem: bytes, password: bytes | None, client_id: str, audience: str,
                          now: float | None = None) -> str:
    """A JWT client assertion signed with the certificate's RSA key (RS256, `x5t` header).
    Raises ValueError when the PEM holds no certificate or no RSA private key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    try:
        certificate = x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise ValueError(f"no PEM certificate in it ({exc})") from None
    try:
        key = serialization.load_pem_private_key(pem, password)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"no usable PEM private key in it ({exc})") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("its private key is not an RSA key (Entra ID client assertions are signed RS256)")
    thumbprint = hashlib.sha1(certificate.public_bytes(serialization.Encoding.DER), usedforsecurity=False).digest()
    issued = int(now if now is not None else time.time())
    header = {"alg": "RS256", "typ": "JWT", "x5t": _b64url(thumbprint)}
    claims = {"aud": audience, "iss": client_id, "sub": client_id, "jti": str(uuid.uuid4()),
              "nbf": issued, "iat": issued, "exp": issued + ASSERTION_LIFETIME_SECONDS}
    signing_input = f"{_b64url(orjson.dumps(header))}.{_b64url(orjson.dumps(claims))}".encode("ascii")
    signature = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input.decode('ascii')}.{_b64url(signature)}"


class EntraTokens:
    """The access token of one app for one scope: cached, refreshed before it expires."""

    def __init__(self, app: EntraApp, *, sink: str, tls: TlsSettings, timeout_seconds: float,
                 refresh_before_seconds: float = 300.0) -> None:
        self.app = app
        self._sink = sink
        self._refresh_before = refresh_before_seconds
        self._endpoint = HttpEndpoint(name=sink, url=app.authority_host, tls=tls, timeout_seconds=timeout_seconds,
                                      headers={"Accept": "application/json", "User-Agent": "siemgate"}, gzip=False)
        self._token: str | None = None
        self._refresh_at = 0.0  # time.monotonic()
        self._expires_at = 0.0
        self._lock = asyncio.Lock()
        self.fetched = 0  # token requests answered with a token (tests, `check`)

    @property
    def expires_in(self) -> float:
        """Seconds the cached token is still valid (0 without one)."""
        return max(0.0, self._expires_at - time.monotonic()) if self._token else 0.0

    async def token(self) -> str:
        """A valid access token: the cached one, or a new one when it is due for refresh."""
        token = self._token
        if token is not None and time.monotonic() < self._refresh_at:
            return token
        async with self._lock:
            if self._token is not None and time.monotonic() < self._refresh_at:
                return self._token
            return await self._refresh(keep_valid=True)

    async def refresh(self, stale: str) -> str:
        """A new token, `stale` having been refused (a 401): unless another request already
        replaced it meanwhile, the cache is dropped and a token requested."""
        async with self._lock:
            if self._token is not None and self._token != stale:
                return self._token
            self._token = None
            return await self._refresh(keep_valid=False)

    async def _refresh(self, *, keep_valid: bool) -> str:
        try:
            token, lifetime = await self._request()
        except (RetryableSinkError, SinkAuthError) as exc:
            if keep_valid and self._token is not None and time.monotonic() < self._expires_at:
                log.warning("cannot refresh the Entra ID token yet; the current one is still valid",
                            extra={"sink": self._sink, "error": str(exc),
                                   "expires_in_seconds": round(self.expires_in)})
                self._refresh_at = time.monotonic() + min(30.0, self.expires_in / 2)
                return self._token
            raise
        now = time.monotonic()
        self._token = token
        self._expires_at = now + lifetime
        self._refresh_at = now + max(lifetime - self._refresh_before, lifetime / 2)
        self.fetched += 1
        log.debug("Entra ID token fetched", extra={"sink": self._sink, "expires_in_seconds": lifetime})
        return token

    async def _form(self) -> dict[str, str]:
        app = self.app
        form = {"grant_type": "client_credentials", "client_id": app.client_id, "scope": app.scope}
        if app.client_secret is not None:
            form["client_secret"] = app.client_secret.reveal()
            return form
        form["client_assertion_type"] = ASSERTION_TYPE
        if app.certificate is not None:
            path = app.certificate
            try:
                pem = await asyncio.to_thread(Path(path).read_bytes)
                password = app.certificate_password.reveal().encode() if app.certificate_password else None
                form["client_assertion"] = certificate_assertion(pem, password, app.client_id, app.token_url)
            except (OSError, ValueError) as exc:
                raise SinkAuthError(f"sinks[{self._sink}].certificate {path}: cannot sign a client assertion: "
                                    f"{exc}") from None
            return form
        path = app.federated_token_file or ""
        try:
            assertion = (await asyncio.to_thread(Path(path).read_text, "utf-8")).strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise SinkAuthError(f"sinks[{self._sink}].federated_token_file {path}: cannot read the projected "
                                f"service account token: {exc}") from None
        if not assertion:
            raise SinkAuthError(f"sinks[{self._sink}].federated_token_file {path} is empty")
        form["client_assertion"] = assertion
        return form

    async def _request(self) -> tuple[str, float]:
        app = self.app
        body = _urlencode(await self._form())
        response = await self._endpoint.request(
            "POST", app.token_path, body, headers={"Content-Type": "application/x-www-form-urlencoded"})
        answer = _json(response.content)
        status = response.status_code
        if status == 200:
            token, lifetime = answer.get("access_token"), _seconds(answer.get("expires_in"))
            if isinstance(token, str) and token and lifetime is not None and lifetime > 0:
                return token, lifetime
            raise RetryableSinkError(f"{app.token_url}: the token endpoint answered 200 without an access_token "
                                     "and expires_in")
        error = str(answer.get("error") or "")
        description = str(answer.get("error_description") or "").strip().splitlines()
        reason = f"{error}: {description[0]}" if error and description else error or short_body(response)
        if status == 429 or status >= 500:
            raise RetryableSinkError(f"{app.token_url}: the token endpoint answered {status} ({reason})",
                                     retry_after=retry_after_seconds(response.headers.get("retry-after")))
        raise SinkAuthError(
            f"{app.token_url}: Entra ID refused the {app.credential_kind} of client {app.client_id} "
            f"(HTTP {status}, {reason}): check sinks[{self._sink}].tenant_id, client_id and its credential "
            f"(and scope {app.scope})")

    async def close(self) -> None:
        await self._endpoint.close()


def retry_after_seconds(value: str | None) -> float | None:
    """An HTTP Retry-After in seconds (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = moment.timestamp() - time.time()
    return max(0.0, seconds) if seconds == seconds else None  # NaN


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and value.strip().isdigit():
        return float(value)
    return None


def _json(content: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(content)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _urlencode(form: dict[str, str]) -> bytes:
    from urllib.parse import urlencode

    return urlencode(form).encode("ascii")


__all__: Sequence[str] = ("ASSERTION_TYPE", "EntraApp", "EntraTokens", "certificate_assertion",
                          "retry_after_seconds")
