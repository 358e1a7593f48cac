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
from prunetune.stats import (
    clopper_pearson,
    fieller,
    holm,
    p_floor,
    paired_bootstrap_diff,
    paired_test,
    ratio_bootstrap,
)

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
ALPHA = 0.05  # family-wise error rate of each family of paired tests
TASKS = tuple(task for _, _, task, _ in TASK_COLUMNS)
# what a model that never reads the article scores (per example, from eval's predictions): column, task, score
BASELINES = {
    "majority_type": ("type_accuracy", "type_classification", "accuracy"),
    "constant_tags": ("tag_f1", "tag_extraction", "f1"),
}
# The pre-declared primary tests, Holm-corrected as one family (declared before the run whose figures the README
# quotes; docs/protocol.md): what pruning costs a healed model on each task, on QA and on answer log-perplexity;
# what pruning costs the base (the healing fraction's gate); and each fine-tuned model against reading nothing.
# Every other test is secondary: Holm-corrected within its own family, descriptive.
PRIMARY = (
    *(("ft_pruned-ft_full", column) for column, *_ in TASK_COLUMNS),
    ("ft_pruned-ft_full", "qa_accuracy"),
    ("ft_pruned-ft_full", "log_ppl"),
    ("base_pruned-base_full", "log_ppl"),
    *(
        (f"{variant}-{baseline}", column)
        for variant in ("ft_full", "ft_pruned")
        for baseline, (column, _, _) in BASELINES.items()
    ),
)
FAMILIES = ("primary", "secondary")


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


def _test(terms: list[tuple], clusters: list[str], n_resamples: int, seed: int, family: str) -> tuple[dict, Any]:
    """A paired test of a difference of ratios of sums (stats.ratio_bootstrap over clusters): the entry the report
    holds, and the resampled differences (the same resamples for every test with this seed and cluster count, so
    two tests' distributions pair up, as Fieller's interval needs)."""
    result = ratio_bootstrap(terms, n_resamples, seed, clusters=clusters)
    return {**paired_test(result), "family": family}, result.distribution


def _family(pair: str, column: str) -> str:
    return "primary" if (pair, column) in PRIMARY else "secondary"


def _log_ppl_tests(
    rows: dict[str, dict[tuple, dict[str, Any]]],
    a: str,
    b: str,
    keys: list[tuple],
    n_resamples: int,
    seed: int,
) -> tuple[dict[str, dict[str, Any]], dict[str, np.ndarray]]:
    """log ppl(A) - log ppl(B) over all answers (articles resampled, their answers together), per task, and on
    the article text the prompts show (when the predictions hold its NLL): the log of the perplexity ratio."""
    pair = f"{a}-{b}"
    tests, distributions = {}, {}
    groups = [("log_ppl", keys, "nll_sum", "answer_tokens")]
    groups += [(f"log_ppl_{task}", [k for k in keys if k[0] == task], "nll_sum", "answer_tokens") for task in TASKS]
    first_rows = {}
    for k in keys:  # one row per article carries its text's NLL (the same on every row of the article)
        first_rows.setdefault(k[1], k)
    if all("text_nll_sum" in rows[v][k] for v in (a, b) for k in first_rows.values()):
        groups.append(("log_ppl_article_text", list(first_rows.values()), "text_nll_sum", "text_tokens"))
    for column, group, nll_key, token_key in groups:
        if not group:
            continue
        terms = [
            (
                sign,
                [rows[v][k][nll_key] for k in group],
                [rows[v][k][token_key] for k in group],
            )
            for sign, v in ((1.0, a), (-1.0, b))
        ]
        tests[column], distributions[column] = _test(
            terms, [k[1] for k in group], n_resamples, seed, _family(pair, column)
        )
    return tests, distributions


def _ratio(gap_ft: float, gap_base: float) -> float:
    return 1 - gap_ft / gap_base if gap_base != 0 else math.nan


