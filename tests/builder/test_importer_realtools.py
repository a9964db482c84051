"""from-tar against archives written by real tools: umoci builds an OCI image, skopeo writes it as a
`docker save`-style docker-archive and as an OCI archive, podman-free."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from kits.imagekit import describe_tree
from minibuild.importer import import_tarball
from minicache import gc
from minicache.store import Store

pytestmark = pytest.mark.skipif(
    not (shutil.which("umoci") and shutil.which("skopeo")), reason="needs umoci and skopeo (apt-get install)"
)


@pytest.fixture(scope="module")
def oci_image(tmp_path_factory: pytest.TempPathFactory, busybox_rootfs: Path) -> tuple[Path, Path]:
    """An OCI layout `layout:bb` whose one layer is the busybox rootfs, and that rootfs as umoci sees it."""
    work = tmp_path_factory.mktemp("umoci")
    layout, bundle = work / "layout", work / "bundle"

    def run(*cmd: str) -> None:
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)

    run("umoci", "init", "--layout", str(layout))
    run("umoci", "new", "--image", f"{layout}:bb")
    run("umoci", "unpack", "--image", f"{layout}:bb", str(bundle))
    shutil.copytree(busybox_rootfs, bundle / "rootfs", symlinks=True, dirs_exist_ok=True)
    (bundle / "rootfs/etc/deleted-later").write_text("x")
    run("umoci", "repack", "--refresh-bundle", "--image", f"{layout}:bb", str(bundle))
    os.unlink(bundle / "rootfs/etc/deleted-later")  # a second layer with a whiteout
    run("umoci", "repack", "--image", f"{layout}:bb", str(bundle))
    run("umoci", "config", "--image", f"{layout}:bb", "--config.cmd", "/bin/sh", "--config.env", "A=1")
    return layout, bundle / "rootfs"


def _skopeo(layout: Path, dest: str) -> None:
    subprocess.run(["skopeo", "copy", "-q", f"oci:{layout}:bb", dest], check=True, capture_output=True, timeout=120)


def _merged(store: Store, image_id: str, tmp_path: Path) -> dict:
    from minibuild import images

    buf = io.BytesIO()
    images.export(store, image_id, buf)
    out = tmp_path / "exported"
    out.mkdir()
    import tarfile

    # Python's extractall sets directory times last; GNU tar's delayed symlinks can touch them after that.
    # filter= came in Python 3.11.4 (Debian 12 has 3.11.2), where extracting without one is the same thing
    trusted = {"filter": "fully_trusted"} if hasattr(tarfile, "fully_trusted_filter") else {}
    with tarfile.open(fileobj=io.BytesIO(buf.getvalue())) as tar:
        tar.extractall(out, numeric_owner=True, **trusted)
    return describe_tree(out)


@pytest.mark.root
@pytest.mark.parametrize("kind", ["docker-archive", "oci-archive"])
def test_skopeo_archives(store: Store, tmp_path: Path, oci_image: tuple[Path, Path], kind: str) -> None:
    layout, rootfs = oci_image
    archive = tmp_path / "image.tar"
    _skopeo(layout, f"{kind}:{archive}:skopeo/bb:1")
    with open(archive, "rb") as f:
        result = import_tarball(store, f, tag=None if kind == "docker-archive" else "from-oci:1")
    assert result.kind == ("docker-save" if kind == "docker-archive" else "oci-layout")
    ((image_id, _names),) = result.images
    name = "skopeo/bb:1" if kind == "docker-archive" else "from-oci:1"
    assert store.images.resolve(name).id == image_id
    config = store.blobs.read_json(image_id)
    assert config["config"]["Cmd"] == ["/bin/sh"] and "A=1" in config["config"]["Env"]
    assert len(store.images.get(image_id).layers) == 2
    merged = _merged(store, image_id, tmp_path)

    assert "etc/deleted-later" not in merged
    source = describe_tree(rootfs)
    # Go's archive/tar rounds mtimes to whole seconds (umoci writes no PAX times): allow that one second.
    assert {k: v[:4] + v[5:] for k, v in merged.items()} == {k: v[:4] + v[5:] for k, v in source.items()}
    off = {k: (merged[k][4], v[4]) for k, v in source.items() if v[4] is not None and abs(merged[k][4] - v[4]) > 1}
    assert not off, off
    assert gc.check(store) == []
