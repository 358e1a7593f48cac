"""prune_sweep stage: every depth x criterion of prune.sweep_* scored on the val split; the healed one chosen there.

    python stages/prune_sweep.py BASE_DIR TRAIN_SPLIT VAL_SPLIT METRICS REPORT

Layers are measured on train calibration texts, candidates scored on val answers: the test split is never read.
"""

from pathlib import Path

from prunetune.config import run_stage, stage_args
from prunetune.jsonio import read_jsonl, write_json
from prunetune.layersweep import report_markdown, run_sweep
from prunetune.models import load_model
from prunetune.params import DataParams, EvalParams, PruneParams, load_section
from prunetune.pruning import calibration_texts, measure_layers


def main() -> None:
    base_dir, train_split, val_split, metrics_file, report_file = map(
        Path, stage_args("BASE_DIR", "TRAIN_SPLIT", "VAL_SPLIT", "METRICS", "REPORT")
    )
    prune_cfg, eval_cfg = load_section(PruneParams), load_section(EvalParams)
    date_string = load_section(DataParams).chat_date
    texts = calibration_texts(read_jsonl(train_split), prune_cfg)
    model, tokenizer = load_model(base_dir, param=str(base_dir))
    prune_cfg.check_sweep(model.config.num_hidden_layers)
    stats = measure_layers(model, tokenizer, texts, prune_cfg.calibration_max_tokens, prune_cfg.calibration_batch_size)
    sweep = run_sweep(model, tokenizer, stats, read_jsonl(val_split), prune_cfg, eval_cfg, date_string)
    write_json(metrics_file, sweep)
    report_file.parent.mkdir(parents=True, exist_ok=True)
    report_file.write_text(report_markdown(sweep), encoding="utf-8")
    chosen = sweep["chosen"]
    print(
        f"prune_sweep: {len(sweep['candidates'])} candidates on {sweep['val_articles']} val articles; chosen "
        f"{chosen['method']} x {chosen['n_layers']} (layers {chosen['removed_layers']}, "
        f"val gap {chosen['val_gap']:+.4f})"
    )


if __name__ == "__main__":
    run_stage(main)