def healing(differences: dict[str, dict[str, Any]], distributions: dict[tuple[str, str], np.ndarray]) -> dict[str, Any]:
    """Per answer group (all answers, each task, the article text): pruning's cost gap_base = log ppl(base_pruned) -
    log ppl(base_full), the gap left after healing gap_ft = log ppl(ft_pruned) - log ppl(ft_full), both with
    intervals, and the recovered fraction 1 - gap_ft / gap_base only where gap_base is Holm-significant (in its
    family) with Fieller's interval from the joint bootstrap of the two gaps (the same resampled articles)."""
    cost, left = differences["base_pruned-base_full"], differences["ft_pruned-ft_full"]
    out: dict[str, Any] = {"scale": "log-perplexity (mean NLL per token); exp(gap) - 1 is the relative change"}
    for column in [c for c in cost if c.startswith("log_ppl") and c in left]:
        base, ft = cost[column], left[column]
        entry = {
            "gap_base": base["diff"],
            "gap_base_ci": base["ci"],
            "gap_ft": ft["diff"],
            "gap_ft_ci": ft["ci"],
            "gate": f"gap_base Holm-significant in the {base['family']} family",
            "meaningful": bool(base["holm_significant"] and base["diff"] > 0),
            "units": base["units"],
        }
        entry["recovered_fraction"], entry["recovered_fraction_ci"] = None, None
        if entry["meaningful"]:
            joint = np.cov(
                np.stack(
                    [distributions[("ft_pruned-ft_full", column)], distributions[("base_pruned-base_full", column)]]
                )
            )
            ratio_ci = fieller(ft["diff"], base["diff"], joint)
            entry["recovered_fraction"] = _ratio(ft["diff"], base["diff"])
            entry["recovered_fraction_ci"] = None if ratio_ci is None else [1 - ratio_ci[1], 1 - ratio_ci[0]]
        out[column.removeprefix("log_ppl_") if column != "log_ppl" else "all_answers"] = entry
    return out


def _apply_holm(differences: dict[str, dict[str, Any]]) -> dict[str, int]:
    """Holm–Bonferroni within each family (the pre-declared primary tests, the rest); only these are verdicts."""
    sizes = {}
    for family in FAMILIES:
        tests = [(p, c) for p, columns in differences.items() for c, d in columns.items() if d["family"] == family]
        adjusted, rejected = holm([differences[p][c]["p_value"] for p, c in tests], ALPHA)
        for (pair, column), p_holm, significant in zip(tests, adjusted, rejected, strict=True):
            differences[pair][column].update(p_holm=p_holm, holm_significant=significant)
        sizes[family] = len(tests)
    return sizes


def _qa_clusters(rows: dict[tuple, dict[str, Any]], keys: list[tuple]) -> list[str]:
    return [rows[k].get("article_id") or f"question:{k[0]}" for k in keys]


def _exact_if_degenerate(value: float, ci: list[float], successes: int, n: int) -> list[float]:
    """A proportion's bootstrap interval, or Clopper–Pearson's where the bootstrap degenerates (every resample
    equal, e.g. 0 of 40 correct gives [0, 0])."""
    exact = n > 0 and abs(successes / n - value) < 1e-9 and successes in (0, n)
    return clopper_pearson(successes, n) if exact and ci[0] == ci[1] else ci


def _baseline_tests(
    rows: dict[str, dict[tuple, dict[str, Any]]], n_resamples: int, seed: int
) -> dict[str, dict[str, Any]]:
    """Each fine-tuned model against what a model that never reads the article scores, example by example: the
    train split's majority type and its best constant tag set (eval stores their per-example scores)."""
    tests: dict[str, dict[str, Any]] = {}
    for variant in ("ft_full", "ft_pruned"):
        for baseline, (column, task, score) in BASELINES.items():
            keys = sorted(k for k in rows[variant] if k[0] == task)
            if not keys or any("baseline_scores" not in rows[variant][k] for k in keys):
                continue
            model = [rows[variant][k]["scores"][score] for k in keys]
            reading_nothing = [rows[variant][k]["baseline_scores"][score] for k in keys]
            ones = [1.0] * len(keys)
            pair = f"{variant}-{baseline}"
            tests.setdefault(pair, {})[column] = _test(
                [(1.0, model, ones), (-1.0, reading_nothing, ones)],
                [k[1] for k in keys],
                n_resamples,
                seed,
                _family(pair, column),
            )[0]
    return tests


