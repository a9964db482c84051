"""The Containerfile parser and Docker's word rules: no root, no store."""

from __future__ import annotations

import pytest
from minibuild.build.containerfile import parse
from minibuild.build.words import WordError, expand, expand_words
from minibuild.errors import RecipeError


def one(text: str):
    (ins,) = parse(text).instructions
    return ins


def test_keywords_case_insensitive_and_lines_counted() -> None:
    cf = parse("# a comment\n\nfrom busybox\n  run echo hi\n")
    assert [(i.keyword, i.args, i.line) for i in cf.instructions] == [("FROM", "busybox", 3), ("RUN", "echo hi", 4)]


def test_continuations_skip_comments_and_empty_lines() -> None:
    ins = one("RUN echo a \\\n# inside\n\n   && echo b \\\n  && echo c\n")
    assert ins.args == "echo a    && echo b   && echo c"
    assert ins.line == 1


def test_continuation_with_trailing_blanks_after_escape() -> None:
    assert one("RUN a \\  \n b\n").args == "a  b"


def test_escape_directive_backtick() -> None:
    cf = parse("# escape=`\nFROM scratch\nCOPY a `\n  C:\\dir\\\n")
    assert cf.escape == "`"
    assert cf.instructions[1].args == "a   C:\\dir\\"


def test_directives_only_at_top() -> None:
    cf = parse("FROM scratch\n# escape=`\nRUN a \\\n b\n")
    assert cf.escape == "\\" and cf.instructions[1].args == "a  b"


def test_bad_escape_directive() -> None:
    with pytest.raises(RecipeError, match=r"Containerfile:1: invalid escape"):
        parse("# escape=x\nFROM scratch\n")


def test_repeated_directive() -> None:
    with pytest.raises(RecipeError, match="given twice"):
        parse("# escape=`\n# escape=\\\nFROM scratch\n")


def test_unknown_instruction_names_file_and_line() -> None:
    with pytest.raises(RecipeError, match=r"^recipe/Containerfile:2: unknown instruction: RUNN"):
        parse("FROM scratch\nRUNN x\n", "recipe/Containerfile")


def test_missing_argument() -> None:
    with pytest.raises(RecipeError, match=r"Containerfile:1: FROM: needs an image"):
        parse("FROM\n")
    with pytest.raises(RecipeError, match=r":2: WORKDIR: needs an argument"):
        parse("FROM scratch\nWORKDIR   \n")


def test_flags() -> None:
    ins = one("COPY --from=build --chown=1:2 --chmod=0755 a b /dst/\n")
    assert ins.flags == {"from": ["build"], "chown": ["1:2"], "chmod": ["0755"]}
    assert ins.args == "a b /dst/" and ins.flag("from") == "build"
    assert one("FROM --platform=linux/amd64 busybox AS b\n").flag("platform") == "linux/amd64"


def test_unknown_flag_names_instruction() -> None:
    with pytest.raises(RecipeError, match=r":1: COPY: unknown flag: --checksum"):
        parse("COPY --checksum=sha256:x a b\n")


def test_exec_form() -> None:
    assert one('CMD ["sh", "-c", "echo hi"]\n').exec_form == ["sh", "-c", "echo hi"]
    assert one("CMD [not json\n").exec_form is None
    with pytest.raises(RecipeError, match="array of strings"):
        parse("CMD [1, 2]\n")


def test_heredoc_run_and_copy() -> None:
    cf = parse("FROM scratch\nRUN <<EOF\necho $HOME\nEOF\nCOPY <<-'END' /x\n\tliteral $A\n\tEND\nCMD x\n")
    run, copy = cf.instructions[1], cf.instructions[2]
    assert run.heredocs[0].name == "EOF" and run.heredocs[0].content == "echo $HOME\n" and run.heredocs[0].expand
    assert copy.heredocs[0].content == "literal $A\n" and not copy.heredocs[0].expand and copy.heredocs[0].chomp
    assert cf.instructions[3].keyword == "CMD" and cf.instructions[3].line == 8


def test_two_heredocs_in_one_instruction() -> None:
    ins = one("COPY <<A <<B /dir/\na\nA\nb\nB\n")
    assert [(h.name, h.content) for h in ins.heredocs] == [("A", "a\n"), ("B", "b\n")]


def test_unterminated_heredoc() -> None:
    with pytest.raises(RecipeError, match=r":1: RUN: heredoc <<EOF is never terminated"):
        parse("RUN <<EOF\necho\n")


def test_onbuild_keeps_inner_instruction() -> None:
    ins = one("ONBUILD COPY --chown=1 . /app\n")
    assert ins.onbuild is not None and ins.onbuild.keyword == "COPY" and ins.onbuild.flag("chown") == "1"
    with pytest.raises(RecipeError, match="not allowed"):
        parse("ONBUILD FROM x\n")


def test_crlf_and_bom() -> None:
    cf = parse("\ufeffFROM scratch\r\nCMD a\r\n")
    assert [i.args for i in cf.instructions] == ["scratch", "a"]


# -- words ----------------------------------------------------------------------------------------------------------
ENV = {"A": "x", "EMPTY": "", "SP": "a b", "PATH_": "/usr/local/bin/tool.tar.gz"}


@pytest.mark.parametrize(
    ("word", "out"),
    [
        ("$A", "x"),
        ("${A}y", "xy"),
        ("$Ay", ""),
        ("$UNSET", ""),
        ("${UNSET:-d}", "d"),
        ("${EMPTY:-d}", "d"),
        ("${EMPTY-d}", ""),
        ("${UNSET-d}", "d"),
        ("${A:+alt}", "alt"),
        ("${EMPTY:+alt}", ""),
        ("${EMPTY+alt}", "alt"),
        ("${UNSET+alt}", ""),
        ("${UNSET:-$A}", "x"),
        ("${UNSET:-${A:+n}}", "n"),
        ("'$A'", "$A"),
        ('"$A b"', "x b"),
        ('"\\$A"', "$A"),
        ("\\$A", "$A"),
        ('"a\\b"', "a\\b"),
        ("$", "$"),
        ("a$/b", "a$/b"),
        ("${PATH_##*/}", "tool.tar.gz"),
        ("${PATH_#*/}", "usr/local/bin/tool.tar.gz"),
        ("${PATH_%.*}", "/usr/local/bin/tool.tar"),
        ("${PATH_%%.*}", "/usr/local/bin/tool"),
        ("${SP}", "a b"),
    ],
)
def test_expand(word: str, out: str) -> None:
    assert expand(word, ENV) == out


def test_expand_with_backtick_escape() -> None:
    assert expand("`$A", ENV, "`") == "$A"
    assert expand("C:\\x", ENV, "`") == "C:\\x"


@pytest.mark.parametrize(
    ("word", "message"),
    [
        ("'abc", "single-quote"),
        ('"abc', "double-quote"),
        ("${A", "missing '}'"),
        ("${A:*x}", "unsupported modifier"),
        ("${}", "bad substitution"),
        ("${UNSET:?must be set}", "UNSET: must be set"),
        ("${UNSET?}", "UNSET: is not allowed to be unset"),
    ],
)
def test_expand_errors(word: str, message: str) -> None:
    with pytest.raises(WordError, match=message):
        expand(word, ENV)


def test_expand_words_splits_on_unquoted_blanks_only() -> None:
    assert expand_words("a 'b c' \"$SP\" d\\ e $SP", ENV) == ["a", "b c", "a b", "d e", "a b"]
    assert expand_words("K=$A 'X=y z'", None) == ["K=$A", "X=y z"]
