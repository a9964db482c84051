"""Putting test images straight into a store (no unpacker, no registry)."""

from __future__ import annotations

from pathlib import Path

from minicache.store import Store


def add_rootfs_image(store: Store, rootfs: Path, name: str, config: dict | None = None) -> str:
    """Put a one-layer image made from a directory into the store, without the unpacker or a registry.

    The directory is copied into the layer snapshot as is; returns the image ID.
    """
    import json
    import shutil

    from minicache import digest as digests
    from minicache.images import ImageRecord, LayerRef
    from minicache.layers import LayerInfo

    from kits import imagekit

    tar = imagekit.tar_of_dir(rootfs)
    diff_id = digests.of_bytes(tar)
    if not store.layers.has(diff_id):
        staging = Path(store.layers.new_staging())
        shutil.copytree(rootfs, staging / "fs", symlinks=True, dirs_exist_ok=True)
        store.layers.commit(staging, LayerInfo(diff_id, diff_id, None, len(tar)), durable=False)
    cfg = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }
    cfg["config"].update(config or {})
    image_id = store.blobs.put(json.dumps(cfg, sort_keys=True).encode())
    store.images.put(ImageRecord(id=image_id, layers=(LayerRef(diff_id=diff_id, chain_id=diff_id),)), [name])
    return image_id
