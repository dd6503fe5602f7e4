"""Per-document LoRA adapters for test-time training (#1530's, with #1767's alpha/rank scale and warm-started A).

Each row of a batch is one document and has its own adapters: A [rows, r, in], B [rows, out, r], added as
``(x A^T) B^T * alpha / r``. B starts at zero, so a fresh adapter leaves the model's output unchanged. Where they
attach (the records' placement): the query, key and value projections and, on the attention's input, a term
added to its output projection ("o"); on the MLP's normed input, a term added to its output ("mlp"); on the final
hidden state, a term added to the logits before the softcap ("head"). Each virtual layer (a looped block runs
several) has its own adapters, and the block's output scales (attn_scale, mlp_scale) scale the adapters' terms as
they scale the matrices'.

The model receives a ``DocLoRA`` through ``GPT.forward(..., lora=)``; each block gets its layer's ``SlotLoRA``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

TARGETS = ("q", "k", "v", "o", "mlp", "head")


class BatchedLoRA(nn.Module):
    """One low-rank adapter per row: ``forward(x [rows, T, in]) -> [rows, T, out]``."""

    def __init__(self, rows: int, d_in: int, d_out: int, rank: int, alpha: float, generator: torch.Generator):
        super().__init__()
        self.bound, self.scale = 1.0 / math.sqrt(d_in), alpha / rank
        self.A = nn.Parameter(torch.empty(rows, rank, d_in).uniform_(-self.bound, self.bound, generator=generator))
        self.B = nn.Parameter(torch.zeros(rows, d_out, rank))

    def reset(self, generator: torch.Generator | None) -> None:
        """B to zero; A drawn again from ``generator``, or kept (warm start: None)."""
        with torch.no_grad():
            self.B.zero_()
            if generator is not None:
                self.A.copy_(torch.empty(self.A.shape).uniform_(-self.bound, self.bound, generator=generator))

    def forward(self, x: Tensor) -> Tensor:
        return torch.matmul(torch.matmul(x, self.A.to(x.dtype).transpose(1, 2)), self.B.to(x.dtype).transpose(1, 2)) * self.scale


@dataclass
class SlotLoRA:
    """One virtual layer's adapters (None where not targeted)."""

    q: BatchedLoRA | None = None
    k: BatchedLoRA | None = None
    v: BatchedLoRA | None = None
    o: BatchedLoRA | None = None
    mlp: BatchedLoRA | None = None


class DocLoRA(nn.Module):
    """The adapters of ``rows`` documents for a model of ``slots`` virtual layers."""

    def __init__(self, rows: int, slots: int, dim: int, kv_dim: int, vocab: int, *, rank: int, alpha: float,
                 targets: tuple[str, ...], generator: torch.Generator):
        super().__init__()
        bad = sorted(set(targets) - set(TARGETS))
        if bad or not {"q", "v"} <= set(targets):
            raise ValueError(f"eval.ttt.targets must hold q and v and come from {list(TARGETS)}, got {list(targets)}")
        if rank < 1:
            raise ValueError(f"eval.ttt.rank must be >= 1, got {rank}")
        self.rows, self.targets = rows, tuple(targets)
        out = {"q": dim, "k": kv_dim, "v": kv_dim, "o": dim, "mlp": dim}
        self.layers = nn.ModuleList()
        for _ in range(slots):
            self.layers.append(nn.ModuleDict({t: BatchedLoRA(rows, dim, out[t], rank, alpha, generator)
                                              for t in ("q", "k", "v", "o", "mlp") if t in targets}))
        self.head = BatchedLoRA(rows, dim, vocab, rank, alpha, generator) if "head" in targets else None

    @classmethod
    def for_model(cls, model, rows: int, *, rank: int, alpha: float, targets: tuple[str, ...],
                  generator: torch.Generator) -> DocLoRA:
        attn = model.blocks[0].attn
        return cls(rows, len(model.layer_order()), model.tok_emb.embedding_dim, attn.num_kv_heads * attn.head_dim,
                   model.vocab_size, rank=rank, alpha=alpha, targets=targets, generator=generator)

    def slot(self, i: int) -> SlotLoRA:
        return SlotLoRA(**{t: m for t, m in self.layers[i].items()})

    def reset(self, generator: torch.Generator | None) -> None:
        for m in self.modules():
            if isinstance(m, BatchedLoRA):
                m.reset(generator)
