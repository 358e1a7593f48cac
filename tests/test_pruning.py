import copy
from pathlib import Path

import pytest
import torch
from conftest import chat_examples, make_article, stage_command
from transformers import AutoModelForCausalLM

from prunetune.config import PrunetuneError
from prunetune.data import article_texts
from prunetune.models import count_parameters, save_model
from prunetune.params import PruneParams
from prunetune.pruning import (
    calibration_texts,
    measure_layers,
    remove_layers,
    resolve_removed_layers,
)

CALIBRATION = {"calibration_samples": 6, "calibration_max_tokens": 48, "calibration_batch_size": 4, "seed": 0}
CALIBRATION["method"] = "last"  # a whole prune section


def run_layers_by_hand(model, input_ids, layer_indices):
    """Embed, run the given decoder layers of `model` in order, norm and project: the pruned model's reference."""
    positions = torch.arange(input_ids.shape[1]).unsqueeze(0)
    hidden = model.model.embed_tokens(input_ids)
    rotary = model.model.rotary_emb(hidden, position_ids=positions)
    for index in layer_indices:
        hidden = model.model.layers[index](
            hidden, attention_mask=None, position_embeddings=rotary, position_ids=positions
        )
    return model.lm_head(model.model.norm(hidden))


@pytest.mark.parametrize("removed", [[3], [1], [0, 2]])
@torch.no_grad()
def test_pruned_model_equals_kept_layers_run_by_hand_and_reloads(tiny_model, tmp_path, removed):
    base, tokenizer = tiny_model
    input_ids = torch.tensor([tokenizer("battery plant production range charging")["input_ids"]])
    kept = [i for i in range(4) if i not in removed]
    expected = run_layers_by_hand(base, input_ids, kept)

    pruned = remove_layers(copy.deepcopy(base), removed)
    save_model(pruned, tokenizer, tmp_path / "pruned", {"removed_layers": removed})
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "pruned").eval()

    assert reloaded.config.num_hidden_layers == len(kept) == len(reloaded.model.layers)
    assert [layer.self_attn.layer_idx for layer in reloaded.model.layers] == list(range(len(kept)))
    torch.testing.assert_close(reloaded(input_ids).logits, expected, rtol=1e-5, atol=1e-5)
    assert count_parameters(reloaded) < count_parameters(base)


@torch.no_grad()
def test_kv_cache_generation_after_removing_a_middle_layer(tiny_model):
    base, tokenizer = tiny_model
    pruned = remove_layers(copy.deepcopy(base), [1])
    input_ids = torch.tensor([tokenizer("electric vehicle production")["input_ids"]])
    with_cache = pruned.generate(input_ids, max_new_tokens=8, do_sample=False, use_cache=True)
    without_cache = pruned.generate(input_ids, max_new_tokens=8, do_sample=False, use_cache=False)
    assert torch.equal(with_cache, without_cache)


def test_per_layer_config_lists_are_cut(tiny_model):
    base, _ = tiny_model
    model = copy.deepcopy(base)
    model.config.layer_types = ["full_attention", "sliding_attention", "full_attention", "sliding_attention"]
    remove_layers(model, [1, 2])
    assert model.config.layer_types == ["full_attention", "sliding_attention"]


@pytest.mark.parametrize(
    ("cfg", "expected"),
    [
        ({"method": "last"}, [15]),
        ({"method": "tail", "n_layers": 3}, [13, 14, 15]),
        ({"method": "indices", "indices": [7, 2]}, [2, 7]),
    ],
)
def test_resolve_removed_layers(cfg, expected):
    assert resolve_removed_layers({**CALIBRATION, **cfg}, 16) == expected


@pytest.mark.parametrize(
    ("cfg", "param"),
    [
        ({"method": "middle"}, "prune.method"),
        ({"method": "tail", "n_layers": 16}, "prune.n_layers"),
        ({"method": "tail", "n_layers": 0}, "prune.n_layers"),
        ({"method": "tail", "n_layers": -2}, "prune.n_layers"),
        ({"method": "indices", "indices": [16]}, "prune.indices"),
        ({"method": "indices", "indices": [-1]}, "prune.indices"),
        ({"method": "indices", "indices": list(range(16))}, "prune.indices"),
        ({"method": "indices", "indices": [3, 3]}, "prune.indices"),
        ({"method": "indices", "indices": []}, "prune.indices"),
        ({"method": "block_influence", "n_layers": 16}, "prune.n_layers"),
        ({"method": "block_influence", "n_layers": 0}, "prune.n_layers"),
        ({"method": "angular", "n_layers": 17}, "prune.n_layers"),
        ({"method": "angular", "n_layers": None}, "prune.n_layers"),
    ],
)
def test_invalid_prune_params_are_named(cfg, param):
    with pytest.raises(PrunetuneError, match=param):
        PruneParams.parse({**CALIBRATION, **cfg}).check_layers(16)


# ---------------------------------------------------------------- measured methods


def texts_of_different_lengths(n: int = 6) -> list[str]:
    """Article texts from 5 to 60 words: batches of them need padding."""
    return [" ".join(make_article(i)["content"].split()[: 5 + 11 * i]) for i in range(n)]


def made_identity(model, layers):
    """A copy of model whose given layers add nothing to the residual stream (o_proj and down_proj zeroed)."""
    model = copy.deepcopy(model)
    for index in layers:
        torch.nn.init.zeros_(model.model.layers[index].self_attn.o_proj.weight)
        torch.nn.init.zeros_(model.model.layers[index].mlp.down_proj.weight)
    return model


