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
    value: float = math.nan  # the statistic on every example (ratio_bootstrap)
    n: int = 0  # examples
    units: int = 0  # resampled units (clusters, or examples)

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


RESAMPLE_CHUNK = 2000  # resamples drawn and summed at once: a chunk x units count matrix


def ratio_bootstrap(
    terms: Sequence[tuple[float, Sequence[float], Sequence[float]]],
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    clusters: Sequence | None = None,
) -> Bootstrap:
    """The (cluster) bootstrap of Σ w·sum(num)/sum(den) over the resampled units, vectorized: a mean (den 1), a
    paired difference of means (w = +1, -1), a token-weighted log-perplexity and its paired difference are all
    ratios of sums. Each resample is a row of unit counts, so B = 10,000 costs a few matrix products; the same
    seed and unit count draw the same resamples for every statistic (their distributions pair up). BCa from the
    leave-one-unit-out jackknife; degenerate data (every resample equal) gives [v, v]."""
    from scipy.special import ndtr, ndtri

    if not terms or not len(terms[0][1]):
        raise PrunetuneError("metrics: a confidence interval needs at least one example; check the test split")
    if n_resamples < 1 or not 0 < confidence < 1:
        raise PrunetuneError(f"metrics: need n_resamples >= 1 and 0 < confidence < 1, got {n_resamples}, {confidence}")
    n = len(terms[0][1])
    units = _units(n, clusters) or [np.asarray([i]) for i in range(n)]
    label = np.empty(n, dtype=np.int64)
    for u, members in enumerate(units):
        label[members] = u
    k = len(units)
    sums = [
        (w, np.bincount(label, np.asarray(num, np.float64), k), np.bincount(label, np.asarray(den, np.float64), k))
        for w, num, den in terms
    ]
    value = float(sum(w * num.sum() / den.sum() for w, num, den in sums))
    if k == 1:
        return Bootstrap([value, value], [value, value], np.full(1, value), value, n, k)
    rng = np.random.default_rng(seed)
    chunks = []
    for start in range(0, n_resamples, RESAMPLE_CHUNK):
        rows = min(RESAMPLE_CHUNK, n_resamples - start)
        drawn = rng.integers(0, k, (rows, k)) + k * np.arange(rows)[:, None]
        counts = np.bincount(drawn.ravel(), minlength=rows * k).reshape(rows, k).astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            chunks.append(sum(w * (counts @ num) / (counts @ den) for w, num, den in sums))
    distribution = np.concatenate(chunks)
    alpha = (1 - confidence) / 2
    finite = distribution[np.isfinite(distribution)]
    percentile = [float(v) for v in np.percentile(finite, [100 * alpha, 100 * (1 - alpha)])]
    with np.errstate(divide="ignore", invalid="ignore"):
        jackknife = sum(w * (num.sum() - num) / (den.sum() - den) for w, num, den in sums)
        spread = jackknife.mean() - jackknife
        acceleration = (spread**3).sum() / (6 * (spread**2).sum() ** 1.5)
        z0 = ndtri(np.mean(finite < value))
        z = ndtri(np.array([alpha, 1 - alpha]))
        levels = ndtr(z0 + (z0 + z) / (1 - acceleration * (z0 + z)))
    bca = [float(v) for v in np.percentile(finite, 100 * levels)] if np.isfinite(levels).all() else list(percentile)
    if np.ptp(finite) == 0:
        percentile = bca = [float(finite[0])] * 2
    return Bootstrap(percentile, bca, distribution, value, n, k)


def mean_ci(
    values: Sequence[float],
    n_resamples: int = 1000,
    seed: int = 0,
    clusters: Sequence | None = None,
    method: str = "percentile",
) -> tuple[float, list[float]]:
    """The mean of per-example scores and its 95% bootstrap interval."""
    x = np.asarray(values, dtype=np.float64)
    if len(x) < 1:
        raise PrunetuneError("metrics: a confidence interval needs at least one example; check the test split")
    ci = ratio_bootstrap([(1.0, x, np.ones_like(x))], n_resamples, seed, clusters=clusters).ci(method)
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
    ones = np.ones_like(x)
    return paired_test(ratio_bootstrap([(1.0, x, ones), (-1.0, y, ones)], n_resamples, seed, clusters=clusters))


def paired_test(result: Bootstrap) -> dict[str, Any]:
    """The entry of one paired difference from its ratio_bootstrap: value, percentile and BCa intervals, the
    two-sided p-value, the examples and resampled units behind it."""
    ci = result.percentile
    return {
        "diff": result.value,
        "ci": ci,
        "ci_bca": result.bca,
        "p_value": bootstrap_p_value(result.distribution),
        "excludes_zero": bool(ci[0] > 0 or ci[1] < 0),
        "n": result.n,
        "units": result.units,
    }


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
    result = ratio_bootstrap([(1.0, nll[keep], tokens[keep])], n_resamples, seed, clusters=labels)
    return [math.exp(v) for v in result.ci(method)]  # exp is monotone: the interval of exp is exp of the interval
