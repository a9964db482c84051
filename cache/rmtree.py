"""Deleting a directory tree through descriptors, never following a symlink.

What a container wrote into its upper directory, or a layer tarball into a snapshot, is hostile input: a
symlink is removed, never followed. `shutil.rmtree` does the same, but takes no descriptor, recurses (a
very deep tree raises RecursionError), and importing shutil (with bz2 and lzma) would weigh on the start-up
of `minirun run --rm`, whose container directory is removed here.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def remove_tree(path: str | os.PathLike[str], *, ignore_errors: bool = False) -> None:
    """Delete `path` and everything below it; a symlink or file at `path` is unlinked. Missing is fine.

    With `ignore_errors` it removes what it can and raises nothing (like shutil.rmtree's)."""
    try:
        try:
            fd = os.open(path, DIR_FLAGS)
        except NotADirectoryError:  # a file (or a symlink, when the kernel says ENOTDIR rather than ELOOP)
            os.unlink(path)
            return
        except OSError as e:
            if e.errno == errno.ELOOP:  # `path` is a symlink
                os.unlink(path)
                return
            raise
        try:
            empty_dir_at(fd, ignore_errors=ignore_errors)
        finally:
            os.close(fd)
        os.rmdir(path)
    except FileNotFoundError:
        return
    except OSError:
        if not ignore_errors:
            raise


def empty_dir_at(fd: int, *, ignore_errors: bool = False) -> None:
    """Delete everything inside the directory open at `fd` (depth first, without recursion)."""
    # each frame: a directory's descriptor, its name in the frame below, the subdirectories left in it
    frames: list[tuple[int, str, Iterator[str]]] = [(fd, "", iter(_remove_files(fd, ignore_errors)))]
    try:
        while frames:
            dir_fd, name, subdirs = frames[-1]
            sub = next(subdirs, None)
            if sub is not None:
                try:
                    sub_fd = os.open(sub, DIR_FLAGS, dir_fd=dir_fd)
                except OSError:
                    if not ignore_errors:
                        raise
                    continue
                frames.append((sub_fd, sub, iter(())))  # listed first: `finally` closes it if what follows fails
                frames[-1] = (sub_fd, sub, iter(_remove_files(sub_fd, ignore_errors)))
                continue
            frames.pop()
            if frames:  # `dir_fd` is empty now: close and remove it from its parent
                os.close(dir_fd)
                try:
                    os.rmdir(name, dir_fd=frames[-1][0])
                except OSError:
                    if not ignore_errors:
                        raise
    finally:
        for dir_fd, _name, _subdirs in frames[1:]:
            os.close(dir_fd)


def _remove_files(fd: int, ignore_errors: bool) -> list[str]:
    """Unlink every non-directory in the directory open at `fd`; the names of its subdirectories."""
    subdirs = []
    try:
        entries = list(os.scandir(fd))
    except OSError:
        if not ignore_errors:
            raise
        return []
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                subdirs.append(entry.name)
            else:
                os.unlink(entry.name, dir_fd=fd)
        except FileNotFoundError:
            continue
        except OSError:
            if not ignore_errors:
                raise
    return subdirs
