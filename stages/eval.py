"""eval@VARIANT stage: a model on the test split -> its metrics, per-example predictions and generation counts.

    python stages/eval.py MODEL_DIR SPLIT_DIR METRICS PREDICTIONS REPORT

The test split is SPLIT_DIR/test.jsonl; the train split (SPLIT_DIR/train.jsonl) gives the majority-type baseline.
"""

from pathlib import Path

from prunetune.config import run_stage, stage_args
from prunetune.efficiency import model_size
from prunetune.evaluation import evaluate
from prunetune.jsonio import read_jsonl, write_json, write_jsonl
from prunetune.metrics import check_bertscore_model
from prunetune.models import load_model
from prunetune.params import DataParams, EvalParams, load_section


def main() -> None:
    names = ("MODEL_DIR", "SPLIT_DIR", "METRICS", "PREDICTIONS", "REPORT")
    model_dir, split_dir, metrics_file, predictions_file, report_file = map(Path, stage_args(*names))
    cfg, date_string = load_section(EvalParams), load_section(DataParams).chat_date
    test_examples = read_jsonl(split_dir / "test.jsonl")
    check_bertscore_model(cfg.bertscore_model)
    model, tokenizer = load_model(model_dir, param=str(model_dir))
    metrics, predictions, counts = evaluate(
        model, tokenizer, test_examples, read_jsonl(split_dir / "train.jsonl"), cfg, date_string
    )
    metrics["efficiency"] = model_size(model, model_dir)  # speed: the speed@PAIR stages
    write_json(metrics_file, metrics)
    write_json(report_file, counts)
    write_jsonl(predictions_file, predictions)
    hits = ", ".join(f"{task} {n}/{counts['examples'][task]}" for task, n in counts["hit_max_new_tokens"].items())
    print(f"eval {model_dir}: perplexity {metrics['perplexity']:.2f}; generations that hit max_new_tokens: {hits}")


if __name__ == "__main__":
    run_stage(main)
