"""params.yaml as one frozen, typed structure per section: every key typed and ranged here, checked once per stage.

Dataclasses and a small checker rather than pydantic: the checks are ~100 lines, the messages stay exactly ours
("params.yaml: train.batch_size must be an integer >= 1, got 0"), a bool is never taken for an int, and an int
stays an int (models' prunetune.json records the section byte for byte).

Adding a key is one line in its section's class: `name: type = key(default, ge=..., le=...)`. A key without a
default must be in the file; an unknown key is refused with a "did you mean" from difflib.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass
from functools import cache
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

from prunetune.config import PARAMS_FILE, PrunetuneError, load_params

RULE_METHODS = ("last", "tail", "indices")
MEASURED_METHODS = ("block_influence", "angular")  # pick the layers from a calibration pass
SWEEP_METHOD = "val_sweep"  # the depth and criterion the prune_sweep stage chose on the val split
PRUNE_METHODS = RULE_METHODS + MEASURED_METHODS + (SWEEP_METHOD,)
SWEEP_CRITERIA = ("tail", *MEASURED_METHODS)  # what prune.sweep_methods may list (tail with 1 layer is `last`)
S = TypeVar("S", bound="Section")
HUB_DATASET = "null or a hub dataset id such as 'owner/name' or 'owner/name@revision'"
# Llama 3.x templates fall back to this date when neither date_string nor strftime_now is available.
DEFAULT_CHAT_DATE = "26 Jul 2024"
CHAT_DATE = f"a date as the chat template prints it, e.g. '{DEFAULT_CHAT_DATE}' (a quoted string)"


class Invalid(Exception):
    """A check's finding about one key (relative to its section); parse() adds the file and the section."""

    def __init__(self, key: str, problem: str):
        super().__init__(key, problem)
        self.key, self.problem = key, problem


def key(
    default: Any = MISSING,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    choices: Callable[[], tuple[str, ...]] | None = None,
    min_items: int = 0,
    expect: str | None = None,
    optional: bool = False,
) -> Any:
    """A section's key: its default (none: required), its range (of each item, for a list) and its choices;
    `expect` words what a wrong value should have been ("must be {expect}, got ..."). An `optional` key at its
    default is left out of to_dict(), so adding one changes no recorded meta or fingerprint of a run without it."""
    metadata = {"ge": ge, "gt": gt, "le": le, "lt": lt, "choices": choices, "min_items": min_items, "expect": expect}
    metadata["optional"] = optional
    return dataclasses.field(default=default, metadata=metadata)


def _range_text(meta: Mapping[str, Any]) -> str:
    low = ("[", meta["ge"]) if meta["ge"] is not None else ("(", meta["gt"]) if meta["gt"] is not None else None
    high = (meta["le"], "]") if meta["le"] is not None else (meta["lt"], ")") if meta["lt"] is not None else None
    if low and high:
        return f" in {low[0]}{low[1]}, {high[0]}{high[1]}"
    if low:
        return f" >= {low[1]}" if low[0] == "[" else f" > {low[1]}"
    if high:
        return f" <= {high[0]}" if high[1] == "]" else f" < {high[0]}"
    return ""


def _in_range(value: float, meta: Mapping[str, Any]) -> bool:
    return (
        (meta["ge"] is None or value >= meta["ge"])
        and (meta["gt"] is None or value > meta["gt"])
        and (meta["le"] is None or value <= meta["le"])
        and (meta["lt"] is None or value < meta["lt"])
    )


