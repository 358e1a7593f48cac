"""base stage: build the embedded tiny model, convert a GGUF file, or pin a hub / local model, into OUT_DIR
(models/base).

python stages/base.py TRAIN_SPLIT OUT_DIR METRICS
"""

from pathlib import Path

from prunetune import gguf
from prunetune.config import PrunetuneError, run_stage, stage_args
from prunetune.jsonio import read_jsonl, write_json
from prunetune.models import DTYPES, is_hub_id, load_model, missing_local_dir, resolve_hub_snapshot, save_model
from prunetune.params import DataParams, ModelParams, load_section
from prunetune.tiny import build_tiny_base


def main() -> None:
    train_split, out_dir, metrics_file = map(Path, stage_args("TRAIN_SPLIT", "OUT_DIR", "METRICS"))
    cfg, date_string = load_section(ModelParams), load_section(DataParams).chat_date
    name = cfg.name
    if name == "tiny":
        model, tokenizer, report = build_tiny_base(read_jsonl(train_split), cfg.tiny, date_string)
        meta = {"source": "tiny", "tiny": cfg.tiny.to_dict()}
    elif gguf.is_gguf_name(name):
        model, tokenizer, report = gguf.convert_with_provenance(name)
        meta = {"source": name, "gguf": report["gguf"]}
    else:
        if reason := missing_local_dir(name):
            raise PrunetuneError(f"model.name: {name}: local model directory not found ({reason}); fix the path")
        path, revision = resolve_hub_snapshot(name, cfg.revision) if is_hub_id(name) else (Path(name), None)
        model, tokenizer = load_model(path, dtype=DTYPES[cfg.dtype], param="model.name")
        meta = {"source": name, "revision": revision}
        report = {"source": name, "revision": revision}
    if cfg.dtype != "auto":
        meta["dtype"] = cfg.dtype  # every later stage loads this model, and the ones made from it, in this dtype
    save_model(model, tokenizer, out_dir, meta)
    write_json(metrics_file, report)
    print(f"base: {name} -> {out_dir} ({model.config.num_hidden_layers} layers)")


if __name__ == "__main__":
    run_stage(main)
