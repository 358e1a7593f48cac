"""Articles in, task examples out: validation, cleaning, de-duplication, the stratified split and the chats."""

from __future__ import annotations

import hashlib
import random
import re
from collections import Counter
from typing import Any

from prunetune.config import PrunetuneError
from prunetune.corpus import load_corpus
from prunetune.dedup import deduplicate
from prunetune.params import DataParams, as_section

TASKS = ("summarization", "title_generation", "tag_extraction", "type_classification")
TAG_SEPARATOR = " | "  # "|" may not occur inside a tag (checked on load), so tags parse back whole
SYSTEM_PROMPT = "You are an assistant for BMW Group press articles. Answer with the requested text only."
TASK_INSTRUCTIONS = {
    "summarization": "Summarize the press article above in one to three sentences.",
    "title_generation": "Write a headline for the press article above.",
    "tag_extraction": "List the topic tags of the press article above, separated by ' | '.",
    "type_classification": "Classify the type of the press article above. Answer with one of: {types}.",
}


# ---------------------------------------------------------------- tags


def render_tags(tags: list[str]) -> str:
    return TAG_SEPARATOR.join(tags)


def parse_tags(text: str) -> list[str]:
    """Inverse of render_tags; tolerant of spacing around the separator, drops empty pieces."""
    return [tag.strip() for tag in text.split("|") if tag.strip()]


def tag_ranks(articles: list[dict[str, Any]]) -> dict[str, int]:
    """Each tag's rank by how many of the articles carry it: 0 the most frequent, ties in alphabetical order."""
    counts = Counter(tag.strip() for article in articles for tag in article["tags"])
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return {tag: rank for rank, (tag, _) in enumerate(ranked)}


def order_tags(tags: list[str], ranks: dict[str, int]) -> list[str]:
    """The tags by rank (tag_ranks); tags the ranking does not know come last, alphabetically.

    Tags are a set, but a model writes them one after another: in one fixed order (most frequent first) the target
    is a function of the set, not of how an editor happened to list it, and greedy decoding starts with the likeliest
    tag (data.tag_order)."""
    return sorted(tags, key=lambda tag: (ranks.get(tag, len(ranks)), tag))


# ---------------------------------------------------------------- cleaning

CONTACT_HEADER = re.compile(
    r"^[ \t]*(for further (questions|information),? please contact|please contact|press contacts?|media contacts?|"
    r"contacts?)\s*:?\s*$",
    re.IGNORECASE | re.MULTILINE,
)
BOILERPLATE = re.compile(r"(^|\n\n)The BMW Group\s*\nWith its four brands[^\n]*(\n[^\n]+)*", re.IGNORECASE)
MEDIA_WEBSITE = re.compile(r"^[ \t]*media website:.*$", re.IGNORECASE | re.MULTILINE)
EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(\.[\w-]+)+")
URL = re.compile(r"(https?://|www\.)[^\s<>\"]*[^\s<>\".,;:!?)\]](?=[.,;:!?)\]]*(\s|$))", re.IGNORECASE)
PHONE = re.compile(
    r"(\b(tel(ephone)?|phone|fax|mobile)\b\.?:?\s*)?\+\d{1,3}[\s\-/]?(\(0\)\s?)?\d[\d\s\-/]{5,}\d"
    r"|\b(tel(ephone)?|phone|fax|mobile)\b\.?:?\s*\(?0\d[\d\s\-/()]{5,}\d",
    re.IGNORECASE,
)


def clean_content(text: str) -> tuple[str, Counter]:
    """Strip contact blocks, boilerplate, e-mail addresses, URLs and phone numbers; count each removal."""
    removed: Counter = Counter()
    header = CONTACT_HEADER.search(text)
    if header:  # a PressClub contact block runs to the end of the article
        text = text[: header.start()]
        removed["contact_blocks"] += 1
    text, n = BOILERPLATE.subn("", text)
    removed["boilerplate"] += n
    text, n = MEDIA_WEBSITE.subn("", text)
    removed["boilerplate"] += n
    for name, pattern in (("emails", EMAIL), ("urls", URL), ("phones", PHONE)):
        text, n = pattern.subn("", text)
        removed[name] += n
    text = re.sub(r"[ \t]+", " ", text)
    text = re.sub(r" +([.,;:!?])", r"\1", text)
    text = "\n".join(line.strip() for line in text.split("\n"))
    text = re.sub(r"\n{3,}", "\n\n", text).strip()
    return text, removed


