"""The runtime on its own: hand-made OCI bundles, no store, no images."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest
from kits import runtimekit
from kits.runkit import (
    no_leaks,  # noqa: F401 - autouse fixture: nothing may outlive a test
    processes_rooted_under,
)
from minicache.errors import InvalidSpec
from minirun.engine import seccomp_profile, spec
from minirun.runtime import caps

pytestmark = pytest.mark.root


def make_bundle(tmp_path: Path, rootfs: Path, command: list[str], **options) -> tuple[Path, dict]:
    bundle = tmp_path / "bundle"
    bundle.mkdir(exist_ok=True)
    if not (bundle / "rootfs").exists():
        shutil.copytree(rootfs, bundle / "rootfs", symlinks=True)
    oci = spec.build(
        {"Env": ["PATH=/bin"]}, spec.RunOptions(command=command, **options), spec.SpecContext(container_id="f" * 64)
    )
    return bundle, oci


def write(bundle: Path, oci: dict) -> None:
    (bundle / "config.json").write_text(json.dumps(oci))


def run_bundle(bundle: Path, cid: str = "bundle-test") -> subprocess.CompletedProcess[str]:
    return runtimekit.run_bundle(bundle, cid)


def test_seccomp_alone_blocks_unshare_and_mount(tmp_path: Path, busybox_rootfs: Path) -> None:
    """CAP_SYS_ADMIN present, so only the default filter (resolved for the default caps) can refuse."""
    script = "unshare -m true; echo unshare=$?; mkdir -p /mnt; mount -t tmpfs t /mnt; echo mount=$?"
    bundle, oci = make_bundle(tmp_path, busybox_rootfs, ["sh", "-c", script], cap_add=["SYS_ADMIN"])
    oci["linux"]["seccomp"] = seccomp_profile.to_oci(seccomp_profile.DEFAULT_PROFILE, list(caps.DOCKER_DEFAULT))
    write(bundle, oci)
    blocked = run_bundle(bundle)
    assert "unshare=1" in blocked.stdout and "mount=1" in blocked.stdout
    assert "Operation not permitted" in blocked.stderr or "Operation not permitted" in blocked.stdout
    del oci["linux"]["seccomp"]
    write(bundle, oci)
    allowed = run_bundle(bundle)
    assert "unshare=0" in allowed.stdout and "mount=0" in allowed.stdout, allowed.stdout + allowed.stderr


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda s: s.pop("process"), "no process"),
        (lambda s: s["process"].update(args=[]), "process.args"),
        (lambda s: s["process"].update(cwd="rel"), "absolute"),
        (lambda s: s.update(ociVersion="0.9"), "ociVersion"),
        (lambda s: s["linux"].update(namespaces=[{"type": "pid"}]), "mount namespace"),
        (lambda s: s["linux"]["namespaces"].append({"type": "user"}), "user namespaces"),
        (lambda s: s["linux"]["namespaces"].append({"type": "pid"}), "listed twice"),
        (
            lambda s: s["linux"].update(namespaces=[{"type": "mount"}, {"type": "network", "path": "/nonexistent/ns"}]),
            "does not exist",
        ),
        (lambda s: s["process"]["capabilities"]["bounding"].append("CAP_MAGIC"), "unknown capabilities"),
        (
            lambda s: s["mounts"].append(
                {"destination": "/x", "type": "bind", "source": "/nonexistent", "options": []}
            ),
            "bind mount source",
        ),
        (lambda s: s["mounts"].append({"destination": "x", "type": "tmpfs"}), "absolute path"),
        (lambda s: s["process"].update(rlimits=[{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}]), "rlimit"),
        (lambda s: s["root"].update(path="missing"), "not a directory"),
    ],
)
def test_invalid_specs_fail_before_any_process(tmp_path: Path, busybox_rootfs: Path, mutate, message: str) -> None:
    from minirun.runtime import start

    bundle, oci = make_bundle(tmp_path, busybox_rootfs, ["true"])
    mutate(oci)
    write(bundle, oci)
    with pytest.raises(InvalidSpec, match=message):
        start(bundle, "invalid")
    assert processes_rooted_under(bundle) == []


def test_runtime_cli_reports_errors(tmp_path: Path) -> None:
    result = run_bundle(tmp_path)
    assert result.returncode == 125 and "config.json does not exist" in result.stderr


class V1PidsCgroup:
    """A real cgroup in the v1 pids hierarchy, standing in for minirun.cgroups until it lands."""

    def __init__(self) -> None:
        self.path = Path("/sys/fs/cgroup/pids") / f"minitest-{secrets.token_hex(4)}"
        self.events: list[str] = []

    def create(self, resources: dict) -> None:
        self.events.append(f"create pid={os.getpid()}")
        self.path.mkdir()

    def join(self) -> None:
        (self.path / "cgroup.procs").write_text("0")
        self.events.append("join")  # in the child: this list is the child's copy

    def destroy(self) -> None:
        self.events.append("destroy")
        self.path.rmdir()


@pytest.mark.skipif(not Path("/sys/fs/cgroup/pids/cgroup.procs").exists(), reason="no cgroup v1 pids hierarchy")
def test_cgroup_hook_call_site(tmp_path: Path, busybox_rootfs: Path) -> None:
    from minirun.runtime import start

    bundle, oci = make_bundle(tmp_path, busybox_rootfs, ["sh", "-c", "cat /proc/self/cgroup > /tmp/cg; sleep 0.3"])
    write(bundle, oci)
    hook = V1PidsCgroup()
    try:
        proc = start(bundle, "cg", cgroup=hook)
        members = (hook.path / "cgroup.procs").read_text().split()
        assert str(proc.pid) in members  # the container's init joined before it exec'ed
        assert proc.wait() == 0
    finally:
        if hook.path.exists():
            hook.path.rmdir()
    assert hook.events == [f"create pid={os.getpid()}", "destroy"]
    assert not hook.path.exists()
    inside = (bundle / "rootfs/tmp/cg").read_text()
    assert any(line.endswith(":pids:/") for line in inside.splitlines())  # cgroupns is rooted at our cgroup


class BornInsideCgroup:
    """A cgroup whose directory the child is created in (clone3 CLONE_INTO_CGROUP): joining it afterwards,
    the fallback, either must not happen (`may_join=False`) or goes through cgroup.procs."""

    def __init__(self, hierarchy: Path, may_join: bool) -> None:
        self.path = Path(hierarchy) / f"minitest-{secrets.token_hex(4)}"
        self.may_join = may_join

    def create(self, resources: dict) -> None:
        self.path.mkdir()

    def clone_into(self) -> str:
        return str(self.path)

    def join(self) -> None:
        if not self.may_join:
            raise RuntimeError("joined a cgroup the process should have been created in")
        (self.path / "cgroup.procs").write_text("0")

    def destroy(self) -> None:
        self.path.rmdir()


def _start_in(tmp_path: Path, rootfs: Path, hook: BornInsideCgroup) -> str:
    """Start a bundle with `hook` as its cgroup; the container's own /proc/self/cgroup (checked to be PID 1)."""
    from minirun.runtime import start

    script = "cat /proc/self/cgroup > /tmp/cg; echo $$ > /tmp/pid; sleep 0.3"
    bundle, oci = make_bundle(tmp_path, rootfs, ["sh", "-c", script])
    write(bundle, oci)
    try:
        proc = start(bundle, "cg", cgroup=hook)
        assert str(proc.pid) in (hook.path / "cgroup.procs").read_text().split()
        assert proc.wait() == 0
    finally:
        if hook.path.exists():
            hook.path.rmdir()
    assert (bundle / "rootfs/tmp/pid").read_text().strip() == "1"  # in its own PID namespace either way
    return (bundle / "rootfs/tmp/cg").read_text()


