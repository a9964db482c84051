"""Helpers for build tests: write a context, build it into a store, read files of the result."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

from minibuild.build.builder import BuildOptions, BuildResult, build
from minicache.store import Store


def write_context(root: Path, files: dict[str, str | bytes]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    return root


def run_build(store: Store, context: Path, **options) -> tuple[BuildResult, str]:
    """Build `context` and return the result with the step output."""
    out = io.StringIO()
    result = build(store, BuildOptions(context=str(context), out=out, **options))
    return result, out.getvalue()


def image_tree(store: Store, image: str) -> dict[str, tuple]:
    """path -> (type, mode, uid, gid, content-or-link) of an image's root filesystem, from its layer blobs."""
    from minicache.unpack import open_decompressed

    record = store.images.resolve(image)
    tree: dict[str, tuple] = {}
    for layer in record.layers:
        assert layer.digest is not None
        with store.blobs.open(layer.digest) as raw, tarfile.open(fileobj=open_decompressed(raw), mode="r|") as tar:
            for m in tar:
                name = m.name.rstrip("/")
                base = os.path.basename(name)
                parent = os.path.dirname(name)
                if base == ".wh..wh..opq":
                    for key in [k for k in tree if k.startswith(parent + "/")]:
                        del tree[key]
                    continue
                if base.startswith(".wh."):
                    gone = os.path.join(parent, base[4:])
                    for key in [k for k in tree if k == gone or k.startswith(gone + "/")]:
                        del tree[key]
                    continue
                kind = "dir" if m.isdir() else "link" if m.issym() else "hardlink" if m.islnk() else "file"
                data: object = m.linkname if (m.issym() or m.islnk()) else None
                if m.isfile():
                    f = tar.extractfile(m)
                    data = f.read() if f else b""
                tree[name] = (kind, m.mode & 0o7777, m.uid, m.gid, data)
    return tree


def config_of(store: Store, image: str) -> dict:
    return store.images.config(store.images.resolve(image))
