"""The `minirun` command line: parse arguments, call one library function, map errors to exit codes.

Built on argparse rather than typer: `minirun --rm IMAGE true` has a start-up budget of a few tens of
milliseconds and importing typer alone takes ~100 ms here. Only the invoked command's module is imported
and only its parser is built; a valid `run`/`create` line is read from the command's option table
(minirun.argtable) without argparse at all. argparse itself is imported on first use, so that the console
script (`entry`) can first stand in for what argparse would import and never use (see `_plain_gettext`).
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys

from minirun.argtable import FLAG, Option, add_to, parse

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from types import ModuleType
    from typing import NoReturn

PROG = "minirun"

# command -> (module implementing it, one-line help). Each module has configure(parser) and execute(args);
# a module whose positionals are IMAGE [COMMAND...] (run, create) also declares its options as OPTIONS
# (argtable.Option): a valid command line is then read without argparse (see parse_args).
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("minirun.commands.run", "Run a command in a new container"),
    "create": ("minirun.commands.create", "Create a new container"),
    "start": ("minirun.commands.start", "Start one or more stopped containers"),
    "stop": ("minirun.commands.stop", "Stop one or more running containers"),
    "kill": ("minirun.commands.kill", "Kill one or more running containers"),
    "restart": ("minirun.commands.restart", "Restart one or more containers"),
    "rm": ("minirun.commands.rm", "Remove one or more containers"),
    "ps": ("minirun.commands.ps", "List containers"),
    "inspect": ("minirun.commands.inspect", "Show low-level information on containers"),
    "logs": ("minirun.commands.logs", "Fetch the logs of a container"),
    "exec": ("minirun.commands.exec", "Run a command in a running container"),
    "wait": ("minirun.commands.wait", "Block until containers stop, then print their exit codes"),
    "top": ("minirun.commands.top", "Display the running processes of a container"),
    "rename": ("minirun.commands.rename", "Rename a container"),
    "commit": ("minirun.commands.commit", "Create a new image from a container's changes"),
    "pause": ("minirun.commands.pause", "Pause all processes within containers"),
    "unpause": ("minirun.commands.unpause", "Unpause all processes within containers"),
    "stats": ("minirun.commands.stats", "Display a live stream of container resource usage"),
    "container": ("minirun.commands.container", "Manage containers (prune, ls)"),
    "network": ("minirun.commands.network", "Manage networks (create, ls, inspect, rm, prune, connect, disconnect)"),
    "serve": ("minirun.commands.serve", "Serve the dashboard and a Docker-compatible API"),
    "version": ("minirun.commands.version", "Show the version"),
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


def _import(name: str) -> ModuleType:
    """importlib.import_module(name) without importing importlib (~0.2 ms; nothing else on the run path does)."""
    __import__(name)
    return sys.modules[name]


@functools.cache  # asked once: argparse wants it for every add_argument
def _terminal_width() -> int:
    """shutil.get_terminal_size().columns without importing shutil (and with it bz2 and lzma, ~4 ms)."""
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


def _parser_class() -> type[argparse.ArgumentParser]:
    import argparse

    class _Parser(argparse.ArgumentParser):
        def error(self, message: str) -> NoReturn:
            self.exit(USAGE_EXIT, f"{self.prog}: error: {message}; see '{self.prog} --help'\n")

        def _get_formatter(self) -> argparse.HelpFormatter:
            # argparse makes a formatter for every add_argument (to check metavars), and without a width
            # each one imports shutil for the terminal's (with bz2 and lzma, ~4 ms of `minirun run`)
            return self.formatter_class(prog=self.prog, width=_terminal_width() - 2)

    return _Parser


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
    parser_class = _parser_class()
    parser = parser_class(prog=PROG, description="Run containers from the minicontainer store.")
    add_to(parser, GLOBAL_OPTIONS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=parser_class)
    for name, (module, help_) in COMMANDS.items():
        if only is None or name == only:
            cmd = sub.add_parser(name, help=help_, description=help_)
            _import(module).configure(cmd)
    return parser


def parse_args(global_opts: list[str], command: str, rest: list[str]) -> argparse.Namespace:
    """`[GLOBAL] COMMAND REST` parsed: by argtable when the command declares OPTIONS and argtable is sure of
    the line (no argparse import, no parser built), else by argparse (help, usage errors, other commands)."""
    options = getattr(_import(COMMANDS[command][0]), "OPTIONS", None)
    if options is not None:
        args = parse(GLOBAL_OPTIONS, global_opts, options, rest)
        if args is not None:
            return args  # an argtable.Namespace: the same attributes as argparse's
    return build_parser(command).parse_args([*global_opts, command, *rest])


class _Deferred(type(sys)):  # a module type
    """Stands in for a module until something uses a name the stand-in lacks, then loads the real one."""

    def load(self) -> object:
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        return _import(self.__name__)  # also sets it on its package, in place of the stand-in

    def __getattr__(self, name: str) -> object:
        if name.startswith("__"):  # the import system asks for __path__ etc.: that is no use of the module
            raise AttributeError(name)
        return getattr(self.load(), name)


def _defer(name: str, **names: object) -> _Deferred | None:
    if name in sys.modules:
        return None
    stub = _Deferred(name)
    stub.__spec__ = None  # the import system reads __spec__ of modules it finds in sys.modules
    stub.__dict__.update(names)
    sys.modules[name] = stub
    package, _, child = name.rpartition(".")
    if package:  # `import urllib.parse; urllib.parse.x` looks the stand-in up on its package
        setattr(_import(package), child, stub)
    return stub


def _defer_inspect() -> None:
    """`dataclasses` imports inspect (~8 ms with ast, dis, tokenize) but calls it only for classes without a
    docstring; `minirun run` never needs it."""
    _defer("inspect")


def _plain_gettext() -> None:
    """argparse imports gettext, and gettext imports locale (~3.5 ms), to look its messages up in a
    `messages` catalog that Python does not ship (each lookup probes the locale directories): stand in
    with untranslated messages. Any other use of gettext loads the real module."""
    _defer("gettext", gettext=lambda message: message, ngettext=lambda one, many, n: one if n == 1 else many)


def _defer_urllib_parse() -> None:
    """pathlib imports urllib.parse (and with it ipaddress, ~3.5 ms) for Path.as_uri() alone, which minirun
    never calls: it gets a quote_from_bytes that loads the real module when called."""
    stub = _defer("urllib.parse")
    if stub is not None:
        stub.quote_from_bytes = lambda bs, safe="/": stub.load().quote_from_bytes(bs, safe)


def _defer_re() -> None:
    """pathlib and fnmatch import re (and with it enum, ~7 ms together) for globbing, which the run path
    never does; minirun's own checks on that path are plain string code (`minicache.charsets`). Any use
    of a name of re (a flag's regex, a ps filter, a glob) loads the real module then."""
    _defer("re")


def stand_ins() -> None:
    """The stand-ins the console script puts in place before anything imports what they stand for."""
    _plain_gettext()
    _defer_urllib_parse()
    _defer_re()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    global_opts, command, rest = _split_command(argv)
    if command is None:
        parser = build_parser(None)
        parser.parse_args(global_opts)  # prints help for -h/--help
        parser.print_help()
        return 0
    _defer_inspect()
    args = parse_args(global_opts, command, rest)
    from minicache.errors import MiniError, StoreUnavailable, one_line

    try:
        try:
            return _import(COMMANDS[command][0]).execute(args)
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


STARTUP_GC_THRESHOLD = 50_000


def _collect_later() -> None:
    """No automatic garbage collection until STARTUP_GC_THRESHOLD net allocations, then the defaults again.

    `minirun --rm IMAGE true` allocates ~12k container objects (~26k on the bridge network) that mostly live
    on (modules, classes, functions): at the default threshold (700) the collector runs ~15 times, finds
    nothing to free and costs ~2 ms. After the first collection the defaults return, so a long-lived process
    (the foreground `run` waiting for its container, a monitor forked from here) collects cycles as usual."""
    import gc

    defaults = gc.get_threshold()

    def restore(phase: str, _info: dict[str, int]) -> None:
        if phase == "stop":
            gc.set_threshold(*defaults)
            gc.callbacks.remove(restore)

    gc.callbacks.append(restore)
    gc.set_threshold(STARTUP_GC_THRESHOLD, *defaults[1:])


def entry() -> NoReturn:
    """The console script: main(), then exit without the interpreter's teardown (~10 ms of freeing modules
    on the `minirun --rm IMAGE true` path). Output is flushed here; nothing in minirun relies on atexit."""
    _collect_later()
    stand_ins()
    code = main()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
