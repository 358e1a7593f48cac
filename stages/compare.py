"""compare stage: the four variants' metrics and predictions -> metrics/comparison.json + reports/comparison.md."""

from pathlib import Path

from prunetune.comparison import PAIRS, compare, load_inputs, render_markdown
from prunetune.config import load_params, run_stage, section
from prunetune.data import write_json


def main() -> None:
    cfg = section(load_params(), "eval")
    eval_metrics, qa_metrics, predictions, qa_predictions = load_inputs()
    comparison = compare(eval_metrics, qa_metrics, predictions, qa_predictions, cfg["bootstrap_resamples"], cfg["seed"])
    write_json(Path("metrics/comparison.json"), comparison)
    counts = {}
    for row in predictions["ft_full"]:
        counts[row["task"]] = counts.get(row["task"], 0) + 1
    counts["qa"] = len(qa_predictions["ft_full"])
    report = Path("reports/comparison.md")
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(render_markdown(comparison, counts))
    for a, b in PAIRS:
        changed = [c for c, d in comparison["differences"][f"{a}-{b}"].items() if d["excludes_zero"]]
        print(f"compare: {a} - {b}: interval excludes zero for {', '.join(changed) or 'no metric'}")


if __name__ == "__main__":
    run_stage(main)
