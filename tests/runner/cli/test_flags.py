"""Parsing of `minirun run` flag values and the small helpers behind it."""

from __future__ import annotations

import os
import random
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
from minicache.errors import InvalidSpec
from minicache.record import Record, replace
from minirun.engine import flags


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/h:/c", flags.Volume("/h", "/c")),
        ("/h/:/c/../d:ro", flags.Volume("/h", "/d", readonly=True)),
        ("/h:/c:rw,rslave", flags.Volume("/h", "/c", propagation="rslave")),
        ("/h:/c:Z", flags.Volume("/h", "/c")),
    ],
)
def test_parse_volume(text: str, expected: flags.Volume) -> None:
    assert flags.parse_volume(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("/only", "invalid volume specification"),
        ("name:/c", "named volumes"),
        ("/h:rel", "absolute"),
        ("/h:/", "cannot be /"),
        ("/h:/c:bogus", "invalid volume option"),
        ("/a:/b:ro:x", "invalid volume specification"),
    ],
)
def test_parse_volume_errors(text: str, message: str) -> None:
    with pytest.raises(InvalidSpec, match=message):
        flags.parse_volume(text)


def test_parse_tmpfs() -> None:
    assert flags.parse_tmpfs("/run") == flags.Tmpfs("/run", ())
    assert flags.parse_tmpfs("/run:rw,size=64m,mode=1777") == flags.Tmpfs("/run", ("rw", "size=64m", "mode=1777"))
    for bad in ("run", "/", "/x:size=lots", "/x:mode=999"):
        with pytest.raises(InvalidSpec):
            flags.parse_tmpfs(bad)


def test_parse_ulimit() -> None:
    assert flags.parse_ulimit("nofile=1024:2048") == flags.Ulimit("RLIMIT_NOFILE", 1024, 2048)
    assert flags.parse_ulimit("nproc=100") == flags.Ulimit("RLIMIT_NPROC", 100, 100)
    assert flags.parse_ulimit("core=-1").hard == 2**64 - 1
    for bad in ("nofile", "files=1", "nofile=a", "nofile=10:5"):
        with pytest.raises(InvalidSpec):
            flags.parse_ulimit(bad)


def test_env_entry() -> None:
    environ = {"HOME_VAR": "x"}
    assert flags.env_entry("A=1", environ) == "A=1"
    assert flags.env_entry("A=", environ) == "A="
    assert flags.env_entry("HOME_VAR", environ) == "HOME_VAR=x"
    assert flags.env_entry("UNSET", environ) is None
    for bad in ("=x", "", "A B=1"):
        with pytest.raises(InvalidSpec):
            flags.env_entry(bad, environ)


def test_env_file(tmp_path: Path) -> None:
    path = tmp_path / "env"
    path.write_text("# comment\n\nA=1\n  B=two words\nFROM_HOST\nMISSING\nC==x\n")
    assert flags.read_env_file(str(path), {"FROM_HOST": "h"}) == ["A=1", "B=two words", "FROM_HOST=h", "C==x"]
    path.write_text("BAD KEY=1\n")
    with pytest.raises(InvalidSpec, match="env:1"):
        flags.read_env_file(str(path), {})
    with pytest.raises(InvalidSpec, match="cannot read env file"):
        flags.read_env_file(str(tmp_path / "nope"), {})


@pytest.mark.parametrize("name", ["ab", "web-1", "a.b_c", "X9"])
def test_valid_names(name: str) -> None:
    assert flags.validate_name(name) == name


@pytest.mark.parametrize("name", ["a", "-x", "_x", "a/b", "a b", "../x", "é"])
def test_invalid_names(name: str) -> None:
    with pytest.raises(InvalidSpec, match="invalid container name"):
        flags.validate_name(name)


