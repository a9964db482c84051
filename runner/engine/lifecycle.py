"""The container state machine: every change of a container's recorded state, and what `ps`, `stop`, `kill`,
`pause`, `rm`, `wait` ... do to a container.

    created ──start──▶ running ◀──unpause── paused
       ▲                 │  └────pause────────▲
       └──(start fails)  ▼ (exit; restart policy) ──▶ restarting ──▶ running
                       exited ──start──▶ running          rm: gone

The recorded state is only a claim: the truth about the process is the runtime's (minirun.runtime.operations,
its state folder under the store's runtime root: created, running, paused or stopped), and about whoever waits
for it the monitor's (or the foreground CLI's) PID and start time. Every signal, pause, resume and delete goes
through the runtime's operations; the record adds what Docker shows on top (Pid, StartedAt, ExitCode, ...).
`observe` shows the truth without changing anything; `settle` (under the container's lock) writes it
down and cleans what a crashed CLI or monitor left: mounts, cgroup, processes. The engine's steps
(minirun.engine.steps) record a start and an exit through `record_start`, `record_exit` and `finish`; the
monitor's exit step is `after_exit`. Nothing here imports the steps.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from typing import TYPE_CHECKING

from minicache import events
from minicache.atomic import read_json
from minicache.errors import MiniError
from minirun.engine import networking, rootfs
from minirun.engine.containers import (
    ACTIVE,
    CREATED,
    EXITED,
    PAUSED,
    RESTARTING,
    RUNNING,
    UNKNOWN_EXIT,
    Container,
    ContainerStore,
    State,
    now,
    runtime,
)
from minirun.engine.flags import RestartPolicy, parse_signal
from minirun.errors import ContainerStateError

if TYPE_CHECKING:
    from minicache.store import Store
    from minirun.cgroups import Cgroup

EXIT_FILE = "exit"  # {"Pid", "PidStartTime", "ExitCode", "FinishedAt"}: written by the monitor when it reaped Pid
LOST = "exit status unknown: nothing was watching the container when it ended"
QUICK_RUN = 10.0  # seconds; a run shorter than this doubles the restart delay (Docker's backoff)
DEFAULT_STOP_TIMEOUT = 10  # seconds, as Docker


def runtime_delete(container: Container) -> None:
    """Forget the container in the runtime (killing what is left): its cgroup goes, poststop hooks run."""
    runtime(container.store).delete(container.id, force=True)


# -- start and exit -----------------------------------------------------------------------------------------------
def record_start(container: Container, pid: int, monitor: int, *, restarted: bool, durable: bool) -> None:
    """Write the state of a container whose process `pid` has just started, reaped by `monitor`."""
    from minicache.process import boot_id, start_time

    old = container.state()
    state = State(
        RUNNING,
        pid,
        start_time(pid),
        StartedAt=now(),
        FinishedAt=old.FinishedAt,
        ExitCode=0,
        BootId=boot_id(),
        MonitorPid=monitor,
        MonitorStartTime=start_time(monitor),
        RestartCount=old.RestartCount + (1 if restarted else 0),
    )
    container.set_state(state, durable=durable)
    events.container(container.store, "start", container.id, container.record)


def startable(state: State, restarted: bool) -> bool:
    """Whether the monitor starts the container (settled `state`): a first start of one that is not running,
    or a restart that nobody stopped meanwhile."""
    if restarted:
        return state.Status == RESTARTING and not state.StopRequested
    return state.Status not in ACTIVE


def container_cgroup(container: Container) -> Cgroup:
    """The container's cgroup driver object, from its spec (or, before the first start, its options)."""
    from minirun import cgroups
    from minirun.runtime.cgroup import for_spec

    try:
        return for_spec(container.spec(), container.id)
    except FileNotFoundError:
        parent = (container.record.get("Options") or {}).get("cgroup_parent")
        return cgroups.open(container.id, parent)


def record_exit(
    container: Container, code: int, *, error: str | None = None, started: bool = True, oom: bool = False
) -> State:
    """Write the state after the process ended (or, with `started=False`, failed to start)."""
    durable = not container.record.get("AutoRemove")
    state = container.state()
    state.Status = EXITED if started else CREATED
    state.ExitCode = code
    state.FinishedAt = now() if started else None
    state.Error = error
    state.OOMKilled = oom
    state.Pid = 0
    state.MonitorPid = 0
    state.MonitorStartTime = None
    container.note_state(state, durable=durable)  # on a full disk the next command finds the process gone
    if started:
        events.container(container.store, "die", container.id, container.record, exitCode=code)
    return state


