"""The package's imports go one way: no module imports, even inside a function, one that imports it back.

The layers, from the top: cli → commands (host, doctor, cleanup,
job_commands, the stages' commands.py) → run → the stages (image, testbed,
vm, guest, results, candidates, archives; job and siteconfig) → the helpers
(HELPERS below), which import nothing above them.

The graph is read from the package's own source with `ast`: every import
statement, at the top of a module, under `if TYPE_CHECKING:` or inside a
function, absolute or relative. An import inside a function hides an upward
edge from Python (it runs after both modules are loaded), not from this test.

Imports inside functions are few and each says why on the line above (or at
the end of its line): `# deferred: <why>`. A heavy library (libvirt,
paramiko, subunit, jinja2, ...) needs none: the module that uses it binds it
with lazy.py's lazy_module() and it is imported on first use, so that --help
and completion stay fast (tests/unit/test_cli_imports.py); lazy_module()
refuses the package's own modules, whose imports are all read here.
"""

from __future__ import annotations

import ast
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import TOP

PACKAGE = TOP / "ci" / "tempest_live_ci"

# Imports inside functions, in the whole package (deploy/ included).
MAX_DEFERRED = 20

REASON = "# deferred:"


def module_name(root: Path, path: Path) -> str:
    """The dotted name of the module in `path`, in the package whose directory is `root`."""
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(root: Path) -> dict[str, Path]:
    """Every module of the package: dotted name → file."""
    return {module_name(root, path): path for path in sorted(root.rglob("*.py"))}


def _base(name: str, path: Path, node: ast.ImportFrom) -> str:
    """The module a `from X import ...` names, relative imports resolved against `name`."""
    if not node.level:
        return node.module or ""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    if node.level > 1:
        package = package[:-(node.level - 1)]
    return ".".join([*package, node.module] if node.module else package)


def imported(name: str, path: Path, node: ast.Import | ast.ImportFrom, known: set[str]) -> set[str]:
    """The package's own modules that one import statement of module `name` loads."""
    found = set()
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name in known:
                found.add(alias.name)
        return found
    base = _base(name, path, node)
    for alias in node.names:
        # `from pkg import sub` names the submodule pkg.sub when there is one.
        if f"{base}.{alias.name}" in known:
            found.add(f"{base}.{alias.name}")
        elif base in known:
            found.add(base)
    return found


@dataclass(frozen=True)
class Deferred:
    """An import statement inside a function."""

    module: str
    path: Path
    line: int
    reason: str  # the text after "# deferred:", "" without one

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"


def _imports(tree: ast.Module) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement of a module, and whether it sits inside a function."""

    def walk(node: ast.AST, in_function: bool) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                yield child, in_function
            yield from walk(child, in_function or isinstance(
                child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda))

    yield from walk(tree, False)


def _reason(lines: list[str], node: ast.stmt, previous: Deferred | None) -> str:
    """The reason a deferred import gives: a `# deferred:` comment at the end of
    its first line or alone on the line above; an import right below another
    deferred import (a block of them) shares that one's reason."""
    own = lines[node.lineno - 1]
    if REASON in own:
        return own.split(REASON, 1)[1].strip()
    above = lines[node.lineno - 2].strip() if node.lineno > 1 else ""
    if above.startswith(REASON):
        return above.split(REASON, 1)[1].strip()
    if previous is not None and previous.line == node.lineno - 1:
        return previous.reason
    return ""


