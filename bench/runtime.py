#!/usr/bin/env python3
"""OCI runtime benchmark: `minirun-runtime` beside Debian's runc, driven the same way, in the same run.

    .venv/bin/python bench/runtime.py [--runs N] [--verb-runs N] [--editable]

Cases (each timed for runc and for minirun-runtime, interleaved so a change of load hits both alike):
  podman   `podman --runtime RT run --rm busybox true` from a throwaway store (network none).
           Target: minirun-runtime <= 1.3 x runc.
  ctr      `ctr run --rm --runc-binary RT busybox ID true` against a private containerd, through its runc shim.
           Target: minirun-runtime <= 1.3 x runc.
  verbs    each verb's own start-up on a bundle of the spec minirun generates: `state` and `ps` of a created
           container, `list`, `features`, `spec`, and `run` of `true` (create, start, wait, delete).
           Target: `state` <= 3 x runc.
minirun-runtime is the console script of a non-editable install of this checkout in a throwaway venv, as a
user's install runs it (benchkit.installed_minirun); `--editable` takes the development venv's. Without it
(the runtime CLI not built yet) the benchmark says so and prints runc's figures alone.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

import benchkit  # noqa: E402
from kits import archivekit, imagekit, peerkit  # noqa: E402
from minirun.engine import spec  # noqa: E402

IMAGE = "docker.io/library/mc-bench-busybox:latest"
TARGETS = {"podman run --rm": 1.3, "ctr run --rm": 1.3, "state": 3.0}

Command = Callable[[], list[str]]
FAILED: dict[str, str] = {}  # case and runtime -> why it could not be timed


def runtimes(work: Path, editable: bool) -> dict[str, str]:
    """runc, and minirun-runtime when its console script exists (else a line saying it is missing)."""
    found = {"runc": shutil.which("runc") or ""}
    if editable:
        ours = peerkit.runtime_binary("minirun-runtime")
    else:
        script = Path(benchkit.installed_minirun(work)).with_name("minirun-runtime")
        ours = str(script) if script.exists() else None
    if ours:
        found["minirun-runtime"] = ours
    else:
        print("minirun-runtime: not installed (this checkout has no minirun-runtime console script): runc alone")
    return {name: path for name, path in found.items() if path}


def bundle(work: Path, rootfs: Path, cgroup_parent: str, command: list[str], runtime: str) -> Path:
    """A bundle of the spec minirun generates (same hardening as `minirun run`), its cgroup under our parent
    (one per runtime: two containers never share a cgroup)."""
    path = work / f"bundle-{command[0]}-{runtime}"
    path.mkdir()
    shutil.copytree(rootfs, path / "rootfs", symlinks=True)
    (path / "rootfs").chmod(0o755)
    cid = secrets.token_hex(16)
    ctx = spec.SpecContext(container_id=cid * 2, cgroups_path=f"/{cgroup_parent}/{cid[:12]}")
    oci = spec.build({"Env": [f"PATH={spec.DEFAULT_PATH}"]}, spec.RunOptions(command=command), ctx)
    (path / "config.json").write_text(json.dumps(oci))
    return path


def verb_commands(work: Path, rootfs: Path, rts: dict[str, str], cgroup_parent: str) -> dict[str, dict[str, Command]]:
    """verb -> runtime -> command; one created container per runtime (its own --root) for `state` and `ps`."""
    cases: dict[str, dict[str, Command]] = {}
    for name, rt in rts.items():
        sleeper = bundle(work, rootfs, cgroup_parent, ["sleep", "600"], name)
        noop = bundle(work, rootfs, cgroup_parent, ["true"], name)
        root = str(work / f"state-{name}")
        cid = f"bench-{name}"
        create = [rt, "--root", root, "create", "--bundle", str(sleeper), cid]
        # the container's stdio must not be our pipes: it keeps them open, and a captured run would wait for it
        with open(work / f"create-{name}.err", "w+") as err:
            created = (
                subprocess.run(create, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err).returncode == 0
            )
            err.seek(0)
            if not created:
                FAILED[f"create / {name}"] = f"{err.read().strip()[-300:]} (so no state or ps figures)"
        spec_dir = work / f"spec-{name}"
        spec_dir.mkdir()

        def fresh_spec(rt: str = rt, spec_dir: Path = spec_dir) -> list[str]:
            (spec_dir / "config.json").unlink(missing_ok=True)
            return [rt, "spec", "--bundle", str(spec_dir)]

        def run_noop(rt: str = rt, root: str = root, noop: Path = noop) -> list[str]:
            return [rt, "--root", root, "run", "--bundle", str(noop), f"noop-{secrets.token_hex(4)}"]

        if created:
            cases.setdefault("state", {})[name] = lambda rt=rt, root=root, cid=cid: [rt, "--root", root, "state", cid]
            cases.setdefault("ps", {})[name] = lambda rt=rt, root=root, cid=cid: [rt, "--root", root, "ps", cid]
        cases.setdefault("list", {})[name] = lambda rt=rt, root=root: [rt, "--root", root, "list"]
        cases.setdefault("features", {})[name] = lambda rt=rt: [rt, "features"]
        cases.setdefault("spec", {})[name] = fresh_spec
        cases.setdefault("run true", {})[name] = run_noop
    return cases


def run(cmd: list[str]) -> None:
    try:
        result = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        raise SystemExit(f"{' '.join(cmd[:5])}... did not finish in 120 s") from None
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:5])}... failed ({result.returncode}): {result.stderr[-2000:]}")


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    run(cmd)
    return time.perf_counter() - start


def interleaved(title: str, case: dict[str, Command], runs: int, warmup: int) -> dict[str, list[float]]:
    """Time each runtime's command `runs` times, interleaved, after `warmup` runs each; a runtime that fails
    its warm-up is left out of the case (and reported), so the other figures still come."""
    for name, make in list(case.items()):
        try:
            for _ in range(warmup):
                timed(make())
        except SystemExit as e:
            FAILED[f"{title} / {name}"] = str(e).splitlines()[-1][-300:]
            del case[name]
    times: dict[str, list[float]] = {name: [] for name in case}
    for _ in range(runs):
        for name, make in case.items():
            times[name].append(timed(make()))
    return times


def report(title: str, times: dict[str, list[float]]) -> None:
    medians = {name: statistics.median(values) for name, values in times.items()}
    if not medians:
        return
    line = f"  {title:16s}" + "".join(f"  {name} {value * 1000:7.1f} ms" for name, value in medians.items())
    if "minirun-runtime" in medians and "runc" in medians:
        ratio = medians["minirun-runtime"] / medians["runc"]
        line += f"   {ratio:.2f}x"
        if title in TARGETS:
            line += f" (target <= {TARGETS[title]}x: {'met' if ratio <= TARGETS[title] else 'NOT met'})"
    print(line)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="runs of each engine case")
    parser.add_argument("--verb-runs", type=int, default=30, help="runs of each verb")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--editable", action="store_true", help="time the development venv's minirun-runtime")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench/runtime.py needs root (namespaces, mounts, cgroups)")
    work = Path(tempfile.mkdtemp(prefix="minirun-rtbench-"))
    cgroup_parent = f"mc-rtbench-{secrets.token_hex(4)}"
    results: dict[str, dict[str, list[float]]] = {}
    podman: peerkit.Podman | None = None
    containerd: peerkit.Containerd | None = None
    rts: dict[str, str] = {}
    try:
        rts = runtimes(work, args.editable)
        rootfs = imagekit.busybox_rootfs(work / "rootfs")
        if shutil.which("podman"):
            (work / "podman").mkdir()
            podman = peerkit.Podman(work / "podman")
            (work / "busybox.tar").write_bytes(imagekit.tar_of_dir(rootfs))
            podman("import", str(work / "busybox.tar"), IMAGE)
            base = [*podman.base, "--runtime"]
            opts = podman.run_args("--rm", "--network", "none", IMAGE, "true")
            case = {name: (lambda rt=rt: [*base, rt, *opts]) for name, rt in rts.items()}
            results["podman run --rm"] = interleaved("podman run --rm", case, args.runs, args.warmup)
        else:
            print("podman: not installed, its case left out")
        if shutil.which("containerd") and shutil.which("ctr"):
            (work / "containerd").mkdir()
            containerd = peerkit.Containerd(work / "containerd")
            img = imagekit.image([imagekit.tar_of_dir(rootfs)], oci=True)
            (work / "busybox-oci.tar").write_bytes(archivekit.docker_save_oci(img, ["mc-bench-busybox:latest"]))
            containerd.ctr("images", "import", str(work / "busybox-oci.tar"))
            ctr = ["ctr", "--address", containerd.address, "--namespace", containerd.namespace, "run", "--rm"]

            def ctr_run(rt: str, ctd: peerkit.Containerd = containerd) -> list[str]:
                cid = f"b{secrets.token_hex(6)}"
                return [*ctr, *ctd.run_args(rt, cid), IMAGE, cid, "true"]

            case = {name: (lambda rt=rt: ctr_run(rt)) for name, rt in rts.items()}
            results["ctr run --rm"] = interleaved("ctr run --rm", case, args.runs, args.warmup)
        else:
            print("containerd: not installed, its case left out")
        for verb, case in verb_commands(work, rootfs, rts, cgroup_parent).items():
            results[verb] = interleaved(verb, case, args.verb_runs, args.warmup)
    finally:
        for name, rt in rts.items():
            root = str(work / f"state-{name}")
            subprocess.run([rt, "--root", root, "delete", "--force", f"bench-{name}"], capture_output=True)
        if podman:
            podman.close()
        if containerd:
            containerd.stop()
        peerkit.unmount_under(work)
        peerkit.remove_cgroup_tree(cgroup_parent)
        shutil.rmtree(work, ignore_errors=True)

    print(f"median wall time: engines {args.runs} runs, verbs {args.verb_runs} runs (after {args.warmup} warm-up each)")
    for title, times in results.items():
        report(title, times)
    for where, why in FAILED.items():
        print(f"  NOT measured: {where} fails: {why}")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
