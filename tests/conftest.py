"""Fixtures shared by every test: an empty store per test and root/kernel checks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import sessionkit
from minicache.store import Store
from storekit import add_rootfs_image

IS_ROOT = os.geteuid() == 0


@pytest.fixture(scope="session", autouse=True)
def _session_cgroup_parent():
    """Every test's container cgroups go under the session's own parent (see sessionkit); removed at the end."""
    yield
    sessionkit.remove_parent()


@pytest.fixture
def store_root(tmp_path: Path) -> Path:
    root = tmp_path / "minicontainer-store"
    root.mkdir()
    return root


@pytest.fixture
def store(store_root: Path) -> Store:
    return Store(store_root)


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
