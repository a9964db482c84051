"""The v2 driver against a fake cgroupfs tree (see fakecgroupfs.py).

This machine has no cgroup v2 controllers (a v1/v2 hybrid: every controller is on v1, the v2 hierarchy at
/sys/fs/cgroup/unified has none), so what the v2 driver writes for each flag is checked in a tmp dir laid
out like /sys/fs/cgroup. The parts of v2 that need no controller (freeze, kill, rmdir) also run on the
real kernel in test_cgroup_v2_kernel.py.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from fakecgroupfs import FakeCgroupfs, FakeV2Cgroup
from minicache.errors import ContainerStateError, InvalidSpec, NotFound
from minirun.cgroups import CgroupError, CgroupWarning
from minirun.cgroups.flags import FLAGS, add_arguments, resources_from_args

MiB = 1 << 20


def from_flags(*argv: str) -> dict:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return resources_from_args(parser.parse_args(list(argv)), cpu_count=2, online_cpus={0, 1}, online_mems={0})


def files(directory: Path, *names: str) -> dict[str, str]:
    return {name: (directory / name).read_text().strip() for name in names}


# What each `minirun run` resource flag writes on v2 (test_every_flag_has_a_case keeps this table complete).
V2_FLAG_FILES = [
    (["--memory", "64m"], {"memory.max": str(64 * MiB), "memory.swap.max": str(64 * MiB)}),
    (["--memory", "1g", "--memory-swap", "-1"], {"memory.max": str(1 << 30), "memory.swap.max": "max"}),
    (["--memory", "64m", "--memory-swap", "64m"], {"memory.max": str(64 * MiB), "memory.swap.max": "0"}),
    (["--memory", "64m", "--memory-swap", "100m"], {"memory.swap.max": str(36 * MiB)}),
    (["--memory-reservation", "32m"], {"memory.high": str(32 * MiB), "memory.max": "max"}),
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
    ([], {"memory.max": "max", "cpu.max": "max 100000", "pids.max": "max", "cpu.weight": "100"}),
]


def test_every_flag_has_a_case() -> None:
    covered = {arg for argv, _ in V2_FLAG_FILES for arg in argv if arg.startswith("--")}
    offered = {name for names, _, _ in FLAGS.values() for name in names if name.startswith("--")}
    assert offered <= covered, offered - covered


@pytest.mark.parametrize(("argv", "expected"), V2_FLAG_FILES)
def test_each_flag_writes_its_v2_file(fake_fs: FakeCgroupfs, argv: list[str], expected: dict[str, str]) -> None:
    cg = FakeV2Cgroup("c1", "minicontainer", fake_fs)
    cg.create(from_flags(*argv))
    assert files(cg.path, *expected) == expected


def test_controllers_are_enabled_in_our_parent_only(fake_fs: FakeCgroupfs) -> None:
    root_control = (fake_fs.root / "cgroup.subtree_control").read_bytes()
    cg = FakeV2Cgroup("c1", "machine/minicontainer", fake_fs)
    cg.create({"memory": {"limit": 64 * MiB}})
    assert (fake_fs.root / "cgroup.subtree_control").read_bytes() == root_control  # not ours: untouched
    for level in (fake_fs.root / "machine", fake_fs.root / "machine" / "minicontainer"):
        assert (level / "cgroup.subtree_control").read_text() == "+cpu +cpuset +io +memory +pids"
    assert cg.path == fake_fs.root / "machine" / "minicontainer" / "c1"
    assert (cg.path / "cgroup.controllers").read_text().split() == ["cpu", "cpuset", "io", "memory", "pids"]
    # A second container finds them enabled and writes nothing more to the parent.
    before = (fake_fs.root / "machine" / "minicontainer" / "cgroup.subtree_control").stat().st_mtime_ns
    FakeV2Cgroup("c2", "machine/minicontainer", fake_fs).create()
    after = (fake_fs.root / "machine" / "minicontainer" / "cgroup.subtree_control").stat().st_mtime_ns
    assert before == after


def test_a_controller_the_host_did_not_delegate_is_a_warning(tmp_path: Path) -> None:
    root = tmp_path / "cgroupfs"
    root.mkdir()
    fs = FakeCgroupfs(root, enabled=("cpu", "memory"))  # no pids, no cpuset for our parent
    cg = FakeV2Cgroup("c1", "minicontainer", fs)
    with pytest.warns(CgroupWarning, match=r"pids cgroup v2 controller is not available.*pids-limit ignored"):
        cg.create({"memory": {"limit": 64 * MiB}, "pids": {"limit": 20}})
    assert (cg.path / "memory.max").read_text().strip() == str(64 * MiB)
    assert not (cg.path / "pids.max").exists()
    assert (root / "cgroup.subtree_control").read_text().split() == ["cpu", "memory"]


def test_no_swap_accounting_is_a_warning(tmp_path: Path) -> None:
    root = tmp_path / "cgroupfs"
    root.mkdir()
    cg = FakeV2Cgroup("c1", "minicontainer", FakeCgroupfs(root, swap=False))
    with pytest.warns(CgroupWarning, match="does not account swap"):
        cg.create(from_flags("--memory", "64m"))
    assert (cg.path / "memory.max").read_text().strip() == str(64 * MiB)


def test_unified_keys_are_written_and_checked(fake_fs: FakeCgroupfs) -> None:
    cg = FakeV2Cgroup("c1", "minicontainer", fake_fs)
    cg.create({"unified": {"memory.low": "1048576", "pids.max": "7"}})
    assert files(cg.path, "memory.low", "pids.max") == {"memory.low": "1048576", "pids.max": "7"}
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
    assert files(cg.path, "memory.max", "memory.swap.max", "pids.max", "cpu.max") == {
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
    d = cg.path
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
    assert (cg.path / "cgroup.freeze").read_text().strip() == "1"
    assert cg.frozen()
    cg.thaw()
    assert (cg.path / "cgroup.freeze").read_text().strip() == "0"
    assert not cg.frozen()


def test_freeze_that_never_completes_times_out_and_undoes_itself(fake_fs: FakeCgroupfs) -> None:
    cg = FakeV2Cgroup("c1", "minicontainer", fake_fs)
    cg.create()
    fake_fs.start_kernel(freezes=False)
    with pytest.raises(CgroupError, match="timed out"):
        cg.freeze(timeout=0.2)
    assert (cg.path / "cgroup.freeze").read_text().strip() == "0"


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
    inner = cg.path / "inner"
    inner.mkdir()
    fake_fs.populate(inner)
    (inner / "cgroup.procs").write_text(f"{sleeper.pid}\n")
    assert cg.pids() == [sleeper.pid]
    fake_fs.start_kernel()
    cg.destroy()
    assert sleeper.wait(5) == -signal.SIGKILL
    assert not cg.path.exists()
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
    (cg.path / "cgroup.procs").write_text(f"{sleeper.pid}\n")
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
    assert not cg.frozen() and (cg.path / "cgroup.freeze").read_text().strip() == "0"  # thawed after
    assert sleeper.wait(5) == -signal.SIGTERM


def test_destroy_survives_thousands_of_nested_cgroups(fake_fs: FakeCgroupfs) -> None:
    """A hostile container nesting cgroups deeper than Python's recursion limit cannot make destroy fail."""
    cg = FakeV2Cgroup("c1", "minicontainer", fake_fs)
    cg.create()
    deep = cg.path
    for _ in range(1200):
        deep = deep / "a"
        deep.mkdir()
        fake_fs.populate(deep)
    cg.destroy()
    assert not cg.path.exists()


def test_device_rules_go_to_the_ebpf_hook(fake_fs: FakeCgroupfs) -> None:
    """A plain directory cannot take a BPF program; the hook receives the parsed rules (the real attach runs in
    test_cgroup_v2_kernel.py, on this machine's controller-less cgroup2 mount)."""
    cg = FakeV2Cgroup("c1", "minicontainer", fake_fs)
    cg.create({"devices": [{"allow": False, "access": "rwm"}, {"allow": True, "type": "c", "major": 1, "minor": 3}]})
    assert cg.device_rules == ((False, "a *:* rwm"), (True, "c 1:3 rwm"))
    assert not list(cg.path.glob("devices.*"))  # v2 has no devices files


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
