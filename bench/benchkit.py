"""What the benchmark scripts share: timing a command, a throwaway podman, unmounting what peers leave."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from minicache import overlay

# This machine lacks CAP_SYS_RESOURCE: podman's default rlimits are above the hard limit, so set them.
PODMAN_ULIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1000:1000"]


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
