import pytest
import torch

from prunetune.data import TASK_INSTRUCTIONS
from prunetune.tiny import is_instruction_step
from prunetune.trainers import ExampleWeightedLoss, per_example_nll
from prunetune.warmup import WARMUP_TASKS, instruction_batch, tokenize_answers, warmup_chats

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
    rows = tokenize_answers(tokenizer, warmup_chats([ARTICLE]), max_length=512)
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
    # two examples over a 3-token vocabulary; logits 0 everywhere make each token's NLL ln 3
    logits = torch.zeros(2, 4, 3)
    logits[0, 0, 1] = 10.0  # example 0's first answer token (label 1) is almost certain: NLL ~ 0
    labels = torch.tensor([[0, 1, 2, 2], [0, -100, -100, 1]])  # example 0: 3 answer tokens; example 1: 1
    per_example, has_answer = per_example_nll(logits, labels)
    ln3, first = torch.log(torch.tensor(3.0)), torch.log1p(2 * torch.exp(torch.tensor(-10.0)))
    assert per_example.tolist() == pytest.approx([(first + 2 * ln3).item() / 3, ln3.item()], rel=1e-5)
    assert has_answer.tolist() == [True, True]
    loss = ExampleWeightedLoss(accumulation_steps=2, processes=1)
    outputs = type("Outputs", (), {"logits": logits})()
    evaluation = loss(outputs, labels)  # the mean of the two examples, not of the 4 tokens
    assert evaluation.item() == pytest.approx(per_example.mean().item())
    assert loss(outputs, labels, num_items_in_batch=4).item() == pytest.approx(per_example.mean().item() / 2)