def scan(root: Path) -> tuple[dict[str, set[str]], list[Deferred]]:
    """The import graph of the package in `root` (module → the package's modules
    it imports), and its imports inside functions."""
    found = modules(root)
    known = set(found)
    graph: dict[str, set[str]] = {name: set() for name in found}
    deferred: list[Deferred] = []
    for name, path in found.items():
        source = path.read_text()
        lines = source.splitlines()
        for node, in_function in _imports(ast.parse(source, str(path))):
            graph[name] |= imported(name, path, node, known) - {name}
            if in_function:
                previous = deferred[-1] if deferred and deferred[-1].path == path else None
                deferred.append(Deferred(name, path, node.lineno, _reason(lines, node, previous)))
    return graph, deferred


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The graph's strongly connected components of more than one module
    (Tarjan's algorithm, iterative), each sorted, largest first."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            for target in edges:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(graph[target]))))
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return sorted(found, key=lambda c: (-len(c), c))


def one_loop(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """A shortest path from the component's first module back to itself: the
    edges to cut first."""
    members = set(component)
    start = component[0]
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target in sorted(graph[node] & members):
                if target == start:
                    chain = [node]
                    while chain[-1] != start:
                        chain.append(parents[chain[-1]])
                    return [*chain[::-1], start]
                if target not in parents:
                    parents[target] = node
                    following.append(target)
        frontier = following
    return component


def describe(graph: dict[str, set[str]], found: list[list[str]]) -> str:
    lines = []
    for component in found:
        lines.append(f"circle of {len(component)} modules: {', '.join(component)}")
        lines.append("  for example: " + " → ".join(one_loop(graph, component)))
        for name in component:
            lines.append(f"  {name} → {', '.join(sorted(graph[name] & set(component)))}")
    return "\n".join(lines)


# The package itself.

def test_no_import_circle() -> None:
    graph, _ = scan(PACKAGE)
    found = circles(graph)
    assert not found, describe(graph, found)


def test_few_imports_inside_functions_each_with_its_reason() -> None:
    _, deferred = scan(PACKAGE)
    unexplained = [str(d) for d in deferred if not d.reason]
    assert not unexplained, f"imports inside functions without a '{REASON} <why>' comment: {unexplained}"
    assert len(deferred) <= MAX_DEFERRED, "\n".join(f"{d}  {d.reason}" for d in deferred)


# The layers, from the top; a module imports only modules of its own layer or
# of a lower one, a command module (and run) none of its own layer. Every
# module not named here is a stage's (layer 1).
HELPERS = ("proc", "log", "paths", "render", "errors", "terminal", "inputs", "yamlfile", "digest",
           "files", "lazy", "schema")
LAYERS = {
    5: ("__main__",),
    4: ("cli",),
    3: ("host", "doctor", "cleanup", "job_commands", "image.commands", "vm.commands",
        "results.commands"),
    2: ("run",),
    0: ("", *HELPERS),
}


def layer(module: str) -> int:
    name = module.removeprefix("tempest_live_ci").removeprefix(".")
    return next((n for n, names in LAYERS.items() if name in names), 1)


def test_imports_go_down_the_layers() -> None:
    graph, _ = scan(PACKAGE)
    upward = sorted(f"{module} (layer {layer(module)}) → {target} (layer {layer(target)})"
                    for module, targets in graph.items() for target in targets
                    if layer(target) > layer(module) or layer(target) == layer(module) >= 2)
    assert not upward, "\n".join(upward)


def test_deploy_imports_only_deploy() -> None:
    # The in-guest code runs as the package `deploy`, without the rest.
    graph, _ = scan(PACKAGE)
    outside = sorted(f"{module} → {target}" for module, targets in graph.items()
                     if module.startswith("tempest_live_ci.deploy") for target in targets
                     if not target.startswith("tempest_live_ci.deploy"))
    assert not outside, outside


# The checker, on small packages of its own.

def _package(top: Path, files: dict[str, str]) -> Path:
    root = top / "pkg"
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    for directory in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        (directory / "__init__.py").touch()
    return root


def test_checker_finds_a_circle_through_a_function_level_import(tmp_path: Path) -> None:
    root = _package(tmp_path, {
        "a.py": "from pkg.b import thing\n",
        "b.py": """\
            import os

            def thing():
                from pkg import c
                return c
            """,
        "c.py": "from . import a\n",
        "d.py": "import pkg.a\n",
    })
    graph, deferred = scan(root)
    assert graph["pkg.a"] == {"pkg.b"} and graph["pkg.b"] == {"pkg.c"} and graph["pkg.c"] == {"pkg.a"}
    assert graph["pkg.d"] == {"pkg.a"}
    found = circles(graph)
    assert found == [["pkg.a", "pkg.b", "pkg.c"]]
    message = describe(graph, found)
    assert "circle of 3 modules: pkg.a, pkg.b, pkg.c" in message
    assert "pkg.a → pkg.b → pkg.c → pkg.a" in message
    assert [(d.module, d.line, d.reason) for d in deferred] == [("pkg.b", 4, "")]


def test_checker_resolves_relative_and_dotted_imports(tmp_path: Path) -> None:
    root = _package(tmp_path, {
        "sub/x.py": "from ..top import value\nfrom .y import other\nfrom . import z\n",
        "sub/y.py": "import pkg.sub.z\nfrom pkg.sub import thing\n",
        "sub/z.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import top\n",
        "top.py": "import json\nvalue = 1\n",
    })
    graph, deferred = scan(root)
    assert graph["pkg.sub.x"] == {"pkg.top", "pkg.sub.y", "pkg.sub.z"}
    assert graph["pkg.sub.y"] == {"pkg.sub.z", "pkg.sub"}
    assert graph["pkg.sub.z"] == {"pkg.top"}
    assert graph["pkg.top"] == set()
    assert circles(graph) == [] and deferred == []


def test_checker_finds_a_two_module_circle(tmp_path: Path) -> None:
    root = _package(tmp_path, {"a.py": "import pkg.b\n", "b.py": "from pkg.a import x\n"})
    graph, _ = scan(root)
    assert circles(graph) == [["pkg.a", "pkg.b"]]
    assert "pkg.a → pkg.b → pkg.a" in describe(graph, circles(graph))


def test_checker_wants_a_reason_for_each_deferred_import(tmp_path: Path) -> None:
    root = _package(tmp_path, {"a.py": """\
        def explained():
            # deferred: the library takes a second to load
            import json
            import os
            return json, os

        def inline():
            import csv  # deferred: only this function writes CSV
            return csv

        def unexplained():
            # loads json
            import json

            import os
            return json, os

        class Thing:
            def method(self):
                import json
                return json
        """})
    _, deferred = scan(root)
    assert [(d.line, d.reason) for d in deferred] == [
        (3, "the library takes a second to load"),
        (4, "the library takes a second to load"),
        (8, "only this function writes CSV"),
        (13, ""),
        (15, ""),
        (20, ""),
    ]
