"""A broken model folder ends in one line naming the folder and what to do; model.name as a path or a hub id."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import stage_argv

from prunetune.config import PrunetuneError
from prunetune.models import RESTORE, load_model, missing_local_dir

ROOT = Path(__file__).resolve().parents[1]


def _edit_config(directory: Path, **changes) -> None:
    config = json.loads((directory / "config.json").read_text())
    config.update(changes)
    (directory / "config.json").write_text(json.dumps(config))


def _truncate_weights(directory: Path) -> None:
    weights = directory / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])


def _delete_tokenizer(directory: Path) -> None:
    for file in directory.glob("tokenizer*"):
        file.unlink()


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (_truncate_weights, r"model\.safetensors is damaged \(Error while deserializing header"),
        (_delete_tokenizer, "has no tokenizer files"),
        (lambda d: _edit_config(d, hidden_size="big"), r"config\.json cannot be read \(.*'hidden_size'.*'big'"),
        (lambda d: _edit_config(d, hidden_size=64), r"config\.json does not match the weights \(\d+ weights"),
        (lambda d: _edit_config(d, num_hidden_layers=6), r"config\.json does not match the weights \(\d+ weights"),
    ],
)
def test_broken_model_folder_is_one_line_naming_it_and_what_to_do(tiny_model_dir, tmp_path, damage, problem):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    damage(broken)
    with pytest.raises(PrunetuneError) as caught:
        load_model(broken, param="models/base")
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"models/base: {broken}")
    assert re.search(problem, message), message
    assert message.endswith(RESTORE)


def test_an_intact_model_folder_loads(tiny_model_dir):
    model, tokenizer = load_model(tiny_model_dir)
    assert model.config.num_hidden_layers == 4 and tokenizer.pad_token is not None


def test_a_name_that_looks_like_a_path_is_not_taken_for_a_hub_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    assert "models/ is a directory here" in missing_local_dir("models/x")
    assert missing_local_dir("./x") == missing_local_dir("a/b/c") == "it is written as a path"
    assert missing_local_dir("unsloth/Llama-3.2-1B-Instruct") is None  # no unsloth/ here: a hub id
    assert missing_local_dir("models") is None  # exists


def test_base_stage_says_the_local_model_dir_is_missing(tmp_path):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["model"]["name"] = "models/x"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / "models").mkdir()
    result = subprocess.run(
        stage_argv("base", sys.executable),
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip() == (
        "error: model.name: models/x: local model directory not found (models/ is a directory here, so it is read "
        "as a path, not a hub id); fix the path"
    )
