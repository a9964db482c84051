"""Registry authentication: WWW-Authenticate challenges, Basic auth and the Bearer token flow.

A registry that wants credentials answers 401 with `WWW-Authenticate: Bearer realm=...,service=...,scope=...`
(or `Basic realm=...`). For Bearer we ask the realm for a token for our scopes (anonymously, or with Basic
credentials, or with an OAuth2 refresh token) and retry. Tokens are cached per scope set and renewed
before they expire, and again when the registry turns one down (a token may expire in the middle of a long
pull). Credentials are loaded only when a registry asks for them.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from minibuild.errors import AuthError, RegistryError
from minibuild.registry.credentials import Credentials
from minibuild.registry.settings import is_loopback
from minicache.record import Record

if TYPE_CHECKING:
    import requests
    from minibuild.registry.transport import Transport

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_SCHEME_RE = re.compile(rf"\s*,?\s*({_TOKEN})(?=\s|$|,)")
_PARAM_RE = re.compile(rf'\s*,?\s*({_TOKEN})\s*=\s*("(?:[^"\\]|\\.)*"|{_TOKEN})')
MIN_TOKEN_LIFETIME = 60  # seconds; what docker assumes when a token server says less or nothing
RENEW_MARGIN = 5  # renew this many seconds before the token server says it expires


class Challenge(Record, frozen=True):
    scheme: str  # lower case: "bearer" or "basic"
    params: dict[str, str] = {}

    def __hash__(self) -> int:  # the parameters are a dict: they take part in == only
        return hash(self.scheme)


def parse_challenges(header: str) -> list[Challenge]:
    """`Bearer realm="x",service="y", Basic realm="z"` → [Challenge('bearer', ...), Challenge('basic', ...)]."""
    out: list[Challenge] = []
    pos = 0
    while pos < len(header):
        m = _SCHEME_RE.match(header, pos)
        if not m:
            break
        params: dict[str, str] = {}
        pos = m.end()
        while p := _PARAM_RE.match(header, pos):
            value = p.group(2)
            if value.startswith('"'):
                value = re.sub(r"\\(.)", r"\1", value[1:-1])
            params[p.group(1).lower()] = value
            pos = p.end()
        out.append(Challenge(m.group(1).lower(), params))
        if pos == m.end() and not params:  # a token68 or junk: skip a word to make progress
            nxt = header.find(",", pos)
            pos = len(header) if nxt < 0 else nxt + 1
    return out


class _Token(Record):
    value: str
    expires: float  # time.monotonic() after which we renew


class Authenticator:
    """The Authorization header for requests to one registry, learnt from its challenges."""

    def __init__(self, transport: Transport, registry: str, credentials: Callable[[], Credentials | None]) -> None:
        self.transport = transport
        self.registry = registry
        self._load_credentials = credentials
        self._credentials: Credentials | None = None
        self._loaded = False
        self.challenge: Challenge | None = None
        self._tokens: dict[frozenset[str], _Token] = {}
        self._lock = threading.Lock()
        self.tokens_fetched = 0

    @property
    def credentials(self) -> Credentials | None:
        if not self._loaded:
            self._credentials = self._load_credentials()
            self._loaded = True
        return self._credentials

    # -- what to send ---------------------------------------------------------------------------------------------
    def header(self, scopes: tuple[str, ...]) -> dict[str, str]:
        """{"Authorization": ...} for a request needing `scopes`, or {} while no challenge asks for it."""
        challenge = self.challenge
        if challenge is None:
            return {}
        if challenge.scheme == "basic":
            creds = self.credentials
            return {"Authorization": creds.basic()} if creds and creds.username else {}
        if challenge.scheme == "bearer":
            creds = self.credentials
            if creds and creds.registry_token:
                return {"Authorization": f"Bearer {creds.registry_token}"}
            return {"Authorization": f"Bearer {self.token(scopes)}"}
        return {}

    def learn(self, response: requests.Response, scopes: tuple[str, ...], sent: str | None) -> bool:
        """Take a 401 into account; True if the request should be sent again with a new header."""
        challenges = parse_challenges(response.headers.get("WWW-Authenticate", ""))
        chosen = next((c for c in challenges if c.scheme == "bearer"), None) or next(
            (c for c in challenges if c.scheme == "basic"), None
        )
        if chosen is None:
            return False
        with self._lock:
            previous, self.challenge = self.challenge, chosen
            if chosen.scheme == "basic":
                creds = self.credentials
                return sent is None and bool(creds and creds.username)
            if sent is not None and previous is not None and previous.scheme == "bearer":
                # The registry turned down a token we sent: it expired, or lacked a scope. Fetch another;
                # the caller's bounded retries stop a registry that refuses every token.
                key = frozenset(scopes)
                cached = self._tokens.get(key)
                if cached is not None and sent == f"Bearer {cached.value}":
                    del self._tokens[key]
            return True

    # -- tokens ---------------------------------------------------------------------------------------------------
    def token(self, scopes: tuple[str, ...]) -> str:
        key = frozenset(scopes)
        with self._lock:
            cached = self._tokens.get(key)
            if cached is not None and time.monotonic() < cached.expires:
                return cached.value
            token = self._fetch_token(scopes)
            self._tokens[key] = token
            return token.value

    def _fetch_token(self, scopes: tuple[str, ...]) -> _Token:
        assert self.challenge is not None
        params = self.challenge.params
        realm = params.get("realm", "")
        from urllib.parse import urlencode, urlsplit

        parts = urlsplit(realm)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise AuthError(f"registry {self.registry} sent a token realm that is not an HTTP URL: {realm!r}")
        creds = self.credentials
        if (
            creds
            and parts.scheme == "http"
            and not is_loopback(parts.hostname)
            and not self.transport.settings.is_insecure(parts.netloc)
        ):
            raise AuthError(
                f"registry {self.registry} asks to send credentials to {realm} over plain HTTP; refusing",
                hint=f"mark {parts.netloc} insecure with --insecure-registry if you trust the network",
            )
        all_scopes = list(dict.fromkeys([*scopes, *params.get("scope", "").split()]))
        service = params.get("service")
        start = time.monotonic()
        headers: dict[str, str] = {}
        if creds and creds.identity_token:
            form = {"grant_type": "refresh_token", "refresh_token": creds.identity_token, "client_id": "minibuild"}
            if service:
                form["service"] = service
            if all_scopes:
                form["scope"] = " ".join(all_scopes)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            response = self.transport.send("POST", realm, headers=headers, body=urlencode(form).encode())
        else:
            query = [("service", service)] if service else []
            query += [("scope", s) for s in all_scopes]
            if creds and creds.username:
                headers["Authorization"] = creds.basic()
                query.append(("account", creds.username))
            sep = "&" if parts.query else "?"
            url = realm + (sep + urlencode(query) if query else "")
            response = self.transport.send("GET", url, headers=headers)
        with response:
            if response.status_code in (401, 403):
                if creds:
                    raise AuthError(
                        f"the token server of {self.registry} refused the credentials ({response.status_code})",
                        hint=f"log in again with `minibuild login {self.registry}`",
                    )
                raise AuthError(f"the token server of {self.registry} refused an anonymous token")
            if response.status_code != 200:
                raise RegistryError(f"the token server of {self.registry} answered {response.status_code} ({realm})")
            try:
                doc = response.json()
            except ValueError:
                raise RegistryError(f"the token server of {self.registry} did not answer JSON") from None
        value = doc.get("token") or doc.get("access_token") if isinstance(doc, dict) else None
        if not isinstance(value, str) or not value:
            raise RegistryError(f"the token server of {self.registry} answered without a token")
        try:
            lifetime = max(int(doc.get("expires_in") or 0), MIN_TOKEN_LIFETIME)
        except (TypeError, ValueError):
            lifetime = MIN_TOKEN_LIFETIME
        self.tokens_fetched += 1
        return _Token(value, start + lifetime - RENEW_MARGIN)
