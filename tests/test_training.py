import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import LORA_TEST_CFG, TRAIN_TEST_CFG, chat_examples, padded_batch, run_finetune
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer, ViTConfig

from prunetune.chat import IGNORE_INDEX, tokenize_chat
from prunetune.config import PrunetuneError
from prunetune.generation import without_padding_mask
from prunetune.trainers import ENTROPY, HIT, NLL, HealingTrainer, answer_hidden_states, answer_token_terms
from prunetune.training import build_dataset, finetune

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- label mask and data


def test_label_mask_covers_exactly_the_answer_and_end_of_turn(tiny_model):
    _, tokenizer = tiny_model
    example = chat_examples(1)[2]  # tag extraction: an answer with commas and separators
    row = tokenize_chat(tokenizer, example["messages"])
    labels, input_ids = row["labels"], row["input_ids"]
    answer_start = next(i for i, label in enumerate(labels) if label != IGNORE_INDEX)
    prompt = tokenizer.apply_chat_template(example["messages"][:2], tokenize=False, add_generation_prompt=True)
    assert tokenizer.decode(input_ids[:answer_start]) == prompt
    assert all(label == IGNORE_INDEX for label in labels[:answer_start])
    assert labels[answer_start:] == input_ids[answer_start:]
    assert tokenizer.decode(labels[answer_start:]) == example["messages"][2]["content"] + "<|eot_id|>"
    assert labels[-1] == tokenizer.convert_tokens_to_ids("<|eot_id|>")


