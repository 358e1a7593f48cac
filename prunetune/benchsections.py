"""The three measurements of `prunetune bench`: batched against one-at-a-time generation, the full against the
pruned model (with MFU), and the finetune stage's batching against random batching."""

from __future__ import annotations

import statistics
import tempfile
from functools import partial
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from prunetune.chat import DEFAULT_CHAT_DATE, prompt_ids
from prunetune.config import PrunetuneError
from prunetune.data import TASKS
from prunetune.efficiency import flops_per_token, pruning_speed, timed
from prunetune.generation import generate_greedy
from prunetune.params import LoraParams, SpeedParams, TrainParams, as_section

# ---------------------------------------------------------------- generation


def bench_prompts(
    tokenizer: Any,
    splits: dict[str, list[dict[str, Any]]],
    per_task: int | None,
    date_string: str = DEFAULT_CHAT_DATE,
) -> dict[str, list[list[int]]]:
    """Per task, the chat prompts of the test split (the first per_task of them; topped up from val, then train,
    when more are asked for than the test split has)."""
    prompts: dict[str, list[list[int]]] = {}
    for task in TASKS:
        splits_used = ("test",) if per_task is None else ("test", "val", "train")
        chosen = [e for split in splits_used for e in splits[split] if e["task"] == task][:per_task]
        prompts[task] = [prompt_ids(tokenizer, e["messages"][:2], date_string) for e in chosen]
    if not any(prompts.values()):
        raise PrunetuneError("bench: the test split has no examples; run the split stage or check data.*")
    return prompts


def _generate_all(
    model: Any, tokenizer: Any, prompts: dict[str, list[list[int]]], limits: dict[str, int], batch_size: int
) -> list[dict[str, Any]]:
    """The eval stage's call, task by task (each with its own max_new_tokens)."""
    results = []
    for task, task_prompts in prompts.items():
        if task_prompts:
            results += generate_greedy(model, tokenizer, task_prompts, limits[task], batch_size, desc=task)
    return results


def bench_generation(
    model: Any,
    tokenizer: Any,
    prompts: dict[str, list[list[int]]],
    limits: dict[str, int],
    batch_size: int,
    repeats: int,
) -> dict[str, Any]:
    """One-at-a-time greedy decoding (the reference study's method) against the eval stage's batched decoding.

    Both decode the same prompts; each repeat runs one pass of each back to back, and the speedup is the median
    of the per-repeat ratios. The texts (and token ids) must be identical."""
    device = model.device
    warm = {task: p[:2] for task, p in prompts.items()}
    _generate_all(model, tokenizer, warm, limits, 1)
    _generate_all(model, tokenizer, warm, limits, batch_size)
    sequential_s, batched_s, ratios = [], [], []
    for _ in tqdm(range(repeats), desc="generation: sequential vs batched"):
        sequential, seconds_1 = timed(lambda: _generate_all(model, tokenizer, prompts, limits, 1), device)
        batched, seconds_n = timed(lambda: _generate_all(model, tokenizer, prompts, limits, batch_size), device)
        sequential_s.append(seconds_1)
        batched_s.append(seconds_n)
        ratios.append(seconds_1 / seconds_n)
    same = [
        s["token_ids"] == b["token_ids"] and s["text"] == b["text"] for s, b in zip(sequential, batched, strict=True)
    ]
    new_tokens = sum(g["new_tokens"] for g in batched)
    return {
        "prompts": len(same),
        "prompts_per_task": {task: len(p) for task, p in prompts.items()},
        "prompt_tokens_mean": statistics.mean(len(p) for ps in prompts.values() for p in ps),
        "max_new_tokens": limits,
        "batch_size": batch_size,
        "new_tokens": new_tokens,
        "hit_max_new_tokens": sum(g["hit_max_new_tokens"] for g in batched),
        "sequential_s": statistics.median(sequential_s),
        "batched_s": statistics.median(batched_s),
        "sequential_tokens_per_s": sum(g["new_tokens"] for g in sequential) / statistics.median(sequential_s),
        "batched_tokens_per_s": new_tokens / statistics.median(batched_s),
        "batched_vs_sequential_speedup": statistics.median(ratios),
        "outputs_identical": all(same),
        "identical_fraction": sum(same) / len(same),
        "repeats": repeats,
    }


# ---------------------------------------------------------------- pruning


def bench_pruning(full: Any, pruned: Any, cfg: SpeedParams | dict[str, Any], peak_tflops: float) -> dict[str, Any]:
    """efficiency.pruning_speed (both models timed in turns, beside the ideal speedup) and each model's MFU."""
    cfg = as_section(SpeedParams, cfg)
    result = pruning_speed(full, pruned, cfg)
    batched = f"b{cfg.batch_size}"
    decode_context = cfg.prompt_tokens + cfg.new_tokens // 2
    prefill_context = cfg.prompt_tokens // 2
    result["flops_per_token_full"] = flops_per_token(full.config, decode_context)
    result["flops_per_token_pruned"] = flops_per_token(pruned.config, decode_context)
    mfu = {}
    for name, model in (("full", full), ("pruned", pruned)):
        for label, batch_size in (("b1", 1), (batched, cfg.batch_size)):
            prefill_flops = batch_size * cfg.prompt_tokens * flops_per_token(model.config, prefill_context)
            prefill_s = result[name][f"prefill_ms_{label}"] / 1000
            mfu[f"{name}_prefill_{label}"] = prefill_flops / prefill_s / (peak_tflops * 1e12)
            decode_flops_per_s = result[name][f"decode_tokens_per_s_{label}"] * flops_per_token(
                model.config, decode_context
            )
            mfu[f"{name}_decode_{label}"] = decode_flops_per_s / (peak_tflops * 1e12)
    result["mfu"] = mfu
    return result


