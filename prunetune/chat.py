"""Rendering a chat into tokens: the one place every stage turns messages into ids.

Llama 3.x chat templates write a date into the system header ("Today Date: ...") and, unless the caller passes
`date_string`, take it from the clock (`strftime_now`). A prompt rendered on Monday and the same prompt rendered on
Tuesday are then different inputs, and a DVC experiment that re-runs only the fine-tuned rows would compare them
with base rows scored on other prompts. Every render here passes a fixed date (params.yaml `data.chat_date`), so
the same chat gives the same ids on any day. Templates without a date (the embedded tiny model's) ignore it.

This module imports no training library, so evaluation and Q&A can use it without pulling in TRL or peft.
"""

from __future__ import annotations

from typing import Any

from prunetune.config import PrunetuneError
from prunetune.params import DEFAULT_CHAT_DATE  # data.chat_date's default, typed and checked there

IGNORE_INDEX = -100  # the label of a token the loss ignores (prompt, padding)


def render(
    tokenizer: Any,
    messages: list[dict[str, str]],
    date_string: str,
    add_generation_prompt: bool = False,
    tokenize: bool = True,
) -> Any:
    """The chat through the tokenizer's template with the date fixed: token ids, or the text (tokenize=False)."""
    rendered = tokenizer.apply_chat_template(
        messages, tokenize=tokenize, add_generation_prompt=add_generation_prompt, date_string=date_string
    )
    return rendered["input_ids"] if tokenize else rendered


def prompt_ids(tokenizer: Any, messages: list[dict[str, str]], date_string: str = DEFAULT_CHAT_DATE) -> list[int]:
    """A chat up to (not including) the assistant's answer, with the assistant header opened."""
    return render(tokenizer, messages, date_string, add_generation_prompt=True)


def tokenize_chat(
    tokenizer: Any, messages: list[dict[str, str]], date_string: str = DEFAULT_CHAT_DATE
) -> dict[str, list[int]]:
    """input_ids of the whole chat; labels ignore every token before the assistant's answer."""
    prompt = prompt_ids(tokenizer, messages[:-1], date_string)
    full = render(tokenizer, messages, date_string)
    if full[: len(prompt)] != prompt:
        raise PrunetuneError(
            "the tokenizer's chat template renders the prompt differently inside the full chat; "
            "the assistant tokens cannot be located (use a model whose template is prefix-stable)"
        )
    return {"input_ids": full, "labels": [IGNORE_INDEX] * len(prompt) + full[len(prompt) :]}
