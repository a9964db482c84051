"""The v1 driver on the real kernel (this machine: every controller on v1, an empty v2 beside them).

Each test makes a cgroup under the session's unique parent, starts a Python child that joins it before
exec (as the container's init will), and checks what the kernel does.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from kits.cgroupkit import COUNTER, Workload, wait_for
from minicache import process
from minicache.errors import Conflict, InvalidSpec
from minirun import cgroups
from minirun.cgroups.v1 import V1Cgroup

pytestmark = pytest.mark.root
MiB = 1 << 20


def read(path: Path | str) -> str:
    return Path(path).read_text().strip()


def test_limits_are_written_to_every_hierarchy(v1_cgroup: V1Cgroup) -> None:
    v1_cgroup.create(
        {
            "memory": {"limit": 64 * MiB, "reservation": 32 * MiB, "swap": 128 * MiB},
            "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0"},
            "pids": {"limit": 20},
        }
    )
    p = {c: Path(d) for c, d in v1_cgroup.paths.items()}
    assert read(p["memory"] / "memory.limit_in_bytes") == str(64 * MiB)
    assert read(p["memory"] / "memory.soft_limit_in_bytes") == str(32 * MiB)
    assert read(p["memory"] / "memory.memsw.limit_in_bytes") == str(128 * MiB)
    assert read(p["cpu"] / "cpu.shares") == "512"
    assert read(p["cpu"] / "cpu.cfs_quota_us") == "50000"
    assert read(p["cpu"] / "cpu.cfs_period_us") == "100000"
    assert read(p["cpuset"] / "cpuset.cpus") == "0"
    assert read(p["cpuset"] / "cpuset.mems") == read(p["cpuset"].parent / "cpuset.mems") != ""
    assert read(p["pids"] / "pids.max") == "20"
    for controller, directory in p.items():
        assert directory.is_dir(), controller


def test_no_limits_still_gets_its_own_cgroup_and_stats(v1_cgroup: V1Cgroup, workloads: list[Workload]) -> None:
    v1_cgroup.create()
    w = Workload(v1_cgroup, "import time; x = b'\\x01' * (8 << 20); time.sleep(60)")
    workloads.append(w)
    wait_for(lambda: (v1_cgroup.stats().memory_bytes or 0) > 8 * MiB, what="the child's memory")
    assert v1_cgroup.pids() == [w.pid]
    stats = v1_cgroup.stats()
    assert stats.pids == 1 and stats.pids_limit is None
    assert stats.memory_limit is None
    assert stats.cpu_ns and stats.cpu_ns > 0
    assert stats.oom_kills == 0 and not v1_cgroup.oom_killed()
    for controller, directory in v1_cgroup.paths.items():
        assert str(w.pid) in read(os.path.join(directory, "cgroup.procs")).split(), controller


def test_memory_limit_oom_kills_and_is_reported(v1_cgroup: V1Cgroup, workloads: list[Workload]) -> None:
    v1_cgroup.create({"memory": {"limit": 64 * MiB, "swap": 128 * MiB}})  # what `--memory 64m` asks for
    # Touch every page: bytes of b"\x01" are written, so the memory is really charged to the cgroup.
    w = Workload(v1_cgroup, "chunks = [b'\\x01' * (1 << 20) for _ in range(256)]")
    workloads.append(w)
    assert w.wait() == -signal.SIGKILL
    assert v1_cgroup.oom_killed()
    stats = v1_cgroup.stats()
    assert stats.oom_kills >= 1
    assert stats.memory_limit == 64 * MiB


def test_cpus_quarter_keeps_a_busy_loop_near_25_percent(v1_cgroup: V1Cgroup, workloads: list[Workload]) -> None:
    v1_cgroup.create({"cpu": {"quota": 25000, "period": 100000}})
    workloads.append(Workload(v1_cgroup, "while True: pass"))
    time.sleep(0.3)  # past start-up
    before = v1_cgroup.stats()
    time.sleep(3)
    after = v1_cgroup.stats()
    share = (after.cpu_ns - before.cpu_ns) / ((after.read_at - before.read_at) * 1e9)
    assert 0.20 <= share <= 0.30, f"busy loop used {share:.1%} of one CPU under --cpus 0.25"
    assert after.cpu_throttled_ns > before.cpu_throttled_ns  # the quota, not idleness, held it back


# Every process forks forever; failed forks are counted with one byte each in the file named by argv[1],
# and every process writes its PID to argv[2] so the test can check none survives.
FORK_BOMB = """
import os, sys, time
def note(path, text):
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    os.write(fd, text.encode())
    os.close(fd)
