"""Healing by knowledge distillation (Hinton et al. 2015): the pruned student learns the teacher's token
distribution at temperature T as well as the labels, on assistant tokens only.

loss = kd_alpha * T^2 * KL(teacher_T || student_T) + (1 - kd_alpha) * CE(labels); the T^2 keeps the soft term's
gradients on the scale of the hard one's as T changes. KD heals pruned models only: an unpruned model distilled
from models/base would learn from itself, so finetune_full stays plain LoRA (and can serve as the teacher).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from transformers import AutoConfig, AutoTokenizer, PreTrainedModel

from prunetune.chat import IGNORE_INDEX
from prunetune.config import PrunetuneError, require
from prunetune.training import HealingTrainer


@dataclass
class DistillationTerms:
    """Sums over the answer tokens of a batch; the loss divides them by a token count."""

    kl_sum: torch.Tensor  # sum of KL(teacher_T || student_T) per token
    ce_sum: torch.Tensor  # sum of the student's cross-entropy on the labels (T = 1)
    tokens: torch.Tensor  # answer tokens in the batch
    student_logits: torch.Tensor  # [tokens, vocab] the student's logits at those tokens (for the logged metrics)
    targets: torch.Tensor  # [tokens] their labels

    def loss(self, alpha: float, temperature: float, num_items: torch.Tensor | int | None = None) -> torch.Tensor:
        """The mixed loss per answer token; num_items (the trainer's count over a whole accumulated batch) if given."""
        denominator = torch.as_tensor(self.tokens if num_items is None else num_items).clamp(min=1)
        return (alpha * temperature**2 * self.kl_sum + (1 - alpha) * self.ce_sum) / denominator


def distillation_terms(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, temperature: float
) -> DistillationTerms:
    """KL and CE sums over answer tokens. labels are aligned with the input ids, as the trainer passes them: the logits
    at position t predict the label at t + 1; -100 marks prompt and padding."""
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student logits {tuple(student_logits.shape)} != teacher's {tuple(teacher_logits.shape)}")
    targets = labels[..., 1:]
    answer = targets != IGNORE_INDEX
    student = student_logits[..., :-1, :][answer].float()  # only answer positions: [tokens, vocab], not the batch
    teacher = teacher_logits[..., :-1, :][answer].float()
    student_log_t = F.log_softmax(student / temperature, dim=-1)
    teacher_log_t = F.log_softmax(teacher / temperature, dim=-1)
    kl = F.kl_div(student_log_t, teacher_log_t, log_target=True, reduction="none").sum(dim=-1)
    ce = F.cross_entropy(student, targets[answer], reduction="sum")
    return DistillationTerms(kl.sum(), ce, answer.sum(), student, targets[answer])


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    alpha: float,
    temperature: float,
    num_items: torch.Tensor | int | None = None,
) -> torch.Tensor:
    """alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE, per answer token (labels != -100)."""
    return distillation_terms(student_logits, teacher_logits, labels, temperature).loss(alpha, temperature, num_items)


# ---------------------------------------------------------------- params and the teacher

TRAIN_METHODS = ("lora", "kd")


def check_kd_params(cfg: dict[str, Any]) -> None:
    """train.method and, for kd, its teacher and loss knobs (a missing method means lora)."""
    method = cfg.get("method", "lora")
    require(method in TRAIN_METHODS, "train.method", f"must be one of {', '.join(TRAIN_METHODS)}; got {method!r}")
    if method != "kd":
        return
    teacher = cfg.get("teacher")
    require(isinstance(teacher, str) and teacher, "train.teacher", f"must be a model directory, got {teacher!r}")
    alpha = cfg.get("kd_alpha")
    require(
        isinstance(alpha, int | float) and not isinstance(alpha, bool) and 0 <= alpha <= 1,
        "train.kd_alpha",
        f"must be a number in [0, 1], got {alpha!r}",
    )
    temperature = cfg.get("kd_temperature")
    require(
        isinstance(temperature, int | float) and not isinstance(temperature, bool) and temperature > 0,
        "train.kd_temperature",
        f"must be a number > 0, got {temperature!r}",
    )


