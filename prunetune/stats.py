"""Intervals and tests: the (cluster) bootstrap with percentile and BCa intervals, means and paired differences
with their intervals and p-values, Holm-Bonferroni, and token-weighted perplexity with its interval."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from prunetune.config import PrunetuneError

# ---------------------------------------------------------------- bootstrap


CI_METHODS = ("percentile", "bca")


@dataclass(frozen=True)
class Bootstrap:
    """One bootstrap run: the percentile and BCa intervals and the resampled statistics behind both."""

    percentile: list[float]
    bca: list[float]
    distribution: np.ndarray

    def ci(self, method: str = "percentile") -> list[float]:
        if method not in CI_METHODS:
            raise PrunetuneError(f"metrics: ci_method must be one of {CI_METHODS}, got {method!r}")
        return self.bca if method == "bca" else self.percentile


def _units(n: int, clusters: Sequence | None) -> list[np.ndarray] | None:
    """The example indices of each resampling unit; None when every example is its own unit."""
    if clusters is None:
        return None
    if len(clusters) != n:
        raise PrunetuneError(f"metrics: {len(clusters)} cluster labels for {n} examples; give one per example")
    members: dict[Any, list[int]] = {}
    for index, label in enumerate(clusters):
        members.setdefault(label, []).append(index)
    return [np.asarray(m, dtype=np.int64) for m in members.values()]


def bootstrap(
    n: int,
    statistic: Callable[[np.ndarray], float],
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    clusters: Sequence | None = None,
) -> Bootstrap:
    """scipy.stats.bootstrap of statistic(example indices). With clusters (one label per example, e.g. its
    article_id) whole clusters are resampled: examples of one article are not independent, and treating
    them as such makes the interval too narrow. Degenerate data (every resample equal) gives [v, v]."""
    from scipy import stats

    if n < 1:
        raise PrunetuneError("metrics: a confidence interval needs at least one example; check the test split")
    if n_resamples < 1 or not 0 < confidence < 1:
        raise PrunetuneError(f"metrics: need n_resamples >= 1 and 0 < confidence < 1, got {n_resamples}, {confidence}")
    units = _units(n, clusters)
    k = n if units is None else len(units)
    if k == 1:
        value = float(statistic(np.arange(n)))
        return Bootstrap([value, value], [value, value], np.full(1, value))

    def on_units(sample: np.ndarray) -> float:
        picked = sample.astype(np.int64)
        return float(statistic(picked if units is None else np.concatenate([units[u] for u in picked])))

    common = {"n_resamples": n_resamples, "confidence_level": confidence, "vectorized": False}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # degenerate data and BCa's undefined cases are handled below
        rng = np.random.default_rng(seed)
        result = stats.bootstrap((np.arange(k),), on_units, method="percentile", rng=rng, **common)
        distribution = np.asarray(result.bootstrap_distribution, dtype=np.float64)
        percentile = [float(result.confidence_interval.low), float(result.confidence_interval.high)]
        if np.ptp(distribution) == 0 or not np.isfinite(percentile).all():
            alpha = 100 * (1 - confidence) / 2
            percentile = [float(v) for v in np.nanpercentile(distribution, [alpha, 100 - alpha])]  # nan: undefined
        try:  # BCa on the same resamples: only the jackknife (one unit left out at a time) is added
            bca_result = stats.bootstrap(
                (np.arange(k),), on_units, method="BCa", bootstrap_result=result, **{**common, "n_resamples": 0}
            )
            bca = [float(bca_result.confidence_interval.low), float(bca_result.confidence_interval.high)]
        except (ValueError, FloatingPointError):
            bca = [math.nan, math.nan]
    if not np.isfinite(bca).all():  # e.g. every resample equal: BCa's acceleration is 0/0
        bca = list(percentile)
    return Bootstrap(percentile, bca, distribution)


def bootstrap_ci(
    n: int,
    statistic: Callable[[np.ndarray], float],
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    clusters: Sequence | None = None,
    method: str = "percentile",
) -> list[float]:
    """[low, high] of statistic(indices) over examples (or clusters of them) resampled with replacement."""
    return bootstrap(n, statistic, n_resamples, seed, confidence, clusters).ci(method)


def mean_ci(
    values: Sequence[float],
    n_resamples: int = 1000,
    seed: int = 0,
    clusters: Sequence | None = None,
    method: str = "percentile",
) -> tuple[float, list[float]]:
    """The mean of per-example scores and its 95% bootstrap interval."""
    x = np.asarray(values, dtype=np.float64)
    ci = bootstrap_ci(len(x), lambda idx: x[idx].mean(), n_resamples, seed, clusters=clusters, method=method)
    return float(x.mean()), ci


def mean_with_ci(
    name: str,
    values: Sequence[float],
    n_resamples: int,
    seed: int,
    method: str = "percentile",
    clusters: Sequence | None = None,
) -> dict[str, Any]:
    """{name: mean, name_ci: [low, high]}: a headline number with its interval, as the metrics files hold it."""
    mean, ci = mean_ci(values, n_resamples, seed, clusters=clusters, method=method)
    return {name: mean, f"{name}_ci": ci}


def bootstrap_p_value(distribution: Sequence[float] | np.ndarray) -> float:
    """Two-sided p of 'no difference' from B bootstrap differences: each side (k + 1) / (B + 1) with k the resamples
    at or beyond zero on that side (Davison & Hinkley's correction: B resamples cannot show less), the smaller side
    doubled and capped at 1; so no p is below 2 / (B + 1)."""
    d = np.asarray(distribution, dtype=np.float64)
    b = len(d)
    below, above = (int(np.sum(d <= 0)) + 1) / (b + 1), (int(np.sum(d >= 0)) + 1) / (b + 1)
    return min(1.0, 2 * min(below, above))


def p_floor(n_resamples: int) -> float:
    """The smallest two-sided bootstrap p-value B resamples can give: 2 / (B + 1)."""
    return 2 / (n_resamples + 1)


def holm(p_values: Sequence[float], alpha: float = 0.05) -> tuple[list[float], list[bool]]:
    """Holm–Bonferroni step-down: adjusted p-values and which tests are rejected at family-wise level alpha."""
    p = np.asarray(p_values, dtype=np.float64)
    m, adjusted, running = len(p), np.empty(len(p)), 0.0
    for rank, index in enumerate(np.argsort(p, kind="stable")):
        running = max(running, min(1.0, (m - rank) * p[index]))  # monotone: never below a smaller p's adjustment
        adjusted[index] = running
    return [float(a) for a in adjusted], [bool(a <= alpha) for a in adjusted]


def paired_bootstrap_stat(
    n: int,
    statistic_a: Callable[[np.ndarray], float],
    statistic_b: Callable[[np.ndarray], float],
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    clusters: Sequence | None = None,
) -> dict[str, Any]:
    """Difference A-B of any statistic, resampling the SAME example indices (or clusters) for both variants:
    the percentile and BCa intervals, and the bootstrap p-value a multiplicity correction needs."""
    result = bootstrap(n, lambda idx: statistic_a(idx) - statistic_b(idx), n_resamples, seed, confidence, clusters)
    everything = np.arange(n)
    diff = float(statistic_a(everything) - statistic_b(everything))
    ci = result.percentile
    return {
        "diff": diff,
        "ci": ci,
        "ci_bca": result.bca,
        "p_value": bootstrap_p_value(result.distribution),
        "excludes_zero": bool(ci[0] > 0 or ci[1] < 0),
        "n": n,
        "units": n if clusters is None else len(set(clusters)),
    }


def paired_bootstrap_diff(
    a: Sequence[float], b: Sequence[float], n_resamples: int = 1000, seed: int = 0, clusters: Sequence | None = None
) -> dict[str, Any]:
    """mean(a) - mean(b) with its paired bootstrap interval, for two variants scored on the same examples."""
    if len(a) != len(b):
        raise PrunetuneError(
            f"metrics: paired bootstrap needs both variants scored on the same examples, got {len(a)} and {len(b)}"
        )
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return paired_bootstrap_stat(
        len(x), lambda idx: x[idx].mean(), lambda idx: y[idx].mean(), n_resamples, seed, clusters=clusters
    )


def clopper_pearson(successes: int, n: int, confidence: float = 0.95) -> list[float]:
    """The exact binomial interval of a proportion: where a bootstrap degenerates (0 of n resamples to [0, 0]), it
    still says how far the true rate may be from the observed one."""
    from scipy import stats

    if n < 1 or not 0 <= successes <= n:
        raise PrunetuneError(f"metrics: a binomial interval needs 0 <= successes <= n and n >= 1, got {successes}/{n}")
    ci = stats.binomtest(int(successes), int(n)).proportion_ci(confidence_level=confidence, method="exact")
    return [float(ci.low), float(ci.high)]


def binomial_test(successes: int, n: int, chance: float) -> float:
    """Two-sided exact binomial p-value of a proportion against a known chance rate (e.g. 0.25 with 4 options)."""
    from scipy import stats

    return float(stats.binomtest(int(successes), int(n), chance).pvalue)


def t_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, list[float]]:
    """Mean of a few independent replicates (training seeds) and its Student-t interval mean ± t·sd/√n: an interval
    for the mean over seeds, which an average of the seeds' interval endpoints is not."""
    from scipy import stats

    x = np.asarray(values, dtype=np.float64)
    if len(x) < 2:
        raise PrunetuneError(f"metrics: a t-interval over seeds needs at least 2 values, got {len(x)}")
    mean, half = float(x.mean()), float(stats.t.ppf(0.5 + confidence / 2, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)))
    return mean, [mean - half, mean + half]


