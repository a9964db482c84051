"""Digest, ID and cgroup-name checks against the regexes that specify them."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
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


@given(strings(r"(?:sha256:)?[a-f0-9]{4,64}", HEX + "sha256:"))
def test_looks_like_id_is_the_regex(text: str) -> None:
    assert reference.looks_like_id(text) == (re.fullmatch(r"(?:sha256:)?[a-f0-9]{4,64}", text) is not None)


@given(strings(base.ID_PATTERN, "aZ09_.-"))
def test_cgroup_container_id_is_the_regex(text: str) -> None:
    assert accepts(base.check_container_id, text) == (re.fullmatch(base.ID_PATTERN, text) is not None)


@given(strings(base.NAME_PATTERN, "aZ09_.@:-/") | st.lists(strings(base.NAME_PATTERN, "aZ09_.@:-")).map("/".join))
def test_cgroup_parent_is_the_regex(text: str) -> None:
    parts = text.strip("/").split("/")
    expected = text.strip("/") != "" and all(re.fullmatch(base.NAME_PATTERN, p) for p in parts)
    assert accepts(base.parent_parts, text) == expected


def test_long_names_and_ids_at_the_limits() -> None:
    assert accepts(base.check_container_id, "a" * 128) and not accepts(base.check_container_id, "a" * 129)
    assert accepts(base.parent_parts, "a" * 255) and not accepts(base.parent_parts, "a" * 256)
    assert not accepts(base.parent_parts, "mc/../x") and not accepts(base.parent_parts, "-x")
