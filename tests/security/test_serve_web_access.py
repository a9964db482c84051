"""`minirun serve`: who may reach it. The Unix socket is closed to others, TCP needs the token, a browser's
state-changing request needs the CSRF token, the session cookie is HttpOnly and SameSite=Strict, and
TCP off loopback needs TLS."""

from __future__ import annotations

import http.client
import json
import stat
import subprocess
from pathlib import Path
from urllib.parse import urlencode

import pytest
from kits.lifecyclekit import _subreaper, reaper  # noqa: F401  (fixtures)
from kits.runkit import MINIRUN, minirun, no_leaks  # noqa: F401  (no_leaks: a fixture)
from kits.servekit import Server, free_port

pytestmark = pytest.mark.root


@pytest.fixture
def served(store_root: Path, tmp_path: Path, no_leaks, reaper):  # noqa: F811
    port = free_port()
    srv = Server(store_root, tmp_path / "api.sock", "--listen", f"127.0.0.1:{port}")
    srv.port = port
    srv.token = minirun(store_root, "serve", "--print-token").stdout.strip()
    try:
        yield srv
    finally:
        srv.stop()


def request(srv: Server, method: str, path: str, headers: dict | None = None, body: bytes | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def test_unix_socket_and_token_file_are_closed_to_others(served: Server) -> None:
    mode = stat.S_IMODE(served.sock.stat().st_mode)
    assert mode == 0o660, oct(mode)
    token_file = served.store_root / "serve" / "token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert len(served.token) >= 32 and token_file.read_text().strip() == served.token


def test_tcp_needs_the_token(served: Server) -> None:
    for path in ("/containers/json", "/v1.41/info", "/api/overview", "/api/stream", "/events"):
        status, headers, _ = request(served, "GET", path)
        assert status == 401, path
        assert headers.get("www-authenticate", "").startswith("Bearer")
    assert request(served, "GET", "/containers/json", {"Authorization": "Bearer " + served.token[:-1]})[0] == 401
    assert request(served, "GET", "/containers/json", {"Authorization": "Bearer " + served.token})[0] == 200
    assert request(served, "GET", "/", {"Accept": "text/html"})[1]["location"] == "/login"


def test_login_sets_a_strict_httponly_cookie_that_is_not_the_token(served: Server) -> None:
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    assert request(served, "POST", "/login", form, urlencode({"token": "wrong"}).encode())[0] == 401
    status, headers, _ = request(served, "POST", "/login", form, urlencode({"token": served.token}).encode())
    assert status == 303
    cookie = headers["set-cookie"]
    attributes = [a.strip().lower() for a in cookie.split(";")]
    assert "httponly" in attributes and "samesite=strict" in attributes
    value = cookie.split(";")[0].split("=", 1)[1]
    assert value and served.token not in value
    assert request(served, "GET", "/containers/json", {"Cookie": cookie.split(";")[0]})[0] == 200


def test_browser_writes_need_the_csrf_token(served: Server, busybox_image: str) -> None:
    cid = minirun(served.store_root, "create", "--name", "target", busybox_image, "true").stdout.strip()
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    headers = request(served, "POST", "/login", form, urlencode({"token": served.token}).encode())[1]
    session = {"Cookie": headers["set-cookie"].split(";")[0], "Origin": f"http://127.0.0.1:{served.port}"}
    assert request(served, "DELETE", f"/containers/{cid}", session)[0] == 403
    assert request(served, "DELETE", f"/containers/{cid}", {**session, "X-CSRF-Token": "x" * 64})[0] == 403
    assert (served.store_root / "containers" / cid).is_dir()  # nothing happened
    page = request(served, "GET", "/", session)[2].decode()
    csrf = page.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]
    assert request(served, "DELETE", f"/containers/{cid}", {**session, "X-CSRF-Token": csrf})[0] == 204
    # the Unix socket has no token, but a browser-shaped request there needs the CSRF token as well
    body = json.dumps({"Image": busybox_image})
    out = subprocess.run(
        ["curl", "-s", "--unix-socket", str(served.sock), "-X", "POST", "-H", "Origin: http://evil.example",
         "http://x/containers/create", "-H", "Content-Type: application/json", "-d", body],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert json.loads(out.stdout)["message"] == "missing or wrong CSRF token"
    assert minirun(served.store_root, "ps", "-aq").stdout.strip() == ""


def test_tcp_off_loopback_needs_tls(store_root: Path) -> None:
    result = subprocess.run(
        [MINIRUN, "--root", str(store_root), "serve", "--socket", str(store_root / "x.sock"), "--listen", "0.0.0.0:1"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "minirun: error: listening on 0.0.0.0 needs TLS; give --tls-cert and --tls-key, or listen on 127.0.0.1"
    ]
    assert "Traceback" not in result.stderr and not (store_root / "x.sock").exists()
