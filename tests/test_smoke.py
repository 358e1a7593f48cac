"""The real study's shapes, reduced: every kind of stage on Llama 3's vocabulary, in this process, under a guard that
fails the test at the first tensor holding more full-vocabulary rows than one scoring chunk."""

import json
import runpy
import sys
from pathlib import Path

import pytest
import yaml
from conftest import key_paths, stage_command
from transformers import AutoConfig, AutoTokenizer

from prunetune.chat import DEFAULT_CHAT_DATE, prompt_ids
from prunetune.config import PrunetuneError
from prunetune.generation import SCORE_CHUNK_POSITIONS
from prunetune.jsonio import read_jsonl
from prunetune.memguard import VocabTensorGuard
from prunetune.params import ModelParams, TinyParams, load_all
from prunetune.smoke import STAGES, generate_articles, prepare_workdir, table

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs/smoke-real-shapes.yaml"
VOCAB = 128_256
# the stages the reduced smoke runs, each with dvc.yaml's own arguments (conftest.stage_command)
REDUCED_STAGES = ("split", "base", "prune", "finetune_pruned", "eval@ft_pruned", "qa@ft_pruned", "speed@base")


def test_smoke_config_is_the_real_study_where_shapes_are_set():
    smoke, study = (yaml.safe_load(p.read_text()) for p in (CONFIG, ROOT / "configs/llama-3.2-1b.yaml"))
    default = yaml.safe_load((ROOT / "params.yaml").read_text())
    extra = {"model.dtype", "model.tiny.exact_vocab", "model.tiny.chat_template", "model.tiny.rope"}
    assert key_paths(smoke) == key_paths(default) | extra  # the optional knobs the smoke sets, and every default one
    assert smoke["train"]["max_seq_length"] == study["train"]["max_seq_length"] == 4096
    assert smoke["data"]["max_content_words"] is study["data"]["max_content_words"] is None
    for key in ("batch_size", "max_new_tokens"):
        assert smoke["eval"][key] == study["eval"][key]
    assert {k: smoke["train"][k] for k in ("batch_size", "gradient_checkpointing", "loss_weighting")} == {
        k: study["train"][k] for k in ("batch_size", "gradient_checkpointing", "loss_weighting")
    }
    assert smoke["lora"] == study["lora"] and smoke["qa"] == study["qa"]
    tiny = smoke["model"]["tiny"]
    assert (tiny["vocab_size"], tiny["rope"], tiny["chat_template"], smoke["model"]["dtype"]) == (
        VOCAB,
        "llama3",
        "llama3-dated",
        "bfloat16",
    )
    loaded = load_all(CONFIG)  # every section typed and ranged by the code that checks params.yaml
    assert (loaded["model"].dtype, loaded["model"].tiny.rope, loaded["model"].tiny.exact_vocab) == (
        "bfloat16",
        "llama3",
        True,
    )


def test_generated_corpus_is_deterministic_and_in_the_data_contract(tmp_path):
    from prunetune.corpus import read_articles

    first, second = generate_articles(30, seed=3), generate_articles(30, seed=3)
    assert first == second and first != generate_articles(30, seed=4)
    assert len({a["url"] for a in first}) == 30
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps(a) + "\n" for a in first))
    loaded = read_articles(path, ["Press Release", "Press Kit", "Speech", "Fact & Figures"])
    assert len(loaded.articles) == 30 and not loaded.invalid
    long = generate_articles(200, seed=0)
    assert max(len(a["content"].split()) for a in long) > 3000  # whole articles past 4,096 tokens exist


def test_table_sums_the_stages():
    rows = [
        {"stage": "a", "wall_s": 60.0, "peak_rss_mb": 1024, "largest_vocab_shape": [32, 128256]},
        {"stage": "b", "wall_s": 120.0, "peak_rss_mb": 2048, "largest_vocab_shape": None},
    ]
    text = table(rows)
    assert "| a | 60 s | 1.00 GB | 32 × 128256 |" in text and "| b | 120 s | 2.00 GB | none |" in text
    assert "**3 min** | **max 2.00 GB**" in text
    assert STAGES[0] == "split" and STAGES[-1] == "plot" and len(STAGES) == 17


