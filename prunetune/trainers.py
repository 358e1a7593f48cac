"""The two healing trainers and their losses, in one place: LoRA on the labels (HealingTrainer, averaged per token or
per example) and knowledge distillation from a frozen teacher (DistillationTrainer), plus the dvclive callback both
log through. Only public Trainer hooks are used (training_step, compute_loss, log, callbacks).

Both compute their loss at answer positions only: the LM head runs on the positions whose next token is an answer
token (the model's own `logits_to_keep`), a tenth of a sample-corpus batch, instead of on every position as TRL's
fused head does. The metrics TRL would log (entropy, mean_token_accuracy, num_tokens) are recorded here the same way.

Knowledge distillation (Hinton et al. 2015): the pruned student learns the teacher's token distribution at
temperature T as well as the labels, on assistant tokens only. loss = kd_alpha * T^2 * KL(teacher_T || student_T) +
(1 - kd_alpha) * CE(labels); the T^2 keeps the soft term's gradients on the scale of the hard one's as T changes.
KD heals pruned models only: an unpruned model distilled from models/base would learn from itself, so
finetune_full stays plain LoRA (and can serve as the teacher).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from transformers import AutoConfig, AutoTokenizer, PreTrainedModel, TrainerCallback
from trl import SFTTrainer

from prunetune.chat import IGNORE_INDEX
from prunetune.config import PrunetuneError, require
from prunetune.models import check_causal_lm_dir, load_model
from prunetune.params import TrainParams

# ---------------------------------------------------------------- answer tokens and the label loss


@dataclass
class AnswerTokens:
    """A batch's answer tokens, flattened in row-major order: where the LM head must run and what it must predict."""

    keep: torch.Tensor  # [batch, seq] bool: the logits at t predict an answer token at t + 1 (the `logits_to_keep`)
    targets: torch.Tensor  # [tokens] those answer tokens
    rows: torch.Tensor  # [tokens] the example each one belongs to

    @classmethod
    def of(cls, labels: torch.Tensor) -> AnswerTokens:
        """From labels aligned with the input ids, as the trainer passes them (IGNORE_INDEX on prompt and padding)."""
        next_labels = labels[:, 1:]
        keep = torch.zeros_like(labels, dtype=torch.bool)
        keep[:, :-1] = next_labels != IGNORE_INDEX
        rows = keep.nonzero()[:, 0]
        return cls(keep=keep, targets=next_labels[keep[:, :-1]], rows=rows)


