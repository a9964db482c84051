"""The one unpacker: a layer tarball (plain, gzip or zstd) streamed into a new layer snapshot.

One pass over the stream computes the diff_id, enforces size and entry limits, and writes every entry
through a SafeTree, so nothing lands outside the snapshot. Whiteouts become overlayfs whiteouts
(`.wh.NAME` → a 0:0 character device, `.wh..wh..opq` → the opaque xattr). The snapshot is built in tmp/
and published by one rename under its chain ID; on any error it is discarded.

Speed: the tar headers are parsed here (a few slices per 512-byte block) rather than by `tarfile`, whose
stream mode copies its buffer on every read; the decompressor and the sha256 run in a reader thread (both
release the GIL) while this thread makes the files; and an entry costs only the system calls that change
something: no chown when the owner is already ours, no chmod when the creation mode was exact.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import queue
import stat
import struct
import threading
from typing import TYPE_CHECKING, BinaryIO
from zlib import adler32

from minicache import digest as digests
from minicache import tarsplit
from minicache.errors import DigestMismatch, InvalidArchive, MiniError, TooLarge
from minicache.layers import LayerInfo
from minicache.record import Record
from minicache.rmtree import empty_dir_at
from minicache.safetree import OPAQUE_XATTR, SafeTree, is_whiteout, split

if TYPE_CHECKING:
    from collections.abc import Iterator

    from minicache.store import Store

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
# The reader thread hands the main thread this much at a time: every hand-off moves the GIL between the
# two threads, which costs a wake-up on a busy machine: fewer, larger hand-offs wait less.
CHUNK = 4 << 20
BLOCK = 512
_ZERO_BLOCK = bytes(BLOCK)
# Free space is checked, and the flusher asked for writeback, every this many bytes of content. Each
# syncfs stalls file creation while ext4 commits its journal; many small ones stall less in all than few
# large ones (459 MB bench tarball: 64 MB 4.0 s, 32 MB 3.6-3.7 s, 16 MB 3.5-3.6 s, 8 MB 3.7 s).
_SPACE_CHECK_EVERY = 16 << 20
_SPACE_RESERVE = 256 << 20
# Extended headers (PAX, GNU long names) are read whole into memory: cap them before reading.
_MAX_HEADER_BYTES = 1 << 20
# Bytes after the end-of-archive marker that are still read (and hashed): writers pad to 10 KiB records.
_MAX_TRAILER_BYTES = 16 << 20
_XATTR_PREFIX = "SCHILY.xattr."
# xattrs a layer may not set: they would steer overlayfs itself (redirects, opaque dirs, metacopy).
_FORBIDDEN_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.")
# Errors of a system call that say the entry asked for something impossible: a name over 255 bytes, an
# empty symlink target, an xattr name or value the filesystem cannot take, too many links to one file.
_ENTRY_ERRNOS = frozenset(
    {errno.ENAMETOOLONG, errno.ENOENT, errno.EINVAL, errno.E2BIG, errno.ERANGE, errno.EMLINK, errno.ELOOP}
)
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_DIR_FD = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# tar type flags
REGTYPE, AREGTYPE, CONTTYPE = b"0", b"\0", b"7"
LNKTYPE, SYMTYPE, CHRTYPE, BLKTYPE, DIRTYPE, FIFOTYPE = b"1", b"2", b"3", b"4", b"5", b"6"
_PAX, _PAX_GLOBAL, _SOLARIS_PAX, _GNU_LONGNAME, _GNU_LONGLINK = b"x", b"g", b"X", b"L", b"K"
_EXTENDED = (_PAX, _PAX_GLOBAL, _SOLARIS_PAX, _GNU_LONGNAME, _GNU_LONGLINK)


class Limits(Record, frozen=True):
    """Decompression-bomb guards. Generous defaults; a layer beyond them is refused, not half-written."""

    max_bytes: int = 64 << 30  # uncompressed tar stream
    max_entries: int = 2_000_000
    max_path: int = 4096


# -- the byte stream -----------------------------------------------------------------------------------------
def open_decompressed(source: BinaryIO) -> BinaryIO:
    """The uncompressed view of a layer stream: gzip and zstd are told by their magic bytes."""
    import io

    buffered = source if hasattr(source, "peek") else io.BufferedReader(source, CHUNK)  # type: ignore[arg-type]
    head = buffered.peek(4)[:4]
    if head.startswith(GZIP_MAGIC):
        from isal import igzip, isal_zlib

        if hasattr(isal_zlib, "_GzipReader"):  # ISA-L's whole gzip reader in C: multi-member, CRC-checked
            return isal_zlib._GzipReader(buffered, CHUNK)
        return igzip.open(buffered, "rb")  # the same, one Python layer above (older isal)
    if head.startswith(ZSTD_MAGIC):
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(buffered, read_size=CHUNK, read_across_frames=True)
    return buffered


def stream_error(e: BaseException) -> BaseException:
    """A decompressor's or source's exception as what it means for the layer (or archive) being read."""
    if isinstance(e, MiniError):
        return e
    if isinstance(e, OSError) and e.errno is not None:  # a real I/O error of the source, not a corrupt stream
        return e
    if isinstance(e, (EOFError, ValueError, OSError)):
        return InvalidArchive(f"layer stream is corrupt or truncated: {e}")
    if type(e).__module__.split(".")[0] in ("zstandard", "isal", "zlib_ng", "zlib"):
        return InvalidArchive(f"layer stream is corrupt: {e}")
    return e


class _Reader(threading.Thread):
    """Reads, decompresses and hashes the stream ahead of the unpacker, in chunks handed over by a queue."""

    def __init__(self, source: BinaryIO, limit: int) -> None:
        super().__init__(name="layer-reader", daemon=True)
        self.raw = open_decompressed(source)
        self.limit = limit
        self.hash = hashlib.sha256()
        self.size = 0
        self.chunks: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=4)
        self.stop = False

    def run(self) -> None:
        try:
            while not self.stop:
                data = self.raw.read(CHUNK)
                if not data:
                    break
                self.hash.update(data)
                self.size += len(data)
                if self.size > self.limit:
                    raise TooLarge(f"layer is larger than {self.limit} bytes uncompressed; refusing it")
                self.chunks.put(data)
            self.chunks.put(None)
        except BaseException as e:
            self.chunks.put(stream_error(e))

    def next_chunk(self) -> bytes | None:
        item = self.chunks.get()
        if isinstance(item, BaseException):
            self.stop = True
            raise item
        return item

    def close(self) -> None:
        """Stop early (after an error): unblock the thread and let it end."""
        self.stop = True
        while self.is_alive():
            with contextlib.suppress(queue.Empty):
                self.chunks.get(timeout=0.05)
        self.join()


class _Flusher(threading.Thread):
    """Starts writing the layer's data to disk while it is still being unpacked.

    The commit makes the snapshot durable with one syncfs; most of its cost is the disk writing the data.
    Asking for that early, every _SPACE_CHECK_EVERY bytes, from this thread (syncfs releases the GIL),
    overlaps the writing with the unpacking, so the final syncfs has little left to do.
    """

    def __init__(self, fd: int) -> None:
        super().__init__(name="layer-flusher", daemon=True)
        self.fd = fd
        self.wanted = threading.Event()
        self.done = False

    def run(self) -> None:
        from minicache.syscalls import syncfs

        while True:
            self.wanted.wait()
            self.wanted.clear()
            if self.done:
                return
            try:
                syncfs(self.fd)
            except OSError:
                return  # only an optimisation: the commit's own syncfs reports real errors

    def stop(self) -> None:
        self.done = True
        self.wanted.set()
        self.join()


def _finish_file(fd: int, owner: tuple[int, int] | None, mode: int | None, mtime: int) -> None:
    """A plain file's owner (if to change), mode (if the creation mode was not exact) and mtime."""
    if owner is not None:
        os.fchown(fd, *owner)  # before chmod: chown clears setuid/setgid
    if mode is not None:
        os.fchmod(fd, mode)
    os.utime(fd, (mtime, mtime))


