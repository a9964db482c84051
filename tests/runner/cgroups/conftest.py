"""Fixtures for the cgroup tests: a unique parent per session, a cgroup per test, leak checks, a fake v2 tree.

Every cgroup made here lives under `mc-test-<random>` in each hierarchy, so tests running at the same time
on this machine (other sessions, other helpers) never see or touch each other's. Teardown removes the
parent's children (all ours) and the parent itself, and fails the test that leaked.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kits.cgroupkit import Workload
from kits.fakecgroupfs import FakeCgroupfs
from minirun import cgroups
from minirun.cgroups.v1 import V1Cgroup
from minirun.cgroups.v2 import V2Cgroup

HOST = cgroups.detect()
PR_SET_CHILD_SUBREAPER = 36


def _parent_dirs(parent: str) -> list[Path]:
    mounts = list(dict.fromkeys(HOST.v1.values()))
    if HOST.unified is not None:
        mounts.append(HOST.unified)
    return [Path(m) / parent for m in mounts]


@pytest.fixture(scope="session")
def cgroup_parent() -> Iterator[str]:
    """A cgroup parent path unique to this test session; removed, children first, at the end."""
    parent = f"mc-test-{secrets.token_hex(4)}"
    yield parent
    for directory in _parent_dirs(parent):
        if not directory.is_dir():
            continue
        for child in [c for c in directory.iterdir() if c.is_dir()]:
            # Only children of our own unique parent: a test that failed half-way left them.
            if str(directory.parent) in HOST.v1.values():
                V1Cgroup(child.name, parent, mounts=HOST.v1).destroy()
            else:
                V2Cgroup(child.name, parent, mount=directory.parent).destroy()
        directory.rmdir()


def _container_id() -> str:
    return f"t{secrets.token_hex(6)}"


@pytest.fixture
def v1_cgroup(cgroup_parent: str) -> Iterator[V1Cgroup]:
    """A v1 cgroup object for this test (not created yet); destroyed afterwards, and checked gone."""
    if os.geteuid() != 0:
        pytest.skip("needs root (cgroups on the real kernel)")
    if HOST.mode != "v1":
        pytest.skip(f"this host runs cgroup {HOST.mode}, not v1")
    cg = cgroups.open(_container_id(), parent=cgroup_parent, mode="v1")
    assert isinstance(cg, V1Cgroup)
    yield cg
    cg.destroy()
    left = [p for p in cg.paths.values() if os.path.exists(p)]
    assert not left, f"cgroup directories leaked: {left}"


@pytest.fixture
def unified_cgroup(cgroup_parent: str) -> Iterator[V2Cgroup]:
    """A v2 cgroup on the host's real cgroup2 mount (on this hybrid machine: the controller-less one)."""
    if os.geteuid() != 0:
        pytest.skip("needs root (cgroups on the real kernel)")
    if HOST.unified is None:
        pytest.skip("this host has no cgroup2 mount")
    cg = V2Cgroup(_container_id(), cgroup_parent, mount=HOST.unified)
    yield cg
    cg.destroy()
    assert not os.path.exists(cg.path), f"cgroup directory leaked: {cg.path}"


@pytest.fixture
def fake_fs(tmp_path: Path) -> Iterator[FakeCgroupfs]:
    root = tmp_path / "cgroupfs"
    root.mkdir()
    fs = FakeCgroupfs(root)
    yield fs
    fs.stop_kernel()


@pytest.fixture
def workloads() -> Iterator[list[Workload]]:
    """Workloads started by a test; killed (by PID) and reaped afterwards whatever happened."""
    started: list[Workload] = []
    yield started
    for w in started:
        w.stop()


@pytest.fixture
def subreaper() -> Iterator[list[int]]:
    """Make this process the subreaper for orphans of the test (this machine's PID 1 does not reap them).

    The test appends PIDs of the orphans it expects; they are reaped by PID afterwards.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    orphans: list[int] = []
    try:
        yield orphans
    finally:
        libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
        deadline = time.monotonic() + 10
        waiting = set(orphans)
        while waiting and time.monotonic() < deadline:
            for pid in list(waiting):
                try:
                    if os.waitpid(pid, os.WNOHANG)[0] == pid:
                        waiting.discard(pid)
                except ChildProcessError:  # not ours (never orphaned to us) or reaped already
                    waiting.discard(pid)
            time.sleep(0.01)
