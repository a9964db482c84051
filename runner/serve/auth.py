"""Who may talk to `minirun serve`: the token, the browser session and CSRF, as one ASGI middleware.

- The Unix socket is guarded by its mode (0660, root and the `minicontainer` group): no token there.
- A TCP client needs the token: `Authorization: Bearer TOKEN` (API clients), or the session cookie the
  login page sets (browsers; HttpOnly, SameSite=Strict). The cookie holds an HMAC of the token, not the
  token itself, so a leaked cookie does not give the bearer token.
- A state-changing request that comes from a browser (it carries a cookie, an Origin or Sec-Fetch-*
  headers) must carry X-CSRF-Token: an HMAC of the token the dashboard page hands out in a <meta>.
  API clients (docker CLI, SDKs) send none of these headers and need no CSRF token.

The token is made on first start and kept 0600 in the store (`serve/token`).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, MutableMapping
    from typing import Any

    from minicache.store import Store

    Scope = MutableMapping[str, Any]
    Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
    Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
    ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

COOKIE = "minirun_session"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_BROWSER_HEADERS = (b"cookie", b"origin", b"sec-fetch-site", b"sec-fetch-mode")
LOGIN_PATH = "/login"
# Paths a TCP client may load without the token: the login page and what it needs to show itself.
_OPEN_PATHS = frozenset({LOGIN_PATH, "/static/app.css"})


def token_path(store: Store) -> str:
    return os.path.join(store.serve_dir, "token")


def load_token(store: Store) -> str:
    """The server's token, made (0600, in a 0700 folder) on first use."""
    path = Path(token_path(store))
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    token = secrets.token_urlsafe(32)
    staging = path.with_name(f".token-{os.getpid()}")
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, token.encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(staging, path)  # the first writer wins when two servers start at once
    except FileExistsError:
        pass
    finally:
        os.unlink(staging)
    return path.read_text().strip()


def _mac(token: str, purpose: str) -> str:
    return hmac.new(token.encode(), purpose.encode(), hashlib.sha256).hexdigest()


class Guard:
    """The keys derived from one token."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.session = _mac(token, "session")
        self.csrf = _mac(token, "csrf")

    def token_ok(self, candidate: str | None) -> bool:
        return candidate is not None and hmac.compare_digest(candidate.encode(), self.token.encode())

    def session_ok(self, candidate: str | None) -> bool:
        return candidate is not None and hmac.compare_digest(candidate.encode(), self.session.encode())

    def csrf_ok(self, candidate: str | None) -> bool:
        return candidate is not None and hmac.compare_digest(candidate.encode(), self.csrf.encode())


def _headers(scope: Scope) -> dict[bytes, str]:
    out: dict[bytes, str] = {}
    for key, value in scope.get("headers") or ():
        out[key.lower()] = value.decode("latin-1")
    return out


def cookie_value(header: str | None, name: str) -> str | None:
    for part in (header or "").split(";"):
        key, eq, value = part.strip().partition("=")
        if eq and key == name:
            return value
    return None


def from_browser(headers: dict[bytes, str]) -> bool:
    return any(h in headers for h in _BROWSER_HEADERS)


async def _refuse(send: Send, status: int, message: str, *, login: bool = False) -> None:
    import json

    if login:
        await send({"type": "http.response.start", "status": 303, "headers": [(b"location", LOGIN_PATH.encode())]})
        await send({"type": "http.response.body", "body": b""})
        return
    body = json.dumps({"message": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="minirun"'))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class GuardMiddleware:
    """Token (TCP listeners) and CSRF (every listener) checks before any route runs."""

    def __init__(self, app: ASGIApp, guard: Guard, *, need_token: bool) -> None:
        self.app = app
        self.guard = guard
        self.need_token = need_token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        path = scope.get("path", "")
        method = scope.get("method", "GET")
        session = cookie_value(headers.get(b"cookie"), COOKIE)
        if self.need_token and path not in _OPEN_PATHS:
            scheme, _, credentials = headers.get(b"authorization", "").partition(" ")
            bearer = credentials.strip() if scheme.lower() == "bearer" else None
            if not (self.guard.token_ok(bearer) or self.guard.session_ok(session)):
                wants_page = method == "GET" and "text/html" in headers.get(b"accept", "")
                await _refuse(send, 401, "a token is required: send 'Authorization: Bearer TOKEN'", login=wants_page)
                return
        browser_write = method not in SAFE_METHODS and from_browser(headers) and path != LOGIN_PATH
        if browser_write and not self.guard.csrf_ok(headers.get(CSRF_HEADER.encode())):
            await _refuse(send, 403, "missing or wrong CSRF token")
            return
        await self.app(scope, receive, send)


def login_form_token(body: bytes) -> str | None:
    values = parse_qs(body.decode("utf-8", "replace")).get("token")
    return values[0].strip() if values else None
