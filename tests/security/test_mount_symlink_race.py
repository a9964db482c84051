"""A directory on a mount destination is swapped for a symlink to a host directory, over and over, while
containers with mounts there start (the shape of runc's CVE-2021-30465). A destination resolved to a
string and mounted by that string can follow the symlink in between and land on the host; resolved and
mounted by descriptor, every mount stays inside the rootfs, and nothing is created on the host."""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
from kits.runkit import (
    mounts_under,
    no_leaks,  # noqa: F401 - autouse fixture: nothing may outlive a test
)
from kits.runtimekit import run_bundle
from minirun.engine import spec

pytestmark = pytest.mark.root

STARTS = 30
_RENAME_EXCHANGE = 2
_libc = ctypes.CDLL(None, use_errno=True)
TARGETS = ("mnt-target", "file-target", "tmpfs-target")


def _exchange(a: bytes, b: bytes) -> None:
    if _libc.renameat2(-100, a, -100, b, _RENAME_EXCHANGE) != 0:  # AT_FDCWD
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), a)


class Swapper(threading.Thread):
    """Atomically exchanges each directory with its symlink twin (renameat2 RENAME_EXCHANGE) until stopped."""

    def __init__(self, pairs: list[tuple[Path, Path]]) -> None:
        super().__init__(name="symlink-swapper", daemon=True)
        self.pairs = [(os.fsencode(a), os.fsencode(b)) for a, b in pairs]
        self.stop = threading.Event()
        self.swaps = 0

    def run(self) -> None:
        while not self.stop.is_set():
            for a, b in self.pairs:
                _exchange(a, b)
            self.swaps += 1


def _mounted_points(mountinfo: str) -> list[str]:
    return [line.split()[4] for line in mountinfo.splitlines() if len(line.split()) > 4]


@pytest.mark.parametrize("resolver", ["openat2", "safetree"])
def test_swapped_symlink_never_takes_a_mount_out_of_the_rootfs(
    tmp_path: Path, busybox_rootfs: Path, resolver: str
) -> None:
    host = tmp_path / "host-target"
    host.mkdir()
    (host / "secret").write_text("host secret\n")
    source = tmp_path / "source"
    source.mkdir()
    (source / "marker").write_text("m\n")
    source_file = tmp_path / "source-file"
    source_file.write_text("f\n")

    bundle = tmp_path / "bundle"
    rootfs = bundle / "rootfs"
    shutil.copytree(busybox_rootfs, rootfs, symlinks=True)
    (rootfs / "data").mkdir()
    (rootfs / "data-swap").symlink_to(host)  # absolute
    (rootfs / "rel").mkdir()
    (rootfs / "rel-swap").symlink_to("../" * 12 + str(host).lstrip("/"))  # climbing out with `..`
    oci = spec.build(
        {"Env": ["PATH=/bin"]},
        spec.RunOptions(command=["cat", "/proc/self/mountinfo"]),
        spec.SpecContext(container_id="e" * 64),
    )
    oci["mounts"] += [
        {"destination": "/data/mnt-target", "type": "bind", "source": str(source), "options": ["rbind", "rprivate"]},
        {"destination": "/data/file-target", "type": "bind", "source": str(source_file), "options": ["bind", "ro"]},
        {"destination": "/rel/tmpfs-target", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "size=1m"]},
    ]
    (bundle / "config.json").write_text(json.dumps(oci))

    swapper = Swapper([(rootfs / "data", rootfs / "data-swap"), (rootfs / "rel", rootfs / "rel-swap")])
    results: list[subprocess.CompletedProcess[str]] = []
    swapper.start()
    try:
        for i in range(STARTS):
            results.append(
                run_bundle(
                    bundle,
                    f"race-{i}",
                    env={**os.environ, "MINICONTAINER_RESOLVER": resolver},
                )
            )
    finally:
        swapper.stop.set()
        swapper.join()

    assert swapper.swaps > STARTS  # the tree really changed under the starts
    assert sorted(os.listdir(host)) == ["secret"]  # no mount point was created on the host
    assert mounts_under(host) == [] and mounts_under(tmp_path) == []
    started = 0
    for result in results:
        if result.returncode != 0:
            # Refusing a start whose mount point moved under it is fine; escaping or crashing is not.
            assert result.returncode == 125, result.stderr
            assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
            continue
        started += 1
        names = [os.path.basename(p) for p in _mounted_points(result.stdout)]
        for target in TARGETS:  # each mount is in the container's own tree (one that escaped would not be)
            assert names.count(target) == 1, (target, result.stdout)
    assert started > 0
