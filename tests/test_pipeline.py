"""End to end: `dvc repro` of the default pipeline in a temporary copy of the repository (shortened training)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import stage_argv
from transformers import AutoConfig

ROOT = Path(__file__).resolve().parents[1]


def run(command: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A git repo holding the tracked files of this one, with fast training params."""
    path = tmp_path_factory.mktemp("pipeline") / "repo"
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        if (ROOT / name).is_file():
            (path / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, path / name)
    params = yaml.safe_load((path / "params.yaml").read_text())
    params["model"]["tiny"]["pretrain_steps"] = 20
    params["train"].update(max_steps=4, eval_steps=2, logging_steps=1)
    params["eval"]["max_new_tokens"] = {task: 4 for task in params["eval"]["max_new_tokens"]}
    params["speed"].update(new_tokens=2, repeats=1)
    params["qa"]["max_new_tokens"] = 4
    (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "DVC_SITE_CACHE_DIR": str(path / ".dvc-site-cache"),
        "DVC_NO_ANALYTICS": "1",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    run(["git", "init", "-q"], path, env)
    run(["git", "add", "-A"], path, env)
    run(["git", "commit", "-qm", "copy"], path, env)
    first = run(["dvc", "repro"], path, env)
    return path, env, first.stdout


def test_repro_runs_every_stage_and_writes_the_outputs(repo):
    path, _, log = repo
    variants = ("base_full", "base_pruned", "ft_full", "ft_pruned")
    stages = ("split", "base", "prune_sweep", "prune", "finetune_full", "finetune_pruned")
    per_variant = (*(f"eval@{v}" for v in variants), *(f"qa@{v}" for v in variants))
    for stage in (*stages, *per_variant, "speed@base", "speed@ft", "compare", "plot"):
        assert f"Running stage '{stage}'" in log
    report = json.loads((path / "data/processed/report.json").read_text())
    assert report["dropped"] == {"exact_duplicate": 1, "excluded_type": 15, "invalid": 0, "near_duplicate": 1}
    assert AutoConfig.from_pretrained(path / "models/base").num_hidden_layers == 16
    assert AutoConfig.from_pretrained(path / "models/pruned").num_hidden_layers == 15
    assert json.loads((path / "metrics/prune.json").read_text())["removed_layers"] == [15]
    sweep = json.loads((path / "metrics/prune_sweep.json").read_text())
    assert len(sweep["candidates"]) == 9 and sweep["val_articles"] == report["articles_per_split"]["val"]["total"]
    for variant, layers in (("full", 16), ("pruned", 15)):
        assert AutoConfig.from_pretrained(path / f"models/ft_{variant}").num_hidden_layers == layers
        summary = json.loads((path / f"metrics/train/{variant}/metrics.json").read_text())
        assert summary["steps"] == 4 and summary["best_val_loss"] <= summary["first_val_loss"]
    for variant in variants:
        metrics = json.loads((path / f"metrics/eval/{variant}.json").read_text())
        assert set(metrics) >= {"summarization", "title_generation", "tag_extraction", "type_classification"}
        assert metrics["efficiency"]["layers"] == (15 if "pruned" in variant else 16)
        assert len((path / f"predictions/{variant}.jsonl").read_text().splitlines()) == 160
        assert json.loads((path / f"metrics/qa/{variant}.json").read_text())["n"] == 221
    for pair in ("base", "ft"):
        speed = json.loads((path / f"metrics/speed/{pair}.json").read_text())
        assert (speed["layers_full"], speed["layers_pruned"]) == (16, 15) and speed["ideal_speedup"] > 1
        assert speed["decode_speedup_b1"] > 0 and speed["full"]["decode_tokens_per_s_b1"] > 0
    comparison = json.loads((path / "metrics/comparison.json").read_text())
    assert set(comparison["table"]) == set(variants)
    for name in ("training", "quality", "qa", "efficiency", "layers"):
        assert (path / f"plots/{name}.png").read_bytes().startswith(b"\x89PNG")
    assert (path / "dvc.lock").is_file()


def test_split_outputs_match_the_committed_lock_byte_for_byte(repo):
    """Same data params and seed, same bytes: the md5s DVC recorded here equal the ones committed."""
    path, _, _ = repo
    committed = yaml.safe_load((ROOT / "dvc.lock").read_text())["stages"]["split"]["outs"]
    produced = yaml.safe_load((path / "dvc.lock").read_text())["stages"]["split"]["outs"]
    assert {o["path"]: o["md5"] for o in produced} == {o["path"]: o["md5"] for o in committed}


def test_second_repro_does_nothing(repo):
    path, env, _ = repo
    log = run(["dvc", "repro"], path, env).stdout
    assert "Running stage" not in log


def test_bad_param_fails_with_one_line(repo, tmp_path):
    path, env, _ = repo
    params = yaml.safe_load((path / "params.yaml").read_text())
    params["prune"].update(method="tail", n_layers=16)  # every other prune key stays valid
    (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        result = subprocess.run(
            stage_argv("prune", sys.executable), cwd=path, env=env, capture_output=True, text=True, timeout=300
        )
    finally:
        run(["git", "checkout", "params.yaml"], path, env)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: params.yaml: prune.n_layers must be below")
    assert "Traceback" not in result.stderr


def ran_stages(log: str) -> set[str]:
    return {line.split("'")[1] for line in log.splitlines() if line.startswith("Running stage '")}


def test_plots_show_writes_a_page_with_every_declared_plot(repo, tmp_path):
    path, env, _ = repo
    run(["dvc", "plots", "show", "-o", str(tmp_path / "page")], path, env)
    page = (tmp_path / "page/index.html").read_text()
    declared = yaml.safe_load((path / "dvc.yaml").read_text())["plots"]
    names = [next(iter(p)) if isinstance(p, dict) else p for p in declared]
    assert len(names) >= 17
    for name in names:
        if name.endswith(".png"):
            image = "workspace_" + name.replace("/", "_")
            assert f'src="static/{image}"' in page, name
            assert (tmp_path / "page/static" / image).read_bytes().startswith(b"\x89PNG")
        else:
            assert json.dumps(name) in page, name


def test_push_then_pull_into_a_fresh_clone(repo, tmp_path):
    """A local-directory remote takes `dvc push`; a clone of the commit pulls models and predictions back."""
    path, env, _ = repo
    run(["dvc", "remote", "add", "-d", "storage", str(tmp_path / "remote")], path, env)
    run(["git", "add", "-A"], path, env)
    run(["git", "commit", "-qm", "pipeline run"], path, env)
    run(["dvc", "push"], path, env)
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(path), str(clone)], tmp_path, env)
    assert not (clone / "models/ft_pruned").exists()
    run(["dvc", "pull"], clone, env)
    for output in ("models/ft_pruned/model.safetensors", "models/base/tokenizer.json", "predictions/ft_full.jsonl"):
        assert (clone / output).read_bytes() == (path / output).read_bytes(), output
    assert (clone / "metrics/comparison.json").read_text() == (path / "metrics/comparison.json").read_text()
    assert "Running stage" not in run(["dvc", "repro"], clone, env).stdout  # pulled = up to date


