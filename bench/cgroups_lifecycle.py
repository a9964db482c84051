#!/usr/bin/env python3
"""Cost of a container's cgroup on the `minirun --rm IMAGE true` path, beside runc's from the same run.

ours:  detect + open + create (memory, cpu, pids limits, device rules) + a forked child joins + exits
       + destroy
runc:  `runc run` of a busybox `true` bundle with the same limits (its cgroup work is inside that figure;
       runc has no way to run without cgroups, so the whole start is the peer)

The ratio says which share of a runc-class container start our cgroup lifecycle takes. Needs root and
runc; every cgroup lives under a unique parent removed at the end.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from minirun import cgroups
from minirun.engine.spec import DEVICE_RULES

RUNS = int(os.environ.get("BENCH_RUNS", "30"))
RESOURCES = {
    "memory": {"limit": 64 << 20, "swap": 128 << 20},
    "cpu": {"quota": 50000, "period": 100000, "shares": 512},
    "pids": {"limit": 100},
    "devices": [dict(rule) for rule in DEVICE_RULES],  # every container's allowlist (v1 devices controller)
}


def ours(parent: str) -> list[float]:
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        cg = cgroups.open(f"b{secrets.token_hex(6)}", parent=parent)
        cg.create(RESOURCES)
        pid = os.fork()
        if pid == 0:
            try:
                cg.join()
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        cg.destroy()
        times.append(time.perf_counter() - start)
    return times


def runc_bundle(root: Path, parent: str) -> Path:
    bundle = root / "bundle"
    (bundle / "rootfs" / "bin").mkdir(parents=True)
    shutil.copy2("/bin/busybox", bundle / "rootfs" / "bin" / "busybox")
    (bundle / "rootfs" / "bin" / "true").symlink_to("busybox")
    subprocess.run(["runc", "spec"], cwd=bundle, check=True)
    spec = json.loads((bundle / "config.json").read_text())
    spec["process"].update(terminal=False, args=["/bin/true"])
    spec["linux"]["resources"].update(RESOURCES)
    spec["linux"]["cgroupsPath"] = f"/{parent}/runc"
    (bundle / "config.json").write_text(json.dumps(spec))
    return bundle


def runc(bundle: Path, state: Path) -> list[float]:
    times = []
    for i in range(RUNS):
        start = time.perf_counter()
        subprocess.run(["runc", "--root", str(state), "run", "--bundle", str(bundle), f"bench{i}"], check=True)
        times.append(time.perf_counter() - start)
    return times


def remove_parent(parent: str) -> None:
    """Remove the bench's parent in every cgroup mount (runc also uses devices and name=systemd)."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields, _, tail = line.partition(" - ")
        if tail.split()[0] not in ("cgroup", "cgroup2"):
            continue
        directory = Path(fields.split()[4]) / parent
        if directory.is_dir():
            for sub in sorted(directory.glob("**/"), key=lambda p: len(p.parts), reverse=True):
                os.rmdir(sub)


def main() -> int:
    if os.geteuid() != 0 or not shutil.which("runc"):
        print("cgroups_lifecycle: needs root and runc; skipped")
        return 0
    parent = f"mc-bench-{secrets.token_hex(4)}"
    host = cgroups.detect()
    t0 = time.perf_counter()
    for _ in range(1000):
        cgroups.host.detect_from(cgroups.host.MOUNTINFO.read_text())
    detect_us = (time.perf_counter() - t0) / 1000 * 1e6
    with tempfile.TemporaryDirectory(prefix="mc-bench-") as tmp:
        try:
            ours_t = ours(parent)
            runc_t = runc(runc_bundle(Path(tmp), parent), Path(tmp) / "runc-state")
        finally:
            remove_parent(parent)
    a, b = statistics.median(ours_t) * 1e3, statistics.median(runc_t) * 1e3
    print(f"cgroup mode: {host.mode}{' (hybrid)' if host.hybrid else ''}; host detection {detect_us:.0f} us")
    print(f"ours  cgroup lifecycle (create+limits, join, destroy), median of {RUNS}: {a:7.2f} ms")
    print(f"runc  whole `run` of busybox true with the same limits, median of {RUNS}: {b:7.2f} ms")
    print(f"ratio ours/runc: {a / b:.2f} (share of a runc-class start spent on our cgroup work)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
