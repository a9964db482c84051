"""The v2 driver on the real kernel.

On this machine (a v1/v2 hybrid) the cgroup2 hierarchy at /sys/fs/cgroup/unified has no controllers, so
only the core v2 features run here: directories, joining, cgroup.freeze with cgroup.events, cgroup.kill,
removal, and the device allowlist's eBPF program (it needs no controller). The controller tests (memory,
cpu, pids) run on a pure-v2 kernel: the VM lane (`make test-vm`) runs them (marked `vm`) there.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from kits.cgroupkit import COUNTER, Workload, wait_for
from minirun import cgroups
from minirun.cgroups.v2 import V2Cgroup

pytestmark = pytest.mark.root
MiB = 1 << 20
HOST = cgroups.detect()


def _controllers() -> set[str]:
    if HOST.unified is None:
        return set()
    return set((Path(HOST.unified) / "cgroup.controllers").read_text().split())


_skip_without_v2_controllers = pytest.mark.skipif(
    HOST.mode != "v2" or not {"memory", "cpu", "pids"} <= _controllers(),
    reason=f"this machine has no cgroup v2 controllers (mode {HOST.mode}: every controller is on v1); "
    "`make test-vm` runs these on a pure-v2 kernel",
)


def needs_v2_controllers(test: Callable[..., None]) -> Callable[..., None]:
    """The controller tests: skipped without v2 controllers, and part of the VM lane."""
    return pytest.mark.vm(_skip_without_v2_controllers(test))


def test_core_v2_join_freeze_kill_and_remove(unified_cgroup: V2Cgroup, workloads, tmp_path: Path) -> None:
    counter = tmp_path / "counter"
    unified_cgroup.create()
    w = Workload(unified_cgroup, COUNTER, str(counter))
    workloads.append(w)
    wait_for(lambda: counter.exists() and int(counter.read_text()) > 3, what="the counter to start")
    assert unified_cgroup.pids() == [w.pid]
    assert f"0::/{unified_cgroup.parent}/{unified_cgroup.container_id}" in Path(f"/proc/{w.pid}/cgroup").read_text()

    unified_cgroup.freeze()
    assert unified_cgroup.frozen()
    frozen_at = int(counter.read_text())
    time.sleep(0.5)
    assert int(counter.read_text()) == frozen_at
    unified_cgroup.thaw()
    wait_for(lambda: int(counter.read_text()) > frozen_at + 5, what="the counter to resume")

    # A paused container is destroyed too: cgroup.kill reaches frozen processes.
    unified_cgroup.freeze()
    unified_cgroup.destroy()
    assert w.wait(10) == -signal.SIGKILL
    assert not Path(unified_cgroup.path).exists()
    assert Path(unified_cgroup.path).parent.is_dir()


def test_core_v2_stats_with_the_controllers_there_are(unified_cgroup: V2Cgroup, workloads) -> None:
    unified_cgroup.create()
    workloads.append(Workload(unified_cgroup, "while True: pass"))
    time.sleep(0.3)
    stats = unified_cgroup.stats()
    assert stats.cpu_ns and stats.cpu_ns > 0  # cpu.stat is a core file
    if {"memory", "pids"} <= _controllers():  # pure v2 (the VM lane): create() enabled them for stats
        assert stats.memory_bytes and stats.memory_bytes > 0 and stats.pids == 1
    else:  # the hybrid's controller-less hierarchy
        assert stats.memory_bytes is None and stats.pids is None


@needs_v2_controllers
def test_v2_memory_limit_oom_kills(cgroup_parent: str, workloads) -> None:
    cg = cgroups.open("oom-v2", parent=cgroup_parent, mode="v2")
    try:
        cg.create({"memory": {"limit": 64 * MiB, "swap": 64 * MiB}})
        w = Workload(cg, "chunks = [b'\\x01' * (1 << 20) for _ in range(256)]")
        workloads.append(w)
        assert w.wait() == -signal.SIGKILL
        assert cg.oom_killed() and cg.stats().oom_kills >= 1
    finally:
        cg.destroy()


@_skip_without_v2_controllers  # the lane holds --cpus 0.5 to its figure through minirun instead
def test_v2_cpus_quarter(cgroup_parent: str, workloads) -> None:
    cg = cgroups.open("cpu-v2", parent=cgroup_parent, mode="v2")
    try:
        cg.create({"cpu": {"quota": 25000, "period": 100000}})
        workloads.append(Workload(cg, "while True: pass"))
        time.sleep(0.3)
        before = cg.stats()
        time.sleep(3)
        after = cg.stats()
        share = (after.cpu_ns - before.cpu_ns) / ((after.read_at - before.read_at) * 1e9)
        assert 0.20 <= share <= 0.30
    finally:
        cg.destroy()


FORKER = """
import os, time
for _ in range(10):
    try:
        if os.fork() == 0:
            time.sleep(60)
            os._exit(0)
    except OSError:
        pass
