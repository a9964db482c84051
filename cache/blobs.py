"""Verified blobs under blobs/sha256/<hex>: written through a BlobWriter, visible only once verified."""

from __future__ import annotations

import contextlib
import json
import os
from typing import TYPE_CHECKING

from minicache import digest as digests
from minicache.atomic import fsync_dir
from minicache.errors import NotFound

if TYPE_CHECKING:
    from types import TracebackType
    from typing import Any, BinaryIO

    from minicache.store import Store


class BlobWriter:
    """Streams bytes into tmp/, hashing as it goes; `commit()` verifies and renames into place.

    `offset` is how many bytes are written, so an interrupted download can resume with
    `Range: bytes=<offset>-` and keep writing into the same writer.
    """

    def __init__(self, store: Store, expected: str | None = None, size: int | None = None) -> None:
        self.store = store
        self.verifier = digests.Verifier(expected, size)
        self.path = store.staging_path("blob")
        self._file: BinaryIO | None = open(self.path, "xb")  # noqa: SIM115 - closed by commit/abort
        self.digest: str | None = None
        self._published = False

    @property
    def offset(self) -> int:
        return self.verifier.size

    def write(self, chunk: bytes | memoryview) -> None:
        assert self._file is not None, "write after commit or abort"
        self.verifier.update(chunk)
        self._file.write(chunk)

    def commit(self, what: str = "blob") -> str:
        """Verify digest and size, fsync, and publish; on a mismatch the bytes are discarded."""
        self.seal(what)
        return self.publish()

    def seal(self, what: str = "blob") -> str:
        """Verify and fsync, but leave the bytes in tmp/ (at `path`) until `publish()`; `abort()` drops them.

        For an import that must store nothing unless all of it succeeds.
        """
        assert self._file is not None, "seal twice"
        try:
            got = self.verifier.check(what)
            self._file.flush()
            os.fsync(self._file.fileno())
        except BaseException:
            self.abort()
            raise
        self._file.close()
        self._file = None
        self.digest = got
        return got

    def publish(self) -> str:
        """Rename the sealed bytes to their final name."""
        assert self.digest is not None and not self._published, "publish before seal, or twice"
        final = self.store.blobs.path(self.digest)
        os.chmod(self.path, 0o644)
        os.replace(self.path, final)  # content-addressed: a concurrent identical commit is harmless
        fsync_dir(os.path.dirname(final))
        self._published = True
        return self.digest

    def abort(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if not self._published:
            _unlink(self.path)

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not self._published:
            self.abort()


class BlobStore:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.dir = store.blobs_dir

    def path(self, digest: str) -> str:
        return os.path.join(self.dir, digests.hex_of(digest))

    def has(self, digest: str) -> bool:
        return os.path.isfile(self.path(digest))

    def size(self, digest: str) -> int:
        try:
            return os.stat(self.path(digest)).st_size
        except FileNotFoundError:
            raise NotFound(f"blob {digest} is not in the store") from None

    def writer(self, expected: str | None = None, size: int | None = None) -> BlobWriter:
        return BlobWriter(self.store, expected, size)

    def put(self, data: bytes, expected: str | None = None) -> str:
        """Store `data` (verified against `expected` when given) and return its digest."""
        digest = digests.of_bytes(data)
        if self.has(digest) and (expected is None or expected == digest):
            return digest
        with self.writer(expected, len(data)) as w:
            w.write(data)
            return w.commit()

    def open(self, digest: str) -> BinaryIO:
        try:
            return open(self.path(digest), "rb")
        except FileNotFoundError:
            raise NotFound(f"blob {digest} is not in the store") from None

    def read(self, digest: str) -> bytes:
        with self.open(digest) as f:
            return f.read()

    def read_json(self, digest: str) -> Any:
        return json.loads(self.read(digest))

    def all(self) -> list[str]:
        return [f"sha256:{name}" for name in os.listdir(self.dir) if len(name) == 64]

    def remove(self, digest: str) -> None:
        _unlink(self.path(digest))


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
