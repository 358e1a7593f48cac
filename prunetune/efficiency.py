"""Size and speed of a model: what pruning buys. Timings are medians of repeats after a warm-up."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import torch

from prunetune.models import count_parameters
from prunetune.pruning import decoder_layers


def model_size(model: Any, model_dir: str | Path) -> dict[str, float]:
    """Layers, parameters (tied weights once), parameters outside the embedding and head, and MB on disk."""
    params = count_parameters(model)
    embedding_ids = {id(p) for p in model.get_input_embeddings().parameters()}
    embedding_ids |= {id(p) for p in model.get_output_embeddings().parameters()}
    embedding = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values() if id(p) in embedding_ids)
    size_bytes = sum(f.stat().st_size for f in Path(model_dir).glob("*.safetensors"))
    return {
        "layers": len(decoder_layers(model)),
        "params": params,
        "non_embedding_params": params - embedding,
        "size_mb": size_bytes / 2**20,
    }


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def time_prefill_and_decode(model: Any, batch_size: int, prompt_tokens: int, new_tokens: int) -> tuple[float, float]:
    """Seconds for the prompt's forward pass and for new_tokens single-token steps on the KV cache."""
    device = model.device
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(10, model.config.vocab_size, (batch_size, prompt_tokens), generator=generator)
    input_ids = input_ids.to(device)
    _synchronize(device)
    started = time.perf_counter()
    output = model(input_ids=input_ids, use_cache=True)
    _synchronize(device)
    prefilled = time.perf_counter()
    cache, next_token = output.cache, output.logits[:, -1:].argmax(-1)
    for _ in range(new_tokens):
        output = model(input_ids=next_token, cache=cache, use_cache=True)
        cache, next_token = output.cache, output.logits[:, -1:].argmax(-1)
    _synchronize(device)
    return prefilled - started, time.perf_counter() - prefilled


def measure_speed(model: Any, cfg: dict[str, Any]) -> dict[str, float]:
    """Prefill latency (ms) and decode throughput (tokens/s) at batch 1 and at cfg['batch_size']."""
    speed: dict[str, float] = {}
    for label, batch_size in (("b1", 1), (f"b{cfg['batch_size']}", cfg["batch_size"])):
        time_prefill_and_decode(model, batch_size, cfg["prompt_tokens"], 2)  # warm-up
        runs = [
            time_prefill_and_decode(model, batch_size, cfg["prompt_tokens"], cfg["new_tokens"])
            for _ in range(cfg["repeats"])
        ]
        speed[f"prefill_ms_{label}"] = 1000 * statistics.median(prefill for prefill, _ in runs)
        speed[f"decode_tokens_per_s_{label}"] = statistics.median(
            batch_size * cfg["new_tokens"] / decode for _, decode in runs
        )
    return speed
