"""Articles in, task examples out: validation, cleaning, de-duplication, the stratified split and the chats."""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import socket
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from prunetune.config import PrunetuneError
from prunetune.dedup import deduplicate
from prunetune.params import DataParams, as_section

TASKS = ("summarization", "title_generation", "tag_extraction", "type_classification")
ARTICLE_FIELDS: dict[str, type] = {
    "title": str,
    "date": str,
    "type": str,
    "summary": str,
    "tags": list,
    "url": str,
    "content": str,
}
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


# ---------------------------------------------------------------- loading and validation


@dataclass
class LoadResult:
    articles: list[dict[str, Any]]
    lines: int = 0
    blank_lines: int = 0
    invalid: list[dict[str, Any]] = field(default_factory=list)  # {"line", "problem"}, on_error=skip


def validate_article(record: Any, known_types: list[str]) -> str | None:
    """The first problem with one parsed line, or None when it satisfies the data contract."""
    if not isinstance(record, dict):
        return f"expected a JSON object, got {type(record).__name__}"
    for name, kind in ARTICLE_FIELDS.items():
        if name not in record:
            return f"missing field '{name}'"
        if not isinstance(record[name], kind):
            return f"field '{name}' must be a {kind.__name__}, got {type(record[name]).__name__}"
    for name in ("title", "content", "type"):
        if not record[name].strip():
            return f"field '{name}' is empty"
    try:
        datetime.strptime(record["date"], "%d.%m.%Y")
    except ValueError:
        return f"field 'date' must be DD.MM.YYYY, got {record['date']!r}"
    if record["type"] not in known_types:
        return f"unknown type {record['type']!r} (known: {', '.join(known_types)}; add it to data.types)"
    for tag in record["tags"]:
        if not isinstance(tag, str) or not tag.strip():
            return f"field 'tags' must hold non-empty strings, got {tag!r}"
        if "|" in tag:
            return f"tag {tag!r} contains '|', the tag separator"
    return None


def read_articles(path: str | Path, known_types: list[str], on_error: str = "fail") -> LoadResult:
    """Read a JSONL corpus; on_error='fail' stops at the first bad line, 'skip' drops and records it."""
    if on_error not in ("fail", "skip"):
        raise PrunetuneError(f"params.yaml: data.on_error must be 'fail' or 'skip', got {on_error!r}")
    path = Path(path)
    if path.is_dir():
        raise PrunetuneError(f"{path}: is a directory; data.source must name a JSONL file")
    if not path.is_file():
        raise PrunetuneError(f"{path}: corpus file not found (data.source)")
    raw_lines = path.read_bytes().split(b"\n")
    if raw_lines and not raw_lines[-1]:
        raw_lines.pop()  # the newline that ends the file
    result = LoadResult(articles=[], lines=len(raw_lines))
    for number, raw in enumerate(raw_lines, start=1):
        if not raw.strip():
            result.blank_lines += 1
            continue
        problem = None
        try:
            record = json.loads(raw.decode("utf-8"))
            problem = validate_article(record, known_types)
        except UnicodeDecodeError as err:
            problem = f"not valid UTF-8 (byte 0x{raw[err.start]:02x} at position {err.start})"
        except json.JSONDecodeError as err:
            problem = f"malformed JSON ({err.msg} at column {err.colno})"
        if problem is None:
            result.articles.append({**record, "line": number})
        elif on_error == "fail":
            raise PrunetuneError(f"{path}:{number}: {problem} (fix the line, or set data.on_error: skip)")
        else:
            result.invalid.append({"line": number, "problem": problem})
    return result


def _hub_offline_mode() -> bool:
    flags = (os.environ.get(name, "").strip().lower() for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))
    return any(flag in ("1", "true", "yes", "on") for flag in flags)


