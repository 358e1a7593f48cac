"""The four-variant comparison: the reference study's table with intervals, and paired differences.

A difference between two variants is bootstrapped over the SAME test examples (paired), which is what tells
whether pruning or fine-tuning changed a score beyond the noise of a small test set.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from prunetune.config import PrunetuneError
from prunetune.data import read_json, read_jsonl
from prunetune.metrics import paired_bootstrap_stat

VARIANTS = ("base_full", "base_pruned", "ft_full", "ft_pruned")
# (column key, heading, task, per-example score); the reference study's table, generation tasks first
TASK_COLUMNS = (
    ("summarization_rougeL", "Summarization ROUGE-L", "summarization", "rougeL"),
    ("title_rougeL", "Title ROUGE-L", "title_generation", "rougeL"),
    ("tag_f1", "Tag F1", "tag_extraction", "f1"),
    ("type_accuracy", "Type accuracy", "type_classification", "accuracy"),
)
COLUMNS = (*TASK_COLUMNS, ("perplexity", "Perplexity", None, None), ("qa_accuracy", "QA accuracy", None, None))
# (minuend, subtrahend): what pruning costs before and after healing, and what fine-tuning brings to each
PAIRS = (("ft_pruned", "ft_full"), ("base_pruned", "base_full"), ("ft_full", "base_full"), ("ft_pruned", "base_pruned"))


def _by_key(rows: list[dict[str, Any]], key: tuple[str, ...], source: str) -> dict[tuple, dict[str, Any]]:
    keyed = {tuple(row[k] for k in key): row for row in rows}
    if len(keyed) != len(rows):
        raise PrunetuneError(f"{source}: {len(rows) - len(keyed)} rows repeat a {'/'.join(key)}; re-run its stage")
    return keyed


def _paired(a: dict[tuple, Any], b: dict[tuple, Any], sources: tuple[str, str]) -> list[tuple]:
    """The example keys both variants were scored on; they must be the same set (the same test split)."""
    if a.keys() != b.keys():
        raise PrunetuneError(
            f"{sources[0]} and {sources[1]} score different examples ({len(a)} vs {len(b)}); "
            "re-run both eval stages on the same test split"
        )
    return sorted(a)


def _mean_difference(a: list[float], b: list[float], n_resamples: int, seed: int) -> dict[str, Any]:
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return paired_bootstrap_stat(len(x), lambda idx: x[idx].mean(), lambda idx: y[idx].mean(), n_resamples, seed)


def _perplexity_difference(
    nll_a: list[float], nll_b: list[float], tokens: list[int], n_resamples: int, seed: int
) -> dict[str, Any]:
    """Token-weighted perplexity A - B, each resample a ratio of sums over the same examples."""
    a, b, n = np.asarray(nll_a), np.asarray(nll_b), np.asarray(tokens, dtype=np.float64)
    return paired_bootstrap_stat(
        len(n),
        lambda idx: math.exp(a[idx].sum() / n[idx].sum()),
        lambda idx: math.exp(b[idx].sum() / n[idx].sum()),
        n_resamples,
        seed,
    )


def compare(
    eval_metrics: dict[str, dict[str, Any]],
    qa_metrics: dict[str, dict[str, Any]],
    predictions: dict[str, list[dict[str, Any]]],
    qa_predictions: dict[str, list[dict[str, Any]]],
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """{"table": variant -> column -> value and _ci, "differences": "A-B" -> column -> paired diff}."""
    table: dict[str, dict[str, Any]] = {}
    for variant in VARIANTS:
        row: dict[str, Any] = {}
        for column, _, task, score in TASK_COLUMNS:
            row[column] = eval_metrics[variant][task][score]
            row[f"{column}_ci"] = eval_metrics[variant][task][f"{score}_ci"]
        row["perplexity"] = eval_metrics[variant]["perplexity"]
        row["perplexity_ci"] = eval_metrics[variant]["perplexity_ci"]
        row["qa_accuracy"] = qa_metrics[variant]["accuracy"]
        row["qa_accuracy_ci"] = qa_metrics[variant]["accuracy_ci"]
        table[variant] = row

    rows = {v: _by_key(predictions[v], ("task", "article_id"), f"predictions/{v}.jsonl") for v in VARIANTS}
    qa_rows = {v: _by_key(qa_predictions[v], ("id",), f"predictions/qa_{v}.jsonl") for v in VARIANTS}
    differences: dict[str, dict[str, Any]] = {}
    for a, b in PAIRS:
        keys = _paired(rows[a], rows[b], (f"predictions/{a}.jsonl", f"predictions/{b}.jsonl"))
        pair: dict[str, Any] = {}
        for column, _, task, score in TASK_COLUMNS:
            task_keys = [k for k in keys if k[0] == task]
            pair[column] = _mean_difference(
                [rows[a][k]["scores"][score] for k in task_keys],
                [rows[b][k]["scores"][score] for k in task_keys],
                n_resamples,
                seed,
            )
        pair["perplexity"] = _perplexity_difference(
            [rows[a][k]["nll_sum"] for k in keys],
            [rows[b][k]["nll_sum"] for k in keys],
            [rows[a][k]["answer_tokens"] for k in keys],
            n_resamples,
            seed,
        )
        qa_keys = _paired(qa_rows[a], qa_rows[b], (f"predictions/qa_{a}.jsonl", f"predictions/qa_{b}.jsonl"))
        pair["qa_accuracy"] = _mean_difference(
            [float(qa_rows[a][k]["correct"]) for k in qa_keys],
            [float(qa_rows[b][k]["correct"]) for k in qa_keys],
            n_resamples,
            seed,
        )
        differences[f"{a}-{b}"] = pair
    return {"table": table, "differences": differences}


def load_inputs(root: Path = Path(".")) -> tuple[dict, dict, dict, dict]:
    """The eval and QA metrics and predictions of the four variants, as the stages wrote them."""
    return (
        {v: read_json(root / f"metrics/eval/{v}.json") for v in VARIANTS},
        {v: read_json(root / f"metrics/qa/{v}.json") for v in VARIANTS},
        {v: read_jsonl(root / f"predictions/{v}.jsonl") for v in VARIANTS},
        {v: read_jsonl(root / f"predictions/qa_{v}.jsonl") for v in VARIANTS},
    )


def example_counts(predictions: dict[str, list[dict[str, Any]]], qa_predictions: dict[str, list]) -> dict[str, int]:
    """Test examples per task and QA questions: the n behind every interval (the same for every variant)."""
    counts: dict[str, int] = {}
    for row in predictions[VARIANTS[0]]:
        counts[row["task"]] = counts.get(row["task"], 0) + 1
    return {**counts, "qa": len(qa_predictions[VARIANTS[0]])}


def significant_columns(comparison: dict[str, Any]) -> dict[str, list[str]]:
    """Per pair, the columns whose paired interval excludes zero."""
    return {
        pair: [column for column, d in diffs.items() if d["excludes_zero"]]
        for pair, diffs in comparison["differences"].items()
    }


def _number(value: float, column: str, sign: str = "") -> str:
    return f"{value:{sign}.1f}" if column == "perplexity" else f"{value:{sign}.3f}"


def render_markdown(comparison: dict[str, Any], n_examples: dict[str, int]) -> str:
    """reports/comparison.md: the table, then the paired differences with whether each excludes zero."""
    lines = [
        "# Four-variant comparison",
        "",
        "Value and 95% bootstrap interval over the test examples "
        + ", ".join(f"{task} n={n}" for task, n in n_examples.items())
        + ". Perplexity: token-weighted over all test answers (lower is better).",
        "",
        "| Variant | " + " | ".join(heading for _, heading, _, _ in COLUMNS) + " |",
        "|---|" + "---|" * len(COLUMNS),
    ]
    for variant, row in comparison["table"].items():
        cells = [
            f"{_number(row[c], c)} [{_number(row[c + '_ci'][0], c)}, {_number(row[c + '_ci'][1], c)}]"
            for c, *_ in COLUMNS
        ]
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Paired differences",
        "",
        "A − B on the same examples, paired bootstrap 95% interval; **bold** where the interval excludes zero.",
        "",
        "| A − B | " + " | ".join(heading for _, heading, _, _ in COLUMNS) + " |",
        "|---|" + "---|" * len(COLUMNS),
    ]
    for pair, diffs in comparison["differences"].items():
        cells = []
        for column, *_ in COLUMNS:
            d = diffs[column]
            low, high = (_number(bound, column, "+") for bound in d["ci"])
            text = f"{_number(d['diff'], column, '+')} [{low}, {high}]"
            cells.append(f"**{text}**" if d["excludes_zero"] else text)
        lines.append(f"| {pair.replace('-', ' − ')} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
