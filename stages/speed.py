"""speed@PAIR stage: a full model and its pruned copy, timed in turns -> METRICS.

    python stages/speed.py FULL_MODEL_DIR PRUNED_MODEL_DIR METRICS

Both models run in one process, taking turns at every decode step, so their ratio is measured under the same
load; timed in separate eval stages minutes apart, two identical architectures differed by 40% on a shared CPU."""

from pathlib import Path

from transformers import AutoConfig

from prunetune.config import PrunetuneError, run_stage, stage_args
from prunetune.efficiency import pruning_speed
from prunetune.jsonio import write_json
from prunetune.models import check_causal_lm_dir, load_model
from prunetune.params import SpeedParams, load_section


def main() -> None:
    full_dir, pruned_dir, metrics_file = map(Path, stage_args("FULL_MODEL_DIR", "PRUNED_MODEL_DIR", "METRICS"))
    cfg = load_section(SpeedParams)
    for model_dir in (full_dir, pruned_dir):
        check_causal_lm_dir(model_dir, param=str(model_dir))
    layers_full = AutoConfig.from_pretrained(full_dir).num_hidden_layers
    layers_pruned = AutoConfig.from_pretrained(pruned_dir).num_hidden_layers
    if layers_pruned > layers_full:  # checked before either model is loaded
        raise PrunetuneError(
            f"{pruned_dir} has {layers_pruned} layers, more than {full_dir}'s {layers_full}: the arguments are "
            "FULL_MODEL_DIR PRUNED_MODEL_DIR, in that order"
        )
    full, _ = load_model(full_dir, param=str(full_dir))
    pruned, _ = load_model(pruned_dir, param=str(pruned_dir))
    result = pruning_speed(full, pruned, cfg)
    write_json(metrics_file, result)
    batched = f"b{cfg.batch_size}"
    print(
        f"speed {full_dir} / {pruned_dir}: {result['layers_full']} -> {result['layers_pruned']} layers; decode speedup "
        f"{result['decode_speedup_b1']:.3f} (b1), {result[f'decode_speedup_{batched}']:.3f} ({batched}); "
        f"ideal {result['ideal_speedup']:.3f}"
    )


if __name__ == "__main__":
    run_stage(main)
