"""prune stage: models/base -> models/pruned/ (a standalone HF model) + metrics/prune.json."""

from pathlib import Path

from prunetune.config import load_params, run_stage, section
from prunetune.data import write_json
from prunetune.models import count_parameters, load_model, read_meta, save_model
from prunetune.pruning import decoder_layers, remove_layers, resolve_removed_layers

BASE_DIR, OUT_DIR, METRICS = Path("models/base"), Path("models/pruned"), Path("metrics/prune.json")


def main() -> None:
    cfg = section(load_params(), "prune")
    model, tokenizer = load_model(BASE_DIR, param="models/base")
    layers_before, params_before = len(decoder_layers(model)), count_parameters(model)
    removed_layers = resolve_removed_layers(cfg, layers_before)
    remove_layers(model, removed_layers)
    params_after = count_parameters(model)
    save_model(model, tokenizer, OUT_DIR, {**read_meta(BASE_DIR), "removed_layers": removed_layers})
    metrics = {
        "method": cfg["method"],
        "removed_layers": removed_layers,
        "layers_before": layers_before,
        "layers_after": layers_before - len(removed_layers),
        "params_before": params_before,
        "params_after": params_after,
        "params_removed_fraction": 1 - params_after / params_before,
    }
    write_json(METRICS, metrics)
    print(
        f"prune: removed layers {removed_layers}: {layers_before} -> {metrics['layers_after']} layers, "
        f"{params_before:,} -> {params_after:,} parameters"
    )


if __name__ == "__main__":
    run_stage(main)
