"""Lock files: one per object only while it is worked on, and a waiter never holds a deleted file's lock."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from kits.storekit import add_rootfs_image
from minicache import gc
from minicache.locks import FileLock
from minicache.store import Store

HEX = "ab" * 32


def test_an_object_lock_leaves_no_file(store: Store) -> None:
    with store.lock(f"layer-{HEX}"):
        assert (Path(store.locks_dir) / f"layer-{HEX}.lock").exists()
    assert not (Path(store.locks_dir) / f"layer-{HEX}.lock").exists()
    with store.lock("refs"):  # a fixed lock stays: there is one of it
        pass
    assert sorted(os.listdir(store.locks_dir)) == ["refs.lock"]
    assert os.stat(Path(store.locks_dir) / "refs.lock").st_mode & 0o777 == 0o600


def test_a_waiter_on_a_deleted_lock_file_locks_the_new_one(tmp_path: Path) -> None:
    """Holder A deletes the file as it releases; waiter B (blocked on the old file) must not think it holds the
    lock while C holds the new file: B and C are never inside at the same time."""
    path = tmp_path / "x.lock"
    inside: list[str] = []
    overlap = []

    def work(name: str) -> None:
        for _ in range(200):
            with FileLock(path, transient=True):
                inside.append(name)
                if len(inside) > 1:
                    overlap.append(tuple(inside))
                time.sleep(0.0002)
                inside.remove(name)

    threads = [threading.Thread(target=work, args=(n,)) for n in "ABC"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlap == []
    assert not path.exists()


def test_gc_removes_a_removed_layers_old_lock_file(store: Store, busybox_rootfs: Path) -> None:
    add_rootfs_image(store, busybox_rootfs, "bb:latest")
    chain = store.images.resolve("bb:latest").chain_ids[0]
    hexpart = chain.split(":", 1)[1]
    for kind in ("layer", "unpack", "blob"):  # as the old code left them, one per object for ever
        (Path(store.locks_dir) / f"{kind}-{hexpart}.lock").touch()
    held = FileLock(Path(store.locks_dir) / f"blob-{HEX}.lock")
    held.acquire()
    try:
        store.images.untag("bb:latest")
        report = gc.collect(store)
        assert chain in report.layers
        assert sorted(os.listdir(store.locks_dir)) == sorted(["gc.lock", "refs.lock", f"blob-{HEX}.lock"])
    finally:
        held.release()
