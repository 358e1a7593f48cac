"""The two healing trainers and their losses, in one place: LoRA on the labels (HealingTrainer, with an optional
per-example weighting) and knowledge distillation from a frozen teacher (DistillationTrainer), plus the dvclive
callback both log through. Only public Trainer hooks are used (training_step, compute_loss, log, callbacks).

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

# ---------------------------------------------------------------- LoRA on the labels


def example_mean_nll(log_probs: torch.Tensor, label_mask: torch.Tensor) -> torch.Tensor:
    """The mean over examples of each example's mean answer-token NLL, so every answer weighs the same whatever its
    length; examples without answer tokens are left out. Takes the fused LM head's per-token outputs (TRL's
    `log_probs`, zero where unlabelled, and `label_mask`), so no full-vocabulary logits are built."""
    counts = label_mask.sum(dim=1)
    per_example = -(log_probs * label_mask).sum(dim=1) / counts.clamp(min=1)
    has_answer = counts > 0
    return per_example[has_answer].sum() / has_answer.sum().clamp(min=1)


class HealingTrainer(SFTTrainer):
    """SFTTrainer that stops on a non-finite loss instead of writing a broken model, and with weigh_examples
    (train.loss_weighting: example) averages over examples instead of tokens.

    Per-token averaging lets long answers dominate: in the sample corpus type answers are 4% of the answer tokens, so
    a short task barely trains. The example weighting reads the per-token log-probabilities of SFTTrainer's own fused
    forward through a forward hook, so a step costs one forward (a compute_loss_func, or return_outputs, would cost
    TRL a second forward) and TRL still records its metrics."""

    def __init__(self, *args: Any, weigh_examples: bool = False, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.weigh_examples = weigh_examples

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not self.weigh_examples:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        forwards: list[Any] = []
        hook = model.register_forward_hook(lambda _module, _args, output: forwards.append(output))
        try:
            result = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        finally:
            hook.remove()
        fused = forwards[0]  # the forward TRL's loss came from (FusedCausalLMOutput: log_probs, label_mask)
        loss = example_mean_nll(fused.log_probs, fused.label_mask)
        # training: a micro-batch mean, so divide by the accumulation steps here, as Trainer.training_step does not
        # for a model that takes num_items_in_batch; DDP averages it over processes. Evaluation: the plain mean.
        if num_items_in_batch is not None and self.model_accepts_loss_kwargs:
            loss = loss / self.current_gradient_accumulation_steps
        return (loss, result[1]) if return_outputs else loss

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
        # Our own record of what SFTTrainer.compute_loss would have recorded (its _metrics are private): per-batch
        # values, averaged into the logs by log() as SFTTrainer averages its own.
        self.kd_metrics: dict[str, dict[str, list[float]]] = {"train": defaultdict(list), "eval": defaultdict(list)}
        self.kd_train_tokens = 0

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
            self.kd_metrics[mode][name].append(value / per_token)
        if mode == "train" and "attention_mask" in inputs:
            self.kd_train_tokens += int(gather(inputs["attention_mask"].sum()).sum().item())
        self.kd_metrics[mode]["num_tokens"] = [self.kd_train_tokens]

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Trainer.log, a public hook: the recorded metrics averaged since the last log, eval_-prefixed in eval."""
        mode = "train" if self.model.training else "eval"
        prefix = "eval_" if mode == "eval" else ""
        logs.update({f"{prefix}{key}": sum(values) / len(values) for key, values in self.kd_metrics[mode].items()})
        self.kd_metrics[mode].clear()
        super().log(logs, start_time)
