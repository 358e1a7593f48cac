"""A study's results on main: `prunetune study-record` copies a finished DVC experiment's params, dvc.lock, metrics,
reports, plots and per-example predictions into studies/<name>/, and `prunetune study-diff` prints a record's
metrics beside the default's, leaf by leaf, as `dvc metrics diff` does.

Why a record: only main reaches a clone (an experiment ref is never pushed with it), and a study on a real model
takes hours to rerun. The record is plain files, so a clone reads and recomputes from it without DVC or a run.
"""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path
from typing import Any

import yaml

from prunetune.config import PrunetuneError

RECORDED_DIRS = ("metrics", "reports", "plots", "predictions")  # plus params.yaml, dvc.lock, data/processed/report.json
RECORDED_FILES = ("params.yaml", "dvc.lock", "data/processed/report.json")


def _git(*args: str, cwd: Path) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise PrunetuneError(f"git {' '.join(args)}: {result.stderr.strip() or 'failed'}")
    return result.stdout


def experiment_ref(name: str, root: Path = Path(".")) -> str:
    """The newest experiment ref of that name (refs/exps/.../NAME), as `dvc exp run -n NAME` left it."""
    refs = _git("for-each-ref", "--sort=-committerdate", "--format=%(refname)", "refs/exps/", cwd=root).split()
    matching = [ref for ref in refs if ref.rsplit("/", 1)[-1] == name]
    if not matching:
        raise PrunetuneError(f"study-record: no DVC experiment named {name!r} here; `dvc exp show` lists them")
    return matching[0]


def recorded_paths(ref: str, root: Path) -> list[str]:
    """Every file the record keeps: git-tracked ones under RECORDED_DIRS, and dvc.lock's file outputs there."""
    tracked = _git("ls-tree", "-r", "--name-only", ref, "--", *RECORDED_DIRS, cwd=root).split("\n")
    lock = yaml.safe_load(_git("show", f"{ref}:dvc.lock", cwd=root))
    cached = [
        out["path"]
        for stage in lock.get("stages", {}).values()
        for out in stage.get("outs", [])
        if out["path"].split("/", 1)[0] in RECORDED_DIRS and not out["path"].endswith("/") and "nfiles" not in out
    ]
    wanted = {p for p in tracked if p and not p.endswith(".gitignore")} | set(cached) | set(RECORDED_FILES)
    return sorted(wanted)


def record(name: str, out_dir: Path, root: Path = Path(".")) -> list[str]:
    """Copy experiment `name`'s files into out_dir (replaced whole); returns the paths written."""
    import dvc.api

    ref = experiment_ref(name, root)
    paths = recorded_paths(ref, root)
    staging = out_dir.with_name(out_dir.name + ".tmp")
    subprocess.run(["rm", "-rf", str(staging)], check=True)
    for path in paths:
        target = staging / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(dvc.api.read(path, repo=str(root), rev=ref, mode="rb"))
    (staging / "experiment.json").write_text(
        json.dumps({"name": name, "ref": ref, "commit": _git("rev-parse", ref, cwd=root).strip()}, indent=2) + "\n"
    )
    subprocess.run(["rm", "-rf", str(out_dir)], check=True)
    staging.rename(out_dir)
    return paths


# ---------------------------------------------------------------- metrics side by side


def metric_leaves(tree: Any, prefix: str = "") -> dict[str, float]:
    """Every numeric leaf of a metrics file by its dotted path (lists and strings are not metrics, as in DVC)."""
    if isinstance(tree, dict):
        leaves: dict[str, float] = {}
        for key, value in tree.items():
            leaves |= metric_leaves(value, f"{prefix}{key}.")
        return leaves
    if isinstance(tree, bool) or not isinstance(tree, int | float):
        return {}
    return {prefix.rstrip("."): float(tree)}


def metrics_files(root: Path) -> dict[str, Path]:
    """metrics/**/*.json under root, by path relative to root."""
    return {str(p.relative_to(root)): p for p in sorted((root / "metrics").rglob("*.json"))}


def diff_rows(default_root: Path, study_root: Path, only: str | None = None) -> list[tuple[str, str, Any, Any]]:
    """(file, metric, default, study) for every metric either side has; `only` keeps files whose path contains it."""
    if not (study_root / "metrics").is_dir():
        raise PrunetuneError(
            f"study-diff: {study_root} has no metrics/ folder; give a studies/<name>/<experiment> folder"
        )
    default_files, study_files = metrics_files(default_root), metrics_files(study_root)
    rows = []
    for path in sorted(set(default_files) | set(study_files)):
        if only and only not in path:
            continue
        left = metric_leaves(json.loads(default_files[path].read_text())) if path in default_files else {}
        right = metric_leaves(json.loads(study_files[path].read_text())) if path in study_files else {}
        for metric in sorted(set(left) | set(right)):
            rows.append((path, metric, left.get(metric, "-"), right.get(metric, "-")))
    return rows


def _number(value: Any) -> str:
    if not isinstance(value, float):
        return str(value)
    return "nan" if math.isnan(value) else f"{value:.5g}"


def diff_table(rows: list[tuple[str, str, Any, Any]], default_name: str, study_name: str) -> str:
    """The rows as `dvc metrics diff` prints them: Path, Metric, the two values, Change."""
    header = ("Path", "Metric", default_name, study_name, "Change")
    lines = [header]
    for path, metric, left, right in rows:
        change = _number(right - left) if isinstance(left, float) and isinstance(right, float) else "-"
        lines.append((path, metric, _number(left), _number(right), change))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in lines)
