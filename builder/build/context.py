"""The build context: a directory, a tar archive or stdin; its ignore file; COPY sources and their checksums.

`.containerignore` (else `.dockerignore`) patterns follow Docker's rules: `*`, `?` and `[...]` within
one path component, `**` across any number of them, a leading `!` re-includes, the last matching
pattern wins, and a pattern that matches a directory excludes everything below it.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import tarfile
from pathlib import Path

from minibuild.build.rootfs import secure_join
from minibuild.errors import BuildError
from minicache.errors import NotFound
from minicache.record import Record

IGNORE_FILES = (".containerignore", ".dockerignore")


class _Pattern(Record):
    regex: re.Pattern[str]
    exclude: bool
    text: str


def _compile(pattern: str) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            if pattern.startswith("**", i):
                i += 2
                if pattern.startswith("/", i):  # `**/`: zero or more leading directories
                    out.append("(?:.*/)?")
                    i += 1
                else:
                    out.append(".*")
                continue
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                out.append(re.escape(ch))
            else:
                body = pattern[i + 1 : end]
                if body.startswith("!") or body.startswith("^"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = end
        elif ch == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("".join(out) + r"\Z", re.DOTALL)


class Ignore:
    """The patterns of an ignore file; `excluded(path)` for a context-relative path with `/` separators."""

    def __init__(self, lines: list[str]) -> None:
        self.patterns: list[_Pattern] = []
        for raw in lines:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            exclude = not line.startswith("!")
            text = line.lstrip("!").strip()
            text = os.path.normpath(text).lstrip("/") if text not in (".", "/") else "."
            if text == ".":
                text = "**"
            self.patterns.append(_Pattern(_compile(text), exclude, text))
        self.has_exceptions = any(not p.exclude for p in self.patterns)

    def excluded(self, path: str) -> bool:
        if not self.patterns:
            return False
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        result = False
        for pattern in self.patterns:
            if any(pattern.regex.match(p) for p in prefixes):
                result = pattern.exclude
        return result

    def skip_dir(self, path: str) -> bool:
        """A directory that is excluded and cannot hold a re-included path: not even walked."""
        return self.excluded(path) and not self.has_exceptions


class Context(Record):
    root: str  # a directory on the host (a tar context is extracted into a private one first)
    ignore: Ignore | None = None  # None: nothing is left out

    def skip(self, rel: str) -> bool:
        return self.ignore is not None and self.ignore.excluded(rel)


def load(path: str, containerfile: str | None, workdir: Path) -> tuple[Context, str, str]:
    """(context, Containerfile text, its display name) for a directory, a tar archive or `-` (a tar on stdin)."""
    if path == "-" or os.path.isfile(path):
        root = workdir / "context"
        root.mkdir()
        _extract(path, root)
        where = str(root)
    elif os.path.isdir(path):
        where = os.path.abspath(path)
    else:
        raise NotFound(f"build context {path!r} does not exist", hint="give a directory, a tar archive or -")
    if containerfile is not None and containerfile != "-":
        candidates = [containerfile]  # as given: relative to the current directory, as docker build -f
        if not os.path.isabs(containerfile) and not os.path.exists(containerfile):
            candidates.append(os.path.join(where, containerfile))
    else:
        candidates = [os.path.join(where, "Containerfile"), os.path.join(where, "Dockerfile")]
    text = name = None
    for candidate in candidates:
        if os.path.isfile(candidate):
            with open(candidate, encoding="utf-8") as f:
                text, name = f.read(), candidate
            break
    if text is None or name is None:
        raise NotFound(
            f"no Containerfile or Dockerfile in {path}" if containerfile is None else f"no such file: {containerfile}",
            hint="write one, or name it with -f FILE",
        )
    ignore_lines: list[str] = []
    for ignore_name in (os.path.basename(name) + ".containerignore", os.path.basename(name) + ".dockerignore"):
        sibling = os.path.join(os.path.dirname(name), ignore_name)
        if os.path.isfile(sibling):
            ignore_lines = Path(sibling).read_text().splitlines()
            break
    else:
        for ignore_name in IGNORE_FILES:
            if os.path.isfile(os.path.join(where, ignore_name)):
                ignore_lines = Path(where, ignore_name).read_text().splitlines()
                break
    return Context(where, Ignore(ignore_lines)), text, name


def _extract(path: str, root: Path) -> None:
    """A context tarball, unpacked with tarfile's `data` filter: no absolute paths, no links out, no devices."""
    import sys

    try:
        if path == "-":
            with tarfile.open(fileobj=sys.stdin.buffer, mode="r|*") as tar:
                tar.extractall(root, filter="data")
        else:
            with tarfile.open(path, mode="r:*") as tar:
                tar.extractall(root, filter="data")
    except (tarfile.TarError, OSError) as e:
        raise BuildError(f"cannot read the build context archive: {e}", hint="give a tar (optionally gzip)") from None


# -- sources ---------------------------------------------------------------------------------------------------------
_GLOB = re.compile(r"[*?\[]")


def resolve_sources(root: str, pattern: str, skip=None, what: str = "build context") -> list[tuple[str, str]]:
    """[(host path, path relative to root)] for a COPY source, globs expanded; each stays within `root`."""
    rel = os.path.normpath("/" + pattern).lstrip("/")
    if not _GLOB.search(rel):
        host = secure_join(root, rel)
        if host is None or (skip is not None and rel and skip(rel)):
            raise BuildError(f"{pattern}: no such file or directory in the {what}")
        return [(host, rel)]
    matches: list[tuple[str, str]] = []
    parts = rel.split("/")

    def walk(prefix: str, index: int) -> None:
        here = secure_join(root, prefix)
        if here is None:
            return
        if index == len(parts):
            matches.append((here, prefix))
            return
        part = parts[index]
        if not _GLOB.search(part):
            walk(f"{prefix}/{part}" if prefix else part, index + 1)
            return
        try:
            names = sorted(os.listdir(here))
        except OSError:
            return
        regex = _compile(part)
        for name in names:
            nxt = f"{prefix}/{name}" if prefix else name
            if regex.match(name) and not (skip is not None and skip(nxt)):
                walk(nxt, index + 1)

    walk("", 0)
    if not matches:
        raise BuildError(f"{pattern}: no source files match in the {what}")
    return matches


def checksum(paths: list[tuple[str, str]], skip=None) -> str:
    """A digest of the sources' names, types, modes, link targets and contents (not times or owners, as in Docker)."""
    h = hashlib.sha256()

    def add(host: str, rel: str) -> None:
        st = os.lstat(host)
        h.update(f"{rel}\0{stat.S_IFMT(st.st_mode)}\0{stat.S_IMODE(st.st_mode)}\0".encode("utf-8", "surrogateescape"))
        if stat.S_ISLNK(st.st_mode):
            h.update(os.readlink(host).encode("utf-8", "surrogateescape"))
        elif stat.S_ISREG(st.st_mode):
            fh = hashlib.sha256()
            with open(host, "rb", buffering=0) as f:
                while chunk := f.read(1 << 20):
                    fh.update(chunk)
            h.update(fh.digest())
        elif stat.S_ISDIR(st.st_mode):
            for name in sorted(os.listdir(host)):
                sub = f"{rel}/{name}" if rel else name
                if skip is not None and skip(sub):
                    continue
                add(os.path.join(host, name), sub)
        h.update(b"\n")

    for host, rel in paths:
        add(host, rel)
    return "sha256:" + h.hexdigest()
