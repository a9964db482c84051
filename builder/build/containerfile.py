"""Containerfile (Dockerfile) syntax into a list of instructions, as Docker's parser reads it.

- Parser directives at the top (`# escape=`` ` ``, `# syntax=`, `# check=`), until the first other line.
- A line ending in the escape character continues on the next; comment lines and empty lines inside a
  continuation are dropped; a comment is a line whose first non-blank character is `#`.
- `--name=value` flags right after the keyword (FROM, RUN, COPY, ADD, HEALTHCHECK).
- JSON (exec) form for RUN, CMD, ENTRYPOINT, SHELL, COPY, ADD and VOLUME.
- Heredocs (`<<EOF`, `<<-EOF`, `<<"EOF"`) in RUN, COPY and ADD: their lines follow the instruction.

Nothing is expanded here: expansion needs the build's ARG and ENV values, so the builder does it per
stage (minibuild.build.words). Every error names the file, the line and the instruction.
"""

from __future__ import annotations

import json
import re

from minibuild.build.words import WordError, split_raw
from minibuild.errors import RecipeError
from minicache.record import Record

INSTRUCTIONS = frozenset(
    {
        "FROM", "RUN", "CMD", "LABEL", "MAINTAINER", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME",
        "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL",
    }
)  # fmt: skip
# Flags each instruction takes; a flag of another instruction is an error, as in Docker.
FLAGS = {
    "FROM": {"platform"},
    "RUN": {"network", "mount", "security"},
    "COPY": {"from", "chown", "chmod", "link", "parents", "exclude"},
    "ADD": {"chown", "chmod", "checksum", "link", "keep-git-dir", "exclude"},
    "HEALTHCHECK": {"interval", "timeout", "start-period", "start-interval", "retries"},
}
JSON_FORM = frozenset({"RUN", "CMD", "ENTRYPOINT", "SHELL", "COPY", "ADD", "VOLUME"})
HEREDOC_FORM = frozenset({"RUN", "COPY", "ADD"})
_DIRECTIVE = re.compile(r"^#[ \t]*([a-zA-Z][a-zA-Z0-9]*)[ \t]*=[ \t]*(.*?)[ \t]*$")
_KNOWN_DIRECTIVES = ("escape", "syntax", "check")
_HEREDOC = re.compile(r"^(\d*)<<(-?)(.+)$")
_HEREDOC_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class Heredoc(Record):
    name: str
    content: str
    expand: bool  # False when the name was quoted (<<"EOF"): the body is taken literally
    chomp: bool  # <<-EOF: leading tabs were removed from the body


class Instruction(Record):
    keyword: str  # upper case
    args: str  # the text after the keyword and its flags, continuations joined
    line: int  # first line, 1-based
    file: str
    flags: dict[str, list[str]] = {}
    exec_form: list[str] | None = None  # the JSON array, when written in that form
    heredocs: list[Heredoc] = []
    original: str = ""  # the instruction as written (one line), for history and messages
    onbuild: Instruction | None = None  # ONBUILD's own instruction

    def flag(self, name: str) -> str | None:
        """The last value of `--name`, or None."""
        values = self.flags.get(name)
        return values[-1] if values else None

    def error(self, message: str, hint: str | None = None) -> RecipeError:
        return RecipeError(f"{self.file}:{self.line}: {self.keyword}: {message}", hint=hint)


class Containerfile(Record):
    instructions: list[Instruction]
    escape: str = "\\"
    directives: dict[str, str] = {}
    file: str = "Containerfile"


def parse(text: str, file: str = "Containerfile") -> Containerfile:
    """Parse a whole Containerfile; raises RecipeError naming the file, line and instruction."""
    lines = text.removeprefix("\ufeff").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    lines = [line.removesuffix("\r") for line in lines]
    directives, index = _directives(lines, file)
    escape = directives.get("escape", "\\")
    out: list[Instruction] = []
    while index < len(lines):
        raw = lines[index]
        start = index + 1
        index += 1
        stripped = raw.lstrip(" \t")
        if not stripped or stripped.startswith("#"):
            continue
        text_, done = _trim_continuation(stripped, escape)
        while not done and index < len(lines):
            nxt = lines[index]
            index += 1
            if nxt.lstrip(" \t").startswith("#") or not nxt.strip():
                continue
            more, done = _trim_continuation(nxt, escape)
            text_ += more
        if not text_.strip():
            continue
        instruction = _instruction(text_, start, file, escape)
        if instruction.keyword in HEREDOC_FORM and instruction.exec_form is None:
            index = _heredocs(instruction, lines, index, escape)
        out.append(instruction)
    return Containerfile(out, escape, directives, file)


