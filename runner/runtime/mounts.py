"""The container's filesystem view: the spec's mounts, /dev, pivot_root, masked and read-only paths.

`plan_*` functions run in the parent and turn spec entries into plain data (parsing, stat of bind sources,
the host's cgroup hierarchies); the rest runs in the child, inside its new mount namespace, and only makes
system calls. Every destination is resolved and created by descriptor inside the root (minicache.inroot) and
mounted on through that descriptor, so neither an image's symlinks nor a swap while the mounts are made can
redirect a mount onto the host; /proc, /sys and /dev only take the kernel's own filesystems (`refusal`).
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import stat
from collections.abc import Callable
from typing import Any

from minicache import syscalls as sc
from minicache.errors import InvalidSpec
from minicache.inroot import Root, fd_path
from minicache.record import Record
from minirun.runtime.syscalls import pivot_root

# option → (flags to set, flags to clear)
FLAG_OPTIONS: dict[str, tuple[int, int]] = {
    "defaults": (0, 0),
    "ro": (sc.MS_RDONLY, 0),
    "rw": (0, sc.MS_RDONLY),
    "nosuid": (sc.MS_NOSUID, 0),
    "suid": (0, sc.MS_NOSUID),
    "nodev": (sc.MS_NODEV, 0),
    "dev": (0, sc.MS_NODEV),
    "noexec": (sc.MS_NOEXEC, 0),
    "exec": (0, sc.MS_NOEXEC),
    "sync": (0x10, 0),
    "async": (0, 0x10),
    "dirsync": (0x80, 0),
    "noatime": (0x400, 0),
    "atime": (0, 0x400),
    "nodiratime": (0x800, 0),
    "diratime": (0, 0x800),
    "relatime": (sc.MS_RELATIME, 0),
    "norelatime": (0, sc.MS_RELATIME),
    "strictatime": (sc.MS_STRICTATIME, 0),
    "nostrictatime": (0, sc.MS_STRICTATIME),
    "mand": (0x40, 0),
    "nomand": (0, 0x40),
    "bind": (sc.MS_BIND, 0),
    "rbind": (sc.MS_BIND | sc.MS_REC, 0),
    "remount": (sc.MS_REMOUNT, 0),
}
_UNBINDABLE = 1 << 17
PROPAGATION: dict[str, int] = {
    "private": sc.MS_PRIVATE,
    "rprivate": sc.MS_PRIVATE | sc.MS_REC,
    "shared": sc.MS_SHARED,
    "rshared": sc.MS_SHARED | sc.MS_REC,
    "slave": sc.MS_SLAVE,
    "rslave": sc.MS_SLAVE | sc.MS_REC,
    "unbindable": _UNBINDABLE,
    "runbindable": _UNBINDABLE | sc.MS_REC,
}
_IGNORED = frozenset({"tmpcopyup", "notmpcopyup", "copy-symlink", "z", "Z"})
# Flags a read-only or nosuid remount of a bind mount must repeat (statvfs f_flag uses the MS_ values).
_KEEP_FLAGS = sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC
_DEFAULT_DEVICES = (  # runc's default device nodes, created in every container with its own /dev
    ("/dev/null", "c", 1, 3),
    ("/dev/zero", "c", 1, 5),
    ("/dev/full", "c", 1, 7),
    ("/dev/random", "c", 1, 8),
    ("/dev/urandom", "c", 1, 9),
    ("/dev/tty", "c", 5, 0),
)
_DEV_LINKS = (
    ("/proc/self/fd", "/dev/fd"),
    ("/proc/self/fd/0", "/dev/stdin"),
    ("/proc/self/fd/1", "/dev/stdout"),
    ("/proc/self/fd/2", "/dev/stderr"),
    ("/proc/kcore", "/dev/core"),
    ("pts/ptmx", "/dev/ptmx"),
)


class Mount(Record):
    destination: str
    fstype: str
    source: str | None
    flags: int
    data: str
    propagation: list[int] = []
    source_is_dir: bool = True
    cgroups: list[tuple[str, str, str]] = []  # (name, fstype, options) for "cgroup"
    cgroup_links: list[tuple[str, str]] = []

    @property
    def is_bind(self) -> bool:
        return bool(self.flags & sc.MS_BIND)


class Device(Record):
    path: str
    kind: str  # c, b, p (fifo), u (unbuffered char = c)
    major: int
    minor: int
    mode: int = 0o666
    uid: int = 0
    gid: int = 0


def parse_options(options: list[str]) -> tuple[int, list[int], str]:
    """OCI mount options → (MS_* flags, propagation changes, filesystem data string)."""
    flags = 0
    propagation: list[int] = []
    data: list[str] = []
    for option in options:
        if option in FLAG_OPTIONS:
            set_, clear = FLAG_OPTIONS[option]
            flags = (flags | set_) & ~clear
        elif option in PROPAGATION:
            propagation.append(PROPAGATION[option])
        elif option in _IGNORED:
            continue
        elif option == "idmap" or option == "ridmap":
            raise InvalidSpec(f"mount option {option!r} is not supported")
        else:
            data.append(option)
    return flags, propagation, ",".join(data)


def host_cgroup_layout(root: str = "/sys/fs/cgroup") -> tuple[list[tuple[str, str, str]], list[tuple[str, str]]]:
    """The host's cgroup hierarchies under `root`: [(name, fstype, options)] and the symlinks beside them.

    A unified (v2-only) host has one entry named "" (cgroup2 mounted at `root` itself).
    """
    hierarchies: list[tuple[str, str, str]] = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            mountpoint, fstype, super_opts = fields[4], fields[sep + 1], fields[sep + 3]
            if fstype not in ("cgroup", "cgroup2"):
                continue
            if mountpoint == root:
                return [("", fstype, "")], []
            if os.path.dirname(mountpoint) != root:
                continue
            if fstype == "cgroup2":
                continue  # the empty v2 tree of a hybrid host: left out, as runc does
            # Keep the hierarchy-selecting options (controllers, name=...), drop rw/ro.
            opts = [o for o in super_opts.split(",") if o not in ("rw", "ro")]
            hierarchies.append((os.path.basename(mountpoint), fstype, ",".join(opts)))
    links = []
    try:
        for entry in os.scandir(root):
            if entry.is_symlink():
                links.append((os.readlink(entry.path), entry.name))
    except OSError:
        pass
    return hierarchies, links


def plan(spec_mounts: list[dict[str, Any]]) -> list[Mount]:
    """Validate and pre-digest the spec's mounts (in the parent)."""
    out: list[Mount] = []
    layout: tuple[list[tuple[str, str, str]], list[tuple[str, str]]] | None = None
    for m in spec_mounts:
        dest = m.get("destination")
        if not isinstance(dest, str) or not dest.startswith("/"):
            raise InvalidSpec(f"mount destination {dest!r} is not an absolute path")
        fstype = m.get("type") or ("bind" if "bind" in (m.get("options") or ()) else "")
        flags, propagation, data = parse_options(list(m.get("options") or ()))
        source = m.get("source")
        if fstype == "bind":
            flags |= sc.MS_BIND
        mount = Mount(dest, fstype, source, flags, data, propagation)
        if mount.is_bind:
            if not source:
                raise InvalidSpec(f"bind mount on {dest} has no source")
            try:
                mount.source_is_dir = stat.S_ISDIR(os.stat(source).st_mode)
            except OSError as e:
                raise InvalidSpec(
                    f"bind mount source {source} for {dest}: {e.strerror}", hint="check the host path exists"
                ) from None
        elif fstype == "cgroup":
            layout = layout or host_cgroup_layout()
            mount.cgroups, mount.cgroup_links = layout
        elif not fstype:
            raise InvalidSpec(f"mount on {dest} has no type")
        out.append(mount)
    return out


