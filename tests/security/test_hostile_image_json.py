"""Image JSON of the wrong shape: OCI index.json, manifests and configs in archives, and configs already in the
store (from before the checks) when `minirun run` reads them. Each is one line with a Docker exit code, never a
traceback; the JSON readers are property-tested: any document gives a result or a MiniError."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kits import archivekit, imagekit
from kits.imagekit import Entry
from kits.runkit import container_ids, minirun
from kits.storekit import add_rootfs_image
from minibuild.importer import import_tarball
from minibuild.registry import manifests
from minicache.errors import MiniError
from minicache.images import ImageRecord, LayerRef
from minicache.layers import LayerInfo
from minicache.store import Store
from minirun.engine import spec

MINIBUILD = [sys.executable, "-m", "minibuild.cli"]
LAYER = imagekit.layer([Entry("file", data=b"content\n")])
IMAGE = imagekit.image([LAYER], compression="none", oci=True)
OCI_MANIFEST = imagekit.MEDIA_OCI_MANIFEST


def oci_archive(*, index: object = None, manifest: object = None, config: object = None) -> bytes:
    """An OCI layout of IMAGE with its index.json, manifest or config replaced (bytes, or JSON of a value)."""

    def raw(value: object) -> bytes:
        return value if isinstance(value, bytes) else json.dumps(value).encode()

    blobs = {d: b for d, b in IMAGE.blobs.items() if d != IMAGE.config_digest}
    config_bytes = IMAGE.config if config is None else raw(config)
    blobs[imagekit.sha256(config_bytes)] = config_bytes
    doc = json.loads(IMAGE.manifest)
    doc["config"].update(digest=imagekit.sha256(config_bytes), size=len(config_bytes))
    manifest_bytes = json.dumps(doc).encode() if manifest is None else raw(manifest)
    blobs[imagekit.sha256(manifest_bytes)] = manifest_bytes
    descriptor = {"mediaType": OCI_MANIFEST, "digest": imagekit.sha256(manifest_bytes), "size": len(manifest_bytes)}
    index_bytes = raw({"schemaVersion": 2, "manifests": [descriptor]} if index is None else index)

    def build(tar: tarfile.TarFile) -> None:
        archivekit._add(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        archivekit._add(tar, "index.json", index_bytes)
        archivekit._blobs(tar, blobs)

    return archivekit._tar(build)


def from_tar(root: Path, data: bytes, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "input.tar"
    path.write_bytes(data)
    return subprocess.run(
        [*MINIBUILD, "--root", str(root), "from-tar", str(path)], capture_output=True, text=True, timeout=120
    )


def assert_one_line(result: subprocess.CompletedProcess[str], prog: str, code: int, *words: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == code, result.stderr
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def assert_nothing_stored(root: Path) -> None:
    store = Store(root)
    assert os.listdir(store.blobs_dir) == []
    assert os.listdir(store.layers_dir) == []
    assert store.images.ids() == [] and store.images.refs() == {}
    assert os.listdir(store.tmp_dir) == []


GOOD_DIGEST = imagekit.sha256(b"x")


@pytest.mark.root
def test_the_unchanged_archive_imports(store_root: Path, tmp_path: Path) -> None:
    result = from_tar(store_root, oci_archive(), tmp_path)
    assert result.returncode == 0, result.stderr
    assert Store(store_root).images.ids() == [IMAGE.config_digest]


@pytest.mark.root
@pytest.mark.parametrize(
    ("kind", "value", "word"),
    [
        ("index", [], "not a JSON object"),
        ("index", "index", "not a JSON object"),
        ("index", {"schemaVersion": 2, "manifests": [1]}, "descriptor"),
        ("index", {"schemaVersion": 2, "manifests": "all"}, "manifests"),
        ("index", {"schemaVersion": 2, "manifests": [{"mediaType": OCI_MANIFEST, "digest": 5, "size": 1}]}, "digest"),
        ("index", {"schemaVersion": 2, "manifests": [{"mediaType": OCI_MANIFEST, "digest": GOOD_DIGEST}]}, "size"),
        ("manifest", [], "not a JSON object"),
        ("manifest", {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": 5, "layers": []}, "descriptor"),
        ("manifest", {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": []}, "descriptor"),
        ("manifest", {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {}, "layers": {}}, "descriptor"),
        ("config", [], "not a JSON object"),
        ("config", {"rootfs": "layers"}, "rootfs"),
        ("config", {"rootfs": {"diff_ids": [5]}, "config": {}}, "diff_id"),
        ("config", {"rootfs": {"diff_ids": IMAGE.diff_ids}, "config": {"Env": [1]}}, "Env"),
        ("config", {"rootfs": {"diff_ids": IMAGE.diff_ids}, "config": {"Cmd": "sh"}}, "Cmd"),
        ("config", {"rootfs": {"diff_ids": IMAGE.diff_ids}, "config": {"Entrypoint": 7}}, "Entrypoint"),
        ("config", {"rootfs": {"diff_ids": IMAGE.diff_ids}, "config": "sh"}, "config"),
    ],
)
def test_oci_json_of_the_wrong_shape(store_root: Path, tmp_path: Path, kind: str, value: object, word: str) -> None:
    assert_one_line(from_tar(store_root, oci_archive(**{kind: value}), tmp_path), "minibuild", 1, word)
    assert_nothing_stored(store_root)


@pytest.mark.root
def test_a_manifest_listing_its_config_as_a_layer_is_refused(store_root: Path, tmp_path: Path) -> None:
    doc = json.loads(IMAGE.manifest)
    doc["layers"].append({**doc["config"], "mediaType": imagekit.MEDIA_OCI_LAYER})
    result = from_tar(store_root, oci_archive(manifest=doc), tmp_path)
    assert_one_line(result, "minibuild", 1, "config blob", "as a layer")
    assert_nothing_stored(store_root)


# -- what minirun makes of a bad config already in the store ---------------------------------------------------------
@pytest.mark.root
@pytest.mark.parametrize(
    ("config", "word"),
    [
        ({"Env": ["PATH=/bin", 5]}, "Env"),
        ({"Env": "PATH=/bin"}, "Env"),
        ({"Cmd": "/bin/sh -c true"}, "Cmd"),
        ({"Cmd": 5}, "Cmd"),
        ({"Entrypoint": "/bin/sh"}, "Entrypoint"),
        ({"Entrypoint": 1}, "Entrypoint"),
        ({"WorkingDir": 5}, "WorkingDir"),
        ({"User": ["root"]}, "User"),
    ],
)
def test_run_of_a_stored_bad_config_is_one_line(
    store: Store, store_root: Path, busybox_rootfs: Path, config: dict, word: str
) -> None:
    add_rootfs_image(store, busybox_rootfs, "bad:1", config)
    for args in (["run", "--rm", "bad:1"], ["create", "bad:1"], ["run", "--rm", "bad:1", "true"]):
        assert_one_line(minirun(store_root, *args), "minirun", 125, word)
    assert container_ids(store_root) == []


@pytest.mark.root
def test_run_of_an_image_of_500_layers_says_the_limit(store: Store, store_root: Path) -> None:
    """An image stored before import refused more than 125 layers (here: 500 empty snapshots)."""
    layers = []
    parent = None
    diff_ids = [imagekit.sha256(f"layer {i}".encode()) for i in range(500)]
    for diff_id, chain_id in zip(diff_ids, _chain_ids(diff_ids), strict=True):
        staging = Path(store.layers.new_staging())
        store.layers.commit(staging, LayerInfo(chain_id, diff_id, parent, 0), durable=False)
        layers.append(LayerRef(diff_id=diff_id, chain_id=chain_id))
        parent = chain_id
    config = {"os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}, "config": {"Cmd": ["true"]}}
    image_id = store.blobs.put(json.dumps(config).encode())
    store.images.put(ImageRecord(id=image_id, layers=tuple(layers)), ["deep:1"])
    assert_one_line(minirun(store_root, "run", "--rm", "deep:1"), "minirun", 125, "500 layers", "at most 125")
    assert container_ids(store_root) == []


def _chain_ids(diff_ids: list[str]) -> list[str]:
    from minicache import digest

    return digest.chain_ids(diff_ids)


# -- the JSON readers, property-tested ---------------------------------------------------------------------------------
KEYS = st.sampled_from(
    [
        "schemaVersion", "mediaType", "manifests", "config", "layers", "digest", "size", "platform", "annotations",
        "rootfs", "diff_ids", "Env", "Cmd", "Entrypoint", "WorkingDir", "User", "ExposedPorts", "os", "architecture",
        "Config", "Layers", "RepoTags", "urls", "org.opencontainers.image.ref.name",
    ]
)  # fmt: skip
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=12),
    st.sampled_from(
        [
            2,
            GOOD_DIGEST,
            IMAGE.config_digest,
            OCI_MANIFEST,
            imagekit.MEDIA_OCI_INDEX,
            imagekit.MEDIA_OCI_CONFIG,
            imagekit.MEDIA_OCI_LAYER,
            "linux",
            "amd64",
            "sha256:",
            "busybox:1",
            "c" * 64 + ".json",
            "layer.tar",
            f"blobs/sha256/{IMAGE.config_digest[7:]}",
            IMAGE.diff_ids[0],
            imagekit.sha256(LAYER),
        ]
    ),
)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.one_of(KEYS, st.text(max_size=5)), inner, max_size=6)
    ),
)


def _document(value: object) -> bytes:
    return json.dumps(value).encode()


@given(JSON, st.sampled_from([None, OCI_MANIFEST, imagekit.MEDIA_OCI_INDEX, "text/plain"]))
def test_manifest_and_index_reader_gives_a_result_or_a_mini_error(doc: object, content_type: str | None) -> None:
    try:
        parsed = manifests.parse(_document(doc), content_type, "test")
    except MiniError:
        return
    if isinstance(parsed, manifests.Manifest):
        assert all(isinstance(d.digest, str) and d.size >= 0 for d in (parsed.config, *parsed.layers))


@given(JSON)
def test_config_readers_give_a_result_or_a_mini_error(doc: object) -> None:
    try:
        diff_ids = manifests.config_diff_ids(doc, "test")
    except MiniError:
        pass
    else:
        assert all(isinstance(d, str) for d in diff_ids)
        assert len(diff_ids) <= manifests.MAX_LAYERS
        # what minibuild lets in, minirun takes
        settings_ = spec.image_settings(doc, "test", len(diff_ids))
        spec.merge_env(list(settings_.get("Env") or []), [], {})
    try:
        settings_ = spec.image_settings(doc, "test", 1)
    except MiniError:
        return
    for key in ("Env", "Cmd", "Entrypoint"):
        assert all(isinstance(v, str) for v in settings_.get(key) or [])


@pytest.fixture(scope="module")
def scratch_store() -> Store:
    with tempfile.TemporaryDirectory(prefix="hostile-json-") as root:
        yield Store(root)


def _archive(members: dict[str, bytes]) -> bytes:
    def build(tar: tarfile.TarFile) -> None:
        for name, data in members.items():
            archivekit._add(tar, name, data)

    return archivekit._tar(build)


@pytest.mark.root
# Each example imports an archive into a store on disk: at most 150, fewer where the profile asks for fewer.
@settings(
    max_examples=min(150, settings.default.max_examples),
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(manifest=JSON, index=JSON, config=JSON, layout=st.booleans())
def test_archive_json_readers_give_a_result_or_a_mini_error(
    scratch_store: Store, manifest: object, index: object, config: object, layout: bool
) -> None:
    """docker save's manifest.json, an OCI index.json and any config: imported, or refused with a MiniError."""
    config_bytes = _document(config)
    members = {
        "oci-layout" if layout else "manifest.json": b"{}" if layout else _document(manifest),
        "index.json": _document(index),
        f"blobs/sha256/{imagekit.sha256(config_bytes)[7:]}": config_bytes,
        f"blobs/sha256/{IMAGE.config_digest[7:]}": IMAGE.config,
        "c" * 64 + ".json": config_bytes,
        "layer.tar": LAYER,
    }
    with contextlib.suppress(MiniError):
        import_tarball(scratch_store, io.BytesIO(_archive(members)))


@pytest.mark.root
@pytest.mark.parametrize("config", [b"[]", b'"config"', b'{"config": ["Cmd"]}'])
def test_a_stored_config_that_is_no_object(store: Store, store_root: Path, busybox_rootfs: Path, config: bytes) -> None:
    """`images` and `inspect` show it, `run` refuses it in one line."""
    good = store.images.get(add_rootfs_image(store, busybox_rootfs, "good:1"))
    image_id = store.blobs.put(config)
    store.images.put(ImageRecord(id=image_id, layers=good.layers), ["odd:1"])
    for args in (["images"], ["inspect", "odd:1"]):
        result = subprocess.run([*MINIBUILD, "--root", str(store_root), *args], capture_output=True, text=True)
        assert result.returncode == 0 and result.stderr == "", result.stderr
    assert_one_line(minirun(store_root, "run", "--rm", "odd:1", "true"), "minirun", 125, "not a JSON object")
    assert container_ids(store_root) == []