def _convert(value: Any, kind: Any, meta: Mapping[str, Any], where: str, file: str) -> Any:
    """value checked against the annotation `kind` and the key's range; lists become tuples (frozen)."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        (kind,) = [arg for arg in args if arg is not type(None)]
        return _convert(value, kind, meta, where, file)
    if isinstance(kind, type) and issubclass(kind, Section):
        return kind.parse(value, file, where)
    if origin is Literal or meta["choices"]:
        allowed = args if origin is Literal else meta["choices"]()
        if value not in allowed:
            raise Invalid("", f"must be one of {', '.join(map(str, allowed))}; got {value!r}")
        return value
    if origin is tuple:
        item = args[0]
        if not isinstance(value, list | tuple) or len(value) < meta["min_items"]:
            size = "a non-empty list" if meta["min_items"] else "a list"
            raise Invalid("", f"must be {size} of {_NAMES[item]}s, got {value!r}")
        return tuple(_convert(v, item, meta, where, file) for v in value)
    if kind is bool:
        if not isinstance(value, bool):
            raise Invalid("", f"must be true or false, got {value!r}")
        return value
    number = kind in (int, float)
    ok = isinstance(value, int if kind is int else int | float if number else kind) and not isinstance(value, bool)
    if not ok or (number and not _in_range(value, meta)):
        ranged = _range_text(meta) if number else ""
        raise Invalid("", f"must be {_ARTICLES[kind]}{ranged}, got {value!r}")
    if kind is str and not value.strip():
        raise Invalid("", f"must be a non-empty string, got {value!r}")
    return value


_NAMES = {str: "string", int: "integer", float: "number"}
_ARTICLES = {int: "an integer", float: "a number", str: "a string"}


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


@dataclass(frozen=True, kw_only=True)
class Section:
    """One params.yaml section (or a mapping inside one); subclasses list their keys as typed fields."""

    NAME: ClassVar[str] = ""

    @classmethod
    def parse(cls: type[S], raw: Any, file: str = PARAMS_FILE, where: str | None = None) -> S:
        """The section from its YAML mapping, every key checked; one line naming file and section.key otherwise."""
        where = where or cls.NAME
        if not isinstance(raw, Mapping):
            raise PrunetuneError(f"{file}: {where} must be a mapping of keys, got {type(raw).__name__}")
        fields = {field.name: field for field in dataclasses.fields(cls)}
        for name in raw:
            if name not in fields:
                close = difflib.get_close_matches(str(name), list(fields), n=1, cutoff=0.4)
                hint = f"did you mean {where}.{close[0]}?" if close else f"known: {', '.join(fields)}"
                raise PrunetuneError(f"{file}: {where}.{name} is not a known key ({hint})")
        values = {}
        for name, field in fields.items():
            if name not in raw:
                if field.default is MISSING:
                    raise PrunetuneError(f"{file}: {where}.{name} is missing")
                values[name] = field.default
                continue
            try:
                values[name] = _convert(raw[name], _hints(cls)[name], field.metadata, f"{where}.{name}", file)
            except Invalid as err:
                expect = field.metadata.get("expect")
                problem = f"must be {expect}, got {raw[name]!r}" if expect else err.problem
                raise PrunetuneError(f"{file}: {where}.{name} {problem}") from None
        section = cls(**values)
        try:
            section.check()
        except Invalid as err:
            raise PrunetuneError(f"{file}: {where}.{err.key} {err.problem}") from None
        return section

    def check(self) -> None:
        """Checks across keys; raise Invalid(key, problem)."""

    def to_dict(self) -> dict[str, Any]:
        """As params.yaml holds it (lists as lists): what prunetune.json records and run fingerprints hash.
        Optional keys at their default are left out (as a params.yaml without them holds it)."""
        return {
            f.name: value.to_dict()
            if isinstance(value, Section)
            else list(value)
            if isinstance(value, tuple)
            else value
            for f, value in ((f, getattr(self, f.name)) for f in dataclasses.fields(self))
            if not (f.metadata.get("optional") and value == f.default)
        }


def as_section(cls: type[S], cfg: S | Mapping[str, Any]) -> S:
    """cfg itself when already parsed, else parsed from a mapping (library callers and tests may pass dicts)."""
    return cfg if isinstance(cfg, cls) else cls.parse(cfg)


# ---------------------------------------------------------------- the sections


@dataclass(frozen=True, kw_only=True)
class DataParams(Section):
    NAME = "data"
    source: str = key(expect="a path to a JSONL file")
    hub_dataset: str | None = key(None, expect=HUB_DATASET)
    on_error: Literal["fail", "skip"] = key("fail")
    types: tuple[str, ...] = key(min_items=1)
    exclude_types: tuple[str, ...] | None = key(())  # null: none
    val_fraction: float = key(ge=0, lt=1)
    test_fraction: float = key(ge=0, lt=1)
    max_content_words: int | None = key(None, ge=1)
    near_duplicate_jaccard: float = key(gt=0, le=1)
    # the order of tags in tag answers: frequency (by the train split's counts, most frequent first) or source
    tag_order: Literal["frequency", "source"] = key("frequency")
    # the date Llama 3.x chat templates print in the system header (prunetune.chat passes it; else today's)
    chat_date: str = key(DEFAULT_CHAT_DATE, expect=CHAT_DATE)
    seed: int = key(ge=0)

    def check(self) -> None:
        hub = self.hub_dataset
        if hub is not None and (hub.strip() != hub or " " in hub):
            raise Invalid("hub_dataset", f"must be {HUB_DATASET}, got {hub!r}")
        unknown = [t for t in self.exclude_types or () if t not in self.types]
        if unknown:
            raise Invalid("exclude_types", f"names types not in data.types: {unknown}")
        if self.val_fraction + self.test_fraction >= 1:
            raise Invalid("val_fraction + data.test_fraction", "must leave articles for training")


@dataclass(frozen=True, kw_only=True)
class TinyParams(Section):
    NAME = "model.tiny"
    layers: int = key(ge=1)
    hidden_size: int = key(ge=1)
    intermediate_size: int = key(ge=1)
    heads: int = key(ge=1)
    kv_heads: int = key(ge=1)
    vocab_size: int = key(gt=300)  # 256 bytes + the special tokens
    pretrain_steps: int = key(ge=0)
    batch_size: int = key(ge=1)
    seq_len: int = key(ge=1)
    learning_rate: float = key(gt=0)
    init_std: float = key(gt=0)
    instruction_warmup: float = key(ge=0, lt=1)  # a fraction of pretrain_steps
    # warm-up chats keep this many tokens, cut from the left: room for the whole chat, or a dateline or first
    # sentence answer is trained with the text it copies from already cut away
    instruction_seq_len: int = key(ge=1)
    seed: int = key(ge=0)
    # Optional (the defaults are the embedded model's); configs/smoke-real-shapes.yaml sets Llama 3.2's shapes.
    chat_template: Literal["tiny", "llama3-dated"] = key("tiny", optional=True)  # llama3-dated: "Today Date"
    rope: Literal["default", "llama3"] = key("default", optional=True)  # llama3: scaled, 131,072 positions
    exact_vocab: bool = key(False, optional=True)  # reserved special tokens fill the vocabulary to vocab_size

    def check(self) -> None:
        if self.hidden_size % self.heads:
            raise Invalid("hidden_size", "must be divisible by model.tiny.heads")
        if self.heads % self.kv_heads:
            raise Invalid("heads", "must be divisible by model.tiny.kv_heads")


@dataclass(frozen=True, kw_only=True)
class ModelParams(Section):
    NAME = "model"
    name: str = key(expect="'tiny', a hub id, a local directory, a .gguf file or PACKAGE:FILE.gguf")
    revision: str | None = key(None)
    # the dtype every stage loads the models in; auto: bf16 on a GPU that has it, else float32. The base stage
    # records a non-auto choice in the model's meta, which every derived model inherits.
    dtype: Literal["auto", "float32", "bfloat16"] = key("auto", optional=True)
    tiny: TinyParams = key()


@dataclass(frozen=True, kw_only=True)
class PruneParams(Section):
    NAME = "prune"
    method: str = key(choices=lambda: PRUNE_METHODS)
    n_layers: int | None = key(None, ge=1)  # tail and the measured methods
    indices: tuple[int, ...] | None = key(None, ge=0, min_items=1)  # indices only
    calibration_samples: int = key(ge=1)
    calibration_max_tokens: int = key(ge=2)
    calibration_batch_size: int = key(ge=1)
    seed: int = key(ge=0)
    # the prune_sweep stage scores every depth x criterion on val; method val_sweep takes its choice
    sweep_depths: tuple[int, ...] = key((1,), ge=1, min_items=1, optional=True)
    sweep_methods: tuple[str, ...] = key(("tail",), min_items=1, optional=True)

    def check(self) -> None:
        unknown = [m for m in self.sweep_methods if m not in SWEEP_CRITERIA]
        if unknown:
            raise Invalid("sweep_methods", f"items must be among {', '.join(SWEEP_CRITERIA)}; got {unknown}")
        if self.method in ("tail", *MEASURED_METHODS) and self.n_layers is None:
            raise Invalid("n_layers", f"must be an integer >= 1 for method {self.method}, got None")
        if self.method == "indices":
            if self.indices is None:
                raise Invalid("indices", "must be a non-empty list of layer indices for method indices, got None")
            if len(set(self.indices)) != len(self.indices):
                raise Invalid("indices", f"lists a layer twice: {list(self.indices)}")

    def check_sweep(self, num_layers: int, file: str = PARAMS_FILE) -> None:
        """The prune_sweep stage's depths against the model's layer count."""
        if max(self.sweep_depths) >= num_layers:
            raise PrunetuneError(
                f"{file}: prune.sweep_depths must stay below the model's {num_layers} layers, "
                f"got {list(self.sweep_depths)}"
            )

    def check_layers(self, num_layers: int, file: str = PARAMS_FILE) -> None:
        """What needs the model's layer count: run before the model is loaded or measured."""
        if self.method in ("tail", *MEASURED_METHODS) and self.n_layers >= num_layers:
            raise PrunetuneError(
                f"{file}: prune.n_layers must be below the model's {num_layers} layers (removing every layer leaves "
                f"no model), got {self.n_layers}"
            )
        if self.method == "indices":
            bad = [i for i in self.indices if not 0 <= i < num_layers]
            if bad:
                raise PrunetuneError(f"{file}: prune.indices has indices out of range 0..{num_layers - 1}: {bad}")
            if len(self.indices) >= num_layers:
                raise PrunetuneError(f"{file}: prune.indices would remove all {num_layers} layers; keep at least one")


