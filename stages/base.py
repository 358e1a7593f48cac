"""base stage: build the embedded tiny model, or pin a hub / local model, into models/base/."""

from pathlib import Path

from prunetune.config import PrunetuneError, run_stage
from prunetune.jsonio import read_jsonl, write_json
from prunetune.models import is_hub_id, load_model, missing_local_dir, resolve_hub_snapshot, save_model
from prunetune.params import ModelParams, load_section
from prunetune.tiny import build_tiny_base

OUT_DIR = Path("models/base")
METRICS = Path("metrics/base.json")


def main() -> None:
    cfg = load_section(ModelParams)
    name = cfg.name
    if name == "tiny":
        model, tokenizer, report = build_tiny_base(read_jsonl("data/processed/train.jsonl"), cfg.tiny)
        meta = {"source": "tiny", "tiny": cfg.tiny.to_dict()}
    else:
        if reason := missing_local_dir(name):
            raise PrunetuneError(f"model.name: {name}: local model directory not found ({reason}); fix the path")
        path, revision = resolve_hub_snapshot(name, cfg.revision) if is_hub_id(name) else (Path(name), None)
        model, tokenizer = load_model(path, param="model.name")
        meta = {"source": name, "revision": revision}
        report = {"source": name, "revision": revision}
    save_model(model, tokenizer, OUT_DIR, meta)
    write_json(METRICS, report)
    print(f"base: {name} -> {OUT_DIR} ({model.config.num_hidden_layers} layers)")


if __name__ == "__main__":
    run_stage(main)
