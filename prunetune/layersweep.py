"""Every pruning depth x criterion scored on the val split, and the one the study heals chosen there by a stated rule.

The base model is measured once on the calibration texts (train split); each (criterion, depth) names the layers it
would remove, a copy of the base without them scores the val answers (teacher-forced, the eval stage's perplexity),
and the gap to the unpruned base is taken in log-perplexity (mean NLL per answer token), pooled and per task, with
a paired bootstrap over val articles. Log-perplexity, not perplexity points: a gap then means the same whatever the
level, and the pruned-minus-full gap is a ratio of perplexities (exp(gap) - 1 is the relative increase).

Choice rule (fixed before any score is seen): the deepest depth in prune.sweep_depths, and at that depth the criterion
with the lowest val pooled log-perplexity. Deepest because it is the configuration with the most to gain (size,
speed) and the most for healing to recover; the report says whether its val cost exceeds the bootstrap noise.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from prunetune.chat import tokenize_chat
from prunetune.generation import completion_nll
from prunetune.params import EvalParams, PruneParams
from prunetune.pruning import LayerStats, remove_layers, resolve_removed_layers
from prunetune.stats import paired_bootstrap_stat

POOLED = "pooled"


def candidates(cfg: PruneParams, num_layers: int, stats: LayerStats) -> list[dict[str, Any]]:
    """(criterion, depth, removed layers) for every sweep entry, depth-major."""
    rows = []
    for depth in cfg.sweep_depths:
        for method in cfg.sweep_methods:
            one = dataclasses.replace(cfg, method=method, n_layers=depth)
            rows.append(
                {"method": method, "n_layers": depth, "removed_layers": resolve_removed_layers(one, num_layers, stats)}
            )
    return rows


def score_val(
    model: Any, tokenizer: Any, examples: list[dict[str, Any]], batch_size: int, date_string: str
) -> np.ndarray:
    """[examples, 2]: each val answer's summed NLL and its token count."""
    rows = [tokenize_chat(tokenizer, e["messages"], date_string) for e in examples]
    return np.asarray(completion_nll(model, rows, batch_size), dtype=np.float64)


def log_ppl(scores: np.ndarray, index: np.ndarray) -> float:
    """Mean NLL per answer token over the chosen examples (token-weighted, as perplexity is)."""
    return float(scores[index, 0].sum() / scores[index, 1].sum())


def gaps(
    pruned: np.ndarray, full: np.ndarray, examples: list[dict[str, Any]], resamples: int, seed: int
) -> dict[str, dict[str, Any]]:
    """Pruned-minus-full log-perplexity, pooled (val articles resampled whole) and per task, each with its paired
    bootstrap interval and p-value."""
    tasks = [e["task"] for e in examples]
    groups = {POOLED: np.arange(len(examples))} | {
        task: np.flatnonzero(np.asarray(tasks) == task) for task in dict.fromkeys(tasks)
    }
    result = {}
    for name, members in groups.items():
        clusters = [examples[i]["article_id"] for i in members]
        gap = paired_bootstrap_stat(
            len(members),
            lambda idx, m=members: log_ppl(pruned, m[idx]),
            lambda idx, m=members: log_ppl(full, m[idx]),
            resamples,
            seed,
            clusters=clusters,
        )
        result[name] = {
            "log_ppl": log_ppl(pruned, members),
            "gap": gap["diff"],
            "gap_ci": gap["ci"],
            "p_value": gap["p_value"],
        }
    return result


def choose(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The module docstring's rule: the deepest depth, then the lowest val pooled log-perplexity there."""
    deepest = max(row["n_layers"] for row in rows)
    at_depth = [row for row in rows if row["n_layers"] == deepest]
    best = min(at_depth, key=lambda row: row["val"][POOLED]["log_ppl"])
    return {
        "method": best["method"],
        "n_layers": best["n_layers"],
        "removed_layers": best["removed_layers"],
        "val_gap": best["val"][POOLED]["gap"],
        "val_gap_ci": best["val"][POOLED]["gap_ci"],
        "cost_exceeds_noise": best["val"][POOLED]["gap_ci"][0] > 0,
        "rule": "deepest depth in prune.sweep_depths; at it, the criterion with the lowest val pooled log-perplexity",
    }


def run_sweep(
    model: Any,
    tokenizer: Any,
    stats: LayerStats,
    val_examples: list[dict[str, Any]],
    prune_cfg: PruneParams,
    eval_cfg: EvalParams,
    date_string: str,
) -> dict[str, Any]:
    """Score the base and every candidate on val; what metrics/prune_sweep.json holds."""
    num_layers = model.config.num_hidden_layers
    full = score_val(model, tokenizer, val_examples, eval_cfg.batch_size, date_string)
    rows = candidates(prune_cfg, num_layers, stats)
    scored: dict[tuple[int, ...], np.ndarray] = {}  # criteria that agree on the layers are scored once
    for row in tqdm(rows, desc="sweep (val)"):
        key = tuple(row["removed_layers"])
        if key not in scored:
            pruned = remove_layers(copy.deepcopy(model), row["removed_layers"])
            scored[key] = score_val(pruned, tokenizer, val_examples, eval_cfg.batch_size, date_string)
            del pruned
        row["val"] = gaps(scored[key], full, val_examples, eval_cfg.bootstrap_resamples, eval_cfg.seed)
    tasks = list(dict.fromkeys(e["task"] for e in val_examples))
    base = {
        name: log_ppl(full, np.asarray(m))
        for name, m in [(POOLED, range(len(full)))]
        + [(t, [i for i, e in enumerate(val_examples) if e["task"] == t]) for t in tasks]
    }
    return {
        "layers": num_layers,
        "val_examples": len(val_examples),
        "val_articles": len({e["article_id"] for e in val_examples}),
        "full_log_ppl": base,
        "candidates": rows,
        "chosen": choose(rows),
        "measure": "val answer log-perplexity (mean NLL per answer token); gap = pruned - full, paired bootstrap "
        "over val articles (pooled) or examples (per task)",
    }


def report_markdown(sweep: dict[str, Any]) -> str:
    """The sweep table: one row per candidate, the chosen one marked."""
    tasks = [t for t in sweep["full_log_ppl"] if t != POOLED]
    chosen = sweep["chosen"]
    lines = [
        f"# Pruning sweep on val ({sweep['val_articles']} articles, {sweep['val_examples']} answers)",
        "",
        f"Gap: pruned minus full val answer log-perplexity (nats per token), 95% paired bootstrap. Full model: "
        f"{sweep['full_log_ppl'][POOLED]:.4f} pooled. Chosen by rule ({chosen['rule']}): **{chosen['method']}, "
        f"{chosen['n_layers']} layers** (cost exceeds noise on val: {'yes' if chosen['cost_exceeds_noise'] else 'no'})"
        ".",
        "",
        "| depth | criterion | removed layers | pooled gap | " + " | ".join(tasks) + " |",
        "|---|---|---|---|" + "---|" * len(tasks),
    ]
    for row in sweep["candidates"]:
        val = row["val"]
        mark = " **(chosen)**" if (row["method"], row["n_layers"]) == (chosen["method"], chosen["n_layers"]) else ""
        cells = [
            f"{val[t]['gap']:+.4f} [{val[t]['gap_ci'][0]:+.4f}, {val[t]['gap_ci'][1]:+.4f}]" for t in [POOLED, *tasks]
        ]
        lines.append(
            f"| {row['n_layers']} | {row['method']}{mark} | {row['removed_layers']} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines) + "\n"
