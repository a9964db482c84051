"""Without overlayfs (or with MINICONTAINER_STORAGE_DRIVER=copy) a container's root is the image's layers
copied into one folder. The copy recursed once per folder level, so an image whose layer nests deeper
than the interpreter's recursion limit crashed the container's creation with a RecursionError traceback.
The copy walks without recursion and still sets each folder's owner, mode and times after its contents.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from minicache.rmtree import remove_tree

DEPTH = 1500

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="the copy sets owners (lchown)")]


def _deep(top: Path) -> None:
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(DEPTH):
            os.mkdir("a", 0o750, dir_fd=fd)
            os.chown("a", 1234, 4321, dir_fd=fd)
            below = os.open("a", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = below
        with open(os.open("file", os.O_WRONLY | os.O_CREAT, 0o640, dir_fd=fd), "w") as f:
            f.write("bottom\n")
    finally:
        os.close(fd)


def test_a_layer_deeper_than_the_recursion_limit_is_copied(tmp_path: Path) -> None:
    from minirun.engine.rootfs import flatten

    layer, root = tmp_path / "layer", tmp_path / "root"
    layer.mkdir()
    try:
        _deep(layer)
        flatten([layer], root)
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for _ in range(DEPTH):
                below = os.open("a", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                os.close(fd)
                fd = below
                st = os.fstat(fd)
                assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o750, 1234, 4321)
            with open(os.open("file", os.O_RDONLY, dir_fd=fd)) as f:
                assert f.read() == "bottom\n"
        finally:
            os.close(fd)
    finally:
        remove_tree(layer)  # pytest's own clean-up would recurse too deep
        remove_tree(root)
