"""Copy the committed run's tables into README.md, so the numbers under "Results of the default run" are the
reports' and nobody retypes them.

python scripts/readme_tables.py   (after `dvc repro` and `prunetune seed-report ... --out reports/seeds`)

Each README table is found by its header row and replaced whole by the report's table with the same header.
The sentences under the tables are written by hand from reports/seeds/seeds.md: re-read them after a new run.
"""

import json
from pathlib import Path

import speed_figures  # every speed and time figure of README.md and BENCHMARKS.md, from the JSON reports

from prunetune.headline import headline_lines

README = Path("README.md")
SOURCES = (Path("reports/comparison.md"), Path("reports/seeds/seeds.md"))
STUDY = Path("studies/smollm2-135m")  # the real-model study's record: the README's first screen
HEADLINE_START, HEADLINE_END = "<!-- study-headline: scripts/readme_tables.py -->", "<!-- /study-headline -->"


def fill_block(text: str, start: str, end: str, lines: list[str]) -> str:
    """text with the lines between the start and end marker lines replaced."""
    head, found, rest = text.partition(start + "\n")
    if not found or end not in rest:
        raise SystemExit(f"README.md: markers {start} ... {end} not found")
    return head + start + "\n" + "\n".join(lines) + "\n" + rest[rest.index(end) :]


def tables(text: str) -> list[list[str]]:
    """Every Markdown table in text: its runs of lines that start with '|'."""
    found, current = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            found.append(current)
            current = []
    return found


BENCHMARKS = Path("BENCHMARKS.md")
REAL_START, REAL_END = "<!-- real-model: scripts/readme_tables.py -->", "<!-- /real-model -->"
REAL_REPORTS = Path("reports/bench")


def real_model_lines(reports: Path = REAL_REPORTS) -> list[str]:
    """BENCHMARKS.md's real-model section from its committed reports: per-stage time and memory of each study run,
    the fine-tune step in fp32 and bf16 beside the matmul peak, decode against its bandwidth and compute bounds."""
    lines: list[str] = []
    runs = [json.loads(p.read_text()) for p in sorted(reports.glob("smollm2-stages-*.json"))]
    if runs:
        machine = runs[0]["machine"]
        lines += [
            f"Per stage, wall time and peak RSS ({machine['cores']} cores, {machine['cpu']}; "
            "`scripts/stage_monitor.py` "
            "beside `prunetune study`; n/a: run before the monitor started; seed 42 leaves out the 404 s its eval "
            "was stopped for the measurements below; reports `"
            + "`, `".join(f"reports/bench/{p.name}" for p in sorted(reports.glob("smollm2-stages-*.json")))
            + "`):",
            "",
            "| stage | " + " | ".join(f"{r['label']}: s | MB" for r in runs) + " |",
            "|---|" + "---|---|" * len(runs),
        ]
        names = list(dict.fromkeys(s["stage"] for r in runs for s in r["stages"]))
        for name in names:
            cells = []
            for run in runs:
                stage = next((s for s in run["stages"] if s["stage"] == name), None)
                cells += [f"{stage['wall_s']:.0f}", f"{stage['peak_rss_mb']:,}"] if stage else ["n/a", ""]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        totals = [sum(s["wall_s"] for s in r["stages"]) for r in runs]
        lines += ["| **total** | " + " | ".join(f"**{t / 60:.1f} min** | " for t in totals) + "", ""]
    steps_file = reports / "smollm2-steps.json"
    if steps_file.is_file():
        steps = json.loads(steps_file.read_text())
        lines += [
            f"The fine-tune step, float32 against bfloat16 ({steps['steps']} steps of {steps['rows_per_step']} "
            "shared-prompt rows, the same rows and LoRA init; `scripts/real_model_steps.py`, "
            f"`reports/bench/{steps_file.name}`):",
            "",
            "| dtype | median step | tokens/s | achieved GFLOP/s | matmul peak GFLOP/s | share of peak | losses |",
            "|---|---|---|---|---|---|---|",
        ]
        for run in steps["runs"]:
            lines.append(
                f"| {run['dtype']} | {run['median_step_s']:.2f} s | {run['tokens_per_s']:.0f} "
                f"| {run['achieved_gflops']:.1f} | {run['matmul_peak_gflops']:.1f} "
                f"| {100 * run['share_of_matmul_peak']:.0f}% | "
                + ", ".join(f"{loss:.3f}" for loss in run["losses"])
                + " |"
            )
        lines += [
            "",
            f"bf16 is ×{steps['bf16_speedup']:.2f} faster per step; the largest per-step loss difference is "
            f"{steps['max_loss_difference']:.3f}.",
            "",
        ]
    decode_file = reports / "smollm2-decode.json"
    if decode_file.is_file():
        decode = json.loads(decode_file.read_text())
        lines += [
            f"Decode, full (30 layers) against pruned (layers {decode['removed_layers']} removed), each beside its "
            f"bounds: stream bandwidth {decode['stream_bandwidth_gb_s']:.1f} GB/s (a 512 MB copy), the matmul peak "
            f"in the run's dtype (`scripts/real_model_decode.py`, `reports/bench/{decode_file.name}`):",
            "",
            "| dtype, threads | model | batch | tokens/s | bandwidth bound | share | compute bound | share |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for run in decode["runs"]:
            for name in ("full", "pruned"):
                for label, figures in run[name].items():
                    if not label.startswith("b"):
                        continue
                    cells = [f"{run['dtype']}, {run['threads']}", name, label[1:]]
                    cells += [f"{figures[k]:.1f}" for k in ("decode_tokens_per_s", "bandwidth_bound_tokens_per_s")]
                    cells.append(f"{100 * figures['share_of_bandwidth_bound']:.0f}%")
                    cells.append(f"{figures['compute_bound_tokens_per_s']:.1f}")
                    cells.append(f"{100 * figures['share_of_compute_bound']:.0f}%")
                    lines.append("| " + " | ".join(cells) + " |")
        speed = decode["runs"][0]["speed"]
        batched = speed[f"decode_speedup_b{speed['batch_size']}"]
        lines += [
            "",
            f"Pruned against full in bf16: decode ×{speed['decode_speedup_b1']:.2f} at batch 1 and "
            f"×{batched:.2f} at batch {speed['batch_size']}, against the "
            f"FLOP-ratio ideal ×{speed['ideal_speedup']:.2f}.",
            "",
            "Where batch-1 decode spends its time (bf16, full model, torch.profiler, busiest operators):",
            "",
            "```",
            *decode["profile_bf16_b1_full"].rstrip().splitlines(),
            "```",
        ]
    return lines


def main() -> None:
    by_header = {table[0]: table for source in SOURCES for table in tables(source.read_text())}
    lines, out, replaced = README.read_text().splitlines(), [], 0
    index = 0
    while index < len(lines):
        table = by_header.get(lines[index])
        if table is None:
            out.append(lines[index])
            index += 1
            continue
        while index < len(lines) and lines[index].startswith("|"):
            index += 1
        out.extend(table)
        replaced += 1
    text = fill_block("\n".join(out) + "\n", HEADLINE_START, HEADLINE_END, headline_lines(STUDY))
    README.write_text(text)
    BENCHMARKS.write_text(fill_block(BENCHMARKS.read_text(), REAL_START, REAL_END, real_model_lines()))
    print(f"README.md: {replaced} tables replaced from {', '.join(map(str, SOURCES))}")
    speed_figures.write(Path("."))
    print("README.md, BENCHMARKS.md: speed and time figures written from reports/ (scripts/speed_figures.py)")


if __name__ == "__main__":
    main()
