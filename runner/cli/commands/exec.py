"""`minirun exec [-d] [-i] [-t] [-e KEY=VALUE] [-u USER] [-w DIR] CONTAINER COMMAND [ARG...]`.

The command joins the running container's namespaces (mount, PID, UTS, IPC, network, cgroup) and its
cgroup, under the same capabilities, seccomp filter and no_new_privs; its exit status is this command's
(126 cannot invoke, 127 not found, as Docker). -d leaves it running in the background.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from minirun.runtime.launch import Process


def configure(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("-d", "--detach", action="store_true", help="run the command in the background")
    add("-i", "--interactive", action="store_true", help="keep STDIN open")
    add("-t", "--tty", action="store_true", help="allocate a pseudo-terminal")
    add("-e", "--env", action="append", default=[], metavar="KEY[=VALUE]", help="set an environment variable")
    add("-u", "--user", help="NAME|UID[:GROUP|GID] to run as")
    add("-w", "--workdir", help="working directory inside the container")
    add("container", metavar="CONTAINER")
    add("command", nargs=argparse.REMAINDER, metavar="COMMAND")


def execute(args: argparse.Namespace) -> int:
    from minicache.errors import InvalidSpec
    from minirun.cli.commands.common import get, open_store
    from minirun.engine import flags, steps
    from minirun.runtime.operations import wait
    from minirun.runtime.signals import SignalForwarder

    if not args.command:
        raise InvalidSpec("exec needs a command to run", hint="minirun exec CONTAINER COMMAND [ARG...]")
    if args.tty and args.interactive and not args.detach and not os.isatty(0):
        raise InvalidSpec("the input device is not a TTY", hint="drop -t, or run from a terminal")
    env = [e for e in (flags.env_entry(item, os.environ) for item in args.env) if e is not None]
    workdir = flags.container_path(args.workdir, "the working directory") if args.workdir is not None else None
    store = open_store(args)
    container = get(store, args.container)
    console_size = None
    if args.tty:
        from minirun.runtime.tty import get_size

        console_size = get_size(0) or get_size(1)

    def start() -> Process:
        return steps.exec_process(
            store,
            container,
            args.command,
            env=env,
            user=args.user,
            workdir=workdir,
            tty=args.tty,
            interactive=args.interactive and not args.detach,
            detach=args.detach,
            console_size=console_size,
        )

    if args.detach:
        return _detached(start)
    with SignalForwarder(skip=(signal.SIGWINCH,) if args.tty else ()) as forwarder:
        proc = start()
        forwarder.target(proc.pid)
        return wait(proc, stdin_open=args.interactive)


def _detached(start: Callable[[], Process]) -> int:
    """exec -d: a keeper process (own session, stdio on /dev/null) starts the command and reaps it.

    Without it the command would be orphaned to whatever reaper the host has (or to the container's init,
    which may never reap), and a zombie left in the container's PID namespace keeps that namespace, and
    so the container's init, from ending. The keeper reports the start (or its error) over a pipe.
    """
    from minirun.runtime.channel import read_report

    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.close(read_end)
            os.setsid()
            for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
                signal.signal(sig, signal.SIG_IGN)
            null = os.open("/dev/null", os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            os.close(null)
            try:
                proc = start()
            except Exception as err:
                report = {
                    "message": str(err),
                    "hint": getattr(err, "hint", None),
                    "code": getattr(err, "exit_code", 125),
                }
                os.write(write_end, json.dumps(report).encode())
                raise
            if proc.pty_master is not None:
                os.close(proc.pty_master)
            os.close(write_end)
            proc.wait()
        except BaseException:
            code = 1
        os._exit(code)
    os.close(write_end)
    report = read_report(read_end)
    if report is not None:
        from minicache.errors import MiniError

        err = MiniError(report["message"], hint=report.get("hint"))
        err.exit_code = int(report.get("code") or 125)
        raise err
    return 0
