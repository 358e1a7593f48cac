"""`prunetune bench`: the speed claims of the study, measured side by side in one run.

Four sections, each measured after a warm-up, every ratio taken from turns in the same run: medians over repeats,
except pruning's per-step timings (interquartile means, efficiency.timed_turns):
- generation: the eval stage's batched greedy decoding against one-at-a-time decoding, on test-split prompts;
- pruning: the full and the pruned model's prefill latency and decode throughput, beside the ideal speedup
  (the ratio of forward FLOPs per token);
- training: the finetune stage's batching (length-grouped) against naive random batching: padding and tokens/s;
- hardware: the peak the model FLOPs utilisation (MFU) figures are taken against.

Models: the pipeline's models/base and models/pruned when both exist (the models the study measures); otherwise,
or with --random-init, a freshly built model of the chosen --arch with random weights, pruned by params.yaml's
prune section (a method that needs calibration falls back to dropping the last layer). Generation is timed on
models/ft_full when it exists (the model whose answers are as long as the study's), else on the full model, in two
regimes: as eval runs it (end tokens stop a prompt) and at fixed length (every prompt decodes max_new_tokens).
"""

from __future__ import annotations

import resource
from collections.abc import Callable
from dataclasses import replace
from importlib.metadata import version
from pathlib import Path
from typing import Any

import torch

from prunetune.benchsections import (
    REGIMES,
    bench_generation,
    bench_prompts,
    bench_pruning,
    bench_training,
    training_loaders,
)
from prunetune.benchsetup import build_models, check_arch, generation_model, load_splits, machine, peak_flops
from prunetune.config import PrunetuneError
from prunetune.models import count_parameters
from prunetune.params import load_all

# How much work each mode does. `smoke` is a real-size model on a CPU: it checks the command, not the figures.
MODES: dict[str, dict[str, Any]] = {
    "full": {"prompts_per_task": None, "gen_repeats": 5, "speed_repeats": 41, "new_tokens": 32, "train_steps": 12},
    "quick": {"prompts_per_task": None, "gen_repeats": 3, "speed_repeats": 21, "new_tokens": 32, "train_steps": 6},
    "smoke": {"prompts_per_task": 2, "gen_repeats": 1, "speed_repeats": 1, "new_tokens": 2, "train_steps": 1},
}
SECTIONS = ("generation", "pruning", "training")
SMOKE_LIMITS = {"max_new_tokens": 3, "prompt_tokens": 16, "batch_size": 2, "train_batch_size": 2}

# ---------------------------------------------------------------- the whole benchmark


