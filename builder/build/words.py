"""Docker's word rules for Containerfile arguments: quotes, the escape character and `$VAR` expansion.

What a Docker user expects from `COPY "a b" ${DEST:-/srv}` or `ENV A="x y" B=$A`: single quotes keep
everything literal, double quotes keep spaces and still expand `$`, the escape character (`\\` or the
backtick of `# escape=`) protects the next character, and the `${VAR...}` forms of the POSIX shell
(`:-`, `-`, `:+`, `+`, `:?`, `?`, `#`, `##`, `%`, `%%`) work. Unset variables expand to nothing.
"""

from __future__ import annotations

import fnmatch
import re


class WordError(ValueError):
    """A word that cannot be processed (unterminated quote, bad substitution); the caller adds file and line."""


_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


class _Lexer:
    def __init__(self, text: str, env: dict[str, str] | None, escape: str, quotes: bool = True) -> None:
        self.text = text
        self.pos = 0
        self.env = env
        self.escape = escape
        self.quotes = quotes  # False: quotes and the escape character are ordinary characters (heredoc bodies)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def next(self) -> str:
        ch = self.peek()
        self.pos += 1
        return ch

    # -- the three contexts ---------------------------------------------------------------------------------------
    def words(self, stop: str = "", split: bool = True) -> list[str]:
        """Words up to `stop` (or the end); `split` breaks on unquoted whitespace."""
        words: list[str] = []
        current: list[str] = []
        started = False
        while self.pos < len(self.text):
            ch = self.peek()
            if stop and ch == stop:
                break
            self.pos += 1
            if split and ch in " \t\r\n":
                if started:
                    words.append("".join(current))
                    current, started = [], False
                continue
            started = True
            if not self.quotes:
                current.append(self.dollar() if ch == "$" and self.env is not None else ch)
            elif ch == self.escape:
                if self.pos >= len(self.text):
                    current.append(ch)
                else:
                    current.append(self.next())
            elif ch == "'":
                current.append(self.single_quoted())
            elif ch == '"':
                current.append(self.double_quoted())
            elif ch == "$" and self.env is not None:
                current.append(self.dollar())
            else:
                current.append(ch)
        if started or not split:
            words.append("".join(current))
        return words

    def single_quoted(self) -> str:
        end = self.text.find("'", self.pos)
        if end < 0:
            raise WordError("unexpected end of statement while looking for matching single-quote")
        out = self.text[self.pos : end]
        self.pos = end + 1
        return out

    def double_quoted(self) -> str:
        out: list[str] = []
        while True:
            if self.pos >= len(self.text):
                raise WordError("unexpected end of statement while looking for matching double-quote")
            ch = self.next()
            if ch == '"':
                return "".join(out)
            if ch == self.escape and self.peek() in ('"', "$", self.escape) and self.peek():
                out.append(self.next())
            elif ch == "$" and self.env is not None:
                out.append(self.dollar())
            else:
                out.append(ch)

    # -- expansion --------------------------------------------------------------------------------------------------
    def dollar(self) -> str:
        ch = self.peek()
        if ch == "{":
            self.pos += 1
            return self.braced()
        if ch and ch in _NAME_CHARS:
            start = self.pos
            if ch.isdigit():  # $1: one character, as the shell reads positional parameters
                self.pos += 1
            else:
                while self.peek() and self.peek() in _NAME_CHARS:
                    self.pos += 1
            return self.lookup(self.text[start : self.pos]) or ""
        return "$"

    def lookup(self, name: str) -> str | None:
        assert self.env is not None
        return self.env.get(name)

    def braced(self) -> str:
        start = self.pos
        while self.peek() and self.peek() in _NAME_CHARS:
            self.pos += 1
        name = self.text[start : self.pos]
        if not name:
            raise WordError(f"bad substitution: ${{{self.text[start:]}")
        ch = self.next()
        if ch == "}":
            return self.lookup(name) or ""
        if not ch:
            raise WordError(f"missing '}}' in ${{{name}")
        value = self.lookup(name)
        if ch == ":":
            modifier = ":" + self.next()
        else:
            modifier = ch
            if ch in "#%" and self.peek() == ch:
                modifier += self.next()
        if modifier not in (":-", "-", ":+", "+", ":?", "?", "#", "##", "%", "%%"):
            raise WordError(f"unsupported modifier ({modifier}) in substitution ${{{name}{modifier}...}}")
        word = "".join(self.words(stop="}", split=False))
        if self.next() != "}":
            raise WordError(f"missing '}}' in ${{{name}{modifier}{word}")
        unset_or_empty = not value
        if modifier == ":-":
            return word if unset_or_empty else value  # type: ignore[return-value]
        if modifier == "-":
            return word if value is None else value
        if modifier == ":+":
            return "" if unset_or_empty else word
        if modifier == "+":
            return "" if value is None else word
        if modifier in (":?", "?"):
            if (modifier == ":?" and unset_or_empty) or value is None:
                raise WordError(f"{name}: {word or 'is not allowed to be unset'}")
            return value
        return _trim(value or "", word, modifier)


def _trim(value: str, pattern: str, modifier: str) -> str:
    """`${VAR#pat}`, `##`, `%`, `%%`: remove the shortest/longest matching prefix or suffix (shell globs)."""
    regex = re.compile(fnmatch.translate(pattern), re.DOTALL)
    cuts = range(len(value) + 1)
    if modifier in ("#", "##"):
        order = cuts if modifier == "#" else reversed(cuts)
        for i in order:
            if regex.match(value[:i]):
                return value[i:]
    else:
        order = reversed(cuts) if modifier == "%" else cuts
        for i in order:
            if regex.match(value[i:]):
                return value[:i]
    return value


def expand(word: str, env: dict[str, str], escape: str = "\\") -> str:
    """One word with quotes removed and variables expanded (whitespace inside stays)."""
    return "".join(_Lexer(word, env, escape).words(split=False))


def expand_vars(text: str, env: dict[str, str]) -> str:
    """Only `$VAR` expansion, quotes and backslashes kept: the body of an unquoted COPY heredoc."""
    return "".join(_Lexer(text, env, "", quotes=False).words(split=False))


def expand_words(text: str, env: dict[str, str] | None, escape: str = "\\") -> list[str]:
    """Split `text` on unquoted whitespace, removing quotes and (with `env`) expanding variables."""
    return _Lexer(text, env, escape).words()


def split_raw(text: str, escape: str = "\\") -> list[str]:
    """Split on unquoted whitespace keeping quotes and escapes as written (expanded later, per word)."""
    words: list[str] = []
    current: list[str] = []
    quote = ""
    i = 0
    while i < len(text):
        ch = text[i]
        if quote:
            current.append(ch)
            if ch == escape and quote == '"' and i + 1 < len(text):
                current.append(text[i + 1])
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in " \t\r\n":
            if current:
                words.append("".join(current))
                current = []
        else:
            current.append(ch)
            if ch == escape and i + 1 < len(text):
                current.append(text[i + 1])
                i += 1
            elif ch in "'\"":
                quote = ch
        i += 1
    if quote:
        kind = "single" if quote == "'" else "double"
        raise WordError(f"unexpected end of statement while looking for matching {kind}-quote")
    if current:
        words.append("".join(current))
    return words
