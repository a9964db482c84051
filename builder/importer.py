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
- An archive is read once with the unpacker's tar parser: small members stay in memory (within a budget),
  the others become sealed blobs in tmp/ (`blobs/sha256/<hex>` members verified by name); docker save
  writes manifest.json last, so nothing can be unpacked before the end of the stream. Its index, manifests
  and configs then get the checks a pull gives them (minibuild.registry.manifests), every tag is parsed,
  the layers are unpacked in manifest order, and only then are the blobs and image records stored. A failed
  import (bad input, a full disk, Ctrl-C) leaves nothing outside tmp/ but layer snapshots that another
  running import may share; those are removed when no other import runs, else by garbage collection.
"""

from __future__ import annotations

import errno
import io
import json
import os
import platform
import re
import tarfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from minibuild import platforms
from minibuild.changes import config_from_changes
from minibuild.errors import RegistryError
from minibuild.registry import manifests
from minibuild.registry import mediatypes as mt
from minicache import digest as digests
from minicache import gc, reference, tarsplit
from minicache.errors import DigestMismatch, InvalidArchive, InvalidReference, NotFound, TooLarge
from minicache.images import ImageRecord, LayerRef
from minicache.record import Record
from minicache.unpack import (
    GZIP_MAGIC,
    LNKTYPE,
    SYMTYPE,
    ZSTD_MAGIC,
    Limits,
    TarReader,
    check_free_space,
    open_decompressed,
    stream_error,
    unpack_layer,
)

if TYPE_CHECKING:

    from minicache.blobs import BlobWriter
    from minicache.store import Store

MEDIA_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MEDIA_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
_CHUNK = 1 << 20
_MAX_JSON_MEMBER = 16 << 20
# Members up to _SMALL_MEMBER stay in memory, up to _SMALL_TOTAL in all; the others are staged in tmp/.
_SMALL_MEMBER = 1 << 20
_SMALL_TOTAL = 32 << 20
_MAX_MEMBERS = 100_000  # an image archive has a few per layer
_SPACE_CHECK_EVERY = 16 << 20
_ARCHIVE_FIRST = re.compile(
    r"^(manifest\.json|repositories|oci-layout|index\.json|blobs(/.*)?|[a-f0-9]{64}(\.json|\.tar|/.*)?)$"
)
_BLOB_MEMBER = re.compile(r"^blobs/sha256/([a-f0-9]{64})$")
_REF_NAME = "org.opencontainers.image.ref.name"
_CONTAINERD_NAME = "io.containerd.image.name"


class ImportResult(Record):
    kind: str  # "export", "docker-save" or "oci-layout"
    images: list[tuple[str, list[str]]] = []  # (image ID, names given to it)


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
    """The members of a docker save / OCI layout archive, read once: small ones in memory, the rest in tmp/.

    Nothing goes into the store while the archive is read: large members are sealed blobs in tmp/ (verified,
    not published), so an archive that turns out to be bad, a full disk or a Ctrl-C leaves only tmp/ debris.
    `publish` moves what the images need into the store once every check has passed.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self.small: dict[str, bytes] = {}
        self.small_bytes = 0
        self.members: dict[str, str] = {}  # member name -> digest of its bytes (small ones once asked for)
        self.staged: dict[str, BlobWriter] = {}  # digest -> its sealed bytes in tmp/
        self.writers: list[BlobWriter] = []
        self.links: dict[str, str] = {}
        self.unchecked = 0  # bytes staged since free space was last checked

    def read(self, source: BinaryIO) -> None:
        reader = TarReader(source, Limits(max_entries=_MAX_MEMBERS))
        for m in reader.members():
            name = _clean(m.name)
            if m.type == SYMTYPE:
                base = name.rsplit("/", 1)[0] if "/" in name else ""
                self.links[name] = _clean(os.path.normpath(os.path.join("/", base, m.linkname)))
            elif m.type == LNKTYPE:
                self.links[name] = _clean(m.linkname)
            elif m.isreg():
                self.links.pop(name, None)
                blob = _BLOB_MEMBER.match(name)
                expected = f"sha256:{blob.group(1)}" if blob else None
                if m.size <= _SMALL_MEMBER and self.small_bytes + m.size <= _SMALL_TOTAL:
                    data = reader.read(m.size)
                    if len(data) != m.size:
                        raise InvalidArchive(f"the image archive is truncated inside {name!r}", hint=_FORMATS_HINT)
                    if expected is not None and digests.of_bytes(data) != expected:
                        raise DigestMismatch(f"archive member {name} does not hold the blob its name says")
                    self.small[name] = data
                    self.small_bytes += m.size
                elif expected is not None and self.store.blobs.has(expected):
                    self.members[name] = expected  # already stored: not read again
                else:
                    self.members[name] = self._stage(reader, name, m.size, expected)

    def _stage(self, reader: TarReader, name: str, size: int, expected: str | None) -> str:
        self.unchecked += size
        if size >= _SPACE_CHECK_EVERY or self.unchecked >= _SPACE_CHECK_EVERY:  # as the unpacker checks
            self.unchecked = 0
            check_free_space(self.store.tmp_dir, size, f"archive member {name!r}")
        writer = self.store.blobs.writer(expected, size)
        self.writers.append(writer)
        try:
            while chunk := reader.read(_CHUNK):
                writer.write(chunk)
            digest = writer.seal(f"archive member {name}")
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise TooLarge(f"the store's filesystem is full while reading the archive: {e.strerror}") from None
            raise
        if digest in self.staged:
            writer.abort()  # the same bytes twice
        else:
            self.staged[digest] = writer
        return digest

    def abort(self) -> None:
        """Drop what was staged and not published."""
        for writer in self.writers:
            writer.abort()

    def _follow(self, name: str) -> str:
        name = _clean(name)
        for _ in range(16):
            if name not in self.links:
                return name
            name = self.links[name]
        raise InvalidArchive(f"archive member {name!r} is a loop of links")

    def has(self, name: str) -> bool:
        name = self._follow(name)
        return name in self.small or name in self.members

    def _missing(self, name: str) -> InvalidArchive:
        return InvalidArchive(f"the archive names {name!r} but does not contain it", hint=_FORMATS_HINT)

    def digest_of(self, name: str) -> str:
        """The digest of a member's bytes (it becomes a blob if an image needs it)."""
        name = self._follow(name)
        if name in self.members:
            return self.members[name]
        if name in self.small:
            digest = digests.of_bytes(self.small[name])
            self.members[name] = digest
            return digest
        raise self._missing(name)

    def bytes_of(self, name: str) -> bytes:
        """A member that must be small (JSON)."""
        name = self._follow(name)
        if name in self.small:
            return self.small[name]
        if name in self.members:
            return self.blob_bytes(self.members[name], name)
        raise self._missing(name)

    def _small_by_digest(self, digest: str) -> bytes | None:
        for name, data in self.small.items():
            if self.members.get(name) == digest or name == f"blobs/sha256/{digests.hex_of(digest)}":
                return data
        return None

    def has_blob(self, digest: str) -> bool:
        return digest in self.staged or self.store.blobs.has(digest) or self._small_by_digest(digest) is not None

    def blob_bytes(self, digest: str, what: str | None = None) -> bytes:
        """The bytes of a blob (a manifest, a config) of the archive or, already, of the store."""
        data = self._small_by_digest(digest)
        if data is not None:
            return data
        path = self._path(digest, what)
        if path.stat().st_size > _MAX_JSON_MEMBER:
            raise InvalidArchive(f"{what or digest} is over {_MAX_JSON_MEMBER} bytes: too large for image JSON")
        return path.read_bytes()

    def _path(self, digest: str, what: str | None) -> Path:
        if digest in self.staged:
            return Path(self.staged[digest].path)
        if self.store.blobs.has(digest):
            return Path(self.store.blobs.path(digest))
        raise InvalidArchive(f"the archive refers to {what or digest} but does not contain it", hint=_FORMATS_HINT)

    def open_blob(self, digest: str) -> BinaryIO:
        data = self._small_by_digest(digest)
        return io.BytesIO(data) if data is not None else open(self._path(digest, None), "rb")

    def size_of(self, digest: str) -> int:
        data = self._small_by_digest(digest)
        return len(data) if data is not None else self._path(digest, None).stat().st_size

    def publish(self, needed: set[str]) -> None:
        """Put the blobs the images need into the store."""
        for digest in sorted(needed):
            if self.store.blobs.has(digest):
                continue
            if digest in self.staged:
                self.staged[digest].publish()
                continue
            data = self._small_by_digest(digest)
            if data is None:
                raise InvalidArchive(f"the archive refers to blob {digest} but does not contain it")
            self.store.blobs.put(data, digest)


