"""Paths live in dvc.yaml: every stage gets the paths it reads and writes as arguments of its cmd, so a renamed
output is renamed in one place. The tools that read the pipeline's outputs from outside (sweep-report,
seed-report, bench) are checked against dvc.yaml's outs here."""

import ast
import re
import shlex
from pathlib import Path

import pytest
import yaml
from conftest import expanded_stages, stage_command

ROOT = Path(__file__).resolve().parents[1]
PIPELINE_DIRS = ("models/", "data/processed", "metrics/", "predictions", "reports/", "plots")


def entries(stage: dict, kind: str) -> set[str]:
    found = set()
    for entry in stage.get(kind, []):
        path = next(iter(entry)) if isinstance(entry, dict) else str(entry)
        found.add(path.split("#")[0].strip())
    return found


def data_paths(paths: set[str]) -> set[str]:
    """What a stage reads or writes, without its code and the paths that come from params (${...})."""
    return {p for p in paths if not p.startswith(("stages/", "prunetune/")) and "${" not in p}


def under(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def test_every_cmd_argument_is_a_dep_or_out_and_every_dep_or_out_is_passed():
    for name, stage in expanded_stages().items():
        argv = shlex.split(stage["cmd"])
        assert argv[:2] == ["python", f"stages/{name.split('@')[0].replace('_full', '').replace('_pruned', '')}.py"]
        args = [a for a in argv[2:] if "/" in a or a in ("predictions", "plots")]
        paths = data_paths(entries(stage, "deps") | entries(stage, "outs") | entries(stage, "metrics"))
        for arg in args:  # each argument names what dvc.yaml declares (a file, or the directory that holds them)
            assert any(under(p, arg) for p in paths), f"{name}: argument {arg} is no dep or out"
        for path in paths:  # and nothing declared is reached by a path the script makes up itself
            assert any(under(path, a) for a in args), f"{name}: {path} is declared but not passed in the cmd"


def test_stage_scripts_hard_code_no_pipeline_path():
    for script in sorted((ROOT / "stages").glob("*.py")):
        for node in ast.walk(ast.parse(script.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and not node.value.startswith("\n"):
                assert not node.value.startswith(PIPELINE_DIRS), f"{script.name}: {node.value!r}"


def test_plots_declared_in_dvc_yaml_are_written_under_the_plot_stage_out():
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    out = stage_command("plot")[-1]
    declared = [next(iter(p)) if isinstance(p, dict) else p for p in dvc["plots"]]
    files = [f for p in dvc["plots"] if isinstance(p, dict) for f in (next(iter(p.values())).get("y") or {})]
    for path in [p for p in declared if p.endswith(".png")] + files:
        assert under(path, out), path


@pytest.mark.parametrize(
    "path",
    [
        "metrics/comparison.json",  # seeds.COMPARISON
        "metrics/prune.json",  # sweep.PRUNE_METRICS
        *(f"metrics/speed/{pair}.json" for pair in ("base", "ft")),  # sweep._speed_file
        *(f"metrics/eval/{v}.json" for v in ("base_full", "base_pruned", "ft_full", "ft_pruned")),  # sweep
        "models/base",  # benchsetup.build_models
        "models/pruned",
        *(f"data/processed/{split}.jsonl" for split in ("train", "val", "test")),  # benchsetup.load_splits
    ],
)
def test_paths_the_tools_read_are_outputs_of_the_pipeline(path):
    outs = set().union(*(entries(s, "outs") | entries(s, "metrics") for s in expanded_stages().values()))
    assert path in outs


def test_the_tools_name_those_paths():
    sources = {name: (ROOT / "prunetune" / f"{name}.py").read_text() for name in ("sweep", "seeds", "benchsetup")}
    assert 'COMPARISON = "metrics/comparison.json"' in sources["seeds"]
    assert 'PRUNE_METRICS = "params.yaml", "metrics/prune.json"' in sources["sweep"]
    assert "f\"metrics/speed/{variant.split('_')[0]}.json\"" in sources["sweep"]
    assert 'Path("models/base"), Path("models/pruned")' in sources["benchsetup"]
    assert re.search(r'Path\(f"data/processed/\{name\}\.jsonl"\)', sources["benchsetup"])
