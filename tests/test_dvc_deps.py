"""dvc.yaml's deps against the code each stage runs: a module a stage imports (directly or through another
module, at any depth) must be a dep, or editing it would not re-run the stage.

The closure is what importing the stage script loads: every import in the script, and the module-level imports
of each prunetune module reached. An import inside a prunetune function loads only when that function runs; a
stage that calls one lists those modules by hand."""

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _imports(tree: ast.AST, lazy: bool) -> list[str]:
    """Module names imported in tree; without lazy, not those inside function bodies."""
    names = []
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) and not lazy:
            continue
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from prunetune import x` names a module; `from prunetune.x import y` names one too
            names += [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        names += _imports(node, lazy)
    return names


def imported_modules(path: Path, root: Path = ROOT) -> set[str]:
    """prunetune/*.py files that importing the script `path` loads, followed recursively (relative to root)."""
    seen: set[str] = set()
    todo, lazy = [path], True  # the script's own imports all count: it is run, not imported
    while todo:
        for name in _imports(ast.parse(todo.pop().read_text(encoding="utf-8")), lazy):
            if not name.startswith("prunetune."):
                continue
            module = Path(*name.split(".")[:2]).with_suffix(".py")
            if (root / module).is_file() and str(module) not in seen:
                seen.add(str(module))
                todo.append(root / module)
        lazy = False
    init = root / "prunetune/__init__.py"
    if init.is_file() and init.read_text().strip():  # an empty package file changes nothing
        seen.add("prunetune/__init__.py")
    return seen


def stage_deps(dvc_yaml: Path) -> dict[str, tuple[str, set[str]]]:
    """stage name -> (its script, its literal deps); a foreach stage's deps are shared by its items."""
    stages = yaml.safe_load(dvc_yaml.read_text(encoding="utf-8"))["stages"]
    out = {}
    for name, stage in stages.items():
        body = stage.get("do", stage)
        deps = {str(d).split("#")[0].strip() for d in body.get("deps", []) if "${" not in str(d)}
        script = body["cmd"].split()[1]  # "python stages/X.py ..."
        out[name] = (script, deps)
    return out


def missing_deps(dvc_yaml: Path, root: Path = ROOT) -> dict[str, list[str]]:
    """Per stage, the prunetune modules its script's import closure reaches that dvc.yaml does not list."""
    missing = {}
    for name, (script, deps) in stage_deps(dvc_yaml).items():
        lacking = sorted(imported_modules(root / script, root) - deps)
        if script not in deps:
            lacking.insert(0, script)
        if lacking:
            missing[name] = lacking
    return missing


def test_every_stage_depends_on_the_code_it_imports():
    assert missing_deps(ROOT / "dvc.yaml") == {}


def test_the_check_catches_a_planted_missing_dep(tmp_path):
    text = (ROOT / "dvc.yaml").read_text()
    planted = tmp_path / "dvc.yaml"
    # drop the compare stage's stats.py dep (comparison.py imports it)
    compare = text.index("  compare:")
    end = text.index("\n  plot:", compare)
    section = text[compare:end]
    assert "      - prunetune/stats.py\n" in section
    planted.write_text(text[:compare] + section.replace("      - prunetune/stats.py\n", "", 1) + text[end:])
    assert missing_deps(planted) == {"compare": ["prunetune/stats.py"]}


def test_imports_are_followed_through_modules(tmp_path):
    (tmp_path / "prunetune").mkdir()
    (tmp_path / "stages").mkdir()
    (tmp_path / "prunetune/__init__.py").write_text("")
    (tmp_path / "prunetune/a.py").write_text("import prunetune.b\n\ndef f():\n    from prunetune.d import g\n")
    (tmp_path / "prunetune/b.py").write_text("try:\n    from prunetune import c\nexcept ImportError:\n    pass\n")
    (tmp_path / "prunetune/c.py").write_text("import json\n")
    (tmp_path / "prunetune/d.py").write_text("")
    (tmp_path / "prunetune/e.py").write_text("")
    (tmp_path / "stages/s.py").write_text("import prunetune.a\n\ndef main():\n    from prunetune.e import h\n")
    modules = imported_modules(tmp_path / "stages/s.py", tmp_path)
    # a -> b -> c at module level (inside try too); the script's lazy e counts; a's lazy d loads only if f runs
    assert modules == {"prunetune/a.py", "prunetune/b.py", "prunetune/c.py", "prunetune/e.py"}


@pytest.mark.parametrize("stage", ["eval", "qa"])
def test_eval_and_qa_read_the_splits_they_report_on(stage):
    deps = stage_deps(ROOT / "dvc.yaml")[stage][1]
    assert "data/processed/test.jsonl" in deps
    if stage == "qa":  # the held-out breakdown needs every split's article ids
        assert {"data/processed/train.jsonl", "data/processed/val.jsonl"} <= deps
