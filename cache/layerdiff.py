"""A layer from an overlay upper directory: the one differ behind `minibuild build` and `minirun commit`.

The upper directory of an overlay mount holds exactly what changed above its lower layers, in overlay
form: a deleted path is a 0:0 character device, a directory replaced wholesale carries the opaque xattr.
`write_layer` streams it as an OCI layer tar (`.wh.NAME` files, `.wh..wh..opq` markers) through the
compressor into the blob store, hashing the tar (the diff_id) and the compressed bytes (the blob digest)
in the same pass. Entries are sorted and carry no user or group names, so the same tree gives the same
bytes; with `timestamp`, every mtime later than it is clamped to it (SOURCE_DATE_EPOCH's rule), which
makes a whole build reproducible.

`adopt_upper` then publishes the upper directory itself as the layer's snapshot (one rename: it is
already in the snapshot format), so a build step never unpacks what it just wrote.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING

from minicache import digest as digests
from minicache.errors import InvalidSpec
from minicache.layers import FS_DIR, LayerInfo
from minicache.record import Record
from minicache.safetree import OPAQUE_XATTR, is_whiteout

if TYPE_CHECKING:
    from minicache.store import Store

MEDIA_TYPES = {
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
    "none": "application/vnd.oci.image.layer.v1.tar",
}
COMPRESSIONS = tuple(MEDIA_TYPES)
WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
# overlayfs' own bookkeeping in an upper directory: never part of a layer.
_OVERLAY_XATTRS = ("trusted.overlay.", "user.overlay.")
_CHUNK = 1 << 20


class LayerBlob(Record, frozen=True):
    diff_id: str  # sha256 of the uncompressed tar
    digest: str  # sha256 of the blob as stored
    size: int  # bytes of the blob
    media_type: str
    empty: bool  # the upper directory held no change at all
    content_size: int = 0  # bytes of file content in the layer (what LayerInfo.size records)


class _Sink:
    """Tar bytes in; diff_id hash, compressor and blob writer behind it."""

    def __init__(self, store: Store, compression: str) -> None:
        if compression not in MEDIA_TYPES:
            raise InvalidSpec(f"unknown compression {compression!r}", hint="use gzip, zstd or none")
        self.hash = hashlib.sha256()
        self.writer = store.blobs.writer()
        self.compress = self.flush = None
        if compression == "gzip":
            from isal import isal_zlib

            obj = isal_zlib.compressobj(2, isal_zlib.DEFLATED, 31)  # gzip container, header mtime 0
            self.compress, self.flush = obj.compress, obj.flush
        elif compression == "zstd":
            import zstandard

            obj = zstandard.ZstdCompressor(level=3).compressobj()
            self.compress, self.flush = obj.compress, obj.flush
        self.pending: list[bytes] = []
        self.pending_size = 0

    def write(self, data: bytes) -> None:
        self.pending.append(data)
        self.pending_size += len(data)
        if self.pending_size >= _CHUNK:
            self._push()

    def _push(self) -> None:
        data = b"".join(self.pending)
        self.pending, self.pending_size = [], 0
        self.hash.update(data)
        out = self.compress(data) if self.compress else data
        if out:
            self.writer.write(out)

    def finish(self) -> tuple[str, str, int]:
        self._push()
        if self.flush:
            self.writer.write(self.flush())
        digest = self.writer.commit("layer blob")
        return "sha256:" + self.hash.hexdigest(), digest, self.writer.verifier.size


def _xattrs(path: str) -> dict[str, str]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    out = {}
    for name in sorted(names):
        if name.startswith(_OVERLAY_XATTRS):
            continue
        with contextlib.suppress(OSError):
            out[f"SCHILY.xattr.{name}"] = os.getxattr(path, name, follow_symlinks=False).decode(
                "utf-8", "surrogateescape"
            )
    return out


def _is_opaque(path: str) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


class _TarWriter:
    def __init__(self, sink: _Sink, timestamp: int | None, exclude: tuple[str, ...] = ()) -> None:
        self.exclude = frozenset(exclude)
        self.sink = sink
        self.timestamp = timestamp
        self.links: dict[tuple[int, int], str] = {}
        self.count = 0
        self.content = 0

    def _mtime(self, mtime: float) -> int:
        t = int(mtime)
        return min(t, self.timestamp) if self.timestamp is not None else t

    def header(self, info: tarfile.TarInfo) -> None:
        self.sink.write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
        self.count += 1

    def whiteout(self, name: str, mtime: float) -> None:
        info = tarfile.TarInfo(name)
        info.mode, info.mtime, info.uname, info.gname = 0, self._mtime(mtime), "", ""
        self.header(info)

    def entry(self, path: str, name: str, st: os.stat_result) -> None:
        info = tarfile.TarInfo(name)
        info.mode = stat.S_IMODE(st.st_mode)
        info.uid, info.gid = st.st_uid, st.st_gid
        info.uname = info.gname = ""
        info.mtime = self._mtime(st.st_mtime)
        info.pax_headers = _xattrs(path)
        fd = None
        if stat.S_ISDIR(st.st_mode):
            info.type = tarfile.DIRTYPE
            info.name = name + "/"
        elif stat.S_ISLNK(st.st_mode):
            info.type = tarfile.SYMTYPE
            info.linkname = os.readlink(path)
        elif stat.S_ISREG(st.st_mode):
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in self.links:
                info.type = tarfile.LNKTYPE
                info.linkname = self.links[key]
            else:
                if st.st_nlink > 1:
                    self.links[key] = name
                info.type = tarfile.REGTYPE
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                info.size = os.fstat(fd).st_size
        elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            info.type = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
            info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        elif stat.S_ISFIFO(st.st_mode):
            info.type = tarfile.FIFOTYPE
        else:
            return  # sockets: not part of a layer, as in Docker
        self.header(info)
        if fd is not None:
            self.content += info.size
            try:
                left = info.size
                while left > 0:
                    chunk = os.read(fd, min(_CHUNK, left))
                    if not chunk:
                        raise InvalidSpec(f"{path} shrank while it was being written into a layer")
                    self.sink.write(chunk)
                    left -= len(chunk)
            finally:
                os.close(fd)
            if info.size % tarfile.BLOCKSIZE:
                self.sink.write(bytes(tarfile.BLOCKSIZE - info.size % tarfile.BLOCKSIZE))

    def walk(self, directory: str, prefix: str) -> None:
        with os.scandir(directory) as it:
            entries = sorted(it, key=lambda e: e.name.encode("utf-8", "surrogateescape"))
        for entry in entries:
            path = entry.path
            name = prefix + entry.name
            st = entry.stat(follow_symlinks=False)
            if name in self.exclude and _is_placeholder(path, st):
                continue
            if is_whiteout(st):
                parent, _, base = name.rpartition("/")
                self.whiteout((parent + "/" if parent else "") + WHITEOUT_PREFIX + base, st.st_mtime)
                continue
            self.entry(path, name, st)
            if stat.S_ISDIR(st.st_mode):
                if _is_opaque(path):
                    self.whiteout(name + "/" + OPAQUE_MARKER, st.st_mtime)
                self.walk(path, name + "/")


def _is_placeholder(path: str, st: os.stat_result) -> bool:
    if stat.S_ISREG(st.st_mode):
        return st.st_size == 0
    if stat.S_ISDIR(st.st_mode):
        return not any(os.scandir(path))
    return False


def write_layer(
    store: Store,
    upper: Path,
    *,
    compression: str = "gzip",
    timestamp: int | None = None,
    exclude_placeholders: tuple[str, ...] = (),
) -> LayerBlob:
    """Stream the changes in `upper` (an overlay upper directory) into a verified layer blob in the store.

    `exclude_placeholders`: relative paths left out when they are an empty file or directory (mount points).
    """
    sink = _Sink(store, compression)
    tar = _TarWriter(sink, timestamp, exclude_placeholders)
    try:
        tar.walk(os.fspath(upper), "")
        sink.write(bytes(tarfile.BLOCKSIZE * 2))
        diff_id, digest, size = sink.finish()
    except BaseException:
        sink.writer.abort()
        raise
    return LayerBlob(diff_id, digest, size, MEDIA_TYPES[compression], empty=tar.count == 0, content_size=tar.content)


def compress_stream(store: Store, source, compression: str) -> tuple[str, str, int]:
    """An uncompressed layer tar from `source` (a binary file) into a compressed blob: (diff_id, digest, size)."""
    sink = _Sink(store, compression)
    try:
        while chunk := source.read(_CHUNK):
            sink.write(chunk)
        return sink.finish()
    except BaseException:
        sink.writer.abort()
        raise


def is_empty(upper: Path) -> bool:
    """True when an upper directory holds no change (nothing in it but possibly its own root)."""
    return not any(os.scandir(upper))


def clean_overlay_xattrs(upper: Path) -> None:
    """Drop overlayfs' bookkeeping xattrs (origin, impure, ...) but the opaque mark, before `upper` becomes a
    lower layer of other mounts: they describe the lower layers of the mount that wrote them."""
    for root, dirs, files in os.walk(upper):
        for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
            try:
                names = os.listxattr(name, follow_symlinks=False)
            except OSError:
                continue
            for attr in names:
                if attr.startswith(_OVERLAY_XATTRS) and attr != OPAQUE_XATTR:
                    with contextlib.suppress(OSError):
                        os.removexattr(name, attr, follow_symlinks=False)


def adopt_upper(store: Store, upper: Path, parent: str | None, diff_id: str, size: int = 0) -> LayerInfo:
    """Publish `upper` (in the store's tmp/, already written into a blob) as the snapshot of its layer.

    The directory is moved, not copied; if the layer exists already (the same step built elsewhere), ours
    is discarded. Returns the layer's info; `upper` no longer exists afterwards.
    """
    chain_id = diff_id if parent is None else digests.of_bytes(f"{parent} {diff_id}".encode())
    info = LayerInfo(chain_id=chain_id, diff_id=diff_id, parent=parent, size=size)
    with store.layers.lock(chain_id):
        if store.layers.has(chain_id):
            store.discard(upper)
            return store.layers.info(chain_id)
        clean_overlay_xattrs(upper)
        staging = Path(store.layers.new_staging())
        try:
            os.rmdir(staging / FS_DIR)
            os.rename(upper, staging / FS_DIR)
            store.layers.commit(staging, info)
        except BaseException:
            store.discard(staging)
            raise
    return info
