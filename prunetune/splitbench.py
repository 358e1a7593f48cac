"""`prunetune bench-split`: the split stage's time on large synthetic corpora, and whether de-duplication finds
exactly the duplicates planted in them (exact copies, near copies, and near misses just below the threshold)."""

from __future__ import annotations

import random
import string
import tempfile
import time
from pathlib import Path
from typing import Any

from prunetune.data import prepare_corpus
from prunetune.dedup import deduplicate, jaccard, shingles
from prunetune.jsonio import write_jsonl

TYPES = ["Press Release", "Press Kit", "Speech"]
VOCABULARY_SIZE = 5000
PLANTED_SHARE = 0.05  # of the distinct articles: this many exact, near and near-miss copies each


def vocabulary(seed: int, size: int = VOCABULARY_SIZE) -> list[str]:
    rng = random.Random(seed)
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choices(string.ascii_lowercase, k=rng.randint(3, 10))))
    return sorted(words)


def _text(words: list[str]) -> str:
    """Words as sentences of 8 to 16 words, so the cleaning regexes see ordinary prose."""
    sentences, start, rng = [], 0, random.Random(len(words))
    while start < len(words):
        end = start + rng.randint(8, 16)
        sentences.append(" ".join(words[start:end]).capitalize() + ".")
        start = end
    return " ".join(sentences)


def _article(index: int, words: list[str], rng: random.Random) -> dict[str, Any]:
    return {
        "title": f"Synthetic article {index}",
        "date": f"{rng.randint(1, 28):02d}.{rng.randint(1, 12):02d}.{rng.randint(2015, 2025)}",
        "type": rng.choice(TYPES),
        "summary": " ".join(words[:20]).capitalize() + ".",
        "tags": sorted(rng.sample(["Design", "Production", "Electromobility", "Motorsport", "Finance"], 2)),
        "url": f"https://example.org/article/{index}",
        "content": _text(words),
    }


def _edited(words: list[str], edits: int, vocab: list[str], rng: random.Random) -> list[str]:
    """The words with `edits` of them replaced, at positions at least 5 apart (each edit breaks 5 shingles)."""
    positions = rng.sample(range(0, len(words) // 5), edits)
    copy = list(words)
    for slot in positions:
        copy[slot * 5 + 2] = rng.choice(vocab)
    return copy


def _copy_near(words: list[str], threshold: float, below: bool, vocab: list[str], rng: random.Random) -> list[str]:
    """A copy at Jaccard >= threshold (below=False: the most edits that stay above) or just under it (below=True)."""
    original = shingles(" ".join(words))
    previous = words
    for edits in range(1, len(words) // 5):
        copy = _edited(words, edits, vocab, rng)
        if jaccard(original, shingles(" ".join(copy))) < threshold:
            return copy if below else previous
        previous = copy
    raise ValueError("article too short to plant a copy")


def planted_corpus(
    n_distinct: int, threshold: float, seed: int = 0
) -> tuple[list[dict[str, Any]], set[tuple[int, str, int]], int]:
    """n_distinct articles of 150-300 random words, then exact, near and near-miss copies of distinct originals,
    shuffled in after them. Returns the articles, the planted (line, reason, of_line) duplicates and the number
    of near misses (they must be kept)."""
    rng = random.Random(seed)
    vocab = vocabulary(seed)
    bodies = [rng.choices(vocab, k=rng.randint(150, 300)) for _ in range(n_distinct)]
    articles = [_article(i, words, rng) for i, words in enumerate(bodies)]
    n_planted = max(1, round(n_distinct * PLANTED_SHARE))
    originals = rng.sample(range(n_distinct), 4 * n_planted)
    copies: list[tuple[int, str, dict]] = []
    for k, original in enumerate(originals):
        kind = ("exact_text", "exact_url", "near", "near_miss")[k % 4]
        source, words = articles[original], bodies[original]
        copy = _article(n_distinct + k, words, rng)
        if kind == "exact_text":  # the same words, another case and spacing
            copy["content"] = source["content"].upper().replace(" ", "  ")
        elif kind == "exact_url":  # another text under the same URL (a re-scrape)
            copy["url"] = source["url"]
            copy["content"] = _text(rng.choices(vocab, k=200))
        else:
            copy["content"] = _text(_copy_near(words, threshold, kind == "near_miss", vocab, rng))
        copies.append((original, kind, copy))
    # each copy lands at a random place after its original
    lines: list[dict] = list(articles)
    for original, kind, copy in sorted(copies, key=lambda c: -c[0]):
        position = rng.randint(original + 1, original + 1 + (len(lines) - original - 1) // 2)
        lines.insert(position, {**copy, "_planted": (kind, id(articles[original]))})
    line_of = {id(article): number for number, article in enumerate(lines, start=1)}
    planted = set()
    for number, article in enumerate(lines, start=1):
        kind, of = article.pop("_planted", (None, None))
        if kind in ("exact_text", "exact_url", "near"):
            planted.add((number, "near_duplicate" if kind == "near" else "exact_duplicate", line_of[of]))
    return lines, planted, n_planted


def data_config(source: Path, threshold: float) -> dict[str, Any]:
    return {
        "source": str(source),
        "types": TYPES,
        "exclude_types": [],
        "val_fraction": 0.15,
        "test_fraction": 0.2,
        "max_content_words": 120,
        "near_duplicate_jaccard": threshold,
        "seed": 42,
    }


def bench_size(n_distinct: int, threshold: float = 0.8, seed: int = 0) -> dict[str, Any]:
    """One corpus: the whole split logic timed (read, clean, de-duplicate, split, chats), de-duplication timed on
    its own, and the duplicates found scored against those planted."""
    articles, planted, n_near_miss = planted_corpus(n_distinct, threshold, seed)
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "articles.jsonl"
        write_jsonl(source, articles)
        start = time.perf_counter()
        _, report = prepare_corpus(data_config(source, threshold))
        split_s = time.perf_counter() - start
    start = time.perf_counter()
    deduplicate([{**a, "line": n} for n, a in enumerate(articles, start=1)], threshold)
    dedup_s = time.perf_counter() - start
    found = {(d["line"], d["reason"], d["of_line"]) for d in report["duplicates"]}
    hits = len(found & planted)
    return {
        "distinct_articles": n_distinct,
        "lines": len(articles),
        "planted_duplicates": len(planted),
        "planted_near_misses": n_near_miss,
        "found_duplicates": len(found),
        "precision": hits / len(found) if found else 1.0,
        "recall": hits / len(planted) if planted else 1.0,
        "split_s": split_s,
        "dedup_s": dedup_s,
    }


def table(results: list[dict[str, Any]]) -> str:
    """The results as the markdown table in BENCHMARKS.md."""
    rows = [
        "| distinct articles | lines | planted duplicates | near misses | found | precision | recall | split (s) "
        "| of which de-duplication (s) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        rows.append(
            f"| {r['distinct_articles']:,} | {r['lines']:,} | {r['planted_duplicates']} | {r['planted_near_misses']} "
            f"| {r['found_duplicates']} | {r['precision']:.3f} | {r['recall']:.3f} | {r['split_s']:.1f} "
            f"| {r['dedup_s']:.1f} |"
        )
    return "\n".join(rows)