time.sleep(60)
"""


@needs_v2_controllers
def test_v2_pids_limit(cgroup_parent: str, workloads) -> None:
    cg = cgroups.open("pids-v2", parent=cgroup_parent, mode="v2")
    try:
        cg.create({"pids": {"limit": 5}})
        workloads.append(Workload(cg, FORKER))
        wait_for(lambda: cg.stats().pids == 5, what="the pids limit")
        assert subprocess.run(["true"], timeout=10).returncode == 0
    finally:
        cg.destroy()
    assert not cg.exists()


DEVICE_PROBE = """
import os, sys
out, node = sys.argv[1], sys.argv[2]
results = []
for path, flags in (("/dev/null", os.O_RDONLY), ("/dev/null", os.O_WRONLY), (node, os.O_RDONLY)):
    try:
        os.close(os.open(path, flags))
        results.append("ok")
    except OSError as e:
        results.append(e.strerror)
try:
    os.mknod(node + "2", 0o600 | 0o020000, os.makedev(1, 3))
    results.append("ok")
except OSError as e:
    results.append(e.strerror)
open(out, "w").write("|".join(results))
"""


def _free_char_major() -> int:
    with open("/proc/devices") as f:
        text = f.read().split("Block devices:")[0]
    used = {int(line.split()[0]) for line in text.splitlines() if line.strip()[:1].isdigit()}
    return next(m for m in range(240, 255) if m not in used)


@pytest.mark.parametrize(
    ("devices", "expected"),
    [
        # Docker's list: the standard nodes, mknod of any; a node without a rule is refused (EPERM), not
        # passed to the kernel (which would say ENXIO: no driver has that major).
        ("docker", ["ok", "ok", "Operation not permitted", "ok"]),
        ([{"allow": True, "access": "rwm"}], ["ok", "ok", "No such device or address", "ok"]),  # --privileged
        (
            [{"allow": False, "access": "rwm"}, {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "r"}],
            ["ok", "Operation not permitted", "Operation not permitted", "Operation not permitted"],
        ),
    ],
    ids=["docker", "privileged", "read-only-null"],
)
def test_device_allowlist_is_an_ebpf_program_on_the_real_kernel(
    unified_cgroup: V2Cgroup, workloads, tmp_path: Path, devices, expected: list[str]
) -> None:
    """cgroup v2 has no devices controller: the rules become a BPF_PROG_TYPE_CGROUP_DEVICE program. eBPF
    programs attach to any cgroup2 directory, controllers or not, so this runs on the hybrid's too."""
    from minirun.engine.spec import DEVICE_RULES

    rules = [dict(r) for r in DEVICE_RULES] if devices == "docker" else devices
    node = tmp_path / "probe"
    os.mknod(node, 0o600 | stat.S_IFCHR, os.makedev(_free_char_major(), 0))
    unified_cgroup.create({"devices": rules})
    out = tmp_path / "out"
    w = Workload(unified_cgroup, DEVICE_PROBE, str(out), str(node))
    workloads.append(w)
    assert w.wait() == 0
    assert out.read_text().split("|") == expected


@pytest.mark.vm  # here on the controller-less hierarchy, and on pure v2 in the VM lane
def test_the_container_init_is_created_inside_its_v2_cgroup(
    unified_cgroup: V2Cgroup, tmp_path: Path, busybox_rootfs: Path
) -> None:
    """clone3(CLONE_INTO_CGROUP): the init never joins (a join here would fail its start), and is inside."""
    import json
    import shutil

    from minirun.engine import spec
    from minirun.runtime import start

    bundle = tmp_path / "bundle"
    shutil.copytree(busybox_rootfs, bundle / "rootfs", symlinks=True)
    oci = spec.build(
        {"Env": ["PATH=/bin"]},
        spec.RunOptions(command=["sleep", "0.3"]),
        spec.SpecContext(container_id=unified_cgroup.container_id),
    )
    (bundle / "config.json").write_text(json.dumps(oci))

    def refuse() -> None:
        raise RuntimeError("joined instead of being created inside")

    unified_cgroup.join = refuse  # the forked child's copy of this object is the one that would call it
    proc = start(bundle, unified_cgroup.container_id, cgroup=unified_cgroup)
    assert unified_cgroup.pids() == [proc.pid]
    assert proc.wait() == 0
    assert not Path(unified_cgroup.path).exists()  # destroyed once reaped