class _Writer(threading.Thread):
    """Finishes the plain files the unpacking thread has created: their contents, owner, mode and mtime.

    The unpacking thread opens each file (the path and safety work) and hands over the descriptor with
    views of the stream's chunks; this thread writes them. Both threads' system calls release the GIL, so
    creating the next files and writing the last ones run on two cores. Jobs come in batches (a hand-off
    costs a wake-up); the first error is kept and raised in the unpacking thread (by `add`, `stop`).
    """

    BATCH_FILES = 64
    BATCH_BYTES = 8 << 20
    LARGEST = 4 << 20  # a larger file is written by the unpacking thread itself: views pin stream chunks

    def __init__(self) -> None:
        super().__init__(name="layer-writer", daemon=True)
        # At most ~6 batches in flight: 384 descriptors, ~48 MB of stream chunks kept alive.
        self.jobs: queue.Queue[list | None] = queue.Queue(maxsize=4)
        self.batch: list[tuple[int, list[memoryview], tuple[int, int] | None, int | None, int]] = []
        self.batch_bytes = 0
        self.error: BaseException | None = None

    def add(
        self, fd: int, views: list[memoryview], size: int, owner: tuple[int, int] | None, mode: int | None, mtime: int
    ):
        self.batch.append((fd, views, owner, mode, mtime))
        self.batch_bytes += size
        if len(self.batch) >= self.BATCH_FILES or self.batch_bytes >= self.BATCH_BYTES:
            self.jobs.put(self.batch)
            self.batch, self.batch_bytes = [], 0
            if self.error is not None:
                raise self.error

    def run(self) -> None:
        while (batch := self.jobs.get()) is not None:
            for fd, views, owner, mode, mtime in batch:
                try:
                    if self.error is None:
                        for view in views:
                            while view:
                                view = view[os.write(fd, view) :]
                        _finish_file(fd, owner, mode, mtime)
                except BaseException as e:
                    self.error = e
                finally:
                    os.close(fd)

    def stop(self, *, abort: bool = False) -> None:
        """Finish every job handed over (with `abort`, only close their descriptors); raise a write's error."""
        if abort and self.error is None:
            self.error = InterruptedError("unpacking stopped")
        if self.is_alive():
            self.jobs.put(self.batch)
            self.batch = []
            self.jobs.put(None)
            self.join()
        if self.error is not None and not abort:
            raise self.error


