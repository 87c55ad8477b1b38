"""The admin token, login sessions, CSRF tokens and the same-origin check.

- The JSON API takes `Authorization: Bearer <admin.token>`, and so does the page (for curl).
- In a browser, the login form posts the token once; the answer sets a session cookie
  (HttpOnly, SameSite=Strict, Path=/, Secure when served over https) holding
  `<session id>.<expiry>.<HMAC>`, signed with a key derived from the token by HMAC. The token
  itself never sits in the cookie, a cookie cannot be forged without the token, it expires
  after `SESSION_SECONDS`, and changing the token (a restart) ends every session.
- Sessions live in the server: the cookie names one this process started (at most
  `MAX_SESSIONS`, the oldest ended first), and logout ends it at once; a restart ends them all.
- Wrong tokens are throttled per client address (an IPv6 address by its /64): `LoginThrottle`,
  a token bucket of `BURST` failures refilled one per `REFILL_SECONDS`; past it every attempt,
  right or wrong, is answered 429 with Retry-After, unchecked. Each failure is a WARNING
  (word for word the same, so a flood is summarized once a minute: siemgate.logs).
- Every POST of the page carries a CSRF token, HMAC(key, session id): per session, checked
  with `hmac.compare_digest`, and the request's Origin (or, without one, its Referer) must be
  the admin listener's own origin. SameSite=Strict already keeps the cookie off cross-site
  requests; the CSRF token and the origin check hold even where it would not.

Every comparison of a secret value is `hmac.compare_digest` on bytes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import math
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Final
from urllib.parse import urlsplit

from starlette.requests import Request

from siemgate.secrets import Secret

SESSION_COOKIE: Final = "siemgate_admin"
SESSION_SECONDS: Final = 8 * 3600
MAX_SESSIONS: Final = 1024


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


class AdminAuth:
    def __init__(self, token: Secret, *, clock: Callable[[], float] = time.time) -> None:
        self._token = token.reveal()
        self._key = hmac.new(self._token.encode("utf-8"), b"siemgate admin session key v1", hashlib.sha256).digest()
        self._clock = clock
        self._sessions: dict[str, int] = {}  # live session id -> its expiry (oldest first)

    def _mac(self, purpose: str, value: str) -> str:
        return _b64(hmac.new(self._key, f"{purpose}|{value}".encode(), hashlib.sha256).digest())

    def token_ok(self, candidate: str | None) -> bool:
        return candidate is not None and _same(candidate, self._token)

    def bearer_ok(self, authorization: str | None) -> bool:
        """`Authorization: Bearer <token>`."""
        if not authorization:
            return False
        scheme, _, value = authorization.partition(" ")
        return scheme.lower() == "bearer" and self.token_ok(value.strip())

    def new_session(self) -> str:
        """A new session (live until it expires or ends) and its cookie value."""
        now = self._clock()
        for sid, expires in list(self._sessions.items()):
            if expires <= now:
                del self._sessions[sid]
        while len(self._sessions) >= MAX_SESSIONS:
            del self._sessions[next(iter(self._sessions))]
        sid, expires = secrets.token_urlsafe(18), int(now) + SESSION_SECONDS
        self._sessions[sid] = expires
        payload = f"{sid}.{expires}"
        return f"{payload}.{self._mac('session', payload)}"

    def session_id(self, cookie: str | None) -> str | None:
        """The session id of a valid, live, unexpired cookie; None otherwise."""
        if not cookie or cookie.count(".") != 2:
            return None
        sid, expires, mac = cookie.split(".")
        if not _same(mac, self._mac("session", f"{sid}.{expires}")):
            return None
        try:
            if int(expires) <= self._clock():
                return None
        except ValueError:
            return None
        if self._sessions.get(sid) != int(expires):
            return None  # ended (logout, or a restart), or never started here
        return sid

    def end_session(self, session_id: str) -> None:
        """Logout: the session's cookie stops working at once."""
        self._sessions.pop(session_id, None)

    def csrf_token(self, session_id: str) -> str:
        return self._mac("csrf", session_id)

    def csrf_ok(self, session_id: str, candidate: str | None) -> bool:
        return candidate is not None and _same(candidate, self.csrf_token(session_id))


class LoginThrottle:
    """Failed logins per client: a token bucket of `BURST` failures per address (an IPv6
    address by its /64), refilled one per `REFILL_SECONDS`; `MAX_CLIENTS` addresses tracked
    (the longest quiet forgotten first)."""

    BURST: Final = 5
    REFILL_SECONDS: Final = 6.0
    MAX_CLIENTS: Final = 4096

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        # client -> (failures still allowed, at time)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    @staticmethod
    def client_key(host: str | None) -> str:
        if not host:
            return "unknown"
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return host
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is None:
            return str(ipaddress.IPv6Network((address, 64), strict=False))
        return str(address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else address)

    def _tokens(self, key: str) -> float:
        now = self._clock()
        tokens, at = self._buckets.get(key, (float(self.BURST), now))
        return min(float(self.BURST), tokens + (now - at) / self.REFILL_SECONDS)

    def retry_after(self, key: str) -> int:
        """0 when `key` may try a token now; else the seconds until it may."""
        tokens = self._tokens(key)
        return 0 if tokens >= 1 else max(1, math.ceil((1 - tokens) * self.REFILL_SECONDS))

    def failed(self, key: str) -> None:
        tokens = self._tokens(key) - 1
        self._buckets.pop(key, None)
        self._buckets[key] = (tokens, self._clock())
        while len(self._buckets) > self.MAX_CLIENTS:
            self._buckets.popitem(last=False)


def own_origin(request: Request) -> str:
    """The origin the browser reached the admin listener at (scheme://host[:port])."""
    return f"{request.url.scheme}://{request.url.netloc}".lower()


def same_origin(request: Request) -> bool:
    """Origin, or without it Referer, names this listener. Neither: refused."""
    expected = own_origin(request)
    origin = request.headers.get("origin")
    if origin is not None:
        return origin.lower() == expected
    referer = request.headers.get("referer")
    if not referer:
        return False
    parts = urlsplit(referer)
    return f"{parts.scheme}://{parts.netloc}".lower() == expected
