"""Shared-prompt rows: the hand-worked layout, and the same loss and gradient as the separate examples."""

import pytest
import torch
from conftest import chat_examples, padded_batch

from prunetune.chat import IGNORE_INDEX
from prunetune.config import PrunetuneError
from prunetune.generation import AnswerTokens
from prunetune.packing import PADDING, PREFIX, collate, shared_attention_mask, shared_row
from prunetune.trainers import NLL, answer_hidden_states, answer_token_terms, example_mean_nll
from prunetune.training import build_dataset

X = IGNORE_INDEX


def test_shared_row_by_hand():
    examples = [
        {"input_ids": [1, 2, 3, 4, 5, 6], "labels": [X, X, X, X, 5, 6]},
        {"input_ids": [1, 2, 3, 7, 8], "labels": [X, X, X, X, 8]},
    ]
    row = shared_row(examples)
    # common prefix [1, 2, 3]; each branch keeps the token before its answer
    assert row["input_ids"] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert row["labels"] == [X, X, X, X, 5, 6, X, 8]
    assert row["position_ids"] == [0, 1, 2, 3, 4, 5, 3, 4]
    assert row["branch_ids"] == [0, 0, 0, 1, 1, 1, 2, 2]


def test_the_prefix_stops_before_the_token_that_predicts_an_answer():
    examples = [
        {"input_ids": [1, 2, 3, 9], "labels": [X, X, 3, 9]},  # the answer starts at 3, shared with the other
        {"input_ids": [1, 2, 3, 4], "labels": [X, X, X, 4]},
    ]
    row = shared_row(examples)
    assert row["input_ids"] == [1, 2, 3, 9, 2, 3, 4]  # prefix [1] only: token 2 predicts the first answer's 3
    assert row["position_ids"] == [0, 1, 2, 3, 1, 2, 3]
    answer = AnswerTokens.of(torch.tensor([row["labels"]]), torch.tensor([row["branch_ids"]]))
    assert answer.targets.tolist() == [3, 9, 4]
    assert answer.rows.tolist() == [0, 0, 1]  # two examples in one row


def test_mask_by_hand_and_padding():
    batch = collate(
        [
            {
                "input_ids": [5, 6, 7, 8],
                "labels": [X, X, 7, 8],
                "position_ids": [0, 1, 1, 2],
                "branch_ids": [0, 1, 2, 2],
            },
            {"input_ids": [5, 6], "labels": [X, 6], "position_ids": [0, 1], "branch_ids": [0, 1]},
        ],
        pad_token_id=0,
    )
    assert batch["branch_ids"].tolist() == [[0, 1, 2, 2], [0, 1, PADDING, PADDING]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    mask = shared_attention_mask(batch["branch_ids"], "sdpa", torch.float32)
    assert mask[0, 0].int().tolist() == [[1, 0, 0, 0], [1, 1, 0, 0], [1, 0, 1, 0], [1, 0, 1, 1]]
    assert mask[1, 0].int().tolist() == [[1, 0, 0, 0], [1, 1, 0, 0], [1, 0, 1, 0], [1, 0, 0, 1]]  # padding: itself
    additive = shared_attention_mask(batch["branch_ids"], "eager", torch.float32)
    assert ((additive == 0) == mask).all() and (additive[~mask] == torch.finfo(torch.float32).min).all()
    no_prefix = shared_attention_mask(torch.tensor([[1, 1, 2, PADDING]]), "sdpa", torch.float32)
    assert no_prefix.any(dim=-1).all()  # every query attends to something, even without a shared prefix
    with pytest.raises(PrunetuneError, match="train.share_prompts"):
        shared_attention_mask(batch["branch_ids"], "flash_attention_2", torch.float32)
    assert PREFIX == 0


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_shared_rows_give_the_separate_examples_loss_and_gradient(tiny_model, attention):
    model, tokenizer = tiny_model
    model.set_attn_implementation(attention)
    examples = chat_examples(2)  # two articles, four tasks each
    plain, _ = build_dataset(examples, tokenizer, 512)
    shared, _ = build_dataset(examples, tokenizer, 512, share_prompts=True)
    assert len(plain) == 8 and len(shared) == 2
    assert sum(map(len, shared["input_ids"])) < 0.6 * sum(map(len, plain["input_ids"]))

    def loss_and_grads(inputs):
        model.zero_grad()
        hidden, answer = answer_hidden_states(model, inputs)
        terms = answer_token_terms(model.lm_head, hidden, answer.targets)
        loss = example_mean_nll(terms[:, NLL], answer.rows)
        loss.backward()
        return loss.detach(), terms[:, NLL].detach(), [p.grad.clone() for p in model.parameters()]

    input_ids, attention_mask, labels = padded_batch(plain)
    try:
        model.train()
        expected = loss_and_grads({"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels})
        got = loss_and_grads(collate(list(shared), tokenizer.pad_token_id))
    finally:
        model.eval().zero_grad()
        model.set_attn_implementation("sdpa")
    torch.testing.assert_close(got[1], expected[1], rtol=1e-4, atol=1e-5)  # every answer token, in order
    torch.testing.assert_close(got[0], expected[0], rtol=1e-5, atol=1e-6)
    for got_grad, expected_grad in zip(got[2], expected[2], strict=True):
        torch.testing.assert_close(got_grad, expected_grad, rtol=1e-3, atol=1e-6)


def test_too_long_examples_are_dropped_before_sharing(tiny_model):
    _, tokenizer = tiny_model
    examples = chat_examples(2)
    lengths = [len(row) for row in build_dataset(examples, tokenizer, 512)[0]["input_ids"]]
    limit = max(lengths) - 1  # the longest examples do not fit
    too_long = sum(length > limit for length in lengths)
    shared, dropped = build_dataset(examples, tokenizer, limit, share_prompts=True)
    assert dropped == too_long >= 1 and len(shared) == 2
    assert sum(max(row) for row in shared["branch_ids"]) == 8 - too_long  # branches: the examples that fit
