"""The Q&A set: loading with clear errors, split membership, and scoring by the likelihood of the answer letter
(the headline for multiple choice), of the option text, and by greedy generation."""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any

from prunetune.chat import DEFAULT_CHAT_DATE, IGNORE_INDEX, prompt_ids, tokenize_chat
from prunetune.config import PrunetuneError
from prunetune.generation import completion_nll, generate_greedy
from prunetune.jsonio import read_jsonl
from prunetune.metrics import answer_matches, mc_letter_match
from prunetune.params import QaParams, as_section
from prunetune.stats import mean_with_ci

CATEGORIES = ("multiple_choice", "factual")
SYSTEM_PROMPT = "You answer questions about BMW Group news. Answer briefly."
LETTERS = string.ascii_uppercase
SPLITS = ("train", "val", "test")
HELD_OUT = ("val", "test")
SCORING = {
    "accuracy": "the headline: multiple choice by the log-likelihood of the option LETTER as the assistant's first "
    "tokens after the prompt listing the options (lm-evaluation-harness's MMLU convention), factual by generation; "
    "over the held-out questions (article in val or test) when there are any, else all (see headline_set)",
    "accuracy_all": "the same scoring over every question",
    "mc_letter_accuracy": "multiple choice, all questions: the letter log-likelihood (the headline's scoring)",
    "mc_loglik_accuracy": "multiple choice, all questions: summed log-likelihood of the option TEXT as the answer",
    "mc_loglik_norm_accuracy": "multiple choice, all questions: option-text log-likelihood per token",
    "mc_generation_accuracy": "multiple choice, all questions: the letter (or the one option) the greedy answer names",
    "by_split": "every question by the split of the article it was written from; unknown: no article_id, or an "
    "article in no split (excluded type, duplicate)",
    "intervals": "95% bootstrap resampling articles (questions from one article together; no article_id: alone)",
}


def _question_error(path: Path, item: Any, problem: str) -> PrunetuneError:
    name = f"question {item.get('id')!r}" if isinstance(item, dict) and "id" in item else "a question"
    return PrunetuneError(f"{path}: {name}: {problem} (fix it in qa.path)")


def load_qa(path: str | Path) -> list[dict[str, Any]]:
    """Questions in DESIGN.md's format, checked whole before any model time is spent.

    Options may be a list or a {letter: text} mapping, and a multiple-choice answer may be given as the
    option text, its letter, or answer_index; all are normalized to options (list) and answer_index. The optional
    article_id names the article the question was written from (sha1 of its url, as data.article_id)."""
    path = Path(path)
    if not path.is_file():
        raise PrunetuneError(f"{path}: QA file not found (qa.path)")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise PrunetuneError(f"{path}: not valid JSON ({err})") from None
    items = raw.get("questions") if isinstance(raw, dict) else raw
    if not isinstance(items, list) or not items:
        raise PrunetuneError(f'{path}: expected {{"questions": [...]}} with at least one question')
    questions, seen = [], set()
    for position, item in enumerate(items):
        if not isinstance(item, dict):
            raise PrunetuneError(f"{path}: question #{position + 1} is not a JSON object")
        item = {**item, "id": str(item.get("id", position + 1))}
        if item["id"] in seen:
            raise _question_error(path, item, "duplicate id")
        seen.add(item["id"])
        if not isinstance(item.get("question"), str) or not item["question"].strip():
            raise _question_error(path, item, "missing question text")
        answer = item.get("answer")
        if answer is None or (isinstance(answer, str) and not answer.strip()):
            item.pop("answer", None)  # a multiple-choice question may give answer_index alone (checked below)
        else:
            item["answer"] = str(answer)
        item["difficulty"] = str(item.get("difficulty") or "unspecified")
        source = item.get("article_id")
        if source is not None and (not isinstance(source, str) or not source.strip()):
            raise _question_error(path, item, f"article_id must be the source article's id (a string), got {source!r}")
        item["article_id"] = source
        category = item.get("category") or ("multiple_choice" if item.get("options") is not None else "factual")
        if category not in CATEGORIES:
            raise _question_error(path, item, f"category must be one of {CATEGORIES}, got {category!r}")
        item["category"] = category
        if "answer" not in item and (category != "multiple_choice" or item.get("answer_index") is None):
            raise _question_error(path, item, "missing answer")
        if category == "multiple_choice":
            _normalize_options(path, item)
        questions.append(item)
    return questions