def test_record_behaves_like_a_small_dataclass() -> None:
    class Point(Record):
        x: int
        y: int = 0
        tags: list[str] = []

    a, b = Point(1), Point(1, 0)
    assert a == b and a.tags == [] and a.tags is not Point(2).tags
    assert repr(a) == "Point(x=1, y=0, tags=[])"
    assert Point(x=1, y=2, tags=["t"]).as_dict() == {"x": 1, "y": 2, "tags": ["t"]}
    with pytest.raises(TypeError):
        Point()
    with pytest.raises(TypeError):
        Point(1, z=3)
    with pytest.raises(TypeError):
        Point(1, x=2)
    assert os.environ is not None


def test_frozen_record_is_immutable_and_hashable_like_a_frozen_dataclass() -> None:
    class Ref(Record, frozen=True):
        name: str
        tag: str | None = None

    a = Ref("busybox", "1")
    assert a == Ref(name="busybox", tag="1") and hash(a) == hash(Ref("busybox", "1"))
    assert len({a, Ref("busybox", "1"), Ref("busybox")}) == 2
    with pytest.raises(AttributeError, match="cannot assign to field 'tag'"):
        a.tag = "2"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del a.name
    assert a.tag == "1"


def test_record_replace_and_own_hash() -> None:
    class Challenge(Record, frozen=True):
        scheme: str
        params: dict[str, str] = {}

        def __hash__(self) -> int:
            return hash(self.scheme)

    a = Challenge("bearer", {"realm": "r"})
    b = replace(a, params={"realm": "s"})
    assert b == Challenge("bearer", {"realm": "s"}) and a.params == {"realm": "r"}
    assert hash(a) == hash(b) and a != b  # the dict takes part in == only, as `field(hash=False)` did
    with pytest.raises(TypeError):
        replace(a, nope=1)


def _samples(alphabet: str, seed: int, count: int = 3000) -> list[str]:
    """Short strings over `alphabet` (plus the empty one): inputs for checking string code against a regex."""
    rng = random.Random(seed)
    return ["", *("".join(rng.choices(alphabet, k=rng.randint(1, 6))) for _ in range(count))]


# Every code point, once: `re.findall` over it lists what a one-character class matches, in one scan.
EVERY_CHAR = "".join(map(chr, range(sys.maxunicode + 1)))


# The checks below were regexes; they are plain string code now (no `re` on the run path). Same answers:
def _same_answers(check: Callable[[str], object], items: Iterable[str], valid: Callable[[str], bool]) -> None:
    """`check` refuses (InvalidSpec) exactly the items that are not `valid`."""
    for item in items:
        try:
            check(item)
        except InvalidSpec:
            assert not valid(item), item
        else:
            assert valid(item), item


def test_name_check_is_the_regex() -> None:
    names = [*_samples("aZ09_.-/ é\n", 1), *(chr(c) * 2 for c in range(0x3000)), "ab\n"]
    _same_answers(flags.validate_name, names, lambda n: re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+", n) is not None)


def test_env_key_check_is_the_regex() -> None:
    assert re.findall(r"\s", EVERY_CHAR) == [c for c in EVERY_CHAR if c.isspace()]
    _same_answers(
        lambda item: flags.env_entry(item, {}),
        [*_samples("aB_=.\t \u00a0\u3000x", 2), "A\n"],
        lambda item: re.fullmatch(r"[^=\s]+", item.partition("=")[0]) is not None,
    )


def test_tmpfs_option_checks_are_the_regexes() -> None:
    assert re.findall(r"\d", EVERY_CHAR) == [c for c in EVERY_CHAR if c.isdecimal()]
    for value in [*_samples("0178kmgKM%x\u0663\u00b2 \n", 3), "1\n"]:
        for key, pattern in (("size", r"\d+[kmgKMG%]?"), ("nr_inodes", r"\d+[kmgKMG%]?"), ("mode", r"[0-7]{3,4}")):
            valid = re.fullmatch(pattern, value) is not None
            try:
                flags.parse_tmpfs(f"/t:{key}={value}")
            except InvalidSpec:
                assert not valid, (key, value)
            else:
                assert valid, (key, value)