# ---------------------------------------------------------------- split


def article_id(article: dict[str, Any]) -> str:
    """Stable id from the URL (or title and date when there is none), so reruns and re-scrapes agree."""
    key = article["url"] or f"{article['title']}|{article['date']}"
    return hashlib.sha1(key.encode("utf-8")).hexdigest()[:12]


def _allocate(group_sizes: dict[str, int], target: int) -> dict[str, int]:
    """Split `target` over groups in proportion to their sizes (largest remainder, ties by name)."""
    total = sum(group_sizes.values())
    if total == 0:
        return {group: 0 for group in group_sizes}
    exact = {group: size * target / total for group, size in group_sizes.items()}
    quota = {group: int(value) for group, value in exact.items()}
    by_remainder = sorted(group_sizes, key=lambda group: (-(exact[group] - quota[group]), group))
    for group in by_remainder[: target - sum(quota.values())]:
        quota[group] += 1
    return quota


def split_articles(
    articles: list[dict[str, Any]], val_fraction: float, test_fraction: float, seed: int
) -> dict[str, list[dict[str, Any]]]:
    """Split by article, stratified by type: each split holds the types in the corpus's proportions."""
    groups: dict[str, list[dict]] = {}
    for article in sorted(articles, key=article_id):
        groups.setdefault(article["type"], []).append(article)
    rng = random.Random(seed)
    for group in sorted(groups):
        rng.shuffle(groups[group])
    sizes = {group: len(members) for group, members in groups.items()}
    n_test = round(len(articles) * test_fraction)
    n_val = round(len(articles) * val_fraction)
    test_quota = _allocate(sizes, n_test)
    val_quota = _allocate({g: sizes[g] - test_quota[g] for g in sizes}, n_val)
    splits: dict[str, list[dict]] = {"train": [], "val": [], "test": []}
    for group in sorted(groups):
        members = groups[group]
        n_t, n_v = test_quota[group], val_quota[group]
        splits["test"] += members[:n_t]
        splits["val"] += members[n_t : n_t + n_v]
        splits["train"] += members[n_t + n_v :]
    order = {id(article): index for index, article in enumerate(articles)}
    return {name: sorted(members, key=lambda a: order[id(a)]) for name, members in splits.items()}


def min_articles(val_fraction: float, test_fraction: float, limit: int = 100_000) -> int | None:
    """The fewest articles that give train, val and test at least one article each (None: a fraction is 0)."""
    for n in range(3, limit):
        n_test, n_val = round(n * test_fraction), round(n * val_fraction)
        if n_test >= 1 and n_val >= 1 and n - n_test - n_val >= 1:
            return n
    return None


def _require_every_split(splits: dict[str, list], source: str, val_fraction: float, test_fraction: float) -> None:
    """Fine-tuning needs train and val, eval needs test: an empty split is refused here, not blamed on later."""
    if all(splits.values()):
        return
    counts = ", ".join(f"{name} {len(members)}" for name, members in splits.items())
    total = sum(len(members) for members in splits.values())
    needed = min_articles(val_fraction, test_fraction)
    if needed is None:
        what = "set data.val_fraction and data.test_fraction above 0"
    else:
        what = f"at data.val_fraction {val_fraction} and data.test_fraction {test_fraction} that takes at least "
        what += f"{needed} articles: add articles or raise the fractions"
    raise PrunetuneError(
        f"{source}: {total} articles kept split into {counts}; every split needs at least one article: {what}"
    )


# ---------------------------------------------------------------- task examples


def truncate_words(text: str, max_words: int | None) -> str:
    """The text up to its max_words-th word (layout kept); None keeps it whole."""
    if max_words is None:
        return text
    words = list(re.finditer(r"\S+", text))
    return text if len(words) <= max_words else text[: words[max_words - 1].end()]


