import pytest
import torch

from prunetune.data import TASK_INSTRUCTIONS
from prunetune.tiny import is_instruction_step
from prunetune.trainers import example_mean_nll
from prunetune.warmup import WARMUP_TASKS, answer_loss, instruction_batch, tokenize_answers, warmup_chats

ARTICLE = "Leipzig. The plant builds the MINI Countryman. It employs 5,000 people.\n\nProduction runs in three shifts."


def test_warmup_answers_by_hand():
    answers = {name: answer(ARTICLE) for name, (_, answer) in WARMUP_TASKS.items()}
    assert answers == {
        "dateline": "Leipzig",
        "first_sentence": "The plant builds the MINI Countryman.",
        "last_words": "Production runs in three shifts.",
    }
    speech = "Check against delivery.\n\nLadies and gentlemen, welcome."
    assert WARMUP_TASKS["dateline"][1](speech) == ""  # no place: that chat is left out
    assert len(warmup_chats([ARTICLE, speech])) == 3 + 2


def test_warmup_never_asks_for_the_studys_tasks():
    instructions = {instruction for instruction, _ in WARMUP_TASKS.values()}
    assert not instructions & {text.split(".")[0] for text in TASK_INSTRUCTIONS.values()}
    for chat in warmup_chats([ARTICLE]):
        assert chat[1]["content"].startswith(ARTICLE)  # the study's layout: article first, then the instruction


def test_instruction_rows_score_only_the_answer(tiny_model):
    _, tokenizer = tiny_model
    rows, cut = tokenize_answers(tokenizer, warmup_chats([ARTICLE]), max_length=512)
    assert cut == 0
    ids, labels = rows[0]
    answer = [token for token in labels if token != -100]
    assert tokenizer.decode(answer) == "Leipzig<|eot_id|>"
    batch = instruction_batch(rows, 4, tokenizer.pad_token_id, torch.Generator().manual_seed(0))
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape
    assert (batch["labels"][batch["attention_mask"] == 0] == -100).all()  # padding is never scored


@pytest.mark.parametrize(("fraction", "expected"), [(0.0, 0), (0.5, 5), (0.3, 3), (0.25, 2)])
def test_instruction_steps_are_spread_evenly(fraction, expected):
    steps = [step for step in range(10) if is_instruction_step(step, fraction)]
    assert len(steps) == expected
    if fraction == 0.5:
        assert steps == [1, 3, 5, 7, 9]


def test_example_weighting_by_hand():
    # answer-token NLLs with the example each belongs to: example 0 has 3 tokens with NLL 0.3, 0.6, 0.9 (mean 0.6),
    # example 1 none (left out), example 2 one token with NLL 2.0
    token_nll = torch.tensor([0.3, 0.6, 0.9, 2.0])
    rows = torch.tensor([0, 0, 0, 2])
    loss = example_mean_nll(token_nll, rows)
    assert loss.item() == pytest.approx((0.6 + 2.0) / 2)  # per token it would be (0.3 + 0.6 + 0.9 + 2.0) / 4 = 0.95
    assert example_mean_nll(token_nll[:0], rows[:0]).item() == 0.0  # no answer token: a finite zero


def test_a_chat_longer_than_the_window_is_cut_from_the_left_and_counted(tiny_model):
    _, tokenizer = tiny_model
    chats = warmup_chats([ARTICLE])
    whole, whole_cut = tokenize_answers(tokenizer, chats, max_length=512)
    short, short_cut = tokenize_answers(tokenizer, chats, max_length=12)
    assert (whole_cut, short_cut) == (0, 3)
    for (ids, labels), (short_ids, short_labels) in zip(whole, short, strict=True):
        assert short_ids == ids[-12:] and short_labels == labels[-12:]  # the answer and its end-of-turn are kept


def test_answer_loss_is_the_models_own_loss_and_gradient(tiny_model):
    model, tokenizer = tiny_model
    rows, _ = tokenize_answers(tokenizer, warmup_chats([ARTICLE, ARTICLE.replace("Leipzig", "Spartanburg")]), 512)
    batch = instruction_batch(rows, 4, tokenizer.pad_token_id, torch.Generator().manual_seed(0))
    assert (batch["attention_mask"] == 0).any()  # rows of unequal length: padding the answer loss must not score
    gradients = []
    for loss_of in (lambda: model(**batch).loss, lambda: answer_loss(model, batch)):
        model.zero_grad()
        loss = loss_of()
        loss.backward()
        gradients.append((loss.item(), [p.grad.clone() for p in model.parameters()]))
    (full_loss, full_grads), (answer_only_loss, answer_only_grads) = gradients
    assert answer_only_loss == pytest.approx(full_loss, rel=1e-5)
    for full, answer_only in zip(full_grads, answer_only_grads, strict=True):
        torch.testing.assert_close(answer_only, full, rtol=1e-4, atol=1e-6)
    model.zero_grad(set_to_none=True)  # the fixture is shared
