"""The OCI runtime's operations as a library: one method of `Runtime(root)` per verb.

`minirun-runtime` (minirun.runtime.cli) parses flags and calls these; the engine (minirun.engine) calls them
in-process with its store's runtime folder as the root. Either way there is one path into the kernel, and
the state folder each container gets under the root is the truth about its process (see
minirun.runtime.state).

`create` sets the container up completely and leaves its init blocked before execve, opening the exec fifo
in the state folder for writing; `start` opens the fifo for reading, which lets the init exec. `run` is
both in one call, as `runc run`. Warnings (a failing poststart or poststop hook) go to the `warn` callable.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from typing import TYPE_CHECKING

from minicache.errors import Conflict, InvalidSpec, MiniError
from minirun.runtime import state as st

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

    from minirun.runtime.launch import Process

PROG = "minirun-runtime"
EARLY_HOOKS = ("prestart", "createRuntime", "createContainer", "startContainer")  # run before `start` returns


class UsageError(MiniError):
    """A verb or flag this runtime does not know, or a missing argument."""

    exit_code = 2


class StatusError(Conflict):
    """The verb does not apply to the container in its current status."""


def _stderr_warn(message: str) -> None:
    print(f"{PROG}: warning: {message}", file=sys.stderr)


def parse_signal(text: str | int) -> int:
    """A signal by number, or by name with or without SIG (TERM, SIGTERM, sigterm)."""
    if isinstance(text, int):
        return text
    from minirun.runtime.signals import signal_number

    if number := signal_number(text):
        return number
    raise UsageError(f"unknown signal {text!r}", hint="use a name (TERM, SIGKILL) or a number")


# The device nodes every container gets (and its pty), allowed after the bundle's own rules, as runc does: an
# engine's spec (Podman's) denies everything and lists only the extra devices it adds.
DEFAULT_DEVICE_RULES = tuple(
    {"allow": True, "type": kind, "major": major, "minor": minor, "access": access}
    for kind, major, minor, access in (
        ("c", None, None, "m"), ("b", None, None, "m"), ("c", 1, 3, "rwm"), ("c", 1, 5, "rwm"), ("c", 1, 7, "rwm"),
        ("c", 1, 8, "rwm"), ("c", 1, 9, "rwm"), ("c", 5, 0, "rwm"), ("c", 5, 2, "rwm"), ("c", 136, None, "rwm"),
        ("c", 10, 200, "rwm"),
    )
)  # fmt: skip


def _allow_default_devices(spec: dict[str, Any]) -> None:
    resources = (spec.get("linux") or {}).get("resources") or {}
    rules = resources.get("devices")
    if isinstance(rules, list) and rules:
        rules += [{k: v for k, v in rule.items() if v is not None} for rule in DEFAULT_DEVICE_RULES]


def _now() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e9):09d}Z"


def _send_console(path: str, master: int) -> None:
    """Hand the pty master to the engine over its unix socket, as conmon and containerd's shim expect."""
    import socket

    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(path)
            socket.send_fds(sock, [b"/dev/ptmx"], [master])
    except OSError as e:
        raise InvalidSpec(f"cannot send the terminal to --console-socket {path}: {e.strerror}") from None


def _write_pid_file(path: str, pid: int) -> None:
    from minicache.atomic import atomic_write

    atomic_write(os.path.abspath(path), str(pid).encode(), mode=0o644, durable=False)


def exec_process(
    spec: dict[str, Any],
    command: Sequence[str],
    *,
    tty: bool = False,
    cwd: str | None = None,
    env: Sequence[str] = (),
    user: str | None = None,
    additional_gids: Sequence[str] = (),
    caps: Sequence[str] = (),
    no_new_privs: bool = False,
) -> dict[str, Any]:
    """The process `exec` runs for a command: the container's own process with `command` and these changes."""
    if not command:
        raise UsageError("exec needs a command or --process FILE")
    process = json.loads(json.dumps(spec.get("process") or {}))
    process.update(args=list(command), terminal=tty)
    process.pop("consoleSize", None)
    if cwd:
        process["cwd"] = cwd
    if env:
        process["env"] = [*(process.get("env") or []), *env]
    if user:
        uid, _, gid = user.partition(":")
        if not uid.isdigit() or (gid and not gid.isdigit()):
            raise UsageError(f"--user {user!r} must be UID[:GID] in numbers")
        process["user"] = {"uid": int(uid), "gid": int(gid or 0)}
    if additional_gids:
        process.setdefault("user", {})["additionalGids"] = [int(g) for g in additional_gids if g.isdigit()]
    granted = process.setdefault("capabilities", {})
    for cap in caps:
        for kind in ("bounding", "effective", "permitted"):
            granted[kind] = [*(granted.get(kind) or []), cap]
    if no_new_privs:
        process["noNewPrivileges"] = True
    return process


