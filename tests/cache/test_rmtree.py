"""minicache.rmtree: removing hostile trees (what a container wrote) without following anything out of them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from minicache import syscalls as sc
from minicache.rmtree import empty_dir_at, remove_tree


def _outside(tmp_path: Path) -> Path:
    victim = tmp_path / "outside"
    (victim / "sub").mkdir(parents=True)
    (victim / "keep").write_text("precious")
    (victim / "sub" / "keep").write_text("precious")
    return victim


@pytest.mark.root
def test_symlinks_inside_are_removed_never_followed(tmp_path: Path) -> None:
    victim = _outside(tmp_path)
    tree = tmp_path / "tree"
    (tree / "a" / "b").mkdir(parents=True)
    (tree / "a" / "file").write_text("x")
    (tree / "a" / "to-dir").symlink_to(victim)
    (tree / "a" / "b" / "to-file").symlink_to(victim / "keep")
    (tree / "a" / "b" / "dangling").symlink_to(tmp_path / "nothing")
    os.mkfifo(tree / "fifo")
    (tree / "locked").mkdir(mode=0)  # like overlayfs' work/work
    (tree / "locked-parent" / "child").mkdir(parents=True)
    (tree / "locked-parent").chmod(0)
    remove_tree(tree)
    assert not os.path.lexists(tree)
    assert (victim / "keep").read_text() == "precious" and (victim / "sub" / "keep").read_text() == "precious"


def test_a_symlink_or_file_at_the_top_is_unlinked_and_missing_is_fine(tmp_path: Path) -> None:
    victim = _outside(tmp_path)
    link = tmp_path / "link"
    link.symlink_to(victim)
    remove_tree(link)
    assert not os.path.lexists(link) and (victim / "sub" / "keep").exists()
    plain = tmp_path / "plain"
    plain.write_text("x")
    remove_tree(plain)
    assert not plain.exists()
    remove_tree(tmp_path / "never-was")
    remove_tree(tmp_path / "never-was", ignore_errors=True)


@pytest.mark.root  # works the kernel hard (a tree deeper than the recursion limit): not a unit test
def test_a_tree_deeper_than_the_recursion_limit(tmp_path: Path) -> None:
    tree = tmp_path / "deep"
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    name = "deep"
    for _ in range(1500):  # deeper than sys.getrecursionlimit(): shutil.rmtree would raise RecursionError
        os.mkdir(name, dir_fd=fd)
        sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd, name = sub, "d"
    os.close(fd)
    remove_tree(tree)
    assert not tree.exists()


@pytest.mark.root
def test_errors_raise_unless_ignored_and_what_can_go_goes(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "mnt").mkdir(parents=True)
    (tree / "other").mkdir()
    (tree / "other" / "f").write_text("x")
    if os.geteuid() != 0:
        pytest.skip("needs root to mount on a directory")
    sc.mount("tmpfs", tree / "mnt", "tmpfs")  # a mount point: its rmdir fails with EBUSY
    try:
        with pytest.raises(OSError):
            remove_tree(tree)
        remove_tree(tree, ignore_errors=True)
        assert sorted(os.listdir(tree)) == ["mnt"]  # everything else went
    finally:
        sc.umount(tree / "mnt")
    remove_tree(tree)
    assert not tree.exists()


def test_empty_dir_at_keeps_the_directory_itself(tmp_path: Path) -> None:
    (tmp_path / "d" / "e").mkdir(parents=True)
    (tmp_path / "f").write_text("x")
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        empty_dir_at(fd)
    finally:
        os.close(fd)
    assert tmp_path.is_dir() and os.listdir(tmp_path) == []
