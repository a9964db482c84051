"""Image management as Docker does it: list, inspect, tag, remove (rmi), prune, export, mount and umount."""

from __future__ import annotations

import os
import tarfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from minicache import digest as digests
from minicache import gc, overlay, reference, usage
from minicache.errors import Conflict, InvalidReference, NotFound
from minicache.imageinfo import created as _created
from minicache.imageinfo import image_size
from minicache.imageinfo import inspect as inspect  # `minibuild inspect` reads it here
from minicache.record import Record
from minishow import human_duration, human_size, table

if TYPE_CHECKING:
    from minicache.store import Store

NONE = "<none>"


# -- listing ------------------------------------------------------------------------------------------------------
class ImageRow(Record, frozen=True):
    repository: str
    tag: str
    id: str
    created: str | None
    size: int


def list_images(store: Store) -> list[ImageRow]:
    """One row per tag (an untagged image gets one `<none>` row), newest first, as `docker images`."""
    by_image: dict[str, list[str]] = {}
    for name, image_id in store.images.refs().items():
        by_image.setdefault(image_id, []).append(name)
    rows = []
    for record in store.images.all():
        created, size = _created(store, record), image_size(store, record)
        tagged = []
        for name in sorted(by_image.get(record.id, [])):
            ref = reference.parse(name, default_tag=False)
            familiar = ref.familiar.split("@")[0]
            if ref.tag:
                familiar = familiar.rsplit(":", 1)[0]
                tagged.append(ImageRow(familiar, ref.tag, record.id, created, size))
            elif not any(r.repository == familiar for r in tagged):
                tagged.append(ImageRow(familiar, NONE, record.id, created, size))
        rows.extend(tagged or [ImageRow(NONE, NONE, record.id, created, size)])
    rows.sort(key=lambda r: (r.created or "", r.repository, r.tag), reverse=True)
    return rows


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    text = text.strip().replace("Z", "+00:00")
    if "." in text:  # RFC 3339 nanoseconds: Python takes at most microseconds
        head, _, rest = text.partition(".")
        digits = "".join(c for c in rest if c.isdigit())
        text = f"{head}.{digits[:6]}{rest[len(digits) :]}"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def human_since(text: str | None, now: datetime | None = None) -> str:
    """`2 hours ago`, like docker's CREATED column."""
    when = _parse_time(text)
    if when is None:
        return "N/A"
    return human_duration(((now or datetime.now(UTC)) - when).total_seconds()) + " ago"


def images_table(rows: list[ImageRow]) -> str:
    header = ("REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE")
    return table(
        header,
        [(r.repository, r.tag, digests.hex_of(r.id)[:12], human_since(r.created), human_size(r.size, 3)) for r in rows],
    )


def images_json(rows: list[ImageRow]) -> list[dict[str, Any]]:
    """`docker images --format json` objects (one per line when printed)."""
    return [
        {
            "Repository": r.repository,
            "Tag": r.tag,
            "ID": digests.hex_of(r.id)[:12],
            "Digest": NONE,
            "CreatedAt": r.created or "",
            "CreatedSince": human_since(r.created),
            "Size": human_size(r.size, 3),
            "VirtualSize": human_size(r.size, 3),
        }
        for r in rows
    ]


# -- tag, rm, prune -----------------------------------------------------------------------------------------------
def tag(store: Store, source: str, target: str) -> None:
    ref = reference.parse(target)
    if ref.digest:
        raise InvalidReference(f"cannot tag with a digest: {target!r}", hint="give NAME[:TAG]")
    store.images.tag(source, target)


def _is_reference(store: Store, text: str) -> bool:
    try:
        return store.images.normalize(text) in store.images.refs()
    except InvalidReference:
        return False