def compare(
    eval_metrics: dict[str, dict[str, Any]],
    qa_metrics: dict[str, dict[str, Any]],
    predictions: dict[str, list[dict[str, Any]]],
    qa_predictions: dict[str, list[dict[str, Any]]],
    n_resamples: int = 1000,
    seed: int = 0,
    ci_method: str = "percentile",
) -> dict[str, Any]:
    """{"table": variant -> column -> value and _ci, "differences": "A-B" -> column -> paired test (percentile
    ci, ci_bca, p_value, family, p_holm, holm_significant), "healing": per answer group on the log scale,
    "multiplicity": the families and how p-values are made}."""
    rows = {v: _by_key(predictions[v], ("task", "article_id"), f"predictions/{v}.jsonl") for v in VARIANTS}
    # the QA headline's questions (held out when any are): the paired difference is over the same set
    qa_rows = {
        v: _by_key([r for r in qa_predictions[v] if r.get("in_headline", True)], ("id",), f"predictions/qa_{v}.jsonl")
        for v in VARIANTS
    }
    table: dict[str, dict[str, Any]] = {}
    for variant in VARIANTS:
        row: dict[str, Any] = {}
        for column, _, task, score in TASK_COLUMNS:
            row[column] = eval_metrics[variant][task][score]
            row[f"{column}_ci"] = eval_metrics[variant][task][f"{score}_ci"]
        type_scores = [r["scores"]["accuracy"] for k, r in rows[variant].items() if k[0] == "type_classification"]
        row["type_accuracy_ci"] = _exact_if_degenerate(
            row["type_accuracy"], row["type_accuracy_ci"], round(sum(type_scores)), len(type_scores)
        )
        row["perplexity"] = eval_metrics[variant]["perplexity"]
        row["perplexity_ci"] = eval_metrics[variant]["perplexity_ci"]
        row["qa_accuracy"] = qa_metrics[variant]["accuracy"]
        correct = [bool(r["correct"]) for r in qa_rows[variant].values()]
        row["qa_accuracy_ci"] = _exact_if_degenerate(
            row["qa_accuracy"], qa_metrics[variant]["accuracy_ci"], sum(correct), len(correct)
        )
        table[variant] = row

    differences: dict[str, dict[str, Any]] = {}
    distributions: dict[tuple[str, str], np.ndarray] = {}
    for a, b in PAIRS:
        name = f"{a}-{b}"
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
            pair[column]["family"] = _family(name, column)
        log_tests, log_distributions = _log_ppl_tests(rows, a, b, keys, n_resamples, seed)
        pair.update(log_tests)
        distributions.update({(name, column): d for column, d in log_distributions.items()})
        qa_keys = _paired(qa_rows[a], qa_rows[b], (f"predictions/qa_{a}.jsonl", f"predictions/qa_{b}.jsonl"))
        pair["qa_accuracy"] = paired_bootstrap_diff(
            [float(qa_rows[a][k]["correct"]) for k in qa_keys],
            [float(qa_rows[b][k]["correct"]) for k in qa_keys],
            n_resamples,
            seed,
            clusters=_qa_clusters(qa_rows[a], qa_keys),
        )
        pair["qa_accuracy"]["family"] = _family(name, "qa_accuracy")
        differences[name] = pair
    differences.update(_baseline_tests(rows, n_resamples, seed))
    sizes = _apply_holm(differences)
    data_only = eval_metrics[VARIANTS[0]]  # the baselines depend on the split alone, not on the model
    return {
        "table": table,
        "baselines": {
            "tag_f1": data_only["tag_extraction"].get("constant_baseline"),
            "type_accuracy": data_only["type_classification"].get("majority_baseline"),
        },
        "differences": differences,
        "healing": healing(differences, distributions),
        "qa": qa_summary(qa_metrics),
        "multiplicity": {
            "method": "holm, within each family",
            "alpha": ALPHA,
            "family": sizes["primary"],
            "families": sizes,
            "primary": [f"{p} {c}" for p, c in PRIMARY if differences.get(p, {}).get(c, {}).get("family") == "primary"],
            "p_value": "two-sided bootstrap: 2·min((#{d <= 0} + 1) / (B + 1), (#{d >= 0} + 1) / (B + 1)), capped at 1",
            "p_floor": p_floor(n_resamples),
            "resamples": n_resamples,
        },
        "ci_method": ci_method,
        "resampling": "articles (cluster bootstrap); QA: source articles, a question without one alone",
    }


