"""`minirun-runtime`: the OCI runtime's command line, with runc's verbs and global flags.

    minirun-runtime [--root DIR] [--log FILE] [--log-format text|json] [--debug] VERB ...

`create` sets the container up completely and leaves its init blocked before execve, opening the exec
fifo in the state folder for writing; this process then exits, so the init's parent becomes the caller's
subreaper (conmon, containerd's shim). `start` opens the fifo for reading, which lets the init exec.
Every error is one line on stderr and, with `--log`, one entry in the log in the asked format, which is
where conmon and containerd read a runtime's errors from.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import time
from typing import Any, NoReturn

from minicache.errors import Conflict, InvalidSpec, MiniError, one_line
from minirun.runtime import state as st

PROG = "minirun-runtime"
VERSION = "0.1.0"


class UsageError(MiniError):
    """A verb or flag this runtime does not know, or a missing argument."""

    exit_code = 2


class StatusError(Conflict):
    """The verb does not apply to the container in its current status."""


class _Formatter(argparse.HelpFormatter):
    """argparse's formatter, given the terminal's width: without one it imports shutil (and bz2, lzma) to ask,
    and argparse makes a formatter for every argument it adds, so every verb would pay for that import."""

    def __init__(
        self, prog: str, indent_increment: int = 2, max_help_position: int = 24, width: int | None = None
    ) -> None:
        super().__init__(prog, indent_increment, max_help_position, _columns() - 2 if width is None else width)


def _columns() -> int:
    """The width `shutil.get_terminal_size` would give: $COLUMNS, else stdout's terminal, else 80."""
    with contextlib.suppress(ValueError):
        if (columns := int(os.environ.get("COLUMNS", "0"))) > 0:
            return columns
    with contextlib.suppress(AttributeError, ValueError, OSError):
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or 80
    return 80


class _Parser(argparse.ArgumentParser):
    def __init__(self, prog: str, **kw: Any) -> None:
        super().__init__(prog=prog, formatter_class=_Formatter, **kw)

    def error(self, message: str) -> NoReturn:
        raise UsageError(message, hint=f"see `{PROG} --help`")


class Log:
    """Where errors (and with --debug, progress) go besides stderr: the --log file, in text or json."""

    def __init__(self, path: str | None, fmt: str, debug: bool) -> None:
        self.path, self.fmt, self.debug_on = path, fmt, debug

    def write(self, level: str, msg: str) -> None:
        if not self.path:
            return
        now = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e9):09d}Z"
        if self.fmt == "json":
            line = json.dumps({"level": level, "msg": msg, "time": stamp}, separators=(",", ":"))
        else:
            line = f"time={json.dumps(stamp)} level={level} msg={json.dumps(msg)}"
        with contextlib.suppress(OSError):
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, (line + "\n").encode())
            finally:
                os.close(fd)

    def debug(self, msg: str) -> None:
        if self.debug_on:
            self.write("debug", msg)
            print(f"{PROG}: debug: {msg}", file=sys.stderr)


def _global_parser() -> argparse.ArgumentParser:
    """The global flags and the verb; the verb's own arguments are left for its parser (`_verb_parser`)."""
    p = _Parser(prog=PROG, description="An OCI runtime with runc's command line.")
    p.add_argument("--root", default=st.DEFAULT_ROOT, help="the state folder")
    p.add_argument("--log", default=None, help="also write errors to this file")
    p.add_argument("--log-format", choices=("text", "json"), default="text")
    p.add_argument("--debug", action="store_true")
    p.add_argument("--systemd-cgroup", action="store_true", help="not supported: refused")
    p.add_argument("--version", "-v", action="version", version=f"{PROG} version {VERSION}\nspec: {st.OCI_VERSION}")
    p.add_argument("verb", metavar="VERB", choices=VERB_ARGS, help=", ".join(VERB_ARGS))
    p.add_argument("rest", metavar="ARGS", nargs=argparse.REMAINDER, help="the verb's arguments (VERB --help)")
    return p


def _create_args(v: argparse.ArgumentParser, name: str) -> None:
    v.add_argument("--bundle", "-b", default=".")
    v.add_argument("--pid-file")
    v.add_argument("--console-socket")
    v.add_argument("--preserve-fds", type=int, default=0)
    v.add_argument("--no-new-keyring", action="store_true")
    if name == "run":
        v.add_argument("--detach", "-d", action="store_true")


def _kill_args(v: argparse.ArgumentParser, name: str) -> None:
    v.add_argument("signal", nargs="?", default="SIGTERM")
    v.add_argument("--all", "-a", action="store_true")


