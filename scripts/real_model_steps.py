"""The real model's fine-tune step on this CPU, float32 against bfloat16, through the finetune stage's own trainer
(HealingTrainer on shared-prompt rows, answer-position loss, AdamW, bf16 autocast as the stage sets it), beside this
CPU's own matmul peak in the same dtype, measured in the same run.

For each dtype: the same rows in the same order from the same LoRA init (seeded), --steps optimizer steps; the
median step time after the first two, tokens/s, the loss of every step (the two dtypes should agree), and the
achieved FLOP/s as a share of a plain square matmul's. FLOPs counted per step: 4 x the decoder's matmul FLOPs per
token (forward, and the backward to the activations; the frozen weights get no gradient, LoRA's are negligible),
attention's score and sum terms likewise, and the LM head at the answer positions only, 3 x (forward, its
checkpointed recompute, backward to the hidden states).

    .venv/bin/python scripts/real_model_steps.py --config configs/smollm2-135m.yaml --steps 8 --json F
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from functools import partial
from pathlib import Path

import torch
from transformers import TrainerCallback

from prunetune import gguf
from prunetune.data import prepare_corpus
from prunetune.packing import collate
from prunetune.params import load_all
from prunetune.trainers import HealingTrainer
from prunetune.training import build_dataset, lora_config, sft_config


def matmul_peak(dtype: torch.dtype, size: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of a size^3 matmul in dtype, median of repeats after a warm-up."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    torch.mm(a, b)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - started)
    return 2 * size**3 / statistics.median(times)


def step_flops(config, rows: list[dict]) -> float:
    """The module docstring's count for one optimizer step over these rows."""
    hidden, heads, layers = config.hidden_size, config.num_attention_heads, config.num_hidden_layers
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    kv = config.num_key_value_heads
    per_token = (
        2
        * layers
        * (2 * hidden * heads * head_dim + 2 * hidden * kv * head_dim + 3 * hidden * config.intermediate_size)
    )
    total = 0.0
    for row in rows:
        length = len(row["input_ids"])
        answers = sum(label != -100 for label in row["labels"])
        attention = 2 * layers * 2 * heads * head_dim * length * length / 2  # causal: half the square
        total += 2 * (per_token * length + attention) + 3 * 2 * hidden * config.vocab_size * answers
    return total


class StepTimes(TrainerCallback):
    def __init__(self) -> None:
        self.times: list[float] = []

    def on_step_begin(self, args, state, control, **kwargs):
        self.started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter() - self.started)


def run(model_dir: Path, dtype: torch.dtype, params: dict, rows, tokenizer, steps: int, scratch: Path) -> dict:
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype)
    train_cfg = params["train"]
    cfg = type(train_cfg).parse({**train_cfg.to_dict(), "max_steps": steps, "eval_steps": 10**6, "logging_steps": 1})
    args = sft_config(cfg, scratch, torch.device("cpu"), bf16=dtype == torch.bfloat16)
    args.eval_strategy, args.save_strategy, args.load_best_model_at_end, args.eval_on_start = "no", "no", False, False
    args.train_sampling_strategy = "sequential"  # the same rows in the same order for both dtypes
    timer = StepTimes()
    trainer = HealingTrainer(
        model=model,
        args=args,
        train_dataset=rows,
        processing_class=tokenizer,
        data_collator=partial(collate, pad_token_id=tokenizer.pad_token_id),
        peft_config=lora_config(params["lora"]),
        callbacks=[timer],
        weigh_examples=cfg.loss_weighting == "example",
    )
    trainer.train()
    losses = [round(e["loss"], 4) for e in trainer.state.log_history if "loss" in e]
    timed = timer.times[2:]
    batch = cfg.batch_size
    step_rows = [rows[i % len(rows)] for i in range(2 * batch, steps * batch)]
    flops = step_flops(model.config, step_rows) / len(timed)
    tokens = sum(len(r["input_ids"]) for r in step_rows) / len(timed)
    median = statistics.median(timed)
    peak = matmul_peak(dtype)
    return {
        "dtype": str(dtype).removeprefix("torch."),
        "median_step_s": median,
        "tokens_per_s": tokens / median,
        "achieved_gflops": flops / median / 1e9,
        "matmul_peak_gflops": peak / 1e9,
        "share_of_matmul_peak": flops / median / peak,
        "losses": losses,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/smollm2-135m.yaml")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--json", required=True)
    parser.add_argument("--profile", action="store_true", help="only profile 3 bf16 steps (torch.profiler) into --json")
    args = parser.parse_args()
    params = load_all(args.config)
    splits, _ = prepare_corpus(params["data"])
    model, tokenizer, _ = gguf.convert_with_provenance(params["model"].name)
    scratch = Path("/tmp/prunetune-steps")
    model.save_pretrained(scratch / "base")
    del model
    train = params["train"]
    rows, _ = build_dataset(
        splits["train"], tokenizer, train.max_seq_length, params["data"].chat_date, train.share_prompts
    )
    rows = rows.select(range(args.steps * train.batch_size))
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            run(
                scratch / "base",
                torch.bfloat16,
                params,
                rows.select(range(3 * train.batch_size)),
                tokenizer,
                3,
                scratch / "run",
            )
        table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12)
        Path(args.json).write_text(
            json.dumps({"config": args.config, "steps": 3, "profile_bf16": table}, indent=2) + "\n"
        )
        print(table)
        return
    results = [
        run(scratch / "base", d, params, rows, tokenizer, args.steps, scratch / "run")
        for d in (torch.float32, torch.bfloat16)
    ]
    report = {
        "config": args.config,
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "rows_per_step": train.batch_size,
        "steps": args.steps,
        "runs": results,
        "bf16_speedup": results[0]["median_step_s"] / results[1]["median_step_s"],
        "max_loss_difference": max(abs(a - b) for a, b in zip(results[0]["losses"], results[1]["losses"], strict=True)),
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
