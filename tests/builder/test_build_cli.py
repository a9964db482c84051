"""`minibuild build` as users call it: the console script, stdin contexts, one-line errors and exit codes."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from kits.runkit import no_leaks  # noqa: F401 - autouse: nothing may outlive a test
from minicache.overlay import supported
from minicache.store import Store

pytestmark = [pytest.mark.root, pytest.mark.skipif(not supported() or os.geteuid() != 0, reason="needs root + overlay")]
MINIBUILD = str(Path(sys.executable).with_name("minibuild"))


def cli(store: Store, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [MINIBUILD, "--root", store.root, *args],
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        timeout=300,
    )


def test_build_from_stdin_tar_quiet(store: Store, busybox_image: str, tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        recipe = f"FROM {busybox_image}\nCOPY f /f\nRUN echo noisy step output\n".encode()
        for name, data in (("Containerfile", recipe), ("f", b"x")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    done = cli(store, "build", "-q", "-t", "fromstdin:1", "-", stdin=buf.getvalue())
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode() == store.images.resolve("fromstdin:1").id + "\n"  # -q: the ID and nothing else
    (tmp_path / "Containerfile").write_text(f"FROM {busybox_image}\nRUN echo the reason; exit 3\n")
    failed = cli(store, "build", "-q", str(tmp_path))
    assert failed.returncode == 1 and failed.stdout == b"" and b"the reason" in failed.stderr


def test_errors_are_one_line(store: Store, busybox_image: str, tmp_path: Path) -> None:
    (tmp_path / "Containerfile").write_text(f"FROM {busybox_image}\nRUN exit 7\n")
    failed = cli(store, "build", str(tmp_path))
    err = failed.stderr.decode()
    assert failed.returncode == 1 and "Traceback" not in err
    assert (
        err.strip()
        .splitlines()[-1]
        .startswith(f"minibuild: error: {tmp_path}/Containerfile:2: RUN: `/bin/sh -c exit 7`")
    )
    (tmp_path / "Containerfile").write_text("FROM scratch\nBOGUS x\n")
    bad = cli(store, "build", str(tmp_path))
    assert bad.returncode == 1 and b"Containerfile:2: unknown instruction: BOGUS" in bad.stderr
    for args, message in (
        (["--compression", "lz4"], b"unknown compression"),
        (["--network", "bridge"], b"unknown network"),
        (["-t", "Bad Name"], b"error"),
        (["--build-arg", "=x"], b"has no name"),
    ):
        result = cli(store, "build", *args, str(tmp_path))
        assert result.returncode == 1 and message in result.stderr and b"Traceback" not in result.stderr, result.stderr
    missing = cli(store, "build", str(tmp_path / "nope"))
    assert missing.returncode == 1 and b"does not exist" in missing.stderr
    assert store.images.ids() == [store.images.resolve(busybox_image).id]


def test_every_command_is_in_the_table_of_modules() -> None:
    """`minibuild.cli` imports only the called command's module: every registered command must be in its table."""
    from minibuild import cli as minibuild_cli
    from minibuild.app import COMMANDS

    minibuild_cli.register([])
    modules = {name: cmd.fn.__module__ for name, cmd in COMMANDS.items()}
    assert modules == {name: f"minibuild.commands.{m}" for name, m in minibuild_cli.COMMAND_MODULES.items()}
    assert minibuild_cli.command_name(["--root", "build", "images", "-q"]) == "images"
    assert minibuild_cli.command_name(["--debug", "--root=/x", "build", "."]) == "build"
    assert minibuild_cli.command_name(["--help", "build"]) is None  # the top-level help: every command
    assert minibuild_cli.command_name(["--root", "/x"]) is None


def test_a_command_loads_only_its_own_module(tmp_path: Path) -> None:
    code = (
        "import sys\nfrom minibuild import cli\ncode = cli.main(sys.argv[1:])\n"
        "print(sorted(m for m in sys.modules if m.startswith('minibuild.commands.')), 'typer' in sys.modules)\n"
        "sys.exit(code)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, "--root", str(tmp_path / "store"), "version"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "['minibuild.commands.version'] False"


@pytest.mark.parametrize("args", [["--help"], [], ["--root", "/nonexistent", "--help", "build"]])
def test_the_help_lists_every_command(args: list[str]) -> None:
    from minibuild.cli import COMMAND_MODULES

    done = subprocess.run([MINIBUILD, *args], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert done.returncode == 0 and "Traceback" not in done.stderr
    listed = {
        line.split()[0]
        for line in done.stdout.split("COMMAND\n")[1].splitlines()
        if line[:4] == "    " and line[4] != " "
    }
    assert listed == set(COMMAND_MODULES)


def test_a_command_help_and_usage_errors(tmp_path: Path) -> None:
    helped = subprocess.run([MINIBUILD, "build", "--help"], capture_output=True, text=True)
    assert helped.returncode == 0 and "--build-arg" in helped.stdout and "--no-cache" in helped.stdout
    for args, message in (
        (["bogus"], "No such command 'bogus'"),
        (["--root", str(tmp_path)], "Missing command"),
        (["build", "--bogus", "x"], "--bogus"),
        (["build"], "CONTEXT"),
        (["build", "--timestamp", "abc", "x"], "--timestamp"),
        (["push", "--chunk-size", "10", "x"], "x>=1024"),
        (["pull", "--max-concurrent-downloads", "33", "x"], "1<=x<=32"),
        (["-h"], "-h"),  # --help only, as before: -h is no option of minibuild's
        (["build", "-T", "x"], "-T"),
        (["build", "--no-cach", "x"], "--no-cach"),  # no abbreviations of long options
    ):
        bad = subprocess.run([MINIBUILD, *args], capture_output=True, text=True, stdin=subprocess.DEVNULL)
        assert bad.returncode == 125 and bad.stderr.startswith("minibuild: error: "), (args, bad.stderr)
        assert message in bad.stderr and len(bad.stderr.splitlines()) == 1 and bad.stdout == "", (args, bad.stderr)


def test_login_prompts_end_of_input_is_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [MINIBUILD, "login", "127.0.0.1:9"],
        input="",
        capture_output=True,
        text=True,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    assert done.returncode == 1 and done.stderr.startswith("minibuild: error: unexpected end of input")
    assert "Traceback" not in done.stderr