def plan_devices(spec_devices: list[dict[str, Any]] | None) -> list[Device]:
    devices = {path: Device(path, kind, major, minor) for path, kind, major, minor in _DEFAULT_DEVICES}
    for d in spec_devices or ():
        try:
            device = Device(
                d["path"],
                d["type"],
                int(d.get("major", 0)),
                int(d.get("minor", 0)),
                int(d.get("fileMode", 0o666)),
                int(d.get("uid", 0)),
                int(d.get("gid", 0)),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise InvalidSpec(f"invalid device entry {d!r}: {e}") from None
        if device.kind not in ("c", "b", "u", "p") or not posixpath.normpath(device.path).startswith("/dev/"):
            raise InvalidSpec(f"invalid device entry {d!r}: type must be c, b, u or p and the path under /dev")
        devices[device.path] = device
    return list(devices.values())


# -- where a mount may go -------------------------------------------------------------------------------------------
# Files under /proc that lxcfs emulates: a bind mount onto one of these is the one kind allowed inside /proc.
LXCFS_PROC_FILES = frozenset(
    {
        "/proc/cpuinfo",
        "/proc/diskstats",
        "/proc/loadavg",
        "/proc/meminfo",
        "/proc/slabinfo",
        "/proc/stat",
        "/proc/swaps",
        "/proc/uptime",
    }
)


def refusal(where: str, fstype: str, is_bind: bool) -> str | None:
    """Why a mount of `fstype` may not go on `where` (a clean path inside the container), or None.

    /proc, /sys and /dev are the kernel's own views: a host directory there (or anything inside /proc)
    would stand in for them, and the masked paths, the read-only /proc/sys and the LSM files under
    /proc/self/attr would no longer be what the container sees.
    """
    if where == "/proc":
        return None if fstype == "proc" else "/proc is the container's procfs and only proc can be mounted there"
    if where.startswith("/proc/"):
        if is_bind and where in LXCFS_PROC_FILES:
            return None
        return f"{where} is inside /proc"
    if where == "/sys":
        return None if fstype == "sysfs" else "/sys is the container's sysfs and only sysfs can be mounted there"
    if where == "/dev" and is_bind:
        return "/dev is the container's own device directory and a host directory cannot replace it"
    return None


class MountRefused(RuntimeError):
    """A destination resolves to a place where no mount of this kind may go."""


def _allow(m: Mount) -> Callable[[str], None]:
    def check(where: str) -> None:
        reason = refusal(where, m.fstype, m.is_bind)
        if reason is not None:
            via = f" (it resolves to {where} in the image)" if where != posixpath.normpath(m.destination) else ""
            raise MountRefused(f"refusing to mount on {m.destination}{via}: {reason}")

    return check


# -- in the child ------------------------------------------------------------------------------------------------
def _reopen(root: Root, fd: int, where: str) -> int:
    """A descriptor of the mount just made on `fd` (a lookup of its path crosses onto the new mount).

    The path is resolved in the root again, so a swap meanwhile cannot leave it; the mount ID must differ
    from the one under it, or the lookup found something other than the new mount.
    """
    new = root.open(where)
    if _mount_id(new) == _mount_id(fd):
        os.close(new)
        raise RuntimeError(f"the mount point {where} changed while it was mounted on")
    return new


def _mount_id(fd: int) -> int:
    with open(f"/proc/thread-self/fdinfo/{fd}", "rb") as f:
        for line in f:
            if line.startswith(b"mnt_id:"):
                return int(line.split()[1])
    raise RuntimeError("the kernel reports no mount ID in fdinfo")


def _mount_cgroup(root: Root, fd: int, where: str, m: Mount) -> None:
    readonly = m.flags & sc.MS_RDONLY
    base = m.flags & ~(sc.MS_RDONLY | sc.MS_BIND | sc.MS_REC)
    if m.cgroups and m.cgroups[0][0] == "":  # unified hierarchy at the top
        sc.mount("cgroup2", fd_path(fd), "cgroup2", m.flags & ~(sc.MS_BIND | sc.MS_REC))
        return
    sc.mount("tmpfs", fd_path(fd), "tmpfs", base, "mode=755")
    top = _reopen(root, fd, where)
    try:
        for name, fstype, options in m.cgroups:
            os.mkdir(name, 0o755, dir_fd=top)
            sub = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=top)
            try:
                sc.mount("cgroup", fd_path(sub), fstype, base | readonly, options or None)
            finally:
                os.close(sub)
        for link_target, name in m.cgroup_links:
            os.symlink(link_target, name, dir_fd=top)
        if readonly:
            sc.mount(None, fd_path(top), None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | base)
    finally:
        os.close(top)


