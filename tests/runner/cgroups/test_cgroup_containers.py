"""Resource limits and accounting through real containers: `minirun run/stats/pause/unpause/inspect`.

Every container here runs from the CLI on the real kernel, under the session's own cgroup parent
(sessionkit). The figures are read from the container's own cgroup files, found independently of the
drivers: each cgroup mount in /proc/self/mountinfo, then `<mount>/<parent>/<container id>`.

This machine is a v1/v2 hybrid: every controller is on v1 and /sys/fs/cgroup/unified has none of the
memory, cpu or pids controllers, so the v1 files are read here. The VM lane (`make test-vm`) runs the tests
marked `vm` again on Debian's kernel with pure cgroup v2; test_cgroup_vm_run.py has the v2 flag table, the
OOM kill, pause and the device program there (software emulation is slow: the lane runs each case once).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from kits.lifecyclekit import _subreaper, alive, inspect, ps_json, reaper, remove_leftovers, run_d, wait_until  # noqa: F401 - fixtures
from kits.runkit import container_ids, minirun, no_leaks, spawn, wait_for_running  # noqa: F401 - no_leaks: autouse
from kits.sessionkit import CGROUP_PARENT
from minirun import cgroups
from minirun.cgroups.stats import host_memory
from minishow import bytes_size

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("remove_leftovers")]
MiB = 1 << 20
HOST = cgroups.detect()
# A buffer of 100 MiB that dd fills from /dev/zero: 100 MiB resident, beyond a 64 MiB limit.
ALLOCATE_100M = ["dd", "if=/dev/zero", "of=/dev/null", "bs=100M", "count=1"]


def _v2_controllers() -> set[str]:
    if HOST.unified is None:
        return set()
    return set((Path(HOST.unified) / "cgroup.controllers").read_text().split())


V2_READY = HOST.mode == "v2" and {"memory", "cpu", "pids"} <= _v2_controllers()
NO_V2 = (
    f"this host runs cgroup {HOST.mode} and its cgroup2 mount ({HOST.unified}) has the controllers "
    f"{sorted(_v2_controllers()) or 'none'}, not memory, cpu and pids: the v2 files are checked against the "
    "fake cgroupfs in test_cgroup_v2_fake.py"
)


def cgroup_mounts() -> list[Path]:
    """Every cgroup hierarchy mounted here (v1 ones we use or not, named ones, the cgroup2 one)."""
    with open("/proc/self/mountinfo") as f:
        lines = f.read().splitlines()
    mounts = []
    for line in lines:
        left, _, right = line.partition(" - ")
        if right.split()[0] in ("cgroup", "cgroup2"):
            mounts.append(Path(left.split()[4]))
    return mounts


def cgroup_dirs(cid: str) -> list[Path]:
    """The container's directory in every hierarchy, where it exists."""
    return [m / CGROUP_PARENT / cid for m in cgroup_mounts() if (m / CGROUP_PARENT / cid).is_dir()]


def cgroup_file(cid: str, controller: str, name: str) -> Path:
    """A file of the container's cgroup: `<controller's mount>/<parent>/<id>/<name>` (v2: the one mount)."""
    mount = Path(HOST.v1[controller] if HOST.mode == "v1" else HOST.unified)
    assert mount is not None
    return mount / CGROUP_PARENT / cid / name


def read(path: Path) -> str:
    return path.read_text().strip()


def cpu_usage_ns(cid: str) -> int:
    """The CPU time the cgroup itself has counted (v1 cpuacct.usage, v2 cpu.stat usage_usec)."""
    if HOST.mode == "v1":
        return int(read(cgroup_file(cid, "cpuacct", "cpuacct.usage")))
    stat = dict(line.split() for line in read(cgroup_file(cid, "cpu", "cpu.stat")).splitlines())
    return int(stat["usage_usec"]) * 1000


def state_of(store_root: Path, ref: str) -> dict:
    return inspect(store_root, ref)["State"]


