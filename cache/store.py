"""The store: where it lives, its folders, locks and staging area, and the three object kinds in it.

root/blobs/sha256/<hex>    manifests, configs, compressed layers exactly as fetched (BlobStore)
root/layers/<chain-hex>/   one unpacked layer: fs/ plus layer.json (LayerStore)
root/images/               image records and the reference index (ImageStore)
root/containers/<id>/      one container each (written by minirun)
root/buildcache/           the step cache of `minibuild build`: step key → the layer it made (BuildCache)
root/networks/             network definitions and settings.json (written by minirun.network)
root/cache/seccomp/        compiled seccomp filters (written by minirun's runtime)
root/serve/                `minirun serve`'s token
root/events.log            the event log both CLIs append to (minicache.events)
root/tmp/                  staging on the same filesystem; everything is committed by rename
root/locks/                flock files
run_root/                  run-time state that must not outlive a reboot: networks/ (leases, endpoints,
                           ports), netns/ (namespaces bound to files), mounts/ (`minibuild mount`), api.sock

Store names and makes every folder here, with the modes below, when it opens; the code that keeps records
in one asks Store for its path and never makes a folder of the store itself.

Every folder here is 0700 and the files holding a container's config, environment or state are 0600:
another local user reaches nothing in the store (no secret, no setuid binary of a layer, no device node of
an image). A store made by an older version with looser modes is closed the first time it is opened
(minicache.modes).
"""

from __future__ import annotations

import os
import stat
from functools import cached_property

from minicache import process
from minicache.errors import PermissionDenied, StoreUnavailable, disk_full
from minicache.locks import FileLock
from minicache.modes import API_SOCKET, PRIVATE_DIR, ROOT_ENTRIES, RUN_ROOT_ENTRIES
from minicache.rmtree import remove_tree

DEFAULT_ROOT = "/var/lib/minicontainer"
DEFAULT_RUN_ROOT = "/run/minicontainer"
ROOT_ENV = "MINICONTAINER_ROOT"
RUN_ROOT_ENV = "MINICONTAINER_RUNROOT"


def default_root() -> str:
    """`$MINICONTAINER_ROOT`, else /var/lib/minicontainer for root, else $XDG_DATA_HOME/minicontainer."""
    if env := os.environ.get(ROOT_ENV):
        return os.path.normpath(env)
    if os.geteuid() == 0:
        return DEFAULT_ROOT
    data = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return os.path.join(data, "minicontainer")


