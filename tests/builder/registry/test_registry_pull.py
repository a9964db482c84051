"""`minibuild pull` against a real docker-registry: formats, platforms, references, dedup, progress, push."""

from __future__ import annotations

import gzip
import json
import os
import re
import tarfile
from pathlib import Path

import pytest
from kits import imagekit, registrykit
from kits.imagekit import Entry
from kits.pullkit import FAST, MINIBUILD, blob_gets, check_rich_rootfs, do_pull, mounted_rootfs, rich_layers, run_cli
from minibuild.errors import RegistryError
from minibuild.push import push
from minibuild.registry import mediatypes as mt
from minibuild.registry.settings import Settings
from minicache import gc
from minicache.errors import DigestMismatch, InvalidReference, InvalidSpec, NotFound
from minicache.store import Store

pytestmark = pytest.mark.root

VARIANTS = {
    "docker-gzip": {"compression": "gzip", "oci": False},
    "oci-gzip": {"compression": "gzip", "oci": True},
    "oci-zstd": {"compression": "zstd", "oci": True},
    "oci-none": {"compression": "none", "oci": True},
}


@pytest.fixture(scope="module")
def rich(registry: registrykit.RegistryServer) -> dict[str, imagekit.Image]:
    """The rich test image in every variant, pushed as test/rich:<variant>."""
    layers = rich_layers()
    out = {}
    for name, kw in VARIANTS.items():
        out[name] = imagekit.image(layers, **kw)
        registrykit.push_image(registry.url, "test/rich", name, out[name])
    return out


def assert_clean(store: Store) -> None:
    assert gc.check(store) == []
    assert os.listdir(store.tmp_dir) == []


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_pull_each_format_file_by_file(store: Store, registry, rich, variant: str, tmp_path: Path) -> None:
    img = rich[variant]
    result = do_pull(store, f"{registry.endpoint}/test/rich:{variant}")
    assert result.image_id == img.config_digest
    assert result.digest == img.digest
    record = store.images.get(result.image_id)
    assert record.manifest == img.digest and [layer.diff_id for layer in record.layers] == img.diff_ids
    refs = store.images.refs()
    assert refs[f"{registry.endpoint}/test/rich:{variant}"] == img.config_digest
    assert refs[f"{registry.endpoint}/test/rich@{img.digest}"] == img.config_digest
    with mounted_rootfs(store, result.image_id, tmp_path / "mnt") as root:
        check_rich_rootfs(root)
    assert_clean(store)


def test_pull_by_digest_and_unknown_digest(store: Store, registry, rich) -> None:
    img = rich["oci-gzip"]
    result = do_pull(store, f"{registry.endpoint}/test/rich@{img.digest}")
    assert result.image_id == img.config_digest and result.digest == img.digest
    assert f"{registry.endpoint}/test/rich:latest" not in store.images.refs()  # a digest pull adds no tag
    again = do_pull(store, f"{registry.endpoint}/test/rich@{img.digest}")
    assert again.status == "up to date"
    missing = "sha256:" + "0" * 64
    with pytest.raises(NotFound, match="not found"):
        do_pull(store, f"{registry.endpoint}/test/rich@{missing}")
    with pytest.raises(NotFound, match="nosuchtag"):
        do_pull(store, f"{registry.endpoint}/test/rich:nosuchtag")


