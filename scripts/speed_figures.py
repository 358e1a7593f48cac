"""Every speed and time figure of README.md and BENCHMARKS.md, written from committed JSON reports so that nobody
retypes a number and none outlives the report behind it. scripts/readme_tables.py (the one generator) calls write();
tests/test_readme_tables.py calls check().

    python scripts/speed_figures.py --check    exit 1, with a diff, if a block differs from what its reports give

Each figure lives in a block between `<!-- NAME: scripts/readme_tables.py -->` and `<!-- /NAME -->` (NAME one of
BLOCKS), written by BLOCKS[NAME] from: reports/bench/*.json that `prunetune bench --json` wrote (the tiny default on
a CPU; other reports there are left to readme_tables.py), reports/gpu/*.json (scripts/gpu_bench.sh on a lent GPU),
reports/smoke/real-shapes.json (`prunetune smoke`). Text outside the markers is never touched, so hand edits
elsewhere do not conflict with a regeneration.
"""

from __future__ import annotations

import difflib
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # prunetune's table of a smoke run, from this checkout

from prunetune.smoke import table as smoke_table  # noqa: E402

DOCS = ("README.md", "BENCHMARKS.md")


# ---------------------------------------------------------------- reports


def read_reports(root: Path, folder: str) -> dict[str, Any]:
    """Every JSON report in root/folder, by file name (sorted): what the blocks are written from."""
    return {path.name: json.loads(path.read_text()) for path in sorted((root / folder).glob("*.json"))}


def bench_reports(root: Path) -> dict[str, Any]:
    """The reports `prunetune bench --json` wrote under reports/bench (a setup with its machine record, and every
    section): the tiny default's runs."""
    return {
        name: report
        for name, report in read_reports(root, "reports/bench").items()
        if isinstance(report, dict) and "machine" in report.get("setup", {}) and "training" in report
    }


def _machine(setup: dict[str, Any]) -> str:
    m = setup["machine"]
    return f"{m['cores']} cores, {m['cpu_model']}; {m['date']}, commit {m['commit']}"


def _range(values: list[float], fmt: str) -> str:
    low, high = min(values), max(values)
    return format(low, fmt) if format(low, fmt) == format(high, fmt) else f"{format(low, fmt)}–{format(high, fmt)}"


def _gen_rows(gen: dict[str, Any], regime: str) -> list[tuple[str, str]]:
    g = gen[regime]
    label = {"eval": "as eval runs it", "fixed_length": "fixed length"}[regime]
    return [
        (f"generation, {label}: new tokens per prompt", f"{g['new_tokens_per_prompt']:.1f} ({g['prompts']} prompts)"),
        (f"generation, {label}: one at a time",
         f"{g['sequential_s']:.2f} s, prefill {g['sequential_prefill_share']:.0%}"),
        (f"generation, {label}: batched ({g['batch_size']})",
         f"{g['batched_s']:.2f} s, prefill {g['batched_prefill_share']:.0%}"),
        (f"**generation, {label}: batched speedup**", f"**{g['batched_vs_sequential_speedup']:.2f}×**"),
        (f"generation, {label}: outputs identical", f"{g['identical_fraction']:.1%}"),
    ]  # fmt: skip


def bench_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    """One bench report's figures, named as BENCHMARKS.md shows them."""
    setup, gen, prune, train = (report[k] for k in ("setup", "generation", "pruning", "training"))
    b = f"b{prune['batch_size']}"
    rows = [("machine", _machine(setup)), ("models", f"{setup['source']}; generation on {gen['model']}")]
    for regime in ("eval", "fixed_length"):
        if regime in gen:
            rows += _gen_rows(gen, regime)
    rows += [
        ("pruning: layers, ideal decode speedup (FLOPs)", f"{prune['layers_full']} → {prune['layers_pruned']}, "
         f"{prune['ideal_speedup']:.4f}"),
        (f"**pruning: decode speedup ÷ ideal, b1 / {b}**", f"**{prune['decode_vs_ideal_b1']:.3f} / "
         f"{prune[f'decode_vs_ideal_{b}']:.3f}**"),
        (f"pruning: decode tokens/s b1 / {b}, full → pruned",
         f"{prune['full']['decode_tokens_per_s_b1']:.1f} → {prune['pruned']['decode_tokens_per_s_b1']:.1f} / "
         f"{prune['full'][f'decode_tokens_per_s_{b}']:.1f} → {prune['pruned'][f'decode_tokens_per_s_{b}']:.1f}"),
        ("training: trainer, rows",
         f"{train['trainer']}, {'shared-prompt' if train['share_prompts'] else 'one per example'}"
         f" (max {train['max_seq_length']} tokens, batch {train['batch_size']})"),
        ("training: padding, stage / random batching", f"{train['padding_fraction']:.1%} / "
         f"{train['random_padding_fraction']:.1%}"),
        ("**training: real tokens/s (stage batching), MFU**", f"**{train['tokens_per_s']:,.0f}, {train['mfu']:.1%}**"),
    ]  # fmt: skip
    return rows


