"""The admin token, login sessions, CSRF tokens and the same-origin check.

- The JSON API takes `Authorization: Bearer <admin.token>`, and so does the page (for curl).
- In a browser, the login form posts the token once; the answer sets a session cookie
  (HttpOnly, SameSite=Strict, Path=/, Secure when served over https) holding
  `<session id>.<expiry>.<HMAC>`, signed with a key derived from the token by HMAC. The token
  itself never sits in the cookie, a cookie cannot be forged without the token, it expires
  after `SESSION_SECONDS`, and changing the token (a restart) ends every session.
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
import secrets
import time
from collections.abc import Callable
from typing import Final
from urllib.parse import urlsplit

from starlette.requests import Request

from siemgate.secrets import Secret

SESSION_COOKIE: Final = "siemgate_admin"
SESSION_SECONDS: Final = 8 * 3600


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


class AdminAuth:
    def __init__(self, token: Secret, *, clock: Callable[[], float] = time.time) -> None:
        self._token = token.reveal()
        self._key = hmac.new(self._token.encode("utf-8"), b"siemgate admin session key v1", hashlib.sha256).digest()
        self._clock = clock

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
        """A new session cookie value."""
        payload = f"{secrets.token_urlsafe(18)}.{int(self._clock()) + SESSION_SECONDS}"
        return f"{payload}.{self._mac('session', payload)}"

    def session_id(self, cookie: str | None) -> str | None:
        """The session id of a valid, unexpired cookie; None otherwise."""
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
        return sid

    def csrf_token(self, session_id: str) -> str:
        return self._mac("csrf", session_id)

    def csrf_ok(self, session_id: str, candidate: str | None) -> bool:
        return candidate is not None and _same(candidate, self.csrf_token(session_id))


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
