"""The house rules a newcomer relies on, checked by reading the source (ast) rather than importing it.

- The package's import graph has no cycle: a lower module never imports a higher one, not even inside a
  function, so each module can be read (and imported) without the ones above it.
- No function is longer than MAX_FUNCTION_LINES: each reads in one screen.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "explorer"
MAX_FUNCTION_LINES = 50


def module_name(path: Path, root: Path = ROOT) -> str:
    """'explorer/pages/live.py' → 'explorer.pages.live'; a package's __init__.py is the package itself."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules(root: Path = ROOT, package: str = PACKAGE) -> dict[str, Path]:
    """Every module of the package, subpackages and explorer/pages/ included: name → file."""
    return {module_name(p, root): p for p in sorted((root / package).rglob("*.py"))}


def imported_modules(path: Path, modules: dict[str, Path], root: Path = ROOT) -> set[str]:
    """The package's modules that `path` imports anywhere in it (top level, inside functions, under `if`),
    relative or absolute. `from P import x` counts as module P.x when P.x is a module, else as P; importing
    P.x also runs P's __init__, so P counts too unless P encloses `path` itself."""
    name = module_name(path, root)
    here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]  # the module's package
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: level 1 is the module's own package, 2 the one above
                base = ".".join(here[:len(here) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            out.update(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names)
    found = {m for m in out if m in modules and m != name}
    enclosing = {".".join(m.split(".")[:i]) for m in found for i in range(1, m.count(".") + 1)}
    own = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
    return found | {p for p in enclosing if p in modules and p not in own}


def import_graph(root: Path = ROOT, package: str = PACKAGE) -> dict[str, set[str]]:
    modules = package_modules(root, package)
    return {name: imported_modules(path, modules, root) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph as [a, b, ..., a], or None: depth-first search, a cycle being an edge
    back to a node still on the search path."""
    on_path: dict[str, int] = {}  # node → its position in `path`
    done: set[str] = set()
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        on_path[node] = len(path)
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt in on_path:
                return path[on_path[nxt]:] + [nxt]
            if nxt not in done and (cycle := visit(nxt)):
                return cycle
        path.pop()
        del on_path[node]
        done.add(node)
        return None

    for start in sorted(graph):
        if start not in done and (cycle := visit(start)):
            return cycle
    return None


def test_the_cycle_finder_finds_cycles_of_any_length():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None  # a diamond is no cycle
    assert find_cycle({"a": {"a"}}) == ["a", "a"]
    assert find_cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]
    assert find_cycle({"x": {"a"}, "a": {"b"}, "b": {"c"}, "c": {"d"}, "d": {"b"}}) == ["b", "c", "d", "b"]


def test_imports_are_read_wherever_they_are(tmp_path):
    """Function-level, relative (`from . import x`, `from .x import y`, `from .. import y`) and absolute imports
    all count; `from . import name` of something that is not a module counts as the package."""
    pkg = tmp_path / PACKAGE
    (pkg / "sub").mkdir(parents=True)
    for f in ("__init__.py", "low.py", "other.py", "third.py", "sub/__init__.py", "sub/deep.py"):
        (pkg / f).write_text("")
    (pkg / "high.py").write_text("def f():\n    from . import low, CONSTANT\n    from .other import g\n"
                                 "    import explorer.third\nimport explorer.sub.deep as d\n")
    (pkg / "sub" / "deep.py").write_text("if True:\n    from .. import low\n    from explorer.sub import x\n")
    graph = import_graph(tmp_path)
    assert graph["explorer.high"] == {"explorer", "explorer.low", "explorer.other", "explorer.third", "explorer.sub",
                                      "explorer.sub.deep"}  # explorer.sub: its __init__ runs first
    assert graph["explorer.sub.deep"] == {"explorer.low", "explorer.sub"}
    (pkg / "low.py").write_text("def later():\n    from .sub import deep\n")
    assert find_cycle(import_graph(tmp_path)) == ["explorer.low", "explorer.sub.deep", "explorer.low"]


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert {"explorer.suites", "explorer.pages.live"} <= set(graph)
    assert "explorer.probe" in graph["explorer.judge_eval"]  # imported inside train_from_labels: seen
    cycle = find_cycle(graph)
    assert cycle is None, f"import cycle: {' → '.join(cycle)}; the lower module must not import the higher one"


def test_judges_named_by_module_exist():
    """The judge registry names the judges built on top of it as 'module:Class' (never importing them), so
    the cycle check cannot see a broken name: each must be a module of the package defining that class."""
    from explorer.judges import REGISTRY

    modules = package_modules()
    for name, factory in REGISTRY.items():
        if isinstance(factory, str):
            module, attr = factory.split(":")
            assert module in modules, f"judge {name!r}: no module {module}"
            tree = ast.parse(modules[module].read_text(encoding="utf-8"))
            assert attr in {n.name for n in tree.body if isinstance(n, ast.ClassDef)}, f"judge {name!r}: no {factory}"


def long_functions(files: list[Path], limit: int = MAX_FUNCTION_LINES, root: Path = ROOT) -> list[str]:
    """'path:line name (N lines)' for every function or method over `limit` lines, nested ones included."""
    out = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > limit:
                    out.append(f"{path.relative_to(root)}:{node.lineno} {node.name} ({n} lines)")
    return out


def test_the_length_check_counts_every_line_of_a_function(tmp_path):
    body = [f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES - 1)]  # def line + these = the limit exactly
    lines = ["def fits():", *body, "", "", "class C:", "    def over(self):", *("    " + b for b in body), "        return 1"]
    (tmp_path / "m.py").write_text("\n".join(lines) + "\n")
    over_at = lines.index("    def over(self):") + 1
    assert long_functions([tmp_path / "m.py"], root=tmp_path) == [f"m.py:{over_at} over ({MAX_FUNCTION_LINES + 1} lines)"]


def test_no_function_is_longer_than_a_screen():
    files = sorted([*(ROOT / "explorer").rglob("*.py"), *(ROOT / "bench").rglob("*.py")])
    too_long = long_functions(files)
    assert not too_long, f"functions over {MAX_FUNCTION_LINES} lines (split them into named helpers):\n" + "\n".join(too_long)
