"""The `minibuild` command line: typer parses, one library call per command, errors become one line."""

from __future__ import annotations

import sys

PROG = "minibuild"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if "build" in args:  # read without typer when it can be (see minibuild.build.fastcli)
        from minibuild.build.fastcli import main as build_main

        code = build_main(list(args))
        if code is not None:
            return code
    return _typer_main(argv)


def _typer_main(argv: list[str] | None) -> int:
    import typer
    from minibuild.app import app
    from minibuild.commands import build, images, importing, registry, version  # noqa: F401  (registers commands)
    from minicache.errors import MiniError, StoreUnavailable, one_line

    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    try:
        app(args=argv, prog_name=PROG, standalone_mode=False)
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
    except (KeyboardInterrupt, typer.Abort):
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
