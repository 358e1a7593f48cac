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
prune section (a method that needs calibration falls back to dropping the last layer).
"""

from __future__ import annotations

import copy
import platform
import resource
import statistics
import tempfile
from importlib.metadata import version
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from prunetune.chat import DEFAULT_CHAT_DATE, chat_date, prompt_ids
from prunetune.config import PrunetuneError, load_params, section
from prunetune.data import TASKS, read_jsonl
from prunetune.efficiency import check_speed_params, flops_per_token, pruning_speed, timed
from prunetune.generation import generate_greedy
from prunetune.pruning import METHODS, decoder_layers, remove_layers, resolve_removed_layers

# Llama-3.2-1B's exact shape (its config.json), built here with random weights: nothing is downloaded.
LLAMA_3_2_1B = {
    "vocab_size": 128256,
    "hidden_size": 2048,
    "intermediate_size": 8192,
    "num_hidden_layers": 16,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 64,
    "max_position_embeddings": 131072,
    "rms_norm_eps": 1e-5,
    "tie_word_embeddings": True,
    "rope_parameters": {
        "rope_type": "llama3",
        "rope_theta": 500000.0,
        "factor": 32.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
    },
    "bos_token_id": 128000,
    "eos_token_id": [128001, 128008, 128009],
}
ARCHS = ("tiny", "llama-3.2-1b")

# How much work each mode does. `smoke` is a real-size model on a CPU: it checks the command, not the figures.
MODES: dict[str, dict[str, Any]] = {
    "full": {"prompts_per_task": None, "gen_repeats": 5, "speed_repeats": 41, "new_tokens": 32, "train_steps": 12},
    "quick": {"prompts_per_task": None, "gen_repeats": 3, "speed_repeats": 21, "new_tokens": 32, "train_steps": 6},
    "smoke": {"prompts_per_task": 2, "gen_repeats": 1, "speed_repeats": 1, "new_tokens": 2, "train_steps": 1},
}
SMOKE_LIMITS = {"max_new_tokens": 3, "prompt_tokens": 16, "batch_size": 2, "train_batch_size": 2}

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


def load_splits(params: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The pipeline's splits from data/processed, or the split stage's logic run in memory when they are absent."""
    paths = {name: Path(f"data/processed/{name}.jsonl") for name in ("train", "val", "test")}
    if all(path.is_file() for path in paths.values()):
        return {name: read_jsonl(path) for name, path in paths.items()}
    from prunetune.data import prepare_corpus

    return prepare_corpus(section(params, "data"))[0]


def _removed_layers(params: dict[str, Any], num_layers: int) -> list[int]:
    cfg = params.get("prune") or {}
    return resolve_removed_layers(cfg if cfg.get("method") in METHODS else {"method": "last"}, num_layers)


def _build_tokenizer(train_examples: list[dict[str, Any]], params: dict[str, Any]) -> Any:
    from prunetune.tiny import train_tokenizer

    texts = [message["content"] for example in train_examples for message in example["messages"]]
    return train_tokenizer(texts, section(params, "model")["tiny"]["vocab_size"])


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
    from prunetune.tiny import build_model, check_tiny_params

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
        return full, pruned, tokenizer, {"source": "models/base and models/pruned", "removed_layers": removed}

    have_tokenizer = (base / "tokenizer.json").is_file() and (base / "config.json").is_file()
    tokenizer = AutoTokenizer.from_pretrained(base) if have_tokenizer else _build_tokenizer(splits["train"], params)
    tokenizer_source = "models/base's tokenizer" if have_tokenizer else "a tokenizer trained on the train split"
    if arch == "tiny":
        cfg = section(params, "model")["tiny"]
        check_tiny_params(cfg)
        full = build_model(tokenizer, cfg)
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
    return full, pruned, tokenizer, {"source": source, "removed_layers": removed}


# ---------------------------------------------------------------- generation


