"""Real engines driving an OCI runtime binary: a throwaway Podman store and a private containerd.

Every engine test runs once with Debian's `runc` (the reference: it proves the harness) and once with our
`minirun-runtime`. Everything an engine makes lives under the test's own directories, names and cgroup
parent, and is removed by ID at the end.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from minicache import overlay

RUNTIMES = ("runc", "minirun-runtime")
# This machine lacks CAP_SYS_RESOURCE: podman's default rlimits are above the hard limit, so set them.
PODMAN_ULIMITS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1000:1000")


def runtime_binary(name: str) -> str | None:
    """The runtime binary: Debian's runc, or the `minirun-runtime` console script of this venv (else PATH)."""
    if name == "runc":
        return shutil.which("runc")
    script = Path(sys.executable).with_name(name)
    return str(script) if script.exists() else shutil.which(name)


def missing_reason(name: str) -> str:
    return (
        f"{name} is not installed: no console script beside {sys.executable} nor on PATH"
        if name == "minirun-runtime"
        else f"{name} is not installed (apt-get install {name})"
    )


def select(request: pytest.FixtureRequest) -> str:
    """The `runtime` fixture's value: the binary of `request.param`, skipped only while it is not installed."""
    path = runtime_binary(request.param)
    if not path:
        pytest.skip(missing_reason(request.param))
    return path


def remove_cgroup_tree(name: str) -> None:
    """Remove the cgroup directories under the test's own parent `name` in every hierarchy, deepest first."""
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        parent = hierarchy / name
        if not parent.is_dir():
            continue
        for child in sorted((d for d in parent.rglob("*") if d.is_dir()), key=lambda d: len(d.parts), reverse=True):
            with contextlib.suppress(OSError):
                child.rmdir()
        with contextlib.suppress(OSError):
            parent.rmdir()


def cgroup_dirs(name: str) -> list[Path]:
    """What is left under the parent `name` (a leak check)."""
    return [d for h in Path("/sys/fs/cgroup").iterdir() if (h / name).is_dir() for d in (h / name).rglob("*/")]


def unmount_under(path: Path) -> None:
    """Unmount whatever is still mounted below `path` (podman keeps its overlay home mounted), deepest first."""
    prefix = os.path.realpath(path) + "/"
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f if (line.split()[4] + "/").startswith(prefix)]
    for point in sorted(points, key=len, reverse=True):
        overlay.unmount(Path(point), lazy=True)


def pids_mentioning(needle: str) -> list[int]:
    """Processes whose command line names `needle` (a path or name unique to the test): what it started."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            with contextlib.suppress(OSError):
                if needle.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                    found.append(int(entry))
    return found


def kill_pids(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


class Podman:
    """`podman` on a store of its own: root, runroot, tmpdir, network configs and a cgroup parent of its own."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.runroot = Path(tempfile.mkdtemp(prefix="mcpp-", dir="/run"))  # conmon wants a short socket path
        self.cgroup_parent = f"mc-podman-{secrets.token_hex(4)}"
        (work / "networks").mkdir()
        self.base = [
            "podman", "--root", str(work / "root"), "--runroot", str(self.runroot),
            "--tmpdir", str(self.runroot / "tmp"),
            "--storage-driver", "overlay", "--cgroup-manager", "cgroupfs", "--events-backend", "file",
            "--network-config-dir", str(work / "networks"),
        ]  # fmt: skip

    def __call__(self, *args: str, runtime: str | None = None, check: bool = True, timeout: float = 60, **kw):
        cmd = [*self.base, *(["--runtime", runtime] if runtime else []), *args]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, **kw)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(args[:3])} failed ({result.returncode}): {result.stderr[-3000:]}")
        return result

    def run_args(self, *args: str) -> list[str]:
        """`run` with the options every test container takes: the ulimits this machine needs, our cgroup parent."""
        return ["run", *PODMAN_ULIMITS, "--cgroup-parent", f"/{self.cgroup_parent}", *args]

    def close(self) -> None:
        """Remove every container and network, then the store: mounts, conmons left behind, cgroups, folders."""
        self("rm", "--all", "--force", "--time", "0", check=False)
        for net in self("network", "ls", "--format", "{{.Name}}", check=False).stdout.split():
            if net != "podman":
                self("network", "rm", "--force", net, check=False)
        kill_pids(pids_mentioning(str(self.runroot)))
        unmount_under(self.work)
        unmount_under(self.runroot)
        remove_cgroup_tree(self.cgroup_parent)
        shutil.rmtree(self.runroot, ignore_errors=True)
        shutil.rmtree(self.work / "root", ignore_errors=True)


