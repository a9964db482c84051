#!/usr/bin/env python3
"""Benchmark: `minibuild build` beside `podman build`, the same recipe, the same base image, in the same run.

    .venv/bin/python bench/build.py [--runs N]

The recipe has four RUNs and two COPYs on a busybox base built from the host's busybox-static; each tool
gets it through its own import (`minibuild from-tar`, `podman load` of `minibuild save`), in a throwaway
store / --root and --runroot (overlay storage; podman with the `--ulimit`s this machine needs).
Two cases, runs interleaved (minibuild, podman, minibuild, ...):
  cold    a build with no cache (`--no-cache` for both). Target: minibuild <= 0.7 x podman.
  cached  a rebuild where every step is cached (podman's --layers, its default). Target: <= 0.3 x podman.
Prints each median and minibuild's ratio to podman; no timed assertion anywhere.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))

import benchkit  # noqa: E402
from kits import imagekit  # noqa: E402

BASE = "docker.io/library/busybox-bench:latest"
RECIPE = f"""\
FROM {BASE}
COPY app/ /app/
RUN mkdir -p /out && for i in $(seq 200); do echo "line $i" >> /out/lines; done
RUN busybox sha256sum /app/* > /out/sums
COPY config.txt /etc/app.conf
RUN busybox tar -cf /out/app.tar /app && rm -rf /tmp/*
RUN echo done > /out/done
CMD ["cat", "/out/done"]
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/build.py needs root (overlay mounts, RUN containers, podman)", file=sys.stderr)
        return 2
    podman_bin = shutil.which("podman")
    work = Path(tempfile.mkdtemp(prefix="mc-bench-build-"))
    runroot = tempfile.mkdtemp(prefix="mcb-", dir="/run")  # podman wants a runroot under 50 characters
    minibuild = str(Path(sys.executable).with_name("minibuild"))
    env = {**os.environ, "MINICONTAINER_ROOT": str(work / "store")}
    podman = [*benchkit.podman(work / "podman-root", runroot)] if podman_bin else []
    try:
        ctx = work / "ctx"
        (ctx / "app").mkdir(parents=True)
        for n in range(20):
            (ctx / "app" / f"part{n}.txt").write_text(f"part {n}\n" * 500)
        (ctx / "config.txt").write_text("key=value\n")
        (ctx / "Containerfile").write_text(RECIPE)
        rootfs = imagekit.busybox_rootfs(work / "rootfs")
        (work / "base.tar").write_bytes(imagekit.tar_of_dir(rootfs))
        subprocess.run(
            [minibuild, "from-tar", str(work / "base.tar"), "-t", BASE], env=env, check=True, capture_output=True
        )
        build = [minibuild, "build", "-q", "-t", "bench:1", str(ctx)]
        cases = {"minibuild cold": [*build, "--no-cache"], "minibuild cached": build}
        if podman:
            subprocess.run([minibuild, "save", "-o", str(work / "base-save.tar"), BASE], env=env, check=True)
            subprocess.run([*podman, "load", "-i", str(work / "base-save.tar")], check=True, capture_output=True)
            pbuild = [
                *podman,
                "build",
                *benchkit.PODMAN_ULIMITS,
                "--network",
                "none",
                "--pull=never",
                "-q",
                "-t",
                "bench:1",
            ]
            cases["podman cold"] = [*pbuild, "--no-cache", str(ctx)]
            cases["podman cached"] = [*pbuild, str(ctx)]
        for cmd in cases.values():  # warm-up: fills both caches, loads both tools from disk
            benchkit.timed(cmd, env)
        times: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.runs):
            for name, cmd in cases.items():
                times[name].append(benchkit.timed(cmd, env))
        med = {name: statistics.median(values) for name, values in times.items()}
        for name, value in med.items():
            print(f"{name:18} median {value:7.3f} s  ({args.runs} runs)")
        if podman:
            print(f"cold:   minibuild / podman = {med['minibuild cold'] / med['podman cold']:.2f}   (target <= 0.7)")
            print(
                f"cached: minibuild / podman = {med['minibuild cached'] / med['podman cached']:.2f}   (target <= 0.3)"
            )
        else:
            print("podman is not installed: no comparison")
        return 0
    finally:
        if podman:
            subprocess.run([*podman, "rmi", "-a", "-f"], capture_output=True, check=False)
        benchkit.unmount_under(work)
        benchkit.unmount_under(Path(runroot))
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(runroot, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