def _hub_unreachable(timeout: float = 5.0) -> str | None:
    """Why the hub cannot be reached, or None: `datasets` itself retries for half a minute before saying so."""
    endpoint = urlsplit(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host, port = endpoint.hostname or "", endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as err:
        return f"{host}:{port} unreachable ({err.strerror or err})"
    return None


def read_hub_articles(spec: str, known_types: list[str], on_error: str = "fail") -> tuple[LoadResult, str]:
    """Load data.hub_dataset ('owner/name' or 'owner/name@revision', all splits) and validate it like a JSONL file.

    Returns the articles and the source as recorded in the report, pinned to the commit the hub resolved.
    """
    if on_error not in ("fail", "skip"):
        raise PrunetuneError(f"params.yaml: data.on_error must be 'fail' or 'skip', got {on_error!r}")
    name, _, revision = spec.partition("@")
    what = f"params.yaml: data.hub_dataset {spec!r}"
    offline = _hub_offline_mode()
    if not offline and (reason := _hub_unreachable()):
        raise PrunetuneError(
            f"{what}: the Hugging Face hub is not reachable ({reason}); go online, set HF_HUB_OFFLINE=1 to use "
            "a cached copy, or collect a local JSONL (prunetune collect) and set data.source to it"
        )
    try:
        if not offline:
            from huggingface_hub import HfApi

            revision = HfApi().dataset_info(name, revision=revision or None).sha or revision
        from datasets import load_dataset

        loaded = load_dataset(name, revision=revision or None)
    except Exception as err:  # whatever went wrong (network, id, revision, format): one line naming the param
        first_line = (str(err).strip().splitlines() or [""])[0][:300]
        raise PrunetuneError(f"{what}: could not load it ({type(err).__name__}: {first_line})") from None
    source = f"hf:{name}" + (f"@{revision}" if revision else "")
    splits = [loaded[split] for split in sorted(loaded)] if hasattr(loaded, "keys") else [loaded]
    result = LoadResult(articles=[])
    for split in splits:
        for row in split:
            result.lines += 1
            problem = validate_article(dict(row), known_types)
            if problem is None:
                result.articles.append({**row, "line": result.lines})
            elif on_error == "fail":
                raise PrunetuneError(
                    f"{source} row {result.lines}: {problem} (fix the dataset, or set data.on_error: skip)"
                )
            else:
                result.invalid.append({"line": result.lines, "problem": problem})
    return result, source


def load_corpus(cfg: DataParams) -> tuple[LoadResult, str]:
    """The articles of data.hub_dataset when set, else of the JSONL file data.source, and where they came from."""
    on_error = cfg.on_error
    if cfg.hub_dataset:
        return read_hub_articles(cfg.hub_dataset, cfg.types, on_error)
    return read_articles(cfg.source, cfg.types, on_error), str(cfg.source)


# ---------------------------------------------------------------- cleaning

CONTACT_HEADER = re.compile(
    r"^\s*(for further (questions|information),? please contact|please contact|press contacts?|media contacts?|"
    r"contacts?)\s*:?\s*$",
    re.IGNORECASE | re.MULTILINE,
)
BOILERPLATE = re.compile(r"(^|\n\n)The BMW Group\s*\nWith its four brands[^\n]*(\n[^\n]+)*", re.IGNORECASE)
MEDIA_WEBSITE = re.compile(r"^\s*media website:.*$", re.IGNORECASE | re.MULTILINE)
EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")
URL = re.compile(r"(https?://|www\.)[^\s<>\"]+?(?=[.,;:!?)\]]*(\s|$))", re.IGNORECASE)
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


# ---------------------------------------------------------------- task examples


def truncate_words(text: str, max_words: int | None) -> str:
    """The text up to its max_words-th word (layout kept); None keeps it whole."""
    if max_words is None:
        return text
    words = list(re.finditer(r"\S+", text))
    return text if len(words) <= max_words else text[: words[max_words - 1].end()]


def build_examples(
    article: dict[str, Any], types: list[str], max_content_words: int | None = None
) -> tuple[list[dict[str, Any]], list[str]]:
    """The article's task chats (with the stored task and article id) and the tasks it could not yield."""
    content = truncate_words(article["content"], max_content_words)
    answers = {
        "summarization": article["summary"].strip(),
        "title_generation": article["title"].strip(),
        "tag_extraction": render_tags([tag.strip() for tag in article["tags"]]),
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


def write_jsonl(path: str | Path, records: list[dict[str, Any]]) -> None:
    """Byte-stable JSONL: the same records always give the same file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="\n") as out:
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n")


def write_json(path: str | Path, payload: dict[str, Any]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


MISSING_OUTPUT = "run the stage that writes it first (dvc repro)"
DAMAGED_OUTPUT = "rerun the stage that writes it (dvc repro, or dvc checkout to restore it)"


def _text(path: Path, missing: str) -> str:
    if path.is_dir():
        raise PrunetuneError(f"{path}: is a directory, not a file")
    if not path.is_file():
        raise PrunetuneError(f"{path}: not found; {missing}")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise PrunetuneError(f"{path}: not valid UTF-8 (byte {err.start})") from None


def read_jsonl(path: str | Path, missing: str = MISSING_OUTPUT, damaged: str = DAMAGED_OUTPUT) -> list[dict[str, Any]]:
    """Every JSON line of a file; a missing file or a bad line is one error naming the file (and line)."""
    path = Path(path)
    records = []
    for number, line in enumerate(_text(path, missing).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise PrunetuneError(
                f"{path}:{number}: malformed JSON ({err.msg} at column {err.colno}), a truncated or edited line; "
                f"{damaged}"
            ) from None
    return records


def read_json(path: str | Path, missing: str = MISSING_OUTPUT, damaged: str = DAMAGED_OUTPUT) -> Any:
    path = Path(path)
    try:
        return json.loads(_text(path, missing))
    except json.JSONDecodeError as err:
        raise PrunetuneError(
            f"{path}:{err.lineno}: malformed JSON ({err.msg} at column {err.colno}); {damaged}"
        ) from None


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
    types = [t for t in cfg.types if t not in excluded_types]
    examples: dict[str, list[dict]] = {}
    skipped: dict[str, Counter] = {}
    for name, members in splits.items():
        examples[name], skipped[name] = [], Counter()
        for article in members:
            built, missing = build_examples(article, types, cfg.max_content_words)
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
    }
    return examples, report