def assert_cgroup_gone(cid: str) -> None:
    wait_until(lambda: cgroup_dirs(cid) == [], timeout=5, what=f"the cgroup of {cid[:12]} to go")
    for mount in cgroup_mounts():
        assert not (mount / CGROUP_PARENT / cid).exists(), mount


@pytest.fixture(autouse=True)
def _needs_cgroups() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (containers and cgroups on the real kernel)")
    if HOST.mode == "disabled" or (HOST.mode == "v2" and not V2_READY):
        pytest.skip(f"no cgroup controllers to test here ({HOST.mode})")


# -- 0. bad values --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", [["run", "--rm"], ["run", "-d"], ["create"]])
@pytest.mark.parametrize(
    ("flag", "message"),
    [
        (["--memory", "10x"], "invalid value '10x' for --memory; use a number with an optional unit"),
        (["--cpus", "-1"], "invalid value '-1' for --cpus; give a positive number of CPUs"),
        (["--memory", "1m"], "--memory 1m is below the minimum of 6m"),
        (["--pids-limit", "lots"], "invalid value 'lots' for --pids-limit: not an integer"),
        (["--cgroup-parent", "../../etc"], "invalid cgroup parent '../../etc'"),
        (["--cgroup-parent", "/"], "invalid cgroup parent '/'"),  # not the hierarchy's root
    ],
)
def test_bad_values_are_one_line_errors_and_nothing_is_made(
    store_root: Path, busybox_image: str, command: list[str], flag: list[str], message: str
):
    result = minirun(store_root, *command, *flag, busybox_image, "true")
    assert result.returncode == 125
    assert result.stderr.startswith(f"minirun: error: {message}") and result.stderr.count("\n") == 1, result.stderr
    assert container_ids(store_root) == [] and result.stdout == ""


# -- 1. the OOM killer ---------------------------------------------------------------------------------------------
def test_memory_limit_oom_kills_a_foreground_container_and_inspect_says_so(store_root: Path, busybox_image: str):
    result = minirun(store_root, "run", "--name", "hog", "--memory", "64m", busybox_image, *ALLOCATE_100M)
    assert result.returncode == 137, result.stderr
    state = state_of(store_root, "hog")
    assert state["OOMKilled"] is True
    assert state["ExitCode"] == 137 and state["Status"] == "exited"
    assert ps_json(store_root)[0]["Status"].startswith("Exited (137)")
    assert_cgroup_gone(inspect(store_root, "hog")["Id"])
    assert minirun(store_root, "rm", "hog").returncode == 0


def test_a_process_that_fits_or_a_plain_sigkill_is_not_an_oom_kill(store_root: Path, busybox_image: str):
    # The same 100 MiB in 1 MiB reads stays far below the limit; a SIGKILL not from the OOM killer is 137 too.
    fits = ["dd", "if=/dev/zero", "of=/dev/null", "bs=1M", "count=100"]
    assert minirun(store_root, "run", "--name", "fits", "--memory", "64m", busybox_image, *fits).returncode == 0
    assert state_of(store_root, "fits")["OOMKilled"] is False
    killed = ["sh", "-c", "sh -c 'kill -9 $$'; exit $?"]  # PID 1 is immune to its own SIGKILL: a child dies
    assert minirun(store_root, "run", "--name", "shot", "--memory", "64m", busybox_image, *killed).returncode == 137
    assert state_of(store_root, "shot")["OOMKilled"] is False
    assert minirun(store_root, "rm", "fits", "shot").returncode == 0


