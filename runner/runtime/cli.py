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
import sys
import time
from typing import Any, NoReturn

from minicache.errors import MiniError, one_line
from minirun.runtime import operations as ops
from minirun.runtime import state as st
from minirun.runtime.operations import StatusError, UsageError, parse_signal  # noqa: F401 (the CLI's names)

PROG = ops.PROG
VERSION = "0.1.0"


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
    else:
        v.add_argument("ps_options", nargs=argparse.REMAINDER, help="options for the host's ps (default -ef)")


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


# -- the verbs: flags in, minirun.runtime.operations does the work ------------------------------------------


def _runtime(store: st.Store, log: Log, *, limits: bool = False) -> ops.Runtime:
    """The operations, their warnings on stderr and in --log. With `limits` (create, run, update, exec), limits
    the host cannot apply are said the same way (loading minirun.cgroups, which the light verbs skip)."""

    def warn(message: str) -> None:
        log.write("warning", message)
        print(f"{PROG}: warning: {message}", file=sys.stderr)

    if limits:
        from minirun.cgroups import show_warnings

        show_warnings(PROG, also=lambda message: log.write("warning", message))
    return ops.Runtime(str(store.root), warn=warn)


def cmd_create(args: argparse.Namespace, store: st.Store, log: Log) -> int:
    proc = _runtime(store, log, limits=True).create(
        args.id,
        args.bundle,
        pid_file=args.pid_file,
        console_socket=args.console_socket,
        preserve_fds=args.preserve_fds,
    )
    log.debug(f"created {args.id} with init {proc.pid}")
    return 0


def cmd_start(args: argparse.Namespace, store: st.Store, log: Log) -> int:
    _runtime(store, log).start(args.id)
    return 0


def cmd_run(args: argparse.Namespace, store: st.Store, log: Log) -> int:
    from minirun.runtime.signals import SignalForwarder

    runtime = _runtime(store, log, limits=True)
    with SignalForwarder() as forwarder:
        proc = runtime.run(
            args.id,
            args.bundle,
            detach=args.detach,
            pid_file=args.pid_file,
            console_socket=args.console_socket,
            preserve_fds=args.preserve_fds,
        )
        if args.detach:
            return 0
        forwarder.target(proc.pid)
        code = ops.wait(proc)  # also removes the cgroup
    runtime.delete(args.id)
    return code


def cmd_state(args: argparse.Namespace, store: st.Store, log: Log) -> int:
    print(json.dumps(_runtime(store, log).state(args.id), indent=2))
    return 0


def cmd_kill(args: argparse.Namespace, store: st.Store, log: Log) -> int:
    _runtime(store, log).kill(args.id, args.signal, all=args.all)
    return 0


def cmd_delete(args: argparse.Namespace, store: st.Store, log: Log) -> int:
    _runtime(store, log).delete(args.id, force=args.force)
    return 0


def cmd_list(args: argparse.Namespace, store: st.Store, log: Log) -> int:
    states = _runtime(store, log).list()
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


def cmd_ps(args: argparse.Namespace, store: st.Store, log: Log) -> int:
    """The container's processes: their host PIDs in JSON (`null` once it stopped, as runc), or the host's
    `ps` (-ef by default) narrowed to them, as runc prints it."""
    pids = _runtime(store, log).ps(args.id)
    if args.format == "json":
        print(json.dumps(pids or None))
        return 0
    import subprocess

    try:
        lines = subprocess.run(
            ["ps", *(args.ps_options or ["-ef"])], capture_output=True, text=True, check=True
        ).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError) as e:
        raise UsageError(f"cannot run the host's ps: {e}", hint="install procps, or use --format json") from None
    header = lines[0].split() if lines else []
    if "PID" not in header:
        raise UsageError("the host's ps printed no PID column", hint="give ps options that show PID")
    column = header.index("PID")
    wanted = {str(pid) for pid in pids}
    print(lines[0])
    for line in lines[1:]:
        fields = line.split()
        if len(fields) > column and fields[column] in wanted:
            print(line)
    return 0


def cmd_pause(args: argparse.Namespace, store: st.Store, log: Log) -> int:
    _runtime(store, log).pause(args.id)
    return 0


def cmd_resume(args: argparse.Namespace, store: st.Store, log: Log) -> int:
    _runtime(store, log).resume(args.id)
    return 0


def cmd_update(args: argparse.Namespace, store: st.Store, log: Log) -> int:
    runtime = _runtime(store, log, limits=True)
    runtime.load(args.id)  # a missing container is named before the file is read
    runtime.update(args.id, ops.read_resources(args.resources))
    return 0


def cmd_exec(args: argparse.Namespace, store: st.Store, log: Log) -> int:
    from minirun.runtime import config
    from minirun.runtime.signals import SignalForwarder

    runtime = _runtime(store, log)
    if args.process:
        if args.command:
            raise UsageError("give either --process FILE or a command, not both")
        process = ops.read_process(args.process)
    else:
        spec = config.load(runtime.load(args.id).record["bundle"])
        process = ops.exec_process(
            spec,
            args.command,
            tty=args.tty,
            cwd=args.cwd,
            env=args.env,
            user=args.user,
            additional_gids=args.additional_gids,
            caps=args.cap,
            no_new_privs=args.no_new_privs,
        )
    with SignalForwarder() as forwarder:
        proc = runtime.exec(
            args.id, process, console_socket=args.console_socket, pid_file=args.pid_file, detach=args.detach
        )
        if args.detach:
            return 0
        forwarder.target(proc.pid)
        return ops.wait(proc)


def cmd_features(args: argparse.Namespace, store: st.Store, log: Log) -> int:
    print(json.dumps(ops.features(), indent=2))
    return 0


def cmd_spec(args: argparse.Namespace, store: st.Store, log: Log) -> int:
    from minirun.runtime.default_spec import write_spec

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
