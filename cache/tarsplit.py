"""Tar-split records: a layer tar kept as its headers only, rebuilt byte for byte from the snapshot.

An imported root filesystem is one uncompressed layer tar, which `push` must send exactly as it was (its
digest is the layer's diff_id). Instead of storing those bytes a second time as a blob, the unpacker
writes a record beside the snapshot (`layers/<chain-id-hex>/tar-split/`) while it streams:

- `raw.gz`: every byte of the tar that is not file content (headers, PAX/GNU extended headers, padding,
  the end-of-archive marker and whatever trails it), verbatim and concatenated;
- `index.gz` (written last; its presence means the record is complete): a line `minicontainer
  tar-split 1 <tar size> <diff_id>`, then for each file's content, in tar order, `<offset in raw>
  <size> <path in fs/>` ended by a NUL (paths are the resolved ones: no symlink on the way);
- `saved/<n>`: the n-th file's content, when the layer itself replaced or removed that file later in the
  same tar (a duplicate name, a directory replaced by a file): hard-linked aside before the removal.

`open_layer_tar` replays the record, reading the contents from the snapshot, and verifies the result
against the diff_id before handing out its last bytes: a snapshot changed since the import is refused,
never sent. The record is written into the layer's staging folder and published with it (one syncfs,
one rename), so it is exactly as durable as the snapshot. Its cost on the unpacking thread is two list
appends per file and one join per 4 MB chunk; formatting and compression run in a thread of their own.
"""

from __future__ import annotations

import hashlib
import io
import os
import queue
import stat
import threading
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

from minicache.errors import DigestMismatch, NotFound

if TYPE_CHECKING:
    from minicache.store import Store

RECORD_DIR = "tar-split"
RAW_FILE = "raw.gz"
INDEX_FILE = "index.gz"
SAVED_DIR = "saved"
MAGIC = b"minicontainer tar-split 1"
_FLUSH_AT = 4 << 20
_READ = 1 << 20
_DIR_FD = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FD = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # NONBLOCK: a FIFO in the way never hangs
_REBUILD_HINT = "the layer's files were changed after the import; remove the image and import it again"

Key = tuple[str, ...]


class _Compressor(threading.Thread):
    """Gzips the verbatim bytes into raw.gz and formats and gzips the index, off the unpacking thread."""

    def __init__(self, directory: Path) -> None:
        super().__init__(name="tar-split", daemon=True)
        self.file = open(directory / RAW_FILE, "xb")  # noqa: SIM115 - closed by run
        self.todo: queue.SimpleQueue[tuple[bytes, list[tuple[int, int, Key, str]]] | None] = queue.SimpleQueue()
        self.index: list[bytes] = []  # the gzipped index entries, once run() is done
        self.error: BaseException | None = None

    def run(self) -> None:
        raw = zlib.compressobj(1, zlib.DEFLATED, 31)  # level 1: tar headers still shrink ~10x
        index = zlib.compressobj(1, zlib.DEFLATED, 31)
        try:
            while (job := self.todo.get()) is not None:
                if self.error is None:
                    data, files = job
                    self.file.write(raw.compress(data))
                    lines = [
                        b"%d %d %s\0" % (offset, n, "/".join((*key, name)).encode("utf-8", "surrogateescape"))
                        for offset, n, key, name in files
                    ]
                    self.index.append(index.compress(b"".join(lines)))
            if self.error is None:
                self.file.write(raw.flush())
                self.index.append(index.flush())
        except BaseException as e:
            self.error = e
            while self.todo.get() is not None:
                pass
        finally:
            self.file.close()

    def finish(self) -> None:
        self.todo.put(None)
        self.join()
        if self.error is not None:
            raise self.error


