"""Thin ctypes wrappers for the Linux calls Python's os module lacks and the store needs: mount and umount
(overlay views of layers, `minibuild mount`, staging debris), syncfs (a layer published durably) and openat2
(a path resolved inside a root filesystem).

Both CLIs mount through these; the calls only minirun makes (namespaces, pivot_root, capabilities, seccomp)
are in `minirun.runtime.syscalls`, built on `check` and `libc` here. Every wrapper raises OSError with errno
and the path involved; nothing else is hidden.
"""

from __future__ import annotations

import ctypes
import os

libc = ctypes.CDLL(None, use_errno=True)

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


def check(result: int, *context: object) -> int:
    """`result` of a libc call, or OSError from errno when it is negative (the first `context` names the path)."""
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), *[str(c) for c in context[:1]])
    return result


def encode(value: str | os.PathLike[str] | None) -> bytes | None:
    """A path or string as the bytes a libc call takes (None stays NULL)."""
    return None if value is None else os.fsencode(value)


def mount(
    source: str | None, target: str | os.PathLike[str], fstype: str | None, flags: int = 0, data: str | None = None
) -> None:
    check(libc.mount(encode(source), encode(target), encode(fstype), ctypes.c_ulong(flags), encode(data)), target)


def umount(target: str | os.PathLike[str], flags: int = 0) -> None:
    check(libc.umount2(encode(target), ctypes.c_int(flags)), target)


def syncfs(fd: int) -> None:
    """Flush the filesystem holding `fd` (os.syncfs only exists from Python 3.12)."""
    check(libc.syncfs(ctypes.c_int(fd)), f"fd {fd}")


# -- openat2 ------------------------------------------------------------------------------------------------------
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10
_SYS_OPENAT2 = 437


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def openat2(dir_fd: int, path: str | os.PathLike[str], flags: int, resolve: int, mode: int = 0) -> int:
    """openat2(2): `path` opened relative to `dir_fd` under the RESOLVE_* restrictions (ENOSYS before Linux 5.6)."""
    how = _OpenHow(flags, mode, resolve)
    return check(
        libc.syscall(
            ctypes.c_long(_SYS_OPENAT2),
            ctypes.c_int(dir_fd),
            encode(path),
            ctypes.byref(how),
            ctypes.c_size_t(ctypes.sizeof(how)),
        ),
        path,
    )


