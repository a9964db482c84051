"""The import graph of minibuild (builder/), minirun (runner/) and minicache (cache/) has no cycle, and
neither tool imports the other.

The graph is read from the sources with `ast`, without importing anything: every `import` and `from ...
import` at module level and inside functions (a lazy import is still an edge), and every string that
names one of the three packages' modules (the command table of `minirun`'s command line and the lazy
names of minirun.network are imported by name). Two things are not edges of the cycle check: imports
under `if TYPE_CHECKING:` (they never run: annotations are strings here), and a module named after `-m`
in a command line (a new interpreter runs it, nothing is imported). The check that minibuild and minirun
stay apart counts type-only imports too: one tool must not need the other even to be type-checked.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"minibuild": "builder", "minirun": "runner", "minicache": "cache"}
APART = ("minibuild", "minirun")
# What each folder of runner/ may import besides itself, minicache and minirun.errors, the errors every folder
# raises (its __init__ says the same).
MAY_IMPORT = {
    "minirun.cli": {"minirun.engine", "minirun.network", "minirun.cgroups", "minirun.runtime", "minirun.serve"},
    "minirun.serve": {"minirun.engine", "minirun.network", "minirun.cgroups", "minirun.runtime"},
    "minirun.engine": {"minirun.network", "minirun.cgroups", "minirun.runtime"},
    "minirun.network": {"minirun.runtime.syscalls"},
    "minirun.runtime": {"minirun.cgroups"},
    "minirun.cgroups": set(),
}
# The narrow exceptions the __init__s name: serve speaks the command line's options and documents, and the
# runtime's own command borrows the engine's default spec.
SHARED = {
    "minirun.serve": {
        "minirun.cli.options",
        "minirun.cli.views",
        "minirun.cli.commands.run",
        "minirun.cli.commands.ps",
    },
    "minirun.runtime.default_spec": {"minirun.engine.spec"},
}


def _modules() -> dict[str, Path]:
    """Every module of the three packages: dotted import name -> source file."""
    found = {}
    for package, folder in PACKAGES.items():
        base = ROOT / folder
        for path in sorted(base.rglob("*.py")):
            parts = list(path.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([package, *parts])] = path
    return found


MODULES = _modules()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _names_module(text: str) -> bool:
    """A dotted module name of ours (a bare package name is a word, like `prog="minirun"`)."""
    return "." in text and text in MODULES


def _owner(name: str) -> str | None:
    """The module of ours that importing `name` runs: itself, or the package of an imported attribute."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


class _Imports(ast.NodeVisitor):
    """The modules of ours that one module imports, at run time and (apart) under TYPE_CHECKING."""

    def __init__(self, module: str, is_package: bool) -> None:
        self.package = module if is_package else module.rpartition(".")[0]
        self.run_time: set[str] = set()
        self.type_only: set[str] = set()
        self._typing = 0

    def _add(self, name: str) -> None:
        owner = _owner(name)
        if owner is not None:
            (self.type_only if self._typing else self.run_time).add(owner)

    def visit_If(self, node: ast.If) -> None:
        if not _is_type_checking(node.test):
            self.generic_visit(node)
            return
        self._typing += 1
        for child in node.body:
            self.visit(child)
        self._typing -= 1
        for child in node.orelse:
            self.visit(child)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:
            parts = self.package.split(".")[: len(self.package.split(".")) - (node.level - 1)]
            base = ".".join([*parts, *([node.module] if node.module else [])])
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            self._add(submodule if submodule in MODULES else base)

    def _strings(self, items: list[ast.expr]) -> None:
        """Names of modules in a list or tuple, but the one after "-m" (a new interpreter, not an import)."""
        after_m = False
        for item in items:
            if isinstance(item, ast.Constant) and isinstance(item.value, str):
                if not after_m and _names_module(item.value):
                    self._add(item.value)
                after_m = item.value == "-m"
            else:
                after_m = False
                self.visit(item)

    def visit_List(self, node: ast.List) -> None:
        self._strings(node.elts)

    def visit_Tuple(self, node: ast.Tuple) -> None:
        self._strings(node.elts)

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str) and _names_module(node.value):
            self._add(node.value)


