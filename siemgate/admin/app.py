"""The admin listener's app: the status page, its login, the Confirm button and the JSON API.

    GET  /                                  the page (session cookie or Bearer), else the login form (401)
    POST /login                             token -> session cookie, back to /
    POST /logout                            ends the browser's session (server-side: its cookie stops working)
    POST /integrations/{name}/confirm       the Confirm button (session + CSRF token + same origin)
    GET  /api/status                        the snapshot as JSON (Bearer only), else 401

See siemgate.admin.auth for how tokens, sessions and CSRF tokens work. Every answer carries
Content-Security-Policy (no script; the page's one stylesheet by nonce), X-Frame-Options
DENY, Cache-Control no-store, nosniff and a same-origin referrer policy: the Origin/Referer
check of the forms needs the browser to send them.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
from typing import Final
from urllib.parse import parse_qs, urlencode

from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from siemgate.admin.auth import SESSION_COOKIE, SESSION_SECONDS, AdminAuth, LoginThrottle, same_origin
from siemgate.admin.confirm import Confirmer, Outcome
from siemgate.admin.page import Flash, login_page, message_page, status_page
from siemgate.admin.status import Status, StatusSources, build_status
from siemgate.config import AdminConfig
from siemgate.errors import SiemgateError

log = logging.getLogger("siemgate.admin")

MAX_FORM_BYTES: Final = 16 * 1024
MAX_FORM_FIELDS: Final = 20
_OUTCOMES: Final = ("confirmed", "failed", "newer-link", "not-pending", "state-error")
_HEADERS: Final = {
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


class SecurityHeaders:
    """Adds `_HEADERS` to every answer (404, 405 and 500 included), keeping a page's own CSP."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in _HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, with_headers)


def _page_csp(nonce: str) -> str:
    return (f"default-src 'none'; style-src 'nonce-{nonce}'; img-src 'self'; form-action 'self'; "
            "frame-ancestors 'none'; base-uri 'none'")


def _html(body: str, nonce: str, status_code: int = 200) -> HTMLResponse:
    response = HTMLResponse(body, status_code=status_code)
    response.headers["Content-Security-Policy"] = _page_csp(nonce)
    return response


class _BadForm(SiemgateError):
    """A form the page would never send (never raised out of this module): `status` and
    `text` are the answer."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


async def _form(request: Request) -> dict[str, str]:
    """An urlencoded form (what the page's forms send), at most MAX_FORM_BYTES and
    MAX_FORM_FIELDS fields."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
        return {}
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise _BadForm(413, "The form is too large.")
    try:
        fields = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True,
                          max_num_fields=MAX_FORM_FIELDS)
    except ValueError:  # more fields than max_num_fields
        raise _BadForm(400, f"The form has more than {MAX_FORM_FIELDS} fields.") from None
    return {key: values[0] for key, values in fields.items()}


