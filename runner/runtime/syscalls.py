"""Thin ctypes wrappers for the Linux calls only minirun makes: namespaces, pivot_root, prctl, capabilities,
seccomp, close_range and the process's title and environment block.

The runtime sets a container up with them; `minirun.network` uses the namespace calls to make and enter a
container's network namespace. The calls the store makes too (mount, umount, syncfs, openat2) are in
`minicache.syscalls`. Every wrapper raises OSError with errno and what was involved; nothing else is hidden.
"""

from __future__ import annotations

import ctypes
import os

from minicache.syscalls import check as _check
from minicache.syscalls import encode as _b
from minicache.syscalls import libc as _libc

# -- namespaces ------------------------------------------------------------------------------------------------
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

_SYS_PIVOT_ROOT = 155  # x86_64
_SYS_SECCOMP = 317  # x86_64


def unshare(flags: int) -> None:
    _check(_libc.unshare(ctypes.c_int(flags)), f"unshare({flags:#x})")


def setns(fd: int, nstype: int = 0) -> None:
    _check(_libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)), f"setns(fd {fd}, {nstype:#x})")


def pivot_root(new_root: str | os.PathLike[str], put_old: str | os.PathLike[str]) -> None:
    _check(_libc.syscall(ctypes.c_long(_SYS_PIVOT_ROOT), _b(new_root), _b(put_old)), new_root)


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(_libc.sethostname(raw, ctypes.c_size_t(len(raw))), "sethostname")


def setdomainname(name: str) -> None:
    raw = name.encode()
    _check(_libc.setdomainname(raw, ctypes.c_size_t(len(raw))), "setdomainname")


# -- prctl, capabilities, seccomp -------------------------------------------------------------------------------
PR_SET_PDEATHSIG = 1
PR_GET_DUMPABLE = 3
PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_SET_SECCOMP = 22
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_SET_CHILD_SUBREAPER = 36
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4
SECCOMP_MODE_FILTER = 2


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    args = (ctypes.c_ulong(a) for a in (arg2, arg3, arg4, arg5))
    return _check(_libc.prctl(ctypes.c_int(option), *args), f"prctl({option})")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


_CAP_V3 = 0x20080522


def capget(pid: int = 0) -> tuple[int, int, int]:
    """(effective, permitted, inheritable) of `pid` (0: the caller) as 64-bit masks."""
    header = _CapHeader(_CAP_V3, pid)
    data = (_CapData * 2)()
    _check(_libc.capget(ctypes.byref(header), data), "capget")
    eff, prm, inh = (
        getattr(data[0], f) | (getattr(data[1], f) << 32) for f in ("effective", "permitted", "inheritable")
    )
    return eff, prm, inh


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """Set the caller's effective, permitted and inheritable sets (64-bit masks)."""
    header = _CapHeader(_CAP_V3, 0)
    data = (_CapData * 2)()
    for i in (0, 1):
        shift = 32 * i
        data[i].effective = (effective >> shift) & 0xFFFFFFFF
        data[i].permitted = (permitted >> shift) & 0xFFFFFFFF
        data[i].inheritable = (inheritable >> shift) & 0xFFFFFFFF
    _check(_libc.capset(ctypes.byref(header), data), "capset")


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]


def seccomp_load_bpf(program: bytes) -> None:
    """Install a classic-BPF seccomp filter (an array of 8-byte `struct sock_filter`).

    Needs no_new_privs or CAP_SYS_ADMIN, as seccomp(2) says.
    """
    if not program or len(program) % 8:
        raise ValueError("a seccomp program is a non-empty array of 8-byte instructions")
    prog = _SockFprog(len(program) // 8, program)
    _check(
        _libc.syscall(ctypes.c_long(_SYS_SECCOMP), ctypes.c_uint(1), ctypes.c_uint(0), ctypes.byref(prog)),
        "seccomp(SECCOMP_SET_MODE_FILTER)",
    )


# -- file descriptors ---------------------------------------------------------------------------------------------
CLOSE_RANGE_CLOEXEC = 4


def close_range(first: int, last: int = 0xFFFFFFFF, flags: int = 0) -> None:
    _check(_libc.close_range(ctypes.c_uint(first), ctypes.c_uint(last), ctypes.c_int(flags)), "close_range")


PR_SET_NAME = 15


def set_process_title(title: str) -> None:
    """Rewrite this process's command line (/proc/self/cmdline) and name, as setproctitle does.

    The bytes live in the process's own argument area (arg_start..arg_end in /proc/self/stat); the new
    title is cut to fit. Python's sys.argv is a separate copy and does not change.
    """
    with open("/proc/self/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    arg_start, arg_end = int(fields[45]), int(fields[46])  # fields 48 and 49 of proc(5)
    raw = title.encode()[: max(arg_end - arg_start - 1, 0)]
    ctypes.memset(arg_start, 0, arg_end - arg_start)
    ctypes.memmove(arg_start, raw, len(raw))
    name = ctypes.create_string_buffer(title.encode()[:15])
    _check(_libc.prctl(ctypes.c_int(PR_SET_NAME), ctypes.c_char_p(name.value)), "prctl(PR_SET_NAME)")


def clear_environment_block() -> None:
    """Zero this process's initial environment block, the bytes /proc/PID/environ shows.

    setenv and Python's os.environ never touch that block (env_start..env_end in /proc/self/stat), so a
    forked process shows its creator's environment there until it execs. libc's `environ` keeps pointing
    into it: every entry reads as an empty string afterwards.
    """
    with open("/proc/self/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    start, end = int(fields[47]), int(fields[48])  # fields 50 and 51 of proc(5)
    if end > start:
        ctypes.memset(start, 0, end - start)
