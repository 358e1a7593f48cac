"""Greedy batched generation and log-likelihood scoring: the two things every evaluation asks of a model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from prunetune.chat import IGNORE_INDEX
from prunetune.config import PrunetuneError


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
    fixed_length: bool = False,
) -> list[dict[str, Any]]:
    """Greedy continuations of token prompts, batched with left padding (prompts sorted by length to keep
    padding small); per prompt: the text, its token ids and count, and whether it hit max_new_tokens. With
    fixed_length the end tokens are suppressed until max_new_tokens (min_new_tokens = max_new_tokens): every prompt
    decodes exactly that many, which `prunetune bench` uses to time the decode loop alone."""
    length = {"min_new_tokens": max_new_tokens} if fixed_length else {}
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
            **length,
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


def without_padding_mask(inputs: dict[str, Any]) -> dict[str, Any]:
    """The batch without its attention mask when every row is right-padded (real tokens first).

    Padding then only ever follows a row's real tokens, so the causal mask alone keeps every real token from seeing
    it: the real positions' outputs are the same, and no 4D mask is built or converted in every layer (8% of a
    default fine-tune step on a CPU; BENCHMARKS.md). Padded positions get outputs too; they are never scored. Any
    other padding keeps its mask."""
    mask = inputs.get("attention_mask")
    if mask is None or not bool((mask[:, 1:] <= mask[:, :-1]).all()):
        return inputs
    return {key: value for key, value in inputs.items() if key != "attention_mask"}


SCORE_CHUNK_POSITIONS = 256  # labelled positions whose full-vocabulary logits exist at once while scoring


def output_head(model: Any) -> tuple[Any, Any]:
    """The model's decoder stack (last hidden states, final norm applied) and its LM head, refusing a model whose
    logits are more than head(hidden) (soft-capped or scaled logits would need the same transform here)."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    for name in ("final_logit_softcapping", "logit_scale", "logits_scaling"):
        if getattr(config, name, None) not in (None, 1, 1.0):
            raise PrunetuneError(
                f"{type(model).__name__}: its config sets {name}; log-likelihood scoring supports models whose logits "
                "are the LM head of the last hidden state (Llama-style)"
            )
    return model.get_decoder(), model.get_output_embeddings()


@dataclass
class AnswerTokens:
    """A batch's answer tokens, flattened in row-major order: where the LM head must run and what it must predict."""

    keep: torch.Tensor  # [batch, seq] bool: the hidden state at t predicts an answer token at t + 1
    targets: torch.Tensor  # [tokens] those answer tokens
    rows: torch.Tensor  # [tokens] the example each one belongs to

    @classmethod
    def of(cls, labels: torch.Tensor, branch_ids: torch.Tensor | None = None) -> AnswerTokens:
        """From labels aligned with the input ids (IGNORE_INDEX on prompt and padding), as batches hold them; with
        the branch ids of shared rows (packing.shared_row) each branch is an example of its own."""
        next_labels = labels[:, 1:]
        keep = torch.zeros_like(labels, dtype=torch.bool)
        keep[:, :-1] = next_labels != IGNORE_INDEX
        rows = keep.nonzero()[:, 0]
        if branch_ids is not None:
            branches = branch_ids[:, 1:][keep[:, :-1]]
            rows = torch.unique(rows * (int(branch_ids.max()) + 1) + branches, return_inverse=True)[1]
        return cls(keep=keep, targets=next_labels[keep[:, :-1]], rows=rows)


def labelled_nll(hidden: torch.Tensor, head: Any, targets: torch.Tensor, chunk: int) -> torch.Tensor:
    """Negative log-likelihood of each target given the hidden state that predicts it: -log softmax(head(h))[t].

    hidden: [N, H], targets: [N]. Logits exist for `chunk` positions at a time: peak C·V·(dtype bytes + 4)."""
    nll = torch.empty(len(targets), dtype=torch.float32, device=hidden.device)
    for start in range(0, len(targets), chunk):
        logits = head(hidden[start : start + chunk]).float()  # [C, V]
        picked = logits.gather(-1, targets[start : start + chunk, None]).squeeze(-1)
        nll[start : start + chunk] = torch.logsumexp(logits, dim=-1) - picked
        del logits
    return nll


@torch.no_grad()
def completion_nll(
    model: Any, rows: list[dict[str, list[int]]], batch_size: int, chunk_positions: int = SCORE_CHUNK_POSITIONS
) -> list[tuple[float, int]]:
    """Per row: the summed negative log-likelihood of its labelled tokens (labels != -100) and their count.

    Rows are right-padded into batches and scored without an attention mask (without_padding_mask): a real token
    never sees the padding that follows it and a padded position is not scored, so the result does not depend on
    the batch size. No full-vocabulary tensor is built for the batch: the decoder gives the
    last hidden states, the ones that predict a labelled token are gathered, and the LM head and log-softmax run
    on `chunk_positions` of them at a time. Peak memory beyond the decoder's forward pass, for a batch of B rows
    padded to T tokens with N labelled tokens, hidden size H, vocabulary V and a model dtype of d bytes:

        B·T·H·d (last hidden states) + N·H·d (gathered) + C·V·(d + 4) (one chunk's logits, and in float32)

    with C = min(chunk_positions, N); the naive B·T·V·(d + 4 + 4) (logits, float32 copy, log-softmax) never
    exists. At eval batch 32, 4,096 tokens and Llama 3's V = 128,256 in bf16 that is ~0.5 GB + 0.2 GB (C = 256)
    instead of ~168 GB."""
    decoder, head = output_head(model)
    device = next(model.parameters()).device
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]["input_ids"]))
    results: list[tuple[float, int]] = [(0.0, 0)] * len(rows)
    for batch in _chunks(order, batch_size):
        width = max(len(rows[i]["input_ids"]) for i in batch)
        pad = [width - len(rows[i]["input_ids"]) for i in batch]
        input_ids = torch.tensor([rows[i]["input_ids"] + [0] * p for i, p in zip(batch, pad, strict=True)])
        labels = torch.tensor([rows[i]["labels"] + [-100] * p for i, p in zip(batch, pad, strict=True)])
        hidden = decoder(input_ids=input_ids.to(device), use_cache=False).last_hidden_state  # right-padded: no mask
        answer = AnswerTokens.of(labels)
        token_nll = labelled_nll(hidden[answer.keep.to(device)], head, answer.targets.to(device), chunk_positions)
        del hidden
        sums = torch.zeros(len(batch), dtype=torch.float64).index_add_(0, answer.rows, token_nll.double().cpu())
        counts = torch.bincount(answer.rows, minlength=len(batch))
        for row_in_batch, index in enumerate(batch):
            results[index] = (sums[row_in_batch].item(), int(counts[row_in_batch]))
    return results
