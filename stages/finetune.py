"""finetune_full / finetune_pruned stage: one script, one code path; the variant only picks the input model.

    python stages/finetune.py full|pruned

With train.num_processes > 1 it relaunches itself under torchrun (DDP); rank 0 logs and writes.
"""

import os
import sys
from pathlib import Path

from prunetune.chat import chat_date
from prunetune.config import PrunetuneError, load_params, run_stage, section
from prunetune.data import read_jsonl
from prunetune.training import finetune

INPUT_MODELS = {"full": Path("models/base"), "pruned": Path("models/pruned")}


def main() -> None:
    variant = sys.argv[1] if len(sys.argv) > 1 else ""
    if variant not in INPUT_MODELS:
        raise PrunetuneError(f"usage: python stages/finetune.py {'|'.join(INPUT_MODELS)} (got {variant!r})")
    params = load_params()
    train_cfg, date_string = section(params, "train"), chat_date(params)
    processes = train_cfg.get("num_processes", 1)
    if isinstance(processes, int) and processes > 1 and "LOCAL_RANK" not in os.environ:
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
        os.execv(sys.executable, [*torchrun, *sys.argv])
    summary = finetune(
        model_dir=INPUT_MODELS[variant],
        lora_cfg=section(params, "lora"),
        train_cfg=train_cfg,
        train_examples=read_jsonl("data/processed/train.jsonl"),
        val_examples=read_jsonl("data/processed/val.jsonl"),
        out_dir=Path(f"models/ft_{variant}"),
        metrics_dir=Path(f"metrics/train/{variant}"),
        scratch_dir=Path(f"scratch/finetune_{variant}"),
        date_string=date_string,
    )
    if summary:
        print(
            f"finetune_{variant}: {summary['steps']} steps, val loss {summary['first_val_loss']:.3f} -> "
            f"best {summary['best_val_loss']:.3f}, {summary['tokens_per_s']:.0f} tokens/s, {summary['wall_s']:.1f} s"
            + (" (stopped early)" if summary["stopped_early"] else "")
        )


if __name__ == "__main__":
    run_stage(main)
