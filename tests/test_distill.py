import copy
import json
import math

import pytest
import torch
from conftest import LORA_TEST_CFG, TINY_TEST_CFG, TRAIN_TEST_CFG, chat_examples, make_article, padded_batch
from transformers import AutoModelForCausalLM

from prunetune.chat import IGNORE_INDEX
from prunetune.config import PrunetuneError
from prunetune.generation import AnswerTokens
from prunetune.models import read_meta, save_model
from prunetune.params import TrainParams
from prunetune.pruning import remove_layers
from prunetune.trainers import answer_token_terms, distillation_loss, distillation_teacher
from prunetune.training import build_dataset, finetune

KD_CFG = {"method": "kd", "kd_alpha": 0.5, "kd_temperature": 2.0}


def kd_loss(student_logits, teacher_logits, labels, alpha, temperature, num_items=None, chunk=3):
    """The loss DistillationTrainer.compute_loss takes, from whole-sequence logits: the answer positions' rows, each
    model's LM head the identity (its "hidden states" are its logits), in chunks of 3 rows."""
    answer = AnswerTokens.of(labels)
    head = torch.nn.Identity()
    teacher = (head, teacher_logits[answer.keep])
    terms = answer_token_terms(head, student_logits[answer.keep], answer.targets, teacher, temperature, chunk)
    return distillation_loss(terms, alpha, temperature, num_items)


# ---------------------------------------------------------------- the loss


def loss_by_hand(student, teacher, labels, alpha, temperature):
    """The KD loss written out token by token with plain floats: the reference for distillation_loss."""

    def softmax(row, t):
        exps = [math.exp(v / t) for v in row]
        return [e / sum(exps) for e in exps]

    total, tokens = 0.0, 0
    for b in range(len(labels)):
        for t in range(len(labels[b]) - 1):
            target = labels[b][t + 1]  # the logits at t predict the token at t + 1
            if target == IGNORE_INDEX:
                continue
            p, q = softmax(teacher[b][t], temperature), softmax(student[b][t], temperature)
            kl = sum(pi * (math.log(pi) - math.log(qi)) for pi, qi in zip(p, q, strict=True))
            ce = -math.log(softmax(student[b][t], 1.0)[target])
            total += alpha * temperature**2 * kl + (1 - alpha) * ce
            tokens += 1
    return total / tokens


@pytest.mark.parametrize(("alpha", "temperature"), [(0.5, 2.0), (0.9, 1.0), (0.0, 3.0), (1.0, 0.5)])
def test_distillation_loss_matches_a_direct_computation(alpha, temperature):
    generator = torch.Generator().manual_seed(0)
    student = torch.randn(2, 5, 7, generator=generator, dtype=torch.float64)
    teacher = torch.randn(2, 5, 7, generator=generator, dtype=torch.float64)
    labels = torch.tensor([[-100, -100, 3, 6, 1], [-100, 2, 0, -100, -100]])  # prompt, answer, padding
    expected = loss_by_hand(student.tolist(), teacher.tolist(), labels.tolist(), alpha, temperature)
    loss = kd_loss(student, teacher, labels, alpha, temperature)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    half = kd_loss(student, teacher, labels, alpha, temperature, num_items=2 * 5)  # 5 answer tokens
    assert half.item() == pytest.approx(expected / 2, rel=1e-6)


@torch.no_grad()
def test_cross_entropy_part_is_the_models_own_label_loss_and_kl_vanishes_against_itself(tiny_model):
    model, tokenizer = tiny_model
    dataset, _ = build_dataset(chat_examples(1)[:1], tokenizer, 512)
    input_ids, labels = torch.tensor([dataset[0]["input_ids"]]), torch.tensor([dataset[0]["labels"]])
    out = model(input_ids, labels=labels)
    own = kd_loss(out.logits, out.logits, labels, alpha=0.0, temperature=2.0)
    torch.testing.assert_close(own, out.loss, rtol=1e-5, atol=1e-6)
    kl_only = kd_loss(out.logits, out.logits, labels, alpha=1.0, temperature=2.0)
    assert abs(kl_only.item()) < 1e-6