def finish(container: Container, code: int, *, error: str | None = None, oom: bool | None = None) -> State:
    """Everything after the container's process is gone (call it holding the lock; idempotent).

    Deletes the container in the runtime, which kills what is left and removes the cgroup (asking it first
    whether the OOM killer struck, unless `oom` is known), unmounts the root filesystem and records the exit.
    """
    try:
        cgroup = container_cgroup(container)
    except MiniError:
        cgroup = None
    if cgroup is not None and oom is None:
        oom = cgroup.exists() and cgroup.oom_killed()
    runtime_delete(container)
    if cgroup is not None:
        cgroup.destroy()  # a runtime that never recorded it (a start that failed early) left it to us
    networking.detach(container.store, container)
    rootfs.unmount(container)
    return record_exit(container, code, error=error, oom=bool(oom))


def delete(store: Store, container: Container) -> None:
    """Delete a container whose process is gone: what `finish` cleans (again, harmlessly), then its record."""
    runtime_delete(container)
    with contextlib.suppress(MiniError):
        container_cgroup(container).destroy()
    networking.detach(store, container)
    rootfs.unmount(container)
    ContainerStore(store).remove(container)


# -- the truth ----------------------------------------------------------------------------------------------------
def exit_record(container: Container, state: State) -> dict | None:
    """The monitor's note of how the recorded process ended, if it is about that process."""
    try:
        note = read_json(os.path.join(container.dir, EXIT_FILE))
    except (FileNotFoundError, ValueError):
        return None
    if note.get("Pid") == state.Pid and note.get("PidStartTime") == state.PidStartTime:
        return note
    return None


def _exited(state: State, note: dict | None) -> State:
    """`state` as it is once its process is gone: with the monitor's exit code, or the unknown one."""
    state.Status = EXITED
    state.ExitCode = note["ExitCode"] if note else UNKNOWN_EXIT
    state.FinishedAt = note.get("FinishedAt") if note else state.FinishedAt
    state.Error = None if note else LOST
    state.OOMKilled = bool(note.get("OOMKilled")) if note else state.OOMKilled
    state.Pid = 0
    state.MonitorPid = 0
    return state


def observe(container: Container, *, patience: float = 0.2) -> State:
    """The container's state as it really is, without changing anything (for ps, inspect, wait).

    A process that ended while its monitor lives is about to be recorded: the monitor gets `patience`
    seconds to write its exit note, and if it is slower (a loaded machine) the container is still shown as
    it was recorded, as Docker shows it until its daemon has handled the exit. Only a dead monitor makes
    the exit code unknown: guessing while the monitor lives made `wait` print 255 for a container that
    exited 137 under load. With `patience=0` (is its process running now?) a process that is gone counts
    as exited at once.
    """
    state = container.state()
    if state.Status == RESTARTING and not state.monitor_alive():
        state.Status = EXITED
    if state.Status not in ACTIVE or container.process_alive(state):
        return state
    deadline = time.monotonic() + patience
    while True:
        note = exit_record(container, state)
        if note is not None or not state.monitor_alive() or patience <= 0:
            return _exited(state, note)
        if time.monotonic() > deadline:
            return state
        time.sleep(0.01)


def settle(store: Store, container: Container) -> State:
    """Write down the truth and clean what a crash left (call it holding the container's lock).

    An active container whose process is gone and whose monitor is dead is finished here (cgroup
    removed, root unmounted), with the monitor's exit code if it noted one, else the unknown code.
    A created or exited container keeps nothing mounted, nor anything in the runtime.
    """
    state = container.state()
    if state.Status in ACTIVE:
        if container.process_alive(state) or state.monitor_alive():
            return state  # running, or ended and its monitor records it as soon as we release the lock
        note = exit_record(container, state)
        return finish(
            container,
            note["ExitCode"] if note else UNKNOWN_EXIT,
            error=None if note else LOST,
            oom=note.get("OOMKilled") if note else None,
        )
    if state.Status == RESTARTING and not state.monitor_alive():
        state.Status = EXITED
        container.note_state(state)
    if state.Status in (CREATED, EXITED) and not state.monitor_alive():
        from minicache.overlay import is_mounted

        if is_mounted(container.rootfs):
            rootfs.unmount(container)
        runtime_delete(container)  # what a start or an exit step killed half-way left in the runtime, if anything
    return state


