"""`minirun run`/`create` command lines: parsed by argparse from the command's option table (minirun.cli.options).

Docker's forms (clusters of short flags, `-h HOSTNAME`, the image ending the options), Docker's exit code
for usage errors, and argparse's own messages and help.
"""

from __future__ import annotations

import pytest
from minirun.cli import main as cli


def _parse(line: str) -> object:
    global_opts, command, rest = cli._split_command(line.split())
    assert command is not None, line
    return cli.parse_args(global_opts, command, rest)


def test_run_line_reads_options_image_and_command() -> None:
    args = _parse("--root /s --rm --network none img true")
    assert (args.root, args.rm, args.network, args.image, args.command) == ("/s", True, "none", "img", ["true"])
    assert _parse("run --net none img").network == "none"  # --net: an exact alias


def test_options_after_the_image_belong_to_the_command() -> None:
    args = _parse("run -it --rm -e A=1 -e B=2 -h box img sh --ro -e")
    assert (args.interactive, args.tty, args.rm, args.hostname) == (True, True, True, "box")
    assert args.env == ["A=1", "B=2"] and args.image == "img" and args.command == ["sh", "--ro", "-e"]


def test_create_has_no_detach() -> None:
    args = _parse("create --name web img")
    assert args.name == "web" and args.image == "img" and "detach" not in vars(args)


def test_unknown_flag_exits_125_with_argparse_message(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["run", "--bogus", "img"])
    assert exc.value.code == 125
    err = capsys.readouterr().err
    assert err == "minirun: error: unrecognized arguments: --bogus; see 'minirun --help'\n"  # as before argtable


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--rm", "-e"], "minirun run: error: argument -e/--env: expected one argument"),
        (["run", "--stop-timeout", "x", "img"], "argument --stop-timeout: invalid int value: 'x'"),
        (["run", "--netw", "none", "img"], "ambiguous option: --netw could match --network, --network-alias"),
        (["create", "--rm"], "minirun create: error: the following arguments are required: IMAGE"),
    ],
)
def test_usage_errors_stay_argparse(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 125
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["run", "--help"], ["create", "--help"], ["--rm", "--help"]])
def test_help_is_argparse(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: minirun {argv[0] if argv[0] == 'create' else 'run'} [--help]")
    assert "-h HOSTNAME, --hostname HOSTNAME" in out and "resource limits:" in out and "--pids-limit" in out
