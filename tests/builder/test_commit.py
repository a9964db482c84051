"""`minirun commit`: a container's upper directory becomes a layer through the build's differ."""

from __future__ import annotations

import os

import pytest
from kits.buildkit import config_of, image_tree
from kits.runkit import (
    minirun,
    no_leaks,  # noqa: F401 - autouse: nothing may outlive a test
)
from minicache import gc
from minicache.overlay import supported
from minicache.store import Store

pytestmark = [pytest.mark.root, pytest.mark.skipif(not supported() or os.geteuid() != 0, reason="needs root + overlay")]


def test_commit_makes_a_layer_of_the_changes(store: Store, busybox_image: str) -> None:
    script = "echo changed > /root/new && rm /bin/yes && mkdir -p /srv/x && rm -rf /home/user && mkdir /home/user"
    run = minirun(store.root, "run", "--name", "c1", "-e", "MODE=test", "-w", "/srv", busybox_image, "sh", "-c", script)
    assert run.returncode == 0, run.stderr
    try:
        done = minirun(store.root, "commit", "-m", "my change", "-a", "Jane", "c1", "committed:1")
        assert done.returncode == 0, done.stderr
        image_id = done.stdout.strip()
    finally:
        assert minirun(store.root, "rm", "c1").returncode == 0
    assert store.images.resolve("committed:1").id == image_id
    tree = image_tree(store, "committed:1")
    assert tree["root/new"][4] == b"changed\n" and "bin/yes" not in tree and tree["srv/x"][0] == "dir"
    assert "home/user" in tree and "etc/hosts" not in tree and "etc/resolv.conf" not in tree
    cfg = config_of(store, "committed:1")
    assert cfg["author"] == "Jane" and cfg["history"][-1]["comment"] == "my change"
    assert "MODE=test" in cfg["config"]["Env"] and cfg["config"]["WorkingDir"] == "/srv"
    assert cfg["config"]["Cmd"] == ["sh", "-c", script]
    again = minirun(store.root, "run", "--rm", "committed:1", "cat", "/root/new")
    assert again.returncode == 0 and again.stdout == "changed\n"
    assert gc.check(store) == []


def test_commit_errors(store: Store, busybox_image: str) -> None:
    missing = minirun(store.root, "commit", "no-such-container", "x:1")
    assert missing.returncode == 1 and "No such container" in missing.stderr
    assert minirun(store.root, "create", "--name", "c2", busybox_image, "true").returncode == 0
    try:
        bad = minirun(store.root, "commit", "c2", "Not A Name")
        assert bad.returncode == 1 and "error" in bad.stderr and "Traceback" not in bad.stderr
        empty = minirun(store.root, "commit", "c2")  # nothing changed: no new layer, a new history entry
        assert empty.returncode == 0, empty.stderr
        record = store.images.get(empty.stdout.strip())
        assert record.chain_ids == store.images.resolve(busybox_image).chain_ids
    finally:
        minirun(store.root, "rm", "c2")
