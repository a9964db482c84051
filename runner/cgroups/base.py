"""The driver interface every cgroup mode implements, and what the drivers share.

A `Cgroup` is one container's cgroup: `create()` before the container's init runs, `join()` from the init
itself (or `add(pid)` from outside), `destroy()` after it exits. Only directories named by the parent path
and the container's own directory are ever written to; the parent path is created once and left in place.
"""

from __future__ import annotations

import errno
import os
import re
import signal
import sys
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING

from minicache.errors import InvalidSpec, MiniError
from minirun.cgroups.limits import Limits, parse_resources
from minirun.errors import ContainerStateError

if TYPE_CHECKING:  # stats.py is imported by the drivers' stats() only: off the `run` hot path
    from typing import Any, TextIO

    from minirun.cgroups.stats import CgroupStats

DEFAULT_PARENT = "minicontainer"
PARENT_ENV = "MINICONTAINER_CGROUP_PARENT"
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.@:-]{0,254}"
ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}"


class CgroupError(MiniError):
    """A cgroup operation the kernel refused or that did not finish in time."""


class CgroupWarning(UserWarning):
    """Limits that were asked for but cannot be applied on this host (shown, never silent)."""


def warn(message: str) -> None:
    warnings.warn(message, CgroupWarning, stacklevel=3)


def show_warnings(prog: str = "minirun", also: Callable[[str], None] | None = None) -> None:
    """Print CgroupWarnings as one line, `prog: warning: message`, on stderr (a CLI calls this once); `also`
    gets each message too (the runtime's --log)."""
    previous = warnings.showwarning

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        if issubclass(category, CgroupWarning):
            print(f"{prog}: warning: {message}", file=file or sys.stderr)
            if also is not None:
                also(str(message))
        else:
            previous(message, category, filename, lineno, file, line)

    warnings.showwarning = show


def check_container_id(container_id: str) -> str:
    if not isinstance(container_id, str) or not re.fullmatch(ID_PATTERN, container_id):
        raise InvalidSpec(
            f"invalid container ID for a cgroup: {container_id!r}",
            hint="use letters, digits, '_', '.' and '-', starting with a letter or digit",
        )
    return container_id


def parent_parts(parent: str) -> tuple[str, ...]:
    """Split and check a cgroup parent path ("minicontainer", "/machine/mc"); never empty, never "..".

    The path is taken from each hierarchy's root, so every invocation finds the same directories.
    """
    parts = tuple(p for p in parent.strip("/").split("/"))
    if not parent.strip("/") or not all(re.fullmatch(NAME_PATTERN, p) for p in parts):
        raise InvalidSpec(
            f"invalid cgroup parent {parent!r}",
            hint="use a path like minicontainer or machine/minicontainer (letters, digits, '_.@:-'), not '..'",
        )
    return parts


def default_parent() -> str:
    return os.environ.get(PARENT_ENV) or DEFAULT_PARENT


# -- file helpers: cgroupfs files are written with one write(2) each, and never created ----------------------
def write(path: str, value: str | int) -> None:
    """Write one value to a cgroup file; a refusal becomes a CgroupError naming file and value."""
    data = str(value).encode()
    try:
        # O_TRUNC is a no-op on cgroupfs; it keeps a plain file (a fake tree) from keeping old bytes.
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
    except OSError as err:
        raise CgroupError(f"cannot open {path}: {err.strerror}") from err
    try:
        os.write(fd, data)
    except OSError as err:
        if err.errno in (errno.EINVAL, errno.ERANGE, errno.EBUSY, errno.ENOSPC):
            raise InvalidSpec(
                f"the kernel refused {value!r} for {os.path.basename(path)} ({err.strerror})",
                hint=f"check the value is possible on this host (it was written to {path})",
            ) from err
        raise CgroupError(f"cannot write {value!r} to {path}: {err.strerror}") from err
    finally:
        os.close(fd)


