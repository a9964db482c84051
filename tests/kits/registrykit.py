"""A real registry for tests and benchmarks, with what it takes to exercise a client against it.

- RegistryServer: Debian's `docker-registry` (the CNCF distribution registry) on 127.0.0.1:<free port>,
  filesystem storage in a temp dir; optionally with htpasswd (Basic) or token (Bearer) auth. Stopped by PID.
- TokenServer: a token endpoint on 127.0.0.1 that signs registry JWTs (RS256, x5c) with a throwaway CA.
- FaultProxy: an HTTP proxy on 127.0.0.1 in front of a registry that logs every request and, following
  rules, answers with errors, drops connections mid-body, corrupts bytes, delays, throttles or hangs.
- push_image / put_manifest: raw HTTP pushes of imagekit images (independent of minibuild's own push).

All traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from minicache.record import Record

from kits import imagekit

REGISTRY_BIN = shutil.which("docker-registry") or "/usr/bin/docker-registry"
NO_PROXY = {"http": None, "https": None, "all": None}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _OnLoopback:
    """A test server listening on 127.0.0.1:`port`."""

    port: int

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.endpoint}"


class _ClosingHTTPServer(ThreadingHTTPServer):
    """A threaded HTTP server whose server_close() also ends every handler: it shuts down the connections
    they still serve (a client's idle keep-alive socket would otherwise hold a thread until the client's
    objects are collected) and joins their threads, so no thread of a stopped server outlives its test."""

    daemon_threads = False  # the threads are tracked, and joined by server_close()

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request, client_address) -> None:
        with self.connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request) -> None:
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def server_close(self) -> None:
        with self.connections_lock:
            for connection in self.connections:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
        super().server_close()


# -- the registry
class RegistryServer(_OnLoopback):
    """One docker-registry process; `auth` is the registry config's `auth:` section (None: no auth)."""

    def __init__(self, workdir: Path, auth: dict | None = None) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.auth = auth
        self.proc: subprocess.Popen | None = None
        self.port = 0

    def start(self) -> RegistryServer:
        for _ in range(5):  # a free port may be taken by someone else before the registry binds it
            self.port = free_port()
            config = {
                "version": 0.1,
                "log": {"level": "error", "accesslog": {"disabled": True}},
                "storage": {
                    "filesystem": {"rootdirectory": str(self.workdir / "data")},
                    "delete": {"enabled": True},
                    "maintenance": {"uploadpurging": {"enabled": False}},
                },
                "http": {"addr": self.endpoint, "secret": secrets.token_hex(16)},
            }
            if self.auth:
                config["auth"] = self.auth
            conf = self.workdir / "config.yml"
            conf.write_text(json.dumps(config))  # JSON is YAML
            log = open(self.workdir / "registry.log", "ab")  # noqa: SIM115 - owned by the process
            self.proc = subprocess.Popen(
                [REGISTRY_BIN, "serve", str(conf)], stdout=log, stderr=log, stdin=subprocess.DEVNULL
            )
            log.close()
            if self._wait_ready():
                return self
            self.stop()
        raise RuntimeError(f"docker-registry did not start: {(self.workdir / 'registry.log').read_text()[-2000:]}")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                return False
            try:
                requests.get(f"{self.url}/v2/", timeout=1, proxies=NO_PROXY)
                return True
            except requests.ConnectionError:
                time.sleep(0.05)
        return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> RegistryServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def htpasswd_auth(workdir: Path, users: dict[str, str]) -> dict:
    """The registry's `auth:` section for Basic auth, with a bcrypt htpasswd file (apache2-utils)."""
    path = workdir / "htpasswd"
    path.write_text("")
    for user, password in users.items():
        subprocess.run(["htpasswd", "-Bbi", str(path), user], input=password.encode(), check=True, capture_output=True)
    return {"htpasswd": {"realm": "minicontainer-test", "path": str(path)}}