def test_memory_limit_oom_kills_a_detached_container_and_inspect_says_so(store_root: Path, busybox_image: str):
    cid = run_d(store_root, "--name", "hog", "--memory", "64m", busybox_image, "sh", "-c", "sleep 0.2; dd "
                + " ".join(ALLOCATE_100M[1:]))  # fmt: skip
    # While the exit step is held up (we hold the container's lock), `wait` already answers from the
    # monitor's note, and inspect must already say OOMKilled: it did not, before the note carried it.
    from minicache.store import Store
    from minirun.engine.containers import Container

    with Container(Store(store_root), cid).lock():
        result = minirun(store_root, "wait", "hog")
        assert result.stdout.strip() == "137", result.stderr
        state = state_of(store_root, "hog")
        assert (state["Status"], state["ExitCode"], state["OOMKilled"]) == ("exited", 137, True)
    wait_until(lambda: json.loads((store_root / "containers" / cid / "state.json").read_text())["OOMKilled"])
    assert state_of(store_root, "hog")["OOMKilled"] is True
    assert_cgroup_gone(cid)
    assert minirun(store_root, "rm", "hog").returncode == 0


# -- 2. the CPU quota ----------------------------------------------------------------------------------------------
def test_cpus_quarter_keeps_a_busy_loop_near_25_percent(store_root: Path, busybox_image: str):
    cid = run_d(store_root, "--name", "spin", "--cpus", "0.25", busybox_image, "sh", "-c", "while :; do :; done")
    time.sleep(0.3)  # past the first period
    before, t0 = cpu_usage_ns(cid), time.monotonic()
    time.sleep(3)
    after, t1 = cpu_usage_ns(cid), time.monotonic()
    share = (after - before) / ((t1 - t0) * 1e9)
    print(f"--cpus 0.25: {share:.1%} of one CPU over {t1 - t0:.2f}s (the cgroup's own counter)")
    assert 0.20 <= share <= 0.30, share
    if HOST.mode == "v1":  # the quota, not a lack of work, is what held it back
        throttled = dict(line.split() for line in read(cgroup_file(cid, "cpu", "cpu.stat")).splitlines())
        assert int(throttled["nr_throttled"]) > 0
    (row,) = json.loads("[" + minirun(store_root, "stats", "--no-stream", "--format", "json").stdout + "]")
    assert 15.0 <= float(row["CPUPerc"].rstrip("%")) <= 35.0, row
    assert minirun(store_root, "rm", "-f", "spin").returncode == 0
    assert_cgroup_gone(cid)


# -- 3. the pids limit ---------------------------------------------------------------------------------------------
FORK_BOMB = "(bomb() { bomb | bomb & }; bomb) & exec sleep 1000"  # PID 1 is sleep: the bomb cannot starve it


@pytest.mark.vm
def test_pids_limit_contains_a_fork_bomb_and_the_host_is_unaffected(store_root: Path, busybox_image: str):
    cid = run_d(store_root, "--name", "bomb", "--pids-limit", "20", busybox_image, "sh", "-c", FORK_BOMB)
    current, events = cgroup_file(cid, "pids", "pids.current"), cgroup_file(cid, "pids", "pids.events")
    assert read(cgroup_file(cid, "pids", "pids.max")) == "20"
    wait_until(lambda: int(read(events).split()[1]) > 0, what="the bomb to hit the limit")
    seen = []
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        seen.append(int(read(current)))
        # The host forks as usual while the bomb runs.
        assert subprocess.run(["true"], timeout=10).returncode == 0
    assert 10 <= max(seen) <= 20, seen
    assert int(read(events).split()[1]) > 0  # forks were refused: the limit, not the bomb, stopped it
    assert state_of(store_root, "bomb")["Status"] == "running"
    (row,) = json.loads("[" + minirun(store_root, "stats", "--no-stream", "--format", "json").stdout + "]")
    assert 1 <= int(row["PIDs"]) <= 20, row
    result = minirun(store_root, "rm", "-f", "bomb", timeout=30)
    assert result.returncode == 0, result.stderr
    assert_cgroup_gone(cid)


# -- 4. pause and unpause ------------------------------------------------------------------------------------------
COUNTER = (
    'trap "exit 3" TERM; i=0; while :; do i=$((i+1)); echo $i > /out/n.tmp; mv /out/n.tmp /out/n; sleep 0.02; done'
)