def example_mean_nll(token_nll: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """The mean over examples of each example's mean answer-token NLL, so every answer weighs the same whatever its
    length; examples without answer tokens do not count. A batch without any is a finite zero."""
    if token_nll.numel() == 0:
        return token_nll.sum()
    counts = torch.bincount(rows)
    sums = torch.zeros(len(counts), dtype=token_nll.dtype, device=token_nll.device).index_add(0, rows, token_nll)
    has_answer = counts > 0
    return (sums[has_answer] / counts[has_answer]).mean()


class HealingTrainer(SFTTrainer):
    """SFTTrainer with its loss at answer positions only, averaged per token (TRL's nll) or, with weigh_examples
    (train.loss_weighting: example), per example; it stops on a non-finite loss instead of writing a broken model.

    Per-token averaging lets long answers dominate: in the sample corpus type answers are 4% of the answer tokens, so
    a short task barely trains under it."""

    def __init__(self, *args: Any, weigh_examples: bool = False, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.weigh_examples = weigh_examples
        # Our own record of what SFTTrainer.compute_loss would have recorded (its _metrics are private): per-batch
        # values, averaged into the logs by log() as SFTTrainer averages its own.
        self.answer_metrics: dict[str, dict[str, list[float]]] = {"train": defaultdict(list), "eval": defaultdict(list)}
        self.train_tokens_seen = 0

    def answer_forward(self, model: Any, inputs: dict[str, torch.Tensor]) -> tuple[Any, AnswerTokens]:
        """The model's forward with the LM head at answer positions only: outputs.logits is [tokens, vocab]."""
        answer = AnswerTokens.of(inputs["labels"])
        forward_inputs = {key: value for key, value in inputs.items() if key not in ("labels", "use_cache")}
        return model(**forward_inputs, use_cache=False, logits_to_keep=answer.keep), answer

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs, answer = self.answer_forward(model, inputs)
        token_nll = F.cross_entropy(outputs.logits.float(), answer.targets, reduction="none")
        if self.weigh_examples:
            loss = example_mean_nll(token_nll, answer.rows)
            # training: a micro-batch mean, so divide by the accumulation steps here, as Trainer.training_step does
            # not for a model that takes num_items_in_batch; DDP averages it over processes. Evaluation: the mean.
            if num_items_in_batch is not None and self.model_accepts_loss_kwargs:
                loss = loss / self.current_gradient_accumulation_steps
        else:
            loss = token_nll.sum() / self._answer_token_count(answer, num_items_in_batch)
        self.record_metrics(outputs.logits, answer, inputs)
        return (loss, outputs) if return_outputs else loss

    def _answer_token_count(self, answer: AnswerTokens, num_items_in_batch: Any) -> torch.Tensor:
        """What a per-token loss divides by: the trainer's count over the whole accumulated batch and all ranks when
        it gives one (DDP then averages, so the ranks' share is multiplied back, as SFTTrainer does), else this
        batch's."""
        if num_items_in_batch is None:
            return torch.as_tensor(len(answer.targets)).clamp(min=1)
        count = torch.as_tensor(num_items_in_batch).clamp(min=1)
        if self.args.average_tokens_across_devices:
            count = count / self.accelerator.num_processes
        return count

    def record_metrics(
        self, logits: torch.Tensor, answer: AnswerTokens, inputs: dict[str, torch.Tensor], **sums: torch.Tensor
    ) -> None:
        """The metrics SFTTrainer.compute_loss records (entropy and top-1 accuracy per answer token, input tokens seen),
        plus any further per-token sums (the KD terms), gathered over ranks."""
        mode = "train" if self.model.training else "eval"
        with torch.no_grad():
            log_probs = F.log_softmax(logits.float(), dim=-1)
            totals = {
                "tokens": torch.as_tensor(float(len(answer.targets)), device=logits.device),
                "entropy": -(log_probs.exp() * log_probs).sum(),
                "mean_token_accuracy": (logits.argmax(dim=-1) == answer.targets).sum().float(),
                **{name: value.detach().float() for name, value in sums.items()},
            }
            gathered = self.accelerator.gather_for_metrics(torch.stack(list(totals.values())).unsqueeze(0)).sum(dim=0)
        values = dict(zip(totals, gathered.tolist(), strict=True))
        per_token = max(values.pop("tokens"), 1.0)
        for name, value in values.items():
            self.answer_metrics[mode][name].append(value / per_token)
        if mode == "train" and "attention_mask" in inputs:
            self.train_tokens_seen += int(self.accelerator.gather_for_metrics(inputs["attention_mask"].sum()).sum())
        self.answer_metrics[mode]["num_tokens"] = [self.train_tokens_seen]

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Trainer.log, a public hook: the recorded metrics averaged since the last log, eval_-prefixed in eval."""
        mode = "train" if self.model.training else "eval"
        prefix = "eval_" if mode == "eval" else ""
        logs.update({f"{prefix}{key}": sum(values) / len(values) for key, values in self.answer_metrics[mode].items()})
        self.answer_metrics[mode].clear()
        super().log(logs, start_time)

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        if not torch.isfinite(loss).all():
            raise PrunetuneError(
                f"train: the loss became {loss.item()} at step {self.state.global_step + 1}; no model was written "
                "(lower train.learning_rate or check the data)"
            )
        return loss


class DVCLiveStepCallback(TrainerCallback):
    """Logs to a dvclive Live through the public callback hooks: clean curve names (train/loss, eval/loss, ...), the
    trainer's global step on the x axis so train and eval points line up, and the history replayed after a resume so
    curves stay whole. (transformers' DVCLiveCallback would also dump every TrainingArguments field as params.)"""

    CURVES = ("loss", "mean_token_accuracy", "entropy", "grad_norm", "learning_rate", "kd_kl", "kd_ce")

    def __init__(self, live: Any):
        self.live = live

    def on_train_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.live.end()

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if state.is_world_process_zero:
            for logs in state.log_history:  # non-empty only when resuming
                self._log(logs["step"], logs)

    def on_log(self, args, state, control, model=None, logs=None, **kwargs):
        if state.is_world_process_zero:
            self._log(state.global_step, logs)

    def _log(self, step: int, logs: dict[str, Any]) -> None:
        self.live.step = step
        for key, value in logs.items():
            split, name = ("eval", key[5:]) if key.startswith("eval_") else ("train", key)
            if name in self.CURVES:
                self.live.log_metric(f"{split}/{name}", value)


# ---------------------------------------------------------------- knowledge distillation


@dataclass
class DistillationTerms:
    """Sums over the answer tokens of a batch; the loss divides them by a token count."""

    kl_sum: torch.Tensor  # sum of KL(teacher_T || student_T) per token
    ce_sum: torch.Tensor  # sum of the student's cross-entropy on the labels (T = 1)
    tokens: int  # answer tokens in the batch

    def loss(self, alpha: float, temperature: float, token_count: torch.Tensor | int | None = None) -> torch.Tensor:
        """The mixed loss per answer token: per token_count (the trainer's, over an accumulated batch) if given."""
        denominator = torch.as_tensor(self.tokens if token_count is None else token_count).clamp(min=1)
        return (alpha * temperature**2 * self.kl_sum + (1 - alpha) * self.ce_sum) / denominator


def distillation_terms(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor, temperature: float
) -> DistillationTerms:
    """KL and CE sums over answer tokens, from both models' logits at answer positions ([tokens, vocab], as
    HealingTrainer.answer_forward returns them) and the answer tokens they predict ([tokens])."""
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student logits {tuple(student_logits.shape)} != teacher's {tuple(teacher_logits.shape)}")
    student, teacher = student_logits.float(), teacher_logits.float()
    student_log_t = F.log_softmax(student / temperature, dim=-1)
    teacher_log_t = F.log_softmax(teacher / temperature, dim=-1)
    kl = F.kl_div(student_log_t, teacher_log_t, log_target=True, reduction="none").sum(dim=-1)
    ce = F.cross_entropy(student, targets, reduction="sum")
    return DistillationTerms(kl.sum(), ce, len(targets))


def distillation_teacher(cfg: TrainParams, model_meta: dict[str, Any]) -> Path | None:
    """The teacher directory when this model is healed by KD: train.method kd and a pruned model (its meta lists
    removed_layers). An unpruned model has nothing to recover from models/base, so it is healed with plain LoRA."""
    if cfg.method != "kd" or not model_meta.get("removed_layers"):
        return None
    return Path(cfg.teacher)


def load_teacher(teacher_dir: Path, student_tokenizer: Any, student: PreTrainedModel, device: torch.device) -> Any:
    """The frozen teacher, after checking (before its weights are read) that it speaks the student's vocabulary."""
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


class DistillationTrainer(HealingTrainer):
    """HealingTrainer whose loss mixes the labels' cross-entropy with the KL to a frozen teacher; it logs the same
    curves (loss, mean_token_accuracy, entropy) plus the two parts of the loss (kd_kl, kd_ce, per answer token)."""

    def __init__(self, *args: Any, teacher: PreTrainedModel, kd_alpha: float, kd_temperature: float, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.teacher = teacher.eval()
        self.kd_alpha = float(kd_alpha)
        self.kd_temperature = float(kd_temperature)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs, answer = self.answer_forward(model, inputs)
        if next(self.teacher.parameters()).device != outputs.logits.device:  # under DDP each rank has its own device
            self.teacher.to(outputs.logits.device)
        with torch.no_grad():
            teacher_outputs, _ = self.answer_forward(self.teacher, inputs)
        terms = distillation_terms(outputs.logits, teacher_outputs.logits, answer.targets, self.kd_temperature)
        count = None if num_items_in_batch is None else self._answer_token_count(answer, num_items_in_batch)
        loss = terms.loss(self.kd_alpha, self.kd_temperature, count)
        self.record_metrics(outputs.logits, answer, inputs, kd_kl=terms.kl_sum, kd_ce=terms.ce_sum)
        return (loss, outputs) if return_outputs else loss
