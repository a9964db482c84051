"""minicache.jsoncodec against json itself: same values, same text, same exception for every input."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from minicache import jsoncodec

# Documents, valid and not, that json treats in every way it can: escapes, surrogates, numbers at the edges,
# nesting, whitespace json accepts (and some it does not), encodings it detects, and plain garbage.
TEXTS = [
    "{}", "[]", '""', "0", "-0", "-0.0", "1e400", "-1e400", "1E-400", "123456789012345678901234567890",
    "3.141592653589793", "1.0", "1e5", "NaN", "Infinity", "-Infinity", "true", "false", "null",
    '"\\u00e9\\ud83d\\ude00\\n\\t\\"\\\\\\/"', '"\\ud800"', '"é😀\u2028"', '{"a": {"b": [[], {}, [1, [2, [3]]]]}}',
    '{"k": 1, "k": 2}', " \t\n\r[1 , 2 ]\r\n\t ", '  "x"  ', "[1,]", "[1 2]", "{", "}", "", " ", "\ufeff{}",
    "{'a': 1}", '{"a" 1}', "[1] x", "01", "1.", ".5", "+1", "--1", "nan", "[NaN, Infinity, -Infinity]",
    '"\x01"', '"\\x"', '"\\u12"', '"abc', "\x0c1", "1\x0c", "\u00a01", "1\u3000", "[" * 50 + "]" * 50,
    "9" * 5000, '{"a": 1}garbage', "[1, 2, 3]\n",
]  # fmt: skip
BLOBS = [
    b"{}", b'{"a": "\xc3\xa9"}', b"\xef\xbb\xbf{}", b"\xff\xfe{\x00}\x00", b"\xfe\xff\x00[\x00]",
    b"\x00\x00\x00[", b"[\x00\x00\x00", b"[\x00]\x00", b"\x001", b"1\x00", b'"\xff"', b'"\xed\xa0\x80"', b" 1 ",
    b"\x80", b"", bytearray(b"[1, 2]"),
]  # fmt: skip


def outcome(function, *args, **kwargs) -> tuple[str, object]:
    """What a call gives: ("ok", repr of the value) or ("error", the exception's type and message)."""
    try:
        value = function(*args, **kwargs)
    except Exception as exc:  # the point is to compare whichever exception comes
        return "error", (type(exc), str(exc))
    return "ok", repr(value)  # repr: NaN != NaN, and 1 vs 1.0 vs True must differ


@pytest.mark.parametrize("text", TEXTS + BLOBS, ids=repr)
def test_loads_matches_json(text: str | bytes) -> None:
    assert outcome(jsoncodec.loads, text) == outcome(json.loads, text)


def test_loads_of_something_not_text_is_jsons_type_error() -> None:
    for value in (None, 1, ["[]"], memoryview(b"[]")):
        assert outcome(jsoncodec.loads, value)[1][0] is TypeError
        assert outcome(jsoncodec.loads, value) == outcome(json.loads, value)


def test_loads_too_deep_is_jsons_recursion_error() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    assert outcome(jsoncodec.loads, deep)[1][0] is RecursionError
    assert outcome(json.loads, deep)[1][0] is RecursionError


class Opaque:
    pass


circular: list[object] = []
circular.append(circular)
VALUES = [
    {}, [], (), "", "é😀\u2028\x00\ud800", 0, -1, 2**200, True, False, None, 0.1, -0.0, 1e300, 5e-324,
    math.nan, math.inf, -math.inf, {"b": 1, "a": [1, 2, {"c": None}]}, {1: "int key", 2.5: "float", False: "bool",
    None: "none"}, {"a": 1, 1: "mixed keys sort"}, {(1, 2): "tuple key"}, [Opaque()], {"x": {1, 2}}, circular,
    b"bytes", {"nested": [[[[[]]]]]}, [1, "1", 1.0],
]  # fmt: skip


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
@pytest.mark.parametrize("sort_keys", [False, True])
@pytest.mark.parametrize("compact", [False, True])
def test_dumps_matches_json(value: object, sort_keys: bool, compact: bool) -> None:
    separators = (",", ":") if compact else None
    expected = outcome(json.dumps, value, sort_keys=sort_keys, separators=separators)
    assert outcome(jsoncodec.dumps, value, sort_keys=sort_keys, compact=compact) == expected


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=30,
)


@settings(max_examples=200, deadline=None)
@given(json_values, st.booleans(), st.booleans())
def test_generated_values_round_trip_like_json(value: object, sort_keys: bool, compact: bool) -> None:
    separators = (",", ":") if compact else None
    text = jsoncodec.dumps(value, sort_keys=sort_keys, compact=compact)
    assert text == json.dumps(value, sort_keys=sort_keys, separators=separators)
    assert outcome(jsoncodec.loads, text) == outcome(json.loads, text)
    assert outcome(jsoncodec.loads, text.encode()) == outcome(json.loads, text.encode())


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=' \t\n\r\x0c[]{}",:0123456789.eE+-truefalsnNIiy\\u\x00é'))
def test_generated_fragments_decode_like_json(text: str) -> None:
    assert outcome(jsoncodec.loads, text) == outcome(json.loads, text)


def test_read_and_load(tmp_path) -> None:
    path = tmp_path / "doc.json"
    path.write_bytes(b'{"a": [1, "\xc3\xa9"]}\n')
    assert jsoncodec.read(path) == {"a": [1, "é"]}
    with open(path, "rb") as f:
        assert jsoncodec.load(f) == {"a": [1, "é"]}


def test_the_common_case_imports_neither_json_nor_re() -> None:
    # The development venv's editable-install hook has imported re already: block both instead of looking
    probe = (
        "import sys\n"
        "sys.modules['json'] = sys.modules['re'] = None  # an import of either now fails\n"
        "from minicache import jsoncodec\n"
        "text = jsoncodec.dumps({'b': [1, 2.5, None, True, 'é'], 'a': {}}, sort_keys=True, compact=True)\n"
        "assert jsoncodec.loads(' ' + text + '\\n') == {'a': {}, 'b': [1, 2.5, None, True, 'é']}\n"
        "print('fine')\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "fine"


def test_without_the_accelerator_json_does_it_all(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jsoncodec, "_scan", None)
    monkeypatch.setattr(jsoncodec, "_c_make_encoder", None)
    assert jsoncodec.loads(" [1, {}] ") == [1, {}]
    assert jsoncodec.dumps({"b": 1, "a": math.inf}, sort_keys=True) == '{"a": Infinity, "b": 1}'
