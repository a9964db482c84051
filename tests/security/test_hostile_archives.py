"""Hostile tarballs for `minibuild from-tar`: tar headers with numbers no system call takes, compressed
streams that are garbage or cut short, docker save archives whose manifest.json has the wrong shape, invalid
RepoTags, a config listed as a layer, too many layers. Each gets one line and exit status 1, and stores
nothing; the tar header parser itself is property-tested: any bytes give members or a MiniError."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kits import archivekit, imagekit
from kits.imagekit import Entry
from minicache.errors import MiniError
from minicache.store import Store
from minicache.unpack import unpack_layer

MINIBUILD = [sys.executable, "-m", "minibuild.cli"]
CONFIG_NAME = "c" * 64 + ".json"


def from_tar(root: Path, data: bytes, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "input.tar"
    path.write_bytes(data)
    return subprocess.run(
        [*MINIBUILD, "--root", str(root), "from-tar", str(path)], capture_output=True, text=True, timeout=120
    )


def assert_refused(result: subprocess.CompletedProcess[str], *words: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1, result.stderr
    assert len(lines) == 1 and lines[0].startswith("minibuild: error: "), result.stderr
    for word in words:
        assert word in lines[0]


def assert_nothing_stored(root: Path) -> None:
    store = Store(root)  # opening it clears tmp/ of dead processes' debris
    assert os.listdir(store.blobs_dir) == []
    assert os.listdir(store.layers_dir) == []
    assert [n for n in os.listdir(store.images_dir) if n != "refs.json"] == []
    assert store.images.refs() == {}
    assert os.listdir(store.tmp_dir) == []


# -- tar headers ---------------------------------------------------------------------------------------------------
@pytest.mark.root
@pytest.mark.parametrize(
    ("pax", "word"),
    [
        ({"uid": "99999999999999999999"}, "uid"),
        ({"gid": "4294967296"}, "gid"),
        ({"mtime": "1e400"}, "time"),
        ({"mtime": "-1e300"}, "time"),
        ({"size": "9" * 30}, "PAX"),
    ],
)
def test_pax_numbers_out_of_range_are_refused(store_root: Path, tmp_path: Path, pax: dict, word: str) -> None:
    layer = imagekit.layer([Entry("etc/", tarfile.DIRTYPE, mode=0o755), Entry("etc/file", data=b"x", pax=pax)])
    assert_refused(from_tar(store_root, layer, tmp_path), word)
    assert_nothing_stored(store_root)


def _base256(value: int, width: int) -> bytes:
    return bytes([0x80]) + value.to_bytes(width - 1, "big")


@pytest.mark.root
@pytest.mark.parametrize(("offset", "width", "word"), [(108, 8, "uid"), (136, 12, "mtime"), (329, 8, "device")])
def test_base256_header_numbers_out_of_range_are_refused(
    store_root: Path, tmp_path: Path, offset: int, width: int, word: str
) -> None:
    kind = tarfile.CHRTYPE if word == "device" else tarfile.REGTYPE
    info = tarfile.TarInfo("dev/thing" if kind == tarfile.CHRTYPE else "file")
    info.type = kind
    header = bytearray(info.tobuf(tarfile.USTAR_FORMAT))
    header[offset : offset + width] = _base256((1 << (8 * (width - 1) - 1)) - 1, width)
    header[148:156] = b"        "
    header[148:156] = b"%06o\0 " % sum(header)
    assert_refused(from_tar(store_root, bytes(header) + bytes(1024), tmp_path), "out of range")
    assert_nothing_stored(store_root)


# -- compression -----------------------------------------------------------------------------------------------------
@pytest.mark.root
@pytest.mark.parametrize(
    "data",
    [
        b"\x1f\x8b" + bytes(range(256)) * 8,  # gzip magic, then garbage
        b"\x28\xb5\x2f\xfd" + bytes(range(256)) * 8,  # zstd magic, then garbage
        imagekit.gz(imagekit.layer([Entry("file", data=os.urandom(4096))]))[:100],  # gzip cut short
    ],
    ids=["gzip-garbage", "zstd-garbage", "gzip-truncated"],
)
def test_corrupt_compressed_streams_are_one_line(store_root: Path, tmp_path: Path, data: bytes) -> None:
    result = from_tar(store_root, data, tmp_path)
    assert_refused(result)
    assert "Traceback" not in result.stderr
    assert_nothing_stored(store_root)


# -- docker save archives of the wrong shape ---------------------------------------------------------------------------
LAYER = imagekit.layer([Entry("file", data=b"content\n")])
IMAGE = imagekit.image([LAYER], compression="none")


def docker_save(manifest: object, *, config: bytes = IMAGE.config, extra: dict[str, bytes] | None = None) -> bytes:
    def build(tar: tarfile.TarFile) -> None:
        archivekit._add(tar, CONFIG_NAME, config)
        archivekit._add(tar, "d" * 64 + "/layer.tar", LAYER)
        for name, data in (extra or {}).items():
            archivekit._add(tar, name, data)
        archivekit._add(
            tar, "manifest.json", manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode()
        )

    return archivekit._tar(build)


GOOD_ENTRY = {"Config": CONFIG_NAME, "Layers": ["d" * 64 + "/layer.tar"], "RepoTags": ["good:1"]}


@pytest.mark.root
def test_a_well_formed_docker_save_still_imports(store_root: Path, tmp_path: Path) -> None:
    result = from_tar(store_root, docker_save([GOOD_ENTRY]), tmp_path)
    assert result.returncode == 0, result.stderr
    assert Store(store_root).images.refs() == {"docker.io/library/good:1": IMAGE.config_digest}


@pytest.mark.root
@pytest.mark.parametrize(
    ("manifest", "word"),
    [
        ({"Config": CONFIG_NAME}, "not a list"),
        ([1], "not a list of objects"),
        ([{**GOOD_ENTRY, "Config": 5}], "Config"),
        ([{**GOOD_ENTRY, "Layers": "d" * 64 + "/layer.tar"}], "Layers"),
        ([{"Layers": GOOD_ENTRY["Layers"]}], "Config"),
        ([{**GOOD_ENTRY, "RepoTags": "good:1"}], "RepoTags"),
        ([{**GOOD_ENTRY, "RepoTags": ["UPPER CASE:tag"]}], "UPPER CASE:tag"),
        ([{**GOOD_ENTRY, "RepoTags": ["good:1", "bad//name"]}], "bad//name"),
        ([{**GOOD_ENTRY, "Layers": [CONFIG_NAME]}], "as a layer"),
        ([{**GOOD_ENTRY, "Layers": [*GOOD_ENTRY["Layers"], CONFIG_NAME]}], "as a layer"),
        (b"[" * 100_000 + b"]" * 100_000, "JSON"),
        (b"\xff\xfe not json", "JSON"),
    ],
    ids=[
        "object", "list-of-int", "config-number", "layers-string", "no-config", "repotags-string",
        "repotags-invalid", "repotags-one-invalid", "config-as-layer", "config-as-extra-layer", "nested", "binary",
    ],
)  # fmt: skip
def test_docker_save_manifest_of_the_wrong_shape(store_root: Path, tmp_path: Path, manifest: object, word: str) -> None:
    assert_refused(from_tar(store_root, docker_save(manifest), tmp_path), word)
    assert_nothing_stored(store_root)


def _config(**changes: object) -> bytes:
    config = json.loads(IMAGE.config)
    config.update(changes)
    return json.dumps(config).encode()


@pytest.mark.root
@pytest.mark.parametrize(
    ("config", "word"),
    [
        (b"[]", "not a JSON object"),
        (_config(rootfs="layers"), "rootfs"),
        (_config(rootfs={"diff_ids": "sha256:x"}), "rootfs"),
        (_config(rootfs={"diff_ids": ["sha256:nothex"]}), "diff_id"),
        (_config(config=["Cmd"]), "config"),
        (_config(config={"Env": ["A=1", 2]}), "Env"),
        (_config(config={"Cmd": "sh -c true"}), "Cmd"),
        (_config(config={"Cmd": 5}), "Cmd"),
        (_config(config={"Entrypoint": "/bin/sh"}), "Entrypoint"),
        (_config(config={"Entrypoint": 1.5}), "Entrypoint"),
        (_config(config={"WorkingDir": ["/"]}), "WorkingDir"),
    ],
)
def test_docker_save_config_of_the_wrong_shape(store_root: Path, tmp_path: Path, config: bytes, word: str) -> None:
    entry = {**GOOD_ENTRY}
    assert_refused(from_tar(store_root, docker_save([entry], config=config), tmp_path), word)
    assert_nothing_stored(store_root)


@pytest.mark.root
def test_more_than_125_layers_are_refused_at_import(store_root: Path, tmp_path: Path) -> None:
    layers = [imagekit.layer([Entry(f"f{i}", data=b"x")]) for i in range(126)]
    img = imagekit.image(layers, compression="none", oci=True)
    archive = archivekit.oci_layout([(img, {})])
    assert_refused(from_tar(store_root, archive, tmp_path), "126 layers", "125")
    assert_nothing_stored(store_root)


# -- the tar header parser, property-tested ------------------------------------------------------------------------
def _walk(data: bytes) -> list:
    """Every member of `data` as the archive reader sees it, contents read."""
    from minicache.unpack import TarReader

    reader = TarReader(io.BytesIO(data))
    out = []
    for m in reader.members():
        while reader.read(1 << 16):
            pass
        out.append(m)
    return out


def _assert_sane(members: list) -> None:
    """What the parser hands on must fit the system calls that use it (chown, utime, makedev)."""
    for m in members:
        assert 0 <= m.uid <= 0xFFFFFFFE and 0 <= m.gid <= 0xFFFFFFFE
        assert -(2**63) < m.mtime < 2**63
        assert m.size >= 0
        assert 0 <= m.devmajor <= 0xFFFFFFFF and 0 <= m.devminor <= 0xFFFFFFFF


PAX_KEYS = st.sampled_from(
    [
        "uid",
        "gid",
        "mtime",
        "size",
        "path",
        "linkpath",
        "SCHILY.xattr.user.x",
        "SCHILY.xattr." + "n" * 300,
        "SCHILY.xattr.",
    ]
)
PAX_VALUES = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["1e400", "-1e400", "nan", "inf", "0x10", "1_0", "", " 1", "99999999999999999999"]),
    st.text(max_size=20),
)


NAMES = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        ["a" * 300, "d/" + "b" * 256, "../x", "/abs", ".wh.x", "d/.wh..wh..opq", "x/../../y", "", ".", "d"]
    ),
)


@st.composite
def hostile_tars(draw: st.DrawFn) -> bytes:
    """A small tar with names, links and PAX records drawn from hostile values, then some header bytes overwritten."""
    entries = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(
            st.sampled_from([tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE])
        )
        data = b"x" * draw(st.integers(0, 600)) if kind == tarfile.REGTYPE else b""
        entries.append(Entry(draw(NAMES), kind, data=data, linkname=draw(NAMES) if kind in (b"1", b"2") else ""))
        entries[-1].pax = draw(st.dictionaries(PAX_KEYS, PAX_VALUES, max_size=3))
    try:
        data = bytearray(imagekit.layer(entries))
    except (ValueError, UnicodeError, OverflowError):
        data = bytearray(imagekit.layer([Entry("plain", data=b"x")]))
    for _ in range(draw(st.integers(0, 4))):
        offset = draw(st.integers(0, len(data) - 1))
        patch = draw(st.binary(min_size=1, max_size=16))
        data[offset : offset + len(patch)] = patch
    return bytes(data[: draw(st.integers(0, len(data)))] if draw(st.booleans()) else data)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_any_bytes_give_members_or_a_mini_error(data: bytes) -> None:
    with contextlib.suppress(MiniError):
        _assert_sane(_walk(data))


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(hostile_tars())
def test_hostile_headers_give_members_or_a_mini_error(data: bytes) -> None:
    with contextlib.suppress(MiniError):
        _assert_sane(_walk(data))


@pytest.mark.root
# Each example unpacks into a store on disk: at most 150, fewer where the profile asks for fewer.
@settings(max_examples=min(150, settings.default.max_examples), suppress_health_check=[HealthCheck.too_slow])
@given(data=hostile_tars())
def test_hostile_headers_unpack_or_give_a_mini_error(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    store = Store(tmp_path_factory.mktemp("store"))
    try:
        unpack_layer(store, io.BytesIO(data))
    except MiniError:
        assert os.listdir(store.layers_dir) == []