def test_exp_run_with_a_lora_change_reruns_only_the_fine_tune_side(repo):
    path, env, _ = repo
    log = run(["dvc", "exp", "run", "-S", "lora.r=16"], path, env).stdout
    fine_tune_side = {"finetune_full", "finetune_pruned", "eval@ft_full", "eval@ft_pruned", "qa@ft_full"}
    assert ran_stages(log) == fine_tune_side | {"qa@ft_pruned", "speed@ft", "compare", "plot"}
    shown = json.loads(run(["dvc", "exp", "show", "--json"], path, env).stdout)
    assert "16" in json.dumps(shown)
    diff = json.loads(run(["dvc", "metrics", "diff", "HEAD", "--json"], path, env).stdout)
    assert "metrics/eval/ft_pruned.json" in diff and "metrics/eval/base_full.json" not in diff
    assert "metrics/speed/ft.json" in diff and "metrics/speed/base.json" not in diff


def test_real_study_config_sets_every_param_and_passes_the_checks():
    """`make study` runs configs/llama-3.2-1b.yaml as a DVC experiment, every value set with `dvc exp run -S`: it
    must set every param the default sets (the study is the config, not a mix with params.yaml), with valid values."""
    from conftest import key_paths

    from prunetune.params import load_all

    default = yaml.safe_load((ROOT / "params.yaml").read_text())
    for config, layers in (("llama-3.2-1b", 16), ("smollm2-135m", 30)):
        study = yaml.safe_load((ROOT / f"configs/{config}.yaml").read_text())
        assert key_paths(study) - {"model.dtype"} == key_paths(default)  # model.dtype: optional, absent = auto
        load_all(ROOT / f"configs/{config}.yaml")["prune"].check_layers(layers)