def test_pause_stops_progress_unpause_resumes_and_stop_rm_work_while_paused(
    store_root: Path, busybox_image: str, tmp_path: Path
):
    out = tmp_path / "out"
    out.mkdir()
    counter = out / "n"

    def count() -> int:
        return int(counter.read_text() or 0)

    cid = run_d(store_root, "--name", "tick", "-v", f"{out}:/out", busybox_image, "sh", "-c", COUNTER)
    wait_until(lambda: counter.exists() and count() > 3, what="the counter to run")

    assert minirun(store_root, "pause", "tick").returncode == 0
    if HOST.mode == "v1":
        assert read(cgroup_file(cid, "freezer", "freezer.state")) == "FROZEN"
    else:
        assert "frozen 1" in read(cgroup_file(cid, "", "cgroup.events"))
    state = state_of(store_root, "tick")
    assert state["Status"] == "paused" and state["Paused"] is True and state["Running"] is True
    (row,) = ps_json(store_root)
    assert row["State"] == "paused" and row["Status"].endswith("(Paused)"), row
    frozen_at = count()
    time.sleep(0.5)
    assert count() == frozen_at  # 25 ticks' worth of time, not one
    again = minirun(store_root, "pause", "tick")
    assert again.returncode != 0 and "already paused" in again.stderr

    assert minirun(store_root, "unpause", "tick").returncode == 0
    wait_until(lambda: count() > frozen_at + 5, what="the counter to resume")
    assert state_of(store_root, "tick")["Status"] == "running"
    assert ps_json(store_root)[0]["State"] == "running"

    # stop of a paused container: the stop signal is delivered once thawed (the trap exits 3), as Docker.
    assert minirun(store_root, "pause", "tick").returncode == 0
    assert minirun(store_root, "stop", "-t", "5", "tick").returncode == 0
    state = state_of(store_root, "tick")
    assert (state["Status"], state["ExitCode"], state["Paused"]) == ("exited", 3, False)
    assert_cgroup_gone(cid)

    # rm of a paused container needs -f, as Docker; -f kills it (frozen processes too) and removes everything.
    assert minirun(store_root, "start", "tick").returncode == 0
    assert minirun(store_root, "pause", "tick").returncode == 0
    refused = minirun(store_root, "rm", "tick")
    assert refused.returncode != 0 and "cannot remove a paused container" in refused.stderr
    assert "unpause and then stop the container" in refused.stderr
    assert state_of(store_root, "tick")["Status"] == "paused"
    assert minirun(store_root, "rm", "-f", "tick").returncode == 0
    assert container_ids(store_root) == []
    assert_cgroup_gone(cid)


# -- 5. nothing of the cgroup outlives the container ---------------------------------------------------------------
GATE = "while [ ! -e /out/go ]; do sleep 0.02; done"


@pytest.mark.parametrize(
    "how",
    [
        "foreground",
        "foreground --rm",
        "detached",
        "detached --rm",
        pytest.param("detached rm -f", marks=pytest.mark.vm),
    ],
)
def test_the_cgroup_is_gone_in_every_hierarchy_after_the_container(
    store_root: Path, busybox_image: str, tmp_path: Path, how: str
):
    out = tmp_path / "out"
    out.mkdir()
    flags = ["--rm"] if how.endswith("--rm") else []
    argv = ["-v", f"{out}:/out", *flags, busybox_image, "sh", "-c", GATE]
    proc = None
    if how.startswith("foreground"):
        proc = spawn(store_root, "run", *argv)
        wait_for_running(store_root)
        (cid,) = container_ids(store_root)
    else:
        cid = run_d(store_root, *argv)
    dirs = cgroup_dirs(cid)
    # Its own directory in each hierarchy it uses: every controller (v1) or the one unified directory (v2).
    expected = {Path(p) / CGROUP_PARENT / cid for p in (set(HOST.v1.values()) if HOST.mode == "v1" else {HOST.unified})}
    assert set(dirs) == expected
    if how == "detached rm -f":
        assert minirun(store_root, "rm", "-f", cid).returncode == 0
    else:
        (out / "go").touch()
    if proc is not None:
        assert proc.wait(30) == 0
    elif how == "detached":
        assert minirun(store_root, "wait", cid).stdout.strip() == "0"
    assert_cgroup_gone(cid)
    if how in ("foreground", "detached"):
        assert minirun(store_root, "rm", cid).returncode == 0
    wait_until(lambda: container_ids(store_root) == [], what="--rm to remove the container")