def bench_prompts(
    tokenizer: Any,
    splits: dict[str, list[dict[str, Any]]],
    per_task: int | None,
    date_string: str = DEFAULT_CHAT_DATE,
) -> dict[str, list[list[int]]]:
    """Per task, the chat prompts of the test split (the first per_task of them; topped up from val, then train,
    when more are asked for than the test split has)."""
    prompts: dict[str, list[list[int]]] = {}
    for task in TASKS:
        splits_used = ("test",) if per_task is None else ("test", "val", "train")
        chosen = [e for split in splits_used for e in splits[split] if e["task"] == task][:per_task]
        prompts[task] = [prompt_ids(tokenizer, e["messages"][:2], date_string) for e in chosen]
    if not any(prompts.values()):
        raise PrunetuneError("bench: the test split has no examples; run the split stage or check data.*")
    return prompts


def _generate_all(
    model: Any, tokenizer: Any, prompts: dict[str, list[list[int]]], limits: dict[str, int], batch_size: int
) -> list[dict[str, Any]]:
    """The eval stage's call, task by task (each with its own max_new_tokens)."""
    results = []
    for task, task_prompts in prompts.items():
        if task_prompts:
            results += generate_greedy(model, tokenizer, task_prompts, limits[task], batch_size, desc=task)
    return results


def bench_generation(
    model: Any,
    tokenizer: Any,
    prompts: dict[str, list[list[int]]],
    limits: dict[str, int],
    batch_size: int,
    repeats: int,
) -> dict[str, Any]:
    """One-at-a-time greedy decoding (the reference study's method) against the eval stage's batched decoding.

    Both decode the same prompts; each repeat runs one pass of each back to back, and the speedup is the median
    of the per-repeat ratios. The texts (and token ids) must be identical."""
    device = model.device
    warm = {task: p[:2] for task, p in prompts.items()}
    _generate_all(model, tokenizer, warm, limits, 1)
    _generate_all(model, tokenizer, warm, limits, batch_size)
    sequential_s, batched_s, ratios = [], [], []
    for _ in tqdm(range(repeats), desc="generation: sequential vs batched"):
        sequential, seconds_1 = timed(lambda: _generate_all(model, tokenizer, prompts, limits, 1), device)
        batched, seconds_n = timed(lambda: _generate_all(model, tokenizer, prompts, limits, batch_size), device)
        sequential_s.append(seconds_1)
        batched_s.append(seconds_n)
        ratios.append(seconds_1 / seconds_n)
    same = [
        s["token_ids"] == b["token_ids"] and s["text"] == b["text"] for s, b in zip(sequential, batched, strict=True)
    ]
    new_tokens = sum(g["new_tokens"] for g in batched)
    return {
        "prompts": len(same),
        "prompts_per_task": {task: len(p) for task, p in prompts.items()},
        "prompt_tokens_mean": statistics.mean(len(p) for ps in prompts.values() for p in ps),
        "max_new_tokens": limits,
        "batch_size": batch_size,
        "new_tokens": new_tokens,
        "hit_max_new_tokens": sum(g["hit_max_new_tokens"] for g in batched),
        "sequential_s": statistics.median(sequential_s),
        "batched_s": statistics.median(batched_s),
        "sequential_tokens_per_s": sum(g["new_tokens"] for g in sequential) / statistics.median(sequential_s),
        "batched_tokens_per_s": new_tokens / statistics.median(batched_s),
        "batched_vs_sequential_speedup": statistics.median(ratios),
        "outputs_identical": all(same),
        "identical_fraction": sum(same) / len(same),
        "repeats": repeats,
    }


# ---------------------------------------------------------------- pruning


