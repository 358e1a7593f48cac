"""Where a training step of the default run spends its time: the tiny base's two kinds of pre-training step and one
fine-tune step through the finetune stage's own trainer (training.build_trainer: HealingTrainer on its rows with
train.share_prompts), each timed (median of --steps) and profiled (the busiest operators).

Reads models/base and data/processed (run `dvc repro` first) and params.yaml; trains nothing it keeps. Used to plan
the default's time budget (issue #13; BENCHMARKS.md, "The default pipeline's time").

    .venv/bin/python scripts/profile_steps.py --steps 10
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from prunetune.config import run_stage
from prunetune.jsonio import read_jsonl
from prunetune.models import load_model
from prunetune.params import DataParams, LoraParams, ModelParams, TrainParams, load_section
from prunetune.tiny import build_model, pretraining_inputs, random_windows
from prunetune.training import build_dataset, build_trainer, sft_config, timed_steps
from prunetune.warmup import answer_loss, instruction_batch


def timed(step: Callable[[], None], steps: int) -> tuple[float, str]:
    """Median seconds of a step after two untimed ones, and the profiler's table of three more."""
    for _ in range(2):
        step()
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(3):
            step()
    return statistics.median(times), prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=8)


def trainer_timed(trainer: object, steps: int) -> tuple[float, str]:
    """As timed, for the stage's trainer: median seconds of its optimizer steps after two, and the profiler's table of
    three more (training.timed_steps: trainer.train() with no evaluation and nothing written)."""
    seconds = statistics.median(step["seconds"] for step in timed_steps(trainer, steps + 2)[2:])
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        timed_steps(trainer, 3)
    return seconds, prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=8)


def optimizer_step(model: torch.nn.Module, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10, help="timed steps of each kind")
    args = parser.parse_args()
    cfg, date_string = load_section(ModelParams).tiny, load_section(DataParams).chat_date
    train_cfg = load_section(TrainParams)
    examples = read_jsonl(Path("data/processed/train.jsonl"))
    base, tokenizer = load_model(Path("models/base"))
    generator = torch.Generator().manual_seed(0)

    model = build_model(tokenizer, cfg).train()  # pre-training steps: a fresh model, as the base stage starts
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate)
    stream, chats, _ = pretraining_inputs(tokenizer, examples, cfg, date_string)

    def text_step() -> None:
        batch = random_windows(stream, cfg.batch_size, cfg.seq_len, generator)
        optimizer_step(model, model(input_ids=batch, labels=batch).loss, optimizer)

    def instruction_step() -> None:
        batch = instruction_batch(chats, cfg.batch_size, tokenizer.pad_token_id, generator)
        optimizer_step(model, answer_loss(model, batch), optimizer)

    rows, _ = build_dataset(examples, tokenizer, train_cfg.max_seq_length, date_string, train_cfg.share_prompts)
    scratch = tempfile.mkdtemp(prefix="profile-steps-")  # the trainer's output_dir: nothing is written there
    trainer_args = sft_config(train_cfg, Path(scratch), torch.device("cpu"), bf16=base.dtype == torch.bfloat16)
    trainer = build_trainer(base, tokenizer, load_section(LoraParams), train_cfg, trainer_args, rows, rows)

    for name, step in (
        ("base: text", text_step),
        ("base: instruction chats", instruction_step),
    ):
        seconds, table = timed(step, args.steps)
        print(f"\n## {name}: {seconds:.3f} s a step (median of {args.steps})\n{table}")
    seconds, table = trainer_timed(trainer, args.steps)
    rows_kind = "shared rows" if train_cfg.share_prompts else "one row per example"
    print(
        f"\n## fine-tune: the stage's {type(trainer).__name__}, {rows_kind}: {seconds:.3f} s a step "
        f"(median of {args.steps})\n{table}"
    )


if __name__ == "__main__":
    run_stage(main)
