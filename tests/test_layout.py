"""The house: the import graph has no circle, and the porter imports nothing of training or parity."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_engine_and_progbar_import_without_a_cycle():
    import subprocess
    code = "import torchport.keras_compat.progbar, torchport.engine"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    src = (ROOT / "torchport" / "keras_compat" / "progbar.py").read_text()
    assert "from ..engine" not in src and "from ..callbacks import Callback" in src


def _imports() -> dict[str, set[str]]:
    """torchport's modules -> the torchport modules each imports, at the top or inside a function (a circle
    hidden by a function-level import is still a circle)."""
    import ast

    graph = {}
    for path in (ROOT / "torchport").rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        package = module if parts[-1] == "__init__" else module.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = package
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                target = (f"{base}.{node.module}" if node.module else base) if node.level else node.module
                found.add(target)
                found.update(f"{target}.{a.name}" for a in node.names)  # `from . import codegen`
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
        graph[module] = found
    return {m: {t for t in targets if t in graph and t != m} for m, targets in graph.items()}


def test_torchport_has_no_import_circle():
    graph = _imports()
    # a package's __init__ imports its own modules: an arrow down, not a circle
    graph = {m: {t for t in ts if not t.startswith(m + ".")} for m, ts in graph.items()}
    state, circles = {}, []

    def visit(m, path):
        state[m] = "active"
        for t in sorted(graph[m]):
            if state.get(t) == "active":
                circles.append(path[path.index(t):] + [t])
            elif t not in state:
                visit(t, path + [t])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not circles, circles


def test_the_porter_imports_nothing_of_training_or_parity():
    graph = _imports()
    allowed = ("torchport.porting", "torchport.errors", "torchport.keras_compat")
    for module, targets in graph.items():
        if module.startswith("torchport.porting"):
            outside = sorted(t for t in targets if not t.startswith(allowed) and t != "torchport")
            assert not outside, f"{module} imports {outside}"
