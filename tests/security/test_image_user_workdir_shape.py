"""An image config is JSON from anywhere: a `User` or `WorkingDir` that is no string (a number, a list, an
object) made `run` crash with a traceback at start and left a container behind. It is refused when the
container is made, in one line with exit code 125, and nothing is left.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from kits.runkit import (
    assert_nothing_left,
    container_ids,
    minirun,
    no_leaks,  # noqa: F401 - autouse fixture: nothing may outlive a test
)
from kits.storekit import add_rootfs_image
from minicache.store import Store

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root (containers)")]


@pytest.mark.parametrize(
    ("config", "word"),
    [
        ({"User": 5}, "User"),
        ({"User": ["root"]}, "User"),
        ({"User": {"name": "root"}}, "User"),
        ({"WorkingDir": 5}, "WorkingDir"),
        ({"WorkingDir": ["/"]}, "WorkingDir"),
        ({"WorkingDir": True}, "WorkingDir"),
    ],
)
def test_a_user_or_workdir_of_the_wrong_shape_is_one_line(
    store_root: Path, store: Store, busybox_rootfs: Path, config: dict, word: str
) -> None:
    add_rootfs_image(store, busybox_rootfs, "shape:latest", config)
    try:
        for argv in (("run", "--rm"), ("run", "-d"), ("create",)):
            result = minirun(store_root, *argv, "shape:latest", "true")
            assert result.returncode == 125, (argv, result.stdout, result.stderr)
            assert result.stderr.count("\n") == 1 and f"{word} is not a string" in result.stderr, result.stderr
    finally:
        for cid in container_ids(store_root):
            minirun(store_root, "rm", "-f", cid)
    assert_nothing_left(store_root)


def test_the_right_shapes_still_run(store_root: Path, store: Store, busybox_rootfs: Path) -> None:
    add_rootfs_image(store, busybox_rootfs, "shape:latest", {"User": "65534:65534", "WorkingDir": "/tmp/work"})
    result = minirun(store_root, "run", "--rm", "shape:latest", "sh", "-c", "id -u; pwd")
    assert (result.returncode, result.stdout.split()) == (0, ["65534", "/tmp/work"]), result.stderr
    assert_nothing_left(store_root)
