"""The plain-string checks that keep `re` off the run path, against the regexes they stand for."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from minicache import digest, reference
from minicache.errors import InvalidDigest, InvalidReference, InvalidSpec
from minirun.cgroups import base

HEX = "0123456789abcdef"
# Near misses: upper case, the other separators, non-ASCII letters and digits \w takes, a trailing newline.
NOISE = "AFZ_.-:@/ \n\t\x00é\u0663\u017f\u212a"  # \u212a: the Kelvin sign, which re.IGNORECASE folds to k


def strings(pattern: str, alphabet: str) -> st.SearchStrategy[str]:
    """Strings the pattern matches, and strings built from its alphabet and near misses."""
    return st.from_regex(pattern, fullmatch=True) | st.text(alphabet=alphabet + NOISE, max_size=80)


def accepts(check, text: str) -> bool:
    try:
        check(text)
    except (InvalidDigest, InvalidSpec, InvalidReference):
        return False
    return True


@settings(max_examples=300, deadline=None)
@given(
    strings(digest.DIGEST_PATTERN, HEX + "sha256:")
    | st.text(alphabet=HEX, min_size=64, max_size=64).map("sha256:{}".format)
)
def test_digest_validate_is_the_regex(text: str) -> None:
    assert accepts(digest.validate, text) == (re.fullmatch(digest.DIGEST_PATTERN, text) is not None)


def test_a_digest_with_a_trailing_newline_is_refused() -> None:
    """The old check (`^...$` with match) let one through: its hex part becomes a file name."""
    with pytest.raises(InvalidDigest):
        digest.validate("sha256:" + "a" * 64 + "\n")


@settings(max_examples=300, deadline=None)
@given(strings(r"(?:sha256:)?[a-f0-9]{4,64}", HEX + "sha256:"))
def test_looks_like_id_is_the_regex(text: str) -> None:
    assert reference.looks_like_id(text) == (re.fullmatch(r"(?:sha256:)?[a-f0-9]{4,64}", text) is not None)


@settings(max_examples=300, deadline=None)
@given(strings(base.ID_PATTERN, "aZ09_.-"))
def test_cgroup_container_id_is_the_regex(text: str) -> None:
    assert accepts(base.check_container_id, text) == (re.fullmatch(base.ID_PATTERN, text) is not None)


@settings(max_examples=300, deadline=None)
@given(strings(base.NAME_PATTERN, "aZ09_.@:-/") | st.lists(strings(base.NAME_PATTERN, "aZ09_.@:-")).map("/".join))
def test_cgroup_parent_is_the_regex(text: str) -> None:
    parts = text.strip("/").split("/")
    expected = text.strip("/") != "" and all(re.fullmatch(base.NAME_PATTERN, p) for p in parts)
    assert accepts(base.parent_parts, text) == expected


def test_long_names_and_ids_at_the_limits() -> None:
    assert accepts(base.check_container_id, "a" * 128) and not accepts(base.check_container_id, "a" * 129)
    assert accepts(base.parent_parts, "a" * 255) and not accepts(base.parent_parts, "a" * 256)
    assert not accepts(base.parent_parts, "mc/../x") and not accepts(base.parent_parts, "-x")


@settings(max_examples=300, deadline=None)
@given(strings(reference._TAG, "aZ09_.-"))
def test_plain_tag_only_accepts_what_the_regex_does(text: str) -> None:
    matches = re.fullmatch(reference._TAG, text) is not None
    if reference._plain_tag(text):
        assert matches
    elif text.isascii():
        assert not matches  # for ASCII the plain check is the whole answer


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.text("ab09", min_size=1, max_size=3) | st.sampled_from([".", "_", "__", "-", "--", "/", "._", "é"])
    ).map("".join)
    | st.text(alphabet="ab._-/", max_size=30)
)
def test_plain_path_only_accepts_what_the_regex_does(text: str) -> None:
    if reference._plain_path(text):
        assert re.fullmatch(reference._PATH, text) is not None


REFERENCES = [
    "busybox", "bench/busybox", "bench/busybox:latest", "library/alpine:3.19", "a/b/c-d.e_f:v1.2-rc_3",
    "localhost:5000/x:latest", "Registry.Example:443/team/app:1", "[::1]:5000/x", "a__b", "a--b", "a___b",
    "a..b", "a._b", "-a", "a-", "a/", "/a", "a//b", "A", "a/B", "x:", "x:-tag", "x:" + "t" * 128,
    "x:" + "t" * 129, "x:tä", "x:t\n", "é", "a" * 300, "busybox@sha256:" + "a" * 64,
    "busybox:1@sha256:" + "a" * 64, "busybox@sha256:" + "A" * 64, "docker.io/busybox", "index.docker.io/x",
]  # fmt: skip


@pytest.mark.parametrize("text", REFERENCES)
def test_parse_is_the_same_without_the_plain_checks(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def outcome() -> object:
        try:
            return reference.parse(text)
        except InvalidReference as e:
            return str(e)

    fast = outcome()
    monkeypatch.setattr(reference, "_plain_tag", lambda _text: False)
    monkeypatch.setattr(reference, "_plain_path", lambda _text: False)
    assert outcome() == fast


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab09._-/:@A", max_size=40))
def test_parse_of_generated_text_is_the_same_without_the_plain_checks(text: str) -> None:
    def outcome(plain: bool) -> object:
        saved = reference._plain_tag, reference._plain_path
        if not plain:
            reference._plain_tag = reference._plain_path = lambda _text: False
        try:
            return reference.parse(text)
        except InvalidReference as e:
            return str(e)
        finally:
            reference._plain_tag, reference._plain_path = saved

    assert outcome(True) == outcome(False)


def test_the_common_reference_and_cgroup_checks_import_no_re() -> None:
    probe = (
        "import sys\n"
        "sys.modules['re'] = None  # an import of re now fails\n"
        "from minicache import digest, reference\n"
        "from minirun.cgroups import base, host, limits\n"
        "reference.parse('bench/busybox'); reference.parse('busybox:1.36@sha256:' + 'a' * 64)\n"
        "reference.looks_like_id('0123abcd'); base.check_container_id('0123abcd'); base.parent_parts('mc/x')\n"
        "print('fine')\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.stdout.strip() == "fine", result.stderr[-2000:]
