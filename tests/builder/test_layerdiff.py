"""The layer differ on hand-made overlay upper directories: whiteouts, opaque directories, links, determinism."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from pathlib import Path

import pytest
from minicache import layerdiff
from minicache.safetree import OPAQUE_XATTR
from minicache.store import Store

pytestmark = pytest.mark.root  # whiteouts are 0:0 character devices: mknod needs root


def make_upper(root: Path) -> Path:
    upper = root / "upper"
    (upper / "etc/app").mkdir(parents=True)
    (upper / "etc/app/conf").write_text("x=1\n")
    os.mknod(upper / "etc/gone", 0o600 | 0o020000, os.makedev(0, 0))  # overlay whiteout
    (upper / "opt/fresh").mkdir(parents=True)
    os.setxattr(upper / "opt/fresh", OPAQUE_XATTR, b"y")
    (upper / "opt/fresh/new").write_text("new\n")
    os.link(upper / "opt/fresh/new", upper / "opt/fresh/new-link")
    os.symlink("../etc/app", upper / "opt/link")
    os.chown(upper / "etc/app/conf", 1000, 1001)
    os.setxattr(upper / "etc/app/conf", "user.note", b"kept")
    for path in upper.rglob("*"):
        os.utime(path, (2_000_000_000, 2_000_000_000), follow_symlinks=False)
    return upper


def entries(store: Store, digest: str) -> list[tarfile.TarInfo]:
    data = store.blobs.read(digest)
    raw = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        return list(tar)


def test_overlay_form_becomes_oci_form(store: Store, tmp_path: Path) -> None:
    blob = layerdiff.write_layer(store, make_upper(tmp_path), timestamp=1_700_000_000)
    members = {m.name + ("/" if m.isdir() else ""): m for m in entries(store, blob.digest)}
    assert list(members) == [
        "etc/", "etc/app/", "etc/app/conf", "etc/.wh.gone", "opt/", "opt/fresh/", "opt/fresh/.wh..wh..opq",
        "opt/fresh/new", "opt/fresh/new-link", "opt/link",
    ]  # fmt: skip
    assert members["etc/.wh.gone"].isfile() and members["etc/.wh.gone"].size == 0
    assert members["opt/fresh/new-link"].islnk() and members["opt/fresh/new-link"].linkname == "opt/fresh/new"
    assert members["opt/link"].issym() and members["opt/link"].linkname == "../etc/app"
    conf = members["etc/app/conf"]
    assert (conf.uid, conf.gid, conf.uname, conf.gname) == (1000, 1001, "", "")
    assert conf.pax_headers.get("SCHILY.xattr.user.note") == "kept"
    assert not any("trusted.overlay" in k for m in members.values() for k in m.pax_headers)
    assert all(m.mtime == 1_700_000_000 for m in members.values())  # clamped to the timestamp
    assert blob.media_type.endswith("+gzip") and not blob.empty and blob.content_size == 8


def test_same_tree_same_bytes_and_compressions(store: Store, tmp_path: Path) -> None:
    upper = make_upper(tmp_path)
    a = layerdiff.write_layer(store, upper)
    b = layerdiff.write_layer(store, upper)
    assert a == b
    for compression in ("zstd", "none"):
        other = layerdiff.write_layer(store, upper, compression=compression)
        assert other.diff_id == a.diff_id and other.digest != a.digest
    assert layerdiff.write_layer(store, upper, compression="none").digest == a.diff_id  # none: the tar itself


def test_empty_upper_and_placeholders(store: Store, tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    (upper / "proc").mkdir(parents=True)
    (upper / "etc").mkdir()
    (upper / "etc/hosts").write_text("")
    blob = layerdiff.write_layer(store, upper, exclude_placeholders=("proc", "etc/hosts"))
    assert [(m.name, m.isdir()) for m in entries(store, blob.digest)] == [("etc", True)]
    (upper / "proc/x").write_text("not a placeholder")
    blob = layerdiff.write_layer(store, upper, exclude_placeholders=("proc", "etc/hosts"))
    assert "proc/x" in [m.name for m in entries(store, blob.digest)]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert layerdiff.write_layer(store, empty).empty and layerdiff.is_empty(empty)


def test_adopt_upper_publishes_the_snapshot(store: Store, tmp_path: Path) -> None:
    staging = Path(store.staging_dir("test"))
    upper = make_upper(staging)
    os.setxattr(upper / "etc", "trusted.overlay.origin", b"whatever")
    blob = layerdiff.write_layer(store, upper)
    info = layerdiff.adopt_upper(store, upper, None, blob.diff_id, blob.content_size)
    fs = Path(store.layers.fs(info.chain_id))
    assert info.chain_id == blob.diff_id and (fs / "etc/app/conf").read_text() == "x=1\n"
    assert os.getxattr(fs / "opt/fresh", OPAQUE_XATTR) == b"y"
    assert "trusted.overlay.origin" not in os.listxattr(fs / "etc")
    assert not upper.exists()
    store.discard(staging)
