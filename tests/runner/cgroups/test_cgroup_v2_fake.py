"""The v2 driver against a fake cgroupfs tree (see fakecgroupfs.py).

The real kernel's pure cgroup v2 runs in the VM lane (test_cgroup_vm_run.py, `make test-vm`), where every
flag is read back from a container's own /sys/fs/cgroup. This fake tree stays for what that VM cannot show:
it has no systemd, so a root managed by systemd, a delegated subtree (the `trusted.delegate` mark) and a
delegating parent that withholds a controller are laid out here by hand; and these tests run in seconds on
any host, hybrid or not.
"""

from __future__ import annotations

import argparse
import os
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest
from kits.fakecgroupfs import FakeCgroupfs, FakeV2Cgroup
from minicache.errors import InvalidSpec, NotFound
from minirun.cgroups import CgroupError, CgroupWarning
from minirun.cgroups.flags import FLAGS, resources_from_args
from minirun.cli.commands.run import RESOURCE_OPTIONS
from minirun.cli.options import add_to
from minirun.errors import ContainerStateError

MiB = 1 << 20


def from_flags(*argv: str) -> dict:
    parser = argparse.ArgumentParser()
    add_to(parser, RESOURCE_OPTIONS)
    return resources_from_args(parser.parse_args(list(argv)), cpu_count=2, online_cpus={0, 1}, online_mems={0})


def files(directory: Path, *names: str) -> dict[str, str]:
    return {name: (directory / name).read_text().strip() for name in names}


# What each `minirun run` resource flag writes on v2 (test_every_flag_has_a_case keeps this table complete).
V2_FLAG_FILES = [
    (["--memory", "64m"], {"memory.max": str(64 * MiB), "memory.swap.max": str(64 * MiB)}),
    (["--memory", "1g", "--memory-swap", "-1"], {"memory.max": str(1 << 30), "memory.swap.max": "max"}),
    (["--memory", "64m", "--memory-swap", "64m"], {"memory.max": str(64 * MiB), "memory.swap.max": "0"}),
    (["--memory", "64m", "--memory-swap", "100m"], {"memory.swap.max": str(36 * MiB)}),
    (["--memory-reservation", "32m"], {"memory.low": str(32 * MiB), "memory.max": "max", "memory.high": "max"}),
    (["--cpus", "0.25"], {"cpu.max": "25000 100000"}),
    (["--cpus", "1.5"], {"cpu.max": "150000 100000"}),
    (["--cpu-quota", "50000", "--cpu-period", "200000"], {"cpu.max": "50000 200000"}),
    (["--cpu-quota", "-1"], {"cpu.max": "max 100000"}),
    (["--cpu-shares", "1024"], {"cpu.weight": "39"}),
    (["--cpu-shares", "2"], {"cpu.weight": "1"}),
    (["--cpu-shares", "262144"], {"cpu.weight": "10000"}),
    (["--cpu-shares", "512"], {"cpu.weight": "20"}),
    (["--cpuset-cpus", "0-1"], {"cpuset.cpus": "0-1", "cpuset.mems": ""}),
    (["--cpuset-mems", "0"], {"cpuset.mems": "0"}),
    (["--pids-limit", "20"], {"pids.max": "20"}),
    (["--pids-limit", "-1"], {"pids.max": "max"}),
    (["--cpu-period", "50000"], {"cpu.max": "max 50000"}),
    (["--blkio-weight", "500"], {"io.weight": "4950"}),
    (["--blkio-weight", "10"], {"io.weight": "1"}),
    (["--device-read-bps", "{blk}:1mb"], {"io.max": "7:99 rbps=1048576"}),
    (["--device-write-bps", "{blk}:2k"], {"io.max": "7:99 wbps=2048"}),
    (["--device-read-iops", "{blk}:100"], {"io.max": "7:99 riops=100"}),
    (["--device-write-iops", "{blk}:50"], {"io.max": "7:99 wiops=50"}),
    ([], {"memory.max": "max", "cpu.max": "max 100000", "pids.max": "max", "cpu.weight": "100"}),
]


@pytest.fixture
def blk(tmp_path: Path) -> str:
    """A block device node (loop major 7, an unused minor) for the --device-* flags, which stat their path."""
    if os.geteuid() != 0:
        pytest.skip("needs root (mknod of a block device node)")
    node = tmp_path / "blk"
    os.mknod(node, 0o600 | stat.S_IFBLK, os.makedev(7, 99))
    return str(node)


