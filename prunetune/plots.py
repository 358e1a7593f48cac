"""The plot stage's charts: matplotlib PNGs for the README, and the flat tables `dvc plots` draws with vega.

Every chart reads the metrics files the stages wrote; nothing here computes a metric.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from prunetune.comparison import VARIANTS  # noqa: E402
from prunetune.config import PrunetuneError  # noqa: E402

VARIANT_COLORS = {"base_full": "#9ecae1", "base_pruned": "#3182bd", "ft_full": "#fdae6b", "ft_pruned": "#e6550d"}
TRAIN_COLORS = {"full": "#3182bd", "pruned": "#e6550d"}
REMOVED_COLOR, KEPT_COLOR = "#e6550d", "#3182bd"
# (panel title, task, metric, y label); each a group of four variant bars with its interval
QUALITY_PANELS = (
    ("ROUGE-L", ("summarization", "title_generation"), "rougeL", "ROUGE-L F1"),
    ("BERTScore F1", ("summarization", "title_generation"), "bertscore_f1", "BERTScore F1 (MiniLM)"),
    ("Tag extraction", ("tag_extraction",), "f1", "tag F1 (per article)"),
    ("Type classification", ("type_classification",), "accuracy", "accuracy"),
)
# what a model scores without reading the article (eval's baselines), drawn as a dashed line on its panel
PANEL_BASELINES = {
    "f1": ("tag_extraction", "constant_baseline", "constant tag set"),
    "accuracy": ("type_classification", "majority_baseline", "majority baseline"),
}
TRAIN_CURVES = (
    ("Training loss", "train/loss.tsv", "loss"),
    ("Validation loss", "eval/loss.tsv", "loss"),
    ("Training token accuracy", "train/mean_token_accuracy.tsv", "mean_token_accuracy"),
    ("Validation token accuracy", "eval/mean_token_accuracy.tsv", "mean_token_accuracy"),
)
# plots/data/training/NAME.csv for `dvc plots`: one column per fine-tune, so the legend reads full / pruned
TRAIN_TABLES = dict(
    zip(("train_loss", "val_loss", "train_token_accuracy", "val_token_accuracy"), TRAIN_CURVES, strict=True)
)


def read_tsv(path: Path) -> dict[str, list[float]]:
    """A dvclive .tsv as columns of floats (an absent file is an empty series: that curve was not logged)."""
    if not path.exists():
        return {}
    with path.open() as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return {key: [float(row[key]) for row in rows] for key in (rows[0] if rows else {})}


def _errors(values: list[float], intervals: list[list[float]]) -> np.ndarray:
    """matplotlib's yerr from [low, high] intervals: distances below and above each value."""
    values_arr, ci = np.asarray(values), np.asarray(intervals, dtype=float).reshape(-1, 2)
    return np.clip(np.stack([values_arr - ci[:, 0], ci[:, 1] - values_arr]), 0, None)


def _save(figure: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=110, metadata={"Software": None})  # no version stamp: same inputs, same bytes
    plt.close(figure)
    return path


def _grouped_bars(axis: plt.Axes, groups: list[str], values: dict[str, list[float]], cis: dict[str, list]) -> None:
    width = 0.8 / len(values)
    positions = np.arange(len(groups))
    for offset, (variant, heights) in enumerate(values.items()):
        axis.bar(
            positions + (offset - (len(values) - 1) / 2) * width,
            heights,
            width,
            yerr=_errors(heights, cis[variant]),
            capsize=3,
            label=variant,
            color=VARIANT_COLORS.get(variant),
        )
    axis.set_xticks(positions, [g.replace("_", " ") for g in groups])
    axis.grid(axis="y", alpha=0.3)


