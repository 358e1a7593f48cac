"""params.yaml: loaded once, every key typed and ranged, typos and duplicates refused in one line."""

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import stage_argv

from prunetune.config import PrunetuneError, load_params
from prunetune.params import SECTIONS, PruneParams, TrainParams, load_all, load_section

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = yaml.safe_load((ROOT / "params.yaml").read_text())
CONFIGS = sorted([ROOT / "params.yaml", *(ROOT / "configs").glob("*.yaml")])


def write_params(tmp_path: Path, params: dict) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def with_key(section: str, key: str, value) -> dict:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params[section][key] = value
    return params


def test_a_key_written_twice_is_refused_naming_file_and_line(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("data:\n  seed: 1\n  val_fraction: 0.1\n  seed: 3\nmodel:\n  name: tiny\n")
    with pytest.raises(PrunetuneError) as caught:
        load_params(path)
    assert str(caught.value) == (
        f"{path}:4: key 'seed' is written twice (first on line 2); YAML would silently keep the last: keep one"
    )
    path.write_text("data: {seed: 1}\ndata: {seed: 2}\n")
    with pytest.raises(PrunetuneError, match=r"params\.yaml:2: key 'data' is written twice \(first on line 1\)"):
        load_params(path)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_every_config_file_passes_the_same_checks(config):
    sections = load_all(config)
    raw = yaml.safe_load(config.read_text())
    assert set(sections) == set(raw) == set(SECTIONS)  # and no unknown key anywhere: parse refuses those
    for name, section in sections.items():
        as_loaded = section.to_dict()
        assert {key: as_loaded[key] for key in raw[name]} == raw[name]  # values kept as written (16 stays an int)
    sections["prune"].check_layers(16)


@pytest.mark.parametrize(
    ("section", "typo", "message"),
    [
        ("data", "val_fractoin", "data.val_fractoin is not a known key (did you mean data.val_fraction?)"),
        ("model", "revison", "model.revison is not a known key (did you mean model.revision?)"),
        ("prune", "n_layer", "prune.n_layer is not a known key (did you mean prune.n_layers?)"),
        ("lora", "rank", "lora.rank is not a known key (did you mean lora.r?)"),
        ("train", "learningrate", "train.learningrate is not a known key (did you mean train.learning_rate?)"),
        ("eval", "bootstrap_samples", "eval.bootstrap_samples is not a known key (did you mean eval."),
        ("speed", "repeat", "speed.repeat is not a known key (did you mean speed.repeats?)"),
        ("qa", "paht", "qa.paht is not a known key (did you mean qa.path?)"),
    ],
)
def test_an_unknown_key_in_any_section_is_one_line_with_a_suggestion(tmp_path, section, typo, message):
    path = write_params(tmp_path, with_key(section, typo, 16))
    with pytest.raises(PrunetuneError) as caught:
        load_section(SECTIONS[section], path)
    assert str(caught.value) == f"{path}: {message}" or str(caught.value).startswith(f"{path}: {message}")
    assert "\n" not in str(caught.value)


def test_nested_keys_and_sections_are_checked_too(tmp_path):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["model"]["tiny"]["hidden"] = 64
    with pytest.raises(PrunetuneError, match=r"model\.tiny\.hidden is not a known key \(did you mean model\.tiny\."):
        load_section(SECTIONS["model"], write_params(tmp_path, params))
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["trian"] = params.pop("train")
    with pytest.raises(PrunetuneError, match=r"section 'trian' is not a known section \(did you mean train\?\)"):
        load_section(SECTIONS["data"], write_params(tmp_path, params))


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("train", "logging_steps", 0, "train.logging_steps must be an integer >= 1, got 0"),
        ("train", "logging_steps", 2.5, "train.logging_steps must be an integer >= 1, got 2.5"),
        ("train", "gradient_checkpointing", "yes", "train.gradient_checkpointing must be true or false, got 'yes'"),
        ("train", "batch_size", True, "train.batch_size must be an integer >= 1, got True"),
        ("train", "warmup_ratio", 1, "train.warmup_ratio must be a number in [0, 1), got 1"),
        ("lora", "use_rslora", 1, "lora.use_rslora must be true or false, got 1"),
        ("lora", "target_modules", [], "lora.target_modules must be a non-empty list of strings, got []"),
        ("data", "seed", "x", "data.seed must be an integer >= 0, got 'x'"),
        ("data", "types", "Press Release", "data.types must be a non-empty list of strings, got 'Press Release'"),
        ("data", "tag_order", "alphabetical", "data.tag_order must be one of frequency, source; got 'alphabetical'"),
        ("eval", "ci_method", "normal", "eval.ci_method must be one of percentile, bca; got 'normal'"),
        ("speed", "repeats", None, "speed.repeats must be an integer >= 1, got None"),
        ("qa", "bootstrap_resamples", 10, "qa.bootstrap_resamples must be an integer >= 100, got 10"),
        ("prune", "method", "middle", "prune.method must be one of last, tail, indices, block_influence, angular, "),
        (
            "model",
            "name",
            "",
            "model.name must be 'tiny', a hub id, a local directory, a .gguf file or PACKAGE:FILE.gguf, got ''",
        ),
    ],
)
def test_every_key_is_typed_and_ranged(tmp_path, section, key, value, message):
    path = write_params(tmp_path, with_key(section, key, value))
    with pytest.raises(PrunetuneError) as caught:
        load_section(SECTIONS[section], path)
    assert str(caught.value).startswith(f"{path}: {message}")


def test_a_missing_key_or_section_is_named(tmp_path):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    del params["train"]["eval_steps"]
    path = write_params(tmp_path, params)
    with pytest.raises(PrunetuneError, match=r"params\.yaml: train\.eval_steps is missing$"):
        load_section(TrainParams, path)
    with pytest.raises(PrunetuneError, match=r"section\(s\) train missing|train\.eval_steps is missing"):
        load_all(path)
    del params["prune"]
    with pytest.raises(PrunetuneError, match=r"params\.yaml: section 'prune' is missing$"):
        load_section(PruneParams, write_params(tmp_path, params))


def test_sections_are_frozen_and_record_as_written():
    train = load_section(TrainParams, ROOT / "params.yaml")
    with pytest.raises(dataclasses.FrozenInstanceError):
        train.batch_size = 1
    assert train.to_dict() == DEFAULT["train"]
    assert isinstance(load_section(SECTIONS["lora"], ROOT / "params.yaml").to_dict()["alpha"], int)


def test_a_stage_stops_on_a_typo_with_one_line(tmp_path):
    write_params(tmp_path, with_key("data", "val_fractoin", 0.5))
    result = subprocess.run(
        stage_argv("split", sys.executable), cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1
    assert result.stderr == (
        "error: params.yaml: data.val_fractoin is not a known key (did you mean data.val_fraction?)\n"
    )
