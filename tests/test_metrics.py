"""Every metric against a hand-worked example; the expected number is derived in the comment beside it."""

import math

import numpy as np
import pytest

from prunetune.config import PrunetuneError
from prunetune.data import parse_tags
from prunetune.metrics import (
    accuracy,
    answer_matches,
    bertscore_f1,
    bootstrap_ci,
    check_bertscore_model,
    majority_baseline,
    mc_letter_match,
    mean_ci,
    micro_f1,
    normalize_answer,
    normalize_label,
    paired_bootstrap_diff,
    paired_bootstrap_stat,
    perplexity,
    perplexity_ci,
    rouge_scores,
    tag_scores,
)

# ---------------------------------------------------------------- ROUGE


def test_rouge_worked_example():
    [s] = rouge_scores(["the cat sat"], ["the cat ran"])
    # unigrams: 2 of 3 shared -> P = R = F = 2/3
    assert s["rouge1"] == pytest.approx(2 / 3)
    # bigrams {the cat, cat sat} vs {the cat, cat ran}: 1 of 2 shared -> F = 1/2
    assert s["rouge2"] == pytest.approx(1 / 2)
    # longest common subsequence "the cat" = 2 tokens of 3 -> F = 2/3
    assert s["rougeL"] == pytest.approx(2 / 3)


def test_rouge_perfect_wrong_and_empty():
    perfect, wrong, empty = rouge_scores(["the cat sat", "dog", "  "], ["the cat sat", "the cat", "the cat"])
    assert perfect == {"rouge1": 1.0, "rouge2": 1.0, "rougeL": 1.0}  # identical text
    assert wrong == {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}  # no shared token
    assert empty == {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}  # an empty prediction scores nothing


def test_rouge_uses_stemming():
    # "cars" and "car" share the stem "car": 2 of 2 unigrams match -> F = 1
    assert rouge_scores(["electric cars"], ["electric car"])[0]["rouge1"] == pytest.approx(1.0)


def test_rouge_length_mismatch():
    with pytest.raises(PrunetuneError, match="references"):
        rouge_scores(["a"], [])


# ---------------------------------------------------------------- BERTScore


def test_bertscore_minilm_offline():
    preds = ["the cat sat on the mat", "quarterly revenue rose", ""]
    refs = ["the cat sat on the mat", "a dog barked loudly", "the cat sat on the mat"]
    same, unrelated, empty = bertscore_f1(preds, refs, "minilm")
    # identical texts: every token's best match is itself (cosine 1) -> P = R = F = 1
    assert same == pytest.approx(1.0, abs=1e-4)
    assert unrelated < same
    assert empty == 0.0  # empty predictions never reach bert_score; they score 0.0


def test_bertscore_unknown_model_fails_fast():
    check_bertscore_model("minilm")  # loads (cached) without network
    with pytest.raises(PrunetuneError, match=r"eval\.bertscore_model 'no/such-model' cannot be loaded offline") as err:
        check_bertscore_model("no/such-model")
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------- tags


def test_tags_with_commas_parsed_whole():
    predicted = parse_tags("finance, facts, figures | Design")
    gold = parse_tags("Finance, Facts, Figures | Electromobility")
    assert predicted == ["finance, facts, figures", "Design"]  # the commas stay inside one tag
    s = tag_scores(predicted, gold)
    # sets {ffF, design} vs {ffF, electromobility}: 1 shared, union 3
    assert s["exact_match"] == 0.0
    assert s["jaccard"] == pytest.approx(1 / 3)  # |∩| / |∪| = 1/3
    assert s["f1"] == pytest.approx(1 / 2)  # P = 1/2, R = 1/2 -> F = 1/2


def test_tags_perfect_wrong_empty():
    # case and surrounding spaces do not matter, order neither
    assert tag_scores(
        [" electromobility", "FINANCE, Facts, Figures"], ["Finance, Facts, Figures", "Electromobility"]
    ) == {
        "exact_match": 1.0,
        "jaccard": 1.0,
        "f1": 1.0,
    }
    assert tag_scores(["Design"], ["Motorsport"]) == {"exact_match": 0.0, "jaccard": 0.0, "f1": 0.0}  # nothing shared
    assert tag_scores([], ["Motorsport"]) == {"exact_match": 0.0, "jaccard": 0.0, "f1": 0.0}  # empty prediction
    assert tag_scores([], []) == {"exact_match": 1.0, "jaccard": 1.0, "f1": 1.0}  # both empty: nothing to miss


