"""Writing into a build step's root filesystem by descriptor, so no symlink in the image can lead outside it.

A recipe's base image is untrusted: `/app -> /etc` or `../../..` links in it must not make `COPY` or
`WORKDIR` write on the host. Destination paths are opened with `openat2(RESOLVE_IN_ROOT)` (symlinks are
followed as the container would see them, `..` stops at its root); on kernels without openat2 the same
rule is applied one component at a time with O_NOFOLLOW. New entries are made relative to a directory
descriptor with O_NOFOLLOW/O_EXCL, and an existing non-directory in the way is unlinked, never followed.

Sources (the build context, or another stage's root) are resolved the same way within their own root.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import stat
from collections.abc import Callable

from minicache.record import Record

_libc = ctypes.CDLL(None, use_errno=True)
_SYS_OPENAT2 = 437  # x86_64, aarch64 and every other architecture with the generic table
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_IN_ROOT = 0x10
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_MAX_LINKS = 40
_have_openat2: bool | None = None


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def _openat2(root_fd: int, path: str, flags: int, mode: int) -> int:
    how = _OpenHow(flags | os.O_CLOEXEC, mode, _RESOLVE_IN_ROOT | _RESOLVE_NO_MAGICLINKS)
    fd = _libc.syscall(_SYS_OPENAT2, root_fd, os.fsencode(path), ctypes.byref(how), ctypes.sizeof(how))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    return fd


def _walk_open(root_fd: int, path: str, flags: int) -> int:
    """openat2's RESOLVE_IN_ROOT by hand: components with O_NOFOLLOW, symlinks re-read inside the root."""
    stack = [os.dup(root_fd)]
    parts = [p for p in path.split("/") if p not in ("", ".")]
    links = 0
    try:
        while parts:
            part = parts.pop(0)
            if part == "..":
                if len(stack) > 1:
                    os.close(stack.pop())
                continue
            last = not parts
            try:
                st = os.lstat(part, dir_fd=stack[-1])
            except FileNotFoundError:
                if last and flags & os.O_CREAT:
                    fd = os.open(part, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=stack[-1])
                    stack.append(fd)
                    break
                raise
            if stat.S_ISLNK(st.st_mode):
                links += 1
                if links > _MAX_LINKS:
                    raise OSError(errno.ELOOP, "too many levels of symbolic links", path)
                target = os.readlink(part, dir_fd=stack[-1])
                if target.startswith("/"):
                    for fd in stack[1:]:
                        os.close(fd)
                    del stack[1:]
                parts[:0] = [p for p in target.split("/") if p not in ("", ".")]
                continue
            if last:
                stack.append(os.open(part, flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=stack[-1]))
            else:
                stack.append(os.open(part, _DIR | os.O_NOFOLLOW, dir_fd=stack[-1]))
        if len(stack) == 1:
            return os.dup(root_fd) if flags & os.O_DIRECTORY or not flags & (os.O_WRONLY | os.O_RDWR) else -1
        return stack.pop()
    finally:
        for fd in stack:
            os.close(fd)


def open_in_root(root_fd: int, path: str, flags: int = _DIR, mode: int = 0) -> int:
    """Open `path` as a process chrooted at `root_fd` would; returns a new descriptor."""
    global _have_openat2
    if _have_openat2 is not False:
        try:
            return _openat2(root_fd, path, flags, mode)
        except OSError as e:
            if e.errno != errno.ENOSYS:
                raise
            _have_openat2 = False
    return _walk_open(root_fd, path, flags)


def exists_in_root(root_fd: int, path: str) -> bool:
    try:
        fd = open_in_root(root_fd, path, os.O_PATH)
    except OSError:
        return False
    os.close(fd)
    return True


def makedirs(root_fd: int, path: str, uid: int = 0, gid: int = 0, mode: int = 0o755, _hops: int = 0) -> int:
    """`mkdir -p` inside the root; returns a descriptor of the (resolved) directory. New ones get uid:gid.

    Each prefix is resolved from the root again, so a symlink met on the way is followed inside the root;
    a dangling one is followed too, its target made inside the root (as Docker does).
    """
    parts = [p for p in path.split("/") if p not in ("", ".")]
    fd = os.dup(root_fd)
    for i, part in enumerate(parts):
        prefix = "/".join(parts[: i + 1])
        try:
            nxt = open_in_root(root_fd, prefix, _DIR)
        except FileNotFoundError:
            try:
                os.mkdir(part, mode, dir_fd=fd)
            except FileExistsError:  # a dangling symlink: make its target, inside the root
                try:
                    target = os.readlink(part, dir_fd=fd)
                except OSError:
                    os.close(fd)
                    raise
                os.close(fd)
                if _hops >= _MAX_LINKS:
                    raise OSError(errno.ELOOP, "too many levels of symbolic links", path) from None
                base = "" if target.startswith("/") else "/".join(parts[:i])
                rest = "/".join(parts[i + 1 :])
                return makedirs(root_fd, f"{base}/{target}/{rest}", uid, gid, mode, _hops + 1)
            nxt = os.open(part, _DIR | os.O_NOFOLLOW, dir_fd=fd)
            os.fchmod(nxt, mode)
            if (uid, gid) != (0, 0):
                os.fchown(nxt, uid, gid)
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
        fd = nxt
    return fd