def _normalize_options(path: Path, item: dict[str, Any]) -> None:
    options = item.get("options")
    if isinstance(options, dict):
        options = [options[key] for key in sorted(options)]
    if not isinstance(options, list) or len(options) < 2 or not all(isinstance(o, str) and o for o in options):
        raise _question_error(path, item, "a multiple-choice question needs a list of at least two options")
    item["options"] = options
    seen: dict[str, int] = {}
    for i, option in enumerate(options):
        key = " ".join(option.split()).casefold()
        if key in seen:
            raise _question_error(
                path, item, f"options {LETTERS[seen[key]]} and {LETTERS[i]} are the same ({option!r}); make them differ"
            )
        seen[key] = i
    index = item.get("answer_index")
    if index is not None and (not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(options)):
        raise _question_error(path, item, f"answer_index {index!r} is out of range for {len(options)} options")
    answer = item.get("answer")
    if answer is None:  # answer_index alone: the answer is that option's text
        item["answer"] = options[index]
    elif index is None:
        index = _answer_position(answer, options)
        if index is None:
            raise _question_error(path, item, "the answer is neither an option nor an option letter; add answer_index")
    elif index not in _answer_positions(answer, options):
        raise _question_error(
            path,
            item,
            f"answer {answer!r} and answer_index {index} ({LETTERS[index]}) {options[index]!r} disagree; keep one, "
            "or make them name the same option",
        )
    item["answer_index"] = index


def _answer_positions(answer: str, options: list[str]) -> set[int]:
    """The options an answer names: by its text, or by its letter."""
    answer = answer.strip()
    named = {i for i, option in enumerate(options) if option == answer}
    if len(answer) == 1 and answer.upper() in LETTERS[: len(options)]:
        named.add(LETTERS.index(answer.upper()))
    return named


def _answer_position(answer: str, options: list[str]) -> int | None:
    """The option an answer names: its text first, then its letter (as written in DESIGN.md)."""
    answer = answer.strip()
    if answer in options:
        return options.index(answer)
    named = _answer_positions(answer, options)
    return named.pop() if named else None


def question_messages(item: dict[str, Any]) -> list[dict[str, str]]:
    text = item["question"]
    if item["category"] == "multiple_choice":
        listed = "\n".join(f"{LETTERS[i]}) {option}" for i, option in enumerate(item["options"]))
        text = f"{text}\n{listed}\nAnswer with the letter of the correct option."
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": text}]


def split_membership(paths: dict[str, str | Path]) -> dict[str, str]:
    """article_id -> split, read at run time from the split stage's files (each example row has article_id)."""
    membership: dict[str, str] = {}
    for split, path in paths.items():
        if not Path(path).is_file():
            raise PrunetuneError(f"{path}: not found; run the split stage first (the QA split breakdown needs it)")
        for row in read_jsonl(path):
            membership[row["article_id"]] = split
    return membership


def unknown_articles_note(questions: list[dict[str, Any]], membership: dict[str, str]) -> str | None:
    """One warning line when questions name an article_id that no split holds (a typo, or another corpus)."""
    unknown = sorted({q["article_id"] for q in questions if q["article_id"] and q["article_id"] not in membership})
    if not unknown:
        return None
    n = sum(q["article_id"] in unknown for q in questions)
    return (
        f"warning: {n} question(s) name an article_id that no split holds ({', '.join(map(repr, unknown[:3]))}"
        f"{', ...' if len(unknown) > 3 else ''}): counted under split 'unknown'; check article_id in qa.path"
    )


def letter_rows(
    tokenizer: Any, messages: list[dict[str, str]], n_options: int, date_string: str = DEFAULT_CHAT_DATE
) -> list[dict[str, list[int]]]:
    """One scored row per option letter: the chat with the letter as the assistant's answer, labels on the letter's
    tokens only (the end-of-turn tokens the template appends are common to all letters and stay unscored)."""
    rows = [
        tokenize_chat(tokenizer, [*messages, {"role": "assistant", "content": LETTERS[i]}], date_string)
        for i in range(n_options)
    ]
    answers = [[t for t in row["labels"] if t != IGNORE_INDEX] for row in rows]
    suffix = 0
    while all(len(a) > suffix + 1 for a in answers) and len({tuple(a[len(a) - suffix - 1 :]) for a in answers}) == 1:
        suffix += 1
    for row in rows:
        if suffix:
            row["labels"] = row["labels"][:-suffix] + [IGNORE_INDEX] * suffix
    return rows


def score_multiple_choice(
    letter_logliks: list[float], option_logliks: list[float], option_tokens: list[int], gold: int
) -> dict[str, Any]:
    """The record fields of one multiple-choice question from its three rankings; the headline is the letter's."""
    letter_pick = max(range(len(letter_logliks)), key=lambda i: letter_logliks[i])
    text_pick = max(range(len(option_logliks)), key=lambda i: option_logliks[i])
    norm_pick = max(range(len(option_logliks)), key=lambda i: option_logliks[i] / option_tokens[i])
    return {
        "letter_logliks": letter_logliks,
        "option_logliks": option_logliks,
        "option_tokens": option_tokens,
        "letter_correct": letter_pick == gold,
        "loglik_correct": text_pick == gold,
        "loglik_norm_correct": norm_pick == gold,
        "gold_avg_loglik": option_logliks[gold] / option_tokens[gold],
    }