# -- multi-platform -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def multi(registry) -> dict[str, imagekit.Image]:
    """test/multi:oci (OCI index) and test/multi:docker (manifest list) over amd64, arm64/v8 and arm/v7 images."""
    out = {}
    for arch in ("amd64", "arm64", "arm"):
        tar = imagekit.layer([Entry("arch", data=f"{arch}\n".encode())])
        for oci in (True, False):
            img = imagekit.image([tar], oci=oci, architecture=arch)
            registrykit.push_image(registry.url, "test/multi", None, img)
            out[f"{arch}-{'oci' if oci else 'docker'}"] = img
    for oci in (True, False):
        kind = "oci" if oci else "docker"
        entries = [
            (out[f"amd64-{kind}"], {"os": "linux", "architecture": "amd64"}),
            (out[f"arm64-{kind}"], {"os": "linux", "architecture": "arm64", "variant": "v8"}),
            (out[f"arm-{kind}"], {"os": "linux", "architecture": "arm", "variant": "v7"}),
        ]
        raw, media = imagekit.index(entries, oci=oci)
        registrykit.put_manifest(registry.url, "test/multi", kind, raw, media)
        out[kind] = raw  # type: ignore[assignment]
    return out


@pytest.mark.parametrize("kind", ["oci", "docker"])
def test_index_picks_host_then_platform_flag(store: Store, registry, multi, kind: str) -> None:
    name = f"{registry.endpoint}/test/multi:{kind}"
    host = do_pull(store, name)
    assert os.uname().machine == "x86_64"  # the machine these tests are written for
    assert host.image_id == multi[f"amd64-{kind}"].config_digest and host.platform == "linux/amd64"
    assert host.digest == imagekit.sha256(multi[kind])  # the index's digest, like docker
    arm = do_pull(store, name, platform="linux/arm64")
    assert arm.image_id == multi[f"arm64-{kind}"].config_digest
    assert (Path(store.layers.fs(store.images.get(arm.image_id).chain_ids[-1])) / "arch").read_text() == "arm64\n"
    assert do_pull(store, name, platform="linux/arm/v7").image_id == multi[f"arm-{kind}"].config_digest


def test_no_matching_platform_lists_the_available_ones(store: Store, registry, multi) -> None:
    with pytest.raises(NotFound) as e:
        do_pull(store, f"{registry.endpoint}/test/multi:oci", platform="linux/s390x")
    assert "linux/s390x" in str(e.value) and "linux/amd64, linux/arm/v7, linux/arm64/v8" in str(e.value)
    assert "--platform" in e.value.hint
    r = run_cli(store, "pull", "--platform", "windows/amd64", f"{registry.endpoint}/test/multi:docker")
    assert r.returncode == 1
    err = r.stderr.decode().strip()
    assert len(err.splitlines()) == 1 and "available: linux/amd64, linux/arm/v7, linux/arm64/v8" in err
    with pytest.raises(InvalidSpec):
        do_pull(store, f"{registry.endpoint}/test/multi:oci", platform="linux")
    assert store.images.ids() == [] and store.blobs.all() == []


def test_platform_flag_on_a_single_image_of_another_platform(store: Store, registry, multi) -> None:
    with pytest.raises(NotFound, match="linux/arm64"):
        do_pull(store, f"{registry.endpoint}/test/multi@{multi['arm64-oci'].digest}", platform="linux/amd64")


# -- media types the client refuses ---------------------------------------------------------------------------
SCHEMA1 = json.dumps({"schemaVersion": 1, "name": "test/old", "tag": "v1", "fsLayers": [], "history": []}).encode()


@pytest.mark.parametrize(
    ("content_type", "body", "message"),
    [
        (mt.DOCKER_SCHEMA1_SIGNED, SCHEMA1, "schema 1"),
        (mt.DOCKER_SCHEMA1, SCHEMA1, "schema 1"),
        ("application/vnd.example.unknown+json", b'{"schemaVersion": 2}', "application/vnd.example.unknown+json"),
    ],
)
def test_schema1_and_unknown_media_types(store: Store, proxy, content_type: str, body: bytes, message: str) -> None:
    proxy.add(
        registrykit.Rule(
            registrykit.any_get_of("/manifests/"), "reply", times=None, status=200,
            headers={"Content-Type": content_type, "Docker-Content-Digest": imagekit.sha256(body)}, body=body,
        )
    )  # fmt: skip
    with pytest.raises(RegistryError, match=re.escape(message)):
        do_pull(store, f"{proxy.endpoint}/test/old:v1")
    r = run_cli(store, "pull", f"{proxy.endpoint}/test/old:v1")
    assert r.returncode == 1 and message in r.stderr.decode() and len(r.stderr.decode().strip().splitlines()) == 1
    assert store.blobs.all() == [] and store.images.ids() == []


