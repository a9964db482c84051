"""`minibuild push IMAGE [DEST]`: an image of the store → a registry, by tag.

The image's stored manifest is pushed as it is (so its digest stays the same): first every blob it names
(config and layers) — skipped when the registry has it (HEAD), mounted from another repository of the same
registry when one of our images came from there, uploaded otherwise (one PUT, or PATCH chunks with
`chunk_size`) — then the manifest under the tag. The image gets the name `DEST@<digest>` in the store.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial

from minibuild.progress import Progress
from minibuild.pull import clients_for
from minibuild.registry import manifests
from minibuild.registry.client import RegistryClient
from minibuild.registry.manifests import Descriptor, Manifest
from minibuild.registry.settings import Settings, load
from minicache import reference, tarsplit
from minicache.errors import InvalidReference, NotFound
from minicache.images import ImageRecord
from minicache.store import Store

MISSING_BLOB_HINT = "pull or import the image again so that its layer blobs are stored"


@dataclass
class PushResult:
    reference: str
    digest: str
    size: int  # bytes of the manifest, as `docker push` reports it
    pushed: list[str] = field(default_factory=list)
    mounted: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)


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
    chunk_size: int | None = None,
) -> PushResult:
    """Push `image` (a name or ID in the store) to `dest` (default: the image's own name)."""
    record = store.images.resolve(image)
    ref = _destination(store, image, dest)
    rebuildable = _rebuildable(store, record)
    manifest = _manifest(store, record, image, rebuildable)
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