def test_a_right_padded_batch_gives_the_same_real_outputs_without_its_mask(tiny_model):
    model, tokenizer = tiny_model
    rows, _ = build_dataset(chat_examples(1), tokenizer, 512)
    input_ids, attention_mask, _ = padded_batch(rows)
    assert (attention_mask == 0).any()  # rows of different lengths: real padding
    inputs = without_padding_mask({"input_ids": input_ids, "attention_mask": attention_mask})
    assert set(inputs) == {"input_ids"}
    with torch.no_grad():
        masked = model(input_ids, attention_mask=attention_mask).logits
        unmasked = model(**inputs).logits
    real = attention_mask.bool()
    torch.testing.assert_close(unmasked[real], masked[real], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(unmasked[~real], masked[~real])  # padded positions differ; they are never scored
    left_padded = attention_mask.flip(1)
    assert "attention_mask" in without_padding_mask({"input_ids": input_ids, "attention_mask": left_padded})


def test_answer_terms_in_chunks_are_the_full_logits_at_answer_positions_with_the_same_gradient(tiny_model):
    model, tokenizer = tiny_model
    rows, _ = build_dataset(chat_examples(1), tokenizer, 512)
    input_ids, attention_mask, labels = padded_batch(rows)
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
    hidden, answer = answer_hidden_states(model, inputs)
    answer_lengths = [sum(label != IGNORE_INDEX for label in row) for row in rows["labels"]]
    assert torch.bincount(answer.rows).tolist() == answer_lengths
    assert answer.targets.tolist() == [label for row in rows["labels"] for label in row if label != IGNORE_INDEX]
    assert hidden.shape == (sum(answer_lengths), model.config.hidden_size) and sum(answer_lengths) > 2 * 7

    terms = answer_token_terms(model.lm_head, hidden, answer.targets, chunk=7)  # several chunks and a partial one
    full = model(**inputs)  # every position's logits and the model's own label loss
    logits = full.logits[answer.keep]
    log_probs = torch.log_softmax(logits, dim=-1)
    torch.testing.assert_close(
        terms[:, NLL], torch.nn.functional.cross_entropy(logits, answer.targets, reduction="none")
    )
    torch.testing.assert_close(terms[:, NLL].mean(), full.loss)
    torch.testing.assert_close(terms[:, ENTROPY], -(log_probs.exp() * log_probs).sum(dim=-1))
    assert terms[:, HIT].tolist() == (logits.argmax(dim=-1) == answer.targets).float().tolist()

    weight = model.model.layers[0].mlp.up_proj.weight
    (chunked_grad,) = torch.autograd.grad(terms[:, NLL].sum(), weight)
    (full_grad,) = torch.autograd.grad(model(**inputs).loss * len(answer.targets), weight)
    torch.testing.assert_close(chunked_grad, full_grad)  # checkpointing recomputes each chunk: the same gradient


def test_examples_longer_than_max_seq_length_are_dropped_and_counted(tiny_model):
    _, tokenizer = tiny_model
    examples = chat_examples(3)
    lengths = [len(tokenize_chat(tokenizer, e["messages"])["input_ids"]) for e in examples]
    limit = sorted(lengths)[len(lengths) // 2]
    data, dropped = build_dataset(examples, tokenizer, limit)
    assert dropped == sum(length > limit for length in lengths) > 0
    assert len(data) == len(examples) - dropped
    assert all(len(ids) <= limit for ids in data["input_ids"])


def test_both_finetune_stages_share_one_script_and_settings():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    full, pruned = stages["finetune_full"], stages["finetune_pruned"]
    assert full["cmd"] == "python stages/finetune.py models/base data/processed models/ft_full metrics/train/full"
    assert pruned["cmd"] == full["cmd"].replace("base", "pruned").replace("full", "pruned")
    assert full["params"] == pruned["params"] == ["lora", "train", "data.chat_date"]
    pruned_only = ("models/pruned", "${train.teacher}")  # the kd teacher is a dep of the pruned fine-tune alone
    assert [d for d in full["deps"] if d != "models/base"] == [d for d in pruned["deps"] if d not in pruned_only]


# ---------------------------------------------------------------- a run


@pytest.fixture(scope="module")
def finished_run(tiny_model_dir, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("ft")
    summary = run_finetune(tiny_model_dir, tmp_path)
    return tmp_path / "run", summary


def test_run_writes_merged_model_adapter_and_dvclive_logs(finished_run):
    run_dir, summary = finished_run
    assert summary["steps"] == 6 and summary["train_examples"] == 16
    assert summary["best_val_loss"] <= summary["first_val_loss"]
    saved = json.loads((run_dir / "metrics" / "metrics.json").read_text())
    assert saved["best_val_loss"] == summary["best_val_loss"] and saved["stopped_early"] is False
    for curve in ("train/loss", "eval/loss", "train/mean_token_accuracy", "eval/mean_token_accuracy"):
        rows = (run_dir / "metrics" / "plots" / "metrics" / f"{curve}.tsv").read_text().splitlines()
        assert rows[0].split("\t") == ["step", curve.split("/")[1]] and len(rows) > 2
    eval_steps = [
        int(r.split("\t")[0]) for r in (run_dir / "metrics/plots/metrics/eval/loss.tsv").read_text().split()[2::2]
    ]
    assert eval_steps == [0, 2, 4, 6]
    assert (run_dir / "model" / "adapter" / "adapter_config.json").is_file()
    assert not (run_dir / "scratch").exists()  # checkpoints are kept only while a run is unfinished


@torch.no_grad()
def test_merged_model_equals_base_plus_adapter(finished_run, tiny_model_dir):
    run_dir, _ = finished_run
    input_ids = torch.tensor([[1, 50, 60, 70, 80, 90]])
    merged = AutoModelForCausalLM.from_pretrained(run_dir / "model").eval()
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with_adapter = PeftModel.from_pretrained(base, run_dir / "model" / "adapter").eval()
    untouched = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    torch.testing.assert_close(merged(input_ids).logits, with_adapter(input_ids).logits, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(merged(input_ids).logits, untouched(input_ids).logits, atol=1e-3)


def test_shared_prompt_run_trains_one_row_per_article(tiny_model_dir, tmp_path):
    summary = run_finetune(tiny_model_dir, tmp_path, train={"share_prompts": True, "batch_size": 1})
    assert summary["train_examples"] == 16 and summary["train_rows"] == 4  # chat_examples: 4 tasks per article
    assert summary["steps"] == 6 and summary["best_val_loss"] < summary["first_val_loss"]
    plain = run_finetune(tiny_model_dir, tmp_path, name="plain", train={"batch_size": 4})
    assert summary["train_tokens"] < 0.7 * plain["train_tokens"]  # the same examples in fewer tokens


def test_killed_run_resumes_and_ends_where_an_uninterrupted_run_ends(
    finished_run, tiny_model_dir, tmp_path, monkeypatch
):
    original_step = HealingTrainer.training_step

    def killed_after_step_4(self, *args, **kwargs):
        if self.state.global_step == 4:  # checkpoint-4 is on disk: die as a killed process would
            raise KeyboardInterrupt
        return original_step(self, *args, **kwargs)

    monkeypatch.setattr(HealingTrainer, "training_step", killed_after_step_4)
    with pytest.raises(KeyboardInterrupt):
        run_finetune(tiny_model_dir, tmp_path)
    assert not (tmp_path / "run" / "model").exists()
    monkeypatch.setattr(HealingTrainer, "training_step", original_step)
    state = json.loads((tmp_path / "run" / "scratch" / "checkpoint-4" / "trainer_state.json").read_text())
    tokens_before_kill = state["num_input_tokens_seen"]

    summary = run_finetune(tiny_model_dir, tmp_path)
    assert summary["resumed_from_step"] == 4 and summary["steps"] == 6
    uninterrupted_dir, uninterrupted = finished_run
    assert summary["best_val_loss"] == pytest.approx(uninterrupted["best_val_loss"], abs=1e-6)
    # throughput is this run's tokens over this run's time: the killed run's tokens are in train_tokens only
    assert summary["train_tokens"] == uninterrupted["train_tokens"] > tokens_before_kill > 0
    this_run = summary["train_tokens"] - tokens_before_kill
    assert summary["tokens_per_s"] == pytest.approx(this_run / summary["wall_s"])
    assert uninterrupted["tokens_per_s"] == pytest.approx(uninterrupted["train_tokens"] / uninterrupted["wall_s"])
    resumed = load_file(tmp_path / "run" / "model" / "adapter" / "adapter_model.safetensors")
    expected = load_file(uninterrupted_dir / "model" / "adapter" / "adapter_model.safetensors")
    assert resumed.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(resumed[name], expected[name], rtol=1e-5, atol=1e-6)
    eval_rows = (tmp_path / "run/metrics/plots/metrics/eval/loss.tsv").read_text().split()[2::2]
    assert [int(step) for step in eval_rows] == [0, 2, 4, 6]  # the curve is whole after the resume


def test_checkpoint_of_another_run_is_not_resumed(finished_run, tiny_model_dir, tmp_path, monkeypatch):
    original_step = HealingTrainer.training_step

    def killed(self, *args, **kwargs):
        if self.state.global_step == 2:
            raise KeyboardInterrupt
        return original_step(self, *args, **kwargs)

    monkeypatch.setattr(HealingTrainer, "training_step", killed)
    with pytest.raises(KeyboardInterrupt):
        run_finetune(tiny_model_dir, tmp_path)
    monkeypatch.setattr(HealingTrainer, "training_step", original_step)
    summary = run_finetune(tiny_model_dir, tmp_path, train={"learning_rate": 0.02})
    assert summary["resumed_from_step"] == 0


def test_two_process_ddp_run_on_cpu(tiny_model_dir, tmp_path):
    script = tmp_path / "entry.py"
    script.write_text(
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "from pathlib import Path\n"
        "from conftest import LORA_TEST_CFG, TRAIN_TEST_CFG, chat_examples, padded_batch\n"
        "from prunetune.training import finetune\n"
        "out = Path(sys.argv[3])\n"
        "ex = chat_examples(6)\n"
        "finetune(Path(sys.argv[2]), LORA_TEST_CFG, {**TRAIN_TEST_CFG, 'num_processes': 2, 'max_steps': 3,\n"
        "         'eval_steps': 3, 'batch_size': 1, 'share_prompts': True}, ex[:16], ex[16:], out / 'model',\n"
        "         out / 'metrics', out / 'scratch')\n"
    )
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    result = subprocess.run(
        [*command, str(script), str(ROOT / "tests"), str(tiny_model_dir), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "out" / "metrics" / "metrics.json").read_text())
    assert summary["steps"] == 3 and summary["train_rows"] == 4  # shared rows, one article per rank and step
    assert summary["train_tokens"] > 0
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "out" / "model").config.num_hidden_layers == 4


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("lora", "train", "param"),
    [
        ({"r": 0}, {}, "lora.r"),
        ({"target_modules": ["q_proj", "qkv_proj"]}, {}, "lora.target_modules"),
        ({"bias": "some"}, {}, "lora.bias"),
        ({}, {"batch_size": 0}, "train.batch_size"),
        ({}, {"early_stopping_patience": 0}, "train.early_stopping_patience"),
        ({}, {"learning_rate": -1}, "train.learning_rate"),
        ({}, {"scheduler": "zigzag"}, "train.scheduler"),
        ({}, {"max_seq_length": 5}, "train.max_seq_length"),
    ],
)
def test_bad_params_fail_before_training_naming_the_param(tiny_model_dir, tmp_path, lora, train, param):
    with pytest.raises(PrunetuneError, match=param.replace(".", r"\.")):
        run_finetune(tiny_model_dir, tmp_path, lora=lora, train=train)
    assert not (tmp_path / "run" / "scratch").exists()


def test_model_dir_that_is_not_a_causal_lm_is_named(tmp_path):
    ViTConfig().save_pretrained(tmp_path / "vit")
    with pytest.raises(PrunetuneError, match="'vit' model, which is not a causal LM"):
        run_finetune(tmp_path / "vit", tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(PrunetuneError, match="no config.json"):
        run_finetune(tmp_path / "empty", tmp_path)


def test_non_finite_loss_stops_the_run_without_writing_a_model(tiny_model_dir, tmp_path, monkeypatch):
    original = HealingTrainer.compute_loss

    def nan_loss(self, *args, **kwargs):
        loss = original(self, *args, **kwargs)
        return (loss * float("nan"), *loss[1:]) if isinstance(loss, tuple) else loss * float("nan")

    monkeypatch.setattr(HealingTrainer, "compute_loss", nan_loss)
    with pytest.raises(PrunetuneError, match=r"loss became nan at step 1"):
        run_finetune(tiny_model_dir, tmp_path)
    assert not (tmp_path / "run" / "model").exists()


def test_finetune_leaves_the_input_model_untouched(tiny_model_dir, tmp_path):
    before = copy.deepcopy(load_file(tiny_model_dir / "model.safetensors"))
    run_finetune(tiny_model_dir, tmp_path, train={"max_steps": 2})
    after = load_file(tiny_model_dir / "model.safetensors")
    assert all(torch.equal(before[k], after[k]) for k in before)


def one_step_on_two_answers(model_dir, tmp_path, weighting, batch_size, accumulation):
    """One optimizer step on two answers of one article, a summary and a type, without dropout; the examples and
    the dvclive curves dir."""
    article = chat_examples(1)
    examples = [article[0], article[3]]
    train = {"batch_size": batch_size, "gradient_accumulation_steps": accumulation, "max_steps": 1, "eval_steps": 1}
    finetune(
        model_dir=model_dir,
        lora_cfg={**LORA_TEST_CFG, "dropout": 0.0},
        train_cfg={**TRAIN_TEST_CFG, **train, "loss_weighting": weighting},
        train_examples=examples,
        val_examples=examples,
        out_dir=tmp_path / "model",
        metrics_dir=tmp_path / "metrics",
        scratch_dir=tmp_path / "scratch",
    )
    return examples, tmp_path / "metrics/plots/metrics"


def test_example_weighting_under_gradient_accumulation_is_the_plain_mean(tiny_model_dir, tmp_path):
    # one answer per micro-batch, accumulated over 2: the first step's logged train loss is the mean of the two
    # answers' mean NLLs, as the evaluation at the start measures it on the same two examples (no dropout, same
    # weights), not half of it (the accumulation divided twice) nor twice it (not at all)
    _, curves = one_step_on_two_answers(tiny_model_dir, tmp_path, "example", 1, 2)
    first_train_loss = float((curves / "train/loss.tsv").read_text().split()[3])
    eval_at_start = float((curves / "eval/loss.tsv").read_text().split()[3])
    assert first_train_loss == pytest.approx(eval_at_start, rel=1e-4)


@pytest.mark.parametrize(("batch_size", "accumulation"), [(2, 1), (1, 2)])
def test_token_weighting_is_the_per_token_mean_of_the_whole_batch(tiny_model_dir, tmp_path, batch_size, accumulation):
    # one batch or accumulated over two: the first logged train loss is the model's own per-token label loss on
    # both answers, whichever way the step is split
    examples, curves = one_step_on_two_answers(tiny_model_dir, tmp_path, "token", batch_size, accumulation)
    first_train_loss = float((curves / "train/loss.tsv").read_text().split()[3])
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    input_ids, attention_mask, labels = padded_batch(build_dataset(examples, tokenizer, 1024)[0])
    with torch.no_grad():
        own = model(input_ids, attention_mask=attention_mask, labels=labels).loss.item()
    assert first_train_loss == pytest.approx(own, rel=1e-4)
