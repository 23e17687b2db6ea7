"""The project's modules import each other without a circle (imports inside functions included),
and the method (sama.py) builds on SAM (sam.py), never the other way round."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODULES = {p.stem: p for p in ROOT.glob("*.py")}


def imported_project_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names & set(MODULES)


def find_cycle(graph: dict[str, set[str]]):
    """A list of modules forming a cycle, or None (depth-first search)."""
    state: dict[str, str] = {}

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt]
            if nxt not in state:
                found = visit(nxt, path + [nxt])
                if found:
                    return found
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start, [start])
            if found:
                return found
    return None


def test_no_import_circle():
    graph = {name: imported_project_modules(path) - {name} for name, path in MODULES.items()}
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))
    assert "sama" not in graph["sam"]


def test_find_cycle_sees_a_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


# what a user types (`python NAME.py`); each imports library modules, never another of these
COMMAND_LINE = {"train", "evaluate", "predict", "demo", "ablate", "benchmark", "benchmark_metrics",
                "pretrain_sam", "export_onnx", "app"}
# library modules that also answer `python NAME.py ...` (a check or a generator) and are imported
LIBRARY_WITH_A_COMMAND = {"load_sam_weights", "readers", "synthetic"}


def has_main(path: Path) -> bool:
    return '__name__ == "__main__"' in path.read_text()


def test_every_command_is_classified():
    with_main = {name for name, path in MODULES.items() if has_main(path)}
    assert with_main == COMMAND_LINE | LIBRARY_WITH_A_COMMAND


def test_command_line_modules_import_no_other():
    found = {name: sorted(imported_project_modules(MODULES[name]) & (COMMAND_LINE - {name}))
             for name in COMMAND_LINE}
    assert not any(found.values()), {k: v for k, v in found.items() if v}
