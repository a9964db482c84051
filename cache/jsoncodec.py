"""JSON through the C accelerator `_json`, without importing `json` (and with it `re`) on the hot path.

`import json` compiles six regexes and imports `re` (~2.5 ms of a `minirun --rm IMAGE true`); what the
run path needs is `json.loads`/`json.dumps` with default options, which `json` itself delegates to
`_json`'s scanner and encoder. These functions call them directly. Anything out of the ordinary (invalid
or non-UTF-8 input, a value JSON cannot encode, a non-finite float, `_json` missing) is handed to the
real `json`, so results, errors and messages are always exactly json's.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    import os
    from typing import Any, BinaryIO

try:
    from _json import encode_basestring_ascii as _c_quote
    from _json import make_encoder as _c_make_encoder
    from _json import make_scanner as _c_make_scanner
except ImportError:  # an interpreter without the accelerator: json's pure-Python code does it all
    _c_quote = _c_make_encoder = _c_make_scanner = None

_WHITESPACE = " \t\n\r"  # json's WHITESPACE regex, [ \t\n\r]*
_COMPACT = (",", ":")
_DEFAULT_SEPARATORS = (", ", ": ")
_CONSTANTS = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}


class _DecoderContext:
    """The attributes `_json.make_scanner` reads from a `json.JSONDecoder` with default options."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = _CONSTANTS.__getitem__


class _Unencodable(Exception):
    """Raised by the C encoder's `default` hook: json must handle (and explain) this value."""


def _refuse(value: object) -> object:
    raise _Unencodable


_scan = _c_make_scanner(_DecoderContext()) if _c_make_scanner is not None else None


def loads(text: str | bytes | bytearray) -> Any:
    """`json.loads(text)`: same result, same exception for a bad document (raised by json itself)."""
    if _scan is not None:
        try:
            if isinstance(text, (bytes, bytearray)):
                # json's detect_encoding picks UTF-8 unless a BOM or a NUL byte in the first four says otherwise
                if text[:1] in (b"\xef", b"\xfe", b"\xff") or 0 in text[:4]:
                    raise ValueError("not plain UTF-8")
                text = text.decode("utf-8", "surrogatepass")
            elif not isinstance(text, str):
                raise TypeError("json says what it takes")
            start = len(text) - len(text.lstrip(_WHITESPACE))
            value, end = _scan(text, start)
            if end == len(text) or not text[end:].strip(_WHITESPACE):
                return value
        except (ValueError, TypeError, StopIteration):  # json raises (and words) the error itself
            pass
    import json

    return json.loads(text)


def load(f: BinaryIO) -> Any:
    """`json.load(f)` of a binary file."""
    return loads(f.read())


def read(path: str | os.PathLike[str]) -> Any:
    """The JSON document in the file at `path`."""
    with open(path, "rb") as f:
        return loads(f.read())


def dumps(obj: Any, *, sort_keys: bool = False, compact: bool = False) -> str:
    """`json.dumps(obj, sort_keys=sort_keys)`, with `separators=(",", ":")` when `compact`.

    Values json would encode with a `default` hook, as NaN/Infinity, or refuse (circular, bad keys) go to
    json itself: same output, same error.
    """
    separators = _COMPACT if compact else _DEFAULT_SEPARATORS
    if _c_make_encoder is not None:
        # allow_nan=False: the C encoder raises ValueError on a non-finite float and json writes it
        encode = _c_make_encoder({}, _refuse, _c_quote, None, separators[1], separators[0], sort_keys, False, False)
        try:
            return "".join(encode(obj, 0))
        except (_Unencodable, ValueError, TypeError):
            pass
    import json

    return json.dumps(obj, sort_keys=sort_keys, separators=separators)