@dataclass(frozen=True, kw_only=True)
class LoraParams(Section):
    NAME = "lora"
    r: int = key(ge=1)
    alpha: float = key(gt=0)
    dropout: float = key(ge=0, lt=1)
    target_modules: tuple[str, ...] = key(min_items=1)
    bias: Literal["none", "all", "lora_only"] = key()
    use_rslora: bool = key()

    def check_targets(self, available: set[str], file: str = PARAMS_FILE) -> None:
        """target_modules against the model's linear layers (their short names)."""
        unknown = sorted(set(self.target_modules) - available)
        if unknown:
            raise PrunetuneError(
                f"{file}: lora.target_modules names {unknown}, not linear layers of this model {sorted(available)}"
            )


def _schedulers() -> list[str]:
    from transformers.trainer_utils import SchedulerType  # only when a train section is checked

    return [s.value for s in SchedulerType]


@dataclass(frozen=True, kw_only=True)
class TrainParams(Section):
    NAME = "train"
    learning_rate: float = key(gt=0)
    scheduler: str = key(choices=_schedulers)
    warmup_ratio: float = key(ge=0, lt=1)
    weight_decay: float = key(ge=0)
    batch_size: int = key(ge=1)
    gradient_accumulation_steps: int = key(ge=1)
    max_epochs: float = key(gt=0)
    max_steps: int = key(ge=-1)  # > 0 overrides max_epochs
    eval_steps: int = key(ge=1)
    early_stopping_patience: int = key(ge=1)
    logging_steps: int = key(ge=1)
    max_seq_length: int = key(ge=1)
    gradient_checkpointing: bool = key()
    num_processes: int = key(ge=1)
    seed: int = key(ge=0)
    loss_weighting: Literal["token", "example"] = key("token")
    share_prompts: bool = key(False)
    method: Literal["lora", "kd"] = key("lora")
    teacher: str | None = key(None, expect="a model directory")  # kd only
    kd_alpha: float | None = key(None, ge=0, le=1)
    kd_temperature: float | None = key(None, gt=0)

    def check(self) -> None:
        if self.loss_weighting == "example" and self.method != "lora":
            raise Invalid(
                "loss_weighting",
                "example weighting is for train.method lora; kd averages over tokens (set loss_weighting: token)",
            )
        if self.method == "kd":
            for name in ("teacher", "kd_alpha", "kd_temperature"):
                if getattr(self, name) is None:
                    raise Invalid(name, "must be set for train.method kd")


