"""The layering rules of the package, read from the source with ``ast``: imports go
downwards only, no module-level import cycle, and nothing outside ``node.py``
reaches into a node's underscored attributes."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "pydds"

#: Modules that import nothing of pydds but what is listed (prefixes).
BASE = {
    "pydds.errors": (),
    "pydds.clock": (),
    "pydds.changes": (),
    "pydds.collector": (),
    "pydds.logs": (),
    "pydds.loops": (),
    "pydds.eager": (),
    "pydds.config": ("pydds.errors",),
    "pydds.acks": ("pydds.errors",),
}
#: Packages whose modules import only their own package and what is listed.
LAYERS = {
    "pydds.crdt": ("pydds.errors",),
    "pydds.net": ("pydds.errors", "pydds.config", "pydds.changes", "pydds.crdt"),
}
#: What every ``pydds`` command loads, for a fast start: ``cli.process`` (``serve``)
#: is imported lazily, and brings the node.
CLI = ("pydds.cli", "pydds.cli.client", "pydds.cli.http", "pydds.cli.options", "pydds.cli.serve")


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    name = ".".join(parts)
    return name.removesuffix(".__init__")


def imports(path: Path, *, type_only: bool) -> set[str]:
    """The pydds modules ``path`` imports at module level (with ``type_only``, those
    under ``if TYPE_CHECKING:`` too)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                if type_only:
                    visit(node.body)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    target = node.module or ""
                if target.startswith("pydds"):
                    if node.module is None:  # from . import x: x is the module
                        found.update(f"{target}.{alias.name}" for alias in node.names)
                    else:
                        found.add(target)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("pydds"))

    visit(ast.parse(path.read_text()).body)
    return found


MODULES = {module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def allowed(target: str, prefixes: tuple[str, ...]) -> bool:
    return any(target == p or target.startswith(p + ".") for p in prefixes)


@pytest.mark.parametrize("module", sorted(BASE))
def test_base_modules_import_almost_nothing(module: str) -> None:
    wrong = {t for t in imports(MODULES[module], type_only=True) if not allowed(t, BASE[module])}
    assert not wrong, f"{module} imports {sorted(wrong)}"


@pytest.mark.parametrize("package", sorted(LAYERS))
def test_lower_layers_import_nothing_above_them(package: str) -> None:
    wrong = []
    for name, path in MODULES.items():
        if name == package or name.startswith(package + "."):
            for target in imports(path, type_only=True):
                if not allowed(target, (package, *LAYERS[package])):
                    wrong.append(f"{name} imports {target}")
    assert not wrong


@pytest.mark.parametrize("module", CLI)
def test_the_command_line_loads_nothing_of_the_node(module: str) -> None:
    wrong = {
        t
        for t in imports(MODULES[module], type_only=True)
        if not (allowed(t, CLI) or t in ("pydds", "pydds.__version__"))
    }
    assert not wrong, f"{module} imports {sorted(wrong)}"


def test_no_module_level_import_cycle() -> None:
    graph = {
        name: {t for t in imports(path, type_only=False) if t in MODULES and t != name}
        for name, path in MODULES.items()
    }
    # A package importing its own submodules (``pydds`` does so lazily) is no cycle.
    graph = {n: {t for t in ts if not t.startswith(n + ".")} for n, ts in graph.items()}
    done: set[str] = set()
    path: list[str] = []

    def walk(name: str) -> None:
        if name in path:
            cycle = [*path[path.index(name) :], name]
            raise AssertionError("import cycle: " + " -> ".join(cycle))
        if name in done:
            return
        path.append(name)
        for target in sorted(graph[name]):
            walk(target)
        path.pop()
        done.add(name)

    for name in sorted(graph):
        walk(name)


def test_nothing_outside_node_reads_a_nodes_private_attributes() -> None:
    # ``node._x``, ``self._node._x``, ``db._node._x``: a node's privates, used only by
    # node.py itself. A subclass (``Client``) keeps to the public API too.
    wrong = []
    for name, path in MODULES.items():
        if name == "pydds.node":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Attribute) and node.attr.startswith("_")):
                continue
            if node.attr.startswith("__"):
                continue
            owner = node.value
            if (isinstance(owner, ast.Name) and owner.id == "node") or (
                isinstance(owner, ast.Attribute) and owner.attr in ("node", "_node")
            ):
                wrong.append(f"{name}:{node.lineno} reads .{node.attr}")
    assert not wrong


def test_the_rules_see_the_imports() -> None:
    # The reader finds what the rules are about (else every rule would pass).
    assert "pydds.net.replication" in imports(MODULES["pydds.net.peers"], type_only=False)
    assert "pydds.errors" in imports(MODULES["pydds.crdt.ydoc"], type_only=True)
    assert "pydds.node" in imports(MODULES["pydds.database"], type_only=True)
    assert "pydds.node" not in imports(MODULES["pydds.database"], type_only=False)