def build_examples(
    article: dict[str, Any],
    types: list[str],
    max_content_words: int | None = None,
    tag_ranks: dict[str, int] | None = None,
) -> tuple[list[dict[str, Any]], list[str]]:
    """The article's task chats (with the stored task and article id) and the tasks it could not yield. With
    tag_ranks the tag answer lists the tags in that order (order_tags), else as the article does."""
    content = truncate_words(article["content"], max_content_words)
    tags = [tag.strip() for tag in article["tags"]]
    answers = {
        "summarization": article["summary"].strip(),
        "title_generation": article["title"].strip(),
        "tag_extraction": render_tags(tags if tag_ranks is None else order_tags(tags, tag_ranks)),
        "type_classification": article["type"],
    }
    examples, skipped = [], []
    for task in TASKS:
        if not answers[task]:
            skipped.append(task)
            continue
        instruction = TASK_INSTRUCTIONS[task].format(types=", ".join(types))
        examples.append(
            {
                "article_id": article_id(article),
                "task": task,
                "messages": [
                    {"role": "system", "content": SYSTEM_PROMPT},
                    {"role": "user", "content": f"{content}\n\n{instruction}"},
                    {"role": "assistant", "content": answers[task]},
                ],
            }
        )
    return examples, skipped


def article_content(example: dict[str, Any]) -> str:
    """The article text of a task example (the user message before its one-paragraph instruction)."""
    return example["messages"][1]["content"].rsplit("\n\n", 1)[0]


def article_texts(examples: list[dict[str, Any]]) -> list[str]:
    """One plain document per article (title, summary, content), in order of first appearance."""
    parts: dict[str, dict[str, str]] = {}
    for example in examples:
        article = parts.setdefault(example["article_id"], {"content": article_content(example)})
        article[example["task"]] = example["messages"][2]["content"]
    return [
        "\n\n".join(p for p in (a.get("title_generation"), a.get("summarization"), a["content"]) if p)
        for a in parts.values()
    ]


# ---------------------------------------------------------------- the whole split stage


def prepare_corpus(cfg: DataParams | dict[str, Any]) -> tuple[dict[str, list[dict]], dict[str, Any]]:
    """Run the split stage's logic: the examples of each split and a report that counts every drop."""
    cfg = as_section(DataParams, cfg)
    loaded, source = load_corpus(cfg)
    excluded_types = set(cfg.exclude_types or [])
    dropped: Counter = Counter({"invalid": len(loaded.invalid)})
    cleaning: Counter = Counter()
    candidates = []
    for article in loaded.articles:
        if article["type"] in excluded_types:
            dropped["excluded_type"] += 1
            continue
        content, removed = clean_content(article["content"])
        cleaning.update(removed)
        if not content:
            dropped["empty_after_cleaning"] += 1
            continue
        candidates.append({**article, "content": content})
    kept, duplicates = deduplicate(candidates, cfg.near_duplicate_jaccard)
    dropped.update(d["reason"] for d in duplicates)
    if not kept:
        raise PrunetuneError(f"{source}: no article left after validation, cleaning and de-duplication")

    splits = split_articles(kept, cfg.val_fraction, cfg.test_fraction, cfg.seed)
    _require_every_split(splits, source, cfg.val_fraction, cfg.test_fraction)
    types = [t for t in cfg.types if t not in excluded_types]
    ranks = tag_ranks(splits["train"]) if cfg.tag_order == "frequency" else None  # train only: no test labels
    examples: dict[str, list[dict]] = {}
    skipped: dict[str, Counter] = {}
    for name, members in splits.items():
        examples[name], skipped[name] = [], Counter()
        for article in members:
            built, missing = build_examples(article, types, cfg.max_content_words, ranks)
            examples[name] += built
            skipped[name].update(missing)

    report = {
        "source": source,
        "lines": loaded.lines,
        "blank_lines": loaded.blank_lines,
        "articles_valid": len(loaded.articles),
        "articles_kept": len(kept),
        "dropped": {reason: dropped[reason] for reason in sorted(dropped)},
        "invalid": loaded.invalid,
        "duplicates": duplicates,
        "cleaning_removed": {name: cleaning[name] for name in sorted(cleaning)},
        "articles_truncated_in_prompts": sum(
            truncate_words(a["content"], cfg.max_content_words) != a["content"] for a in kept
        ),
        "articles_per_split": {
            name: {"total": len(members), **dict(sorted(Counter(a["type"] for a in members).items()))}
            for name, members in splits.items()
        },
        "examples_per_split": {
            name: {"total": len(rows), **{task: sum(r["task"] == task for r in rows) for task in TASKS}}
            for name, rows in examples.items()
        },
        "examples_skipped_empty_answer": {name: dict(sorted(c.items())) for name, c in skipped.items()},
        "tag_order": list(ranks) if ranks is not None else "source",  # the order tag answers list tags in
    }
    return examples, report