def read_process(path: str) -> dict[str, Any]:
    """An OCI process JSON file (`exec --process`), checked for fields this runtime does not know."""
    from minirun.runtime import config

    try:
        with open(path, "rb") as f:
            process = json.loads(f.read())
    except (OSError, ValueError) as e:
        raise InvalidSpec(f"cannot read --process {path}: {e}") from None
    config.check_fields({"ociVersion": "1.0.0", "process": process})
    return process


def read_resources(path: str) -> Any:
    """A linux.resources JSON file (`update --resources`), or stdin for `-`."""
    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path, "rb") as f:
                text = f.read().decode()
        return json.loads(text)
    except (OSError, ValueError) as e:
        raise InvalidSpec(f"cannot read --resources {path}: {e}") from None


def wait(proc: Process, *, stdin_open: bool = True) -> int:
    """Relay the process's terminal (if it has one) to ours until it closes; then reap it: its exit code."""
    if proc.pty_master is not None:
        from minirun.runtime.tty import TerminalSession

        master, proc.pty_master = proc.pty_master, None
        with TerminalSession(master, stdin_open=stdin_open) as session:
            session.relay()
    return int(proc.wait())


class Runtime:
    """The containers under one state root, and the OCI operations on them."""

    def __init__(self, root: str = st.DEFAULT_ROOT, *, warn: Callable[[str], None] | None = None) -> None:
        self.root = root
        self.store = st.Store(root)
        self.warn = warn or _stderr_warn

    def load(self, container_id: str) -> st.Container:
        """The container's record (NotFound if there is none)."""
        return self.store.load(container_id)

    def status(self, container_id: str) -> str:
        """created, running, paused or stopped; a container the runtime does not know is stopped."""
        try:
            return self.store.load(container_id).status()
        except MiniError:
            return "stopped"

    def alive(self, container_id: str) -> bool:
        """Whether the container's init runs (created, running or paused): the cheap half of `status`."""
        try:
            return self.store.load(container_id).alive()
        except MiniError:
            return False

    # -- create, start, run ---------------------------------------------------------------------------------
    def create(
        self,
        container_id: str,
        bundle: str,
        *,
        pid_file: str | None = None,
        console_socket: str | None = None,
        preserve_fds: int = 0,
        relay: bool = False,
        stdin_open: bool = True,
        kill_with_parent: bool = False,
        seccomp_cache: str | None = None,
        meanwhile: Callable[[int], None] | None = None,
    ) -> Process:
        """Set the container up and leave its init waiting on the exec fifo; its Process.

        With `relay` (a foreground `run`) a terminal needs no console socket: the caller keeps the pty master.
        `stdin_open`, `kill_with_parent` and `meanwhile` are minirun.runtime.launch.start's; compiled seccomp
        programs are kept in `seccomp_cache`, by default the root's own (`.seccomp`).
        """
        return self._create(
            container_id,
            bundle,
            pid_file=pid_file,
            console_socket=console_socket,
            preserve_fds=preserve_fds,
            relay=relay,
            stdin_open=stdin_open,
            kill_with_parent=kill_with_parent,
            seccomp_cache=seccomp_cache,
            meanwhile=meanwhile,
        )[1]

    def _create(
        self,
        container_id: str,
        bundle: str,
        *,
        pid_file: str | None,
        console_socket: str | None,
        preserve_fds: int,
        relay: bool,
        stdin_open: bool,
        kill_with_parent: bool,
        seccomp_cache: str | None,
        meanwhile: Callable[[int], None] | None,
    ) -> tuple[st.Container, Process]:
        from minirun.runtime import cgroup as cg
        from minirun.runtime import config, launch

        st.check_id(container_id)
        bundle = os.path.abspath(bundle)
        spec = config.load(bundle)
        config.check_fields(spec)
        if spec.get("hooks") is not None:  # hooks (and subprocess) load only for a bundle that has some
            from minirun.runtime import hooks

            hooks.check(spec["hooks"])
        terminal = bool((spec.get("process") or {}).get("terminal"))
        if terminal and not console_socket and not relay:
            raise InvalidSpec("process.terminal needs --console-socket", hint="pass --console-socket SOCKET")
        if console_socket and not terminal:
            raise InvalidSpec("--console-socket without process.terminal", hint="set process.terminal or drop the flag")
        if preserve_fds < 0:
            raise UsageError("--preserve-fds must not be negative")
        _allow_default_devices(spec)
        folder = self.store.make(container_id)
        container = st.Container(folder, {"id": container_id, "bundle": bundle})
        proc = None
        try:
            os.mkfifo(container.fifo, 0o622)
            os.chmod(container.fifo, 0o622)  # the container's user opens it for writing
            parent, name = cg.location(spec, container_id)
            group = cg.for_spec(spec, container_id)
            root = (spec.get("root") or {}).get("path", "rootfs")
            container.record.update(
                rootfs=os.path.join(bundle, root),
                created=_now(),
                owner="",
                annotations=spec.get("annotations") or {},
                cgroup=[parent, name],
                hooks=spec.get("hooks") or {},
            )

            def on_ready(pid: int) -> dict[str, Any]:  # namespaces exist, mounts not yet made
                from minirun.runtime import hooks

                container.record["pid"] = pid
                early = {**container.oci_state(), "pid": pid, "status": "creating"}
                hooks.run(spec.get("hooks"), "prestart", early)
                hooks.run(spec.get("hooks"), "createRuntime", early)
                return {"state": json.dumps({**early, "status": "created"})}  # for the hooks the init runs

            has_early = any((spec.get("hooks") or {}).get(k) for k in EARLY_HOOKS)
            proc = launch.start(
                bundle,
                container_id,
                stdin_open=stdin_open,
                cgroup=group,
                seccomp_cache=seccomp_cache if seccomp_cache is not None else self.store.seccomp_cache(),
                kill_with_parent=kill_with_parent,
                preserve_fds=preserve_fds,
                exec_fifo=container.fifo,
                spec=spec,
                on_ready=on_ready if has_early else None,
                meanwhile=meanwhile,
            )
            container.record.update(pid=proc.pid, starttime=proc.start_time)
            container.save()
            if proc.pty_master is not None and console_socket:
                _send_console(console_socket, proc.pty_master)
            if pid_file:
                _write_pid_file(pid_file, proc.pid)
        except BaseException:
            if proc is not None:
                proc.signal(signal.SIGKILL)
                proc.wait()
            container.remove()
            raise
        finally:
            if proc is not None and proc.pty_master is not None and (console_socket or not relay):
                os.close(proc.pty_master)
                proc.pty_master = None
        return container, proc

    def _release(self, container: st.Container, *, ended_ok: bool = False) -> bool:
        """Open the exec fifo for reading: the init's blocked open returns, it writes a byte and execs.

        An init that ended (was killed) before that is an error, or with `ended_ok` (`run`: its exit status
        is the caller's to reap, as for a process killed just after its exec) False.
        """
        import select

        status = container.status()
        if status == "stopped" and ended_ok:
            return False
        if status != "created":
            raise StatusError(
                f"cannot start container {container.id}: it is {status}", hint="only a created one starts"
            )
        fd = os.open(container.fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            while not poller.poll(100):
                if not container.alive():
                    if ended_ok:
                        return False
                    raise StatusError(f"cannot start container {container.id}: its init has ended")
            os.read(fd, 1)
        finally:
            os.close(fd)
            container.remove_fifo()
        return True

    def _poststart(self, container: st.Container) -> None:
        if not container.record.get("hooks"):
            return
        from minirun.runtime import hooks

        try:
            hooks.run(container.record.get("hooks"), "poststart", container.oci_state())
        except hooks.HookError as e:
            self.warn(str(e))

    def start(self, container_id: str) -> None:
        """Let a created container's init exec its process; then the poststart hooks."""
        container = self.store.load(container_id)
        self._release(container)
        self._poststart(container)

    def run(
        self,
        container_id: str,
        bundle: str,
        *,
        detach: bool = False,
        pid_file: str | None = None,
        console_socket: str | None = None,
        preserve_fds: int = 0,
        stdin_open: bool = True,
        kill_with_parent: bool = False,
        seccomp_cache: str | None = None,
        meanwhile: Callable[[int], None] | None = None,
    ) -> Process:
        """create + start in one (`runc run`); returns once the process runs. Without `detach` the caller
        keeps a terminal's pty master (`wait` relays it) and, once the process is reaped, calls `delete`."""
        if not detach and console_socket:
            raise UsageError("--console-socket needs --detach", hint="pass -d, or run without a terminal")
        container, proc = self._create(
            container_id,
            bundle,
            pid_file=pid_file,
            console_socket=console_socket,
            preserve_fds=preserve_fds,
            relay=not detach,
            stdin_open=stdin_open,
            kill_with_parent=kill_with_parent,
            seccomp_cache=seccomp_cache,
            meanwhile=meanwhile,
        )
        try:
            started = self._release(container, ended_ok=True)
        except BaseException:
            proc.signal(signal.SIGKILL)
            proc.wait()
            container.remove()
            raise
        if started:
            self._poststart(container)
        return proc

    # -- the other verbs --------------------------------------------------------------------------------------
    def state(self, container_id: str) -> dict[str, Any]:
        """The OCI state JSON."""
        return self.store.load(container_id).oci_state()

    def kill(self, container_id: str, sig: int | str = signal.SIGTERM, *, all: bool = False) -> None:
        """Send `sig` to the init, or with `all` to every process in the container's cgroup."""
        container = self.store.load(container_id)
        number = parse_signal(sig)
        if container.status() == "stopped":
            raise StatusError(f"container {container_id} is not running", hint="delete it")
        group = container.cgroup()
        if all and group is not None:
            group.kill_all(number)
        else:
            os.kill(container.pid, number)

    def _finish_delete(self, container: st.Container) -> None:
        """Remove the cgroup, run poststop hooks, forget the container."""
        group = container.cgroup()
        if group is not None:
            group.destroy()
        if container.record.get("hooks"):
            from minirun.runtime import hooks

            try:
                hooks.run(container.record.get("hooks"), "poststop", {**container.oci_state(), "status": "stopped"})
            except hooks.HookError as e:
                self.warn(str(e))
        container.remove()

    def delete(self, container_id: str, *, force: bool = False) -> None:
        """Forget a stopped (or created) container: its cgroup goes, poststop hooks run. With `force` a
        running one is killed first, and one that does not exist is no error."""
        try:
            container = self.store.load(container_id)
        except MiniError:
            if force:  # runc: nothing to delete is not an error with --force
                st.Container(self.store.folder(container_id), {"id": container_id}).remove()  # a create killed early
                return
            raise
        status = container.status()
        if status not in ("stopped", "created") and not force:
            raise StatusError(
                f"cannot delete container {container_id}: it is {status}", hint="stop it first or use --force"
            )
        if status != "stopped":
            group = container.cgroup()
            if group is not None:
                with contextlib.suppress(MiniError, OSError):
                    group.kill_all(signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                os.kill(container.pid, signal.SIGKILL)
            deadline = time.monotonic() + 10.0
            while container.alive() and time.monotonic() < deadline:
                time.sleep(0.01)
        self._finish_delete(container)

    def list(self) -> list[dict[str, Any]]:
        """The state of every container under the root."""
        states = []
        for cid in self.store.ids():
            with contextlib.suppress(MiniError):
                states.append(self.store.load(cid).oci_state())
        return states

    def _live_cgroup(self, container: st.Container, verb: str) -> Any:
        if container.status() == "stopped":
            raise StatusError(f"cannot {verb} container {container.id}: it is stopped")
        group = container.cgroup()
        if group is None:
            raise StatusError(f"cannot {verb} container {container.id}: it has no cgroup")
        return group

    def ps(self, container_id: str) -> list[int]:
        """The PIDs (host's view) of the container's processes; none once it stopped (as runc)."""
        container = self.store.load(container_id)
        if container.status() == "stopped":
            return []
        return sorted(self._live_cgroup(container, "list the processes of").pids())

    def _freeze(self, container_id: str, verb: str, needs: str, frozen: bool) -> None:
        container = self.store.load(container_id)
        status = container.status()
        if status != needs:
            raise StatusError(f"cannot {verb} container {container_id}: it is {status}")
        group = self._live_cgroup(container, verb)
        if frozen:
            group.freeze()
        else:
            group.thaw()

    def pause(self, container_id: str) -> None:
        """Freeze a running container's cgroup."""
        self._freeze(container_id, "pause", "running", frozen=True)

    def resume(self, container_id: str) -> None:
        """Thaw a paused container's cgroup."""
        self._freeze(container_id, "resume", "paused", frozen=False)

    def update(self, container_id: str, resources: Any) -> None:
        """Apply a linux.resources object to the live container's cgroup."""
        group = self._live_cgroup(self.store.load(container_id), "update")
        if not isinstance(resources, dict):
            raise InvalidSpec("--resources must hold a linux.resources JSON object")
        group.set(resources)

    def exec(
        self,
        container_id: str,
        process: dict[str, Any],
        *,
        console_socket: str | None = None,
        pid_file: str | None = None,
        detach: bool = False,
        relay: bool = False,
        stdin_open: bool = True,
        seccomp_cache: str | None = None,
    ) -> Process:
        """Start `process` (an OCI process object) in the container; returns once it has exec'ed.

        Without `detach` it dies with the caller, who relays its terminal and reaps it (`wait`). With `relay`
        the caller keeps a terminal's pty master even when detached (it keeps a process that reaps this one).
        """
        from minirun.runtime import config, launch

        container = self.store.load(container_id)
        status = container.status()
        if status not in ("created", "running"):
            raise StatusError(f"cannot exec in container {container_id}: it is {status}")
        if console_socket and not process.get("terminal"):
            raise UsageError("--console-socket needs a terminal (--tty or process.terminal)")
        if process.get("terminal") and detach and not console_socket and not relay:
            raise UsageError("a detached terminal needs --console-socket")
        spec = config.load(container.record["bundle"])
        proc = launch.exec_in(
            spec,
            process,
            container.pid,
            cgroup=container.cgroup(),
            stdin_open=stdin_open,
            seccomp_cache=seccomp_cache if seccomp_cache is not None else self.store.seccomp_cache(),
            kill_with_parent=not detach,
        )
        try:
            if proc.pty_master is not None and console_socket:
                _send_console(console_socket, proc.pty_master)
            if pid_file:
                _write_pid_file(pid_file, proc.pid)  # the stand-in: the caller reaps it, it passes signals on
        except BaseException:
            proc.signal(signal.SIGKILL)
            proc.wait()
            raise
        finally:
            if proc.pty_master is not None and console_socket:
                os.close(proc.pty_master)
                proc.pty_master = None
        return proc


def features() -> dict[str, Any]:
    """The OCI features document: what this runtime supports."""
    from minirun.runtime import caps, config, hooks, mounts, seccomp

    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": st.OCI_VERSION,
        "hooks": list(hooks.KINDS),
        "mountOptions": sorted([*mounts.FLAG_OPTIONS, *mounts.PROPAGATION]),
        "linux": {
            "namespaces": sorted(k for k in config.NAMESPACE_FLAGS if k not in ("user", "time")),
            "capabilities": sorted(caps.NUMBERS),
            "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False},
            "seccomp": {
                "enabled": True,
                "actions": [
                    f"SCMP_ACT_{a}"
                    for a in ("ALLOW", "ERRNO", "KILL", "KILL_THREAD", "KILL_PROCESS", "TRAP", "LOG", "TRACE")
                ],
                "operators": list(seccomp.OPERATORS),
                "supportedFlags": [],
            },
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
            "intelRdt": {"enabled": False},
        },
        "annotations": {"org.opencontainers.runtime-spec.features.minirun": "true"},
    }
