"""Helpers for tests that run real containers: the minirun CLI as a subprocess, leak checks, process lookup."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from kits.runtimekit import run_bundle

T = TypeVar("T")
MINIRUN = str(Path(sys.executable).with_name("minirun"))
MINIBUILD = str(Path(sys.executable).with_name("minibuild"))
# Prefix that runs a command as the unprivileged local user nobody (uid and gid 65534, no other groups).
NOBODY = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"]
needs_setpriv = pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv (util-linux)")


def minirun(
    store_root: Path | str, *args: str, input: bytes | None = None, timeout: float = 60, env: dict | None = None
) -> subprocess.CompletedProcess[str]:
    """`minirun --root STORE ARGS...` with stdin from `input` (or /dev/null); text output captured."""
    return subprocess.run(
        [MINIRUN, "--root", str(store_root), *args],
        input=input.decode() if input is not None else None,
        stdin=None if input is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def spawn(store_root: Path | str, *args: str, env: dict | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [MINIRUN, "--root", str(store_root), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def mounts_under(path: Path | str) -> list[str]:
    prefix = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(prefix)]


def processes_rooted_under(path: Path) -> list[int]:
    """PIDs whose root directory lies inside `path` (processes still running in one of its containers)."""
    prefix = os.path.realpath(path)
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.readlink(f"/proc/{name}/root").startswith(prefix):
                    out.append(int(name))
            except OSError:
                continue
    return out


def processes_mentioning(path: Path) -> list[int]:
    """Live PIDs whose command line names `path` (a `minirun --root PATH` CLI, or a monitor forked from one)."""
    needle = os.fsencode(os.path.realpath(path))
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != os.getpid():
            try:
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    if needle in f.read():
                        out.append(int(name))
            except OSError:
                continue
    return out


def assert_nothing_left(store_root: Path | str, *, containers: bool = True) -> None:
    """No mount, no process under the store; with `containers`, no container directory or name either."""
    deadline = time.monotonic() + 5
    while processes_rooted_under(store_root) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_rooted_under(store_root) == []
    assert mounts_under(store_root) == []
    if containers:
        cdir = store_root / "containers"
        assert [n for n in os.listdir(cdir) if n != "names"] == []
        assert not (cdir / "names").exists() or os.listdir(cdir / "names") == []
        runtime = store_root / "run" / "runtime"  # the runtime's state folders of the store's containers
        assert not runtime.is_dir() or os.listdir(runtime) == []
    assert os.listdir(store_root / "tmp") == []


def container_ids(store_root: Path | str) -> list[str]:
    return [n for n in os.listdir(os.path.join(store_root, "containers")) if len(n) == 64]


def wait_for_running(store_root: Path | str, timeout: float = 10) -> dict:
    """The state of the store's single container once it runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for cid in container_ids(store_root):
            try:
                state = json.loads((store_root / "containers" / cid / "state.json").read_text())
            except (FileNotFoundError, ValueError):
                continue
            if state.get("Status") == "running":
                return state
        time.sleep(0.02)
    raise AssertionError("no container reached the running state")


def status_fields(text: str) -> dict[str, str]:
    """`/proc/self/status` as a dict."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out


@pytest.fixture(autouse=True)
def no_leaks(tmp_path: Path):
    """Imported by the modules that run containers: after each test, nothing of it may still run, be mounted,
    or have a cgroup (under the session's cgroup parent), and no monitor of its containers may be alive.

    Only what this test left counts: a cgroup an earlier test leaked failed that test, not every later one."""
    from kits.sessionkit import session_cgroups

    before = set(session_cgroups())
    yield
    deadline = time.monotonic() + 5
    while (processes_rooted_under(tmp_path) or processes_mentioning(tmp_path)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_rooted_under(tmp_path) == [], "a container process outlived its test"
    assert processes_mentioning(tmp_path) == [], "a minirun process (a monitor?) outlived its test"
    assert mounts_under(tmp_path) == [], "a mount outlived its test"
    assert sorted(set(session_cgroups()) - before) == [], "a container cgroup outlived its test"


def runc_bundle(directory: Path, rootfs: Path, config: dict) -> Path:
    """An OCI bundle under `directory`: a copy of `rootfs` and `config` as config.json."""
    bundle = directory / "bundle"
    bundle.mkdir()
    shutil.copytree(rootfs, bundle / "rootfs", symlinks=True)
    (bundle / "rootfs").chmod(0o755)  # a pytest temp dir is 0700; an image's root is not
    (bundle / "config.json").write_text(json.dumps(config))
    return bundle


def run_in_runc_and_ours(
    bundle: Path, name: str, timeout: float = 60
) -> tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]]:
    """The bundle run to its end by Debian's runc (its state beside the bundle, deleted after), then by our
    runtime, as container `name`: (runc's result, ours)."""
    state = bundle.parent / "runc-state"
    theirs = subprocess.run(
        ["runc", "--root", str(state), "run", "-b", str(bundle), name],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    subprocess.run(["runc", "--root", str(state), "delete", "--force", name], capture_output=True)
    ours = run_bundle(bundle, name, root=state.with_name("ours-state"), timeout=timeout)
    return theirs, ours


def wait_until(predicate: Callable[[], T], timeout: float = 10.0, what: str = "condition", interval: float = 0.02) -> T:
    """The first true value of `predicate`, polled every `interval` seconds; fails the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(interval)


def reap_exited() -> bool:
    """Reap every child that has exited (adopted monitors among them) without waiting: whether live ones remain."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return False
        if pid == 0:
            return True
