"""LoRA healing on TRL's SFTTrainer: one code path for every variant, loss on assistant tokens only.

The chats are tokenized here (not by TRL) so the label mask is ours to test and an example whose answer
would be cut by max_seq_length is dropped and counted instead of trained on half-masked.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from peft import LoraConfig
from transformers import EarlyStoppingCallback, TrainerCallback
from transformers.integrations import DVCLiveCallback
from transformers.trainer_utils import SchedulerType, get_last_checkpoint
from trl import SFTConfig, SFTTrainer

from prunetune.chat import DEFAULT_CHAT_DATE, IGNORE_INDEX, tokenize_chat
from prunetune.config import PrunetuneError, require, require_int

LORA_BIASES = ("none", "all", "lora_only")
LOSS_WEIGHTINGS = ("token", "example")


# ---------------------------------------------------------------- params


def _require_number(cfg: dict[str, Any], key: str, prefix: str, low: float, high: float = math.inf) -> float:
    value = cfg.get(key)
    ok = isinstance(value, int | float) and not isinstance(value, bool) and low <= value <= high
    require(ok, f"{prefix}.{key}", f"must be a number in [{low}, {high}], got {value!r}")
    return float(value)


def linear_module_names(model: torch.nn.Module) -> set[str]:
    """The short names (q_proj, down_proj, ...) of the model's linear layers: what LoRA can target."""
    return {name.rsplit(".", 1)[-1] for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}


def check_lora_params(cfg: dict[str, Any], model: torch.nn.Module) -> None:
    require_int(cfg, "r", "lora", minimum=1)
    _require_number(cfg, "alpha", "lora", 1e-9)
    _require_number(cfg, "dropout", "lora", 0.0, 0.999)
    require(cfg.get("bias") in LORA_BIASES, "lora.bias", f"must be one of {LORA_BIASES}, got {cfg.get('bias')!r}")
    require(isinstance(cfg.get("use_rslora"), bool), "lora.use_rslora", "must be true or false")
    targets = cfg.get("target_modules")
    require(
        isinstance(targets, list) and targets and all(isinstance(t, str) for t in targets),
        "lora.target_modules",
        f"must be a non-empty list of module names, got {targets!r}",
    )
    available = linear_module_names(model)
    unknown = sorted(set(targets) - available)
    require(not unknown, "lora.target_modules", f"names {unknown}, not linear layers of this model {sorted(available)}")


def check_train_params(cfg: dict[str, Any]) -> None:
    _require_number(cfg, "learning_rate", "train", 1e-12)
    schedulers = [s.value for s in SchedulerType]
    require(cfg.get("scheduler") in schedulers, "train.scheduler", f"must be one of {schedulers}")
    _require_number(cfg, "warmup_ratio", "train", 0.0, 0.999)
    _require_number(cfg, "weight_decay", "train", 0.0)
    for key in ("batch_size", "gradient_accumulation_steps", "eval_steps", "early_stopping_patience", "max_seq_length"):
        require_int(cfg, key, "train", minimum=1)
    require_int(cfg, "num_processes", "train", minimum=1)
    require_int(cfg, "seed", "train", minimum=0)
    require_int(cfg, "max_steps", "train", minimum=-1)
    _require_number(cfg, "max_epochs", "train", 1e-9)
    weighting = cfg.get("loss_weighting", "token")
    require(
        weighting in LOSS_WEIGHTINGS, "train.loss_weighting", f"must be one of {LOSS_WEIGHTINGS}, got {weighting!r}"
    )
    require(
        weighting == "token" or cfg.get("method", "lora") == "lora",
        "train.loss_weighting",
        "example weighting is for train.method lora; kd averages over tokens (set loss_weighting: token)",
    )
    from prunetune.distill import check_kd_params  # distill builds on this module

    check_kd_params(cfg)


# ---------------------------------------------------------------- data


