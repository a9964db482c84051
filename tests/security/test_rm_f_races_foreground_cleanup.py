"""`rm -f` of a foreground container while its own CLI cleans up: both end without a traceback.

The CLI of `minirun run` (the container's monitor) and `rm -f` both clean up once the process is killed:
the CLI unmounts the root filesystem while `rm` may already have removed the container's folder (before:
FileNotFoundError from umount). Looped, since the window is short.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from kits.runkit import assert_nothing_left, minirun, no_leaks, spawn  # noqa: F401  (no_leaks: autouse)

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root (containers)")]
ROUNDS = 8


def running(store_root: Path, name: str) -> bool:
    link = store_root / "containers" / "names" / name
    try:
        state = json.loads((store_root / "containers" / os.readlink(link) / "state.json").read_text())
    except (FileNotFoundError, ValueError):
        return False
    return state.get("Status") == "running"


@pytest.mark.parametrize("remove_on_exit", [False, True], ids=["run", "run --rm"])
def test_rm_f_while_the_foreground_cli_cleans_up(store_root: Path, busybox_image: str, remove_on_exit: bool) -> None:
    for i in range(ROUNDS):
        name = f"race-{i}"
        flags = ["--rm"] if remove_on_exit else []
        fg = spawn(store_root, "run", *flags, "--name", name, busybox_image, "sleep", "30")
        deadline = time.monotonic() + 20
        while not running(store_root, name):
            assert fg.poll() is None, fg.communicate()
            assert time.monotonic() < deadline, "the container did not start"
            time.sleep(0.01)
        removed = minirun(store_root, "rm", "-f", name)
        _out, err = fg.communicate(timeout=30)
        assert "Traceback" not in err, err
        assert "Traceback" not in removed.stderr, removed.stderr
        assert removed.returncode == 0 or "No such container" in removed.stderr, removed.stderr
        assert fg.returncode in (137, 0), (fg.returncode, err)
    assert_nothing_left(store_root)
