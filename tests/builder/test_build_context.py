"""Build contexts without root: ignore patterns, source globs and checksums."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from minibuild.build.context import Ignore, checksum, resolve_sources
from minibuild.errors import BuildError


@pytest.mark.parametrize(
    ("patterns", "path", "excluded"),
    [
        (["*.log"], "a.log", True),
        (["*.log"], "dir/a.log", False),
        (["**/*.log"], "dir/sub/a.log", True),
        (["**/*.log"], "a.log", True),
        (["dir"], "dir/sub/file", True),
        (["/dir/"], "dir/file", True),
        (["dir/*", "!dir/keep"], "dir/keep", False),
        (["dir/*", "!dir/keep"], "dir/other", True),
        (["!keep", "*"], "keep", True),  # the last match wins
        (["a?c"], "abc", True),
        (["[a-c]x"], "bx", True),
        (["[!a]x"], "ax", False),
        (["# comment", "", "  spaced.txt  "], "spaced.txt", True),
        (["."], "anything", True),
    ],
)
def test_ignore_patterns(patterns: list[str], path: str, excluded: bool) -> None:
    assert Ignore(patterns).excluded(path) is excluded


def test_globs_stay_inside_and_skip_ignored(tmp_path: Path) -> None:
    for name in ("a.txt", "b.txt", "c.log", "sub/d.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name)
    ignore = Ignore(["b.txt"])
    found = resolve_sources(str(tmp_path), "*.txt", ignore.excluded)
    assert [rel for _, rel in found] == ["a.txt"]
    assert [rel for _, rel in resolve_sources(str(tmp_path), "../../*/d.txt")] == ["sub/d.txt"]
    with pytest.raises(BuildError, match="no source files match"):
        resolve_sources(str(tmp_path), "*.none")
    with pytest.raises(BuildError, match="no such file"):
        resolve_sources(str(tmp_path), "b.txt", ignore.excluded)


def test_checksum_follows_content_and_mode_not_time(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d/f").write_text("1")
    src = [(str(tmp_path / "d"), "d")]
    first = checksum(src)
    os.utime(tmp_path / "d/f", (1, 1))
    assert checksum(src) == first
    os.chmod(tmp_path / "d/f", 0o600)
    second = checksum(src)
    assert second != first
    (tmp_path / "d/f").write_text("2")
    assert checksum(src) not in (first, second)
    (tmp_path / "d/ignored").write_text("x")
    assert checksum(src, lambda rel: rel == "d/ignored") == checksum(
        [(str(tmp_path / "d"), "d")], lambda r: r == "d/ignored"
    )


def test_load_finds_the_recipe_and_its_ignore_file(tmp_path: Path) -> None:
    from minibuild.build.context import load
    from minicache.errors import NotFound

    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM scratch\n")
    (ctx / ".dockerignore").write_text("a\n")
    (ctx / ".containerignore").write_text("b\n")
    context, text, name = load(str(ctx), None, tmp_path)
    assert text == "FROM scratch\n" and name.endswith("Dockerfile")
    assert context.skip("b") and not context.skip("a")  # .containerignore first
    (ctx / "Containerfile").write_text("FROM scratch AS c\n")
    assert load(str(ctx), None, tmp_path)[1] == "FROM scratch AS c\n"  # Containerfile before Dockerfile
    (ctx / "alt.Containerfile").write_text("FROM scratch AS alt\n")
    (ctx / "alt.Containerfile.dockerignore").write_text("c\n")
    context, text, _ = load(str(ctx), str(ctx / "alt.Containerfile"), tmp_path)
    assert text == "FROM scratch AS alt\n" and context.skip("c") and not context.skip("b")
    with pytest.raises(NotFound, match="no such file"):
        load(str(ctx), "missing", tmp_path)
    with pytest.raises(NotFound, match="does not exist"):
        load(str(tmp_path / "nowhere"), None, tmp_path)
