"""Plain-string checks for names, IDs and digests on the `minirun run` path, so that it need not import `re`.

Each caller keeps its regex as the specification (and as the authority where a check here only covers the
common case); tests/test_charsets.py checks these against those regexes over generated strings.
"""

from __future__ import annotations

DIGITS = frozenset("0123456789")
LOWER_HEX = frozenset("0123456789abcdef")
LOWER_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
ALNUM = LOWER_ALNUM | frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
WORD_ASCII = ALNUM | {"_"}


def is_name(text: str, first: frozenset[str], rest: frozenset[str], max_len: int) -> bool:
    """`re.fullmatch("[first][rest]{0,max_len-1}", text)` for sets of characters `first` and `rest`."""
    return 0 < len(text) <= max_len and text[0] in first and set(text[1:]) <= rest