# ---------------------------------------------------------------- training


def padding_fraction(batches: list[dict[str, torch.Tensor]]) -> float:
    """Padded positions over all positions of the batches (attention_mask 0 marks a pad)."""
    padded = sum(int((batch["attention_mask"] == 0).sum()) for batch in batches)
    return padded / sum(batch["attention_mask"].numel() for batch in batches)


def training_loaders(
    model: Any,
    tokenizer: Any,
    train_examples: list[dict[str, Any]],
    params: dict[str, Any],
    device: torch.device,
    date_string: str = DEFAULT_CHAT_DATE,
) -> tuple[Any, dict[str, list[dict[str, torch.Tensor]]]]:
    """The finetune stage's trainer (its SFTConfig, collator and LoRA) and one epoch of its batches, once with the
    stage's sampling and once with naive random sampling. The LoRA adapter is added to `model` in place."""
    from trl import SFTTrainer

    from prunetune.packing import collate
    from prunetune.training import build_dataset, lora_config, sft_config

    train_cfg, lora_cfg = as_section(TrainParams, params["train"]), as_section(LoraParams, params["lora"])
    data, _ = build_dataset(train_examples, tokenizer, train_cfg.max_seq_length, date_string)  # one row per example
    if len(data) == 0:
        raise PrunetuneError("bench: no training example fits train.max_seq_length")
    lora = lora_config(lora_cfg)
    with tempfile.TemporaryDirectory() as scratch:
        args = sft_config(train_cfg, Path(scratch), device)
        trainer = SFTTrainer(
            model=model,
            args=args,
            train_dataset=data,
            eval_dataset=data,
            processing_class=tokenizer,
            data_collator=partial(collate, pad_token_id=tokenizer.pad_token_id),
            peft_config=lora,
        )
        stage_strategy = args.train_sampling_strategy
        batches = {}
        for name, strategy in (("stage", stage_strategy), ("random", "random")):
            trainer.args.train_sampling_strategy = strategy
            batches[name] = list(trainer.get_train_dataloader())
        trainer.args.train_sampling_strategy = stage_strategy
    return trainer, batches


def bench_training(
    trainer: Any, batches: dict[str, list[dict[str, torch.Tensor]]], steps: int, peak_tflops: float
) -> dict[str, Any]:
    """Padding over a whole epoch, and LoRA training throughput (forward, backward, optimizer step) on the first
    `steps` batches of each batching, taking turns step by step; tokens/s counts real (non-pad) tokens."""
    model = trainer.model
    device = next(model.parameters()).device
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step(batch: dict[str, torch.Tensor]) -> None:
        inputs = {key: batch[key].to(device) for key in ("input_ids", "attention_mask", "labels")}
        model(**inputs).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    steps = min(steps, *(len(b) - 1 for b in batches.values()))
    for name in batches:
        step(batches[name][0])  # warm-up
    throughput: dict[str, list[float]] = {name: [] for name in batches}
    padded_throughput: dict[str, list[float]] = {name: [] for name in batches}
    for index in tqdm(range(1, steps + 1), desc="training: stage vs random batching"):
        for name in batches:
            batch = batches[name][index]
            _, seconds = timed(lambda batch=batch: step(batch), device)
            throughput[name].append(int(batch["attention_mask"].sum()) / seconds)
            padded_throughput[name].append(batch["attention_mask"].numel() / seconds)
    model.eval()
    config = model.get_base_model().config
    mean_length = statistics.mean(int(b["attention_mask"].sum(1).float().mean()) for b in batches["stage"])
    # LoRA: forward plus the backward for activations (frozen base weights get no weight gradient): 2x forward.
    train_flops_per_token = 2 * flops_per_token(config, mean_length // 2)
    stage_tokens_per_s = statistics.median(throughput["stage"])
    return {
        "stage_batching": trainer.args.train_sampling_strategy,
        "batch_size": trainer.args.per_device_train_batch_size,
        "examples": sum(len(b["input_ids"]) for b in batches["stage"]),
        "padding_fraction": padding_fraction(batches["stage"]),
        "random_padding_fraction": padding_fraction(batches["random"]),
        "tokens_per_s": stage_tokens_per_s,
        "random_tokens_per_s": statistics.median(throughput["random"]),
        "padded_tokens_per_s": statistics.median(padded_throughput["stage"]),
        "random_padded_tokens_per_s": statistics.median(padded_throughput["random"]),
        "speedup_vs_random": stage_tokens_per_s / statistics.median(throughput["random"]),
        "steps": steps,
        "mfu": stage_tokens_per_s * train_flops_per_token / (peak_tflops * 1e12),
    }
