"""SASL OAUTHBEARER tokens for Kafka: an OAuth 2.0 client-credentials grant, or Amazon MSK IAM.

aiokafka asks its `sasl_oauth_token_provider` for a token on every new broker connection.
These providers cache the token and replace it once `refresh_fraction` of its lifetime has
passed, so a connection opened at any moment carries a token that is still valid for a while;
if the refresh fails, the old token is used as long as it has not expired (an identity
provider's blip does not cut the bus), and the failure is logged.

The token never appears in logs or exception messages.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import ssl
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx
import orjson
from aiokafka.abc import AbstractTokenProvider

from siemgate.config import KafkaOAuthConfig
from siemgate.errors import BusUnavailable

log = logging.getLogger("siemgate.bus.kafka_oauth")

Clock = Callable[[], float]


class _CachingProvider(AbstractTokenProvider):  # type: ignore[misc]  # aiokafka is untyped
    """The cache and refresh policy; subclasses fetch (token, seconds it stays valid)."""

    def __init__(self, config: KafkaOAuthConfig, *, clock: Clock = time.monotonic) -> None:
        self._config = config
        self._clock = clock
        self._token: str | None = None
        self._refresh_at = 0.0
        self._expires_at = 0.0
        self._lock = asyncio.Lock()
        self.fetches = 0  # tokens obtained, for tests and the logs

    async def token(self) -> str:
        if self._token is not None and self._clock() < self._refresh_at:
            return self._token
        async with self._lock:
            now = self._clock()
            if self._token is not None and now < self._refresh_at:
                return self._token
            try:
                token, lifetime = await self._fetch()
            except BusUnavailable as exc:
                if self._token is not None and now < self._expires_at:
                    log.warning("could not refresh the Kafka OAuth token; using the current one until it expires",
                                extra={"error": str(exc), "expires_in_seconds": round(self._expires_at - now)})
                    return self._token
                raise
            now = self._clock()
            self._token = token
            self._expires_at = now + lifetime
            self._refresh_at = now + lifetime * self._config.refresh_fraction
            self.fetches += 1
            log.debug("Kafka OAuth token obtained", extra={"lifetime_seconds": round(lifetime)})
            return token

    def extensions(self) -> dict[str, str]:
        return dict(self._config.extensions)

    async def _fetch(self) -> tuple[str, float]:
        raise NotImplementedError


class OidcTokenProvider(_CachingProvider):
    """RFC 6749 client credentials at `token_endpoint`, the client authenticated with HTTP Basic
    (`client_auth: basic`, what Kafka's own clients send) or in the form (`post`)."""

    async def _fetch(self) -> tuple[str, float]:
        config = self._config
        assert config.token_endpoint and config.client_id and config.client_secret  # KafkaOAuthConfig
        form = {"grant_type": "client_credentials"}
        if config.scope:
            form["scope"] = config.scope
        if config.audience:
            form["audience"] = config.audience
        headers = {"Accept": "application/json"}
        secret = config.client_secret.reveal()
        if config.client_auth == "basic":
            pair = f"{quote(config.client_id, safe='')}:{quote(secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        else:
            form["client_id"] = config.client_id
            form["client_secret"] = secret
        endpoint = config.token_endpoint
        verify: ssl.SSLContext | bool = True
        if config.ca_file:
            verify = ssl.create_default_context(cafile=config.ca_file)
        try:
            async with httpx.AsyncClient(verify=verify, timeout=config.timeout_seconds) as client:
                response = await client.post(endpoint, data=form, headers=headers)
        except httpx.HTTPError as exc:
            raise BusUnavailable(f"cannot reach the Kafka OAuth token endpoint {endpoint}: "
                                 f"{type(exc).__name__}: {exc}. Check bus.kafka.security.oauth.token_endpoint, "
                                 "DNS and the egress NetworkPolicy") from None
        body = _json_object(response.content)
        if response.status_code != 200:
            error = str(body.get("error", "")) or f"HTTP {response.status_code}"
            description = str(body.get("error_description", ""))[:300]
            hint = ("check bus.kafka.security.oauth.client_id and client_secret"
                    if error in ("invalid_client", "unauthorized_client") or response.status_code == 401
                    else "check bus.kafka.security.oauth (scope, audience, token_endpoint)")
            raise BusUnavailable(f"the Kafka OAuth token endpoint {endpoint} refused the client-credentials "
                                 f"grant for client {config.client_id!r}: {error}"
                                 f"{': ' + description if description else ''}; {hint}")
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise BusUnavailable(f"the Kafka OAuth token endpoint {endpoint} answered 200 without an access_token")
        lifetime = body.get("expires_in", 3600)
        try:
            seconds = float(lifetime)
        except (TypeError, ValueError):
            seconds = 3600.0
        return token, max(seconds, 1.0)


class MskIamTokenProvider(_CachingProvider):
    """Amazon MSK IAM: a SigV4-presigned `kafka-cluster:Connect` URL made by AWS's own signer
    (aws-msk-iam-sasl-signer-python, the `msk` extra), in a thread: it may call STS."""

    async def _fetch(self) -> tuple[str, float]:
        token, expiry_ms = await asyncio.to_thread(self._generate)
        return token, max(expiry_ms / 1000.0 - time.time(), 1.0)

    def _generate(self) -> tuple[str, int]:
        config = self._config
        try:
            from aws_msk_iam_sasl_signer import MSKAuthTokenProvider
        except ImportError:
            raise BusUnavailable("provider aws_msk_iam needs AWS's signer: pip install 'siemgate[msk]' "
                                 "(the container image includes it)") from None
        try:
            if config.aws_role_arn:
                result = MSKAuthTokenProvider.generate_auth_token_from_role_arn(config.aws_region, config.aws_role_arn)
            else:
                result = MSKAuthTokenProvider.generate_auth_token(config.aws_region)
        except Exception as exc:  # noqa: BLE001 - botocore raises many unrelated types; each means "no token"
            raise BusUnavailable(f"could not sign an MSK IAM token for region {config.aws_region}: "
                                 f"{type(exc).__name__}: {exc}. Check the pod's AWS identity (IRSA or EKS Pod "
                                 "Identity) and bus.kafka.security.oauth.aws_role_arn") from None
        token, expiry_ms = result
        return str(token), int(expiry_ms)


def token_provider(config: KafkaOAuthConfig) -> _CachingProvider:
    if config.provider == "aws_msk_iam":
        return MskIamTokenProvider(config)
    return OidcTokenProvider(config)


def _json_object(content: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(content)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}
