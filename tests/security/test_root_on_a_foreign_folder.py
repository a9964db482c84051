"""`--root` (or `--runroot`, `$MINICONTAINER_ROOT`) naming a folder that holds someone else's files, a typo
like `--root /srv` or `--runroot /run`: a store made there finds it open to others and closes it, which
chmodded every folder below it 0700 and every file 0600 (a web root, /run's sockets) and filled it with
the store's folders, even for `ps`. Such a folder is refused in one line and left as it was; an empty
folder, a new path and an existing store still work.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

MINIRUN = str(Path(sys.executable).with_name("minirun"))
MINIBUILD = str(Path(sys.executable).with_name("minibuild"))


def _tree(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.lstat().st_mode for p in [root, *root.rglob("*")]}


@pytest.fixture
def foreign(tmp_path: Path) -> Path:
    """A folder of someone else's files, open to everyone (a web root)."""
    root = tmp_path / "srv"
    (root / "www" / "html").mkdir(parents=True)
    (root / "www" / "html" / "index.html").write_text("hello\n")
    for path in [root, root / "www", root / "www" / "html"]:
        os.chmod(path, 0o755)
    os.chmod(root / "www" / "html" / "index.html", 0o644)
    return root


def _run(*argv: str, env: dict | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})}
    )


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param((MINIRUN, "--root", "{dir}", "ps"), marks=pytest.mark.root),  # minirun needs root
        pytest.param((MINIRUN, "--root", "{dir}", "ps", "-a"), marks=pytest.mark.root),
        (MINIBUILD, "--root", "{dir}", "images"),
        pytest.param((MINIRUN, "--root", "{store}", "--runroot", "{dir}", "ps"), marks=pytest.mark.root),
        pytest.param((MINIRUN, "ps"), marks=pytest.mark.root),  # $MINICONTAINER_ROOT
    ],
)
def test_a_folder_of_other_files_is_refused_and_left_alone(tmp_path: Path, foreign: Path, argv: tuple) -> None:
    from minicache.store import Store

    Store(tmp_path / "store", tmp_path / "store" / "run")
    before = _tree(foreign)
    env = {"MINICONTAINER_ROOT": str(foreign)} if "--root" not in argv else {}
    result = _run(*(a.format(dir=foreign, store=tmp_path / "store") for a in argv), env=env)
    assert result.returncode != 0, result.stdout
    assert result.stderr.count("\n") == 1 and "is not a minicontainer store" in result.stderr, result.stderr
    assert _tree(foreign) == before


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="minirun needs root")
def test_empty_new_and_existing_stores_still_open(tmp_path: Path) -> None:
    from minicache.store import Store

    empty = tmp_path / "empty"
    (empty / "lost+found").mkdir(parents=True)  # as on a file system of its own
    for root in (empty, tmp_path / "new" / "store"):
        Store(root)  # made in an empty folder, or at a new path
        for argv in ((MINIRUN, "--root", str(root), "ps", "-a"), (MINIBUILD, "--root", str(root), "images")):
            result = _run(*argv)  # and opened again
            assert result.returncode == 0, result.stderr
    assert {"blobs", "containers", "run"} <= set(os.listdir(empty))


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="chmod of another user's old store")
def test_closing_an_old_store_leaves_what_is_not_its_own() -> None:
    """An old, open store that holds a folder of something else, and a link to a folder elsewhere where the
    store keeps network records: only the store's own folders are closed."""
    base = Path(tempfile.mkdtemp(prefix="mc-foreign-"))
    try:
        store, elsewhere = base / "store", base / "elsewhere"
        for name in ("blobs", "layers", "images", "containers", "tmp", "locks", "notes"):
            (store / name).mkdir(parents=True)
        (elsewhere / "sub").mkdir(parents=True)
        (store / "networks").symlink_to(elsewhere)
        for path in [base, store, *store.iterdir(), elsewhere, elsewhere / "sub"]:
            os.chmod(path, 0o755, follow_symlinks=False) if not path.is_symlink() else None
        keep = {**_tree(elsewhere), "notes": (store / "notes").stat().st_mode}
        result = _run(MINIBUILD, "--root", str(store), "images")
        assert result.returncode == 0, result.stderr
        assert os.stat(store).st_mode & 0o777 == 0o700
        assert {**_tree(elsewhere), "notes": (store / "notes").stat().st_mode} == keep
    finally:
        shutil.rmtree(base)
