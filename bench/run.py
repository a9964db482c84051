#!/usr/bin/env python3
"""Start-up benchmark: `minirun --rm IMAGE true` beside podman and runc, in the same run.

    .venv/bin/python bench/run.py [--runs N] [--editable]

All three start the same busybox root filesystem (built from the host's busybox-static) with a
no-op command and clean up after themselves:
  minirun  from a throwaway store (overlay of the image layer + the container's upper dir), as a user's
           install runs it: a non-editable `pip install` of this checkout into a throwaway venv
           (benchkit.installed_minirun; set-up waits while pip builds the wheel). `--editable` times the
           development venv's console script instead, whose editable-install import hook costs every
           start importlib.util and more before minirun runs
  podman   from a throwaway --root/--runroot, image made by `podman import` of the same rootfs, with the
           `--ulimit nofile=1024:1024 --ulimit nproc=1000:1000` this machine needs (no CAP_SYS_RESOURCE)
  runc     `runc run` of a bundle with the spec minirun generates (same hardening) and a plain rootfs dir
Two network cases:
  none     `--network none` for all three (a private namespace with loopback). Target: minirun <= 0.4 x podman.
  bridge   each one's default network: minirun's default bridge (veth, IPAM, hosts files; in a store with
           a bridge, veth prefix, nftables table and subnet pool of its own, removed at the end) beside
           `podman run --rm` with its default network (netavark, podman0). Target: minirun <= 0.6 x podman.
Runs are interleaved (minirun, podman, runc, minirun, ...) so a change of load hits all of them alike.
Prints the medians and minirun's ratio to each peer.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

import benchkit  # noqa: E402
from minicache.store import Store  # noqa: E402
from minirun.engine import spec  # noqa: E402

EDITABLE_MINIRUN = str(Path(sys.executable).with_name("minirun"))
TARGETS = {"none": 0.4, "bridge": 0.6}


def setup(work: Path, runc: bool = True, editable: bool = False) -> dict[str, list[str]]:
    """The commands to time: minirun from a store of its own (network names and subnet of its own too),
    podman from a throwaway root, and (with `runc`) runc on a bundle of the spec minirun generates.
    minirun is a non-editable install in a throwaway venv, or (`editable`) the development venv's."""
    minirun = EDITABLE_MINIRUN if editable else benchkit.installed_minirun(work)
    commands: dict[str, list[str]] = {}

    store = work / "store"
    podman = benchkit.podman(work / "podman-root", work / "podman-run") if shutil.which("podman") else None
    rootfs = benchkit.busybox_images(work, store, podman)
    from minirun.network import settings

    h = secrets.token_hex(2)  # names of our own: other sessions may run minicontainer on this machine
    conf = settings.NetworkSettings(table=f"mcbench{h}", bridge_prefix=f"mbb{h}", veth_prefix=f"mbv{h[:2]}")
    conf.pool = ["10.222.0.0/16:24"]
    settings.save(Store(store), conf)
    commands["minirun none"] = [minirun, "--root", str(store), "--rm", "--network", "none", "bench/busybox", "true"]
    commands["minirun bridge"] = [minirun, "--root", str(store), "--rm", "bench/busybox", "true"]

    if podman is not None:
        run = [*podman, "run", "--rm", *benchkit.PODMAN_ULIMITS]
        run += ["--cgroup-parent", f"/{work.name}"]
        commands["podman none"] = [*run, "--network", "none", "localhost/bench-busybox:latest", "true"]
        commands["podman bridge"] = [*run, "localhost/bench-busybox:latest", "true"]

    if runc and shutil.which("runc"):
        bundle = work / "bundle"
        bundle.mkdir()
        shutil.copytree(rootfs, bundle / "rootfs", symlinks=True)
        (bundle / "rootfs").chmod(0o755)
        cid = "bench" + secrets.token_hex(4)
        ctx = spec.SpecContext(container_id=cid * 4, cgroups_path=f"/{work.name}/{cid}")
        oci = spec.build({"Env": [f"PATH={spec.DEFAULT_PATH}"]}, spec.RunOptions(command=["true"]), ctx)
        (bundle / "config.json").write_text(json.dumps(oci))
        commands["runc none"] = ["runc", "--root", str(work / "runc-state"), "run", "-b", str(bundle), cid]
    return commands


def remove_networks(store_root: Path) -> None:
    """The bench store's bridge network (its bridge and nftables table go with it)."""
    from minirun import network

    store = Store(store_root)
    network.prune(store, keep=[])
    for net, _count in network.list_networks(store):
        network.remove_network(store, net.id)


def teardown(work: Path) -> None:
    """Remove what `setup` and the runs made: the bench network, leftover mounts, cgroups, the directory."""
    remove_networks(work / "store")
    benchkit.remove_workspace(work)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--editable", action="store_true", help="time the development venv's minirun")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench/run.py needs root (namespaces, mounts)")
    # as installed: bytecode cached; the real default network (bridge)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "MINICONTAINER_DEFAULT_NETWORK")}
    work = Path(tempfile.mkdtemp(prefix="minirun-bench-"))
    try:
        times = benchkit.interleaved(setup(work, editable=args.editable), env, args.runs, args.warmup)
    finally:
        teardown(work)

    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"start-up of a no-op container, median of {args.runs} runs (after {args.warmup} warm-up runs each)")
    for name, value in medians.items():
        spread = f"min {min(times[name]) * 1000:6.1f}  max {max(times[name]) * 1000:6.1f}"
        print(f"  {name:15s} {value * 1000:7.1f} ms   ({spread})")
    for case, target in TARGETS.items():
        ours = medians[f"minirun {case}"]
        for peer in ("podman", "runc"):
            if f"{peer} {case}" in medians:
                print(f"  {case:6s} minirun / {peer}: {ours / medians[f'{peer} {case}']:.2f}x")
        if f"podman {case}" in medians:
            peer = medians[f"podman {case}"]
            verdict = "met" if ours <= target * peer else "NOT met"
            print(f"  {case:6s} target minirun <= {target} x podman ({target * peer * 1000:.0f} ms): {verdict}")
    print(f"  bridge cost: minirun {(medians['minirun bridge'] - medians['minirun none']) * 1000:.1f} ms", end="")
    if "podman bridge" in medians:
        print(f", podman {(medians['podman bridge'] - medians['podman none']) * 1000:.1f} ms", end="")
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