def bench_pruning(full: Any, pruned: Any, cfg: dict[str, Any], peak_tflops: float) -> dict[str, Any]:
    """efficiency.pruning_speed (both models timed in turns, beside the ideal speedup) and each model's MFU."""
    result = pruning_speed(full, pruned, cfg)
    batched = f"b{cfg['batch_size']}"
    decode_context = cfg["prompt_tokens"] + cfg["new_tokens"] // 2
    prefill_context = cfg["prompt_tokens"] // 2
    result["flops_per_token_full"] = flops_per_token(full.config, decode_context)
    result["flops_per_token_pruned"] = flops_per_token(pruned.config, decode_context)
    mfu = {}
    for name, model in (("full", full), ("pruned", pruned)):
        for label, batch_size in (("b1", 1), (batched, cfg["batch_size"])):
            prefill_flops = batch_size * cfg["prompt_tokens"] * flops_per_token(model.config, prefill_context)
            prefill_s = result[name][f"prefill_ms_{label}"] / 1000
            mfu[f"{name}_prefill_{label}"] = prefill_flops / prefill_s / (peak_tflops * 1e12)
            decode_flops_per_s = result[name][f"decode_tokens_per_s_{label}"] * flops_per_token(
                model.config, decode_context
            )
            mfu[f"{name}_decode_{label}"] = decode_flops_per_s / (peak_tflops * 1e12)
    result["mfu"] = mfu
    return result


# ---------------------------------------------------------------- training


def padding_fraction(batches: list[dict[str, torch.Tensor]]) -> float:
    """Padded positions over all positions of the batches (attention_mask 0 marks a pad)."""
    padded = sum(int((batch["attention_mask"] == 0).sum()) for batch in batches)
    return padded / sum(batch["attention_mask"].numel() for batch in batches)


def training_loaders(
    model: Any, tokenizer: Any, train_examples: list[dict[str, Any]], params: dict[str, Any], device: torch.device
) -> tuple[Any, dict[str, list[dict[str, torch.Tensor]]]]:
    """The finetune stage's trainer (its SFTConfig, collator and LoRA) and one epoch of its batches, once with the
    stage's sampling and once with naive random sampling. The LoRA adapter is added to `model` in place."""
    from trl import SFTTrainer

    from prunetune.training import build_dataset, check_train_params, lora_config, sft_config

    train_cfg, lora_cfg = section(params, "train"), section(params, "lora")
    check_train_params(train_cfg)
    data, _ = build_dataset(train_examples, tokenizer, train_cfg["max_seq_length"], chat_date(params))
    if len(data) == 0:
        raise PrunetuneError("bench: no training example fits train.max_seq_length")
    lora = lora_config(lora_cfg)
    with tempfile.TemporaryDirectory() as scratch:
        args = sft_config(train_cfg, Path(scratch), device)
        trainer = SFTTrainer(
            model=model, args=args, train_dataset=data, eval_dataset=data, processing_class=tokenizer, peft_config=lora
        )
        stage_strategy = args.train_sampling_strategy
        batches = {}
        for name, strategy in (("stage", stage_strategy), ("random", "random")):
            trainer.args.train_sampling_strategy = strategy
            batches[name] = list(trainer.get_train_dataloader())
        trainer.args.train_sampling_strategy = stage_strategy
    return trainer, batches


