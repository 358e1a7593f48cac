"""The three measurements of `prunetune bench`: batched against one-at-a-time generation, the full against the
pruned model (with MFU), and the finetune stage's batching against random batching."""

from __future__ import annotations

import statistics
import tempfile
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
    model: Any,
    tokenizer: Any,
    prompts: dict[str, list[list[int]]],
    limits: dict[str, int],
    batch_size: int,
    fixed_length: bool = False,
) -> list[dict[str, Any]]:
    """The eval stage's call, task by task (each with its own max_new_tokens)."""
    results = []
    for task, task_prompts in prompts.items():
        if task_prompts:
            results += generate_greedy(
                model, tokenizer, task_prompts, limits[task], batch_size, desc=task, fixed_length=fixed_length
            )
    return results


REGIMES = {"eval": False, "fixed_length": True}  # regime name: fixed_length (min_new_tokens = max_new_tokens)


def bench_generation(
    model: Any,
    tokenizer: Any,
    prompts: dict[str, list[list[int]]],
    limits: dict[str, int],
    batch_size: int,
    repeats: int,
    fixed_length: bool = False,
) -> dict[str, Any]:
    """One-at-a-time greedy decoding (the reference study's method) against the eval stage's batched decoding.

    Both decode the same prompts; each repeat runs one pass of each back to back, and the speedup is the median
    of the per-repeat ratios. The texts (and token ids) must be identical. Regime: as eval runs it (end tokens stop
    a prompt) or fixed_length (every prompt decodes exactly its task's max_new_tokens). prefill_share: the time of
    the same passes with one new token (prefill and one step) over the pass's time: where a pass's time goes."""
    device = model.device

    def run(size: int, limits_: dict[str, int] = limits) -> list[dict[str, Any]]:
        return _generate_all(model, tokenizer, prompts, limits_, size, fixed_length)

    warm = {task: p[:2] for task, p in prompts.items()}
    for size in (1, batch_size):
        _generate_all(model, tokenizer, warm, limits, size, fixed_length)
    sequential_s, batched_s, ratios = [], [], []
    for _ in tqdm(range(repeats), desc="generation: sequential vs batched"):
        sequential, seconds_1 = timed(lambda: run(1), device)
        batched, seconds_n = timed(lambda: run(batch_size), device)
        sequential_s.append(seconds_1)
        batched_s.append(seconds_n)
        ratios.append(seconds_1 / seconds_n)
    one_token = dict.fromkeys(limits, 1)
    prefill_1 = statistics.median(timed(lambda: run(1, one_token), device)[1] for _ in range(repeats))
    prefill_n = statistics.median(timed(lambda: run(batch_size, one_token), device)[1] for _ in range(repeats))
    return generation_figures(sequential, batched, sequential_s, batched_s, ratios, (prefill_1, prefill_n)) | {
        "regime": "fixed_length" if fixed_length else "eval",
        "prompts_per_task": {task: len(p) for task, p in prompts.items()},
        "prompt_tokens_mean": statistics.mean(len(p) for ps in prompts.values() for p in ps),
        "max_new_tokens": limits,
        "batch_size": batch_size,
        "repeats": repeats,
    }


