"""Closing a store that an older version made with open modes (folders 0755, container records 0644).

Run once, when the store's root (or run-time state) is found open to other users: afterwards the root is
0700 and the check on every open is a single stat. Only what minicontainer itself made is touched, never
the inside of a layer snapshot or of a container's filesystem (their modes are the image's).
"""

from __future__ import annotations

import contextlib
import os
import stat
from typing import TYPE_CHECKING

if TYPE_CHECKING:

    from minicache.store import Store

PRIVATE_DIR = 0o700  # every folder of the store and of the run-time state
# The run-time root may let one group pass through (x only, no listing) to `minirun serve`'s API socket,
# when a `minicontainer` group exists; every entry below it stays closed.
RUN_ROOT_DIR = 0o710
PRIVATE_FILE = 0o600  # a container's config, environment, state and log; lock files
# Bind-mounted into the container as /etc/...: a user other than root inside the container reads them.
# They hold names and addresses only; the container's 0700 directory closes them to the host's users.
CONTAINER_SHARED_FILES = frozenset({"hosts", "hostname", "resolv.conf"})
# What the store's root and its run-time state hold, every folder made by Store as it opens: nothing else
# there is touched (or it is not a store). The object folders are closed one by one (never the inside of a
# snapshot); the record folders (minirun's seccomp cache, network definitions and serve's token) as a tree.
OBJECT_FOLDERS = frozenset({"blobs", "layers", "images", "containers", "tmp", "locks", "buildcache"})
RECORD_FOLDERS = frozenset({"cache", "networks", "serve"})
ROOT_FILES = frozenset({"events.log", "events.log.1"})  # the event log both CLIs append to
ROOT_ENTRIES = OBJECT_FOLDERS | RECORD_FOLDERS | ROOT_FILES
API_SOCKET = "api.sock"  # `minirun serve`'s default socket, in the run-time root
RUN_ROOT_FOLDERS = frozenset({"netns", "networks", "mounts", "runtime"})
RUN_ROOT_ENTRIES = RUN_ROOT_FOLDERS | {API_SOCKET}


def _chmod(path: str, mode: int, kind: int) -> None:
    """chmod `path` if it is of `kind` (S_IFDIR or S_IFREG) and looser than `mode`; a symlink is left alone."""
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        st = os.lstat(path)
        if stat.S_IFMT(st.st_mode) == kind and stat.S_IMODE(st.st_mode) & ~mode:
            os.chmod(path, stat.S_IMODE(st.st_mode) & mode)


def _entries(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _close_tree(path: str) -> None:
    """Every folder under `path` 0700 (or tighter) and every file 0600 (or tighter): locks, network records."""
    if os.path.islink(path):  # os.walk would follow it
        return
    _chmod(path, PRIVATE_DIR, stat.S_IFDIR)
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames:
            _chmod(os.path.join(dirpath, name), PRIVATE_DIR, stat.S_IFDIR)
        for name in filenames:
            _chmod(os.path.join(dirpath, name), PRIVATE_FILE, stat.S_IFREG)


def tighten(store: Store) -> None:
    """Close the store to other users: its folders 0700, containers' records, state and logs 0600."""
    _chmod(store.root, PRIVATE_DIR, stat.S_IFDIR)
    _chmod(store.run_root, RUN_ROOT_DIR, stat.S_IFDIR)
    for name in _entries(store.root):
        if name in OBJECT_FOLDERS or name == os.path.basename(store.run_root):
            _chmod(os.path.join(store.root, name), PRIVATE_DIR, stat.S_IFDIR)
        elif name in RECORD_FOLDERS:
            _close_tree(os.path.join(store.root, name))
        elif name in ROOT_FILES:
            _chmod(os.path.join(store.root, name), PRIVATE_FILE, stat.S_IFREG)
    _chmod(store.blobs_dir, PRIVATE_DIR, stat.S_IFDIR)
    for name in _entries(store.layers_dir):  # the snapshot's folder, not its fs/ (the image's root)
        _chmod(os.path.join(store.layers_dir, name), PRIVATE_DIR, stat.S_IFDIR)
    for name in _entries(store.containers_dir):
        directory = os.path.join(store.containers_dir, name)
        _chmod(directory, PRIVATE_DIR, stat.S_IFDIR)
        for entry in _entries(directory):
            if entry not in CONTAINER_SHARED_FILES:  # folders (upper/, rootfs/) keep theirs
                _chmod(os.path.join(directory, entry), PRIVATE_FILE, stat.S_IFREG)
    _close_tree(store.locks_dir)
    # Run-time state: each folder closed, without walking into netns/ or mounts/ (their entries are mount
    # points: a namespace, an image's root filesystem); networks/ holds records only.
    for name in _entries(store.run_root):
        if name in RUN_ROOT_FOLDERS:
            _chmod(os.path.join(store.run_root, name), PRIVATE_DIR, stat.S_IFDIR)
    _close_tree(store.run_networks_dir)
