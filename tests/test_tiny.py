import math

import pytest
from conftest import TINY_TEST_CFG, make_article

from prunetune.tiny import (
    CHAT_TEMPLATE,
    build_model,
    pretrain,
    stream_perplexity,
    token_stream,
    train_tokenizer,
)

MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Tags?"},
    {"role": "assistant", "content": "Finance, Facts, Figures | BMW M"},
]


def test_chat_template_renders_llama3_format(tiny_model):
    _, tokenizer = tiny_model
    rendered = tokenizer.apply_chat_template(MESSAGES, tokenize=False)
    assert rendered == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nTags?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nFinance, Facts, Figures | BMW M<|eot_id|>"
    )
    prompt = tokenizer.apply_chat_template(MESSAGES[:2], tokenize=False, add_generation_prompt=True)
    assert rendered.startswith(prompt) and prompt.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    assert tokenizer.chat_template == CHAT_TEMPLATE


def test_special_tokens_are_single_tokens_and_text_round_trips(tiny_model):
    _, tokenizer = tiny_model
    ids = tokenizer.apply_chat_template(MESSAGES, tokenize=True)["input_ids"]
    assert ids[0] == tokenizer.bos_token_id
    assert ids[-1] == tokenizer.convert_tokens_to_ids("<|eot_id|>") == tokenizer.eos_token_id
    assert tokenizer.decode(ids) == tokenizer.apply_chat_template(MESSAGES, tokenize=False)
    text = "Überführung: 250 kW, Gen6 eDrive"
    assert tokenizer.decode(tokenizer(text)["input_ids"], skip_special_tokens=True) == text


def test_a_paragraph_break_is_one_token_as_in_llama3():
    """GPT-2's split cuts "\n\n" before a word in two, so every chat header would end in a lone "\n" that a
    weak model then repeats; Llama 3's split keeps it whole."""
    texts = [f"{make_article(i)['content']}\n\nSecond paragraph {i}\n\nThird\n\nFourth" for i in range(10)]
    tokenizer = train_tokenizer(texts, 512)
    prompt = tokenizer.apply_chat_template(MESSAGES[:2], tokenize=True, add_generation_prompt=True)["input_ids"]
    assert tokenizer.convert_ids_to_tokens(prompt[-2:]) == ["<|end_header_id|>", "ĊĊ"]
    assert tokenizer.decode(tokenizer("one\n\ntwo")["input_ids"], skip_special_tokens=True) == "one\n\ntwo"


def test_tokenizer_training_is_deterministic():
    texts = [make_article(i)["content"] for i in range(10)]
    a, b = train_tokenizer(texts, 400), train_tokenizer(texts, 400)
    assert a.get_vocab() == b.get_vocab()


def test_pretraining_lowers_held_out_perplexity_far_below_random():
    texts = [make_article(i)["content"] for i in range(40)]
    tokenizer = train_tokenizer(texts[:30], 512)
    cfg = {**TINY_TEST_CFG, "pretrain_steps": 60}
    model = build_model(tokenizer, cfg)
    train, held_out = token_stream(tokenizer, texts[:30]), token_stream(tokenizer, texts[30:])
    before = stream_perplexity(model, held_out, 64)
    losses = pretrain(model, train, cfg, show_progress=False)
    after = stream_perplexity(model, held_out, 64)
    assert before > 200  # a random model is near-uniform over ~500 tokens
    assert after < before / 4
    assert losses[-1] < losses[0]


def test_residual_projections_start_scaled_down_as_in_gpt2(tiny_model):
    # wide enough that the sample std of each weight matrix is within a few percent of the init std
    _, tokenizer = tiny_model
    cfg = {**TINY_TEST_CFG, "hidden_size": 128, "intermediate_size": 384, "layers": 8, "init_std": 0.1}
    model = build_model(tokenizer, cfg)
    for layer in model.model.layers:
        assert layer.self_attn.q_proj.weight.std().item() == pytest.approx(0.1, rel=0.05)
        assert layer.mlp.up_proj.weight.std().item() == pytest.approx(0.1, rel=0.05)
        for projection in (layer.self_attn.o_proj, layer.mlp.down_proj):  # they write into the residual stream
            assert projection.weight.std().item() == pytest.approx(0.1 / math.sqrt(2 * 8), rel=0.05)
