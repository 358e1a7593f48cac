"""The Q&A set: loading with clear errors, and scoring by option log-likelihood and by greedy generation."""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any

from prunetune.config import PrunetuneError, require_int
from prunetune.generation import completion_nll, generate_greedy, prompt_ids
from prunetune.metrics import answer_matches, mc_letter_match, mean_ci
from prunetune.training import tokenize_chat

CATEGORIES = ("multiple_choice", "factual")
SYSTEM_PROMPT = "You answer questions about BMW Group news. Answer briefly."
LETTERS = string.ascii_uppercase


def _question_error(path: Path, item: Any, problem: str) -> PrunetuneError:
    name = f"question {item.get('id')!r}" if isinstance(item, dict) and "id" in item else "a question"
    return PrunetuneError(f"{path}: {name}: {problem} (fix it in qa.path)")


def load_qa(path: str | Path) -> list[dict[str, Any]]:
    """Questions in DESIGN.md's format, checked whole before any model time is spent.

    Options may be a list or a {letter: text} mapping, and a multiple-choice answer may be given as the
    option text, its letter, or answer_index; all are normalized to options (list) and answer_index."""
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
            raise _question_error(path, item, "missing answer")
        item["answer"] = str(answer)
        item["difficulty"] = str(item.get("difficulty") or "unspecified")
        category = item.get("category") or ("multiple_choice" if item.get("options") else "factual")
        if category not in CATEGORIES:
            raise _question_error(path, item, f"category must be one of {CATEGORIES}, got {category!r}")
        item["category"] = category
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
    index = item.get("answer_index")
    if index is None:
        answer = item["answer"].strip()
        if answer in options:
            index = options.index(answer)
        elif len(answer) == 1 and answer.upper() in LETTERS[: len(options)]:
            index = LETTERS.index(answer.upper())
        else:
            raise _question_error(path, item, "the answer is neither an option nor an option letter; add answer_index")
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(options):
        raise _question_error(path, item, f"answer_index {index!r} is out of range for {len(options)} options")
    item["answer_index"] = index


def question_messages(item: dict[str, Any]) -> list[dict[str, str]]:
    text = item["question"]
    if item["category"] == "multiple_choice":
        listed = "\n".join(f"{LETTERS[i]}) {option}" for i, option in enumerate(item["options"]))
        text = f"{text}\n{listed}\nAnswer with the letter of the correct option."
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": text}]


def check_qa_params(cfg: dict[str, Any]) -> None:
    for key in ("max_new_tokens", "batch_size"):
        require_int(cfg, key, "qa", minimum=1)
    require_int(cfg, "bootstrap_resamples", "qa", minimum=100)
    require_int(cfg, "seed", "qa", minimum=0)


def evaluate_qa(
    model: Any, tokenizer: Any, questions: list[dict[str, Any]], cfg: dict[str, Any]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Accuracy overall, by category and by difficulty (intervals and counts), and one row per question."""
    prompts = [question_messages(q) for q in questions]
    generated = generate_greedy(
        model, tokenizer, [prompt_ids(tokenizer, m) for m in prompts], cfg["max_new_tokens"], cfg["batch_size"]
    )
    # one scored row per (question, candidate answer): every option of an MC question, the gold answer otherwise
    candidates = [(qi, text) for qi, q in enumerate(questions) for text in q.get("options") or [q["answer"]]]
    rows = [tokenize_chat(tokenizer, [*prompts[qi], {"role": "assistant", "content": text}]) for qi, text in candidates]
    scored = completion_nll(model, rows, cfg["batch_size"])

    records = []
    for qi, question in enumerate(questions):
        options = [(-nll, n) for (qj, _), (nll, n) in zip(candidates, scored, strict=True) if qj == qi]
        text = generated[qi]["text"]
        record = {"id": question["id"], "category": question["category"], "difficulty": question["difficulty"]}
        record.update(question=question["question"], answer=question["answer"], generated=text)
        if question["category"] == "multiple_choice":
            gold = question["answer_index"]
            loglik_pick = max(range(len(options)), key=lambda i: options[i][0])
            norm_pick = max(range(len(options)), key=lambda i: options[i][0] / options[i][1])
            record.update(
                option_logliks=[ll for ll, _ in options],
                option_tokens=[n for _, n in options],
                loglik_correct=loglik_pick == gold,
                loglik_norm_correct=norm_pick == gold,
                generation_correct=mc_letter_match(text, question["options"], gold),
                gold_avg_loglik=options[gold][0] / options[gold][1],
            )
            record["correct"] = record["loglik_correct"]
        else:
            record.update(
                generation_correct=answer_matches(text, question["answer"]),
                gold_avg_loglik=options[0][0] / options[0][1],
            )
            record["correct"] = record["generation_correct"]
        record["hit_max_new_tokens"] = generated[qi]["hit_max_new_tokens"]
        records.append(record)
    return summarize_qa(records, cfg), records


def _accuracy_block(records: list[dict[str, Any]], key: str, cfg: dict[str, Any], name: str = "accuracy") -> dict:
    mean, ci = mean_ci([float(r[key]) for r in records], n_resamples=cfg["bootstrap_resamples"], seed=cfg["seed"])
    return {name: mean, f"{name}_ci": ci}


def summarize_qa(records: list[dict[str, Any]], cfg: dict[str, Any]) -> dict[str, Any]:
    """The metrics file: overall accuracy (MC by log-likelihood, factual by generation) and its breakdowns."""
    metrics: dict[str, Any] = {**_accuracy_block(records, "correct", cfg), "n": len(records)}
    mc = [r for r in records if r["category"] == "multiple_choice"]
    if mc:
        metrics.update(_accuracy_block(mc, "loglik_correct", cfg, "mc_loglik_accuracy"))
        metrics.update(_accuracy_block(mc, "loglik_norm_correct", cfg, "mc_loglik_norm_accuracy"))
        metrics.update(_accuracy_block(mc, "generation_correct", cfg, "mc_generation_accuracy"))
    metrics.update(_accuracy_block(records, "gold_avg_loglik", cfg, "gold_avg_loglik"))
    for field, groups in (("category", CATEGORIES), ("difficulty", sorted({r["difficulty"] for r in records}))):
        metrics[f"by_{field}"] = {}
        for group in groups:
            members = [r for r in records if r[field] == group]
            if members:
                metrics[f"by_{field}"][group] = {**_accuracy_block(members, "correct", cfg), "n": len(members)}
    return metrics