def mount_one(root: Root | str, m: Mount) -> None:
    """Mount `m` on its destination, resolved (and created) by descriptor inside `root`, through that descriptor."""
    if isinstance(root, str):
        with Root(root) as opened:
            return mount_one(opened, m)
    fd, where = root.make(m.destination, directory=m.source_is_dir, allow=_allow(m))
    mounted = -1
    try:
        if m.fstype in ("proc", "sysfs"):
            # An image whose /proc is a symlink would get its proc elsewhere and masked paths would miss it.
            if where != posixpath.normpath(m.destination):
                raise MountRefused(
                    f"{m.destination} is a symbolic link in the image (to {where}); refusing to mount {m.fstype} there"
                )
            if not stat.S_ISDIR(os.fstat(fd).st_mode):
                raise MountRefused(f"{m.destination} is not a directory in the image; refusing to mount {m.fstype}")
        if m.fstype == "cgroup":
            _mount_cgroup(root, fd, where, m)
        elif m.is_bind:
            assert m.source is not None
            sc.mount(m.source, fd_path(fd), None, m.flags & (sc.MS_BIND | sc.MS_REC))
            extra = m.flags & ~(sc.MS_BIND | sc.MS_REC | sc.MS_REMOUNT)
            if extra:
                mounted = _reopen(root, fd, where)
                sc.mount(None, fd_path(mounted), None, sc.MS_BIND | sc.MS_REMOUNT | extra)
        else:
            sc.mount(m.source or m.fstype, fd_path(fd), m.fstype, m.flags, m.data or None)
        if m.propagation and mounted < 0:
            mounted = _reopen(root, fd, where)
        for change in m.propagation:
            sc.mount(None, fd_path(mounted), None, change)
    except OSError as e:
        if str(e.filename).startswith(fd_path(0)[:-1]):  # name the destination, not the descriptor's magic link
            raise OSError(e.errno, e.strerror, m.destination) from None
        raise
    finally:
        os.close(fd)
        if mounted >= 0:
            os.close(mounted)
    return None


