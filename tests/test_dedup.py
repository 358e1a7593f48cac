"""De-duplication by MinHash + LSH against the exhaustive pairwise search it replaced, on planted corpora."""

import json

import pytest

from prunetune.cli import main
from prunetune.dedup import deduplicate, jaccard, lsh_bands, normalized_words, shingles
from prunetune.splitbench import bench_size, planted_corpus


def exhaustive(articles, threshold):
    """The quadratic search deduplicate replaced: every kept article compared with each new one."""
    kept, kept_shingles, seen, dropped = [], [], {}, []
    for article in articles:
        words = " ".join(normalized_words(article["content"]))
        twin = seen.get(words) or seen.get("url:" + article["url"])
        if twin is not None:
            dropped.append({"line": article["line"], "reason": "exact_duplicate", "of_line": twin["line"]})
            continue
        own = shingles(article["content"])
        best, best_score = None, 0.0
        for other, other_shingles in zip(kept, kept_shingles, strict=True):
            if (score := jaccard(own, other_shingles)) > best_score:
                best, best_score = other, score
        if best is not None and best_score >= threshold:
            dropped.append({"line": article["line"], "reason": "near_duplicate", "of_line": best["line"],
                            "jaccard": best_score})  # fmt: skip
            continue
        kept.append(article)
        kept_shingles.append(own)
        seen[words] = article
        seen["url:" + article["url"]] = article
    return kept, dropped


def numbered(articles):
    return [{**a, "line": n} for n, a in enumerate(articles, start=1)]


def test_planted_corpus_gives_exactly_the_planted_duplicates():
    articles, planted, n_near_misses = planted_corpus(200, 0.8, seed=3)
    kept, dropped = deduplicate(numbered(articles), 0.8)
    assert {(d["line"], d["reason"], d["of_line"]) for d in dropped} == planted
    assert len(planted) == 30 and n_near_misses == 10 and len(kept) == len(articles) - 30
    assert all(0.8 <= d["jaccard"] < 1 for d in dropped if d["reason"] == "near_duplicate")


def test_near_misses_lie_just_below_the_threshold_and_are_kept():
    articles, _, _ = planted_corpus(200, 0.8, seed=3)
    by_title = {}
    for article in articles:
        by_title.setdefault(article["summary"], []).append(article)  # a copy keeps its original's first words
    pairs = [group for group in by_title.values() if len(group) == 2]
    scores = sorted(jaccard(shingles(a["content"]), shingles(b["content"])) for a, b in pairs)
    near_misses = [s for s in scores if 0 < s < 0.8]  # (a same-URL copy has other words: 0)
    assert len(near_misses) == 10 and min(near_misses) > 0.7  # hard negatives: close, but under


@pytest.mark.parametrize("threshold", [0.5, 0.8, 0.9])
def test_same_decisions_as_the_exhaustive_search(threshold):
    articles = numbered(planted_corpus(150, threshold, seed=7)[0])
    assert deduplicate(articles, threshold) == exhaustive(articles, threshold)


def test_deterministic():
    articles = numbered(planted_corpus(150, 0.8, seed=1)[0])
    assert deduplicate(articles, 0.8) == deduplicate(articles, 0.8)


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.8, 0.95, 1.0])
def test_lsh_bands_miss_a_pair_at_the_threshold_at_most_once_in_a_million(threshold):
    bands, rows = lsh_bands(threshold)
    assert bands * rows <= 128 and (1 - threshold**rows) ** bands <= 1e-6


def test_bench_split_scores_and_prints_the_table(tmp_path, capsys):
    result = bench_size(100, 0.8, seed=0)
    assert (result["precision"], result["recall"], result["found_duplicates"]) == (1.0, 1.0, 15)
    main(["bench-split", "--sizes", "60", "--json", str(tmp_path / "split.json")])
    assert "| 60 | 72 | 9 | 3 | 9 | 1.000 | 1.000 |" in capsys.readouterr().out
    assert json.loads((tmp_path / "split.json").read_text())[0]["recall"] == 1.0