def qa_summary(qa_metrics: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per variant: QA accuracy over the headline questions, its exact binomial interval, chance and the exact
    binomial p against chance (the questions' chance rate is known: one of k options)."""
    out = {}
    for variant in VARIANTS:
        q = qa_metrics[variant]
        out[variant] = {
            key: q[key]
            for key in ("accuracy", "accuracy_ci", "accuracy_ci_exact", "n_headline", "chance", "p_vs_chance")
            if key in q
        }
    return out


def load_inputs(eval_dir: Path, qa_dir: Path, predictions_dir: Path) -> tuple[dict, dict, dict, dict]:
    """The eval and QA metrics and predictions of the four variants, as the stages wrote them."""
    return (
        {v: read_json(eval_dir / f"{v}.json") for v in VARIANTS},
        {v: read_json(qa_dir / f"{v}.json") for v in VARIANTS},
        {v: read_jsonl(predictions_dir / f"{v}.jsonl") for v in VARIANTS},
        {v: read_jsonl(predictions_dir / f"qa_{v}.jsonl") for v in VARIANTS},
    )


def recompute(
    eval_dir: Path, qa_dir: Path, predictions_dir: Path, n_resamples: int, seed: int, ci_method: str
) -> tuple[dict[str, Any], str]:
    """The comparison and its Markdown report from the stages' files: what the compare stage writes, and what
    `prunetune recompare` checks the committed report against."""
    eval_metrics, qa_metrics, predictions, qa_predictions = load_inputs(eval_dir, qa_dir, predictions_dir)
    comparison = compare(eval_metrics, qa_metrics, predictions, qa_predictions, n_resamples, seed, ci_method)
    return comparison, render_markdown(comparison, example_counts(predictions, qa_predictions))


def report_differences(committed: str, recomputed: str) -> list[str]:
    """The lines of a committed report that its recomputation does not reproduce (empty: every figure agrees)."""
    import difflib

    diff = difflib.unified_diff(committed.splitlines(), recomputed.splitlines(), "committed", "recomputed", n=0)
    return [line for line in diff if line.startswith(("-", "+")) and not line.startswith(("---", "+++"))]


def example_counts(predictions: dict[str, list[dict[str, Any]]], qa_predictions: dict[str, list]) -> dict[str, int]:
    """Test examples per task, test articles and headline QA questions: the n behind every interval."""
    counts: dict[str, int] = {}
    for row in predictions[VARIANTS[0]]:
        counts[row["task"]] = counts.get(row["task"], 0) + 1
    articles = len({row["article_id"] for row in predictions[VARIANTS[0]]})
    qa = sum(1 for row in qa_predictions[VARIANTS[0]] if row.get("in_headline", True))
    return {**counts, "qa": qa, "articles": articles}


def significant_columns(comparison: dict[str, Any], family: str = "primary") -> dict[str, list[str]]:
    """Per pair, the columns whose paired test is significant after Holm–Bonferroni within the family."""
    return {
        pair: [column for column, d in diffs.items() if d["holm_significant"] and d.get("family", family) == family]
        for pair, diffs in comparison["differences"].items()
    }


def _number(value: float, column: str, sign: str = "") -> str:
    return f"{value:{sign}.1f}" if column == "perplexity" else f"{value:{sign}.3f}"


def _interval(ci: list[float], column: str, sign: str = "") -> str:
    return f"[{_number(ci[0], column, sign)}, {_number(ci[1], column, sign)}]"


def _percent(ci: list[float] | None) -> str:
    return "unbounded" if ci is None else f"[{100 * ci[0]:.0f}%, {100 * ci[1]:.0f}%]"


def _gap(value: float, ci: list[float]) -> str:
    """A log-perplexity gap, its interval, and the relative perplexity change it means."""
    return f"{value:+.3f} [{ci[0]:+.3f}, {ci[1]:+.3f}] (×{math.exp(value):.3f})"


HEAL_GROUPS = {"all_answers": "all answers", **{task: task for task in TASKS}, "article_text": "article text"}


def healing_sentence(heal: dict[str, Any]) -> str:
    """The healing figure on the log scale in words, or why there is no fraction (never a ratio of noise)."""
    entry = heal["all_answers"]
    costs = f"pruning cost {_gap(entry['gap_base'], entry['gap_base_ci'])} in log-perplexity before fine-tuning, "
    costs += f"{_gap(entry['gap_ft'], entry['gap_ft_ci'])} after"
    if not entry["meaningful"]:
        return (
            f"Over all answers {costs}. The cost before fine-tuning is not Holm-significant, so no recovered fraction "
            "is given (it would be a ratio of noise); the two gaps are the result."
        )
    return (
        f"Over all answers {costs}: fine-tuning recovers {100 * entry['recovered_fraction']:.0f}% "
        f"{_percent(entry['recovered_fraction_ci'])} of it (1 − after / before on the log scale; Fieller's 95% "
        f"interval from the joint bootstrap of both gaps over {entry['units']} articles)."
    )


def baselines_sentence(baselines: dict[str, float | None]) -> str:
    """What a model scores without reading the article, the yardstick for the tag and type columns."""
    parts = []
    if baselines.get("type_accuracy") is not None:
        parts.append(f"type accuracy {baselines['type_accuracy']:.3f} (always the train split's majority type)")
    if baselines.get("tag_f1") is not None:
        parts.append(f"tag F1 {baselines['tag_f1']:.3f} (one constant tag set, the best on the train split)")
    return "Without reading the article: " + ("; ".join(parts) if parts else "no baseline recorded") + "."


def _test_cell(d: dict[str, Any], column: str, ci_key: str) -> str:
    text = f"{_number(d['diff'], column, '+')} {_interval(d[ci_key], column, '+')}"
    return f"**{text}**" if d["holm_significant"] else text


def _primary_lines(comparison: dict[str, Any], ci_key: str) -> list[str]:
    multiplicity = comparison["multiplicity"]
    lines = [
        "## Primary tests",
        "",
        f"The {multiplicity['family']} pre-declared primary tests (docs/protocol.md), Holm–Bonferroni over them alone "
        f"(family-wise α = {multiplicity['alpha']}). p: two-sided bootstrap over test articles, "
        f"2·min((#d ≤ 0 + 1)/(B + 1), (#d ≥ 0 + 1)/(B + 1)) capped at 1, B = {multiplicity['resamples']}, so no p is "
        f"below {multiplicity['p_floor']:.5f}. log_ppl: the log of the perplexity ratio over all test answers.",
        "",
        "| test | A − B | 95% interval | p | Holm p | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for pair, columns in comparison["differences"].items():
        for column, d in columns.items():
            if d["family"] != "primary":
                continue
            verdict = ("A > B" if d["diff"] > 0 else "A < B") if d["holm_significant"] else "not detected at this power"
            lines.append(
                f"| {pair.replace('-', ' − ')} {column} | {d['diff']:+.4f} | [{d[ci_key][0]:+.4f}, {d[ci_key][1]:+.4f}]"
                f" | {d['p_value']:.5f} | {d['p_holm']:.5f} | {verdict} |"
            )
    if multiplicity["p_floor"] > multiplicity["alpha"] / max(multiplicity["family"], 1):
        lines += [
            "",
            f"With B = {multiplicity['resamples']} resamples no test can reach Holm significance (the smallest p, "
            f"{multiplicity['p_floor']:.4f}, exceeds α/{multiplicity['family']}); raise eval.bootstrap_resamples.",
        ]
    return lines


def _log_ppl_lines(comparison: dict[str, Any], ci_key: str) -> list[str]:
    groups = [g for g in HEAL_GROUPS if f"log_ppl_{g}" in comparison["differences"]["ft_pruned-ft_full"]]
    columns = ["log_ppl", *(f"log_ppl_{g}" for g in groups if g != "all_answers")]
    headings = ["all answers", *(HEAL_GROUPS[g] for g in groups if g != "all_answers")]
    lines = [
        "## Log-perplexity by task",
        "",
        "log ppl(A) − log ppl(B) (mean NLL per token; × the perplexity ratio) on each task's answers and, where the "
        "predictions hold it, on the article text the prompts show; 95% paired bootstrap over test articles. Bold: "
        "Holm-significant in its family.",
        "",
        "| A − B | " + " | ".join(headings) + " |",
        "|---|" + "---|" * len(headings),
    ]
    for pair in (f"{a}-{b}" for a, b in PAIRS):
        cells = []
        for column in columns:
            d = comparison["differences"][pair][column]
            text = _gap(d["diff"], d[ci_key])
            cells.append(f"**{text}**" if d["holm_significant"] else text)
        lines.append(f"| {pair.replace('-', ' − ')} | " + " | ".join(cells) + " |")
    return lines


def _healing_lines(heal: dict[str, Any]) -> list[str]:
    lines = [
        "## Healing",
        "",
        healing_sentence(heal),
        "",
        "| answers | pruning's cost | left after healing | recovered |",
    ]
    lines.append("|---|---|---|---|")
    for group, name in HEAL_GROUPS.items():
        if group not in heal:
            continue
        entry = heal[group]
        recovered = (
            f"{100 * entry['recovered_fraction']:.0f}% {_percent(entry['recovered_fraction_ci'])}"
            if entry["meaningful"]
            else "— (cost not Holm-significant)"
        )
        lines.append(
            f"| {name} | {_gap(entry['gap_base'], entry['gap_base_ci'])} | {_gap(entry['gap_ft'], entry['gap_ft_ci'])}"
            f" | {recovered} |"
        )
    return lines


def _qa_lines(comparison: dict[str, Any]) -> list[str]:
    qa = comparison.get("qa", {})
    if not qa or not all("accuracy_ci_exact" in q for q in qa.values()):
        return []
    lines = ["## QA", "", "| Variant | accuracy | Clopper–Pearson 95% | questions | chance | p vs chance |"]
    lines.append("|---|---|---|---|---|---|")
    for variant, q in qa.items():
        low, high = q["accuracy_ci_exact"]
        chance = "—" if q.get("chance") is None else f"{q['chance']:.3f}"
        p = "—" if q.get("p_vs_chance") is None else f"{q['p_vs_chance']:.2g}"
        lines.append(
            f"| {variant} | {q['accuracy']:.3f} | [{low:.3f}, {high:.3f}] | {q['n_headline']} | {chance} | {p} |"
        )
    return lines


def render_markdown(comparison: dict[str, Any], n_examples: dict[str, int]) -> str:
    """reports/comparison.md: the table, the primary tests, the secondary paired differences (bold: Holm-significant
    in their family), log-perplexity by task, healing on the log scale, and QA against chance."""
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
        "together. QA accuracy: the held-out questions (source article in val or test) when there are any. Where a "
        "proportion's bootstrap degenerates (every resample equal) its interval is Clopper–Pearson's.",
        "",
        "| Variant | " + " | ".join(heading for _, heading, _, _ in COLUMNS) + " |",
        "|---|" + "---|" * len(COLUMNS),
    ]
    for variant, row in comparison["table"].items():
        cells = [f"{_number(row[c], c)} {_interval(row[c + '_ci'], c)}" for c, *_ in COLUMNS]
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    lines += ["", baselines_sentence(comparison.get("baselines", {})), ""]
    lines += _primary_lines(comparison, ci_key)
    secondary_size = multiplicity.get("families", {}).get("secondary", 0)
    columns = [*((c, h) for c, h, _, _ in TASK_COLUMNS), ("log_ppl", "log PPL ratio"), ("qa_accuracy", "QA accuracy")]
    lines += [
        "",
        "## Paired differences",
        "",
        f"A − B on the same test articles, paired bootstrap 95% interval ({method}). **Bold**: Holm-significant in "
        f"its family (primary above; the other {secondary_size} tests form the secondary family, descriptive). An "
        "interval that excludes zero is not, on its own, a finding; a difference not detected is not shown absent.",
        "",
        "| A − B | " + " | ".join(heading for _, heading in columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for pair, diffs in comparison["differences"].items():
        cells = [_test_cell(diffs[c], c, ci_key) if c in diffs else "" for c, _ in columns]
        lines.append(f"| {pair.replace('-', ' − ')} | " + " | ".join(cells) + " |")
    if method == "percentile":
        lines += [
            "",
            f"With {articles} test articles a percentile interval under-covers (too narrow for a 95% claim); BCa "
            "intervals of the same resamples are in metrics/comparison.json (`ci_bca`) and shown here with "
            "`eval.ci_method: bca`.",
        ]
    else:
        lines += ["", f"BCa intervals (bias-corrected and accelerated), better covering on {articles} test articles."]
    lines += ["", *_log_ppl_lines(comparison, ci_key), "", *_healing_lines(comparison["healing"])]
    qa_lines = _qa_lines(comparison)
    if qa_lines:
        lines += ["", *qa_lines]
    return "\n".join(lines) + "\n"