def test_every_flag_has_a_case() -> None:
    covered = {arg for argv, _ in V2_FLAG_FILES for arg in argv if arg.startswith("--")}
    offered = {name for names, _, _ in FLAGS.values() for name in names if name.startswith("--")}
    assert offered <= covered, offered - covered


# The --device-* cases make a block device node: root only.
ROOT_IF_BLOCK_DEVICE = [
    pytest.param(argv, expected, marks=pytest.mark.root) if any("{blk}" in a for a in argv) else (argv, expected)
    for argv, expected in V2_FLAG_FILES
]


@pytest.mark.parametrize(("argv", "expected"), ROOT_IF_BLOCK_DEVICE)
def test_each_flag_writes_its_v2_file(
    fake_fs: FakeCgroupfs, request: pytest.FixtureRequest, argv: list[str], expected: dict[str, str]
) -> None:
    if any("{blk}" in a for a in argv):
        argv = [a.replace("{blk}", request.getfixturevalue("blk")) for a in argv]
    cg = FakeV2Cgroup("c1", "minicontainer", fake_fs)
    cg.create(from_flags(*argv))
    assert files(Path(cg.path), *expected) == expected


def test_controllers_are_enabled_along_the_path_root_included(tmp_path: Path) -> None:
    root = tmp_path / "cgroupfs"
    root.mkdir()
    fs = FakeCgroupfs(root, enabled=("cpu",))  # a fresh pure-v2 boot enables nothing; runc enables what it needs
    cg = FakeV2Cgroup("c1", "machine/minicontainer", fs)
    cg.create({"memory": {"limit": 64 * MiB}, "hugepageLimits": [{"pageSize": "2MB", "limit": 4 * MiB}]})
    for level in (root, root / "machine", root / "machine" / "minicontainer"):
        assert (level / "cgroup.subtree_control").read_text() == "+cpu +cpuset +hugetlb +io +memory +pids"
    assert Path(cg.path) == root / "machine" / "minicontainer" / "c1"
    controllers = (Path(cg.path) / "cgroup.controllers").read_text().split()
    assert controllers == ["cpu", "cpuset", "hugetlb", "io", "memory", "pids"]
    assert files(Path(cg.path), "memory.max", "hugetlb.2MB.max") == {
        "memory.max": str(64 * MiB),
        "hugetlb.2MB.max": "4194304",
    }
    # A second container finds them enabled and writes nothing more to the parent.
    before = (root / "machine" / "minicontainer" / "cgroup.subtree_control").stat().st_mtime_ns
    FakeV2Cgroup("c2", "machine/minicontainer", fs).create()
    after = (root / "machine" / "minicontainer" / "cgroup.subtree_control").stat().st_mtime_ns
    assert before == after


def test_a_controller_the_kernel_lacks_is_an_error_for_a_limit_only(tmp_path: Path) -> None:
    root = tmp_path / "cgroupfs"
    root.mkdir()
    fs = FakeCgroupfs(root, controllers=("cpu", "memory"), enabled=())
    with pytest.raises(CgroupError, match=r"pids cgroup controller is needed for pids-limit.*has no pids controller"):
        FakeV2Cgroup("c1", "minicontainer", fs).create({"memory": {"limit": 64 * MiB}, "pids": {"limit": 20}})
    assert not (root / "minicontainer" / "c1").exists()
    cg = FakeV2Cgroup("c2", "minicontainer", fs)  # without a pids limit: its own cgroup, with what there is
    cg.create({"memory": {"limit": 64 * MiB}})
    assert (Path(cg.path) / "memory.max").read_text().strip() == str(64 * MiB)
    assert (root / "cgroup.subtree_control").read_text().split() == ["+cpu", "+memory"]


def _systemd_tree(tmp_path: Path) -> FakeCgroupfs:
    """A systemd host, laid out by hand: PID 1 in init.scope, its root enabling cpu, memory and pids, a slice
    enabling cpu and memory only, and a
    service it delegated to us (marked with trusted.delegate), which is where our parent lives."""
    root = tmp_path / "cgroupfs"
    root.mkdir()
    fs = FakeCgroupfs(root, enabled=("cpu", "memory", "pids"))
    for level in ("init.scope", "system.slice", "system.slice/mc.service"):
        (root / level).mkdir()
        fs.populate(root / level)
    (root / "system.slice" / "cgroup.subtree_control").write_text("cpu memory\n")
    fs.populate(root / "system.slice" / "mc.service")
    os.setxattr(root / "system.slice" / "mc.service", "trusted.delegate", b"1")
    return fs


