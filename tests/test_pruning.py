import copy

import pytest
import torch
from transformers import AutoModelForCausalLM

from prunetune.config import PrunetuneError
from prunetune.models import count_parameters, save_model
from prunetune.pruning import remove_layers, resolve_removed_layers


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
    assert resolve_removed_layers(cfg, 16) == expected


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
    ],
)
def test_invalid_prune_params_are_named(cfg, param):
    with pytest.raises(PrunetuneError, match=param):
        resolve_removed_layers(cfg, 16)
