"""minibuild never imports minirun, and minicache neither of them (the runtime is reached as a command)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def imported_packages(folder: str) -> dict[str, set[str]]:
    out = {}
    for path in (ROOT / folder).rglob("*.py"):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module.split(".")[0])
        out[str(path.relative_to(ROOT))] = names
    return out


def test_builder_never_imports_runner() -> None:
    assert {p: n for p, n in imported_packages("builder").items() if "minirun" in n} == {}


def test_cache_imports_neither_tool() -> None:
    assert {p: n for p, n in imported_packages("cache").items() if n & {"minirun", "minibuild"}} == {}