def _json(raw: bytes, what: str) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise InvalidArchive(f"{what} is not valid JSON", hint=_FORMATS_HINT) from None


def _parsed(raw: bytes, what: str) -> manifests.Manifest | manifests.Index:
    """An index or manifest of the archive, with the shape checks of a pull."""
    try:
        return manifests.parse(raw, None, what)
    except RegistryError as e:
        raise InvalidArchive(str(e), hint=e.hint) from None


def _checked_config(archive: _Archive, digest: str, layers: int | None, what: str) -> tuple[dict[str, Any], list[str]]:
    """(the image config, its diff_ids) after the checks of a pull: its shape, its run settings, its layer count."""
    config = _json(archive.blob_bytes(digest, f"the image config {digest}"), f"the image config {digest}")
    try:
        diff_ids = manifests.config_diff_ids(config, what)
    except RegistryError as e:
        raise InvalidArchive(str(e), hint=e.hint) from None
    if layers is not None and len(diff_ids) != layers:
        raise InvalidArchive(
            f"{what}: the image config lists {len(diff_ids)} layers but the manifest {layers}", hint=_FORMATS_HINT
        )
    return config, diff_ids


class _Plan(Record):
    """One image of the archive, checked, before anything of it is stored."""

    config_digest: str
    config: dict[str, Any]
    diff_ids: list[str]
    layer_digests: list[str]
    layer_media: list[str | None]  # None: told by the blob's magic bytes
    names: list[str]
    manifest: tuple[str, str] | None  # (digest, media type) of a manifest the archive holds
    source: str


