"""docs/tests.md: for each module of the package, the test modules that import it, its
namesake first, so a module's tests are one look-up away even where they are named for
the behaviour they test rather than the module. Built from the tests' imports; a test keeps
it current. Regenerate after adding a module or a test::

    python -m anomaly_assets.devtools.tested_by > docs/tests.md
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE, TESTS = ROOT / "anomaly_assets", ROOT / "anomaly_assets_tests"
#: Most test modules listed for one module; the rest are counted.
SHOWN = 6


def _modules() -> dict[str, Path]:
    """Module name -> file: every module, and every package whose __init__ holds code."""
    names = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        if "defs" in rel.parts:
            continue
        if path.name == "__init__.py":
            rel = rel.parent
            body = ast.parse(path.read_text()).body
            code = [
                n for n in body if not isinstance(n, ast.Expr)
            ]  # beyond a docstring
            if rel == Path(PACKAGE.name) or not code:
                continue
        names[".".join(rel.parts)] = path
    return names


def _imported(test: Path, modules: set[str]) -> set[str]:
    """The package's modules a test module imports, ``from a.b import c`` counting c when
    it is a module and a.b otherwise."""
    found = set()
    for node in ast.walk(ast.parse(test.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                found.add(child if child in modules else node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found & modules


def index() -> dict[str, tuple[list[str], str | None]]:
    """Module -> (test modules, how they reach it when they do not import it): the tests
    that import it, its namesake first; for a module no test imports, the tests of a
    module that imports it (one of its own folder first), else those of its folder."""
    modules = _modules()
    names = set(modules)
    tested: dict[str, list[str]] = {m: [] for m in modules}
    for test in sorted(TESTS.rglob("test_*.py")):
        for module in _imported(test, names):
            tested[module].append(str(test.relative_to(TESTS)))
    for module, tests in tested.items():
        parts = module.split(".")[1:]
        folder = "/".join(
            parts[:-1] if modules[module].name != "__init__.py" else parts
        )
        namesake = f"{folder}/test_{parts[-1]}.py".lstrip("/")
        if namesake not in tests and (TESTS / namesake).exists():
            tests.append(namesake)
        # its namesake, then the tests of its own folder, then the others
        tests.sort(key=lambda t: (t != namesake, not t.startswith(f"{folder}/"), t))
    imports = {m: _imported(path, names) for m, path in modules.items()}
    found: dict[str, tuple[list[str], str | None]] = {}
    for module, tests in tested.items():
        if tests:
            found[module] = (tests, None)
            continue
        folder = module.rsplit(".", 1)[0]
        callers = sorted(c for c in modules if module in imports[c] and tested[c])
        # a caller of its own folder (or its package) says most, then any caller
        near = [c for c in callers if folder in (c, c.rsplit(".", 1)[0])]
        mirror = TESTS.joinpath(*folder.split(".")[1:])
        if near or callers:
            caller = (near or callers)[0]
            found[module] = (tested[caller], f"through `{caller}`")
        elif folder != PACKAGE.name and mirror.is_dir():
            tests = sorted(str(t.relative_to(TESTS)) for t in mirror.glob("test_*.py"))
            found[module] = (tests, "its folder's tests")
        else:
            found[module] = ([], None)
    return found


def render() -> str:
    lines = [
        "# Where each module is tested",
        "",
        "Generated from the tests' imports by `python -m anomaly_assets.devtools.tested_by`;",
        "a test fails when this page is stale. A module's namesake test module comes first; a",
        "module no test imports shows the tests of a module that uses it. The end-to-end",
        "scenarios are in `anomaly_assets_tests/scenarios/`.",
        "",
        "| module | test modules (in `anomaly_assets_tests/`) |",
        "| --- | --- |",
    ]
    for module, (tests, caller) in index().items():
        shown = ", ".join(f"`{t}`" for t in tests[:SHOWN]) or "none"
        more = f" and {len(tests) - SHOWN} more" if len(tests) > SHOWN else ""
        through = f"{caller}: " if caller else ""
        lines.append(f"| `{module}` | {through}{shown}{more} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render(), end="")
