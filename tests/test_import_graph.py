"""The package layering, read from the source with ``ast``: no import cycles among the
project's modules, ``privacy/`` standalone, and ``medgan_core/`` free of Flower and of the
layers above it (``client/``, ``server/``, ``simulations/``).

Every import counts, including one inside a function (a lazy import that closes a cycle is
still a cycle); only ``if TYPE_CHECKING:`` blocks are skipped. ``from pkg import mod``
counts as importing both ``pkg`` (its ``__init__`` runs) and ``pkg.mod``.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("medgan_core", "privacy", "client", "server", "simulations")


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.stmt) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(path: Path, name: str) -> set[str]:
    """Every absolute module name ``path`` imports (project or not), TYPE_CHECKING aside."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    class Collector(ast.NodeVisitor):
        def visit_If(self, node: ast.If) -> None:
            if _is_type_checking(node):
                for other in node.orelse:
                    self.visit(other)
                return
            self.generic_visit(node)

        def visit_Import(self, node: ast.Import) -> None:
            found.update(alias.name for alias in node.names)

        def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            found.add(base)  # the package's __init__ runs, whatever is imported from it
            found.update(f"{base}.{alias.name}" for alias in node.names)

    Collector().visit(ast.parse(path.read_text()))
    return found


def _graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(project module -> project modules it imports, project module -> every import)."""
    paths = {_module_name(p): p for package in PACKAGES for p in (REPO / package).rglob("*.py")}
    everything = {name: _imports(path, name) for name, path in paths.items()}
    graph = {name: {m for m in imported if m in paths and m != name} for name, imported in everything.items()}
    return graph, everything


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
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
    return found


def _within(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def test_no_import_cycles_among_project_modules():
    graph, _ = _graph()
    assert _cycles(graph) == []


def test_the_cycle_finder_fires_on_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_privacy_imports_nothing_of_the_other_packages():
    _, everything = _graph()
    offenders = {m: sorted(i for i in imported if _within(i, ("medgan_core", "client", "server", "simulations")))
                 for m, imported in everything.items() if _within(m, ("privacy",))}
    assert {m: i for m, i in offenders.items() if i} == {}


def test_medgan_core_imports_neither_flower_nor_the_layers_above_it():
    _, everything = _graph()
    offenders = {m: sorted(i for i in imported if _within(i, ("client", "server", "simulations", "flwr")))
                 for m, imported in everything.items() if _within(m, ("medgan_core",))}
    assert {m: i for m, i in offenders.items() if i} == {}


def test_the_shipped_apps_import_neither_simulations_nor_the_cli():
    # client/ and server/ are shipped to sites and the coordinator in the app bundle;
    # simulations/ and medgan_cli/ are not.
    _, everything = _graph()
    offenders = {m: sorted(i for i in imported if _within(i, ("simulations", "medgan_cli")))
                 for m, imported in everything.items() if _within(m, ("client", "server"))}
    assert {m: i for m, i in offenders.items() if i} == {}


def test_function_level_imports_count_and_type_checking_ones_do_not(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import medgan_core.audit\n"
                     "def f():\n    from medgan_core.site import SiteConfig\n")
    imported = _imports(probe, "probe")
    assert {"medgan_core.site", "medgan_core.site.SiteConfig"} <= imported
    assert "medgan_core.audit" not in imported
