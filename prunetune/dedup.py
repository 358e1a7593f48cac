"""Exact and near-duplicate articles: MinHash + LSH finds the candidate pairs, the exact Jaccard decides.

Candidates only narrow the search, so the decisions (and the report) are those of comparing every pair, at a cost
that grows with the corpus instead of with its square.
"""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from datasketch import MinHash

SHINGLE_WORDS = 5
NUM_PERM = 128  # MinHash permutations; the LSH bands are cut from them (lsh_bands)
MINHASH_SEED = 1  # fixed: the same corpus always gives the same candidates
MAX_MISS = 1e-6  # the most likely a pair at the threshold may be missed by every LSH band


def normalized_words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def shingles(text: str, size: int = SHINGLE_WORDS) -> set[tuple[str, ...]]:
    words = normalized_words(text)
    if len(words) < size:
        return {tuple(words)}
    return {tuple(words[i : i + size]) for i in range(len(words) - size + 1)}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def lsh_bands(threshold: float, num_perm: int = NUM_PERM, max_miss: float = MAX_MISS) -> tuple[int, int]:
    """(bands, rows): the most rows per band (fewest spurious candidates) for which a pair of Jaccard `threshold`
    shares no band with probability (1 - threshold**rows)**bands <= max_miss; higher Jaccard is missed less."""
    for rows in range(num_perm, 0, -1):
        bands = num_perm // rows
        if (1 - threshold**rows) ** bands <= max_miss:
            return bands, rows
    return num_perm, 1


def _minhash(article_shingles: set[tuple[str, ...]], template: MinHash) -> MinHash:
    minhash = template.copy()
    minhash.update_batch([" ".join(shingle).encode("utf-8") for shingle in article_shingles])
    return minhash


def deduplicate(articles: list[dict[str, Any]], near_threshold: float) -> tuple[list[dict], list[dict]]:
    """Keep the first of each group of exact (same URL or same words) or near duplicates (5-gram Jaccard).

    A near duplicate is dropped in favour of the kept article it is most similar to (the earliest on a tie).
    """
    from datasketch import MinHash, MinHashLSH  # it imports scipy (0.4 s): only in the stage that deduplicates

    kept: list[dict] = []
    kept_shingles: list[set] = []
    seen_exact: dict[str, dict] = {}
    dropped: list[dict] = []
    template = MinHash(num_perm=NUM_PERM, seed=MINHASH_SEED)
    index = MinHashLSH(threshold=near_threshold, num_perm=NUM_PERM, params=lsh_bands(near_threshold))
    for article in articles:
        words_key = hashlib.sha1(" ".join(normalized_words(article["content"])).encode()).hexdigest()
        twin = seen_exact.get(words_key) or seen_exact.get("url:" + article["url"])
        if twin is not None:
            dropped.append({"line": article["line"], "reason": "exact_duplicate", "of_line": twin["line"]})
            continue
        article_shingles = shingles(article["content"])
        minhash = _minhash(article_shingles, template)
        best, best_score = None, 0.0
        for position in sorted(index.query(minhash)):  # kept order: the earliest wins a tie
            score = jaccard(article_shingles, kept_shingles[position])
            if score > best_score:
                best, best_score = kept[position], score
        if best is not None and best_score >= near_threshold:
            dropped.append(
                {
                    "line": article["line"],
                    "reason": "near_duplicate",
                    "of_line": best["line"],
                    "jaccard": best_score,
                }
            )
            continue
        index.insert(len(kept), minhash, check_duplication=False)
        kept.append(article)
        kept_shingles.append(article_shingles)
        seen_exact[words_key] = article
        if article["url"]:
            seen_exact["url:" + article["url"]] = article
    return kept, dropped