class Store:
    """One store on disk. Cheap to open (a stat and a few mkdirs); creates its folders on first use."""

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        run_root: str | os.PathLike[str] | None = None,
        *,
        create: bool = True,
    ) -> None:
        """Open (with `create`, make) the store; StoreUnavailable or NoSpace when it cannot be used.

        Without `create` (commands that only read) a store named by --root or $MINICONTAINER_ROOT that does
        not exist is an error, not made; the default store is made as by any command (an empty listing).
        """
        if not create and root is None and not os.environ.get(ROOT_ENV):
            create = True
        self.root = os.path.normpath(root) if root is not None else default_root()
        if run_root is not None:
            self.run_root = os.path.normpath(run_root)
        elif env := os.environ.get(RUN_ROOT_ENV):
            self.run_root = os.path.normpath(env)
        elif self.root == DEFAULT_ROOT:
            self.run_root = DEFAULT_RUN_ROOT
        else:
            # A store somewhere else (tests, --root) keeps its run-time state beside it, so two stores never mix.
            self.run_root = os.path.join(self.root, "run")
        self.blobs_dir = os.path.join(self.root, "blobs", "sha256")
        self.layers_dir = os.path.join(self.root, "layers")
        self.images_dir = os.path.join(self.root, "images")
        self.containers_dir = os.path.join(self.root, "containers")
        self.tmp_dir = os.path.join(self.root, "tmp")
        self.buildcache_dir = os.path.join(self.root, "buildcache")
        self.locks_dir = os.path.join(self.root, "locks")
        self.networks_dir = os.path.join(self.root, "networks")
        self.seccomp_dir = os.path.join(self.root, "cache", "seccomp")
        self.serve_dir = os.path.join(self.root, "serve")
        self.events_log = os.path.join(self.root, "events.log")
        self.run_networks_dir = os.path.join(self.run_root, "networks")
        self.netns_dir = os.path.join(self.run_root, "netns")
        self.mounts_dir = os.path.join(self.run_root, "mounts")
        self.runtime_dir = os.path.join(self.run_root, "runtime")  # minirun-runtime's --root for our containers
        self.api_socket = os.path.join(self.run_root, API_SOCKET)
        try:
            self._open(create)
        except OSError as e:
            raise _unusable(self.root, e) from None
        self.clear_debris()

    def _open(self, create: bool) -> None:
        """Check the root (ours, a directory, closed), make what is missing, close what an old version left open."""
        loose = False
        run_state = True
        for top in (self.root, self.run_root):
            try:
                st = os.stat(top)
            except FileNotFoundError:
                if not create:
                    if top == self.root:
                        raise StoreUnavailable(
                            f"no store at {self.root}",
                            hint="check --root (or $MINICONTAINER_ROOT); a store is made by the first pull or run",
                        ) from None
                    run_state = False  # a read-only command on a store whose run-time state went with a reboot
                    continue
                os.makedirs(os.path.dirname(top), exist_ok=True)
                _mkdir_private(top)
                continue
            if not stat.S_ISDIR(st.st_mode):
                raise NotADirectoryError(20, "Not a directory", str(top))
            euid = os.geteuid()
            if euid != 0 and st.st_uid != euid:
                raise PermissionError(13, "Permission denied", str(top))
            _check_ours(top, ROOT_ENTRIES if top == self.root else RUN_ROOT_ENTRIES)
            # The run-time root may keep group search for serve's socket (minicache.modes.RUN_ROOT_DIR).
            open_bits = 0o067 if top == self.run_root else 0o077
            loose = loose or bool(st.st_mode & open_bits)
        if loose:
            from minicache.modes import tighten

            tighten(self)
        for d in (
            os.path.dirname(self.blobs_dir), self.blobs_dir, self.layers_dir, self.images_dir, self.containers_dir,
            self.buildcache_dir, self.networks_dir, os.path.dirname(self.seccomp_dir), self.seccomp_dir,
            self.serve_dir, self.tmp_dir, self.locks_dir,
        ):  # fmt: skip
            _mkdir_private(d)
        if run_state:
            for d in (self.run_networks_dir, self.netns_dir, self.mounts_dir, self.runtime_dir):
                _mkdir_private(d)

    # -- the three object kinds ------------------------------------------------------------------------------
    @cached_property
    def blobs(self):  # -> BlobStore (imported lazily: keeps `minirun` start-up small)
        from minicache.blobs import BlobStore

        return BlobStore(self)

    @cached_property
    def layers(self):  # -> LayerStore
        from minicache.layers import LayerStore

        return LayerStore(self)

    @cached_property
    def images(self):  # -> ImageStore
        from minicache.images import ImageStore

        return ImageStore(self)

    @cached_property
    def buildcache(self):  # -> BuildCache
        from minicache.buildcache import BuildCache

        return BuildCache(self)

    # -- locks and staging -----------------------------------------------------------------------------------
    def lock(self, name: str, *, shared: bool = False) -> FileLock:
        """An flock on `locks/<name>.lock`; `name` is a fixed word or `<word>-<digest hex>`, never user text.

        A lock named after an object (it ends in a digest's hex) is transient: its file goes when it is
        released, so `locks/` holds the fixed locks and those of objects being worked on, nothing more.
        """
        return FileLock(os.path.join(self.locks_dir, f"{name}.lock"), shared=shared, transient=_names_object(name))

    def prune_locks(self) -> None:
        """Delete the idle lock files of objects (left by versions that kept one per layer and blob)."""
        from minicache.locks import remove_idle

        for name in os.listdir(self.locks_dir):
            if name.endswith(".lock") and _names_object(name[:-5]):
                remove_idle(os.path.join(self.locks_dir, name))

    def staging_path(self, kind: str) -> str:
        """A fresh, unused path in tmp/ named after this process, so that debris of dead ones can be found."""
        return os.path.join(self.tmp_dir, f"{kind}-{process.self_token()}-{os.urandom(6).hex()}")

    def staging_dir(self, kind: str) -> str:
        path = self.staging_path(kind)
        os.mkdir(path, PRIVATE_DIR)
        return path

    def discard(self, path: str | os.PathLike[str]) -> None:
        """Remove a staging entry or a retired object: rename it into tmp/ first, then delete it there."""
        path = os.fspath(path)
        if not os.path.lexists(path):
            return
        if os.path.dirname(path) != self.tmp_dir:
            retired = self.staging_path("retired")
            os.rename(path, retired)
            path = retired
        remove_tree(path, ignore_errors=True)

    def clear_debris(self) -> None:
        """Delete what dead processes left in tmp/ (named `<kind>-<pid>-<starttime>-<random>`)."""
        try:
            names = os.listdir(self.tmp_dir)
        except FileNotFoundError:
            return
        dead = []
        for name in names:
            parts = name.split("-")
            try:
                pid, started = int(parts[-3]), int(parts[-2])
            except (IndexError, ValueError):
                pid, started = -1, None
            if not process.is_alive(pid, started):
                dead.append(os.path.join(self.tmp_dir, name))
        if dead:
            _unmount_below(dead)  # a build killed mid-step leaves its overlay mounted in tmp/
        for path in dead:
            remove_tree(path, ignore_errors=True)


