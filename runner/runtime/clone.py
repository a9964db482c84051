"""fork() straight into a cgroup: clone3(CLONE_INTO_CGROUP), for the container's init on cgroup v2.

A child made this way is born inside its cgroup, so it does not move itself in afterwards. That move takes
the kernel's lock over every thread group of the system, whose writer waits for an RCU grace period: a
wait between the fork and the exec of every container. Only a cgroup v2 directory can be named; where
the kernel has no clone3 (before Linux 5.3), no CLONE_INTO_CGROUP (before 5.7), refuses the directory
(a v1 hierarchy) or a seccomp filter hides the call, `fork_into` answers None and the caller forks and
joins as before.

Python's os.fork() brackets fork(2) with PyOS_BeforeFork and PyOS_AfterFork_Child/_Parent; the C API
documents them for processes that clone themselves by other means, and they bracket clone3 here, so the
interpreter is left as os.fork() would leave it. As for any fork, the caller must have no other thread.
"""

from __future__ import annotations

import ctypes
import signal

_SYS_CLONE3 = 435  # x86_64, arm64 and every architecture of the unified system call table
CLONE_INTO_CGROUP = 0x200000000


class _CloneArgs(ctypes.Structure):
    """struct clone_args up to `cgroup` (CLONE_ARGS_SIZE_VER2)."""

    _fields_ = [
        (name, ctypes.c_uint64)
        for name in (
            "flags",
            "pidfd",
            "child_tid",
            "parent_tid",
            "exit_signal",
            "stack",
            "stack_size",
            "tls",
            "set_tid",
            "set_tid_size",
            "cgroup",
        )
    ]


# PyDLL: the call keeps the GIL, as os.fork() keeps it across fork(2).
_syscall = ctypes.PyDLL(None).syscall
_syscall.restype = ctypes.c_long
_api = ctypes.pythonapi
for _name in ("PyOS_BeforeFork", "PyOS_AfterFork_Child", "PyOS_AfterFork_Parent"):
    getattr(_api, _name).restype = None


def fork_into(cgroup_fd: int, flags: int = 0) -> int | None:
    """fork(), the child created in the cgroup v2 directory open at `cgroup_fd`: 0 in the child, its PID in
    the parent, or None (nothing forked) where the kernel cannot do it.

    `flags` adds clone flags: CLONE_NEWPID makes the child PID 1 of a new PID namespace. Give it here
    rather than unsharing first: a refused first fork would leave an unshared PID namespace unusable.
    """
    args = _CloneArgs(flags=CLONE_INTO_CGROUP | flags, exit_signal=signal.SIGCHLD, cgroup=cgroup_fd)
    _api.PyOS_BeforeFork()
    try:
        pid = _syscall(ctypes.c_long(_SYS_CLONE3), ctypes.byref(args), ctypes.c_size_t(ctypes.sizeof(args)))
    except BaseException:  # nothing was forked: the parent's state is released as after a fork
        _api.PyOS_AfterFork_Parent()
        raise
    if pid == 0:
        _api.PyOS_AfterFork_Child()
        return 0
    _api.PyOS_AfterFork_Parent()
    return pid if pid > 0 else None