# -- 6. no limits: a cgroup all the same, and stats ----------------------------------------------------------------
@pytest.mark.vm
def test_a_container_without_limits_has_its_own_cgroup_and_stats(store_root: Path, busybox_image: str):
    cid = run_d(store_root, "--name", "plain", busybox_image, "sh", "-c", "sleep 1000 & exec sleep 1000")
    pid = state_of(store_root, "plain")["Pid"]
    membership = Path(f"/proc/{pid}/cgroup").read_text()
    for mount in cgroup_dirs(cid):
        assert f":/{CGROUP_PARENT}/{cid}\n" in membership
        assert str(pid) in read(mount / "cgroup.procs").split()
    wait_until(lambda: int(read(cgroup_file(cid, "pids", "pids.current"))) == 2, what="the second process")

    table = minirun(store_root, "stats", "--no-stream")
    assert table.returncode == 0, table.stderr
    header, line = table.stdout.splitlines()
    assert header.split()[:3] == ["CONTAINER", "ID", "NAME"]
    assert line.startswith(cid[:12]) and " plain " in line

    result = minirun(store_root, "stats", "--no-stream", "--format", "json", "plain")
    row = json.loads(result.stdout)
    assert row["ID"] == cid[:12] and row["Name"] == "plain"
    used, limit = row["MemUsage"].split(" / ")
    assert limit == bytes_size(host_memory())  # no limit: the host's memory, as docker stats
    assert used.endswith(("KiB", "MiB")) and 0 < float(used[:-3]) < (64 if used.endswith("MiB") else 1 << 20)
    assert float(row["MemPerc"].rstrip("%")) < 1.0
    assert row["PIDs"] == "2"
    assert 0.0 <= float(row["CPUPerc"].rstrip("%")) < 5.0  # two sleepers
    assert row["BlockIO"].count(" / ") == 1 and row["NetIO"] == "0B / 0B"  # --network none: loopback only
    assert minirun(store_root, "rm", "-f", "plain").returncode == 0
    assert_cgroup_gone(cid)