def restart_policy(container: Container) -> RestartPolicy:
    return RestartPolicy(**(container.record.get("HostConfig", {}).get("RestartPolicy") or {}))


def should_restart(policy: RestartPolicy, state: State) -> bool:
    """Docker's rule, applied by the monitor after the process ended and its exit was recorded."""
    if state.StopRequested or policy.Name == "no":
        return False
    if policy.Name == "on-failure":
        failed = state.ExitCode not in (0, None)
        return failed and (policy.MaximumRetryCount == 0 or state.RestartCount < policy.MaximumRetryCount)
    return True  # always, unless-stopped


def next_delay(previous: float, ran_for: float) -> float:
    """Docker's backoff: 100 ms, doubled after every run shorter than 10 s, at most a minute."""
    if previous == 0 or ran_for >= QUICK_RUN:
        return 0.1
    return min(previous * 2, 60.0)


# -- signals ------------------------------------------------------------------------------------------------------
def _signal(container: Container, sig: int, *, all: bool = False) -> None:
    """Send `sig` to the container's init (or with `all` to its every process) through the runtime."""
    with contextlib.suppress(MiniError, OSError):  # ended meanwhile: nothing to signal
        runtime(container.store).kill(container.id, sig, all=all)


def _thaw(container: Container, state: State) -> None:
    with contextlib.suppress(MiniError, OSError):  # not frozen (any more): nothing to resume
        runtime(container.store).resume(container.id)
    state.Status = RUNNING
    container.note_state(state)