def test_a_cgroup_v2_child_is_created_inside_its_cgroup(tmp_path: Path, busybox_rootfs: Path) -> None:
    from minirun import cgroups

    unified = cgroups.detect().unified
    if unified is None:
        pytest.skip("no cgroup2 hierarchy on this host")
    inside = _start_in(tmp_path, busybox_rootfs, BornInsideCgroup(unified, may_join=False))
    assert "0::/" in inside.splitlines()  # its cgroup namespace is rooted at the cgroup it was created in


@pytest.mark.skipif(not Path("/sys/fs/cgroup/pids/cgroup.procs").exists(), reason="no cgroup v1 pids hierarchy")
def test_a_directory_clone3_refuses_falls_back_to_joining(tmp_path: Path, busybox_rootfs: Path) -> None:
    """A v1 directory cannot be created in: the child is forked and joins, as without clone3."""
    inside = _start_in(tmp_path, busybox_rootfs, BornInsideCgroup(Path("/sys/fs/cgroup/pids"), may_join=True))
    assert any(line.endswith(":pids:/") for line in inside.splitlines())


def test_join_a_prepared_network_namespace(tmp_path: Path, busybox_rootfs: Path) -> None:
    """How bridge networking will plug in: a netns file given by path."""
    if not shutil.which("ip"):
        pytest.skip("iproute2 is not installed")
    name = f"minitest-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        inode = os.stat(f"/run/netns/{name}").st_ino
        bundle, oci = make_bundle(tmp_path, busybox_rootfs, ["readlink", "/proc/self/ns/net"])
        oci["linux"]["namespaces"] = [n for n in oci["linux"]["namespaces"] if n["type"] != "network"]
        oci["linux"]["namespaces"].append({"type": "network", "path": f"/run/netns/{name}"})
        write(bundle, oci)
        result = run_bundle(bundle)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == f"net:[{inode}]"
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)


