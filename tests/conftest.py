"""Fixtures shared by every test: an empty store per test and root/kernel checks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from minicache.store import Store

IS_ROOT = os.geteuid() == 0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_root = pytest.mark.skip(reason="needs root (namespaces, mounts, cgroups)")
    for item in items:
        if "root" in item.keywords and not IS_ROOT:
            item.add_marker(skip_root)


@pytest.fixture
def store_root(tmp_path: Path) -> Path:
    root = tmp_path / "minicontainer-store"
    root.mkdir()
    return root


@pytest.fixture
def store(store_root: Path) -> Store:
    return Store(store_root)


def add_rootfs_image(store: Store, rootfs: Path, name: str, config: dict | None = None) -> str:
    """Put a one-layer image made from a directory into the store, without the unpacker or a registry.

    The directory is copied into the layer snapshot as is; returns the image ID.
    """
    import json
    import shutil

    import imagekit
    from minicache import digest as digests
    from minicache.images import ImageRecord, LayerRef
    from minicache.layers import LayerInfo

    tar = imagekit.tar_of_dir(rootfs)
    diff_id = digests.of_bytes(tar)
    if not store.layers.has(diff_id):
        staging = store.layers.new_staging()
        shutil.copytree(rootfs, staging / "fs", symlinks=True, dirs_exist_ok=True)
        store.layers.commit(staging, LayerInfo(diff_id, diff_id, None, len(tar)), durable=False)
    cfg = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }
    cfg["config"].update(config or {})
    image_id = store.blobs.put(json.dumps(cfg, sort_keys=True).encode())
    store.images.put(ImageRecord(id=image_id, layers=(LayerRef(diff_id=diff_id, chain_id=diff_id),)), [name])
    return image_id


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A busybox root filesystem directory (from the host's busybox-static), built once per session."""
    import imagekit

    return imagekit.busybox_rootfs(tmp_path_factory.mktemp("busybox-rootfs"))


@pytest.fixture
def busybox_image(store: Store, busybox_rootfs: Path) -> str:
    """`busybox-test:latest` in the test's store; returns the reference."""
    add_rootfs_image(store, busybox_rootfs, "busybox-test:latest")
    return "busybox-test:latest"
