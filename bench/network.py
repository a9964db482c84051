#!/usr/bin/env python3
"""Network benchmark: what pyroute2 would cost to import, and a bridge-mode start beside podman's, same run.

    .venv/bin/python bench/network.py [--runs N] [--import-runs N]

1. Import cost, each in a fresh interpreter (import time only, interpreter start-up excluded):
     import pyroute2                          what `from pyroute2 import IPRoute` runs (its __init__)
     pyroute2's rtnl message classes          ifinfmsg/ifaddrmsg/rtmsg, imported normally (runs the __init__)
     minirun.network.rtnl                     what minirun imports instead: its own struct encoder
   (pyroute2 is a test dependency, not a runtime one: install the test extra for the first two rows.)
2. Start-to-exit of a no-op container with the default network, interleaved runs, medians:
     minirun bridge   `minirun --rm IMAGE true` (the default network: bridge), in a store of its own
     podman bridge    `podman run --rm` with its default network (netavark, bridge podman0)
   and, for reference, both with --network none. Target: minirun bridge <= 0.6 x podman bridge.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))

import benchkit  # noqa: E402
import run  # noqa: E402  (bench/run.py: the same setup and teardown)

TARGET = 0.6
PY = sys.executable
MINIRUN = str(Path(PY).with_name("minirun"))
IMPORTS = {
    "import pyroute2 (IPRoute's way)": "import pyroute2",
    "pyroute2's rtnl message classes": "from pyroute2.netlink.rtnl import ifaddrmsg, ifinfmsg, rtmsg",
    "minirun.network.rtnl": "from minirun.network import rtnl",
}
TIMED = "import time; t = time.perf_counter(); {code}; print((time.perf_counter() - t) * 1000)"


def import_times(runs: int, env: dict[str, str]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {name: [] for name in IMPORTS}
    for _ in range(runs):  # interleaved, so a change of load hits every variant alike
        for name, code in IMPORTS.items():
            result = subprocess.run([PY, "-c", TIMED.format(code=code)], capture_output=True, text=True, env=env)
            if result.returncode:
                raise SystemExit(f"{name}: {result.stderr}")
            out[name].append(float(result.stdout))
    return out


def report(title: str, times: dict[str, list[float]], unit: float) -> dict[str, float]:
    print(title)
    medians = {name: statistics.median(v) for name, v in times.items()}
    for name, values in times.items():
        spread = f"min {min(values) * unit:6.1f}  max {max(values) * unit:6.1f}"
        print(f"  {name:40s} {medians[name] * unit:7.1f} ms   ({spread})")
    return medians


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--import-runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench/network.py needs root (namespaces, bridges, nftables)")
    # as installed: bytecode cached; the real default network (bridge)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "MINICONTAINER_DEFAULT_NETWORK")}
    subprocess.run([PY, "-m", "compileall", "-q", str(HERE.parent / "runner"), str(HERE.parent / "cache")], env=env)

    imports = import_times(args.import_runs, env)
    work = Path(tempfile.mkdtemp(prefix="minirun-netbench-"))
    try:
        times = benchkit.interleaved(run.setup(work, runc=False), env, args.runs, args.warmup)
    finally:
        run.teardown(work)

    report(f"import time, median of {args.import_runs} fresh interpreters each", imports, 1)
    medians = report(
        f"start-to-exit of a no-op container, median of {args.runs} interleaved runs ({args.warmup} warm-up)",
        times,
        1000,
    )
    ours = medians["minirun bridge"]
    print(f"  bridge cost (minirun bridge - minirun none): {(ours - medians['minirun none']) * 1000:.1f} ms")
    if "podman bridge" in medians:
        peer = medians["podman bridge"]
        print(f"  bridge cost (podman bridge - podman none):   {(peer - medians['podman none']) * 1000:.1f} ms")
        print(f"  minirun bridge / podman bridge: {ours / peer:.2f}x")
        verdict = "met" if ours <= TARGET * peer else "NOT met"
        print(f"  target minirun bridge <= {TARGET} x podman bridge ({TARGET * peer * 1000:.0f} ms): {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
