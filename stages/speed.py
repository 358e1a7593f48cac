"""speed@PAIR stage: a full model and its pruned copy, timed in turns -> metrics/speed/PAIR.json.

Both models run in one process, taking turns at every decode step, so their ratio is measured under the same
load; timed in separate eval stages minutes apart, two identical architectures differed by 40% on a shared CPU."""

import sys
from pathlib import Path

from prunetune.config import PrunetuneError, run_stage
from prunetune.efficiency import pruning_speed
from prunetune.jsonio import write_json
from prunetune.models import load_model
from prunetune.params import SpeedParams, load_section


def main() -> None:
    if len(sys.argv) != 4:
        raise PrunetuneError(f"usage: python {sys.argv[0]} PAIR FULL_MODEL_DIR PRUNED_MODEL_DIR")
    pair, full_dir, pruned_dir = sys.argv[1:]
    cfg = load_section(SpeedParams)
    full, _ = load_model(full_dir, param=full_dir)
    pruned, _ = load_model(pruned_dir, param=pruned_dir)
    result = pruning_speed(full, pruned, cfg)
    write_json(Path(f"metrics/speed/{pair}.json"), result)
    batched = f"b{cfg.batch_size}"
    print(
        f"speed@{pair}: {result['layers_full']} -> {result['layers_pruned']} layers; decode speedup "
        f"{result['decode_speedup_b1']:.3f} (b1), {result[f'decode_speedup_{batched}']:.3f} ({batched}); "
        f"ideal {result['ideal_speedup']:.3f}"
    )


if __name__ == "__main__":
    run_stage(main)
