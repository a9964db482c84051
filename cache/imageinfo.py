"""What the store knows about an image, in Docker's words: its size, creation time and `image inspect` document.

Shared by `minibuild images`/`inspect` and `minirun serve`'s Engine API, which must not import each other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from minicache import reference
from minicache.errors import NotFound

if TYPE_CHECKING:
    from minicache.images import ImageRecord
    from minicache.store import Store


def image_size(store: Store, record: ImageRecord) -> int:
    """Bytes of file content of all its layers (Docker's SIZE: the unpacked image)."""
    total = 0
    for layer in record.layers:
        try:
            total += store.layers.info(layer.chain_id).size
        except NotFound:
            continue
    return total


def created(store: Store, record: ImageRecord) -> str | None:
    """The config's `created` (what the image's author says), else when the store recorded it."""
    try:
        config = store.images.config(record)
    except (NotFound, ValueError):
        config = None
    value = config.get("created") if isinstance(config, dict) else None  # a list: stored before the checks
    return value if isinstance(value, str) else record.created


def inspect(store: Store, name: str) -> dict[str, Any]:
    """`docker image inspect` for one image."""
    record = store.images.resolve(name)
    config = store.images.config(record)
    if not isinstance(config, dict):  # stored before import checked configs: shown as empty
        config = {}
    names = store.images.names_of(record.id)
    repo_tags, repo_digests = [], []
    for n in names:
        ref = reference.parse(n, default_tag=False)
        (repo_digests if ref.digest else repo_tags).append(ref.familiar)
    lowers = [str(store.layers.fs(c)) for c in reversed(record.chain_ids)]
    return {
        "Id": record.id,
        "RepoTags": repo_tags,
        "RepoDigests": repo_digests,
        "Parent": "",
        "Comment": "",
        "Created": created(store, record) or "",
        "Config": config.get("config") or {},
        "Architecture": config.get("architecture", ""),
        "Variant": config.get("variant", ""),
        "Os": config.get("os", ""),
        "Author": config.get("author", ""),
        "Size": image_size(store, record),
        "GraphDriver": {"Name": "overlay", "Data": {"LowerDir": ":".join(lowers)}},
        "RootFS": {"Type": "layers", "Layers": [layer.diff_id for layer in record.layers]},
        "Metadata": {"Manifest": record.manifest, "ManifestMediaType": record.manifest_media_type},
    }