class _TarStream:
    """The uncompressed tar bytes as exact reads (headers) and copies to files (contents)."""

    def __init__(self, reader: _Reader, recorder: tarsplit.Recorder | None = None) -> None:
        self.reader = reader
        self.buf = memoryview(b"")
        self.pos = 0
        # With a recorder, every byte that is not file content goes to it verbatim: buf[raw_from:] is
        # what this chunk has not handed over yet (None while a file's content is being copied).
        self.recorder = recorder
        self.raw_from: int | None = 0

    def _fill(self) -> bool:
        if self.recorder is not None and self.raw_from is not None:
            self.recorder.add(self.buf[self.raw_from :])
            self.raw_from = len(self.buf)
            self.recorder.flush()
        chunk = self.reader.next_chunk()
        if chunk is None:
            return False
        self.buf, self.pos = memoryview(chunk), 0
        if self.raw_from is not None:
            self.raw_from = 0
        return True

    @staticmethod
    def _truncated() -> InvalidArchive:
        return InvalidArchive("layer is truncated: the stream ended inside the tar archive")

    def read(self, n: int) -> bytes:
        end = self.pos + n
        if end <= len(self.buf):
            out = self.buf[self.pos : end].tobytes()
            self.pos = end
            return out
        parts = []
        while n:
            if self.pos == len(self.buf) and not self._fill():
                raise self._truncated()
            k = min(n, len(self.buf) - self.pos)
            parts.append(self.buf[self.pos : self.pos + k].tobytes())
            self.pos += k
            n -= k
        return b"".join(parts)

    def block_or_none(self) -> bytes | None:
        """The next 512-byte block, or None at the end of the stream."""
        if self.pos == len(self.buf) and not self._fill():
            return None
        return self.read(BLOCK)

    def copy_to(self, fd: int, n: int, name: str, key: tuple[str, ...] = (), leaf: str = "") -> None:
        """Copy the next `n` bytes (the content of entry `name`) into `fd`, the file KEY/LEAF of the tree."""
        recording = self._content_starts(n, key, leaf)
        self._copy(fd, n, name)
        if recording:
            self.raw_from = self.pos

    def take(self, n: int, name: str, key: tuple[str, ...], leaf: str) -> list[memoryview]:
        """The next `n` bytes (the content of entry `name`, for the file KEY/LEAF) as views of the chunks."""
        recording = self._content_starts(n, key, leaf)
        end = self.pos + n
        if end <= len(self.buf):
            views = [self.buf[self.pos : end]]
            self.pos = end
        else:
            views = []
            while n:
                if self.pos == len(self.buf) and not self._fill():
                    raise InvalidArchive(f"layer is truncated inside {name!r}")
                k = min(n, len(self.buf) - self.pos)
                views.append(self.buf[self.pos : self.pos + k])
                self.pos += k
                n -= k
        if recording:
            self.raw_from = self.pos
        return views

    def _content_starts(self, n: int, key: tuple[str, ...], leaf: str) -> bool:
        """Hand the recorder the bytes before a file's `n` content bytes and the file; False if none records."""
        recorder = self.recorder
        if recorder is None:
            return False
        recorder.add(self.buf[self.raw_from : self.pos])
        recorder.file(n, key, leaf)
        self.raw_from = None
        return True

    def _copy(self, fd: int, n: int, name: str) -> None:
        end = self.pos + n
        if end <= len(self.buf):
            written = os.write(fd, self.buf[self.pos : end])
            self.pos += written
            n -= written
        while n:
            if self.pos == len(self.buf) and not self._fill():
                raise InvalidArchive(f"layer is truncated inside {name!r}")
            k = min(n, len(self.buf) - self.pos)
            view = self.buf[self.pos : self.pos + k]
            while view:
                view = view[os.write(fd, view) :]
            self.pos += k
            n -= k

    def skip(self, n: int) -> None:
        end = self.pos + n
        if end <= len(self.buf):  # the common case: within the chunk at hand
            self.pos = end
            return
        while n:
            if self.pos == len(self.buf) and not self._fill():
                raise self._truncated()
            k = min(n, len(self.buf) - self.pos)
            self.pos += k
            n -= k

    def drain(self) -> None:
        """Read (and so hash) what follows the end-of-archive marker: padding, within a limit."""
        extra = len(self.buf) - self.pos
        while self._fill():
            extra += len(self.buf)
            if extra > _MAX_TRAILER_BYTES:
                raise TooLarge(f"layer has more than {_MAX_TRAILER_BYTES} bytes after its end-of-archive marker")
        self.pos = len(self.buf)


# -- tar headers --------------------------------------------------------------------------------------------
def _number(field: bytes, what: str) -> int:
    if field and field[0] & 0x80:  # base-256 (GNU/star) for values too large for octal
        if field[0] == 0xFF:
            raise InvalidArchive(f"tar header has a negative {what}")
        value = int.from_bytes(bytes([field[0] & 0x7F]) + field[1:], "big")
        if value > _MAX_NUMBER:
            raise InvalidArchive(f"layer is not a valid tar stream: its {what} {value} is out of range")
        return value
    text = field.split(b"\0", 1)[0].strip()
    try:
        return int(text, 8) if text else 0
    except ValueError:
        raise InvalidArchive(f"layer is not a valid tar stream: bad {what} field {field!r}") from None


# Larger numbers fit no time_t, off_t or id: a header carrying one is refused before anything uses it.
_MAX_NUMBER = (1 << 63) - 1
_MAX_ID = 0xFFFFFFFE  # uid_t/gid_t; (uid_t)-1 means "leave unchanged" to chown


def _id(value: int, what: str) -> int:
    """A uid or gid that chown can take."""
    if not 0 <= value <= _MAX_ID:
        raise InvalidArchive(f"layer is not a valid tar stream: {what} {value} is out of range (0-{_MAX_ID})")
    return value


def _device(value: int) -> int:
    """A device major or minor number that makedev can take."""
    if value > 0xFFFFFFFF:
        raise InvalidArchive(f"layer is not a valid tar stream: device number {value} is out of range")
    return value


# name, mode, uid, gid, size, mtime, checksum, type, linkname, magic, (version, uname, gname), devmajor,
# devminor, prefix
_HEADER = struct.Struct("100s8s8s8s12s12s8sc100s6s66x8s8s155s12x")


_OCTAL_SEEN: dict[bytes, int] = {}  # mode, uid and gid fields repeat across a layer: parse each once


