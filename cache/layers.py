"""Unpacked layer snapshots under layers/<chain-id-hex>/: `fs/` (overlay format) and `layer.json`.

A layer shared by many images is unpacked once, keyed by its chain ID. A snapshot is built in
tmp/ and appears under its final name by one rename, so its presence means it is complete.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from minicache import digest as digests
from minicache.atomic import atomic_write_json, fsync_dir, read_json
from minicache.errors import NotFound
from minicache.record import Record

if TYPE_CHECKING:
    from minicache.store import Store

FS_DIR = "fs"
META_FILE = "layer.json"


class LayerInfo(Record, frozen=True):
    """What layer.json records about one unpacked layer."""

    chain_id: str
    diff_id: str
    parent: str | None  # chain ID of the layer below, None for a base layer
    size: int  # bytes of file content unpacked


class LayerStore:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.dir = store.layers_dir

    def path(self, chain_id: str) -> str:
        return os.path.join(self.dir, digests.hex_of(chain_id))

    def fs(self, chain_id: str) -> str:
        """The snapshot's root directory: an overlay lowerdir."""
        return os.path.join(self.path(chain_id), FS_DIR)

    def has(self, chain_id: str) -> bool:
        return os.path.isfile(os.path.join(self.path(chain_id), META_FILE))

    def info(self, chain_id: str) -> LayerInfo:
        try:
            return LayerInfo(**read_json(os.path.join(self.path(chain_id), META_FILE)))
        except FileNotFoundError:
            raise NotFound(f"layer {chain_id} is not in the store") from None

    def lock(self, chain_id: str):
        """Held while a layer is unpacked, so two processes never unpack the same one at once."""
        return self.store.lock(f"layer-{digests.hex_of(chain_id)}")

    def new_staging(self) -> str:
        """A staging folder with an empty `fs/` to unpack into; pass it to `commit` or `store.discard`."""
        staging = self.store.staging_dir("layer")
        os.mkdir(os.path.join(staging, FS_DIR), 0o755)
        return staging

    def commit(self, staging: str | os.PathLike[str], info: LayerInfo, *, durable: bool = True) -> None:
        """Publish an unpacked snapshot under its chain ID (one rename). If it exists already, drop ours.

        With `durable`, the whole filesystem is synced first (one syncfs instead of an fsync per file),
        so a power cut after the rename can never expose a snapshot with missing data.
        """
        atomic_write_json(os.path.join(staging, META_FILE), info.as_dict(), durable=False)
        final = self.path(info.chain_id)
        if durable:
            from minicache.syscalls import syncfs

            fd = os.open(staging, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                syncfs(fd)
            finally:
                os.close(fd)
        try:
            os.rename(staging, final)
        except OSError:
            if self.has(info.chain_id):
                self.store.discard(staging)
                return
            raise
        fsync_dir(self.dir)

    def all(self) -> list[str]:
        return [f"sha256:{name}" for name in os.listdir(self.dir) if len(name) == 64]

    def remove(self, chain_id: str) -> None:
        self.store.discard(self.path(chain_id))
