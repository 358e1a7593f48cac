"""LoRA healing on TRL's SFTTrainer: one code path for every variant, loss on assistant tokens only.

The chats are tokenized here (not by TRL) so the label mask is ours to test and an example whose answer
would be cut by max_seq_length is dropped and counted instead of trained on half-masked.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from peft import LoraConfig
from transformers import EarlyStoppingCallback, TrainerCallback
from trl import SFTConfig

from prunetune.chat import DEFAULT_CHAT_DATE, tokenize_chat
from prunetune.config import require
from prunetune.models import load_model, pick_device, read_meta, staged_dir, write_model_files
from prunetune.packing import collate, shared_rows
from prunetune.params import LoraParams, TrainParams, as_section
from prunetune.trainers import (
    DistillationTrainer,
    DVCLiveStepCallback,
    HealingTrainer,
    distillation_teacher,
    load_teacher,
)

# ---------------------------------------------------------------- params


def linear_module_names(model: torch.nn.Module) -> set[str]:
    """The short names (q_proj, down_proj, ...) of the model's linear layers: what LoRA can target."""
    return {name.rsplit(".", 1)[-1] for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}


# ---------------------------------------------------------------- data


def build_dataset(
    examples: list[dict[str, Any]],
    tokenizer: Any,
    max_seq_length: int,
    date_string: str = DEFAULT_CHAT_DATE,
    share_prompts: bool = False,
) -> tuple[Dataset, int]:
    """Tokenized examples (chat.tokenize_chat) that fit max_seq_length whole, and how many did not (dropped,
    never truncated). With share_prompts, one row per article holds its examples (packing.shared_row)."""
    rows, articles, too_long = [], [], 0
    for example in examples:
        row = tokenize_chat(tokenizer, example["messages"], date_string)
        if len(row["input_ids"]) > max_seq_length:
            too_long += 1
            continue
        rows.append(row)
        articles.append(example["article_id"])
    if share_prompts:
        rows = shared_rows(rows, articles)
    return Dataset.from_list(rows), too_long


# ---------------------------------------------------------------- run bookkeeping


