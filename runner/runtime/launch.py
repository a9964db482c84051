"""Start an OCI bundle's process: the parent's half of the runtime.

    proc = start(bundle_dir, container_id)      # returns once the container's process has exec'ed
    status = proc.wait()                        # its exit code, or 128+N if signal N killed it

The container's init is forked while this process has no other threads. For a new PID namespace the
parent unshares CLONE_NEWPID (which only affects its future children), forks, and setns()es straight back,
so the child is PID 1 and the parent is unchanged. On cgroup v2 the child is instead created by clone3
inside its cgroup (and its PID namespace) where the kernel can (minirun.runtime.clone).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from typing import TYPE_CHECKING

from minicache import process as procinfo
from minicache.errors import MiniError
from minirun.errors import CannotInvoke, CommandNotFound
from minirun.runtime import child, config
from minirun.runtime import syscalls as sc
from minirun.runtime.channel import CREATED, ERROR, GO, PTY, READY, SPAWNED, Channel

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from minirun.runtime.cgroup import CgroupHook


AUTO = "auto"  # start(cgroup=AUTO): the cgroup the bundle's linux.cgroupsPath names (the default)


class StartError(MiniError):
    """The container's process could not be set up (Docker's 125)."""


class Process:
    """A started container process (its PID 1, seen from the host)."""

    def __init__(self, pid: int, cgroup: CgroupHook | None) -> None:
        self.pid = pid
        self.start_time = procinfo.start_time(pid)
        self.pty_master: int | None = None
        self.returncode: int | None = None
        self.oom_killed = False  # set by wait(): the kernel's OOM killer struck inside the container's cgroup
        self.command_pid: int | None = None  # exec: the command the process (which stands in for it) spawned
        self._cgroup = cgroup

    def signal(self, signum: int) -> None:
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)
            if signum == signal.SIGKILL and self.command_pid is not None:  # a stand-in cannot pass SIGKILL on
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.command_pid, signum)

    def wait(self) -> int:
        """Reap the process; its exit code, or 128+N for death by signal N.

        Then the cgroup is asked whether the OOM killer struck (`oom_killed`) and destroyed.
        """
        if self.returncode is None:
            _, status = os.waitpid(self.pid, 0)
            code = os.waitstatus_to_exitcode(status)
            if self.command_pid is not None:
                # Killed before it reaped the command (the container's cgroup was killed), the process that
                # stood in for it left it to us: reap it too, or its zombie would keep the container's PID
                # namespace, and so its init, from ending.
                with contextlib.suppress(ChildProcessError):
                    _, status = os.waitpid(self.command_pid, 0)
                    if code < 0:
                        code = os.waitstatus_to_exitcode(status)
            self.returncode = 128 - code if code < 0 else code
            self._destroy_cgroup()
        return self.returncode

    def _destroy_cgroup(self) -> None:
        if self._cgroup is not None:
            cgroup, self._cgroup = self._cgroup, None
            check = getattr(cgroup, "oom_killed", None)
            self.oom_killed = bool(check and check())
            cgroup.destroy()


def _thread_count() -> int:
    with open("/proc/self/stat", "rb") as f:
        return int(f.read().rsplit(b")", 1)[1].split()[17])  # field 20, num_threads


def _fork_into(cgroup_dir: str, flags: int) -> int | None:
    """clone3 into `cgroup_dir` (see minirun.runtime.clone): 0 in the child, its PID, or None where it cannot."""
    try:
        fd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    from minirun.runtime.clone import fork_into

    try:
        return fork_into(fd, flags)
    finally:
        os.close(fd)


def _fork_in_pid_namespace(path: str | None, new: bool, cgroup_dir: str | None = None) -> tuple[int, bool]:
    """fork(); with `new` or `path`, the child is created in a new (or that) PID namespace. With `cgroup_dir`
    (cgroup v2) the child is created in that cgroup where the kernel can. (PID or 0, born in the cgroup)."""
    if cgroup_dir is not None and path is None:
        pid = _fork_into(cgroup_dir, sc.CLONE_NEWPID if new else 0)
        if pid is not None:
            return pid, True
    if not new and path is None:
        return os.fork(), False
    own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    pid = -1
    try:
        if path is not None:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                sc.setns(fd, sc.CLONE_NEWPID)
            finally:
                os.close(fd)
        else:
            sc.unshare(sc.CLONE_NEWPID)
        pid = os.fork()
    finally:
        if pid != 0:  # the parent (or a failed fork): future children go back to our own PID namespace
            sc.setns(own, sc.CLONE_NEWPID)
        os.close(own)
    return pid, False


def start(
    bundle: str | os.PathLike[str],
    container_id: str,
    *,
    stdin_open: bool = True,
    cgroup: CgroupHook | str | None = AUTO,
    seccomp_cache: str | None = None,
    kill_with_parent: bool = True,
    preserve_fds: int = 0,
    on_ready: Callable[[int], dict[str, Any] | None] | None = None,
    meanwhile: Callable[[int], None] | None = None,
    exec_fifo: str | None = None,
    spec: dict[str, Any] | None = None,
) -> Process:
    """Run the bundle's process and return once it has exec'ed (or raise the error that stopped it).

    `stdin_open=False` gives the process /dev/null as stdin (without a terminal). `on_ready(pid)` runs
    in the parent when the child's namespaces exist and before its mounts: the place to plumb networks.
    `meanwhile(pid)` runs while the child mounts and execs (on another core; after `on_ready` if given):
    the place for work that does not have to come before the container's process, such as bookkeeping.
    Without `on_ready` the child does not stop to wait for the parent at all.
    `cgroup` is the container's cgroup: AUTO (the one the spec names), a CgroupHook, or None for none.
    `kill_with_parent=False` lets the container outlive this process (a monitor adopts it).
    With `exec_fifo` (a fifo's path) this returns once the process is set up: it waits before execve until
    the fifo is opened for reading (`minirun-runtime start`). `spec` is the bundle's, when already loaded.
    """
    if spec is None:
        spec = config.load(bundle)
    if isinstance(cgroup, str):  # AUTO
        from minirun.runtime.cgroup import for_spec

        cgroup = for_spec(spec, container_id)
    cfg = config.prepare(
        spec,
        bundle,
        stdin_open=stdin_open,
        seccomp_cache=seccomp_cache,
        kill_with_parent=kill_with_parent,
        preserve_fds=preserve_fds,
        cgroup=cgroup,
    )
    cfg.wait_for_go = on_ready is not None
    cfg.exec_fifo = exec_fifo
    return launch(cfg, owns_cgroup=True, on_ready=on_ready, meanwhile=meanwhile)


def exec_in(
    spec: dict[str, Any],
    process: dict[str, Any],
    container_pid: int,
    *,
    cgroup: CgroupHook | None,
    stdin_open: bool = True,
    seccomp_cache: str | None = None,
    kill_with_parent: bool = True,
) -> Process:
    """Run `process` (an OCI process object) inside the running container whose init is `container_pid`.

    Like `runc exec`: the new process joins the container's namespaces and cgroup and gets its seccomp
    filter; the process object brings the capabilities, no_new_privs, user, environment and directory.
    Returns once it has exec'ed; its errors are the same 125/126/127 errors as `start`'s.

    The returned Process is the joining process, which stays outside the container's PID namespace and
    stands in for the command it spawned there (signals in, exit status out); this process becomes a
    child subreaper so that it can reap the command if the stand-in is killed first.
    """
    cfg = config.prepare_exec(
        spec,
        process,
        container_pid,
        stdin_open=stdin_open,
        seccomp_cache=seccomp_cache,
        kill_with_parent=kill_with_parent,
        cgroup=cgroup,
    )
    sc.prctl(sc.PR_SET_CHILD_SUBREAPER, 1)  # see Process.wait
    return launch(cfg, owns_cgroup=False)


def launch(
    cfg: config.ChildConfig,
    *,
    owns_cgroup: bool,
    on_ready: Callable[[int], dict[str, Any] | None] | None = None,
    meanwhile: Callable[[int], None] | None = None,
) -> Process:
    """Fork the child that runs `cfg`, handshake with it, return once it has exec'ed.

    With `owns_cgroup` the cgroup is created before the fork and destroyed when the process is reaped;
    otherwise (exec) the child only joins it.
    """
    if _thread_count() > 1:  # another thread may hold a lock the child would then wait on forever
        raise StartError(
            "cannot start a container from a process that runs threads",
            hint="start containers before anything starts threads (tqdm, a thread pool), or from another process",
        )
    cgroup = cfg.cgroup if owns_cgroup else None
    if cgroup is not None:
        cgroup.create(cfg.resources)
    try:
        parent_end, child_end = Channel.pair()
        sys.stdout.flush()
        sys.stderr.flush()
        # Born inside its cgroup (v2, clone3), the child has nothing to join: see minirun.runtime.clone.
        clone_into = getattr(cfg.cgroup, "clone_into", None)
        pid, inside = _fork_in_pid_namespace(*cfg.pid_namespace, clone_into() if clone_into else None)
        if pid == 0:
            if inside:
                cfg.cgroup = None
            parent_end.close()
            if cfg.sealed:
                from minirun.runtime import sealed

                sealed.reexec(cfg, child_end)  # never returns
            child.main(cfg, child_end)  # never returns
        child_end.close()
        proc = Process(pid, cgroup)
    except BaseException:
        if cgroup is not None:
            cgroup.destroy()
        raise
    try:
        if meanwhile is not None and on_ready is None:
            meanwhile(proc.pid)  # the child is already busy with its namespaces and mounts
        _handshake(proc, parent_end, on_ready, meanwhile)
    except BaseException:
        proc.signal(signal.SIGKILL)
        proc.wait()
        raise
    finally:
        parent_end.close()
    return proc


def _handshake(
    proc: Process,
    chan: Channel,
    on_ready: Callable[[int], dict[str, Any] | None] | None,
    meanwhile: Callable[[int], None] | None,
) -> None:
    while True:
        message, fds = chan.recv()
        if message is None:
            return  # the child's end closed on execve (or the child died; wait() will tell)
        kind = message.get("t")
        if kind == CREATED:
            return  # set up and waiting on its exec fifo
        if kind == READY:
            extra = on_ready(proc.pid) if on_ready is not None else None
            chan.send(GO, **(extra or {}))
            if meanwhile is not None:
                meanwhile(proc.pid)
        elif kind == SPAWNED:
            proc.command_pid = int(message.get("pid", 0)) or None
        elif kind == PTY and fds:
            proc.pty_master = fds[0]
            for extra in fds[1:]:
                os.close(extra)
        elif kind == ERROR:
            for fd in fds:
                os.close(fd)
            if proc.pty_master is not None:
                os.close(proc.pty_master)
                proc.pty_master = None
            code = int(message.get("code", 125))
            text = str(message.get("msg", "the container's process failed to start"))
            proc.wait()
            if code == 127:
                raise CommandNotFound(text, hint="check the command and the image's PATH")
            if code == 126:
                hint = message.get("hint") or "check the file is an executable the container's user may run"
                raise CannotInvoke(text, hint=str(hint))
            raise StartError(f"container init failed: {text}")
