"""`minirun run`/`create` command lines read from the option table (minirun.argtable) without argparse.

Differential: for every line argtable reads, argparse (the parser built from the same table, which still
serves --help and usage errors) must read the same Namespace; lines argtable is not sure of must fall back
to argparse, whose messages and exit codes stay. And a valid `run` in a fresh interpreter never imports
argparse.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from minirun import argtable, cli
from minirun.commands import create, run
from runkit import no_leaks  # noqa: F401 - fixture: the subprocess test runs a real container

IS_ROOT = os.geteuid() == 0


def _argparse(command: str, global_opts: list[str], rest: list[str]) -> dict | None:
    """What argparse reads (its attributes), or None when it refuses the line (exits)."""
    try:
        return vars(cli.build_parser(command).parse_args([*global_opts, command, *rest]))
    except SystemExit:
        return None


def _fast(command: str, global_opts: list[str], rest: list[str]) -> dict | None:
    options = {"run": run.OPTIONS, "create": create.OPTIONS}[command]
    args = argtable.parse(cli.GLOBAL_OPTIONS, global_opts, options, rest)
    return None if args is None else vars(args)


def _split(line: str | list[str]) -> tuple[list[str], str, list[str]]:
    argv = line.split() if isinstance(line, str) else line
    global_opts, command, rest = cli._split_command(argv)
    assert command is not None, argv
    return global_opts, command, rest


# Lines argtable reads itself: every option of the table, every syntax form; each must equal argparse's.
FAST = [
    "run img",
    "img",
    "img true",
    "--rm --network none img true",
    "--root /s --rm --network none img true",
    "--root=/s --runroot /r --debug run --rm img",
    "--debug --root /a --root /b img",
    "run -d img sleep 1",
    "run -dit img sh",
    "run -it --rm img sh -c 'echo hi'",
    "run -i -t img",
    "run -ti img",
    "run -ie X=1 img",
    "run -iefoo=bar img",
    "run -e A=1 -e B --env C=3 --env=D=4 -eE=5 -e=F img env",
    "run --env-file /a --env-file=/b img",
    "run --name web img",
    "run --name=web img",
    "run --name= img",
    "run -w /tmp img pwd",
    "run -w/tmp img pwd",
    "run --workdir=/tmp img",
    "run --entrypoint '' img",
    "run -h host img hostname",
    "run -hhost img",
    "run -ih host img",
    "run --hostname=h img",
    "run -u 1000:1000 img id",
    "run -u0 --user nobody img",
    "run -v /a:/b -v /c:/d:ro --volume=/e:/f img",
    "run --tmpfs /run --tmpfs /tmp:size=64m img",
    "run --read-only --privileged --init img",
    "run --cap-add NET_ADMIN --cap-add=SYS_TIME --cap-drop ALL img",
    "run --ulimit nofile=1024:2048 --ulimit=nproc=10 img",
    "run --network host img",
    "run --net=none img",
    "run --network container:abc img",
    "run -p 8080:80 -p127.0.0.1:1:2/udp --publish 9:9 -P img",
    "run -Pp 80 img",
    "run -pP img",
    "run --publish-all img",
    "run --add-host a:1.2.3.4 --dns 1.1.1.1 --dns-search x.org --dns-option ndots:2 img",
    "run --network net1 --ip 10.0.0.5 --network-alias web --network-alias=www img",
    "run --security-opt seccomp=unconfined --security-opt=no-new-privileges img",
    "run --restart on-failure:3 img",
    "run --restart=always img",
    "run --stop-signal SIGINT --stop-timeout 5 img",
    "run --stop-timeout -1 img",
    "run --stop-timeout=+7 img",
    "run --cgroup-parent /x img",
    "run -m 512m --memory-reservation 256m --memory-swap -1 img",
    "run --memory=1g -c 512 --cpu-shares=100 img",
    "run --cpus .5 img",
    "run --cpus=1.5 img",
    "run --cpu-period 100000 --cpu-quota -1 img",
    "run --cpuset-cpus 0-1 --cpuset-mems 0 --pids-limit -1 img",
    "run --pids-limit=-1 img",
    "run --blkio-weight 300 --device-read-bps /dev/sda:1mb --device-read-bps /dev/sdb:2mb img",
    "run --device-write-bps=/dev/sda:1mb --device-read-iops /dev/sda:100 --device-write-iops /dev/sda:50 img",
    "run -m-1 img",
    "run --name - img",
    "run -e - img",
    "run --rm img --name x -e y",
    "run --rm img sh --help",
    "run img ls -h",
    "run img ls --color=auto",
    "run img sh --rm --root /x",
    "run -- img true",
    "run --rm -- img -- true",
    "run img true -- x",
    "run -- -x y",
    "run -- -- x",
    "--rm -- img",
    "-- img",
    "run - true",
    "run --rm --rm img",
    "create img",
    "run -l a=b --label c img",
    "create --name c -e A=1 img sh -c true",
    "create -it --rm img",
    "create -- img x",
]


@pytest.mark.parametrize("line", FAST)
def test_argtable_reads_as_argparse_does(line: str) -> None:
    global_opts, command, rest = _split(line)
    fast = _fast(command, global_opts, rest)
    assert fast is not None, f"argtable fell back on a valid line: {line}"
    assert fast == _argparse(command, global_opts, rest)


def test_empty_and_spaced_values_as_argparse() -> None:
    for argv in (["run", "-e", "", "img"], ["run", "--name", "a b", "img", "x y"], ["run", "", "true"]):
        global_opts, command, rest = _split(argv)
        assert _fast(command, global_opts, rest) == _argparse(command, global_opts, rest) is not None


def test_every_option_of_the_table_is_in_the_corpus() -> None:
    words = {w.partition("=")[0] for line in FAST for w in line.split()}
    clusters = {"-" + c for line in FAST for w in line.split() if w[:1] == "-" and w[1:2] != "-" for c in w[1:3]}
    for option in run.OPTIONS:
        assert set(option.names) & (words | clusters), option.names


# Lines argtable leaves to argparse: help, usage errors, abbreviations, values argparse takes for options.
FALLBACK = [
    "run --help",
    "run img --netw",  # argparse refuses the ambiguous abbreviation even in the command
    "run img sh --r",  # ambiguous at the top level (--root, --runroot)
    "run img sh --ro",  # an abbreviation argparse accepts there (the command gets it): not sure, so argparse
    "run --netw none img",
    "run --networ none img",
    "run --bogus img",
    "run -x img",
    "run -e -x img",
    "run -e --rm img",
    "run --name -- img",
    "run -e",
    "run --rm",
    "run --",
    "run",
    "run --rm=yes img",
    "run -i=x img",
    "run -i=t img",  # Python 3.11's argparse reads -it, 3.13's refuses it
    "run -ie=x img",  # env "=x" for 3.11's argparse, "x" for 3.13's
    "run img -- true",  # 3.11's argparse drops that `--`; later ones (gh-81691) may keep it
    "run img -- -- true",
    "run -i= img",
    "run -iq img",
    "run -i-x img",
    "run --stop-timeout x img",
    "run --stop-timeout -1.5 img",
    "run --stop-timeout= img",
    "run -1 true",
    "run --debug img",
    "run --root /x img",
    "create -d img",
    "--root -x img",
    "--root --rm img",
    "--root=/x --debug img --d",
]


@pytest.mark.parametrize("line", FALLBACK)
def test_argtable_leaves_these_to_argparse(line: str, capsys: pytest.CaptureFixture[str]) -> None:
    global_opts, command, rest = _split(line)
    assert _fast(command, global_opts, rest) is None
    _argparse(command, global_opts, rest)  # whatever argparse makes of it, it is its call


def test_random_lines_agree_with_argparse(capsys: pytest.CaptureFixture[str]) -> None:
    """Lines made of the table's names, values and tricky words: whenever argtable reads one, argparse reads
    the same; and argtable reads a good share of them (it is not falling back on everything)."""
    words = [name for option in run.OPTIONS for name in option.names]
    words += ["-it", "-dit", "-ie", "-Pp", "-pP", "-hx", "--name=n", "-e=v", "--rm=x", "--", "-", "-1", "-0.5"]
    words += ["-i=t", "-ie=x", "-e=", "-e--", "--name=--", "-Pp=1", "-di="]
    words += ["--netw", "--r", "--ro", "--help", "-x", "--bogus", "img", "sh", "5", "a=b", "", "x y", "-a b"]
    starts = [[], ["run"], ["create"], ["--root", "/s"], ["--root=/s", "--debug", "run"], ["--runroot", "-x"]]
    values = ["v", "5", "-1", "-", "", "a=b", "x y", "-x", "--", "--rm", "-0.5"]
    rng = random.Random(4)
    read = 0
    for n in range(1500):
        if n % 2:  # anything
            tail = [rng.choice(words) for _ in range(rng.randint(0, 7))]
        else:  # mostly well-formed: options with values, then an image and a command
            tail = []
            for option in rng.choices(run.OPTIONS, k=rng.randint(0, 4)):
                name = rng.choice(option.names)
                if option.kind == argtable.FLAG:
                    tail.append(name)
                else:
                    tail += rng.choice([[name, rng.choice(values)], [f"{name}={rng.choice(values)}"]])
            tail += rng.choice([["img"], ["--", "img"], ["img", "--"]]) + rng.choices(words, k=rng.randint(0, 3))
        argv = [*rng.choice(starts), *tail]
        global_opts, command, rest = cli._split_command(argv)
        if command is None:
            continue
        fast = _fast(command, global_opts, rest)
        if fast is not None:
            read += 1
            assert fast == _argparse(command, global_opts, rest), argv
    assert read > 250, read


def test_main_uses_argparse_only_when_argtable_is_not_sure(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[str | None] = []
    real = cli.build_parser
    monkeypatch.setattr(cli, "build_parser", lambda only: built.append(only) or real(only))
    args = cli.parse_args(["--root", "/s"], "run", ["--rm", "--network", "none", "img", "true"])
    assert built == []
    assert (args.root, args.rm, args.network, args.image, args.command) == ("/s", True, "none", "img", ["true"])
    args = cli.parse_args([], "run", ["--net", "none", "img"])  # --net: an exact alias
    assert built == [] and args.network == "none"
    args = cli.parse_args([], "run", ["-it", "--rm", "img", "sh", "--ro"])
    assert built == ["run"] and args.command == ["sh", "--ro"]


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


@pytest.mark.root
@pytest.mark.skipif(not IS_ROOT, reason="needs root")
def test_valid_run_never_imports_argparse(store_root: Path, busybox_image: str, tmp_path: Path) -> None:
    """A fresh interpreter running a container from a valid line: argparse (and gettext through it) is never
    imported; an invalid one still gets argparse's error."""
    probe = (
        "import sys\n"
        "from minirun import cli\n"
        "code = cli.main(sys.argv[1:])\n"
        "loaded = sorted(m for m in ('argparse', 'gettext') if m in sys.modules)\n"
        "print('loaded:', loaded)\n"
        "sys.exit(code)\n"
    )
    line = ["--root", str(store_root), "--rm", "--network", "none", "-e", "A=1", busybox_image, "sh", "-c", "echo $A"]
    result = subprocess.run([sys.executable, "-c", probe, *line], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["1", "loaded: []"]
    result = subprocess.run(
        [sys.executable, "-c", probe, "--root", str(store_root), "--rm", "--bogus", busybox_image],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 125
    assert "minirun: error: unrecognized arguments: --bogus" in result.stderr


@pytest.mark.root
@pytest.mark.skipif(not IS_ROOT, reason="needs root")
def test_valid_create_never_imports_argparse(store_root: Path, busybox_image: str) -> None:
    probe = (
        "import contextlib, io, sys\n"
        "from minirun import cli\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        "    code = cli.main(sys.argv[1:])\n"
        "loaded = 'argparse' in sys.modules\n"
        "removed = cli.main(['--root', sys.argv[2], 'rm', out.getvalue().strip()])\n"
        "print(code, loaded, removed)\n"
    )
    line = ["--root", str(store_root), "create", "--name", "c1", "-e", "A=1", busybox_image, "true"]
    result = subprocess.run([sys.executable, "-c", probe, *line], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "0 False 0"


@pytest.mark.root
@pytest.mark.skipif(not IS_ROOT, reason="needs root")
def test_console_script_run_never_loads_re_or_enum(store_root: Path, busybox_image: str, tmp_path: Path) -> None:
    """With the console script's stand-ins, a valid `run` loads neither re nor enum (pathlib and fnmatch
    import re for globbing only); a later use of re gets the real module, and fnmatch still globs.

    The probe runs as from a plain install: without site (the development venv's editable-install finder
    imports re itself), our packages found under their import names through a directory of symlinks, the
    dependencies in site-packages as a plain path entry (so its .pth files do not run)."""
    packages = tmp_path / "packages"
    packages.mkdir()
    checkout = Path(__file__).resolve().parent.parent
    for name, folder in (("minirun", "runner"), ("minicache", "cache")):
        (packages / name).symlink_to(checkout / folder)
    probe = (
        f"import sys; sys.path.insert(0, {str(packages)!r}); sys.path.append({sysconfig.get_paths()['purelib']!r})\n"
        "import sys\n"
        "from minirun import cli\n"
        "cli.stand_ins()\n"
        "code = cli.main(sys.argv[1:])\n"
        "real = [m for m in ('re', 'enum') if m in sys.modules and type(sys.modules[m]).__name__ != '_Deferred']\n"
        "print('real:', real)\n"
        "import fnmatch, re\n"
        "print(re.fullmatch(r'a+', 'aaa') is not None, fnmatch.fnmatch('x.py', '*.py'),"
        " type(sys.modules['re']).__name__)\n"
        "sys.exit(code)\n"
    )
    line = ["--root", str(store_root), "--rm", "--network", "none", "--name", "re-probe", busybox_image, "true"]
    # the store's first container compiles the seccomp profile (libseccomp's bindings import enum): after it
    for _ in range(2):
        result = subprocess.run([sys.executable, "-S", "-c", probe, *line], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["real: []", "True True module"]