def build_dataset(
    examples: list[dict[str, Any]], tokenizer: Any, max_seq_length: int, date_string: str = DEFAULT_CHAT_DATE
) -> tuple[Dataset, int]:
    """Tokenized examples (chat.tokenize_chat) that fit max_seq_length whole, and how many did not (dropped,
    never truncated)."""
    rows, too_long = [], 0
    for example in examples:
        row = tokenize_chat(tokenizer, example["messages"], date_string)
        if len(row["input_ids"]) > max_seq_length:
            too_long += 1
            continue
        rows.append(row)
    return Dataset.from_list(rows), too_long


# ---------------------------------------------------------------- trainer pieces


def per_example_nll(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each example's mean negative log-likelihood over its labelled tokens, and which examples have any."""
    targets = labels[:, 1:]
    answer = targets != IGNORE_INDEX
    token_nll = torch.nn.functional.cross_entropy(
        logits[:, :-1].float().transpose(1, 2), targets.clamp(min=0), reduction="none"
    )
    counts = answer.sum(dim=1)
    return (token_nll * answer).sum(dim=1) / counts.clamp(min=1), counts > 0


class ExampleWeightedLoss:
    """compute_loss_func that weighs every example equally, whatever its answer's length.

    Per-token averaging lets long answers dominate: in the sample corpus type answers are 4% of the answer tokens,
    so a short task barely trains. Training: the micro-batch mean divided by the accumulation steps and the
    processes (the Trainer neither divides nor averages a compute_loss_func's loss: it multiplies by the process
    count); evaluation (num_items_in_batch None): the plain mean. Builds float logits over the whole vocabulary,
    so it suits small vocabularies; the real study keeps loss_weighting: token (TRL's fused path)."""

    def __init__(self, accumulation_steps: int, processes: int):
        self.scale = accumulation_steps * processes

    def __call__(self, outputs: Any, labels: torch.Tensor, num_items_in_batch: Any = None) -> torch.Tensor:
        per_example, has_answer = per_example_nll(outputs.logits, labels)
        loss = per_example[has_answer].sum() / has_answer.sum().clamp(min=1)
        return loss if num_items_in_batch is None else loss / self.scale


class HealingTrainer(SFTTrainer):
    """SFTTrainer that stops on a non-finite loss instead of writing a broken model."""

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        if not torch.isfinite(loss).all():
            raise PrunetuneError(
                f"train: the loss became {loss.item()} at step {self.state.global_step + 1}; no model was written "
                "(lower train.learning_rate or check the data)"
            )
        return loss


class DVCLiveStepCallback(DVCLiveCallback):
    """DVCLiveCallback with clean curve names (train/loss, eval/loss, ...), the trainer's global step on the
    x axis so train and eval points line up, and the history replayed after a resume so curves stay whole."""

    CURVES = ("loss", "mean_token_accuracy", "entropy", "grad_norm", "learning_rate", "kd_kl", "kd_ce")

    def setup(self, args, state, model):
        self._initialized = True  # the Live is ours; no params.yaml dump of every TrainingArguments field

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


def run_fingerprint(*parts: Any) -> str:
    """Identifies a training run (params and data); a checkpoint from another run is never resumed."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def prepare_scratch(scratch_dir: Path, fingerprint: str) -> str | None:
    """The checkpoint to resume from, if scratch_dir holds one of this very run; otherwise a clean dir."""
    stamp = scratch_dir / "run.json"
    if stamp.is_file() and json.loads(stamp.read_text())["fingerprint"] == fingerprint:
        return get_last_checkpoint(str(scratch_dir))
    shutil.rmtree(scratch_dir, ignore_errors=True)
    scratch_dir.mkdir(parents=True)
    stamp.write_text(json.dumps({"fingerprint": fingerprint}) + "\n")
    return None


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def lora_config(cfg: dict[str, Any]) -> LoraConfig:
    """peft's LoraConfig from params.yaml's lora section (checked by check_lora_params)."""
    return LoraConfig(
        r=cfg["r"],
        lora_alpha=cfg["alpha"],
        lora_dropout=cfg["dropout"],
        target_modules=cfg["target_modules"],
        bias=cfg["bias"],
        use_rslora=cfg["use_rslora"],
        task_type="CAUSAL_LM",
    )


def sft_config(cfg: dict[str, Any], scratch_dir: Path, device: torch.device, bf16: bool | None = None) -> SFTConfig:
    """TRL's config from params.yaml's train section; bf16 autocast when the model is in bf16 (default: on a GPU
    that has it)."""
    on_gpu = device.type == "cuda"
    if bf16 is None:
        bf16 = on_gpu and torch.cuda.is_bf16_supported()
    return SFTConfig(
        output_dir=str(scratch_dir),
        learning_rate=cfg["learning_rate"],
        lr_scheduler_type=cfg["scheduler"],
        warmup_steps=cfg["warmup_ratio"],
        weight_decay=cfg["weight_decay"],
        per_device_train_batch_size=cfg["batch_size"],
        per_device_eval_batch_size=cfg["batch_size"],
        gradient_accumulation_steps=cfg["gradient_accumulation_steps"],
        num_train_epochs=cfg["max_epochs"],
        max_steps=cfg["max_steps"],
        eval_strategy="steps",
        eval_steps=cfg["eval_steps"],
        eval_on_start=True,
        save_strategy="steps",
        save_steps=cfg["eval_steps"],
        save_total_limit=2,
        load_best_model_at_end=True,
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        logging_steps=cfg["logging_steps"],
        seed=cfg["seed"],
        data_seed=cfg["seed"],
        max_length=cfg["max_seq_length"],
        train_sampling_strategy="group_by_length",
        activation_checkpointing=cfg["gradient_checkpointing"],
        bf16=bf16,
        fp16=False,
        use_cpu=not on_gpu,
        ddp_backend="gloo" if not on_gpu and int(os.environ.get("WORLD_SIZE", "1")) > 1 else None,
        include_num_input_tokens_seen="non_padding",  # attention_mask == 1: padding is not throughput
        report_to="none",
        disable_tqdm=not is_main_process(),
        dataloader_num_workers=0,
    )


# ---------------------------------------------------------------- the whole fine-tune


def _first_and_best_eval_loss(log_history: list[dict[str, Any]]) -> tuple[float | None, float | None]:
    losses = [logs["eval_loss"] for logs in log_history if "eval_loss" in logs]
    return (losses[0], min(losses)) if losses else (None, None)


def _sort_target_modules(adapter_config: Path) -> None:
    """peft writes target_modules from a set, in hash order; sorted, the same run gives the same bytes."""
    config = json.loads(adapter_config.read_text())
    if isinstance(config.get("target_modules"), list):
        config["target_modules"] = sorted(config["target_modules"])
    adapter_config.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def finetune(
    model_dir: Path,
    lora_cfg: dict[str, Any],
    train_cfg: dict[str, Any],
    train_examples: list[dict[str, Any]],
    val_examples: list[dict[str, Any]],
    out_dir: Path,
    metrics_dir: Path,
    scratch_dir: Path,
    date_string: str = DEFAULT_CHAT_DATE,
) -> dict[str, Any] | None:
    """LoRA-heal the model in model_dir; write adapter + merged model and dvclive logs (rank 0). Returns the summary.

    date_string: the date chat templates print (params.yaml data.chat_date), the same in every stage."""
    from dvclive import Live

    from prunetune.models import load_model, pick_device, read_meta, staged_dir, write_model_files

    check_train_params(train_cfg)
    device = pick_device()
    model, tokenizer = load_model(model_dir, device=device, param=str(model_dir))
    check_lora_params(lora_cfg, model)
    from prunetune.distill import DistillationTrainer, distillation_teacher, load_teacher

    teacher_dir = distillation_teacher(train_cfg, read_meta(model_dir))  # kd heals pruned models only
    teacher = load_teacher(teacher_dir, tokenizer, model, device) if teacher_dir else None
    max_length = train_cfg["max_seq_length"]
    train_data, train_too_long = build_dataset(train_examples, tokenizer, max_length, date_string)
    val_data, val_too_long = build_dataset(val_examples, tokenizer, max_length, date_string)
    for name, data, dropped in (("train", train_data, train_too_long), ("val", val_data, val_too_long)):
        require(len(data) > 0, "train.max_seq_length", f"leaves no {name} example ({dropped} longer than {max_length})")

    args = sft_config(train_cfg, scratch_dir, device, bf16=model.dtype == torch.bfloat16)
    teacher_meta = [read_meta(teacher_dir)] if teacher_dir else []
    fingerprint = run_fingerprint(
        lora_cfg, train_cfg, train_examples, val_examples, read_meta(model_dir), date_string, *teacher_meta
    )
    with args.main_process_first(desc="prepare scratch dir"):
        resume_from = prepare_scratch(scratch_dir, fingerprint)
    args.eval_on_start = resume_from is None  # a resumed run has its first evaluation in its history already

    callbacks: list[TrainerCallback] = [
        EarlyStoppingCallback(early_stopping_patience=train_cfg["early_stopping_patience"])
    ]
    live = None
    if args.process_index == 0:
        shutil.rmtree(metrics_dir, ignore_errors=True)
        live = Live(str(metrics_dir), dvcyaml=False, save_dvc_exp=False, report=None)
        callbacks.append(DVCLiveStepCallback(live=live))
    lora = lora_config(lora_cfg)
    trainer_class, kd_args = HealingTrainer, {}
    if teacher is not None:
        trainer_class = DistillationTrainer
        kd_args = {"teacher": teacher, "kd_alpha": train_cfg["kd_alpha"], "kd_temperature": train_cfg["kd_temperature"]}
    if train_cfg.get("loss_weighting", "token") == "example":
        kd_args["compute_loss_func"] = ExampleWeightedLoss(args.gradient_accumulation_steps, args.world_size)
    trainer = trainer_class(
        model=model,
        args=args,
        train_dataset=train_data,
        eval_dataset=val_data,
        processing_class=tokenizer,
        peft_config=lora,
        callbacks=callbacks,
        **kd_args,
    )
    started = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=resume_from)
    wall_s = time.perf_counter() - started
    if args.process_index != 0:
        return None

    state = trainer.state
    first_val_loss, best_val_loss = _first_and_best_eval_loss(state.log_history)
    summary = {
        "best_val_loss": best_val_loss,
        "first_val_loss": first_val_loss,
        "best_checkpoint_step": int(state.best_model_checkpoint.rsplit("-", 1)[-1])
        if state.best_model_checkpoint
        else 0,
        "steps": state.global_step,
        "epochs": state.epoch,
        "train_tokens": state.num_input_tokens_seen,
        "tokens_per_s": result.metrics.get("train_tokens_per_second")
        or (state.num_input_tokens_seen / wall_s if wall_s else None),
        "wall_s": wall_s,
        "resumed_from_step": int(resume_from.rsplit("-", 1)[-1]) if resume_from else 0,
        "stopped_early": state.global_step < state.max_steps,
        "train_examples": len(train_data),
        "dropped_too_long_train": train_too_long,
        "dropped_too_long_val": val_too_long,
    }
    live.summary.update(summary)
    live.make_summary()

    peft_model = trainer.model
    meta = {**read_meta(model_dir), "finetuned_from": str(model_dir), "lora": lora_cfg, "train": train_cfg}
    meta["healing"] = {"method": "kd", "teacher": str(teacher_dir)} if teacher_dir else {"method": "lora"}
    with staged_dir(out_dir) as directory:
        peft_model.save_pretrained(directory / "adapter")
        _sort_target_modules(directory / "adapter" / "adapter_config.json")
        merged = peft_model.merge_and_unload()
        write_model_files(merged, tokenizer, directory, meta)
    shutil.rmtree(scratch_dir, ignore_errors=True)  # checkpoints serve a killed run only; a rerun starts afresh
    return summary
