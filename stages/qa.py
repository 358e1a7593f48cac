"""qa@VARIANT stage: a model on the QA set (qa.path) -> its metrics and one prediction row per question.

    python stages/qa.py MODEL_DIR SPLIT_DIR METRICS PREDICTIONS

SPLIT_DIR's train/val/test.jsonl say which split each question's source article is in (the held-out headline).
"""

import sys
from pathlib import Path

from prunetune.config import run_stage, stage_args
from prunetune.jsonio import write_json, write_jsonl
from prunetune.models import load_model
from prunetune.params import DataParams, QaParams, load_section
from prunetune.qa import SPLITS, evaluate_qa, load_qa, split_membership, unknown_articles_note


def main() -> None:
    model_dir, split_dir, metrics_file, predictions_file = map(
        Path, stage_args("MODEL_DIR", "SPLIT_DIR", "METRICS", "PREDICTIONS")
    )
    cfg, date_string = load_section(QaParams), load_section(DataParams).chat_date
    questions = load_qa(cfg.path)
    membership = split_membership({split: split_dir / f"{split}.jsonl" for split in SPLITS})
    if note := unknown_articles_note(questions, membership):
        print(note, file=sys.stderr)
    model, tokenizer = load_model(model_dir, param=str(model_dir))
    metrics, records = evaluate_qa(model, tokenizer, questions, cfg, membership, date_string)
    write_json(metrics_file, metrics)
    write_jsonl(predictions_file, records)
    headline = f"{metrics['n_headline']} questions, {metrics['headline_set']}"
    print(f"qa {model_dir}: accuracy {metrics['accuracy']:.3f} on {headline}")


if __name__ == "__main__":
    run_stage(main)
