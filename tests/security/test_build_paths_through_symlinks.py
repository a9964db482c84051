"""A hostile base image or build context uses symlinks to make `minibuild build` write or read host files.

The base image has `/app -> <host dir>` (absolute) and `/rel -> ../../../../<host dir>`; the context has a
link to a host file. COPY, WORKDIR and RUN's working directory must resolve them inside the image's root
(or the context's), never on the host.
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import pytest
from kits.storekit import add_rootfs_image
from minibuild.build.builder import BuildOptions, build
from minibuild.errors import RecipeError
from minicache.overlay import supported
from minicache.store import Store

pytestmark = [pytest.mark.root, pytest.mark.skipif(not supported() or os.geteuid() != 0, reason="needs root + overlay")]


def _build(store: Store, ctx: Path, text: str, tag: str) -> None:
    (ctx / "Containerfile").write_text(text)
    build(store, BuildOptions(context=str(ctx), tags=[tag], out=io.StringIO()))


def _tree_of(store: Store, image: str) -> dict[str, bytes]:
    import tarfile

    from minicache.unpack import open_decompressed

    out = {}
    for layer in store.images.resolve(image).layers:
        with store.blobs.open(layer.digest) as raw, tarfile.open(fileobj=open_decompressed(raw), mode="r|") as tar:
            for m in tar:
                if m.isfile():
                    out[m.name] = tar.extractfile(m).read()
    return out


def test_copy_and_workdir_stay_inside_the_image(store: Store, busybox_rootfs: Path, tmp_path: Path) -> None:
    host = tmp_path / "host-target"
    host.mkdir()
    rootfs = tmp_path / "evil-rootfs"
    shutil.copytree(busybox_rootfs, rootfs, symlinks=True)
    os.symlink(str(host), rootfs / "app")
    os.symlink("../../../../../../../../" + str(host).lstrip("/"), rootfs / "rel")
    add_rootfs_image(store, rootfs, "evil-base:1")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "payload").write_text("owned")
    _build(
        store,
        ctx,
        "FROM evil-base:1\nCOPY payload /app/payload\nCOPY payload /rel/payload2\n"
        "WORKDIR /app/work\nRUN echo ran > here\n",
        "evil:1",
    )
    assert list(host.iterdir()) == []  # nothing reached the host directory
    tree = _tree_of(store, "evil:1")
    inside = str(host).lstrip("/")
    assert tree[f"{inside}/payload"] == b"owned" and tree[f"{inside}/payload2"] == b"owned"
    assert tree[f"{inside}/work/here"] == b"ran\n"


def test_context_links_do_not_read_host_files(store: Store, busybox_image: str, tmp_path: Path) -> None:
    secret = tmp_path / "host-secret"
    secret.write_text("host secret")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    os.symlink(str(secret), ctx / "abs-link")
    os.symlink("../host-secret", ctx / "rel-link")
    for link in ("abs-link", "rel-link"):
        with pytest.raises(RecipeError, match="no such file"):
            _build(store, ctx, f"FROM {busybox_image}\nCOPY {link} /leak\n", "leak:1")
    (ctx / "dir").mkdir()
    os.symlink(str(secret), ctx / "dir" / "inner")
    _build(store, ctx, f"FROM {busybox_image}\nCOPY dir /d/\n", "leak:2")
    tree = _tree_of(store, "leak:2")
    assert b"host secret" not in tree.values()  # a link inside a copied directory is copied as a link
