"""plot stage: every metrics file -> plots/*.png (README, `dvc plots show`) + plots/data/*.csv (vega plots)."""

from pathlib import Path

from prunetune.comparison import VARIANTS
from prunetune.config import run_stage
from prunetune.jsonio import read_json
from prunetune.plots import (
    TRAIN_TABLES,
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

OUT = Path("plots")


def main() -> None:
    eval_metrics = {v: read_json(f"metrics/eval/{v}.json") for v in VARIANTS}
    qa_metrics = {v: read_json(f"metrics/qa/{v}.json") for v in VARIANTS}
    prune_metrics = read_json("metrics/prune.json")
    train_dirs = {v: Path(f"metrics/train/{v}") for v in ("full", "pruned")}
    speed = variant_speed({pair: read_json(f"metrics/speed/{pair}.json") for pair in ("base", "ft")})
    written = [
        plot_training_curves(train_dirs, OUT / "training.png"),
        plot_quality(eval_metrics, OUT / "quality.png"),
        plot_qa(qa_metrics, OUT / "qa.png"),
        plot_efficiency(eval_metrics, speed, OUT / "efficiency.png"),
        plot_layer_scores(prune_metrics, OUT / "layers.png"),
        write_csv(OUT / "data/variants.csv", variant_rows(read_json("metrics/comparison.json"), eval_metrics, speed)),
        write_csv(OUT / "data/layers.csv", layer_rows(prune_metrics)),
    ]
    for name, (_, file, column) in TRAIN_TABLES.items():
        rows = training_rows(train_dirs, file, column)
        written.append(write_csv(OUT / f"data/training/{name}.csv", rows, ["step", *train_dirs]))
    print("plot: wrote " + ", ".join(str(path) for path in written))


if __name__ == "__main__":
    run_stage(main)
