"""Instruction warm-up for the embedded base: chats on train articles that are NOT the study's four tasks.

Llama-3.2-1B-Instruct already reads an instruction and answers it with an end-of-turn token before we fine-tune
it; the tiny base should too, or the fine-tune has to teach chat format, reading and the four tasks at once. These
copy-and-extract instructions (the dateline place, the first sentence, the last words) teach the format and to
look back at the article, and say nothing about summaries, titles, tags or types, so the base rows stay an honest
"not fine-tuned on our tasks" baseline. Only train-split articles are used.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from prunetune.chat import DEFAULT_CHAT_DATE, IGNORE_INDEX, tokenize_chat
from prunetune.data import SYSTEM_PROMPT
from prunetune.generation import AnswerTokens, output_head, without_padding_mask


def _dateline(content: str) -> str:
    """The place before the first period ("Munich. The BMW Group ..."); empty where the text opens otherwise."""
    head = content.split(".", 1)[0].strip()
    return head if 0 < len(head.split()) <= 3 and head != "Check against delivery" else ""


def _first_sentence(content: str) -> str:
    body = content.split(".", 1)[1] if _dateline(content) else content
    match = re.match(r"\s*(.+?[.!?])(\s|$)", body, flags=re.S)
    return (match.group(1) if match else body).strip()


def _last_words(content: str) -> str:
    return " ".join(content.split()[-5:])


WARMUP_TASKS: dict[str, tuple[str, Callable[[str], str]]] = {
    "dateline": ("Name the place in the dateline of the article above.", _dateline),
    "first_sentence": ("Repeat the first sentence of the article above, after its dateline.", _first_sentence),
    "last_words": ("Repeat the last five words of the article above.", _last_words),
}


def warmup_chats(contents: list[str]) -> list[list[dict[str, str]]]:
    """Every warm-up instruction on every article (each answer non-empty), in the study's prompt layout."""
    chats = []
    for content in contents:
        for instruction, answer in WARMUP_TASKS.values():
            if text := answer(content):
                chats.append(
                    [
                        {"role": "system", "content": SYSTEM_PROMPT},
                        {"role": "user", "content": f"{content}\n\n{instruction}"},
                        {"role": "assistant", "content": text},
                    ]
                )
    return chats


def tokenize_answers(
    tokenizer: Any, chats: list[list[dict[str, str]]], max_length: int, date_string: str = DEFAULT_CHAT_DATE
) -> tuple[list[tuple[list, list]], int]:
    """(input_ids, labels) per chat (chat.tokenize_chat: labels only on the answer and its end-of-turn), and how
    many chats were longer than max_length: those lose prompt tokens from the left (the answer is what is trained,
    but a cut dateline or first sentence leaves it nothing to copy from)."""
    rows, cut = [], 0
    for chat in chats:
        row = tokenize_chat(tokenizer, chat, date_string)
        cut += len(row["input_ids"]) > max_length
        rows.append((row["input_ids"][-max_length:], row["labels"][-max_length:]))
    return rows, cut


def instruction_batch(
    rows: list[tuple[list, list]], batch_size: int, pad_id: int, generator: torch.Generator
) -> dict[str, torch.Tensor]:
    """A random batch, right-padded; padding neither attends nor is scored."""
    picks = torch.randint(0, len(rows), (batch_size,), generator=generator).tolist()
    width = max(len(rows[i][0]) for i in picks)
    input_ids = torch.full((batch_size, width), pad_id)
    labels = torch.full((batch_size, width), IGNORE_INDEX)
    attention_mask = torch.zeros((batch_size, width), dtype=torch.long)
    for row, index in enumerate(picks):
        ids, answer = rows[index]
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, : len(ids)] = torch.tensor(answer)
        attention_mask[row, : len(ids)] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}


def answer_loss(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The mean NLL of the batch's answer tokens, as model(**batch).loss gives it, with the LM head and its
    log-softmax run only where an answer token is predicted: 6% of a warm-up batch's positions (the rest is prompt
    and padding), and a quarter of the step's time when they ran everywhere (BENCHMARKS.md)."""
    decoder, head = output_head(model)
    inputs = without_padding_mask({"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]})
    hidden = decoder(**inputs, use_cache=False).last_hidden_state
    answer = AnswerTokens.of(batch["labels"])
    return F.cross_entropy(head(hidden[answer.keep]).float(), answer.targets)
