"""compare stage: the four variants' metrics and predictions -> the comparison's metrics and Markdown report.

    python stages/compare.py EVAL_DIR QA_DIR PREDICTIONS_DIR METRICS REPORT

Reads EVAL_DIR/VARIANT.json, QA_DIR/VARIANT.json, PREDICTIONS_DIR/VARIANT.jsonl and PREDICTIONS_DIR/qa_VARIANT.jsonl
(the eval and qa stages' outputs) for every variant.
"""

from pathlib import Path

from prunetune.comparison import recompute, significant_columns
from prunetune.config import run_stage, stage_args
from prunetune.jsonio import write_json
from prunetune.params import EvalParams, load_section


def main() -> None:
    names = ("EVAL_DIR", "QA_DIR", "PREDICTIONS_DIR", "METRICS", "REPORT")
    eval_dir, qa_dir, predictions_dir, metrics_file, report = map(Path, stage_args(*names))
    cfg = load_section(EvalParams)
    comparison, markdown = recompute(
        eval_dir, qa_dir, predictions_dir, cfg.bootstrap_resamples, cfg.seed, cfg.ci_method
    )
    write_json(metrics_file, comparison)
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(markdown)
    for pair, columns in significant_columns(comparison).items():
        print(f"compare: {pair.replace('-', ' - ')}: Holm-significant for {', '.join(columns) or 'no metric'}")


if __name__ == "__main__":
    run_stage(main)
