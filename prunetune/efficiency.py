"""Size and speed of a model: what pruning buys. Timings are interquartile means after a warm-up."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import torch
from tqdm.auto import tqdm

from prunetune.models import count_parameters
from prunetune.params import SpeedParams, as_section
from prunetune.pruning import decoder_layers

T = TypeVar("T")


def model_size(model: Any, model_dir: str | Path) -> dict[str, float]:
    """Layers, parameters (tied weights once), parameters outside the embedding and head, and MB on disk."""
    params = count_parameters(model)
    embedding_ids = {id(p) for p in model.get_input_embeddings().parameters()}
    embedding_ids |= {id(p) for p in model.get_output_embeddings().parameters()}
    embedding = count_parameters(model, only=embedding_ids)
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


def interquartile_mean(values: list[float]) -> float:
    """The mean of the middle half: a shared machine's stalls lengthen a few steps, and those must not count."""
    ordered = sorted(values)
    cut = round(len(ordered) / 4)
    return statistics.fmean(ordered[cut : len(ordered) - cut])


Timings = dict[str, dict[str, dict[str, list[float]]]]  # batch label -> model -> "prefill"/"decode" -> seconds


def prefill(model: Any, input_ids: torch.Tensor) -> Any:
    """The prompt's forward pass, filling the KV cache; only the last position's logits, as generate keeps."""
    return model(input_ids=input_ids.to(model.device), use_cache=True, logits_to_keep=1)


def decode_step(model: Any, last: Any) -> Any:
    """One greedy step on the KV cache: pick the next token from the last output, run it."""
    return model(input_ids=last.logits[:, -1:].argmax(-1), cache=last.cache, use_cache=True)


@torch.no_grad()
def timed_turns(models: dict[str, Any], input_ids: torch.Tensor, new_tokens: int, first: int) -> dict[str, Any]:
    """One prompt through every model: the prefills, then new_tokens decode steps, the models taking turns at
    every step (order flipped each step) so that each step of one has a neighbour of the other under the same
    load. Returns each model's prefill seconds and per-step decode seconds."""
    names = list(models)
    outputs: dict[str, Any] = {}
    timings: dict[str, dict[str, list[float]]] = {name: {"prefill": [], "decode": []} for name in names}
    for step in range(-1, new_tokens):  # step -1 is the prefill
        for name in names if (first + step) % 2 else names[::-1]:
            model = models[name]
            if step < 0:
                kind, run = "prefill", partial(prefill, model, input_ids)
            else:
                kind, run = "decode", partial(decode_step, model, outputs[name])
            outputs[name], seconds = timed(run, model.device)
            timings[name][kind].append(seconds)
    return timings


def speed_runs(models: dict[str, Any], cfg: SpeedParams | dict[str, Any]) -> Timings:
    """Prefill and per-step decode seconds per batch size (b1 and b<cfg.batch_size>) and model, over
    cfg.repeats random prompts after one untimed warm-up pass. Models are timed in turns (timed_turns), so a
    ratio between two of them is taken under the same load."""
    cfg = as_section(SpeedParams, cfg)
    runs: Timings = {}
    for label, batch_size in (("b1", 1), (f"b{cfg.batch_size}", cfg.batch_size)):
        vocab_size = next(iter(models.values())).config.vocab_size
        runs[label] = {name: {"prefill": [], "decode": []} for name in models}
        turns = " / ".join(models)
        for repeat in tqdm(range(-1, cfg.repeats), desc=f"timing {turns} at {label}"):  # -1: the warm-up
            generator = torch.Generator().manual_seed(repeat + 1)
            input_ids = torch.randint(10, vocab_size, (batch_size, cfg.prompt_tokens), generator=generator)
            timings = timed_turns(models, input_ids, cfg.new_tokens, first=repeat)
            if repeat < 0:
                continue
            for name, timing in timings.items():
                for kind, seconds in timing.items():
                    runs[label][name][kind].extend(seconds)
    return runs


def summarize_runs(runs: Timings) -> dict[str, dict[str, float]]:
    """Prefill latency (ms) and decode throughput (tokens/s) per model and batch size, each from the
    interquartile mean of its timings; a label b<N> is batch size N."""
    speed: dict[str, dict[str, float]] = {}
    for label, per_model in runs.items():
        batch_size = int(label.removeprefix("b"))
        for name, timing in per_model.items():
            speed.setdefault(name, {})[f"prefill_ms_{label}"] = 1000 * interquartile_mean(timing["prefill"])
            speed[name][f"decode_tokens_per_s_{label}"] = batch_size / interquartile_mean(timing["decode"])
    return speed


def flops_per_token(config: Any, context: int) -> float:
    """Forward FLOPs for one token that attends to `context` positions: 2 per multiply-add of every decoder
    matmul and of the LM head (the tied embedding matrix, so the embedding is counted once), plus attention's
    scores and weighted sum; the embedding lookup itself does no arithmetic."""
    hidden, heads, kv_heads = config.hidden_size, config.num_attention_heads, config.num_key_value_heads
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    projections = hidden * heads * head_dim * 2 + hidden * kv_heads * head_dim * 2  # q, o and k, v
    mlp = 3 * hidden * config.intermediate_size  # gate, up, down
    attention = 2 * heads * head_dim * context  # q·k over the context, then the weighted sum of v
    per_layer = 2 * (projections + mlp + attention)
    return config.num_hidden_layers * per_layer + 2 * hidden * config.vocab_size


def ideal_speedup(full_config: Any, pruned_config: Any, context: int) -> float:
    """The speedup pruning would give if time followed FLOPs: the ratio of forward FLOPs per token."""
    return flops_per_token(full_config, context) / flops_per_token(pruned_config, context)


def pruning_speed(full: Any, pruned: Any, cfg: SpeedParams | dict[str, Any]) -> dict[str, Any]:
    """Prefill latency and decode throughput of a full model and its pruned copy, timed in turns, their speedups
    and the ideal speedup beside them. Decode attends to prompt_tokens + new_tokens/2 positions on average."""
    cfg = as_section(SpeedParams, cfg)
    speed = summarize_runs(speed_runs({"full": full, "pruned": pruned}, cfg))
    batched = f"b{cfg.batch_size}"
    ideal = ideal_speedup(full.config, pruned.config, cfg.prompt_tokens + cfg.new_tokens // 2)
    result: dict[str, Any] = {
        "layers_full": full.config.num_hidden_layers,
        "layers_pruned": pruned.config.num_hidden_layers,
        **cfg.to_dict(),  # prompt_tokens, new_tokens, batch_size, repeats
        "full": speed["full"],
        "pruned": speed["pruned"],
        "ideal_speedup": ideal,
        "ideal_prefill_speedup": ideal_speedup(full.config, pruned.config, cfg.prompt_tokens // 2),
    }
    for label in ("b1", batched):  # one key scheme: a figure at batch size N ends in _b<N>
        result[f"prefill_speedup_{label}"] = (
            speed["full"][f"prefill_ms_{label}"] / speed["pruned"][f"prefill_ms_{label}"]
        )
        result[f"decode_speedup_{label}"] = (
            speed["pruned"][f"decode_tokens_per_s_{label}"] / speed["full"][f"decode_tokens_per_s_{label}"]
        )
        result[f"decode_vs_ideal_{label}"] = result[f"decode_speedup_{label}"] / ideal
    return result
