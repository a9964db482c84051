"""A command's options declared once, as a table, from which its argparse parser is built.

A table of plain `Option`s serves both the command line (`add_to` makes them argparse arguments) and the
callers that need each option's default without a parser (the Engine API's create, in minirun.serve).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Iterable

FLAG, VALUE, APPEND = "flag", "value", "append"  # Option.kind: store_true, store, append


class Option:
    """One option: its names (`-e`, `--env`), where its value goes (`dest`) and how it is shown in --help.

    A plain class with slots: `run`'s table makes dozens of them at import, on the start-up path.
    """

    __slots__ = ("default", "dest", "group", "help", "kind", "metavar", "names", "type")

    def __init__(
        self,
        names: tuple[str, ...],
        dest: str,
        kind: str = VALUE,
        help: str | None = None,
        metavar: str | None = None,
        default: object = None,  # VALUE only: FLAG's is False, APPEND's a new empty list
        type: Callable[[str], object] | None = None,  # converts a VALUE (argparse's `type=`)
        group: str | None = None,  # the argument group it is listed under in --help
    ) -> None:
        self.names, self.dest, self.kind, self.help = names, dest, kind, help
        self.metavar, self.default, self.type, self.group = metavar, default, type, group

    def __repr__(self) -> str:
        return f"Option({self.names!r}, {self.dest!r}, {self.kind!r})"


def add_to(parser: argparse.ArgumentParser, options: Iterable[Option]) -> None:
    """Add the options to an argparse parser."""
    groups: dict[str, argparse._ArgumentGroup] = {}
    for option in options:
        if "-h" in option.names:  # `-h` is this option's, `--help` stays help (Docker's `run -h HOSTNAME`)
            parser._optionals.conflict_handler = "resolve"
        target = parser
        if option.group is not None:
            if option.group not in groups:
                groups[option.group] = parser.add_argument_group(option.group)
            target = groups[option.group]
        kwargs: dict[str, object] = {"dest": option.dest, "help": option.help}
        if option.kind == FLAG:
            kwargs["action"] = "store_true"
        else:
            kwargs["metavar"] = option.metavar
            if option.kind == APPEND:
                kwargs.update(action="append", default=[])
            else:
                kwargs.update(default=option.default, type=option.type)
        target.add_argument(*option.names, **kwargs)


def defaults(options: Iterable[Option]) -> dict[str, object]:
    """Each option's value when it is not given."""
    return {o.dest: False if o.kind == FLAG else [] if o.kind == APPEND else o.default for o in options}