def plot_training_curves(train_dirs: dict[str, Path], path: Path) -> Path:
    """Loss and token accuracy on train and validation, the full and pruned fine-tunes overlaid."""
    figure, axes = plt.subplots(2, 2, figsize=(11, 7))
    for axis, (title, file, column) in zip(axes.flat, TRAIN_CURVES, strict=True):
        for variant, directory in train_dirs.items():
            series = read_tsv(directory / "plots" / "metrics" / file)
            if series:
                axis.plot(series["step"], series[column], marker=".", label=variant, color=TRAIN_COLORS.get(variant))
        axis.set(title=title, xlabel="optimizer step", ylabel=column.replace("_", " "))
        axis.grid(alpha=0.3)
        axis.legend(title="fine-tune")
    figure.suptitle("LoRA healing: full vs pruned model")
    return _save(figure, path)


def plot_quality(eval_metrics: dict[str, dict[str, Any]], path: Path) -> Path:
    """Grouped bars per task metric with 95% intervals; the tag and type baselines and a log-scale perplexity."""
    figure, axes = plt.subplots(1, len(QUALITY_PANELS) + 1, figsize=(19, 4.6))
    for axis, (title, tasks, metric, label) in zip(axes, QUALITY_PANELS, strict=False):
        values = {v: [eval_metrics[v][t][metric] for t in tasks] for v in VARIANTS}
        cis = {v: [eval_metrics[v][t][f"{metric}_ci"] for t in tasks] for v in VARIANTS}
        _grouped_bars(axis, list(tasks), values, cis)
        axis.set(title=title, ylabel=label, ylim=(0, 1.05))
        if metric in PANEL_BASELINES:
            task, key, name = PANEL_BASELINES[metric]
            if (baseline := eval_metrics[VARIANTS[0]][task].get(key)) is not None:
                axis.axhline(baseline, color="black", linestyle="--", linewidth=1, label=f"{name} {baseline:.2f}")
                axis.legend(fontsize=8, loc="upper left")
    groups = ["summarization", "title_generation", "tag_extraction", "type_classification", "all tasks"]
    values, cis = {}, {}
    for variant in VARIANTS:
        metrics = eval_metrics[variant]
        values[variant] = [metrics[t]["perplexity"] for t in groups[:-1]] + [metrics["perplexity"]]
        cis[variant] = [metrics[t].get("perplexity_ci", [metrics[t]["perplexity"]] * 2) for t in groups[:-1]]
        cis[variant].append(metrics["perplexity_ci"])
    _grouped_bars(axes[-1], [g.split("_")[0] for g in groups], values, cis)
    axes[-1].set(title="Perplexity (lower is better)", ylabel="perplexity (log scale)", yscale="log")
    axes[-1].tick_params(axis="x", labelrotation=20)
    axes[-1].legend(title="variant", fontsize=8)
    figure.suptitle("Test-set quality of the four variants (error bars: 95% bootstrap intervals)")
    return _save(figure, path)


def plot_qa(qa_metrics: dict[str, dict[str, Any]], path: Path) -> Path:
    """QA accuracy by category and by difficulty, and the average log-likelihood of the gold answers."""
    figure, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    for axis, grouping, title in ((axes[0], "by_category", "category"), (axes[1], "by_difficulty", "difficulty")):
        groups = sorted({g for v in VARIANTS for g in qa_metrics[v].get(grouping, {})})
        empty = {"accuracy": 0.0, "accuracy_ci": [0.0, 0.0]}
        values = {v: [qa_metrics[v][grouping].get(g, empty)["accuracy"] for g in groups] for v in VARIANTS}
        cis = {v: [qa_metrics[v][grouping].get(g, empty)["accuracy_ci"] for g in groups] for v in VARIANTS}
        _grouped_bars(axis, groups, values, cis)
        counts = [qa_metrics[VARIANTS[0]][grouping].get(g, {}).get("n", 0) for g in groups]
        axis.set_xticks(
            range(len(groups)), [f"{g.replace('_', ' ')}\n(n={n})" for g, n in zip(groups, counts, strict=True)]
        )
        axis.set(title=f"QA accuracy by {title}", ylabel="accuracy", ylim=(0, 1.05))
    axes[0].legend(title="variant", fontsize=8)
    loglik = [qa_metrics[v]["gold_avg_loglik"] for v in VARIANTS]
    axes[2].bar(
        range(len(VARIANTS)),
        loglik,
        yerr=_errors(loglik, [qa_metrics[v]["gold_avg_loglik_ci"] for v in VARIANTS]),
        capsize=3,
        color=[VARIANT_COLORS[v] for v in VARIANTS],
    )
    axes[2].set_xticks(range(len(VARIANTS)), VARIANTS)
    axes[2].set(title="Gold answer log-likelihood (higher is better)", ylabel="mean log-prob per answer token")
    axes[2].grid(axis="y", alpha=0.3)
    figure.suptitle(f"Q&A set ({qa_metrics[VARIANTS[0]]['n']} questions; error bars: 95% bootstrap intervals)")
    return _save(figure, path)