# -- raw pushes
def push_blob(base: str, repo: str, data: bytes, headers: dict | None = None) -> str:
    digest = imagekit.sha256(data)
    h = headers or {}
    if requests.head(f"{base}/v2/{repo}/blobs/{digest}", headers=h, proxies=NO_PROXY).status_code == 200:
        return digest
    r = requests.post(f"{base}/v2/{repo}/blobs/uploads/", headers=h, proxies=NO_PROXY)
    r.raise_for_status()
    location = urllib.parse.urljoin(base + "/", r.headers["Location"])
    sep = "&" if "?" in location else "?"
    r = requests.put(f"{location}{sep}digest={digest}", data=data, headers=h, proxies=NO_PROXY)
    r.raise_for_status()
    return digest


def put_manifest(base: str, repo: str, ref: str, raw: bytes, media_type: str, headers: dict | None = None) -> str:
    r = requests.put(
        f"{base}/v2/{repo}/manifests/{ref}",
        data=raw,
        headers={**(headers or {}), "Content-Type": media_type},
        proxies=NO_PROXY,
    )
    r.raise_for_status()
    return imagekit.sha256(raw)


def push_image(base: str, repo: str, tag: str | None, img: imagekit.Image, headers: dict | None = None) -> str:
    """Push an imagekit image's blobs and manifest (by tag, or by digest when tag is None)."""
    for data in img.blobs.values():
        push_blob(base, repo, data, headers)
    return put_manifest(base, repo, tag or img.digest, img.manifest, img.manifest_media_type, headers)


