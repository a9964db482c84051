"""A container's root filesystem: the image's layers under the container's own upper directory.

Overlayfs: lowers = the image's layer snapshots (topmost first), upper/work = the container's, mounted at
`containers/<id>/rootfs` so the container directory is an OCI bundle. Nothing is copied.
Without overlayfs (or with MINICONTAINER_STORAGE_DRIVER=copy) the layers are flattened once into rootfs/
(whiteouts and opaque directories applied), with a warning: slower and it uses space, but it works.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
from typing import TYPE_CHECKING

from minicache import overlay
from minicache.rmtree import remove_tree

if TYPE_CHECKING:
    from collections.abc import Iterator

    from minicache.images import ImageRecord
    from minicache.store import Store
    from minirun.engine.containers import Container

DRIVER_ENV = "MINICONTAINER_STORAGE_DRIVER"
OVERLAY, COPY = "overlay", "copy"
_OPAQUE_XATTR = "trusted.overlay.opaque"


def choose_driver() -> str:
    """overlay if the kernel has it (and nobody asked for copy), else copy."""
    wanted = os.environ.get(DRIVER_ENV, "")
    if wanted == COPY:
        return COPY
    if overlay.supported():
        return OVERLAY
    print("minirun: warning: overlayfs is not available; copying the image into the container", file=sys.stderr)
    return COPY


def mount(store: Store, image: ImageRecord, container: Container, driver: str, *, volatile: bool = False) -> str:
    """Make `container.rootfs` the container's root filesystem; returns it.

    `volatile` is for containers removed on exit: their writes never need to reach the disk (no syncs,
    and unmounting takes 50 µs instead of milliseconds).
    """
    layers = [store.layers.fs(chain_id) for chain_id in image.chain_ids]
    if driver == COPY:
        if not os.path.exists(os.path.join(container.dir, ".flattened")):
            flatten(layers, container.rootfs)
            open(os.path.join(container.dir, ".flattened"), "a").close()
        return container.rootfs
    lowers = list(reversed(layers))  # overlayfs wants the topmost first
    if not lowers:
        empty = os.path.join(container.dir, "empty")
        with contextlib.suppress(FileExistsError):
            os.mkdir(empty)
        lowers = [empty]
    overlay.mount(container.rootfs, lowers, container.upper, container.work, volatile=volatile)
    return container.rootfs


def unmount(container: Container) -> None:
    """Unmount the overlay (lazily if something still holds it); nothing to do for a copy or when not mounted."""
    try:
        overlay.unmount(container.rootfs)
    except OSError:
        overlay.unmount(container.rootfs, lazy=True)


# -- the copy fallback --------------------------------------------------------------------------------------------
def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _is_opaque(path: str) -> bool:
    try:
        return os.getxattr(path, _OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def _copy_entry(src: str, dst: str, st: os.stat_result) -> None:
    mode = st.st_mode
    if stat.S_ISLNK(mode):
        os.symlink(os.readlink(src), dst)
    elif stat.S_ISREG(mode):
        import shutil

        shutil.copyfile(src, dst, follow_symlinks=False)
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
        os.mknod(dst, mode, st.st_rdev)
    os.lchown(dst, st.st_uid, st.st_gid)
    if not stat.S_ISLNK(mode):
        os.chmod(dst, stat.S_IMODE(mode))
        os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def _entries(path: str) -> Iterator[os.DirEntry[str]]:
    with os.scandir(path) as it:
        return iter(list(it))  # listed at once: no descriptor stays open per level


def _apply_layer(src: str, dst: str) -> None:
    """Depth first without recursion (a layer may nest deeper than the recursion limit); a folder's owner,
    mode and times are set once everything in it is copied."""
    frames: list[tuple[str, Iterator[os.DirEntry[str]], os.stat_result | None]] = [(dst, _entries(src), None)]
    while frames:
        dst_dir, entries, dir_st = frames[-1]
        entry = next(entries, None)
        if entry is None:
            frames.pop()
            if dir_st is not None:
                os.lchown(dst_dir, dir_st.st_uid, dir_st.st_gid)
                os.chmod(dst_dir, stat.S_IMODE(dir_st.st_mode))
                os.utime(dst_dir, ns=(dir_st.st_atime_ns, dir_st.st_mtime_ns))
            continue
        s, d = entry.path, os.path.join(dst_dir, entry.name)
        st = entry.stat(follow_symlinks=False)
        if _is_whiteout(st):
            remove_tree(d)
            continue
        if stat.S_ISDIR(st.st_mode):
            if os.path.lexists(d) and (not os.path.isdir(d) or os.path.islink(d) or _is_opaque(s)):
                remove_tree(d)
            if not os.path.lexists(d):
                os.mkdir(d)
            frames.append((d, _entries(s), st))
            continue
        remove_tree(d)
        _copy_entry(s, d, st)


def flatten(layers_bottom_first: list[str], dest: str) -> None:
    """Copy the layers into `dest`, bottom first, applying overlay whiteouts and opaque directories."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(dest)
    for layer in layers_bottom_first:
        _apply_layer(str(layer), str(dest))
        st = os.stat(layer)
        os.chmod(dest, stat.S_IMODE(st.st_mode))