def distillation_teacher(cfg: dict[str, Any], model_meta: dict[str, Any]) -> Path | None:
    """The teacher directory when this model is healed by KD: train.method kd and a pruned model (its meta lists
    removed_layers). An unpruned model has nothing to recover from models/base, so it is healed with plain LoRA."""
    if cfg.get("method", "lora") != "kd" or not model_meta.get("removed_layers"):
        return None
    return Path(cfg["teacher"])


def load_teacher(teacher_dir: Path, student_tokenizer: Any, student: PreTrainedModel, device: torch.device) -> Any:
    """The frozen teacher, after checking (before its weights are read) that it speaks the student's vocabulary."""
    from prunetune.models import check_causal_lm_dir, load_model

    check_causal_lm_dir(teacher_dir, param="train.teacher")
    teacher_tokenizer = AutoTokenizer.from_pretrained(teacher_dir, trust_remote_code=False)
    if teacher_tokenizer.get_vocab() != student_tokenizer.get_vocab():
        raise PrunetuneError(
            f"params.yaml: train.teacher {teacher_dir} has a different tokenizer vocabulary than the student "
            f"({len(teacher_tokenizer)} vs {len(student_tokenizer)} tokens); KD compares token distributions, "
            "so the teacher must share the student's tokenizer"
        )
    teacher_vocab = AutoConfig.from_pretrained(teacher_dir).vocab_size
    require(
        teacher_vocab == student.config.vocab_size,
        "train.teacher",
        f"{teacher_dir} has {teacher_vocab} output logits, the student {student.config.vocab_size}",
    )
    teacher, _ = load_model(teacher_dir, device=device, dtype=student.dtype, param="train.teacher")
    return teacher.requires_grad_(False)


# ---------------------------------------------------------------- the trainer


class DistillationTrainer(HealingTrainer):
    """HealingTrainer whose loss mixes the labels' cross-entropy with the KL to a frozen teacher; it logs the same
    curves (loss, mean_token_accuracy, entropy) plus the two parts of the loss (kd_kl, kd_ce, per answer token)."""

    def __init__(self, *args: Any, teacher: PreTrainedModel, kd_alpha: float, kd_temperature: float, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.teacher = teacher.eval()
        self.kd_alpha = float(kd_alpha)
        self.kd_temperature = float(kd_temperature)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mode = "train" if self.model.training else "eval"
        forward_inputs = {key: value for key, value in inputs.items() if key not in ("labels", "use_cache")}
        outputs = model(**forward_inputs, use_cache=False)
        device = outputs.logits.device
        if next(self.teacher.parameters()).device != device:  # under DDP each rank's student sits on its own device
            self.teacher.to(device)
        with torch.no_grad():
            teacher_logits = self.teacher(**forward_inputs, use_cache=False).logits
        terms = distillation_terms(outputs.logits, teacher_logits, inputs["labels"], self.kd_temperature)
        loss = terms.loss(self.kd_alpha, self.kd_temperature, num_items_in_batch)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes  # as SFTTrainer: the count spans ranks, DDP averages
        self._record_metrics(mode, terms, inputs)
        return (loss, outputs) if return_outputs else loss

    def _record_metrics(self, mode: str, terms: DistillationTerms, inputs: dict[str, torch.Tensor]) -> None:
        """The metrics SFTTrainer.compute_loss records, so the KD run's curves match a LoRA run's."""
        with torch.no_grad():
            gather = self.accelerator.gather_for_metrics
            log_probs = F.log_softmax(terms.student_logits, dim=-1)
            sums = torch.stack(
                [
                    terms.tokens.float(),
                    -(log_probs.exp() * log_probs).sum(),
                    (terms.student_logits.argmax(dim=-1) == terms.targets).sum().float(),
                    terms.kl_sum.detach(),
                    terms.ce_sum.detach(),
                ]
            )
            tokens, entropy, correct, kl, ce = gather(sums.unsqueeze(0)).sum(dim=0).tolist()
        per_token = max(tokens, 1.0)
        for name, value in (("entropy", entropy), ("mean_token_accuracy", correct), ("kd_kl", kl), ("kd_ce", ce)):
            self._metrics[mode][name].append(value / per_token)
        if mode == "train" and "attention_mask" in inputs:
            self._total_train_tokens += int(gather(inputs["attention_mask"].sum()).sum().item())
        self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