def variant_speed(speed_metrics: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Each variant's decode figures from its pair's speed@PAIR file (base: base_full/base_pruned, ft: ft_*), with
    the speedup over the pair's full model (1 for the full model itself), the ratio measured in turns."""
    speed = {}
    for pair, metrics in speed_metrics.items():
        batched = f"b{metrics['batch_size']}"  # the speed file's figures end in _b1 and _b<batch_size>
        for role in ("full", "pruned"):
            figures = metrics[role]
            speed[f"{pair}_{role}"] = {
                "decode_tokens_per_s_b1": figures["decode_tokens_per_s_b1"],
                "decode_tokens_per_s_batched": figures[f"decode_tokens_per_s_{batched}"],
                "decode_speedup_b1": metrics["decode_speedup_b1"] if role == "pruned" else 1.0,
                "decode_speedup_batched": metrics[f"decode_speedup_{batched}"] if role == "pruned" else 1.0,
                "ideal_speedup": metrics["ideal_speedup"] if role == "pruned" else 1.0,
            }
    return speed


def plot_efficiency(eval_metrics: dict[str, dict[str, Any]], speed: dict[str, dict[str, float]], path: Path) -> Path:
    """What each variant costs (size on disk, decode speed) against what it keeps (test perplexity). Speed is the
    speedup over the unpruned model of the same pair, the one ratio measured under the same load."""
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    panels = (
        (axes[0], {v: eval_metrics[v]["efficiency"]["size_mb"] for v in VARIANTS}, "size on disk (MB)"),
        (
            axes[1],
            {v: speed[v]["decode_speedup_batched"] for v in VARIANTS},
            "decode speedup over its full model (batched)",
        ),
    )
    for axis, xs, label in panels:
        for variant in VARIANTS:
            metrics = eval_metrics[variant]
            x, y, (low, high) = xs[variant], metrics["perplexity"], metrics["perplexity_ci"]
            axis.errorbar(x, y, yerr=[[y - low], [high - y]], fmt="o", capsize=3, color=VARIANT_COLORS[variant])
            axis.annotate(variant, (x, y), textcoords="offset points", xytext=(6, 4), fontsize=9)
        axis.set(xlabel=label, ylabel="test perplexity (lower is better)", yscale="log")
        axis.grid(alpha=0.3)
    ideal = speed["ft_pruned"]["ideal_speedup"]
    axes[1].axvline(ideal, color="grey", ls="--", lw=1, label=f"ideal (FLOPs): {ideal:.3f}")
    axes[1].legend(fontsize=8)
    axes[0].set_title("Quality against size")
    axes[1].set_title("Quality against decode speed (batched; full and pruned timed in turns)")
    return _save(figure, path)


def plot_layer_scores(prune_metrics: dict[str, Any], path: Path) -> Path:
    """Per-layer Block Influence (log axis: deep layers score near zero) with the removed layers marked, and for
    `angular` the distance of every block; without scores, only which layers went."""
    removed = set(prune_metrics["removed_layers"])
    layers = list(range(prune_metrics["layers_before"]))
    scores = prune_metrics.get("layer_scores")
    distances = prune_metrics.get("block_distances")
    figure, axes = plt.subplots(1, 2 if distances else 1, figsize=(15 if distances else 10, 4.2), squeeze=False)
    axis = axes[0][0]
    colors = [REMOVED_COLOR if layer in removed else KEPT_COLOR for layer in layers]
    axis.bar(layers, scores if scores else [1.0] * len(layers), color=colors)
    axis.set_xticks(layers)
    if scores:
        axis.set(ylabel="block influence, 1 − cos(in, out) (log)", yscale="log")
    else:
        axis.set_yticks([])
    axis.set(xlabel="decoder layer", title=f"{len(layers)} → {prune_metrics['layers_after']} layers")
    handles = [Patch(color=REMOVED_COLOR, label=f"removed ({prune_metrics['method']})"), Patch(color=KEPT_COLOR)]
    handles[1].set_label("kept")
    axis.legend(handles=handles)
    axis.grid(axis="y", alpha=0.3)
    if distances:
        n_layers = len(layers) - prune_metrics["layers_after"]
        chosen = min(removed)
        starts = list(range(len(distances)))
        axes[0][1].bar(starts, distances, color=[REMOVED_COLOR if s == chosen else KEPT_COLOR for s in starts])
        axes[0][1].set_xticks(starts)
        axes[0][1].set(
            xlabel=f"first layer ℓ of the {n_layers}-layer block",
            ylabel="angular distance arccos(cos(x_ℓ, x_ℓ+n))/π",
            title="Angular distance per block (smallest removed)",
        )
        axes[0][1].grid(axis="y", alpha=0.3)
    return _save(figure, path)


def write_csv(path: Path, rows: list[dict[str, Any]], columns: list[str] | None = None) -> Path:
    """A flat table for `dvc plots` (vega reads CSV with a header); `columns` names those of an empty table."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else columns or [], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


def check_comparison(comparison: Any, path: str | Path) -> dict[str, Any]:
    """metrics/comparison.json as variant_rows reads it (a `table` row per variant); else one line naming the file."""
    table = comparison.get("table") if isinstance(comparison, dict) else None
    missing = [v for v in VARIANTS if not isinstance(table, dict) or not isinstance(table.get(v), dict)]
    if missing:
        where = "no 'table'" if not isinstance(table, dict) else f"no table row for {', '.join(missing)}"
        raise PrunetuneError(f"{path}: {where}; rerun the compare stage (dvc repro compare)")
    return comparison


def variant_rows(
    comparison: dict[str, Any], eval_metrics: dict[str, dict[str, Any]], speed: dict[str, dict[str, float]]
) -> list[dict[str, Any]]:
    """One row per variant: the table's columns plus size and speed, what the vega bar and scatter plots read."""
    rows = []
    for variant in VARIANTS:
        row = {"variant": variant}
        row.update({k: v for k, v in comparison["table"][variant].items() if not k.endswith("_ci")})
        efficiency = eval_metrics[variant]["efficiency"]
        row.update(size_mb=efficiency["size_mb"], params=efficiency["params"])
        row.update({k: v for k, v in speed[variant].items() if k != "ideal_speedup"})
        rows.append(row)
    return rows


def layer_rows(prune_metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per layer; the label zero-padded ("02" before "10"), since vega sorts a nominal axis as text."""
    removed = set(prune_metrics["removed_layers"])
    scores = prune_metrics.get("layer_scores") or [None] * prune_metrics["layers_before"]
    width = len(str(len(scores) - 1))
    return [
        {"layer": f"{layer:0{width}d}", "score": score if score is not None else "", "removed": int(layer in removed)}
        for layer, score in enumerate(scores)
    ]


def training_rows(train_dirs: dict[str, Path], file: str, column: str) -> list[dict[str, Any]]:
    """One dvclive curve of every fine-tune side by side: a row per step, a column per fine-tune (blank where it
    logged nothing at that step), so `dvc plots` names each line by its column instead of its file path."""
    by_step: dict[int, dict[str, Any]] = {}
    for variant, directory in train_dirs.items():
        series = read_tsv(directory / "plots" / "metrics" / file)
        for step, value in zip(series.get("step", []), series.get(column, []), strict=True):
            by_step.setdefault(int(step), {})[variant] = value
    return [{"step": step, **{v: by_step[step].get(v, "") for v in train_dirs}} for step in sorted(by_step)]
