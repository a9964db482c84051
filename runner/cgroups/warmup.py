"""Keep the kernel's slow first move into a cgroup off a container's start (cgroup v1).

Moving a process into a cgroup takes the writer side of the kernel's global cgroup_threadgroup_rwsem. The
first such move after a quiet spell waits for an RCU grace period (7-20 ms on our 2-core hosts); moves
within about one more grace period are cheap. A container's init joins its cgroup right after its fork,
so without help it pays that wait on the critical path of every start.

    warmup.start(parent)   # early: a thread moves itself into the parent cgroup every few milliseconds
    ...                    # the engine creates the record, mounts the root, writes the spec
    warmup.stop()          # before forking the init (no thread may run then); the init's join is cheap

The thread moves only itself (v1 `tasks`), into the parent level of the pids hierarchy (made by minirun
for its containers, or named by --cgroup-parent), and exits there: no directory is made for it, nothing
is left behind, and the container's own cgroup sees no process but its own. v2 moves whole processes only
(cgroup.threads needs a threaded subtree), so there this does nothing. Any failure just skips the help.
"""

from __future__ import annotations

import _thread
import os

from minicache.errors import MiniError

INTERVAL = 0.003  # seconds between moves: well under a grace period, so the fast state never lapses
_HIERARCHIES = ("pids", "freezer", "blkio")  # no controller there refuses a thread (cpuset may be empty)
_active: tuple[_thread.LockType, _thread.LockType, list[int]] | None = None  # (stop, finished, [thread id])


def start(parent: str | None = None) -> None:
    """Start keeping cgroup moves cheap, for a container about to start under `parent` (default parent if None)."""
    global _active
    if _active is not None:
        return
    try:
        tasks = _tasks_file(parent)
    except (MiniError, OSError):
        return
    if tasks is None:
        return
    # _thread rather than threading: `threading` is not otherwise imported on the `run` path
    stop_, finished, tid = _thread.allocate_lock(), _thread.allocate_lock(), []
    stop_.acquire()
    finished.acquire()
    _thread.start_new_thread(_keep_warm, (tasks, stop_, finished, tid))
    _active = (stop_, finished, tid)


def stop() -> None:
    """Stop the thread and return once it is gone (the caller is about to fork)."""
    global _active
    if _active is None:
        return
    stop_, finished, tid = _active
    _active = None
    stop_.release()
    finished.acquire()
    # the thread released `finished` as its last act, a moment before the kernel removes it
    task = f"/proc/self/task/{tid[0] if tid else 0}"
    for _ in range(10000):
        if not os.path.exists(task):
            break
        os.sched_yield()


def _tasks_file(parent: str | None) -> bytes | None:
    from minirun.cgroups.base import default_parent, parent_parts
    from minirun.cgroups.host import detect, writable

    host = detect()
    if host.mode != "v1" or not host.v1:
        return None
    hierarchy = next((host.v1[h] for h in _HIERARCHIES if h in host.v1), None)
    if hierarchy is None or not writable(hierarchy):
        return None
    directory = hierarchy.joinpath(*parent_parts(parent if parent is not None else default_parent()))
    directory.mkdir(parents=True, exist_ok=True)  # as create() would make it moments later
    return os.fsencode(directory / "tasks")


def _keep_warm(tasks: bytes, stop_: _thread.LockType, finished: _thread.LockType, tid: list[int]) -> None:
    try:
        tid.append(_thread.get_native_id())
        me = str(tid[0]).encode()
        while True:
            fd = os.open(tasks, os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, me)  # an explicit TID: the kernel takes the global lock (and waits) for it
            finally:
                os.close(fd)
            if stop_.acquire(timeout=INTERVAL):
                return
    except OSError:
        return
    finally:
        finished.release()
