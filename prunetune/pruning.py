"""Removing decoder layers so that plain AutoModelForCausalLM.from_pretrained loads the result."""

from __future__ import annotations

from typing import Any

import torch
from transformers import PreTrainedModel

from prunetune.config import PrunetuneError, require

METHODS = ("last", "tail", "indices")
# Config entries that hold one value per decoder layer; they are cut to the kept layers.
PER_LAYER_CONFIG_KEYS = ("layer_types", "no_rope_layers")


def decoder_layers(model: PreTrainedModel) -> torch.nn.ModuleList:
    """The decoder-layer list of a Llama-style causal LM (model.model.layers)."""
    layers = getattr(getattr(model, "model", None), "layers", None)
    if not isinstance(layers, torch.nn.ModuleList):
        raise PrunetuneError(
            f"prune: {type(model).__name__} has no model.layers list of decoder layers; "
            "only decoder-only models laid out like Llama can be pruned"
        )
    return layers


def resolve_removed_layers(cfg: dict[str, Any], num_layers: int) -> list[int]:
    """The layer indices prune.* asks to remove, checked against the model before any work."""
    method = cfg.get("method")
    require(method in METHODS, "prune.method", f"must be one of {', '.join(METHODS)}; got {method!r}")
    if method == "last":
        removed = [num_layers - 1]
    elif method == "tail":
        n_layers = cfg.get("n_layers")
        require(
            isinstance(n_layers, int) and not isinstance(n_layers, bool) and n_layers >= 1,
            "prune.n_layers",
            f"must be an integer >= 1, got {n_layers!r}",
        )
        require(
            n_layers < num_layers,
            "prune.n_layers",
            f"must be below the model's {num_layers} layers (removing every layer leaves no model), got {n_layers}",
        )
        removed = list(range(num_layers - n_layers, num_layers))
    else:
        indices = cfg.get("indices")
        require(
            isinstance(indices, list)
            and indices
            and all(isinstance(i, int) and not isinstance(i, bool) for i in indices),
            "prune.indices",
            f"must be a non-empty list of layer indices, got {indices!r}",
        )
        bad = [i for i in indices if not 0 <= i < num_layers]
        require(not bad, "prune.indices", f"has indices out of range 0..{num_layers - 1}: {bad}")
        require(len(set(indices)) == len(indices), "prune.indices", f"lists a layer twice: {indices}")
        removed = sorted(indices)
    require(
        len(removed) < num_layers,
        "prune.indices",
        f"would remove all {num_layers} layers; keep at least one",
    )
    return removed


def remove_layers(model: PreTrainedModel, removed_layers: list[int]) -> PreTrainedModel:
    """Drop layers in place, renumber every remaining layer_idx (the KV cache indexes by it), fix the config."""
    layers = decoder_layers(model)
    num_layers = len(layers)
    removed = set(removed_layers)
    kept = [index for index in range(num_layers) if index not in removed]
    model.model.layers = torch.nn.ModuleList(layers[index] for index in kept)
    for new_index, layer in enumerate(model.model.layers):
        for module in layer.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = new_index
    config = model.config
    config.num_hidden_layers = len(kept)
    for key in PER_LAYER_CONFIG_KEYS:
        value = getattr(config, key, None)
        if isinstance(value, list | tuple) and len(value) == num_layers:
            setattr(config, key, type(value)(value[index] for index in kept))
    return model
