"""minirun.cgroups.warmup on the real kernel: the thread that keeps cgroup moves cheap before a container starts.

It must move only itself, only into the parent level (never into a container's cgroup), and be gone, thread
and all, when stop() returns: the runtime refuses to fork the container's init while a thread runs.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cgroupkit import wait_for
from minirun import cgroups
from minirun.cgroups import warmup
from minirun.cgroups.v1 import V1Cgroup

pytestmark = pytest.mark.root
HOST = cgroups.detect()


def _tasks(directory: Path) -> set[int]:
    return {int(t) for t in (directory / "tasks").read_text().split()}


def _own_tids() -> set[int]:
    return {int(t) for t in os.listdir("/proc/self/task")}


@pytest.fixture
def parent_dir(cgroup_parent: str) -> Path:
    if os.geteuid() != 0 or HOST.mode != "v1" or "pids" not in HOST.v1:
        pytest.skip("needs root and the v1 pids hierarchy")
    return HOST.v1["pids"] / cgroup_parent


def test_the_thread_joins_the_parent_and_is_gone_after_stop(cgroup_parent: str, parent_dir: Path) -> None:
    before = _own_tids()
    warmup.start(cgroup_parent)
    try:
        wait_for(lambda: _tasks(parent_dir) & (_own_tids() - before), what="the warm-up thread in the parent")
        (tid,) = _tasks(parent_dir) & (_own_tids() - before)
        assert tid != os.getpid()  # the thread alone: this process's main thread stays where it was
        assert os.getpid() not in _tasks(parent_dir)
        warmup.start(cgroup_parent)  # already running: no second thread
        assert len(_own_tids() - before) == 1
    finally:
        warmup.stop()
    assert _own_tids() == before  # gone from the kernel too, not only from Python
    assert not _tasks(parent_dir)
    assert not [p for p in parent_dir.iterdir() if p.is_dir()]  # it made no cgroup of its own


def test_a_container_cgroup_made_meanwhile_gets_only_its_own_processes(
    cgroup_parent: str, parent_dir: Path, v1_cgroup: V1Cgroup
) -> None:
    warmup.start(cgroup_parent)
    try:
        v1_cgroup.create()
        wait_for(lambda: _tasks(parent_dir), what="the warm-up thread in the parent")
        assert v1_cgroup.pids() == []
    finally:
        warmup.stop()
    assert v1_cgroup.pids() == []
    v1_cgroup.destroy()
    assert not any(p.exists() for p in v1_cgroup.paths.values())


def test_a_bad_parent_or_no_start_is_harmless() -> None:
    before = _own_tids()
    warmup.stop()  # nothing started: nothing to do
    warmup.start("../escape")  # refused by the parent check: no thread, no directory
    assert _own_tids() == before
    warmup.stop()
