"""Auth against real registries: the Bearer token flow (token auth), Basic (htpasswd), config.json, helpers,
login/logout, and a token that expires in the middle of a pull."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from kits import imagekit, registrykit
from kits.imagekit import Entry
from kits.pullkit import FAST, do_pull, run_cli
from minibuild.errors import AuthError
from minicache.store import Store

pytestmark = pytest.mark.root

USERS = {"alice": "wonderland-1", "bob": "builder-2"}


def small_image(tag: bytes) -> imagekit.Image:
    return imagekit.image(
        [imagekit.layer([Entry("base", data=os.urandom(20_000))]), imagekit.layer([Entry("tag", data=tag)])]
    )


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory) -> Iterator[tuple[registrykit.RegistryServer, registrykit.TokenServer, dict]]:
    work = tmp_path_factory.mktemp("token-registry")
    tokens = registrykit.TokenServer(work / "token", users=USERS, refresh_tokens=("refresh-abc",)).start()
    server = registrykit.RegistryServer(work / "registry", auth=tokens.registry_auth()).start()
    images = {name: small_image(name.encode()) for name in ("public", "private")}
    for name, img in images.items():
        registrykit.push_image(server.url, f"test/{name}", "v1", img, tokens.admin_headers(f"test/{name}"))
    try:
        yield server, tokens, images
    finally:
        server.stop()
        tokens.stop()


@pytest.fixture(scope="module")
def basic_registry(tmp_path_factory) -> Iterator[tuple[registrykit.RegistryServer, imagekit.Image]]:
    work = tmp_path_factory.mktemp("basic-registry")
    server = registrykit.RegistryServer(work, auth=registrykit.htpasswd_auth(work, USERS)).start()
    img = small_image(b"basic")
    auth = {"Authorization": "Basic " + base64.b64encode(b"alice:wonderland-1").decode()}
    registrykit.push_image(server.url, "test/basic", "v1", img, auth)
    try:
        yield server, img
    finally:
        server.stop()


@pytest.fixture
def tokens(token_registry) -> Iterator[registrykit.TokenServer]:
    """The module's token server, reset after the test."""
    _, ts, _ = token_registry
    ts.requests.clear()
    yield ts
    ts.anonymous, ts.lifetime, ts.expires_in = True, 300.0, 300
    ts.requests.clear()


def write_auths(config_dir: Path, entries: dict[str, str], **extra) -> None:
    doc = {"auths": {k: {"auth": base64.b64encode(v.encode()).decode()} for k, v in entries.items()}, **extra}
    (config_dir / "config.json").write_text(json.dumps(doc))


# -- Bearer ----------------------------------------------------------------------------------------------------------
def test_anonymous_bearer_flow(store: Store, token_registry, tokens) -> None:
    server, _, images = token_registry
    result = do_pull(store, f"{server.endpoint}/test/public:v1")
    assert result.image_id == images["public"].config_digest
    assert tokens.requests and all(r["user"] is None for r in tokens.requests)
    assert ["repository:test/public:pull"] in [r["scopes"] for r in tokens.requests]
    assert len(tokens.requests) <= 2  # one token reused for every blob (the ping may ask for a scopeless one)


def test_bearer_with_config_json_credentials(store: Store, token_registry, tokens, _docker_config: Path) -> None:
    server, _, images = token_registry
    tokens.anonymous = False
    with pytest.raises(AuthError) as e:
        do_pull(store, f"{server.endpoint}/test/private:v1")
    assert "anonymous" in str(e.value) or "denied" in str(e.value)
    assert store.blobs.all() == []
    write_auths(_docker_config, {server.endpoint: "alice:wonderland-1"})
    assert do_pull(store, f"{server.endpoint}/test/private:v1").image_id == images["private"].config_digest
    assert tokens.requests[-1]["user"] == "alice"


def test_bearer_with_an_identity_token(store: Store, token_registry, tokens, _docker_config: Path) -> None:
    """An `identitytoken` (OAuth2 refresh token, as `docker login` stores for some registries) is POSTed."""
    server, _, images = token_registry
    tokens.anonymous = False
    doc = {"auths": {server.endpoint: {"auth": "", "identitytoken": "refresh-abc"}}}
    (_docker_config / "config.json").write_text(json.dumps(doc))
    assert do_pull(store, f"{server.endpoint}/test/private:v1").image_id == images["private"].config_digest
    assert tokens.requests[-1]["method"] == "POST" and tokens.requests[-1]["user"] == "refresh-user"


def test_bearer_wrong_password_is_a_clear_error(store: Store, token_registry, tokens, _docker_config: Path) -> None:
    server, _, _ = token_registry
    write_auths(_docker_config, {f"https://{server.endpoint}/v1/": "alice:wrong"})  # keys match by host name
    r = run_cli(store, "pull", f"{server.endpoint}/test/private:v1")
    err = r.stderr.decode().strip()
    assert r.returncode == 1 and len(err.splitlines()) == 1
    assert "refused the credentials" in err and "minibuild login" in err


def test_token_expiring_mid_pull_is_renewed(store: Store, token_registry, tokens) -> None:
    """Tokens the registry accepts for 2 s (the server claims 300 s); a blob request held 3 s by the proxy
    reaches the registry with an expired token: the client gets a new one and the pull completes."""
    server, _, images = token_registry
    tokens.lifetime = 2.0
    with registrykit.FaultProxy(server.endpoint) as proxy:
        img = images["public"]
        last_layer = [d for d in img.blobs if d != img.config_digest][-1]
        proxy.add(registrykit.Rule(registrykit.blob_get(last_layer), "delay", seconds=3.0))
        from minicache.record import replace

        result = do_pull(store, f"{proxy.endpoint}/test/public:v1", settings=replace(FAST, max_concurrent_downloads=1))
        assert result.image_id == img.config_digest
        gets = proxy.requests_for(f"/blobs/{last_layer}")
        assert len(gets) == 2  # refused once with the stale token, then granted with a new one
        assert gets[0]["headers"]["Authorization"] != gets[1]["headers"]["Authorization"]
    assert len([r for r in tokens.requests if r["scopes"] == ["repository:test/public:pull"]]) >= 2


