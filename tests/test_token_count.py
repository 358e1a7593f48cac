"""Real tokens per batch against a hand-counted padded batch."""

import pytest
import torch

from prunetune.config import PrunetuneError
from prunetune.token_count import real_tokens


def test_padding_is_not_counted():
    # rows of 3 and 5 tokens padded to width 5: 10 positions, 8 real tokens
    batch = {
        "input_ids": torch.tensor([[7, 8, 9, 0, 0], [1, 2, 3, 4, 5]]),
        "attention_mask": torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]),
    }
    assert batch["input_ids"].numel() == 10  # what include_num_input_tokens_seen=True ("all") counts
    assert real_tokens(batch) == 8
    # without a mask: every id that is not the pad id (0 here)
    assert real_tokens({"input_ids": batch["input_ids"]}, pad_token_id=0) == 8
    assert real_tokens({"input_ids": [[5, 6, 2, 2]]}, pad_token_id=2) == 2  # lists work too


def test_collated_sft_batch(tiny_model):
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    _, tokenizer = tiny_model
    rows = [{"input_ids": list(range(3, 3 + n))} for n in (4, 9)]
    batch = DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id)(rows)
    assert batch["input_ids"].numel() == 18 and real_tokens(batch) == 13  # 2 x 9 padded; 4 + 9 real


def test_a_batch_it_cannot_count_is_named():
    with pytest.raises(PrunetuneError, match="no attention_mask"):
        real_tokens({"input_ids": [[1, 2]]})