def test_host_network_shares_the_hosts_interfaces(tmp_path: Path, busybox_rootfs: Path) -> None:
    bundle, oci = make_bundle(tmp_path, busybox_rootfs, ["readlink", "/proc/self/ns/net"], network="host")
    write(bundle, oci)
    assert run_bundle(bundle).stdout.strip() == os.readlink("/proc/self/ns/net")


def test_on_ready_runs_before_the_process(tmp_path: Path, busybox_rootfs: Path) -> None:
    from minirun.runtime import start

    bundle, oci = make_bundle(tmp_path, busybox_rootfs, ["cat", "/tmp/from-parent"])
    write(bundle, oci)
    seen: list[int] = []

    def ready(pid: int) -> None:
        seen.append(pid)
        (bundle / "rootfs/tmp/from-parent").write_text("set up by the parent\n")

    out = tmp_path / "out"
    with open(out, "w") as f:
        saved = os.dup(1)
        os.dup2(f.fileno(), 1)
        try:
            proc = start(bundle, "ready", on_ready=ready)
        finally:
            os.dup2(saved, 1)
            os.close(saved)
    assert proc.wait() == 0 and seen == [proc.pid]
    assert out.read_text() == "set up by the parent\n"


def test_rlimits_and_sysctl(tmp_path: Path, busybox_rootfs: Path) -> None:
    bundle, oci = make_bundle(
        tmp_path, busybox_rootfs, ["sh", "-c", "ulimit -n; ulimit -Hn; cat /proc/sys/kernel/shmmni"]
    )
    oci["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 100, "hard": 200}]
    oci["linux"]["sysctl"] = {"kernel.shmmni": "1234"}  # namespaced by IPC
    write(bundle, oci)
    result = run_bundle(bundle)
    assert result.stdout.split() == ["100", "200", "1234"], result.stderr


def test_proc_on_a_symlink_is_refused(tmp_path: Path, busybox_rootfs: Path) -> None:
    bundle, oci = make_bundle(tmp_path, busybox_rootfs, ["true"])
    (bundle / "rootfs/proc").rmdir()
    (bundle / "rootfs/proc").symlink_to("/tmp")
    write(bundle, oci)
    result = run_bundle(bundle)
    assert result.returncode == 125 and "/proc is a symbolic link in the image" in result.stderr
    assert os.listdir(bundle / "rootfs/tmp") == []


def test_refuses_to_fork_with_threads(tmp_path: Path, busybox_rootfs: Path) -> None:
    import threading

    from minirun.runtime import StartError, start

    bundle, oci = make_bundle(tmp_path, busybox_rootfs, ["true"])
    write(bundle, oci)
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        with pytest.raises(StartError, match="threads"):
            start(bundle, "threads")
    finally:
        stop.set()
        thread.join()
