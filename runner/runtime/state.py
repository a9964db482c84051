"""The runtime's record of each container: one private folder per ID under the state root.

    ROOT/ID/state.json   what `create` recorded (written atomically; 0600 in a 0700 folder)
    ROOT/ID/exec.fifo    exists from `create` until `start`: the init blocks opening it for writing
    ROOT/.seccomp/       compiled seccomp programs (`Store.seccomp_cache`); no ID starts with a dot

The status is never stored: it is derived from the recorded init (its PID and start time, so a reused PID
does not count) and the fifo. No process of the runtime stays behind to keep it up to date.

Every verb but `create` and `run` needs only this module, so it imports nothing beyond `os` and `json`
(no pathlib, re or shutil): each verb is a process of its own, and its imports are its start-up.
Paths are str. The state lives under /run, a tmpfs, so nothing here is fsynced.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from typing import Any

from minicache import process as procinfo
from minicache.errors import Conflict, InvalidSpec, MiniError, NotFound

DEFAULT_ROOT = "/run/minirun-runtime"
OCI_VERSION = "1.2.0"
FIFO = "exec.fifo"
SECCOMP_CACHE = ".seccomp"
MAX_ID = 1024
_ID_FIRST = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_ID_CHARS = _ID_FIRST | frozenset("_.+-")


class StateError(MiniError):
    """The state folder cannot be used (wrong owner or mode, unreadable record)."""


def check_id(container_id: str) -> str:
    """A container ID that can name a folder: no `/`, no `..`, no leading dot or dash, at most 1024 bytes.

    Letters and digits are ASCII only (a set, not str.isalnum, which takes any script's letters).
    """
    if not (0 < len(container_id) <= MAX_ID and container_id[0] in _ID_FIRST and _ID_CHARS.issuperset(container_id)):
        raise InvalidSpec(
            f"invalid container ID {container_id!r}",
            hint="use letters, digits and _ . + - (starting with a letter or digit), at most 1024 characters",
        )
    return container_id


def _private_dir(path: str, what: str, *, follow: bool = True) -> None:
    """Create `path` 0700 if missing; refuse one someone else owns or others may write to (or, without
    `follow`, a symlink)."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    st = os.stat(path, follow_symlinks=follow)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise StateError(
            f"{what} {path} is owned by uid {st.st_uid} with mode {st.st_mode & 0o777:o}",
            hint="give --root a folder only this user owns and may write",
        )


class Store:
    """The state root (`--root`)."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)

    def ensure(self) -> None:
        """Create the root 0700; refuse a root someone else owns or others may write to."""
        parent = os.path.dirname(self.root)
        if not os.path.isdir(parent):
            os.makedirs(parent, exist_ok=True)
        _private_dir(self.root, "state root")

    def folder(self, container_id: str) -> str:
        return os.path.join(self.root, check_id(container_id))

    def make(self, container_id: str) -> str:
        """The new container's folder; Conflict if the ID is taken."""
        self.ensure()
        folder = self.folder(container_id)
        try:
            os.mkdir(folder, 0o700)
        except FileExistsError:
            raise Conflict(f"container {container_id} exists", hint="delete it first or pick another ID") from None
        return folder

    def seccomp_cache(self) -> str | None:
        """The folder of compiled seccomp programs, private to this user; None (compile every time) if the
        root cannot hold one. The entries are checked again where they are read (`seccomp.program`)."""
        path = os.path.join(self.root, SECCOMP_CACHE)
        try:
            self.ensure()
            _private_dir(path, "seccomp cache", follow=False)
        except (OSError, StateError):
            return None
        return path

    def ids(self) -> list[str]:
        try:
            names = os.listdir(self.root)
        except (FileNotFoundError, NotADirectoryError):
            return []
        return sorted(n for n in names if not n.startswith(".") and os.path.isfile(self._record(n)))

    def _record(self, container_id: str) -> str:
        return os.path.join(self.root, container_id, "state.json")

    def load(self, container_id: str) -> Container:
        folder = self.folder(container_id)
        try:
            with open(os.path.join(folder, "state.json"), "rb") as f:
                record = json.loads(f.read())
        except FileNotFoundError:
            raise NotFound(f"container {container_id} does not exist", hint="`list` shows the containers") from None
        except (OSError, ValueError) as e:
            raise StateError(f"cannot read the state of {container_id}: {e}") from None
        return Container(folder, record)


class Container:
    """One container's recorded state and what follows from it."""

    def __init__(self, folder: str, record: dict[str, Any]) -> None:
        self.folder = folder
        self.record = record

    @property
    def id(self) -> str:
        return str(self.record["id"])

    @property
    def pid(self) -> int:
        return int(self.record.get("pid") or 0)

    @property
    def fifo(self) -> str:
        return os.path.join(self.folder, FIFO)

    def save(self) -> None:
        from minicache.atomic import atomic_write_json

        atomic_write_json(os.path.join(self.folder, "state.json"), self.record, durable=False)

    def alive(self) -> bool:
        return self.pid > 0 and procinfo.is_alive(self.pid, self.record.get("starttime"))

    def cgroup(self) -> Any:
        """The container's cgroup driver object (nothing is created), None if it has none."""
        where = self.record.get("cgroup")
        if not where:
            return None
        from minirun import cgroups

        return cgroups.open(where[1], where[0])

    def status(self) -> str:
        if not self.alive():
            return "stopped"
        if os.path.exists(self.fifo):
            return "created"
        cgroup = self.cgroup()
        try:
            if cgroup is not None and cgroup.frozen():
                return "paused"
        except (OSError, MiniError):
            pass
        return "running"

    def oci_state(self) -> dict[str, Any]:
        """The OCI runtime spec's state, plus runc's rootfs, created and owner."""
        status = self.status()
        out: dict[str, Any] = {
            "ociVersion": OCI_VERSION,
            "id": self.id,
            "pid": self.pid if status != "stopped" else 0,
            "status": status,
            "bundle": self.record.get("bundle", ""),
            "rootfs": self.record.get("rootfs", ""),
            "created": self.record.get("created", ""),
            "owner": self.record.get("owner", ""),
        }
        if self.record.get("annotations"):
            out["annotations"] = self.record["annotations"]
        return out

    def remove_fifo(self) -> None:
        """Forget the exec fifo: the container is no longer `created`."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.fifo)

    def remove(self) -> None:
        """Remove the folder. It holds only files this runtime made (no subfolders), so no tree walk."""
        try:
            names = os.listdir(self.folder)
        except FileNotFoundError:
            return
        except OSError:
            names = []
        for name in names:
            try:
                os.unlink(os.path.join(self.folder, name))
            except FileNotFoundError:
                pass
            except IsADirectoryError:
                import shutil  # not made by this runtime; never on the common path

                shutil.rmtree(os.path.join(self.folder, name), ignore_errors=True)
            except OSError:
                pass
        with contextlib.suppress(OSError):
            os.rmdir(self.folder)
