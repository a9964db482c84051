"""Tar-split records: a layer tar kept as its headers only, rebuilt byte for byte from the snapshot.

An imported root filesystem is one uncompressed layer tar, which `push` must send exactly as it was (its
digest is the layer's diff_id). Instead of storing those bytes a second time as a blob, the unpacker
writes a record beside the snapshot (`layers/<chain-id-hex>/tar-split.gz`) while it streams: every byte
of the tar that is not file content (headers, PAX/GNU extended headers, padding, the end-of-archive
marker and whatever trails it) verbatim, and for each file's content only its size and where it was
written in `fs/`. `open_layer_tar` replays the record, reading the contents from the snapshot, and
verifies the result against the diff_id: a snapshot changed since the import is refused, never sent.

A file the layer itself replaces later in the same tar (a duplicate name, a directory replaced by a
file) is hard-linked into `tar-split.saved/<n>` before it is removed, so the record still finds the
bytes it had. The record is written into the layer's staging folder and published with it (one syncfs,
one rename), so it is exactly as durable as the snapshot.

Format (gzip; inside, after the magic line): `R <len> <bytes>` for verbatim bytes, `F <size> <len>
<path>` for a file's content (the n-th F is saved/<n> when that exists), and a final `E <total size>
<sha256>`; numbers are unsigned LEB128 varints.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import zlib
from pathlib import Path

from minicache.errors import DigestMismatch, NotFound

TYPE_CHECKING = False
if TYPE_CHECKING:
    from minicache.store import Store

RECORD_FILE = "tar-split.gz"
SAVED_DIR = "tar-split.saved"
MAGIC = b"minicontainer tar-split 1\n"
_FLUSH_AT = 1 << 20
_READ = 1 << 20
_DIR_FD = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FD = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # NONBLOCK: a FIFO in the way never hangs
_REBUILD_HINT = "the layer's files were changed after the import; remove the image and import it again"


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


class Recorder:
    """Writes one layer's record while the unpacker streams its tar (see the module docstring)."""

    def __init__(self, layer_dir: Path) -> None:
        self.layer_dir = layer_dir
        self._file = open(layer_dir / RECORD_FILE, "xb")  # noqa: SIM115 - closed by finish/abort
        self._z = zlib.compressobj(1, zlib.DEFLATED, 31)  # level 1: headers compress ~10x even so
        self._pending = bytearray(MAGIC)
        self._files = 0
        self._at: dict[str, int] = {}  # resolved path in fs/ -> index of the last F op whose bytes are there

    def raw(self, data: bytes | memoryview) -> None:
        if data:
            self._pending += b"R" + _varint(len(data))
            self._pending += data
            if len(self._pending) >= _FLUSH_AT:
                self._flush()

    def file(self, path: str, size: int) -> None:
        encoded = path.encode("utf-8", "surrogateescape")
        self._pending += b"F" + _varint(size) + _varint(len(encoded)) + encoded
        self._at[path] = self._files
        self._files += 1

    def _flush(self) -> None:
        self._file.write(self._z.compress(self._pending))
        self._pending.clear()

    def removing(self, root_fd: int, path: str, is_dir: bool) -> None:
        """`path` (resolved, relative to fs/) is about to be removed: keep the contents the record needs."""
        if is_dir:
            prefix = path + "/"
            paths = [p for p in self._at if p.startswith(prefix)]
        else:
            paths = [path] if path in self._at else []
        for p in paths:
            saved = self.layer_dir / SAVED_DIR
            saved.mkdir(mode=0o700, exist_ok=True)
            os.link(p, saved / str(self._at.pop(p)), src_dir_fd=root_fd, follow_symlinks=False)

    def finish(self, size: int, diff_id: str) -> None:
        self._pending += b"E" + _varint(size) + bytes.fromhex(diff_id.removeprefix("sha256:"))
        self._flush()
        self._file.write(self._z.flush())
        self._file.close()

    def abort(self) -> None:
        self._file.close()


