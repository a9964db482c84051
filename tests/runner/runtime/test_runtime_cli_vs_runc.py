"""The same bundle driven verb by verb through Debian's runc and through `minirun-runtime`: same answers."""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from kits.runkit import no_leaks  # noqa: F401 - autouse fixture: nothing may outlive a test
from kits.sessionkit import CGROUP_PARENT
from minirun.engine import spec

pytestmark = [pytest.mark.root, pytest.mark.skipif(not shutil.which("runc"), reason="runc is not installed")]

RUNTIMES = {"runc": "runc", "minirun": str(Path(sys.executable).with_name("minirun-runtime"))}


class Driver:
    """One runtime with its own state root; every verb's (exit code, stdout)."""

    def __init__(self, name: str, root: Path) -> None:
        self.binary, self.root = RUNTIMES[name], root

    def __call__(self, *args: str) -> tuple[int, str]:
        with tempfile.TemporaryFile("w+") as out:
            code = subprocess.run(
                [self.binary, "--root", str(self.root), *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.DEVNULL,
                timeout=60,
            ).returncode
            out.seek(0)
            return code, out.read()

    def state(self, cid: str) -> dict:
        code, out = self("state", cid)
        return json.loads(out) if code == 0 else {}

    def status(self, cid: str, wanted: str) -> str:
        deadline = time.monotonic() + 10
        while (now := self.state(cid).get("status")) != wanted and time.monotonic() < deadline:
            time.sleep(0.05)
        return str(now)


def bundle_for(
    tmp_path: Path, rootfs: Path, name: str, cid: str, command: list[str], resources: dict | None = None
) -> Path:
    bundle = tmp_path / f"bundle-{name}"
    bundle.mkdir()
    shutil.copytree(rootfs, bundle / "rootfs", symlinks=True)
    (bundle / "rootfs").chmod(0o755)
    ctx = spec.SpecContext(container_id=cid, cgroups_path=f"/{CGROUP_PARENT}/{cid}")
    oci = spec.build({"Env": ["PATH=/bin"]}, spec.RunOptions(command=command, resources=resources or {}), ctx)
    (bundle / "config.json").write_text(json.dumps(oci))
    return bundle


def both(tmp_path: Path, rootfs: Path, command: list[str], check, resources: dict | None = None) -> dict:
    """`check(driver, cid)` for a container of `command` created under each runtime (deleted after): the
    results by runtime name."""
    results = {}
    for name in RUNTIMES:
        cid = f"vs-{name}-{secrets.token_hex(4)}"
        bundle = bundle_for(tmp_path, rootfs, name, cid, command, resources)
        driver = Driver(name, tmp_path / f"root-{name}")
        try:
            assert driver("create", "--bundle", str(bundle), cid)[0] == 0, name
            results[name] = check(driver, cid)
        finally:
            driver("delete", "--force", cid)
        shutil.rmtree(bundle)
    return results


def lifecycle(driver: Driver, bundle: Path, cid: str) -> list[object]:
    """Every step's observable result, with what differs by nature (PIDs, times, paths) left out."""
    seen: list[object] = []
    seen.append(driver("create", "--bundle", str(bundle), cid)[0])
    state = driver.state(cid)
    seen += [sorted(state), state["status"], state["pid"] > 0, state["id"] == cid, state["bundle"] == str(bundle)]
    seen.append(driver("start", cid)[0])
    seen.append(driver.status(cid, "running"))
    seen.append(driver("start", cid)[0] != 0)  # a running container does not start again
    seen.append(driver("delete", cid)[0] != 0)  # nor is it deleted without --force
    seen.append(driver("kill", cid, "KILL")[0])
    seen.append(driver.status(cid, "stopped"))
    seen.append(driver.state(cid)["pid"])
    seen.append(driver("kill", cid, "TERM")[0] != 0)  # nothing to signal
    seen.append(driver("delete", cid)[0])
    seen.append(driver("state", cid)[0] != 0)
    seen.append(json.loads(driver("list", "--format", "json")[1] or "null") in (None, []))
    return seen


def test_lifecycle_matches_runc(tmp_path: Path, busybox_rootfs: Path) -> None:
    results = {}
    for name in RUNTIMES:
        cid = f"vs-{name}-{secrets.token_hex(4)}"
        bundle = bundle_for(tmp_path, busybox_rootfs, name, cid, ["sleep", "60"])
        driver = Driver(name, tmp_path / f"root-{name}")
        try:
            results[name] = lifecycle(driver, bundle, cid)
        finally:
            driver("delete", "--force", cid)
    assert results["minirun"] == results["runc"]


@pytest.mark.parametrize("script", ["exit 0", "exit 7", "kill -TERM $$", "exec nosuch"])
def test_run_exit_codes_match_runc(tmp_path: Path, busybox_rootfs: Path, script: str) -> None:
    codes = {}
    for name in RUNTIMES:
        cid = f"vs-{name}-{secrets.token_hex(4)}"
        bundle = bundle_for(tmp_path, busybox_rootfs, name, cid, ["sh", "-c", script])
        driver = Driver(name, tmp_path / f"root-{name}")
        try:
            codes[name] = driver("run", "--bundle", str(bundle), cid)[0]
        finally:
            driver("delete", "--force", cid)
        shutil.rmtree(bundle)
    assert codes["minirun"] == codes["runc"]


# What a process may do and who it is, as /proc/self/status says; the exec'ed shell's own PID and name differ.
STATUS = r"grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp|Uid|Gid|Groups):' /proc/self/status"


def test_exec_matches_runc(tmp_path: Path, busybox_rootfs: Path) -> None:
    """exec before and after start, as another user, with an extra capability, its exit code, and after the
    container stopped: the same process as runc's, seen from /proc/self/status."""

    def check(driver: Driver, cid: str) -> list[object]:
        seen: list[object] = [driver("exec", cid, "sh", "-c", f"{STATUS}; exit 4")]
        seen.append(driver("start", cid)[0])
        seen.append(driver.status(cid, "running"))
        seen.append(driver("exec", cid, "sh", "-c", f"{STATUS}; exit 5"))
        seen.append(driver("exec", "--user", "1000:1000", cid, "sh", "-c", STATUS))
        seen.append(driver("exec", "--cap", "CAP_SYS_ADMIN", cid, "sh", "-c", STATUS))
        seen.append(driver("exec", "--env", "MARK=vs", "--cwd", "/tmp", cid, "sh", "-c", "echo $MARK; pwd"))
        seen.append(driver("exec", cid, "nosuch")[0] != 0)
        seen.append(driver("kill", cid, "KILL")[0])
        seen.append(driver.status(cid, "stopped"))
        seen.append(driver("exec", cid, "true")[0] != 0)
        return seen

    results = both(tmp_path, busybox_rootfs, ["sleep", "60"], check)
    assert results["minirun"] == results["runc"]
    assert "Uid:\t1000" in results["runc"][4][1]  # the comparison is about something


def test_pause_resume_and_ps_match_runc(tmp_path: Path, busybox_rootfs: Path) -> None:
    def check(driver: Driver, cid: str) -> list[object]:
        seen: list[object] = [driver("start", cid)[0], driver.status(cid, "running")]
        pid = driver.state(cid)["pid"]
        code, out = driver("ps", "--format", "json", cid)
        seen += [code, json.loads(out) == [pid]]
        code, out = driver("ps", cid)  # the host's ps -ef, narrowed to the container's processes
        rows = out.splitlines()
        seen += [code, rows[0].split(), len(rows), rows[-1].split()[1] == str(pid), rows[-1].endswith("sleep 60")]
        seen += [driver("pause", cid)[0], driver.status(cid, "paused")]
        seen.append(cgroup_file(cid, "freezer/freezer.state", "cgroup.freeze"))
        seen += [driver("exec", cid, "true")[0] != 0, driver("resume", cid)[0], driver.status(cid, "running")]
        seen.append(cgroup_file(cid, "freezer/freezer.state", "cgroup.freeze"))
        seen.append(driver("resume", cid)[0] != 0)  # not paused
        seen += [driver("kill", cid, "KILL")[0], driver.status(cid, "stopped")]
        seen += [driver("pause", cid)[0] != 0, driver("ps", cid)[0] != 0]
        return seen

    results = both(tmp_path, busybox_rootfs, ["sleep", "60"], check)
    assert results["minirun"] == results["runc"]


RESOURCES = {
    "memory": {"limit": 64 * 1024 * 1024},
    "pids": {"limit": 40},
    "cpu": {"shares": 512, "quota": 50000, "period": 100000},
}
# The files each cgroup version keeps the limits above in (v1 hierarchy/file, v2 file).
LIMIT_FILES = (
    ("memory/memory.limit_in_bytes", "memory.max"),
    ("pids/pids.max", "pids.max"),
    ("cpu/cpu.shares", "cpu.weight"),
    ("cpu/cpu.cfs_quota_us", "cpu.max"),
)


def cgroup_file(cid: str, v1: str, v2: str) -> str:
    """A file of the container's cgroup (`/CGROUP_PARENT/cid`), on the host's cgroup version."""
    top = Path("/sys/fs/cgroup")
    if (top / "cgroup.controllers").exists():  # pure v2
        path = top / CGROUP_PARENT / cid / v2
    else:
        hierarchy, name = v1.split("/")
        path = top / hierarchy / CGROUP_PARENT / cid / name
    return path.read_text().strip()


def test_cgroup_files_match_runc(tmp_path: Path, busybox_rootfs: Path) -> None:
    """The bundle's limits land in the same cgroup files with the same values, and `update` changes them
    alike (ours and runc's cgroups are different cgroups: the values are compared, not the paths)."""
    update = tmp_path / "update.json"
    update.write_text(json.dumps({"pids": {"limit": 60}, "memory": {"limit": 96 * 1024 * 1024}}))

    def check(driver: Driver, cid: str) -> list[object]:
        seen: list[object] = [[cgroup_file(cid, *files) for files in LIMIT_FILES]]
        seen += [driver("start", cid)[0], driver.status(cid, "running")]
        seen.append(driver("update", "--resources", str(update), cid)[0])
        seen.append([cgroup_file(cid, *files) for files in LIMIT_FILES])
        return seen

    results = both(tmp_path, busybox_rootfs, ["sleep", "60"], check, resources=RESOURCES)
    assert results["minirun"] == results["runc"]
    assert results["runc"][0] != results["runc"][-1]  # the update changed something
