"""`minibuild from-tar`: flat exports, docker save archives (both layouts), OCI layout archives."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from kits import archivekit, imagekit
from kits.imagekit import Entry, describe_tree
from minibuild.changes import config_from_changes
from minibuild.importer import import_tarball
from minicache import digest as digests
from minicache import gc, tarsplit
from minicache.errors import DigestMismatch, InvalidArchive, InvalidSpec
from minicache.store import Store

MINIBUILD = [sys.executable, "-m", "minibuild.cli"]


def run_cli(store: Store, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*MINIBUILD, "--root", store.root, *args], input=stdin, capture_output=True, timeout=120, check=False
    )


def snapshot_counts(store: Store) -> tuple[int, int, int]:
    return len(store.blobs.all()), len(store.layers.all()), len(store.images.ids())


@pytest.fixture
def busybox_tar(busybox_rootfs: Path) -> bytes:
    return imagekit.tar_of_dir(busybox_rootfs)


# -- flat exports -------------------------------------------------------------------------------------------------
def test_flat_export_import(store: Store, busybox_tar: bytes, busybox_rootfs: Path) -> None:
    result = import_tarball(store, io.BytesIO(busybox_tar), tag="imported:1", changes=['CMD ["/bin/sh"]'])
    assert result.kind == "export"
    ((image_id, names),) = result.images
    assert names == ["docker.io/library/imported:1"]
    record = store.images.resolve("imported:1")
    assert record.id == image_id
    diff_id = digests.of_bytes(busybox_tar)
    assert [layer.diff_id for layer in record.layers] == [diff_id]
    assert record.layers[0].digest == diff_id and not store.blobs.has(diff_id)  # rebuilt for push, not stored
    with tarsplit.open_layer_tar(store, record.layers[0].chain_id) as f:
        assert f.read() == busybox_tar
    config = store.blobs.read_json(image_id)
    assert config["rootfs"]["diff_ids"] == [diff_id]
    assert config["config"]["Cmd"] == ["/bin/sh"]
    manifest = store.blobs.read_json(record.manifest)
    assert manifest["config"]["digest"] == image_id
    assert manifest["layers"][0] == {"mediaType": imagekit.MEDIA_OCI_LAYER, "digest": diff_id, "size": len(busybox_tar)}
    assert describe_tree(Path(store.layers.fs(record.layers[0].chain_id))) == describe_tree(busybox_rootfs)
    assert gc.check(store) == []
    assert os.listdir(store.tmp_dir) == []


def test_same_tarball_twice_stores_nothing_twice(store: Store, busybox_tar: bytes) -> None:
    first = import_tarball(store, io.BytesIO(busybox_tar), tag="a:1")
    counts = snapshot_counts(store)
    created = store.images.get(first.images[0][0]).created
    again = import_tarball(store, io.BytesIO(imagekit.gz(busybox_tar)), tag="a:1")
    assert again.images[0][0] == first.images[0][0]
    assert snapshot_counts(store) == counts
    assert store.images.get(first.images[0][0]).created == created
    assert os.listdir(store.tmp_dir) == []


def test_flat_export_without_layer_blob(store: Store, busybox_tar: bytes) -> None:
    result = import_tarball(store, io.BytesIO(busybox_tar), keep_layer_blob=False)
    record = store.images.get(result.images[0][0])
    assert record.layers[0].digest is None
    assert not store.blobs.has(record.layers[0].diff_id)
    assert not tarsplit.has_record(store, record.layers[0].chain_id)
    assert gc.check(store) == []


@pytest.mark.parametrize("compress", [imagekit.gz, imagekit.zst], ids=["gzip", "zstd"])
def test_compressed_export_from_stdin_cli(store: Store, busybox_tar: bytes, compress) -> None:
    proc = run_cli(store, "from-tar", "-", "--tag", "piped:latest", stdin=compress(busybox_tar))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.decode().strip()
    assert out.startswith("sha256:") and len(out) == 71
    assert store.images.resolve("piped").id == out


def test_export_with_dot_slash_names(store: Store, busybox_rootfs: Path) -> None:
    data = subprocess.run(["tar", "-C", str(busybox_rootfs), "-cf", "-", "."], capture_output=True, check=True).stdout
    result = import_tarball(store, io.BytesIO(data))
    assert result.kind == "export"
    fs = Path(store.layers.fs(store.images.get(result.images[0][0]).layers[0].chain_id))
    assert (fs / "bin/busybox").is_file()


def test_empty_tar_is_an_empty_rootfs(store: Store) -> None:
    result = import_tarball(store, io.BytesIO(bytes(10240)))
    assert result.kind == "export"
    assert os.listdir(store.layers.fs(store.images.get(result.images[0][0]).layers[0].chain_id)) == []


# -- --change -----------------------------------------------------------------------------------------------------
def test_changes_all_instructions() -> None:
    config = config_from_changes(
        [
            'CMD ["/bin/sh", "-c", "echo hi"]',
            "ENTRYPOINT /entry.sh --flag",
            "ENV A=1 B='two words'",
            "ENV LEGACY some value",
            "ENV A=3",
            "WORKDIR /srv",
            "USER 1000:1000",
            "EXPOSE 80 53/udp",
            'LABEL org.example.x=1 "quoted key"=v',
            'VOLUME ["/data", "/logs"]',
            "VOLUME /cache",
            "STOPSIGNAL SIGINT",
            "cmd echo lower-case instruction",
        ]
    )
    assert config["Cmd"] == ["/bin/sh", "-c", "echo lower-case instruction"]
    assert config["Entrypoint"] == ["/bin/sh", "-c", "/entry.sh --flag"]
    assert config["Env"] == [
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "B=two words",
        "LEGACY=some value",
        "A=3",
    ]
    assert config["WorkingDir"] == "/srv" and config["User"] == "1000:1000"
    assert config["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}}
    assert config["Labels"] == {"org.example.x": "1", "quoted key": "v"}
    assert config["Volumes"] == {"/data": {}, "/logs": {}, "/cache": {}}
    assert config["StopSignal"] == "SIGINT"


@pytest.mark.parametrize("bad", ["RUN echo hi", "CMD", "EXPOSE http", "ENV =x", "ENV ONLYKEY", "", "ENV A='x"])
def test_bad_changes(bad: str) -> None:
    with pytest.raises(InvalidSpec):
        config_from_changes([bad])


def test_bad_change_cli_message(store: Store, busybox_tar: bytes, tmp_path: Path) -> None:
    path = tmp_path / "rootfs.tar"
    path.write_bytes(busybox_tar)
    proc = run_cli(store, "from-tar", str(path), "--change", "RUN rm -rf /")
    assert proc.returncode == 1
    err = proc.stderr.decode().strip()
    assert err.startswith("minibuild: error: --change 'RUN rm -rf /': RUN is not supported; supported: CMD")
    assert len(err.splitlines()) == 1
    assert snapshot_counts(store) == (0, 0, 0)


# -- image archives -----------------------------------------------------------------------------------------------
def _two_layer_image(oci: bool = False, compression: str = "none"):
    base = imagekit.layer([Entry("etc/", tarfile.DIRTYPE), Entry("etc/a", data=b"a"), Entry("etc/b", data=b"b")])
    top = imagekit.layer([Entry("etc/.wh.a"), Entry("etc/c", data=b"c")])
    return imagekit.image([base, top], oci=oci, compression=compression), [base, top]


def _check_two_layer(store: Store, image_id: str) -> None:
    record = store.images.get(image_id)
    assert len(record.layers) == 2
    top = Path(store.layers.fs(record.layers[1].chain_id))
    assert stat.S_ISCHR((top / "etc/a").lstat().st_mode)
    assert (top / "etc/c").read_bytes() == b"c"
    assert store.layers.info(record.layers[1].chain_id).parent == record.layers[0].chain_id
    assert gc.check(store) == []
    assert os.listdir(store.tmp_dir) == []


@pytest.mark.root
def test_docker_save_legacy(store: Store) -> None:
    img, tars = _two_layer_image()
    img2 = imagekit.image([tars[0]], config={"Cmd": ["/bin/true"]})
    archive = archivekit.docker_save_legacy(
        [(img, ["app:1", "app:latest"]), (img2, ["other/base:2"])], layer_tars=[tars, [tars[0]]]
    )
    result = import_tarball(store, io.BytesIO(archive))
    assert result.kind == "docker-save"
    assert {i for i, _ in result.images} == {img.config_digest, img2.config_digest}
    _check_two_layer(store, img.config_digest)
    assert store.images.resolve("app:latest").id == img.config_digest
    assert store.images.resolve("other/base:2").id == img2.config_digest
    record = store.images.get(img.config_digest)
    manifest = store.blobs.read_json(record.manifest)  # generated: legacy archives carry none
    assert [d["digest"] for d in manifest["layers"]] == [layer.digest for layer in record.layers]
    assert store.layers.all().count(record.layers[0].chain_id) == 1  # the shared base layer is unpacked once


@pytest.mark.root
def test_docker_save_cli_output(store: Store, tmp_path: Path) -> None:
    img, tars = _two_layer_image()
    path = tmp_path / "save.tar.gz"
    path.write_bytes(imagekit.gz(archivekit.docker_save_legacy([(img, ["app:1"])], layer_tars=[tars])))
    proc = run_cli(store, "from-tar", str(path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode() == "Loaded image: app:1\n"
    untagged = imagekit.image([tars[0]], config={"Cmd": ["/x"]})
    path.write_bytes(archivekit.docker_save_legacy([(untagged, [])], layer_tars=[[tars[0]]]))
    proc = run_cli(store, "from-tar", str(path))
    assert proc.stdout.decode() == f"Loaded image ID: {untagged.config_digest}\n"


@pytest.mark.root
def test_docker_save_oci_style(store: Store) -> None:
    img, _ = _two_layer_image(oci=True, compression="gzip")
    result = import_tarball(store, io.BytesIO(archivekit.docker_save_oci(img, ["new:1"])))
    assert result.kind == "docker-save"
    _check_two_layer(store, img.config_digest)
    record = store.images.resolve("new:1")
    assert record.manifest == img.digest  # the archive's own manifest, not a generated one
    assert record.layers[0].media_type == imagekit.MEDIA_OCI_LAYER_GZIP


@pytest.mark.root
@pytest.mark.parametrize("dot", [False, True], ids=["plain-names", "dot-slash-names"])
def test_oci_layout_archive(store: Store, dot: bool) -> None:
    img, _ = _two_layer_image(oci=True, compression="zstd")
    archive = archivekit.oci_layout([(img, {})], ref_name="latest", dot=dot)
    result = import_tarball(store, io.BytesIO(archive), tag="from-oci:7")
    assert result.kind == "oci-layout"
    assert result.images == [(img.config_digest, ["docker.io/library/from-oci:7"])]
    _check_two_layer(store, img.config_digest)
    assert store.images.get(img.config_digest).manifest == img.digest


@pytest.mark.root
def test_oci_layout_with_full_reference_annotation(store: Store) -> None:
    img, _ = _two_layer_image(oci=True, compression="gzip")
    import_tarball(store, io.BytesIO(archivekit.oci_layout([(img, {})], ref_name="registry.example:5000/x/y:3")))
    assert store.images.resolve("registry.example:5000/x/y:3").id == img.config_digest


@pytest.mark.root
def test_oci_layout_multi_platform_picks_host(store: Store) -> None:
    amd, _ = _two_layer_image(oci=True, compression="gzip")
    arm = imagekit.image([imagekit.layer([Entry("arm")])], oci=True, architecture="arm64")
    archive = archivekit.oci_layout(
        [(arm, {"os": "linux", "architecture": "arm64"}), (amd, {"os": "linux", "architecture": "amd64"})],
        as_index=True,
    )
    result = import_tarball(store, io.BytesIO(imagekit.gz(archive)))
    assert [i for i, _ in result.images] == [amd.config_digest]


@pytest.mark.root
def test_archive_import_twice_stores_nothing_twice(store: Store) -> None:
    img, tars = _two_layer_image()
    archive = archivekit.docker_save_legacy([(img, ["app:1"])], layer_tars=[tars])
    import_tarball(store, io.BytesIO(archive))
    counts = snapshot_counts(store)
    import_tarball(store, io.BytesIO(archive))
    assert snapshot_counts(store) == counts


# -- refusals -----------------------------------------------------------------------------------------------------
@pytest.mark.root
def test_layer_not_matching_its_diff_id(store: Store) -> None:
    img, tars = _two_layer_image()
    forged = imagekit.layer([Entry("etc/", tarfile.DIRTYPE), Entry("etc/a", data=b"FORGED"), Entry("etc/b")])
    archive = archivekit.docker_save_legacy([(img, ["app:1"])], layer_tars=[[forged, tars[1]]])
    with pytest.raises(DigestMismatch):
        import_tarball(store, io.BytesIO(archive))
    assert store.images.ids() == [] and store.images.refs() == {}
    assert store.layers.all() == []
    assert gc.check(store) == []


def test_archive_without_manifest(store: Store) -> None:
    data = archivekit._tar(lambda tar: archivekit._add(tar, "repositories", b"{}"))
    with pytest.raises(InvalidArchive, match=r"neither manifest\.json"):
        import_tarball(store, io.BytesIO(data))
    assert store.images.ids() == []


def test_change_on_an_archive_is_refused(store: Store) -> None:
    img, tars = _two_layer_image()
    with pytest.raises(InvalidArchive, match="--change applies to flat"):
        import_tarball(
            store, io.BytesIO(archivekit.docker_save_legacy([(img, [])], layer_tars=[tars])), changes=["CMD x"]
        )


@pytest.mark.parametrize(
    "data",
    [b"", b"hello world, not a tar\n" * 100, imagekit.gz(b"not a tar either" * 100)],
    ids=["empty", "text", "gz"],
)
def test_not_a_tarball(store: Store, data: bytes) -> None:
    with pytest.raises(InvalidArchive):
        import_tarball(store, io.BytesIO(data))
    assert snapshot_counts(store) == (0, 0, 0)
    assert os.listdir(store.tmp_dir) == []


def test_missing_file_cli(store: Store, tmp_path: Path) -> None:
    proc = run_cli(store, "from-tar", str(tmp_path / "nope.tar"))
    assert proc.returncode == 1
    assert proc.stderr.decode().startswith("minibuild: error: no such file:")


def test_truncated_export_leaves_nothing(store: Store, busybox_tar: bytes) -> None:
    with pytest.raises(InvalidArchive):
        import_tarball(store, io.BytesIO(busybox_tar[: len(busybox_tar) // 2]), tag="half:1")
    assert snapshot_counts(store) == (0, 0, 0)
    assert os.listdir(store.tmp_dir) == []


def test_json_output_is_valid(store: Store, busybox_tar: bytes) -> None:
    import_tarball(store, io.BytesIO(busybox_tar), tag="j:1")
    proc = run_cli(store, "images", "--format", "json")
    rows = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    assert [(r["Repository"], r["Tag"]) for r in rows] == [("j", "1")]
