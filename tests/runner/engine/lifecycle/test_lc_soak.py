"""Soak: 200 `run --rm` and 50 `run -d` + `rm -f` cycles leave the host as they found it; monitors stay small.

"The host as found" is checked on what these tests can tell apart from the other test sessions that run on
this machine at the same time: every mount under the test's directory and every nsfs mount anywhere, the
cgroups under this session's parent, links and /run/netns files named after one of the soak's containers,
and this process's open file descriptors. Marked `slow` (about a minute together); kept in the default run.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from pathlib import Path

import pytest
from kits.lifecyclekit import log_text, rss_kib, run_d, state_file, wait_until
from kits.runkit import MINIRUN, assert_nothing_left, minirun, mounts_under
from kits.sessionkit import session_cgroups

pytestmark = [pytest.mark.root, pytest.mark.slow]

IMAGE = "busybox-test"
RUN_RM_CYCLES = 200
DETACHED_CYCLES = 50


def nsfs_mounts() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return sorted(line.split()[4] for line in f if " - nsfs " in line)


def host_links() -> set[str]:
    return set(os.listdir("/sys/class/net"))


def netns_files() -> set[str]:
    return set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


class HostSnapshot:
    """What a soak must leave unchanged."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.mounts = mounts_under(tmp_path)
        self.nsfs = nsfs_mounts()
        self.cgroups = sorted(map(str, session_cgroups()))
        self.links = host_links()
        self.netns = netns_files()
        self.fds = open_fds()

    def assert_same(self, ids: list[str]) -> None:
        after = HostSnapshot(self.tmp_path)
        assert after.mounts == self.mounts
        assert after.cgroups == self.cgroups
        assert after.fds == self.fds
        # nsfs mounts, links and netns files: other sessions make theirs meanwhile; none may be ours
        short = {cid[:10] for cid in ids}
        for new in (set(after.nsfs) - set(self.nsfs)) | (after.links - self.links) | (after.netns - self.netns):
            assert not any(s in new for s in short), new


def test_run_rm_cycles(store_root: Path, busybox_image: str, tmp_path: Path) -> None:
    minirun(store_root, "run", "--rm", IMAGE, "true")  # warm: the seccomp cache, the page cache
    before = HostSnapshot(tmp_path)
    started = time.monotonic()
    failures = []
    for i in range(RUN_RM_CYCLES):
        result = subprocess.run(
            [MINIRUN, "--root", str(store_root), "run", "--rm", IMAGE, "sh", "-c", f"echo {i}; exit {i % 3}"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
        )
        if (result.returncode, result.stdout) != (i % 3, f"{i}\n"):
            failures.append((i, result.returncode, result.stdout, result.stderr))
    took = time.monotonic() - started
    assert failures == []
    before.assert_same([])
    assert_nothing_left(store_root)
    print(f"{RUN_RM_CYCLES} run --rm cycles in {took:.1f} s")


def test_detached_cycles_and_monitor_rss(store_root: Path, busybox_image: str, tmp_path: Path) -> None:
    before = HostSnapshot(tmp_path)
    ids, rss = [], []
    started = time.monotonic()
    for i in range(DETACHED_CYCLES):
        cid = run_d(store_root, IMAGE, "sh", "-c", f"echo cycle{i}; sleep 60")
        ids.append(cid)
        wait_until(lambda cid=cid, i=i: f"cycle{i}" in log_text(store_root, cid), what="the output")
        rss.append(rss_kib(state_file(store_root, cid)["MonitorPid"]))
        result = minirun(store_root, "rm", "-f", cid)
        assert result.returncode == 0, result.stderr
    took = time.monotonic() - started
    before.assert_same(ids)
    assert_nothing_left(store_root)
    early, late = statistics.median(rss[:10]), statistics.median(rss[-10:])
    assert late <= early * 1.1 + 256, (early, late, rss)  # KiB: flat, not growing with the store's history
    print(f"{DETACHED_CYCLES} run -d + rm -f cycles in {took:.1f} s; monitor RSS {early:.0f} -> {late:.0f} KiB")


def test_monitor_rss_stays_flat_under_output_and_execs(store_root: Path, busybox_image: str) -> None:
    """One monitor relaying ~40 MB of output (and serving execs) does not grow: it streams, keeps nothing."""
    chunk = "x" * 1000
    script = f"while :; do i=0; while [ $i -lt 1000 ]; do echo {chunk}; i=$((i+1)); done; sleep 0.01; done"
    cid = run_d(store_root, "--name", "chatty", IMAGE, "sh", "-c", script)
    monitor = state_file(store_root, cid)["MonitorPid"]
    log = store_root / "containers" / cid / "log"

    def logged() -> int:
        return log.stat().st_size if log.exists() else 0

    wait_until(lambda: logged() > 4 << 20, what="4 MB of log", timeout=60)
    early = rss_kib(monitor)
    for _ in range(10):
        assert minirun(store_root, "exec", "chatty", "true").returncode == 0
    wait_until(lambda: logged() > 40 << 20, what="40 MB of log", timeout=120)
    late = rss_kib(monitor)
    assert late <= early * 1.1 + 256, (early, late)
    assert minirun(store_root, "rm", "-f", "chatty").returncode == 0
    assert_nothing_left(store_root)
