"""Log-likelihood scoring at Llama 3's vocabulary: the naive result, without a batch × sequence × vocabulary tensor."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from prunetune.config import PrunetuneError
from prunetune.generation import completion_nll
from prunetune.memguard import VocabTensorError, VocabTensorGuard, parse_env

VOCAB = 128_256
BATCH, WIDTH, ANSWER = 6, 48, 12


@pytest.fixture(scope="module")
def big_vocab_model():
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        tie_word_embeddings=True,
        initializer_range=0.5,  # a peaked distribution: a wrong gather or normalizer shows
    )
    return LlamaForCausalLM(config).eval()


def scored_rows(n: int, seed: int = 1) -> list[dict[str, list[int]]]:
    """Rows of different lengths (real padding), labels on the last ANSWER tokens (and one row with a gap)."""
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for i in range(n):
        length = WIDTH - 5 * i
        ids = torch.randint(0, VOCAB, (length,), generator=generator).tolist()
        labels = [-100] * (length - ANSWER) + ids[length - ANSWER :]
        if i == 1:
            labels[length - 5] = -100
        rows.append({"input_ids": ids, "labels": labels})
    return rows


@torch.no_grad()
def naive_nll(model, row) -> tuple[float, int]:
    """The old computation: a float32 log-softmax over the whole vocabulary at every position."""
    logprobs = torch.log_softmax(model(torch.tensor([row["input_ids"]])).logits[0, :-1].float(), dim=-1)
    targets = torch.tensor(row["labels"][1:])
    scored = targets != -100
    return -logprobs[scored.nonzero().squeeze(-1), targets[scored]].double().sum().item(), int(scored.sum())


def test_chunked_scoring_equals_the_full_log_softmax(big_vocab_model):
    rows = scored_rows(BATCH)
    expected = [naive_nll(big_vocab_model, row) for row in rows]
    for batch_size, chunk in ((BATCH, 7), (2, 256), (1, 1)):
        got = completion_nll(big_vocab_model, rows, batch_size=batch_size, chunk_positions=chunk)
        assert [n for _, n in got] == [n for _, n in expected] == [ANSWER, ANSWER - 1, *[ANSWER] * 4]
        assert [s for s, _ in got] == pytest.approx([s for s, _ in expected], rel=1e-5, abs=1e-5)
    assert min(s for s, _ in expected) > 10  # non-trivial values: a dropped term would show


def test_scoring_never_builds_a_batch_by_sequence_by_vocabulary_tensor(big_vocab_model):
    rows = scored_rows(BATCH)
    chunk = 8
    with VocabTensorGuard(VOCAB, max_rows=chunk) as guard:  # stops at the first tensor above 8 positions
        completion_nll(big_vocab_model, rows, batch_size=BATCH, chunk_positions=chunk)
    assert 0 < guard.largest_rows <= chunk  # the chunk's logits were seen, and nothing larger
    assert guard.largest_rows * VOCAB * 4 < BATCH * WIDTH * VOCAB * 4 / 30


def test_the_guard_stops_the_naive_computation(big_vocab_model):
    """The guard itself bites: a plain forward builds B×T×V logits (6 × 20 positions) and is refused."""
    batch = torch.tensor([row["input_ids"][:20] for row in scored_rows(BATCH)])
    with pytest.raises(VocabTensorError, match=r"tensor: 120 full-vocabulary rows"):
        with VocabTensorGuard(VOCAB, max_rows=64), torch.no_grad():
            big_vocab_model(batch)


def test_guard_env_format():
    assert parse_env("128256:512") == (128256, 512)
    assert parse_env("128256") == (128256, None)
    with pytest.raises(ValueError, match="PRUNETUNE_VOCAB_GUARD must be VOCAB"):
        parse_env("big")


def test_soft_capped_logits_are_refused(big_vocab_model):
    big_vocab_model.config.final_logit_softcapping = 30.0
    try:
        with pytest.raises(PrunetuneError, match="sets final_logit_softcapping"):
            completion_nll(big_vocab_model, scored_rows(1), batch_size=1)
    finally:
        big_vocab_model.config.final_logit_softcapping = None