def _memory_mb(device: torch.device) -> float:
    """The memory high-water mark: the GPU's allocated peak, or this process's peak resident set on a CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def run_bench(
    arch: str = "tiny",
    random_init: bool = False,
    quick: bool = False,
    device_name: str | None = None,
    batch_size: int | None = None,
    prompts_per_task: int | None = None,
    threads: int | None = None,
    params_path: str = "params.yaml",
    regimes: tuple[str, ...] = tuple(REGIMES),
    gen_repeats: int | None = None,
    on_section: Callable[[dict[str, Any]], None] | None = None,
    sections: tuple[str, ...] = SECTIONS,
) -> dict[str, Any]:
    """Every section on one model pair, in one process; returns the figures as a nested dict. regimes: which
    generation regimes (REGIMES) to time; gen_repeats: generation passes of each kind (default: the mode's);
    on_section: called with the figures so far after each section (a run cut off keeps what it measured);
    sections: which of SECTIONS to measure."""
    done = on_section or (lambda result: None)
    from prunetune.models import pick_device, pick_dtype

    check_arch(arch, random_init)
    for option, value in (
        ("--threads", threads),
        ("--batch-size", batch_size),
        ("--prompts-per-task", prompts_per_task),
        ("--gen-repeats", gen_repeats),
    ):
        if value is not None and value < 1:
            raise PrunetuneError(f"bench {option}: must be >= 1, got {value}")
    if threads is not None:
        torch.set_num_threads(threads)  # 1 on a shared CPU: OpenMP threads wait on each other when a core is taken
    params = load_all(params_path)
    try:
        device = torch.device(device_name) if device_name else pick_device()
    except RuntimeError:  # torch's own message lists every device type it knows
        raise PrunetuneError(f"bench --device {device_name}: not a device; give cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise PrunetuneError("bench --device cuda: no CUDA device is available here")
    mode = "smoke" if arch != "tiny" and device.type == "cpu" else "quick" if quick else "full"
    settings = dict(MODES[mode])
    if prompts_per_task is not None:
        settings["prompts_per_task"] = prompts_per_task
    if gen_repeats is not None:
        settings["gen_repeats"] = gen_repeats
    if not sections or any(section not in SECTIONS for section in sections):
        raise PrunetuneError(f"bench --section: must be among {', '.join(SECTIONS)}, got {', '.join(sections)}")
    unknown = [regime for regime in regimes if regime not in REGIMES]
    if unknown or not regimes:
        raise PrunetuneError(f"bench --regime: must be among {', '.join(REGIMES)}, got {', '.join(unknown) or 'none'}")
    eval_cfg = params["eval"]
    limits = eval_cfg.max_new_tokens.to_dict()
    speed_cfg = replace(params["speed"], new_tokens=settings["new_tokens"], repeats=settings["speed_repeats"])
    if mode == "smoke":
        limits = {task: min(n, SMOKE_LIMITS["max_new_tokens"]) for task, n in limits.items()}
        speed_cfg = replace(
            speed_cfg, prompt_tokens=SMOKE_LIMITS["prompt_tokens"], batch_size=SMOKE_LIMITS["batch_size"]
        )
        params["train"] = replace(params["train"], batch_size=SMOKE_LIMITS["train_batch_size"])
    gen_batch = batch_size or eval_cfg.batch_size

    splits = load_splits(params, pipeline=Path(params_path).resolve() == Path("params.yaml").resolve())
    full, pruned, tokenizer, origin = build_models(arch, random_init, params, splits, device)
    dtype = pick_dtype(device)
    hardware = peak_flops(device, dtype)
    result: dict[str, Any] = {
        "setup": {
            "arch": arch,
            "random_init": random_init,
            "mode": mode,
            **origin,
            "device": str(device),
            "device_name": hardware.pop("device_name"),
            "dtype": str(dtype).removeprefix("torch."),
            "threads": torch.get_num_threads(),
            "params_full": count_parameters(full),
            "params": params_path,
            "machine": machine(),
            "versions": {package: version(package) for package in ("torch", "transformers", "trl", "peft")},
        },
        "hardware": hardware,
    }

    if "generation" in sections:
        _reset_memory(device)
        prompts = bench_prompts(tokenizer, splits, settings["prompts_per_task"], params["data"].chat_date)
        gen_model, gen_name = generation_model(full, origin, device)
        result["generation"] = {"model": gen_name}
        for regime in regimes:
            result["generation"][regime] = bench_generation(
                gen_model, tokenizer, prompts, limits, gen_batch, settings["gen_repeats"], REGIMES[regime]
            )
        result["generation"]["peak_memory_mb"] = _memory_mb(device)
        done(result)
        del gen_model

    if "pruning" in sections:
        _reset_memory(device)
        result["pruning"] = bench_pruning(full, pruned, speed_cfg, hardware["peak_tflops"])
        result["pruning"]["removed_layers"] = origin["removed_layers"]
        result["pruning"]["peak_memory_mb"] = _memory_mb(device)
        done(result)
    del pruned

    if "training" in sections:
        _reset_memory(device)
        train_examples = splits["train"][: 4 * params["train"].batch_size] if mode == "smoke" else splits["train"]
        trainer, batches = training_loaders(full, tokenizer, train_examples, params, device, params["data"].chat_date)
        result["training"] = bench_training(trainer, batches, settings["train_steps"], hardware["peak_tflops"])
        result["training"]["peak_memory_mb"] = _memory_mb(device)
        done(result)
    return result


def summary_lines(result: dict[str, Any]) -> list[str]:
    """The headline figures as a Markdown table (what BENCHMARKS.md records)."""
    setup, hw = result["setup"], result["hardware"]
    gen, prune, train = (result.get(k, {}) for k in SECTIONS)
    rows = []
    for regime in (regime for regime in REGIMES if regime in gen):
        g = gen[regime]
        rows += [
            (f"generation ({regime}): new tokens per prompt",
             f"{g['new_tokens_per_prompt']:.1f} ({g['prompts']} prompts)"),
            (f"generation ({regime}): one-at-a-time", f"{g['sequential_s']:.2f} s, {g['sequential_tokens_per_s']:.1f} "
             f"tokens/s, prefill {g['sequential_prefill_share']:.0%}"),
            (f"generation ({regime}): batched ({g['batch_size']})", f"{g['batched_s']:.2f} s, "
             f"{g['batched_tokens_per_s']:.1f} tokens/s, prefill {g['batched_prefill_share']:.0%}"),
            (f"generation ({regime}): speedup", f"{g['batched_vs_sequential_speedup']:.2f}x"),
            (f"generation ({regime}): outputs identical", f"{g['identical_fraction']:.1%}"),
        ]  # fmt: skip
    if prune:
        full, pruned, b, mfu = prune["full"], prune["pruned"], f"b{prune['batch_size']}", prune["mfu"]
        rows += [
            ("pruning: layers", f"{prune['layers_full']} -> {prune['layers_pruned']}"),
            ("pruning: prefill ms b1, full / pruned", f"{full['prefill_ms_b1']:.2f} / {pruned['prefill_ms_b1']:.2f}"),
            (f"pruning: prefill ms {b}, full / pruned",
             f"{full[f'prefill_ms_{b}']:.2f} / {pruned[f'prefill_ms_{b}']:.2f}"),
            ("pruning: decode tokens/s b1, full / pruned",
             f"{full['decode_tokens_per_s_b1']:.1f} / {pruned['decode_tokens_per_s_b1']:.1f}"),
            (f"pruning: decode tokens/s {b}, full / pruned",
             f"{full[f'decode_tokens_per_s_{b}']:.1f} / {pruned[f'decode_tokens_per_s_{b}']:.1f}"),
            ("pruning: ideal speedup (FLOPs)", f"{prune['ideal_speedup']:.4f}"),
            (f"pruning: decode speedup b1 / {b}",
             f"{prune['decode_speedup_b1']:.4f} / {prune[f'decode_speedup_{b}']:.4f}"),
            (f"pruning: decode speedup / ideal, b1 / {b}",
             f"{prune['decode_vs_ideal_b1']:.3f} / {prune[f'decode_vs_ideal_{b}']:.3f}"),
            (f"pruning: prefill speedup b1 / {b}",
             f"{prune['prefill_speedup_b1']:.4f} / {prune[f'prefill_speedup_{b}']:.4f}"),
            (f"MFU full model: prefill / decode {b}",
             f"{mfu[f'full_prefill_{b}']:.2%} / {mfu[f'full_decode_{b}']:.2%}"),
        ]  # fmt: skip
    if train:
        rows += [
            ("training: trainer, batch, max length", f"{train['trainer']}, {train['batch_size']}, "
             f"{train['max_seq_length']}"),
            ("training: padding, stage / random",
             f"{train['padding_fraction']:.1%} / {train['random_padding_fraction']:.1%}"),
            ("training: real tokens/s, stage / random",
             f"{train['tokens_per_s']:.0f} / {train['random_tokens_per_s']:.0f}"),
            ("training: MFU (LoRA)", f"{train['mfu']:.2%}"),
        ]  # fmt: skip
    header = (
        f"{setup['source']}; generation on {gen.get('model', '-')}; {setup['device']} ({setup['device_name']}), "
        f"{setup['dtype']}, {setup['threads']} threads, "
        f"mode {setup['mode']}; peak {hw['peak_tflops']:.3g} TFLOP/s ({hw['peak_source']})"
    )
    return [header, "", "| figure | value |", "|---|---|"] + [f"| {name} | {value} |" for name, value in rows]
