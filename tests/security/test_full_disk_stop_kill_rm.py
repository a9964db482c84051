"""A container that fills the store's filesystem cannot make itself unstoppable.

On a small tmpfs store, a container writes until the disk is full. `stop`, `kill` and `rm -f` must still
end their containers (the signal goes first, a record that cannot be written is tolerated), and `run`
says in one line that the disk is full (before: an ENOSPC traceback, and the container kept running).
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from kits.runkit import minirun, no_leaks  # noqa: F401  (no_leaks: autouse)

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root (tmpfs, containers)")]


@pytest.fixture
def small_store(tmp_path: Path, busybox_rootfs: Path):
    """A store alone on a 32 MiB tmpfs made for this test (unmounted by its path afterwards)."""
    from kits.storekit import add_rootfs_image
    from minicache.store import Store

    point = tmp_path / "small"
    point.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=32m", f"mc-full-{uuid.uuid4().hex[:12]}", str(point)], check=True
    )
    try:
        root = point / "store"
        add_rootfs_image(Store(root), busybox_rootfs, "bb:latest")
        yield root
    finally:
        for cid in [n for n in os.listdir(point / "store" / "containers") if len(n) == 64]:
            minirun(point / "store", "rm", "-f", cid)
        subprocess.run(["umount", str(point)], check=True)


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def status(root: Path, name: str) -> dict:
    result = minirun(root, "inspect", name)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)[0]["State"]


def take_what_is_left(point: Path) -> None:
    """Fill the file system again: stop, kill and rm -f free a little (the runtime's state of their containers)."""
    fd = os.open(point / "pad", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        while True:
            os.write(fd, bytes(4096))
    except OSError as e:
        assert e.errno == errno.ENOSPC, e
    finally:
        os.close(fd)


def assert_clean(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 0, result.stderr


def test_stop_kill_and_rm_f_work_on_a_full_disk(small_store: Path) -> None:
    for name in ("to-stop", "to-kill", "to-remove"):
        started = minirun(small_store, "run", "-d", "--name", name, "bb:latest", "sleep", "300")
        assert started.returncode == 0, started.stderr
    pids = {name: status(small_store, name)["Pid"] for name in ("to-stop", "to-kill", "to-remove")}
    filler = minirun(
        small_store, "run", "-d", "--name", "filler", "--restart", "always", "bb:latest",
        "sh", "-c", "dd if=/dev/zero of=/fill bs=64k; while :; do echo still here; sleep 0.02; done",
    )  # fmt: skip
    assert filler.returncode == 0, filler.stderr
    deadline = time.monotonic() + 30
    while free_bytes(small_store) > 0:
        assert time.monotonic() < deadline, "the container did not fill the disk"
        time.sleep(0.05)

    time.sleep(0.5)  # the filler's output meets the full disk in its monitor's log
    states = [json.loads(p.read_text()) for p in (small_store / "containers").glob("*/state.json")]
    assert all(os.path.exists(f"/proc/{s['MonitorPid']}") for s in states), "a monitor died of the full disk"

    assert_clean(minirun(small_store, "stop", "-t", "1", "to-stop"))
    assert_clean(minirun(small_store, "kill", "to-kill"))
    assert_clean(minirun(small_store, "rm", "-f", "to-remove"))
    for name, pid in pids.items():
        deadline = time.monotonic() + 10
        while os.path.exists(f"/proc/{pid}"):
            assert time.monotonic() < deadline, f"{name}'s process still runs"
            time.sleep(0.05)
    for name in ("to-stop", "to-kill"):
        assert status(small_store, name)["Status"] == "exited"

    take_what_is_left(small_store.parent)
    for argv, code in (
        (("run", "--rm", "bb:latest", "true"), 125),
        (("run", "-d", "bb:latest", "true"), 125),
        (("start", "to-stop"), 1),  # as `docker start` without -a
    ):
        full = minirun(small_store, *argv)
        assert full.returncode == code, (argv, full.stderr)
        lines = full.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("minirun: error: no space left"), (argv, full.stderr)

    filler_pid = status(small_store, "filler")["Pid"]
    assert_clean(minirun(small_store, "stop", "-t", "1", "filler"))
    time.sleep(1)  # a restart policy would bring it back within this
    assert status(small_store, "filler")["Status"] == "exited"
    assert not os.path.exists(f"/proc/{filler_pid}")
    assert_clean(minirun(small_store, "rm", "-f", "filler"))
    assert free_bytes(small_store) > 16 << 20  # its upper directory went with it