def _octal(field: bytes, what: str) -> int:
    value = _OCTAL_SEEN.get(field)
    if value is not None:
        return value
    try:
        value = int(field.strip(b" \0"), 8)
    except ValueError:
        return _number(field, what)
    if len(_OCTAL_SEEN) < 4096:
        _OCTAL_SEEN[field] = value
    return value


def _plain_octal(field: bytes, what: str) -> int:
    """An octal field whose value rarely repeats (size, mtime, checksum): parsed, not cached."""
    try:
        return int(field.strip(b" \0"), 8)
    except ValueError:
        return _number(field, what)


_IDS_SEEN: dict[bytes, tuple[int, int, int]] = {}  # the mode, uid and gid fields together, parsed once


def _ids(raw: bytes, mode: bytes, uid: bytes, gid: bytes) -> tuple[int, int, int]:
    """(mode & 0o7777, uid, gid) of a header whose 24 bytes of mode, uid and gid fields are `raw`."""
    ids = (_octal(mode, "mode") & 0o7777, _id(_octal(uid, "uid"), "uid"), _id(_octal(gid, "gid"), "gid"))
    if len(_IDS_SEEN) < 4096:
        _IDS_SEEN[raw] = ids
    return ids


def _byte_sum(block: bytes) -> int:
    """sum(block) for a 512-byte block, fast: Adler-32's low half is 1 + the byte sum modulo 65521, and
    the sum of 256 bytes (at most 65280) never reaches the modulus."""
    return (adler32(block[:256]) & 0xFFFF) + (adler32(block[256:]) & 0xFFFF) - 2


def _pax_records(data: bytes) -> dict[str, bytes]:
    """`LENGTH KEY=VALUE\\n` records; values stay bytes (xattr values may be binary)."""
    out: dict[str, bytes] = {}
    pos = 0
    try:
        while pos < len(data) and data[pos] != 0:
            space = data.index(b" ", pos)
            length = int(data[pos:space])
            record = data[space + 1 : pos + length]
            if length <= 0 or not record.endswith(b"\n") or b"=" not in record:
                raise ValueError
            key, _, value = record[:-1].partition(b"=")
            out[key.decode("utf-8", "surrogateescape")] = value
            pos += length
    except ValueError:
        raise InvalidArchive("layer is not a valid tar stream: malformed PAX header") from None
    return out


def _pax_time(value: bytes) -> int:
    """A PAX time (`1700000000.5`) in whole seconds."""
    try:
        seconds = int(float(value))
    except (ValueError, OverflowError):  # not a number, NaN or infinite
        raise InvalidArchive(f"layer is not a valid tar stream: bad PAX time {value[:40]!r}") from None
    if abs(seconds) > _MAX_NUMBER:
        raise InvalidArchive(f"layer is not a valid tar stream: PAX time {value[:40]!r} is out of range")
    return seconds


class Member:
    """One tar entry, with what the unpacker needs of it."""

    __slots__ = ("devmajor", "devminor", "gid", "linkname", "mode", "mtime", "name", "size", "type", "uid", "xattrs")

    def __init__(self) -> None:
        self.xattrs: dict[str, bytes] = {}

    def isdir(self) -> bool:
        return self.type == DIRTYPE

    def isreg(self) -> bool:
        return self.type in (REGTYPE, AREGTYPE, CONTTYPE)


def _members(stream: _TarStream, limits: Limits, fast=None):
    """Yield each entry of the tar stream; the caller consumes a regular file's content before the next.

    `fast(path, mode, uid, gid, size, mtime_field)`, if given, is offered each plain regular file first; when
    it returns True it has consumed the entry (content included) and no Member is yielded for it.
    """
    pax_global: dict[str, bytes] = {}
    pax: dict[str, bytes] = {}
    long_name = long_link = None
    entries = 0
    while True:
        header = stream.block_or_none()
        if header is None:
            raise InvalidArchive("layer is truncated or empty: no tar end-of-archive marker")
        if header == _ZERO_BLOCK:
            return
        name, mode, uid, gid, size_f, mtime, chksum, kind, link, magic, devmajor, devminor, prefix = _HEADER.unpack(
            header
        )
        size = _checked_size(header, chksum, size_f)
        if kind in _EXTENDED:
            if size > _MAX_HEADER_BYTES:
                raise TooLarge(f"layer has a {size}-byte extended header; at most {_MAX_HEADER_BYTES} allowed")
            data = stream.read(size)
            stream.skip(-size % BLOCK)
            if kind in (_PAX, _SOLARIS_PAX):
                pax = _pax_records(data)
            elif kind == _PAX_GLOBAL:
                pax_global.update(_pax_records(data))
            elif kind == _GNU_LONGNAME:
                long_name = data.split(b"\0", 1)[0]
            else:
                long_link = data.split(b"\0", 1)[0]
            continue
        entries += 1
        if entries > limits.max_entries:
            raise TooLarge(f"layer has more than {limits.max_entries} entries; refusing it")
        if (
            fast is not None
            and kind in (REGTYPE, AREGTYPE)
            and not pax
            and not pax_global
            and long_name is None
            and prefix[0] == 0
        ):
            # The common entry of a layer, a plain file: no object, no PAX, straight to the unpacker.
            path = name.partition(b"\0")[0].decode("utf-8", "surrogateescape")
            ids = _IDS_SEEN.get(header[100:124]) or _ids(header[100:124], mode, uid, gid)
            if fast(path, ids[0], ids[1], ids[2], size, mtime):
                stream.skip(-size % BLOCK)
                continue
        m = _member(name, mode, uid, gid, mtime, kind, magic, devmajor, devminor, prefix, long_name)
        link = long_link if long_link is not None else link.partition(b"\0")[0]
        m.linkname = link.decode("utf-8", "surrogateescape") if link else ""
        records = {**pax_global, **pax} if pax_global else pax
        if records:
            size = _apply_pax(m, records, size)
        _id(m.uid, "uid")
        _id(m.gid, "gid")
        pax, long_name, long_link = {}, None, None
        if kind in (REGTYPE, AREGTYPE) and m.name.endswith("/"):
            m.type = DIRTYPE  # pre-POSIX tars mark directories by a trailing slash
        m.size = size
        yield m
        stream.skip(-size % BLOCK)


