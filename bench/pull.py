#!/usr/bin/env python3
"""Cold-pull benchmark: `minibuild pull` beside `podman pull` and `skopeo copy`, in the same run.

    .venv/bin/python bench/pull.py [--runs N] [--small]

A multi-layer image of a few hundred MB is built from host files (/usr/lib/gcc, /usr/lib/python3.11,
/usr/share/doc, /usr/share/man, ...: big files and tens of thousands of small ones, gzip-compressed) and
pushed to a local docker-registry on 127.0.0.1. Then, runs interleaved so load changes hit all alike:
  minibuild  `minibuild --root FRESH pull IMAGE` (a fresh store each run: blobs, unpacked layers, record)
  podman     `podman --root FRESH --runroot FRESH pull --tls-verify=false IMAGE` (overlay driver)
  skopeo     `skopeo copy --src-tls-verify=false docker://IMAGE oci:FRESH` (blobs only, no unpacking)
Prints medians and minibuild's ratio to each. Target: minibuild <= 0.7 x podman for a cold pull.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tarfile
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

import benchkit  # noqa: E402
from benchkit import timed, unmount_under  # noqa: E402
from kits import imagekit, registrykit  # noqa: E402

MINIBUILD = str(Path(sys.executable).with_name("minibuild"))
TARGET = 0.7
LAYERS = [
    ["/usr/lib/gcc"],
    ["/usr/lib/python3.11"],
    ["/usr/share/doc"],
    ["/usr/share/vim", "/usr/share/perl"],
    ["/usr/share/man"],
    ["/usr/lib/git-core"],
    ["/etc"],
]
SMALL_LAYERS = [["/usr/lib/python3.11"], ["/usr/share/perl"], ["/etc"]]


def layer_tar(paths: list[str]) -> bytes:
    """An uncompressed layer of host directories (regular files, dirs, symlinks, hard links; nothing special)."""
    import io

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for top in paths:
            for dirpath, dirnames, filenames in os.walk(top):
                dirnames.sort()
                for name in [None, *sorted(filenames)]:
                    path = dirpath if name is None else os.path.join(dirpath, name)
                    try:
                        info = tar.gettarinfo(path, arcname=path.lstrip("/"))
                        if info.isreg():
                            with open(path, "rb") as f:
                                tar.addfile(info, f)
                        elif info.isdir() or info.issym() or info.islnk():
                            tar.addfile(info)
                    except (PermissionError, FileNotFoundError, OSError):
                        continue
                for d in dirnames:  # symlinks to directories are listed as dirs by os.walk
                    path = os.path.join(dirpath, d)
                    if os.path.islink(path):
                        tar.addfile(tar.gettarinfo(path, arcname=path.lstrip("/")))
    return buf.getvalue()


def gzip_layer(tar: bytes) -> bytes:
    from isal import igzip

    return igzip.compress(tar, compresslevel=2, mtime=0)


def build_image(layer_paths: list[list[str]]) -> imagekit.Image:
    with ThreadPoolExecutor(2) as pool:
        tars = list(pool.map(layer_tar, layer_paths))
    img = imagekit.image(tars, compression="none")  # gives diff_ids and config; layers gzip-ed below
    with ThreadPoolExecutor(2) as pool:
        blobs = list(pool.map(gzip_layer, tars))
    import json

    manifest = json.loads(img.manifest)
    manifest["layers"] = [
        {"mediaType": imagekit.MEDIA_DOCKER_LAYER_GZIP, "digest": imagekit.sha256(b), "size": len(b)} for b in blobs
    ]
    raw = json.dumps(manifest, indent=3).encode()
    all_blobs = {img.config_digest: img.config, **{imagekit.sha256(b): b for b in blobs}}
    return imagekit.Image(raw, imagekit.MEDIA_DOCKER_MANIFEST, img.config, all_blobs, img.diff_ids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--small", action="store_true", help="a ~80 MB image, for a quick look")
    parser.add_argument("--only", choices=["minibuild", "podman", "skopeo"], action="append")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (podman with its own --root, unpacking with owners)")
    work = Path(tempfile.mkdtemp(prefix="mcbp-", dir="/tmp"))  # short: podman limits --runroot to 50 chars
    env = registrykit.env_without_proxies()
    try:
        t = time.perf_counter()
        img = build_image(SMALL_LAYERS if args.small else LAYERS)
        layers = [b for d, b in img.blobs.items() if d != img.config_digest]
        size = sum(len(b) for b in layers)
        print(f"image: {len(layers)} layers, {size / 1e6:.0f} MB compressed (built in {time.perf_counter() - t:.0f}s)")
        with registrykit.RegistryServer(work / "registry") as reg:
            ref = f"{reg.endpoint}/bench/pull:latest"
            registrykit.push_image(reg.url, "bench/pull", "latest", img)
            del img, layers
            tools = {
                "minibuild": lambda d: [MINIBUILD, "--root", str(d), "pull", "-q", ref],
                "podman": lambda d: [
                    *benchkit.podman(d / "root", d / "run", events="none"), "pull", "-q", "--tls-verify=false", ref,
                ],
                "skopeo": lambda d: [
                    "skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{ref}", f"oci:{d}/oci"
                ],
            }  # fmt: skip
            tools = {k: v for k, v in tools.items() if not args.only or k in args.only}
            for name in list(tools):
                if name != "minibuild" and shutil.which(name) is None:
                    print(f"{name}: not installed, skipped")
                    del tools[name]
            times: dict[str, list[float]] = {name: [] for name in tools}
            for run in range(args.runs):
                for name, cmd in tools.items():
                    d = work / f"{name[0]}{run}"
                    d.mkdir()
                    times[name].append(timed(cmd(d), env))
                    unmount_under(d)
                    shutil.rmtree(d, ignore_errors=True)
                print(f"run {run + 1}: " + ", ".join(f"{n} {times[n][-1]:.2f}s" for n in tools), flush=True)
        medians = {name: statistics.median(v) for name, v in times.items()}
        print(f"\ncold pull of {size / 1e6:.0f} MB in {len(LAYERS) if not args.small else len(SMALL_LAYERS)} layers, "
              f"median of {args.runs} runs:")  # fmt: skip
        for name, median in medians.items():
            print(f"  {name:<10} {median:7.2f}s")
        mine = medians.get("minibuild")
        for peer in ("podman", "skopeo"):
            if mine and peer in medians:
                ratio = mine / medians[peer]
                verdict = f"  (target <= {TARGET})" if peer == "podman" else ""
                print(f"  minibuild / {peer}: {ratio:.2f}x{verdict}")
    finally:
        unmount_under(work)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
