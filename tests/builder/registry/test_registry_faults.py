"""Faults between us and a real registry, injected by registrykit.FaultProxy: dropped connections (Range
resume), 5xx and 429 (retries, Retry-After), corrupted bytes, a registry that never answers, proxies from
the environment, plain HTTP refused for remote names, concurrent pulls and SIGKILL in the middle of one."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from kits import imagekit, registrykit
from kits.imagekit import Entry
from kits.pullkit import FAST, MINIBUILD, blob_gets, do_pull, run_cli
from minibuild.errors import RegistryError
from minicache import gc
from minicache.errors import DigestMismatch, one_line
from minicache.record import replace
from minicache.store import Store

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def big(registry) -> imagekit.Image:
    """test/big:v1, three layers of ~400 kB each (random, so they stay that size gzipped)."""
    layers = [imagekit.layer([Entry(f"file{i}", data=os.urandom(400_000))]) for i in range(3)]
    img = imagekit.image(layers)
    registrykit.push_image(registry.url, "test/big", "v1", img)
    return img


def layer_digests(img: imagekit.Image) -> list[str]:
    return [d for d in img.blobs if d != img.config_digest]


def assert_nothing_half_stored(store: Store) -> None:
    assert gc.check(store) == []
    assert [n for n in os.listdir(store.tmp_dir) if not n.startswith(".")] == []


def test_dropped_connection_resumes_with_range(store: Store, proxy, big) -> None:
    victim = layer_digests(big)[1]
    proxy.add(registrykit.Rule(registrykit.blob_get(victim), "drop", after=150_000))
    result = do_pull(store, f"{proxy.endpoint}/test/big:v1")
    assert result.image_id == big.config_digest
    gets = proxy.requests_for(f"/blobs/{victim}")
    assert len(gets) == 2
    assert "Range" not in gets[0]["headers"]
    assert gets[1]["headers"]["Range"].startswith("bytes=") and gets[1]["headers"]["Range"] != "bytes=0-"
    assert int(gets[1]["headers"]["Range"][6:-1]) >= 100_000  # what arrived before the drop is kept
    assert store.blobs.has(victim)
    assert_nothing_half_stored(store)


def test_5xx_are_retried(store: Store, proxy, big) -> None:
    proxy.add(registrykit.Rule(registrykit.any_get_of("/manifests/v1"), "status", times=2, status=500))
    proxy.add(registrykit.Rule(registrykit.blob_get(layer_digests(big)[0]), "status", times=1, status=503))
    proxy.add(registrykit.Rule(registrykit.blob_get(layer_digests(big)[2]), "status", times=1, status=502))
    assert do_pull(store, f"{proxy.endpoint}/test/big:v1").image_id == big.config_digest
    assert len(proxy.requests_for("/manifests/v1")) == 3
    assert len(proxy.requests_for(f"/blobs/{layer_digests(big)[0]}")) == 2


def test_429_retry_after_is_honoured(store: Store, proxy, big) -> None:
    victim = layer_digests(big)[0]
    proxy.add(
        registrykit.Rule(registrykit.blob_get(victim), "status", status=429, headers={"Retry-After": "1"})
    )  # fmt: skip
    assert do_pull(store, f"{proxy.endpoint}/test/big:v1").image_id == big.config_digest
    first, second = proxy.requests_for(f"/blobs/{victim}")
    assert second["time"] - first["time"] >= 0.9  # our own backoff is 0.02 s: only Retry-After explains this


def test_5xx_that_never_stop_are_a_clear_error(store: Store, proxy, big) -> None:
    proxy.add(registrykit.Rule(registrykit.any_get_of("/manifests/"), "status", times=None, status=500))
    with pytest.raises(RegistryError, match="answered 500"):
        do_pull(store, f"{proxy.endpoint}/test/big:v1")
    assert len(proxy.requests_for("/manifests/")) == FAST.retry.attempts


def test_corrupted_blob_is_discarded_with_a_clear_error(store: Store, proxy, big) -> None:
    victim = layer_digests(big)[2]
    proxy.add(registrykit.Rule(registrykit.blob_get(victim), "corrupt", times=None, after=200_000))
    with pytest.raises(DigestMismatch) as e:
        do_pull(store, f"{proxy.endpoint}/test/big:v1")
    assert victim in str(e.value)
    assert not store.blobs.has(victim)
    assert store.images.ids() == []
    assert_nothing_half_stored(store)
    r = run_cli(store, "pull", f"{proxy.endpoint}/test/big:v1")
    err = r.stderr.decode().strip().splitlines()
    assert r.returncode == 1 and "digest" in err[-1].lower() and err[-1].startswith("minibuild: error:")
    proxy.rules.clear()
    proxy.log.clear()
    kept = [d for d in layer_digests(big) if store.blobs.has(d)]  # downloads still running were cancelled
    assert do_pull(store, f"{proxy.endpoint}/test/big:v1").image_id == big.config_digest
    assert victim in blob_gets(proxy) and not set(kept) & set(blob_gets(proxy))  # intact ones are kept


def test_corrupted_manifest_fails_digest_verification(store: Store, proxy, big) -> None:
    proxy.add(registrykit.Rule(registrykit.any_get_of("/manifests/"), "corrupt", times=None, after=10))
    with pytest.raises(DigestMismatch):
        do_pull(store, f"{proxy.endpoint}/test/big@{big.digest}")
    with pytest.raises(DigestMismatch):  # by tag: the registry's Docker-Content-Digest does not match
        do_pull(store, f"{proxy.endpoint}/test/big:v1")
    assert store.blobs.all() == []


def test_registry_that_never_answers_times_out(store: Store, proxy, big) -> None:
    proxy.add(registrykit.Rule(registrykit.any_get_of("/manifests/"), "hang", times=None))
    settings = replace(FAST, read_timeout=0.5, retry=replace(FAST.retry, attempts=2))
    with pytest.raises(RegistryError, match=r"did not answer within 0\.5s") as e:
        do_pull(store, f"{proxy.endpoint}/test/big:v1", settings=settings)
    line = one_line("minibuild", e.value)
    assert "\n" not in line and "--timeout" in line  # what the CLI prints
    assert len(proxy.requests_for("/manifests/")) == 2


# -- plain HTTP and proxies from the environment -------------------------------------------------------------------
REMOTE = "registry.invalid:5000"  # never resolved: every request for it goes to the proxy from the environment


def test_proxy_env_is_used_and_plain_http_needs_insecure(store: Store, proxy, big, monkeypatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    with pytest.raises(RegistryError):
        do_pull(store, f"{REMOTE}/test/big:v1")
    assert [r["method"] for r in proxy.log] == ["CONNECT"] * len(proxy.log) and proxy.log  # HTTPS only
    assert proxy.log[0]["path"] == REMOTE
    proxy.log.clear()
    r = run_cli(store, "pull", "-q", "--insecure-registry", REMOTE, f"{REMOTE}/test/big:v1")
    assert r.returncode == 0, r.stderr
    plain = [x for x in proxy.log if x["method"] != "CONNECT"]
    assert plain and all(x["proxied"] for x in plain)  # absolute URLs: we were used as a forward proxy
    assert store.images.refs()[f"{REMOTE}/test/big:v1"] == big.config_digest


def test_loopback_registries_are_never_proxied(store: Store, registry, proxy, big, monkeypatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv("ALL_PROXY", proxy.url)
    assert do_pull(store, f"{registry.endpoint}/test/big:v1").image_id == big.config_digest
    assert proxy.log == []


def test_no_proxy_is_honoured(store: Store, registry, proxy, big, tmp_path: Path) -> None:
    """A name other than `localhost` is remote to us, so a proxy would apply unless NO_PROXY names it.

    The name resolves to 127.0.0.1 through a private /etc/hosts bind-mounted in a mount namespace of the
    pull's own (unshare), so the test needs no alias on the host and no DNS.
    """
    alias = "registry-under-test.example"
    hosts = tmp_path / "hosts"
    hosts.write_text(f"127.0.0.1 localhost {alias}\n")
    name = f"{alias}:{registry.port}"
    env = {**os.environ, "HTTP_PROXY": proxy.url, "HTTPS_PROXY": proxy.url, "NO_PROXY": alias}
    pull_cmd = [*MINIBUILD, "--root", store.root, "pull", "-q", "--insecure-registry", name, f"{name}/test/big:v1"]
    script = 'mount --make-rprivate / && mount --bind "$0" /etc/hosts && exec "$@"'
    result = subprocess.run(
        ["unshare", "--mount", "sh", "-c", script, str(hosts), *pull_cmd],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert store.images.ids() == [big.config_digest]
    assert proxy.log == []


# -- concurrency and crashes ----------------------------------------------------------------------------
def test_two_pulls_at_once_end_with_one_intact_image(store: Store, proxy, big) -> None:
    for digest in layer_digests(big):
        proxy.add(registrykit.Rule(registrykit.blob_get(digest), "throttle", times=1, after=1_000_000))
    name = f"{proxy.endpoint}/test/big:v1"
    procs = [
        subprocess.Popen([*MINIBUILD, "--root", store.root, "pull", "-q", name], stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    assert store.images.ids() == [big.config_digest]
    assert sorted(d for d in blob_gets(proxy) if d != big.config_digest) == sorted(layer_digests(big))
    assert len(store.layers.all()) == 3
    assert_nothing_half_stored(store)


def test_sigkill_mid_pull_leaves_nothing_half_done(store: Store, proxy, big) -> None:
    slow = layer_digests(big)[2]
    proxy.add(registrykit.Rule(registrykit.blob_get(slow), "throttle", times=1, after=50_000))
    name = f"{proxy.endpoint}/test/big:v1"
    p = subprocess.Popen([*MINIBUILD, "--root", store.root, "pull", "-q", name], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not all(store.blobs.has(d) for d in layer_digests(big)[:2]) or not proxy.requests_for(slow):
            assert time.monotonic() < deadline and p.poll() is None
            time.sleep(0.05)
        time.sleep(0.5)  # some of the slow blob has arrived
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    assert not store.blobs.has(slow)
    assert store.images.ids() == []
    assert gc.check(store) == []
    proxy.log.clear()
    assert do_pull(store, name).image_id == big.config_digest
    assert blob_gets(proxy) == [slow]  # only what was missing
    assert gc.check(store) == []


@pytest.mark.parametrize("what", ["/manifests/v1", "config"])
def test_dropped_connection_on_manifest_or_config_is_retried(store: Store, proxy, big, what: str) -> None:
    match = registrykit.blob_get(big.config_digest) if what == "config" else registrykit.any_get_of(what)
    proxy.add(registrykit.Rule(match, "drop", times=1, after=10))
    assert do_pull(store, f"{proxy.endpoint}/test/big:v1").image_id == big.config_digest
    fragment = f"/blobs/{big.config_digest}" if what == "config" else what
    assert len(proxy.requests_for(fragment)) == 2
