"""`prunetune study`: a config as `dvc exp run --temp -S ...`, params.yaml untouched, one-line refusals first."""

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser

from prunetune.config import PrunetuneError
from prunetune.study import copy_paths, flatten, hydra_value, set_param_args, study_command

ROOT = Path(__file__).resolve().parents[1]
STUDY = "configs/llama-3.2-1b.yaml"
GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}


def parsed(args: list[str]) -> dict:
    """What Hydra (and so DVC's -S) makes of the args: dotted key -> Python value."""
    overrides = OverridesParser.create().parse_overrides([a for a in args if a != "-S"])
    return {o.key_or_group: o.value() for o in overrides}


def test_every_value_of_the_study_config_survives_the_flattening():
    config = yaml.safe_load((ROOT / STUDY).read_text())
    args = set_param_args(config)
    leaves = dict(flatten(config))
    assert len(args) == 2 * len(leaves) and all(a.startswith("++") for a in args[1::2])
    assert parsed(args) == leaves
    assert leaves["data.types"] == ["Press Release", "Press Kit", "Speech", "Fact & Figures"]
    assert leaves["eval.max_new_tokens.summarization"] == 256 and leaves["data.max_content_words"] is None
    assert leaves["train.learning_rate"] == 0.0002 and leaves["data.chat_date"] == "26 Jul 2024"


def test_awkward_values_keep_their_types():
    config = {"a": {"s": "it's", "q": 'say "hi"', "n": None, "t": True, "f": 2e-05, "e": [], "m": {}, "x": "null"}}
    assert parsed(set_param_args(config)) == dict(flatten(config))
    assert hydra_value(-1, "k") == "-1" and hydra_value([1, "a b"], "k") == "[1,'a b']"
    for bad in ("C:\\data", 'it\'s "x"'):
        with pytest.raises(PrunetuneError, match="cannot be passed to dvc exp run -S"):
            hydra_value(bad, "data.source")


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, env={**os.environ, **GIT_ENV}, check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture
def repo(tmp_path):
    """A git repo holding this one's tracked files (committed): `git status` shows what a command changed."""
    path = tmp_path / "repo"
    for name in git("ls-files", cwd=ROOT).split():
        if (ROOT / name).is_file():
            (path / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, path / name)
    git("init", "-q", cwd=path)
    git("add", "-A", cwd=path)
    git("commit", "-qm", "copy", cwd=path)
    return path


def run_study(repo: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "DVC_NO_ANALYTICS": "1", **env}
    command = [sys.executable, "-m", "prunetune.cli", "study", *args]
    return subprocess.run(command, cwd=repo, env=environment, capture_output=True, text=True, timeout=300)


def test_missing_corpus_stops_with_one_line_naming_it_and_collect(repo):
    result = run_study(repo)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: data/raw/pressclub.jsonl: corpus not found (data.source in configs/llama-3.2-1b.yaml); "
        "collect it first: prunetune collect --limit 2000 --out data/raw/pressclub.jsonl"
    ]
    assert git("status", "--porcelain", cwd=repo) == ""


def test_offline_without_cached_weights_stops_with_one_line(repo, tmp_path):
    (repo / "data/raw").mkdir(parents=True)
    shutil.copy(ROOT / "data/sample/articles.jsonl", repo / "data/raw/pressclub.jsonl")  # git-ignored
    result = run_study(repo, STUDY, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "empty-hf-home"))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "error: model.name: 'unsloth/Llama-3.2-1B-Instruct' is not in the local Hugging Face cache"
    )
    assert "(offline: HF_HUB_OFFLINE is set)" in lines[0] and "hf download unsloth/Llama-3.2-1B-Instruct" in lines[0]
    assert (
        git("status", "--porcelain", cwd=repo) == ""
        and (repo / "params.yaml").read_text() == (ROOT / "params.yaml").read_text()
    )


def test_dry_run_prints_a_temp_experiment_that_copies_the_untracked_corpus(repo):
    (repo / "data/smoke").mkdir(parents=True)
    (repo / "data/smoke/articles.jsonl").write_text("{}\n")
    result = run_study(repo, "configs/smoke-real-shapes.yaml", "--dry-run")
    assert result.returncode == 0, result.stderr
    command = shlex.split(result.stdout)
    assert command[:8] == ["dvc", "exp", "run", "--temp", "-n", "smoke-real-shapes", "-C", "data/smoke"]
    assert "++model.tiny.vocab_size=128256" in command and "++model.dtype='bfloat16'" in command


def test_copy_paths(repo):
    assert copy_paths(repo / "data/sample/articles.jsonl", repo) == []  # tracked: in the experiment's commit
    (repo / "data/raw/2024").mkdir(parents=True)
    assert copy_paths(repo / "data/raw/2024/c.jsonl", repo) == ["data/raw"]  # DVC cannot create missing parents
    assert copy_paths(None, repo) == []


def test_dvc_takes_the_args_and_leaves_the_workspace_clean(tmp_path, monkeypatch):
    """A toy pipeline run with study_command's own command: the experiment has the config's values; the
    workspace, params.yaml and `git status` do not change."""
    repo = tmp_path / "toy"
    (repo / "configs").mkdir(parents=True)
    (repo / "data/raw").mkdir(parents=True)
    (repo / "data/raw/c.jsonl").write_text("corpus\n")
    (repo / ".gitignore").write_text("/data/raw/\n")
    (repo / "data/keep.txt").write_text("tracked\n")
    default = {"data": {"source": "data/keep.txt", "types": ["Press Release"], "words": 80}, "model": {"name": "tiny"}}
    study = {
        "data": {"source": "data/raw/c.jsonl", "types": ["Press Release", "Fact & Figures"], "words": None},
        "model": {"name": "tiny", "dtype": "bfloat16"},
        "train": {"learning_rate": 2e-4, "target_modules": ["q_proj", "v_proj"], "flag": True},
    }
    (repo / "params.yaml").write_text(yaml.safe_dump(default))
    (repo / "configs/study.yaml").write_text(yaml.safe_dump(study))
    (repo / "dvc.yaml").write_text(
        yaml.safe_dump(
            {
                "stages": {
                    "show": {
                        "cmd": "cp params.yaml used.yaml && cat ${data.source}",
                        "deps": ["${data.source}"],
                        "params": ["data", "model"],
                        "outs": [{"used.yaml": {"cache": False}}],
                    }
                }
            }
        )
    )
    env = {"DVC_NO_ANALYTICS": "1", "DVC_SITE_CACHE_DIR": str(tmp_path / "site"), **GIT_ENV}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    git("init", "-q", cwd=repo)
    subprocess.run(["dvc", "init", "-q"], cwd=repo, check=True)
    git("add", "-A", cwd=repo)
    git("commit", "-qm", "toy", cwd=repo)
    monkeypatch.chdir(repo)
    monkeypatch.setattr(
        "prunetune.study.check_config", lambda config, file: None
    )  # a toy config: not the real sections
    command = study_command("configs/study.yaml", root=Path("."))
    assert command[:8] == ["dvc", "exp", "run", "--temp", "-n", "study", "-C", "data/raw"]
    subprocess.run(command, check=True, capture_output=True)
    assert git("status", "--porcelain", cwd=repo) == ""
    shown = json.loads(subprocess.run(["dvc", "exp", "show", "--json"], check=True, capture_output=True).stdout)
    experiment = shown[1]["experiments"][0]["revs"][0]
    assert experiment["name"] == "study"
    params = experiment["data"]["params"]["params.yaml"]["data"]
    assert params == study
