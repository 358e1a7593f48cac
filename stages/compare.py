"""compare stage: the four variants' metrics and predictions -> metrics/comparison.json + reports/comparison.md."""

from pathlib import Path

from prunetune.comparison import compare, example_counts, load_inputs, render_markdown, significant_columns
from prunetune.config import run_stage
from prunetune.jsonio import write_json
from prunetune.params import EvalParams, load_section


def main() -> None:
    cfg = load_section(EvalParams)
    eval_metrics, qa_metrics, predictions, qa_predictions = load_inputs()
    comparison = compare(
        eval_metrics,
        qa_metrics,
        predictions,
        qa_predictions,
        cfg.bootstrap_resamples,
        cfg.seed,
        cfg.ci_method,
    )
    write_json(Path("metrics/comparison.json"), comparison)
    report = Path("reports/comparison.md")
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(render_markdown(comparison, example_counts(predictions, qa_predictions)))
    for pair, columns in significant_columns(comparison).items():
        print(f"compare: {pair.replace('-', ' - ')}: Holm-significant for {', '.join(columns) or 'no metric'}")


if __name__ == "__main__":
    run_stage(main)
