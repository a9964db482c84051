"""Image commands: images, inspect, tag, rm, prune (GC), export, mount/umount."""

from __future__ import annotations

import errno
import io
import json
import os
import tarfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from kits import archivekit, imagekit
from kits.imagekit import Entry, describe_tree
from minibuild import images
from minibuild.importer import import_tarball
from minicache import gc, overlay, usage
from minicache.errors import Conflict, NotFound
from minicache.store import Store
from test_importer import run_cli


@pytest.fixture
def busybox_tar(busybox_rootfs: Path) -> bytes:
    return imagekit.tar_of_dir(busybox_rootfs)


def flat(store: Store, tar: bytes, tag: str | None = None, changes=()) -> str:
    return import_tarball(store, io.BytesIO(tar), tag=tag, changes=list(changes)).images[0][0]


def two_layer(store: Store, tags: list[str]) -> str:
    base = imagekit.layer(
        [
            Entry("etc/", tarfile.DIRTYPE),
            Entry("etc/a", data=b"a"),
            Entry("etc/b", data=b"b"),
            Entry("var/", tarfile.DIRTYPE),
            Entry("var/old", data=b"old"),
        ]
    )
    top = imagekit.layer(
        [Entry("etc/.wh.a"), Entry("etc/c", data=b"c"), Entry("var/", tarfile.DIRTYPE), Entry("var/.wh..wh..opq")]
    )
    img = imagekit.image([base, top])
    import_tarball(store, io.BytesIO(archivekit.docker_save_legacy([(img, tags)], layer_tars=[[base, top]])))
    return img.config_digest


def add_container(store: Store, image_id: str) -> str:
    """A container record as minirun writes it (only "Image" matters to the image commands)."""
    cid = os.urandom(32).hex()
    (Path(store.containers_dir) / cid).mkdir()
    (Path(store.containers_dir) / cid / "container.json").write_text(json.dumps({"Id": cid, "Image": image_id}))
    return cid


@pytest.fixture
def mounted(store: Store):
    """Unmounts whatever a test mounted with `images.mount`, and checks nothing stays mounted."""
    yield
    for point in Path(store.mounts_dir).glob("*"):
        overlay.unmount(point, lazy=True)
        point.rmdir()
    with open("/proc/self/mountinfo") as f:
        assert store.root not in f.read()


