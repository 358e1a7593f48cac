"""A check that no full-vocabulary tensor spans a whole batch: the memory bound log-likelihood scoring promises.

With Llama 3's 128,256-token vocabulary, logits for every position of a batch (batch × sequence × vocabulary) are
tens of GB at the real study's shapes. VocabTensorGuard watches every tensor torch creates (a TorchDispatchMode)
and measures each one that has a vocabulary-sized dimension in *rows*: its elements over the vocabulary size, i.e.
how many positions' full distributions it holds. It records the largest and, given max_rows, stops the run at the
first tensor above it. Only tensors with new storage count (a view allocates nothing): the weight matrix (V × H)
counts H rows; a chunk of C positions' logits counts C.

Stages run under it when PRUNETUNE_VOCAB_GUARD is set (config.run_stage): "VOCAB:MAX_ROWS", e.g. "128256:512",
and PRUNETUNE_VOCAB_GUARD_LOG names a JSONL file that gets one line per stage with the largest tensor seen.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

ENV = "PRUNETUNE_VOCAB_GUARD"
ENV_LOG = "PRUNETUNE_VOCAB_GUARD_LOG"


class VocabTensorError(RuntimeError):
    """A tensor held more full-vocabulary rows than allowed."""


def _storage(tensor: torch.Tensor) -> int:
    try:
        return tensor.untyped_storage().data_ptr()
    except (RuntimeError, NotImplementedError):  # tensors without storage (meta, sparse): never an alias
        return -id(tensor)


class VocabTensorGuard(TorchDispatchMode):
    """Records the largest tensor with a vocab_size dimension (in rows = numel / vocab_size); raises above max_rows."""

    def __init__(self, vocab_size: int, max_rows: int | None = None):
        super().__init__()
        self.vocab_size, self.max_rows = vocab_size, max_rows
        self.largest_rows, self.largest_shape, self.largest_op = 0, (), ""

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        inputs = {_storage(t) for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        for tensor in tree_leaves(out):
            # views (a transpose, a slice) of a tensor already there allocate nothing: only new storage counts
            if isinstance(tensor, torch.Tensor) and self.vocab_size in tensor.shape and _storage(tensor) not in inputs:
                rows = tensor.numel() // self.vocab_size
                if rows > self.largest_rows:
                    self.largest_rows, self.largest_shape, self.largest_op = rows, tuple(tensor.shape), str(func)
                if self.max_rows is not None and rows > self.max_rows:
                    raise VocabTensorError(
                        f"{func} built a {tuple(tensor.shape)} tensor: {rows} full-vocabulary rows "
                        f"(vocabulary {self.vocab_size}), more than the {self.max_rows} allowed"
                    )
        return out

    def record(self) -> dict[str, Any]:
        return {"largest_rows": self.largest_rows, "shape": list(self.largest_shape), "op": self.largest_op}


def parse_env(value: str) -> tuple[int, int | None]:
    """'VOCAB:MAX_ROWS' (or 'VOCAB' to record only) -> (vocab_size, max_rows)."""
    vocab, _, rows = value.partition(":")
    try:
        return int(vocab), int(rows) if rows else None
    except ValueError:
        raise ValueError(f"{ENV} must be VOCAB[:MAX_ROWS], e.g. 128256:512; got {value!r}") from None


@contextmanager
def guard_from_env() -> Iterator[VocabTensorGuard | None]:
    """Run the body under a VocabTensorGuard when PRUNETUNE_VOCAB_GUARD is set; log its record (even on failure)."""
    value = os.environ.get(ENV)
    if not value:
        yield None
        return
    guard = VocabTensorGuard(*parse_env(value))
    try:
        with guard:
            yield guard
    finally:
        if log := os.environ.get(ENV_LOG):
            line = {"argv": sys.argv, **guard.record()}
            with Path(log).open("a", encoding="utf-8") as out:
                out.write(json.dumps(line) + "\n")