def read(path: str) -> str | None:
    """A cgroup file's content, stripped; None if the file does not exist."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)  # not open(): its buffering costs more than the read
        try:
            chunks = []
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
        finally:
            os.close(fd)
    except FileNotFoundError:
        return None
    except OSError as err:
        if err.errno == errno.ENODEV:  # the cgroup was removed under us
            return None
        raise
    return b"".join(chunks).decode().strip()


def read_int(path: str) -> int | None:
    """An integer cgroup file ("max" and missing files are None)."""
    text = read(path)
    if text is None or text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        return None


def read_keyed(path: str) -> dict[str, int]:
    """A flat keyed file ("key value" per line: memory.stat, cpu.stat, memory.events, ...)."""
    result: dict[str, int] = {}
    for line in (read(path) or "").splitlines():
        key, _, value = line.partition(" ")
        try:
            result[key] = int(value)
        except ValueError:
            continue
    return result


def read_pids(path: str) -> list[int]:
    """The PIDs in a cgroup.procs file (empty when the cgroup is gone)."""
    return [int(line) for line in (read(path) or "").split()]


def walk_bottom_up(directory: str) -> Iterator[str]:
    """`directory` and every cgroup below it (a container may make its own), children before parents.

    Iterative, not recursive: a container that nests thousands of cgroups must not make destroy() fail.
    """
    stack: list[tuple[str, bool]] = [(directory, False)]
    while stack:
        path, expanded = stack.pop()
        if expanded:
            yield path
            continue
        try:
            entries = list(os.scandir(path))
        except FileNotFoundError:
            continue
        stack.append((path, True))
        stack.extend((e.path, False) for e in entries if e.is_dir(follow_symlinks=False))


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    """Poll `predicate` with a short, growing sleep; CgroupError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.0005
    while not predicate():
        if time.monotonic() > deadline:
            raise CgroupError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.02)