# -- references -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["upper/CASE", "a//b", "x:tag:more", "host:5000/x@sha256:1234", ":latest", "a b"])
def test_invalid_references_are_rejected(store: Store, bad: str) -> None:
    with pytest.raises(InvalidReference):
        do_pull(store, bad)
    r = run_cli(store, "pull", bad)
    assert r.returncode == 1
    err = r.stderr.decode().strip()
    assert len(err.splitlines()) == 1 and "invalid reference" in err.lower()


def test_docker_io_names_are_normalised_and_the_mirror_is_used(store: Store, registry, rich, proxy) -> None:
    """`busybox`, `library/busybox` and `docker.io/library/busybox` are one image, fetched from the mirror."""
    img = rich["docker-gzip"]
    registrykit.push_image(registry.url, "library/richbox", "v1", img)
    settings = Settings(retry=FAST.retry, mirrors=(proxy.url,), connect_timeout=5, read_timeout=10)
    result = do_pull(store, "richbox:v1", settings=settings)
    assert result.reference == "docker.io/library/richbox:v1" and result.image_id == img.config_digest
    assert proxy.requests_for("/v2/library/richbox/manifests/v1")
    refs = store.images.refs()
    assert refs["docker.io/library/richbox:v1"] == img.config_digest
    assert refs[f"docker.io/library/richbox@{img.digest}"] == img.config_digest
    for same in ("library/richbox:v1", "docker.io/library/richbox:v1", "index.docker.io/library/richbox:v1"):
        assert do_pull(store, same, settings=settings).status == "up to date"
    # the mirror from the environment, through the CLI
    r = run_cli(store, "pull", "-q", "docker.io/library/richbox:v1", env={"MINICONTAINER_REGISTRY_MIRRORS": proxy.url})
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode() == "docker.io/library/richbox:v1\n"


# -- what is fetched ------------------------------------------------------------------------------------------
def test_stored_blobs_are_not_fetched_again_and_shared_layers_are_fetched_once(store: Store, registry, proxy) -> None:
    base = imagekit.layer([Entry("base", data=os.urandom(50_000))])
    mid = imagekit.layer([Entry("mid", data=os.urandom(50_000))])
    top_a = imagekit.layer([Entry("a", data=b"a")])
    top_b = imagekit.layer([Entry("b", data=b"b")])
    img_a = imagekit.image([base, mid, top_a])
    img_b = imagekit.image([base, mid, top_b])
    registrykit.push_image(registry.url, "test/share-a", "v1", img_a)
    registrykit.push_image(registry.url, "test/share-b", "v1", img_b)
    layer_digests = lambda img: [d for d in img.blobs if d != img.config_digest]  # noqa: E731
    first = do_pull(store, f"{proxy.endpoint}/test/share-a:v1")
    assert sorted(blob_gets(proxy)) == sorted([*layer_digests(img_a), img_a.config_digest])
    assert sorted(first.fetched) == sorted(layer_digests(img_a))
    proxy.log.clear()
    again = do_pull(store, f"{proxy.endpoint}/test/share-a:v1")
    assert again.status == "up to date" and again.fetched == [] and blob_gets(proxy) == []
    proxy.log.clear()
    second = do_pull(store, f"{proxy.endpoint}/test/share-b:v1")
    only_b = imagekit.sha256(imagekit.gz(top_b))
    assert second.fetched == [only_b]
    assert sorted(blob_gets(proxy)) == sorted([only_b, img_b.config_digest])
    assert len(store.layers.all()) == 4  # base, mid, top a, top b
    assert_clean(store)


