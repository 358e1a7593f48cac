"""`prunetune qa-build`: open-book multiple-choice questions built from the held-out articles themselves.

Hand-written closed-book questions about articles no model saw measure guessing. Here every question shows the
model the passage its prompts show (the article cut to data.max_content_words, under its publication date) and asks
something that passage answers: the dateline city, the date, the headline, a model name, a figure.
The right option is taken from the passage, the distractors from other held-out articles, and a question is kept
only when exactly one option is right (the others absent from the passage, all four distinct), so chance is 1/4.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prunetune.config import PrunetuneError
from prunetune.corpus import load_corpus
from prunetune.data import article_content, article_id, prepare_corpus
from prunetune.jsonio import write_json
from prunetune.params import DataParams, as_section

N_OPTIONS = 4
SPLITS = ("val", "test")
DATELINE = re.compile(r"^\s*([A-Z][\w.'’ -]*?(?:/[A-Z][\w.'’ -]*?)?)\.\s")
MODEL = re.compile(
    r"\b(?:BMW (?:i?X[1-7M]|i[3-7]|iX|M[1-8]|Z4|[1-8] Series|CE \d+|[RSFGKC] \d+ ?[A-Z]{0,2})"
    r"|MINI (?:Cooper(?: [SE])?|Countryman|Aceman|Electric)|Rolls-Royce (?:Spectre|Cullinan|Ghost|Phantom))\b"
)
FIGURE = re.compile(
    r"\b\d[\d,.]*\s?(?:per cent|percent|%|million|billion|kilometres|km|kW|hp|vehicles|units|employees|hectares|"
    r"euros|kilowatt hours|kWh|tonnes|metres|years)\b"
)
NOT_PLACES = {"Concept"}  # openers of the dateline's shape that name no place
QUESTIONS = {
    "dateline": "In which place is this article datelined (the place named at its start)?",
    "date": "On which date was this article published?",
    "title": "Which headline belongs to this article?",
    "model": "Which model does this article mention?",
    "figure": "Which figure appears in this article?",
}


def passage(article: dict[str, Any], content: str) -> str:
    """What the model reads: the publication date, then the article as the task prompts show it."""
    return f"Published {article['date']}.\n\n{content}"


def _dateline(article: dict[str, Any], content: str) -> list[str]:
    """The place an article opens with ("Munich. The BMW Group ..."): every word capitalised, not a sentence."""
    match = DATELINE.match(content)
    if not match:
        return []
    place = match.group(1).strip()
    words = re.split(r"[ /-]", place)
    if len(place) > 40 or place in NOT_PLACES or words[0] == "The" or not all(w[:1].isupper() for w in words):
        return []
    return [place]


# kind -> the answers a passage gives (its own facts; the first is asked), and whether the answer must be absent
# from the other options' passages' text (extracted facts) or only distinct (headline, date: not in the text)
EXTRACTORS: dict[str, Callable[[dict[str, Any], str], list[str]]] = {
    "dateline": _dateline,
    "date": lambda article, content: [article["date"]],
    "title": lambda article, content: [article["title"].strip()],
    "model": lambda article, content: MODEL.findall(content),
    "figure": lambda article, content: FIGURE.findall(content),
}
IN_TEXT = {"dateline", "model", "figure"}


def _present(option: str, text: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(option.casefold())}(?!\w)", text.casefold()) is not None


def one_right_answer(kind: str, options: list[str], answer: int, text: str) -> bool:
    """The check every question passes: distinct options, and for a fact read from the passage, the right one in
    the passage and no other; for the date and headline (not in the passage's body) only the right one is theirs."""
    if len({o.casefold() for o in options}) != len(options):
        return False
    if kind in IN_TEXT:
        return [_present(o, text) for o in options] == [i == answer for i in range(len(options))]
    return all(not _present(o, text) for i, o in enumerate(options) if i != answer)


def build_questions(
    articles: list[tuple[str, str, dict[str, Any], str]], seed: int = 0, n_options: int = N_OPTIONS
) -> list[dict[str, Any]]:
    """Questions from (split, article_id, raw article, prompt content) tuples: per article and kind, the first fact
    its passage gives, n_options - 1 distractors drawn from the same kind's facts of the other articles, the right
    option's position balanced over the letters. A question without enough valid distractors is skipped."""
    rng = random.Random(seed)
    facts = {
        kind: {aid: extract(article, content) for _, aid, article, content in articles}
        for kind, extract in EXTRACTORS.items()
    }
    questions: list[dict[str, Any]] = []
    for split, aid, article, content in articles:
        text = passage(article, content)
        for kind in EXTRACTORS:
            if not facts[kind][aid]:
                continue
            answer = facts[kind][aid][0]
            pool = sorted({f for other, fs in facts[kind].items() if other != aid for f in fs})
            pool = [f for f in pool if f.casefold() != answer.casefold() and not _present(f, text)]
            if len(pool) < n_options - 1:
                continue
            position = len(questions) % n_options  # balanced letters: no position bias to exploit
            options = rng.sample(pool, n_options - 1)
            options.insert(position, answer)
            if not one_right_answer(kind, options, position, text):
                continue
            questions.append(
                {
                    "id": f"{aid}-{kind}",
                    "article_id": aid,
                    "split": split,
                    "category": "multiple_choice",
                    "difficulty": kind,
                    "context": text,
                    "question": QUESTIONS[kind],
                    "options": options,
                    "answer_index": position,
                    "answer": answer,
                }
            )
    return questions


def held_out_articles(cfg: DataParams | dict[str, Any], splits: tuple[str, ...] = SPLITS) -> list[tuple]:
    """(split, article_id, raw article, prompt content) of every article in the given splits, as the split stage
    makes them (same cleaning, de-duplication, split and word cut)."""
    cfg = as_section(DataParams, cfg)
    examples, _ = prepare_corpus(cfg)
    raw = {article_id(a): a for a in load_corpus(cfg)[0].articles}
    seen: dict[str, tuple] = {}
    for split in splits:
        for example in examples[split]:
            aid = example["article_id"]
            if aid not in seen:
                seen[aid] = (split, aid, raw[aid], article_content(example))
    return list(seen.values())


def build_qa_file(cfg: DataParams | dict[str, Any], out: Path, seed: int = 0, minimum: int = 150) -> dict[str, Any]:
    """Write the QA file (qa.path's format) for the held-out articles of cfg's split; a summary of what was made."""
    cfg = as_section(DataParams, cfg)
    articles = held_out_articles(cfg)
    questions = build_questions(articles, seed)
    if len(questions) < minimum:
        raise PrunetuneError(
            f"qa-build: only {len(questions)} questions from {len(articles)} held-out articles; a ±0.06 interval "
            f"needs about 200 (at least {minimum}): add articles or raise data.val_fraction/test_fraction"
        )
    kinds: dict[str, int] = {}
    for q in questions:
        kinds[q["difficulty"]] = kinds.get(q["difficulty"], 0) + 1
    about = {
        "built_by": "prunetune qa-build (prunetune/qabuild.py)",
        "source": str(cfg.source),
        "data_seed": cfg.seed,
        "splits": list(SPLITS),
        "max_content_words": cfg.max_content_words,
        "options": N_OPTIONS,
        "chance": 1 / N_OPTIONS,
        "kinds": kinds,
        "note": "open book: each question's context is the article as the prompts show it; 'difficulty' holds the kind",
    }
    write_json(out, {"about": about, "questions": questions})
    return {"questions": len(questions), "articles": len(articles), "kinds": kinds}
