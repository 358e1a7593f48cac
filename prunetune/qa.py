"""The Q&A set: loading with clear errors, split membership, and scoring: a multiple-choice question by its option
letters' next-token log-probabilities (one forward pass), a factual one by greedy generation."""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any

import torch

from prunetune.chat import DEFAULT_CHAT_DATE, IGNORE_INDEX, prompt_ids, tokenize_chat
from prunetune.config import PrunetuneError
from prunetune.generation import completion_nll, generate_greedy, output_head
from prunetune.jsonio import read_jsonl
from prunetune.metrics import answer_matches
from prunetune.params import QaParams, as_section
from prunetune.stats import binomial_test, clopper_pearson, mean_with_ci

CATEGORIES = ("multiple_choice", "factual")
SYSTEM_PROMPT = "You answer questions about BMW Group news. Answer briefly."
LETTERS = string.ascii_uppercase
SPLITS = ("train", "val", "test")
HELD_OUT = ("val", "test")
SCORING = {
    "accuracy": "the headline: multiple choice by the next-token log-probability of each option LETTER right after "
    "the prompt listing the options (lm-evaluation-harness's MMLU convention; one forward pass per question), "
    "factual by generation; over the held-out questions (article in val or test) when there are any, else all "
    "(see headline_set)",
    "accuracy_all": "the same scoring over every question",
    "accuracy_ci_exact": "Clopper–Pearson 95% interval of the headline accuracy (questions as independent trials)",
    "chance": "the headline's expected accuracy when guessing (mean of 1 / options); null with factual questions",
    "p_vs_chance": "exact two-sided binomial p of the headline accuracy against chance (when every headline "
    "question has the same number of options)",
    "mc_letter_accuracy": "multiple choice, all questions: the letter scoring (the headline's)",
    "gold_avg_loglik": "multiple choice: the gold letter's log-probability; factual: the gold answer's per token",
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
        if item.get("context") is not None and not isinstance(item["context"], str):
            raise _question_error(path, item, "context must be the passage the question is about (a string)")
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
    if item.get("context"):  # open book: the article passage the question is about, before it
        text = f"{item['context']}\n\n{text}"
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


def letter_token_ids(
    tokenizer: Any, messages: list[dict[str, str]], n_options: int, date_string: str = DEFAULT_CHAT_DATE
) -> list[int]:
    """The first answer token of each option letter: one next-token distribution ranks them all. Letters whose
    first tokens coincide cannot be told apart that way (refused)."""
    rows = letter_rows(tokenizer, messages, n_options, date_string)
    first = [next(t for t in row["labels"] if t != IGNORE_INDEX) for row in rows]
    if len(set(first)) != n_options:
        raise PrunetuneError(
            f"the tokenizer starts option letters {LETTERS[:n_options]} with the same token; letter scoring needs "
            "a distinct first token per letter"
        )
    return first


@torch.no_grad()
def next_token_logprobs(model: Any, prompts: list[list[int]], candidates: list[list[int]], batch_size: int) -> list:
    """Per prompt, the log-probabilities (over the whole vocabulary) of its candidate next tokens: ONE forward pass
    per prompt, right-padded into batches (no mask needed: a real token never sees the padding after it)."""
    decoder, head = output_head(model)
    device = next(model.parameters()).device
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    results: list[list[float]] = [[] for _ in prompts]
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        width = max(len(prompts[i]) for i in batch)
        input_ids = torch.tensor([prompts[i] + [0] * (width - len(prompts[i])) for i in batch], device=device)
        hidden = decoder(input_ids=input_ids, use_cache=False).last_hidden_state
        last = hidden[torch.arange(len(batch), device=device), torch.tensor([len(prompts[i]) - 1 for i in batch])]
        logprobs = torch.log_softmax(head(last).float(), dim=-1)
        for row, index in enumerate(batch):
            results[index] = logprobs[row, candidates[index]].tolist()
    return results


def score_multiple_choice(letter_logliks: list[float], gold: int) -> dict[str, Any]:
    """The record fields of one multiple-choice question from its letters' next-token log-probabilities."""
    pick = max(range(len(letter_logliks)), key=lambda i: letter_logliks[i])
    return {
        "letter_logliks": letter_logliks,
        "picked": LETTERS[pick],
        "letter_correct": pick == gold,
        "gold_avg_loglik": letter_logliks[gold],
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

    A multiple-choice question costs one forward pass (its letters' next-token log-probabilities); a factual one
    is answered by greedy generation and its gold answer's likelihood. membership maps article_id -> split
    (split_membership); without it every question's split is unknown. date_string: params.yaml data.chat_date."""
    cfg = as_section(QaParams, cfg)
    membership = membership or {}
    prompts = [question_messages(q) for q in questions]
    mc = [qi for qi, q in enumerate(questions) if q["category"] == "multiple_choice"]
    factual = [qi for qi, q in enumerate(questions) if q["category"] != "multiple_choice"]
    letter_ids: dict[int, list[int]] = {}
    for qi in mc:
        n_options = len(questions[qi]["options"])
        if n_options not in letter_ids:
            letter_ids[n_options] = letter_token_ids(tokenizer, prompts[qi], n_options, date_string)
    letter_ll = next_token_logprobs(
        model,
        [prompt_ids(tokenizer, prompts[qi], date_string) for qi in mc],
        [letter_ids[len(questions[qi]["options"])] for qi in mc],
        cfg.batch_size,
    )
    generated = generate_greedy(
        model, tokenizer, [prompt_ids(tokenizer, prompts[qi], date_string) for qi in factual], cfg.max_new_tokens,
        cfg.batch_size,
    )  # fmt: skip
    gold_rows = [
        tokenize_chat(tokenizer, [*prompts[qi], {"role": "assistant", "content": questions[qi]["answer"]}], date_string)
        for qi in factual
    ]
    gold_nll = completion_nll(model, gold_rows, cfg.batch_size) if gold_rows else []
    by_question = {qi: ("mc", ll) for qi, ll in zip(mc, letter_ll, strict=True)}
    by_question.update({qi: ("factual", (g, nll)) for qi, g, nll in zip(factual, generated, gold_nll, strict=True)})
    records = []
    for qi, question in enumerate(questions):
        source = question.get("article_id")
        record = {"id": question["id"], "category": question["category"], "difficulty": question["difficulty"]}
        record.update(article_id=source, split=membership.get(source, "unknown") if source else "unknown")
        record.update(question=question["question"], answer=question["answer"])
        kind, scored = by_question[qi]
        if kind == "mc":
            record.update(score_multiple_choice(scored, question["answer_index"]))
            record["n_options"] = len(question["options"])
            record["correct"] = record["letter_correct"]
        else:
            generation, (nll, n_tokens) = scored
            record.update(generated=generation["text"], hit_max_new_tokens=generation["hit_max_new_tokens"])
            record.update(generation_correct=answer_matches(generation["text"], question["answer"]))
            record.update(gold_avg_loglik=-nll / n_tokens, correct=record["generation_correct"])
        records.append(record)
    return summarize_qa(records, cfg), records


def _accuracy_block(records: list[dict[str, Any]], key: str, cfg: QaParams, name: str = "accuracy") -> dict:
    """Mean of a per-question score with its interval; questions from one article are resampled together."""
    clusters = [r.get("article_id") or f"question:{r['id']}" for r in records]
    values = [float(r[key]) for r in records]
    return mean_with_ci(name, values, cfg.bootstrap_resamples, cfg.seed, cfg.ci_method, clusters=clusters)


def _exact_block(headline: list[dict[str, Any]]) -> dict[str, Any]:
    """The headline's binomial view: Clopper–Pearson interval, chance rate and the exact test against it (a
    bootstrap of 0 of n correct is [0, 0]; the binomial interval is not)."""
    correct = sum(bool(r["correct"]) for r in headline)
    options = [r.get("n_options") for r in headline]
    chance = None if None in options else sum(1 / k for k in options) / len(options)
    same = chance is not None and len(set(options)) == 1
    return {
        "accuracy_ci_exact": clopper_pearson(correct, len(headline)),
        "chance": chance,
        "p_vs_chance": binomial_test(correct, len(headline), chance) if same else None,
    }


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
    metrics.update(_exact_block(headline))
    mc = [r for r in records if r["category"] == "multiple_choice"]
    if mc:
        metrics.update(_accuracy_block(mc, "letter_correct", cfg, "mc_letter_accuracy"))
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