def generation_figures(
    sequential: list[dict[str, Any]],
    batched: list[dict[str, Any]],
    sequential_s: list[float],
    batched_s: list[float],
    ratios: list[float],
    prefill_s: tuple[float, float],
) -> dict[str, Any]:
    """The generation section's figures from the two passes' outputs and timings (medians over repeats);
    outputs count as identical when token ids and text both match."""
    same = [
        s["token_ids"] == b["token_ids"] and s["text"] == b["text"] for s, b in zip(sequential, batched, strict=True)
    ]
    new_tokens = sum(g["new_tokens"] for g in batched)
    seq_s, bat_s = statistics.median(sequential_s), statistics.median(batched_s)
    return {
        "prompts": len(same),
        "new_tokens": new_tokens,
        "new_tokens_per_prompt": new_tokens / len(same),
        "hit_max_new_tokens": sum(g["hit_max_new_tokens"] for g in batched),
        "sequential_s": seq_s,
        "batched_s": bat_s,
        "sequential_tokens_per_s": sum(g["new_tokens"] for g in sequential) / seq_s,
        "batched_tokens_per_s": new_tokens / bat_s,
        "batched_vs_sequential_speedup": statistics.median(ratios),
        "sequential_prefill_share": min(1.0, prefill_s[0] / seq_s),
        "batched_prefill_share": min(1.0, prefill_s[1] / bat_s),
        "outputs_identical": all(same),
        "identical_fraction": sum(same) / len(same),
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
    """The finetune stage's own trainer (training.build_trainer: HealingTrainer, its rows with train.share_prompts,
    its answer-position loss) and one epoch of its batches, once with the stage's sampling and once with naive random
    sampling. The LoRA adapter is added to `model` in place; the trainer's scratch dir is a temporary one."""
    from prunetune.training import build_dataset, build_trainer, sft_config

    train_cfg, lora_cfg = as_section(TrainParams, params["train"]), as_section(LoraParams, params["lora"])
    data, _ = build_dataset(train_examples, tokenizer, train_cfg.max_seq_length, date_string, train_cfg.share_prompts)
    if len(data) == 0:
        raise PrunetuneError("bench: no training example fits train.max_seq_length")
    scratch = tempfile.mkdtemp(prefix="prunetune-bench-")  # the trainer's output_dir; it writes nothing there
    args = sft_config(train_cfg, Path(scratch), device, bf16=model.dtype == torch.bfloat16)
    trainer = build_trainer(model, tokenizer, lora_cfg, train_cfg, args, data, data)
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
    """Padding over a whole epoch, and LoRA training throughput through the stage's trainer (trainer.train(): data,
    forward, backward, optimizer step; training.timed_steps) for `steps` optimizer steps after one warm-up step, with
    the stage's batching and then random batching; tokens/s counts real (non-pad) tokens."""
    from prunetune.training import timed_steps

    steps = max(1, min(steps, *(len(b) - 1 for b in batches.values())))
    stage_strategy = trainer.args.train_sampling_strategy
    timings = {
        name: timed_steps(trainer, steps + 1, strategy)[1:]  # the first step warms up (kernels, allocator)
        for name, strategy in (("stage", stage_strategy), ("random", "random"))
    }
    throughput = {name: [s["tokens"] / s["seconds"] for s in steps_] for name, steps_ in timings.items()}
    model = trainer.model
    model.eval()
    config = model.get_base_model().config
    mean_length = statistics.mean(int(b["attention_mask"].sum(1).float().mean()) for b in batches["stage"])
    # LoRA: forward plus the backward for activations (frozen base weights get no weight gradient): 2x forward.
    # Recomputation under gradient checkpointing is not counted (MFU counts the model's FLOPs, not the hardware's).
    train_flops_per_token = 2 * flops_per_token(config, mean_length // 2)
    stage_tokens_per_s = statistics.median(throughput["stage"])
    return {
        "trainer": type(trainer).__name__,
        "share_prompts": "branch_ids" in batches["stage"][0],
        "loss": "answer positions only (HealingTrainer.compute_loss)",
        "stage_batching": stage_strategy,
        "batch_size": trainer.args.per_device_train_batch_size,
        "gradient_accumulation_steps": trainer.args.gradient_accumulation_steps,
        "gradient_checkpointing": bool(trainer.args.activation_checkpointing),
        "max_seq_length": trainer.args.max_length,
        "rows": sum(len(b["input_ids"]) for b in batches["stage"]),
        "mean_row_tokens": mean_length,
        "padding_fraction": padding_fraction(batches["stage"]),
        "random_padding_fraction": padding_fraction(batches["random"]),
        "tokens_per_s": stage_tokens_per_s,
        "random_tokens_per_s": statistics.median(throughput["random"]),
        "step_s": statistics.median(s["seconds"] for s in timings["stage"]),
        "speedup_vs_random": stage_tokens_per_s / statistics.median(throughput["random"]),
        "steps": steps,
        "mfu": stage_tokens_per_s * train_flops_per_token / (peak_tflops * 1e12),
    }
