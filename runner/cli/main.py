"""The `minirun` command line: parse arguments, call one library function, map errors to exit codes.

Built on argparse rather than typer: `minirun --rm IMAGE true` has a start-up budget of a few tens of
milliseconds, and typer's import alone would exceed it. Only the invoked command's module is imported and
only its parser is built, from the command's option table where it has one (minirun.cli.options).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
from typing import NoReturn

from minirun.cli.options import FLAG, Option, add_to

PROG = "minirun"

# command -> (module implementing it, one-line help). Each module has configure(parser) and execute(args);
# a module whose positionals are IMAGE [COMMAND...] (run, create) also declares its options as OPTIONS
# (argtable.Option), from which its parser is built.
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("minirun.cli.commands.run", "Run a command in a new container"),
    "create": ("minirun.cli.commands.create", "Create a new container"),
    "start": ("minirun.cli.commands.start", "Start one or more stopped containers"),
    "stop": ("minirun.cli.commands.stop", "Stop one or more running containers"),
    "kill": ("minirun.cli.commands.kill", "Kill one or more running containers"),
    "restart": ("minirun.cli.commands.restart", "Restart one or more containers"),
    "rm": ("minirun.cli.commands.rm", "Remove one or more containers"),
    "ps": ("minirun.cli.commands.ps", "List containers"),
    "inspect": ("minirun.cli.commands.inspect", "Show low-level information on containers"),
    "logs": ("minirun.cli.commands.logs", "Fetch the logs of a container"),
    "exec": ("minirun.cli.commands.exec", "Run a command in a running container"),
    "wait": ("minirun.cli.commands.wait", "Block until containers stop, then print their exit codes"),
    "top": ("minirun.cli.commands.top", "Display the running processes of a container"),
    "rename": ("minirun.cli.commands.rename", "Rename a container"),
    "commit": ("minirun.cli.commands.commit", "Create a new image from a container's changes"),
    "pause": ("minirun.cli.commands.pause", "Pause all processes within containers"),
    "unpause": ("minirun.cli.commands.unpause", "Unpause all processes within containers"),
    "stats": ("minirun.cli.commands.stats", "Display a live stream of container resource usage"),
    "container": ("minirun.cli.commands.container", "Manage containers (prune, ls)"),
    "network": (
        "minirun.cli.commands.network",
        "Manage networks (create, ls, inspect, rm, prune, connect, disconnect)",
    ),
    "serve": ("minirun.cli.commands.serve", "Serve the dashboard and a Docker-compatible API"),
    "version": ("minirun.cli.commands.version", "Show the version"),
}
GLOBAL_OPTIONS = (
    Option(("--root",), "root", help="store root (default: $MINICONTAINER_ROOT or /var/lib/minicontainer)"),
    Option(("--runroot",), "runroot", help="run-time state (default: /run/minicontainer for the default root)"),
    Option(("--debug",), "debug", FLAG, "show tracebacks for errors"),
)
_GLOBAL_WITH_VALUE = tuple(name for o in GLOBAL_OPTIONS if o.kind != FLAG for name in o.names)
_GLOBAL_FLAGS = tuple(name for o in GLOBAL_OPTIONS if o.kind == FLAG for name in o.names)
USAGE_EXIT = 125  # Docker's exit code for a bad `docker run` command line
# Commands whose exit status is the container process's: engine errors there are 125/126/127 (Docker's
# `run`/`exec`/`start -a` convention; `create` too, as Podman). Every other command exits 1 on an error, as
# the docker CLI does. A command may decide per invocation by setting `args.container_process`.
CONTAINER_PROCESS_COMMANDS = frozenset({"run", "exec", "start", "create"})


def _terminal_width() -> int:
    """The help's width: $COLUMNS or the terminal's, else 80 (what shutil.get_terminal_size answers)."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


class _Parser(argparse.ArgumentParser):
    """Usage errors exit with Docker's code, and say where help is."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_EXIT, f"{self.prog}: error: {message}; see '{self.prog} --help'\n")


def _formatter(prog: str) -> argparse.HelpFormatter:
    """A help formatter with the width given: argparse would ask shutil, whose import pulls in compressors."""
    return argparse.HelpFormatter(prog, width=_terminal_width() - 2)


def _split_command(argv: list[str]) -> tuple[list[str], str | None, list[str]]:
    """Global options, the command, its arguments.

    Anything that is neither a global option nor a command starts the short form `minirun [OPTIONS] IMAGE
    [CMD...]`, which is `run`.
    """
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in _GLOBAL_WITH_VALUE and i + 1 < len(argv):
            i += 2
        elif arg.split("=", 1)[0] in _GLOBAL_WITH_VALUE or arg in _GLOBAL_FLAGS:
            i += 1
        elif arg in ("-h", "--help"):
            return argv, None, []
        elif arg in COMMANDS:
            return argv[:i], arg, argv[i + 1 :]
        else:
            return argv[:i], "run", argv[i:]
    return argv, None, []


def build_parser(only: str | None) -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Run containers from the minicontainer store.", formatter_class=_formatter)
    add_to(parser, GLOBAL_OPTIONS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, (module, help_) in COMMANDS.items():
        if only is None or name == only:
            cmd = sub.add_parser(name, help=help_, description=help_, formatter_class=_formatter)
            importlib.import_module(module).configure(cmd)
    return parser


def parse_args(global_opts: list[str], command: str, rest: list[str]) -> argparse.Namespace:
    """`[GLOBAL] COMMAND REST` parsed by the parser of that one command."""
    return build_parser(command).parse_args([*global_opts, command, *rest])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    global_opts, command, rest = _split_command(argv)
    if command is None:
        parser = build_parser(None)
        parser.parse_args(global_opts)  # prints help for -h/--help
        parser.print_help()
        return 0
    args = parse_args(global_opts, command, rest)
    from minicache.errors import MiniError, StoreUnavailable, one_line

    try:
        try:
            return importlib.import_module(COMMANDS[command][0]).execute(args)
        except OSError as err:  # a full disk is the one OS error any command may meet: one line too
            from minicache.errors import disk_full

            full = disk_full(err, "the store")
            if full is None:
                raise
            raise full from err
    except MiniError as err:
        if args.debug:
            raise
        print(one_line(PROG, err), file=sys.stderr)
        if isinstance(err, StoreUnavailable):
            return err.exit_code  # nothing was attempted: an engine error for every command
        return err.exit_code if getattr(args, "container_process", command in CONTAINER_PROCESS_COMMANDS) else 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `minirun ps | head`: the reader has gone; nothing left to say
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 0


def entry() -> NoReturn:
    """The console script: main(), then exit without the interpreter's teardown (~10 ms of freeing modules
    on the `minirun --rm IMAGE true` path). Output is flushed here; nothing in minirun relies on atexit."""
    code = main()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
