"""The `minibuild` command line: typer parses, one library call per command, errors become one line."""

from __future__ import annotations

import sys

PROG = "minibuild"
# Which module registers each command: a run imports (and typer inspects) only the one it calls.
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
        elif arg == "--help":  # the group's help, eager: it lists every command
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


def main(argv: list[str] | None = None) -> int:
    import typer
    from minibuild.app import app
    from minicache.errors import MiniError, StoreUnavailable, one_line

    args = sys.argv[1:] if argv is None else argv
    register(args)
    debug = "--debug" in args
    try:
        code = app(args=argv, prog_name=PROG, standalone_mode=False)
    except MiniError as err:
        if debug:
            raise
        print(one_line(PROG, err), file=sys.stderr)
        if isinstance(err, StoreUnavailable):
            return err.exit_code  # no store to work on: an engine error, as minirun says it
        return 1  # the docker CLI's status for a failed image command (usage errors are 125)
    except typer.Exit as e:
        return e.exit_code
    except typer.TyperException as e:  # usage errors: unknown option, missing argument, bad value
        if type(e).__name__ == "NoArgsIsHelpError":  # bare `minibuild`: the help, as Docker does
            print(e.format_message())
            return 0
        print(f"{PROG}: error: {e.format_message().rstrip('.')}; see '{PROG} --help'", file=sys.stderr)
        return 125
    except typer.Abort as e:  # typer makes an EOFError (end of input) of a command into Abort
        if debug:
            raise
        if e.__cause__ is None:
            print(f"{PROG}: interrupted", file=sys.stderr)
            return 130
        print(f"{PROG}: error: unexpected end of input: {e.__cause__}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except OSError as err:  # what no library call turned into a MiniError: a file it cannot open, write, lock
        if debug:
            raise
        print(one_line(PROG, _os_error(err)), file=sys.stderr)
        return 1
    if code == 130:  # typer returns (not raises) the status of a KeyboardInterrupt: Ctrl-C
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
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
