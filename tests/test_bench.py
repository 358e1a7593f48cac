import copy
import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from conftest import LORA_TEST_CFG, TINY_TEST_CFG, TRAIN_TEST_CFG, chat_examples, small_llama_config
from transformers import LlamaConfig, LlamaForCausalLM

from prunetune.benchsections import bench_generation, bench_pruning, bench_training, padding_fraction, training_loaders
from prunetune.benchsetup import LLAMA_3_2_1B
from prunetune.chat import prompt_ids
from prunetune.config import PrunetuneError
from prunetune.efficiency import flops_per_token, ideal_speedup
from prunetune.pruning import remove_layers

ROOT = Path(__file__).resolve().parents[1]


def test_ideal_speedup_is_the_hand_worked_flop_ratio():
    # head_dim 8; per layer: q, o 32*32 each, k, v 32*16 each, MLP 3*32*64 -> 9216 multiply-adds;
    # attention over 16 positions: 2 * 4 heads * 8 * 16 = 1024; x2 FLOPs -> 20480 per layer.
    # LM head (the tied embedding): 2 * 32 * 512 = 32768. Full 4 layers: 114688; pruned to 3: 94208.
    assert flops_per_token(small_llama_config(4), context=16) == 4 * 20480 + 32768 == 114688
    assert flops_per_token(small_llama_config(3), context=16) == 94208
    assert ideal_speedup(small_llama_config(4), small_llama_config(3), context=16) == pytest.approx(114688 / 94208)


def test_padding_fraction_is_pads_over_all_positions():
    batches = [
        {"attention_mask": torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])},
        {"attention_mask": torch.tensor([[1, 1], [1, 0]])},
    ]
    assert padding_fraction(batches) == pytest.approx(3 / 14)


def test_llama_3_2_1b_shape_has_the_real_parameter_count():
    config = LlamaConfig(**LLAMA_3_2_1B)
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    assert sum(p.numel() for p in {id(p): p for p in model.parameters()}.values()) == 1_235_814_400
    assert config.rope_parameters["rope_type"] == "llama3" and config.rope_parameters["rope_theta"] == 500000.0


def test_bench_sections_on_a_small_model(tiny_model):
    model, tokenizer = tiny_model
    examples = chat_examples(3, max_content_words=10)
    prompts = {
        task: [prompt_ids(tokenizer, e["messages"][:2]) for e in examples if e["task"] == task]
        for task in ("summarization", "type_classification")
    }
    limits = {"summarization": 5, "type_classification": 3}
    generation = bench_generation(model, tokenizer, prompts, limits, batch_size=4, repeats=1)
    assert generation["outputs_identical"] is True and generation["identical_fraction"] == 1.0
    assert generation["prompts"] == 6 and generation["batched_vs_sequential_speedup"] > 0
    assert 0 < generation["batched_prefill_share"] <= 1 and generation["regime"] == "eval"
    fixed = bench_generation(model, tokenizer, prompts, limits, batch_size=4, repeats=1, fixed_length=True)
    # every prompt decodes exactly its task's max_new_tokens: 3 summaries of 5 tokens, 3 types of 3
    assert fixed["new_tokens"] == 3 * 5 + 3 * 3 and fixed["new_tokens_per_prompt"] == 4.0
    assert fixed["hit_max_new_tokens"] == 6 and fixed["outputs_identical"] is True

    pruned = remove_layers(copy.deepcopy(model), [3])
    speed_cfg = {"prompt_tokens": 8, "new_tokens": 2, "batch_size": 2, "repeats": 2}
    pruning = bench_pruning(model, pruned, speed_cfg, peak_tflops=1.0)
    context = 8 + 2 // 2
    assert pruning["ideal_speedup"] == pytest.approx(
        flops_per_token(model.config, context) / flops_per_token(pruned.config, context)
    )
    for key in ("decode_speedup_b1", "decode_speedup_b2", "prefill_speedup_b1", "decode_vs_ideal_b2", "mfu"):
        assert key in pruning
    assert pruning["layers_full"] == 4 and pruning["layers_pruned"] == 3

    params = {"train": {**TRAIN_TEST_CFG, "batch_size": 2}, "lora": LORA_TEST_CFG}
    trainer, batches = training_loaders(copy.deepcopy(model), tokenizer, examples, params, torch.device("cpu"))
    lengths = sorted(len(ids) for ids in trainer.train_dataset["input_ids"])
    assert sum(int(b["attention_mask"].sum()) for b in batches["stage"]) == sum(lengths)  # every token, once
    training = bench_training(trainer, batches, steps=1, peak_tflops=1.0)
    assert training["trainer"] == "HealingTrainer" and training["share_prompts"] is False
    assert training["stage_batching"] == "group_by_length"
    assert training["padding_fraction"] == pytest.approx(padding_fraction(batches["stage"]))
    assert 0 <= training["padding_fraction"] < 1 and training["tokens_per_s"] > 0


