"""A chat as token ids, the one way every stage renders it: the prompt for generation, the labelled rows for
training and scoring. Kept apart from training.py so evaluation and qa do not import TRL and peft."""

from __future__ import annotations

from typing import Any

from prunetune.config import PrunetuneError

IGNORE_INDEX = -100  # the label of a token the loss ignores (prompt, padding)


def prompt_ids(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    """A chat up to (not including) the assistant's answer, with the assistant header opened."""
    return tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)["input_ids"]


def tokenize_chat(tokenizer: Any, messages: list[dict[str, str]]) -> dict[str, list[int]]:
    """input_ids of the whole chat; labels ignore every token before the assistant's answer."""
    prompt = prompt_ids(tokenizer, messages[:-1])
    full = tokenizer.apply_chat_template(messages, tokenize=True)["input_ids"]
    if full[: len(prompt)] != prompt:
        raise PrunetuneError(
            "the tokenizer's chat template renders the prompt differently inside the full chat; "
            "the assistant tokens cannot be located (use a model whose template is prefix-stable)"
        )
    return {"input_ids": full, "labels": [IGNORE_INDEX] * len(prompt) + full[len(prompt) :]}
