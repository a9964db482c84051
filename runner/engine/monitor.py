"""The monitor of a detached container: minirun's conmon.

`run -d` and `start` fork it from the CLI before anything heavy is imported, so it stays small; it
survives the CLI (own session), adopts the container (PR_SET_CHILD_SUBREAPER) and:

- owns the container's stdio (pipes, or the pty master) and writes its output to the log (minirun.engine.logs),
- reaps the container's init, notes its exit code and time (`containers/<id>/exit`),
- runs the exit step (cgroup removed, root unmounted, exit recorded, `--rm` honoured) and the restart
  policy, and starts the container again when the policy says so.

The monitor itself never imports the engine. Each start and each exit step runs in a helper forked from
the monitor (it imports what it needs, does the work holding the container's lock, reports over a
socket pair and exits); the container's init, started by the helper with kill_with_parent off, is
re-parented to the monitor when the helper exits.

    CLI ──fork──▶ monitor ──fork──▶ helper ──Runtime.run──▶ container init
     ▲  report pipe: {"id"} | {"error"}  ◀────┘   (helper exits; the init is adopted by the monitor)
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import select
import signal
import sys
import time
from typing import TYPE_CHECKING

from minirun.runtime.channel import Channel

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, NoReturn

    from minicache.store import Store
    from minirun.engine.containers import Container

STARTED, NOTHING, DECIDED = "started", "nothing", "decided"
_DRAIN_TIMEOUT = 2.0  # seconds to read what is left in the pipes once the init has exited
_PR_SET_CHILD_SUBREAPER = 36


# -- the CLI's side ---------------------------------------------------------------------------------------------
def launch(store_args: tuple[str | None, str | None], job: Callable[[Store], Container]) -> dict[str, Any]:
    """Fork a monitor whose first helper runs `job` and starts the container it returns.

    Returns the helper's report ({"id": ..., "warnings": [...]}) once the container runs, or raises the
    MiniError the helper hit (same message, hint and exit code). Call it before importing heavy modules:
    the monitor keeps whatever this process has loaded.
    """
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        _monitor(store_args, job, write_end)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 65536):
        chunks.append(chunk)
    os.close(read_end)
    report = json.loads(b"".join(chunks) or b"{}")
    if "id" not in report:
        from minicache.errors import MiniError

        err = MiniError(report.get("message") or "the container's monitor failed", hint=report.get("hint"))
        err.exit_code = int(report.get("code", 125))
        raise err
    return report


# -- the monitor ----------------------------------------------------------------------------------------------------
def _monitor(store_args: tuple[str | None, str | None], job: Callable[[Store], Container], report_fd: int) -> NoReturn:
    code = 0
    try:
        os.setsid()
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        import gc

        gc.collect()
        with contextlib.suppress(AttributeError):  # glibc: give back the heap the CLI's parsing left (~0.7 MiB)
            ctypes.CDLL(None).malloc_trim(0)
        null = os.open("/dev/null", os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.close(null)
        os.chdir("/")
        for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU):
            signal.signal(sig, signal.SIG_IGN)
        monitor = Monitor(store_args)
        monitor.run(job, report_fd)
    except BaseException:  # a bug in the monitor: leave a trace beside the container, never crash silently
        code = 1
        with contextlib.suppress(Exception):
            import traceback

            directory = monitor.container_dir if "monitor" in locals() else None
            if directory:
                fd = os.open(os.path.join(directory, "monitor.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                with open(fd, "a") as f:
                    traceback.print_exc(file=f)
    os._exit(code)


class Monitor:
    def __init__(self, store_args: tuple[str | None, str | None]) -> None:
        self.store_args = store_args
        self.reaped: dict[int, int] = {}  # pid -> exit code, for children reaped before we knew them
        self.wake_r, self.wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so SIGCHLD wakes select via the pipe
        self.container_dir: str | None = None

    # -- helpers --------------------------------------------------------------------------------------------------
    def _store(self) -> Store:
        from minicache.store import Store

        return Store(*self.store_args)

    def _helper(self, work: Callable[..., None], *args: Any) -> tuple[int, Channel]:
        """Fork a helper running `work(channel, *args)`; the monitor keeps the other end of the channel."""
        ours, theirs = Channel.pair()
        pid = os.fork()
        if pid == 0:
            ours.close()
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            os.close(self.wake_r)
            os.close(self.wake_w)
            code = 0
            try:
                work(theirs, *args)
            except BaseException:
                code = 1
                with contextlib.suppress(Exception):
                    import traceback

                    traceback.print_exc()
            os._exit(code)
        theirs.close()
        return pid, ours

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            code = os.waitstatus_to_exitcode(status)
            self.reaped[pid] = 128 - code if code < 0 else code

    def _drain_wakeups(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self.wake_r, 4096):
                pass

    def _ask(self, work: Callable[..., None], *args: Any) -> tuple[dict[str, Any] | None, list[int]]:
        """Run a helper and return its one message (None if it died without one)."""
        pid, chan = self._helper(work, *args)
        try:
            message, fds = chan.recv()
        finally:
            chan.close()
        while pid not in self.reaped:
            select.select([self.wake_r], [], [], 0.5)
            self._drain_wakeups()
            self._reap()
        del self.reaped[pid]
        return message, fds

    # -- the loop -----------------------------------------------------------------------------------------------------
    def run(self, job: Callable[[Store], Container], report_fd: int) -> None:
        restarted = False
        delay = 0.0
        report: int | None = report_fd
        while True:
            message, fds = self._ask(_start_helper, self.store_args, job, restarted, report)
            if report is not None:
                os.close(report)
                report = None
            if not message or message.get("t") != STARTED:
                for fd in fds:
                    os.close(fd)
                return
            self.container_dir = message["dir"]
            container_id, pid, started_at = message["id"], message["pid"], time.monotonic()
            code = self._relay(pid, message["streams"], fds)
            self._note_exit(pid, message["start_time"], code, container_id)
            decision, _ = self._ask(_exit_helper, self.store_args, container_id, pid, code)
            if not decision or not decision.get("restart"):
                return
            from minirun.engine.lifecycle import next_delay

            delay = next_delay(delay, time.monotonic() - started_at)
            time.sleep(delay)
            restarted = True
            job = _existing(container_id)

    def _relay(self, pid: int, streams: list[str], fds: list[int]) -> int:
        """Copy the container's output to its log until the init has exited and its output ended; its code."""
        from minirun.engine.logs import LOG_NAME, LogWriter

        assert self.container_dir is not None
        log = LogWriter(os.path.join(self.container_dir, LOG_NAME))
        readers = {fd: name for fd, name in zip(fds, streams, strict=False) if name != "stdin"}
        keep_open = [fd for fd, name in zip(fds, streams, strict=False) if name == "stdin"]
        deadline: float | None = None
        try:
            while readers or pid not in self.reaped:
                if pid in self.reaped and deadline is None:
                    deadline = time.monotonic() + _DRAIN_TIMEOUT
                timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
                ready, _, _ = select.select([*readers, self.wake_r], [], [], timeout)
                if not ready and deadline is not None:
                    break  # something outside the container holds the pipe open: stop reading
                for fd in ready:
                    if fd == self.wake_r:
                        self._drain_wakeups()
                        self._reap()
                        continue
                    try:
                        data = os.read(fd, 65536)
                    except OSError as e:
                        if e.errno != errno.EIO:  # EIO: every slave of the pty is closed
                            raise
                        data = b""
                    if data:
                        log.write(readers[fd], data)
                    else:
                        log.flush(readers.pop(fd))
                        os.close(fd)
        finally:
            for fd in [*readers, *keep_open]:
                os.close(fd)
            log.close()
        return self.reaped.pop(pid)

    def _note_exit(self, pid: int, start_time: int | None, code: int, container_id: str) -> None:
        from minicache.atomic import atomic_write_json
        from minirun.engine.containers import now
        from minirun.engine.lifecycle import EXIT_FILE

        assert self.container_dir is not None
        # The OOM verdict goes in the note: `wait` returns on the note, and `inspect` must then say OOMKilled
        # although the exit step (which destroys the cgroup that knows) may not have run yet.
        oom = _oom_killed(self.container_dir, container_id)
        note = {"Pid": pid, "PidStartTime": start_time, "ExitCode": code, "FinishedAt": now(), "OOMKilled": oom}
        try:
            atomic_write_json(os.path.join(self.container_dir, EXIT_FILE), note)
        except FileNotFoundError:  # removed (rm -f) meanwhile
            pass
        except OSError as e:  # a full disk: the exit step records what it can, the next command the rest
            if e.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise


