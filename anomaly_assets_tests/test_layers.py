"""The package's import contract: imports point down the layers, and no module imports
itself back through others. Read from the source (every import, inside functions too), so
a new module or import is held to it without being listed here."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "anomaly_assets"
#: Shared by every layer: may import only each other.
BASE = (
    "core",
    "resources",
    "io_managers",
    "settings",
    "contract",
    "stream",
    "jobs",
    "maintenance",
)
#: The pipeline's layers, upstream first: each may import the base and the layers before.
LAYERS = (
    "ingestion",
    "silver",
    "model",
    "gold",
    "enrichment",
    "evaluation",
    "feedback",
    "alerts",
    "triage",
)
#: What wires the layers together, and the tools around them: may import anything.
TOP = ("pipeline", "definitions", "components", "defs", "devtools")


def modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules ``name`` imports (a name imported from a module counts as
    that module)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target not in (name, "anomaly_assets"):
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports(name, path, set(found)) for name, path in found.items()}


def rank(module: str) -> int:
    """-1 for the base, the layer's index, or 99 for the top."""
    top = module.split(".")[1] if "." in module else module
    if top in BASE:
        return -1
    if top in LAYERS:
        return LAYERS.index(top)
    assert top in TOP, f"{module}: put it in BASE, LAYERS or TOP of this test"
    return 99


def test_every_import_points_down_the_layers():
    upward = sorted(
        f"{m} imports {t}"
        for m, targets in graph().items()
        if m != "anomaly_assets"
        for t in targets
        if rank(t) > rank(m) or (rank(m) == -1 and rank(t) != -1)
    )
    assert not upward, "\n".join(upward)


def test_no_import_circle():
    edges = graph()
    circles, done = [], set()

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            circles.append(path[path.index(node) :] + [node])
            return
        if node in done:
            return
        for target in sorted(edges.get(node, ())):
            visit(target, [*path, node])
        done.add(node)

    for node in sorted(edges):
        visit(node, [])
    assert not circles, "\n".join(" -> ".join(c) for c in circles)
