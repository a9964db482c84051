"""Writing into a layer snapshot without ever leaving it.

Every path is resolved one component at a time with O_NOFOLLOW directory descriptors. A symlink met on
the way is followed *inside* the tree (absolute targets start at the tree's root, `..` stops at it), the
way Docker and containerd apply layers. A component missing from the layer being written is looked up in
the layers below (the merged view overlayfs will show): a symlink there is followed, a directory there is
"copied up" (created with the same owner and mode), a whited-out or absent one is created.
"""

from __future__ import annotations

import errno
import os
import stat

from minicache.errors import InvalidArchive

OPAQUE_XATTR = "trusted.overlay.opaque"
MAX_SYMLINK_HOPS = 40
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FD_CACHE_SIZE = 256

Key = tuple[str, ...]
StrPath = str | os.PathLike[str]  # plain strings too: minicache.inroot uses it on the `minirun run` path


def is_whiteout(st: os.stat_result) -> bool:
    """An overlay whiteout: a character device with device number 0:0."""
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def split(path: str) -> list[str]:
    return [c for c in path.split("/") if c not in ("", ".")]


class SafeTree:
    """A directory tree (the new layer) over read-only lower trees (its parents, topmost first)."""

    def __init__(self, root: StrPath, lowers: list[StrPath] | tuple[StrPath, ...] = ()) -> None:
        self.root = root
        self.lowers = list(lowers)
        self.root_fd = os.open(root, _DIR_FLAGS)
        self._fds: dict[Key, int] = {}
        self._parents: dict[str, tuple[int, Key]] = {}  # parent path -> cached (fd, key), direct paths only
        self._retired: list[int] = []  # dropped from the cache; a caller may still hold one until release()
        self.opaque: set[Key] = set()  # directories of this layer marked opaque
        self.copied_up: list[tuple[Key, int]] = []  # directories copied up from below, with their mtime (ns)

    def close(self) -> None:
        self._flush()
        self.release()
        os.close(self.root_fd)

    def __enter__(self) -> SafeTree:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the descriptor cache ----------------------------------------------------------------------------
    def _flush(self) -> None:
        self._retired.extend(self._fds.values())
        self._fds.clear()
        self._parents.clear()

    def release(self) -> None:
        """Close the descriptors dropped from the cache. Call between entries, when no caller holds one:
        closing them at once could let a number be reused for another directory while a caller still uses it."""
        if self._retired:
            for fd in self._retired:
                os.close(fd)
            self._retired.clear()

    def _remember(self, key: Key, fd: int) -> int:
        if len(self._fds) >= _FD_CACHE_SIZE:
            self._flush()
        self._fds[key] = fd
        return fd

    def forget(self, key: Key) -> None:
        """Drop cached descriptors at or below `key` (it is being removed or replaced)."""
        n = len(key)
        for k in [k for k in self._fds if k[:n] == key]:
            self._retired.append(self._fds.pop(k))
        self._parents.clear()
        self.opaque = {k for k in self.opaque if k[:n] != key}

    def _fd(self, key: Key) -> int:
        return self.root_fd if not key else self._fds.get(key) or self.resolve_dir(list(key))[0]

    # -- resolution --------------------------------------------------------------------------------------
    def resolve_dir(self, components: list[str], *, create: bool = True) -> tuple[int, Key]:
        """The directory `components` names, resolved in the tree; returns (fd, resolved key).

        The fd belongs to the cache: do not close it. With `create`, missing directories are made (copied
        up from the layers below when they exist there); without, a missing one raises FileNotFoundError.
        """
        key: Key = ()
        fd = self.root_fd
        queue = list(components)
        hops = 0
        while queue:
            comp = queue.pop(0)
            if comp in ("", "."):
                continue
            if comp == "..":
                key = key[:-1]
                fd = self._fd(key)
                continue
            nxt = (*key, comp)
            cached = self._fds.get(nxt)
            if cached is not None:
                key, fd = nxt, cached
                continue
            try:
                nfd = os.open(comp, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                target = self._missing(fd, key, comp, create)
                if target is None:
                    nfd = os.open(comp, _DIR_FLAGS, dir_fd=fd)
                else:
                    hops += 1
                    key, fd, queue = self._follow(target, key, queue, hops)
                    continue
            except OSError as e:
                if e.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                st = os.lstat(comp, dir_fd=fd)
                if stat.S_ISLNK(st.st_mode):
                    hops += 1
                    key, fd, queue = self._follow(os.readlink(comp, dir_fd=fd), key, queue, hops)
                    continue
                if is_whiteout(st) and create:
                    # Deleted in this very layer, then written into: a fresh directory hiding the lower one.
                    os.unlink(comp, dir_fd=fd)
                    os.mkdir(comp, 0o755, dir_fd=fd)
                    nfd = os.open(comp, _DIR_FLAGS, dir_fd=fd)
                    os.setxattr(nfd, OPAQUE_XATTR, b"y")
                    self.opaque.add(nxt)
                else:
                    raise InvalidArchive(
                        f"/{'/'.join(nxt)} is not a directory but an entry is written below it"
                    ) from None
            key, fd = nxt, self._remember(nxt, nfd)
        return fd, key

    def _follow(self, target: str, key: Key, queue: list[str], hops: int) -> tuple[Key, int, list[str]]:
        if hops > MAX_SYMLINK_HOPS:
            raise InvalidArchive(f"too many levels of symbolic links under /{'/'.join(key)}")
        if target.startswith("/"):
            key = ()
        return key, self._fd(key), split(target) + queue

    def _missing(self, fd: int, key: Key, comp: str, create: bool) -> str | None:
        """A component absent from this layer: its symlink target in the layers below, or None once created."""
        below = self.lookup_below((*key, comp))
        if below is not None and stat.S_ISLNK(below[1].st_mode):
            return os.readlink(below[0])
        if not create:
            raise FileNotFoundError(errno.ENOENT, "no such directory", "/" + "/".join((*key, comp)))
        if below is None:
            os.mkdir(comp, 0o755, dir_fd=fd)
            return None
        st = below[1]
        if not stat.S_ISDIR(st.st_mode):
            where = "/".join((*key, comp))
            raise InvalidArchive(f"/{where} is a file in a lower layer but an entry is written below it")
        os.mkdir(comp, 0o700, dir_fd=fd)
        if os.geteuid() == 0:
            os.chown(comp, st.st_uid, st.st_gid, dir_fd=fd, follow_symlinks=False)
        os.chmod(comp, stat.S_IMODE(st.st_mode), dir_fd=fd, follow_symlinks=False)
        self.copied_up.append(((*key, comp), st.st_mtime_ns))  # set last, as overlayfs's copy-up keeps it
        return None

    def lookup_below(self, key: Key) -> tuple[str, os.stat_result] | None:
        """What the layers below show at `key` (whose parent is a directory in the merged view).

        Returns (path in the lower layer, lstat) or None if nothing is visible there.
        """
        if any(key[:i] in self.opaque for i in range(1, len(key))):
            return None
        parent, name = key[:-1], key[-1]
        for lower in self.lowers:
            st, stop = _lookup_in(lower, parent, name)
            if st is not None:
                return None if is_whiteout(st) else (os.path.join(lower, *key), st)
            if stop:
                return None
        return None

    def parent(self, path: str) -> tuple[int, Key, str]:
        """(fd of the resolved parent directory, its key, the last component) for a cleaned path.

        Parents reached without following a symlink are remembered by their path: such a path resolves
        the same way until something on it is removed (forget), which clears the memory.
        """
        parent, _, name = path.rpartition("/")
        hit = self._parents.get(parent)
        if hit is not None:
            return hit[0], hit[1], name
        comps = split(parent)
        fd, key = self.resolve_dir(comps)
        if list(key) == comps:
            self._parents[parent] = (fd, key)
        return fd, key, name


def _lookup_in(lower: StrPath, parent: Key, name: str) -> tuple[os.stat_result | None, bool]:
    """lstat of parent/name in one lower layer, and whether the layers further down are hidden from it
    (the parent is opaque there, or not a directory at all)."""
    fd = os.open(lower, _DIR_FLAGS)
    try:
        for comp in parent:
            try:
                nfd = os.open(comp, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                return None, False
            except OSError as e:
                if e.errno in (errno.ENOTDIR, errno.ELOOP):
                    return None, True
                raise
            os.close(fd)
            fd = nfd
        try:
            return os.lstat(name, dir_fd=fd), False
        except FileNotFoundError:
            return None, bool(parent) and _is_opaque(fd)
    finally:
        os.close(fd)


def _is_opaque(fd: int) -> bool:
    try:
        return os.getxattr(fd, OPAQUE_XATTR) == b"y"
    except OSError:
        return False