def fieller(
    numerator: float, denominator: float, covariance: np.ndarray, confidence: float = 0.95
) -> list[float] | None:
    """Fieller's interval for numerator / denominator given their 2x2 covariance (e.g. from a joint bootstrap): the
    ratios r with (a - r·b)² <= z²·(Vaa - 2r·Vab + r²·Vbb). None when the denominator is not clearly away from zero
    (b² <= z²·Vbb: the set is unbounded), the case in which a ratio means nothing."""
    from scipy import stats

    z2 = float(stats.norm.ppf(0.5 + confidence / 2)) ** 2
    a, b = float(numerator), float(denominator)
    (vaa, vab), (_, vbb) = np.asarray(covariance, dtype=np.float64)
    qa, qb, qc = b * b - z2 * vbb, -2 * (a * b - z2 * vab), a * a - z2 * vaa
    if qa <= 0:
        return None
    root = math.sqrt(max(qb * qb - 4 * qa * qc, 0.0))
    return [(-qb - root) / (2 * qa), (-qb + root) / (2 * qa)]


# ---------------------------------------------------------------- perplexity


def _nll_arrays(nll_sums: Sequence[float], token_counts: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    if len(nll_sums) != len(token_counts):
        raise PrunetuneError(f"metrics: {len(nll_sums)} NLL sums but {len(token_counts)} token counts; one each")
    nll, tokens = np.asarray(nll_sums, dtype=np.float64), np.asarray(token_counts, dtype=np.float64)
    if tokens.sum() <= 0 or (tokens < 0).any():
        raise PrunetuneError("metrics: perplexity needs scored tokens; check that examples keep their assistant tokens")
    return nll, tokens


def perplexity(nll_sums: Sequence[float], token_counts: Sequence[int]) -> float:
    """Token-weighted perplexity exp(sum NLL / sum tokens), so long answers count per token, not per example."""
    nll, tokens = _nll_arrays(nll_sums, token_counts)
    return math.exp(nll.sum() / tokens.sum())


def perplexity_ci(
    nll_sums: Sequence[float],
    token_counts: Sequence[int],
    n_resamples: int = 1000,
    seed: int = 0,
    clusters: Sequence | None = None,
    method: str = "percentile",
) -> list[float]:
    """Bootstrap [low, high] of perplexity resampling examples, or whole clusters of them (an article's four task
    answers), a ratio of sums each time; 0-token examples are dropped."""
    nll, tokens = _nll_arrays(nll_sums, token_counts)
    keep = tokens > 0  # they add nothing to either sum, and could empty a resample
    labels = None if clusters is None else [c for c, k in zip(clusters, keep, strict=True) if k]
    nll, tokens = nll[keep], tokens[keep]
    return bootstrap_ci(
        len(nll),
        lambda idx: math.exp(nll[idx].sum() / tokens[idx].sum()),
        n_resamples,
        seed,
        clusters=labels,
        method=method,
    )
