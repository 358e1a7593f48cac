"""The pruning sweep's report: quality against parameters and decode speed over DVC experiments, as a Pareto plot
and the table behind it.

Run the sweep first (each experiment is a full pipeline run from the committed tree):

    for n in 1 2 4 8; do for m in block_influence angular tail; do
        dvc exp run --queue -n "$m-$n" -S prune.method=$m -S prune.n_layers=$n
    done; done
    dvc queue start          # then `dvc queue status` until every task is done
    prunetune sweep-report --out reports/sweep

The report reads `dvc exp show --json`: params.yaml, metrics/prune.json and metrics/eval/<variant>.json of each
experiment (lists such as removed_layers are not part of exp show's output, so they are not in the table).
"""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prunetune.config import PrunetuneError

PARAMS_FILE, PRUNE_METRICS = "params.yaml", "metrics/prune.json"
TABLE_QUALITY = ("summarization.rougeL", "title_generation.rougeL", "perplexity")
COLUMNS = (
    "experiment",
    "rev",
    "variant",
    "method",
    "n_layers",
    "healing",
    "layers",
    "params",
    "decode_speedup_b1",
    "ideal_speedup",
)


def lower_is_better(metric: str) -> bool:
    return metric.rsplit(".", 1)[-1] == "perplexity"


def _lookup(data: dict[str, Any], dotted: str) -> Any:
    for key in dotted.split("."):
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def file_data(files: dict[str, Any], path: str) -> dict[str, Any]:
    entry = (files or {}).get(path) or {}
    return entry.get("data") or {}


