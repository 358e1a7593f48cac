"""base stage: build the embedded tiny model, or pin a hub / local model, into models/base/."""

from pathlib import Path

from prunetune.chat import chat_date
from prunetune.config import load_params, require, run_stage, section
from prunetune.data import read_jsonl, write_json
from prunetune.models import DTYPES, is_hub_id, load_model, requested_dtype, resolve_hub_snapshot, save_model
from prunetune.tiny import build_tiny_base

OUT_DIR = Path("models/base")
METRICS = Path("metrics/base.json")


def main() -> None:
    params = load_params()
    cfg, date_string = section(params, "model"), chat_date(params)
    name, dtype = cfg.get("name"), requested_dtype(cfg)
    if name == "tiny":
        model, tokenizer, report = build_tiny_base(read_jsonl("data/processed/train.jsonl"), cfg["tiny"], date_string)
        meta = {"source": "tiny", "tiny": cfg["tiny"]}
    else:
        require(
            isinstance(name, str) and bool(name),
            "model.name",
            "must be 'tiny', a hub id or a local directory",
        )
        path, revision = resolve_hub_snapshot(name, cfg.get("revision")) if is_hub_id(name) else (Path(name), None)
        model, tokenizer = load_model(path, dtype=DTYPES[dtype], param="model.name")
        meta = {"source": name, "revision": revision}
        report = {"source": name, "revision": revision}
    if dtype != "auto":
        meta["dtype"] = dtype  # every later stage loads this model, and the ones made from it, in this dtype
    save_model(model, tokenizer, OUT_DIR, meta)
    write_json(METRICS, report)
    print(f"base: {name} -> {OUT_DIR} ({model.config.num_hidden_layers} layers)")


if __name__ == "__main__":
    run_stage(main)