def create_admin_app(admin: AdminConfig, sources: StatusSources) -> ASGIApp:
    """The admin app, wrapped in `SecurityHeaders` (outside Starlette's error handling, so a 500
    carries them too)."""
    auth = AdminAuth(admin.token)
    throttle = LoginThrottle()
    confirmer = (Confirmer(sources.ingest, sources.confirm_link)
                 if sources.ingest is not None and sources.confirm_link is not None else None)

    def refused_login(error: str | None = None, status_code: int = 401) -> HTMLResponse:
        nonce = secrets.token_urlsafe(16)
        response = _html(login_page(nonce, error), nonce, status_code)
        response.headers["WWW-Authenticate"] = 'Bearer realm="siemgate-admin"'
        return response

    def message(title: str, text: str, status_code: int) -> HTMLResponse:
        nonce = secrets.token_urlsafe(16)
        return _html(message_page(nonce, title, text), nonce, status_code)

    def client_of(request: Request) -> str:
        return LoginThrottle.client_key(request.client.host if request.client else None)

    def throttled(client: str, json: bool = False) -> Response | None:
        """429 while `client` has used up its failed attempts (the token is not even checked)."""
        wait = throttle.retry_after(client)
        if not wait:
            return None
        log.warning("refused an admin login attempt: too many wrong tokens from this client (429)",
                    extra={"client": client, "retry_after": wait})
        text = f"Too many wrong tokens from your address: try again in {wait} s."
        response = (JSONResponse({"error": text}, status_code=429) if json
                    else message("Too many attempts", text, 429))
        response.headers["Retry-After"] = str(wait)
        return response

    def token_failed(client: str, how: str) -> None:
        throttle.failed(client)
        # Word for word the same each time: a flood is summarized once a minute (siemgate.logs).
        log.warning("refused an admin login: wrong admin token", extra={"client": client, "via": how})

    def bearer_refused(request: Request, json: bool) -> Response | None:
        """None when the request carries the right Bearer token; else its answer (401, or 429
        when throttled). A request without an Authorization header is no attempt."""
        authorization = request.headers.get("authorization")
        if authorization is None:
            return _api_refused() if json else refused_login()
        client = client_of(request)
        if (refused := throttled(client, json)) is not None:
            return refused
        if auth.bearer_ok(authorization):
            return None
        token_failed(client, "bearer")
        return _api_refused() if json else refused_login()

    async def page(request: Request) -> Response:
        session = auth.session_id(request.cookies.get(SESSION_COOKIE))
        if session is None and (refused := bearer_refused(request, json=False)) is not None:
            return refused
        status = await build_status(sources)
        flash = _flash(status, request.query_params.get("outcome"), request.query_params.get("integration"))
        nonce = secrets.token_urlsafe(16)
        # Bearer (curl): no session, so no forms to post.
        csrf = auth.csrf_token(session) if session is not None else None
        return _html(status_page(status, nonce, csrf, flash), nonce)

    async def login(request: Request) -> Response:
        if not same_origin(request):
            return message("Refused", "This form was not sent from the status page.", 403)
        try:
            form = await _form(request)
        except _BadForm as exc:
            return message("Refused", exc.text, exc.status)
        client = client_of(request)
        if (refused := throttled(client)) is not None:
            return refused
        if not auth.token_ok(form.get("token")):
            token_failed(client, "login form")
            return refused_login("That is not the admin token.")
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(SESSION_COOKIE, auth.new_session(), max_age=SESSION_SECONDS, path="/", httponly=True,
                            samesite="strict", secure=request.url.scheme == "https")
        return response

    async def checked_post(request: Request) -> tuple[str | None, dict[str, str], Response | None]:
        """(session, form, None) for a valid page POST; else the answer to give."""
        session = auth.session_id(request.cookies.get(SESSION_COOKIE))
        if session is None:
            return None, {}, refused_login("Your session has ended: log in again.")
        if not same_origin(request):
            return None, {}, message("Refused", "This form was not sent from the status page.", 403)
        try:
            form = await _form(request)
        except _BadForm as exc:
            return None, {}, message("Refused", exc.text, exc.status)
        if not auth.csrf_ok(session, form.get("csrf")):
            return None, {}, message("Refused", "The form's CSRF token is missing or wrong: reload the page and "
                                                "try again.", 403)
        return session, form, None

    async def logout(request: Request) -> Response:
        session, _, refused = await checked_post(request)
        if refused is not None:
            return refused
        assert session is not None  # checked_post's contract
        auth.end_session(session)  # the cookie stops working now, wherever it was copied to
        response = RedirectResponse("/", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict",
                               secure=request.url.scheme == "https")
        return response

    async def confirm(request: Request) -> Response:
        _, form, refused = await checked_post(request)
        if refused is not None:
            return refused
        name = request.path_params["name"]
        if confirmer is None or sources.ingest is None:
            return message("Not here", "This process has no ingest: confirm on the ingest's status page.", 404)
        found = [i for i in sources.ingest.config.integrations if i.name == name]
        if not found:
            return message("Not found", f"No integration named {name} is configured.", 404)
        outcome: Outcome = await confirmer.confirm(found[0], form.get("link", ""))
        return RedirectResponse("/?" + urlencode({"outcome": outcome, "integration": name}), status_code=303)

    async def api_status(request: Request) -> Response:
        if (refused := bearer_refused(request, json=True)) is not None:
            return refused
        return JSONResponse(dataclasses.asdict(await build_status(sources)))

    return SecurityHeaders(Starlette(routes=[
        Route("/", page, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/integrations/{name}/confirm", confirm, methods=["POST"]),
        Route("/api/status", api_status, methods=["GET"]),
    ]))


def _api_refused() -> JSONResponse:
    return JSONResponse({"error": "missing or wrong admin token (Authorization: Bearer <admin.token>)"},
                        status_code=401, headers={"WWW-Authenticate": 'Bearer realm="siemgate-admin"'})


def _flash(status: Status, outcome: str | None, name: str | None) -> Flash | None:
    """The result of a Confirm click, told from the recorded state (nothing from the URL is shown
    but a configured integration's name)."""
    if outcome not in _OUTCOMES or status.integrations is None:
        return None
    found = [i for i in status.integrations if i.name == name]
    if not found:
        return None
    integration = found[0]
    if outcome == "confirmed":
        return Flash("ok", f"{integration.name} is confirmed: its confirmation link was requested.")
    if outcome == "failed":
        return Flash("error", f"Confirming {integration.name} failed: {integration.last_error or 'see the log'}.")
    if outcome == "newer-link":
        return Flash("info", f"A newer confirmation link arrived for {integration.name}: check it and confirm again.")
    if outcome == "not-pending":
        return Flash("info", f"{integration.name} has no pending confirmation.")
    return Flash("error", f"The confirmation state of {integration.name} could not be read or saved: see the log.")