@dataclass(frozen=True, kw_only=True)
class MaxNewTokens(Section):
    NAME = "eval.max_new_tokens"
    summarization: int = key(ge=1)
    title_generation: int = key(ge=1)
    tag_extraction: int = key(ge=1)
    type_classification: int = key(ge=1)


@dataclass(frozen=True, kw_only=True)
class EvalParams(Section):
    NAME = "eval"
    batch_size: int = key(ge=1)
    max_new_tokens: MaxNewTokens = key()
    bertscore_model: str = key(expect="'minilm' or a model id/path")
    bootstrap_resamples: int = key(ge=100)
    ci_method: Literal["percentile", "bca"] = key("percentile")
    seed: int = key(ge=0)


@dataclass(frozen=True, kw_only=True)
class SpeedParams(Section):
    NAME = "speed"
    prompt_tokens: int = key(ge=1)
    new_tokens: int = key(ge=1)
    batch_size: int = key(ge=1)
    repeats: int = key(ge=1)


@dataclass(frozen=True, kw_only=True)
class QaParams(Section):
    NAME = "qa"
    path: str = key()
    max_new_tokens: int = key(ge=1)
    batch_size: int = key(ge=1)
    bootstrap_resamples: int = key(ge=100)
    ci_method: Literal["percentile", "bca"] = key("percentile")
    seed: int = key(ge=0)


