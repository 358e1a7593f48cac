"""Shared-prompt rows: an article's examples trained in one row that holds their common prompt once.

Every task of an article repeats the same system prompt and article text; only the instruction and the answer
differ. A shared row is that common prefix followed by each example's own tokens (its branch), with position ids
that restart each branch where the prefix ends and an attention mask that lets a branch see the prefix and itself
only. Every answer token is then predicted from exactly the tokens it follows in its own example, so the loss and
its gradient are those of the separate examples. On the sample corpus a row is 2.4x fewer tokens than its four
examples and the default fine-tune runs 1.4x faster (attention over the longer row gains less than the linears).
"""

from __future__ import annotations

from typing import Any

import torch

from prunetune.chat import IGNORE_INDEX
from prunetune.config import PrunetuneError

PREFIX, PADDING = 0, -1  # branch ids: the shared prefix, padding; examples are numbered from 1


def common_prefix_length(sequences: list[list[int]]) -> int:
    """How many leading tokens all sequences have in common."""
    length = 0
    for tokens in zip(*sequences, strict=False):
        if any(token != tokens[0] for token in tokens):
            break
        length += 1
    return length


def shared_row(examples: list[dict[str, list[int]]]) -> dict[str, list[int]]:
    """One row of tokenized examples (input_ids, labels): their common unlabelled prefix once, then each example's
    remaining tokens. The prefix stops one token before the first answer token of any example, so every answer
    token and the token that predicts it lie in the same branch."""
    first_labelled = min(
        next((i for i, label in enumerate(example["labels"]) if label != IGNORE_INDEX), len(example["labels"]))
        for example in examples
    )
    prefix = max(0, min(common_prefix_length([example["input_ids"] for example in examples]), first_labelled - 1))
    row: dict[str, list[int]] = {
        "input_ids": examples[0]["input_ids"][:prefix],
        "labels": [IGNORE_INDEX] * prefix,
        "position_ids": list(range(prefix)),
        "branch_ids": [PREFIX] * prefix,
    }
    for branch, example in enumerate(examples, start=1):
        own = len(example["input_ids"]) - prefix
        row["input_ids"] += example["input_ids"][prefix:]
        row["labels"] += example["labels"][prefix:]
        row["position_ids"] += list(range(prefix, prefix + own))
        row["branch_ids"] += [branch] * own
    return row


def shared_rows(examples: list[dict[str, list[int]]], groups: list[Any]) -> list[dict[str, list[int]]]:
    """The examples grouped by groups[i] (their article id), one shared row per group, in first-seen order."""
    by_group: dict[Any, list[dict[str, list[int]]]] = {}
    for example, group in zip(examples, groups, strict=True):
        by_group.setdefault(group, []).append(example)
    return [shared_row(members) for members in by_group.values()]


def shared_attention_mask(branch_ids: torch.Tensor, attention: str, dtype: torch.dtype) -> torch.Tensor:
    """The 4D mask [batch, 1, seq, seq] of shared rows in the form the model's attention takes as given: bool (True:
    attend) for sdpa, additive (0 or the dtype's minimum) for eager. A query attends causally within its branch and
    to the prefix; padding sees the prefix and itself (a query that attends to nothing would give NaN, and NaN
    poisons the backward pass even where it is never scored)."""
    if attention not in ("sdpa", "eager"):
        raise PrunetuneError(
            f"train.share_prompts: the model's attention implementation {attention!r} takes no custom attention "
            "mask; use sdpa or eager attention, or set train.share_prompts: false"
        )
    query, key = branch_ids[:, :, None], branch_ids[:, None, :]
    seq = branch_ids.shape[1]
    causal = torch.ones(seq, seq, dtype=torch.bool, device=branch_ids.device).tril()
    itself = torch.eye(seq, dtype=torch.bool, device=branch_ids.device)
    allowed = (causal & ((key == PREFIX) | ((key == query) & (key != PADDING)))) | (itself & (query == PADDING))
    allowed = allowed[:, None]
    if attention == "sdpa":
        return allowed
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(~allowed, torch.finfo(dtype).min)


def right_pad(rows: list[list[int]], value: int) -> torch.Tensor:
    width = max(len(row) for row in rows)
    return torch.tensor([row + [value] * (width - len(row)) for row in rows])


def collate(rows: list[dict[str, list[int]]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-padded tensors of tokenized rows, plain or shared (with position_ids and branch_ids); attention_mask
    marks the real tokens (what Trainer counts as tokens seen), the forward pass builds its own mask."""
    batch = {
        "input_ids": right_pad([row["input_ids"] for row in rows], pad_token_id),
        "labels": right_pad([row["labels"] for row in rows], IGNORE_INDEX),
        "attention_mask": right_pad([[1] * len(row["input_ids"]) for row in rows], 0),
    }
    if "branch_ids" in rows[0]:
        batch["position_ids"] = right_pad([row["position_ids"] for row in rows], 0)
        batch["branch_ids"] = right_pad([row["branch_ids"] for row in rows], PADDING)
    return batch
