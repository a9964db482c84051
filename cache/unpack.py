"""The one unpacker: a layer tarball (plain, gzip or zstd) streamed into a new layer snapshot.

One pass over the stream computes the diff_id, enforces size and entry limits, and writes every entry
through a SafeTree, so nothing lands outside the snapshot. Whiteouts become overlayfs whiteouts
(`.wh.NAME` → a 0:0 character device, `.wh..wh..opq` → the opaque xattr). The snapshot is built in tmp/
and published by one rename under its chain ID; on any error it is discarded.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
import tarfile
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

from minicache import digest as digests
from minicache.errors import DigestMismatch, InvalidArchive, TooLarge
from minicache.layers import LayerInfo
from minicache.safetree import OPAQUE_XATTR, SafeTree, is_whiteout, split

if TYPE_CHECKING:
    from minicache.store import Store

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
CHUNK = 1 << 20
_SPACE_CHECK_EVERY = 64 << 20
_SPACE_RESERVE = 256 << 20
# Extended headers (PAX, GNU long names) are read whole into memory by tarfile: cap them before it does.
_MAX_HEADER_BYTES = 1 << 20
_EXTENDED_TYPES = (
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
)
_XATTR_PREFIX = "SCHILY.xattr."
# xattrs a layer may not set: they would steer overlayfs itself (redirects, opaque dirs, metacopy).
_FORBIDDEN_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.")


@dataclass(frozen=True)
class Limits:
    """Decompression-bomb guards. Generous defaults; a layer beyond them is refused, not half-written."""

    max_bytes: int = 64 << 30  # uncompressed tar stream
    max_entries: int = 2_000_000
    max_path: int = 4096


class _SafeTarInfo(tarfile.TarInfo):
    def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in _EXTENDED_TYPES and self.size > _MAX_HEADER_BYTES:
            raise TooLarge(f"layer has a {self.size}-byte extended header; at most {_MAX_HEADER_BYTES} allowed")
        return super()._proc_member(tarfile_)


class _HashingReader:
    """Hashes and counts the uncompressed bytes tarfile reads, and stops a stream grown too large."""

    def __init__(self, raw: BinaryIO, limit: int) -> None:
        self.raw = raw
        self.limit = limit
        self.hash = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        try:
            data = self.raw.read(n if n is not None and n >= 0 else CHUNK)
        except OSError as e:
            if e.errno is not None:  # a real I/O error of the source, not a corrupt stream
                raise
            raise InvalidArchive(f"layer stream is corrupt: {e}") from e
        except (EOFError, ValueError) as e:
            raise InvalidArchive(f"layer stream is corrupt or truncated: {e}") from e
        except Exception as e:
            if type(e).__module__.split(".")[0] in ("zstandard", "isal", "zlib_ng"):
                raise InvalidArchive(f"layer stream is corrupt: {e}") from e
            raise
        self.hash.update(data)
        self.size += len(data)
        if self.size > self.limit:
            raise TooLarge(f"layer is larger than {self.limit} bytes uncompressed; refusing it")
        return data

    def drain(self) -> None:
        while self.read(CHUNK):
            pass


def open_decompressed(source: BinaryIO) -> BinaryIO:
    """The uncompressed view of a layer stream: gzip and zstd are told by their magic bytes."""
    import io

    buffered = source if hasattr(source, "peek") else io.BufferedReader(source, CHUNK)  # type: ignore[arg-type]
    head = buffered.peek(4)[:4]
    if head.startswith(GZIP_MAGIC):
        from isal import igzip_threaded

        return igzip_threaded.open(buffered, "rb", threads=1)  # decompresses ahead in its own thread
    if head.startswith(ZSTD_MAGIC):
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(buffered, read_size=CHUNK, read_across_frames=True)
    return buffered


def clean_name(name: str, limits: Limits) -> str:
    """A tar entry name as a relative path; `..` components are refused, a leading `/` is dropped."""
    if len(name) > limits.max_path or "\x00" in name:
        raise InvalidArchive(f"layer entry name is too long or contains NUL: {name[:80]!r}")
    comps = split(name)
    if ".." in comps:
        raise InvalidArchive(f"layer entry {name!r} contains '..': refusing a path that points outside the layer")
    return "/".join(comps)


class _Unpacker:
    def __init__(self, tree: SafeTree, limits: Limits) -> None:
        self.tree = tree
        self.limits = limits
        self.is_root = os.geteuid() == 0
        self.entries = 0
        self.content_bytes = 0
        self.dir_times: list[tuple[tuple[str, ...], int]] = []
        self._space_checked_at = 0

    # -- one entry ---------------------------------------------------------------------------------------
    def apply(self, tar: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        self.entries += 1
        if self.entries > self.limits.max_entries:
            raise TooLarge(f"layer has more than {self.limits.max_entries} entries; refusing it")
        path = clean_name(m.name, self.limits)
        if not path:  # the root itself ("./"): only its metadata
            if m.isdir():
                self._metadata(self.tree.root_fd, m)
                self.dir_times.append(((), int(m.mtime)))
            return
        base = path.rsplit("/", 1)[-1]
        if base.startswith(WHITEOUT_PREFIX):
            self._whiteout(path, base)
            return
        dfd, key, name = self.tree.parent(path)
        existing = _lstat(name, dfd)
        if m.isdir():
            if existing is None or not stat.S_ISDIR(existing.st_mode):
                if existing is not None:
                    self._remove(dfd, key, name, existing)
                os.mkdir(name, 0o700, dir_fd=dfd)
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
            try:
                self._metadata(fd, m)
            finally:
                os.close(fd)
            self.dir_times.append(((*key, name), int(m.mtime)))
            return
        if existing is not None:
            self._remove(dfd, key, name, existing)
        if m.isreg():
            self._regular(tar, m, dfd, name)
        elif m.issym():
            os.symlink(m.linkname, name, dir_fd=dfd)
            if self.is_root:
                os.chown(name, m.uid, m.gid, dir_fd=dfd, follow_symlinks=False)
            os.utime(name, (m.mtime, m.mtime), dir_fd=dfd, follow_symlinks=False)
        elif m.islnk():
            self._hardlink(m, dfd, name)
        elif m.ischr() or m.isblk() or m.isfifo():
            self._special(m, dfd, name)
        else:
            raise InvalidArchive(f"layer entry {m.name!r} has an unsupported type {m.type!r}")

    def _regular(self, tar: tarfile.TarFile, m: tarfile.TarInfo, dfd: int, name: str) -> None:
        self.content_bytes += m.size
        self._check_space(m.size)
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dfd)
        try:
            if m.size:
                src = tar.extractfile(m)
                assert src is not None
                remaining = m.size
                while remaining:
                    data = src.read(min(CHUNK, remaining))
                    if not data:
                        raise InvalidArchive(f"layer is truncated inside {m.name!r}")
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view) :]
                    remaining -= len(data)
            self._metadata(fd, m)
        finally:
            os.close(fd)

    def _hardlink(self, m: tarfile.TarInfo, dfd: int, name: str) -> None:
        target = clean_name(m.linkname, self.limits)
        if not target:
            raise InvalidArchive(f"hard link {m.name!r} points at the layer's root")
        tfd, tkey, tname = self.tree.parent(target)
        st = _lstat(tname, tfd)
        if st is None or is_whiteout(st):
            self._copy_up(tfd, tkey, tname, m)
        elif stat.S_ISDIR(st.st_mode):
            raise InvalidArchive(f"hard link {m.name!r} points at a directory")
        os.link(tname, name, src_dir_fd=tfd, dst_dir_fd=dfd, follow_symlinks=False)

    def _copy_up(self, tfd: int, tkey: tuple[str, ...], tname: str, m: tarfile.TarInfo) -> None:
        """A hard link to a file of a lower layer: copy that file into this layer first (as overlayfs would)."""
        below = self.tree.lookup_below((*tkey, tname))
        if below is None or stat.S_ISDIR(below[1].st_mode):
            raise InvalidArchive(f"hard link {m.name!r} points at {m.linkname!r}, which does not exist in the image")
        lower_path, st = below
        if stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(lower_path), tname, dir_fd=tfd)
        elif stat.S_ISREG(st.st_mode):
            self._check_space(st.st_size)
            with open(lower_path, "rb") as src:
                fd = os.open(
                    tname, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=tfd
                )
                try:
                    with os.fdopen(os.dup(fd), "wb") as dst:
                        shutil.copyfileobj(src, dst, CHUNK)
                    if self.is_root:
                        os.fchown(fd, st.st_uid, st.st_gid)
                    os.fchmod(fd, stat.S_IMODE(st.st_mode))
                    os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))
                finally:
                    os.close(fd)
        else:
            raise InvalidArchive(f"hard link {m.name!r} points at a special file of a lower layer")

    def _special(self, m: tarfile.TarInfo, dfd: int, name: str) -> None:
        if m.isfifo():
            os.mkfifo(name, 0o600, dir_fd=dfd)
        else:
            if not self.is_root:
                raise InvalidArchive(f"layer entry {m.name!r} is a device node; only root can unpack it")
            kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
            os.mknod(name, kind | 0o600, os.makedev(m.devmajor, m.devminor), dir_fd=dfd)
        if self.is_root:
            os.chown(name, m.uid, m.gid, dir_fd=dfd, follow_symlinks=False)
        os.chmod(name, m.mode & 0o7777, dir_fd=dfd, follow_symlinks=False)
        os.utime(name, (m.mtime, m.mtime), dir_fd=dfd, follow_symlinks=False)

    def _whiteout(self, path: str, base: str) -> None:
        parent = path.rsplit("/", 1)[0] if "/" in path else ""
        dfd, key = self.tree.resolve_dir(split(parent))
        if base == OPAQUE_MARKER:
            os.setxattr(dfd, OPAQUE_XATTR, b"y")
            self.tree.opaque.add(key)
            return
        name = base[len(WHITEOUT_PREFIX) :]
        if name in ("", ".", "..") or name.startswith(WHITEOUT_PREFIX):
            raise InvalidArchive(f"layer has a malformed whiteout {path!r}")
        existing = _lstat(name, dfd)
        if existing is not None:
            # Whiteouts hide lower layers only; a file this layer itself adds stays (OCI image spec).
            return
        if not self.is_root:
            raise InvalidArchive("whiteouts are overlayfs character devices; only root can unpack them")
        os.mknod(name, stat.S_IFCHR | 0o600, 0, dir_fd=dfd)

    def _remove(self, dfd: int, key: tuple[str, ...], name: str, st: os.stat_result) -> None:
        if stat.S_ISDIR(st.st_mode):
            self.tree.forget((*key, name))
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
            try:
                _rmtree_at(fd)
            finally:
                os.close(fd)
            os.rmdir(name, dir_fd=dfd)
        else:
            os.unlink(name, dir_fd=dfd)

    # -- metadata ----------------------------------------------------------------------------------------
    def _metadata(self, fd: int, m: tarfile.TarInfo) -> None:
        if self.is_root:
            os.fchown(fd, m.uid, m.gid)
        os.fchmod(fd, m.mode & 0o7777)  # after chown, which clears setuid/setgid
        for key, value in m.pax_headers.items():
            if key.startswith(_XATTR_PREFIX):
                self._xattr(fd, key[len(_XATTR_PREFIX) :], value, m)
        if not m.isdir():
            os.utime(fd, (m.mtime, m.mtime))

    def _xattr(self, fd: int, name: str, value: str, m: tarfile.TarInfo) -> None:
        if name.startswith(_FORBIDDEN_XATTR_PREFIXES):
            raise InvalidArchive(f"layer entry {m.name!r} sets the overlayfs attribute {name!r}; refusing it")
        raw = value.encode("utf-8", "surrogateescape")
        try:
            os.setxattr(fd, name, raw)
        except OSError as e:
            if e.errno not in (errno.ENOTSUP, errno.EPERM):
                raise

    def finish(self) -> None:
        """Directory mtimes last (writing inside a directory changes its mtime), deepest first."""
        for key, mtime in reversed(self.dir_times):
            try:
                fd, _ = self.tree.resolve_dir(list(key), create=False)
            except (FileNotFoundError, InvalidArchive):
                continue
            os.utime(fd, (mtime, mtime))

    def _check_space(self, size: int) -> None:
        """Refuse a file the filesystem cannot hold, instead of filling the disk."""
        self._space_checked_at += size
        if size < _SPACE_CHECK_EVERY and self._space_checked_at < _SPACE_CHECK_EVERY:
            return
        self._space_checked_at = 0
        vfs = os.statvfs(self.tree.root_fd)
        free = vfs.f_bavail * vfs.f_frsize
        if size + _SPACE_RESERVE > free:
            raise TooLarge(f"layer needs at least {size} more bytes but the store has {free} free; free some space")


def _lstat(name: str, dfd: int) -> os.stat_result | None:
    try:
        return os.lstat(name, dir_fd=dfd)
    except FileNotFoundError:
        return None


def _rmtree_at(fd: int) -> None:
    """Empty the directory open at `fd` without following symlinks (shutil.rmtree takes no descriptor)."""
    for entry in os.scandir(fd):
        if entry.is_dir(follow_symlinks=False):
            sub = os.open(entry.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            try:
                _rmtree_at(sub)
            finally:
                os.close(sub)
            os.rmdir(entry.name, dir_fd=fd)
        else:
            os.unlink(entry.name, dir_fd=fd)


def unpack_layer(
    store: Store,
    source: BinaryIO,
    *,
    parent: str | None = None,
    expected_diff_id: str | None = None,
    limits: Limits | None = None,
) -> LayerInfo:
    """Stream one layer (plain tar, gzip or zstd, told by magic bytes) into a new snapshot.

    `parent` is the chain ID of the layer below (already in the store) or None. The diff_id is computed
    while streaming; a mismatch with `expected_diff_id` raises DigestMismatch at the end of the stream and
    commits nothing. If the layer is already in the store it is not unpacked again.
    """
    limits = limits or Limits()
    if expected_diff_id is not None:
        chain_id = _chain(parent, expected_diff_id)
        if store.layers.has(chain_id):
            return store.layers.info(chain_id)
    lowers = _lowers(store, parent)
    staging = store.layers.new_staging()
    try:
        reader = _HashingReader(open_decompressed(source), limits.max_bytes)
        with SafeTree(staging / "fs", lowers) as tree:
            unpacker = _Unpacker(tree, limits)
            try:
                with tarfile.open(fileobj=reader, mode="r|", tarinfo=_SafeTarInfo, bufsize=CHUNK) as tar:  # type: ignore[call-overload]
                    for member in tar:
                        unpacker.apply(tar, member)
                reader.drain()
            except tarfile.TarError as e:
                raise InvalidArchive(f"layer is not a valid tar stream: {e}") from e
            except OSError as e:
                if e.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise TooLarge(f"the store's filesystem is full while unpacking a layer: {e.strerror}") from e
                raise
            unpacker.finish()
        diff_id = "sha256:" + reader.hash.hexdigest()
        if expected_diff_id is not None and diff_id != expected_diff_id:
            raise DigestMismatch(f"layer content has diff_id {diff_id}, but the image config says {expected_diff_id}")
        info = LayerInfo(chain_id=_chain(parent, diff_id), diff_id=diff_id, parent=parent, size=unpacker.content_bytes)
        with store.layers.lock(info.chain_id):
            if store.layers.has(info.chain_id):
                store.discard(staging)
                return store.layers.info(info.chain_id)
            store.layers.commit(staging, info)
        return info
    except BaseException:
        store.discard(staging)
        raise


def _chain(parent: str | None, diff_id: str) -> str:
    digests.validate(diff_id)
    return diff_id if parent is None else digests.of_bytes(f"{parent} {diff_id}".encode())


def _lowers(store: Store, parent: str | None) -> list:
    """The snapshot directories below a new layer, topmost first."""
    out = []
    chain = parent
    while chain is not None:
        out.append(store.layers.fs(chain))
        chain = store.layers.info(chain).parent
    return out
