"""prune stage: BASE_DIR -> OUT_DIR (a standalone HF model) + METRICS (every layer scored).

    python stages/prune.py BASE_DIR TRAIN_SPLIT SWEEP OUT_DIR METRICS

Calibration texts come from the train split only; with prune.method SWEEP_METHOD the depth and criterion are the
prune_sweep stage's choice (SWEEP, metrics/prune_sweep.json).
"""

import dataclasses
from pathlib import Path

from transformers import AutoConfig

from prunetune.config import run_stage, stage_args
from prunetune.jsonio import read_json, read_jsonl, write_json
from prunetune.models import check_causal_lm_dir, count_parameters, load_model, read_meta, save_model
from prunetune.params import SWEEP_METHOD, PruneParams, load_section
from prunetune.pruning import (
    calibration_texts,
    measure_layers,
    remove_layers,
    resolve_removed_layers,
)


def main() -> None:
    base_dir, train_split, sweep_file, out_dir, metrics_file = map(
        Path, stage_args("BASE_DIR", "TRAIN_SPLIT", "SWEEP", "OUT_DIR", "METRICS")
    )
    cfg = load_section(PruneParams)
    chosen_by_sweep = cfg.method == SWEEP_METHOD
    if chosen_by_sweep:
        chosen = read_json(sweep_file)["chosen"]
        cfg = dataclasses.replace(cfg, method=chosen["method"], n_layers=chosen["n_layers"])
    check_causal_lm_dir(base_dir, param=str(base_dir))
    layers_before = AutoConfig.from_pretrained(base_dir).num_hidden_layers
    cfg.check_layers(layers_before)
    texts = calibration_texts(read_jsonl(train_split), cfg)

    model, tokenizer = load_model(base_dir, param=str(base_dir))
    params_before = count_parameters(model)
    stats = measure_layers(model, tokenizer, texts, cfg.calibration_max_tokens, cfg.calibration_batch_size)
    removed_layers = resolve_removed_layers(cfg, layers_before, stats)
    remove_layers(model, removed_layers)
    params_after = count_parameters(model)
    save_model(model, tokenizer, out_dir, {**read_meta(base_dir), "removed_layers": removed_layers})
    metrics = {
        "method": cfg.method,
        "chosen_by_sweep": chosen_by_sweep,
        "removed_layers": removed_layers,
        "layers_before": layers_before,
        "layers_after": layers_before - len(removed_layers),
        "params_before": params_before,
        "params_after": params_after,
        "params_removed_fraction": 1 - params_after / params_before,
        "calibration_texts": len(texts),
        "calibration_tokens": stats.tokens,
        "layer_scores": stats.block_influence(),  # Block Influence of every original layer, whatever the method
    }
    if cfg.method == "angular":
        metrics["block_distances"] = stats.block_distances(cfg.n_layers)  # indexed by the block's first layer
    write_json(metrics_file, metrics)
    print(
        f"prune ({cfg.method}): removed layers {removed_layers}: {layers_before} -> {metrics['layers_after']} "
        f"layers, {params_before:,} -> {params_after:,} parameters ({stats.tokens:,} calibration tokens)"
    )


if __name__ == "__main__":
    run_stage(main)
