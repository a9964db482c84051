"""What every `minibuild` command module registers on: its argparse arguments, and the global options' context.

A command is a function `fn(ctx, **arguments)` with its arguments declared once beside it (`arg`, `@command`);
`minibuild.cli` builds the parser of the one command that is called, so a run imports that module only.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from minicache.store import Store

PROG = "minibuild"
HELP = "Fill the minicontainer image store: pull, import, build, push; list and manage images."


class Context:
    """What the global options decide, handed to every command."""

    def __init__(self, root: Path | None, quiet: bool = False, debug: bool = False) -> None:
        self.root = root
        self.quiet = quiet
        self.debug = debug
        self._store: Store | None = None

    @property
    def store(self) -> Store:
        return self.open_store()

    def open_store(self, *, create: bool = True) -> Store:
        """The store; commands that only read pass `create=False` (a store that does not exist is an error)."""
        from minicache.store import Store

        if self._store is None:
            self._store = Store(self.root, create=create)
        return self._store


def store_of(ctx: Context, *, create: bool = True) -> Store:
    return ctx.open_store(create=create)


class UsageError(Exception):
    """A command line argparse refuses: `minibuild.cli` prints it on one line and exits 125."""


class Parser(argparse.ArgumentParser):
    """argparse with errors raised, not printed with the usage and exited with 2; `--help` but no `-h`."""

    def __init__(self, **kwargs) -> None:
        super().__init__(add_help=False, allow_abbrev=False, formatter_class=_Formatter, **kwargs)
        self.add_argument("--help", action="help", help="Show this message and exit.")

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(message)


class _Formatter(argparse.HelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32)


class Arg:
    """One `add_argument` call: the names or positional name, and argparse's keywords."""

    def __init__(self, *names: str, **kwargs: object) -> None:
        self.names = names
        self.kwargs = kwargs


def arg(*names: str, **kwargs: object) -> Arg:
    return Arg(*names, **kwargs)


def flag(*names: str, help: str) -> Arg:
    return Arg(*names, action="store_true", help=help)


def repeated(*names: str, help: str, metavar: str | None = None) -> Arg:
    """An option that may be given many times; the command gets a list (None when never given)."""
    return Arg(*names, action="append", metavar=metavar, help=help)


def int_range(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse `type` for an integer in [low, high]."""

    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a valid integer") from None
        if value < low or (high is not None and value > high):
            within = f"{low}<=x<={high}" if high is not None else f"x>={low}"
            raise argparse.ArgumentTypeError(f"{value} is not in the range {within}")
        return value

    return convert


class Command:
    def __init__(self, name: str, fn: Callable[..., object], args: list[Arg]) -> None:
        self.name, self.fn, self.args = name, fn, args

    @property
    def help(self) -> str:
        return (self.fn.__doc__ or "").strip()


COMMANDS: dict[str, Command] = {}


def command(name: str, *args: Arg) -> Callable[[Callable[..., object]], Callable[..., object]]:
    """Register `fn(ctx, **arguments)` as `minibuild NAME`; its docstring is its help."""

    def register(fn: Callable[..., object]) -> Callable[..., object]:
        COMMANDS[name] = Command(name, fn, list(args))
        return fn

    return register


def global_parser(commands: dict[str, str]) -> Parser:
    """The top-level parser: the global options and one sub-command per entry of `commands` (name: help)."""
    parser = Parser(prog=PROG, description=HELP, usage=f"{PROG} [OPTIONS] COMMAND [ARGS]...")
    parser.add_argument(
        "--root",
        type=Path,
        default=Path(os.environ["MINICONTAINER_ROOT"]) if os.environ.get("MINICONTAINER_ROOT") else None,
        metavar="PATH",
        help="Store root (default /var/lib/minicontainer; env: MINICONTAINER_ROOT).",
    )
    parser.add_argument("--debug", action="store_true", help="Show tracebacks for errors.")
    subs = parser.add_subparsers(dest="command", title="commands", metavar="COMMAND", parser_class=Parser)
    for name, text in commands.items():
        subs.add_parser(name, help=text, description=text, prog=f"{PROG} {name}")
    return parser


def add_arguments(parser: argparse.ArgumentParser, cmd: Command) -> None:
    for a in cmd.args:
        kwargs = dict(a.kwargs)
        names = sorted(a.names, key=len)  # `-f, --file` in the help
        if "dest" in kwargs and kwargs.get("action") is None:  # shown by its option's name, not its parameter's
            kwargs.setdefault("metavar", names[-1].lstrip("-").upper())
        parser.add_argument(*names, **kwargs)  # type: ignore[arg-type]