@pytest.mark.parametrize("identity", [0, 2])
def test_block_influence_scores_an_identity_layer_lowest_and_removes_it(tiny_model, identity):
    base, tokenizer = tiny_model
    model = made_identity(base, [identity])
    stats = measure_layers(model, tokenizer, texts_of_different_lengths(), max_tokens=48, batch_size=4)
    scores = stats.block_influence()
    assert len(scores) == 4
    assert abs(scores[identity]) < 1e-6
    assert min(s for i, s in enumerate(scores) if i != identity) > 1e-4
    assert resolve_removed_layers({**CALIBRATION, "method": "block_influence", "n_layers": 1}, 4, stats) == [identity]
    removed = resolve_removed_layers({**CALIBRATION, "method": "block_influence", "n_layers": 2}, 4, stats)
    assert identity in removed and len(removed) == 2 and removed == sorted(removed)


@pytest.mark.parametrize("block", [[1, 2], [2, 3]])
def test_angular_finds_the_contiguous_block_that_changes_nothing(tiny_model, block):
    base, tokenizer = tiny_model
    model = made_identity(base, block)
    stats = measure_layers(model, tokenizer, texts_of_different_lengths(), max_tokens=48, batch_size=4)
    distances = stats.block_distances(2)
    assert len(distances) == 3  # blocks starting at layers 0, 1, 2
    assert distances[block[0]] < 1e-3 and min(d for i, d in enumerate(distances) if i != block[0]) > 1e-2
    assert resolve_removed_layers({**CALIBRATION, "method": "angular", "n_layers": 2}, 4, stats) == block
    removed = resolve_removed_layers({**CALIBRATION, "method": "angular", "n_layers": 3}, 4, stats)
    assert removed in ([0, 1, 2], [1, 2, 3])  # always one contiguous block


@torch.no_grad()
def test_angular_distance_matches_a_direct_computation(tiny_model):
    base, tokenizer = tiny_model
    texts = texts_of_different_lengths(3)
    stats = measure_layers(base, tokenizer, texts, max_tokens=48, batch_size=3)
    expected = []
    for text in texts:  # one text at a time, no padding, the model's own hidden states
        ids = tokenizer(text, return_tensors="pt", truncation=True, max_length=48)["input_ids"]
        hidden = base.model(ids, output_hidden_states=True).hidden_states  # embeddings, then each layer's output
        x0, x1 = hidden[0][0, -1], hidden[1][0, -1]  # (the last entry has the final norm applied: not used)
        expected.append(torch.arccos(torch.cosine_similarity(x0, x1, dim=0).clamp(-1, 1)).item() / torch.pi)
    assert stats.block_distances(1)[0] == pytest.approx(sum(expected) / len(expected), abs=1e-5)


def test_scores_are_independent_of_batch_size_and_padding(tiny_model):
    base, tokenizer = tiny_model
    texts = texts_of_different_lengths()
    one_at_a_time = measure_layers(base, tokenizer, texts, max_tokens=48, batch_size=1)
    tokenizer.padding_side = "left"  # the generation code may leave the tokenizer padding on the left
    try:
        batched = measure_layers(base, tokenizer, texts, max_tokens=48, batch_size=4)
    finally:
        tokenizer.padding_side = "right"
    assert one_at_a_time.tokens == batched.tokens
    torch.testing.assert_close(
        torch.tensor(batched.block_influence()), torch.tensor(one_at_a_time.block_influence()), rtol=1e-4, atol=1e-6
    )
    for n in (1, 2, 3):
        torch.testing.assert_close(
            torch.tensor(batched.block_distances(n)),
            torch.tensor(one_at_a_time.block_distances(n)),
            rtol=1e-4,
            atol=1e-6,
        )
    assert resolve_removed_layers({**CALIBRATION, "method": "block_influence", "n_layers": 2}, 4, batched) == (
        resolve_removed_layers({**CALIBRATION, "method": "block_influence", "n_layers": 2}, 4, one_at_a_time)
    )


def test_calibration_texts_are_seeded_train_articles():
    examples = chat_examples(8)
    first = calibration_texts(examples, CALIBRATION)
    assert first == calibration_texts(examples, CALIBRATION)
    assert len(first) == len(set(first)) == 6
    assert first != calibration_texts(examples, {**CALIBRATION, "seed": 1})
    assert set(first) <= set(article_texts(examples))  # whole articles of the split it is given


def test_prune_stage_calibrates_on_the_train_split_only():
    _, _, base, train_split, *_ = stage_command("prune")
    assert (base, train_split) == ("models/base", "data/processed/train.jsonl")
    stage = (Path(__file__).resolve().parents[1] / "stages" / "prune.py").read_text()
    assert "val" not in stage and "test" not in stage


def test_too_few_calibration_articles_is_named():
    with pytest.raises(PrunetuneError, match=r"prune\.calibration_samples asks for 6 .* only 4 articles"):
        calibration_texts(chat_examples(4), CALIBRATION)


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"calibration_samples": 0}, "prune.calibration_samples"),
        ({"calibration_max_tokens": "many"}, "prune.calibration_max_tokens"),
        ({"calibration_batch_size": 0}, "prune.calibration_batch_size"),
        ({"seed": None}, "prune.seed"),
    ],
)
def test_invalid_calibration_params_are_named(change, param):
    with pytest.raises(PrunetuneError, match=param.replace(".", r"\.")):
        PruneParams.parse({**CALIBRATION, **change})
