"""eval@VARIANT stage: the variant's model on the test split -> metrics/eval/VARIANT.json + predictions."""

import sys
from pathlib import Path

from prunetune.chat import chat_date
from prunetune.config import PrunetuneError, load_params, run_stage, section
from prunetune.data import read_jsonl, write_json, write_jsonl
from prunetune.efficiency import model_size
from prunetune.evaluation import check_eval_params, evaluate
from prunetune.metrics import check_bertscore_model
from prunetune.models import load_model


def main() -> None:
    if len(sys.argv) != 3:
        raise PrunetuneError(f"usage: python {sys.argv[0]} VARIANT MODEL_DIR")
    variant, model_dir = sys.argv[1], Path(sys.argv[2])
    params = load_params()
    cfg, date_string = section(params, "eval"), chat_date(params)
    check_eval_params(cfg)
    test_examples = read_jsonl("data/processed/test.jsonl")
    check_bertscore_model(cfg["bertscore_model"])
    model, tokenizer = load_model(model_dir, param=str(model_dir))
    metrics, predictions, counts = evaluate(
        model, tokenizer, test_examples, read_jsonl("data/processed/train.jsonl"), cfg, date_string
    )
    metrics["efficiency"] = model_size(model, model_dir)  # speed: the speed@PAIR stages
    write_json(Path(f"metrics/eval/{variant}.json"), metrics)
    write_json(Path(f"reports/eval/{variant}.json"), counts)
    write_jsonl(Path(f"predictions/{variant}.jsonl"), predictions)
    hits = ", ".join(f"{task} {n}/{counts['examples'][task]}" for task, n in counts["hit_max_new_tokens"].items())
    print(f"eval@{variant}: perplexity {metrics['perplexity']:.2f}; generations that hit max_new_tokens: {hits}")


if __name__ == "__main__":
    run_stage(main)
