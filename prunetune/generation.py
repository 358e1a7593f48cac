"""Greedy batched generation and log-likelihood scoring: the two things every evaluation asks of a model."""

from __future__ import annotations

from typing import Any

import torch
from tqdm.auto import tqdm


def _chunks(indices: list[int], size: int) -> list[list[int]]:
    return [indices[i : i + size] for i in range(0, len(indices), size)]


def stop_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """The generation config's end tokens (Llama 3: end-of-turn and end-of-text), else the tokenizer's eos."""
    eos = model.generation_config.eos_token_id
    ids = eos if isinstance(eos, list) else [eos] if eos is not None else []
    return ids or [tokenizer.eos_token_id]


@torch.no_grad()
def generate_greedy(
    model: Any,
    tokenizer: Any,
    prompts: list[list[int]],
    max_new_tokens: int,
    batch_size: int,
    desc: str = "generating",
) -> list[dict[str, Any]]:
    """Greedy continuations of token prompts, batched with left padding (prompts sorted by length to keep
    padding small); per prompt: the text, its token ids and count, and whether it hit max_new_tokens."""
    stops = stop_token_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    results: list[dict[str, Any]] = [{} for _ in prompts]
    for batch in tqdm(_chunks(order, batch_size), desc=desc, disable=len(prompts) <= batch_size):
        width = max(len(prompts[i]) for i in batch)
        input_ids = torch.tensor([[pad_id] * (width - len(prompts[i])) + prompts[i] for i in batch])
        attention_mask = torch.tensor([[0] * (width - len(prompts[i])) + [1] * len(prompts[i]) for i in batch])
        output = model.generate(
            input_ids=input_ids.to(model.device),
            attention_mask=attention_mask.to(model.device),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            num_beams=1,
            eos_token_id=stops,
            pad_token_id=pad_id,
        )
        for row, index in zip(output[:, width:].tolist(), batch, strict=True):
            ended = [position for position, token in enumerate(row) if token in stops]
            tokens = row[: ended[0]] if ended else row
            results[index] = {
                "text": tokenizer.decode(tokens, skip_special_tokens=True).strip(),
                "token_ids": tokens,
                "new_tokens": len(tokens),
                "hit_max_new_tokens": not ended,
            }
    return results


@torch.no_grad()
def completion_nll(model: Any, rows: list[dict[str, list[int]]], batch_size: int) -> list[tuple[float, int]]:
    """Per row: the summed negative log-likelihood of its labelled tokens (labels != -100) and their count.

    Rows are right-padded into batches; a padded position neither attends nor is scored, so the result
    does not depend on the batch size."""
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]["input_ids"]))
    results: list[tuple[float, int]] = [(0.0, 0)] * len(rows)
    for batch in _chunks(order, batch_size):
        width = max(len(rows[i]["input_ids"]) for i in batch)
        pad = [width - len(rows[i]["input_ids"]) for i in batch]
        input_ids = torch.tensor([rows[i]["input_ids"] + [0] * p for i, p in zip(batch, pad, strict=True)])
        labels = torch.tensor([rows[i]["labels"] + [-100] * p for i, p in zip(batch, pad, strict=True)])
        attention_mask = (torch.arange(width)[None, :] < torch.tensor([width - p for p in pad])[:, None]).long()
        logits = model(input_ids=input_ids.to(model.device), attention_mask=attention_mask.to(model.device)).logits
        logprobs = torch.log_softmax(logits[:, :-1].float(), dim=-1).cpu()
        targets = labels[:, 1:]
        scored = targets != -100
        picked = logprobs.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        nll = -(picked * scored).sum(dim=1)
        for row_index, index in enumerate(batch):
            results[index] = (nll[row_index].item(), int(scored[row_index].sum()))
    return results