def _delete_args(v: argparse.ArgumentParser, name: str) -> None:
    v.add_argument("--force", "-f", action="store_true")


def _list_args(v: argparse.ArgumentParser, name: str) -> None:
    v.add_argument("--format", "-f", choices=("table", "json"), default="table")
    if name == "list":
        v.add_argument("--quiet", "-q", action="store_true")


def _update_args(v: argparse.ArgumentParser, name: str) -> None:
    v.add_argument("--resources", "-r", required=True, help="a linux.resources JSON file, or - for stdin")


def _exec_args(v: argparse.ArgumentParser, name: str) -> None:
    v.add_argument("--process", "-p", help="an OCI process JSON file (instead of CMD and the flags below)")
    v.add_argument("--tty", "-t", action="store_true")
    v.add_argument("--detach", "-d", action="store_true")
    v.add_argument("--pid-file")
    v.add_argument("--console-socket")
    v.add_argument("--cwd")
    v.add_argument("--env", "-e", action="append", default=[])
    v.add_argument("--user", "-u", help="UID[:GID], numeric")
    v.add_argument("--additional-gids", "-g", action="append", default=[])
    v.add_argument("--cap", "-c", action="append", default=[])
    v.add_argument("--no-new-privs", action="store_true")
    v.add_argument("command", nargs=argparse.REMAINDER)


def _spec_args(v: argparse.ArgumentParser, name: str) -> None:
    v.add_argument("--bundle", "-b", default=".")
    v.add_argument("--id", default="container", help="the container ID its cgroup path is named after")
    v.add_argument("--network", choices=("none", "host"), default="none")


def _no_args(v: argparse.ArgumentParser, name: str) -> None:
    pass


# verb -> (takes a container ID, adds its other arguments); one verb's parser is built per call
VERB_ARGS = {
    "create": (True, _create_args),
    "run": (True, _create_args),
    "start": (True, _no_args),
    "state": (True, _no_args),
    "pause": (True, _no_args),
    "resume": (True, _no_args),
    "kill": (True, _kill_args),
    "delete": (True, _delete_args),
    "list": (False, _list_args),
    "ps": (True, _list_args),
    "update": (True, _update_args),
    "exec": (True, _exec_args),
    "features": (False, _no_args),
    "spec": (False, _spec_args),
}


def _verb_parser(verb: str) -> argparse.ArgumentParser:
    with_id, add = VERB_ARGS[verb]
    v = _Parser(prog=f"{PROG} {verb}")
    if with_id:
        v.add_argument("id")
    add(v, verb)
    return v


def parse(argv: list[str]) -> argparse.Namespace:
    """The global flags, then the verb's arguments with that verb's parser alone, into one namespace."""
    args = _global_parser().parse_args(argv)
    rest = args.rest
    del args.rest
    return _verb_parser(args.verb).parse_args(rest, namespace=args)


def main(argv: list[str] | None = None) -> int:
    log = Log(None, "text", False)
    args_list = sys.argv[1:] if argv is None else argv
    verb = ""
    try:
        args = parse(args_list)
        verb = args.verb
        log = Log(args.log, args.log_format, args.debug)
        if args.systemd_cgroup:
            raise UsageError(
                "--systemd-cgroup is not supported: this runtime manages cgroupfs cgroups itself",
                hint="configure the engine's cgroup manager as cgroupfs",
            )
        if getattr(args, "id", None) is not None and args.verb != "spec":
            st.check_id(args.id)
        log.debug(f"{args.verb} {' '.join(args_list)}")
        return VERBS[args.verb](args, st.Store(args.root), log)
    except MiniError as err:
        text = one_line(PROG, err)
        print(text, file=sys.stderr)
        log.write("error", text.removeprefix(f"{PROG}: error: "))
        # `run` stands for the container: Docker's 125/126/127 when it could not start; other verbs exit 1.
        return err.exit_code if isinstance(err, UsageError) or verb in ("run", "exec") else 1
    except KeyboardInterrupt:
        return 130


# -- create, start, run -------------------------------------------------------------------------------------