def test_micro_f1_differs_from_per_sample_f1():
    predicted = [["a"], ["b", "c", "d", "e"]]
    gold = [["a"], ["f"]]
    # per sample: F1 = 1 and F1 = 0 -> mean 0.5
    per_sample = np.mean([tag_scores(p, g)["f1"] for p, g in zip(predicted, gold, strict=True)])
    assert per_sample == pytest.approx(0.5)
    # micro: TP = 1, FP = 4, FN = 1 -> 2*1 / (2*1 + 4 + 1) = 2/7
    assert micro_f1(predicted, gold) == pytest.approx(2 / 7)
    assert micro_f1([["A "]], [["a"]]) == 1.0  # perfect
    assert micro_f1([[]], [["a"]]) == 0.0  # TP = 0, FN = 1 -> 0


# ---------------------------------------------------------------- classification


def test_accuracy_with_label_normalisation():
    assert normalize_label("  Press  Release. ") == "press release"
    # "Press Release." == "Press Release" and " speech" == "Speech", "Press Kit" != "Speech" -> 2/3
    assert accuracy(["Press Release.", " speech", "Press Kit"], ["Press Release", "Speech", "Speech"]) == pytest.approx(
        2 / 3
    )
    assert accuracy(["Speech"], ["Speech"]) == 1.0
    assert accuracy(["Speech"], ["Press Kit"]) == 0.0
    assert accuracy([""], ["Speech"]) == 0.0  # empty prediction
    with pytest.raises(PrunetuneError):
        accuracy([], [])


def test_majority_baseline_tie_breaks_alphabetically():
    train = ["Speech", "Press Kit", "Speech", "Press Kit", "Press Release"]
    # Speech 2, Press Kit 2 -> tie -> "Press Kit" < "Speech"; on test 2 of 3 are Press Kit -> 2/3
    assert majority_baseline(train, ["Press Kit", "Speech", "press kit."]) == ("Press Kit", pytest.approx(2 / 3))
    assert majority_baseline(["Speech"], ["Speech"]) == ("Speech", 1.0)
    assert majority_baseline(["Speech"], ["Press Kit"]) == ("Speech", 0.0)


# ---------------------------------------------------------------- bootstrap


