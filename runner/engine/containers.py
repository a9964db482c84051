"""Container records under `containers/<id>/`, names, lookup and the per-container lock.

    containers/<id>/container.json   who it is: Id, Name, Image, ImageName, Created, Config, HostConfig, ...
    containers/<id>/config.json      the OCI spec (the directory is an OCI bundle)
    containers/<id>/state.json       Status (created|running|paused|restarting|exited), Pid, PidStartTime,
                                     StartedAt, FinishedAt, ExitCode, Error, OOMKilled, BootId, MonitorPid,
                                     MonitorStartTime, StopRequested, RestartCount
    containers/<id>/exit             written by the monitor when it reaped the process (see minirun.engine.monitor)
    containers/<id>/log              the output of a detached container (JSON lines, see minirun.engine.logs)
    containers/<id>/rootfs/          mount point of the root filesystem (upper/ and work/ beside it)
    (the directory itself is flock'ed while the container changes state)
    containers/names/<name>          symlink → <id>: a name is taken by one atomic symlink(2)

A container directory appears by one rename from tmp/, complete; its name is published after it,
under the `container-names` lock, so a name never points at a half-made container.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from typing import TYPE_CHECKING

from minicache import events, process
from minicache.atomic import atomic_write, atomic_write_json, fsync_dir, read_json
from minicache.errors import Conflict, InvalidSpec, NotFound
from minicache.record import Record
from minicache.store import Store
from minirun.engine.flags import validate_name
from minirun.errors import ContainerStateError

if TYPE_CHECKING:
    from types import TracebackType
    from typing import Any

    from minirun.runtime.operations import Runtime

NAMES_DIR = "names"
CREATED, RUNNING, PAUSED, RESTARTING, EXITED = "created", "running", "paused", "restarting", "exited"
ACTIVE = frozenset({RUNNING, PAUSED})  # a process is (or should be) there
UNKNOWN_EXIT = 255  # exit code recorded when nobody saw the process end (Docker's code for a lost exit)
_ADJECTIVES = [
    "admiring",
    "agitated",
    "amazing",
    "blissful",
    "bold",
    "brave",
    "busy",
    "calm",
    "clever",
    "cool",
    "dazzling",
    "eager",
    "ecstatic",
    "elegant",
    "epic",
    "festive",
    "focused",
    "friendly",
    "gallant",
    "gifted",
    "happy",
    "hopeful",
    "jolly",
    "keen",
    "kind",
    "lucid",
    "modest",
    "nifty",
    "peaceful",
    "quirky",
    "relaxed",
    "serene",
    "sharp",
    "stoic",
    "sweet",
    "tender",
    "trusting",
    "vibrant",
    "wizardly",
    "youthful",
    "zealous",
]
_SURNAMES = [
    "babbage",
    "bell",
    "carson",
    "curie",
    "darwin",
    "dijkstra",
    "einstein",
    "euler",
    "feynman",
    "franklin",
    "galileo",
    "goodall",
    "hamilton",
    "hopper",
    "hypatia",
    "johnson",
    "kepler",
    "knuth",
    "lamarr",
    "liskov",
    "lovelace",
    "mayer",
    "mcclintock",
    "meitner",
    "newton",
    "noether",
    "pasteur",
    "perlman",
    "ritchie",
    "shannon",
    "sinoussi",
    "stallman",
    "swartz",
    "tesla",
    "thompson",
    "torvalds",
    "turing",
    "wozniak",
    "yalow",
]


def _choice(items: list[str]) -> str:
    return items[int.from_bytes(os.urandom(4), "big") % len(items)]


def now() -> str:
    """RFC 3339 UTC with nanoseconds, as Docker writes its timestamps (without importing datetime)."""
    ns = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1_000_000_000)) + f".{ns % 1_000_000_000:09d}Z"


def runtime(store: Store) -> Runtime:
    """The runtime that holds this store's containers: its state root is the store's run-time `runtime/`
    folder, and it is the truth about their processes. Its warnings (a failing hook) are minirun's."""
    from minirun.runtime.operations import Runtime

    return Runtime(store.runtime_dir, warn=_runtime_warning)


def _runtime_warning(message: str) -> None:
    import sys

    print(f"minirun: warning: {message}", file=sys.stderr)


class State(Record):
    Status: str = CREATED
    Pid: int = 0
    PidStartTime: int | None = None
    StartedAt: str | None = None
    FinishedAt: str | None = None
    ExitCode: int | None = None
    Error: str | None = None
    OOMKilled: bool = False
    BootId: str | None = None
    MonitorPid: int = 0  # the process that waits for Pid: the monitor, or the CLI of a foreground run
    MonitorStartTime: int | None = None
    StopRequested: bool = False  # stop/kill/rm asked for the exit: no restart policy applies
    RestartCount: int = 0

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> State:
        return cls(**{k: v for k, v in data.items() if k in cls._fields})

    def _same_boot(self) -> bool:
        return self.BootId is None or self.BootId == process.boot_id()

    def monitor_alive(self) -> bool:
        """True if the process that waits for the container (monitor or foreground CLI) still runs."""
        return bool(self.MonitorPid) and self._same_boot() and process.is_alive(self.MonitorPid, self.MonitorStartTime)


