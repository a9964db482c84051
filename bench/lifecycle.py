#!/usr/bin/env python3
"""Detached containers: the monitor's idle memory beside Podman's conmon, and `exec` latency beside
`podman exec`, in the same run.

    .venv/bin/python bench/lifecycle.py [--runs N] [--settle SECONDS]

Both sides run one detached busybox `sleep` from the same root filesystem (built from the host's
busybox-static), with no network:
  minirun  `run -d` from a throwaway store; its monitor is the process that owns the container's stdio
  podman   `run -d` from a throwaway --root/--runroot (image made by `podman import` of the same rootfs),
           with the `--ulimit nofile=1024:1024 --ulimit nproc=1000:1000` this machine needs; its monitor
           is conmon
After `--settle` seconds idle: RSS and PSS (/proc/PID/smaps_rollup; PSS shares the common libraries out)
of each monitor. Then `exec CTR true`, interleaved (minirun, podman, minirun, ...), median of N.
Everything lives under one temp dir (and one cgroup parent), removed at the end.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))

import benchkit  # noqa: E402
from benchkit import check, timed  # noqa: E402
from kits.runkit import reap_exited  # noqa: E402

MINIRUN = str(Path(sys.executable).with_name("minirun"))


def memory_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of `pid` in KiB."""
    fields = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("Rss", "Pss"):
                fields[key] = int(value.split()[0])
    return fields["Rss"], fields["Pss"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="exec runs per side (default 30)")
    parser.add_argument("--settle", type=float, default=2.0, help="idle seconds before measuring memory")
    args = parser.parse_args()
    work, env = benchkit.detached_workspace("bench/lifecycle.py", "minirun-bench-lc-")
    store = work / "store"
    ours = [MINIRUN, "--root", str(store)]
    podman = benchkit.podman(work / "podman-root", work / "podman-run")
    ulimits = benchkit.PODMAN_ULIMITS
    our_id = peer_id = None
    try:
        benchkit.busybox_images(work, store, podman, env)

        our_id = check([*ours, "run", "-d", "--network", "none", "bench/busybox", "sleep", "3600"], env)
        peer_id = check(
            [
                *podman,
                "run",
                "-d",
                "--network",
                "none",
                *ulimits,
                "--cgroup-parent",
                f"/{work.name}",
                "localhost/bench-busybox:latest",
                "sleep",
                "3600",
            ],
            env,
        )
        time.sleep(args.settle)
        monitor = json.loads((store / "containers" / our_id / "state.json").read_text())["MonitorPid"]
        conmon = int(check([*podman, "inspect", "--format", "{{.State.ConmonPid}}", peer_id], env))
        our_mem, peer_mem = memory_kib(monitor), memory_kib(conmon)

        for _ in range(3):  # warm-up
            timed([*ours, "exec", our_id, "true"], env)
            timed([*podman, "exec", peer_id, "true"], env)
        times: dict[str, list[float]] = {"minirun": [], "podman": []}
        for _ in range(args.runs):
            times["minirun"].append(timed([*ours, "exec", our_id, "true"], env))
            times["podman"].append(timed([*podman, "exec", peer_id, "true"], env))
    finally:
        if our_id:
            subprocess.run([*ours, "rm", "-f", our_id], capture_output=True, env=env)
        if peer_id:
            subprocess.run([*podman, "rm", "-f", "-t", "0", peer_id], capture_output=True, env=env)
        time.sleep(0.2)
        reap_exited()
        benchkit.remove_workspace(work)

    print(f"idle monitor of one detached container (after {args.settle:g} s idle)")
    print(f"  minirun monitor  RSS {our_mem[0] / 1024:6.1f} MiB   PSS {our_mem[1] / 1024:6.1f} MiB")
    print(f"  podman conmon    RSS {peer_mem[0] / 1024:6.1f} MiB   PSS {peer_mem[1] / 1024:6.1f} MiB")
    print(f"  minirun / conmon: RSS {our_mem[0] / peer_mem[0]:.2f}x   PSS {our_mem[1] / peer_mem[1]:.2f}x")
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"exec CTR true, median of {args.runs} runs (after 3 warm-up runs each)")
    for name, value in medians.items():
        spread = f"min {min(times[name]) * 1000:6.1f}  max {max(times[name]) * 1000:6.1f}"
        print(f"  {name:8s} {value * 1000:7.1f} ms   ({spread})")
    print(f"  minirun / podman: {medians['minirun'] / medians['podman']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