def _wait_gone(container: Container, state: State, timeout: float) -> bool:
    """Wait until the recorded process is gone; False if it still runs after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.002
    while container.process_alive(state):
        if time.monotonic() >= deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
    return True


def _wait_recorded(store: Store, container: Container, timeout: float = 10.0) -> None:
    """After the process is gone: wait for its monitor to record the exit, or record it ourselves."""
    deadline = time.monotonic() + timeout
    while True:
        state = container.state()
        if state.Status not in ACTIVE:
            return
        if not state.monitor_alive() or time.monotonic() >= deadline:
            with container.lock():
                settle(store, container)
                state = container.state()
                if state.Status in ACTIVE and not container.process_alive(state):
                    finish(container, UNKNOWN_EXIT, error="the monitor did not record the exit in time")
            return
        time.sleep(0.01)


def stop_signal(container: Container) -> int:
    return parse_signal(container.record.get("Config", {}).get("StopSignal") or "SIGTERM")


def stop(store: Store, container: Container, timeout: float | None = None) -> None:
    """The stop signal (image's StopSignal or SIGTERM), SIGKILL after `timeout` seconds; no restart follows.

    Stopping a container that is not running does nothing (as `docker stop`).
    """
    with container.lock():
        state = settle(store, container)
        if state.Status == RESTARTING:  # between two runs: the monitor sees this and starts nothing
            state.StopRequested = True
            state.Status = EXITED
            container.note_state(state)
            return
        if state.Status not in ACTIVE:
            return
        if timeout is None:
            configured = container.record.get("Config", {}).get("StopTimeout")
            timeout = DEFAULT_STOP_TIMEOUT if configured is None else configured
        # The signal first, then the record (the monitor reads it under this lock, once we release it):
        # on a full disk the record may fail, the stop must not.
        if timeout > 0:
            _signal(container, stop_signal(container))
        state.StopRequested = True
        container.note_state(state)
        if timeout > 0 and state.Status == PAUSED:
            _thaw(container, state)
    if timeout <= 0 or not _wait_gone(container, state, timeout):
        kill_now(store, container, state)
    _wait_recorded(store, container)
    events.container(store, "stop", container.id, container.record)


def kill_now(store: Store, container: Container, state: State) -> None:
    """SIGKILL everything in the container's cgroup (the init too), and wait until the init is gone."""
    with container.lock():
        _signal(container, signal.SIGKILL, all=True)  # freezes, kills, thaws: nothing forks away meanwhile
        _signal(container, signal.SIGKILL)
        if not _wait_gone(container, state, 10.0):
            raise ContainerStateError(f"container {container.name} did not die from SIGKILL within 10 s")
        fresh = container.state()
        if fresh.Status == PAUSED:
            fresh.Status = RUNNING
            container.note_state(fresh)


def kill(store: Store, container: Container, sig: int = signal.SIGKILL) -> None:
    """Send `sig` to the container's init (`docker kill`); no restart policy applies afterwards."""
    with container.lock():
        state = settle(store, container)
        if state.Status == RESTARTING:
            state.StopRequested = True
            state.Status = EXITED
            container.note_state(state)
            return
        if state.Status not in ACTIVE:
            raise ContainerStateError(f"container {container.name} is not running", hint="start it first")
        _signal(container, sig)  # first: on a full disk the record below may fail, the kill must not
        state.StopRequested = True
        container.note_state(state)
        events.container(store, "kill", container.id, container.record, signal=sig)
        if state.Status == PAUSED and sig in (signal.SIGKILL, stop_signal(container)):
            _thaw(container, state)  # as Docker: the signal is delivered once the processes run


def pause(store: Store, container: Container) -> None:
    with container.lock():
        state = settle(store, container)
        if state.Status == PAUSED:
            raise ContainerStateError(f"container {container.name} is already paused")
        if state.Status != RUNNING:
            raise ContainerStateError(f"container {container.name} is not running", hint="start it first")
        runtime(store).pause(container.id)
        state.Status = PAUSED
        container.set_state(state)
    events.container(store, "pause", container.id, container.record)


def unpause(store: Store, container: Container) -> None:
    with container.lock():
        state = settle(store, container)
        if state.Status != PAUSED:
            raise ContainerStateError(f"container {container.name} is not paused")
        _thaw(container, state)
    events.container(store, "unpause", container.id, container.record)


def remove(store: Store, container: Container, *, force: bool = False) -> None:
    """Delete the container; a running one only with `force` (killed first). Whatever a crash left goes too."""
    with container.lock():
        state = settle(store, container)
        if state.Status in ACTIVE:
            if not force:
                paused = state.Status == PAUSED  # Docker's wording for each
                raise ContainerStateError(
                    f"you cannot remove a {'paused' if paused else 'running'} container {container.id}",
                    hint=("unpause and then " if paused else "")
                    + "stop the container before attempting removal or force remove (rm -f)",
                )
            state.StopRequested = True
            container.note_state(state)  # under the lock, before the kill: the monitor restarts nothing
    if state.Status in ACTIVE:
        kill_now(store, container, state)
    with container.lock():
        delete(store, container)
    monitor = State(MonitorPid=state.MonitorPid, MonitorStartTime=state.MonitorStartTime)
    deadline = time.monotonic() + 5.0
    while monitor.monitor_alive() and time.monotonic() < deadline:  # it notices the removal and ends:
        time.sleep(0.01)  # nothing of the container is left after rm


def wait_exit(container: Container) -> int:
    """Block until the container is not running (nor restarting); its exit code."""
    delay = 0.005
    while True:
        state = observe(container)
        if state.Status in ACTIVE or state.Status == RESTARTING:
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
            continue
        if state.Status == CREATED and state.ExitCode is None:
            time.sleep(delay)  # docker wait on a created container waits for it to run and end
            delay = min(delay * 2, 0.1)
            continue
        return UNKNOWN_EXIT if state.ExitCode is None else state.ExitCode


def after_exit(store: Store, container: Container, pid: int, code: int, monitor_pid: int) -> bool:
    """The monitor's exit step (it reaped `pid` with `code`): record it, clean up; True to restart.

    The container may have been stopped and finished by `stop`, or removed by `rm -f`, meanwhile. A
    container about to restart names its monitor (`monitor_pid`) again: "restarting" is only true while
    the monitor that will start it lives.
    """
    try:
        with container.lock():
            state = container.state()
            if state.Status in ACTIVE and state.Pid == pid:
                state = finish(container, code)
            if state.Status != EXITED or state.Pid not in (0, pid):
                return False
            if should_restart(restart_policy(container), state):
                from minicache.process import start_time

                state.Status = RESTARTING
                state.MonitorPid, state.MonitorStartTime = monitor_pid, start_time(monitor_pid)
                container.set_state(state)
                return True
            if container.record.get("AutoRemove"):
                delete(store, container)
    except MiniError:  # removed meanwhile (NotFound), or a cleanup failure: nothing to restart
        return False
    return False