# -- the token server
class TokenServer:
    """Issues registry tokens: anonymous ones grant `pull`, those of `users` (Basic) or `refresh_tokens`
    (OAuth2 POST) grant what they ask. `lifetime` is how long the registry will accept a token;
    `expires_in` what we tell the client (it may lie, to test renewal on a 401)."""

    ISSUER = "minicontainer-test-issuer"
    SERVICE = "minicontainer-test-registry"

    def __init__(self, workdir: Path, users: dict[str, str] | None = None, refresh_tokens: tuple[str, ...] = ()):
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        self.users = users or {}
        self.refresh_tokens = refresh_tokens
        self.lifetime = 300.0
        self.expires_in = 300
        self.anonymous = True
        self.requests: list[dict] = []
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "minicontainer test token signer")])
        now = time.time()
        import datetime as dt

        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(dt.datetime.fromtimestamp(now - 3600, dt.UTC))
            .not_valid_after(dt.datetime.fromtimestamp(now + 86400, dt.UTC))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self._x5c = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
        workdir.mkdir(parents=True, exist_ok=True)
        self.bundle = workdir / "token-root.pem"
        self.bundle.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                server._answer(self, query.get("scope", []), self.headers.get("Authorization"), None)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = urllib.parse.parse_qs(self.rfile.read(length).decode())
                scopes = " ".join(form.get("scope", [])).split()
                server._answer(self, scopes, None, form.get("refresh_token", [None])[0])

        self.httpd = _ClosingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.realm = f"http://127.0.0.1:{self.port}/token"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def registry_auth(self) -> dict:
        return {
            "token": {
                "realm": self.realm,
                "service": self.SERVICE,
                "issuer": self.ISSUER,
                "rootcertbundle": str(self.bundle),
            }
        }

    def _user(self, authorization: str | None) -> str | bool | None:
        """The user of valid Basic credentials, None for none, False for wrong ones."""
        if not authorization:
            return None
        try:
            user, _, password = base64.b64decode(authorization.split(" ", 1)[1]).decode().partition(":")
        except (IndexError, ValueError):
            return False
        return user if self.users.get(user) == password else False

    def _answer(self, handler, scopes: list[str], authorization: str | None, refresh: str | None) -> None:
        if refresh is not None:
            user: str | bool | None = "refresh-user" if refresh in self.refresh_tokens else False
        else:
            user = self._user(authorization)
        self.requests.append({"scopes": scopes, "user": user, "method": handler.command})
        if user is False or (user is None and not self.anonymous):
            handler.send_response(401)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            repo, _, actions = rest.rpartition(":")
            granted = actions.split(",") if user else [a for a in actions.split(",") if a == "pull"]
            access.append({"type": kind, "name": repo, "actions": granted})
        token = self.sign(access, user or "")
        body = json.dumps({"token": token, "access_token": token, "expires_in": self.expires_in}).encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def sign(self, access: list[dict], subject: str = "") -> str:
        """A JWT the registry accepts for `lifetime` seconds from now (it allows 60 s of clock skew)."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self._x5c]}
        claims = {
            "iss": self.ISSUER,
            "sub": subject,
            "aud": self.SERVICE,
            "exp": now + int(self.lifetime) - 60,
            "nbf": now - 10,
            "iat": now,
            "jti": secrets.token_hex(8),
            "access": access,
        }

        def b64(obj: dict) -> str:
            return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

        signing_input = f"{b64(header)}.{b64(claims)}"
        signature = self._key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"

    def admin_headers(self, repo: str) -> dict:
        token = self.sign([{"type": "repository", "name": repo, "actions": ["pull", "push"]}], "admin")
        return {"Authorization": f"Bearer {token}"}

    def start(self) -> TokenServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(5)


# -- the fault proxy
class Rule(Record):
    """What to do with requests that `match`: the first `times` of them (None: all)."""

    match: object  # callable (method, path) -> bool
    action: str  # "status", "drop", "corrupt", "delay", "throttle", "hang", "reply"
    times: int | None = 1
    status: int = 500
    headers: dict = {}  # copied per Rule
    body: bytes = b""
    after: int = 0  # drop/corrupt: after this many body bytes; throttle: bytes per second
    seconds: float = 0.0
    hits: int = 0

    def applies(self, method: str, path: str) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        if self.match(method, path):  # type: ignore[operator]
            self.hits += 1
            return True
        return False


def blob_get(digest: str):
    return lambda method, path: method == "GET" and path.split("?")[0].endswith(f"/blobs/{digest}")


def any_get_of(fragment: str):
    return lambda method, path: method == "GET" and fragment in path


_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "upgrade", "trailer"}


class FaultProxy(_OnLoopback):
    """An HTTP/1.1 proxy to `upstream` (host:port) on 127.0.0.1 that follows `rules` and logs requests."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.rules: list[Rule] = []
        self.log: list[dict] = []
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def handle_one(self) -> None:
                proxy._handle(self)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = handle_one

            def do_CONNECT(self) -> None:  # a client wanting HTTPS through us: logged, refused (we speak no TLS)
                proxy.log.append({"method": "CONNECT", "path": self.path, "headers": dict(self.headers),
                                  "proxied": True, "time": time.time()})  # fmt: skip
                self.send_response(502, "no TLS tunnels here")
                self.send_header("Content-Length", "0")
                self.end_headers()
                self.close_connection = True

        self.httpd = _ClosingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def add(self, rule: Rule) -> Rule:
        with self.lock:
            self.rules.append(rule)
        return rule

    def requests_for(self, fragment: str, method: str = "GET") -> list[dict]:
        return [r for r in self.log if r["method"] == method and fragment in r["path"]]

    def _rule(self, method: str, path: str) -> Rule | None:
        with self.lock:
            return next((r for r in self.rules if r.applies(method, path)), None)

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        path = h.path
        proxied = path.startswith("http://")
        if proxied:  # used as a forward proxy: the request line holds the whole URL
            parts = urllib.parse.urlsplit(path)
            path = parts.path + (f"?{parts.query}" if parts.query else "")
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        self.log.append(
            {"method": h.command, "path": path, "headers": dict(h.headers), "proxied": proxied, "time": time.time()}
        )
        rule = self._rule(h.command, path)
        if rule is not None and self._answered_by(rule, h):
            return
        self._relay(h, path, body, rule)

    def _answered_by(self, rule: Rule, h: BaseHTTPRequestHandler) -> bool:
        """Apply what a rule does before (or instead of) the upstream answer; whether the request is done."""
        if rule.action == "hang":
            self.stopping.wait(600)
            h.close_connection = True
            return True
        if rule.action == "delay":
            time.sleep(rule.seconds)
        if rule.action in ("status", "reply"):
            h.send_response(rule.status)
            for k, v in rule.headers.items():
                h.send_header(k, v)
            h.send_header("Content-Length", str(len(rule.body)))
            h.end_headers()
            if h.command != "HEAD":
                h.wfile.write(rule.body)
            return True
        return False

    def _relay(self, h: BaseHTTPRequestHandler, path: str, body: bytes, rule: Rule | None) -> None:
        """Pass the request upstream and its answer back, through the rule's corrupt/drop/throttle if any."""
        import http.client

        conn = http.client.HTTPConnection(self.upstream, timeout=60)
        headers = {k: v for k, v in h.headers.items() if k.lower() not in _HOP}
        conn.request(h.command, path, body=body, headers=headers)
        resp = conn.getresponse()
        h.send_response(resp.status, resp.reason)
        content_length = resp.getheader("Content-Length")
        for k, v in resp.getheaders():
            if k.lower() not in _HOP:
                h.send_header(k, v)
        chunked_body = None
        if content_length is None and h.command != "HEAD" and resp.status not in (204, 304):
            chunked_body = resp.read()
            h.send_header("Content-Length", str(len(chunked_body)))
        h.end_headers()
        if h.command == "HEAD":
            conn.close()
            return
        source = iter([chunked_body]) if chunked_body is not None else iter(lambda: resp.read(64 << 10), b"")
        try:
            self._send_body(h, source, rule)
        except (ConnectionError, BrokenPipeError, OSError):
            h.close_connection = True
        finally:
            conn.close()

    def _send_body(self, h: BaseHTTPRequestHandler, source: Iterator[bytes], rule: Rule | None) -> None:
        sent = 0
        for chunk in source:
            if not chunk:
                break
            if rule is not None and rule.action == "corrupt" and sent <= rule.after < sent + len(chunk):
                i = rule.after - sent
                chunk = chunk[:i] + bytes([chunk[i] ^ 0xFF]) + chunk[i + 1 :]
            if rule is not None and rule.action == "drop" and sent + len(chunk) > rule.after:
                h.wfile.write(chunk[: rule.after - sent])
                h.wfile.flush()
                h.connection.shutdown(socket.SHUT_RDWR)
                h.close_connection = True
                return
            if rule is not None and rule.action == "throttle":
                step = max(1, rule.after // 10)
                for i in range(0, len(chunk), step):
                    if self.stopping.is_set():
                        raise ConnectionError("proxy stopping")
                    h.wfile.write(chunk[i : i + step])
                    h.wfile.flush()
                    time.sleep(step / rule.after)
            else:
                h.wfile.write(chunk)
            sent += len(chunk)

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(5)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def env_without_proxies() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}


def client_env(home: Path) -> dict[str, str]:
    """The environment for a minibuild subprocess that sees nothing of the host's registry settings: no proxies,
    no MINICONTAINER_ variables, an empty ~/.docker and an empty registries.conf (both made under `home`)."""
    config = home / "docker-config"
    config.mkdir()
    (home / "no-registries.json").write_text("{}")
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower() and not k.startswith("MINICONTAINER_")}
    return {**env, "DOCKER_CONFIG": str(config), "MINICONTAINER_REGISTRIES_CONF": str(home / "no-registries.json")}


def serving_or_skip(workdir: Path) -> Iterator[RegistryServer]:
    """A running docker-registry for a fixture to yield; skips the test where the binary is not installed."""
    if not Path(REGISTRY_BIN).exists():
        pytest.skip("docker-registry is not installed")
    with RegistryServer(workdir) as server:
        yield server
