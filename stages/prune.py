"""prune stage: models/base -> models/pruned/ (a standalone HF model) + metrics/prune.json (every layer scored)."""

from pathlib import Path

from transformers import AutoConfig

from prunetune.config import run_stage
from prunetune.jsonio import read_jsonl, write_json
from prunetune.models import check_causal_lm_dir, count_parameters, load_model, read_meta, save_model
from prunetune.params import PruneParams, load_section
from prunetune.pruning import (
    calibration_texts,
    measure_layers,
    remove_layers,
    resolve_removed_layers,
)

BASE_DIR, OUT_DIR, METRICS = Path("models/base"), Path("models/pruned"), Path("metrics/prune.json")
TRAIN_SPLIT = Path("data/processed/train.jsonl")  # calibration texts come from the train split only


def main() -> None:
    cfg = load_section(PruneParams)
    check_causal_lm_dir(BASE_DIR, param="models/base")
    layers_before = AutoConfig.from_pretrained(BASE_DIR).num_hidden_layers
    cfg.check_layers(layers_before)
    texts = calibration_texts(read_jsonl(TRAIN_SPLIT), cfg)

    model, tokenizer = load_model(BASE_DIR, param="models/base")
    params_before = count_parameters(model)
    stats = measure_layers(model, tokenizer, texts, cfg.calibration_max_tokens, cfg.calibration_batch_size)
    removed_layers = resolve_removed_layers(cfg, layers_before, stats)
    remove_layers(model, removed_layers)
    params_after = count_parameters(model)
    save_model(model, tokenizer, OUT_DIR, {**read_meta(BASE_DIR), "removed_layers": removed_layers})
    metrics = {
        "method": cfg.method,
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
    write_json(METRICS, metrics)
    print(
        f"prune ({cfg.method}): removed layers {removed_layers}: {layers_before} -> {metrics['layers_after']} "
        f"layers, {params_before:,} -> {params_after:,} parameters ({stats.tokens:,} calibration tokens)"
    )


if __name__ == "__main__":
    run_stage(main)