def secure_join(root: str, unsafe: str) -> str:
    """The host path of `unsafe` inside `root` (for reading sources): symlinks and `..` stay within `root`.

    Every component is resolved, the last one too: COPY follows a source that is itself a link.
    """
    resolved = ""
    parts = [p for p in unsafe.split("/") if p not in ("", ".")]
    links = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            resolved = resolved.rsplit("/", 1)[0]
            continue
        candidate = f"{resolved}/{part}"
        try:
            st = os.lstat(root + candidate)
        except (FileNotFoundError, NotADirectoryError):
            resolved = candidate
            continue
        if not stat.S_ISLNK(st.st_mode):
            resolved = candidate
            continue
        links += 1
        if links > _MAX_LINKS:
            raise OSError(errno.ELOOP, "too many levels of symbolic links", unsafe)
        target = os.readlink(root + candidate)
        if target.startswith("/"):
            resolved = ""
        parts[:0] = [p for p in target.split("/") if p not in ("", ".")]
    return root.rstrip("/") + (resolved or "/")


# -- copying ---------------------------------------------------------------------------------------------------------
class CopyOptions(Record):
    uid: int = 0
    gid: int = 0
    chmod: int | None = None
    skip: Callable[[str], bool] | None = None  # relative source path -> leave it out (.dockerignore)
    skip_whiteouts: bool = False  # a tree unpacked by the layer unpacker: its 0:0 devices are deletions
    keep_owner: bool = False  # the source's owners (an archive ADD extracts), not uid/gid

    def owner(self, st: os.stat_result) -> tuple[int, int]:
        return (st.st_uid, st.st_gid) if self.keep_owner else (self.uid, self.gid)


def _replace_slot(dfd: int, name: str, want_dir: bool) -> bool:
    """Make room for `name` in `dfd`; True if a directory is already there and may be reused."""
    try:
        st = os.lstat(name, dir_fd=dfd)
    except FileNotFoundError:
        return False
    if stat.S_ISDIR(st.st_mode):
        if want_dir:
            return True
        _remove_tree_at(dfd, name)
        return False
    os.unlink(name, dir_fd=dfd)
    return False


def _remove_tree_at(dfd: int, name: str) -> None:
    fd = os.open(name, _DIR | os.O_NOFOLLOW, dir_fd=dfd)
    try:
        for entry in os.listdir(fd):
            st = os.lstat(entry, dir_fd=fd)
            if stat.S_ISDIR(st.st_mode):
                _remove_tree_at(fd, entry)
            else:
                os.unlink(entry, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=dfd)


def _copy_data(sfd: int, out: int, size: int) -> None:
    """copy_file_range within a filesystem (reflinks where it can); plain reads and writes across two."""
    left = size
    try:
        while left > 0:
            n = os.copy_file_range(sfd, out, min(left, 1 << 30))
            if n == 0:
                return
            left -= n
        return
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise
    while chunk := os.read(sfd, 1 << 20):
        os.write(out, chunk)


def copy_file(src: str, st: os.stat_result, dfd: int, name: str, opts: CopyOptions) -> None:
    """Copy one regular file, symlink or special file `src` (a host path) to `name` in directory `dfd`."""
    _replace_slot(dfd, name, False)
    mode = opts.chmod if opts.chmod is not None else stat.S_IMODE(st.st_mode)
    uid, gid = opts.owner(st)
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(src), name, dir_fd=dfd)
        os.chown(name, uid, gid, dir_fd=dfd, follow_symlinks=False)
        os.utime(name, ns=(st.st_mtime_ns, st.st_mtime_ns), dir_fd=dfd, follow_symlinks=False)
        return
    if stat.S_ISREG(st.st_mode):
        sfd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            out = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dfd)
            try:
                _copy_data(sfd, out, os.fstat(sfd).st_size)
                os.fchown(out, uid, gid)
                os.fchmod(out, mode)
                os.utime(out, ns=(st.st_mtime_ns, st.st_mtime_ns))
            finally:
                os.close(out)
        finally:
            os.close(sfd)
        return
    if stat.S_ISFIFO(st.st_mode):
        os.mkfifo(name, mode, dir_fd=dfd)
    elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        os.mknod(name, stat.S_IFMT(st.st_mode) | mode, st.st_rdev, dir_fd=dfd)
    else:
        return  # sockets are not copied, as in Docker
    os.chown(name, uid, gid, dir_fd=dfd, follow_symlinks=False)
    os.chmod(name, mode, dir_fd=dfd, follow_symlinks=False)
    os.utime(name, ns=(st.st_mtime_ns, st.st_mtime_ns), dir_fd=dfd, follow_symlinks=False)