def _create(args: argparse.Namespace, store: st.Store, log: Log, *, relay: bool = False) -> tuple[st.Container, Any]:
    """Set the container up and leave its init waiting on the exec fifo; (the container, its Process).

    With `relay` (a foreground `run`) a terminal needs no console socket: the caller keeps the pty master.
    """
    from minirun.runtime import cgroup as cg
    from minirun.runtime import config, hooks, launch

    bundle = os.path.abspath(args.bundle)
    spec = config.load(bundle)
    config.check_fields(spec)
    hooks.check(spec.get("hooks"))
    terminal = bool((spec.get("process") or {}).get("terminal"))
    if terminal and not args.console_socket and not relay:
        raise InvalidSpec("process.terminal needs --console-socket", hint="pass --console-socket SOCKET")
    if args.console_socket and not terminal:
        raise InvalidSpec("--console-socket without process.terminal", hint="set process.terminal or drop the flag")
    if args.preserve_fds < 0:
        raise UsageError("--preserve-fds must not be negative")
    _allow_default_devices(spec)
    folder = store.make(args.id)
    container = st.Container(folder, {"id": args.id, "bundle": bundle})
    proc = None
    try:
        os.mkfifo(container.fifo, 0o622)
        os.chmod(container.fifo, 0o622)  # the container's user opens it for writing
        parent, name = cg.location(spec, args.id)
        group = cg.for_spec(spec, args.id)
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
            container.record["pid"] = pid
            early = {**container.oci_state(), "pid": pid, "status": "creating"}
            hooks.run(spec.get("hooks"), "prestart", early)
            hooks.run(spec.get("hooks"), "createRuntime", early)
            return {"state": json.dumps({**early, "status": "created"})}  # for the hooks the init runs

        has_early = any((spec.get("hooks") or {}).get(k) for k in hooks.KINDS[:4])
        proc = launch.start(
            bundle,
            args.id,
            cgroup=group,
            kill_with_parent=False,
            preserve_fds=args.preserve_fds,
            exec_fifo=str(container.fifo),
            spec=spec,
            on_ready=on_ready if has_early else None,
            seccomp_cache=store.seccomp_cache(),
        )
        container.record.update(pid=proc.pid, starttime=proc.start_time)
        container.save()
        if proc.pty_master is not None and args.console_socket:
            _send_console(args.console_socket, proc.pty_master)
        if args.pid_file:
            _write_pid_file(args.pid_file, proc.pid)
    except BaseException:
        if proc is not None:
            proc.signal(signal.SIGKILL)
            proc.wait()
        container.remove()
        raise
    finally:
        if proc is not None and proc.pty_master is not None and (args.console_socket or not relay):
            os.close(proc.pty_master)
            proc.pty_master = None
    log.debug(f"created {args.id} with init {proc.pid}")
    return container, proc


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

    target = os.path.join(os.getcwd(), path)
    atomic_write(target, str(pid).encode(), mode=0o644, durable=False)


def cmd_create(args: argparse.Namespace, store: st.Store, log: Log) -> int:
    _create(args, store, log)
    return 0