SECTIONS: dict[str, type[Section]] = {
    cls.NAME: cls
    for cls in (DataParams, ModelParams, PruneParams, LoraParams, TrainParams, EvalParams, SpeedParams, QaParams)
}


def check_sections(raw: Mapping[str, Any], file: str = PARAMS_FILE) -> None:
    """Every top-level name is a known section (a typo'd section would be silently ignored)."""
    for name in raw:
        if name not in SECTIONS:
            close = difflib.get_close_matches(str(name), list(SECTIONS), n=1, cutoff=0.4)
            hint = f"did you mean {close[0]}?" if close else f"known: {', '.join(SECTIONS)}"
            raise PrunetuneError(f"{file}: section '{name}' is not a known section ({hint})")


def load_section(cls: type[S], path: str | Path = PARAMS_FILE) -> S:
    """One section of params.yaml, parsed and checked: what a stage calls once, first."""
    raw = load_params(path)
    check_sections(raw, str(path))
    if cls.NAME not in raw:
        raise PrunetuneError(f"{path}: section '{cls.NAME}' is missing")
    return cls.parse(raw[cls.NAME], str(path))


def load_all(path: str | Path = PARAMS_FILE) -> dict[str, Section]:
    """Every section of a params file (params.yaml or configs/*.yaml), each parsed and checked."""
    raw = load_params(path)
    check_sections(raw, str(path))
    missing = [name for name in SECTIONS if name not in raw]
    if missing:
        raise PrunetuneError(f"{path}: section(s) {', '.join(missing)} missing")
    return {name: cls.parse(raw[name], str(path)) for name, cls in SECTIONS.items()}
