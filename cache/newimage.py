"""Writing a new image into the store: its layer blobs, config and OCI manifest. Shared by `minibuild build`
and `minirun commit`, which both end with layers in the store and a config to publish.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from minicache import layerdiff
from minicache.images import ImageRecord, LayerRef

if TYPE_CHECKING:
    from minicache.store import Store

MEDIA_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"


def canonical(obj: Any) -> bytes:
    """Compact JSON with sorted keys: the same object always gives the same bytes (and digest)."""
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def with_blob(store: Store, layer: LayerRef, *, compression: str = "gzip", timestamp: int | None = None) -> LayerRef:
    """`layer` as a blob a manifest can name. An image put into the store without its layer blobs (no digest)
    gets one written from its snapshot, once per compression and timestamp (remembered in the step cache)."""
    if layer.digest and layer.media_type and layer.size is not None:
        return layer
    from minicache.digest import of_bytes

    key = of_bytes(canonical(["with-blob", layer.chain_id, compression, timestamp]))
    cached = store.buildcache.get(key)
    if isinstance(cached, LayerRef):
        return cached
    blob = layerdiff.write_layer(store, store.layers.fs(layer.chain_id), compression=compression, timestamp=timestamp)
    made = LayerRef(
        diff_id=blob.diff_id, chain_id=layer.chain_id, digest=blob.digest, media_type=blob.media_type, size=blob.size
    )
    store.buildcache.put(key, made)
    return made


def store_image(
    store: Store, image: dict[str, Any], layers: list[LayerRef], *, extra: dict[str, Any] | None = None
) -> ImageRecord:
    """Write `image` (an OCI image config without `rootfs`) over `layers` (with blobs) and its manifest.

    Returns the record; the caller publishes it (`store.images.put`) with the names it wants.
    """
    config = {**image, "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]}}
    config_bytes = canonical(config)
    config_digest = store.blobs.put(config_bytes)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_OCI_MANIFEST,
        "config": {"mediaType": MEDIA_OCI_CONFIG, "digest": config_digest, "size": len(config_bytes)},
        "layers": [{"mediaType": layer.media_type, "digest": layer.digest, "size": layer.size} for layer in layers],
    }
    manifest_digest = store.blobs.put(canonical(manifest))
    return ImageRecord(
        id=config_digest,
        layers=tuple(layers),
        manifest=manifest_digest,
        manifest_media_type=MEDIA_OCI_MANIFEST,
        created=image.get("created"),
        extra=extra or {},
    )


def commit_upper(
    store: Store,
    upper: Any,
    base: ImageRecord | None,
    image: dict[str, Any],
    history: dict[str, Any],
    *,
    compression: str = "gzip",
    exclude_placeholders: tuple[str, ...] = (),
) -> ImageRecord:
    """A new image: `base` plus the changes in `upper` (an overlay upper directory that stays where it is).

    The layer blob is written from `upper`; the snapshot is unpacked from that blob by the store's unpacker
    (the upper directory belongs to a container and is not moved). `exclude_placeholders` are paths that are
    left out when they are empty files or directories (mount points a runtime made). An empty change adds
    no layer, only the history entry.
    """
    from minicache.unpack import unpack_layer

    layers = [with_blob(store, layer, compression=compression) for layer in (base.layers if base else ())]
    blob = layerdiff.write_layer(store, upper, compression=compression, exclude_placeholders=exclude_placeholders)
    if blob.empty:
        store.blobs.remove(blob.digest)
        history = {**history, "empty_layer": True}
    else:
        with store.blobs.open(blob.digest) as f:
            info = unpack_layer(store, f, parent=layers[-1].chain_id if layers else None, expected_diff_id=blob.diff_id)
        layers.append(
            LayerRef(
                diff_id=blob.diff_id,
                chain_id=info.chain_id,
                digest=blob.digest,
                media_type=blob.media_type,
                size=blob.size,
            )
        )
    image = {**image, "history": [*(image.get("history") or []), history]}
    return store_image(store, image, layers, extra={"source": "commit"})