# -- progress and the CLI's output ----------------------------------------------------------------------------
def test_cli_progress_lines_quiet_and_final_line(store: Store, registry, rich) -> None:
    img = rich["oci-zstd"]
    name = f"{registry.endpoint}/test/rich:oci-zstd"
    r = run_cli(store, "pull", name)
    assert r.returncode == 0, r.stderr
    err = r.stderr.decode().splitlines()
    layer_ids = [imagekit.sha256(b)[7:19] for d, b in img.blobs.items() if d != img.config_digest]
    assert err[0] == "oci-zstd: Pulling from test/rich"
    for short in layer_ids:  # one line per layer, none of tqdm's carriage returns
        assert len([line for line in err if line.startswith(f"{short}: Pull complete")]) == 1
    assert "\r" not in r.stderr.decode()
    out = r.stdout.decode().splitlines()
    assert out[0] == f"Digest: {img.digest}"
    assert out[1].startswith(f"Status: Downloaded newer image for {name} (linux/amd64, ")
    assert out[2] == name
    again = run_cli(store, "pull", name)
    assert f"Status: Image is up to date for {name}" in again.stdout.decode()
    quiet = run_cli(store, "pull", "-q", name)
    assert quiet.returncode == 0 and quiet.stderr == b"" and quiet.stdout.decode() == f"{name}\n"


# -- push -----------------------------------------------------------------------------------------------------
def test_push_round_trip_gives_the_same_image(store: Store, registry, rich, tmp_path: Path) -> None:
    img = rich["oci-gzip"]
    pulled = do_pull(store, f"{registry.endpoint}/test/rich:oci-gzip")
    dest = f"{registry.endpoint}/test/pushed:v1"
    r = run_cli(store, "push", f"{registry.endpoint}/test/rich:oci-gzip", dest)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().strip() == f"v1: digest: {img.digest} size: {len(img.manifest)}"
    fresh = Store(tmp_path / "fresh")
    again = do_pull(fresh, dest)
    assert again.image_id == pulled.image_id == img.config_digest and again.digest == img.digest
    with mounted_rootfs(fresh, again.image_id, tmp_path / "mnt") as root:
        check_rich_rootfs(root)
    # a second push finds every blob there; a push to a third repository mounts them; chunked uploads work
    second = push(store, f"{registry.endpoint}/test/rich:oci-gzip", dest, settings=FAST)
    assert second.pushed == [] and second.mounted == [] and len(second.existing) == 4
    third = push(store, dest.replace(":v1", f"@{img.digest}"), f"{registry.endpoint}/test/mounted:v1", settings=FAST)
    assert third.pushed == [] and len(third.mounted) == 4
    chunked = push(
        store, img.config_digest, f"{registry.endpoint}/test/chunked-{os.getpid()}:v1", settings=FAST, chunk_size=1024
    )
    assert chunked.digest == img.digest
    assert do_pull(Store(tmp_path / "fresh2"), f"{registry.endpoint}/test/mounted:v1").image_id == img.config_digest


def test_push_refuses_a_digest_destination(store: Store, registry, rich) -> None:
    do_pull(store, f"{registry.endpoint}/test/rich:oci-gzip")
    with pytest.raises(InvalidReference, match="digest"):
        push(store, f"{registry.endpoint}/test/rich:oci-gzip", f"{registry.endpoint}/x@{rich['oci-gzip'].digest}")


