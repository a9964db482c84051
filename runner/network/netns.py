"""Network namespaces as files: `<run_root>/netns/<container id>`.

Made as `ip netns add` makes them: a forked child unshares CLONE_NEWNET and bind-mounts its
/proc/self/ns/net onto the file, so the namespace lives on without any process in it; the parent never
leaves its own namespace. Removed by a lazy unmount and unlink: the kernel frees the namespace, with its
interfaces, once no process is left in it.

pyroute2.netns.create does the same, but importing it adds ctypes.util, multiprocessing and pyroute2's
child-process machinery to every container start, for fifteen lines of work; and it
makes the folder a shared bind mount of itself, which would outlive every container. The syscalls come
from minicache.syscalls; everything done *inside* the namespace (loopback, addresses, routes) goes
through minirun.network.rtnl.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from minicache import syscalls
from minicache.errors import Conflict, MiniError
from minirun.runtime.syscalls import CLONE_NEWNET, unshare

if TYPE_CHECKING:
    from minicache.store import Store


def path_for(store: Store, container_id: str) -> str:
    return os.path.join(store.netns_dir, container_id)


def is_netns(path: str | os.PathLike[str]) -> bool:
    """True if `path` is a bound network namespace (a file of the nsfs filesystem)."""
    try:
        return os.stat(path).st_dev == os.stat("/proc/self/ns/net").st_dev
    except OSError:
        return False


def _bind_new_namespace(path: str) -> None:
    """In a forked child: a new network namespace, bound at `path`. Reports an errno as exit status."""
    pid = os.fork()
    if pid == 0:  # the child: only syscalls, then _exit (no Python cleanup, no buffered output)
        code = 0
        try:
            unshare(CLONE_NEWNET)
            syscalls.mount("/proc/self/ns/net", path, None, syscalls.MS_BIND)
        except OSError as e:
            code = e.errno or 255
        except BaseException:
            code = 255
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code:
        message = os.strerror(code) if 0 < code < 255 else f"status {code}"
        raise OSError(code if 0 < code < 255 else 0, message)


def create(path: str | os.PathLike[str], *, loopback_up: bool = True) -> Path:
    """A new network namespace bound at `path` (which must not exist), loopback up unless told not to."""
    path = Path(path)
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444))
    except FileExistsError:
        raise Conflict(f"network namespace {path} already exists", hint="detach the container first") from None
    try:
        _bind_new_namespace(str(path))
    except OSError as e:
        path.unlink(missing_ok=True)
        raise MiniError(f"cannot create the network namespace {path}: {e.strerror}") from None
    if loopback_up:
        from minirun.network.rtnl import Rtnl

        try:
            with Rtnl(netns=str(path)) as rtnl:
                rtnl.set_up(1)  # the loopback device is index 1 in every namespace
        except BaseException:
            remove(path)
            raise
    return path


def remove(path: str | os.PathLike[str]) -> bool:
    """Unmount (lazily) and delete a namespace file; False if there was none."""
    path = Path(path)
    if not os.path.lexists(path):
        return False
    if is_netns(path):
        syscalls.umount(path, syscalls.MNT_DETACH)
    path.unlink(missing_ok=True)
    return True