def run_fingerprint(*parts: Any) -> str:
    """Identifies a training run (params and data); a checkpoint from another run is never resumed."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


CHECKPOINT_FILES = ("trainer_state.json", "adapter_model.safetensors", "optimizer.pt", "scheduler.pt")


def checkpoint_problem(checkpoint: Path) -> str | None:
    """Why a checkpoint would not resume this run exactly (a file missing, cut short or unreadable); None if it loads.

    transformers writes checkpoint-N in place, so a kill during a save can leave any of its files torn."""
    from safetensors import safe_open

    missing = [name for name in CHECKPOINT_FILES if not (checkpoint / name).is_file()]
    rng_states = sorted(checkpoint.glob("rng_state*.pth"))
    if missing or not rng_states:
        return f"{', '.join(missing) or 'rng_state.pth'} missing"
    try:
        state = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
        int(state["global_step"]), int(state.get("num_input_tokens_seen", 0))
    except (ValueError, KeyError, TypeError) as err:
        return f"trainer_state.json unreadable ({type(err).__name__})"
    try:
        with safe_open(str(checkpoint / "adapter_model.safetensors"), framework="pt") as weights:
            for name in weights.keys():
                weights.get_tensor(name)
    except Exception as err:  # safetensors raises its own error type for a torn file
        return f"adapter_model.safetensors unreadable ({type(err).__name__})"
    for path in (checkpoint / "optimizer.pt", checkpoint / "scheduler.pt", *rng_states):
        try:
            torch.load(path, map_location="cpu", weights_only=False)
        except Exception as err:  # torch.load raises RuntimeError, EOFError, UnpicklingError... for a torn file
            return f"{path.name} unreadable ({type(err).__name__})"
    return None


def _checkpoints(scratch_dir: Path) -> list[Path]:
    """The checkpoint-N folders of a scratch dir, latest first."""
    found = [p for p in scratch_dir.glob("checkpoint-*") if p.is_dir() and p.name.split("-", 1)[1].isdigit()]
    return sorted(found, key=lambda p: int(p.name.split("-", 1)[1]), reverse=True)


def _stamp_fingerprint(stamp: Path) -> str | None:
    """The fingerprint in scratch's run.json; None when it is missing or damaged (then nothing there is resumed)."""
    try:
        fingerprint = json.loads(stamp.read_text(encoding="utf-8"))["fingerprint"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return fingerprint if isinstance(fingerprint, str) else None


def prepare_scratch(scratch_dir: Path, fingerprint: str) -> str | None:
    """The checkpoint to resume from, if scratch_dir holds one of this very run; otherwise a clean dir.

    A checkpoint that does not load (a kill during its save) is skipped for the one before, saying so in one line,
    and removed: a resume never gets stuck on a torn save."""
    stamp = scratch_dir / "run.json"
    if stamp.exists() and _stamp_fingerprint(stamp) is None:
        print(f"finetune: {stamp} is damaged; starting afresh", file=sys.stderr)
    elif _stamp_fingerprint(stamp) == fingerprint:
        for checkpoint in _checkpoints(scratch_dir):
            problem = checkpoint_problem(checkpoint)
            if problem is None:
                return str(checkpoint)
            print(f"finetune: skipping {checkpoint}, a torn save ({problem}); removed", file=sys.stderr)
            shutil.rmtree(checkpoint)
        return None
    shutil.rmtree(scratch_dir, ignore_errors=True)
    scratch_dir.mkdir(parents=True)
    stamp.write_text(json.dumps({"fingerprint": fingerprint}) + "\n")
    return None


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def lora_config(cfg: LoraParams) -> LoraConfig:
    """peft's LoraConfig from params.yaml's lora section."""
    return LoraConfig(
        r=cfg.r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=list(cfg.target_modules),
        bias=cfg.bias,
        use_rslora=cfg.use_rslora,
        task_type="CAUSAL_LM",
    )


def sft_config(cfg: TrainParams, scratch_dir: Path, device: torch.device, bf16: bool | None = None) -> SFTConfig:
    """TRL's config from params.yaml's train section; bf16 autocast when the model is in bf16 (default: on a GPU
    that has it)."""
    on_gpu = device.type == "cuda"
    if bf16 is None:
        bf16 = on_gpu and torch.cuda.is_bf16_supported()
    return SFTConfig(
        output_dir=str(scratch_dir),
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.scheduler,
        warmup_steps=cfg.warmup_ratio,
        weight_decay=cfg.weight_decay,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        num_train_epochs=cfg.max_epochs,
        max_steps=cfg.max_steps,
        eval_strategy="steps",
        eval_steps=cfg.eval_steps,
        eval_on_start=True,
        save_strategy="steps",
        save_steps=cfg.eval_steps,
        save_total_limit=2,
        load_best_model_at_end=True,
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        logging_steps=cfg.logging_steps,
        seed=cfg.seed,
        data_seed=cfg.seed,
        max_length=cfg.max_seq_length,
        dataset_kwargs={"skip_prepare_dataset": True},  # build_dataset tokenizes, masks and drops too-long examples
        remove_unused_columns=False,  # shared rows' position_ids and branch_ids reach compute_loss
        train_sampling_strategy="group_by_length",
        activation_checkpointing=cfg.gradient_checkpointing,
        bf16=bf16,
        fp16=False,
        use_cpu=not on_gpu,
        ddp_backend="gloo" if not on_gpu and int(os.environ.get("WORLD_SIZE", "1")) > 1 else None,
        include_num_input_tokens_seen="non_padding",  # attention_mask == 1: padding is not throughput
        report_to="none",
        disable_tqdm=not is_main_process(),
        dataloader_num_workers=0,
    )


# ---------------------------------------------------------------- the trainer


def build_trainer(
    model: Any,
    tokenizer: Any,
    lora_cfg: LoraParams,
    train_cfg: TrainParams,
    args: SFTConfig,
    train_data: Dataset,
    val_data: Dataset,
    teacher: Any = None,
    callbacks: list[TrainerCallback] | None = None,
) -> HealingTrainer:
    """The one place a healing trainer is assembled (finetune stage, `prunetune bench`, scripts/profile_steps.py):
    HealingTrainer (DistillationTrainer with a teacher) with the stage's collator, LoRA and loss weighting, so
    what is benchmarked is what the stage trains with."""
    trainer_class, trainer_args = HealingTrainer, {}
    if teacher is not None:
        trainer_class = DistillationTrainer
        trainer_args = {"teacher": teacher, "kd_alpha": train_cfg.kd_alpha, "kd_temperature": train_cfg.kd_temperature}
    if train_cfg.loss_weighting == "example":
        trainer_args["weigh_examples"] = True  # HealingTrainer only: TrainParams refuses kd with it
    return trainer_class(
        model=model,
        args=args,
        train_dataset=train_data,
        eval_dataset=val_data,
        processing_class=tokenizer,
        data_collator=partial(collate, pad_token_id=tokenizer.pad_token_id),
        peft_config=lora_config(lora_cfg),
        callbacks=callbacks,
        **trainer_args,
    )


class StepTimer(TrainerCallback):
    """Each optimizer step's wall seconds (the device synchronized at both ends) and the real (non-pad) input tokens
    it took, read from HealingTrainer.train_tokens_seen: data collation, forward, backward, optimizer, all of it."""

    def __init__(self, trainer: HealingTrainer):
        self.trainer, self.steps, self._started, self._tokens = trainer, [], 0.0, 0

    def _sync(self) -> None:
        if torch.cuda.is_available() and self.trainer.args.device.type == "cuda":
            torch.cuda.synchronize(self.trainer.args.device)

    def on_step_begin(self, args, state, control, **kwargs):
        self._sync()
        self._started, self._tokens = time.perf_counter(), self.trainer.train_tokens_seen

    def on_step_end(self, args, state, control, **kwargs):
        self._sync()
        seconds = time.perf_counter() - self._started
        self.steps.append({"seconds": seconds, "tokens": self.trainer.train_tokens_seen - self._tokens})


# what timed_steps turns off in the stage's arguments (restored afterwards): a timing run evaluates and saves nothing
NO_EVALUATION: dict[str, Any] = {
    "eval_strategy": "no",
    "eval_on_start": False,
    "save_strategy": "no",
    "load_best_model_at_end": False,
}


def timed_steps(trainer: HealingTrainer, steps: int, sampling: str | None = None) -> list[dict[str, float]]:
    """Run trainer.train() for `steps` optimizer steps, evaluating and writing nothing, with the stage's sampling or
    `sampling`; each step's seconds and real tokens (StepTimer). The trainer's arguments are restored afterwards."""
    args = trainer.args
    changes = {**NO_EVALUATION, "max_steps": steps, "train_sampling_strategy": sampling or args.train_sampling_strategy}
    saved = {key: getattr(args, key) for key in changes}
    timer = StepTimer(trainer)
    trainer.add_callback(timer)
    try:
        for key, value in changes.items():
            setattr(args, key, value)
        trainer.train()
    finally:
        for key, value in saved.items():
            setattr(args, key, value)
        trainer.remove_callback(timer)
    return timer.steps


# ---------------------------------------------------------------- the whole fine-tune


def _first_and_best_eval_loss(log_history: list[dict[str, Any]]) -> tuple[float | None, float | None]:
    losses = [logs["eval_loss"] for logs in log_history if "eval_loss" in logs]
    return (losses[0], min(losses)) if losses else (None, None)


def _tokens_seen(checkpoint: str | None) -> int:
    """The input tokens a checkpoint's run had seen (0 without one): what a resumed run starts counting from."""
    if checkpoint is None:
        return 0
    return int(json.loads((Path(checkpoint) / "trainer_state.json").read_text())["num_input_tokens_seen"])


def _sort_target_modules(adapter_config: Path) -> None:
    """peft writes target_modules from a set, in hash order; sorted, the same run gives the same bytes."""
    config = json.loads(adapter_config.read_text())
    if isinstance(config.get("target_modules"), list):
        config["target_modules"] = sorted(config["target_modules"])
    adapter_config.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def finetune(
    model_dir: Path,
    lora_cfg: LoraParams | dict[str, Any],
    train_cfg: TrainParams | dict[str, Any],
    train_examples: list[dict[str, Any]],
    val_examples: list[dict[str, Any]],
    out_dir: Path,
    metrics_dir: Path,
    scratch_dir: Path,
    date_string: str = DEFAULT_CHAT_DATE,
) -> dict[str, Any] | None:
    """LoRA-heal the model in model_dir; write adapter + merged model and dvclive logs (rank 0). Returns the summary.

    date_string: the date chat templates print (params.yaml data.chat_date), the same in every stage."""
    from dvclive import Live  # its import is slow: only when a model is trained

    lora_cfg, train_cfg = as_section(LoraParams, lora_cfg), as_section(TrainParams, train_cfg)
    device = pick_device()
    model, tokenizer = load_model(model_dir, device=device, param=str(model_dir))
    lora_cfg.check_targets(linear_module_names(model))
    teacher_dir = distillation_teacher(train_cfg, read_meta(model_dir))  # kd heals pruned models only
    teacher = load_teacher(teacher_dir, tokenizer, model, device) if teacher_dir else None
    max_length = train_cfg.max_seq_length
    share = train_cfg.share_prompts
    train_data, train_too_long = build_dataset(train_examples, tokenizer, max_length, date_string, share)
    val_data, val_too_long = build_dataset(val_examples, tokenizer, max_length, date_string, share)
    for name, data, dropped in (("train", train_data, train_too_long), ("val", val_data, val_too_long)):
        require(len(data) > 0, "train.max_seq_length", f"leaves no {name} example ({dropped} longer than {max_length})")

    args = sft_config(train_cfg, scratch_dir, device, bf16=model.dtype == torch.bfloat16)
    teacher_meta = [read_meta(teacher_dir)] if teacher_dir else []
    fingerprint = run_fingerprint(
        lora_cfg.to_dict(),
        train_cfg.to_dict(),
        train_examples,
        val_examples,
        read_meta(model_dir),
        date_string,
        *teacher_meta,
    )
    with args.main_process_first(desc="prepare scratch dir"):
        resume_from = prepare_scratch(scratch_dir, fingerprint)
    args.eval_on_start = resume_from is None  # a resumed run has its first evaluation in its history already

    callbacks: list[TrainerCallback] = [
        EarlyStoppingCallback(early_stopping_patience=train_cfg.early_stopping_patience)
    ]
    live = None
    if args.process_index == 0:
        shutil.rmtree(metrics_dir, ignore_errors=True)
        live = Live(str(metrics_dir), dvcyaml=False, save_dvc_exp=False, report=None)
        callbacks.append(DVCLiveStepCallback(live=live))
    trainer = build_trainer(model, tokenizer, lora_cfg, train_cfg, args, train_data, val_data, teacher, callbacks)
    tokens_before = _tokens_seen(resume_from)
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=resume_from)
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
        # this run's tokens over this run's time: a resumed run neither counts the killed run's tokens nor its time
        "tokens_per_s": (state.num_input_tokens_seen - tokens_before) / wall_s if wall_s else None,
        "wall_s": wall_s,
        "resumed_from_step": int(resume_from.rsplit("-", 1)[-1]) if resume_from else 0,
        "stopped_early": state.global_step < state.max_steps,
        "train_examples": len(train_examples) - train_too_long,
        "train_rows": len(train_data),  # fewer than the examples with train.share_prompts
        "dropped_too_long_train": train_too_long,
        "dropped_too_long_val": val_too_long,
    }
    live.summary.update(summary)
    live.make_summary()

    peft_model = trainer.model
    meta = {**read_meta(model_dir), "finetuned_from": str(model_dir), "lora": lora_cfg.to_dict()}
    meta["train"] = train_cfg.to_dict()
    meta["healing"] = {"method": "kd", "teacher": str(teacher_dir)} if teacher_dir else {"method": "lora"}
    with staged_dir(out_dir) as directory:
        peft_model.save_pretrained(directory / "adapter")
        _sort_target_modules(directory / "adapter" / "adapter_config.json")
        merged = peft_model.merge_and_unload()
        write_model_files(merged, tokenizer, directory, meta)
    shutil.rmtree(scratch_dir, ignore_errors=True)  # checkpoints serve a killed run only; a rerun starts afresh
    return summary