def _directives(lines: list[str], file: str) -> tuple[dict[str, str], int]:
    directives: dict[str, str] = {}
    index = 0
    for index, line in enumerate(lines):
        match = _DIRECTIVE.match(line.removeprefix("\ufeff"))
        if not match or match.group(1).lower() not in _KNOWN_DIRECTIVES:
            return directives, index
        name, value = match.group(1).lower(), match.group(2)
        if name in directives:
            raise RecipeError(f"{file}:{index + 1}: the parser directive {name!r} is given twice")
        if name == "escape" and value not in ("\\", "`"):
            raise RecipeError(
                f"{file}:{index + 1}: invalid escape character {value!r}", hint="the escape directive takes \\ or `"
            )
        directives[name] = value
    return directives, len(lines)


def _trim_continuation(line: str, escape: str) -> tuple[str, bool]:
    """(the line without a trailing escape character, True when the instruction ends here)."""
    trimmed = line.rstrip(" \t")
    if trimmed.endswith(escape):
        return trimmed[:-1], False
    return line, True


def _instruction(text: str, line: int, file: str, escape: str) -> Instruction:
    text = text.strip(" \t")
    parts = text.split(None, 1)
    keyword = parts[0].upper()
    rest = parts[1] if len(parts) > 1 else ""
    ins = Instruction(keyword, "", line, file, original=text)
    if keyword not in INSTRUCTIONS:
        raise RecipeError(
            f"{file}:{line}: unknown instruction: {parts[0]}",
            hint="instructions are " + ", ".join(sorted(INSTRUCTIONS)),
        )
    if keyword == "ONBUILD":
        if not rest.strip():
            raise ins.error("needs an instruction to run in child images")
        inner = _instruction(rest, line, file, escape)
        if inner.keyword in ("ONBUILD", "FROM", "MAINTAINER"):
            raise ins.error(f"{inner.keyword} is not allowed as an ONBUILD trigger")
        ins.onbuild = inner
        ins.args = rest.strip()
        return ins
    rest, ins.flags = _flags(ins, rest, escape)
    ins.args = rest.strip(" \t")
    if keyword in JSON_FORM and ins.args.startswith("["):
        try:
            value = json.loads(ins.args)
        except ValueError:
            value = None  # not JSON after all: Docker takes it as shell form
        if isinstance(value, list):
            if not all(isinstance(v, str) for v in value):
                raise ins.error("the JSON form takes an array of strings")
            ins.exec_form = value
    if not ins.args:
        raise ins.error("needs an argument" if keyword != "FROM" else "needs an image name (or scratch)")
    return ins


def _flags(ins: Instruction, rest: str, escape: str) -> tuple[str, dict[str, list[str]]]:
    flags: dict[str, list[str]] = {}
    allowed = FLAGS.get(ins.keyword, set())
    while True:
        stripped = rest.lstrip(" \t")
        if not stripped.startswith("--"):
            return stripped, flags
        try:
            words = split_raw(stripped, escape)
        except WordError as e:
            raise ins.error(str(e)) from None
        word = words[0]
        if word == "--":
            raise ins.error("a flag needs a name (--name=value)")
        name, sep, value = word[2:].partition("=")
        if name not in allowed:
            known = ", ".join(f"--{f}" for f in sorted(allowed)) or "none"
            raise ins.error(f"unknown flag: --{name}", hint=f"{ins.keyword} takes {known}")
        flags.setdefault(name, []).append(value if sep else "true")
        rest = stripped[_word_end(stripped, escape) :]


def _word_end(text: str, escape: str) -> int:
    """Where the first whitespace-delimited (quote-aware) word of `text` ends."""
    quote = ""
    i = 0
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == escape and quote == '"':
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in " \t":
            return i
        elif ch == escape:
            i += 1
        elif ch in "'\"":
            quote = ch
        i += 1
    return len(text)


def _heredocs(ins: Instruction, lines: list[str], index: int, escape: str) -> int:
    """Read the bodies of the heredocs `ins` names from the lines after it; returns the next line index."""
    try:
        words = split_raw(ins.args, escape)
    except WordError:
        return index  # the builder reports the quoting error with the rest of the arguments
    for word in words:
        match = _HEREDOC.match(word)
        if not match:
            continue
        chomp = match.group(2) == "-"
        name = match.group(3)
        quoted = len(name) >= 2 and name[0] == name[-1] and name[0] in "'\""
        if quoted:
            name = name[1:-1]
        if not _HEREDOC_NAME.match(name):
            continue  # `<<` that is not a heredoc (a shell here-string or redirection): left to the shell
        body: list[str] = []
        while True:
            if index >= len(lines):
                raise ins.error(f"heredoc <<{name} is never terminated", hint=f"end it with a line holding {name}")
            line = lines[index]
            index += 1
            check = line.lstrip("\t") if chomp else line
            if check == name:
                break
            body.append(check + "\n")
        ins.heredocs.append(Heredoc(name, "".join(body), expand=not quoted, chomp=chomp))
    return index