# -- 7. every flag reaches its file --------------------------------------------------------------------------------
V1_FILES = [
    (
        ["--memory", "96m", "--memory-swap", "128m", "--memory-reservation", "32m"],
        {
            ("memory", "memory.limit_in_bytes"): str(96 * MiB),
            ("memory", "memory.memsw.limit_in_bytes"): str(128 * MiB),
            ("memory", "memory.soft_limit_in_bytes"): str(32 * MiB),
        },
    ),
    (  # Docker's default swap: as much again as --memory
        ["--memory", "64m"],
        {("memory", "memory.limit_in_bytes"): str(64 * MiB), ("memory", "memory.memsw.limit_in_bytes"): str(128 * MiB)},
    ),
    (["--memory", "64m", "--memory-swap", "-1"], {("memory", "memory.memsw.limit_in_bytes"): "9223372036854771712"}),
    (
        ["--cpus", "0.5", "--cpu-shares", "512"],
        {("cpu", "cpu.cfs_quota_us"): "50000", ("cpu", "cpu.cfs_period_us"): "100000", ("cpu", "cpu.shares"): "512"},
    ),
    (
        ["--cpu-period", "50000", "--cpu-quota", "20000"],
        {("cpu", "cpu.cfs_quota_us"): "20000", ("cpu", "cpu.cfs_period_us"): "50000"},
    ),
    (
        ["--cpuset-cpus", "LAST_CPU", "--cpuset-mems", "0"],
        {("cpuset", "cpuset.cpus"): "LAST_CPU", ("cpuset", "cpuset.mems"): "0"},
    ),
    (["--pids-limit", "33"], {("pids", "pids.max"): "33"}),
    (["--pids-limit", "-1"], {("pids", "pids.max"): "max"}),
    (  # BFQ's weight: CFQ's blkio.weight is gone from the kernel
        ["--blkio-weight", "300", "--device-read-bps", "/dev/loop0:1mb", "--device-write-bps", "/dev/loop0:2mb"],
        {
            ("blkio", "blkio.bfq.weight"): "300",
            ("blkio", "blkio.throttle.read_bps_device"): "7:0 1048576",
            ("blkio", "blkio.throttle.write_bps_device"): "7:0 2097152",
        },
    ),
    (
        ["--device-read-iops", "/dev/loop0:100", "--device-write-iops", "/dev/loop0:50"],
        {
            ("blkio", "blkio.throttle.read_iops_device"): "7:0 100",
            ("blkio", "blkio.throttle.write_iops_device"): "7:0 50",
        },
    ),
    (  # no flags: the kernel's defaults, nothing written
        [],
        {
            ("memory", "memory.limit_in_bytes"): "9223372036854771712",
            ("cpu", "cpu.cfs_quota_us"): "-1",
            ("cpu", "cpu.shares"): "1024",
            ("pids", "pids.max"): "max",
        },
    ),
]
V2_FILES = [
    (
        ["--memory", "96m", "--memory-swap", "128m", "--memory-reservation", "32m"],
        {
            ("memory", "memory.max"): str(96 * MiB),
            ("memory", "memory.swap.max"): str(32 * MiB),
            ("memory", "memory.low"): str(32 * MiB),  # runc's and crun's choice: a protection, not a throttle
        },
    ),
    (["--cpus", "0.5", "--cpu-shares", "512"], {("cpu", "cpu.max"): "50000 100000", ("cpu", "cpu.weight"): "20"}),
    (["--cpuset-cpus", "LAST_CPU"], {("cpuset", "cpuset.cpus"): "LAST_CPU"}),
    (["--pids-limit", "33"], {("pids", "pids.max"): "33"}),
]


def test_every_resource_flag_has_a_v1_file_case() -> None:
    from minirun.cgroups.flags import FLAGS

    covered = {arg for argv, _ in V1_FILES for arg in argv if arg.startswith("--")}
    offered = {name for names, _, _ in FLAGS.values() for name in names if name.startswith("--")}
    assert offered <= covered, offered - covered


def _ids(value: object) -> str:
    return (" ".join(value) or "no flags") if isinstance(value, list) else "files"


def _last_cpu() -> str:
    return str(max(os.sched_getaffinity(0)))


def _check_files(store_root: Path, image: str, argv: list[str], files: dict[tuple[str, str], str]) -> None:
    argv = [_last_cpu() if a == "LAST_CPU" else a for a in argv]
    cid = run_d(store_root, *argv, image, "sleep", "1000")
    try:
        for (controller, name), value in files.items():
            value = _last_cpu() if value == "LAST_CPU" else value
            assert read(cgroup_file(cid, controller, name)) == value, (controller, name)
        # The container's init is the process those files govern.
        pid = state_of(store_root, cid)["Pid"]
        for controller, _ in files:
            assert str(pid) in read(cgroup_file(cid, controller, "cgroup.procs")).split()
    finally:
        assert minirun(store_root, "rm", "-f", cid).returncode == 0
    assert_cgroup_gone(cid)


@pytest.mark.skipif(HOST.mode != "v1", reason=f"this host runs cgroup {HOST.mode}, not v1")
@pytest.mark.parametrize(("argv", "files"), V1_FILES, ids=_ids)
def test_each_flag_reaches_its_v1_file(store_root: Path, busybox_image: str, argv: list[str], files: dict):
    _check_files(store_root, busybox_image, argv, files)


