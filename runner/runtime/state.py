"""The runtime's record of each container: one private folder per ID under the state root.

    ROOT/ID/state.json   what `create` recorded (written atomically; 0600 in a 0700 folder)
    ROOT/ID/exec.fifo    exists from `create` until `start`: the init blocks opening it for writing

The status is never stored: it is derived from the recorded init (its PID and start time, so a reused PID
does not count) and the fifo. No process of the runtime stays behind to keep it up to date.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from minicache import process as procinfo
from minicache.errors import Conflict, InvalidSpec, MiniError, NotFound

DEFAULT_ROOT = "/run/minirun-runtime"
OCI_VERSION = "1.2.0"
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,1023}")
FIFO = "exec.fifo"


class StateError(MiniError):
    """The state folder cannot be used (wrong owner or mode, unreadable record)."""


def check_id(container_id: str) -> str:
    """A container ID that can name a folder: no `/`, no `..`, no leading dot or dash, at most 1024 bytes."""
    if not _ID.fullmatch(container_id):
        raise InvalidSpec(
            f"invalid container ID {container_id!r}",
            hint="use letters, digits and _ . + - (starting with a letter or digit), at most 1024 characters",
        )
    return container_id


class Store:
    """The state root (`--root`)."""

    def __init__(self, root: str) -> None:
        self.root = Path(root)

    def ensure(self) -> None:
        """Create the root 0700; refuse a root someone else owns or others may write to."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = self.root.stat()
        if st.st_uid != os.geteuid() or st.st_mode & 0o022:
            raise StateError(
                f"state root {self.root} is owned by uid {st.st_uid} with mode {st.st_mode & 0o777:o}",
                hint="give --root a folder only this user owns and may write",
            )

    def folder(self, container_id: str) -> Path:
        return self.root / check_id(container_id)

    def make(self, container_id: str) -> Path:
        """The new container's folder; Conflict if the ID is taken."""
        self.ensure()
        folder = self.folder(container_id)
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            raise Conflict(f"container {container_id} exists", hint="delete it first or pick another ID") from None
        return folder

    def ids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / "state.json").is_file())

    def load(self, container_id: str) -> Container:
        folder = self.folder(container_id)
        try:
            record = json.loads((folder / "state.json").read_bytes())
        except FileNotFoundError:
            raise NotFound(f"container {container_id} does not exist", hint="`list` shows the containers") from None
        except (OSError, ValueError) as e:
            raise StateError(f"cannot read the state of {container_id}: {e}") from None
        return Container(folder, record)


class Container:
    """One container's recorded state and what follows from it."""

    def __init__(self, folder: Path, record: dict[str, Any]) -> None:
        self.folder = folder
        self.record = record

    @property
    def id(self) -> str:
        return str(self.record["id"])

    @property
    def pid(self) -> int:
        return int(self.record.get("pid") or 0)

    @property
    def fifo(self) -> Path:
        return self.folder / FIFO

    def save(self) -> None:
        from minicache.atomic import atomic_write_json

        atomic_write_json(self.folder / "state.json", self.record, durable=False)

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
        if self.fifo.exists():
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

    def remove(self) -> None:
        import shutil

        shutil.rmtree(self.folder, ignore_errors=True)
