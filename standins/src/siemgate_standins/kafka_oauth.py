"""Kafka's SASL OAUTHBEARER, played in front of a broker that does not speak it (Tansu).

    tokens = TokenEndpoint(clients={"siemgate": "s3cret"})       # OAuth 2.0 client credentials
    async with tokens, OAuthBearerGateway(("127.0.0.1", tansu_port), OidcVerifier(tokens)) as gateway:
        ...start Tansu advertising gateway.address; point the client at gateway.address...

`OAuthBearerGateway` is a Kafka listener that requires SASL, as a broker configured with
`sasl.enabled.mechanisms=OAUTHBEARER` does: ApiVersions is answered by the broker behind it;
then SaslHandshake (v0/v1) must name OAUTHBEARER and SaslAuthenticate (v0/v1) must carry an
RFC 7628 client response (`n,,\\x01auth=Bearer <token>\\x01key=value\\x01\\x01`) that the
verifier accepts, else the answer is Kafka's error (33 UNSUPPORTED_SASL_MECHANISM, 58
SASL_AUTHENTICATION_FAILED with the reason) and the connection is closed. Any other request
before authentication closes the connection (34 ILLEGAL_SASL_STATE, as a broker does). After
it, bytes pass both ways unchanged; once the token has expired, the client's next request
closes the connection (a broker with `connections.max.reauth.ms`, to a client that does not
re-authenticate: the client reconnects with a fresh token).

Verifiers: `OidcVerifier` (tokens issued by this module's `TokenEndpoint`, unexpired, the
scope required) and `MskIamVerifier` (Amazon MSK IAM: the token is a base64url SigV4-presigned
`GET https://kafka.<region>.amazonaws.com/?Action=kafka-cluster:Connect` URL; the signature is
recomputed with the secret key of the access key it names, and its date and expiry checked).

Loopback test tooling, not a production proxy or identity provider.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import secrets
import struct
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Self
from urllib.parse import parse_qs, quote, unquote, urlsplit

from siemgate_standins.http_server import HttpStandIn, Request, Response

Address = tuple[str, int]

API_SASL_HANDSHAKE = 17
API_VERSIONS = 18
API_SASL_AUTHENTICATE = 36
UNSUPPORTED_SASL_MECHANISM = 33
ILLEGAL_SASL_STATE = 34
SASL_AUTHENTICATION_FAILED = 58
MAX_FRAME = 100 * 1024 * 1024


class Refused(Exception):
    """A verifier's refusal; the message goes back to the client as Kafka's error message."""


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    expires_at: float  # time.time()


Verifier = Callable[[str, Mapping[str, str]], Principal]


# -- the OAuth 2.0 token endpoint ------------------------------------------------------------


@dataclass(slots=True)
class Issued:
    client_id: str
    scope: str
    expires_at: float


class TokenEndpoint(HttpStandIn):
    """`POST /oauth2/token`, grant_type=client_credentials; the client authenticated with HTTP
    Basic or in the form (RFC 6749 2.3.1). Errors are RFC 6749 5.2 JSON. `fail_next` answers the
    next calls with a 503 (an identity provider's outage)."""

    path = "/oauth2/token"

    def __init__(self, *, clients: Mapping[str, str], scopes: frozenset[str] | None = None,
                 token_lifetime_seconds: float = 3600.0, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host=host, port=port, max_body_bytes=64 * 1024)
        self.clients = dict(clients)
        self.scopes = scopes
        self.token_lifetime_seconds = token_lifetime_seconds
        self.issued: dict[str, Issued] = {}
        self.requests: list[tuple[str, int]] = []  # (client_id or "", status)
        self.fail_next = 0

    @property
    def token_url(self) -> str:
        return self.url + self.path

    async def handle(self, request: Request) -> Response:
        response, client_id = self._answer(request)
        self.requests.append((client_id, response.status))
        return response

    def _answer(self, request: Request) -> tuple[Response, str]:
        if request.path != self.path:
            return Response.json(404, {"error": "not_found"}), ""
        if request.method != "POST":
            return Response.json(405, {"error": "invalid_request"}), ""
        if self.fail_next > 0:
            self.fail_next -= 1
            return Response.json(503, {"error": "temporarily_unavailable"}), ""
        form = {k: v[-1] for k, v in parse_qs(request.body.decode("utf-8", "replace"), keep_blank_values=True).items()}
        if form.get("grant_type") != "client_credentials":
            return _oauth_error(400, "unsupported_grant_type", "only client_credentials"), ""
        client_id, secret = form.get("client_id", ""), form.get("client_secret")
        authorization = request.headers.get("authorization", "")
        if authorization.lower().startswith("basic "):
            try:
                pair = base64.b64decode(authorization[6:].strip(), validate=True).decode("utf-8")
                raw_id, _, raw_secret = pair.partition(":")
            except (ValueError, UnicodeDecodeError):
                return _oauth_error(401, "invalid_client", "malformed Basic credentials"), ""
            client_id, secret = unquote(raw_id), unquote(raw_secret)
        if not client_id or secret is None or self.clients.get(client_id) != secret:
            return _oauth_error(401, "invalid_client", "client authentication failed"), client_id
        scope = form.get("scope", "")
        if self.scopes is not None and scope not in self.scopes:
            return _oauth_error(400, "invalid_scope", f"scope {scope!r} is not known"), client_id
        token = "oidc-standin." + secrets.token_urlsafe(24)
        self.issued[token] = Issued(client_id, scope, time.time() + self.token_lifetime_seconds)
        return Response.json(200, {"access_token": token, "token_type": "Bearer",
                                   "expires_in": int(self.token_lifetime_seconds) or 1}), client_id


def _oauth_error(status: int, error: str, description: str) -> Response:
    headers = [("WWW-Authenticate", 'Basic realm="oauth"')] if status == 401 else []
    return Response.json(status, {"error": error, "error_description": description}, headers)


class OidcVerifier:
    """Accepts unexpired tokens issued by `endpoint` (for `scope`, when given); checks the SASL
    extensions against `required_extensions` (Confluent Cloud's logicalCluster, for one)."""

    def __init__(self, endpoint: TokenEndpoint, *, scope: str | None = None,
                 required_extensions: Mapping[str, str] | None = None) -> None:
        self.endpoint = endpoint
        self.scope = scope
        self.required_extensions = dict(required_extensions or {})

    def __call__(self, token: str, extensions: Mapping[str, str]) -> Principal:
        issued = self.endpoint.issued.get(token)
        if issued is None:
            raise Refused("invalid_token: the token was not issued by the identity provider")
        if issued.expires_at <= time.time():
            raise Refused("invalid_token: the token has expired")
        if self.scope is not None and issued.scope != self.scope:
            raise Refused(f"invalid_scope: the token's scope is {issued.scope!r}")
        for key, value in self.required_extensions.items():
            if extensions.get(key) != value:
                raise Refused(f"invalid_request: extension {key} must be {value!r}")
        return Principal(issued.client_id, issued.expires_at)


class MskIamVerifier:
    """Amazon MSK IAM tokens: `credentials` maps access key ids to secret keys."""

    def __init__(self, *, region: str, credentials: Mapping[str, str]) -> None:
        self.region = region
        self.credentials = dict(credentials)

    def __call__(self, token: str, extensions: Mapping[str, str]) -> Principal:
        try:
            url = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            raise Refused("the token is not a base64url-encoded signed URL") from None
        parts = urlsplit(url)
        host = f"kafka.{self.region}.amazonaws.com"
        if parts.scheme != "https" or parts.netloc != host or parts.path not in ("", "/"):
            raise Refused(f"the signed URL must be https://{host}/")
        pairs = [(k, v[-1]) for k, v in parse_qs(parts.query, keep_blank_values=True).items()]
        query = dict(pairs)
        if query.get("Action") != "kafka-cluster:Connect":
            raise Refused("the signed action must be kafka-cluster:Connect")
        if query.get("X-Amz-Algorithm") != "AWS4-HMAC-SHA256":
            raise Refused("only AWS4-HMAC-SHA256 signatures")
        access_key, _, scope = query.get("X-Amz-Credential", "").partition("/")
        day, region, service, terminator = (scope.split("/") + ["", "", "", ""])[:4]
        if (region, service, terminator) != (self.region, "kafka-cluster", "aws4_request"):
            raise Refused(f"the credential scope must be <date>/{self.region}/kafka-cluster/aws4_request")
        secret = self.credentials.get(access_key)
        if secret is None:
            raise Refused(f"unknown access key {access_key}")
        try:
            signed_at = datetime.strptime(query["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp()
            expires = int(query["X-Amz-Expires"])
        except (KeyError, ValueError):
            raise Refused("X-Amz-Date and X-Amz-Expires are required") from None
        if not query["X-Amz-Date"].startswith(day):
            raise Refused("the credential scope's date is not the signing date")
        if query.get("X-Amz-SignedHeaders") != "host":
            raise Refused("the signed headers must be exactly: host")
        # The canonical query string: every parameter but the signature (User-Agent is appended
        # after signing by AWS's signer and is not part of it).
        signed = sorted((k, v) for k, v in pairs if k not in ("X-Amz-Signature", "User-Agent"))
        canonical_query = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in signed)
        canonical = "\n".join(["GET", "/", canonical_query, f"host:{host}", "", "host",
                               hashlib.sha256(b"").hexdigest()])
        to_sign = "\n".join(["AWS4-HMAC-SHA256", query["X-Amz-Date"], scope,
                             hashlib.sha256(canonical.encode()).hexdigest()])
        key = ("AWS4" + secret).encode()
        for part in (day, region, service, terminator):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, query.get("X-Amz-Signature", "")):
            raise Refused("the signature does not match")
        now = time.time()
        if signed_at > now + 300:
            raise Refused("the signing date is in the future")
        if signed_at + expires <= now:
            raise Refused("the signed URL has expired")
        return Principal(access_key, signed_at + expires)


# -- the Kafka listener ----------------------------------------------------------------------


@dataclass(slots=True)
class Authentication:
    at: float
    ok: bool
    principal: str | None = None
    reason: str | None = None
    extensions: dict[str, str] = field(default_factory=dict)


class OAuthBearerGateway:
    def __init__(self, origin: Address, verifier: Verifier, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.origin = origin
        self.verifier = verifier
        self.host = host
        self.port = port
        self.authentications: list[Authentication] = []
        self.expired_closes = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def accepted(self) -> list[Authentication]:
        return [a for a in self.authentications if a.ok]

    @property
    def refused(self) -> list[Authentication]:
        return [a for a in self.authentications if not a.ok]

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.get_running_loop().create_task(self._connection(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_writer: asyncio.StreamWriter | None = None
        try:
            up_reader, upstream_writer = await asyncio.open_connection(*self.origin)
            expires_at = await self._authenticate(reader, writer, up_reader, upstream_writer)
            if expires_at is None:
                return
            back = asyncio.get_running_loop().create_task(_pipe(up_reader, writer))
            try:
                while True:
                    frame = await _read_frame(reader)
                    if frame is None:
                        return
                    if time.time() >= expires_at:
                        self.expired_closes += 1
                        return
                    upstream_writer.write(frame)
                    await upstream_writer.drain()
            finally:
                back.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                    await back
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            return
        finally:
            for w in (writer, upstream_writer):
                if w is not None:
                    w.close()
                    with contextlib.suppress(ConnectionError, OSError):
                        await w.wait_closed()

    async def _authenticate(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                            up_reader: asyncio.StreamReader, up_writer: asyncio.StreamWriter) -> float | None:
        """The SASL exchange. Returns when the session expires, or None (connection to close)."""
        mechanism_ok = False
        while True:
            frame = await _read_frame(reader)
            if frame is None:
                return None
            api_key, version, correlation, body = _request(frame)
            if api_key == API_VERSIONS:
                up_writer.write(frame)
                await up_writer.drain()
                answer = await _read_frame(up_reader)
                if answer is None:
                    return None
                writer.write(answer)
                await writer.drain()
            elif api_key == API_SASL_HANDSHAKE and version <= 1:
                mechanism = _string(body, 0)[0]
                mechanism_ok = mechanism == "OAUTHBEARER"
                error = 0 if mechanism_ok else UNSUPPORTED_SASL_MECHANISM
                await _respond(writer, correlation,
                               struct.pack(">hi", error, 1) + _encode_string("OAUTHBEARER"))
                if not mechanism_ok:
                    return None
            elif api_key == API_SASL_AUTHENTICATE and version <= 1 and mechanism_ok:
                (size,) = struct.unpack_from(">i", body, 0)
                client_response = body[4:4 + size]
                try:
                    token, extensions = parse_client_response(client_response)
                    principal = self.verifier(token, extensions)
                except Refused as refused:
                    self.authentications.append(Authentication(time.time(), False, reason=str(refused)))
                    await _respond(writer, correlation, _authenticate_answer(
                        version, SASL_AUTHENTICATION_FAILED, f"Authentication failed: {refused}", 0))
                    return None
                self.authentications.append(Authentication(time.time(), True, principal.name,
                                                            extensions=dict(extensions)))
                lifetime_ms = max(0, int((principal.expires_at - time.time()) * 1000))
                await _respond(writer, correlation, _authenticate_answer(version, 0, None, lifetime_ms))
                return principal.expires_at
            else:
                return None  # ILLEGAL_SASL_STATE: a broker closes the connection


def parse_client_response(data: bytes) -> tuple[str, dict[str, str]]:
    """RFC 7628 3.1's initial client response: the bearer token and the extensions."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused("invalid_request: the client response is not UTF-8") from None
    gs2, sep, rest = text.partition("\x01")
    if not sep or not gs2.startswith(("n,", "y,")) or not rest.endswith("\x01\x01"):
        raise Refused("invalid_request: not an RFC 7628 client response")
    fields: dict[str, str] = {}
    for item in rest[:-2].split("\x01"):
        key, eq, value = item.partition("=")
        if not eq or not key.isalpha():
            raise Refused(f"invalid_request: malformed key-value pair {item[:40]!r}")
        if key in fields:
            raise Refused(f"invalid_request: {key} twice")
        fields[key] = value
    auth = fields.pop("auth", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Refused("invalid_request: auth must be 'Bearer <token>'")
    return token, fields


async def _read_frame(reader: asyncio.StreamReader) -> bytes | None:
    try:
        head = await reader.readexactly(4)
    except asyncio.IncompleteReadError:
        return None
    (size,) = struct.unpack(">i", head)
    if size < 0 or size > MAX_FRAME:
        return None
    return head + await reader.readexactly(size)


def _request(frame: bytes) -> tuple[int, int, int, bytes]:
    api_key, version, correlation = struct.unpack_from(">hhi", frame, 4)
    (client_len,) = struct.unpack_from(">h", frame, 12)
    offset = 14 + max(client_len, 0)
    return api_key, version, correlation, frame[offset:]


def _string(data: bytes, offset: int) -> tuple[str, int]:
    (size,) = struct.unpack_from(">h", data, offset)
    end = offset + 2 + size
    return data[offset + 2:end].decode("utf-8", "replace"), end


def _encode_string(text: str) -> bytes:
    raw = text.encode("utf-8")
    return struct.pack(">h", len(raw)) + raw


def _authenticate_answer(version: int, error: int, message: str | None, lifetime_ms: int) -> bytes:
    encoded = struct.pack(">h", -1) if message is None else _encode_string(message)
    answer = struct.pack(">h", error) + encoded + struct.pack(">i", 0)
    if version >= 1:
        answer += struct.pack(">q", lifetime_ms)
    return answer


async def _respond(writer: asyncio.StreamWriter, correlation: int, body: bytes) -> None:
    payload = struct.pack(">i", correlation) + body
    writer.write(struct.pack(">i", len(payload)) + payload)
    await writer.drain()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(256 * 1024):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()
