"""Size and speed of a model: what pruning buys. Timings are medians of repeats after a warm-up."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch

from prunetune.models import count_parameters
from prunetune.pruning import decoder_layers

T = TypeVar("T")


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


def timed(fn: Callable[[], T], device: torch.device) -> tuple[T, float]:
    """fn's result and its seconds: CUDA events on a GPU (the device's own clock), perf_counter elsewhere."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        result = fn()
        end.record()
        end.synchronize()
        return result, start.elapsed_time(end) / 1000
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


@torch.no_grad()
def time_prefill_and_decode(model: Any, batch_size: int, prompt_tokens: int, new_tokens: int) -> tuple[float, float]:
    """Seconds for the prompt's forward pass and for new_tokens single-token steps on the KV cache."""
    device = model.device
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(10, model.config.vocab_size, (batch_size, prompt_tokens), generator=generator)
    input_ids = input_ids.to(device)
    output, prefill_s = timed(lambda: model(input_ids=input_ids, use_cache=True, logits_to_keep=1), device)

    def decode() -> None:
        step = output
        for _ in range(new_tokens):
            next_token = step.logits[:, -1:].argmax(-1)
            step = model(input_ids=next_token, cache=step.cache, use_cache=True)

    _, decode_s = timed(decode, device)
    return prefill_s, decode_s


def speed_runs(models: dict[str, Any], cfg: dict[str, Any]) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """Per batch size (b1 and b<cfg['batch_size']>) and model: (prefill, decode) seconds of each repeat.

    The models take turns within every repeat, in an order reversed every other repeat (A B, B A, ...), so a
    ratio between two of them is measured under the same load and the turn order cancels out."""
    runs: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for label, batch_size in (("b1", 1), (f"b{cfg['batch_size']}", cfg["batch_size"])):
        for model in models.values():
            time_prefill_and_decode(model, batch_size, cfg["prompt_tokens"], cfg["new_tokens"])  # warm-up
        runs[label] = {name: [] for name in models}
        for repeat in range(cfg["repeats"]):
            names = list(models) if repeat % 2 == 0 else list(reversed(models))
            for name in names:
                timing = time_prefill_and_decode(models[name], batch_size, cfg["prompt_tokens"], cfg["new_tokens"])
                runs[label][name].append(timing)
    return runs


def summarize_runs(runs: dict[str, dict[str, list[tuple[float, float]]]], cfg: dict[str, Any]) -> dict[str, Any]:
    """Median prefill latency (ms) and decode throughput (tokens/s) per model and batch size."""
    speed: dict[str, dict[str, float]] = {}
    for label, per_model in runs.items():
        batch_size = 1 if label == "b1" else cfg["batch_size"]
        for name, timings in per_model.items():
            speed.setdefault(name, {})[f"prefill_ms_{label}"] = 1000 * statistics.median(p for p, _ in timings)
            speed[name][f"decode_tokens_per_s_{label}"] = statistics.median(
                batch_size * cfg["new_tokens"] / decode for _, decode in timings
            )
    return speed


def compare_speed(models: dict[str, Any], cfg: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Prefill latency (ms) and decode throughput (tokens/s) of each model at batch 1 and at cfg['batch_size']."""
    return summarize_runs(speed_runs(models, cfg), cfg)


def measure_speed(model: Any, cfg: dict[str, Any]) -> dict[str, float]:
    """Prefill latency (ms) and decode throughput (tokens/s) at batch 1 and at cfg['batch_size']."""
    return compare_speed({"model": model}, cfg)["model"]
