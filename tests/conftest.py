import json
import random
import shlex
from pathlib import Path

import pytest
import yaml
from transformers import LlamaConfig

ROOT = Path(__file__).resolve().parents[1]

TYPES = ["Press Release", "Press Kit", "Speech", "Fact & Figures"]
WORDS = (
    "battery plant electric vehicle production range charging motorsport race team driver season circuit "
    "sponsor art culture revenue quarter deliveries design platform software recycling hydrogen engine "
    "model launch market customers energy supply chain innovation factory employees training award"
).split()


def make_article(index: int, **overrides) -> dict:
    """A valid article with content unique to `index` (random words seeded by it)."""
    rng = random.Random(index)
    content = " ".join(rng.choice(WORDS) for _ in range(120))
    article = {
        "title": f"Headline number {index}",
        "date": f"{1 + index % 28:02d}.{1 + index % 12:02d}.2024",
        "type": "Press Release",
        "summary": f"Summary of article {index}.",
        "tags": ["Electromobility", "Finance, Facts, Figures"],
        "url": f"https://www.press.bmwgroup.com/global/article/detail/T{index:07d}EN/a",
        "content": f"Article {index}. {content}",
    }
    article.update(overrides)
    return article


def write_corpus(path: Path, articles: list, extra_lines: list[bytes] = ()) -> Path:
    lines = [json.dumps(a).encode() for a in articles] + list(extra_lines)
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def data_cfg(source: Path, **overrides) -> dict:
    cfg = {
        "source": str(source),
        "on_error": "fail",
        "types": TYPES,
        "exclude_types": ["Fact & Figures"],
        "val_fraction": 0.2,
        "test_fraction": 0.2,
        "near_duplicate_jaccard": 0.8,
        "seed": 1,
    }
    cfg.update(overrides)
    return cfg


TINY_TEST_CFG = {
    "layers": 4,
    "hidden_size": 32,
    "intermediate_size": 64,
    "heads": 4,
    "kv_heads": 2,
    "vocab_size": 512,
    "pretrain_steps": 0,
    "batch_size": 4,
    "seq_len": 64,
    "learning_rate": 0.003,
    "init_std": 0.02,
    "instruction_warmup": 0.0,
    "instruction_seq_len": 256,
    "seed": 0,
}


@pytest.fixture(scope="session")
def tiny_model():
    """An untrained 4-layer tiny model with its tokenizer (weights random but fixed by the seed)."""
    from prunetune.tiny import build_model, train_tokenizer

    texts = [make_article(i)["content"] for i in range(20)]
    tokenizer = train_tokenizer(texts, TINY_TEST_CFG["vocab_size"])
    return build_model(tokenizer, TINY_TEST_CFG).eval(), tokenizer


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_model, tmp_path_factory):
    from prunetune.models import save_model

    model, tokenizer = tiny_model
    path = tmp_path_factory.mktemp("models") / "base"
    save_model(model, tokenizer, path, {"source": "test"})
    return path


def chat_examples(n: int, max_content_words: int = 25) -> list[dict]:
    """Task examples built from n test articles, short enough for fast training tests."""
    from prunetune.data import build_examples

    examples = []
    for i in range(n):
        built, _ = build_examples(make_article(i, type=TYPES[i % 2]), TYPES[:2], max_content_words)
        examples += built
    return examples


LORA_TEST_CFG = {
    "r": 4,
    "alpha": 8,
    "dropout": 0.05,
    "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "bias": "none",
    "use_rslora": False,
}
TRAIN_TEST_CFG = {
    "learning_rate": 0.01,
    "scheduler": "linear",
    "warmup_ratio": 0.0,
    "weight_decay": 0.0,
    "batch_size": 4,
    "gradient_accumulation_steps": 1,
    "max_epochs": 1,
    "max_steps": 6,
    "eval_steps": 2,
    "early_stopping_patience": 10,
    "logging_steps": 1,
    "max_seq_length": 512,
    "gradient_checkpointing": False,
    "num_processes": 1,
    "seed": 0,
}


def small_llama_config(layers: int, vocab_size: int = 512) -> LlamaConfig:
    """A Llama small enough to hand-work its FLOPs: hidden 32, MLP 64, 4 heads, 2 KV heads, tied embeddings."""
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=True,
    )


def key_paths(tree: dict, prefix: str = "") -> set[str]:
    """Every key of a params tree as a dotted path (sections, nested mappings and leaves)."""
    paths = set()
    for key, value in tree.items():
        paths.add(prefix + key)
        if isinstance(value, dict):
            paths |= key_paths(value, f"{prefix}{key}.")
    return paths


def expanded_stages(dvc_yaml: Path = ROOT / "dvc.yaml") -> dict[str, dict]:
    """Every stage, foreach stages once per item with ${key} and ${item.*} filled in (params left as they are)."""
    stages = {}
    for name, stage in yaml.safe_load(dvc_yaml.read_text())["stages"].items():
        if "foreach" not in stage:
            stages[name] = stage
            continue
        for key, item in stage["foreach"].items():
            text = yaml.safe_dump(stage["do"])
            text = text.replace("${key}", key)
            for field, value in item.items():
                text = text.replace(f"${{item.{field}}}", value)
            stages[f"{name}@{key}"] = yaml.safe_load(text)
    return stages


def stage_command(name: str) -> list[str]:
    """A stage's command (expanded, as `dvc repro` runs it), split into arguments: ["python", script, *args]."""
    return shlex.split(expanded_stages()[name]["cmd"])


def stage_argv(name: str, python: str) -> list[str]:
    """What to run for a stage in a test: this interpreter, the script by its absolute path, dvc.yaml's arguments."""
    _, script, *args = stage_command(name)
    return [python, str(ROOT / script), *args]


def padded_batch(rows):
    """input_ids, attention_mask and labels of tokenized rows (build_dataset), right-padded as the collator pads."""
    import torch

    from prunetune.chat import IGNORE_INDEX

    length = max(len(ids) for ids in rows["input_ids"])
    input_ids = torch.tensor([ids + [0] * (length - len(ids)) for ids in rows["input_ids"]])
    labels = torch.tensor([lab + [IGNORE_INDEX] * (length - len(lab)) for lab in rows["labels"]])
    attention_mask = (torch.arange(length) < torch.tensor([[len(ids)] for ids in rows["input_ids"]])).long()
    return input_ids, attention_mask, labels


def run_finetune(model_dir, tmp_path, name="run", lora=None, train=None, examples=None):
    """A tiny LoRA fine-tune of model_dir on chat_examples, into tmp_path/name/{model,metrics,scratch}."""
    from prunetune.training import finetune

    examples = examples or chat_examples(6)
    return finetune(
        model_dir=model_dir,
        lora_cfg={**LORA_TEST_CFG, **(lora or {})},
        train_cfg={**TRAIN_TEST_CFG, **(train or {})},
        train_examples=examples[:16],
        val_examples=examples[16:],
        out_dir=tmp_path / name / "model",
        metrics_dir=tmp_path / name / "metrics",
        scratch_dir=tmp_path / name / "scratch",
    )
