"""Training-seed variance: several DVC experiments of one configuration pooled into one table.

A bootstrap interval covers the noise of a small test set for one trained model; a training seed (the base
model's initialisation and data order, the fine-tune's LoRA initialisation and batches) is a second source of
noise that no single run shows. Run the configuration with several seeds, then pool them:

    for seed in 1 2 3; do
        dvc exp run --queue -n "seed-$seed" -S model.tiny.seed=$seed -S train.seed=$seed
    done
    dvc queue start          # then `dvc queue status` until every task is done
    prunetune seed-report --out reports/seeds

Each paired difference of metrics/comparison.json gets its value per seed, the mean over seeds with its Student-t
95% interval (seeds as independent replicates; an interval for the mean, not an average of the seeds' own
intervals), the between-seed standard deviation, and how many seeds agree on its sign and on its significance.
Each seed's comparison.json is written beside the table (OUT/NAME/comparison.json), so a clone can recompute the
table from the committed files alone: `prunetune seed-report --comparisons reports/seeds`.
"""

from __future__ import annotations

import json
import math
import statistics
import subprocess
from pathlib import Path
from typing import Any

from prunetune.config import PrunetuneError
from prunetune.jsonio import read_json, write_json
from prunetune.stats import t_interval
from prunetune.sweep import check_out_dir, exp_states, file_data, metrics_problem

COMPARISON = "metrics/comparison.json"


def _with_intervals(comparison: dict[str, Any], rev: str) -> dict[str, Any]:
    """`dvc exp show` leaves lists (the intervals) out of metrics: read the whole file at the experiment's commit."""
    entries = [e for pair in comparison.get("differences", {}).values() for e in pair.values()]
    if all(isinstance(e, dict) and "ci" in e for e in entries):
        return comparison
    if rev == "workspace":
        return _checked(read_json(COMPARISON), COMPARISON)
    shown = subprocess.run(["git", "show", f"{rev}:{COMPARISON}"], capture_output=True, text=True, check=False)
    if shown.returncode != 0:
        raise PrunetuneError(f"seed-report: cannot read {COMPARISON} at {rev[:7]}: {shown.stderr.strip()}")
    try:
        whole = json.loads(shown.stdout)
    except ValueError as err:
        raise PrunetuneError(f"seed-report: {COMPARISON} at {rev[:7]} is not valid JSON ({err})") from None
    return _checked(whole, f"{rev[:7]}:{COMPARISON}")


def _checked(comparison: Any, where: str) -> dict[str, Any]:
    """A whole comparison.json read beside `dvc exp show`, held to the same shape check (sweep.metrics_problem)."""
    if not isinstance(comparison, dict):
        raise PrunetuneError(f"seed-report: {where} is a {type(comparison).__name__}, not an object")
    if problem := metrics_problem(COMPARISON, comparison, where):
        raise PrunetuneError(f"seed-report: {problem}")
    return comparison