def bernoulli(n: int) -> np.ndarray:
    return np.array([1.0, 0.0] * (n // 2))  # mean 0.5


def test_bootstrap_contains_estimate_and_narrows():
    mean20, ci20 = mean_ci(bernoulli(20))
    mean2000, ci2000 = mean_ci(bernoulli(2000))
    assert mean20 == mean2000 == 0.5
    assert ci20[0] <= 0.5 <= ci20[1] and ci2000[0] <= 0.5 <= ci2000[1]
    # standard error ~ sqrt(0.25/n): 0.11 at n=20, 0.011 at n=2000 -> about 10x narrower
    assert (ci2000[1] - ci2000[0]) < (ci20[1] - ci20[0]) / 5


def test_bootstrap_deterministic_and_edge_cases():
    x = np.sqrt(np.arange(40))  # continuous values, so another seed moves the percentiles
    assert mean_ci(x, seed=3) == mean_ci(x, seed=3)
    assert mean_ci(x, seed=3) != mean_ci(x, seed=4)
    assert mean_ci([0.7]) == (0.7, [0.7, 0.7])  # n = 1: nothing to resample
    assert mean_ci([0.5] * 5) == (0.5, [0.5, 0.5])  # constant data: every resample has mean 0.5
    with pytest.raises(PrunetuneError):
        bootstrap_ci(0, lambda idx: 0.0)


def test_paired_bootstrap_diff():
    same = paired_bootstrap_diff([1.0, 0.0, 1.0, 1.0], [1.0, 0.0, 1.0, 1.0])
    assert same == {"diff": 0.0, "ci": [0.0, 0.0], "excludes_zero": False, "n": 4}
    # mean([1,0,1,1]) - mean([0,0,1,0]) = 0.75 - 0.25 = 0.5
    assert paired_bootstrap_diff([1, 0, 1, 1], [0, 0, 1, 0])["diff"] == pytest.approx(0.5)
    better = paired_bootstrap_diff([1.0] * 45 + [0.0] * 5, [1.0] * 5 + [0.0] * 45)
    assert better["diff"] == pytest.approx(0.8) and better["excludes_zero"]  # 0.9 - 0.1
    assert better["ci"][0] <= 0.8 <= better["ci"][1]
    with pytest.raises(PrunetuneError, match="same examples"):
        paired_bootstrap_diff([1.0], [1.0, 0.0])


def test_paired_bootstrap_stat_on_a_ratio():
    nll_a, nll_b, tokens = np.array([2.0, 4.0]), np.array([3.0, 5.0]), np.array([1.0, 3.0])
    out = paired_bootstrap_stat(
        2,
        lambda idx: nll_a[idx].sum() / tokens[idx].sum(),
        lambda idx: nll_b[idx].sum() / tokens[idx].sum(),
    )
    # 6/4 - 8/4 = -0.5 on all examples
    assert out["diff"] == pytest.approx(-0.5) and out["n"] == 2


# ---------------------------------------------------------------- perplexity


def test_perplexity_is_token_weighted():
    # exp((2 + 4) / (1 + 3)) = exp(1.5) = 4.4817; the mean of per-example exp(2), exp(4/3) would be 5.59
    assert perplexity([2.0, 4.0], [1, 3]) == pytest.approx(math.exp(1.5))
    assert perplexity([0.0], [5]) == 1.0  # a perfect model: NLL 0 -> perplexity 1
    low, high = perplexity_ci([2.0, 4.0, 1.0, 3.0], [1, 3, 2, 2])
    assert low <= perplexity([2.0, 4.0, 1.0, 3.0], [1, 3, 2, 2]) <= high  # exp(10/8) inside
    assert perplexity_ci([3.0], [2]) == [pytest.approx(math.exp(1.5))] * 2  # one example: [ppl, ppl]
    with pytest.raises(PrunetuneError):
        perplexity([1.0], [0])


# ---------------------------------------------------------------- QA


def test_normalize_answer():
    assert normalize_answer("The 1,000 cars, a record!") == "1000 cars record"  # no articles, no punctuation
    assert normalize_answer("3.5 litres.") == "3.5 litres"  # the decimal point stays, the full stop goes


@pytest.mark.parametrize(
    ("prediction", "gold", "expected"),
    [
        ("In Munich.", "Munich", True),
        ("It sold 1,000 cars", "1000", True),  # thousands separator ignored
        ("1000", "1,000", True),
        ("100", "10", False),  # whole tokens only
        ("3.5 litres", "35", False),  # the decimal point is meaningful
        ("The BMW's plant", "BMW", True),  # "bmw s": the apostrophe splits, it does not glue
        ("the Neue Klasse platform", "Neue Klasse", True),
        ("Berlin", "Munich", False),  # wrong answer
        ("", "Munich", False),  # empty prediction
    ],
)
def test_answer_matches(prediction, gold, expected):
    assert answer_matches(prediction, gold) is expected


OPTIONS = ["Berlin", "Munich", "Leipzig", "Dingolfing"]


@pytest.mark.parametrize(
    ("generated", "answer_index", "expected"),
    [
        ("B) Munich", 1, True),
        ("The answer is (C).", 2, True),
        ("Answer: A", 0, True),
        ("D. Dingolfing", 1, False),  # wrong letter
        ("B) Leipzig", 2, False),  # the letter comes first and decides
        ("I think it is Munich", 1, True),  # no option letter ("I" is not one): the one option named
        ("A car plant in Munich", 1, True),  # "A car" is the article, not option A
        ("Munich or Leipzig", 1, False),  # two options named: ambiguous, no pick
        ("Munich or Leipzig", 2, False),
        ("", 0, False),  # empty generation
    ],
)
def test_mc_letter_match(generated, answer_index, expected):
    assert mc_letter_match(generated, OPTIONS, answer_index) is expected


def test_mc_letter_match_bad_index():
    with pytest.raises(PrunetuneError, match="answer_index"):
        mc_letter_match("A", OPTIONS, 4)
