"""The four-variant comparison: the reference study's table with intervals, paired differences and healing.

A difference between two variants is bootstrapped over the SAME test articles (paired; an article's examples
are resampled together), which is what tells whether pruning or fine-tuning changed a score beyond the noise of
a small test set; Holm–Bonferroni keeps the report's family of paired tests at a 5% family-wise error.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from prunetune.config import PrunetuneError
from prunetune.jsonio import read_json, read_jsonl
from prunetune.stats import bootstrap, holm, paired_bootstrap_diff, paired_bootstrap_stat

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
ALPHA = 0.05  # family-wise error rate of the paired tests


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


def _perplexity(nll: np.ndarray, tokens: np.ndarray) -> Any:
    return lambda idx: math.exp(nll[idx].sum() / tokens[idx].sum())


def _perplexity_difference(
    side_a: tuple[list[float], list[int]],
    side_b: tuple[list[float], list[int]],
    clusters: list[str],
    n_resamples: int,
    seed: int,
) -> dict[str, Any]:
    """Token-weighted perplexity A - B, each resample a ratio of sums over the same articles (all their answers)."""
    (nll_a, tokens_a), (nll_b, tokens_b) = side_a, side_b
    a = _perplexity(np.asarray(nll_a, dtype=np.float64), np.asarray(tokens_a, dtype=np.float64))
    b = _perplexity(np.asarray(nll_b, dtype=np.float64), np.asarray(tokens_b, dtype=np.float64))
    return paired_bootstrap_stat(len(nll_a), a, b, n_resamples, seed, clusters=clusters)


def healing(
    rows: dict[str, dict[tuple, dict[str, Any]]],
    keys: list[tuple],
    n_resamples: int = 1000,
    seed: int = 0,
    ci_method: str = "percentile",
) -> dict[str, Any]:
    """How much of the perplexity pruning cost fine-tuning wins back: 1 - gap_ft / gap_base, with
    gap_base = ppl(base_pruned) - ppl(base_full) and gap_ft = ppl(ft_pruned) - ppl(ft_full). Each bootstrap
    resample draws articles once and recomputes all four token-weighted perplexities on them. The fraction is
    only meaningful when pruning measurably cost perplexity (gap_base's interval above zero)."""
    clusters = [k[1] for k in keys]
    ppl = {
        v: _perplexity(
            np.asarray([rows[v][k]["nll_sum"] for k in keys], dtype=np.float64),
            np.asarray([rows[v][k]["answer_tokens"] for k in keys], dtype=np.float64),
        )
        for v in VARIANTS
    }

    def gap_base(idx: np.ndarray) -> float:
        return ppl["base_pruned"](idx) - ppl["base_full"](idx)

    def gap_ft(idx: np.ndarray) -> float:
        return ppl["ft_pruned"](idx) - ppl["ft_full"](idx)

    def fraction(idx: np.ndarray) -> float:
        base = gap_base(idx)
        return 1 - gap_ft(idx) / base if base != 0 else math.nan  # a nan resample is left out of the interval

    everything = np.arange(len(keys))
    out: dict[str, Any] = {}
    for name, statistic in (("gap_base", gap_base), ("gap_ft", gap_ft)):
        out[name] = statistic(everything)
        out[f"{name}_ci"] = bootstrap(len(keys), statistic, n_resamples, seed, clusters=clusters).ci(ci_method)
    out["meaningful"] = bool(out["gap_base_ci"][0] > 0)
    out["recovered_fraction"] = fraction(everything) if out["meaningful"] else None
    out["recovered_fraction_ci"] = (
        bootstrap(len(keys), fraction, n_resamples, seed, clusters=clusters).ci(ci_method)
        if out["meaningful"]
        else None
    )
    out["units"] = len(set(clusters))
    return out


def _apply_holm(differences: dict[str, dict[str, Any]]) -> None:
    """Holm–Bonferroni over every paired test in the report; only these may be called significant."""
    tests = [(pair, column) for pair, columns in differences.items() for column in columns]
    adjusted, rejected = holm([differences[p][c]["p_value"] for p, c in tests], ALPHA)
    for (pair, column), p_holm, significant in zip(tests, adjusted, rejected, strict=True):
        differences[pair][column].update(p_holm=p_holm, holm_significant=significant)


def _qa_clusters(rows: dict[tuple, dict[str, Any]], keys: list[tuple]) -> list[str]:
    return [rows[k].get("article_id") or f"question:{k[0]}" for k in keys]


def compare(
    eval_metrics: dict[str, dict[str, Any]],
    qa_metrics: dict[str, dict[str, Any]],
    predictions: dict[str, list[dict[str, Any]]],
    qa_predictions: dict[str, list[dict[str, Any]]],
    n_resamples: int = 1000,
    seed: int = 0,
    ci_method: str = "percentile",
) -> dict[str, Any]:
    """{"table": variant -> column -> value and _ci, "differences": "A-B" -> column -> paired diff (percentile
    ci, ci_bca, p_value, p_holm, holm_significant), "healing": the recovered fraction, "multiplicity": how}."""
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
    # the QA headline's questions (held out when any are): the paired difference is over the same set
    qa_rows = {
        v: _by_key([r for r in qa_predictions[v] if r.get("in_headline", True)], ("id",), f"predictions/qa_{v}.jsonl")
        for v in VARIANTS
    }
    differences: dict[str, dict[str, Any]] = {}
    for a, b in PAIRS:
        keys = _paired(rows[a], rows[b], (f"predictions/{a}.jsonl", f"predictions/{b}.jsonl"))
        pair: dict[str, Any] = {}
        for column, _, task, score in TASK_COLUMNS:
            task_keys = [k for k in keys if k[0] == task]
            pair[column] = paired_bootstrap_diff(
                [rows[a][k]["scores"][score] for k in task_keys],
                [rows[b][k]["scores"][score] for k in task_keys],
                n_resamples,
                seed,
                clusters=[k[1] for k in task_keys],
            )
        pair["perplexity"] = _perplexity_difference(
            ([rows[a][k]["nll_sum"] for k in keys], [rows[a][k]["answer_tokens"] for k in keys]),
            ([rows[b][k]["nll_sum"] for k in keys], [rows[b][k]["answer_tokens"] for k in keys]),
            [k[1] for k in keys],  # an article's four task answers stay together
            n_resamples,
            seed,
        )
        qa_keys = _paired(qa_rows[a], qa_rows[b], (f"predictions/qa_{a}.jsonl", f"predictions/qa_{b}.jsonl"))
        pair["qa_accuracy"] = paired_bootstrap_diff(
            [float(qa_rows[a][k]["correct"]) for k in qa_keys],
            [float(qa_rows[b][k]["correct"]) for k in qa_keys],
            n_resamples,
            seed,
            clusters=_qa_clusters(qa_rows[a], qa_keys),
        )
        differences[f"{a}-{b}"] = pair
    _apply_holm(differences)
    all_keys = _paired(
        rows["ft_pruned"], rows["base_full"], ("predictions/ft_pruned.jsonl", "predictions/base_full.jsonl")
    )
    family = sum(len(columns) for columns in differences.values())
    data_only = eval_metrics[VARIANTS[0]]  # the baselines depend on the split alone, not on the model
    return {
        "table": table,
        "baselines": {
            "tag_f1": data_only["tag_extraction"].get("constant_baseline"),
            "type_accuracy": data_only["type_classification"].get("majority_baseline"),
        },
        "differences": differences,
        "healing": healing(rows, all_keys, n_resamples, seed, ci_method),
        "multiplicity": {
            "method": "holm",
            "alpha": ALPHA,
            "family": family,
            "p_value": "two-sided bootstrap: 2·min(P(d <= 0), P(d >= 0)), at least 1/(B+1)",
            "p_floor": 1 / (n_resamples + 1),
        },
        "ci_method": ci_method,
        "resampling": "articles (cluster bootstrap); QA: source articles, a question without one alone",
    }


def load_inputs(eval_dir: Path, qa_dir: Path, predictions_dir: Path) -> tuple[dict, dict, dict, dict]:
    """The eval and QA metrics and predictions of the four variants, as the stages wrote them."""
    return (
        {v: read_json(eval_dir / f"{v}.json") for v in VARIANTS},
        {v: read_json(qa_dir / f"{v}.json") for v in VARIANTS},
        {v: read_jsonl(predictions_dir / f"{v}.jsonl") for v in VARIANTS},
        {v: read_jsonl(predictions_dir / f"qa_{v}.jsonl") for v in VARIANTS},
    )


def example_counts(predictions: dict[str, list[dict[str, Any]]], qa_predictions: dict[str, list]) -> dict[str, int]:
    """Test examples per task, test articles and headline QA questions: the n behind every interval."""
    counts: dict[str, int] = {}
    for row in predictions[VARIANTS[0]]:
        counts[row["task"]] = counts.get(row["task"], 0) + 1
    articles = len({row["article_id"] for row in predictions[VARIANTS[0]]})
    qa = sum(1 for row in qa_predictions[VARIANTS[0]] if row.get("in_headline", True))
    return {**counts, "qa": qa, "articles": articles}


def significant_columns(comparison: dict[str, Any]) -> dict[str, list[str]]:
    """Per pair, the columns whose paired test is significant after Holm–Bonferroni."""
    return {
        pair: [column for column, d in diffs.items() if d["holm_significant"]]
        for pair, diffs in comparison["differences"].items()
    }


def _number(value: float, column: str, sign: str = "") -> str:
    return f"{value:{sign}.1f}" if column == "perplexity" else f"{value:{sign}.3f}"


def _interval(ci: list[float], column: str, sign: str = "") -> str:
    return f"[{_number(ci[0], column, sign)}, {_number(ci[1], column, sign)}]"


def healing_sentence(heal: dict[str, Any]) -> str:
    """The healing figure in words, or why it is not meaningful (never a wild ratio of noise)."""
    gap_base = f"{heal['gap_base']:+.1f} {_interval(heal['gap_base_ci'], 'perplexity', '+')}"
    gap_ft = f"{heal['gap_ft']:+.1f} {_interval(heal['gap_ft_ci'], 'perplexity', '+')}"
    if not heal["meaningful"]:
        return (
            f"Pruning changed perplexity by {gap_base} before fine-tuning; that interval does not lie above zero, so "
            "pruning did not measurably cost perplexity and the fraction fine-tuning recovers is not meaningful "
            f"(undefined); after fine-tuning both, the pruned model differs by {gap_ft}."
        )
    low, high = (f"{100 * v:.0f}%" for v in heal["recovered_fraction_ci"])
    return (
        f"Fine-tuning recovers {100 * heal['recovered_fraction']:.0f}% [{low}, {high}] of the perplexity that pruning "
        f"cost (pruning cost {gap_base} before fine-tuning, {gap_ft} after; recovered = 1 − after / before, "
        f"{heal['units']} articles resampled alike for all four variants)."
    )


def baselines_sentence(baselines: dict[str, float | None]) -> str:
    """What a model scores without reading the article, the yardstick for the tag and type columns."""
    parts = []
    if baselines.get("type_accuracy") is not None:
        parts.append(f"type accuracy {baselines['type_accuracy']:.3f} (always the train split's majority type)")
    if baselines.get("tag_f1") is not None:
        parts.append(f"tag F1 {baselines['tag_f1']:.3f} (one constant tag set, the best on the train split)")
    return "Without reading the article: " + ("; ".join(parts) if parts else "no baseline recorded") + "."


def render_markdown(comparison: dict[str, Any], n_examples: dict[str, int]) -> str:
    """reports/comparison.md: the table, the paired differences (bold: Holm-significant), and the healing figure."""
    method = comparison.get("ci_method", "percentile")
    articles = n_examples.get("articles")
    multiplicity = comparison["multiplicity"]
    ci_key = "ci_bca" if method == "bca" else "ci"
    counts = ", ".join(f"{task} n={n}" for task, n in n_examples.items() if task != "articles")
    lines = [
        "# Four-variant comparison",
        "",
        f"Value and 95% bootstrap interval ({method}) over the test examples {counts}. Perplexity: token-weighted "
        "over all test answers (lower is better); its interval resamples articles, an article's four answers "
        "together. QA accuracy: the held-out questions (source article in val or test) when there are any.",
        "",
        "| Variant | " + " | ".join(heading for _, heading, _, _ in COLUMNS) + " |",
        "|---|" + "---|" * len(COLUMNS),
    ]
    for variant, row in comparison["table"].items():
        cells = [f"{_number(row[c], c)} {_interval(row[c + '_ci'], c)}" for c, *_ in COLUMNS]
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    lines += ["", baselines_sentence(comparison.get("baselines", {}))]
    lines += [
        "",
        "## Paired differences",
        "",
        f"A − B on the same test articles, paired bootstrap 95% interval ({method}). **Bold**: significant after "
        f"Holm–Bonferroni over the family of all {multiplicity['family']} paired tests below (family-wise "
        f"α = {multiplicity['alpha']}), from two-sided bootstrap p-values 2·min(P(d ≤ 0), P(d ≥ 0)) floored at "
        f"1/(B+1) = {multiplicity['p_floor']:.4f}. An interval that excludes zero is not, on its own, a finding.",
        "",
        "| A − B | " + " | ".join(heading for _, heading, _, _ in COLUMNS) + " |",
        "|---|" + "---|" * len(COLUMNS),
    ]
    for pair, diffs in comparison["differences"].items():
        cells = []
        for column, *_ in COLUMNS:
            d = diffs[column]
            text = f"{_number(d['diff'], column, '+')} {_interval(d[ci_key], column, '+')}"
            cells.append(f"**{text}**" if d["holm_significant"] else text)
        lines.append(f"| {pair.replace('-', ' − ')} | " + " | ".join(cells) + " |")
    significant = [
        f"{pair.replace('-', ' − ')} {column} (Holm p = {d['p_holm']:.4f})"
        for pair, diffs in comparison["differences"].items()
        for column, d in diffs.items()
        if d["holm_significant"]
    ]
    lines += ["", "Holm-significant: " + ("; ".join(significant) if significant else "none") + "."]
    if multiplicity["p_floor"] > multiplicity["alpha"] / multiplicity["family"]:
        lines.append(
            f"With B = {round(1 / multiplicity['p_floor']) - 1} resamples no test can reach Holm significance "
            f"(the smallest p, {multiplicity['p_floor']:.4f}, exceeds α/{multiplicity['family']}); raise "
            "eval.bootstrap_resamples."
        )
    if method == "percentile":
        lines.append(
            f"With {articles} test articles a percentile interval under-covers (too narrow for a 95% claim); "
            "BCa intervals of the same resamples are in metrics/comparison.json (`ci_bca`) and shown here with "
            "`eval.ci_method: bca`."
        )
    else:
        lines.append(f"BCa intervals (bias-corrected and accelerated), better covering on {articles} test articles.")
    lines += ["", "## Healing", "", healing_sentence(comparison["healing"])]
    return "\n".join(lines) + "\n"