note(sys.argv[2], f"{os.getpid()}\\n")
while True:
    try:
        pid = os.fork()
    except OSError:
        note(sys.argv[1], "F")
        time.sleep(0.01)
        continue
    if pid == 0:
        note(sys.argv[2], f"{os.getpid()}\\n")
"""


def test_pids_limit_contains_a_fork_bomb(
    v1_cgroup: V1Cgroup, workloads: list[Workload], subreaper: list[int], tmp_path: Path
) -> None:
    failures, pids_file = tmp_path / "failures", tmp_path / "pids"
    failures.touch()
    pids_file.touch()
    v1_cgroup.create({"pids": {"limit": 20}})
    w = Workload(v1_cgroup, FORK_BOMB, str(failures), str(pids_file))
    workloads.append(w)
    wait_for(lambda: failures.stat().st_size >= 50, what="forks refused by the pids limit")
    stats = v1_cgroup.stats()
    assert stats.pids_limit == 20
    assert stats.pids == 20
    assert read(Path(v1_cgroup.paths["pids"]) / "pids.events") != "max 0"
    # The host is unaffected: it still forks and runs processes.
    assert subprocess.run(["true"], timeout=10).returncode == 0
    bomb = [int(line) for line in pids_file.read_text().split()]
    subreaper.extend(p for p in bomb if p != w.pid)
    v1_cgroup.destroy()
    assert not v1_cgroup.exists()
    assert w.wait() == -signal.SIGKILL
    # Orphaned bomb processes reparent to this test (the subreaper); reap them before checking.
    for pid in bomb:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
    alive = [p for p in bomb if process.is_alive(p, None) and _in_cgroup(p, v1_cgroup)]
    assert not alive


def _in_cgroup(pid: int, cg: V1Cgroup) -> bool:
    """True if `pid` is (still) in one of cg's directories; guards against PID reuse after the test's reap."""
    try:
        text = Path(f"/proc/{pid}/cgroup").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return f"/{cg.container_id}" in text


def test_freeze_stops_progress_and_thaw_resumes_it(
    v1_cgroup: V1Cgroup, workloads: list[Workload], tmp_path: Path
) -> None:
    counter = tmp_path / "counter"
    v1_cgroup.create()
    w = Workload(v1_cgroup, COUNTER, str(counter))
    workloads.append(w)
    wait_for(lambda: counter.exists() and int(counter.read_text()) > 3, what="the counter to start")
    v1_cgroup.freeze()
    assert v1_cgroup.frozen()
    assert read(Path(v1_cgroup.paths["freezer"]) / "freezer.state") == "FROZEN"
    frozen_at = int(counter.read_text())
    time.sleep(0.5)
    assert int(counter.read_text()) == frozen_at
    v1_cgroup.thaw()
    assert not v1_cgroup.frozen()
    wait_for(lambda: int(counter.read_text()) > frozen_at + 5, what="the counter to resume")

    # A signal other than SIGKILL leaves a paused container paused (delivered on unpause, as Docker).
    v1_cgroup.freeze()
    assert v1_cgroup.kill_all(signal.SIGSTOP) == 1
    assert v1_cgroup.frozen()
    # A paused container can be destroyed: the SIGKILL is delivered once destroy thaws it.
    v1_cgroup.destroy()
    assert w.wait(10) == -signal.SIGKILL


LEFTOVERS = """
import os, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
def note(pid):
    with open(sys.argv[1], "a") as f:
        f.write(f"{pid}\\n")
note(os.getpid())
if os.fork() == 0:             # a daemon: double fork and setsid, escaping its parent
    os.setsid()
    if os.fork() == 0:
        note(os.getpid())
        time.sleep(300)
    os._exit(0)
for _ in range(3):             # plain children that ignore SIGTERM too
    if os.fork() == 0:
        note(os.getpid())
        time.sleep(300)
        os._exit(0)
