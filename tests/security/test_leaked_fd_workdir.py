"""A working directory through a leaked descriptor (the shape of CVE-2024-21626).

`-w /proc/self/fd/N` (or an image whose WORKDIR says so) names whatever descriptor N the runtime still
holds when it changes into the working directory. A directory of the host's there puts the container's
process outside its root: `cd ../../..` then reaches the host's files. Every way of starting a process
is tried with N from 3 to 20, each time with `minirun` itself holding the host's / as descriptor N (as
from a shell's `exec N</`), on top of what the runtime opens: none may start, each fails with 126 and
one line, and the host's /etc/shadow never shows.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from kits.lifecyclekit import _subreaper, reaper, remove_leftovers, run_d  # noqa: F401  (fixtures)
from kits.runkit import MINIRUN, assert_nothing_left, container_ids, minirun, no_leaks  # noqa: F401  (no_leaks: a fixture)
from kits.storekit import add_rootfs_image
from minicache.store import Store

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("remove_leftovers")]


FDS = range(3, 21)
ESCAPE = "cd ../../../../../../../..; cat etc/shadow; ls -d /proc/1/root/etc/shadow"


def _holding(store_root: Path, fd: int, *args: str, env: dict | None = None) -> subprocess.CompletedProcess[str]:
    """`minirun ARGS...` started with the host's / open (not close-on-exec) as descriptor `fd`."""
    return subprocess.run(
        ["bash", "-c", f'exec {fd}</ && exec "$@"', "bash", MINIRUN, "--root", str(store_root), *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def _refused(result: subprocess.CompletedProcess[str], what: str, code: int | None = 126) -> None:
    assert "root:" not in result.stdout, f"{what}: the host's /etc/shadow leaked"
    if code is not None:
        assert result.returncode == code, (what, result.returncode, result.stdout, result.stderr)
    else:
        assert result.returncode != 0, (what, result.stdout, result.stderr)
    assert result.stderr.startswith("minirun: error: "), (what, result.stderr)
    assert len(result.stderr.strip().splitlines()) == 1, (what, result.stderr)
    assert "working directory" in result.stderr, (what, result.stderr)


@pytest.fixture
def workdir_images(store: Store, busybox_rootfs: Path) -> dict[int, str]:
    """One image per descriptor number whose config says WORKDIR /proc/self/fd/N."""
    refs = {}
    for fd in FDS:
        refs[fd] = f"fd-workdir{fd}:latest"
        add_rootfs_image(store, busybox_rootfs, refs[fd], {"WorkingDir": f"/proc/self/fd/{fd}"})
    return refs


def test_run_with_a_descriptor_as_working_directory(
    store_root: Path, busybox_image: str, workdir_images: dict[int, str]
) -> None:
    for fd in FDS:
        flag = _holding(store_root, fd, "run", "--rm", "-w", f"/proc/self/fd/{fd}", busybox_image, "sh", "-c", ESCAPE)
        _refused(flag, f"run -w /proc/self/fd/{fd}")
        image = _holding(store_root, fd, "run", "--rm", workdir_images[fd], "sh", "-c", ESCAPE)
        _refused(image, f"run, WORKDIR /proc/self/fd/{fd}")
    for fd in (3, 4, 5):  # the built-in init stays PID 1 in the container: the same holds under it
        builtin = _holding(
            store_root,
            fd,
            "run",
            "--rm",
            "--init",
            "-w",
            f"/proc/self/fd/{fd}",
            busybox_image,
            "sh",
            "-c",
            ESCAPE,
            env={"MINICONTAINER_INIT": "builtin"},
        )
        _refused(builtin, f"run --init (built-in) -w /proc/self/fd/{fd}")
    assert_nothing_left(store_root)


def test_detached_start_attach_and_restart(
    store_root: Path, busybox_image: str, workdir_images: dict[int, str]
) -> None:
    for fd in FDS:
        name = f"detached{fd}"
        detached = _holding(store_root, fd, "run", "-d", "--name", name, workdir_images[fd], "sh", "-c", ESCAPE)
        _refused(detached, f"run -d, WORKDIR /proc/self/fd/{fd}")
        assert minirun(store_root, "rm", "-f", name).returncode == 0
        name = f"created{fd}"
        created = minirun(
            store_root, "create", "--name", name, "-w", f"/proc/self/fd/{fd}", busybox_image, "sh", "-c", ESCAPE
        )
        assert created.returncode == 0, created.stderr
        attached = _holding(store_root, fd, "start", "-a", name)
        _refused(attached, f"start -a, -w /proc/self/fd/{fd}")
        restarted = _holding(store_root, fd, "restart", name)
        _refused(restarted, f"restart, -w /proc/self/fd/{fd}", code=None)
        logs = minirun(store_root, "logs", name)
        assert "root:" not in logs.stdout + logs.stderr
        assert minirun(store_root, "rm", "-f", name).returncode == 0
    assert_nothing_left(store_root)


def test_exec_with_a_descriptor_as_working_directory(store_root: Path, busybox_image: str) -> None:
    run_d(store_root, "--name", "target", busybox_image, "sleep", "300")
    for fd in FDS:
        result = _holding(store_root, fd, "exec", "-w", f"/proc/self/fd/{fd}", "target", "sh", "-c", ESCAPE)
        _refused(result, f"exec -w /proc/self/fd/{fd}")
    assert minirun(store_root, "exec", "-w", "/tmp", "target", "pwd").stdout == "/tmp\n"
    assert minirun(store_root, "rm", "-f", "target").returncode == 0
    assert_nothing_left(store_root)


_START_WITH_A_HOST_DIRECTORY = """
import os, sys
from minicache.errors import MiniError
from minirun.runtime import start

fd = os.open(sys.argv[2], os.O_RDONLY | os.O_DIRECTORY)
if fd != 3:
    os.dup2(fd, 3)
try:
    code = start(sys.argv[1], "leaked-fd-test", preserve_fds=1, cgroup=None).wait()
    print(f"started, exit {code}")
except MiniError as err:
    print(f"refused {err.exit_code}: {err}")
"""


def test_a_working_directory_outside_the_root_is_refused(tmp_path: Path, busybox_rootfs: Path) -> None:
    """Descriptors the caller preserves stay open: the check after chdir is what keeps the process inside."""
    import json
    import shutil

    from minirun.engine import spec

    host = tmp_path / "host-directory"
    host.mkdir()
    (host / "secret").write_text("host secret\n")
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    shutil.copytree(busybox_rootfs, bundle / "rootfs", symlinks=True)
    oci = spec.build(
        {"Env": ["PATH=/bin"]},
        spec.RunOptions(command=["sh", "-c", "cat secret; cat ../host-directory/secret"], workdir="/proc/self/fd/3"),
        spec.SpecContext(container_id="f" * 64),
    )
    (bundle / "config.json").write_text(json.dumps(oci))
    result = subprocess.run(
        [sys.executable, "-c", _START_WITH_A_HOST_DIRECTORY, str(bundle), str(host)],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert "host secret" not in result.stdout
    assert "refused 126: working directory /proc/self/fd/3 is outside the container's root" in result.stdout, (
        result.stdout + result.stderr
    )
