"""Writing into a build step's root filesystem by descriptor, so no symlink in the image can lead outside it.

A recipe's base image is untrusted: `/app -> /etc` or `../../..` links in it must not make `COPY` or
`WORKDIR` write on the host. Destination paths are resolved by `minicache.inroot`, the project's one resolver
(symlinks are followed as the container would see them, `..` stops at its root). New entries are made
relative to a directory descriptor with O_NOFOLLOW/O_EXCL, and an existing non-directory in the way is
unlinked, never followed.

Sources (the build context, or another stage's root) are resolved the same way within their own root.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable

from minicache.inroot import Root
from minicache.record import Record

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def exists_in_root(root: Root, path: str) -> bool:
    try:
        fd = root.open(path)
    except OSError:
        return False
    os.close(fd)
    return True


def makedirs(root: Root, path: str, uid: int = 0, gid: int = 0, mode: int = 0o755) -> int:
    """`mkdir -p` inside the root; returns a descriptor of the (resolved) directory. New ones get uid:gid.

    A symlink met on the way is followed inside the root; a dangling one is followed too, its target made
    inside the root (as Docker does).
    """
    fd, _where = root.make(path, mode=mode, owner=(uid, gid))
    try:
        return os.open(".", _DIR, dir_fd=fd)
    finally:
        os.close(fd)


def secure_join(root: str, unsafe: str) -> str | None:
    """The host path of `unsafe` inside `root` (for reading sources), or None when it does not resolve.

    Resolved by descriptor like every other path in an image: symlinks (the last one too: COPY follows a source
    that is itself a link) and `..` stay within `root`; the name returned is the kernel's for what was found.
    """
    with Root(root) as tree:
        try:
            fd = tree.open(unsafe)
        except (FileNotFoundError, NotADirectoryError):
            return None
        try:
            where = tree.where(fd)
        finally:
            os.close(fd)
    return root.rstrip("/") + (where if where != "/" else "") or "/"


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
def read_in_root(root: Root, path: str, limit: int = 4 << 20) -> str | None:
    """A small text file of the image (passwd, group), read through the root; None if it is missing."""
    try:
        fd = root.open(path, os.O_RDONLY)
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


def lookup_user(root: Root, spec: str) -> User:
    """`USER`/`--chown` values (NAME|UID[:GROUP|GID]) → numeric IDs from the image's passwd and group.

    Raises LookupError naming what is missing.
    """
    name, _, group = spec.partition(":")
    passwd = _table(read_in_root(root, "/etc/passwd"))
    groups = _table(read_in_root(root, "/etc/group"))
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


def chown_ids(root: Root, spec: str | None) -> tuple[int, int]:
    """`--chown` as numbers: like USER, but a bare name's group is its primary group, a bare UID's is the UID's."""
    if not spec:
        return 0, 0
    name, sep, group = spec.partition(":")
    if name.isdigit() and (not sep or group.isdigit()):
        return int(name), int(group) if sep else int(name)
    user = lookup_user(root, spec)
    return user.uid, user.gid


def opened(path: str) -> Root:
    """A build step's root, held open by descriptor (a context manager)."""
    return Root(path)
