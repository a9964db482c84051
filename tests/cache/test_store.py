import json
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import pytest
from minicache import digest as digests
from minicache.errors import DigestMismatch, InvalidDigest, NotFound
from minicache.images import ImageRecord, LayerRef
from minicache.layers import LayerInfo
from minicache.store import Store


def test_blob_put_and_read(store: Store) -> None:
    d = store.blobs.put(b"hello")
    assert d == digests.of_bytes(b"hello")
    assert store.blobs.read(d) == b"hello"
    assert store.blobs.has(d)
    assert store.blobs.put(b"hello") == d
    assert os.listdir(store.tmp_dir) == []


def test_blob_mismatch_stores_nothing(store: Store) -> None:
    wrong = digests.of_bytes(b"other")
    with pytest.raises(DigestMismatch):
        store.blobs.put(b"hello", expected=wrong)
    assert not store.blobs.has(wrong)
    assert store.blobs.all() == []
    assert os.listdir(store.tmp_dir) == []


def test_blob_writer_size_overflow_fails_early(store: Store) -> None:
    with store.blobs.writer(digests.of_bytes(b"abc"), 3) as w, pytest.raises(DigestMismatch):
        w.write(b"abcd")
    assert store.blobs.all() == []


def test_blob_writer_resumes_at_offset(store: Store) -> None:
    data = b"x" * 1000
    with store.blobs.writer(digests.of_bytes(data), len(data)) as w:
        w.write(data[:400])
        assert w.offset == 400
        w.write(data[400:])
        assert w.commit() == digests.of_bytes(data)


@pytest.mark.parametrize("bad", ["sha256:../../etc", "sha256:" + "A" * 64, "md5:" + "0" * 32, "", "sha256:/x"])
def test_digest_validation_guards_paths(store: Store, bad: str) -> None:
    with pytest.raises(InvalidDigest):
        store.blobs.path(bad)


def test_chain_ids() -> None:
    a, b = digests.of_bytes(b"a"), digests.of_bytes(b"b")
    assert digests.chain_ids([a, b]) == [a, digests.of_bytes(f"{a} {b}".encode())]


def _layer(store: Store, content: bytes) -> LayerInfo:
    diff = digests.of_bytes(content)
    staging = Path(store.layers.new_staging())
    (staging / "fs" / "file").write_bytes(content)
    info = LayerInfo(chain_id=diff, diff_id=diff, parent=None, size=len(content))
    store.layers.commit(staging, info, durable=False)
    return info


def test_layer_commit_is_idempotent(store: Store) -> None:
    info = _layer(store, b"one")
    assert store.layers.has(info.chain_id)
    assert (Path(store.layers.fs(info.chain_id)) / "file").read_bytes() == b"one"
    _layer(store, b"one")
    assert store.layers.info(info.chain_id) == info
    assert os.listdir(store.tmp_dir) == []


def test_image_records_and_refs(store: Store) -> None:
    info = _layer(store, b"base")
    config = json.dumps({"rootfs": {"diff_ids": [info.diff_id]}}).encode()
    image_id = store.blobs.put(config)
    record = ImageRecord(id=image_id, layers=(LayerRef(diff_id=info.diff_id, chain_id=info.chain_id),))
    store.images.put(record, ["busybox", "localhost:5000/x:1"])
    assert store.images.resolve("busybox").id == image_id
    assert store.images.resolve("docker.io/library/busybox:latest").id == image_id
    assert store.images.resolve(image_id).id == image_id
    assert store.images.resolve(digests.hex_of(image_id)[:8]).id == image_id
    assert store.images.names_of(image_id) == ["docker.io/library/busybox:latest", "localhost:5000/x:1"]
    store.images.tag("busybox", "mine:2")
    assert store.images.resolve("mine:2").id == image_id
    assert store.images.untag("mine:2") == image_id
    with pytest.raises(NotFound, match="not found"):
        store.images.resolve("mine:2")
    store.images.forget(image_id)
    assert store.images.refs() == {}
    with pytest.raises(NotFound):
        store.images.resolve("busybox")


def test_image_put_refuses_missing_layers(store: Store) -> None:
    d = digests.of_bytes(b"nope")
    with pytest.raises(NotFound):
        store.images.put(ImageRecord(id=d, layers=(LayerRef(diff_id=d, chain_id=d),)), ["x"])
    assert store.images.refs() == {}


def test_debris_of_dead_process_is_cleared(store: Store) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from minicache.store import Store; s = Store(sys.argv[1]); "
            "p = s.staging_dir('layer'); open(p + '/f', 'w').write('x'); print(p)",
            store.root,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    leftover = out.stdout.strip()
    assert os.path.exists(leftover)
    live = Path(store.staging_dir("layer"))
    Store(store.root)
    assert not os.path.exists(leftover)
    assert live.exists()


def _tag_many(root: str, start: int) -> None:
    s = Store(root)
    image_id = s.images.ids()[0]
    for i in range(start, start + 20):
        s.images.tag(image_id, f"t:{i}")


def test_concurrent_tagging_loses_nothing(store: Store) -> None:
    info = _layer(store, b"x")
    image_id = store.blobs.put(b"{}")
    store.images.put(ImageRecord(id=image_id, layers=(LayerRef(diff_id=info.diff_id, chain_id=info.chain_id),)))
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_tag_many, args=(store.root, n * 100)) for n in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    assert len(store.images.refs()) == 80


def test_store_makes_every_folder_it_owns(tmp_path) -> None:
    """Store names and makes every folder under its root: nobody else makes one (networks/, cache/seccomp/ ...)."""
    from minicache.modes import OBJECT_FOLDERS, RECORD_FOLDERS, ROOT_ENTRIES, RUN_ROOT_ENTRIES, RUN_ROOT_FOLDERS

    store = Store(tmp_path / "root")
    assert set(os.listdir(store.root)) - {"run"} == OBJECT_FOLDERS | RECORD_FOLDERS
    assert set(os.listdir(store.run_root)) == RUN_ROOT_FOLDERS
    made = (store.networks_dir, store.seccomp_dir, store.serve_dir, store.run_networks_dir, store.netns_dir)
    for path in map(Path, (*made, store.mounts_dir)):
        assert path.is_dir() and (path.stat().st_mode & 0o777) == 0o700, path
    named = [Path(p) for p in (store.events_log, store.api_socket, store.networks_dir, store.serve_dir)]
    named.append(Path(store.seccomp_dir).parent)
    assert {p.name for p in named if p.parent == Path(store.root)} <= ROOT_ENTRIES
    assert {p.name for p in named if p.parent == Path(store.run_root)} <= RUN_ROOT_ENTRIES


def test_a_root_holding_only_store_records_is_a_store(tmp_path) -> None:
    """Network definitions and the event log are the store's own: a root with only them is no foreign folder."""
    root = tmp_path / "root"
    (root / "networks").mkdir(parents=True, mode=0o700)
    (root / "events.log").write_text("")
    root.chmod(0o700)
    store = Store(root)
    assert Path(store.buildcache_dir).is_dir()


def test_a_read_only_open_does_not_bring_back_run_state(tmp_path) -> None:
    """Run-time state a reboot cleared stays gone until a command that writes opens the store."""
    store = Store(tmp_path / "root")
    run_root = Path(store.run_root)
    for name in os.listdir(run_root):
        os.rmdir(run_root / name)
    os.rmdir(run_root)
    Store(store.root, create=False)
    assert not run_root.exists()
    Store(store.root)
    assert set(os.listdir(run_root)) == {"networks", "netns", "mounts", "runtime"}
