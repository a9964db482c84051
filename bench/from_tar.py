#!/usr/bin/env python3
"""Benchmark: `minibuild from-tar` of a multi-hundred-MB rootfs tarball beside `tar -x` and `podman import`.

Builds the tarball once (copies of /usr/lib, /usr/share and /usr/bin files plus busybox, tens of thousands
of entries), then times, in the same run and interleaved, with a cold store / empty directory each time:

  minibuild from-tar FILE                  (durable: one syncfs before the layer is published)
  minibuild from-tar --no-layer-blob FILE  (without the tar-split record that lets push rebuild the tar)
  tar -x  (GNU tar, as root: owners, modes, mtimes)    and   tar -x + sync -f  (the same, durable)
  podman import FILE   (throwaway --root/--runroot under a temp dir; skipped when podman is absent)

and prints each median and the ratios. Targets: from-tar within 1.3x of tar -x, at most 0.6x of podman.
Environment: BENCH_MB (default 400), BENCH_RUNS (default 5), BENCH_KEEP=1 keeps the tarball for reuse.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
PY = HERE / ".venv" / "bin" / "python"
SOURCES = [Path("/usr/share"), Path("/usr/lib"), Path("/usr/bin")]
TARBALL = Path(os.environ.get("BENCH_TARBALL", "/var/tmp/minicontainer-bench-rootfs.tar"))


def build_tarball(path: Path, target_bytes: int) -> tuple[int, int]:
    """A docker-export-like tarball (ustar/GNU headers, whole-second mtimes, no per-entry PAX, as Go's
    archive/tar writes): busybox plus copies of host files (each at most 4 MB) until `target_bytes`."""
    files, total = 0, 0
    tmp = path.with_suffix(".partial")
    with tarfile.open(tmp, "w", format=tarfile.GNU_FORMAT) as tar:

        def add(src: str, arcname: str) -> tarfile.TarInfo:
            info = tar.gettarinfo(src, arcname)
            info.mtime = int(info.mtime)
            info.uname = info.gname = ""
            if info.isreg():
                with open(src, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
            return info

        add("/bin/busybox", "busybox")
        copy = 0
        while total < target_bytes:
            for src in SOURCES:
                for dirpath, dirnames, filenames in os.walk(src):
                    dirnames.sort()
                    rel = os.path.relpath(dirpath, "/")
                    add(dirpath, f"copy{copy}/{rel}")
                    for name in sorted(filenames):
                        full = os.path.join(dirpath, name)
                        try:
                            if os.lstat(full).st_size > 4 << 20:
                                continue
                            info = add(full, f"copy{copy}/{rel}/{name}")
                        except OSError:
                            continue
                        files += 1
                        total += info.size
                        if total >= target_bytes:
                            break
                    if total >= target_bytes:
                        break
                if total >= target_bytes:
                    break
            copy += 1
    tmp.rename(path)
    return files, total


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


class FreshFilesystem:
    """A new ext4 filesystem (a loop device over a sparse file) for one timed run.

    Every tool gets the same clean filesystem: on a long-used one, ext4's inode allocator skips recently
    deleted inodes (`recently_deleted` in the kernel), so a run right after a big `rm -rf` can take 5x
    longer whatever the tool, and other processes' deletions would decide the figures. BENCH_DIR=PATH
    runs on a directory of an existing filesystem instead.
    """

    def __init__(self, work: Path, name: str) -> None:
        self.work = work
        self.image = work / f"{name}.img"
        self.point = work / name
        self.mounted = False

    def __enter__(self) -> Path:
        self.point.mkdir()
        if os.environ.get("BENCH_DIR"):
            return self.point
        with open(self.image, "wb") as f:
            f.truncate(8 << 30)
        subprocess.run(["mkfs.ext4", "-q", "-F", str(self.image)], check=True)
        subprocess.run(["mount", "-o", "loop", str(self.image), str(self.point)], check=True)
        self.mounted = True
        subprocess.run(["sync"], check=True)
        return self.point

    def __exit__(self, *exc: object) -> None:
        if self.mounted:
            _remove_mounts_under(self.point)
            subprocess.run(["umount", str(self.point)], check=True)
        shutil.rmtree(self.point, ignore_errors=True)
        self.image.unlink(missing_ok=True)
        # Let the host write back what this run left (a loop device writes through the host's page cache),
        # so the next run does not pay for it.
        subprocess.run(["sync"], check=True)


def main() -> int:
    mb = int(os.environ.get("BENCH_MB", "400"))
    runs = int(os.environ.get("BENCH_RUNS", "5"))
    if os.geteuid() != 0:
        print("bench/from_tar.py needs root (tar -x with owners, loop mounts, podman)", file=sys.stderr)
        return 1
    if not TARBALL.exists() or TARBALL.stat().st_size < mb * 900_000:
        print(f"building a {mb} MB rootfs tarball at {TARBALL} ...", flush=True)
        files, total = build_tarball(TARBALL, mb << 20)
        print(f"  {files} files, {total / 1e6:.0f} MB of content")
    with tarfile.open(TARBALL) as tar:
        entries = sum(1 for _ in tar)
    size_mb = TARBALL.stat().st_size / 1e6
    base = Path(os.environ.get("BENCH_DIR") or "/var/tmp")
    print(f"tarball: {size_mb:.0f} MB, {entries} entries; {runs} runs each on a fresh ext4, medians\n", flush=True)
    work = Path(tempfile.mkdtemp(prefix="minicontainer-bench-", dir=base))
    podman = shutil.which("podman")
    short_runroot = tempfile.mkdtemp(prefix="mcb-", dir="/run")  # podman wants a runroot under 50 characters
    mb_cmd = [str(PY), "-m", "minibuild.cli", "--root"]
    cases: dict[str, callable] = {
        "minibuild from-tar": lambda d: [*mb_cmd, f"{d}/store", "from-tar", str(TARBALL)],
        "minibuild from-tar --no-layer-blob": lambda d: [
            *mb_cmd,
            f"{d}/store",
            "from-tar",
            "--no-layer-blob",
            str(TARBALL),
        ],
        "tar -x": lambda d: ["tar", "--numeric-owner", "-xf", str(TARBALL), "-C", str(d)],
        "tar -x + sync -f": lambda d: ["sh", "-c", f'tar --numeric-owner -xf "{TARBALL}" -C "{d}" && sync -f "{d}"'],
    }
    if podman:
        cases["podman import"] = lambda d: [
            podman,
            "--root",
            f"{d}/root",
            "--runroot",
            short_runroot,
            "--storage-driver",
            "overlay",
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "none",
            "import",
            "-q",
            str(TARBALL),
            "bench:1",
        ]
    times: dict[str, list[float]] = {name: [] for name in cases}
    try:
        subprocess.run(["cat", str(TARBALL)], stdout=subprocess.DEVNULL, check=True)  # into the page cache
        for i in range(runs):
            names = list(cases)
            names = names[i % len(names) :] + names[: i % len(names)]  # rotate: no tool always goes first
            for name in names:
                with FreshFilesystem(work, f"run{i}-{len(times[name])}-{name.split()[0]}") as d:
                    times[name].append(timed(cases[name](d)))
            print(f"  run {i + 1}/{runs}: " + ", ".join(f"{n} {times[n][-1]:.2f}" for n in cases), flush=True)
    finally:
        _remove_mounts_under(work)
        shutil.rmtree(work, ignore_errors=True)
        _remove_mounts_under(Path(short_runroot))
        shutil.rmtree(short_runroot, ignore_errors=True)
        if os.environ.get("BENCH_KEEP") != "1":
            TARBALL.unlink(missing_ok=True)
    med = {name: statistics.median(values) for name, values in times.items()}
    width = max(len(n) for n in med)
    print()
    for name, value in med.items():
        print(f"{name.ljust(width)}  {value:6.2f} s  (min {min(times[name]):.2f}, max {max(times[name]):.2f})")
    ours = med["minibuild from-tar"]
    print()
    print(f"from-tar / tar -x              = {ours / med['tar -x']:.2f}   (target <= 1.3)")
    print(f"from-tar / (tar -x + sync -f)  = {ours / med['tar -x + sync -f']:.2f}   (both durable)")
    print(f"tar-split record costs         = {ours - med['minibuild from-tar --no-layer-blob']:+.2f} s")
    if "podman import" in med:
        print(f"from-tar / podman import       = {ours / med['podman import']:.2f}   (target <= 0.6)")
    else:
        print("podman import: podman is not installed, skipped")
    return 0


def _remove_mounts_under(path: Path) -> None:
    """Unmount what a run left mounted below `path` (podman's overlay storage), deepest first."""
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f if line.split()[4].startswith(str(path) + "/")]
    for point in sorted(points, key=len, reverse=True):
        if Path(point) != path:
            subprocess.run(["umount", "-l", point], check=False)


if __name__ == "__main__":
    sys.exit(main())