# -- Basic -------------------------------------------------------------------------------------------------------------
def test_basic_auth_with_config_json(store: Store, basic_registry, _docker_config: Path) -> None:
    server, img = basic_registry
    with pytest.raises(AuthError, match="needs credentials"):
        do_pull(store, f"{server.endpoint}/test/basic:v1")
    write_auths(_docker_config, {server.endpoint: "bob:builder-2"})
    assert do_pull(store, f"{server.endpoint}/test/basic:v1").image_id == img.config_digest
    write_auths(_docker_config, {server.endpoint: "bob:nope"})
    with pytest.raises(AuthError, match="refused the stored credentials"):
        do_pull(Store(Path(store.root).parent / "other"), f"{server.endpoint}/test/basic:v1")


HELPER = """#!/bin/sh
# a docker-credential-* helper for tests: get/store/erase against a JSON file, every call logged
echo "$1" >> {log}
case "$1" in
  get) read -r server; python3 -c 'import json,sys; d=json.load(open("{db}")); s=sys.argv[1]
if s in d: print(json.dumps({{"ServerURL": s, "Username": d[s][0], "Secret": d[s][1]}}))
else: print("credentials not found in native keychain"); sys.exit(1)' "$server" ;;
  store) python3 -c 'import json,sys; d=json.load(open("{db}")); x=json.load(sys.stdin)
d[x["ServerURL"]]=[x["Username"], x["Secret"]]; json.dump(d, open("{db}", "w"))' ;;
  erase) read -r server; python3 -c 'import json,sys; d=json.load(open("{db}")); d.pop(sys.argv[1], None)
json.dump(d, open("{db}", "w"))' "$server" ;;
esac
"""


def install_helper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, db: dict) -> tuple[Path, Path]:
    bindir = tmp_path / "helper-bin"
    bindir.mkdir(exist_ok=True)
    log, dbfile = tmp_path / f"{name}.log", tmp_path / f"{name}.json"
    dbfile.write_text(json.dumps(db))
    script = bindir / f"docker-credential-{name}"
    script.write_text(HELPER.format(log=log, db=dbfile))
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    return log, dbfile


@pytest.mark.parametrize("where", ["credsStore", "credHelpers"])
def test_credential_helpers(store: Store, basic_registry, _docker_config, tmp_path, monkeypatch, where: str) -> None:
    server, img = basic_registry
    log, _ = install_helper(tmp_path, monkeypatch, "mctest", {server.endpoint: ["alice", "wonderland-1"]})
    extra = {"credsStore": "mctest"} if where == "credsStore" else {"credHelpers": {server.endpoint: "mctest"}}
    (_docker_config / "config.json").write_text(json.dumps({"auths": {}, **extra}))
    assert do_pull(store, f"{server.endpoint}/test/basic:v1").image_id == img.config_digest
    assert log.read_text().split() == ["get"]


def test_login_and_logout_write_config_json(store: Store, basic_registry, _docker_config: Path) -> None:
    server, _ = basic_registry
    config = _docker_config / "config.json"
    bad = run_cli(store, "login", "-u", "alice", "--password-stdin", server.endpoint, stdin=b"wrong\n")
    assert bad.returncode == 1 and "refused" in bad.stderr.decode() and not config.exists()
    ok = run_cli(store, "login", "-u", "alice", "--password-stdin", server.endpoint, stdin=b"wonderland-1\n")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.decode().strip() == "Login Succeeded"
    doc = json.loads(config.read_text())
    assert base64.b64decode(doc["auths"][server.endpoint]["auth"]) == b"alice:wonderland-1"
    assert config.stat().st_mode & 0o077 == 0  # secrets are not world-readable
    pulled = run_cli(store, "pull", "-q", f"{server.endpoint}/test/basic:v1")
    assert pulled.returncode == 0, pulled.stderr
    out = run_cli(store, "logout", server.endpoint)
    assert out.returncode == 0 and f"Removing login credentials for {server.endpoint}" in out.stdout.decode()
    assert server.endpoint not in json.loads(config.read_text()).get("auths", {})
    again = run_cli(store, "logout", server.endpoint)
    assert again.returncode == 0 and "Not logged in" in again.stdout.decode()


def test_login_to_a_token_registry_uses_the_creds_store(
    store: Store, token_registry, tokens, _docker_config, tmp_path, monkeypatch
) -> None:
    server, _, images = token_registry
    log, db = install_helper(tmp_path, monkeypatch, "mcstore", {})
    (_docker_config / "config.json").write_text(json.dumps({"credsStore": "mcstore"}))
    ok = run_cli(store, "login", "-u", "bob", "--password-stdin", server.endpoint, stdin=b"builder-2\n")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(db.read_text()) == {server.endpoint: ["bob", "builder-2"]}
    assert "auth" not in json.dumps(json.loads((_docker_config / "config.json").read_text()).get("auths", {}))
    assert any(r["user"] == "bob" for r in tokens.requests)
    tokens.anonymous = False
    assert do_pull(store, f"{server.endpoint}/test/private:v1").image_id == images["private"].config_digest
    assert run_cli(store, "logout", server.endpoint).returncode == 0
    assert json.loads(db.read_text()) == {}
    assert log.read_text().split()[0] == "store" and "erase" in log.read_text().split()