def bench_training(
    trainer: Any, batches: dict[str, list[dict[str, torch.Tensor]]], steps: int, peak_tflops: float
) -> dict[str, Any]:
    """Padding over a whole epoch, and LoRA training throughput (forward, backward, optimizer step) on the first
    `steps` batches of each batching, taking turns step by step; tokens/s counts real (non-pad) tokens."""
    model = trainer.model
    device = next(model.parameters()).device
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step(batch: dict[str, torch.Tensor]) -> None:
        inputs = {key: batch[key].to(device) for key in ("input_ids", "attention_mask", "labels")}
        model(**inputs).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    steps = min(steps, *(len(b) - 1 for b in batches.values()))
    for name in batches:
        step(batches[name][0])  # warm-up
    throughput: dict[str, list[float]] = {name: [] for name in batches}
    padded_throughput: dict[str, list[float]] = {name: [] for name in batches}
    for index in tqdm(range(1, steps + 1), desc="training: stage vs random batching"):
        for name in batches:
            batch = batches[name][index]
            _, seconds = timed(lambda batch=batch: step(batch), device)
            throughput[name].append(int(batch["attention_mask"].sum()) / seconds)
            padded_throughput[name].append(batch["attention_mask"].numel() / seconds)
    model.eval()
    config = model.get_base_model().config
    mean_length = statistics.mean(int(b["attention_mask"].sum(1).float().mean()) for b in batches["stage"])
    # LoRA: forward plus the backward for activations (frozen base weights get no weight gradient): 2x forward.
    train_flops_per_token = 2 * flops_per_token(config, mean_length // 2)
    stage_tokens_per_s = statistics.median(throughput["stage"])
    return {
        "stage_batching": trainer.args.train_sampling_strategy,
        "batch_size": trainer.args.per_device_train_batch_size,
        "examples": sum(len(b["input_ids"]) for b in batches["stage"]),
        "padding_fraction": padding_fraction(batches["stage"]),
        "random_padding_fraction": padding_fraction(batches["random"]),
        "tokens_per_s": stage_tokens_per_s,
        "random_tokens_per_s": statistics.median(throughput["random"]),
        "padded_tokens_per_s": statistics.median(padded_throughput["stage"]),
        "random_padded_tokens_per_s": statistics.median(padded_throughput["random"]),
        "speedup_vs_random": stage_tokens_per_s / statistics.median(throughput["random"]),
        "steps": steps,
        "mfu": stage_tokens_per_s * train_flops_per_token / (peak_tflops * 1e12),
    }


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
) -> dict[str, Any]:
    """Every section on one model pair, in one process; returns the figures as a nested dict."""
    from prunetune.models import pick_device, pick_dtype

    check_arch(arch, random_init)
    for option, value in (
        ("--threads", threads),
        ("--batch-size", batch_size),
        ("--prompts-per-task", prompts_per_task),
    ):
        if value is not None and value < 1:
            raise PrunetuneError(f"bench {option}: must be >= 1, got {value}")
    if threads is not None:
        torch.set_num_threads(threads)  # 1 on a shared CPU: OpenMP threads wait on each other when a core is taken
    params = load_params(params_path)
    device = torch.device(device_name) if device_name else pick_device()
    if device.type == "cuda" and not torch.cuda.is_available():
        raise PrunetuneError("bench --device cuda: no CUDA device is available here")
    mode = "smoke" if arch != "tiny" and device.type == "cpu" else "quick" if quick else "full"
    settings = dict(MODES[mode])
    if prompts_per_task is not None:
        settings["prompts_per_task"] = prompts_per_task
    eval_cfg = section(params, "eval")
    limits = dict(eval_cfg["max_new_tokens"])
    speed_cfg = section(params, "speed")
    check_speed_params(speed_cfg)
    speed_cfg = {**speed_cfg, "new_tokens": settings["new_tokens"], "repeats": settings["speed_repeats"]}
    if mode == "smoke":
        limits = {task: min(n, SMOKE_LIMITS["max_new_tokens"]) for task, n in limits.items()}
        speed_cfg.update(prompt_tokens=SMOKE_LIMITS["prompt_tokens"], batch_size=SMOKE_LIMITS["batch_size"])
        params["train"] = {**params["train"], "batch_size": SMOKE_LIMITS["train_batch_size"]}
    gen_batch = batch_size or eval_cfg["batch_size"]

    splits = load_splits(params)
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
            "params_full": sum(p.numel() for p in {id(p): p for p in full.parameters()}.values()),
            "versions": {package: version(package) for package in ("torch", "transformers", "trl", "peft")},
        },
        "hardware": hardware,
    }

    _reset_memory(device)
    prompts = bench_prompts(tokenizer, splits, settings["prompts_per_task"], chat_date(params))
    result["generation"] = bench_generation(full, tokenizer, prompts, limits, gen_batch, settings["gen_repeats"])
    result["generation"]["peak_memory_mb"] = _memory_mb(device)

    _reset_memory(device)
    result["pruning"] = bench_pruning(full, pruned, speed_cfg, hardware["peak_tflops"])
    result["pruning"]["removed_layers"] = origin["removed_layers"]
    result["pruning"]["peak_memory_mb"] = _memory_mb(device)
    del pruned

    _reset_memory(device)
    train_examples = splits["train"][: 4 * params["train"]["batch_size"]] if mode == "smoke" else splits["train"]
    trainer, batches = training_loaders(full, tokenizer, train_examples, params, device)
    result["training"] = bench_training(trainer, batches, settings["train_steps"], hardware["peak_tflops"])
    result["training"]["peak_memory_mb"] = _memory_mb(device)
    return result