@pytest.fixture(scope="module")
def reduced_run(tmp_path_factory):
    """Split, base, prune, finetune (pruned), eval, qa and speed on the smoke config with short articles and few
    new tokens, run as the stage scripts in this process (one import of torch), all under the guard."""
    params = yaml.safe_load(CONFIG.read_text())
    params["data"].update(val_fraction=0.03, test_fraction=0.25)  # 1 val article (scored twice), 8 test
    params["prune"].update(calibration_samples=8, calibration_max_tokens=128)
    params["train"].update(max_steps=1, eval_steps=1)
    params["eval"].update(
        max_new_tokens={task: 3 for task in params["eval"]["max_new_tokens"]}, bootstrap_resamples=100
    )
    params["qa"].update(max_new_tokens=3, bootstrap_resamples=100)
    params["speed"].update(prompt_tokens=32, new_tokens=2, repeats=1)
    workdir = tmp_path_factory.mktemp("smoke") / "repo"
    prepare_workdir(ROOT, workdir, params, articles=34, seed=5, words=(90, 160), long_share=0.0)
    stages = [stage_command(name)[1:] for name in REDUCED_STAGES]  # [script, *args]
    mp = pytest.MonkeyPatch()
    mp.chdir(workdir)
    mp.setenv("TQDM_DISABLE", "1")
    try:
        with VocabTensorGuard(VOCAB, max_rows=SCORE_CHUNK_POSITIONS) as guard:
            for argv in stages:
                mp.setattr(sys, "argv", argv)
                runpy.run_path(argv[0], run_name="__main__")
    finally:
        mp.undo()
    return workdir, params, guard


def test_reduced_smoke_never_builds_a_batch_by_sequence_by_vocabulary_tensor(reduced_run):
    workdir, params, guard = reduced_run
    tokenizer = AutoTokenizer.from_pretrained(workdir / "models/base")
    test = read_jsonl(workdir / "data/processed/test.jsonl")
    per_task = sum(e["task"] == "summarization" for e in test)
    shortest = min(len(prompt_ids(tokenizer, e["messages"][:2])) for e in test)
    # a naive eval batch (one task's prompts, padded) would hold far more rows than the guard let through
    assert min(per_task, params["eval"]["batch_size"]) * shortest > 4 * SCORE_CHUNK_POSITIONS
    assert 0 < guard.largest_rows <= SCORE_CHUNK_POSITIONS  # the scoring chunk was built, nothing larger


def test_reduced_smoke_has_the_real_model_shape_and_outputs(reduced_run):
    workdir, _, _ = reduced_run
    config = AutoConfig.from_pretrained(workdir / "models/ft_pruned")
    assert (config.vocab_size, config.tie_word_embeddings, config.num_hidden_layers) == (VOCAB, True, 15)
    assert config.rope_parameters["rope_type"] == "llama3" and config.rope_parameters["rope_theta"] == 500000.0
    assert str(config.dtype).endswith(
        "bfloat16"
    )  # model.dtype carried from the base stage's meta through prune and finetune
    tokenizer = AutoTokenizer.from_pretrained(workdir / "models/ft_pruned")
    assert len(tokenizer) == VOCAB
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False, date_string="1 Jan")
    assert "Today Date: 1 Jan" in rendered
    metrics = json.loads((workdir / "metrics/eval/ft_pruned.json").read_text())
    assert 1 < metrics["perplexity"] < float("inf")
    qa = json.loads((workdir / "metrics/qa/ft_pruned.json").read_text())
    assert qa["n"] == 26
    speed = json.loads((workdir / "metrics/speed/base.json").read_text())
    assert (speed["layers_full"], speed["layers_pruned"]) == (16, 15)
    assert json.loads((workdir / "metrics/base.json").read_text())["train_perplexity_before"] is None
    assert DEFAULT_CHAT_DATE == yaml.safe_load((workdir / "params.yaml").read_text())["data"]["chat_date"]


