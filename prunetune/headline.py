"""The study's headline, computed from a study record's committed predictions (studies/<name>/<experiment>/): what
pruning cost and what healing recovered, on the log scale, with article-level bootstrap intervals, per training seed.

Log-perplexity (mean NLL per answer token): a gap of g nats is a perplexity ratio of exp(g), whatever the level, so
"the pruned model is g worse before healing and g' worse after" compares like with like although fine-tuning lowers
both models' perplexity a lot. The recovered share is 1 - g'/g on the same resamples, given only when g's interval
excludes zero (a ratio of noise means nothing).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from prunetune.layersweep import log_ppl
from prunetune.stats import bootstrap

VARIANTS = ("base_full", "base_pruned", "ft_full", "ft_pruned")


def load_nll(record: Path) -> tuple[list[str], dict[str, np.ndarray]]:
    """Article ids and per-variant [examples, 2] (NLL sum, answer tokens), rows aligned across variants."""
    columns: dict[str, np.ndarray] = {}
    keys = None
    for variant in VARIANTS:
        rows = [json.loads(line) for line in (record / "predictions" / f"{variant}.jsonl").read_text().splitlines()]
        rows.sort(key=lambda r: (r["article_id"], r["task"]))
        these = [(r["article_id"], r["task"]) for r in rows]
        if keys is not None and these != keys:
            raise ValueError(f"{record}: {variant} was scored on other examples than {VARIANTS[0]}")
        keys = these
        columns[variant] = np.array([[r["nll_sum"], r["answer_tokens"]] for r in rows], dtype=np.float64)
    return [article for article, _ in keys], columns


def healing_figures(record: Path, n_resamples: int = 2000, seed: int = 0) -> dict[str, Any]:
    """cost (base_pruned - base_full), remaining (ft_pruned - ft_full) and recovered (1 - remaining / cost), each
    with its 95% percentile interval from one cluster bootstrap over test articles."""
    articles, nll = load_nll(record)

    def gap(pruned: str, full: str):
        return lambda idx: log_ppl(nll[pruned], idx) - log_ppl(nll[full], idx)

    statistics = {
        "cost": gap("base_pruned", "base_full"),
        "remaining": gap("ft_pruned", "ft_full"),
        "fine_tuning_full": gap("ft_full", "base_full"),
    }
    statistics["recovered"] = lambda idx: 1 - statistics["remaining"](idx) / statistics["cost"](idx)
    everything = np.arange(len(articles))
    figures: dict[str, Any] = {"articles": len(set(articles)), "answers": len(articles)}
    for name, statistic in statistics.items():
        result = bootstrap(len(articles), statistic, n_resamples, seed, clusters=articles)
        figures[name] = {"value": statistic(everything), "ci": result.percentile}
    if figures["cost"]["ci"][0] <= 0:  # no cost shown: no share of it can be recovered
        figures["recovered"] = None
    return figures


def headline_lines(study: Path, n_resamples: int = 2000, seed: int = 0) -> list[str]:
    """Three lines for the README's first screen, from every recorded experiment of the study."""
    records = sorted(p.parent for p in study.glob("*/experiment.json"))
    per_seed = [(r, healing_figures(r, n_resamples, seed)) for r in records]
    first = per_seed[0][0]
    prune = json.loads((first / "metrics" / "prune.json").read_text())
    speed = json.loads((first / "metrics" / "speed" / "base.json").read_text())
    seeds = [yaml.safe_load((r / "params.yaml").read_text())["train"]["seed"] for r in records]
    cost = per_seed[0][1]["cost"]

    def ratio(figure: dict[str, Any]) -> str:
        low, high = figure["ci"]
        return f"×{np.exp(figure['value']):.2f} [{np.exp(low):.2f}, {np.exp(high):.2f}]"

    def share(figure: dict[str, Any] | None) -> str:
        if figure is None:
            return "n/a (no cost shown)"
        low, high = figure["ci"]
        return f"{100 * figure['value']:.0f}% [{100 * low:.0f}, {100 * high:.0f}]"

    removed, layers = prune["removed_layers"], prune["layers_before"]
    remaining = "; ".join(f"seed {s} {ratio(f['remaining'])}" for s, (_, f) in zip(seeds, per_seed, strict=True))
    recovered = "; ".join(f"seed {s} {share(f['recovered'])}" for s, (_, f) in zip(seeds, per_seed, strict=True))
    table = first_table((first / "reports" / "comparison.md").read_text())
    return [
        f"- **Pruning cost:** removing {len(removed)} of SmolLM2-135M-Instruct's {layers} layers ({prune['method']}, "
        f"layers {removed}, chosen on val) multiplies test answer perplexity by {ratio(cost)} "
        f"({per_seed[0][1]['articles']} test articles, 95% bootstrap).",
        f"- **After LoRA healing** of both models, the pruned one's perplexity is the healed full model's times "
        f"{remaining}. Healing recovers {recovered} of the log-perplexity cost.",
        f"- **What it buys:** {100 * prune['params_removed_fraction']:.1f}% fewer parameters; batch-1 decode "
        f"×{speed['decode_speedup_b1']:.2f} on this CPU (FLOP-ratio ideal ×{speed['ideal_speedup']:.2f}).",
        "",
        f"The four variants of seed {seeds[0]} on the test split (`{first}/reports/comparison.md`; every seed's "
        "record holds its own):",
        "",
        *table,
    ]


def first_table(markdown: str) -> list[str]:
    """The first Markdown table in a report: its run of lines that start with '|'."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return lines[start:end]
