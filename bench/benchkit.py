"""What the benchmark scripts share: timing a command, a throwaway podman, unmounting what peers leave."""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

from kits import cgroupkit, imagekit
from kits.storekit import add_rootfs_image
from minicache import overlay
from minicache.store import Store

# This machine lacks CAP_SYS_RESOURCE: podman's default rlimits are above the hard limit, so set them.
PODMAN_ULIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1000:1000"]
PR_SET_CHILD_SUBREAPER = 36
BUSYBOX = "bench/busybox:latest"  # the image's name in our store
PEER_BUSYBOX = "localhost/bench-busybox:latest"  # and in podman's


def installed_minirun(work: Path) -> str:
    """The `minirun` console script of a non-editable install of this checkout in a throwaway venv under `work`.

    What a user runs: pip's console script and our packages as plain directories in site-packages. The
    development venv's editable install instead puts an import hook (setuptools' finder for our renamed
    packages) into every start: it imports pathlib, importlib.util and more before minirun runs, and
    hides what minirun's own start-up costs. The dependencies are taken from the running venv through a
    .pth path entry (its own .pth files, the finder's, are not run). pip builds the wheel as in CI.
    """
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    deps = dict.fromkeys(sysconfig.get_paths()[key] for key in ("purelib", "platlib"))
    (site / "bench-dependencies.pth").write_text("".join(f"{path}\n" for path in deps))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}  # as installed: bytecode
    checkout = Path(__file__).resolve().parent.parent
    install = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", str(checkout)]
    result = subprocess.run(install, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"installing minicontainer into {venv} failed: {result.stderr[-2000:]}")
    subprocess.run([python, "-m", "compileall", "-q", str(site)], env=env, check=True, capture_output=True)
    return str(venv / "bin" / "minirun")


def podman(root: Path | str, runroot: Path | str, events: str = "file") -> list[str]:
    """`podman` with a throwaway root and runroot (overlay, cgroupfs): it never touches the host's storage."""
    return [
        "podman", "--root", str(root), "--runroot", str(runroot), "--storage-driver", "overlay",
        "--cgroup-manager", "cgroupfs", "--events-backend", events,
    ]  # fmt: skip


def timed(cmd: list[str], env: dict[str, str] | None = None) -> float:
    """Seconds from start to exit of `cmd`; exits the benchmark with the command's stderr when it fails."""
    start = time.perf_counter()
    result = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, env=env)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])}... failed ({result.returncode}): {result.stderr.decode()[-2000:]}")
    return elapsed


def unmount_under(path: Path) -> None:
    """Unmount whatever was left mounted below `path` (podman keeps its overlay home mounted), deepest first."""
    prefix = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f if line.split()[4].startswith(prefix)]
    for point in sorted(points, key=len, reverse=True):
        overlay.unmount(Path(point), lazy=True)


def interleaved(commands: dict[str, list[str]], env: dict[str, str], runs: int, warmup: int) -> dict[str, list[float]]:
    """Time every command `runs` times, interleaved (a change of load hits all alike), after `warmup` runs each."""
    for cmd in commands.values():
        for _ in range(warmup):
            timed(cmd, env)
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, cmd in commands.items():
            times[name].append(timed(cmd, env))
    return times


def check(cmd: list[str], env: dict[str, str]) -> str:
    """The stripped stdout of `cmd`; exits the benchmark with the command's stderr when it fails."""
    result = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:5])}... failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
    return result.stdout.strip()


def detached_workspace(script: str, prefix: str) -> tuple[Path, dict[str, str]]:
    """A temp dir and the environment for a benchmark of detached containers beside podman's; exits the
    benchmark `script` with the reason when this is not root or podman is not installed.

    Our monitor outlives `minirun run -d`: this process becomes the subreaper that adopts it, so it is reaped
    here (`kits.runkit.reap_exited`) and not left a zombie. The environment caches bytecode (as installed) and puts
    every container's cgroup under one parent named after the dir, which `remove_workspace` removes.
    """
    if os.geteuid() != 0:
        raise SystemExit(f"{script} needs root (namespaces, mounts)")
    if not shutil.which("podman"):
        raise SystemExit(f"{script} needs podman (the peer)")
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    work = Path(tempfile.mkdtemp(prefix=prefix))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["MINICONTAINER_CGROUP_PARENT"] = work.name
    return work, env


def busybox_images(work: Path, store: Path, podman: list[str] | None, env: dict[str, str] | None = None) -> Path:
    """One busybox rootfs under `work`, as BUSYBOX in our `store` and (with `podman`) as PEER_BUSYBOX in podman's:
    both sides run the same files. Returns the rootfs."""
    rootfs = imagekit.busybox_rootfs(work / "rootfs")
    add_rootfs_image(Store(store), rootfs, BUSYBOX)
    if podman is not None:
        tar = work / "busybox.tar"
        tar.write_bytes(imagekit.tar_of_dir(rootfs))
        check([*podman, "import", str(tar), PEER_BUSYBOX], env if env is not None else dict(os.environ))
    return rootfs


def remove_workspace(work: Path) -> None:
    """Remove what a benchmark left under `work`: mounts, the cgroup parent named after it, the dir itself."""
    unmount_under(work)
    cgroupkit.remove_parent(work.name)
    shutil.rmtree(work, ignore_errors=True)
