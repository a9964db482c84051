"""Image records and the reference index.

    images/<config-hex>.json   one ImageRecord per image (the image ID is its config digest, as in Docker)
    images/refs.json           {"docker.io/library/busybox:latest": "sha256:<id>", "<name>@sha256:<manifest>": ...}

Every change to refs.json happens under locks/refs.lock and is published by an atomic rename,
so readers never lock and never see a torn index.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING

from minicache import digest as digests
from minicache import events, reference
from minicache.atomic import atomic_write_json, read_json
from minicache.errors import InvalidReference, NotFound
from minicache.record import Record

if TYPE_CHECKING:
    from typing import Any

    from minicache.store import Store

REFS_FILE = "refs.json"
NOT_FOUND_HINT = "pull it with `minibuild pull IMAGE` or import it with `minibuild from-tar FILE`"


class LayerRef(Record, frozen=True):
    """One layer of an image, bottom first."""

    diff_id: str  # sha256 of the uncompressed tar
    chain_id: str  # key of the unpacked snapshot in the LayerStore
    digest: str | None = None  # the (compressed) blob, when the store keeps it
    media_type: str | None = None
    size: int | None = None  # size of the blob


class ImageRecord(Record, frozen=True):
    """An image in the store: its config digest (the ID), its layers and where its manifest came from."""

    id: str  # config digest
    layers: tuple[LayerRef, ...]
    manifest: str | None = None  # digest of the stored manifest blob
    manifest_media_type: str | None = None
    created: str | None = None
    extra: dict[str, Any] = {}  # copied per instance; free-form facts (source, platform, ...)

    @property
    def chain_ids(self) -> list[str]:
        return [layer.chain_id for layer in self.layers]

    @property
    def short_id(self) -> str:
        return digests.hex_of(self.id)[:12]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ImageRecord:
        layers = tuple(LayerRef(**layer) for layer in data.pop("layers"))
        return cls(layers=layers, **data)


class ImageStore:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.dir = store.images_dir

    # -- records ---------------------------------------------------------------------------------------------
    def _record_path(self, image_id: str) -> str:
        return os.path.join(self.dir, f"{digests.hex_of(image_id)}.json")

    def get(self, image_id: str) -> ImageRecord:
        try:
            return ImageRecord.from_json(read_json(self._record_path(image_id)))
        except FileNotFoundError:
            raise NotFound(f"image {image_id} is not in the store", hint=NOT_FOUND_HINT) from None

    def config(self, record: ImageRecord) -> dict[str, Any]:
        """The image's config blob (the OCI image config: `config`, `rootfs`, `history`, ...)."""
        return self.store.blobs.read_json(record.id)

    def ids(self) -> list[str]:
        return [f"sha256:{n[:-5]}" for n in os.listdir(self.dir) if n.endswith(".json") and len(n) == 69]

    def all(self) -> list[ImageRecord]:
        out = []
        for image_id in self.ids():
            try:
                out.append(self.get(image_id))
            except NotFound:  # removed meanwhile
                continue
        return out

    def put(self, record: ImageRecord, names: list[str] | tuple[str, ...] = ()) -> None:
        """Publish an image whose blobs and layers are already stored, then point `names` at it.

        Written in that order, so a reference never names an image whose parts are missing.
        """
        for layer in record.layers:
            if not self.store.layers.has(layer.chain_id):
                raise NotFound(f"layer {layer.chain_id} of image {record.id} is not in the store")
        atomic_write_json(self._record_path(record.id), record.as_dict())
        if names:
            with self.store.lock("refs"):
                refs = self.refs()
                for name in names:
                    refs[self.normalize(name)] = record.id
                self._write_refs(refs)

    # -- references ------------------------------------------------------------------------------------------
    @staticmethod
    def normalize(name: str) -> str:
        """`busybox` → `docker.io/library/busybox:latest`; `x@sha256:…` keeps its digest."""
        return str(reference.parse(name))

    def refs(self) -> dict[str, str]:
        try:
            return read_json(os.path.join(self.dir, REFS_FILE))
        except FileNotFoundError:
            return {}

    def _write_refs(self, refs: dict[str, str]) -> None:
        atomic_write_json(os.path.join(self.dir, REFS_FILE), refs)

    def names_of(self, image_id: str) -> list[str]:
        return sorted(name for name, target in self.refs().items() if target == image_id)

    def tag(self, source: str, target: str) -> ImageRecord:
        record = self.resolve(source)
        with self.store.lock("refs"):
            refs = self.refs()
            refs[self.normalize(target)] = record.id
            self._write_refs(refs)
        events.append(self.store, events.IMAGE, "tag", record.id, {"name": self.normalize(target)})
        return record

    def untag(self, name: str) -> str:
        """Remove one reference; return the image ID it pointed to."""
        key = self.normalize(name)
        with self.store.lock("refs"):
            refs = self.refs()
            if key not in refs:
                raise NotFound(f"no such image reference: {name}", hint=NOT_FOUND_HINT)
            image_id = refs.pop(key)
            self._write_refs(refs)
        events.append(self.store, events.IMAGE, "untag", image_id, {"name": key})
        return image_id

    def forget(self, image_id: str) -> None:
        """Drop an image record and every reference to it (blobs and layers stay until garbage collection)."""
        with self.store.lock("refs"):
            refs = {k: v for k, v in self.refs().items() if v != image_id}
            self._write_refs(refs)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._record_path(image_id))
        events.append(self.store, events.IMAGE, "delete", image_id)

    def resolve(self, text: str) -> ImageRecord:
        """Find an image by reference (`busybox`, `x:1`, `x@sha256:…`), full ID or unique ID prefix."""
        full_id = text if text.startswith("sha256:") else f"sha256:{text}"
        if len(full_id) == 71 and reference.looks_like_id(text):
            return self.get(full_id)
        try:
            key = self.normalize(text)
        except InvalidReference:
            key = None
        if key is not None and (image_id := self.refs().get(key)):
            return self.get(image_id)
        if reference.looks_like_id(text):
            prefix = text.removeprefix("sha256:")
            matches = [i for i in self.ids() if digests.hex_of(i).startswith(prefix)]
            if len(matches) == 1:
                return self.get(matches[0])
            if len(matches) > 1:
                raise InvalidReference(f"image ID prefix {text!r} is ambiguous: give more digits")
        if key is None:
            reference.parse(text)  # raises the precise parse error
        raise NotFound(f"image {text!r} not found in the store", hint=NOT_FOUND_HINT)