def _oom_killed(container_dir: str, container_id: str) -> bool:
    """True if the OOM killer struck in the container's cgroup (read before the exit step removes it)."""
    from minicache.atomic import read_json
    from minicache.errors import MiniError
    from minirun.runtime.cgroup import for_spec

    try:
        cgroup = for_spec(read_json(os.path.join(container_dir, "config.json")), container_id)
        return cgroup.exists() and cgroup.oom_killed()
    except (OSError, ValueError, MiniError):  # removed meanwhile, or no cgroup: the exit step decides
        return False


# -- jobs, run in helpers ---------------------------------------------------------------------------------------------
def _existing(container_id: str) -> Callable[[Store], Container]:
    def job(store: Store) -> Container:
        from minirun.engine.containers import Container

        return Container(store, container_id)

    return job


def existing(container_id: str) -> Callable[[Store], Container]:
    """The start job for a container that exists (`start`, `restart`)."""
    return _existing(container_id)


def _report(fd: int | None, data: dict[str, Any]) -> None:
    if fd is None:
        return
    with contextlib.suppress(OSError):  # the CLI was killed: nobody to tell
        os.write(fd, json.dumps(data).encode())


def _start_helper(
    chan: Channel,
    store_args: tuple[str | None, str | None],
    job: Callable[[Store], Container],
    restarted: bool,
    report_fd: int | None,
) -> None:
    """Start the container with its stdio on pipes (or a pty) the monitor reads; tell the monitor and the CLI."""
    import warnings

    from minicache.errors import MiniError, disk_full
    from minicache.store import Store
    from minirun.cgroups.base import CgroupWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CgroupWarning)
        try:
            try:
                store = Store(*store_args)
                container = job(store)
                started = _start_container(store, container, restarted)
            except OSError as e:  # a full disk: the same one line as a foreground run's
                full = disk_full(e, "the store")
                if full is None:
                    raise
                raise full from e
        except MiniError as err:
            _report(report_fd, {"message": str(err), "hint": err.hint, "code": err.exit_code})
            chan.send(NOTHING)
            return
    if started is None:
        _report(report_fd, {"id": container.id})  # already running (start), or stopped meanwhile (restart)
        chan.send(NOTHING)
        return
    proc, streams, fds = started
    chan.send(
        STARTED,
        fds=fds,
        id=container.id,
        dir=str(container.dir),
        pid=proc.pid,
        start_time=proc.start_time,
        streams=streams,
    )
    for fd in fds:
        os.close(fd)
    warned = [str(w.message) for w in caught if issubclass(w.category, CgroupWarning)]
    _report(report_fd, {"id": container.id, "warnings": warned})