def create_devices(root: Root, devices: list[Device]) -> None:
    for d in devices:
        parent, name = posixpath.split(posixpath.normpath(d.path))
        dfd, _ = root.make(parent)
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=dfd)
            kind = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}[d.kind]
            os.mknod(name, kind | (d.mode & 0o7777), os.makedev(d.major, d.minor), dir_fd=dfd)
            os.chown(name, d.uid, d.gid, dir_fd=dfd, follow_symlinks=False)
        finally:
            os.close(dfd)


def create_dev_links(root: Root) -> None:
    """The standard /dev symlinks; /dev/core only where the kernel has /proc/kcore (as runc)."""
    dfd, _ = root.make("/dev")
    try:
        for target, name in _DEV_LINKS:
            if target == "/proc/kcore" and not os.path.exists(target):
                continue
            with contextlib.suppress(FileExistsError):
                os.symlink(target, posixpath.basename(name), dir_fd=dfd)
    finally:
        os.close(dfd)


def prepare_root(rootfs: str, propagation: int) -> None:
    """Cut mount propagation to the host, then make `rootfs` a mount point of its own (pivot_root needs one)."""
    sc.mount(None, "/", None, propagation)
    sc.mount(rootfs, rootfs, None, sc.MS_BIND | sc.MS_REC)


def pivot(rootfs: str) -> None:
    """pivot_root into `rootfs` and detach the old root (runc's `pivot_root(".", ".")` trick: no directory left)."""
    old = os.open("/", os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    new = os.open(rootfs, os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fchdir(new)
        pivot_root(".", ".")
        os.fchdir(old)
        # The old root is stacked on "."; make sure its unmount cannot propagate anywhere, then detach it.
        sc.mount(None, ".", None, sc.MS_SLAVE | sc.MS_REC)
        sc.umount(".", sc.MNT_DETACH)
    finally:
        os.close(old)
        os.close(new)
    os.chdir("/")


def mask(paths: list[str]) -> None:
    """Hide paths (after pivot_root): an empty read-only tmpfs over directories, /dev/null over files."""
    for path in paths:
        try:
            is_dir = stat.S_ISDIR(os.stat(path).st_mode)
        except (FileNotFoundError, NotADirectoryError):
            continue
        if is_dir:
            sc.mount("tmpfs", path, "tmpfs", sc.MS_RDONLY)
        else:
            sc.mount("/dev/null", path, None, sc.MS_BIND)


def make_readonly(paths: list[str]) -> None:
    """Bind each path onto itself and remount it read-only, keeping nosuid/nodev/noexec."""
    for path in paths:
        try:
            sc.mount(path, path, None, sc.MS_BIND | sc.MS_REC)
        except FileNotFoundError:
            continue
        keep = os.statvfs(path).f_flag & _KEEP_FLAGS
        sc.mount(None, path, None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | sc.MS_REC | keep)


def remount_root_readonly() -> None:
    keep = os.statvfs("/").f_flag & _KEEP_FLAGS
    sc.mount(None, "/", None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | keep)