@contextlib.contextmanager
def podman_store(work: Path) -> Iterator[Podman]:
    podman = Podman(work)
    try:
        yield podman
    finally:
        podman.close()


class Containerd:
    """A private containerd: own root, state, sockets and namespace; no CRI plugin. Stopped by its PID."""

    DISABLED = (
        "io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
        "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs",
        "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing",
    )  # fmt: skip

    def __init__(self, work: Path) -> None:
        self.work = work
        self.state = Path(tempfile.mkdtemp(prefix="mcctd-", dir="/run"))  # socket paths must stay short
        self.address = str(self.state / "sock")
        self.namespace = f"mc-ctd-{secrets.token_hex(4)}"  # also the cgroup parent of its containers
        # ctr and the shim keep fifos and shim sockets under this fixed folder, whatever the state folder is
        self.fixed_run = None if Path("/run/containerd").exists() else Path("/run/containerd")
        config = work / "containerd.toml"
        disabled = ", ".join(f'"{p}"' for p in self.DISABLED)
        config.write_text(
            f'version = 2\nroot = "{work / "root"}"\nstate = "{self.state / "state"}"\n'
            f"disabled_plugins = [{disabled}]\n"
            f'[grpc]\n  address = "{self.address}"\n[ttrpc]\n  address = "{self.state / "ttrpc.sock"}"\n'
        )
        self.log = open(work / "containerd.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            ["containerd", "--config", str(config)], stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 20
        while self.ctr("version", check=False).returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"containerd did not start: {(work / 'containerd.log').read_text()[-2000:]}")
            time.sleep(0.05)

    def ctr(self, *args: str, check: bool = True, timeout: float = 60, **kw) -> subprocess.CompletedProcess[str]:
        cmd = ["ctr", "--address", self.address, "--namespace", self.namespace, *args]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, **kw)
        if check and result.returncode != 0:
            raise AssertionError(f"ctr {' '.join(args[:3])} failed ({result.returncode}): {result.stderr[-3000:]}")
        return result

    def run_args(self, runtime: str, cid: str) -> list[str]:
        """`ctr run` options that keep a container's runtime state and cgroup under the test's own names."""
        return [
            "--runc-binary",
            runtime,
            "--runc-root",
            str(self.work / "runtime-state"),
            "--cgroup",
            f"/{self.namespace}/{cid}",
        ]

    def stop(self) -> None:
        """Delete what is left, stop containerd and its shims by PID, then remove mounts, cgroups and folders."""
        if self.proc.poll() is None:
            for task in self.ctr("task", "ls", "--quiet", check=False).stdout.split():
                self.ctr("task", "kill", "--signal", "SIGKILL", "--all", task, check=False)
                self.ctr("task", "delete", "--force", task, check=False)
            for container in self.ctr("container", "ls", "--quiet", check=False).stdout.split():
                self.ctr("container", "delete", container, check=False)
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        kill_pids(pids_mentioning(self.address))  # shims outlive their containerd
        self.log.close()
        unmount_under(self.work)
        unmount_under(self.state)
        remove_cgroup_tree(self.namespace)
        shutil.rmtree(self.state, ignore_errors=True)
        shutil.rmtree(self.work / "root", ignore_errors=True)
        if self.fixed_run:  # made by this daemon: only its empty folders go
            for folder in sorted(self.fixed_run.rglob("*/"), key=lambda d: len(d.parts), reverse=True):
                with contextlib.suppress(OSError):
                    folder.rmdir()
            with contextlib.suppress(OSError):
                self.fixed_run.rmdir()
