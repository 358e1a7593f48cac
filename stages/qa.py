"""qa@VARIANT stage: the variant's model on the QA set -> metrics/qa/VARIANT.json + predictions/qa_VARIANT.jsonl."""

import sys
from pathlib import Path

from prunetune.chat import chat_date
from prunetune.config import PrunetuneError, load_params, run_stage, section
from prunetune.data import write_json, write_jsonl
from prunetune.models import load_model
from prunetune.qa import SPLITS, check_qa_params, evaluate_qa, load_qa, split_membership


def main() -> None:
    if len(sys.argv) != 3:
        raise PrunetuneError(f"usage: python {sys.argv[0]} VARIANT MODEL_DIR")
    variant, model_dir = sys.argv[1], Path(sys.argv[2])
    params = load_params()
    cfg, date_string = section(params, "qa"), chat_date(params)
    check_qa_params(cfg)
    questions = load_qa(cfg["path"])
    membership = split_membership({split: f"data/processed/{split}.jsonl" for split in SPLITS})
    model, tokenizer = load_model(model_dir, param=str(model_dir))
    metrics, records = evaluate_qa(model, tokenizer, questions, cfg, membership, date_string)
    write_json(Path(f"metrics/qa/{variant}.json"), metrics)
    write_jsonl(Path(f"predictions/qa_{variant}.jsonl"), records)
    headline = f"{metrics['n_headline']} questions, {metrics['headline_set']}"
    print(f"qa@{variant}: accuracy {metrics['accuracy']:.3f} on {headline}")


if __name__ == "__main__":
    run_stage(main)
