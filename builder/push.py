"""`minibuild push IMAGE [DEST]`: an image of the store → a registry, by tag.

The image's stored manifest is pushed as it is (so its digest stays the same) when its layers are compressed
already, as a pulled image's are. Uncompressed layers (a `from-tar` export, a `docker save` archive) are
compressed first (gzip by default, with ISA-L; zstd or none on request), once: the image record then names
the compressed blobs and a new OCI manifest, so the next push sends the same digest. Then every blob it names
(config and layers) — skipped when the registry has it (HEAD), mounted from another repository of the same
registry when one of our images came from there, uploaded otherwise (one PUT, or PATCH chunks with
`chunk_size`; by default large blobs go in chunks, at least as large as the registry asks) — then the
manifest under the tag. The image gets the name `DEST@<digest>` in the store.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from minibuild.progress import Progress
from minibuild.pull import clients_for
from minibuild.registry import manifests
from minibuild.registry import mediatypes as mt
from minibuild.registry.client import AUTO, RegistryClient
from minibuild.registry.manifests import Descriptor, Manifest
from minibuild.registry.settings import Settings, load
from minicache import gc, layerdiff, reference, tarsplit
from minicache.errors import InvalidReference, InvalidSpec, NotFound
from minicache.images import ImageRecord, LayerRef
from minicache.record import Record
from minicache.store import Store

MISSING_BLOB_HINT = "pull or import the image again so that its layer blobs are stored"


class PushResult(Record):
    reference: str
    digest: str
    size: int  # bytes of the manifest, as `docker push` reports it
    pushed: list[str] = []
    mounted: list[str] = []
    existing: list[str] = []


def _destination(store: Store, image: str, dest: str | None) -> reference.Reference:
    if dest is None and reference.looks_like_id(image) and image not in store.images.refs():
        raise InvalidReference(
            f"{image!r} is an image ID; push needs a repository name", hint="give one: push IMAGE DEST"
        )
    ref = reference.parse(dest or image)
    if ref.digest:
        raise InvalidReference(f"cannot push to a digest ({ref})", hint="give a tag: NAME[:TAG]")
    return ref


def _rebuildable(store: Store, record: ImageRecord) -> dict[str, str]:
    """Layer digest -> chain ID, for the layers stored as a snapshot + tar-split record instead of a blob."""
    return {
        layer.digest: layer.chain_id
        for layer in record.layers
        if layer.digest and not store.blobs.has(layer.digest) and tarsplit.has_record(store, layer.chain_id)
    }


def _manifest(store: Store, record: ImageRecord, image: str, rebuildable: dict[str, str]) -> Manifest:
    if record.manifest is None or not store.blobs.has(record.manifest):
        raise NotFound(f"image {image} has no stored manifest, so it cannot be pushed as it is", hint=MISSING_BLOB_HINT)
    parsed = manifests.parse(store.blobs.read(record.manifest), record.manifest_media_type, image)
    if not isinstance(parsed, Manifest):
        raise NotFound(f"image {image}'s stored manifest is an index", hint=MISSING_BLOB_HINT)
    for desc in (parsed.config, *parsed.layers):
        if not store.blobs.has(desc.digest) and desc.digest not in rebuildable:
            raise NotFound(f"blob {desc.digest} of image {image} is not in the store", hint=MISSING_BLOB_HINT)
    return parsed


_UNCOMPRESSED = frozenset({mt.OCI_LAYER, mt.DOCKER_LAYER, mt.OCI_NONDIST_LAYER})


def compress_layers(
    store: Store, record: ImageRecord, manifest: Manifest, rebuildable: dict[str, str], compression: str
) -> tuple[ImageRecord, Manifest]:
    """Compress the image's uncompressed layers into new blobs; returns the updated record and its new manifest.

    Layers compressed already keep their blobs (and the image its digest when nothing changes).
    """
    if compression not in layerdiff.COMPRESSIONS:
        raise InvalidSpec(f"unknown compression {compression!r}", hint="use gzip, zstd or none")
    if compression == "none" or not any(d.media_type in _UNCOMPRESSED for d in manifest.layers):
        return record, manifest
    with gc.hold(store):  # the new blobs are named by no record until the end
        return _compress_layers(store, record, manifest, rebuildable, compression)


def _compress_layers(
    store: Store, record: ImageRecord, manifest: Manifest, rebuildable: dict[str, str], compression: str
) -> tuple[ImageRecord, Manifest]:
    new_layers = []
    new_descs = []
    for desc, layer in zip(manifest.layers, record.layers, strict=True):
        if desc.media_type not in _UNCOMPRESSED:
            new_layers.append(layer)
            new_descs.append(desc.to_json() | {"mediaType": _oci_type(desc.media_type)})
            continue
        chain = rebuildable.get(desc.digest)
        opener = partial(tarsplit.open_layer_tar, store, chain) if chain else partial(store.blobs.open, desc.digest)
        with opener() as source:
            diff_id, digest, size = layerdiff.compress_stream(store, source, compression)
        if diff_id != layer.diff_id:
            raise InvalidSpec(f"layer {desc.digest} does not match its diff_id {layer.diff_id}; it was not pushed")
        media = layerdiff.MEDIA_TYPES[compression]
        new_layers.append(
            LayerRef(diff_id=diff_id, chain_id=layer.chain_id, digest=digest, media_type=media, size=size)
        )
        new_descs.append({"mediaType": media, "digest": digest, "size": size})
    config_size = store.blobs.size(record.id)
    raw = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "config": {"mediaType": mt.OCI_CONFIG, "digest": record.id, "size": config_size},
            "layers": new_descs,
        },
        separators=(",", ":"),
    ).encode()
    manifest_digest = store.blobs.put(raw)
    updated = ImageRecord(
        id=record.id,
        layers=tuple(new_layers),
        manifest=manifest_digest,
        manifest_media_type=mt.OCI_MANIFEST,
        created=record.created,
        extra=record.extra,
    )
    store.images.put(updated)
    return updated, manifests.parse(raw, mt.OCI_MANIFEST, record.id)


def _oci_type(media_type: str) -> str:
    return {mt.DOCKER_LAYER_GZIP: mt.OCI_LAYER_GZIP, mt.DOCKER_FOREIGN_LAYER: mt.OCI_NONDIST_LAYER_GZIP}.get(
        media_type, media_type
    )


def mount_sources(store: Store, dest: reference.Reference) -> dict[str, str]:
    """Blob digest → another repository of the destination registry that an image of ours with it came from."""
    out: dict[str, str] = {}
    for name, image_id in store.images.refs().items():
        try:
            ref = reference.parse(name)
            record = store.images.get(image_id)
        except (InvalidReference, NotFound):
            continue
        if ref.registry != dest.registry or ref.repository == dest.repository:
            continue
        for digest in (record.id, *(layer.digest for layer in record.layers if layer.digest)):
            out.setdefault(digest, ref.repository)
    return out


def push(
    store: Store,
    image: str,
    dest: str | None = None,
    *,
    settings: Settings | None = None,
    progress: Progress | None = None,
    chunk_size: int | None = AUTO,
    compression: str = "gzip",
) -> PushResult:
    """Push `image` (a name or ID in the store) to `dest` (default: the image's own name).

    Uncompressed layers are compressed with `compression` first (see the module docstring).
    """
    record = store.images.resolve(image)
    ref = _destination(store, image, dest)
    rebuildable = _rebuildable(store, record)
    manifest = _manifest(store, record, image, rebuildable)
    record, manifest = compress_layers(store, record, manifest, rebuildable, compression)
    rebuildable = _rebuildable(store, record)
    settings = settings or load()
    progress = progress or Progress()
    client = clients_for(ref, settings, push=True)[-1]
    result = PushResult(str(ref), manifest.digest, len(manifest.raw))
    try:
        client.ping()
        progress.message(f"The push refers to repository [{ref.name}]")
        sources = mount_sources(store, ref)
        blobs = list({d.digest: d for d in (*manifest.layers, manifest.config)}.values())
        for desc in blobs:
            progress.add(desc.short, desc.size, "Preparing")
        with ThreadPoolExecutor(max_workers=max(1, settings.max_concurrent_uploads), thread_name_prefix="push") as pool:
            outcomes = list(
                pool.map(
                    lambda d: _push_blob(
                        store, client, d, sources.get(d.digest), chunk_size, progress, rebuildable.get(d.digest)
                    ),
                    blobs,
                )
            )
        for desc, outcome in zip(blobs, outcomes, strict=True):
            getattr(result, outcome).append(desc.digest)
        client.put_manifest(ref.tag or reference.DEFAULT_TAG, manifest.raw, manifest.media_type)
    finally:
        client.close()
        progress.close()
    store.images.put(record, [f"{ref.name}@{manifest.digest}"])
    return result


def _push_blob(
    store: Store,
    client: RegistryClient,
    desc: Descriptor,
    source: str | None,
    chunk_size: int | None,
    progress: Progress,
    rebuild_from: str | None = None,
) -> str:
    """Make the registry have one blob; returns "existing", "mounted" or "pushed".

    With `rebuild_from` (a chain ID), the blob is the layer tar rebuilt from that snapshot's tar-split
    record, verified while it streams: a mismatch fails the upload before its last bytes are sent.
    """
    key = desc.short
    if client.blob_exists(desc.digest):
        progress.status(key, "Layer already exists", final=True)
        return "existing"
    location = None
    if source is not None:
        location = client.mount_blob(desc.digest, source)
        if location is None:
            progress.status(key, f"Mounted from {source}", final=True)
            return "mounted"
    progress.status(key, "Pushing")
    if rebuild_from is not None:
        opener = partial(tarsplit.open_layer_tar, store, rebuild_from)
    else:
        opener = partial(store.blobs.open, desc.digest)
    client.upload_blob(
        desc.digest,
        desc.size,
        opener,
        location=location,
        chunk_size=chunk_size,
        on_bytes=lambda n: progress.advance(key, n),
    )
    progress.status(key, "Pushed", final=True)
    return "pushed"