# -- images, inspect, tag -----------------------------------------------------------------------------------------
def test_images_table_and_json(store: Store, busybox_tar: bytes) -> None:
    image_id = flat(store, busybox_tar, "demo/busybox:latest")
    images.tag(store, "demo/busybox", "localhost:5000/team/bb:v1")
    dangling = flat(store, imagekit.layer([Entry("x")]))
    rows = images.list_images(store)
    assert {(r.repository, r.tag, r.id) for r in rows} == {
        ("demo/busybox", "latest", image_id),
        ("localhost:5000/team/bb", "v1", image_id),
        ("<none>", "<none>", dangling),
    }
    table = images.images_table(rows).splitlines()
    assert table[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    line = next(t for t in table if t.startswith("demo/busybox"))
    assert image_id.split(":")[1][:12] in line and line.rstrip().endswith("MB")
    proc = run_cli(store, "images", "--format", "json")
    assert proc.returncode == 0
    objs = [json.loads(x) for x in proc.stdout.decode().splitlines()]
    assert {o["Repository"] for o in objs} == {"demo/busybox", "localhost:5000/team/bb", "<none>"}
    proc = run_cli(store, "images", "-q")
    assert sorted(proc.stdout.decode().split()) == sorted({image_id[7:19], dangling[7:19]})


def test_human_since() -> None:
    now = datetime(2026, 1, 10, tzinfo=UTC)
    assert images.human_since((now - timedelta(hours=3)).isoformat(), now) == "3 hours ago"
    assert images.human_since("2026-01-09T23:58:50.123456789Z", now) == "About a minute ago"
    assert images.human_since("2026-01-09T23:58:30Z", now) == "About a minute ago"
    assert images.human_since(None, now) == "N/A"


def test_inspect(store: Store, busybox_tar: bytes) -> None:
    image_id = flat(store, busybox_tar, "insp:1", ["ENV A=1", "WORKDIR /w"])
    (info,) = json.loads(run_cli(store, "inspect", "insp:1").stdout)
    assert info["Id"] == image_id
    assert info["RepoTags"] == ["insp:1"] and info["RepoDigests"] == []
    assert info["Config"]["WorkingDir"] == "/w" and "A=1" in info["Config"]["Env"]
    assert info["Architecture"] == "amd64" and info["Os"] == "linux"
    assert info["RootFS"] == {"Type": "layers", "Layers": [store.images.get(image_id).layers[0].diff_id]}
    assert info["Size"] > 1_000_000 and info["Created"]
    proc = run_cli(store, "inspect", "nope:1")
    assert proc.returncode == 1 and "not found" in proc.stderr.decode()


def test_tag_and_short_id(store: Store, busybox_tar: bytes) -> None:
    image_id = flat(store, busybox_tar, "a:1")
    assert run_cli(store, "tag", image_id[7:19], "b:2").returncode == 0
    assert store.images.resolve("b:2").id == image_id
    proc = run_cli(store, "tag", "a:1", "b@sha256:" + "0" * 64)
    assert proc.returncode == 1


# -- rm -----------------------------------------------------------------------------------------------------------
def test_rm_untags_then_deletes(store: Store, busybox_tar: bytes) -> None:
    image_id = flat(store, busybox_tar, "a:1")
    images.tag(store, "a:1", "b:1")
    assert images.remove(store, ["a:1"]) == ["Untagged: a:1"]
    assert store.images.resolve("b:1").id == image_id
    assert images.remove(store, ["b:1"]) == ["Untagged: b:1", f"Deleted: {image_id}"]
    with pytest.raises(NotFound):
        store.images.get(image_id)
    assert store.layers.all()  # layers and blobs stay until prune


def test_rm_by_id_with_several_tags_needs_force(store: Store, busybox_tar: bytes) -> None:
    image_id = flat(store, busybox_tar, "a:1")
    images.tag(store, "a:1", "b:1")
    with pytest.raises(Conflict, match="multiple repositories"):
        images.remove(store, [image_id[7:19]])
    out = images.remove(store, [image_id], force=True)
    assert out[-1] == f"Deleted: {image_id}" and len(out) == 3


def test_rm_refuses_an_image_a_container_uses(store: Store, busybox_tar: bytes) -> None:
    image_id = flat(store, busybox_tar, "used:1")
    cid = add_container(store, image_id)
    proc = run_cli(store, "rm", "used:1")
    assert proc.returncode == 1
    assert f"container {cid[:12]} is using it" in proc.stderr.decode()
    assert store.images.resolve("used:1").id == image_id
    assert images.remove(store, ["used:1"], force=True) == ["Untagged: used:1"]
    assert store.images.get(image_id).id == image_id  # untagged, but kept for the container


# -- prune ---------------------------------------------------------------------------------------------------------
@pytest.mark.root
def test_prune_removes_only_what_nothing_needs(store: Store, busybox_tar: bytes) -> None:
    keep = two_layer(store, ["keep:1"])
    used = flat(store, imagekit.layer([Entry("used-by-container")]))
    add_container(store, used)
    gone = flat(store, imagekit.layer([Entry("garbage", data=b"g" * 10000)]), "gone:1")
    gone_record = store.images.get(gone)
    images.remove(store, ["gone:1"])
    dangling = flat(store, imagekit.layer([Entry("dangling")]))
    dangling_layer = store.images.get(dangling).layers[0].chain_id
    stray = store.blobs.put(b"a blob nothing refers to")
    debris = Path(store.tmp_dir) / "layer-999999-1-abcdef"  # a dead process's staging folder
    debris.mkdir()
    report = images.prune(store)
    assert report.images == [dangling]
    assert set(report.layers) == {gone_record.layers[0].chain_id, dangling_layer}
    assert stray in report.blobs and gone in report.blobs and report.bytes_freed > 10000
    assert not debris.exists()
    for image_id in (keep, used):
        record = store.images.get(image_id)
        assert all(store.layers.has(c) for c in record.chain_ids)
        assert store.blobs.has(record.id) and store.blobs.has(record.manifest)
    assert gc.check(store) == []
    again = images.prune(store)
    assert (again.images, again.layers, again.blobs) == ([], [], [])


@pytest.mark.root
def test_prune_keeps_a_mounted_image(store: Store, busybox_tar: bytes, mounted) -> None:
    image_id = flat(store, busybox_tar, "m:1")
    images.mount(store, "m:1")
    store.images.untag("m:1")
    report = images.prune(store)
    assert report.images == [] and report.layers == []
    assert store.images.get(image_id)
    images.umount(store, image_id)
    assert images.prune(store).images == [image_id]


def test_prune_waits_for_an_import_in_flight(store: Store) -> None:
    """An importer holds the gc lock shared: prune must not take layers not yet named by a record."""
    holder = gc.hold(store)
    holder.acquire()
    try:
        exclusive = store.lock("gc")
        assert not exclusive.acquire(blocking=False)
    finally:
        holder.release()
    assert exclusive.acquire(blocking=False)
    exclusive.release()


# -- export -------------------------------------------------------------------------------------------------------
@pytest.mark.root
def test_export_round_trip(store: Store, busybox_tar: bytes, tmp_path: Path, mounted) -> None:
    image_id = flat(store, busybox_tar, "rt:1")
    out = tmp_path / "export.tar"
    proc = run_cli(store, "export", "rt:1", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    again = flat(store, out.read_bytes(), "rt:2")
    a = Path(store.layers.fs(store.images.get(image_id).layers[0].chain_id))
    b = Path(store.layers.fs(store.images.get(again).layers[0].chain_id))
    assert describe_tree(a) == describe_tree(b)


@pytest.mark.root
def test_export_applies_whiteouts(store: Store, tmp_path: Path, mounted) -> None:
    two_layer(store, ["wh:1"])
    buf = io.BytesIO()
    images.export(store, "wh:1", buf)
    with tarfile.open(fileobj=io.BytesIO(buf.getvalue())) as tar:
        names = sorted(m.name for m in tar.getmembers())
        assert tar.extractfile("etc/c").read() == b"c"
    assert names == ["etc", "etc/b", "etc/c", "var"]
    assert os.listdir(store.tmp_dir) == []


# -- mount --------------------------------------------------------------------------------------------------------
@pytest.mark.root
def test_mount_and_umount(store: Store, mounted) -> None:
    image_id = two_layer(store, ["mnt:1"])
    proc = run_cli(store, "mount", "mnt:1")
    assert proc.returncode == 0, proc.stderr
    point = Path(proc.stdout.decode().strip())
    assert point == Path(usage.mount_point(store, image_id))
    assert sorted(os.listdir(point / "etc")) == ["b", "c"] and os.listdir(point / "var") == []
    with pytest.raises(OSError) as err:
        (point / "etc/new").write_text("x")
    assert err.value.errno == errno.EROFS
    assert run_cli(store, "mount", "mnt:1").stdout.decode().strip() == str(point)  # idempotent
    with pytest.raises(Conflict, match="mounted"):
        images.remove(store, ["mnt:1"])
    assert run_cli(store, "umount", "mnt:1").returncode == 0
    assert not point.exists() and not overlay.is_mounted(point)
    proc = run_cli(store, "umount", "mnt:1")
    assert proc.returncode == 1 and "not mounted" in proc.stderr.decode()
