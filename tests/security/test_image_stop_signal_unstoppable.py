"""An image whose StopSignal no signal matches (a made-up name, a number out of range, a JSON number) made a
container that `minirun stop` could never stop: every `stop` failed on the recorded signal (with a
traceback for a non-string). Docker refuses such an image at create; so does `run` here, in one line,
with nothing left behind. `--stop-signal` still overrides the image's value.
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


@pytest.mark.parametrize("value", ["SIGFOO", "0", "99", "-9", "SIGRTMAX+5", 5, ["SIGTERM"], {"x": 1}])
def test_run_refuses_an_image_stop_signal_that_is_no_signal(
    store_root: Path, store: Store, busybox_rootfs: Path, value: object
) -> None:
    add_rootfs_image(store, busybox_rootfs, "badstop:latest", {"StopSignal": value})
    try:
        for argv in (("run", "-d"), ("create",), ("run", "--rm")):
            result = minirun(store_root, *argv, "badstop:latest", "sleep", "30")
            assert result.returncode == 125, (argv, result.stdout, result.stderr)
            assert result.stderr.count("\n") == 1 and (
                "invalid StopSignal" in result.stderr or "StopSignal is not a string" in result.stderr
            ), result.stderr
    finally:
        for cid in container_ids(store_root):
            minirun(store_root, "rm", "-f", cid)
    assert_nothing_left(store_root)


def test_a_valid_image_stop_signal_is_used_and_the_flag_overrides_a_bad_one(
    store_root: Path, store: Store, busybox_rootfs: Path
) -> None:
    add_rootfs_image(store, busybox_rootfs, "okstop:latest", {"StopSignal": "SIGUSR1"})
    add_rootfs_image(store, busybox_rootfs, "badstop:latest", {"StopSignal": "SIGFOO"})
    try:
        for name, image, flags in (("ok", "okstop:latest", ()), ("flag", "badstop:latest", ("--stop-signal", "TERM"))):
            made = minirun(store_root, "run", "-d", "--name", name, *flags, image, "sleep", "300")
            assert made.returncode == 0, made.stderr
            stopped = minirun(store_root, "stop", "-t", "1", name)
            assert stopped.returncode == 0 and stopped.stderr == "", stopped.stderr
    finally:
        minirun(store_root, "rm", "-f", "ok", "flag")
    assert_nothing_left(store_root)
