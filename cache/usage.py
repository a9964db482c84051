"""What keeps an image in use: containers created from it and read-only mounts of it.

containers/<id>/container.json   names its image ID under "Image" (written by minirun)
run_root/mounts/<id-hex>/        the mount point of `minibuild mount IMAGE`, present while it is mounted
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

from minicache import digest as digests

if TYPE_CHECKING:
    from minicache.store import Store

def containers_by_image(store: Store) -> dict[str, list[str]]:
    """image ID -> IDs of the containers made from it (any state)."""
    out: dict[str, list[str]] = {}
    try:
        names = os.listdir(store.containers_dir)
    except FileNotFoundError:
        return out
    for name in names:
        try:
            with open(os.path.join(store.containers_dir, name, "container.json"), "rb") as f:
                image = json.load(f).get("Image")
        except (FileNotFoundError, NotADirectoryError, ValueError, AttributeError):
            continue
        if isinstance(image, str):
            out.setdefault(image, []).append(name)
    return out


def mount_point(store: Store, image_id: str) -> str:
    """Where `minibuild mount` shows the image's root filesystem."""
    return os.path.join(store.mounts_dir, digests.hex_of(image_id))


def mounted_images(store: Store) -> set[str]:
    """IDs of the images with a mount point (mounted, or left behind by a crash: kept until umount)."""
    try:
        return {f"sha256:{n}" for n in os.listdir(store.mounts_dir) if len(n) == 64}
    except FileNotFoundError:
        return set()