class ContainerLock:
    """An exclusive flock on the container's directory; NotFound if the container was removed meanwhile.

    The directory itself is locked (flock works on directories), so no lock file has to be created and
    deleted with every container. Released on exit, close or process death.
    """

    def __init__(self, container: Container) -> None:
        self.container = container
        self._fd: int | None = None

    def _gone(self) -> NotFound:
        """Removed by another command meanwhile: Docker's message for a container that is not there."""
        return NotFound(f"No such container: {self.container.id[:12]}")

    def __enter__(self) -> Container:
        try:
            fd = os.open(self.container.dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise self._gone() from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if not os.path.isfile(self.container.record_path):  # removed (renamed into tmp/) while we waited
                raise self._gone()
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self.container

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class Container:
    def __init__(self, store: Store, container_id: str) -> None:
        self.store = store
        self.id = container_id
        self.dir = os.path.join(store.containers_dir, container_id)
        self._record: dict[str, Any] | None = None

    # -- paths (the directory is an OCI bundle) --------------------------------------------------------------
    @property
    def record_path(self) -> str:
        return os.path.join(self.dir, "container.json")

    @property
    def spec_path(self) -> str:
        return os.path.join(self.dir, "config.json")

    @property
    def state_path(self) -> str:
        return os.path.join(self.dir, "state.json")

    def process_alive(self, state: State) -> bool:
        """True if `state` says the container runs and the runtime agrees (its init lives)."""
        if state.Status not in ACTIVE or not state.Pid:
            return False
        return runtime(self.store).alive(self.id)

    @property
    def rootfs(self) -> str:
        return os.path.join(self.dir, "rootfs")

    @property
    def upper(self) -> str:
        return os.path.join(self.dir, "upper")

    @property
    def work(self) -> str:
        return os.path.join(self.dir, "work")

    # -- contents ----------------------------------------------------------------------------------------------
    @property
    def record(self) -> dict[str, Any]:
        if self._record is None:
            try:
                self._record = read_json(self.record_path)
            except FileNotFoundError:
                raise NotFound(f"No such container: {self.id[:12]}") from None
        return self._record

    @property
    def name(self) -> str:
        return self.record["Name"]

    def update_record(self, changes: dict[str, Any], *, durable: bool = True) -> None:
        self._record = {**self.record, **changes}
        atomic_write_json(self.record_path, self._record, durable=durable)

    def state(self) -> State:
        try:
            return State.from_json(read_json(self.state_path))
        except FileNotFoundError:
            return State()

    def set_state(self, state: State, *, durable: bool = True) -> None:
        atomic_write_json(self.state_path, state.as_dict(), durable=durable)

    def note_state(self, state: State, *, durable: bool = True) -> bool:
        """`set_state`, except that a full disk is tolerated (False): the state file keeps its last content.

        For what must work on a full disk (stop, kill, rm -f, recording an exit): the recorded state is only
        a claim, and the next command checks it against the process (see minirun.engine.lifecycle).
        """
        try:
            self.set_state(state, durable=durable)
        except OSError as e:
            import errno

            if e.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            return False
        return True

    def spec(self) -> dict[str, Any]:
        return read_json(self.spec_path)

    def write_spec(self, spec: dict[str, Any], *, durable: bool = True) -> None:
        # Compact: json's C encoder only runs without indent, and the seccomp list makes the spec ~10 KB.
        atomic_write(self.spec_path, json.dumps(spec, separators=(",", ":")).encode(), durable=durable)

    def lock(self) -> ContainerLock:
        return ContainerLock(self)


class ContainerStore:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.dir = store.containers_dir
        self.names_dir = os.path.join(self.dir, NAMES_DIR)

    @staticmethod
    def new_id() -> str:
        return os.urandom(32).hex()  # what secrets.token_hex(32) does, without importing secrets (hashlib, hmac)

    def ids(self) -> list[str]:
        return [n for n in os.listdir(self.dir) if len(n) == 64 and not n.strip("0123456789abcdef")]

    def all(self) -> list[Container]:
        return [Container(self.store, i) for i in self.ids()]

    def _name_target(self, name: str) -> str | None:
        if "/" in name or "\0" in name or len(name.encode(errors="surrogateescape")) > 255:
            return None  # no container is named so: not a file name of names/
        try:
            return os.readlink(os.path.join(self.names_dir, name))
        except (FileNotFoundError, NotADirectoryError):
            return None

    def _owner(self, name: str) -> Container | None:
        """The container `name` belongs to: its link points at a container whose record carries the name.

        A link to a removed container, or one left by a crash in the middle of a rename, belongs to nobody.
        """
        target = self._name_target(name)
        if target is None or len(target) != 64 or "/" in target:
            return None
        container = Container(self.store, target)
        try:
            return container if container.record.get("Name") == name else None
        except (NotFound, ValueError):
            return None

    def _name_free(self, name: str) -> bool:
        if self._name_target(name) is None:
            return True
        if self._owner(name) is not None:
            return False
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(self.names_dir, name))  # left by a crash (removal or rename): stale
        return True

    def _check_free(self, name: str) -> None:
        """Conflict (Docker's message) if `name` belongs to a container; call under the `container-names` lock."""
        if not self._name_free(name):
            other = self._name_target(name) or "?"
            raise Conflict(
                f'the container name "/{name}" is already in use by container "{other}"',
                hint="you have to remove (or rename) that container to be able to reuse that name",
            )

    def generate_name(self) -> str:
        for attempt in range(20):
            name = f"{_choice(_ADJECTIVES)}_{_choice(_SURNAMES)}"
            if attempt >= 10:
                name += str(int.from_bytes(os.urandom(2), "big"))
            if self._name_target(name) is None:
                return name
        raise Conflict("could not generate a free container name", hint="give one with --name")

    def create(self, record: dict[str, Any], *, name: str | None = None, durable: bool = True) -> Container:
        """Make a container directory holding `record` (Id, Name and Created are filled in) and take its name."""
        if name is not None:
            validate_name(name)
        container_id = self.new_id()
        staging = self.store.staging_dir("container")
        try:
            # The container's folder (staging) is 0700: it closes these to other users. upper/ stays 0755,
            # as it gives the container's / its mode; rootfs/ is covered by the mount.
            for sub, mode in (("rootfs", 0o755), ("upper", 0o755), ("work", 0o700)):
                os.mkdir(os.path.join(staging, sub), mode)
            os.makedirs(self.names_dir, mode=0o700, exist_ok=True)
            with self.store.lock("container-names"):
                if name is None:
                    name = self.generate_name()
                else:
                    self._check_free(name)
                full = {**record, "Id": container_id, "Name": name, "Created": now()}
                atomic_write_json(os.path.join(staging, "container.json"), full, durable=durable)
                atomic_write_json(os.path.join(staging, "state.json"), State().as_dict(), durable=durable)
                os.rename(staging, os.path.join(self.dir, container_id))
                os.symlink(container_id, os.path.join(self.names_dir, name))
        except BaseException:
            self.store.discard(staging)
            raise
        if durable:
            fsync_dir(self.dir)
            fsync_dir(self.names_dir)
        container = Container(self.store, container_id)
        container._record = full
        return container

    def get(self, ref: str) -> Container:
        """By full ID, name, or unique ID prefix (as Docker)."""
        if not ref:
            raise InvalidSpec("empty container reference")
        if len(ref) == 64 and os.path.isfile(os.path.join(self.dir, ref, "container.json")):
            return Container(self.store, ref)
        owner = self._owner(ref) if "/" not in ref and ref not in (".", "..") else None
        if owner is not None:
            return owner
        if not ref.strip("0123456789abcdef"):
            matches = [i for i in self.ids() if i.startswith(ref)]
            if len(matches) == 1:
                return Container(self.store, matches[0])
            if len(matches) > 1:
                raise InvalidSpec(f"container ID prefix {ref!r} is ambiguous", hint="give more digits or the name")
        raise NotFound(f"No such container: {ref}")

    def rename(self, container: Container, new_name: str) -> None:
        """Give `container` the name `new_name` (Conflict if taken); the old name is free afterwards."""
        validate_name(new_name)
        old = container.name
        if new_name == old:
            raise Conflict(f'the container is already named "{new_name}"', hint="choose a different name")
        with self.store.lock("container-names"):
            self._check_free(new_name)
            os.symlink(container.id, os.path.join(self.names_dir, new_name))
            try:
                container.update_record({"Name": new_name})
            except BaseException:
                os.unlink(os.path.join(self.names_dir, new_name))
                raise
            if self._name_target(old) == container.id:
                os.unlink(os.path.join(self.names_dir, old))
        fsync_dir(self.names_dir)
        events.container(self.store, "rename", container.id, container.record, oldName=old)

    def remove(self, container: Container) -> None:
        """Delete the container's directory and release its name. Its root filesystem must be unmounted."""
        from minicache.overlay import is_mounted

        if is_mounted(container.rootfs):
            raise ContainerStateError(
                f"container {container.id[:12]} still has its root filesystem mounted", hint="stop it first"
            )
        record = container.record
        name = record.get("Name")
        with self.store.lock("container-names"):
            if name and self._name_target(name) == container.id:
                os.unlink(os.path.join(self.names_dir, name))
            self.store.discard(container.dir)
        events.container(self.store, "destroy", container.id, record)
