"""Real `minirun` on pure cgroup v2, Debian's own kernel: the VM lane (`make test-vm`, tests/kits/vmkit.py).

The VM boots with every controller at its root and none enabled in its root's cgroup.subtree_control, and no
systemd: the state a pure-v2 host is in before any runtime ran. Each test reads what a flag did from the
container's own /sys/fs/cgroup (its cgroup namespace's root is its cgroup) or from the host side of the
same directory. The store is on the guest's tmpfs. Outside a pure-v2 kernel these tests skip; the
delegation cases a VM without systemd cannot show are in test_cgroup_v2_fake.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from kits.lifecyclekit import _subreaper, inspect, reaper, remove_leftovers, run_d, wait_until  # noqa: F401 - fixtures
from kits.runkit import container_ids, minirun, no_leaks  # noqa: F401 - no_leaks: autouse
from kits.sessionkit import CGROUP_PARENT
from minirun import cgroups

HOST = cgroups.detect()
MiB = 1 << 20
ROOT = Path("/sys/fs/cgroup")
LOOP = "/dev/loop0"  # the guest loads the loop driver: a block device for the I/O flags


def _root_controllers() -> set[str]:
    try:
        return set((ROOT / "cgroup.controllers").read_text().split())
    except OSError:
        return set()


PURE_V2 = HOST.mode == "v2" and {"cpu", "cpuset", "io", "memory", "pids", "hugetlb"} <= _root_controllers()
pytestmark = [
    pytest.mark.root,
    pytest.mark.vm,
    pytest.mark.usefixtures("remove_leftovers"),
    pytest.mark.skipif(
        not PURE_V2,
        reason=f"needs pure cgroup v2 with its controllers (this host: {HOST.mode}); `make test-vm` boots one",
    ),
]


def own_cgroup_files(store_root: Path, image: str, flags: list[str], names: list[str]) -> dict[str, str]:
    """`minirun run --rm FLAGS` printing each of `names` from the container's own /sys/fs/cgroup."""
    script = 'for f in "$@"; do printf "%s=" "$f"; tr "\\n" ";" < /sys/fs/cgroup/$f; echo; done'
    result = minirun(store_root, "run", "--rm", *flags, image, "sh", "-c", script, "sh", *names)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no warning: every limit holds
    return dict(line.rstrip(";").split("=", 1) for line in result.stdout.splitlines())


def _loop() -> str:
    if not Path(LOOP).exists():
        pytest.fail(f"{LOOP} is missing: the VM lane loads the loop driver (modprobe loop)")
    return LOOP


# Few runs, many flags each: every `minirun` costs seconds under emulation.
FLAG_CASES = [
    (  # the example of a pure-v2 host that got three warnings and no limits, and more
        [
            *("--memory", "32m", "--cpus", "0.5", "--pids-limit", "20", "--cpuset-cpus", "1", "--cpuset-mems", "0"),
            *("--blkio-weight", "300", "--device-read-bps", "LOOP:1mb", "--device-write-iops", "LOOP:50"),
        ],
        {
            "memory.max": str(32 * MiB),
            "memory.swap.max": str(32 * MiB),
            "cpu.max": "50000 100000",
            "pids.max": "20",
            "cpuset.cpus": "1",
            "cpuset.mems": "0",
            "io.weight": "default 2930",
            "io.max": "7:0 rbps=1048576 wbps=max riops=max wiops=50",
        },
    ),
    (
        [
            *("--memory", "96m", "--memory-swap", "128m", "--memory-reservation", "32m", "--cpu-shares", "512"),
            *("--device-write-bps", "LOOP:2mb", "--device-read-iops", "LOOP:100"),
        ],
        {
            "memory.max": str(96 * MiB),
            "memory.swap.max": str(32 * MiB),
            "memory.low": str(32 * MiB),  # runc's and crun's choice for the reservation
            "memory.high": "max",
            "cpu.weight": "20",
            "io.max": "7:0 rbps=max wbps=2097152 riops=100 wiops=max",
        },
    ),
    (
        [
            "--memory",
            "64m",
            "--memory-swap",
            "-1",
            "--cpu-period",
            "50000",
            "--cpu-quota",
            "20000",
            "--pids-limit",
            "-1",
        ],
        {"memory.swap.max": "max", "cpu.max": "20000 50000", "pids.max": "max"},
    ),
    ([], {"memory.max": "max", "cpu.max": "max 100000", "pids.max": "max", "cpu.weight": "100", "io.max": ""}),
]