class Cgroup(ABC):
    """One container's cgroup, in whatever mode the host runs. Cheap to construct: touches nothing."""

    mode: str = ""

    def __init__(self, container_id: str, parent: str | None = None) -> None:
        self.container_id = check_container_id(container_id)
        self.parent = parent if parent is not None else default_parent()
        self.parent_parts = parent_parts(self.parent)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.container_id} under {self.parent!r}>"

    # -- life cycle ------------------------------------------------------------------------------------------
    @property
    @abstractmethod
    def paths(self) -> dict[str, str]:
        """Hierarchy (controller name on v1, "unified" on v2) -> the container's directory."""

    def exists(self) -> bool:
        return any(os.path.isdir(p) for p in self.paths.values())

    @abstractmethod
    def create(self, resources: Mapping[str, Any] | Limits | None = None) -> None:
        """Make the directories (parents too) and write the limits; warns about limits it cannot apply."""

    def join(self) -> None:
        """Move the calling process in (writes "0" to cgroup.procs in every hierarchy)."""
        self.add(0)

    def clone_into(self) -> str | None:
        """The one cgroup v2 directory a new process can be created in (clone3), sparing it `join`; None
        where the cgroup is more than that one directory (v1) or nothing joins it (no cgroups)."""
        return None

    @abstractmethod
    def add(self, pid: int) -> None:
        """Move process `pid` (and its threads) in."""

    def apply(self, pid: int) -> None:
        """Alias of `add` under the name runc's cgroup managers use (`Apply`)."""
        self.add(pid)

    @abstractmethod
    def set(self, resources: Mapping[str, Any] | Limits) -> None:
        """Change the limits of a live cgroup (`docker update`)."""

    @abstractmethod
    def pids(self) -> list[int]:
        """Every process inside, in sub-cgroups too, as PIDs of the caller's namespace."""

    # -- accounting ------------------------------------------------------------------------------------------
    @abstractmethod
    def stats(self) -> CgroupStats:
        """CPU time, memory, pids, block I/O and OOM counters; NotFound if the cgroup is gone."""

    @abstractmethod
    def oom_killed(self) -> bool:
        """True if the kernel's OOM killer killed a process in this cgroup."""

    # -- freezer ---------------------------------------------------------------------------------------------
    @abstractmethod
    def freeze(self, timeout: float = 5.0) -> None:
        """Stop every process inside; returns once the kernel reports the cgroup FROZEN."""

    @abstractmethod
    def thaw(self, timeout: float = 5.0) -> None:
        """Let the processes run again."""

    @abstractmethod
    def frozen(self) -> bool:
        """True while the cgroup is frozen (paused)."""

    # -- ending ----------------------------------------------------------------------------------------------
    def kill_all(self, sig: int = signal.SIGKILL) -> int:
        """Send `sig` to every process inside; returns how many were signalled.

        The cgroup is frozen while the PIDs are read and signalled, so none can fork a new one or exit and
        be replaced by an unrelated process with a recycled PID. It is thawed afterwards so the signal is
        delivered (a paused cgroup stays paused for signals other than SIGKILL). Without a freezer the
        signals are sent all the same, and destroy() repeats until the cgroup is empty.
        """
        was_frozen = self.frozen()
        try:
            self.freeze()
            froze = True
        except CgroupError:  # no freezer, or it did not settle: signal anyway, as runc does
            froze = False
        try:
            count = 0
            for pid in self.pids():
                try:
                    os.kill(pid, sig)
                    count += 1
                except ProcessLookupError:
                    pass
        finally:
            if froze and (not was_frozen or sig == signal.SIGKILL):
                try:
                    self.thaw()
                except CgroupError:
                    if self.exists():
                        raise  # else its processes ended and whoever reaped the init removed it: nothing to thaw
        return count

    def destroy(self, timeout: float = 10.0) -> None:
        """Kill what is left inside and remove the container's directories in every hierarchy. Idempotent."""
        if self._remove_empty():
            return
        deadline = time.monotonic() + timeout
        while self.exists():
            if self.pids():
                self.kill_all(signal.SIGKILL)
            if self._remove_dirs():
                return
            if time.monotonic() > deadline:
                left = self.pids()
                raise CgroupError(
                    f"cannot remove the cgroup of container {self.container_id}: "
                    + (f"processes {left[:10]} survive SIGKILL" if left else "the kernel reports it busy"),
                )
            time.sleep(0.005)

    def _remove_empty(self) -> bool:
        """The usual case, in one rmdir per hierarchy: the container's directories are empty leaves (its init
        is reaped and nothing else was left inside). False as soon as one is not: destroy() then kills and walks."""
        for top in dict.fromkeys(self.paths.values()):
            try:
                self._rmdir(top)
            except FileNotFoundError:
                pass
            except OSError:  # EBUSY: processes or sub-cgroups left inside
                return False
        return True

    def _remove_dirs(self) -> bool:
        """rmdir every directory below and including each container directory; False if one is still busy."""
        done = True
        for top in self.paths.values():
            for directory in walk_bottom_up(top):
                try:
                    self._rmdir(directory)
                except FileNotFoundError:
                    pass
                except OSError as err:
                    if err.errno != errno.EBUSY:
                        raise CgroupError(f"cannot remove {directory}: {err.strerror}") from err
                    done = False
        return done

    # -- the two places a fake cgroupfs needs kernel behaviour (tests override them) -------------------------
    def _mkdir(self, path: str) -> bool:
        """Make one cgroup directory; False if it was there already."""
        try:
            os.mkdir(path, 0o755)
        except FileExistsError:
            if not os.path.isdir(path):
                raise CgroupError(f"{path} exists and is not a cgroup directory") from None
            return False
        except OSError as err:
            raise CgroupError(f"cannot create cgroup {path}: {err.strerror}") from err
        return True

    def _rmdir(self, path: str) -> None:
        os.rmdir(path)

    # -- shared helpers --------------------------------------------------------------------------------------
    @staticmethod
    def _limits(resources: Mapping[str, Any] | Limits | None) -> Limits:
        return resources if isinstance(resources, Limits) else parse_resources(resources)

    def _require(self) -> None:
        if not self.exists():
            raise ContainerStateError(
                f"container {self.container_id} has no cgroup (it is not running)",
                hint="start the container first",
            )