def _start_container(store: Store, container: Container, restarted: bool) -> tuple[Any, list[str], list[int]] | None:
    """Start `container` with its stdio on this helper's 0/1/2 (see _stdio); None if there is nothing to start."""
    from minirun.engine import steps

    return steps.start_monitored(store, container, restarted=restarted, monitor_pid=os.getppid(), stdio=_stdio)


def _stdio(tty: bool, interactive: bool) -> tuple[list[str], list[int], list[int]]:
    """Put the container's stdio on this process's 0/1/2: (stream names, the monitor's ends, ends to close).

    Output goes into pipes the monitor reads; stdin is /dev/null, or with -i a pipe the monitor holds
    open (and never writes to), as Docker keeps a detached container's stdin open. With a terminal the
    container's own pty carries everything and these stay /dev/null.
    """
    null = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
    if tty:
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.close(null)
        return [], [], []
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    streams, ours, theirs = ["stdout", "stderr"], [out_r, err_r], [out_w, err_w, null]
    os.dup2(out_w, 1)
    os.dup2(err_w, 2)
    if interactive:
        in_r, in_w = os.pipe2(os.O_CLOEXEC)
        os.dup2(in_r, 0)
        theirs.append(in_r)
        streams.append("stdin")
        ours.append(in_w)
    else:
        os.dup2(null, 0)
    return streams, ours, theirs


def _exit_helper(
    chan: Channel, store_args: tuple[str | None, str | None], container_id: str, pid: int, code: int
) -> None:
    from minicache.store import Store
    from minirun.engine import lifecycle
    from minirun.engine.containers import Container

    store = Store(*store_args)
    restart = lifecycle.after_exit(store, Container(store, container_id), pid, code, os.getppid())
    chan.send(DECIDED, restart=restart)
