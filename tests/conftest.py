"""Fixtures shared by every test: an empty store per test and root/kernel checks."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from hypothesis import settings
from kits import sessionkit
from kits.storekit import add_rootfs_image
from minicache.store import Store

IS_ROOT = os.geteuid() == 0
# `minirun run` without --network joins the default bridge network, as Docker's. Tests that are not about
# networking keep a private, loopback-only namespace (fast, nothing on the host's links); the network
# tests (tests/runner/network/) ask for bridges explicitly, in stores with names and subnets of their own.
os.environ.setdefault("MINICONTAINER_DEFAULT_NETWORK", "none")

# Property tests: a quick profile for runs at a desk, and the thorough one `make test` (CI) selects through
# HYPOTHESIS_PROFILE=ci, with as many examples as any property test asks for. Loaded here, before the test
# modules are imported, so that their @settings decorators inherit from it. No deadline: the machine is
# shared, and a slow example is not a wrong one.
settings.register_profile("ci", max_examples=500, deadline=None)
settings.register_profile("dev", max_examples=40, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


@pytest.fixture(scope="session", autouse=True)
def _session_cgroup_parent():
    """Every test's container cgroups go under the session's own parent (see sessionkit); removed at the end."""
    yield
    sessionkit.remove_parent()


def _threads() -> set[int]:
    return {int(t) for t in os.listdir("/proc/self/task")} - {os.getpid()}


@pytest.fixture(autouse=True)
def _no_thread_outlives_its_test():
    """A thread left running by one test (a reader, a pool, a warm-up) makes the next in-process container
    start refuse ("a process that runs threads"): fail the test that left it instead, after a short grace."""
    before = _threads()
    yield
    deadline = time.monotonic() + 3
    while (_threads() - before) and time.monotonic() < deadline:
        time.sleep(0.02)
    left = _threads() - before
    names = [t.name for t in threading.enumerate() if t.native_id in left]
    assert not left, f"threads outlived the test: {sorted(left)} {names}"


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
    from kits import imagekit

    return imagekit.busybox_rootfs(tmp_path_factory.mktemp("busybox-rootfs"))


@pytest.fixture
def busybox_image(store: Store, busybox_rootfs: Path) -> str:
    """`busybox-test:latest` in the test's store; returns the reference."""
    add_rootfs_image(store, busybox_rootfs, "busybox-test:latest")
    return "busybox-test:latest"