def summary_lines(result: dict[str, Any]) -> list[str]:
    """The headline figures as a Markdown table (what BENCHMARKS.md records)."""
    gen, prune, train, setup, hw = (result[k] for k in ("generation", "pruning", "training", "setup", "hardware"))
    full, pruned, b = prune["full"], prune["pruned"], f"b{prune['batch_size']}"
    mfu = prune["mfu"]
    rows = [
        ("generation: one-at-a-time", f"{gen['sequential_s']:.2f} s, {gen['sequential_tokens_per_s']:.1f} tokens/s"),
        (f"generation: batched ({gen['batch_size']})",
         f"{gen['batched_s']:.2f} s, {gen['batched_tokens_per_s']:.1f} tokens/s"),
        ("generation: speedup", f"{gen['batched_vs_sequential_speedup']:.2f}x"),
        ("generation: outputs identical", f"{gen['outputs_identical']} ({gen['prompts']} prompts)"),
        ("pruning: layers", f"{prune['layers_full']} -> {prune['layers_pruned']}"),
        ("pruning: prefill ms b1, full / pruned", f"{full['prefill_ms_b1']:.2f} / {pruned['prefill_ms_b1']:.2f}"),
        (f"pruning: prefill ms {b}, full / pruned", f"{full[f'prefill_ms_{b}']:.2f} / {pruned[f'prefill_ms_{b}']:.2f}"),
        ("pruning: decode tokens/s b1, full / pruned",
         f"{full['decode_tokens_per_s_b1']:.1f} / {pruned['decode_tokens_per_s_b1']:.1f}"),
        (f"pruning: decode tokens/s {b}, full / pruned",
         f"{full[f'decode_tokens_per_s_{b}']:.1f} / {pruned[f'decode_tokens_per_s_{b}']:.1f}"),
        ("pruning: ideal speedup (FLOPs)", f"{prune['ideal_speedup']:.4f}"),
        (f"pruning: decode speedup b1 / {b}", f"{prune['decode_speedup']:.4f} / {prune['decode_speedup_batched']:.4f}"),
        (f"pruning: decode speedup / ideal, b1 / {b}",
         f"{prune['decode_vs_ideal']:.3f} / {prune['decode_batched_vs_ideal']:.3f}"),
        (f"pruning: prefill speedup b1 / {b}",
         f"{prune['prefill_speedup_b1']:.4f} / {prune[f'prefill_speedup_{b}']:.4f}"),
        (f"MFU full model: prefill / decode {b}", f"{mfu[f'full_prefill_{b}']:.2%} / {mfu[f'full_decode_{b}']:.2%}"),
        ("training: padding, stage / random",
         f"{train['padding_fraction']:.1%} / {train['random_padding_fraction']:.1%}"),
        ("training: real tokens/s, stage / random",
         f"{train['tokens_per_s']:.0f} / {train['random_tokens_per_s']:.0f}"),
        ("training: MFU (LoRA)", f"{train['mfu']:.2%}"),
    ]  # fmt: skip
    header = (
        f"{setup['source']}; {setup['device']} ({setup['device_name']}), {setup['dtype']}, {setup['threads']} threads, "
        f"mode {setup['mode']}; peak {hw['peak_tflops']:.3g} TFLOP/s ({hw['peak_source']})"
    )
    return [header, "", "| figure | value |", "|---|---|"] + [f"| {name} | {value} |" for name, value in rows]
