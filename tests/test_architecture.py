"""The package's layering (docs/architecture.md): the CLI on top, nothing below importing it, no cycles.

Imports are read from the source (every ``import``, also inside functions, and every
``importlib.import_module("...")`` literal), so a lazy import cannot hide a dependency.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "sasrec_tf"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def resolve(target: str) -> str | None:
    """The package module an import of ``target`` loads (its longest known prefix)."""
    while target and target not in MODULES:
        target = target.rpartition(".")[0]
    return target or None


def imports_of(name: str) -> set[str]:
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            targets = [node.args[0].value]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("sasrec_tf."):
            targets = [node.value]  # module names in lazy-import tables (the package __init__)
        for target in targets:
            if target.startswith("sasrec_tf"):
                module = resolve(target)
                if module and module != name:
                    found.add(module)
    return found


GRAPH = {name: imports_of(name) for name in MODULES}


def test_the_graph_was_read():
    assert "sasrec_tf.experiment" in GRAPH["sasrec_tf.cli.train"]
    assert "sasrec_tf.objectives" in GRAPH["sasrec_tf.model"]


def test_no_library_module_imports_the_cli():
    offenders = {name: sorted(m for m in deps if m.startswith("sasrec_tf.cli"))
                 for name, deps in GRAPH.items() if not name.startswith("sasrec_tf.cli")}
    assert not {k: v for k, v in offenders.items() if v}


def test_no_import_cycles_between_modules():
    # Package __init__ files re-export their submodules; an edge into one is an edge into the
    # package's API, not a cycle of design, so only module-to-module edges are followed.
    packages = {name for name, path in MODULES.items() if path.name == "__init__.py"}
    edges = {name: {d for d in deps if d not in packages} for name, deps in GRAPH.items() if name not in packages}
    state: dict[str, int] = {}
    cycles = []

    def visit(node, stack):
        state[node] = 1
        for dep in sorted(edges.get(node, ())):
            if state.get(dep) == 1:
                cycles.append(stack[stack.index(dep):] + [dep] if dep in stack else [node, dep])
            elif dep not in state:
                visit(dep, stack + [dep])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert not cycles, " ; ".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("module", ["sasrec_tf.distribute", "sasrec_tf.data.tfrecord"])
def test_test_helpers_live_in_sasrec_tf_testing_not_in_the_library(module):
    source = "".join(p.read_text(encoding="utf-8") for n, p in MODULES.items() if n.startswith(module))
    assert "def free_ports" not in source and "def run_local_cluster" not in source


def test_no_library_module_imports_the_test_helpers():
    offenders = {name: sorted(m for m in deps if m.startswith("sasrec_tf.testing"))
                 for name, deps in GRAPH.items() if not name.startswith("sasrec_tf.testing")}
    assert not {k: v for k, v in offenders.items() if v}
