"""Does removing the last layer cost the tiny base perplexity? A 2-minute probe, instead of a 12-minute `dvc repro`.

Builds the tiny base from data/processed/train.jsonl with params.yaml's model.tiny, overridden by --set, then scores
the val split's answers with the full model and with its last layer removed: per-task and pooled answer perplexity,
the article text's perplexity, each layer's Block Influence, and the pooled gap with a 95% article bootstrap. Used
to choose the default's base (see the notes on issue #13); the pipeline's own figures come from `dvc repro`.

    .venv/bin/python scripts/prune_gap_probe.py --set seed=1 --set instruction_warmup=0.25
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import numpy as np
import yaml

from prunetune.chat import tokenize_chat
from prunetune.config import PrunetuneError, run_stage
from prunetune.data import article_texts
from prunetune.generation import completion_nll
from prunetune.jsonio import read_jsonl
from prunetune.params import ModelParams, PruneParams, TinyParams, as_section, load_section
from prunetune.pruning import calibration_texts, measure_layers, remove_layers
from prunetune.stats import paired_bootstrap_stat, perplexity
from prunetune.tiny import build_tiny_base, stream_perplexity, token_stream


def answer_perplexities(model, tokenizer, examples: list[dict]) -> tuple[dict[str, float], list[tuple[float, int]]]:
    nll = completion_nll(model, [tokenize_chat(tokenizer, e["messages"]) for e in examples], batch_size=16)
    out = {}
    for task in sorted({e["task"] for e in examples}):
        rows = [nll[i] for i, e in enumerate(examples) if e["task"] == task]
        out[task] = perplexity([s for s, _ in rows], [n for _, n in rows])
    out["pooled"] = perplexity([s for s, _ in nll], [n for _, n in nll])
    out["article_text"] = stream_perplexity(model, token_stream(tokenizer, article_texts(examples)), 128)
    return out, nll


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a model.tiny override")
    parser.add_argument("--data", type=Path, default=Path("data/processed"))
    args = parser.parse_args()
    if bad := [item for item in args.set if "=" not in item]:
        raise PrunetuneError(f"--set {bad[0]}: give KEY=VALUE, a model.tiny key and its value")
    overrides = {key: yaml.safe_load(value) for key, value in (item.split("=", 1) for item in args.set)}
    cfg = as_section(TinyParams, {**load_section(ModelParams).tiny.to_dict(), **overrides})  # checks every key
    train, val = read_jsonl(args.data / "train.jsonl"), read_jsonl(args.data / "val.jsonl")

    model, tokenizer, report = build_tiny_base(train, cfg)
    stats = measure_layers(model, tokenizer, calibration_texts(train, load_section(PruneParams)), 128, 8)
    full, full_nll = answer_perplexities(model, tokenizer, val)
    pruned_model = remove_layers(copy.deepcopy(model), [len(model.model.layers) - 1])
    pruned, pruned_nll = answer_perplexities(pruned_model, tokenizer, val)

    tokens = np.array([n for _, n in full_nll], dtype=np.float64)

    def pooled(nll: list[tuple[float, int]]):
        sums = np.array([s for s, _ in nll], dtype=np.float64)
        return lambda idx: perplexity(sums[idx], tokens[idx])

    articles = [e["article_id"] for e in val]
    gap = paired_bootstrap_stat(len(val), pooled(pruned_nll), pooled(full_nll), 1000, 0, clusters=articles)
    print(
        json.dumps(
            {
                "overrides": overrides,
                "text_loss_last": report["text_loss_last"],
                "instruction_loss_last": report["instruction_loss_last"],
                "block_influence": [round(x, 3) for x in stats.block_influence()],
                "full": full,
                "pruned": pruned,
                "pooled_gap": gap["diff"],
                "pooled_gap_ci": gap["ci"],
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    run_stage(main)
