"""A build killed in the middle of a step leaves its overlay mounted under tmp/: the next store clears it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from minicache import overlay
from minicache.store import Store

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]


def mounts_under(path: Path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(str(path))]


def test_debris_of_a_dead_build_is_unmounted_and_removed(store_root: Path, tmp_path: Path) -> None:
    store = Store(store_root)
    lower, upper = tmp_path / "lower", Path(store.tmp_dir) / "build-999999999-1-abcdef" / "upper"
    (lower / "keep").mkdir(parents=True)
    (lower / "keep/file").write_text("lower layer")
    work, mnt = upper.parent / "work", upper.parent / "rootfs"
    for d in (upper, work, mnt):
        d.mkdir(parents=True)
    overlay.mount(mnt, [lower], upper, work)
    try:
        assert mounts_under(store.tmp_dir)
        Store(store_root)  # a later process opens the store: the dead build's debris goes, mount first
        assert mounts_under(store.tmp_dir) == []
        assert os.listdir(store.tmp_dir) == []
        assert (lower / "keep/file").read_text() == "lower layer"  # nothing was deleted through the mount
    finally:
        if mounts_under(mnt):
            overlay.unmount(mnt, lazy=True)