@pytest.mark.root
def test_systemd_delegation_is_written_inside_only(tmp_path: Path) -> None:
    """The VM lane has no systemd: this is the case only a laid-out tree shows."""
    if os.geteuid() != 0:
        pytest.skip("needs root (the trusted.delegate attribute)")
    fs = _systemd_tree(tmp_path)
    root, service = fs.root, fs.root / "system.slice" / "mc.service"
    outside = {
        p: p.read_bytes() for p in (root / "cgroup.subtree_control", root / "system.slice" / "cgroup.subtree_control")
    }
    cg = FakeV2Cgroup("c1", "system.slice/mc.service/minicontainer", fs)
    cg.create({"memory": {"limit": 64 * MiB}, "cpu": {"shares": 512}})
    assert {p: p.read_bytes() for p in outside} == outside  # systemd's: untouched
    assert (service / "cgroup.subtree_control").read_text() == "+cpu +memory"  # inside the delegation
    assert (service / "minicontainer" / "cgroup.subtree_control").read_text() == "+cpu +memory"
    assert files(Path(cg.path), "memory.max", "cpu.weight") == {"memory.max": str(64 * MiB), "cpu.weight": "20"}


@pytest.mark.root
def test_a_controller_a_delegating_parent_withholds_is_an_error(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (the trusted.delegate attribute)")
    fs = _systemd_tree(tmp_path)
    cg = FakeV2Cgroup("c1", "system.slice/mc.service/minicontainer", fs)
    with pytest.raises(CgroupError, match=r"pids cgroup controller.*system.slice/cgroup.subtree_control is not ours"):
        cg.create({"pids": {"limit": 20}})
    assert not Path(cg.path).exists()
    # The root is systemd's too (PID 1 in init.scope) even with nothing delegated below it.
    with pytest.raises(CgroupError, match=r"io cgroup controller.*cgroupfs/cgroup.subtree_control is not ours"):
        FakeV2Cgroup("c2", "minicontainer", fs).create({"blockIO": {"weight": 300}})
    assert (fs.root / "cgroup.subtree_control").read_text().split() == ["cpu", "memory", "pids"]


def test_no_controller_goes_to_a_level_that_holds_processes(fake_fs: FakeCgroupfs) -> None:
    busy = fake_fs.root / "busy"
    busy.mkdir()
    fake_fs.populate(busy)
    (busy / "cgroup.procs").write_text(f"{os.getpid()}\n")
    with pytest.raises(CgroupError, match=r"memory cgroup controller.*busy holds processes"):
        FakeV2Cgroup("c1", "busy", fake_fs).create({"memory": {"limit": 64 * MiB}})
    assert (busy / "cgroup.subtree_control").read_text() == ""
    (busy / "cgroup.procs").write_text("")


def test_no_swap_accounting_is_a_warning(tmp_path: Path) -> None:
    root = tmp_path / "cgroupfs"
    root.mkdir()
    cg = FakeV2Cgroup("c1", "minicontainer", FakeCgroupfs(root, swap=False))
    with pytest.warns(CgroupWarning, match="does not account swap"):
        cg.create(from_flags("--memory", "64m"))
    assert (Path(cg.path) / "memory.max").read_text().strip() == str(64 * MiB)


def test_unified_keys_are_written_and_checked(fake_fs: FakeCgroupfs) -> None:
    cg = FakeV2Cgroup("c1", "minicontainer", fake_fs)
    cg.create({"unified": {"memory.low": "1048576", "pids.max": "7"}})
    assert files(Path(cg.path), "memory.low", "pids.max") == {"memory.low": "1048576", "pids.max": "7"}
    with pytest.raises(InvalidSpec, match="no such cgroup file"):
        FakeV2Cgroup("c2", "minicontainer", fake_fs).create({"unified": {"memory.bogus": "1"}})
    assert not (fake_fs.root / "minicontainer" / "c2").exists()  # a failed create leaves nothing


@pytest.mark.parametrize("key", ["../memory.max", "cgroup.procs", "cgroup.kill", "memory.max/x", "MEMORY.max", ""])
def test_hostile_unified_keys_are_refused_before_anything_is_made(fake_fs: FakeCgroupfs, key: str) -> None:
    cg = FakeV2Cgroup("c1", "minicontainer", fake_fs)
    with pytest.raises(InvalidSpec, match="unified"):
        cg.create({"unified": {key: "1"}})
    assert not (fake_fs.root / "minicontainer").exists()


def test_set_updates_a_live_cgroup(fake_fs: FakeCgroupfs) -> None:
    cg = FakeV2Cgroup("c1", "minicontainer", fake_fs)
    with pytest.raises(ContainerStateError):
        cg.set({"pids": {"limit": 5}})
    cg.create(from_flags("--memory", "64m", "--pids-limit", "10"))
    cg.set(from_flags("--memory", "128m", "--memory-swap", "-1", "--pids-limit", "-1", "--cpus", "2"))
    assert files(Path(cg.path), "memory.max", "memory.swap.max", "pids.max", "cpu.max") == {
        "memory.max": str(128 * MiB),
        "memory.swap.max": "max",
        "pids.max": "max",
        "cpu.max": "200000 100000",
    }


def test_stats_are_parsed_from_the_v2_files(fake_fs: FakeCgroupfs) -> None:
    cg = FakeV2Cgroup("c1", "minicontainer", fake_fs)
    with pytest.raises(NotFound):
        cg.stats()
    cg.create(from_flags("--memory", "64m", "--pids-limit", "20"))
    d = Path(cg.path)
    (d / "cpu.stat").write_text(
        "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\nnr_periods 40\nnr_throttled 30\n"
        "throttled_usec 750000\n"
    )
    (d / "memory.current").write_text("10485760\n")
    (d / "memory.stat").write_text("anon 8388608\nfile 2097152\ninactive_file 1048576\nactive_file 1048576\n")
    (d / "memory.events").write_text("low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n")
    (d / "pids.current").write_text("7\n")
    (d / "io.stat").write_text(
        "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n"
        "8:16 rbytes=1000 wbytes=0 rios=1 wios=0 dbytes=0 dios=0\n"
    )
    s = cg.stats()
    assert (s.cpu_ns, s.cpu_user_ns, s.cpu_system_ns, s.cpu_throttled_ns) == (
        2_500_000_000,
        2_000_000_000,
        500_000_000,
        750_000_000,
    )
    assert (s.memory_bytes, s.memory_cache_bytes, s.memory_used) == (10 * MiB, MiB, 9 * MiB)
    assert (s.memory_limit, s.memory_swap_limit) == (64 * MiB, 128 * MiB)
    assert (s.oom_kills, s.memory_limit_hits) == (1, 12)
    assert (s.pids, s.pids_limit) == (7, 20)
    assert (s.block_read_bytes, s.block_write_bytes) == (5096, 8192)
    assert cg.oom_killed()


def test_stats_of_an_unlimited_cgroup_say_none(fake_fs: FakeCgroupfs) -> None:
    cg = FakeV2Cgroup("c1", "minicontainer", fake_fs)
    cg.create()
    s = cg.stats()
    assert (s.memory_limit, s.pids_limit, s.memory_swap_limit, s.oom_kills) == (None, None, None, 0)
    assert not cg.oom_killed()


def test_freeze_waits_until_cgroup_events_says_frozen(fake_fs: FakeCgroupfs) -> None:
    cg = FakeV2Cgroup("c1", "minicontainer", fake_fs)
    cg.create()
    fake_fs.start_kernel(freeze_delay=0.3)
    started = time.monotonic()
    cg.freeze()
    assert time.monotonic() - started >= 0.3  # it waited for the kernel, not just for its own write
    assert (Path(cg.path) / "cgroup.freeze").read_text().strip() == "1"
    assert cg.frozen()
    cg.thaw()
    assert (Path(cg.path) / "cgroup.freeze").read_text().strip() == "0"
    assert not cg.frozen()


def test_freeze_that_never_completes_times_out_and_undoes_itself(fake_fs: FakeCgroupfs) -> None:
    cg = FakeV2Cgroup("c1", "minicontainer", fake_fs)
    cg.create()
    fake_fs.start_kernel(freezes=False)
    with pytest.raises(CgroupError, match="timed out"):
        cg.freeze(timeout=0.2)
    assert (Path(cg.path) / "cgroup.freeze").read_text().strip() == "0"


@pytest.fixture
def sleeper():
    """A real process of ours whose PID the fake cgroup lists (the fake kernel SIGKILLs it on cgroup.kill)."""
    proc = subprocess.Popen(["sleep", "60"])
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def test_destroy_kills_through_cgroup_kill_and_removes_bottom_up(fake_fs: FakeCgroupfs, sleeper) -> None:
    cg = FakeV2Cgroup("c1", "minicontainer", fake_fs)
    cg.create()
    # The container made its own cgroup inside ours and a process lives there.
    inner = Path(cg.path) / "inner"
    inner.mkdir()
    fake_fs.populate(inner)
    (inner / "cgroup.procs").write_text(f"{sleeper.pid}\n")
    assert cg.pids() == [sleeper.pid]
    fake_fs.start_kernel()
    cg.destroy()
    assert sleeper.wait(5) == -signal.SIGKILL
    assert not Path(cg.path).exists()
    assert (fake_fs.root / "minicontainer").is_dir()  # the parent stays
    cg.destroy()  # idempotent


def test_kill_all_without_cgroup_kill_freezes_signals_and_thaws(
    tmp_path: Path, sleeper, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "cgroupfs"
    root.mkdir()
    fs = FakeCgroupfs(root, kill_file=False)  # a kernel before 5.14
    cg = FakeV2Cgroup("c1", "minicontainer", fs)
    cg.create()
    (Path(cg.path) / "cgroup.procs").write_text(f"{sleeper.pid}\n")
    signalled: list[tuple[int, int, bool]] = []
    real_kill = os.kill

    def kill(pid: int, sig: int) -> None:
        signalled.append((pid, sig, cg.frozen()))
        real_kill(pid, sig)

    monkeypatch.setattr(os, "kill", kill)
    fs.start_kernel()
    try:
        assert cg.kill_all(signal.SIGTERM) == 1
    finally:
        fs.stop_kernel()
    assert signalled == [(sleeper.pid, signal.SIGTERM, True)]  # frozen while signalled
    assert not cg.frozen() and (Path(cg.path) / "cgroup.freeze").read_text().strip() == "0"  # thawed after
    assert sleeper.wait(5) == -signal.SIGTERM


@pytest.mark.root  # works the kernel hard (a tree deeper than the recursion limit): not a unit test
def test_destroy_survives_thousands_of_nested_cgroups(fake_fs: FakeCgroupfs) -> None:
    """A hostile container nesting cgroups deeper than Python's recursion limit cannot make destroy fail."""
    cg = FakeV2Cgroup("c1", "minicontainer", fake_fs)
    cg.create()
    deep = Path(cg.path)
    for _ in range(1200):
        deep = deep / "a"
        deep.mkdir()
        fake_fs.populate(deep)
    cg.destroy()
    assert not Path(cg.path).exists()


def test_device_rules_go_to_the_ebpf_hook(fake_fs: FakeCgroupfs) -> None:
    """A plain directory cannot take a BPF program; the hook receives the parsed rules (the real attach runs in
    test_cgroup_v2_kernel.py, on this machine's controller-less cgroup2 mount)."""
    cg = FakeV2Cgroup("c1", "minicontainer", fake_fs)
    cg.create({"devices": [{"allow": False, "access": "rwm"}, {"allow": True, "type": "c", "major": 1, "minor": 3}]})
    assert cg.device_rules == ((False, "a *:* rwm"), (True, "c 1:3 rwm"))
    assert not list(Path(cg.path).glob("devices.*"))  # v2 has no devices files


def test_a_refused_device_program_is_a_warning_not_a_failure(tmp_path: Path) -> None:
    """Where the kernel refuses the program (no CONFIG_CGROUP_BPF, not a cgroup2 directory, ...) the container
    still runs, and says the allowlist is not enforced."""
    from minirun.cgroups.v2 import V2Cgroup

    fs = FakeCgroupfs(tmp_path)
    try:
        cg = FakeV2Cgroup("c1", "minicontainer", fs)
        with pytest.warns(CgroupWarning, match="device allowlist is not enforced"):
            V2Cgroup._attach_device_filter(cg, ((False, "a *:* rwm"),))  # the real hook, on a plain directory
    finally:
        fs.stop_kernel()
