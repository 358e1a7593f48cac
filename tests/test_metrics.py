"""Every metric against a hand-worked example; the expected number is derived in the comment beside it."""

import math
from pathlib import Path

import numpy as np
import pytest

from prunetune.config import PrunetuneError
from prunetune.data import parse_tags
from prunetune.metrics import (
    UnicodeTokenizer,
    accuracy,
    answer_matches,
    bertscore_f1,
    bertscore_layer,
    check_bertscore_model,
    constant_tags_baseline,
    majority_baseline,
    mc_letter_match,
    micro_f1_of_counts,
    normalize_answer,
    normalize_label,
    rouge_scores,
    sentence_lines,
    tag_counts,
    tag_scores,
)
from prunetune.stats import (
    binomial_test,
    bootstrap,
    bootstrap_ci,
    bootstrap_p_value,
    clopper_pearson,
    fieller,
    holm,
    mean_ci,
    p_floor,
    paired_bootstrap_diff,
    paired_bootstrap_stat,
    perplexity,
    perplexity_ci,
    ratio_bootstrap,
    t_interval,
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
    assert perfect == {"rouge1": 1.0, "rouge2": 1.0, "rougeL": 1.0, "rougeLsum": 1.0}  # identical text
    assert wrong == {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0, "rougeLsum": 0.0}  # no shared token
    assert empty == {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0, "rougeLsum": 0.0}  # an empty prediction: nothing


def test_rouge_uses_stemming():
    # "cars" and "car" share the stem "car": 2 of 2 unigrams match -> F = 1
    assert rouge_scores(["electric cars"], ["electric car"])[0]["rouge1"] == pytest.approx(1.0)


def test_rouge_lsum_scores_reordered_sentences_sentence_by_sentence():
    [s] = rouge_scores(["The dog ran. The cat sat."], ["The cat sat. The dog ran."])
    # as one sequence: [the cat sat the dog ran] vs [the dog ran the cat sat]: LCS 3 of 6 -> P = R = F = 1/2
    assert s["rougeL"] == pytest.approx(0.5)
    # by sentence: each reference sentence's LCS union over the prediction's sentences covers all its 3 tokens
    # -> 6 of 6 reference tokens (R = 1) and of 6 prediction tokens (P = 1) -> F = 1
    assert s["rougeLsum"] == pytest.approx(1.0)
    assert sentence_lines("Sales rose 5.2 percent. Munich won! Next: “Quotes” too.") == (
        "Sales rose 5.2 percent.\nMunich won!\nNext: “Quotes” too."  # 5.2 is no sentence end
    )


def test_rouge_keeps_non_ascii_letters():
    # rouge_score's own tokenizer reads "Jürgen" and "Jörgen" both as "j rgen" (a perfect match) and "Zoë" as "zo"
    jurgen, name, stemmed = rouge_scores(
        ["Jürgen spoke", "Zoë Müller", "electric cars"], ["Jörgen spoke", "Zoë Müller", "electric car"]
    )
    assert jurgen["rouge1"] == pytest.approx(1 / 2)  # "jürgen" != "jörgen", "spoke" shared: P = R = 1/2
    assert name["rouge1"] == 1.0  # both tokens kept whole and matched
    assert UnicodeTokenizer().tokenize("Zoë MÜLLER's cars") == ["zoë", "müller", "s", "car"]  # ASCII stemmed
    assert stemmed["rouge1"] == 1.0


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


def test_bertscore_uses_the_tuned_layer_when_known():
    from types import SimpleNamespace

    config = SimpleNamespace(num_hidden_layers=24, _name_or_path="")
    # bert_score's table: roberta-large's best layer is 17 of 24
    assert bertscore_layer("roberta-large", Path("x"), config)["layer"] == 17
    cached = Path("/cache/hub/models--roberta-large/snapshots/abc")  # a local hub-cache path of a known model
    assert bertscore_layer(str(cached), cached, config)["layer"] == 17
    mini = bertscore_layer("minilm", Path("/pkg/minilm"), SimpleNamespace(num_hidden_layers=6, _name_or_path=""))
    assert mini["layer"] == 6 and mini["layer_source"].startswith("last layer")  # not in the table: the last


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


def test_tags_and_types_share_one_normalization():
    # inner whitespace collapses for tags as it does for types: "BMW  M" is the tag "BMW M"
    assert tag_scores(["BMW  M", "Design."], ["bmw m", "Design"])["f1"] == 1.0
    assert normalize_label("BMW  M ") == normalize_label("bmw m") == "bmw m"


def test_micro_f1_differs_from_per_sample_f1():
    predicted = [["a"], ["b", "c", "d", "e"]]
    gold = [["a"], ["f"]]
    # per sample: F1 = 1 and F1 = 0 -> mean 0.5
    per_sample = np.mean([tag_scores(p, g)["f1"] for p, g in zip(predicted, gold, strict=True)])
    assert per_sample == pytest.approx(0.5)
    # micro: TP = 1, FP = 4, FN = 1 -> 2*1 / (2*1 + 4 + 1) = 2/7
    assert tag_counts(predicted, gold) == [(1, 0, 0), (0, 4, 1)]
    assert micro_f1_of_counts(tag_counts(predicted, gold)) == pytest.approx(2 / 7)
    assert micro_f1_of_counts(tag_counts([["A "]], [["a"]])) == 1.0  # perfect
    assert micro_f1_of_counts(tag_counts([[]], [["a"]])) == 0.0  # TP = 0, FN = 1 -> 0
    assert micro_f1_of_counts([]) == 1.0  # no tag anywhere: nothing was missed


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


def test_constant_tags_baseline_by_hand():
    train = [["A", "B"], ["A", "C"], ["A"], ["D"]]  # A 3, then B, C, D once each
    # mean train F1: {A} (2/3 + 2/3 + 1 + 0) / 4 = 0.583; {A, D} (1/2 + 1/2 + 2/3 + 2/3) / 4 = 0.583 too, and
    # {A, B} = {A, C} = (1 + 1/2 + 2/3 + 0) / 4 = 0.542: the tie goes to the first set, the smaller one
    assert constant_tags_baseline(train, [["A", "D"], ["B"]], max_size=2) == (["A"], pytest.approx((2 / 3 + 0) / 2))
    assert constant_tags_baseline(train, [["a"]], candidates=1) == (["A"], 1.0)  # only A to choose from
    with pytest.raises(PrunetuneError, match="train tags"):
        constant_tags_baseline([], [["A"]])


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


def test_cluster_bootstrap_is_wider_on_clustered_values():
    # 6 articles with 4 examples each; an article's 4 values are equal (perfectly clustered): 3 articles at 0, 3 at 1
    values = np.repeat([0.0, 1.0, 0.0, 1.0, 0.0, 1.0], 4)
    articles = np.repeat(list("abcdef"), 4)
    naive = mean_ci(values, n_resamples=2000)[1]
    clustered = mean_ci(values, n_resamples=2000, clusters=articles)[1]
    # naive: the mean of 24 independent draws, 24·mean ~ Binomial(24, 1/2): P(X <= 6) = 1.1%, P(X <= 7) = 3.2%,
    # so the 2.5% and 97.5% points are 7/24 and 17/24 -> width 10/24 = 0.42
    assert naive == pytest.approx([7 / 24, 17 / 24], abs=1 / 24)
    # clustered: really 6 draws, 6·mean ~ Binomial(6, 1/2): P(X = 0) = 1/64 = 1.6%, P(X <= 1) = 7/64 = 11%,
    # so the points are 1/6 and 5/6 -> width 0.67: the naive interval is visibly too narrow
    assert clustered == pytest.approx([1 / 6, 5 / 6])
    assert clustered[1] - clustered[0] > 1.4 * (naive[1] - naive[0])


def test_bootstrap_gives_percentile_and_bca_from_the_same_resamples():
    x = np.array([0.1, 0.2, 0.2, 0.3, 0.9, 1.4, 2.0, 3.5])  # skewed: BCa moves the interval right
    result = bootstrap(len(x), lambda idx: x[idx].mean(), n_resamples=2000)
    assert len(result.distribution) == 2000
    assert result.percentile[0] < x.mean() < result.percentile[1]
    assert result.bca[0] > result.percentile[0] and result.bca[1] > result.percentile[1]
    assert result.ci("bca") == result.bca
    with pytest.raises(PrunetuneError, match="ci_method"):
        result.ci("studentized")


def test_bootstrap_p_value():
    # each side (k + 1) / (B + 1): 3 of 10 at or below zero -> 4/11, 8 at or above -> 9/11; 2 * 4/11 = 0.727
    assert bootstrap_p_value([-2, -1, 0, 1, 2, 3, 4, 5, 6, 7]) == pytest.approx(8 / 11)
    # all 999 resamples above zero: 2 * (0 + 1) / (999 + 1) = 0.002, the two-sided floor 2/(B+1)
    assert bootstrap_p_value(np.ones(999)) == pytest.approx(0.002) == p_floor(999)
    assert bootstrap_p_value(np.zeros(5)) == 1.0  # no difference at all: 2 * 6/6, capped at 1
    # one resample across zero of 10,000: 2 * 2/10001 = 0.0004, still under Holm's 0.05/11 = 0.0045
    assert bootstrap_p_value([-1.0] + [1.0] * 9999) == pytest.approx(4 / 10001)


def test_clopper_pearson_and_binomial_test_by_hand():
    # 0 of 8: the upper end solves (1 - p)^8 = 0.025 -> 1 - 0.025^(1/8) = 0.3694 (the issue's [0, 0.37])
    assert clopper_pearson(0, 8) == pytest.approx([0.0, 1 - 0.025 ** (1 / 8)])
    # 8 of 8 mirrors it; 4 of 8 is symmetric about 0.5
    assert clopper_pearson(8, 8) == pytest.approx([0.025 ** (1 / 8), 1.0])
    low, high = clopper_pearson(4, 8)
    assert low == pytest.approx(1 - high) and low == pytest.approx(0.1570, abs=1e-4)
    # 2 of 2 against chance 1/2: P(2) = 1/4, and P(0) = 1/4 is as unlikely: p = 0.5
    assert binomial_test(2, 2, 0.5) == pytest.approx(0.5)
    with pytest.raises(PrunetuneError, match="binomial interval"):
        clopper_pearson(3, 2)


def test_t_interval_over_seeds_by_hand():
    # values 1, 2, 3: mean 2, sd 1, t(2, 0.975) = 4.3027 -> 2 ± 4.3027 / sqrt(3) = 2 ± 2.4842
    mean, (low, high) = t_interval([1.0, 2.0, 3.0])
    assert mean == 2.0 and low == pytest.approx(2 - 2.48414, abs=1e-4) and high == pytest.approx(2 + 2.48414, abs=1e-4)
    # the fine-tuned perplexity gaps +1.5, +1.8, +3.0: all positive, and the t-interval is too
    assert t_interval([1.508, 1.804, 3.002])[1][0] > 0
    with pytest.raises(PrunetuneError, match="at least 2"):
        t_interval([1.0])


def test_fieller_by_hand():
    # no noise: the ratio 4/10 exactly
    assert fieller(4.0, 10.0, np.zeros((2, 2))) == pytest.approx([0.4, 0.4])
    # only the denominator noisy (Vbb = 1): (4 - 10r)^2 = 1.96^2 r^2 -> r = 4 / (10 ± 1.96) = 0.3344, 0.4975
    z = 1.959964
    assert fieller(4.0, 10.0, np.array([[0.0, 0.0], [0.0, 1.0]])) == pytest.approx([4 / (10 + z), 4 / (10 - z)])
    # a denominator within 1.96 standard errors of zero: the set is unbounded, no interval
    assert fieller(4.0, 1.0, np.array([[0.0, 0.0], [0.0, 1.0]])) is None


def test_ratio_bootstrap_matches_the_means_and_ratios_it_stands_for():
    # a paired difference of means is one ratio bootstrap: mean([1,0,1,1]) - mean([0,0,1,0]) = 0.5
    ones = np.ones(4)
    result = ratio_bootstrap([(1.0, [1, 0, 1, 1], ones), (-1.0, [0, 0, 1, 0], ones)], n_resamples=3000)
    assert result.value == pytest.approx(0.5) and len(result.distribution) == 3000 and result.units == 4
    # per-example differences 1, 0, 0, 1: every resample's mean is a multiple of 1/4 in [0, 1]
    assert set(np.round(result.distribution * 4, 9)) <= {0.0, 1.0, 2.0, 3.0, 4.0}
    # a ratio of sums over two clusters of per-token NLL 1.5 and 2 (a: 2+4 over 1+3; b: 6 over 3): every resample
    # is 1.5 (a, a), 2 (b, b) or 12/7 (a, b): the interval spans [1.5, 2]
    clustered = ratio_bootstrap([(1.0, [2.0, 4.0, 6.0], [1, 3, 3])], 2000, clusters=["a", "a", "b"])
    assert clustered.value == pytest.approx(12 / 7) and clustered.percentile == pytest.approx([1.5, 2.0])
    assert set(np.round(clustered.distribution, 9)) == {1.5, 2.0, round(12 / 7, 9)}
    # the same seed and unit count draw the same resamples for any statistic: the distributions pair up
    again = ratio_bootstrap([(1.0, [1.0, 2.0, 3.0], [1, 1, 1])], 2000, clusters=["a", "a", "b"])
    assert np.array_equal(np.isclose(clustered.distribution, 1.5), np.isclose(again.distribution, 1.5))


def test_holm_on_three_p_values():
    # sorted 0.01, 0.03, 0.04 (m = 3): 3 * 0.01 = 0.03; 2 * 0.03 = 0.06; 1 * 0.04 = 0.04 -> max(0.06, 0.04) = 0.06
    adjusted, rejected = holm([0.01, 0.04, 0.03])
    assert adjusted == pytest.approx([0.03, 0.06, 0.06])
    # step 1: 0.01 <= 0.05/3 rejects; step 2: 0.03 > 0.05/2 stops, so 0.04 is kept too (uncorrected: all three)
    assert rejected == [True, False, False]
    assert holm([0.001, 0.02], alpha=0.05) == (pytest.approx([0.002, 0.02]), [True, True])


def test_paired_bootstrap_diff():
    same = paired_bootstrap_diff([1.0, 0.0, 1.0, 1.0], [1.0, 0.0, 1.0, 1.0])
    assert same == {
        "diff": 0.0,
        "ci": [0.0, 0.0],
        "ci_bca": [0.0, 0.0],
        "p_value": 1.0,
        "excludes_zero": False,
        "n": 4,
        "units": 4,
    }
    # mean([1,0,1,1]) - mean([0,0,1,0]) = 0.75 - 0.25 = 0.5
    assert paired_bootstrap_diff([1, 0, 1, 1], [0, 0, 1, 0])["diff"] == pytest.approx(0.5)
    better = paired_bootstrap_diff([1.0] * 45 + [0.0] * 5, [1.0] * 5 + [0.0] * 45)
    assert better["diff"] == pytest.approx(0.8) and better["excludes_zero"]  # 0.9 - 0.1
    assert better["p_value"] == pytest.approx(2 / 1001)  # no resample at or below zero: the floor 2/(B+1)
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
    # one article's answers resampled together: two articles of identical per-token NLL -> every resample exp(1)
    assert (
        perplexity_ci([1.0, 3.0, 2.0, 2.0], [1, 3, 2, 2], clusters=["a", "a", "b", "b"]) == [pytest.approx(math.e)] * 2
    )
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
        ("Munich, Leipzig, Berlin, Debrecen", "Munich", False),  # every candidate listed: no credit
        ("Munich or Leipzig", "Munich", False),  # alternatives: a hedge
        ("40, 50, 60 laps", "50", False),
        ("In Munich, Germany", "Munich", True),  # two items without 'or' is an apposition, not a hedge
        ("1,100 Nm", "1,100 Nm", True),  # a thousands comma is no list separator
        ("Rory McIlroy and Thriston Lawrence", "Rory McIlroy and Thriston Lawrence", True),
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
        ("A is correct", 0, True),  # "A" followed by a verb is the letter
        ("A would be my answer", 0, True),
        ("A is correct", 1, False),
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