def test_images_imported_from_a_tarball_can_be_pushed_and_pulled(store: Store, registry, tmp_path: Path) -> None:
    tar = imagekit.layer([Entry("hello", data=b"hi\n", mode=0o600), Entry("dir/", tarfile.DIRTYPE)])
    path = tmp_path / "flat.tar"
    path.write_bytes(tar)
    r = run_cli(store, "from-tar", str(path), "-t", "flat:v1")
    assert r.returncode == 0, r.stderr
    dest = f"{registry.endpoint}/test/flat:v1"
    r = run_cli(store, "push", "-q", "flat:v1", dest)
    assert r.returncode == 0, r.stderr
    fresh = Store(tmp_path / "fresh")
    pulled = do_pull(fresh, dest)
    assert pulled.image_id == store.images.resolve("flat:v1").id
    assert (Path(fresh.layers.fs(fresh.images.get(pulled.image_id).chain_ids[-1])) / "hello").read_bytes() == b"hi\n"
    # what was pushed was rebuilt from the tar-split record and gzip-compressed on the way
    (layer,) = fresh.images.get(pulled.image_id).layers
    assert layer.media_type == mt.OCI_LAYER_GZIP and layer.diff_id == imagekit.sha256(tar)
    assert gzip.decompress(fresh.blobs.read(layer.digest)) == tar
    # the compressed blob is now the image's: the next push sends the same manifest
    again = push(store, "flat:v1", dest, settings=FAST)
    assert again.digest == pulled.digest and again.pushed == []
    # importing the same tarball again keeps the image's record: its compressed blob and manifest digest
    assert run_cli(store, "from-tar", str(path), "-t", "again:v1").returncode == 0
    assert store.images.resolve("again:v1").manifest == store.images.resolve("flat:v1").manifest


def test_an_imported_rootfs_pushes_in_chunks_and_refuses_a_tampered_snapshot(
    store: Store, registry, tmp_path: Path
) -> None:
    for n, tag in enumerate(("good", "tampered")):
        tar = imagekit.layer([Entry("bin/", tarfile.DIRTYPE), Entry("bin/tool", data=bytes([n]) * 300_000)])
        (tmp_path / f"{tag}.tar").write_bytes(tar)
        assert run_cli(store, "from-tar", str(tmp_path / f"{tag}.tar"), "-t", f"flat:{tag}").returncode == 0
    push(store, "flat:good", f"{registry.endpoint}/test/flat:chunked", chunk_size=64 << 10)
    pulled = do_pull(Store(tmp_path / "fresh"), f"{registry.endpoint}/test/flat:chunked")
    assert pulled.image_id == store.images.resolve("flat:good").id
    # The tampered snapshot: same size, other bytes. Neither upload may complete, whole or in chunks.
    chain = store.images.resolve("flat:tampered").chain_ids[-1]
    (Path(store.layers.fs(chain)) / "bin/tool").write_bytes(b"\xff" * 300_000)
    r = run_cli(store, "push", "-q", "flat:tampered", f"{registry.endpoint}/test/tampered:whole")
    assert r.returncode == 1 and "cannot be rebuilt from its snapshot" in r.stderr.decode(), r.stderr
    assert "import it again" in r.stderr.decode()
    with pytest.raises(DigestMismatch):
        push(store, "flat:tampered", f"{registry.endpoint}/test/tampered:chunked", chunk_size=64 << 10)
    for tag in ("whole", "chunked"):
        with pytest.raises((NotFound, RegistryError)):
            do_pull(Store(tmp_path / f"fresh-{tag}"), f"{registry.endpoint}/test/tampered:{tag}")


def test_progress_bars_on_a_terminal(store: Store, registry, rich) -> None:
    import pexpect

    name = f"{registry.endpoint}/test/rich:oci-gzip"
    child = pexpect.spawn(
        MINIBUILD[0], [*MINIBUILD[1:], "--root", store.root, "pull", name], env=dict(os.environ), timeout=60
    )
    child.expect(pexpect.EOF)
    child.close()
    out = child.before.decode()
    assert child.exitstatus == 0, out
    assert "total" in out and "%|" in out and "B/s" in out  # tqdm bars: per layer and the total, with rates
    for short in [
        imagekit.sha256(b)[7:19] for d, b in rich["oci-gzip"].blobs.items() if d != rich["oci-gzip"].config_digest
    ]:
        assert short in out
    assert f"Digest: {rich['oci-gzip'].digest}" in out and out.rstrip().endswith(name)