def copy_tree_into(src_dir: str, dfd: int, opts: CopyOptions, rel: str = "") -> None:
    """Copy the contents of host directory `src_dir` into the directory `dfd` (`rel`: its path for `skip`)."""
    with os.scandir(src_dir) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        sub = f"{rel}/{entry.name}" if rel else entry.name
        if opts.skip is not None and opts.skip(sub):
            continue
        st = entry.stat(follow_symlinks=False)
        if opts.skip_whiteouts and stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
            continue
        if stat.S_ISDIR(st.st_mode):
            copy_dir(entry.path, st, dfd, entry.name, opts, sub)
        else:
            copy_file(entry.path, st, dfd, entry.name, opts)


def copy_dir(src: str, st: os.stat_result, dfd: int, name: str, opts: CopyOptions, rel: str = "") -> None:
    """Copy directory `src` as `name` in `dfd` (an existing directory there is merged into)."""
    if not _replace_slot(dfd, name, True):
        os.mkdir(name, 0o700, dir_fd=dfd)
    fd = os.open(name, _DIR | os.O_NOFOLLOW, dir_fd=dfd)
    try:
        copy_tree_into(src, fd, opts, rel)
        os.fchown(fd, *opts.owner(st))
        os.fchmod(fd, opts.chmod if opts.chmod is not None else stat.S_IMODE(st.st_mode))
        os.utime(fd, ns=(st.st_mtime_ns, st.st_mtime_ns))
    finally:
        os.close(fd)


def write_file(dfd: int, name: str, data: bytes, opts: CopyOptions, mode: int = 0o644, mtime_ns: int = 0) -> None:
    _replace_slot(dfd, name, False)
    out = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dfd)
    try:
        os.write(out, data)
        os.fchown(out, opts.uid, opts.gid)
        os.fchmod(out, opts.chmod if opts.chmod is not None else mode)
        if mtime_ns:
            os.utime(out, ns=(mtime_ns, mtime_ns))
    finally:
        os.close(out)


# -- users -----------------------------------------------------------------------------------------------------------
def read_in_root(root_fd: int, path: str, limit: int = 4 << 20) -> str | None:
    """A small text file of the image (passwd, group), read through the root; None if it is missing."""
    try:
        fd = open_in_root(root_fd, path, os.O_RDONLY)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return os.read(fd, limit).decode("utf-8", "replace")
    finally:
        os.close(fd)


class User(Record):
    uid: int
    gid: int
    home: str = "/"
    groups: tuple[int, ...] = ()


def _table(text: str | None) -> list[list[str]]:
    return [line.split(":") for line in (text or "").splitlines() if line and not line.startswith("#")]


def lookup_user(root_fd: int, spec: str) -> User:
    """`USER`/`--chown` values (NAME|UID[:GROUP|GID]) → numeric IDs from the image's passwd and group.

    Raises LookupError naming what is missing.
    """
    name, _, group = spec.partition(":")
    passwd = _table(read_in_root(root_fd, "/etc/passwd"))
    groups = _table(read_in_root(root_fd, "/etc/group"))
    entry = next((p for p in passwd if len(p) >= 4 and (p[0] == name or (name.isdigit() and p[2] == name))), None)
    if name.isdigit():
        uid = int(name)
        gid = int(entry[3]) if entry and entry[3].isdigit() else 0
    elif entry is None or not entry[2].isdigit():
        raise LookupError(f"no user named {name!r} in the image's /etc/passwd")
    else:
        uid, gid = int(entry[2]), int(entry[3]) if entry[3].isdigit() else 0
    home = entry[5] if entry and len(entry) > 5 and entry[5] else "/"
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            g = next((g for g in groups if len(g) >= 3 and g[0] == group and g[2].isdigit()), None)
            if g is None:
                raise LookupError(f"no group named {group!r} in the image's /etc/group")
            gid = int(g[2])
    user_name = entry[0] if entry else None
    extra = tuple(
        sorted(
            {
                int(g[2])
                for g in groups
                if len(g) >= 4 and g[2].isdigit() and user_name and user_name in g[3].split(",") and int(g[2]) != gid
            }
        )
    )
    return User(uid, gid, home, extra)


def chown_ids(root_fd: int, spec: str | None) -> tuple[int, int]:
    """`--chown` as numbers: like USER, but a bare name's group is its primary group, a bare UID's is the UID's."""
    if not spec:
        return 0, 0
    name, sep, group = spec.partition(":")
    if name.isdigit() and (not sep or group.isdigit()):
        return int(name), int(group) if sep else int(name)
    user = lookup_user(root_fd, spec)
    return user.uid, user.gid


@contextlib.contextmanager
def opened(path: str):
    fd = os.open(path, _DIR)
    try:
        yield fd
    finally:
        os.close(fd)
