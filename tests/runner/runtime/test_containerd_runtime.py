"""containerd drives the runtime binary through its runc shim (containerd-shim-runc-v2), as Kubernetes nodes do.

`ctr run --runc-binary PATH` against a private containerd (own root, state, socket, namespace; no CRI).
The shim calls the binary as `--root R --log F --log-format json create --bundle B --pid-file P`, then
start, state, kill, delete and exec. Each case runs with Debian's runc (the reference) and `minirun-runtime`.
"""

from __future__ import annotations

import secrets
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kits import archivekit, imagekit, peerkit

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(
        not all(shutil.which(tool) for tool in ("containerd", "ctr", "containerd-shim-runc-v2")),
        reason="needs Debian's containerd package (containerd, ctr, containerd-shim-runc-v2)",
    ),
]

IMAGE = "docker.io/library/mc-busybox:latest"


@pytest.fixture(scope="module")
def containerd(tmp_path_factory: pytest.TempPathFactory, busybox_rootfs: Path) -> Iterator[peerkit.Containerd]:
    work = tmp_path_factory.mktemp("containerd")
    img = imagekit.image([imagekit.tar_of_dir(busybox_rootfs)], oci=True)
    (work / "busybox.tar").write_bytes(archivekit.docker_save_oci(img, ["mc-busybox:latest"]))
    daemon = peerkit.Containerd(work)
    try:
        daemon.ctr("images", "import", str(work / "busybox.tar"))
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture(params=peerkit.RUNTIMES)
def runtime(request: pytest.FixtureRequest) -> str:
    return peerkit.select(request)


def test_run_to_completion_with_exit_code(containerd: peerkit.Containerd, runtime: str) -> None:
    cid = f"mc-{secrets.token_hex(4)}"
    script = "echo hello from busybox; exit 3"
    result = containerd.ctr(
        "run", "--rm", *containerd.run_args(runtime, cid), IMAGE, cid, "sh", "-c", script, check=False
    )
    assert result.returncode == 3, result.stderr
    assert result.stdout == "hello from busybox\n"
    assert cid not in containerd.ctr("container", "ls", "--quiet").stdout.split()
    assert not peerkit.cgroup_dirs(f"{containerd.namespace}/{cid}")


def task_status(containerd: peerkit.Containerd, cid: str) -> str:
    for line in containerd.ctr("task", "ls").stdout.splitlines()[1:]:
        fields = line.split()
        if fields[0] == cid:
            return fields[2]
    return "absent"


def wait_for_status(containerd: peerkit.Containerd, cid: str, status: str) -> None:
    deadline = time.monotonic() + 10
    while task_status(containerd, cid) != status:
        assert time.monotonic() < deadline, f"task {cid} is {task_status(containerd, cid)}, not {status}"
        time.sleep(0.05)


def test_detached_task_kill_delete(containerd: peerkit.Containerd, runtime: str) -> None:
    cid = f"mc-{secrets.token_hex(4)}"
    script = "trap 'exit 9' TERM; while :; do sleep 0.1; done"
    containerd.ctr("run", "-d", *containerd.run_args(runtime, cid), IMAGE, cid, "sh", "-c", script)
    try:
        assert task_status(containerd, cid) == "RUNNING"
        containerd.ctr("task", "kill", "--signal", "SIGTERM", cid)
        wait_for_status(containerd, cid, "STOPPED")
        deleted = containerd.ctr("task", "delete", cid)
        assert "exit code 9" in deleted.stderr, deleted.stderr  # the shim reports the exit status on delete
        assert task_status(containerd, cid) == "absent"
    finally:
        containerd.ctr("task", "delete", "--force", cid, check=False)
        containerd.ctr("container", "delete", cid, check=False)
    assert not peerkit.cgroup_dirs(f"{containerd.namespace}/{cid}")
    assert not list((containerd.work / "runtime-state").glob(f"*/{cid}"))


def test_task_exec(containerd: peerkit.Containerd, runtime: str) -> None:
    cid = f"mc-{secrets.token_hex(4)}"
    containerd.ctr("run", "-d", *containerd.run_args(runtime, cid), IMAGE, cid, "sleep", "60")
    try:
        probe = "cat /proc/1/cmdline; exit 5"
        exec_ = containerd.ctr("task", "exec", "--exec-id", "probe", cid, "sh", "-c", probe, check=False)
        assert exec_.returncode == 5, exec_.stderr
        assert exec_.stdout.split("\0")[:2] == ["sleep", "60"]
        assert task_status(containerd, cid) == "RUNNING"
        containerd.ctr("task", "kill", "--signal", "SIGKILL", cid)
        wait_for_status(containerd, cid, "STOPPED")
        containerd.ctr("task", "delete", cid)
    finally:
        containerd.ctr("task", "delete", "--force", cid, check=False)
        containerd.ctr("container", "delete", cid, check=False)
    assert not peerkit.cgroup_dirs(f"{containerd.namespace}/{cid}")


def test_shim_drives_create_start_delete_with_runc_flags(
    containerd: peerkit.Containerd, runtime: str, tmp_path: Path
) -> None:
    """The shim's calls for a run to completion, as it makes them for runc, each answered with success."""
    calls = tmp_path / "calls"
    wrapper = tmp_path / "runtime"
    wrapper.write_text(f'#!/bin/sh\n{runtime} "$@"\nrc=$?\necho "$rc $*" >> {calls}\nexit $rc\n')
    wrapper.chmod(0o755)
    cid = f"mc-{secrets.token_hex(4)}"
    result = containerd.ctr("run", "--rm", *containerd.run_args(str(wrapper), cid), IMAGE, cid, "true", check=False)
    assert result.returncode == 0, result.stderr
    seen = []
    for line in calls.read_text().splitlines():
        rc, *words = line.split()
        assert words[0::2][:3] == ["--root", "--log", "--log-format"] and words[5] == "json", line
        seen.append((words[6], rc))
        if words[6] == "create":
            assert {"--bundle", "--pid-file"} <= set(words[7:]), line
    assert seen[:3] == [("create", "0"), ("start", "0"), ("delete", "0")], seen