def test_every_flag_has_a_case() -> None:
    from minirun.cgroups.flags import FLAGS

    covered = {arg for argv, _ in FLAG_CASES for arg in argv if arg.startswith("--")}
    offered = {name for names, _, _ in FLAGS.values() for name in names if name.startswith("--")}
    assert offered <= covered, offered - covered


@pytest.mark.parametrize(("flags", "expected"), FLAG_CASES, ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_each_flag_is_read_back_from_the_containers_own_cgroup(
    store_root: Path, busybox_image: str, flags: list[str], expected: dict[str, str]
) -> None:
    flags = [f.replace("LOOP", _loop()) for f in flags]
    own = own_cgroup_files(store_root, busybox_image, flags, [*expected, "cgroup.controllers"])
    # The controllers were enabled from the root down, limits or not (stats reads them).
    assert set(own.pop("cgroup.controllers").split()) >= {"cpu", "cpuset", "io", "memory", "pids"}
    assert own == expected
    for level in (ROOT, ROOT / CGROUP_PARENT):
        assert set((level / "cgroup.subtree_control").read_text().split()) >= {"cpu", "cpuset", "io", "memory", "pids"}


def cpu_usage_us(cid: str) -> int:
    stat = dict(line.split() for line in (ROOT / CGROUP_PARENT / cid / "cpu.stat").read_text().splitlines())
    return int(stat["usage_usec"])


def test_cpus_half_holds_a_busy_loop_at_half_a_cpu(store_root: Path, busybox_image: str) -> None:
    cid = run_d(store_root, "--cpus", "0.5", busybox_image, "sh", "-c", "while :; do :; done")
    time.sleep(1)  # past the first periods
    before, t0 = cpu_usage_us(cid), time.monotonic()
    time.sleep(5)
    after, t1 = cpu_usage_us(cid), time.monotonic()
    share = (after - before) / ((t1 - t0) * 1e6)
    print(f"--cpus 0.5: {share:.1%} of one CPU over {t1 - t0:.2f}s (cpu.stat usage_usec)")
    assert 0.45 <= share <= 0.55, share
    stat = dict(line.split() for line in (ROOT / CGROUP_PARENT / cid / "cpu.stat").read_text().splitlines())
    assert int(stat["nr_throttled"]) > 0  # the quota, not a lack of work, held it back
    assert minirun(store_root, "rm", "-f", cid).returncode == 0


def test_memory_16m_stops_a_process_that_allocates_64m(store_root: Path, busybox_image: str) -> None:
    hog = ["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"]  # dd's buffer: 64 MiB resident
    result = minirun(store_root, "run", "--name", "hog", "--memory", "16m", busybox_image, *hog)
    assert result.returncode == 137, result.stderr
    state = inspect(store_root, "hog")["State"]
    assert (state["OOMKilled"], state["ExitCode"]) == (True, 137)
    assert minirun(store_root, "rm", "hog").returncode == 0


COUNTER = "i=0; while :; do i=$((i+1)); echo $i > /out/n.tmp; mv /out/n.tmp /out/n; sleep 0.05; done"


def test_pause_freezes_through_cgroup_freeze_and_unpause_thaws(
    store_root: Path, busybox_image: str, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    counter = out / "n"

    def count() -> int:
        return int(counter.read_text() or 0)

    cid = run_d(store_root, "-v", f"{out}:/out", busybox_image, "sh", "-c", COUNTER)
    wait_until(lambda: counter.exists() and count() > 3, timeout=60, what="the counter to run")
    events = ROOT / CGROUP_PARENT / cid / "cgroup.events"
    assert minirun(store_root, "pause", cid).returncode == 0
    assert "frozen 1" in events.read_text().split("\n")  # pause returned once the kernel said so
    assert (ROOT / CGROUP_PARENT / cid / "cgroup.freeze").read_text().strip() == "1"
    frozen_at = count()
    time.sleep(1)
    assert count() == frozen_at
    assert inspect(store_root, cid)["State"]["Status"] == "paused"
    assert minirun(store_root, "unpause", cid).returncode == 0
    assert "frozen 0" in events.read_text().split("\n")
    wait_until(lambda: count() > frozen_at + 3, timeout=60, what="the counter to resume")
    assert minirun(store_root, "pause", cid).returncode == 0
    assert minirun(store_root, "rm", "-f", cid).returncode == 0  # cgroup.kill reaches frozen processes
    assert not (ROOT / CGROUP_PARENT / cid).exists()


def test_stats_agree_with_the_cgroup_files(store_root: Path, busybox_image: str) -> None:
    from minishow import bytes_size

    cid = run_d(
        store_root, "--memory", "64m", "--pids-limit", "20", busybox_image, "sh", "-c", "sleep 1000 & exec sleep 1000"
    )
    directory = ROOT / CGROUP_PARENT / cid
    wait_until(lambda: (directory / "pids.current").read_text().strip() == "2", what="the second process")
    row = json.loads(minirun(store_root, "stats", "--no-stream", "--format", "json", cid).stdout)
    current = int((directory / "memory.current").read_text())
    inactive = dict(line.split() for line in (directory / "memory.stat").read_text().splitlines())["inactive_file"]
    used, limit = row["MemUsage"].split(" / ")
    assert limit == bytes_size(64 * MiB) and row["PIDs"] == "2"
    assert used == bytes_size(current - int(inactive)) or abs(float(used[:-3]) - (current - int(inactive)) / 1024) < 64

    stats = cgroups.open(cid).stats()
    cpu = dict(line.split() for line in (directory / "cpu.stat").read_text().splitlines())
    assert stats.memory_limit == 64 * MiB and stats.pids_limit == 20 and stats.pids == 2
    assert 0 < stats.cpu_ns <= int(cpu["usage_usec"]) * 1000
    assert stats.block_read_bytes is not None and stats.oom_kills == 0
    assert minirun(store_root, "rm", "-f", cid).returncode == 0
    assert not directory.exists()
    assert [p for p in (ROOT / CGROUP_PARENT).iterdir() if p.is_dir()] == []  # nothing left behind after rm


def test_device_outside_the_allowlist_is_eperm_by_the_ebpf_program(store_root: Path, busybox_image: str) -> None:
    # Docker's rules allow mknod of any node and opening the usual ones; /dev/mem (1:1) and loop0 (7:0) are out.
    probe = "echo x > /dev/null && mknod /tmp/mem c 1 1 && mknod /tmp/loop b 7 0 && cat /tmp/mem; cat /tmp/loop"
    result = minirun(store_root, "run", "--rm", busybox_image, "sh", "-c", probe)
    assert "can't open '/tmp/mem': Operation not permitted" in result.stderr
    assert "can't open '/tmp/loop': Operation not permitted" in result.stderr
    assert result.returncode == 1


@pytest.fixture
def busy_parent():
    """A cgroup at the root with a process in it: the kernel lets no controller be enabled below it."""
    parent = ROOT / f"mc-vm-busy-{os.getpid()}"
    parent.mkdir()
    sleeper = subprocess.Popen(["sleep", "1000"])
    (parent / "cgroup.procs").write_text(str(sleeper.pid))
    yield parent.name
    sleeper.kill()
    sleeper.wait()
    for directory in sorted((p for p in parent.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        directory.rmdir()
    parent.rmdir()


def test_a_limit_whose_controller_cannot_be_enabled_is_an_error(
    store_root: Path, busybox_image: str, busy_parent: str
) -> None:
    parent = f"{busy_parent}/inner"
    result = minirun(store_root, "run", "--rm", "--cgroup-parent", parent, "--memory", "32m", busybox_image, "true")
    assert result.returncode == 125
    (line,) = result.stderr.splitlines()  # one line, naming the controller and the file
    assert "memory cgroup controller is needed for memory" in line
    assert f"{ROOT / busy_parent} holds processes" in line and "cgroup.subtree_control" in line
    assert container_ids(store_root) == []
    # Without a limit the container runs, in a cgroup of its own.
    plain = minirun(store_root, "run", "--rm", "--cgroup-parent", parent, busybox_image, "cat", "/proc/self/cgroup")
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.strip() == "0::/"
    assert (ROOT / busy_parent / "cgroup.subtree_control").read_text().strip() == ""