time.sleep(300)
"""


def test_destroy_kills_leftovers_and_removes_every_hierarchy(
    v1_cgroup: V1Cgroup, workloads: list[Workload], subreaper: list[int], tmp_path: Path
) -> None:
    pids_file = tmp_path / "pids"
    v1_cgroup.create({"memory": {"limit": 64 * MiB}, "pids": {"limit": 50}})
    w = Workload(v1_cgroup, LEFTOVERS, str(pids_file))
    workloads.append(w)
    wait_for(lambda: pids_file.exists() and len(pids_file.read_text().split()) == 5, what="the leftovers")
    procs = [int(p) for p in pids_file.read_text().split()]
    subreaper.extend(p for p in procs if p != w.pid)
    # The container made a cgroup of its own inside ours, and moved one process there.
    inner = Path(v1_cgroup.paths["memory"]) / "inner"
    inner.mkdir()
    (inner / "cgroup.procs").write_text(str(procs[-1]))
    assert set(procs) == set(v1_cgroup.pids())
    # SIGTERM is ignored by all of them; kill_all reports who was signalled and nobody dies.
    assert v1_cgroup.kill_all(signal.SIGTERM) == 5
    time.sleep(0.1)
    assert set(procs) == set(v1_cgroup.pids())

    v1_cgroup.destroy()
    for controller, directory in v1_cgroup.paths.items():
        assert not os.path.exists(directory), controller
        assert os.path.isdir(os.path.dirname(directory)), "the parent is left in place"
    assert w.wait() == -signal.SIGKILL
    v1_cgroup.destroy()  # idempotent


def test_join_from_a_forked_child_moves_it_in_every_hierarchy(v1_cgroup: V1Cgroup) -> None:
    v1_cgroup.create({"cpu": {"cpus": "0"}})
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: join, then report its own view
        try:
            v1_cgroup.join()
            os.write(w, repr(sorted(os.sched_getaffinity(0))).encode())
        finally:
            os._exit(0)
    os.close(w)
    try:
        affinity = os.read(r, 100).decode()
    finally:
        os.close(r)
        os.waitpid(pid, 0)
    assert affinity == "[0]"  # the cpuset limit applied to the joined child


def _joined_view(v1_cgroup: V1Cgroup, threads: int) -> list[str]:
    """Fork a child that starts `threads - 1` more threads, joins, and reports each thread's /proc cgroup file."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            import threading

            done = threading.Event()
            extra = [threading.Thread(target=done.wait) for _ in range(threads - 1)]
            for t in extra:
                t.start()
            v1_cgroup.join()
            views = [Path(f"/proc/self/task/{tid}/cgroup").read_text() for tid in os.listdir("/proc/self/task")]
            os.write(w, "\0".join(views).encode())
            done.set()
            for t in extra:
                t.join()
        finally:
            os._exit(0)
    os.close(w)
    try:
        chunks = []
        while chunk := os.read(r, 65536):
            chunks.append(chunk)
    finally:
        os.close(r)
        os.waitpid(pid, 0)
    return b"".join(chunks).decode().split("\0")


@pytest.mark.parametrize("threads", [1, 3])
def test_join_moves_every_thread_of_the_caller_into_every_hierarchy(v1_cgroup: V1Cgroup, threads: int) -> None:
    """One thread joins through `tasks`, several through cgroup.procs: either way no thread is left behind."""
    v1_cgroup.create()
    views = _joined_view(v1_cgroup, threads)
    assert len(views) == threads
    wanted = f"/{v1_cgroup.parent}/{v1_cgroup.container_id}"
    for view in views:
        lines = dict(line.split(":", 2)[1:] for line in view.splitlines())
        for controller in v1_cgroup.mounts:
            entry = next(path for names, path in lines.items() if controller in names.split(","))
            assert entry == wanted, (controller, view)


def test_add_moves_a_running_process(v1_cgroup: V1Cgroup, workloads: list[Workload]) -> None:
    v1_cgroup.create()
    other = cgroups.open(f"{v1_cgroup.container_id}-other", parent=v1_cgroup.parent, mode="v1")
    other.create()
    try:
        w = Workload(other, "import time; time.sleep(60)")
        workloads.append(w)
        v1_cgroup.apply(w.pid)
        assert v1_cgroup.pids() == [w.pid]
        assert other.pids() == []
    finally:
        w.stop()
        other.destroy()


def test_set_updates_a_live_cgroup_in_a_safe_order(v1_cgroup: V1Cgroup) -> None:
    v1_cgroup.create({"memory": {"limit": 64 * MiB, "swap": 64 * MiB}})
    mem = Path(v1_cgroup.paths["memory"])
    # Growing memory past the old memory+swap needs memsw raised first; shrinking needs the reverse.
    v1_cgroup.set({"memory": {"limit": 256 * MiB, "swap": 512 * MiB}})
    assert read(mem / "memory.limit_in_bytes") == str(256 * MiB)
    assert read(mem / "memory.memsw.limit_in_bytes") == str(512 * MiB)
    v1_cgroup.set({"memory": {"limit": 32 * MiB, "swap": 32 * MiB}})
    assert read(mem / "memory.limit_in_bytes") == str(32 * MiB)
    assert read(mem / "memory.memsw.limit_in_bytes") == str(32 * MiB)
    v1_cgroup.set({"cpu": {"quota": 20000, "period": 50000}, "pids": {"limit": -1}})
    assert read(Path(v1_cgroup.paths["cpu"]) / "cpu.cfs_quota_us") == "20000"
    assert read(Path(v1_cgroup.paths["cpu"]) / "cpu.cfs_period_us") == "50000"
    assert read(Path(v1_cgroup.paths["pids"]) / "pids.max") == "max"