def _docker_save(archive: _Archive) -> list[_Plan]:
    entries = _json(archive.bytes_of("manifest.json"), "manifest.json of the archive")
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise InvalidArchive("manifest.json of the archive is not a list of objects", hint=_FORMATS_HINT)
    by_config: dict[str, tuple[str, str]] = {}  # config digest -> (manifest digest, media type), newer docker
    if archive.has("index.json"):
        for manifest_digest, manifest, _names in _oci_manifests(archive):
            by_config[manifest.config.digest] = (manifest_digest, manifest.media_type)
    out = []
    for entry in entries:
        config_name, layer_names, tags = entry.get("Config"), entry.get("Layers"), entry.get("RepoTags")
        if (
            not isinstance(config_name, str)
            or not isinstance(layer_names, list)
            or not all(isinstance(p, str) for p in layer_names)
        ):
            raise InvalidArchive(
                "an entry of manifest.json lacks Config (a path) or Layers (a list of paths)", hint=_FORMATS_HINT
            )
        if tags is not None and (not isinstance(tags, list) or not all(isinstance(t, str) for t in tags)):
            raise InvalidArchive("an entry of manifest.json has RepoTags that are not a list of strings")
        names = [_repo_tag(t) for t in tags or []]
        config_digest = archive.digest_of(config_name)
        layer_digests = [archive.digest_of(path) for path in layer_names]
        if config_digest in layer_digests:
            raise InvalidArchive(f"manifest.json lists the image config {config_name!r} as a layer too")
        config, diff_ids = _checked_config(archive, config_digest, len(layer_digests), "manifest.json of the archive")
        out.append(
            _Plan(config_digest, config, diff_ids, layer_digests, [None] * len(layer_digests), names,
                  by_config.get(config_digest), "from-tar docker-save")
        )  # fmt: skip
    return out


