import json
import random
from pathlib import Path

import pytest

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
    "seed": 0,
}


@pytest.fixture(scope="session")
def tiny_model():
    """An untrained 4-layer tiny model with its tokenizer (weights random but fixed by the seed)."""
    from prunetune.tiny import build_model, train_tokenizer

    texts = [make_article(i)["content"] for i in range(20)]
    tokenizer = train_tokenizer(texts, TINY_TEST_CFG["vocab_size"])
    return build_model(tokenizer, TINY_TEST_CFG).eval(), tokenizer
