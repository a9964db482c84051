"""Garbage collection: remove what no image needs, never what a container or a mount uses.

Live: every image record that has a reference, is used by a container or is mounted; the layers of those
images with every layer below them; their config, manifest and layer blobs, and any blob named in the
record's extra facts (an index, a signature). Dangling images (no reference, unused) are removed first,
as `docker image prune` does. Layers only the build step cache names (intermediate stages, failed or
untagged builds) are not live: they go, and their cache entries with them. Everything runs under the refs
lock, and under the exclusive `gc` lock that importers and builds hold shared (`hold()`) while they write
layers and blobs not yet referenced by any record.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from typing import TYPE_CHECKING

from minicache import tarsplit, usage
from minicache.errors import NotFound
from minicache.record import Record

if TYPE_CHECKING:
    from minicache.images import ImageRecord
    from minicache.locks import FileLock
    from minicache.store import Store

_DIGEST_RE = re.compile(r"sha256:[a-f0-9]{64}")


class Report(Record):
    images: list[str] = []
    layers: list[str] = []
    blobs: list[str] = []
    bytes_freed: int = 0


def hold(store: Store) -> FileLock:
    """Held (shared) by anything that writes layers or blobs before the image record naming them exists."""
    return store.lock("gc", shared=True)


def tree_size(path: str | os.PathLike[str], *, allocated: bool = True) -> int:
    """The bytes under `path` (allocated on disk, or the files' sizes), symlinks not followed.

    Without recursion: a layer or a container's upper directory is hostile input and may nest deeper
    than the interpreter's recursion limit (os.walk recurses). A path too long to open is left out.
    """
    total = 0
    pending = [os.fspath(path)]
    while pending:
        directory = pending.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        for entry in entries:
            with contextlib.suppress(OSError):
                st = entry.stat(follow_symlinks=False)
                if entry.is_dir(follow_symlinks=False):
                    pending.append(entry.path)
                    if allocated:
                        continue
                total += st.st_blocks * 512 if allocated else st.st_size
    return total


def collect(store: Store) -> Report:
    """Remove dangling images, then unreferenced layers and blobs, then tmp/ debris; return what went."""
    report = Report()
    with store.lock("gc"), store.lock("refs"):
        refs = store.images.refs()
        named = set(refs.values())
        in_use = set(usage.containers_by_image(store)) | usage.mounted_images(store)
        live_layers: set[str] = set()
        live_blobs: set[str] = set()
        for record in store.images.all():
            if record.id not in named and record.id not in in_use:
                # Not images.forget(): it takes the refs lock, which this process holds already (flock on a
                # second descriptor of the same file would wait for ourselves).
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(store.images._record_path(record.id))
                report.images.append(record.id)
                continue
            live_blobs.add(record.id)
            if record.manifest:
                live_blobs.add(record.manifest)
            live_blobs.update(_DIGEST_RE.findall(repr(record.extra)))
            for layer in record.layers:
                if layer.digest:
                    live_blobs.add(layer.digest)
                chain: str | None = layer.chain_id
                while chain is not None and chain not in live_layers:
                    live_layers.add(chain)
                    try:
                        chain = store.layers.info(chain).parent
                    except NotFound:
                        break
        for chain_id in store.layers.all():
            if chain_id not in live_layers:
                report.bytes_freed += tree_size(store.layers.path(chain_id))
                store.layers.remove(chain_id)
                report.layers.append(chain_id)
        for digest in store.blobs.all():
            if digest not in live_blobs:
                try:
                    report.bytes_freed += store.blobs.size(digest)
                except NotFound:
                    continue
                store.blobs.remove(digest)
                report.blobs.append(digest)
        store.buildcache.drop_stale()  # step-cache entries of the build layers that just went
        store.clear_debris()
        store.prune_locks()
    return report


def check(store: Store) -> list[str]:
    """Problems that a crash must never leave visible: a reference to a missing image, an image whose layer,
    config or manifest is missing, a layer whose parent is missing or whose record is unreadable."""
    problems: list[str] = []
    records = _readable_images(store, problems)
    for name, image_id in store.images.refs().items():
        if image_id not in records:
            problems.append(f"reference {name} points at missing image {image_id}")
    for record in records.values():
        problems.extend(_image_problems(store, record))
    for chain_id in store.layers.all():
        problems.extend(_layer_problems(store, chain_id))
    for digest in store.blobs.all():
        h = hashlib.sha256()
        with store.blobs.open(digest) as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        if "sha256:" + h.hexdigest() != digest:
            problems.append(f"blob {digest} does not match its digest")
    return problems


def _readable_images(store: Store, problems: list[str]) -> dict[str, ImageRecord]:
    """The image records that can be read, by ID; each unreadable one is added to `problems`."""
    records = {}
    for image_id in store.images.ids():
        try:
            records[image_id] = store.images.get(image_id)
        except (NotFound, ValueError, TypeError) as e:
            problems.append(f"image record {image_id} is unreadable: {e}")
    return records


def _image_problems(store: Store, record: ImageRecord) -> list[str]:
    """The blobs and layers `record` needs that are missing (a blob a tar-split record can rebuild is not)."""
    problems = []
    rebuildable = {layer.digest for layer in record.layers if tarsplit.has_record(store, layer.chain_id)}
    for digest in filter(None, (record.id, record.manifest, *(layer.digest for layer in record.layers))):
        if not store.blobs.has(digest) and digest not in rebuildable:
            problems.append(f"image {record.id} needs blob {digest}, which is missing")
    for layer in record.layers:
        if not store.layers.has(layer.chain_id):
            problems.append(f"image {record.id} needs layer {layer.chain_id}, which is missing")
    return problems


def _layer_problems(store: Store, chain_id: str) -> list[str]:
    """What is wrong with one layer snapshot: an unreadable layer.json, a missing parent or fs/ directory."""
    try:
        info = store.layers.info(chain_id)
    except (NotFound, ValueError, TypeError) as e:
        return [f"layer {chain_id} has no readable layer.json: {e}"]
    problems = []
    if info.parent is not None and not store.layers.has(info.parent):
        problems.append(f"layer {chain_id} sits on missing layer {info.parent}")
    if not os.path.isdir(store.layers.fs(chain_id)):
        problems.append(f"layer {chain_id} has no fs/ directory")
    return problems
