"""The module graph: no import circle (lazy imports inside functions included), every module importable on its own,
TRL and peft only in the fine-tune's modules, and no write to a library's private trainer state."""

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted(path.stem for path in (ROOT / "prunetune").glob("*.py") if path.stem != "__init__")
TRAINING_MODULES = {"training", "trainers", "benchsections"}  # benchsections measures the finetune stage's batching


def imports_of(module: str) -> set[str]:
    """Every module a prunetune module imports, at any depth of its code (function bodies too)."""
    names = set()
    for node in ast.walk(ast.parse((ROOT / "prunetune" / f"{module}.py").read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def prunetune_graph() -> dict[str, set[str]]:
    return {
        module: {name.split(".")[1] for name in imports_of(module) if name.startswith("prunetune.")} & set(MODULES)
        for module in MODULES
    }


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle in the graph as a path (first node repeated at the end), or None."""
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return path[path.index(nxt) :] + [nxt] if nxt in path else [node, nxt, node]
            if nxt not in state and (cycle := visit(nxt, [*path, nxt])):
                return cycle
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [start])):
            return cycle
    return None


def test_there_is_no_import_circle():
    assert find_cycle(prunetune_graph()) is None


def test_the_cycle_finder_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_every_module_imports():
    code = f"import importlib\nfor m in {MODULES!r}:\n    importlib.import_module('prunetune.' + m)\n"
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "TQDM_DISABLE": "1"},
    )
    assert result.returncode == 0, result.stderr[-1500:]


def test_only_the_fine_tune_imports_trl_and_peft():
    users = {m for m in MODULES if any(n.split(".")[0] in ("trl", "peft") for n in imports_of(m))}
    assert users <= TRAINING_MODULES, users - TRAINING_MODULES


def test_no_module_writes_private_trainer_state():
    """TRL's SFTTrainer._metrics / _total_train_tokens and DVCLiveCallback._initialized are private: a TRL or
    transformers release may rename them silently. The trainers log through Trainer.log and callbacks instead."""
    private = re.compile(r"\._metrics\b|\._total_train_tokens\b|\._initialized\b")
    for module in MODULES:
        text = (ROOT / "prunetune" / f"{module}.py").read_text(encoding="utf-8")
        assert not private.search(text), f"prunetune/{module}.py: {private.search(text).group()}"


def test_the_architecture_doc_maps_every_module():
    doc = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    table = doc[doc.index("## Module map") : doc.index("## Data contract")]
    mapped = set(re.findall(r"`(\w+)`", "\n".join(line.split("|")[1] for line in table.splitlines() if "|" in line)))
    assert mapped >= set(MODULES), set(MODULES) - mapped
    assert mapped <= set(MODULES) | {"module"}, mapped - set(MODULES)


def test_eval_and_qa_load_neither_trl_nor_peft():
    code = (
        "import sys, prunetune.evaluation, prunetune.qa; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'trl', 'peft'}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr[-1500:]
    assert result.stdout.strip() == "[]"