def adopt(staging: Path, layer_dir: Path) -> None:
    """Give an existing layer without a record (say, imported with --no-layer-blob) the record of a new
    unpacking of the same tar: made durable first, then moved in by rename."""
    if (layer_dir / RECORD_FILE).exists():
        return
    from minicache.atomic import fsync_dir
    from minicache.syscalls import syncfs

    fd = os.open(staging, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        syncfs(fd)
    finally:
        os.close(fd)
    if (staging / SAVED_DIR).exists():
        os.replace(staging / SAVED_DIR, layer_dir / SAVED_DIR)  # before the record, which names what is in it
    os.replace(staging / RECORD_FILE, layer_dir / RECORD_FILE)
    fsync_dir(layer_dir)


# -- rebuilding ---------------------------------------------------------------------------------------------
def has_record(store: Store, chain_id: str) -> bool:
    return (store.layers.path(chain_id) / RECORD_FILE).is_file()


class _Ops:
    """The decompressed record, read op by op."""

    def __init__(self, path: Path) -> None:
        import gzip

        self.f = gzip.open(path, "rb")  # noqa: SIM115 - closed by the reader

    def exact(self, n: int) -> bytes:
        data = self.f.read(n)
        if len(data) != n:
            raise EOFError
        return data

    def varint(self) -> int:
        shift = n = 0
        while True:
            byte = self.exact(1)[0]
            n |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return n
            shift += 7


class LayerTar(io.RawIOBase):
    """The layer tar rebuilt from a record and its snapshot, verified against the diff_id.

    The check runs before the last bytes are handed out: a mismatch raises DigestMismatch from the read
    that would have completed the stream, so an upload never sends a whole wrong tar.
    """

    def __init__(self, store: Store, chain_id: str) -> None:
        layer = store.layers.path(chain_id)
        self.chain_id = chain_id
        self.diff_id = store.layers.info(chain_id).diff_id
        self.fs = layer / "fs"
        self.saved = layer / SAVED_DIR
        try:
            self.ops = _Ops(layer / RECORD_FILE)
        except FileNotFoundError:
            raise NotFound(f"layer {chain_id} has no tar-split record") from None
        self.hash = hashlib.sha256()
        self.size = 0
        self._chunks = self._generate()
        self._buf = memoryview(b"")

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        if not self.closed:
            self.ops.f.close()
        super().close()

    def readinto(self, buf) -> int:  # type: ignore[override]
        while not self._buf:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._buf = memoryview(chunk)
        n = min(len(buf), len(self._buf))
        buf[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n

    def _mismatch(self, why: str) -> DigestMismatch:
        return DigestMismatch(f"layer {self.chain_id} cannot be rebuilt from its snapshot: {why}", hint=_REBUILD_HINT)

    def _generate(self):
        """The tar's bytes, piece by piece, each hashed; the last piece only once the whole is verified."""
        held = b""
        try:
            if self.ops.exact(len(MAGIC)) != MAGIC:
                raise self._mismatch("its tar-split record is not one this version reads")
            index = 0
            while True:
                op = self.ops.exact(1)
                if op == b"R":
                    pieces = [self.ops.exact(self.ops.varint())]
                elif op == b"F":
                    size = self.ops.varint()
                    path = self.ops.exact(self.ops.varint()).decode("utf-8", "surrogateescape")
                    pieces = self._content(index, path, size)
                    index += 1
                elif op == b"E":
                    size, digest = self.ops.varint(), self.ops.exact(32)
                    break
                else:
                    raise self._mismatch("its tar-split record is corrupt")
                for piece in pieces:
                    self.hash.update(piece)
                    self.size += len(piece)
                    if held:
                        yield held
                    held = piece
        except (EOFError, OSError, zlib.error) as e:
            if isinstance(e, OSError) and e.errno is not None:
                raise
            raise self._mismatch("its tar-split record is truncated or corrupt") from None
        got = "sha256:" + self.hash.hexdigest()
        if got != self.diff_id or self.size != size or "sha256:" + digest.hex() != self.diff_id:
            raise self._mismatch(f"the rebuilt tar has digest {got} ({self.size} bytes), not {self.diff_id}")
        if held:
            yield held

    def _content(self, index: int, path: str, size: int):
        saved = self.saved / str(index)
        try:
            fd = os.open(saved, _FILE_FD)
        except FileNotFoundError:
            fd = self._open_in_fs(path)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size != size:
                raise self._mismatch(f"/{path} is no longer the {size}-byte file the tar had")
            left = size
            while left:
                data = os.read(fd, min(left, _READ))
                if not data:
                    raise self._mismatch(f"/{path} is shorter than the tar's {size} bytes")
                left -= len(data)
                yield data
        finally:
            os.close(fd)

    def _open_in_fs(self, path: str) -> int:
        """Open fs/PATH without following any symlink (the record names resolved paths)."""
        *dirs, name = path.split("/")
        fd = os.open(self.fs, _DIR_FD)
        try:
            for comp in dirs:
                nfd = os.open(comp, _DIR_FD, dir_fd=fd)
                os.close(fd)
                fd = nfd
            return os.open(name, _FILE_FD, dir_fd=fd)
        except OSError as e:
            raise self._mismatch(f"/{path} cannot be opened: {e.strerror}") from None
        finally:
            os.close(fd)


def open_layer_tar(store: Store, chain_id: str) -> io.BufferedReader:
    """The exact layer tar of `chain_id`, rebuilt from its tar-split record (NotFound when it has none)."""
    return io.BufferedReader(LayerTar(store, chain_id), _READ)
