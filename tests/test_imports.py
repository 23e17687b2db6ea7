"""The layout: the method at the root, what stands around it in folders (miniature/, deploy/,
benchmarks/) that the core never imports; no import circle (imports inside functions included);
the method (sama.py) builds on SAM (sam.py), never the other way round; a command-line module
imports library modules, never another command."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = ("miniature", "deploy", "benchmarks")
# every module by its dotted name: "sam", "miniature.ablate", ...
MODULES = {p.stem: p for p in ROOT.glob("*.py")}
MODULES.update({f"{folder}.{p.stem}": p for folder in FOLDERS
                for p in (ROOT / folder).glob("*.py") if p.stem != "__init__"})


def imports(path: Path, top_level_only: bool = False) -> set[str]:
    """The project modules `path` imports, by dotted name (`from miniature import synthetic` ->
    "miniature.synthetic"); with top_level_only, those of the module's own body alone."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
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
    graph = {name: imports(path) - {name} for name, path in MODULES.items()}
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))
    assert "sama" not in graph["sam"]


def test_find_cycle_sees_a_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_root_holds_the_method_and_the_readers_commands_only():
    # "at most about 16" (the style guide)
    assert len([name for name in MODULES if "." not in name]) <= 16


# demo.py is the miniature's door at the root: it trains and scores on the miniature's benchmark
# and stand-in (miniature/), so it imports them. predict.py --onnx runs the exported graphs
# (deploy/sama_onnx.py), imported in that branch only. Nothing else at the root imports a folder.
DOORS = {"demo": {"miniature.recipe", "miniature.synthetic"}, "predict": {"deploy.sama_onnx"}}


def test_the_core_never_imports_a_folder_module():
    for name, path in MODULES.items():
        if "." in name:
            continue
        found = {m for m in imports(path) if "." in m}
        assert found <= DOORS.get(name, set()), (name, found)
    # --onnx's import waits for --onnx: `python predict.py` needs no onnxruntime
    assert not {m for m in imports(MODULES["predict"], top_level_only=True) if "." in m}


def test_imports_sees_a_folder_module_inside_a_function(tmp_path):
    source = tmp_path / "x.py"
    source.write_text("import sam\n\ndef f():\n    from miniature import synthetic\n")
    assert imports(source) == {"sam", "miniature.synthetic"}
    assert imports(source, top_level_only=True) == {"sam"}


# what a user types: `python NAME.py` at the root, `python -m FOLDER.NAME` in a folder; each
# imports library modules, never another of these
COMMAND_LINE = {"train", "evaluate", "predict", "demo", "miniature.ablate",
                "miniature.everything_study",
                "miniature.pretrain_sam", "benchmarks.benchmark", "benchmarks.benchmark_metrics",
                "benchmarks.foreground_error", "benchmarks.foreground_speed",
                "deploy.export_onnx", "deploy.score_onnx", "deploy.app"}
# library modules that also answer `python NAME.py ...` (a check or a generator) and are imported
LIBRARY_WITH_A_COMMAND = {"load_sam_weights", "readers", "miniature.synthetic"}


def has_main(path: Path) -> bool:
    return '__name__ == "__main__"' in path.read_text()


def test_every_command_is_classified():
    with_main = {name for name, path in MODULES.items() if has_main(path)}
    assert with_main == COMMAND_LINE | LIBRARY_WITH_A_COMMAND


def test_command_line_modules_import_no_other():
    found = {name: sorted(imports(MODULES[name]) & (COMMAND_LINE - {name}))
             for name in COMMAND_LINE}
    assert not any(found.values()), {k: v for k, v in found.items() if v}


@pytest.mark.parametrize("command", sorted(COMMAND_LINE | LIBRARY_WITH_A_COMMAND))
def test_every_command_answers_help_from_the_root(command):
    """As the README writes them: `python NAME.py --help`, `python -m FOLDER.NAME --help`."""
    argv = ["-m", command] if "." in command else [f"{command}.py"]
    done = subprocess.run([sys.executable, *argv, "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage:"), done.stdout[:200]