def evaluate_qa(
    model: Any,
    tokenizer: Any,
    questions: list[dict[str, Any]],
    cfg: QaParams | dict[str, Any],
    membership: dict[str, str] | None = None,
    date_string: str = DEFAULT_CHAT_DATE,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Accuracy (held-out headline), by split, category and difficulty (intervals and counts), one row per question.

    membership maps article_id -> split (split_membership); without it every question's split is unknown.
    date_string: the date chat templates print (params.yaml data.chat_date)."""
    cfg = as_section(QaParams, cfg)
    membership = membership or {}
    prompts = [question_messages(q) for q in questions]
    generated = generate_greedy(
        model,
        tokenizer,
        [prompt_ids(tokenizer, m, date_string) for m in prompts],
        cfg.max_new_tokens,
        cfg.batch_size,
    )
    # scored rows: every option text of an MC question (the gold answer for a factual one), then every MC letter
    candidates = [(qi, text) for qi, q in enumerate(questions) for text in q.get("options") or [q["answer"]]]
    rows = [
        tokenize_chat(tokenizer, [*prompts[qi], {"role": "assistant", "content": text}], date_string)
        for qi, text in candidates
    ]
    letters = [
        (qi, i)
        for qi, q in enumerate(questions)
        if q["category"] == "multiple_choice"
        for i in range(len(q["options"]))
    ]
    for qi, q in enumerate(questions):
        if q["category"] == "multiple_choice":
            rows += letter_rows(tokenizer, prompts[qi], len(q["options"]), date_string)
    scored = completion_nll(model, rows, cfg.batch_size)
    text_scores, letter_scores = scored[: len(candidates)], scored[len(candidates) :]

    records = []
    for qi, question in enumerate(questions):
        options = [(-nll, n) for (qj, _), (nll, n) in zip(candidates, text_scores, strict=True) if qj == qi]
        text = generated[qi]["text"]
        source = question.get("article_id")
        record = {"id": question["id"], "category": question["category"], "difficulty": question["difficulty"]}
        record.update(article_id=source, split=membership.get(source, "unknown") if source else "unknown")
        record.update(question=question["question"], answer=question["answer"], generated=text)
        if question["category"] == "multiple_choice":
            letter_ll = [-nll for (qj, _), (nll, _) in zip(letters, letter_scores, strict=True) if qj == qi]
            record.update(
                score_multiple_choice(
                    letter_ll, [ll for ll, _ in options], [n for _, n in options], question["answer_index"]
                )
            )
            record["generation_correct"] = mc_letter_match(text, question["options"], question["answer_index"])
            record["correct"] = record["letter_correct"]
        else:
            record.update(
                generation_correct=answer_matches(text, question["answer"]),
                gold_avg_loglik=options[0][0] / options[0][1],
            )
            record["correct"] = record["generation_correct"]
        record["hit_max_new_tokens"] = generated[qi]["hit_max_new_tokens"]
        records.append(record)
    return summarize_qa(records, cfg), records


def _accuracy_block(records: list[dict[str, Any]], key: str, cfg: QaParams, name: str = "accuracy") -> dict:
    """Mean of a per-question score with its interval; questions from one article are resampled together."""
    clusters = [r.get("article_id") or f"question:{r['id']}" for r in records]
    values = [float(r[key]) for r in records]
    return mean_with_ci(name, values, cfg.bootstrap_resamples, cfg.seed, cfg.ci_method, clusters=clusters)


def summarize_qa(records: list[dict[str, Any]], cfg: QaParams | dict[str, Any]) -> dict[str, Any]:
    """The metrics file: the headline accuracy over the held-out questions (all when none is held out), the
    same over all, the MC scorings side by side, and breakdowns; "scoring" says which number is which."""
    cfg = as_section(QaParams, cfg)
    held_out = [r for r in records if r.get("split") in HELD_OUT]
    headline = held_out or records
    for record in records:
        record["in_headline"] = record.get("split") in HELD_OUT if held_out else True
    metrics: dict[str, Any] = {
        **_accuracy_block(headline, "correct", cfg),
        "n_headline": len(headline),
        "headline_set": "held_out (val+test)" if held_out else "all (no question's article is in val or test)",
        **_accuracy_block(records, "correct", cfg, "accuracy_all"),
        "n": len(records),
    }
    mc = [r for r in records if r["category"] == "multiple_choice"]
    if mc:
        metrics.update(_accuracy_block(mc, "letter_correct", cfg, "mc_letter_accuracy"))
        metrics.update(_accuracy_block(mc, "loglik_correct", cfg, "mc_loglik_accuracy"))
        metrics.update(_accuracy_block(mc, "loglik_norm_correct", cfg, "mc_loglik_norm_accuracy"))
        metrics.update(_accuracy_block(mc, "generation_correct", cfg, "mc_generation_accuracy"))
    metrics.update(_accuracy_block(records, "gold_avg_loglik", cfg, "gold_avg_loglik"))
    groupings = (
        ("split", (*SPLITS, "unknown")),
        ("category", CATEGORIES),
        ("difficulty", sorted({r["difficulty"] for r in records})),
    )
    for field, groups in groupings:
        metrics[f"by_{field}"] = {}
        for group in groups:
            members = [r for r in records if r.get(field, "unknown") == group]
            if members:
                metrics[f"by_{field}"][group] = {**_accuracy_block(members, "correct", cfg), "n": len(members)}
    metrics["scoring"] = SCORING
    return metrics