def _checked_size(header: bytes, chksum: bytes, size_f: bytes) -> int:
    """The entry's size from its header, once the header's checksum holds."""
    try:  # the plain octal of nearly every header, inline; anything else goes through _number
        checksum, size = int(chksum.strip(b" \0"), 8), int(size_f.strip(b" \0"), 8)
    except ValueError:
        checksum, size = _plain_octal(chksum, "checksum"), _plain_octal(size_f, "size")
    if checksum != _byte_sum(header) - sum(chksum) + 256:
        raise InvalidArchive("layer is not a valid tar stream: header checksum mismatch")
    if size < 0:
        raise InvalidArchive("layer is not a valid tar stream: an entry has a negative size")
    return size


def _member(
    name: bytes,
    mode: bytes,
    uid: bytes,
    gid: bytes,
    mtime: bytes,
    kind: bytes,
    magic: bytes,
    devmajor: bytes,
    devminor: bytes,
    prefix: bytes,
    long_name: bytes | None,
) -> Member:
    """A Member of the header's fields (a GNU long name or the ustar prefix completing the name)."""
    m = Member()
    raw_name = long_name if long_name is not None else name.partition(b"\0")[0]
    if long_name is None and magic == b"ustar\x00" and prefix[0] != 0:
        raw_name = prefix.partition(b"\0")[0] + b"/" + raw_name
    m.name = raw_name.decode("utf-8", "surrogateescape")
    m.mode = _octal(mode, "mode") & 0o7777
    m.uid = _octal(uid, "uid")
    m.gid = _octal(gid, "gid")
    m.mtime = _octal(mtime, "mtime")
    m.type = kind
    if kind in (CHRTYPE, BLKTYPE):
        m.devmajor, m.devminor = _device(_octal(devmajor, "devmajor")), _device(_octal(devminor, "devminor"))
    else:
        m.devmajor = m.devminor = 0
    return m


def _apply_pax(m: Member, records: dict[str, bytes], size: int) -> int:
    """Let the PAX records override `m`'s header fields and add its xattrs; the entry's size, maybe overridden."""
    try:
        if "path" in records:
            m.name = records["path"].decode("utf-8", "surrogateescape")
        if "linkpath" in records:
            m.linkname = records["linkpath"].decode("utf-8", "surrogateescape")
        size = int(records.get("size", size))
        if not 0 <= size <= _MAX_NUMBER:
            raise ValueError
        m.uid = int(records.get("uid", m.uid))
        m.gid = int(records.get("gid", m.gid))
    except ValueError:
        raise InvalidArchive("layer is not a valid tar stream: bad number in a PAX header") from None
    if "mtime" in records:
        m.mtime = _pax_time(records["mtime"])
    if any(k.startswith("GNU.sparse.") for k in records):
        raise InvalidArchive(f"layer entry {m.name!r} is a sparse file; layers do not use them")
    m.xattrs = {k[len(_XATTR_PREFIX) :]: v for k, v in records.items() if k.startswith(_XATTR_PREFIX)}
    return size


class _Chunks:
    """A plain byte stream as the chunks _TarStream reads, its errors told as what they mean."""

    def __init__(self, source: BinaryIO) -> None:
        self.source = source

    def next_chunk(self) -> bytes | None:
        try:
            return self.source.read(CHUNK) or None
        except BaseException as e:
            raise stream_error(e) from None


class TarReader:
    """The entries of a tar stream for readers other than the unpacker (image archives): same parser, limits.

    >>> for member in reader.members():
    ...     data = reader.read(member.size)  # what is not read of an entry is skipped
    """

    def __init__(self, source: BinaryIO, limits: Limits | None = None) -> None:
        self.stream = _TarStream(_Chunks(source))  # type: ignore[arg-type]
        self.limits = limits or Limits()
        self._left = 0

    def members(self) -> Iterator[Member]:
        for m in _members(self.stream, self.limits):
            self._left = m.size
            yield m
            if self._left:
                self.stream.skip(self._left)
                self._left = 0

    def read(self, n: int) -> bytes:
        """Up to `n` more bytes of the current entry's content."""
        n = min(n, self._left)
        data = self.stream.read(n) if n else b""
        self._left -= n
        return data


def clean_name(name: str, limits: Limits) -> str:
    """A tar entry name as a relative path; `..` components are refused, a leading `/` is dropped."""
    if len(name) > limits.max_path or "\x00" in name:
        raise InvalidArchive(f"layer entry name is too long or contains NUL: {name[:80]!r}")
    comps = split(name)
    if ".." in comps:
        raise InvalidArchive(f"layer entry {name!r} contains '..': refusing a path that points outside the layer")
    return "/".join(comps)


def _umask() -> int:
    with open("/proc/self/status", "rb") as f:
        for line in f:
            if line.startswith(b"Umask:"):
                return int(line.split()[1], 8)
    return 0o022