def _unmount_below(paths: list[str]) -> None:
    """Detach every mount at or below `paths` (deepest first), so removing them never walks into a mount."""
    import contextlib

    from minicache import syscalls

    prefixes = tuple(os.fsencode(os.path.realpath(p)) for p in paths)
    try:
        with open("/proc/self/mountinfo", "rb") as f:
            points = [line.split()[4] for line in f]
    except OSError:
        return
    below = [p for p in points if any(p == pre or p.startswith(pre + b"/") for pre in prefixes)]
    for point in sorted(below, key=len, reverse=True):
        with contextlib.suppress(OSError):
            syscalls.umount(os.fsdecode(point), syscalls.MNT_DETACH)


def _names_object(lock_name: str) -> bool:
    """True for `<word>-<64 hex digits>`: a lock that guards one layer, blob or unpack."""
    word, _, hexpart = lock_name.rpartition("-")
    return bool(word) and len(hexpart) == 64 and not hexpart.strip("0123456789abcdef")


def _check_ours(top: str, entries: frozenset[str]) -> None:
    """Refuse an existing folder that holds something but nothing of a store's (`--root /srv`, `--runroot
    /run`): the store would be made among someone else's files, and closing an old open store would
    chmod all of them 0700/0600."""
    with os.scandir(top) as it:
        names = {entry.name for entry in it} - {"lost+found"}  # a file system of its own, freshly made
    if names and not names & entries:
        option = "--root" if entries is ROOT_ENTRIES else "--runroot"
        raise StoreUnavailable(
            f"{top} is not a minicontainer store: it holds other files",
            hint=f"give {option} an existing store, an empty folder or a path that does not exist yet",
        )


def _mkdir_private(path: str) -> None:
    """mkdir 0700 if missing (the mode set exactly, whatever the umask)."""
    try:
        os.mkdir(path, PRIVATE_DIR)
    except FileExistsError:
        return
    os.chmod(path, PRIVATE_DIR)


def _unusable(root: str, err: OSError) -> Exception:
    """The one-line error for a store that cannot be opened."""
    if (full := disk_full(err, root)) is not None:
        return full
    where = err.filename or root
    if isinstance(err, PermissionError):
        return PermissionDenied(
            f"permission denied: {where}",
            hint="the store belongs to another user: run as root (sudo), or use a store of your own with --root",
        )
    if isinstance(err, (NotADirectoryError, FileExistsError)):
        return StoreUnavailable(
            f"the store root {root} is not a directory ({where})",
            hint="give --root a directory, or a path that does not exist yet",
        )
    return StoreUnavailable(f"cannot open the store at {root}: {err.strerror or err}")
