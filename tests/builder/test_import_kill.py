"""`minibuild from-tar` killed with SIGKILL at many moments: never a half image, and the next import works."""

from __future__ import annotations

import io
import os
import random
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from kits import archivekit, imagekit
from kits.imagekit import describe_tree
from minicache import gc
from minicache.store import Store

# Not uid 0, but real processes killed at many moments: an integration test, kept out of the unit lane.
pytestmark = pytest.mark.root


def _rootfs_tar(n_files: int = 1500, size: int = 16_000) -> bytes:
    rng = random.Random(7)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in range(30):
            info = tarfile.TarInfo(f"dir{d}")
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for i in range(n_files):
            data = rng.randbytes(size)
            info = tarfile.TarInfo(f"dir{i % 30}/file{i}")
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _archive() -> bytes:
    layers = [_rootfs_tar(600), _rootfs_tar(600, 20_000)]
    img = imagekit.image(layers)
    return imagekit.gz(archivekit.docker_save_legacy([(img, ["killed:1"])], layer_tars=[layers]))


def _import(root: Path, path: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "minibuild.cli", "--root", str(root), "from-tar", str(path), *extra]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _consistent(root: Path) -> Store:
    store = Store(root)  # opening a store clears what dead processes left in tmp/
    assert gc.check(store) == []
    assert os.listdir(store.tmp_dir) == []
    for name in store.images.refs():
        record = store.images.resolve(name)  # a visible name always leads to a complete image
        assert all(store.layers.has(c) for c in record.chain_ids)
    return store


@pytest.mark.parametrize("kind", ["export", "docker-save"])
def test_sigkill_at_random_moments(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "input.tar"
    path.write_bytes(_rootfs_tar() if kind == "export" else _archive())
    extra = ["--tag", "killed:1"] if kind == "export" else []
    probe_root = tmp_path / "probe"
    start = time.monotonic()
    probe = _import(probe_root, path, *extra)
    assert probe.wait(120) == 0, probe.stderr.read()
    duration = time.monotonic() - start
    expected = describe_tree(Store(probe_root).layers.fs(Store(probe_root).images.resolve("killed:1").chain_ids[-1]))

    root = tmp_path / "store"
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    fractions = [0.05, 0.2, 0.35, 0.5, 0.65, 0.8, 0.9, 0.97, 1.05, 1.15] + [rng.random() for _ in range(3)]
    outcomes = []
    for fraction in fractions:
        proc = _import(root, path, *extra)
        time.sleep(duration * fraction)
        proc.kill()
        status = proc.wait(60)
        proc.stderr.close()
        store = _consistent(root)
        outcomes.append((round(fraction, 2), status, "killed:1" in str(store.images.refs())))
    # The import after all those kills completes and yields exactly what an undisturbed one does.
    final = _import(root, path, *extra)
    assert final.wait(120) == 0, (seed, final.stderr.read())
    final.stderr.close()
    store = _consistent(root)
    assert describe_tree(store.layers.fs(store.images.resolve("killed:1").chain_ids[-1])) == expected, (seed, outcomes)
    assert any(status == -9 for _, status, _ in outcomes), outcomes  # at least some kills landed mid-import