# -- writing entries ----------------------------------------------------------------------------------------
class _Unpacker:
    def __init__(self, tree: SafeTree, stream: _TarStream, limits: Limits) -> None:
        self.tree = tree
        self.stream = stream
        self.limits = limits
        self.is_root = os.geteuid() == 0
        self.owner = (os.geteuid(), os.getegid())
        self.umask = _umask()
        # New files take the group of a setgid parent: then an owner equal to ours may still need a chown.
        self.setgid_possible = bool(tree.lowers)
        self.content_bytes = 0
        self.consumed = False  # whether the current entry's content was read (a regular file's was)
        self.flusher: _Flusher | None = None
        self.writer = _Writer()
        self.dir_times: list[tuple[tuple[str, ...], int]] = []
        self._space_checked_at = 0

    def _needs_chmod(self, mode: int) -> bool:
        """Whether creating with `mode` left the mode different (umask, setuid/setgid/sticky bits)."""
        return mode != (mode & 0o777 & ~self.umask)

    def _needs_chown(self, uid: int, gid: int) -> bool:
        return self.is_root and (self.setgid_possible or (uid, gid) != self.owner)

    # -- one entry -------------------------------------------------------------------------------------------
    def apply(self, m: Member) -> None:
        self.tree.release()
        self.consumed = False
        path = clean_name(m.name, self.limits)
        if not path:  # the root itself ("./"): only its metadata
            if m.isdir():
                self.setgid_possible = self.setgid_possible or bool(m.mode & stat.S_ISGID)
                self._metadata(self.tree.root_fd, m)
                self.dir_times.append(((), m.mtime))
            return
        base = path.rsplit("/", 1)[-1]
        if base.startswith(WHITEOUT_PREFIX):
            self._whiteout(path, base)
            return
        dfd, key, name = self.tree.parent(path)
        if m.isdir():
            self._directory(m, dfd, key, name)
        elif m.isreg():
            self._regular(m, dfd, key, name)
        elif m.type == SYMTYPE:
            self._create(lambda: os.symlink(m.linkname, name, dir_fd=dfd), dfd, key, name)
            if self._needs_chown(m.uid, m.gid):
                os.chown(name, m.uid, m.gid, dir_fd=dfd, follow_symlinks=False)
            os.utime(name, (m.mtime, m.mtime), dir_fd=dfd, follow_symlinks=False)
        elif m.type == LNKTYPE:
            self._hardlink(m, dfd, key, name)
        elif m.type in (CHRTYPE, BLKTYPE, FIFOTYPE):
            self._special(m, dfd, key, name)
        else:
            raise InvalidArchive(f"layer entry {m.name!r} has an unsupported type {m.type!r}")

    def fast_file(self, path: str, mode: int, uid: int, gid: int, size: int, mtime_field: bytes) -> bool:
        """A plain regular file with a plain name, in the fewest steps; False leaves it to the general path."""
        if not path or "//" in path or "/." in path or path[0] in "./" or path[-1] == "/" or "/.wh." in "/" + path:
            return False  # needs cleaning, or "." / ".." / whiteout names: the general path checks them
        if len(path) > self.limits.max_path or "\0" in path:
            return False
        tree = self.tree
        if tree._retired:
            tree.release()
        dfd, key, name = tree.parent(path)
        self.content_bytes += size
        self._check_space(size)
        try:
            fd = os.open(name, _NEW_FILE, mode & 0o777, dir_fd=dfd)
        except FileExistsError:
            self._remove(dfd, key, name, os.lstat(name, dir_fd=dfd))
            dfd, key, name = tree.parent(path)
            fd = os.open(name, _NEW_FILE, mode & 0o777, dir_fd=dfd)
        owner = (uid, gid) if self._needs_chown(uid, gid) else None
        chmod = mode if self._needs_chmod(mode) else None
        if size > _Writer.LARGEST:
            try:
                self.stream.copy_to(fd, size, path, key, name)
                _finish_file(fd, owner, chmod, _plain_octal(mtime_field, "mtime"))
            finally:
                os.close(fd)
            return True
        try:
            views = self.stream.take(size, path, key, name) if size else []
            mtime = _plain_octal(mtime_field, "mtime")
        except BaseException:
            os.close(fd)
            raise
        self.writer.add(fd, views, size, owner, chmod, mtime)
        return True

    def _create(self, make, dfd: int, key: tuple[str, ...], name: str):
        """Run `make` (which creates `name` in `dfd`); if something is in the way, remove it and retry."""
        try:
            return make()
        except FileExistsError:
            self._remove(dfd, key, name, os.lstat(name, dir_fd=dfd))
            return make()

    def _directory(self, m: Member, dfd: int, key: tuple[str, ...], name: str) -> None:
        if m.mode & stat.S_ISGID:
            self.setgid_possible = True
        try:
            os.mkdir(name, m.mode & 0o777, dir_fd=dfd)
        except FileExistsError:
            existing = os.lstat(name, dir_fd=dfd)
            if not stat.S_ISDIR(existing.st_mode):
                self._remove(dfd, key, name, existing)
                os.mkdir(name, 0o700, dir_fd=dfd)
            fd = os.open(name, _DIR_FD, dir_fd=dfd)
            try:
                self._metadata(fd, m)
            finally:
                os.close(fd)
        else:  # made just now, in our private staging tree: set what mkdir could not
            if self._needs_chown(m.uid, m.gid):
                os.chown(name, m.uid, m.gid, dir_fd=dfd, follow_symlinks=False)
            if self._needs_chmod(m.mode):
                os.chmod(name, m.mode, dir_fd=dfd)
            if m.xattrs:
                fd = os.open(name, _DIR_FD, dir_fd=dfd)
                try:
                    self._xattrs(fd, m)
                finally:
                    os.close(fd)
        self.dir_times.append(((*key, name), m.mtime))

    def _regular(self, m: Member, dfd: int, key: tuple[str, ...], name: str) -> None:
        self.content_bytes += m.size
        self._check_space(m.size)
        fd = self._create(lambda: os.open(name, _NEW_FILE, m.mode & 0o777, dir_fd=dfd), dfd, key, name)
        try:
            if m.size:
                self.stream.copy_to(fd, m.size, m.name, key, name)
            self.consumed = True
            if self._needs_chown(m.uid, m.gid):
                os.fchown(fd, m.uid, m.gid)  # before chmod: chown clears setuid/setgid
            if self._needs_chmod(m.mode):
                os.fchmod(fd, m.mode)
            if m.xattrs:
                self._xattrs(fd, m)  # after chown, which clears file capabilities
            os.utime(fd, (m.mtime, m.mtime))
        finally:
            os.close(fd)

    def _hardlink(self, m: Member, dfd: int, key: tuple[str, ...], name: str) -> None:
        target = clean_name(m.linkname, self.limits)
        if not target:
            raise InvalidArchive(f"hard link {m.name!r} points at the layer's root")
        tfd, tkey, tname = self.tree.parent(target)
        st = _lstat(tname, tfd)
        if st is None or is_whiteout(st):
            self._copy_up(tfd, tkey, tname, m)
        elif stat.S_ISDIR(st.st_mode):
            raise InvalidArchive(f"hard link {m.name!r} points at a directory")
        if (tkey, tname) == (key, name):
            return  # a link to itself: nothing to do
        self._create(
            lambda: os.link(tname, name, src_dir_fd=tfd, dst_dir_fd=dfd, follow_symlinks=False), dfd, key, name
        )

    def _copy_up(self, tfd: int, tkey: tuple[str, ...], tname: str, m: Member) -> None:
        """A hard link to a file of a lower layer: copy that file into this layer first (as overlayfs would)."""
        below = self.tree.lookup_below((*tkey, tname))
        if below is None or stat.S_ISDIR(below[1].st_mode):
            raise InvalidArchive(f"hard link {m.name!r} points at {m.linkname!r}, which does not exist in the image")
        lower_path, st = below
        if _lstat(tname, tfd) is not None:  # a whiteout of this layer in the way
            os.unlink(tname, dir_fd=tfd)
        if stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(lower_path), tname, dir_fd=tfd)
        elif stat.S_ISREG(st.st_mode):
            self._check_space(st.st_size)
            src = os.open(lower_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                fd = os.open(tname, _NEW_FILE, 0o600, dir_fd=tfd)
                try:
                    left = st.st_size
                    while left > 0 and (n := os.copy_file_range(src, fd, min(left, 1 << 30))):
                        left -= n
                    if self.is_root:
                        os.fchown(fd, st.st_uid, st.st_gid)
                    os.fchmod(fd, stat.S_IMODE(st.st_mode))
                    os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))
                finally:
                    os.close(fd)
            finally:
                os.close(src)
        else:
            raise InvalidArchive(f"hard link {m.name!r} points at a special file of a lower layer")

    def _special(self, m: Member, dfd: int, key: tuple[str, ...], name: str) -> None:
        if m.type == FIFOTYPE:
            self._create(lambda: os.mkfifo(name, 0o600, dir_fd=dfd), dfd, key, name)
        else:
            if not self.is_root:
                raise InvalidArchive(f"layer entry {m.name!r} is a device node; only root can unpack it")
            kind = stat.S_IFCHR if m.type == CHRTYPE else stat.S_IFBLK
            device = os.makedev(m.devmajor, m.devminor)
            self._create(lambda: os.mknod(name, kind | 0o600, device, dir_fd=dfd), dfd, key, name)
        if self.is_root:
            os.chown(name, m.uid, m.gid, dir_fd=dfd, follow_symlinks=False)
        os.chmod(name, m.mode, dir_fd=dfd)  # a node we just made in our private tree: no symlink to follow
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
        if _lstat(name, dfd) is not None:
            # Whiteouts hide lower layers only; a file this layer itself adds stays (OCI image spec).
            return
        if not self.is_root:
            raise InvalidArchive("whiteouts are overlayfs character devices; only root can unpack them")
        os.mknod(name, stat.S_IFCHR | 0o600, 0, dir_fd=dfd)

    def _remove(self, dfd: int, key: tuple[str, ...], name: str, st: os.stat_result) -> None:
        if self.stream.recorder is not None:  # the tar-split record may still need what is removed
            self.stream.recorder.removing(self.tree.root_fd, key, name, stat.S_ISDIR(st.st_mode))
        if stat.S_ISDIR(st.st_mode):
            self.tree.forget((*key, name))
            fd = os.open(name, _DIR_FD, dir_fd=dfd)
            try:
                empty_dir_at(fd)
            finally:
                os.close(fd)
            os.rmdir(name, dir_fd=dfd)
        else:
            os.unlink(name, dir_fd=dfd)

    # -- metadata --------------------------------------------------------------------------------------------
    def _metadata(self, fd: int, m: Member) -> None:
        if self.is_root:
            os.fchown(fd, m.uid, m.gid)
        os.fchmod(fd, m.mode)  # after chown, which clears setuid/setgid
        if m.xattrs:
            self._xattrs(fd, m)

    def _xattrs(self, fd: int, m: Member) -> None:
        for name, value in m.xattrs.items():
            if name.startswith(_FORBIDDEN_XATTR_PREFIXES):
                raise InvalidArchive(f"layer entry {m.name!r} sets the overlayfs attribute {name!r}; refusing it")
            try:
                os.setxattr(fd, name, value)
            except OSError as e:
                if e.errno not in (errno.ENOTSUP, errno.EPERM):
                    raise

    def finish(self) -> None:
        """Directory mtimes last (writing inside a directory changes its mtime), deepest first."""
        self.tree.release()
        for key, mtime_ns in self.tree.copied_up:  # first: an entry of the layer for the same directory wins
            try:
                fd, _ = self.tree.resolve_dir(list(key), create=False)
            except (FileNotFoundError, InvalidArchive):
                continue
            os.utime(fd, ns=(mtime_ns, mtime_ns))
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
        if self.flusher is not None:
            self.flusher.wanted.set()
        check_free_space(self.tree.root_fd, size, "layer")