class Recorder:
    """Writes one layer's record while the unpacker streams its tar (see the module docstring).

    The unpacker hands over the verbatim bytes (`add`), says where each file's content went (`file`),
    and calls `flush` whenever it moves to the next chunk of the stream.
    """

    def __init__(self, staging: Path) -> None:
        self.dir = Path(staging) / RECORD_DIR
        self.dir.mkdir(mode=0o700)
        self._views: list[memoryview] = []  # verbatim bytes of the chunk at hand
        self._size = 0  # verbatim bytes so far
        self.files: list[tuple[int, int, Key, str]] = []  # (offset in raw, size, parent key, name)
        self._sent = 0  # files handed to the compressor
        self._at: dict[Key, int] | None = None  # path -> index of its file; made at the first removal
        self._compressor = _Compressor(self.dir)
        self._compressor.start()

    def add(self, view: memoryview) -> None:
        """The next verbatim bytes of the tar (a view of the stream's current chunk)."""
        if view:
            self._views.append(view)
            self._size += len(view)

    def file(self, size: int, key: Key, name: str) -> None:
        """The next `size` bytes of the tar are the content written to fs/KEY/NAME."""
        if self._at is not None:
            self._at[(*key, name)] = len(self.files)
        self.files.append((self._size, size, key, name))

    def flush(self) -> None:
        """Hand what was recorded to the compressor (before the stream's chunk, which the views show, goes)."""
        self._compressor.todo.put((b"".join(self._views), self.files[self._sent :]))
        self._views = []
        self._sent = len(self.files)

    def removing(self, root_fd: int, key: Key, name: str, is_dir: bool) -> None:
        """fs/KEY/NAME is about to be removed: keep aside the contents the record will need."""
        if self._at is None:
            self._at = {(*k, n): i for i, (_, _, k, n) in enumerate(self.files)}
        path = (*key, name)
        doomed = _files_under(root_fd, path) if is_dir else [path]
        for p in doomed:
            index = self._at.pop(p, None)
            if index is not None:
                saved = self.dir / SAVED_DIR
                saved.mkdir(mode=0o700, exist_ok=True)
                os.link("/".join(p), saved / str(index), src_dir_fd=root_fd, follow_symlinks=False)

    def finish(self, size: int, diff_id: str) -> None:
        """Complete the record: the rest of the raw bytes, then the index (whose presence marks it whole)."""
        self.flush()
        self._compressor.finish()
        head = zlib.compress(b"%s %d %s\n" % (MAGIC, size, diff_id.encode()), 1, wbits=31)
        with open(self.dir / INDEX_FILE, "xb") as f:  # two gzip members: the head, then the entries
            f.write(head + b"".join(self._compressor.index))

    def abort(self) -> None:
        """Stop the compressor after an error (the staging folder, record included, is discarded)."""
        if self._compressor.is_alive():
            self._compressor.error = self._compressor.error or InterruptedError("record aborted")
            self._compressor.todo.put(None)
            self._compressor.join()


def _files_under(root_fd: int, path: Key) -> list[Key]:
    """The paths of the regular files below the directory fs/PATH (about to be removed).

    Without recursion: a layer may nest directories deeper than Python's recursion limit."""
    out: list[Key] = []
    pending = [path]
    while pending:
        current = pending.pop()
        fd = os.open("/".join(current), _DIR_FD, dir_fd=root_fd)
        try:
            for entry in os.scandir(fd):
                if entry.is_dir(follow_symlinks=False):
                    pending.append((*current, entry.name))
                elif entry.is_file(follow_symlinks=False):
                    out.append((*current, entry.name))
        finally:
            os.close(fd)
    return out


