"""Real (non-padding) tokens in a training batch: the tokens/s a fine-tune reports should not count padding."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from prunetune.config import PrunetuneError


def real_tokens(batch: Mapping[str, Any], pad_token_id: int | None = None) -> int:
    """Tokens the model reads: attention_mask == 1, else input_ids != pad_token_id (what transformers counts
    under include_num_input_tokens_seen="non_padding"); a padded batch's full width overstates throughput."""
    if batch.get("attention_mask") is not None:
        return int(torch.as_tensor(batch["attention_mask"]).sum())
    if batch.get("input_ids") is None or pad_token_id is None:
        raise PrunetuneError(
            "token count: the batch has no attention_mask, and input_ids with a pad_token_id are needed instead"
        )
    return int((torch.as_tensor(batch["input_ids"]) != pad_token_id).sum())