def check_free_space(where: int | str | os.PathLike[str], size: int, what: str) -> None:
    """TooLarge unless the filesystem of `where` (a descriptor or path) keeps a reserve after `size` more bytes."""
    vfs = os.statvfs(where)
    free = vfs.f_bavail * vfs.f_frsize
    if size + _SPACE_RESERVE > free:
        raise TooLarge(f"{what} needs at least {size} more bytes but the store has {free} free; free some space")


def _lstat(name: str, dfd: int) -> os.stat_result | None:
    try:
        return os.lstat(name, dir_fd=dfd)
    except FileNotFoundError:
        return None


# -- the entry point ----------------------------------------------------------------------------------------
def unpack_layer(
    store: Store,
    source: BinaryIO,
    *,
    parent: str | None = None,
    expected_diff_id: str | None = None,
    limits: Limits | None = None,
    record: bool = False,
) -> LayerInfo:
    """Stream one layer (plain tar, gzip or zstd, told by magic bytes) into a new snapshot.

    `parent` is the chain ID of the layer below (already in the store) or None. The diff_id is computed
    while streaming; a mismatch with `expected_diff_id` raises DigestMismatch at the end of the stream and
    commits nothing. If the layer is already in the store it is not unpacked again. With `record`, a
    tar-split record is kept with the snapshot (`minicache.tarsplit`): the layer tar can be rebuilt from it.
    """
    limits = limits or Limits()
    if expected_diff_id is not None:
        chain_id = _chain(parent, expected_diff_id)
        if store.layers.has(chain_id):
            return store.layers.info(chain_id)
    lowers = _lowers(store, parent)
    staging = store.layers.new_staging()
    reader: _Reader | None = None
    recorder: tarsplit.Recorder | None = None
    try:
        recorder = tarsplit.Recorder(staging) if record else None
        reader = _Reader(source, limits.max_bytes)
        reader.start()
        stream = _TarStream(reader, recorder)
        with SafeTree(os.path.join(staging, "fs"), lowers) as tree:
            unpacker = _unpack_into(tree, stream, limits)
        reader.join()
        diff_id = "sha256:" + reader.hash.hexdigest()
        if expected_diff_id is not None and diff_id != expected_diff_id:
            raise DigestMismatch(f"layer content has diff_id {diff_id}, but the image config says {expected_diff_id}")
        info = LayerInfo(chain_id=_chain(parent, diff_id), diff_id=diff_id, parent=parent, size=unpacker.content_bytes)
        if recorder is not None:
            _finish_record(recorder, reader.size, diff_id)
        return _commit(store, staging, info, recorder is not None)
    except BaseException:
        if recorder is not None:
            recorder.abort()
        if reader is not None and reader.is_alive():
            reader.close()
        store.discard(staging)
        raise


