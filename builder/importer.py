"""`minibuild from-tar`: import a `docker export` rootfs, a `docker save` archive or an OCI image layout archive.

The kind is told by content, never by file name: the (optionally gzip/zstd-compressed) stream is a tar
whose first named entry is either image-archive furniture (`manifest.json`, `repositories`, `oci-layout`,
`index.json`, `blobs/...`, `<64 hex>/...`, `<64 hex>.json`, `<64 hex>.tar` as skopeo writes) or a root
filesystem. Only the headers read
to decide are buffered; the rest streams once.

- A flat export is one layer: it streams through the unpacker, which (by default) keeps a tar-split
  record beside the snapshot (`minicache.tarsplit`), so `push` can rebuild and send the exact layer tar
  without a second copy of it on disk. Its config and an OCI manifest are generated
  deterministically (no timestamp in the config), so importing the same tarball twice stores nothing twice.
- An archive streams its blobs into the blob store (`blobs/sha256/<hex>` members verified by name), keeps
  its small JSON members in memory, then unpacks the layers from the stored blobs in manifest order
  (docker save writes manifest.json last, so nothing can be unpacked before the end of the stream).
"""

from __future__ import annotations

import io
import json
import os
import platform
import re
import tarfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, BinaryIO

from minibuild.changes import config_from_changes
from minicache import digest as digests
from minicache import gc, reference, tarsplit
from minicache.errors import InvalidArchive, InvalidReference, NotFound
from minicache.images import ImageRecord, LayerRef
from minicache.unpack import GZIP_MAGIC, ZSTD_MAGIC, open_decompressed, unpack_layer

if TYPE_CHECKING:
    from minicache.store import Store

MEDIA_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MEDIA_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
_CHUNK = 1 << 20
_MAX_JSON_MEMBER = 16 << 20
_ARCHIVE_FIRST = re.compile(
    r"^(manifest\.json|repositories|oci-layout|index\.json|blobs(/.*)?|[a-f0-9]{64}(\.json|\.tar|/.*)?)$"
)
_BLOB_MEMBER = re.compile(r"^blobs/sha256/([a-f0-9]{64})$")
_REF_NAME = "org.opencontainers.image.ref.name"
_CONTAINERD_NAME = "io.containerd.image.name"


@dataclass
class ImportResult:
    kind: str  # "export", "docker-save" or "oci-layout"
    images: list[tuple[str, list[str]]] = field(default_factory=list)  # (image ID, names given to it)


# -- the stream ----------------------------------------------------------------------------------------------------
class _Replay(io.RawIOBase):
    """The bytes read while sniffing, then the rest of the stream."""

    def __init__(self, prefix: bytes, rest: BinaryIO) -> None:
        self.prefix = memoryview(prefix)
        self.rest = rest
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        if self.prefix:
            n = min(len(buf), len(self.prefix))
            buf[:n] = self.prefix[:n]
            self.prefix = self.prefix[n:]
        else:
            n = self.rest.readinto(buf)  # type: ignore[attr-defined]
        self.size += n
        return n


