"""Compile an OCI `linux.seccomp` section to classic BPF with libseccomp, cache it, load it.

Compiling with libseccomp costs tens of milliseconds (and loading the library spawns ldconfig), so the
parent compiles once per (section, libseccomp, architecture) and keeps the exported BPF in a cache
directory; later runs read the bytes and the child installs them with seccomp(2) directly.

A cache entry starts with exactly what it was compiled from and is used only when that matches: its file
name is a CRC-32 to find it by, not a proof of its content, so no cryptographic hash (and no hashlib, whose
OpenSSL import every `minirun run` would pay) is needed.
"""

from __future__ import annotations

import json
import os
import stat
import zlib
from typing import Any

from minicache.atomic import atomic_write
from minicache.errors import InvalidSpec
from minirun.runtime import syscalls

FORMAT_VERSION = "3"  # bump when the compilation below, or the cache entry's layout, changes meaning
OPERATORS = (
    "SCMP_CMP_NE",
    "SCMP_CMP_LT",
    "SCMP_CMP_LE",
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_MASKED_EQ",
)
_EPERM = 1


def _identity(section: dict[str, Any]) -> bytes:
    """What a program is compiled from: the cache format, the machine and the section, canonically."""
    blob = json.dumps(section, sort_keys=True, separators=(",", ":"))
    return f"{FORMAT_VERSION}\0{os.uname().machine}\0{blob}\0".encode()


def cache_key(section: dict[str, Any]) -> str:
    """The cache entry's name for `section` (entries of other sections may share it: see `program`)."""
    return _entry_name(_identity(section))


def _entry_name(identity: bytes) -> str:
    return f"{zlib.crc32(identity):08x}"


def program(section: dict[str, Any], cache_dir: str | None = None) -> bytes:
    """The BPF program for `section`, from `cache_dir` (a private folder the store or the runtime's state root
    made) when it was compiled before.

    The entry is the identity (`_identity`) followed by the program; one that holds another identity (a
    CRC-32 collision, a torn or edited file) or that another user could have written is compiled over.
    """
    identity = _identity(section)
    path = os.path.join(cache_dir, f"{_entry_name(identity)}.bpf") if cache_dir is not None else None
    if path is not None:
        entry = _read_entry(path)
        if entry is not None and entry.startswith(identity):
            return entry[len(identity) :]
    bpf = compile_section(section)
    if path is not None:
        # a torn entry is impossible (rename); a lost one is compiled again
        atomic_write(path, identity + bpf, durable=False)
    return bpf


def _read_entry(path: str) -> bytes | None:
    """The entry's bytes if this user wrote it: a regular file (not a symlink) of ours that no one else may
    write. Anything else is compiled over (the rename replaces it)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
            return None
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


def _action(seccomp: Any, name: str, errno_ret: int | None, default_errno: int) -> int:
    if name == "SCMP_ACT_ALLOW":
        return seccomp.ALLOW
    if name == "SCMP_ACT_ERRNO":
        return seccomp.ERRNO(errno_ret if errno_ret is not None else default_errno)
    if name in ("SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD"):
        return seccomp.KILL_THREAD
    if name == "SCMP_ACT_KILL_PROCESS":
        return seccomp.KILL_PROCESS
    if name == "SCMP_ACT_TRAP":
        return seccomp.TRAP
    if name == "SCMP_ACT_LOG":
        return seccomp.LOG
    if name == "SCMP_ACT_TRACE":
        return seccomp.TRACE(errno_ret if errno_ret is not None else default_errno)
    raise InvalidSpec(f"seccomp action {name!r} is not supported")


def _arch(seccomp: Any, name: str) -> int:
    value = getattr(seccomp.Arch, name.removeprefix("SCMP_ARCH_"), None)
    if value is None:
        raise InvalidSpec(f"unknown seccomp architecture {name!r}")
    return value


def _args(seccomp: Any, raw: list[dict[str, Any]]) -> list[Any]:
    out = []
    for arg in raw:
        op = arg.get("op")
        if op not in OPERATORS:
            raise InvalidSpec(f"unknown seccomp comparison {op!r}")
        out.append(
            seccomp.Arg(
                int(arg["index"]), OPERATORS.index(op) + 1, int(arg.get("value", 0)), int(arg.get("valueTwo", 0))
            )
        )
    return out


def compile_section(section: dict[str, Any]) -> bytes:
    """Compile with libseccomp (pyseccomp). Syscall names libseccomp does not know are skipped, as runc does."""
    import pyseccomp as seccomp

    default_errno = int(section.get("defaultErrnoRet", _EPERM))
    default = _action(seccomp, section.get("defaultAction", ""), section.get("defaultErrnoRet"), default_errno)
    flt = seccomp.SyscallFilter(default)
    # A binary tree of syscall numbers instead of a linear list: half the load time (the kernel runs the
    # filter for every syscall number to build its action cache) and fewer instructions per syscall.
    flt.set_attr(seccomp.Attr.CTL_OPTIMIZE, 2)
    native = seccomp.system_arch()
    for name in section.get("architectures") or ():
        arch = _arch(seccomp, name)
        if arch != native and not flt.exist_arch(arch):
            flt.add_arch(arch)
    for rule in section.get("syscalls") or ():
        action = _action(seccomp, rule.get("action", ""), rule.get("errnoRet"), default_errno)
        if action == default:
            continue  # libseccomp refuses rules that repeat the default action
        args = _args(seccomp, rule.get("args") or [])
        # Several conditions on the same argument mean "any of them" (runc's rule); otherwise "all of them".
        same_index = len(args) > 1 and len({a["index"] for a in rule["args"]}) == 1
        for name in rule.get("names") or ():
            number = seccomp.resolve_syscall(seccomp.Arch.NATIVE, name)
            if number == -1:  # __NR_SCMP_ERROR: unknown to this libseccomp
                continue
            if same_index:
                for arg in args:
                    flt.add_rule(action, number, arg)
            else:
                flt.add_rule(action, number, *args)
    fd = os.memfd_create("seccomp-bpf", os.MFD_CLOEXEC)
    try:
        with os.fdopen(fd, "w+b", closefd=False) as f:
            flt.export_bpf(f)
        os.lseek(fd, 0, os.SEEK_SET)
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)


def load(bpf: bytes) -> None:
    """Install the filter in the calling process (the container's init, just before execve)."""
    syscalls.seccomp_load_bpf(bpf)
