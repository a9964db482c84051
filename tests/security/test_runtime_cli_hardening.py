"""`minirun`'s hardening holds on every path of `minirun-runtime`, as an engine (conmon, containerd's shim)
drives it: descriptors the runtime inherited never reach the container unless passed with --preserve-fds,
a working directory through a leaked descriptor is refused (CVE-2024-21626's shape), `exec` shows the
container no process of the host's (CVE-2019-5736's shape), and a mount onto a symlink stays in the root.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from pathlib import Path

import pytest
from kits.runkit import mounts_under, no_leaks  # noqa: F401 - autouse fixture: nothing may outlive a test
from kits.runtimekit import RUNTIME, edit, make_bundle, runtime, state_root  # noqa: F401 (the root fixture)
from kits.scankit import SCANNER

pytestmark = pytest.mark.root

FDS = range(3, 21)
ESCAPE = "cd ../../../../../../../..; cat etc/shadow; ls -d /proc/1/root/etc/shadow"
MARKER = "HOST-ONLY-5e0b9d21"  # in the runtime's environment, never in the container's


def holding(fd: int, root: Path, *args: str, target: str = "/") -> subprocess.CompletedProcess[str]:
    """`minirun-runtime --root ROOT ARGS...` started holding `target` (the host's /) open as descriptor `fd`,
    not close-on-exec, as a careless engine would pass it."""
    return subprocess.run(
        ["bash", "-c", f'exec {fd}<"$0" && exec "$@"', target, RUNTIME, "--root", str(root), *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "MINIRUN_HOST_SECRET": MARKER},
    )


def refused(result: subprocess.CompletedProcess[str], what: str) -> None:
    assert "root:" not in result.stdout, f"{what}: the host's /etc/shadow leaked"
    assert result.returncode != 0, (what, result.stdout, result.stderr)
    assert result.stderr.startswith("minirun-runtime: error: "), (what, result.stderr)
    assert len(result.stderr.strip().splitlines()) == 1, (what, result.stderr)
    assert "working directory" in result.stderr, (what, result.stderr)


def test_a_leaked_descriptor_is_no_working_directory(tmp_path: Path, busybox_rootfs: Path, root: Path) -> None:
    bundle = make_bundle(tmp_path, busybox_rootfs, ["sh", "-c", ESCAPE])
    for fd in FDS:
        edit(bundle, lambda oci, fd=fd: oci["process"].update(cwd=f"/proc/self/fd/{fd}"))
        refused(holding(fd, root, "run", "--bundle", str(bundle), f"cwd-run-{fd}"), f"run, cwd fd {fd}")
        refused(holding(fd, root, "create", "--bundle", str(bundle), f"cwd-create-{fd}"), f"create, cwd fd {fd}")
        assert not (root / f"cwd-create-{fd}").exists(), "a refused create left its state behind"
    edit(bundle, lambda oci: oci["process"].update(cwd="/", args=["sleep", "60"]))
    cid = f"cwd-exec-{secrets.token_hex(4)}"
    runtime(root, "run", "-d", "--bundle", str(bundle), cid, check=True)
    for fd in FDS:
        result = holding(fd, root, "exec", "--cwd", f"/proc/self/fd/{fd}", cid, "sh", "-c", ESCAPE)
        refused(result, f"exec --cwd fd {fd}")
    assert runtime(root, "exec", "--cwd", "/tmp", cid, "pwd").stdout == "/tmp\n"
    runtime(root, "delete", "--force", cid, check=True)


def test_inherited_descriptors_stay_outside(tmp_path: Path, busybox_rootfs: Path, root: Path) -> None:
    """Only 0-2 (and what --preserve-fds passes) are open in the container's process and in an exec'ed one,
    and neither carries the runtime's environment."""
    secret = tmp_path / "host-secret"
    secret.write_text("host secret\n")
    bundle = make_bundle(tmp_path, busybox_rootfs, ["sh", "-c", "ls /proc/self/fd; cat /proc/self/environ"])
    result = holding(3, root, "run", "--bundle", str(bundle), "fds-run", target=str(secret))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:4] == ["0", "1", "2", "3"], result.stdout  # 3: ls's own directory
    assert MARKER not in result.stdout
    preserved = holding(3, root, "run", "--preserve-fds", "1", "--bundle", str(bundle), "fds-kept", target=str(secret))
    assert preserved.stdout.split("\n")[:5] == ["0", "1", "2", "3", "4"], preserved.stdout

    edit(bundle, lambda oci: oci["process"].update(args=["sleep", "60"]))
    cid = f"fds-exec-{secrets.token_hex(4)}"
    runtime(root, "run", "-d", "--bundle", str(bundle), cid, check=True)
    listing = holding(3, root, "exec", cid, "ls", "/proc/self/fd", target=str(secret))
    assert listing.stdout.split() == ["0", "1", "2", "3"], listing.stdout
    environ = holding(3, root, "exec", cid, "cat", "/proc/self/environ", target=str(secret))
    assert environ.returncode == 0 and MARKER not in environ.stdout, environ.stderr
    runtime(root, "delete", "--force", cid, check=True)


def test_exec_shows_no_host_process(tmp_path: Path, busybox_rootfs: Path, root: Path) -> None:
    """A scanner in the container watches /proc while `minirun-runtime exec` joins it again and again."""
    bundle = make_bundle(tmp_path, busybox_rootfs, ["sh", "-c", SCANNER])
    cid = f"scanned-{secrets.token_hex(4)}"
    runtime(root, "run", "-d", "--bundle", str(bundle), cid, check=True)
    try:
        deadline = time.monotonic() + 10
        while runtime(root, "exec", cid, "cat", "/tmp/control").stdout != "ok\n":
            assert time.monotonic() < deadline, "the scanner never started"
            time.sleep(0.05)
        for i in range(30):
            result = holding(3, root, "exec", "--env", f"N={i}", cid, "sh", "-c", "echo $N", target=str(tmp_path))
            assert (result.returncode, result.stdout) == (0, f"{i}\n"), result.stderr
        assert runtime(root, "exec", cid, "cat", "/tmp/findings", check=True).stdout == ""
        listing = runtime(root, "exec", cid, "ps", "-o", "pid,args", check=True).stdout
        assert "minirun" not in listing and "python" not in listing, listing
    finally:
        runtime(root, "delete", "--force", cid, check=True)


def test_a_mount_onto_a_symlink_stays_in_the_root(tmp_path: Path, busybox_rootfs: Path, root: Path) -> None:
    """A bundle whose rootfs has a symlink to a host directory where a mount goes: the mount lands inside the
    root (the link is resolved in it), the host directory gets nothing."""
    host = tmp_path / "host-dir"
    host.mkdir()
    bundle = make_bundle(tmp_path, busybox_rootfs, ["sh", "-c", "echo inside > /evil/file; ls /evil"])
    (bundle / "rootfs" / "evil").symlink_to(host)
    edit(
        bundle,
        lambda oci: oci["mounts"].append({"destination": "/evil", "type": "tmpfs", "source": "tmpfs", "options": []}),
    )
    result = runtime(root, "run", "--bundle", str(bundle), "symlinked")
    assert list(host.iterdir()) == [], result.stdout
    assert not mounts_under(host)
    assert result.returncode == 0 and result.stdout == "file\n", result.stderr
    assert json.loads(runtime(root, "list", "--format", "json").stdout or "null") in (None, [])