def _unpack_into(tree: SafeTree, stream: _TarStream, limits: Limits) -> _Unpacker:
    """Apply every entry of `stream` to `tree`; what the kernel refuses is told as what it means for the layer."""
    unpacker = _Unpacker(tree, stream, limits)
    unpacker.flusher = flusher = _Flusher(tree.root_fd)
    flusher.start()
    unpacker.writer.start()
    try:
        try:
            for member in _members(stream, limits, unpacker.fast_file):
                unpacker.apply(member)
                if member.size and not unpacker.consumed:
                    stream.skip(member.size)  # data of an entry that is not a file (rare, but allowed)
            stream.drain()
        except BaseException:
            unpacker.writer.stop(abort=True)
            raise
        unpacker.writer.stop()
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise TooLarge(f"the store's filesystem is full while unpacking a layer: {e.strerror}") from e
        if e.errno in _ENTRY_ERRNOS:  # what the kernel refuses to make of an entry: the entry is bad
            named = isinstance(e.filename, (str, bytes))
            where = f" ({os.fsdecode(e.filename)[:80]!r})" if named else ""
            raise InvalidArchive(f"layer has an entry that cannot be made: {e.strerror}{where}") from None
        raise
    finally:
        flusher.stop()
    unpacker.finish()
    return unpacker


def _finish_record(recorder: tarsplit.Recorder, size: int, diff_id: str) -> None:
    """Close the tar-split record; a full filesystem is told as such."""
    try:
        recorder.finish(size, diff_id)
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise TooLarge(f"the store's filesystem is full while writing a layer: {e.strerror}") from e
        raise


def _commit(store: Store, staging: str, info: LayerInfo, recorded: bool) -> LayerInfo:
    """Commit the staged snapshot under its chain ID, or, when another process was first, keep theirs
    (adopting this tar-split record if theirs has none) and discard the staging copy."""
    with store.layers.lock(info.chain_id):
        if store.layers.has(info.chain_id):
            if recorded:
                tarsplit.adopt(staging, store.layers.path(info.chain_id))
            store.discard(staging)
            return store.layers.info(info.chain_id)
        store.layers.commit(staging, info)
    return info


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
