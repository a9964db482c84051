"""The step cache of `minibuild build`: one small JSON file per step key, naming the layer the step made.

A key is a digest of everything that decides a step's result (the parent's chain, the instruction after
expansion, the sources' checksum, the output options); the entry is the layer (or None: the step changed
nothing). An entry is only a hint: it counts only while its layer snapshot and blob are in the store, and
garbage collection drops entries whose layer went (`prune`).
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING

from minicache import digest as digests
from minicache.atomic import atomic_write_json, read_json
from minicache.errors import NotFound
from minicache.images import LayerRef

if TYPE_CHECKING:

    from minicache.store import Store

_EMPTY = "empty"


class BuildCache:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.dir = store.buildcache_dir

    def _path(self, key: str) -> str:
        return os.path.join(self.dir, f"{digests.hex_of(key)}.json")

    def get(self, key: str) -> LayerRef | str | None:
        """The cached layer of step `key`, `"empty"` for a step that changed nothing, None for a miss."""
        try:
            data = read_json(self._path(key))
        except (FileNotFoundError, ValueError):
            return None
        layer = data.get("layer")
        if layer is None:
            return _EMPTY
        ref = LayerRef(**layer)
        if not self.store.layers.has(ref.chain_id) or (ref.digest and not self.store.blobs.has(ref.digest)):
            return None
        return ref

    def put(self, key: str, layer: LayerRef | None) -> None:
        atomic_write_json(self._path(key), {"layer": layer.as_dict() if layer is not None else None}, durable=False)

    def get_image(self, key: str) -> str | None:
        """The image (config digest) a whole build with final key `key` made, while its record exists."""
        try:
            image_id = read_json(self._path(key)).get("image")
        except (FileNotFoundError, ValueError, AttributeError):
            return None
        try:
            self.store.images.get(image_id)
        except (NotFound, ValueError, TypeError):  # missing or unreadable: a miss either way
            return None
        return image_id

    def put_image(self, key: str, image_id: str) -> None:
        atomic_write_json(self._path(key), {"image": image_id}, durable=False)

    def keys(self) -> list[str]:
        return [f"sha256:{n[:-5]}" for n in os.listdir(self.dir) if n.endswith(".json") and len(n) == 69]

    def drop_stale(self) -> list[str]:
        """Remove entries whose layer or blob is gone; returns their keys (called by garbage collection)."""
        gone = []
        for key in self.keys():
            try:
                data = read_json(self._path(key))
                if "image" in data:
                    stale = self.get_image(key) is None
                else:
                    stale = data.get("layer") is not None and self.get(key) is None
            except (FileNotFoundError, ValueError, TypeError):
                stale = True
            if stale:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._path(key))
                gone.append(key)
        return gone
