"""What a container writes (its upper directory) and what a layer holds may nest deeper than the
interpreter's recursion limit. Measuring them with os.walk (recursive) made `minirun container prune`
and `minibuild prune` die with a RecursionError traceback: one such container or layer kept every
other one from being pruned. Sizes are measured without recursion; both prunes go through.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from kits.runkit import (
    container_ids,
    minirun,
    no_leaks,  # noqa: F401 - autouse fixture: nothing may outlive a test
)
from minicache.store import Store

DEPTH = 1500
MINIBUILD = str(Path(sys.executable).with_name("minibuild"))


def _deep(top: Path) -> None:
    """DEPTH nested folders `a` under `top`, made by descriptor (the path grows past what a path can name)."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(DEPTH):
            os.mkdir("a", dir_fd=fd)
            below = os.open("a", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = below
        with open(os.open("file", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "w") as f:
            f.write("x" * 100)
    finally:
        os.close(fd)


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (containers)")
def test_container_prune_goes_through_a_deep_upper_directory(store_root: Path, busybox_image: str) -> None:
    script = f"d=/deep; i=0; while [ $i -lt {DEPTH} ]; do d=$d/a; i=$((i+1)); done; mkdir -p $d"
    made = minirun(store_root, "run", "--name", "deep", busybox_image, "sh", "-c", script)
    assert made.returncode == 0, made.stderr
    shallow = minirun(store_root, "create", "--name", "plain", busybox_image, "true")
    assert shallow.returncode == 0, shallow.stderr
    try:
        pruned = minirun(store_root, "container", "prune", "-f")
        assert pruned.returncode == 0 and pruned.stderr == "", pruned.stderr[-1000:]
        assert container_ids(store_root) == []
    finally:
        for cid in container_ids(store_root):
            minirun(store_root, "rm", "-f", cid)


@pytest.mark.root  # works the kernel hard (a tree deeper than the recursion limit): not a unit test
def test_image_prune_goes_through_a_deep_layer(store: Store) -> None:
    from minicache.layers import LayerInfo

    staging = Path(store.layers.new_staging())
    _deep(staging / "fs")
    chain = "sha256:" + "d" * 64
    store.layers.commit(staging, LayerInfo(chain, chain, None, 100), durable=False)
    assert store.layers.has(chain)
    try:
        pruned = subprocess.run([MINIBUILD, "--root", store.root, "prune"], capture_output=True, text=True, timeout=120)
        assert pruned.returncode == 0, pruned.stderr[-1000:]
        assert not store.layers.has(chain)
    finally:
        from minicache.rmtree import remove_tree

        remove_tree(Path(store.layers.path(chain)))  # pytest's own clean-up would recurse too deep
