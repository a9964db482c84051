"""Paths inside an image's root, resolved by descriptor: symlinks and `..` cannot leave the root.

The one path resolver of the project. It lives in minicache because both tools need it and may not import
each other: minirun resolves mount destinations, device nodes and the image's /etc/passwd in a container's
root, minibuild resolves COPY/WORKDIR destinations and sources in a build step's root; and it is built on
the store's own layer walker (`safetree`). Such a tree is controlled by the image, and another process may
change it while we look. Resolving such a path to a string and then handing
the string to the kernel lets a symlink swapped in between point the host at its own files. Here every
lookup starts from a descriptor of the root and ends in a descriptor; callers act on that descriptor
(mount through /proc/thread-self/fd/N, mkdirat, mknodat, ...), never on the path again.

Two resolvers with one behaviour: openat2 with RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS, where the kernel
walks the whole path and keeps it under the root, and on kernels without openat2 (before 5.6)
`minicache.safetree`'s walk, one component at a time with O_NOFOLLOW, each symlink followed by us inside
the root. MINICONTAINER_RESOLVER=safetree (or Root(..., resolver="safetree")) forces the second.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import TYPE_CHECKING

from minicache import syscalls as sc
from minicache.errors import InvalidArchive

if TYPE_CHECKING:
    from collections.abc import Callable

    from minicache.safetree import SafeTree

OPENAT2 = "openat2"
SAFETREE = "safetree"
RESOLVER_ENV = "MINICONTAINER_RESOLVER"
MAX_SYMLINK_HOPS = 40
_MAX_STEPS = 4096  # creations plus symlinks followed by one make(): a bound, not a limit anyone meets
_RESOLVE = sc.RESOLVE_IN_ROOT | sc.RESOLVE_NO_MAGICLINKS
_PATH = os.O_PATH | os.O_CLOEXEC
_openat2_works: bool | None = None  # probed once per process


def split(path: str) -> list[str]:
    return [c for c in path.split("/") if c not in ("", ".")]


def _has_openat2(root_fd: int) -> bool:
    global _openat2_works
    if _openat2_works is None:
        try:
            os.close(sc.openat2(root_fd, ".", _PATH, _RESOLVE))
            _openat2_works = True
        except OSError as e:
            # ENOSYS: kernel before 5.6; EPERM: a seccomp filter that does not know it; E2BIG/EINVAL: no
            # RESOLVE_IN_ROOT in this kernel's struct open_how.
            if e.errno not in (errno.ENOSYS, errno.EPERM, errno.E2BIG, errno.EINVAL):
                raise
            _openat2_works = False
    return _openat2_works


class Root:
    """A directory held open as the root of every path resolved through it."""

    def __init__(self, path: str | os.PathLike[str], *, resolver: str | None = None) -> None:
        self.path = os.fspath(path)
        self.fd = os.open(self.path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        self._prefix: str | None = None
        self._tree: SafeTree | None = None
        try:
            chosen = resolver or os.environ.get(RESOLVER_ENV) or ""
            if chosen not in (OPENAT2, SAFETREE):
                chosen = OPENAT2 if _has_openat2(self.fd) else SAFETREE
            if chosen == SAFETREE:
                from minicache.safetree import SafeTree

                self._tree = SafeTree(self.path)
        except BaseException:
            os.close(self.fd)
            raise
        self.resolver = chosen

    def close(self) -> None:
        if self._tree is not None:
            self._tree.close()
            self._tree = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Root:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- resolving existing paths ----------------------------------------------------------------------------
    def open(self, path: str, flags: int = os.O_PATH) -> int:
        """A new descriptor (O_CLOEXEC; the caller closes it) of the existing `path`, every symlink on the way,
        the last one included, followed inside the root and `..` stopping at it."""
        if self._tree is None:
            return self._openat2("/".join(split(path)) or ".", flags)
        return self._walk(split(path), flags)

    def _openat2(self, path: str, flags: int) -> int:
        for _ in range(16):
            try:
                return sc.openat2(self.fd, path, flags | os.O_CLOEXEC, _RESOLVE)
            except BlockingIOError:  # EAGAIN: a rename or mount raced a `..`; the kernel asks for a retry
                continue
        raise OSError(errno.EAGAIN, "the path kept changing while it was resolved", path)

    def _dir(self, comps: list[str]) -> int:
        """A new O_PATH descriptor of the directory `comps` names."""
        if self._tree is None:
            return self._openat2("/".join(comps) or ".", os.O_PATH | os.O_DIRECTORY)
        tree = self._tree
        code = errno.ENOTDIR
        for _ in range(8):  # "not a directory" can be a component swapped between two steps: look again
            try:
                fd, _key = tree.resolve_dir(comps, create=False)
                return os.dup(fd)
            except InvalidArchive as e:  # safetree speaks of archives; here it is a path that does not resolve
                code = errno.ELOOP if "symbolic links" in str(e) else errno.ENOTDIR
                if code == errno.ELOOP:
                    break
            finally:
                # Its descriptors are cached by path: a mount made on one of them next would not be seen.
                tree.forget(())
                tree.release()
        raise OSError(code, os.strerror(code), "/" + "/".join(comps))

    def _walk(self, comps: list[str], flags: int) -> int:
        """The safetree resolver for a whole path: directories by safetree, the last component here."""
        hops = 0
        while True:
            if not comps or comps[-1] == "..":
                dfd = self._dir(comps)
                try:
                    return os.open(".", flags | os.O_CLOEXEC, dir_fd=dfd)
                finally:
                    os.close(dfd)
            dfd = self._dir(comps[:-1])
            try:
                name = comps[-1]
                st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
                if not stat.S_ISLNK(st.st_mode):
                    try:
                        fd = os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
                    except OSError as e:
                        if e.errno != errno.ELOOP:
                            raise
                        fd = -1  # made a symlink since the stat: look again
                    if fd >= 0 and not stat.S_ISLNK(os.fstat(fd).st_mode):
                        return fd
                    if fd >= 0:
                        os.close(fd)
                    hops += 1
                    if hops > MAX_SYMLINK_HOPS:
                        raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), "/" + "/".join(comps))
                    continue
                hops += 1
                comps = self._follow(dfd, comps[:-1], name, [], hops)
            finally:
                os.close(dfd)

    @staticmethod
    def _follow(dfd: int, parent: list[str], name: str, rest: list[str], hops: int) -> list[str]:
        """The path to resolve next when `parent/name` is a symlink: its target in place of it, inside the root."""
        if hops > MAX_SYMLINK_HOPS:
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), "/" + "/".join([*parent, name]))
        target = os.readlink(name, dir_fd=dfd)
        return split(target) + rest if target.startswith("/") else parent + split(target) + rest

    def where(self, fd: int) -> str:
        """Where the object behind `fd` is, as a path inside the root (what the container will call it).

        Read from /proc/thread-self/fd: the kernel's name for the object now, not the path we asked for.
        """
        if self._prefix is None:
            self._prefix = _fd_link(self.fd).rstrip("/")
        link = _fd_link(fd)
        if link == self._prefix:
            return "/"
        if link.startswith(self._prefix + "/"):
            return link[len(self._prefix) :]
        raise OSError(errno.EXDEV, "resolved outside the container's root", link)

    # -- creating ---------------------------------------------------------------------------------------------
    def make(
        self,
        path: str,
        *,
        directory: bool = True,
        allow: Callable[[str], None] | None = None,
        mode: int = 0o755,
        owner: tuple[int, int] | None = None,
    ) -> tuple[int, str]:
        """(O_PATH descriptor, path inside the root) of `path`, created with its missing parents if absent.

        Missing components are made by mkdirat (the last one, unless `directory`, as an empty file by openat
        with O_EXCL) relative to a parent directory resolved in the root, then the whole path is resolved
        again: a symlink swapped in meanwhile is followed inside the root like any other. A dangling symlink
        on the way has its target created. `allow(where)` is called with the path inside the root of each
        component before it is created and of the final object; it raises to refuse, and nothing is made.
        New directories get `mode`; with `owner` (uid, gid) they also get exactly that mode, whatever the umask,
        and that owner (a build step's `--chown`).
        """
        comps = split(path)
        hops = 0
        for _ in range(_MAX_STEPS):
            try:
                fd = self.open("/".join(comps))
            except FileNotFoundError:
                pass
            else:
                try:
                    where = self.where(fd)
                    if allow is not None:
                        allow(where)
                except BaseException:
                    os.close(fd)
                    raise
                return fd, where
            i, dfd = self._deepest(comps)
            try:
                name = comps[i]
                try:
                    st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
                except FileNotFoundError:
                    st = None
                if st is not None and stat.S_ISLNK(st.st_mode):  # dangling: create what it points to
                    hops += 1
                    comps = self._follow(dfd, comps[:i], name, comps[i + 1 :], hops)
                    continue
                if st is not None:
                    continue  # appeared since: resolve again
                base = self.where(dfd)
                if allow is not None:
                    allow(base.rstrip("/") + "/" + name)
                try:
                    if i == len(comps) - 1 and not directory:
                        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
                        os.close(os.open(name, flags, 0o644, dir_fd=dfd))
                    else:
                        os.mkdir(name, mode, dir_fd=dfd)
                        if owner is not None:
                            _set_owner(dfd, name, mode, owner)
                except FileExistsError:
                    continue
            finally:
                os.close(dfd)
        raise OSError(errno.ELOOP, "the path kept changing while it was created", path)

    def _deepest(self, comps: list[str]) -> tuple[int, int]:
        """(i, descriptor of the directory comps[:i] names) for the longest prefix that resolves; comps[i] is
        the component that does not (missing, or a dangling symlink)."""
        for i in range(len(comps) - 1, 0, -1):
            try:
                return i, self._dir(comps[:i])
            except FileNotFoundError:
                continue
        return 0, self._dir([])


def _set_owner(dfd: int, name: str, mode: int, owner: tuple[int, int]) -> None:
    fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
    try:
        os.fchmod(fd, mode)
        if owner != (0, 0):
            os.fchown(fd, *owner)
    finally:
        os.close(fd)


def _fd_link(fd: int) -> str:
    return os.readlink(f"/proc/thread-self/fd/{fd}")


def fd_path(fd: int) -> str:
    """A path naming exactly the object behind `fd` (a magic link), for calls that take no descriptor (mount)."""
    return f"/proc/thread-self/fd/{fd}"
