"""`exec` must not show the container a process of the host's (the shape of CVE-2019-5736).

The process that joins a running container starts as a fork of `minirun` on the host: the host's
interpreter as /proc/PID/exe, the environment of whoever ran `minirun exec` in /proc/PID/environ, a
/proc/PID/mem open to writing. A scanner inside the container watches /proc while 100 `exec`s run: it
must never see any of that, only the container's own binaries once they run. The built-in init
(`--init` without tini) is such a process for the container's whole life: the same holds for it.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from kits.lifecyclekit import _subreaper, reaper, remove_leftovers, run_d  # noqa: F401  (fixtures)
from kits.runkit import assert_nothing_left, container_ids, minirun, no_leaks  # noqa: F401  (no_leaks: a fixture)
from kits.scankit import PTRACE_SCANNER, SCANNER

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("remove_leftovers")]


MARKER = "HOST-ONLY-8c1f27e4"  # in the environment of `minirun exec`, never in the container's
EXECS = 100


def _wait_for(store_root: Path, name: str, path: str) -> str:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        result = minirun(store_root, "exec", name, "cat", path)
        if result.returncode == 0:
            return result.stdout
        time.sleep(0.05)
    raise AssertionError(f"{path} never appeared in {name}")


@pytest.mark.parametrize(
    ("options", "scanner", "execs"),
    [((), SCANNER, EXECS), (("--cap-add", "SYS_PTRACE"), PTRACE_SCANNER, 30)],
    ids=["default", "sys-ptrace"],
)
def test_scanner_never_sees_a_host_process_during_exec(
    store_root: Path, busybox_image: str, options: tuple[str, ...], scanner: str, execs: int
) -> None:
    run_d(store_root, "--name", "scanned", *options, busybox_image, "sh", "-c", scanner)
    _wait_for(store_root, "scanned", "/tmp/started")
    assert _wait_for(store_root, "scanned", "/tmp/control") == "ok\n", "the scanner cannot write a mem it may"
    env = {"MINIRUN_HOST_SECRET": MARKER}
    for i in range(execs):
        result = minirun(store_root, "exec", "-e", f"N={i}", "scanned", "sh", "-c", "echo $N", env=env)
        assert (result.returncode, result.stdout) == (0, f"{i}\n"), result.stderr
    findings = minirun(store_root, "exec", "scanned", "cat", "/tmp/findings")
    assert findings.returncode == 0, findings.stderr
    assert findings.stdout == "", findings.stdout
    assert minirun(store_root, "rm", "-f", "scanned").returncode == 0
    assert_nothing_left(store_root)


def test_exec_carries_only_the_containers_environment_and_descriptors(store_root: Path, busybox_image: str) -> None:
    run_d(store_root, "--name", "plain", "-e", "FROM_RUN=1", busybox_image, "sleep", "300")
    env = {"MINIRUN_HOST_SECRET": MARKER}
    environ = minirun(store_root, "exec", "plain", "cat", "/proc/self/environ", env=env)
    assert environ.returncode == 0, environ.stderr
    assert MARKER not in environ.stdout and "FROM_RUN=1" in environ.stdout
    fds = minirun(store_root, "exec", "plain", "ls", "/proc/self/fd", env=env)
    assert fds.stdout.split() == ["0", "1", "2", "3"], fds.stdout  # 3: ls's own listing of the directory
    status = minirun(store_root, "exec", "plain", "sh", "-c", "grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status")
    assert status.stdout.split() == ["NoNewPrivs:", "1", "Seccomp:", "2"], status.stdout
    # the process that joined stays outside the container's PID namespace: only the command is in there
    assert minirun(store_root, "exec", "-d", "plain", "sleep", "61").returncode == 0
    listing = minirun(store_root, "exec", "plain", "ps", "-o", "pid,args")
    assert "sleep 61" in listing.stdout and "minirun" not in listing.stdout and "python" not in listing.stdout
    assert minirun(store_root, "rm", "-f", "plain").returncode == 0
    assert_nothing_left(store_root)


def test_the_sealed_interpreter_copy_cannot_be_changed() -> None:
    """What a container with CAP_SYS_PTRACE reaches as /proc/PID/exe of a joining process: no write lands."""
    import os

    from minirun.runtime import sealed

    fd = sealed._sealed_copy("/proc/self/exe", "sealed-test")
    try:
        with open("/proc/self/exe", "rb") as f:
            assert os.pread(fd, 64, 0) == f.read(64)
        with pytest.raises(PermissionError):
            os.pwrite(fd, b"x", 0)
        with pytest.raises(PermissionError):
            os.ftruncate(fd, 0)
        reopened = os.open(f"/proc/self/fd/{fd}", os.O_WRONLY)
        try:
            with pytest.raises(PermissionError):
                os.write(reopened, b"x")
        finally:
            os.close(reopened)
    finally:
        os.close(fd)


PROBE_INIT = (
    "readlink /proc/1/exe; grep -c HOST-ONLY- /proc/1/environ; ls /proc/1/fd;"
    " if (exec 3<>/proc/1/mem); then echo mem-writable; fi; exit 0"
)


def test_the_builtin_init_shows_nothing_of_the_host(store_root: Path, busybox_image: str) -> None:
    env = {"MINICONTAINER_INIT": "builtin", "MINIRUN_HOST_SECRET": MARKER}
    result = minirun(store_root, "run", "--rm", "--init", busybox_image, "sh", "-c", PROBE_INIT, env=env)
    assert result.returncode == 0, result.stderr
    assert "python" not in result.stdout and "HOST-ONLY" not in result.stdout, result.stdout
    assert "mem-writable" not in result.stdout and "Permission denied" in result.stderr, result.stdout
    refused = minirun(store_root, "run", "--rm", "--init", "--cap-add", "SYS_PTRACE", busybox_image, "true", env=env)
    assert refused.returncode == 125, refused.stderr
    assert "built-in init cannot run in a container with CAP_SYS_PTRACE" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert_nothing_left(store_root)