@functools.cache  # the sources do not change during a run: parse them once for all the checks
def _graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(run-time edges, type-only edges) of every module, self-imports left out. Read-only for the callers."""
    run_time, type_only = {}, {}
    for module, path in MODULES.items():
        visitor = _Imports(module, path.name == "__init__.py")
        visitor.visit(ast.parse(path.read_text(), str(path)))
        run_time[module] = visitor.run_time - {module}
        type_only[module] = visitor.type_only - {module} - visitor.run_time
    return run_time, type_only


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (a path back to its start) per strongly connected component of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return [_path_back(graph, component) for component in components]


def _path_back(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest path from the component's first module back to itself, within the component."""
    start = min(component)
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for v in frontier:
            for w in sorted(graph[v] & component):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if w not in previous:
                    previous[w] = v
                    following.append(w)
        frontier = following
    raise AssertionError(f"no cycle in {sorted(component)}")


def test_the_packages_have_no_import_cycle() -> None:
    run_time, _ = _graph()
    cycles = _cycles(run_time)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(cycle) for cycle in cycles)


def test_minibuild_and_minirun_never_import_each_other() -> None:
    run_time, type_only = _graph()
    crossing = sorted(
        f"{module} -> {target}"
        for module in MODULES
        for target in run_time[module] | type_only[module]
        for here, there in (APART, APART[::-1])
        if module.split(".")[0] == here and target.split(".")[0] == there
    )
    assert not crossing, "imports between minibuild and minirun:\n" + "\n".join(crossing)


def _folder(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_each_runner_folder_imports_only_what_its_init_allows() -> None:
    run_time, type_only = _graph()
    strays = []
    for module in MODULES:
        folder = _folder(module)
        if folder not in MAY_IMPORT:
            continue
        shared = SHARED.get(module, set()) | SHARED.get(folder, set())
        for target in sorted(run_time[module] | type_only[module]):
            there = _folder(target)
            if there == folder or target.split(".")[0] != "minirun" or target in shared or target == "minirun.errors":
                continue
            if there not in MAY_IMPORT[folder] and target not in MAY_IMPORT[folder]:
                strays.append(f"{module} -> {target}")
    assert not strays, "imports a folder's __init__ does not allow:\n" + "\n".join(strays)


def test_every_module_is_read() -> None:
    """The graph covers each package's sources (a folder renamed away from PACKAGES would pass silently)."""
    for package, folder in PACKAGES.items():
        sources = list((ROOT / folder).rglob("*.py"))
        assert len([m for m in MODULES if m.split(".")[0] == package]) == len(sources) > 0


@pytest.mark.parametrize(
    ("source", "edges"),
    [
        ("from minirun.engine import lifecycle\n", {"minirun.engine.lifecycle"}),
        ("def f():\n    from minirun.engine.lifecycle import observe\n", {"minirun.engine.lifecycle"}),
        ("import minirun.engine.steps\n", {"minirun.engine.steps"}),
        ("TABLE = {'run': ('minirun.cli.commands.run', 'help')}\n", {"minirun.cli.commands.run"}),
        ("ARGV = ['python', '-m', 'minirun.cli.main']\n", set()),
        ("PROG = 'minirun'\n", set()),
        ("if TYPE_CHECKING:\n    from minirun.engine.containers import Container\n", set()),
    ],
)
def test_what_counts_as_an_import(source: str, edges: set[str]) -> None:
    visitor = _Imports("minirun.cli.views", is_package=False)
    visitor.visit(ast.parse(source))
    assert visitor.run_time == edges


def test_a_cycle_is_reported_as_a_path() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c", "a"]]
