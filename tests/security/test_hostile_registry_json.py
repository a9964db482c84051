"""A registry that answers with image JSON minibuild did not check: a manifest nested deeper than the
interpreter's stack, one that lists its config as a layer or has 126 layers, and image configs whose run
settings have the wrong type (a non-string in `Env`, a string for `Cmd`). `minibuild pull` gives one line and
exit status 1, and stores no image. (Manifests that are lists, `"manifests": [1]`, `"config": 5` and configs
without rootfs were already refused; the property tests of test_hostile_image_json.py keep them so.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from kits import imagekit, registrykit
from kits.imagekit import Entry
from minicache import gc
from minicache.store import Store

MINIBUILD = [sys.executable, "-m", "minibuild.cli"]
OCI_MANIFEST = imagekit.MEDIA_OCI_MANIFEST
LAYER = imagekit.layer([Entry("file", data=b"content\n")])

pytestmark = [pytest.mark.root, pytest.mark.registry]


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[registrykit.RegistryServer]:
    yield from registrykit.serving_or_skip(tmp_path_factory.mktemp("registry"))


@pytest.fixture
def proxy(registry: registrykit.RegistryServer) -> Iterator[registrykit.FaultProxy]:
    with registrykit.FaultProxy(registry.endpoint) as p:
        yield p


@pytest.fixture
def client_env(tmp_path: Path) -> dict[str, str]:
    return registrykit.client_env(tmp_path)


def pull(store_root: Path, name: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*MINIBUILD, "--root", str(store_root), "pull", "-q", name],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def assert_refused(result: subprocess.CompletedProcess[str], store_root: Path, *words: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1, result.stderr
    assert len(lines) == 1 and lines[0].startswith("minibuild: error: "), result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    store = Store(store_root)
    assert store.images.ids() == [] and store.images.refs() == {}
    assert gc.check(store) == []


GOOD = imagekit.image([LAYER], oci=True)


@pytest.mark.parametrize(
    ("document", "word"),
    [(b"[" * 100_000 + b"]" * 100_000, "not JSON")],
    ids=["nested-too-deep"],
)
def test_manifest_of_the_wrong_shape(store_root: Path, proxy, client_env, document: object, word: str) -> None:
    body = document if isinstance(document, bytes) else json.dumps(document).encode()
    proxy.add(
        registrykit.Rule(
            registrykit.any_get_of("/manifests/v1"),
            "reply",
            times=None,
            status=200,
            headers={"Content-Type": OCI_MANIFEST},
            body=body,
        )
    )
    assert_refused(pull(store_root, f"{proxy.endpoint}/test/shape:v1", client_env), store_root, word)


def push_raw(registry, repo: str, config: bytes, layers: list[bytes], *, config_as_layer: bool = False) -> None:
    """An image whose config bytes are given as they are (imagekit.image would make them valid)."""
    descriptors = []
    for layer in layers:
        registrykit.push_blob(registry.url, repo, layer)
        descriptors.append(
            {"mediaType": imagekit.MEDIA_OCI_LAYER, "digest": imagekit.sha256(layer), "size": len(layer)}
        )
    registrykit.push_blob(registry.url, repo, config)
    config_desc = {"mediaType": imagekit.MEDIA_OCI_CONFIG, "digest": imagekit.sha256(config), "size": len(config)}
    if config_as_layer:
        descriptors.append({**config_desc, "mediaType": imagekit.MEDIA_OCI_LAYER})
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config_desc, "layers": descriptors}
    registrykit.put_manifest(registry.url, repo, "v1", json.dumps(manifest).encode(), OCI_MANIFEST)


DIFF_IDS = [imagekit.sha256(LAYER)]


@pytest.mark.parametrize(
    ("config", "word"),
    [
        ({"rootfs": {"diff_ids": DIFF_IDS}, "config": {"Env": ["A=1", 2]}}, "Env"),
        ({"rootfs": {"diff_ids": DIFF_IDS}, "config": {"Cmd": "sh -c true"}}, "Cmd"),
        ({"rootfs": {"diff_ids": DIFF_IDS}, "config": {"Entrypoint": 5}}, "Entrypoint"),
        ({"rootfs": {"diff_ids": DIFF_IDS}, "config": 5}, "config"),
    ],
)
def test_config_of_the_wrong_shape(store_root: Path, registry, client_env, config: object, word: str) -> None:
    repo = f"test/config{imagekit.sha256(json.dumps(config).encode())[7:19]}"
    push_raw(registry, repo, json.dumps(config).encode(), [LAYER])
    assert_refused(pull(store_root, f"{registry.endpoint}/{repo}:v1", client_env), store_root, word)


def test_a_manifest_listing_its_config_as_a_layer_is_refused(store_root: Path, registry, client_env) -> None:
    config = json.dumps({"os": "linux", "rootfs": {"type": "layers", "diff_ids": DIFF_IDS * 2}}).encode()
    push_raw(registry, "test/configlayer", config, [LAYER], config_as_layer=True)
    result = pull(store_root, f"{registry.endpoint}/test/configlayer:v1", client_env)
    assert_refused(result, store_root, "config blob", "as a layer")


def test_more_than_125_layers_are_refused(store_root: Path, registry, client_env) -> None:
    layers = [imagekit.layer([Entry(f"f{i}", data=b"x")]) for i in range(126)]
    config = {"os": "linux", "rootfs": {"type": "layers", "diff_ids": [imagekit.sha256(t) for t in layers]}}
    push_raw(registry, "test/deep", json.dumps(config).encode(), layers)
    result = pull(store_root, f"{registry.endpoint}/test/deep:v1", client_env)
    assert_refused(result, store_root, "126 layers", "125")
    assert os.listdir(Store(store_root).layers_dir) == []
