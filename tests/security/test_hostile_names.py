"""Command-line values no file system takes: a 300-character container name (`run`, `create`, `rename`, and
lookups by it) and `minibuild export -o` into a directory that does not exist. One line, a Docker exit code,
nothing created."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from kits.runkit import container_ids, minirun
from minicache.store import Store

LONG = "a" * 300
MINIBUILD = [sys.executable, "-m", "minibuild.cli"]

pytestmark = pytest.mark.root


def one_line(result: subprocess.CompletedProcess[str], prog: str) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), result.stderr
    return lines[0]


@pytest.mark.parametrize("command", [["run", "--rm"], ["run", "-d"], ["create"]])
def test_a_300_character_name_is_refused(store_root: Path, busybox_image: str, command: list[str]) -> None:
    result = minirun(store_root, *command, "--name", LONG, busybox_image, "true")
    assert result.returncode == 125, result.stderr
    assert "at most 253" in one_line(result, "minirun")
    assert container_ids(store_root) == []


def test_rename_to_a_300_character_name_is_refused(store_root: Path, busybox_image: str) -> None:
    created = minirun(store_root, "create", "--name", "short", busybox_image, "true")
    assert created.returncode == 0, created.stderr
    try:
        result = minirun(store_root, "rename", "short", LONG)
        assert result.returncode != 0
        assert "at most 253" in one_line(result, "minirun")
        assert minirun(store_root, "inspect", "short").returncode == 0
    finally:
        minirun(store_root, "rm", "-f", "short")


@pytest.mark.parametrize("command", [["inspect"], ["rm", "-f"], ["start"], ["logs"], ["stop"]])
def test_a_300_character_name_is_not_found(store_root: Path, busybox_image: str, command: list[str]) -> None:
    created = minirun(store_root, "create", "--name", "other", busybox_image, "true")  # names/ exists
    assert created.returncode == 0, created.stderr
    try:
        result = minirun(store_root, *command, LONG)
        assert result.returncode != 0
        assert "No such container" in one_line(result, "minirun")
    finally:
        minirun(store_root, "rm", "-f", "other")


@pytest.mark.parametrize("where", ["missing/image.tar", "a-file/image.tar", "."])
def test_export_into_a_missing_directory_is_one_line(
    store: Store, store_root: Path, busybox_image: str, tmp_path: Path, where: str
) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    target = tmp_path / where
    result = subprocess.run(
        [*MINIBUILD, "--root", str(store_root), "export", "-o", str(target), busybox_image],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stderr
    line = one_line(result, "minibuild")
    assert "directory" in line, line
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "minicontainer-store") == ["a-file"]