def _repo_tag(text: str) -> str:
    try:
        return str(reference.parse(text))
    except InvalidReference as e:
        raise InvalidArchive(f"the archive tags an image {text!r}, which is not a valid image name: {e}") from None


def _oci_manifests(archive: _Archive) -> list[tuple[str, manifests.Manifest, list[str]]]:
    """(digest, manifest, names) of each image of index.json; of a nested index, the host's platform only."""
    index = _parsed(archive.bytes_of("index.json"), "index.json of the archive")
    if not isinstance(index, manifests.Index):
        raise InvalidArchive("index.json of the archive is a manifest, not an image index", hint=_FORMATS_HINT)
    host = platforms.host()
    out = []
    for desc in index.manifests:
        names = [desc.annotations.get(key) for key in (_CONTAINERD_NAME, _REF_NAME)]
        if desc.media_type in mt.INDEXES:
            inner = _parsed(archive.blob_bytes(desc.digest, f"the index {desc.digest}"), f"index {desc.digest}")
            if not isinstance(inner, manifests.Index):
                raise InvalidArchive(f"index.json says {desc.digest} is an index, but it is a manifest")
            matching = [
                c for c in inner.manifests
                if c.media_type in mt.MANIFESTS and (c.platform is None or platforms.matches(host, c.platform))
            ]  # fmt: skip
            if not matching:
                raise InvalidArchive(f"the archive has no image for {host}")
            desc = matching[0]
            names += [desc.annotations.get(key) for key in (_CONTAINERD_NAME, _REF_NAME)]
        if desc.media_type not in mt.MANIFESTS:
            raise InvalidArchive(f"index.json lists {desc.digest} of media type {desc.media_type!r}, not an image")
        parsed = _parsed(archive.blob_bytes(desc.digest, f"the manifest {desc.digest}"), f"manifest {desc.digest}")
        if not isinstance(parsed, manifests.Manifest):
            raise InvalidArchive(f"index.json says {desc.digest} is a manifest, but it is an index")
        unique = list(dict.fromkeys(n for n in names if isinstance(n, str)))
        out.append((desc.digest, parsed, unique))
    return out


def _oci_layout(archive: _Archive) -> list[_Plan]:
    out = []
    for manifest_digest, manifest, annotated in _oci_manifests(archive):
        config_digest = manifest.config.digest
        config, diff_ids = _checked_config(archive, config_digest, len(manifest.layers), f"manifest {manifest_digest}")
        layer_digests = [layer.digest for layer in manifest.layers]
        for digest in layer_digests:
            if not archive.has_blob(digest):
                raise InvalidArchive(f"the archive refers to layer {digest} but does not contain it")
        names = []
        for name in annotated:
            if "/" not in name and ":" not in name:
                continue  # a bare ref.name is a tag ("latest") and names no repository: --tag gives one
            try:
                names.append(str(reference.parse(name)))
            except InvalidReference:
                continue
        out.append(
            _Plan(config_digest, config, diff_ids, layer_digests, [layer.media_type for layer in manifest.layers],
                  names, (manifest_digest, manifest.media_type), "from-tar oci-layout")
        )  # fmt: skip
    return out


def _media_type_of(archive: _Archive, digest: str) -> str:
    with archive.open_blob(digest) as f:
        head = f.read(4)
    if head.startswith(GZIP_MAGIC):
        return MEDIA_OCI_LAYER + "+gzip"
    if head.startswith(ZSTD_MAGIC):
        return MEDIA_OCI_LAYER + "+zstd"
    return MEDIA_OCI_LAYER