def _read_exact(stream: BinaryIO, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = stream.read(n - len(data))
        if not chunk:
            raise InvalidArchive("the tarball ends before its first entry is complete; is it a tar archive?")
        data += chunk
    return data


def _clean(name: str) -> str:
    return "/".join(p for p in name.split("/") if p not in ("", "."))


def sniff(stream: BinaryIO) -> tuple[str, bytes]:
    """("archive" | "export", the bytes read): decided by the first entry whose name is not the root."""
    prefix = b""
    long_name: str | None = None
    while True:
        block = _read_exact(stream, tarfile.BLOCKSIZE)
        prefix += block
        if block == bytes(tarfile.BLOCKSIZE):
            return "export", prefix  # an empty tar: an empty root filesystem
        try:
            info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
        except tarfile.HeaderError as e:
            raise InvalidArchive(f"not a tar archive (or a compressed one): {e}", hint=_FORMATS_HINT) from None
        padded = -(-info.size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
        if info.type in (tarfile.XHDTYPE, tarfile.GNUTYPE_LONGNAME, tarfile.XGLTYPE):
            if info.size > 1 << 20:
                raise InvalidArchive("the tarball's first extended header is over 1 MiB")
            data = _read_exact(stream, padded)
            prefix += data
            if info.type == tarfile.GNUTYPE_LONGNAME:
                long_name = data[: info.size].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
            elif info.type == tarfile.XHDTYPE:
                match = re.search(rb"\d+ path=([^\n]*)\n", data[: info.size])
                if match:
                    long_name = match.group(1).decode("utf-8", "surrogateescape")
            continue
        name = _clean(long_name if long_name is not None else info.name)
        long_name = None
        if not name:  # "./": look at the next entry
            if info.size:
                prefix += _read_exact(stream, padded)
            continue
        return ("archive" if _ARCHIVE_FIRST.match(name) else "export"), prefix


_FORMATS_HINT = "from-tar takes a docker export or docker save tarball or an OCI layout archive, optionally gzip/zstd"


# -- flat exports -------------------------------------------------------------------------------------------------
def _host_platform() -> tuple[str, str]:
    machine = platform.machine()
    arch = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386", "i386": "386"}.get(machine, machine)
    return "linux", arch


def _import_export(store: Store, stream: _Replay, changes: list[str], keep_layer_blob: bool) -> ImageRecord:
    config_obj = config_from_changes(changes)
    info = unpack_layer(store, stream, record=keep_layer_blob)  # type: ignore[arg-type]
    layer_size = stream.size
    os_name, arch = _host_platform()
    config = {
        "architecture": arch,
        "os": os_name,
        "config": config_obj,
        "rootfs": {"type": "layers", "diff_ids": [info.diff_id]},
        "history": [{"created_by": "minibuild from-tar", "comment": "imported from a root filesystem tarball"}],
    }
    config_bytes = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    config_digest = store.blobs.put(config_bytes)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_OCI_MANIFEST,
        "config": {"mediaType": MEDIA_OCI_CONFIG, "digest": config_digest, "size": len(config_bytes)},
        "layers": [{"mediaType": MEDIA_OCI_LAYER, "digest": info.diff_id, "size": layer_size}],
    }
    manifest_digest = store.blobs.put(json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode())
    layer = LayerRef(
        diff_id=info.diff_id,
        chain_id=info.chain_id,
        digest=info.diff_id if keep_layer_blob else None,
        media_type=MEDIA_OCI_LAYER,
        size=layer_size,
    )
    record = ImageRecord(
        id=config_digest,
        layers=(layer,),
        manifest=manifest_digest,
        manifest_media_type=MEDIA_OCI_MANIFEST,
        created=_created_of(store, config_digest) or _now(),
        extra={"source": "from-tar export"},
    )
    return record


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _created_of(store: Store, image_id: str) -> str | None:
    """The creation time an image already in the store has: a re-import keeps it."""
    try:
        return store.images.get(image_id).created
    except NotFound:
        return None


# -- archives -----------------------------------------------------------------------------------------------------
class _Archive:
    """The members of a docker save / OCI layout archive: blobs went to the store, small JSON stayed here."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.small: dict[str, bytes] = {}
        self.blobs: dict[str, str] = {}  # member name -> digest of its stored bytes
        self.links: dict[str, str] = {}

    def read(self, tar: tarfile.TarFile) -> None:
        for m in tar:
            name = _clean(m.name)
            if m.issym():
                base = name.rsplit("/", 1)[0] if "/" in name else ""
                self.links[name] = _clean(os.path.normpath(os.path.join("/", base, m.linkname)))
            elif m.islnk():
                self.links[name] = _clean(m.linkname)
            elif m.isreg():
                src = tar.extractfile(m)
                assert src is not None
                blob = _BLOB_MEMBER.match(name)
                if blob or name.endswith((".tar", ".tar.gz", ".tgz", ".tar.zst")) or m.size > _MAX_JSON_MEMBER:
                    self.blobs[name] = self._store_blob(src, m.size, f"sha256:{blob.group(1)}" if blob else None)
                else:
                    self.small[name] = src.read()

    def _store_blob(self, src: BinaryIO, size: int, expected: str | None) -> str:
        if expected is not None and self.store.blobs.has(expected):
            while src.read(_CHUNK):  # already stored: just move past it
                pass
            return expected
        with self.store.blobs.writer(expected, size) as writer:
            while chunk := src.read(_CHUNK):
                writer.write(chunk)
            return writer.commit(f"archive member of {size} bytes")

    def _follow(self, name: str) -> str:
        name = _clean(name)
        for _ in range(16):
            if name not in self.links:
                return name
            name = self.links[name]
        raise InvalidArchive(f"archive member {name!r} is a loop of links")

    def has(self, name: str) -> bool:
        name = self._follow(name)
        return name in self.small or name in self.blobs

    def bytes_of(self, name: str) -> bytes:
        name = self._follow(name)
        if name in self.small:
            return self.small[name]
        if name in self.blobs:
            return self.store.blobs.read(self.blobs[name])
        raise InvalidArchive(f"the archive names {name!r} but does not contain it", hint=_FORMATS_HINT)

    def json_of(self, name: str) -> Any:
        try:
            return json.loads(self.bytes_of(name))
        except ValueError:
            raise InvalidArchive(f"archive member {name!r} is not valid JSON") from None

    def blob_of(self, name: str) -> str:
        """The digest of a member as a stored blob (small members are stored on demand)."""
        name = self._follow(name)
        if name not in self.blobs:
            self.blobs[name] = self.store.blobs.put(self.bytes_of(name))
        return self.blobs[name]

    def blob_json(self, digest: str) -> Any:
        name = f"blobs/sha256/{digests.hex_of(digest)}"
        if self.has(name):
            return self.json_of(name)
        try:
            return self.store.blobs.read_json(digest)
        except NotFound:
            raise InvalidArchive(f"the archive refers to blob {digest} but does not contain it") from None


def _media_type_of(store: Store, digest: str) -> str:
    with store.blobs.open(digest) as f:
        head = f.read(4)
    if head.startswith(GZIP_MAGIC):
        return MEDIA_OCI_LAYER + "+gzip"
    if head.startswith(ZSTD_MAGIC):
        return MEDIA_OCI_LAYER + "+zstd"
    return MEDIA_OCI_LAYER


def _unpack_layers(store: Store, config: dict[str, Any], layer_digests: list[str]) -> tuple[LayerRef, ...]:
    diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
    if len(diff_ids) != len(layer_digests):
        raise InvalidArchive(
            f"the image config lists {len(diff_ids)} layers but the manifest {len(layer_digests)}", hint=_FORMATS_HINT
        )
    out = []
    parent = None
    for diff_id, digest in zip(diff_ids, layer_digests, strict=True):
        with store.blobs.open(digest) as f:
            info = unpack_layer(store, f, parent=parent, expected_diff_id=diff_id)
        out.append(LayerRef(diff_id, info.chain_id, digest, _media_type_of(store, digest), store.blobs.size(digest)))
        parent = info.chain_id
    return tuple(out)


def _generated_manifest(store: Store, config_digest: str, layers: tuple[LayerRef, ...]) -> str:
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_OCI_MANIFEST,
        "config": {"mediaType": MEDIA_OCI_CONFIG, "digest": config_digest, "size": store.blobs.size(config_digest)},
        "layers": [{"mediaType": layer.media_type, "digest": layer.digest, "size": layer.size} for layer in layers],
    }
    return store.blobs.put(json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode())


def _record(
    store: Store, config_digest: str, layers: tuple[LayerRef, ...], manifest: str, media: str, source: str
) -> ImageRecord:
    config = store.blobs.read_json(config_digest)
    created = config.get("created") if isinstance(config.get("created"), str) else None
    return ImageRecord(
        id=config_digest,
        layers=layers,
        manifest=manifest,
        manifest_media_type=media,
        created=created or _created_of(store, config_digest) or _now(),
        extra={"source": source},
    )


def _docker_save(store: Store, archive: _Archive) -> list[tuple[ImageRecord, list[str]]]:
    entries = archive.json_of("manifest.json")
    if not isinstance(entries, list):
        raise InvalidArchive("manifest.json of the archive is not a list", hint=_FORMATS_HINT)
    by_config: dict[str, tuple[str, str]] = {}  # config digest -> (manifest digest, media type), newer docker
    if archive.has("index.json"):
        for manifest_digest, manifest, media in _oci_manifests(archive):
            by_config[manifest["config"]["digest"]] = (manifest_digest, media)
    out = []
    for entry in entries:
        try:
            config_digest = archive.blob_of(entry["Config"])
            layer_digests = [archive.blob_of(path) for path in entry["Layers"]]
            tags = [t for t in entry.get("RepoTags") or [] if isinstance(t, str)]
        except (KeyError, TypeError):
            raise InvalidArchive("manifest.json entry lacks Config or Layers", hint=_FORMATS_HINT) from None
        layers = _unpack_layers(store, store.blobs.read_json(config_digest), layer_digests)
        if config_digest in by_config:
            manifest_digest, media = by_config[config_digest]
        else:
            manifest_digest, media = _generated_manifest(store, config_digest, layers), MEDIA_OCI_MANIFEST
        out.append((_record(store, config_digest, layers, manifest_digest, media, "from-tar docker-save"), tags))
    return out


def _oci_manifests(archive: _Archive) -> list[tuple[str, dict[str, Any], str]]:
    """(digest, manifest, media type) of each image of index.json; of an index, the host's platform only."""
    out = []
    index = archive.json_of("index.json")
    host_os, host_arch = _host_platform()
    for desc in index.get("manifests") or []:
        digest, media = desc.get("digest"), desc.get("mediaType")
        if media in (MEDIA_OCI_INDEX, MEDIA_DOCKER_LIST):
            children = archive.blob_json(digest).get("manifests") or []
            matching = [
                c
                for c in children
                if (c.get("platform") or {}).get("os", host_os) == host_os
                and (c.get("platform") or {}).get("architecture", host_arch) == host_arch
            ]
            if not matching:
                raise InvalidArchive(f"the archive has no image for {host_os}/{host_arch}")
            child = matching[0]
            child["annotations"] = {**(desc.get("annotations") or {}), **(child.get("annotations") or {})}
            desc, digest, media = child, child.get("digest"), child.get("mediaType")
        manifest = archive.blob_json(digests.validate(digest))
        desc_annotations = desc.get("annotations") or {}
        manifest.setdefault("_names", [])
        for key in (_CONTAINERD_NAME, _REF_NAME):
            if key in desc_annotations and desc_annotations[key] not in manifest["_names"]:
                manifest["_names"].append(desc_annotations[key])
        out.append((digest, manifest, media or MEDIA_OCI_MANIFEST))
    return out


def _oci_layout(store: Store, archive: _Archive) -> list[tuple[ImageRecord, list[str]]]:
    out = []
    for manifest_digest, manifest, media in _oci_manifests(archive):
        config_digest = digests.validate(manifest["config"]["digest"])
        archive.blob_json(config_digest)  # present?
        layer_digests = [digests.validate(layer["digest"]) for layer in manifest.get("layers") or []]
        for digest in layer_digests:
            if not store.blobs.has(digest):
                raise InvalidArchive(f"the archive refers to layer {digest} but does not contain it")
        layers = _unpack_layers(store, store.blobs.read_json(config_digest), layer_digests)
        names = []
        for name in manifest["_names"]:
            if "/" not in name and ":" not in name:
                continue  # a bare ref.name is a tag ("latest") and names no repository: --tag gives one
            try:
                names.append(str(reference.parse(name)))
            except InvalidReference:
                continue
        out.append((_record(store, config_digest, layers, manifest_digest, media, "from-tar oci-layout"), names))
    return out


def _keep_stored(store: Store, record: ImageRecord) -> ImageRecord:
    """The record already stored for the same image ID, when it is complete: an image pulled earlier keeps its
    compressed blobs and manifest digest (so a push sends the same digest, and prune keeps those blobs)."""
    try:
        existing = store.images.get(record.id)
    except NotFound:
        return record
    complete = (
        existing.manifest is not None
        and store.blobs.has(existing.manifest)
        and all(
            layer.digest is not None
            and store.layers.has(layer.chain_id)
            and (store.blobs.has(layer.digest) or tarsplit.has_record(store, layer.chain_id))
            for layer in existing.layers
        )
    )
    return existing if complete else record


# -- the entry point ---------------------------------------------------------------------------------------------
def import_tarball(
    store: Store,
    source: BinaryIO,
    *,
    tag: str | None = None,
    changes: list[str] | tuple[str, ...] = (),
    keep_layer_blob: bool = True,
) -> ImportResult:
    """Import whatever tarball `source` holds (see the module docstring); returns the images and their names.

    `keep_layer_blob=False` keeps no tar-split record for a flat export: smaller, but it cannot be pushed.
    """
    if tag is not None:
        tag = str(reference.parse(tag))
    with gc.hold(store):
        stream = open_decompressed(source)
        kind, prefix = sniff(stream)
        replay = _Replay(prefix, stream)
        if kind == "export":
            record = _keep_stored(store, _import_export(store, replay, list(changes), keep_layer_blob))
            store.images.put(record, [tag] if tag else [])
            return ImportResult("export", [(record.id, [tag] if tag else [])])
        if changes:
            raise InvalidArchive(
                "--change applies to flat root filesystem tarballs only; this is an image archive",
                hint="an image archive brings its own config",
            )
        archive = _Archive(store)
        try:
            with tarfile.open(fileobj=replay, mode="r|", bufsize=_CHUNK) as tar:  # type: ignore[call-overload]
                archive.read(tar)
        except tarfile.TarError as e:
            raise InvalidArchive(f"the image archive is not a valid tar stream: {e}", hint=_FORMATS_HINT) from None
        except EOFError as e:
            raise InvalidArchive(f"the image archive is truncated: {e}", hint=_FORMATS_HINT) from None
        if archive.has("manifest.json"):
            kind, images = "docker-save", _docker_save(store, archive)
        elif archive.has("index.json") and archive.has("oci-layout"):
            kind, images = "oci-layout", _oci_layout(store, archive)
        else:
            raise InvalidArchive(
                "the archive has neither manifest.json (docker save) nor index.json and oci-layout (OCI layout)",
                hint=_FORMATS_HINT,
            )
        result = ImportResult(kind)
        for record, names in images:
            if tag and len(images) == 1:
                names = [*names, tag]
            record = _keep_stored(store, record)
            store.images.put(record, names)
            result.images.append((record.id, names))
        return result
