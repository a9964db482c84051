"""Thin ctypes wrappers for the Linux system calls Python's os module lacks (mount, umount2, ...).

Every wrapper raises OSError with errno and the path involved; nothing else is hidden.
Runtime-specific calls (unshare, setns, pivot_root, capset, prctl, ...) belong here too, so there is
one place for them.
"""

from __future__ import annotations

import ctypes
import os

_libc = ctypes.CDLL(None, use_errno=True)

# mount(2) flags
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_STRICTATIME = 1 << 24
MS_RELATIME = 1 << 21
# umount2(2) flags
MNT_FORCE = 0x1
MNT_DETACH = 0x2
UMOUNT_NOFOLLOW = 0x8


def _check(result: int, *context: object) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), *[str(c) for c in context[:1]])
    return result


def _b(value: str | os.PathLike[str] | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


def mount(
    source: str | None, target: str | os.PathLike[str], fstype: str | None, flags: int = 0, data: str | None = None
) -> None:
    _check(_libc.mount(_b(source), _b(target), _b(fstype), ctypes.c_ulong(flags), _b(data)), target)


def umount(target: str | os.PathLike[str], flags: int = 0) -> None:
    _check(_libc.umount2(_b(target), ctypes.c_int(flags)), target)


def syncfs(fd: int) -> None:
    """Flush the filesystem holding `fd` (os.syncfs only exists from Python 3.12)."""
    _check(_libc.syncfs(ctypes.c_int(fd)), f"fd {fd}")