def test_kd_loss_decreases_over_a_few_steps(tiny_model):
    teacher, tokenizer = tiny_model
    student = remove_layers(copy.deepcopy(teacher), [1]).train()
    input_ids, attention_mask, labels = padded_batch(build_dataset(chat_examples(1), tokenizer, 512)[0])
    with torch.no_grad():
        teacher_logits = teacher(input_ids, attention_mask=attention_mask).logits
    optimizer = torch.optim.Adam(student.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        logits = student(input_ids, attention_mask=attention_mask).logits
        loss = kd_loss(logits, teacher_logits, labels, alpha=0.5, temperature=2.0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0]
    assert all(b < a for a, b in zip(losses, losses[1:], strict=False))


# ---------------------------------------------------------------- which model is distilled


def test_only_pruned_models_are_distilled():
    def train(**changes):
        return TrainParams.parse({**TRAIN_TEST_CFG, **changes})

    kd = train(**KD_CFG, teacher="models/base")
    assert distillation_teacher(kd, {"removed_layers": [15]}).as_posix() == "models/base"
    assert distillation_teacher(kd, {"source": "tiny"}) is None  # finetune_full
    assert distillation_teacher(train(method="lora", teacher="models/base"), {"removed_layers": [15]}) is None
    assert distillation_teacher(train(), {"removed_layers": [15]}) is None  # no method: lora


# ---------------------------------------------------------------- a KD run


@pytest.fixture(scope="module")
def pruned_model_dir(tiny_model, tmp_path_factory):
    model, tokenizer = tiny_model
    path = tmp_path_factory.mktemp("models") / "pruned"
    save_model(remove_layers(copy.deepcopy(model), [1]), tokenizer, path, {"removed_layers": [1]})
    return path


def run_kd(model_dir, teacher_dir, tmp_path, **train):
    examples = chat_examples(6)
    return finetune(
        model_dir=model_dir,
        lora_cfg=LORA_TEST_CFG,
        train_cfg={**TRAIN_TEST_CFG, **KD_CFG, "teacher": str(teacher_dir), **train},
        train_examples=examples[:16],
        val_examples=examples[16:],
        out_dir=tmp_path / "model",
        metrics_dir=tmp_path / "metrics",
        scratch_dir=tmp_path / "scratch",
    )


@pytest.mark.parametrize("share_prompts", [False, True])
def test_kd_run_heals_with_the_teacher_and_logs_like_a_lora_run(
    pruned_model_dir, tiny_model_dir, tmp_path, share_prompts
):
    summary = run_kd(pruned_model_dir, tiny_model_dir, tmp_path, share_prompts=share_prompts, batch_size=1)
    assert summary["steps"] == 6 and summary["best_val_loss"] < summary["first_val_loss"]
    assert summary["train_rows"] == (4 if share_prompts else 16)  # the teacher reads shared rows too
    curves = tmp_path / "metrics" / "plots" / "metrics"
    for curve in ("train/loss", "eval/loss", "train/mean_token_accuracy", "train/kd_kl", "eval/kd_kl", "eval/kd_ce"):
        assert len((curves / f"{curve}.tsv").read_text().splitlines()) > 2, curve
    train_loss = [float(r.split("\t")[1]) for r in (curves / "train/loss.tsv").read_text().splitlines()[1:]]
    assert train_loss[-1] < train_loss[0]
    assert json.loads((tmp_path / "metrics" / "metrics.json").read_text())["steps"] == 6
    assert read_meta(tmp_path / "model")["healing"] == {"method": "kd", "teacher": str(tiny_model_dir)}
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "model").config.num_hidden_layers == 3
    assert (tmp_path / "model" / "adapter" / "adapter_config.json").is_file()


# ---------------------------------------------------------------- bad input


@pytest.fixture(scope="module")
def foreign_teacher_dir(tmp_path_factory):
    """A model whose tokenizer was trained on other text: its token ids mean other things."""
    from prunetune.tiny import build_model, train_tokenizer

    tokenizer = train_tokenizer([make_article(100 + i)["content"].upper() for i in range(20)], 400)
    path = tmp_path_factory.mktemp("models") / "foreign"
    save_model(build_model(tokenizer, TINY_TEST_CFG), tokenizer, path, {"source": "test"})
    return path


def test_teacher_with_another_tokenizer_fails_before_training(pruned_model_dir, foreign_teacher_dir, tmp_path):
    with pytest.raises(PrunetuneError, match=r"train\.teacher .* different tokenizer vocabulary"):
        run_kd(pruned_model_dir, foreign_teacher_dir, tmp_path)
    assert not (tmp_path / "scratch").exists() and not (tmp_path / "metrics").exists()


@pytest.mark.parametrize(
    ("train", "param"),
    [
        ({"method": "distill"}, "train.method"),
        ({"kd_alpha": 1.5}, "train.kd_alpha"),
        ({"kd_temperature": 0}, "train.kd_temperature"),
        ({"teacher": ""}, "train.teacher"),
        ({"teacher": "no/such/model"}, "train.teacher"),
    ],
)
def test_bad_kd_params_fail_before_training_naming_the_param(pruned_model_dir, tiny_model_dir, tmp_path, train, param):
    with pytest.raises(PrunetuneError, match=param.replace(".", r"\.")):
        run_kd(pruned_model_dir, tiny_model_dir, tmp_path, **train)
    assert not (tmp_path / "scratch").exists()