@pytest.mark.skipif(not V2_READY, reason=NO_V2)
@pytest.mark.parametrize(("argv", "files"), V2_FILES, ids=_ids)
def test_each_flag_reaches_its_v2_file(store_root: Path, busybox_image: str, argv: list[str], files: dict):
    _check_files(store_root, busybox_image, argv, files)


# -- the device allowlist (v1 devices controller, v2 eBPF program) ----------------------------------------------
def _free_char_major() -> int:
    """A character major no driver has here (from the "local/experimental" range): opening it fails with ENXIO
    unless something refuses first."""
    with open("/proc/devices") as f:
        text = f.read().split("Block devices:")[0]
    used = {int(line.split()[0]) for line in text.splitlines() if line.strip()[:1].isdigit()}
    return next(m for m in range(240, 255) if m not in used)


@pytest.mark.skipif(HOST.mode == "v1" and "devices" not in HOST.v1, reason="this v1 host mounts no devices controller")
def test_root_in_a_container_cannot_open_a_device_outside_the_allowlist(store_root: Path, busybox_image: str):
    # mknod is allowed (Docker's "c *:* m"), opening the node is not: the devices cgroup says EPERM before the
    # kernel looks for a driver. Before the controller was used, any device root could mknod was open to it.
    probe = f"mknod /dev/probe c {_free_char_major()} 0 && cat /dev/probe"
    basics = "echo x > /dev/null && head -c 4 /dev/urandom | wc -c && "
    result = minirun(store_root, "run", "--rm", busybox_image, "sh", "-c", basics + probe)
    assert result.returncode == 1 and result.stdout.strip() == "4"
    assert "can't open '/dev/probe': Operation not permitted" in result.stderr
    privileged = minirun(store_root, "run", "--rm", "--privileged", busybox_image, "sh", "-c", probe)
    assert "can't open '/dev/probe': No such device or address" in privileged.stderr  # no rule: the driver's answer


def test_a_killed_foreground_cli_leaves_a_cgroup_that_rm_removes(store_root: Path, busybox_image: str):
    """No daemon: when the CLI of a foreground run is SIGKILLed, its container dies with it (PDEATHSIG) and
    the cgroup stays until a command settles the container; rm must then remove it in every hierarchy."""
    import signal

    cli = spawn(store_root, "run", "--name", "orphan", "--memory", "64m", busybox_image, "sleep", "1000")
    pid = wait_for_running(store_root)["Pid"]
    (cid,) = container_ids(store_root)
    assert cgroup_dirs(cid)
    cli.send_signal(signal.SIGKILL)
    cli.wait(10)
    wait_until(lambda: not alive(pid), what="the container to die with its CLI")
    assert state_of(store_root, "orphan")["Status"] == "exited"
    assert minirun(store_root, "rm", "orphan").returncode == 0
    assert_cgroup_gone(cid)


def test_cgroup_parent_places_the_cgroup_under_it(store_root: Path, busybox_image: str):
    """--cgroup-parent is taken from each hierarchy's root (as Docker's cgroupfs driver); the parent is left."""
    parent = f"{CGROUP_PARENT}/nested"
    try:
        cid = run_d(store_root, "--cgroup-parent", parent, "--pids-limit", "9", busybox_image, "sleep", "1000")
        assert inspect(store_root, cid)["HostConfig"]["CgroupParent"] == parent
        dirs = [m / parent / cid for m in cgroup_mounts() if (m / parent / cid).is_dir()]
        assert len(dirs) == len(set(HOST.v1.values()) if HOST.mode == "v1" else {HOST.unified})
        pids = next(d for d in dirs if (d / "pids.max").exists())
        assert read(pids / "pids.max") == "9"
        assert str(state_of(store_root, cid)["Pid"]) in read(pids / "cgroup.procs").split()
        assert minirun(store_root, "rm", "-f", cid).returncode == 0
        assert not any(d.exists() for d in dirs)
    finally:
        for mount in cgroup_mounts():
            if (mount / parent).is_dir():
                (mount / parent).rmdir()