def test_bench_command_builds_what_it_needs_and_writes_the_json(tmp_path, monkeypatch):
    """No models/ and no data/processed: the command splits the sample corpus and builds a (small) tiny model."""
    from prunetune.cli import main

    shutil.copytree(ROOT / "data" / "sample", tmp_path / "data" / "sample")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["model"]["tiny"] = {**TINY_TEST_CFG, "layers": 3}
    params["eval"]["max_new_tokens"] = dict.fromkeys(params["eval"]["max_new_tokens"], 2)
    params["speed"].update(prompt_tokens=8, batch_size=2)
    params["train"]["batch_size"] = 4
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("prunetune.bench.MODES", {"quick": {"prompts_per_task": 2, "gen_repeats": 1,
                        "speed_repeats": 1, "new_tokens": 2, "train_steps": 1}})  # fmt: skip
    main(["bench", "--quick", "--json", "out.json"])
    result = json.loads((tmp_path / "out.json").read_text())
    assert result["generation"]["model"] == "the full model (random init)"
    for regime in ("eval", "fixed_length"):
        assert result["generation"][regime]["outputs_identical"] is True
        assert isinstance(result["generation"][regime]["batched_vs_sequential_speedup"], float)
    assert result["generation"]["fixed_length"]["new_tokens_per_prompt"] == 2.0  # max_new_tokens 2 for every task
    assert result["training"]["trainer"] == "HealingTrainer" and result["training"]["share_prompts"] is True
    assert set(result["setup"]["machine"]) >= {"cpu_model", "cores", "date", "commit"}
    for section, key in [
        ("pruning", "decode_speedup_b1"),
        ("pruning", "ideal_speedup"),
        ("training", "padding_fraction"),
        ("training", "tokens_per_s"),
        ("hardware", "peak_tflops"),
    ]:
        assert isinstance(result[section][key], float), (section, key)
    assert result["setup"]["source"].startswith("tiny, random init")
    assert result["pruning"]["layers_full"] == 3 and result["pruning"]["layers_pruned"] == 2


def test_real_size_arch_needs_random_init(tmp_path, monkeypatch):
    from prunetune.bench import run_bench

    with pytest.raises(PrunetuneError, match="--random-init"):
        run_bench(arch="llama-3.2-1b", random_init=False, device_name="cpu", params_path=str(ROOT / "params.yaml"))


def test_timed_steps_runs_the_stages_trainer_and_restores_its_arguments(tiny_model, tmp_path):
    """training.timed_steps: trainer.train() for N optimizer steps, nothing evaluated or saved, every step's real
    tokens counted by the trainer itself, and the stage's arguments as they were afterwards."""
    from prunetune.training import timed_steps

    model, tokenizer = tiny_model
    params = {"train": {**TRAIN_TEST_CFG, "batch_size": 2}, "lora": LORA_TEST_CFG}
    trainer, batches = training_loaders(copy.deepcopy(model), tokenizer, chat_examples(2), params, torch.device("cpu"))
    before = {k: getattr(trainer.args, k) for k in ("eval_strategy", "save_strategy", "max_steps", "eval_on_start")}
    steps = timed_steps(trainer, 3, sampling="random")
    assert len(steps) == 3 and all(s["seconds"] > 0 for s in steps)
    # each step trains one batch of 2 rows: its real tokens are between the 2 shortest and the 2 longest rows'
    lengths = sorted(len(ids) for ids in trainer.train_dataset["input_ids"])
    assert all(sum(lengths[:2]) <= s["tokens"] <= sum(lengths[-2:]) for s in steps)
    assert {k: getattr(trainer.args, k) for k in before} == before
    assert trainer.args.train_sampling_strategy == "group_by_length"
    assert not any(tmp_path.iterdir()) and not list(Path(trainer.args.output_dir).glob("checkpoint-*"))


def test_generation_times_the_fine_tuned_model_when_the_pipeline_has_it(tiny_model, tmp_path, monkeypatch):
    from prunetune.benchsetup import generation_model
    from prunetune.models import save_model

    model, tokenizer = tiny_model
    origin = {"pipeline_models": True}
    monkeypatch.setattr("prunetune.benchsetup.FT_FULL", tmp_path / "ft_full")
    assert generation_model(model, origin, torch.device("cpu")) == (model, "models/base")
    save_model(model, tokenizer, tmp_path / "ft_full", {"source": "test"})
    loaded, name = generation_model(model, origin, torch.device("cpu"))
    assert name == str(tmp_path / "ft_full") and loaded is not model
    assert generation_model(model, {"pipeline_models": False}, torch.device("cpu"))[1] == "the full model (random init)"


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [("sections", ("speed",), "bench --section: must be among generation, pruning, training"),
     ("regimes", ("greedy",), "bench --regime: must be among eval, fixed_length"),
     ("gen_repeats", 0, "bench --gen-repeats: must be >= 1")],
)  # fmt: skip
def test_bad_bench_options_are_one_line(option, value, message):
    from prunetune.bench import run_bench

    with pytest.raises(PrunetuneError, match=message):
        run_bench(device_name="cpu", params_path=str(ROOT / "params.yaml"), **{option: value})