def test_bad_tiny_options_name_the_param():
    cfg = yaml.safe_load(CONFIG.read_text())["model"]["tiny"]
    for key, bad in (("rope", "yarn"), ("chat_template", "chatml"), ("exact_vocab", "yes")):
        with pytest.raises(PrunetuneError, match=f"params.yaml: model.tiny.{key} must be"):
            TinyParams.parse({**cfg, key: bad})


def test_tiny_options_at_their_defaults_are_not_recorded():
    """The default run's base model meta (model.tiny.to_dict()) is what it was before the optional keys existed."""
    default = yaml.safe_load((ROOT / "params.yaml").read_text())["model"]
    assert TinyParams.parse(default["tiny"]).to_dict() == default["tiny"]
    smoke = yaml.safe_load(CONFIG.read_text())["model"]["tiny"]
    assert TinyParams.parse(smoke).to_dict() == smoke


def test_model_dtype_param_is_checked():
    model = yaml.safe_load((ROOT / "params.yaml").read_text())["model"]
    assert ModelParams.parse(model).dtype == "auto"
    assert ModelParams.parse({**model, "dtype": "bfloat16"}).dtype == "bfloat16"
    with pytest.raises(PrunetuneError, match="params.yaml: model.dtype must be one of auto, float32, bfloat16"):
        ModelParams.parse({**model, "dtype": "fp16"})


def test_direct_runs_take_dvc_locks_commands_and_a_plain_copy(tmp_path):
    """--direct (no git, no dvc): the workdir is a plain copy, each stage's command is dvc.lock's, resolved."""
    from prunetune.smoke import stage_commands

    params = yaml.safe_load(CONFIG.read_text())
    workdir = prepare_workdir(ROOT, tmp_path / "copy", params, articles=3, use_git=False)
    assert not (workdir / ".git").exists() and (workdir / "stages" / "eval.py").is_file()
    assert len(read_jsonl(workdir / params["data"]["source"])) == 3
    commands = stage_commands(workdir)
    assert list(commands) == list(STAGES)
    assert commands["eval@ft_pruned"] == (
        "python stages/eval.py models/ft_pruned data/processed metrics/eval/ft_pruned.json "
        "predictions/ft_pruned.jsonl reports/eval/ft_pruned.json"
    )
    lock = yaml.safe_load((workdir / "dvc.lock").read_text())
    del lock["stages"]["plot"]
    (workdir / "dvc.lock").write_text(yaml.safe_dump(lock))
    with pytest.raises(PrunetuneError, match="dvc.lock has no stage plot"):
        stage_commands(workdir)


def test_peak_gpu_memory_is_logged_per_process_and_read_per_stage(tmp_path, monkeypatch):
    """config.run_stage appends each process's peak (null without a GPU); the smoke keeps a stage's largest."""
    from prunetune.config import run_stage
    from prunetune.smoke import peak_gpu_mb

    log = tmp_path / "peak.jsonl"
    monkeypatch.setenv("PRUNETUNE_PEAK_LOG", str(log))
    run_stage(lambda: None)
    assert json.loads(log.read_text())["peak_gpu_mb"] is None  # no GPU here
    log.write_text(log.read_text() + '{"argv": [], "peak_gpu_mb": 1536.4}\n{"argv": [], "peak_gpu_mb": 512}\n')
    assert peak_gpu_mb(log, seen=0) == 1536 and peak_gpu_mb(log, seen=2) == 512
    assert peak_gpu_mb(log, seen=1) == 1536 and peak_gpu_mb(tmp_path / "none.jsonl", seen=0) is None
    rows = [{"stage": "base", "wall_s": 60.0, "peak_rss_mb": 2048, "peak_gpu_mb": 3072, "largest_vocab_shape": None}]
    text = table(rows)
    assert (
        "| stage | wall time | peak RSS | peak GPU memory |" in text
        and "| base | 60 s | 2.00 GB | 3.00 GB | none |" in text
    )