def remove(store: Store, names: list[str], *, force: bool = False) -> list[str]:
    """`docker rmi`: untag a reference, delete an image left without one; returns the lines docker prints.

    An image used by a container or mounted is never deleted: removing its last tag needs `force`, which
    then only untags it. An ID of an image with several tags needs `force` too (it then untags them all).
    """
    out: list[str] = []
    for name in names:
        record = store.images.resolve(name)
        users = usage.containers_by_image(store).get(record.id, [])
        mounted = record.id in usage.mounted_images(store)
        tags = store.images.names_of(record.id)
        by_ref = _is_reference(store, name)
        to_untag = [store.images.normalize(name)] if by_ref else tags
        if not by_ref and len(tags) > 1 and not force:
            raise Conflict(
                f"unable to delete {record.short_id} (must be forced) - image is referenced in multiple repositories",
                hint="remove the tags one by one, or use -f",
            )
        last = set(to_untag) >= set(tags)
        if last and (users or mounted) and not force:
            why = f"container {users[0][:12]} is using it" if users else "it is mounted (minibuild umount)"
            raise Conflict(f"unable to remove image {name!r} (must force) - {why}", hint="use -f to untag it anyway")
        for ref in to_untag:
            store.images.untag(ref)
            out.append(f"Untagged: {reference.parse(ref, default_tag=False).familiar}")
        if last and not users and not mounted:
            store.images.forget(record.id)
            out.append(f"Deleted: {record.id}")
    return out


def prune(store: Store) -> gc.Report:
    return gc.collect(store)


# -- mount, umount ------------------------------------------------------------------------------------------------
def mount(store: Store, name: str) -> Path:
    """A read-only view of the image's root filesystem (an overlay of its layers); returns its path."""
    record = store.images.resolve(name)
    target = Path(usage.mount_point(store, record.id))
    target.mkdir(mode=0o700, exist_ok=True)
    if not overlay.is_mounted(target):
        lowers = [store.layers.fs(c) for c in reversed(record.chain_ids)]
        if not lowers:
            raise NotFound(f"image {name!r} has no layers to mount")
        try:
            overlay.mount(target, lowers)
        except BaseException:
            target.rmdir()
            raise
    return target


def umount(store: Store, name: str) -> Path:
    record = store.images.resolve(name)
    target = Path(usage.mount_point(store, record.id))
    if not target.exists():
        raise NotFound(f"image {name!r} is not mounted", hint="see `minibuild mount IMAGE`")
    overlay.unmount(target)
    target.rmdir()
    return target


# -- export -------------------------------------------------------------------------------------------------------
_XATTR_SKIP = ("trusted.overlay.", "system.")


def export(store: Store, name: str, out: BinaryIO) -> None:
    """Write the image's flattened root filesystem as a tar (whiteouts applied), the inverse of from-tar.

    The layers are mounted as an overlay at a private point and walked there, so the kernel applies the
    whiteouts and opaque directories exactly as a container sees them.
    """
    record = store.images.resolve(name)
    lowers = [store.layers.fs(c) for c in reversed(record.chain_ids)]
    point = Path(store.staging_dir("export"))
    overlay.mount(point, lowers)
    try:
        _write_tree(point, out)
    finally:
        overlay.unmount(point, lazy=True)
        store.discard(point)


def _write_tree(root: Path, out: BinaryIO) -> None:
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT, bufsize=1 << 20) as tar:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            rel_dir = os.path.relpath(dirpath, root)
            for entry in sorted(dirnames) + sorted(filenames):
                path = os.path.join(dirpath, entry)
                arcname = entry if rel_dir == "." else f"{rel_dir}/{entry}"
                info = tar.gettarinfo(path, arcname)
                info.uname = info.gname = ""
                try:
                    keys = os.listxattr(path, follow_symlinks=False)
                except OSError:
                    keys = []
                for key in keys:
                    if not key.startswith(_XATTR_SKIP):
                        value = os.getxattr(path, key, follow_symlinks=False)
                        info.pax_headers[f"SCHILY.xattr.{key}"] = value.decode("utf-8", "surrogateescape")
                if info.isreg():
                    with open(path, "rb") as f:
                        tar.addfile(info, f)
                else:
                    tar.addfile(info)
