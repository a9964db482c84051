"""Registry credentials as the docker CLI keeps them: `$DOCKER_CONFIG/config.json` (default ~/.docker).

- `auths`: {"registry.example:5000": {"auth": base64("user:password")}}; Docker Hub's key is
  `https://index.docker.io/v1/`. Keys are matched by host name (scheme and path ignored), as docker does.
  An entry may carry an `identitytoken` (an OAuth2 refresh token) or a `registrytoken` instead.
- `credHelpers` (per registry) and `credsStore` (default): a `docker-credential-NAME` program on PATH that
  speaks the credential-helper protocol (`get`/`store`/`erase`, JSON on stdin/stdout).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import subprocess
from pathlib import Path

from minibuild.errors import AuthError
from minicache.atomic import atomic_write
from minicache.errors import InvalidSpec
from minicache.record import Record

DOCKER_HUB_KEY = "https://index.docker.io/v1/"
_HUB_NAMES = ("docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com")
_TOKEN_USER = "<token>"  # a helper's Username when Secret is an identity token
_HELPER_TIMEOUT = 60


class Credentials(Record, frozen=True):
    username: str = ""
    password: str = ""
    identity_token: str | None = None
    registry_token: str | None = None

    def basic(self) -> str:
        """The value of an `Authorization: Basic` header."""
        return "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()

    def __repr__(self) -> str:  # never print a secret
        return f"Credentials(username={self.username!r}, secret=***)"


def config_path() -> Path:
    base = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    return Path(base) / "config.json"


def server_key(registry: str) -> str:
    """The key under which docker files credentials for `registry` (a reference's registry part)."""
    return DOCKER_HUB_KEY if _hostname(registry) in _HUB_NAMES else registry


def _hostname(key: str) -> str:
    """`https://index.docker.io/v1/` → `index.docker.io`; `host:5000` stays."""
    key = key.strip()
    for prefix in ("https://", "http://"):
        key = key.removeprefix(prefix)
    return key.split("/", 1)[0]


def _same_registry(key: str, registry: str) -> bool:
    a, b = _hostname(key), _hostname(registry)
    return a == b or (a in _HUB_NAMES and b in _HUB_NAMES)


def read_config(path: Path | None = None) -> dict:
    path = path or config_path()
    try:
        with open(path, "rb") as f:
            doc = json.load(f)
    except FileNotFoundError:
        return {}
    except ValueError as e:
        raise InvalidSpec(f"{path} is not valid JSON: {e}", hint="fix or remove the file") from None
    if not isinstance(doc, dict):
        raise InvalidSpec(f"{path} is not a JSON object", hint="fix or remove the file")
    return doc


def _write_config(doc: dict, path: Path | None = None) -> None:
    path = path or config_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    atomic_write(path, json.dumps(doc, indent="\t").encode() + b"\n", mode=0o600)
    os.chmod(path, 0o600)  # an existing file keeps its mode through the rename; credentials are private


def _helper_for(doc: dict, registry: str) -> str | None:
    helpers = doc.get("credHelpers")
    if isinstance(helpers, dict):
        for key, name in helpers.items():
            if isinstance(name, str) and name and _same_registry(key, registry):
                return name
    store = doc.get("credsStore")
    return store if isinstance(store, str) and store else None


# -- credential helpers -----------------------------------------------------------------------------------------------
def _run_helper(name: str, action: str, stdin: str) -> subprocess.CompletedProcess:
    program = f"docker-credential-{name}"
    try:
        return subprocess.run(
            [program, action], input=stdin.encode(), capture_output=True, timeout=_HELPER_TIMEOUT, check=False
        )
    except FileNotFoundError:
        raise AuthError(
            f"credential helper {program} is not installed (named in {config_path()})",
            hint=f"install {program} or remove it from credsStore/credHelpers",
        ) from None
    except subprocess.TimeoutExpired:
        raise AuthError(f"credential helper {program} {action} did not finish in {_HELPER_TIMEOUT}s") from None


def _helper_error(name: str, action: str, proc: subprocess.CompletedProcess) -> AuthError:
    said = (proc.stdout or proc.stderr or b"").decode(errors="replace").strip().splitlines()
    return AuthError(
        f"credential helper docker-credential-{name} {action} failed: {said[0] if said else proc.returncode}"
    )


def helper_get(name: str, server: str) -> Credentials | None:
    proc = _run_helper(name, "get", server)
    if proc.returncode != 0:
        if b"credentials not found" in (proc.stdout + proc.stderr).lower():
            return None
        raise _helper_error(name, "get", proc)
    try:
        doc = json.loads(proc.stdout)
        username, secret = doc.get("Username", ""), doc.get("Secret", "")
    except (ValueError, AttributeError):
        raise AuthError(f"credential helper docker-credential-{name} answered something that is not JSON") from None
    if not secret:
        return None
    if username == _TOKEN_USER:
        return Credentials(identity_token=secret)
    return Credentials(username=username, password=secret)


def helper_store(name: str, server: str, creds: Credentials) -> None:
    username, secret = (_TOKEN_USER, creds.identity_token) if creds.identity_token else (creds.username, creds.password)
    doc = json.dumps({"ServerURL": server, "Username": username, "Secret": secret})
    proc = _run_helper(name, "store", doc)
    if proc.returncode != 0:
        raise _helper_error(name, "store", proc)


def helper_erase(name: str, server: str) -> None:
    proc = _run_helper(name, "erase", server)
    if proc.returncode != 0 and b"credentials not found" not in (proc.stdout + proc.stderr).lower():
        raise _helper_error(name, "erase", proc)


# -- lookup, login, logout ---------------------------------------------------------------------------------------------
def _from_entry(key: str, entry: object) -> Credentials | None:
    if not isinstance(entry, dict):
        return None
    if entry.get("registrytoken"):
        return Credentials(registry_token=str(entry["registrytoken"]))
    identity = entry.get("identitytoken") or None
    if entry.get("auth"):
        try:
            user, sep, password = base64.b64decode(str(entry["auth"]), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise AuthError(
                f"the auth of {key!r} in {config_path()} is not base64 of USER:PASSWORD",
                hint=f"log in again with `minibuild login {_hostname(key)}`",
            ) from None
        if not sep:
            raise AuthError(f"the auth of {key!r} in {config_path()} has no ':' between user and password")
        return Credentials(user, password, identity)
    if entry.get("username") or identity:
        return Credentials(str(entry.get("username", "")), str(entry.get("password", "")), identity)
    return None


def lookup(registry: str) -> Credentials | None:
    """Credentials for `registry` (a reference's registry part, e.g. `docker.io` or `host:5000`), or None."""
    doc = read_config()
    helper = _helper_for(doc, registry)
    if helper:
        creds = helper_get(helper, server_key(registry))
        if creds is not None:
            return creds
    auths = doc.get("auths")
    if isinstance(auths, dict):
        exact = server_key(registry)
        keys = sorted(auths, key=lambda k: k != exact)  # the exact key first, then any of the same host
        for key in keys:
            if _same_registry(key, registry) and (creds := _from_entry(key, auths[key])) is not None:
                return creds
    return None


def save(registry: str, creds: Credentials) -> str:
    """Keep credentials for `registry` (in its helper if one is configured); return where they went."""
    doc = read_config()
    server = server_key(registry)
    helper = _helper_for(doc, registry)
    auths = doc.setdefault("auths", {})
    if not isinstance(auths, dict):
        raise InvalidSpec(f"`auths` in {config_path()} is not a JSON object", hint="fix or remove the file")
    for key in [k for k in auths if _same_registry(k, registry) and k != server]:
        del auths[key]
    if helper:
        helper_store(helper, server, creds)
        auths[server] = {}  # docker leaves this stub so `docker logout` and listings know the registry
        where = f"docker-credential-{helper}"
    else:
        entry: dict = {"auth": base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()}
        if creds.identity_token:
            entry = {"identitytoken": creds.identity_token}
        auths[server] = entry
        where = str(config_path())
    _write_config(doc)
    return where


def forget(registry: str) -> bool:
    """Remove stored credentials for `registry`; False if there were none."""
    doc = read_config()
    found = False
    helper = _helper_for(doc, registry)
    if helper:
        helper_erase(helper, server_key(registry))
        found = True
    auths = doc.get("auths")
    if isinstance(auths, dict):
        for key in [k for k in auths if _same_registry(k, registry)]:
            del auths[key]
            found = True
        if found:
            _write_config(doc)
    return found