def _unpack_layers(store: Store, archive: _Archive, plan: _Plan, created: list[str]) -> tuple[LayerRef, ...]:
    """Unpack the plan's layers from the archive's blobs; `created` collects the snapshots new to the store."""
    out = []
    parent = None
    chains = digests.chain_ids(plan.diff_ids)
    for diff_id, chain_id, digest, media in zip(
        plan.diff_ids, chains, plan.layer_digests, plan.layer_media, strict=True
    ):
        existed = store.layers.has(chain_id)
        with archive.open_blob(digest) as f:
            info = unpack_layer(store, f, parent=parent, expected_diff_id=diff_id)
        if not existed:
            created.append(info.chain_id)
        media = media or _media_type_of(archive, digest)
        out.append(LayerRef(diff_id, info.chain_id, digest, media, archive.size_of(digest)))
        parent = info.chain_id
    return tuple(out)


def _generated_manifest(store: Store, archive: _Archive, plan: _Plan, layers: tuple[LayerRef, ...]) -> str:
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_OCI_MANIFEST,
        "config": {
            "mediaType": MEDIA_OCI_CONFIG,
            "digest": plan.config_digest,
            "size": archive.size_of(plan.config_digest),
        },
        "layers": [{"mediaType": layer.media_type, "digest": layer.digest, "size": layer.size} for layer in layers],
    }
    return store.blobs.put(json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode())


def _import_archive(
    store: Store, stream: BinaryIO, tag: str | None, created: list[str], archive: _Archive
) -> ImportResult:
    """Read the archive, check every image of it, unpack their layers, then store blobs and records."""
    archive.read(stream)
    if archive.has("manifest.json"):
        kind, plans = "docker-save", _docker_save(archive)
    elif archive.has("index.json") and archive.has("oci-layout"):
        kind, plans = "oci-layout", _oci_layout(archive)
    else:
        raise InvalidArchive(
            "the archive has neither manifest.json (docker save) nor index.json and oci-layout (OCI layout)",
            hint=_FORMATS_HINT,
        )
    unpacked = [_unpack_layers(store, archive, plan, created) for plan in plans]
    needed = {plan.config_digest for plan in plans} | {d for plan in plans for d in plan.layer_digests}
    needed |= {plan.manifest[0] for plan in plans if plan.manifest}
    archive.publish(needed)
    result = ImportResult(kind)
    for plan, layers in zip(plans, unpacked, strict=True):
        if plan.manifest:
            manifest_digest, media = plan.manifest
        else:
            manifest_digest, media = _generated_manifest(store, archive, plan, layers), MEDIA_OCI_MANIFEST
        created_at = plan.config.get("created") if isinstance(plan.config.get("created"), str) else None
        record = ImageRecord(
            id=plan.config_digest,
            layers=layers,
            manifest=manifest_digest,
            manifest_media_type=media,
            created=created_at or _created_of(store, plan.config_digest) or _now(),
            extra={"source": plan.source},
        )
        names = [*plan.names, tag] if tag and len(plans) == 1 else plan.names
        record = _keep_stored(store, record)
        store.images.put(record, names)
        result.images.append((record.id, names))
    return result


def _drop_layers(store: Store, created: list[str]) -> None:
    """Remove the snapshots a failed import made that no image uses; if another import or pull runs, leave them
    to garbage collection (it may be about to use them)."""
    if not created:
        return
    lock = store.lock("gc")
    if not lock.acquire(blocking=False):
        return
    try:
        with store.lock("refs"):
            used = {chain for record in store.images.all() for chain in record.chain_ids}
            for chain_id in reversed(created):
                if chain_id not in used:
                    store.layers.remove(chain_id)
    finally:
        lock.release()


class _Guarded(io.RawIOBase):
    """A decompressed stream whose errors (corrupt or truncated gzip/zstd) are told as InvalidArchive."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        try:
            data = self.raw.read(len(buf))
        except BaseException as e:
            raise stream_error(e) from None
        buf[: len(data)] = data
        return len(data)


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
    created: list[str] = []
    archive = _Archive(store)
    try:
        with gc.hold(store):
            stream = _Guarded(open_decompressed(source))
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
            return _import_archive(store, replay, tag, created, archive)
    except BaseException:
        _drop_layers(store, created)
        raise
    finally:
        archive.abort()