def test_a_value_the_kernel_refuses_is_a_clear_error_and_leaves_nothing(v1_cgroup: V1Cgroup) -> None:
    with pytest.raises(InvalidSpec, match=r"cpuset.cpus"):
        v1_cgroup.create({"cpu": {"cpus": "63"}})  # a CPU this 2-core machine does not have
    assert not v1_cgroup.exists()


def test_create_refuses_to_take_over_a_live_cgroup(v1_cgroup: V1Cgroup, workloads: list[Workload]) -> None:
    v1_cgroup.create({"pids": {"limit": 10}})
    workloads.append(Workload(v1_cgroup, "import time; time.sleep(60)"))
    wait_for(lambda: v1_cgroup.pids(), what="the child")
    with pytest.raises(Conflict):
        cgroups.open(v1_cgroup.container_id, parent=v1_cgroup.parent, mode="v1").create({"pids": {"limit": 99}})
    assert read(Path(v1_cgroup.paths["pids"]) / "pids.max") == "10"
    assert v1_cgroup.exists()


def test_a_stale_empty_cgroup_is_reused(v1_cgroup: V1Cgroup) -> None:
    v1_cgroup.create({"pids": {"limit": 10}})  # as if a crashed run left it behind
    v1_cgroup.create({"pids": {"limit": 30}})
    assert read(Path(v1_cgroup.paths["pids"]) / "pids.max") == "30"


def test_unified_resources_are_refused_on_v1(v1_cgroup: V1Cgroup) -> None:
    with pytest.raises(InvalidSpec, match="cgroup v2"):
        v1_cgroup.create({"unified": {"memory.max": "10M"}})
    assert not v1_cgroup.exists()


def test_stats_of_a_removed_cgroup_is_not_found(v1_cgroup: V1Cgroup) -> None:
    from minicache.errors import NotFound
    from minirun.errors import ContainerStateError

    with pytest.raises(NotFound):
        v1_cgroup.stats()
    with pytest.raises(ContainerStateError):
        v1_cgroup.freeze()
    assert v1_cgroup.pids() == [] and not v1_cgroup.oom_killed() and not v1_cgroup.frozen()


def test_destroy_without_a_freezer_hierarchy(cgroup_parent: str, workloads: list[Workload]) -> None:
    """A host that does not mount the v1 freezer: kill and destroy still work, pause says why it cannot."""
    host = cgroups.detect()
    if host.mode != "v1":
        pytest.skip(f"this host runs cgroup {host.mode}, not v1")
    cg = V1Cgroup("nofreezer", cgroup_parent, mounts={c: m for c, m in host.v1.items() if c != "freezer"})
    try:
        cg.create({"pids": {"limit": 10}})
        w = Workload(cg, "import os, time\nos.fork()\ntime.sleep(60)")
        workloads.append(w)
        wait_for(lambda: len(cg.pids()) == 2, what="two processes")
        with pytest.raises(cgroups.CgroupError, match="freezer"):
            cg.freeze()
        assert not cg.frozen()
        cg.destroy()
        assert w.wait(10) == -signal.SIGKILL
    finally:
        cg.destroy()
    assert not cg.exists()


def test_device_rules_replace_the_inherited_list(v1_cgroup: V1Cgroup) -> None:
    """A leading deny-all clears what the parent allows ("a *:* rwm"); the allow rules follow in order."""
    v1_cgroup.create(
        {
            "devices": [
                {"allow": False, "access": "rwm"},
                {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
                {"allow": True, "type": "c", "major": 136, "access": "rwm"},
                {"allow": True, "type": "b", "access": "m"},
            ]
        }
    )
    devices = Path(v1_cgroup.paths["devices"]) / "devices.list"
    assert read(devices).splitlines() == ["c 1:3 rwm", "c 136:* rwm", "b *:* m"]
    assert "a *:* rwm" not in read(Path(v1_cgroup.paths["devices"]) / "devices.list")
