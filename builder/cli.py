"""The `minibuild` command line: argparse parses, one library call per command, errors become one line."""

from __future__ import annotations

import sys

PROG = "minibuild"
# Which module registers each command: a run imports (and builds the parser of) only the one it calls.
COMMAND_MODULES = {
    "build": "build",
    **dict.fromkeys(("images", "inspect", "tag", "rm", "prune", "export", "mount", "umount", "save"), "images"),
    "from-tar": "importing",
    **dict.fromkeys(("pull", "push", "login", "logout"), "registry"),
    "version": "version",
}
ALL_MODULES = ("build", "images", "importing", "registry", "version")  # in the order `--help` lists them
GLOBAL_VALUE_OPTIONS = ("--root",)


def command_name(argv: list[str]) -> str | None:
    """The command word of `argv` (after the global options), or None when there is none (help, no arguments)."""
    args = iter(argv)
    for arg in args:
        if arg in GLOBAL_VALUE_OPTIONS:
            next(args, None)
        elif arg == "--help":  # the top-level help lists every command
            return None
        elif arg == "--":
            return next(args, None)
        elif not arg.startswith("-") or arg == "-":
            return arg
    return None


def register(argv: list[str]) -> None:
    """Import the command module `argv` calls; all of them when it names none of them (help, a typo)."""
    from importlib import import_module

    module = COMMAND_MODULES.get(command_name(argv) or "")
    for name in (module,) if module else ALL_MODULES:
        import_module(f"minibuild.commands.{name}")


def parse(argv: list[str]):
    """(the command, its arguments, the global context) for `argv`; raises UsageError, or SystemExit for --help."""
    from minibuild.app import COMMANDS, Context, UsageError, add_arguments, global_parser

    word = command_name(argv)
    if word is not None and word not in COMMAND_MODULES:
        raise UsageError(f"No such command {word!r}")
    register(argv)
    parser = global_parser({name: cmd.help.split("\n", 1)[0] for name, cmd in COMMANDS.items()})
    subs = next(a for a in parser._actions if a.dest == "command")
    for name, cmd in COMMANDS.items():
        add_arguments(subs.choices[name], cmd)  # type: ignore[index]
    ns = vars(parser.parse_args(argv))
    name = ns.pop("command")
    if name is None and argv:  # only global options: bare `minibuild` alone shows the help
        raise UsageError("Missing command")
    ctx = Context(ns.pop("root"), debug=ns.pop("debug"))
    return COMMANDS[name] if name else None, ns, ctx


def main(argv: list[str] | None = None) -> int:
    from minibuild.app import COMMANDS, UsageError, global_parser
    from minicache.errors import MiniError, StoreUnavailable, one_line

    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        cmd, arguments, ctx = parse(args)
    except SystemExit as e:  # --help, printed
        return e.code if isinstance(e.code, int) else 0
    except UsageError as e:  # unknown command or option, missing argument, bad value
        print(f"{PROG}: error: {str(e).rstrip('.')}; see '{PROG} --help'", file=sys.stderr)
        return 125
    if cmd is None:  # bare `minibuild`: the help, as Docker does
        global_parser({name: c.help.split("\n", 1)[0] for name, c in COMMANDS.items()}).print_help()
        return 0
    try:
        code = cmd.fn(ctx, **arguments)
    except MiniError as err:
        if debug:
            raise
        print(one_line(PROG, err), file=sys.stderr)
        if isinstance(err, StoreUnavailable):
            return err.exit_code  # no store to work on: an engine error, as minirun says it
        return 1  # the docker CLI's status for a failed image command (usage errors are 125)
    except EOFError as e:  # a prompt that found the end of its input
        if debug:
            raise
        print(f"{PROG}: error: unexpected end of input: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except OSError as err:  # what no library call turned into a MiniError: a file it cannot open, write, lock
        if debug:
            raise
        print(one_line(PROG, _os_error(err)), file=sys.stderr)
        return 1
    return code if isinstance(code, int) else 0


def _os_error(err: OSError):
    """An OSError as a MiniError that says what to do about it."""
    import errno

    from minicache.errors import MiniError

    where = f": {err.filename}" if err.filename else ""
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return MiniError(
            f"{err.strerror}{where}",
            hint="minibuild needs to write its store: run it as root, or give --root a directory you own",
        )
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return MiniError(f"{err.strerror}{where}", hint="free some space on the store's filesystem")
    return MiniError(f"{err.strerror or err}{where}")


if __name__ == "__main__":
    sys.exit(main())