def seed_runs(exp_show: list[dict[str, Any]], names: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """experiment name -> its metrics/comparison.json, for the named experiments (default: every one that has it);
    identical results (an experiment and the workspace it was applied to) are kept once."""
    runs: dict[str, dict[str, Any]] = {}
    seen: set[str] = set()
    for name, state in exp_states(exp_show):
        comparison = file_data((state.get("data") or {}).get("metrics"), COMPARISON)
        if not comparison or (names and name not in names):
            continue
        comparison = _with_intervals(comparison, state["rev"])
        key = json.dumps(comparison, sort_keys=True)
        if key not in seen:
            seen.add(key)
            runs[name] = comparison
    missing = sorted(set(names or []) - set(runs))
    if missing:
        raise PrunetuneError(
            f"seed-report: no {COMPARISON} for experiment(s) {', '.join(missing)}; "
            "`dvc exp show` lists the finished ones (queued or failed experiments have none)"
        )
    if len(runs) < 2:
        raise PrunetuneError(
            f"seed-report: {len(runs)} experiment(s) with {COMPARISON}; pooling needs at least 2 "
            "(dvc exp run --queue -S model.tiny.seed=N -S train.seed=N for several N, then dvc queue start)"
        )
    return runs


def _significant(entry: dict[str, Any]) -> bool:
    """The run's own verdict: Holm-adjusted where the comparison has it, else whether the interval excludes 0."""
    return bool(entry.get("holm_significant", entry.get("excludes_zero", False)))


def pool_differences(runs: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (pair, metric) present in every run: per-seed values, mean with its t-interval over seeds,
    between-seed sd, and the seeds that agree with the first on the sign and that call it significant."""
    first = next(iter(runs.values()))
    rows = []
    for pair, metrics in first.get("differences", {}).items():
        for metric in metrics:
            entries = [run.get("differences", {}).get(pair, {}).get(metric) for run in runs.values()]
            if any(not isinstance(e, dict) or "diff" not in e for e in entries):
                continue
            values = [float(e["diff"]) for e in entries]
            mean, t_ci = t_interval(values)
            signs = [math.copysign(1, v) if v else 0 for v in values]
            rows.append(
                {
                    "pair": pair,
                    "metric": metric,
                    "values": dict(zip(runs, values, strict=True)),
                    "mean": mean,
                    "seed_sd": statistics.stdev(values),
                    "t_ci": t_ci,  # Student-t over seeds, n - 1 degrees of freedom
                    "same_sign": sum(s == signs[0] for s in signs),
                    "significant": sum(_significant(e) for e in entries),
                    "seeds": len(entries),
                }
            )
    return rows


def _verdict(row: dict[str, Any]) -> str:
    """The pooled verdict: the t-interval over seeds, beside how many seeds' own Holm verdicts agree."""
    low, high = row["t_ci"]
    pooled = ("+" if low > 0 else "−") + " (t-interval excludes 0)" if low > 0 or high < 0 else "not detected"
    n = row["seeds"]
    return f"{pooled}; {row['significant']}/{n} seeds significant"


def render_markdown(rows: list[dict[str, Any]], names: list[str]) -> str:
    header = (
        "| A − B | metric | " + " | ".join(names) + " | mean | 95% t-interval over seeds | between-seed sd | verdict |"
    )
    lines = [
        f"Paired differences over {len(names)} runs ({', '.join(names)}), each with its own training seeds (and "
        "split, where data.seed differs). *95% t-interval over seeds*: mean ± t(n−1)·sd/√n, an interval for the "
        "mean over seeds that counts retraining noise (and only that between runs); with few seeds it is wide. "
        "The verdict names a sign only where that interval excludes zero; otherwise the difference is not "
        "detected at this power (which is not evidence of no difference). *n/N seeds significant*: each run's "
        "own Holm verdict. Each run's comparison.json is in this folder (NAME/comparison.json).",
        "",
        header,
        "|" + "---|" * (len(names) + 6),
    ]
    for row in rows:
        cells = [f"{row['values'][name]:+.4g}" for name in names]
        low, high = row["t_ci"]
        lines.append(
            f"| {row['pair'].replace('-', ' − ', 1)} | {row['metric']} | {' | '.join(cells)} | {row['mean']:+.4g} | "
            f"[{low:+.4g}, {high:+.4g}] | {row['seed_sd']:.3g} | {_verdict(row)} |"
        )
    return "\n".join(lines) + "\n"


def read_comparisons(folder: Path) -> dict[str, dict[str, Any]]:
    """name -> comparison from a seed report's folder (NAME/comparison.json): the committed runs, no dvc needed."""
    files = sorted(Path(folder).glob("*/comparison.json"))
    if len(files) < 2:
        raise PrunetuneError(f"seed-report: {folder} holds {len(files)} NAME/comparison.json; pooling needs at least 2")
    return {path.parent.name: read_json(path) for path in files}


def seed_report(
    exp_show: list[dict[str, Any]] | None,
    out_dir: Path,
    names: list[str] | None = None,
    runs: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Path]:
    """seeds.json (every pooled row), seeds.md (the table) and each run's NAME/comparison.json in out_dir; from
    `dvc exp show` output, or from runs already read (read_comparisons)."""
    if runs is None:
        runs = seed_runs(exp_show or [], names)
    elif names:
        runs = {name: runs[name] for name in names if name in runs}
    rows = pool_differences(runs)
    check_out_dir(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, comparison in runs.items():
        write_json(out_dir / name / "comparison.json", comparison)
    json_path, md_path = out_dir / "seeds.json", out_dir / "seeds.md"
    json_path.write_text(json.dumps({"experiments": list(runs), "differences": rows}, indent=2) + "\n")
    md_path.write_text(render_markdown(rows, list(runs)), encoding="utf-8")
    return {"json": json_path, "markdown": md_path}
