"""The two healing trainers and their losses, in one place: LoRA on the labels (HealingTrainer, averaged per token or
per example) and knowledge distillation from a frozen teacher (DistillationTrainer), plus the dvclive callback both
log through. Only public Trainer hooks are used (training_step, compute_loss, log, callbacks).

Both compute their loss at answer positions only (a tenth of a sample-corpus batch; TRL's fused head scores every
position on a CPU), and as eval's scoring does, with at most SCORE_CHUNK_POSITIONS rows of full-vocabulary logits at
once: the LM head runs on chunks of the answer positions' last hidden states under activation checkpointing. The
metrics TRL would log (entropy, mean_token_accuracy, num_tokens) are recorded here the same way.

Knowledge distillation (Hinton et al. 2015): the pruned student learns the teacher's token distribution at
temperature T as well as the labels, on assistant tokens only. loss = kd_alpha * T^2 * KL(teacher_T || student_T) +
(1 - kd_alpha) * CE(labels); the T^2 keeps the soft term's gradients on the scale of the hard one's as T changes.
KD heals pruned models only: an unpruned model distilled from models/base would learn from itself, so
finetune_full stays plain LoRA (and can serve as the teacher).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint
from transformers import AutoConfig, AutoTokenizer, PreTrainedModel, TrainerCallback
from transformers.modeling_outputs import CausalLMOutput
from trl import SFTTrainer

from prunetune.config import PrunetuneError, require
from prunetune.generation import SCORE_CHUNK_POSITIONS, AnswerTokens, output_head, without_padding_mask
from prunetune.models import check_causal_lm_dir, load_model
from prunetune.packing import shared_attention_mask
from prunetune.params import TrainParams

# ---------------------------------------------------------------- answer tokens and the label loss


def example_mean_nll(token_nll: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """The mean over examples of each example's mean answer-token NLL, so every answer weighs the same whatever its
    length; examples without answer tokens do not count. A batch without any is a finite zero."""
    if token_nll.numel() == 0:
        return token_nll.sum()
    counts = torch.bincount(rows)
    sums = torch.zeros(len(counts), dtype=token_nll.dtype, device=token_nll.device).index_add(0, rows, token_nll)
    has_answer = counts > 0
    return (sums[has_answer] / counts[has_answer]).mean()


def answer_hidden_states(model: Any, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, AnswerTokens]:
    """The last hidden states at answer positions [tokens, H], through the model's own forward (so DDP and peft see
    it) with no logits built (logits_to_keep: none). Shared rows (packing.collate's branch_ids) attend through
    their 4D mask; a plain right-padded batch needs no mask (without_padding_mask)."""
    branch_ids = inputs.get("branch_ids")
    answer = AnswerTokens.of(inputs["labels"], branch_ids)
    forward_inputs = {key: value for key, value in inputs.items() if key not in ("labels", "use_cache", "branch_ids")}
    if branch_ids is None:
        forward_inputs = without_padding_mask(forward_inputs)
    else:
        config = model.config if hasattr(model, "config") else model.module.config  # DDP wraps the model
        forward_inputs["attention_mask"] = shared_attention_mask(
            branch_ids, config._attn_implementation, next(model.parameters()).dtype
        )
    no_logits = torch.zeros(0, dtype=torch.long, device=answer.keep.device)
    outputs = model(**forward_inputs, use_cache=False, output_hidden_states=True, logits_to_keep=no_logits)
    return outputs.hidden_states[-1][answer.keep], answer  # the last one has the final norm applied


NLL, ENTROPY, HIT, KL = range(4)  # the columns of answer_token_terms


def _as_head_input(head: Any, hidden: torch.Tensor) -> torch.Tensor:
    """In the head's dtype, as the model's own forward hands it over (the final norm may return float32)."""
    weight = next(head.parameters(), None)
    return hidden if weight is None else hidden.to(weight.dtype)


def _chunk_terms(
    head: Any, hidden: torch.Tensor, targets: torch.Tensor, teacher: tuple[Any, torch.Tensor] | None, temperature: float
) -> torch.Tensor:
    logits = head(hidden).float()
    log_probs = F.log_softmax(logits, dim=-1)
    nll = -log_probs.gather(-1, targets[:, None]).squeeze(-1)
    with torch.no_grad():
        entropy = -(log_probs.exp() * log_probs).sum(dim=-1)
        hit = (logits.argmax(dim=-1) == targets).float()
    kl = torch.zeros_like(nll)
    if teacher is not None:
        teacher_head, teacher_hidden = teacher
        with torch.no_grad():
            teacher_log_t = F.log_softmax(teacher_head(teacher_hidden).float() / temperature, dim=-1)
        student_log_t = F.log_softmax(logits / temperature, dim=-1)
        kl = F.kl_div(student_log_t, teacher_log_t, log_target=True, reduction="none").sum(dim=-1)
    return torch.stack([nll, entropy, hit, kl], dim=1)


def answer_token_terms(
    head: Any,
    hidden: torch.Tensor,
    targets: torch.Tensor,
    teacher: tuple[Any, torch.Tensor] | None = None,
    temperature: float = 1.0,
    chunk: int = SCORE_CHUNK_POSITIONS,
) -> torch.Tensor:
    """Per answer token [tokens, 4]: its NLL, the entropy and top-1 hit of the prediction (no gradient), and with a
    teacher (its LM head and its last hidden states at the same positions) KL(teacher_T || student_T).

    hidden: [tokens, H], the last hidden states that predict targets [tokens]. The head runs on `chunk` rows at a time
    under activation checkpointing, so at most one chunk of full-vocabulary logits exists, forward or backward."""
    hidden = _as_head_input(head, hidden)
    if teacher is not None:
        teacher = (teacher[0], _as_head_input(*teacher))
    if len(targets) == 0:
        return hidden.new_zeros((0, 4), dtype=torch.float32) + hidden.sum() * 0  # no answer: zero, still in the graph
    parts = [
        checkpoint(
            _chunk_terms,
            head,
            hidden[start : start + chunk],
            targets[start : start + chunk],
            None if teacher is None else (teacher[0], teacher[1][start : start + chunk]),
            temperature,
            use_reentrant=False,
        )
        for start in range(0, len(targets), chunk)
    ]
    return torch.cat(parts)


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

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        hidden, answer = answer_hidden_states(model, inputs)
        terms = answer_token_terms(output_head(self.model)[1], hidden, answer.targets)
        if self.weigh_examples:
            loss = example_mean_nll(terms[:, NLL], answer.rows)
            # training: a micro-batch mean, so divide by the accumulation steps here, as Trainer.training_step does
            # not for a model that takes num_items_in_batch; DDP averages it over processes. Evaluation: the mean.
            if num_items_in_batch is not None and self.model_accepts_loss_kwargs:
                loss = loss / self.current_gradient_accumulation_steps
        else:
            loss = terms[:, NLL].sum() / self._answer_token_count(answer, num_items_in_batch)
        self.record_metrics(terms, inputs)
        return (loss, CausalLMOutput(loss=loss)) if return_outputs else loss  # no logits: none were built

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

    def record_metrics(self, terms: torch.Tensor, inputs: dict[str, torch.Tensor], kd: bool = False) -> None:
        """The metrics SFTTrainer.compute_loss records (entropy and top-1 accuracy per answer token, input tokens seen),
        with kd the two parts of the KD loss per answer token, gathered over ranks."""
        mode = "train" if self.model.training else "eval"
        with torch.no_grad():
            sums = {
                "tokens": float(len(terms)),
                "entropy": terms[:, ENTROPY].sum(),
                "mean_token_accuracy": terms[:, HIT].sum(),
            }
            if kd:
                sums |= {"kd_kl": terms[:, KL].sum(), "kd_ce": terms[:, NLL].sum()}
            local = torch.stack(
                [torch.as_tensor(value, dtype=torch.float32, device=terms.device) for value in sums.values()]
            )
            gathered = self.accelerator.gather_for_metrics(local.unsqueeze(0)).sum(dim=0)
        values = dict(zip(sums, gathered.tolist(), strict=True))
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


def distillation_loss(
    terms: torch.Tensor, alpha: float, temperature: float, token_count: torch.Tensor | int | None = None
) -> torch.Tensor:
    """kd_alpha * T^2 * KL + (1 - kd_alpha) * CE per answer token, from answer_token_terms with a teacher: per
    token_count (the trainer's, over an accumulated batch) if given, else per token of these terms."""
    denominator = torch.as_tensor(len(terms) if token_count is None else token_count).clamp(min=1)
    return (alpha * temperature**2 * terms[:, KL].sum() + (1 - alpha) * terms[:, NLL].sum()) / denominator


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
        hidden, answer = answer_hidden_states(model, inputs)
        if next(self.teacher.parameters()).device != hidden.device:  # under DDP each rank has its own device
            self.teacher.to(hidden.device)
        with torch.no_grad():
            teacher_hidden, _ = answer_hidden_states(self.teacher, inputs)
        teacher = (output_head(self.teacher)[1], teacher_hidden)
        terms = answer_token_terms(output_head(self.model)[1], hidden, answer.targets, teacher, self.kd_temperature)
        count = None if num_items_in_batch is None else self._answer_token_count(answer, num_items_in_batch)
        loss = distillation_loss(terms, self.kd_alpha, self.kd_temperature, count)
        self.record_metrics(terms, inputs, kd=True)
        return (loss, CausalLMOutput(loss=loss)) if return_outputs else loss  # no logits: none were built
