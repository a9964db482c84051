"""A command's options declared once, as a table: made into argparse arguments, or parsed without argparse.

`minirun --rm IMAGE true` must start in a few tens of milliseconds; importing argparse and building the
`run` parser (~50 add_argument calls) cost ~4 ms of that. A command module whose positionals are
IMAGE [COMMAND...] and that declares its options as `OPTIONS` (a tuple of Option) gets a valid command
line read by `parse()` here; `add_to()` makes the same table into the argparse parser that still serves
`--help`, every usage error (with argparse's own messages) and every line `parse()` is not sure of:

    args = argtable.parse(GLOBAL_OPTIONS, global_argv, run.OPTIONS, run_argv)  # None: ask argparse
    if args is None:
        args = build_parser("run").parse_args([*global_argv, "run", *run_argv])

`parse()` reads what argparse (Python 3.11 to 3.13) reads the same way: exact option names, `--opt value`,
`--opt=value`, `-o value`, `-ovalue`, `-o=value`, clusters of short flags (`-it`, `-dit`, `-ie X`),
repeated options, a value may be `-`, a negative number or any string not starting with `-`; the first
positional is the image and everything after it is the command (argparse.REMAINDER: options after the image
belong to the command), a `--` before the image is dropped. It answers None for anything else: -h/--help,
an unknown or abbreviated option, a missing value, a value argparse would take for an option, a converter
that raises, a `--` right after the image or the forms `-i=t` and `-ie=x` (argparse's versions read them
differently), or a `--x` argparse would refuse as ambiguous anywhere in the line.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Iterable, Sequence

FLAG, VALUE, APPEND = "flag", "value", "append"  # Option.kind: store_true, store, append
HELP = ("-h", "--help")


class Option:
    """One option: its names (`-e`, `--env`), where its value goes (`dest`) and how it is shown in --help.

    A plain class with slots (not a Record): `run`'s table makes ~60 of them at import, on the start-up path.
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


class Namespace:
    """What parse() returns: attributes like argparse.Namespace's, equal to one with the same attributes."""

    def __init__(self, **kwargs: object) -> None:
        self.__dict__.update(kwargs)

    def __eq__(self, other: object) -> bool:
        return vars(self) == vars(other) if hasattr(other, "__dict__") else NotImplemented

    def __contains__(self, key: str) -> bool:
        return key in self.__dict__

    def __repr__(self) -> str:
        return f"Namespace({', '.join(f'{k}={v!r}' for k, v in self.__dict__.items())})"


def add_to(parser: argparse.ArgumentParser, options: Iterable[Option]) -> None:
    """Add the options to an argparse parser, as parse() reads them."""
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


def _looks_like_option(arg: str) -> bool:
    """Whether argparse takes `arg` (met where a value is due) for an option rather than a value.

    Conservative: a value starting with `-` passes only as `-` or a negative number, which argparse takes as
    values when no option looks like a negative number (none of ours does)."""
    if not arg.startswith("-") or arg == "-":
        return False
    head, dot, tail = arg[1:].partition(".")
    negative = tail.isdecimal() and (not head or head.isdecimal()) if dot else head.isdecimal()
    return not negative


def _ambiguous(argv: Sequence[str], names: Iterable[str]) -> bool:
    """Whether some `--x` before the first `--` is not an option's name but starts one: argparse (which
    classifies every argument, even the command's) either takes it for that option or refuses it."""
    longs = [name for name in names if name.startswith("--")]
    exact = set(longs)
    for arg in argv:
        if arg == "--":
            return False
        if arg.startswith("--"):
            name = arg.partition("=")[0]
            if name not in exact and any(long.startswith(name) for long in longs):
                return True
    return False


def _options(table: dict[str, Option], argv: Sequence[str], i: int, values: dict[str, object]) -> int | None:
    """Read the option at argv[i] (and its value) into `values`; the index after it, None if not sure."""
    arg = argv[i]
    option, explicit, eq = table.get(arg), None, ""
    if option is None:
        name, eq, value = arg.partition("=")
        if eq and name in table:
            option, explicit = table[name], value
        elif arg[1] != "-" and arg[:2] in table:  # -ovalue, or a cluster of flags -it
            option, explicit, eq = table[arg[:2]], arg[2:], ""
        else:
            return None  # unknown, or an abbreviation: argparse decides
    while True:
        if option.dest == "help":
            return None  # argparse prints the help
        if option.kind == FLAG:
            values[option.dest] = True
            if explicit is None:
                return i + 1
            if arg[1] == "-" or eq or not explicit:
                return None  # argparse: "ignored explicit argument" (3.11 reads -i=t as -it, 3.13 refuses it)
            # the next letter of a cluster
            option, explicit = table.get("-" + explicit[0]), explicit[1:] or None
            if option is None or (explicit or "").startswith("="):
                return None  # -ie=x: the value is "=x" for Python 3.11's argparse, "x" for 3.13's
            continue
        if explicit is None:
            i += 1
            if i >= len(argv) or argv[i] == "--" or _looks_like_option(argv[i]):
                return None  # argparse: "expected one argument"
            explicit = argv[i]
        elif explicit == "--":
            return None  # argparse drops it from `--opt=--` and stores an empty list
        if option.type is not None:
            try:
                value: object = option.type(explicit)
            except (TypeError, ValueError):
                return None  # argparse: "invalid ... value"
        else:
            value = explicit
        if option.kind == APPEND:
            values[option.dest].append(value)  # type: ignore[attr-defined]
        else:
            values[option.dest] = value
        return i + 1


def _table(options: Iterable[Option]) -> dict[str, Option]:
    table = {name: option for option in options for name in option.names}
    for name in HELP:
        table.setdefault(name, Option(HELP, "help", FLAG))
    return table


def parse(
    global_options: Sequence[Option],
    global_argv: Sequence[str],
    options: Sequence[Option],
    argv: Sequence[str],
    *,
    image: str = "image",
    command: str = "command",
) -> Namespace | None:
    """`[GLOBAL_OPTIONS] COMMAND [OPTIONS] IMAGE [CMD...]` as argparse would read it (COMMAND's subparser
    having OPTIONS, an IMAGE positional and a REMAINDER COMMAND), or None where argparse should decide."""
    global_table, table = _table(global_options), _table(options)
    if _ambiguous([*global_argv, *argv], [*global_table, *table]):
        return None
    values = defaults(global_options)
    i = 0
    while i < len(global_argv):
        if not global_argv[i].startswith("-") or global_argv[i] == "-":
            return None
        step = _options(global_table, global_argv, i, values)
        if step is None:
            return None
        i = step
    values.update(defaults(options))
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":  # what follows is the image and its command, whatever it looks like
            i += 1
            break
        if arg.startswith("-") and arg != "-":
            if _looks_like_option(arg):
                step = _options(table, argv, i, values)
                if step is None:
                    return None
                i = step
                continue
            return None  # a negative number as the image: let argparse decide
        if argv[i + 1 : i + 2] == ["--"]:
            return None  # `IMAGE -- CMD`: argparse 3.11 drops that `--`; versions with gh-81691's fix may not
        values[image], values[command] = arg, list(argv[i + 1 :])
        return Namespace(**values)
    if i >= len(argv):
        return None  # no image: argparse's "the following arguments are required"
    values[image], values[command] = argv[i], list(argv[i + 1 :])
    return Namespace(**values)
