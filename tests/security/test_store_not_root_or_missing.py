"""Who may not use a store, and stores that are not there, get one line and leave nothing behind.

- A user who is not root: every minirun command that touches a store says it needs root (exit 125), and
  creates nothing (`run --rm` used to leave a created container in a store the user owns); minibuild
  against root's store says permission denied; minibuild with the user's own store (XDG) works, 0700.
- Commands that only read (`ps`, `inspect`, `images`) on a --root that does not exist say so and do
  not create it; a --root that is a file is one line, exit 125, for every command.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from kits.runkit import MINIBUILD, MINIRUN, NOBODY, needs_setpriv

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (setpriv)"),
    needs_setpriv,
]

MINIRUN_COMMANDS = (
    ("ps",),
    ("ps", "-a"),
    ("run", "--rm", "bb:latest", "true"),
    ("run", "bb:latest", "true"),
    ("run", "-d", "bb:latest", "sleep", "5"),
    ("create", "bb:latest", "true"),
    ("rm", "x"),
    ("rm", "-f", "x"),
    ("inspect", "x"),
    ("stop", "x"),
    ("kill", "x"),
    ("start", "x"),
    ("logs", "x"),
    ("exec", "x", "true"),
)


def call(argv: list[str], *, env: dict | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("MINICONTAINER_ROOT", "XDG_DATA_HOME")}
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, env={**base, **(env or {})}
    )


def assert_one_line(result: subprocess.CompletedProcess[str], prog: str, *words: str, code: int = 125) -> None:
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert result.returncode == code, (result.returncode, result.stderr)


@pytest.fixture
def home():
    """A folder for uid 65534 (its HOME), in a folder every user may traverse; removed afterwards."""
    top = Path(tempfile.mkdtemp(prefix="mc-nobody-", dir="/tmp"))
    os.chmod(top, 0o755)
    path = top / "home"
    path.mkdir()
    os.chown(path, 65534, 65534)
    yield path
    shutil.rmtree(top)


@pytest.fixture
def root_store(home: Path, busybox_rootfs: Path) -> Path:
    from kits.storekit import add_rootfs_image
    from minicache.store import Store

    root = home.parent / "root-store"
    add_rootfs_image(Store(root), busybox_rootfs, "bb:latest")
    return root


def entries(root: Path) -> list[str]:
    return sorted(n for n in os.listdir(root / "containers") if n != "names")


@pytest.mark.parametrize("command", MINIRUN_COMMANDS, ids=" ".join)
def test_minirun_as_another_user_needs_root(command: tuple[str, ...], home: Path, root_store: Path) -> None:
    # root's store, the default root, and a store the user owns: the same line, nothing made
    own = home / "own-store"
    shutil.copytree(root_store, own, symlinks=True)
    for dirpath, dirnames, filenames in os.walk(own):
        for name in [dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)]:
            os.lchown(name, 65534, 65534)
    for where in (["--root", str(root_store)], [], ["--root", str(own)]):
        result = call([*NOBODY, MINIRUN, *where, *command], env={"HOME": str(home)})
        assert_one_line(result, "minirun", "needs root")
    assert entries(root_store) == [] and entries(own) == []
    assert not (home / ".local").exists()


def test_minibuild_as_another_user(home: Path, root_store: Path) -> None:
    for command in (("images",), ("inspect", "bb:latest"), ("pull", "127.0.0.1:9/x:y"), ("rm", "bb:latest")):
        result = call([*NOBODY, MINIBUILD, "--root", str(root_store), *command], env={"HOME": str(home)})
        assert_one_line(result, "minibuild")
        result = call([*NOBODY, MINIBUILD, *command], env={"HOME": "/root"})  # root's own XDG store
        assert_one_line(result, "minibuild", "permission denied")
    # the user's own store: made under $XDG_DATA_HOME (default ~/.local/share), closed
    listed = call([*NOBODY, MINIBUILD, "images"], env={"HOME": str(home)})
    assert listed.returncode == 0, listed.stderr
    store = home / ".local/share/minicontainer"
    assert os.stat(store).st_uid == 65534 and os.stat(store).st_mode & 0o777 == 0o700


def test_read_only_commands_on_a_missing_root_make_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "no-store"
    for argv, prog in (
        ([MINIRUN, "--root", str(missing), "ps"], "minirun"),
        ([MINIRUN, "--root", str(missing), "ps", "-a"], "minirun"),
        ([MINIRUN, "--root", str(missing), "inspect", "x"], "minirun"),
        ([MINIRUN, "--root", str(missing), "logs", "x"], "minirun"),
        ([MINIBUILD, "--root", str(missing), "images"], "minibuild"),
        ([MINIBUILD, "--root", str(missing), "inspect", "x"], "minibuild"),
    ):
        assert_one_line(call(argv), prog, "no store at", str(missing))
        assert_one_line(call(argv[:1] + argv[3:], env={"MINICONTAINER_ROOT": str(missing)}), prog, "no store at")
        assert not missing.exists()


@pytest.mark.parametrize(
    "argv",
    [
        (MINIRUN, "ps"),
        (MINIRUN, "run", "--rm", "bb", "true"),
        (MINIRUN, "rm", "-f", "x"),
        (MINIRUN, "inspect", "x"),
        (MINIRUN, "run", "-d", "bb", "true"),
        (MINIBUILD, "images"),
        (MINIBUILD, "pull", "127.0.0.1:9/x:y"),
    ],
    ids=lambda argv: " ".join([Path(argv[0]).name, *argv[1:]]),
)
def test_a_root_that_is_a_file_is_one_line(argv: tuple[str, ...], tmp_path: Path) -> None:
    file = tmp_path / "a-file"
    file.write_text("not a store\n")
    prog = Path(argv[0]).name
    assert_one_line(call([argv[0], "--root", str(file), *argv[1:]]), prog, "not a directory")
    assert_one_line(call([argv[0], "--root", str(file / "below"), *argv[1:]]), prog, "not a directory")
    assert file.read_text() == "not a store\n"
