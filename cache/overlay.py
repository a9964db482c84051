"""Overlay mounts of layer snapshots: the read-only view of an image, or a container's writable root.

Lower directories are passed as /proc/self/fd/N magic links of O_PATH descriptors, so the mount option
string stays short however long the store's path is (the kernel limits it to one page).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from minicache import syscalls

StrPath = str | os.PathLike[str]


def supported() -> bool:
    """True if the kernel knows overlayfs."""
    try:
        with open("/proc/filesystems") as f:
            return any(line.split()[-1] == "overlay" for line in f if line.strip())
    except OSError:
        return False


def mount(
    target: StrPath,
    lowers: Sequence[StrPath],
    upper: StrPath | None = None,
    work: StrPath | None = None,
    *,
    volatile: bool = False,
    options: str = "",
) -> None:
    """Mount `lowers` (topmost first, as overlayfs wants) at `target`, with `upper`/`work` if writable.

    Without `upper` it is a read-only view (`minibuild mount`, export): also nosuid and nodev, so that a
    setuid binary or a device node an image carries is never honoured through it. A single lower directory
    without an upper one becomes a read-only bind mount (overlayfs needs two).
    `volatile` (Linux >= 5.10) skips every sync of the upper directory, unmount included: for throwaway
    containers; after a crash the kernel refuses to reuse such an upper/work pair. `options` are added as
    they are (a build step asks for `redirect_dir=off,metacopy=off`, so its upper directory is a plain diff).
    """
    if not lowers:
        raise ValueError("an overlay needs at least one lower directory")
    view = syscalls.MS_RDONLY | syscalls.MS_NOSUID | syscalls.MS_NODEV
    if upper is None and len(lowers) == 1:
        syscalls.mount(str(lowers[0]), target, None, syscalls.MS_BIND)
        try:
            syscalls.mount(None, target, None, syscalls.MS_BIND | syscalls.MS_REMOUNT | view)
        except BaseException:
            syscalls.umount(target, syscalls.MNT_DETACH)
            raise
        return
    fds = [os.open(p, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC) for p in lowers]
    try:
        data = "lowerdir=" + ":".join(f"/proc/self/fd/{fd}" for fd in fds)
        if upper is not None:
            if work is None:
                raise ValueError("a writable overlay needs a work directory")
            data += f",upperdir={upper},workdir={work}" + (",volatile" if volatile else "")
        data += f",{options}" if options else ""
        syscalls.mount("overlay", target, "overlay", 0 if upper is not None else view, data)
    finally:
        for fd in fds:
            os.close(fd)


def unmount(target: StrPath, *, lazy: bool = False) -> None:
    """Unmount `target`; with `lazy`, detach it even while busy. Not mounted (or gone) is not an error.

    Gone: another command removed the container (`rm -f`) while its own CLI was cleaning up.
    """
    try:
        syscalls.umount(target, syscalls.MNT_DETACH if lazy else 0)
    except OSError as e:
        if e.errno not in (22, 2):  # EINVAL: not a mount point; ENOENT: the path is gone
            raise


def is_mounted(target: StrPath) -> bool:
    target_s = os.fsencode(os.path.realpath(target))
    with open("/proc/self/mountinfo", "rb") as f:
        return any(line.split()[4] == target_s for line in f)
