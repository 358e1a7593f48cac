"""finetune_full / finetune_pruned stage: one script, one code path; the stages differ only in their paths.

    python stages/finetune.py MODEL_DIR SPLIT_DIR OUT_DIR METRICS_DIR

LoRA-heals MODEL_DIR on SPLIT_DIR/train.jsonl (val.jsonl for evaluation and early stopping) into OUT_DIR, with the
dvclive curves and summary in METRICS_DIR; checkpoints of an unfinished run stay in scratch/finetune_<OUT_DIR name>.
With train.num_processes > 1 it relaunches itself under torchrun (DDP); rank 0 logs and writes.
"""

import os
import sys
from pathlib import Path

from prunetune.config import run_stage, stage_args
from prunetune.jsonio import read_jsonl
from prunetune.params import DataParams, LoraParams, TrainParams, load_section
from prunetune.training import finetune


def main() -> None:
    model_dir, split_dir, out_dir, metrics_dir = map(
        Path, stage_args("MODEL_DIR", "SPLIT_DIR", "OUT_DIR", "METRICS_DIR")
    )
    train_cfg, lora_cfg = load_section(TrainParams), load_section(LoraParams)
    date_string = load_section(DataParams).chat_date
    processes = train_cfg.num_processes
    if processes > 1 and "LOCAL_RANK" not in os.environ:
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
        os.execv(sys.executable, [*torchrun, *sys.argv])
    summary = finetune(
        model_dir=model_dir,
        lora_cfg=lora_cfg,
        train_cfg=train_cfg,
        train_examples=read_jsonl(split_dir / "train.jsonl"),
        val_examples=read_jsonl(split_dir / "val.jsonl"),
        out_dir=out_dir,
        metrics_dir=metrics_dir,
        scratch_dir=Path("scratch") / f"finetune_{out_dir.name}",
        date_string=date_string,
    )
    if summary:
        print(
            f"finetune -> {out_dir}: {summary['steps']} steps, val loss {summary['first_val_loss']:.3f} -> "
            f"best {summary['best_val_loss']:.3f}, {summary['tokens_per_s']:.0f} tokens/s, {summary['wall_s']:.1f} s"
            + (" (stopped early)" if summary["stopped_early"] else "")
        )


if __name__ == "__main__":
    run_stage(main)
