"""What `prunetune bench` runs on: the device's peak FLOP/s, the model pair (the pipeline's, or one built with random
weights in Llama-3.2-1B's shape or params.yaml's tiny shape), and the splits (the split stage's logic in memory
when data/processed is absent)."""

from __future__ import annotations

import copy
import platform
import statistics
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from prunetune.config import PrunetuneError
from prunetune.efficiency import timed
from prunetune.jsonio import read_jsonl
from prunetune.params import MEASURED_METHODS
from prunetune.pruning import decoder_layers, remove_layers, resolve_removed_layers
from prunetune.tiny import LLAMA3_CONTEXT, LLAMA3_ROPE, build_model, train_tokenizer

# Llama-3.2-1B's exact shape (its config.json), built here with random weights: nothing is downloaded.
LLAMA_3_2_1B = {
    "vocab_size": 128256,
    "hidden_size": 2048,
    "intermediate_size": 8192,
    "num_hidden_layers": 16,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 64,
    "max_position_embeddings": LLAMA3_CONTEXT,
    "rms_norm_eps": 1e-5,
    "tie_word_embeddings": True,
    "rope_parameters": dict(LLAMA3_ROPE),
    "bos_token_id": 128000,
    "eos_token_id": [128001, 128008, 128009],
}
ARCHS = ("tiny", "llama-3.2-1b")

# Dense bf16 tensor-core peaks from the vendors' data sheets (FLOP/s); other devices use a measured matmul.
NOMINAL_PEAK_FLOPS = {"H200": 989e12, "H100 PCIe": 756e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12}


# ---------------------------------------------------------------- FLOPs and peaks


def measured_peak_flops(device: torch.device, dtype: torch.dtype) -> float:
    """FLOP/s of a large square matmul in the model's dtype: the practical peak where no data sheet applies."""
    size = 8192 if device.type == "cuda" else 1024
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(2):
        torch.mm(a, b)
    runs = [timed(lambda: torch.mm(a, b), device)[1] for _ in range(5)]
    return 2 * size**3 / statistics.median(runs)


