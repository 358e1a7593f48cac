"""Choosing decoder layers to remove and removing them so that plain AutoModelForCausalLM.from_pretrained loads the
result.

Layers are chosen by rule (last, tail, indices) or measured on calibration texts from the train split:
Block Influence (ShortGPT, Men et al. 2024, arXiv:2403.03853) scores each layer by how much it turns the hidden
state, and the angular distance of Gromov et al. 2024 (arXiv:2403.17887) finds the block of n consecutive layers
whose input and output point the same way.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel

from prunetune.config import PrunetuneError, require
from prunetune.data import article_texts
from prunetune.params import PruneParams, as_section

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


# ---------------------------------------------------------------- calibration texts


def calibration_texts(train_examples: list[dict[str, Any]], cfg: PruneParams | dict[str, Any]) -> list[str]:
    """prune.calibration_samples article texts drawn (seeded) from the train split; never val or test."""
    cfg = as_section(PruneParams, cfg)
    texts = article_texts(train_examples)
    wanted = cfg.calibration_samples
    require(
        len(texts) >= wanted,
        "prune.calibration_samples",
        f"asks for {wanted} calibration texts but the train split has only {len(texts)} articles",
    )
    return random.Random(cfg.seed).sample(texts, wanted)


# ---------------------------------------------------------------- measuring the layers


@dataclass
class LayerStats:
    """What one calibration pass measures: per-layer token-mean cosine, and every layer boundary's last-token state."""

    cosine_sum: torch.Tensor  # [layers] float64: sum over real tokens of cos(layer input, layer output)
    tokens: int  # real (non-pad) tokens measured
    last_token_states: torch.Tensor  # [samples, layers + 1, hidden] float32: x_0 (into layer 0) .. x_L (out of last)

    def block_influence(self) -> list[float]:
        """ShortGPT's BI per layer: 1 - mean over calibration tokens of cos(x_in, x_out)."""
        return (1 - self.cosine_sum / self.tokens).tolist()

    def block_distances(self, n_layers: int) -> list[float]:
        """Gromov et al.'s angular distance arccos(cos(x_l, x_{l+n}))/pi at the last real token, averaged over
        samples, for every start layer l of a block of n_layers."""
        states = self.last_token_states
        starts = states.shape[1] - n_layers
        cosines = torch.nn.functional.cosine_similarity(states[:, :starts], states[:, n_layers:], dim=-1)
        distances = torch.arccos(cosines.double().clamp(-1, 1)) / math.pi
        return distances.mean(dim=0).tolist()


def _hidden_state(value: Any) -> torch.Tensor:
    return value[0] if isinstance(value, tuple | list) else value


@torch.no_grad()
def measure_layers(
    model: PreTrainedModel, tokenizer: Any, texts: list[str], max_tokens: int, batch_size: int
) -> LayerStats:
    """Run the calibration texts through the model with forward hooks on its decoder layers.

    Right padding and explicit position ids keep every real token's states exactly those of an unpadded run, so the
    scores depend neither on the batch size nor on the padding side the tokenizer came with."""
    layers = decoder_layers(model)
    num_layers = len(layers)
    device = next(model.parameters()).device
    cosine_sum = torch.zeros(num_layers, dtype=torch.float64)
    tokens = 0
    last_states: list[torch.Tensor] = []
    batch: dict[str, torch.Tensor] = {}
    captured: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def hook(index: int):
        def record(_module, args, kwargs, output) -> None:
            inputs = args[0] if args else kwargs["hidden_states"]
            captured[index] = (_hidden_state(inputs), _hidden_state(output))

        return record

    handles = [layer.register_forward_hook(hook(i), with_kwargs=True) for i, layer in enumerate(layers)]
    try:
        starts = range(0, len(texts), batch_size)
        for start in tqdm(starts, desc="calibrating layers", disable=len(starts) <= 1):
            encoded = tokenizer(
                texts[start : start + batch_size],
                padding=True,
                padding_side="right",
                truncation=True,
                max_length=max_tokens,
                return_tensors="pt",
            )
            mask = encoded["attention_mask"].to(device).bool()
            positions = (mask.long().cumsum(dim=1) - 1).clamp(min=0)
            batch = {"input_ids": encoded["input_ids"].to(device), "attention_mask": mask.long()}
            captured.clear()
            model.model(**batch, position_ids=positions, use_cache=False)
            last = mask.sum(dim=1) - 1  # index of each sequence's last real token (right padding)
            rows = torch.arange(mask.shape[0], device=device)
            boundaries = [captured[0][0]] + [captured[i][1] for i in range(num_layers)]
            last_states.append(torch.stack([state[rows, last].float() for state in boundaries], dim=1).cpu())
            for index in range(num_layers):
                entering, leaving = captured[index]
                cosines = torch.nn.functional.cosine_similarity(entering[mask].float(), leaving[mask].float(), dim=-1)
                cosine_sum[index] += cosines.double().sum().cpu()
            tokens += int(mask.sum())
    finally:
        for handle in handles:
            handle.remove()
    return LayerStats(cosine_sum=cosine_sum, tokens=tokens, last_token_states=torch.cat(last_states))


# ---------------------------------------------------------------- choosing and removing


def resolve_removed_layers(
    cfg: PruneParams | dict[str, Any], num_layers: int, stats: LayerStats | None = None
) -> list[int]:
    """The layer indices prune.* asks to remove (checked against num_layers by PruneParams.check_layers, which the
    prune stage runs before loading the model); the measured methods choose from `stats`."""
    cfg = as_section(PruneParams, cfg)
    method = cfg.method
    if method == "last":
        return [num_layers - 1]
    if method == "tail":
        return list(range(num_layers - cfg.n_layers, num_layers))
    if method == "indices":
        return sorted(cfg.indices)
    if stats is None:
        raise ValueError(f"prune.method {method} needs the calibration measurements (stats)")
    n_layers = cfg.n_layers
    if method == "block_influence":
        scores = stats.block_influence()
        return sorted(sorted(range(num_layers), key=lambda i: scores[i])[:n_layers])
    distances = stats.block_distances(n_layers)
    start = min(range(len(distances)), key=lambda i: distances[i])
    return list(range(start, start + n_layers))


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
