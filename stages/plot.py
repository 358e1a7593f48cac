"""plot stage: every metrics file -> OUT_DIR/*.png (README, `dvc plots show`) + OUT_DIR/data/*.csv (vega plots).

    python stages/plot.py TRAIN_DIR EVAL_DIR QA_DIR PRUNE_METRICS SPEED_DIR COMPARISON OUT_DIR

TRAIN_DIR holds the fine-tunes' dvclive directories (full, pruned); SPEED_DIR the speed stages' base.json, ft.json.
"""

from pathlib import Path

from prunetune.comparison import VARIANTS
from prunetune.config import run_stage, stage_args
from prunetune.jsonio import read_json
from prunetune.plots import (
    TRAIN_TABLES,
    check_comparison,
    layer_rows,
    plot_efficiency,
    plot_layer_scores,
    plot_qa,
    plot_quality,
    plot_training_curves,
    training_rows,
    variant_rows,
    variant_speed,
    write_csv,
)


def main() -> None:
    names = ("TRAIN_DIR", "EVAL_DIR", "QA_DIR", "PRUNE_METRICS", "SPEED_DIR", "COMPARISON", "OUT_DIR")
    train_dir, eval_dir, qa_dir, prune_file, speed_dir, comparison_file, out = map(Path, stage_args(*names))
    eval_metrics = {v: read_json(eval_dir / f"{v}.json") for v in VARIANTS}
    qa_metrics = {v: read_json(qa_dir / f"{v}.json") for v in VARIANTS}
    prune_metrics = read_json(prune_file)
    train_dirs = {v: train_dir / v for v in ("full", "pruned")}
    comparison = check_comparison(read_json(comparison_file), comparison_file)
    speed = variant_speed({pair: read_json(speed_dir / f"{pair}.json") for pair in ("base", "ft")})
    written = [
        plot_training_curves(train_dirs, out / "training.png"),
        plot_quality(eval_metrics, out / "quality.png"),
        plot_qa(qa_metrics, out / "qa.png"),
        plot_efficiency(eval_metrics, speed, out / "efficiency.png"),
        plot_layer_scores(prune_metrics, out / "layers.png"),
        write_csv(out / "data/variants.csv", variant_rows(comparison, eval_metrics, speed)),
        write_csv(out / "data/layers.csv", layer_rows(prune_metrics)),
    ]
    for name, (_, file, column) in TRAIN_TABLES.items():
        rows = training_rows(train_dirs, file, column)
        written.append(write_csv(out / f"data/training/{name}.csv", rows, ["step", *train_dirs]))
    print("plot: wrote " + ", ".join(str(path) for path in written))


if __name__ == "__main__":
    run_stage(main)