def peak_flops(device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    """The peak MFU is taken against: the data-sheet figure for a known GPU in bf16, else a measured matmul."""
    measured = measured_peak_flops(device, dtype)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    nominal = next((f for key, f in NOMINAL_PEAK_FLOPS.items() if key in name), None)
    if device.type == "cuda" and dtype == torch.bfloat16 and nominal:
        return {"device_name": name, "peak_tflops": nominal / 1e12, "peak_source": "data sheet, dense bf16",
                "measured_matmul_tflops": measured / 1e12}  # fmt: skip
    return {"device_name": name, "peak_tflops": measured / 1e12, "peak_source": "measured matmul",
            "measured_matmul_tflops": measured / 1e12}  # fmt: skip


# ---------------------------------------------------------------- models and data


def load_splits(params: dict[str, Any], pipeline: bool = True) -> dict[str, list[dict[str, Any]]]:
    """The pipeline's splits from data/processed (when `pipeline`: the params are params.yaml's), or the split stage's
    logic run in memory on the params' data section when they are absent or another config is benchmarked."""
    paths = {name: Path(f"data/processed/{name}.jsonl") for name in ("train", "val", "test")}
    if pipeline and all(path.is_file() for path in paths.values()):
        return {name: read_jsonl(path) for name, path in paths.items()}
    from prunetune.data import prepare_corpus

    return prepare_corpus(params["data"])[0]


def _removed_layers(params: dict[str, Any], num_layers: int) -> list[int]:
    prune = params["prune"]
    if prune.method in MEASURED_METHODS:  # needs a calibration pass: the bench drops the last layer instead
        prune = replace(prune, method="last")
    prune.check_layers(num_layers)
    return resolve_removed_layers(prune, num_layers)


def _build_tokenizer(train_examples: list[dict[str, Any]], params: dict[str, Any]) -> Any:
    texts = [message["content"] for example in train_examples for message in example["messages"]]
    return train_tokenizer(texts, params["model"].tiny.vocab_size)


def check_arch(arch: str, random_init: bool) -> None:
    if arch not in ARCHS:
        raise PrunetuneError(f"bench --arch: must be one of {', '.join(ARCHS)}, got {arch!r}")
    if arch != "tiny" and not random_init:
        raise PrunetuneError(f"bench --arch {arch}: builds the shape only; add --random-init (nothing is downloaded)")


def build_models(
    arch: str, random_init: bool, params: dict[str, Any], splits: dict[str, list[dict[str, Any]]], device: torch.device
) -> tuple[Any, Any, Any, dict[str, Any]]:
    """The full model, the pruned model, a tokenizer, and a record of where they came from."""
    from transformers import AutoTokenizer, GenerationConfig, LlamaConfig, LlamaForCausalLM

    from prunetune.models import load_model, pick_dtype, read_meta

    check_arch(arch, random_init)
    dtype = pick_dtype(device)
    base, pruned_dir = Path("models/base"), Path("models/pruned")
    if (
        arch == "tiny"
        and not random_init
        and (base / "config.json").is_file()
        and (pruned_dir / "config.json").is_file()
    ):
        full, tokenizer = load_model(base, device=device, param="models/base")
        pruned, _ = load_model(pruned_dir, device=device, param="models/pruned")
        removed = read_meta(pruned_dir).get("removed_layers")
        origin = {"source": "models/base and models/pruned", "removed_layers": removed, "pipeline_models": True}
        return full, pruned, tokenizer, origin

    have_tokenizer = (base / "tokenizer.json").is_file() and (base / "config.json").is_file()
    tokenizer = AutoTokenizer.from_pretrained(base) if have_tokenizer else _build_tokenizer(splits["train"], params)
    tokenizer_source = "models/base's tokenizer" if have_tokenizer else "a tokenizer trained on the train split"
    if arch == "tiny":
        full = build_model(tokenizer, params["model"].tiny)
        source = f"tiny, random init from params.yaml model.tiny, {tokenizer_source}"
    else:
        torch.manual_seed(0)
        config = LlamaConfig(**LLAMA_3_2_1B, pad_token_id=tokenizer.pad_token_id)
        with torch.device(device):
            full = LlamaForCausalLM(config)
        full.generation_config = GenerationConfig(eos_token_id=config.eos_token_id, do_sample=False)
        source = f"{arch} shape, random init, prompts tokenized by {tokenizer_source}"
    full = full.to(device=device, dtype=dtype).eval()
    removed = _removed_layers(params, len(decoder_layers(full)))
    pruned = remove_layers(copy.deepcopy(full), removed).eval()
    return full, pruned, tokenizer, {"source": source, "removed_layers": removed, "pipeline_models": False}


FT_FULL = Path("models/ft_full")


def generation_model(full: Any, origin: dict[str, Any], device: torch.device) -> tuple[Any, str]:
    """The model generation is timed on: the pipeline's fine-tuned full variant when it exists (eval spends most of
    its generation on fine-tuned models, whose answers are as long as the study's), else the full model."""
    from prunetune.models import load_model

    if origin["pipeline_models"] and (FT_FULL / "config.json").is_file():
        return load_model(FT_FULL, device=device, param=str(FT_FULL))[0], str(FT_FULL)
    return full, "models/base" if origin["pipeline_models"] else "the full model (random init)"


def machine() -> dict[str, Any]:
    """What a report must say about where it was measured: CPU model and cores, the date, the commit."""
    import datetime
    import os
    import subprocess

    cpu = platform.processor()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                    if line.startswith("model name")), cpu)  # fmt: skip

    def git(*args: str) -> str:
        try:
            done = subprocess.run(["git", *args], capture_output=True, text=True, check=False)
        except OSError:  # no git on this machine (a copy of the tree, measured elsewhere)
            return ""
        return done.stdout.strip() if done.returncode == 0 else ""

    return {
        "cpu_model": cpu or "unknown",
        "cores": os.cpu_count(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": git("rev-parse", "--short", "HEAD") or os.environ.get("PRUNETUNE_COMMIT", "unknown"),
        "uncommitted_changes": bool(git("status", "--porcelain", "--untracked-files=no")),
    }