def adopt(staging: Path, layer_dir: Path) -> None:
    """Give an existing layer without a record (say, imported with --no-layer-blob) the record of a new
    unpacking of the same tar: made durable first, then moved in by one rename."""
    staging, layer_dir = Path(staging), Path(layer_dir)
    if (layer_dir / RECORD_DIR).exists():
        return
    from minicache.atomic import fsync_dir
    from minicache.syscalls import syncfs

    fd = os.open(staging, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        syncfs(fd)
    finally:
        os.close(fd)
    os.rename(staging / RECORD_DIR, layer_dir / RECORD_DIR)
    fsync_dir(layer_dir)


# -- rebuilding ---------------------------------------------------------------------------------------------
def has_record(store: Store, chain_id: str) -> bool:
    return (Path(store.layers.path(chain_id)) / RECORD_DIR / INDEX_FILE).is_file()


def _index(path: Path):
    """(tar size, diff_id), then each (offset, size, path) of the index, read as it goes."""
    import gzip

    with gzip.open(path, "rb") as f:
        head = f.readline().split()
        if len(head) != 5 or b" ".join(head[:3]) != MAGIC:
            raise ValueError("not a tar-split index this version reads")
        yield int(head[3]), head[4].decode()
        rest = b""
        while block := f.read(_READ):
            *entries, rest = (rest + block).split(b"\0")
            for entry in entries:
                offset, size, name = entry.split(b" ", 2)
                yield int(offset), int(size), name.decode("utf-8", "surrogateescape")
        if rest:
            raise ValueError("the tar-split index ends inside an entry")


class LayerTar(io.RawIOBase):
    """The layer tar rebuilt from a record and its snapshot, verified against the diff_id.

    The check runs before the last bytes are handed out: a mismatch raises DigestMismatch from the read
    that would have completed the stream, so an upload never sends a whole wrong tar.
    """

    def __init__(self, store: Store, chain_id: str) -> None:
        import gzip

        layer = Path(store.layers.path(chain_id))
        self.chain_id = chain_id
        self.diff_id = store.layers.info(chain_id).diff_id
        self.fs = layer / "fs"
        self.record = layer / RECORD_DIR
        if not (self.record / INDEX_FILE).is_file():
            raise NotFound(f"layer {chain_id} has no tar-split record")
        self.raw = gzip.open(self.record / RAW_FILE, "rb")  # noqa: SIM115 - closed by close()
        self.hash = hashlib.sha256()
        self.size = 0
        self._chunks = self._generate()
        self._buf = memoryview(b"")

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        if not self.closed:
            self._chunks.close()
            self.raw.close()
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

    def _raw(self, n: int):
        while n > 0:
            data = self.raw.read(min(n, _READ))
            if not data:
                raise EOFError
            n -= len(data)
            yield data

    def _pieces(self):
        """The tar's bytes in order: verbatim runs from raw.gz and contents from the snapshot; then (size, diff_id)."""
        entries = _index(self.record / INDEX_FILE)
        size, diff_id = next(entries)
        done = 0
        for index, (offset, n, path) in enumerate(entries):
            if offset < done:
                raise ValueError("the tar-split index goes backwards")
            yield from self._raw(offset - done)
            done = offset
            yield from self._content(index, path, n)
        while data := self.raw.read(_READ):
            yield data
        yield size, diff_id

    def _generate(self):
        """The pieces, hashed; the last one only once the whole is verified."""
        held = b""
        try:
            for piece in self._pieces():
                if isinstance(piece, tuple):
                    size, diff_id = piece
                    break
                self.hash.update(piece)
                self.size += len(piece)
                if held:
                    yield held
                held = piece
        except (EOFError, ValueError, OSError, zlib.error) as e:
            if isinstance(e, OSError) and e.errno is not None:
                raise
            raise self._mismatch(f"its tar-split record is truncated or corrupt ({e or type(e).__name__})") from None
        got = "sha256:" + self.hash.hexdigest()
        if got != self.diff_id or self.size != size or diff_id != self.diff_id:
            raise self._mismatch(f"the rebuilt tar has digest {got} ({self.size} bytes), not {self.diff_id}")
        if held:
            yield held

    def _content(self, index: int, path: str, size: int):
        try:
            fd = os.open(self.record / SAVED_DIR / str(index), _FILE_FD)
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
