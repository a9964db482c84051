"""`minibuild save`: images of the store as a tarball that `podman load` and `docker load` read.

- `docker-archive` (the default, what `docker save` writes): `manifest.json` naming each image's config
  and its layers as uncompressed tars, one `blobs/sha256/<hex>` file per blob, plus `repositories`.
- `oci-archive`: an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/...`) holding the images'
  manifests, configs and layer blobs exactly as stored (so digests are kept); each image is named in the
  index by `org.opencontainers.image.ref.name` (and containerd's `io.containerd.image.name`).

Entries carry no timestamps or owners, so saving the same images twice gives the same bytes. Layers the
store keeps only as a snapshot with a tar-split record are rebuilt from it (and verified) on the way.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tarfile
from typing import TYPE_CHECKING, BinaryIO

from minicache import digest as digests
from minicache import gc, reference, tarsplit
from minicache.errors import InvalidReference, InvalidSpec, NotFound
from minicache.images import ImageRecord

if TYPE_CHECKING:
    from minicache.store import Store

FORMATS = ("docker-archive", "oci-archive")
MEDIA_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
_CHUNK = 1 << 20


class _Out:
    """A tar stream with fixed metadata: every entry 0:0, mtime 0, mode 0644 (directories 0755)."""

    def __init__(self, fileobj: BinaryIO) -> None:
        self.tar = tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.PAX_FORMAT)  # noqa: SIM115
        self.names: set[str] = set()

    def _info(self, name: str, size: int) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = size, 0o644, 0
        info.uname = info.gname = ""
        return info

    def directory(self, name: str) -> None:
        if name in self.names:
            return
        self.names.add(name)
        info = self._info(name, 0)
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        self.tar.addfile(info)

    def data(self, name: str, data: bytes) -> None:
        if name in self.names:
            return
        self.names.add(name)
        self.tar.addfile(self._info(name, len(data)), io.BytesIO(data))

    def file(self, name: str, f: BinaryIO, size: int) -> None:
        if name in self.names:
            return
        self.names.add(name)
        self.tar.addfile(self._info(name, size), f)

    def close(self) -> None:
        self.tar.close()

    def abandon(self) -> None:
        """After an error: write nothing more (tarfile's stream would flush its buffer on garbage collection)."""
        self.tar.fileobj.closed = True  # type: ignore[attr-defined]
        self.tar.closed = True


def _layer_stream(store: Store, digest: str, chain_id: str) -> BinaryIO:
    if store.blobs.has(digest):
        return store.blobs.open(digest)
    if tarsplit.has_record(store, chain_id):
        return tarsplit.open_layer_tar(store, chain_id)
    raise NotFound(f"layer blob {digest} is not in the store", hint="pull or build the image again")


def _names(store: Store, record: ImageRecord, asked: str) -> list[str]:
    """The tags to record: the one asked for if it is a name, else every tag of the image."""
    try:
        ref = reference.parse(asked)
        if not ref.digest and store.images.refs().get(str(ref)) == record.id:
            return [str(ref)]
    except InvalidReference:  # an image ID: no name of its own
        pass
    return [n for n in store.images.names_of(record.id) if "@" not in n]


def save(store: Store, images: list[str], out: BinaryIO, fmt: str = "docker-archive") -> None:
    """Write `images` (names or IDs in the store) to `out` as a `fmt` tarball."""
    if fmt not in FORMATS:
        raise InvalidSpec(f"unknown format {fmt!r}", hint="use docker-archive or oci-archive")
    if not images:
        raise InvalidSpec("no image to save", hint="name at least one image")
    records = [(store.images.resolve(name), name) for name in images]
    for record, name in records:  # fail before the first byte when a layer cannot be had
        for layer in record.layers:
            if layer.digest is None or not (
                store.blobs.has(layer.digest) or tarsplit.has_record(store, layer.chain_id)
            ):
                raise NotFound(f"image {name} has no blob for layer {layer.diff_id}", hint="pull or build it again")
    with gc.hold(store):
        tar = _Out(out)
        try:
            if fmt == "docker-archive":
                _docker_archive(store, tar, records)
            else:
                _oci_archive(store, tar, records)
        except BaseException:
            tar.abandon()
            raise
        tar.close()


def _docker_archive(store: Store, tar: _Out, records: list[tuple[ImageRecord, str]]) -> None:
    from minicache.unpack import open_decompressed

    manifest = []
    tar.directory("blobs")
    tar.directory("blobs/sha256")
    for record, asked in records:
        config = store.blobs.read(record.id)
        tar.data(f"blobs/sha256/{digests.hex_of(record.id)}", config)
        layer_names = []
        for layer in record.layers:
            name = f"blobs/sha256/{digests.hex_of(layer.diff_id)}"
            layer_names.append(name)
            if name in tar.names:
                continue
            if layer.digest is None:
                raise NotFound(f"image {asked} has no blob for layer {layer.diff_id}", hint="pull or build it again")
            # docker load wants the uncompressed tar, whose size the header needs first: stage it in tmp/
            staging = store.staging_path("save")
            try:
                with _layer_stream(store, layer.digest, layer.chain_id) as raw, open(staging, "xb") as f:
                    verifier = digests.Verifier(layer.diff_id)
                    src = open_decompressed(raw)
                    while chunk := src.read(_CHUNK):
                        verifier.update(chunk)
                        f.write(chunk)
                    verifier.check(f"layer {layer.diff_id}")
                with open(staging, "rb") as f:
                    tar.file(name, f, os.fstat(f.fileno()).st_size)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(staging)
        tags = _names(store, record, asked)
        manifest.append(
            {
                "Config": f"blobs/sha256/{digests.hex_of(record.id)}",
                "RepoTags": tags,
                "Layers": layer_names,
            }
        )
    tar.data("manifest.json", json.dumps(manifest, separators=(",", ":")).encode())


def _oci_archive(store: Store, tar: _Out, records: list[tuple[ImageRecord, str]]) -> None:
    index = []
    tar.data("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
    tar.directory("blobs")
    tar.directory("blobs/sha256")
    for record, asked in records:
        if record.manifest is None or not store.blobs.has(record.manifest):
            raise NotFound(f"image {asked} has no stored manifest", hint="pull, build or push it first")
        manifest_raw = store.blobs.read(record.manifest)
        manifest = json.loads(manifest_raw)
        tar.data(f"blobs/sha256/{digests.hex_of(record.manifest)}", manifest_raw)
        tar.data(f"blobs/sha256/{digests.hex_of(record.id)}", store.blobs.read(record.id))
        chains = {layer.digest: layer.chain_id for layer in record.layers}
        for desc in manifest.get("layers") or []:
            name = f"blobs/sha256/{digests.hex_of(desc['digest'])}"
            if name in tar.names:
                continue
            with _layer_stream(store, desc["digest"], chains.get(desc["digest"], "")) as f:
                tar.file(name, f, desc["size"])
        media = record.manifest_media_type or manifest.get("mediaType") or MEDIA_OCI_MANIFEST
        tags = _names(store, record, asked) or [None]
        for t in tags:
            entry = {"mediaType": media, "digest": record.manifest, "size": len(manifest_raw)}
            if t is not None:
                entry["annotations"] = {
                    "org.opencontainers.image.ref.name": t,
                    "io.containerd.image.name": t,
                }
            index.append(entry)
    tar.data("index.json", json.dumps({"schemaVersion": 2, "mediaType": MEDIA_OCI_INDEX, "manifests": index}).encode())


def save_to_path(store: Store, images: list[str], path: str, fmt: str) -> None:
    """`save` into a file, written under a temporary name and renamed, so a failure leaves no partial tarball."""
    tmp = f"{path}.partial-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            save(store, images, f, fmt)
        shutil.move(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