def exp_states(exp_show: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(name, ExpState) pairs: experiments first, then their baselines, the workspace last, so that the duplicate
    left after `dvc exp run` applies an experiment to the workspace is dropped, not the named experiment."""
    baselines = []
    for baseline in exp_show:
        for exp_range in baseline.get("experiments") or []:
            for state in exp_range.get("revs") or []:
                yield exp_range.get("name") or state.get("name") or _short(state["rev"]), state
        baselines.append(baseline)
    baselines.sort(key=lambda state: state.get("rev") == "workspace")
    for state in baselines:
        yield state.get("name") or _short(state["rev"]), state


def _short(rev: str) -> str:
    """A commit's first 7 hex digits; `workspace` stays whole."""
    return rev if rev == "workspace" else rev[:7]


def _row(
    name: str, rev: str, variant: str, params: dict[str, Any], prune: dict, evaluation: dict, speed: dict
) -> dict[str, Any]:
    """speed: the variant's speed@PAIR metrics; its decode speedup (batch 1) over the pair's full model is the one
    speed figure comparable across experiments, each measured in turns with its own reference."""
    efficiency = evaluation.get("efficiency") or {}
    unpruned = variant.endswith("_full")
    row = {
        "experiment": name,
        "rev": rev if rev == "workspace" else rev[:7],
        "variant": variant,
        "method": "none" if unpruned else _lookup(params, "prune.method"),
        "n_layers": 0 if unpruned else _lookup(params, "prune.n_layers"),
        "healing": _lookup(params, "train.method") or "lora",
        "layers": (None if unpruned else prune.get("layers_after")) or efficiency.get("layers"),
        "params": (None if unpruned else prune.get("params_after")) or efficiency.get("params"),
        "decode_speedup_b1": (1.0 if unpruned else speed.get("decode_speedup_b1")) if speed else None,
        "ideal_speedup": (1.0 if unpruned else speed.get("ideal_speedup")) if speed else None,  # FLOP ratio
    }
    if row["method"] == "last":
        row["n_layers"] = 1
    return row | {"_eval": evaluation}


def _speed_file(variant: str) -> str:
    return f"metrics/speed/{variant.split('_')[0]}.json"  # ft_pruned -> the ft pair


def experiment_rows(
    exp_show: list[dict[str, Any]], variant: str = "ft_pruned", reference: str | None = "ft_full"
) -> list[dict[str, Any]]:
    """One row per experiment that has metrics/eval/<variant>.json (queued, running and failed ones have none),
    identical results once, plus one row for the unpruned reference variant (the first experiment that has it)."""
    rows, seen, reference_row = [], set(), None
    for name, state in exp_states(exp_show):
        data = state.get("data") or {}
        params = file_data(data.get("params"), PARAMS_FILE)
        metrics = data.get("metrics") or {}
        evaluation = file_data(metrics, f"metrics/eval/{variant}.json")
        if not evaluation:
            continue
        key = json.dumps([params, {path: file_data(metrics, path) for path in sorted(metrics)}], sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        speed = file_data(metrics, _speed_file(variant))
        rows.append(_row(name, state["rev"], variant, params, file_data(metrics, PRUNE_METRICS), evaluation, speed))
        reference_eval = file_data(metrics, f"metrics/eval/{reference}.json") if reference else {}
        if reference_row is None and reference_eval:
            reference_speed = file_data(metrics, _speed_file(reference))
            reference_row = _row(
                f"{reference} (unpruned)", state["rev"], reference, params, {}, reference_eval, reference_speed
            )
    return rows + ([reference_row] if reference_row else [])


def add_quality(rows: list[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """The table's quality columns (and the plotted metric) read from each row's eval metrics."""
    for row in rows:
        for name in dict.fromkeys((*TABLE_QUALITY, metric)):
            row[name] = _lookup(row["_eval"], name)
    return rows


def pareto_mask(costs: list[float], qualities: list[float]) -> list[bool]:
    """True where no other point is at least as cheap and at least as good, and strictly better in one of the two."""
    points = list(zip(costs, qualities, strict=True))
    return [
        not any(c <= cost and q >= quality and (c < cost or q > quality) for c, q in points) for cost, quality in points
    ]


def mark_pareto(rows: list[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """pareto_params and pareto_speed flags: on the front of (fewer parameters | faster decoding, better quality)."""
    sign = -1 if lower_is_better(metric) else 1
    for axis, column, cost_sign in (("params", "pareto_params", 1), ("decode_speedup_b1", "pareto_speed", -1)):
        usable = [r for r in rows if isinstance(r.get(axis), int | float) and isinstance(r.get(metric), int | float)]
        flags = pareto_mask([cost_sign * r[axis] for r in usable], [sign * r[metric] for r in usable])
        for row in rows:
            row[column] = False
        for row, flag in zip(usable, flags, strict=True):
            row[column] = flag
    return rows


def _table_columns(metric: str) -> list[str]:
    return [*COLUMNS, *dict.fromkeys((*TABLE_QUALITY, metric)), "pareto_params", "pareto_speed"]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return str(value)


def write_table(rows: list[dict[str, Any]], metric: str, out_dir: Path) -> tuple[Path, Path]:
    """sweep.csv and sweep.md: the numbers behind the plot, one row per experiment."""
    columns = _table_columns(metric)
    csv_path, md_path = out_dir / "sweep.csv", out_dir / "sweep.md"
    with csv_path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    lines = [
        f"Pruning sweep: {metric} ({'lower' if lower_is_better(metric) else 'higher'} is better) against parameters "
        "and decode speed; pareto_*: on the Pareto front of that pair.",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
        *("| " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for row in rows),
    ]
    md_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return csv_path, md_path


def draw_pareto(rows: list[dict[str, Any]], metric: str, out_path: Path) -> Path:
    """Two panels, quality against parameters and against decode speedup, the Pareto front drawn as a step line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    methods = sorted({str(row["method"]) for row in rows})
    colors = {method: plt.get_cmap("tab10")(i % 10) for i, method in enumerate(methods)}
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.8), constrained_layout=True)
    # where: the step holds the best quality reachable within a size budget (post) or above a speed floor (pre)
    panels = (
        (axes[0], "params", "pareto_params", "parameters", "post"),
        (axes[1], "decode_speedup_b1", "pareto_speed", "decode speedup over the unpruned model (batch 1)", "pre"),
    )
    for axis, x_key, front_key, x_label, where in panels:
        usable = [r for r in rows if isinstance(r.get(x_key), int | float) and isinstance(r.get(metric), int | float)]
        for method in methods:
            points = [r for r in usable if str(r["method"]) == method]
            if points:
                axis.scatter(
                    [r[x_key] for r in points],
                    [r[metric] for r in points],
                    color=colors[method],
                    marker="*" if method == "none" else "o",
                    s=120 if method == "none" else 45,
                    label="unpruned" if method == "none" else method,
                    zorder=3,
                )
        for row in usable:
            label = "unpruned" if row["method"] == "none" else f"{row['method']} n={row['n_layers']}"
            axis.annotate(label, (row[x_key], row[metric]), textcoords="offset points", xytext=(4, 4), fontsize=7)
        front = sorted((r for r in usable if r[front_key]), key=lambda r: r[x_key])
        if len(front) > 1:
            axis.step([r[x_key] for r in front], [r[metric] for r in front], where=where, color="grey", ls="--",
                      lw=1, label="Pareto front", zorder=2)  # fmt: skip
        axis.set_xlabel(x_label)
        axis.set_ylabel(f"{metric} ({'lower' if lower_is_better(metric) else 'higher'} is better)")
        axis.grid(alpha=0.3)
    axes[0].xaxis.set_major_formatter(matplotlib.ticker.EngFormatter())  # 725k, 1.2M: readable at any scale
    axes[0].set_title("quality against size")
    axes[1].set_title("quality against decode speed")
    axes[1].legend(fontsize=8, loc="best")
    figure.savefig(out_path, dpi=120)
    plt.close(figure)
    return out_path


def _state_problem(state: Any, where: str) -> str | None:
    if not isinstance(state, dict) or not isinstance(state.get("rev"), str):
        return f"{where} is not an object with a 'rev'"
    data = {} if state.get("data") is None else state["data"]
    if not isinstance(data, dict):
        return f"{where}.data is not an object"
    for kind in ("params", "metrics"):
        files = {} if data.get(kind) is None else data[kind]
        if not isinstance(files, dict) or not all(isinstance(entry, dict | None) for entry in files.values()):
            return f"{where}.data.{kind} is not an object of files"
        if not all(isinstance((entry or {}).get("data") or {}, dict) for entry in files.values()):
            return f"{where}.data.{kind} holds a file whose data is not an object"
    for path, entry in (data.get("metrics") or {}).items():
        problem = metrics_problem(path, (entry or {}).get("data") or {}, f"{where}.data.metrics[{path!r}].data")
        if problem:
            return problem
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def metrics_problem(path: str, data: dict[str, Any], where: str) -> str | None:
    """The first value the reports read from a metrics file that has the wrong type, named by its path; else None.

    eval files: `efficiency` an object; metrics/comparison.json: `differences` {pair: {metric: {diff, ci, ...}}}."""
    if path.startswith("metrics/eval/") and not isinstance(data.get("efficiency", {}), dict):
        return f"{where}.efficiency is a {type(data['efficiency']).__name__}, not an object"
    if path != "metrics/comparison.json":
        return None
    differences = data.get("differences", {})
    if not isinstance(differences, dict):
        return f"{where}.differences is a {type(differences).__name__}, not an object"
    for pair, metrics in differences.items():
        if not isinstance(metrics, dict):
            return f"{where}.differences[{pair!r}] is a {type(metrics).__name__}, not an object"
        for metric, entry in metrics.items():
            at = f"{where}.differences[{pair!r}][{metric!r}]"
            if not isinstance(entry, dict):
                return f"{at} is a {type(entry).__name__}, not an object"
            if "diff" in entry and not _is_number(entry["diff"]):
                return f"{at}.diff is {entry['diff']!r}, not a number"
            ci = entry.get("ci", [0, 0])
            if not (isinstance(ci, list) and len(ci) == 2 and all(_is_number(x) for x in ci)):
                return f"{at}.ci is {ci!r}, not a [low, high] pair of numbers"
    return None


def check_exp_show(exp_show: Any, source: str, command: str = "sweep-report") -> list[dict[str, Any]]:
    """exp_show if it has the shape of `dvc exp show --json` output (as far as the reports read it); else one line."""
    problem = None if isinstance(exp_show, list) else f"a JSON {type(exp_show).__name__}, not a list of revisions"
    for i, baseline in enumerate(exp_show if problem is None else []):
        problem = _state_problem(baseline, f"[{i}]")
        experiments = baseline.get("experiments") if problem is None else None
        if experiments is not None and not isinstance(experiments, list):
            problem = f"[{i}].experiments is a {type(experiments).__name__}, not a list"
        for j, exp_range in enumerate(experiments if problem is None and experiments else []):
            if not isinstance(exp_range, dict) or not isinstance(exp_range.get("name"), str | None):
                problem = f"[{i}].experiments[{j}] is not an object with a 'name' and 'revs'"
                break
            revs = exp_range.get("revs") if isinstance(exp_range, dict) else None
            if not isinstance(revs, list | None):
                problem = f"[{i}].experiments[{j}] has no list of 'revs'"
            for k, state in enumerate(revs or []):
                problem = problem or _state_problem(state, f"[{i}].experiments[{j}].revs[{k}]")
            if problem:
                break
        if problem:
            break
    if problem:
        raise PrunetuneError(f"{command}: {source}: not `dvc exp show --json` output ({problem})")
    return exp_show


def read_exp_show_file(path: str | Path, command: str = "sweep-report") -> list[dict[str, Any]]:
    """Saved `dvc exp show --json` output (--from-json), checked; a missing or malformed file is one line."""
    from prunetune.jsonio import read_json

    hint = "save it with `dvc exp show --json > FILE`"
    exp_show = read_json(path, missing=f"check the --from-json path ({hint})", damaged=hint)
    return check_exp_show(exp_show, str(path), command)


def read_experiments(all_commits: bool = False, command: str = "sweep-report") -> list[dict[str, Any]]:
    """`dvc exp show --json` of the repository in the working directory, parsed; errors name `command`."""
    argv = [sys.executable, "-m", "dvc", "exp", "show", "--json", *(["--all-commits"] if all_commits else [])]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise PrunetuneError(f"{command}: `dvc exp show --json` failed: {last}")
    return json.loads(result.stdout)


def check_out_dir(out_dir: Path) -> None:
    """--out names a folder for the report's files: an existing file there is refused, not replaced."""
    if out_dir.exists() and not out_dir.is_dir():
        raise PrunetuneError(f"--out {out_dir}: is a file; give a folder for the report's files")


def sweep_report(
    exp_show: list[dict[str, Any]], out_dir: Path, variant: str = "ft_pruned", metric: str = "summarization.rougeL"
) -> dict[str, Path]:
    """Rows from exp-show JSON, their Pareto flags, and the plot and tables written to out_dir."""
    rows = experiment_rows(exp_show, variant)
    pruned = [row for row in rows if row["variant"] == variant]
    if not pruned:
        raise PrunetuneError(
            f"sweep-report: no experiment has metrics/eval/{variant}.json; run the sweep (dvc exp run --queue ..., "
            "dvc queue start) and wait for it to finish"
        )
    add_quality(rows, metric)
    if all(row[metric] is None for row in pruned):
        raise PrunetuneError(f"sweep-report: metrics/eval/{variant}.json has no metric '{metric}' in any experiment")
    if not any(_is_number(row[metric]) for row in pruned):
        value = next(row[metric] for row in pruned if row[metric] is not None)
        keys = (
            f" (one of its keys: {', '.join(f'{metric}.{k}' for k in list(value)[:4])})"
            if isinstance(value, dict)
            else ""
        )
        raise PrunetuneError(
            f"sweep-report: --metric {metric} is a {type(value).__name__} in metrics/eval/{variant}.json, not a "
            f"number; give a leaf metric{keys}"
        )
    mark_pareto(rows, metric)
    check_out_dir(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = write_table(rows, metric, out_dir)
    return {"plot": draw_pareto(rows, metric, out_dir / "sweep.png"), "csv": csv_path, "markdown": md_path}