def bench_table(reports: dict[str, dict[str, Any]]) -> str:
    """One column per report, one row per figure."""
    columns = [dict(bench_rows(report)) for report in reports.values()]
    names = list(columns[0])
    lines = ["| figure | " + " | ".join(f"`{name}`" for name in reports) + " |", "|---" * (len(reports) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(column.get(name, "–") for column in columns) + " |" for name in names]
    return "\n".join(lines)


def bench_summary(reports: dict[str, dict[str, Any]]) -> str:
    """The headline ranges over the reports, each naming them."""
    values = list(reports.values())
    fixed = [r["generation"]["fixed_length"] for r in values if "fixed_length" in r["generation"]]
    evals = [r["generation"]["eval"] for r in values if "eval" in r["generation"]]
    b = f"b{values[0]['pruning']['batch_size']}"
    names = ", ".join(f"`reports/bench/{name}`" for name in reports)
    parts = [f"In {len(values)} run{'s' * (len(values) > 1)} ({names}):"]
    if fixed:
        speedups, identical = (
            [g["batched_vs_sequential_speedup"] for g in fixed],
            [g["identical_fraction"] for g in fixed],
        )
        parts.append(
            f"at fixed length, batched generation is {_range(speedups, '.2f')}× faster than one prompt at a time, "
            f"outputs identical in {_range(identical, '.0%')};"
        )
    if evals:
        parts.append(
            f"as eval runs it, {_range([g['batched_vs_sequential_speedup'] for g in evals], '.2f')}× "
            f"({_range([g['new_tokens_per_prompt'] for g in evals], '.1f')} new tokens a prompt, prefill "
            f"{_range([g['batched_prefill_share'] for g in evals], '.0%')} of the batched time);"
        )
    parts.append(
        f"the pruned model's decode speedup is {_range([r['pruning']['decode_vs_ideal_b1'] for r in values], '.3f')} "
        f"of the FLOP ideal at batch 1 and {_range([r['pruning'][f'decode_vs_ideal_{b}'] for r in values], '.3f')} "
        f"at {b.removeprefix('b')}; the finetune stage's trainer trains "
        f"{_range([r['training']['tokens_per_s'] for r in values], ',.0f')} real tokens/s with "
        f"{_range([r['training']['padding_fraction'] for r in values], '.1%')} padding."
    )
    return " ".join(parts)  # fmt: skip


# ---------------------------------------------------------------- blocks


NOT_MEASURED = "Not measured yet: no committed report under `{folder}` (the command above writes one).\n"


def block_bench_cpu(root: Path) -> str:
    reports = bench_reports(root)
    if not reports:
        return NOT_MEASURED.format(folder="reports/bench/")
    return f"{bench_summary(reports)}\n\n{bench_table(reports)}\n"


def block_bench_cpu_summary(root: Path) -> str:
    reports = bench_reports(root)
    return bench_summary(reports) + "\n" if reports else NOT_MEASURED.format(folder="reports/bench/")


def _gpu(root: Path) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    reports = read_reports(root, "reports/gpu") if (root / "reports/gpu").is_dir() else {}
    bench = next((r for r in reports.values() if "generation" in r), None)
    smoke = next((r for r in reports.values() if "stages" in r), None)
    return bench, smoke


def block_bench_gpu(root: Path) -> str:
    bench, _ = _gpu(root)
    if bench is None:
        return NOT_MEASURED.format(folder="reports/gpu/")
    setup, hw = bench["setup"], bench["hardware"]
    rows = bench_rows(bench)
    lines = [
        f"Device: {setup['device_name']}, {setup['dtype']}; peak {hw['peak_tflops']:.0f} TFLOP/s ({hw['peak_source']}; "
        f"measured matmul {hw['measured_matmul_tflops']:.0f}); torch {setup['versions']['torch']}, transformers "
        f"{setup['versions']['transformers']}, TRL {setup['versions']['trl']}, peft {setup['versions']['peft']}.",
        f"Command: `{bench['command']}`.",
        "",
        "| figure | value |",
        "|---|---|",
        *(f"| {name} | {value} |" for name, value in rows),
    ]  # fmt: skip
    return "\n".join(lines) + "\n"


def block_smoke_gpu(root: Path) -> str:
    _, smoke = _gpu(root)
    if smoke is None:
        return NOT_MEASURED.format(folder="reports/gpu/")
    header = f"Device: {smoke['device']}; {_machine(smoke)}. Command: `{smoke['command']}`."
    return f"{header}\n\n{smoke_table(smoke['stages'])}\n"


def block_smoke_cpu(root: Path) -> str:
    return smoke_table(json.loads((root / "reports/smoke/real-shapes.json").read_text())) + "\n"


def block_gpu_summary(root: Path) -> str:
    bench, smoke = _gpu(root)
    if bench is None or smoke is None:
        return (
            "On a GPU: not measured yet (no committed report under `reports/gpu/`; `scripts/gpu_bench.sh` writes them "
            "in one call of a lent device).\n"
        )
    gen, prune, train = bench["generation"], bench["pruning"], bench["training"]
    regime = "fixed_length" if "fixed_length" in gen else "eval"
    g, b = gen[regime], f"b{prune['batch_size']}"
    total = sum(stage["wall_s"] for stage in smoke["stages"])
    peak = max((s["peak_gpu_mb"] or 0) for s in smoke["stages"]) / 1024
    return (
        f"On one {bench['setup']['device_name']} (`reports/gpu/`), Llama-3.2-1B's shape with random weights: batched "
        f"generation at batch {g['batch_size']} is {g['batched_vs_sequential_speedup']:.1f}× faster than one prompt at "
        f"a time (outputs identical in {g['identical_fraction']:.0%} of {g['prompts']} prompts); the pruned model's "
        f"decode speedup is {prune['decode_vs_ideal_b1']:.3f} of the FLOP ideal at batch 1 and "
        f"{prune[f'decode_vs_ideal_{b}']:.3f} at {b.removeprefix('b')}; LoRA through the finetune stage's trainer runs "
        f"{train['tokens_per_s']:,.0f} real tokens/s at max_seq_length {train['max_seq_length']}, MFU "
        f"{train['mfu']:.1%}. The real-shape smoke at full width ran {len(smoke['stages'])} stages in "
        f"{total / 60:.1f} min, peak GPU memory {peak:.1f} GB.\n"
    )


BLOCKS: dict[str, Callable[[Path], str]] = {
    "bench-cpu": block_bench_cpu,
    "bench-cpu-summary": block_bench_cpu_summary,
    "bench-gpu": block_bench_gpu,
    "smoke-gpu": block_smoke_gpu,
    "smoke-cpu": block_smoke_cpu,
    "gpu-summary": block_gpu_summary,
}


def render_blocks(text: str, root: Path) -> str:
    """text with the body of every block named in BLOCKS rewritten from the reports (other blocks untouched)."""
    names = "|".join(map(re.escape, BLOCKS))
    block = re.compile(rf"(<!-- (?P<name>{names}): scripts/readme_tables.py -->\n)(.*?)(<!-- /(?P=name) -->)", re.S)
    return block.sub(lambda m: m.group(1) + BLOCKS[m["name"]](root) + m.group(4), text)


def expected(root: Path) -> dict[str, str]:
    """What README.md and BENCHMARKS.md must read, given the reports under root."""
    return {doc: render_blocks((root / doc).read_text(), root) for doc in DOCS}


def write(root: Path) -> None:
    for doc, text in expected(root).items():
        (root / doc).write_text(text)


def check(root: Path) -> list[str]:
    """The unified diff of each doc against what its reports give (empty: up to date)."""
    diff = []
    for doc, text in expected(root).items():
        committed = (root / doc).read_text()
        diff += difflib.unified_diff(committed.splitlines(), text.splitlines(), f"{doc} (committed)",
                                     f"{doc} (from reports)", lineterm="")  # fmt: skip
    return diff


if __name__ == "__main__":
    found = check(Path.cwd())
    print("\n".join(found) or "README.md and BENCHMARKS.md: every speed figure matches its report")
    sys.exit(1 if found else 0)