def _release(container: st.Container) -> None:
    """Open the exec fifo for reading: the init's blocked open returns, it writes a byte and execs."""
    import select

    status = container.status()
    if status != "created":
        raise StatusError(f"cannot start container {container.id}: it is {status}", hint="only a created one starts")
    fd = os.open(container.fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        while not poller.poll(100):
            if not container.alive():
                raise StatusError(f"cannot start container {container.id}: its init has ended")
        os.read(fd, 1)
    finally:
        os.close(fd)
    container.remove_fifo()


def _poststart(container: st.Container, log: Log) -> None:
    if not (container.record.get("hooks") or {}).get("poststart"):
        return  # the state would ask the cgroup whether it is frozen: only a hook needs it
    from minirun.runtime import hooks

    try:
        hooks.run(container.record.get("hooks"), "poststart", container.oci_state())
    except hooks.HookError as e:
        log.write("warning", str(e))
        print(f"{PROG}: warning: {e}", file=sys.stderr)


def cmd_start(args: argparse.Namespace, store: st.Store, log: Log) -> int:
    container = store.load(args.id)
    _release(container)
    _poststart(container, log)
    return 0


def cmd_run(args: argparse.Namespace, store: st.Store, log: Log) -> int:
    from minirun.runtime.signals import SignalForwarder

    if not args.detach and args.console_socket:
        raise UsageError("--console-socket needs --detach", hint="pass -d, or run without a terminal")
    with SignalForwarder() as forwarder:
        container, proc = _create(args, store, log, relay=not args.detach)
        try:
            _release(container)
        except BaseException:
            proc.signal(signal.SIGKILL)
            proc.wait()
            container.remove()
            raise
        _poststart(container, log)
        if args.detach:
            return 0
        forwarder.target(proc.pid)
        code = _relay_and_wait(proc)  # also removes the cgroup
    _finish_delete(container, log)
    return code


def _relay_and_wait(proc: Any) -> int:
    """The foreground's terminal, when the container has one: relayed to ours until it closes; then reap."""
    if proc.pty_master is not None:
        from minirun.runtime.tty import TerminalSession

        master, proc.pty_master = proc.pty_master, None
        with TerminalSession(master, stdin_open=True) as session:
            session.relay()
    return int(proc.wait())


# -- the other verbs ----------------------------------------------------------------------------------------


def cmd_state(args: argparse.Namespace, store: st.Store, log: Log) -> int:
    print(json.dumps(store.load(args.id).oci_state(), indent=2))
    return 0


def parse_signal(text: str) -> int:
    """A signal by number, or by name with or without SIG (TERM, SIGTERM, sigterm)."""
    from minirun.runtime.signals import signal_number

    if number := signal_number(text):
        return number
    raise UsageError(f"unknown signal {text!r}", hint="use a name (TERM, SIGKILL) or a number")


def cmd_kill(args: argparse.Namespace, store: st.Store, log: Log) -> int:
    container = store.load(args.id)
    number = parse_signal(args.signal)
    status = container.status()
    if status == "stopped":
        raise StatusError(f"container {args.id} is not running", hint="delete it")
    group = container.cgroup()
    if args.all and group is not None:
        group.kill_all(number)
    else:
        os.kill(container.pid, number)
    return 0


def _wait_gone(container: st.Container, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while container.alive() and time.monotonic() < deadline:
        time.sleep(0.01)


def _finish_delete(container: st.Container, log: Log) -> None:
    """Remove the cgroup, run poststop hooks, forget the container."""
    from minirun.runtime import hooks

    group = container.cgroup()
    if group is not None:
        group.destroy()
    try:
        hooks.run(container.record.get("hooks"), "poststop", {**container.oci_state(), "status": "stopped"})
    except hooks.HookError as e:
        log.write("warning", str(e))
        print(f"{PROG}: warning: {e}", file=sys.stderr)
    container.remove()


def cmd_delete(args: argparse.Namespace, store: st.Store, log: Log) -> int:
    try:
        container = store.load(args.id)
    except MiniError:
        if args.force:
            return 0  # runc: nothing to delete is not an error with --force
        raise
    status = container.status()
    if status not in ("stopped", "created") and not args.force:
        raise StatusError(f"cannot delete container {args.id}: it is {status}", hint="stop it first or use --force")
    if status != "stopped":
        group = container.cgroup()
        if group is not None:
            with contextlib.suppress(MiniError, OSError):
                group.kill_all(signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.kill(container.pid, signal.SIGKILL)
        _wait_gone(container)
    _finish_delete(container, log)
    return 0


def cmd_list(args: argparse.Namespace, store: st.Store, log: Log) -> int:
    states = []
    for cid in store.ids():
        with contextlib.suppress(MiniError):
            states.append(store.load(cid).oci_state())
    if args.format == "json":
        print(json.dumps(states))
    elif args.quiet:
        for s in states:
            print(s["id"])
    else:
        rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
        rows += [(s["id"], str(s["pid"]), s["status"], s["bundle"], s["created"], s["owner"]) for s in states]
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for r in rows:
            print("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return 0


def _live_cgroup(container: st.Container, verb: str) -> Any:
    status = container.status()
    if status == "stopped":
        raise StatusError(f"cannot {verb} container {container.id}: it is stopped")
    group = container.cgroup()
    if group is None:
        raise StatusError(f"cannot {verb} container {container.id}: it has no cgroup")
    return group


def cmd_ps(args: argparse.Namespace, store: st.Store, log: Log) -> int:
    pids = sorted(_live_cgroup(store.load(args.id), "list the processes of").pids())
    if args.format == "json":
        print(json.dumps(pids))
    else:
        print("PID")
        for pid in pids:
            print(pid)
    return 0


def _freeze(args: argparse.Namespace, store: st.Store, verb: str, needs: str, frozen: bool) -> int:
    """pause and resume: the container must be `needs`; its cgroup is frozen or thawed."""
    container = store.load(args.id)
    if container.status() != needs:
        raise StatusError(f"cannot {verb} container {args.id}: it is {container.status()}")
    group = _live_cgroup(container, verb)
    if frozen:
        group.freeze()
    else:
        group.thaw()
    return 0


def cmd_pause(args: argparse.Namespace, store: st.Store, log: Log) -> int:
    return _freeze(args, store, "pause", "running", frozen=True)


def cmd_resume(args: argparse.Namespace, store: st.Store, log: Log) -> int:
    return _freeze(args, store, "resume", "paused", frozen=False)


def cmd_update(args: argparse.Namespace, store: st.Store, log: Log) -> int:
    from pathlib import Path

    container = store.load(args.id)
    group = _live_cgroup(container, "update")
    try:
        text = sys.stdin.read() if args.resources == "-" else Path(args.resources).read_text()
        resources = json.loads(text)
    except (OSError, ValueError) as e:
        raise InvalidSpec(f"cannot read --resources {args.resources}: {e}") from None
    if not isinstance(resources, dict):
        raise InvalidSpec("--resources must hold a linux.resources JSON object")
    group.set(resources)
    return 0


def _exec_process(args: argparse.Namespace, spec: dict[str, Any]) -> dict[str, Any]:
    """The process to exec: the --process file as it is, or the container's own with CMD and the flags."""
    from pathlib import Path

    from minirun.runtime import config

    if args.process:
        if args.command:
            raise UsageError("give either --process FILE or a command, not both")
        try:
            process = json.loads(Path(args.process).read_text())
        except (OSError, ValueError) as e:
            raise InvalidSpec(f"cannot read --process {args.process}: {e}") from None
        config.check_fields({"ociVersion": "1.0.0", "process": process})
        return process
    if not args.command:
        raise UsageError("exec needs a command or --process FILE")
    process = json.loads(json.dumps(spec.get("process") or {}))
    process.update(args=list(args.command), terminal=args.tty)
    process.pop("consoleSize", None)
    if args.cwd:
        process["cwd"] = args.cwd
    if args.env:
        process["env"] = [*(process.get("env") or []), *args.env]
    if args.user:
        uid, _, gid = args.user.partition(":")
        if not uid.isdigit() or (gid and not gid.isdigit()):
            raise UsageError(f"--user {args.user!r} must be UID[:GID] in numbers")
        process["user"] = {"uid": int(uid), "gid": int(gid or 0)}
    if args.additional_gids:
        process.setdefault("user", {})["additionalGids"] = [int(g) for g in args.additional_gids if g.isdigit()]
    caps = process.setdefault("capabilities", {})
    for cap in args.cap:
        for kind in ("bounding", "effective", "permitted"):
            caps[kind] = [*(caps.get(kind) or []), cap]
    if args.no_new_privs:
        process["noNewPrivileges"] = True
    return process


def cmd_exec(args: argparse.Namespace, store: st.Store, log: Log) -> int:
    from minirun.runtime import config, launch
    from minirun.runtime.signals import SignalForwarder

    container = store.load(args.id)
    status = container.status()
    if status not in ("created", "running"):
        raise StatusError(f"cannot exec in container {args.id}: it is {status}")
    spec = config.load(container.record["bundle"])
    process = _exec_process(args, spec)
    if args.console_socket and not process.get("terminal"):
        raise UsageError("--console-socket needs a terminal (--tty or process.terminal)")
    if process.get("terminal") and args.detach and not args.console_socket:
        raise UsageError("a detached terminal needs --console-socket")
    with SignalForwarder() as forwarder:
        proc = launch.exec_in(spec, process, container.pid, cgroup=container.cgroup(), kill_with_parent=not args.detach)
        try:
            if proc.pty_master is not None and args.console_socket:
                _send_console(args.console_socket, proc.pty_master)
            if args.pid_file:
                _write_pid_file(args.pid_file, proc.pid)  # the stand-in: the caller reaps it, it passes signals on
        except BaseException:
            proc.signal(signal.SIGKILL)
            proc.wait()
            raise
        finally:
            if proc.pty_master is not None and args.console_socket:
                os.close(proc.pty_master)
                proc.pty_master = None
        if args.detach:
            return 0
        forwarder.target(proc.pid)
        return _relay_and_wait(proc)


def cmd_features(args: argparse.Namespace, store: st.Store, log: Log) -> int:
    from minirun.runtime import caps, config, hooks, mounts, seccomp

    features = {
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
    print(json.dumps(features, indent=2))
    return 0


def cmd_spec(args: argparse.Namespace, store: st.Store, log: Log) -> int:
    from minirun.runtime.__main__ import write_spec

    st.check_id(args.id)
    return write_spec(args.bundle, args.id, args.network)


VERBS = {
    "create": cmd_create,
    "start": cmd_start,
    "run": cmd_run,
    "state": cmd_state,
    "kill": cmd_kill,
    "delete": cmd_delete,
    "list": cmd_list,
    "ps": cmd_ps,
    "pause": cmd_pause,
    "resume": cmd_resume,
    "update": cmd_update,
    "exec": cmd_exec,
    "features": cmd_features,
    "spec": cmd_spec,
}


if __name__ == "__main__":
    sys.exit(main())
